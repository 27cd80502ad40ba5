# transport/mailbox.mk - the local transport (Maildir, mbox) and its tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.

transport_libtransport_a_SOURCES += \
	transport/maildir.c transport/maildir.h \
	transport/mbox.c transport/mbox.h

# The local farm; command_run() comes from transport/command.c (pipe.mk
# puts it into libtransport.a).
zfarmlibexec_PROGRAMS += transport/local
transport_local_SOURCES = transport/local.c
transport_local_LDADD = transport/libtransport.a $(ZF_LIBS)

ZF_MAILBOX_UNIT_TESTS = tests/transport/test_maildir tests/transport/test_mbox
check_PROGRAMS += $(ZF_MAILBOX_UNIT_TESTS)
TESTS += $(ZF_MAILBOX_UNIT_TESTS)
tests_transport_test_maildir_SOURCES = tests/transport/test_maildir.c tests/transport/mailbox_src.h
tests_transport_test_maildir_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_maildir_LDADD = transport/libtransport.a $(ZF_TEST_LIBS)
tests_transport_test_mbox_SOURCES = tests/transport/test_mbox.c tests/transport/mailbox_src.h
tests_transport_test_mbox_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_mbox_LDADD = transport/libtransport.a $(ZF_TEST_LIBS)

# tests/local.mk puts $(ZF_PY_TESTS) into TESTS and EXTRA_DIST (expanded late).
ZF_PY_TESTS += tests/transport/test_local.py

dist_man_MANS += man/local.8
