# scheduler/ - the scheduler (one process) and the reinjector.  The pure
# modules are in libsched.a so the unit tests link what they test.
noinst_LIBRARIES += scheduler/libsched.a
scheduler_libsched_a_SOURCES = \
	scheduler/backoff.c scheduler/backoff.h \
	scheduler/dest.c scheduler/dest.h \
	scheduler/msgstate.c scheduler/msgstate.h
