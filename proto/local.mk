# proto/ - protobuf-c messages; generated code is built, never committed.
ZF_PROTOS = proto/frame.proto proto/farm.proto proto/queue.proto proto/qctl.proto proto/qfile.proto
ZF_PROTO_C = $(ZF_PROTOS:.proto=.pb-c.c)
ZF_PROTO_H = $(ZF_PROTOS:.proto=.pb-c.h)
EXTRA_DIST += $(ZF_PROTOS)
BUILT_SOURCES += $(ZF_PROTO_C) $(ZF_PROTO_H)
CLEANFILES += $(ZF_PROTO_C) $(ZF_PROTO_H) proto/.stamp

# One protoc-c run makes every file; the stamp keeps parallel make from
# running it once per output.
$(ZF_PROTO_C) $(ZF_PROTO_H): proto/.stamp
proto/.stamp: $(ZF_PROTOS)
	$(AM_V_GEN)$(MKDIR_P) proto && \
	$(PROTOC_C) --c_out=$(builddir) --proto_path=$(srcdir) \
	  `for p in $(ZF_PROTOS); do echo $(srcdir)/$$p; done` && \
	touch $@
