# transport/smtp.mk - the smtp and lmtp transports (smtp_client, connection cache, STARTTLS client) and their tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.
transport_libtransport_a_SOURCES += \
	transport/smtp_client.c transport/smtp_client.h \
	transport/conncache.c transport/conncache.h \
	transport/smtp_agent.c transport/smtp_agent.h \
	transport/tls_client.c transport/tls_client.h

# One delivery agent (smtp_agent.c, in libtransport.a), two programs
# (like Postfix's smtp/lmtp).
zfarmlibexec_PROGRAMS += transport/smtp transport/lmtp
transport_smtp_SOURCES = transport/smtp.c
transport_smtp_LDADD = transport/libtransport.a $(ZF_DNS_LIBS) $(ZF_LIBS)
transport_lmtp_SOURCES = transport/lmtp.c
transport_lmtp_LDADD = transport/libtransport.a $(ZF_DNS_LIBS) $(ZF_LIBS)

check_PROGRAMS += tests/transport/test_smtp_client
TESTS += tests/transport/test_smtp_client
tests_transport_test_smtp_client_SOURCES = tests/transport/test_smtp_client.c tests/common/evtest.h tests/transport/ram_message.h
tests_transport_test_smtp_client_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_smtp_client_LDADD = transport/libtransport.a $(ZF_TEST_LIBS)

check_PROGRAMS += tests/transport/test_tls_client
TESTS += tests/transport/test_tls_client
tests_transport_test_tls_client_SOURCES = tests/transport/test_tls_client.c
tests_transport_test_tls_client_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_tls_client_LDADD = transport/libtransport.a $(ZF_TEST_LIBS)

ZF_PY_TESTS += tests/transport/test_smtp.py tests/transport/test_lmtp.py tests/transport/test_smtp_tls.py
EXTRA_DIST += tests/transport/smtp_peers.py

dist_man_MANS += man/smtp.8 man/lmtp.8
