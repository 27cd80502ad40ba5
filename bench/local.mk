# bench/ - benchmark programs (not installed, not tests).  bench/qfill
# fills a queue with routed messages and bench/ack_transport is an
# instant-ack transport farm: bench/sched_bench.py and
# tests/scheduler/test_sched_load.py drive the scheduler with both.
# bench/commit_cost measures what one durable message costs the file
# system: the spool store's commit against an in-place overwrite;
# bench/commit_group what several at once cost: a file each against one
# file with a shared fdatasync (group commit).
# (bench/route_bench is built from router/local.mk: it links librouter.a.)
noinst_PROGRAMS += bench/qfill bench/ack_transport bench/commit_cost bench/commit_group
bench_qfill_SOURCES = bench/qfill.c
bench_qfill_LDADD = $(ZF_LIBS)
bench_commit_cost_SOURCES = bench/commit_cost.c
bench_commit_cost_LDADD = $(ZF_LIBS)
bench_commit_group_SOURCES = bench/commit_group.c
bench_commit_group_LDADD = -lpthread
bench_ack_transport_SOURCES = bench/ack_transport.c
bench_ack_transport_LDADD = $(ZF_LIBS)
EXTRA_DIST += bench/relay.py bench/tls_relay.py bench/README.md
