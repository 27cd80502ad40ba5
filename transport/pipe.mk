# transport/pipe.mk - the pipe transport and the command runner, and their tests.
# Included from Makefile.am after tests/local.mk, so it may append to
# ZF_PY_TESTS, TESTS, check_PROGRAMS and transport_libtransport_a_SOURCES.
