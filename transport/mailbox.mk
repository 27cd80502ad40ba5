# transport/mailbox.mk - the local transport (Maildir, mbox) and its tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.
