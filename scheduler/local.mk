# scheduler/ - the scheduler (one process) and the reinjector.  The pure
# modules are in libsched.a so the unit tests link what they test.
noinst_LIBRARIES += scheduler/libsched.a
scheduler_libsched_a_SOURCES = \
	scheduler/backoff.c scheduler/backoff.h \
	scheduler/dest.c scheduler/dest.h \
	scheduler/handoff.c scheduler/handoff.h \
	scheduler/msgstate.c scheduler/msgstate.h \
	scheduler/sched.c scheduler/sched.h \
	scheduler/qctl.c scheduler/qctl.h

# reinject: the run-once queue recovery job (kind = once in the farm table).
zfarmlibexec_PROGRAMS += scheduler/reinject
scheduler_reinject_SOURCES = scheduler/reinject.c
scheduler_reinject_LDADD = scheduler/libsched.a $(ZF_LIBS)

# scheduler: the daemon (farm kind single).
zfarmlibexec_PROGRAMS += scheduler/scheduler
scheduler_scheduler_SOURCES = scheduler/schedd.c
scheduler_scheduler_LDADD = scheduler/libsched.a $(ZF_LIBS)
