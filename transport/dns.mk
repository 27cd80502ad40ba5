# transport/dns.mk - the resolver module (c-ares: MX, A, AAAA) and its tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.

# The resolver lives in libtransport.a; its objects need c-ares' flags
# (the library's other objects do not mind them; other fragments append
# with +=).  Programs that link libtransport.a and use dns_* add
# $(ZF_DNS_LIBS) after it.
transport_libtransport_a_SOURCES += transport/dns.c transport/dns.h transport/dns_private.h
transport_libtransport_a_CPPFLAGS = $(AM_CPPFLAGS) $(CARES_CFLAGS)
ZF_DNS_LIBS = $(CARES_LIBS)
