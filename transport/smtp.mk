# transport/smtp.mk - the smtp and lmtp transports (smtp_client, connection cache) and their tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.
