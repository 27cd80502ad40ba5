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

# Unit tests of the pure parts (servers list, MX order, literals, families).
# (named _unit: test_dns.py would write the same test_dns.log)
ZF_DNS_UNIT_TESTS = tests/transport/test_dns_unit
check_PROGRAMS += $(ZF_DNS_UNIT_TESTS)
TESTS += $(ZF_DNS_UNIT_TESTS)
tests_transport_test_dns_unit_SOURCES = tests/transport/test_dns.c
tests_transport_test_dns_unit_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_dns_unit_LDADD = transport/libtransport.a $(ZF_DNS_LIBS) $(ZF_TEST_LIBS)

# dns_probe: one resolver, one or more lookups, the answers as text; the
# integration test runs it against tests/transport/dnsserver.py on loopback.
check_PROGRAMS += tests/transport/dns_probe
tests_transport_dns_probe_SOURCES = tests/transport/dns_probe.c
tests_transport_dns_probe_LDADD = transport/libtransport.a $(ZF_DNS_LIBS) $(ZF_LIBS)

# (tests/local.mk adds $(ZF_PY_TESTS) to TESTS and EXTRA_DIST)
ZF_PY_TESTS += tests/transport/test_dns.py
EXTRA_DIST += tests/transport/dnsserver.py
