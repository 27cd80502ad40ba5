# router/ - the router farm.  Everything but main() is in librouter.a so
# the unit tests link the modules they test.
noinst_LIBRARIES += router/librouter.a
router_librouter_a_SOURCES = \
	router/route.c router/route.h \
	router/routeset.c router/routeset.h \
	router/sched_link.c router/sched_link.h

zfarmlibexec_PROGRAMS += router/router
router_router_SOURCES = router/routerd.c
router_router_LDADD = router/librouter.a $(ZF_LIBS)

# bench/route_bench: routing decisions per second with 100,000-entry tables.
noinst_PROGRAMS += bench/route_bench
bench_route_bench_SOURCES = bench/route_bench.c
bench_route_bench_LDADD = router/librouter.a $(ZF_LIBS)
