# transport/ - transport farms (one per channel) on one skeleton.
# The skeleton and the notice builder are in libtransport.a so the unit
# tests link the modules they test.
noinst_LIBRARIES += transport/libtransport.a
transport_libtransport_a_SOURCES = \
	transport/body.c transport/body.h \
	transport/dsn.c transport/dsn.h \
	transport/transport.c transport/transport.h

zfarmlibexec_PROGRAMS += transport/bounce
transport_bounce_SOURCES = transport/bounce.c
transport_bounce_LDADD = transport/libtransport.a $(ZF_LIBS)
