# transport/dns.mk - the resolver module (c-ares: MX, A, AAAA) and its tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.
