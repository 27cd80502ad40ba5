/* Tests for scheduler/dest.c: window growth and shrink, dead marking, revival, counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>

#include "scheduler/dest.h"

/*
 * Each scenario is a dest_init and a list of steps on a fake clock.  After
 * every step the whole state is compared; DEAD and MAY steps also compare
 * what dest_dead / dest_may_start returned.
 */
enum op {
	END,
	NONE,	/* only check the state */
	START,	/* dest_start */
	OK,	/* dest_done(DEST_OK) */
	FAIL,	/* dest_done(DEST_CONN_FAIL) */
	DEAD,	/* dest_dead, result compared with .ret */
	MAY,	/* dest_may_start, result compared with .ret */
	REVIVE, /* dest_revive */
};

static const char *const op_names[] = {
    [END] = "END",   [NONE] = "NONE", [START] = "START", [OK] = "OK",
    [FAIL] = "FAIL", [DEAD] = "DEAD", [MAY] = "MAY",	 [REVIVE] = "REVIVE",
};

struct step {
	enum op op;
	int64_t now;
	bool ret;
	unsigned window, active, failures;
	int64_t dead_until;
};

struct scenario {
	const char *name;
	unsigned initial, limit, dead_after;
	int64_t retry;
	struct step steps[32];
};

/* clang-format off */
/* S(op, now, ret, window, active, failures, dead_until) */
#define S(o, t, r, w, a, f, du) { o, t, r, w, a, f, du }

static const struct scenario scenarios[] = {
	{ "grows by one per success up to the limit", 2, 5, 3, 1000, {
		S(NONE,  10, 0, 2, 0, 0, 0),
		S(START, 10, 0, 2, 1, 0, 0),
		S(OK,    11, 0, 3, 0, 0, 0),
		S(START, 12, 0, 3, 1, 0, 0),
		S(OK,    13, 0, 4, 0, 0, 0),
		S(START, 14, 0, 4, 1, 0, 0),
		S(OK,    15, 0, 5, 0, 0, 0),
		S(START, 16, 0, 5, 1, 0, 0),
		S(OK,    17, 0, 5, 0, 0, 0),
		S(OK,    18, 0, 5, 0, 0, 0), /* done without start: active stays 0 */
		S(MAY,   19, 1, 5, 0, 0, 0),
	} },
	{ "may_start up to the window", 2, 5, 3, 1000, {
		S(MAY,   10, 1, 2, 0, 0, 0),
		S(START, 10, 0, 2, 1, 0, 0),
		S(MAY,   10, 1, 2, 1, 0, 0),
		S(START, 10, 0, 2, 2, 0, 0),
		S(MAY,   10, 0, 2, 2, 0, 0),
		S(OK,    11, 0, 3, 1, 0, 0),
		S(MAY,   11, 1, 3, 1, 0, 0),
	} },
	{ "shrinks by one per failure down to 1", 4, 10, 100, 1000, {
		S(FAIL,  10, 0, 3, 0, 1, 0),
		S(FAIL,  11, 0, 2, 0, 2, 0),
		S(FAIL,  12, 0, 1, 0, 3, 0),
		S(FAIL,  13, 0, 1, 0, 4, 0),
		S(FAIL,  14, 0, 1, 0, 5, 0),
		S(MAY,   15, 1, 1, 0, 5, 0),
	} },
	{ "dead after dead_after failures with nothing running", 3, 5, 3, 1000, {
		S(START, 10, 0, 3, 1, 0, 0),
		S(FAIL,  20, 0, 2, 0, 1, 0),
		S(START, 21, 0, 2, 1, 1, 0),
		S(FAIL,  30, 0, 1, 0, 2, 0),
		S(START, 31, 0, 1, 1, 2, 0),
		S(FAIL,  40, 0, 1, 0, 3, 1040),
		S(DEAD,  40, 1, 1, 0, 3, 1040),
		S(MAY,   41, 0, 1, 0, 3, 1040),
	} },
	{ "not dead while a delivery runs, dead when the last one fails", 4, 5, 3, 1000, {
		S(START, 10, 0, 4, 1, 0, 0),
		S(START, 10, 0, 4, 2, 0, 0),
		S(START, 10, 0, 4, 3, 0, 0),
		S(START, 10, 0, 4, 4, 0, 0),
		S(FAIL,  20, 0, 3, 3, 1, 0),
		S(FAIL,  21, 0, 2, 2, 2, 0),
		S(FAIL,  22, 0, 1, 1, 3, 0),
		S(DEAD,  23, 0, 1, 1, 3, 0),
		S(MAY,   23, 0, 1, 1, 3, 0), /* full window, not dead */
		S(FAIL,  50, 0, 1, 0, 4, 1050),
		S(DEAD,  51, 1, 1, 0, 4, 1050),
	} },
	{ "the last running delivery succeeds: not dead", 3, 5, 2, 1000, {
		S(START, 10, 0, 3, 1, 0, 0),
		S(START, 10, 0, 3, 2, 0, 0),
		S(START, 10, 0, 3, 3, 0, 0),
		S(FAIL,  20, 0, 2, 2, 1, 0),
		S(FAIL,  21, 0, 1, 1, 2, 0),
		S(OK,    22, 0, 2, 0, 0, 0),
		S(DEAD,  23, 0, 2, 0, 0, 0),
	} },
	{ "a success in between resets the count", 2, 5, 3, 1000, {
		S(FAIL,  10, 0, 1, 0, 1, 0),
		S(FAIL,  11, 0, 1, 0, 2, 0),
		S(OK,    12, 0, 2, 0, 0, 0),
		S(FAIL,  13, 0, 1, 0, 1, 0),
		S(FAIL,  14, 0, 1, 0, 2, 0),
		S(DEAD,  15, 0, 1, 0, 2, 0),
		S(FAIL,  16, 0, 1, 0, 3, 1016),
		S(DEAD,  17, 1, 1, 0, 3, 1016),
	} },
	{ "dead until the retry time, then alive with the window reset", 3, 5, 1, 1000, {
		S(FAIL,  100,  0, 2, 0, 1, 1100),
		S(MAY,   100,  0, 2, 0, 1, 1100),
		S(DEAD,  1099, 1, 2, 0, 1, 1100),
		S(MAY,   1099, 0, 2, 0, 1, 1100),
		S(MAY,   1100, 1, 3, 0, 0, 0),
		S(DEAD,  1100, 0, 3, 0, 0, 0),
		S(START, 1101, 0, 3, 1, 0, 0),
		S(FAIL,  1200, 0, 2, 0, 1, 2200), /* dead again at once: dead_after 1 */
		S(DEAD,  2500, 0, 3, 0, 0, 0),     /* dest_dead itself revives */
	} },
	{ "dest_revive by hand", 2, 5, 2, 1000000, {
		S(FAIL,   100, 0, 1, 0, 1, 0),
		S(FAIL,   101, 0, 1, 0, 2, 1000101),
		S(DEAD,   200, 1, 1, 0, 2, 1000101),
		S(REVIVE, 201, 0, 2, 0, 0, 0),
		S(DEAD,   202, 0, 2, 0, 0, 0),
		S(MAY,    202, 1, 2, 0, 0, 0),
		S(FAIL,   203, 0, 1, 0, 1, 0), /* the count starts over */
	} },
	{ "revive of a live destination resets the window", 1, 8, 3, 1000, {
		S(OK,     10, 0, 2, 0, 0, 0),
		S(OK,     11, 0, 3, 0, 0, 0),
		S(FAIL,   12, 0, 2, 0, 1, 0),
		S(REVIVE, 13, 0, 1, 0, 0, 0),
	} },
	{ "limit equal to initial", 3, 3, 3, 1000, {
		S(OK,     10, 0, 3, 0, 0, 0),
		S(FAIL,   11, 0, 2, 0, 1, 0),
		S(OK,     12, 0, 3, 0, 0, 0),
	} },
	{ "a huge retry time saturates instead of wrapping", 1, 1, 1, INT64_MAX, {
		S(FAIL,   10, 0, 1, 0, 1, INT64_MAX),
		S(DEAD,   INT64_MAX - 1, 1, 1, 0, 1, INT64_MAX),
	} },
};
/* clang-format on */

static void run_scenario(const struct scenario *sc)
{
	struct dest d;

	dest_init(&d, sc->initial, sc->limit, sc->dead_after, sc->retry);
	for (size_t i = 0; sc->steps[i].op != END; i++) {
		const struct step *s = &sc->steps[i];
		bool got = false;

		switch (s->op) {
		case END:
		case NONE:
			break;
		case START:
			dest_start(&d, 0);
			break;
		case OK:
			dest_done(&d, DEST_OK, s->now);
			break;
		case FAIL:
			dest_done(&d, DEST_CONN_FAIL, s->now);
			break;
		case DEAD:
			got = dest_dead(&d, s->now);
			break;
		case MAY:
			got = dest_may_start(&d, s->now);
			break;
		case REVIVE:
			dest_revive(&d);
			break;
		}
		if ((s->op == DEAD || s->op == MAY) && got != s->ret)
			fail_msg("%s, step %zu (%s at %lld): got %d, want %d", sc->name, i,
				 op_names[s->op], (long long)s->now, got, s->ret);
		if (d.window != s->window || d.active != s->active || d.failures != s->failures ||
		    d.dead_until_us != s->dead_until)
			fail_msg("%s, step %zu (%s at %lld): got window %u active %u failures %u "
				 "dead_until %lld, want %u %u %u %lld",
				 sc->name, i, op_names[s->op], (long long)s->now, d.window,
				 d.active, d.failures, (long long)d.dead_until_us, s->window,
				 s->active, s->failures, (long long)s->dead_until);
	}
}

static void test_scenarios(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		run_scenario(&scenarios[i]);
}

static void test_init(void **state)
{
	struct dest d;

	(void)state;
	dest_init(&d, 2, 7, 4, 300);
	if (d.initial != 2 || d.limit != 7 || d.dead_after != 4 || d.retry_us != 300)
		fail_msg("got initial %u limit %u dead_after %u retry %lld, want 2 7 4 300",
			 d.initial, d.limit, d.dead_after, (long long)d.retry_us);
	if (d.window != 2 || d.active != 0 || d.failures != 0 || d.dead_until_us != 0 ||
	    d.delivered != 0 || d.failed_conn != 0)
		fail_msg("got window %u active %u failures %u dead_until %lld delivered %llu "
			 "failed_conn %llu, want 2 0 0 0 0 0",
			 d.window, d.active, d.failures, (long long)d.dead_until_us,
			 (unsigned long long)d.delivered, (unsigned long long)d.failed_conn);
}

static void test_counters(void **state)
{
	static const struct {
		const char *outcomes; /* o: DEST_OK, f: DEST_CONN_FAIL, r: dest_revive */
		uint64_t delivered, failed_conn;
	} cases[] = {
	    {"", 0, 0},	     {"o", 1, 0},     {"f", 0, 1},
	    {"ooofo", 4, 1}, {"fffff", 0, 5}, {"ffrffo", 1, 4}, /* revive keeps the counters */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dest d;
		int64_t now = 1000;

		dest_init(&d, 1, 10, 100, 50);
		for (const char *c = cases[i].outcomes; *c; c++, now++) {
			if (*c == 'r') {
				dest_revive(&d);
				continue;
			}
			dest_start(&d, 0);
			dest_done(&d, *c == 'o' ? DEST_OK : DEST_CONN_FAIL, now);
		}
		if (d.delivered != cases[i].delivered || d.failed_conn != cases[i].failed_conn)
			fail_msg(
			    "case %zu (%s): got delivered %llu failed_conn %llu, want %llu %llu", i,
			    cases[i].outcomes, (unsigned long long)d.delivered,
			    (unsigned long long)d.failed_conn,
			    (unsigned long long)cases[i].delivered,
			    (unsigned long long)cases[i].failed_conn);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init),
	    cmocka_unit_test(test_scenarios),
	    cmocka_unit_test(test_counters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
