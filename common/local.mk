# common/ - the convenience library every program links.
noinst_LIBRARIES += libzfarm.a
libzfarm_a_SOURCES = \
	common/address.c common/address.h \
	common/channel.c common/channel.h \
	common/cidr.c common/cidr.h \
	common/clock.c common/clock.h \
	common/config.c common/config.h \
	common/endpoint.c common/endpoint.h \
	common/err.c common/err.h \
	common/farm_server.c common/farm_server.h \
	common/frame.c common/frame.h \
	common/frame_client.c common/frame_client.h \
	common/log.c common/log.h \
	common/params.c common/params.h \
	common/paths.c common/paths.h \
	common/qid.c common/qid.h \
	common/qstore.c common/qstore.h \
	common/qstore_ram.c common/qstore_ram.h \
	common/qstore_spool.c \
	common/sockstream.c common/sockstream.h \
	common/strbuf.c common/strbuf.h \
	common/table.c common/table.h \
	common/workq.c common/workq.h \
	common/xalloc.c common/xalloc.h
nodist_libzfarm_a_SOURCES = $(ZF_PROTO_C) $(ZF_PROTO_H)
