# transport/pipe.mk - the pipe transport and the command runner, and their tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.

# The command runner is shared with the local transport (|command aliases).
transport_libtransport_a_SOURCES += transport/command.c transport/command.h

zfarmlibexec_PROGRAMS += transport/pipe
transport_pipe_SOURCES = transport/pipe.c
transport_pipe_LDADD = transport/libtransport.a $(ZF_LIBS)

dist_man_MANS += man/pipe.8

check_PROGRAMS += tests/transport/test_command
TESTS += tests/transport/test_command
tests_transport_test_command_SOURCES = tests/transport/test_command.c
tests_transport_test_command_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_command_LDADD = transport/libtransport.a $(ZF_TEST_LIBS)

# tests/local.mk has TESTS += $(ZF_PY_TESTS) and EXTRA_DIST += $(ZF_PY_TESTS)
# (expanded late), so appending here is enough.
ZF_PY_TESTS += tests/transport/test_pipe.py
