# transport/smtp.mk - the smtp and lmtp transports (smtp_client, connection cache) and their tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.
transport_libtransport_a_SOURCES += \
	transport/smtp_client.c transport/smtp_client.h \
	transport/conncache.c transport/conncache.h

check_PROGRAMS += tests/transport/test_smtp_client
TESTS += tests/transport/test_smtp_client
tests_transport_test_smtp_client_SOURCES = tests/transport/test_smtp_client.c
tests_transport_test_smtp_client_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_smtp_client_LDADD = transport/libtransport.a $(ZF_TEST_LIBS)

