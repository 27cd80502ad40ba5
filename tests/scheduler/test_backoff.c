/* Tests for scheduler/backoff.c: retry delays, spread, lifetime cap, expiry, delay warning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "scheduler/backoff.h"

#define SEC  1000000ll
#define HOUR (3600 * SEC)
#define DAY  (24 * HOUR)

/* Postfix's defaults: 300s, 4000s, 5 days, 4 hours. */
static const struct backoff_policy postfix = {300 * SEC, 4000 * SEC, 5 * DAY, 4 * HOUR};
/* No ceiling worth the name: the doubling itself must not overflow. */
static const struct backoff_policy unbounded = {1 * SEC, INT64_MAX, INT64_MAX, 0};
/* A maximal below the minimal: the minimal wins. */
static const struct backoff_policy inverted = {600 * SEC, 300 * SEC, 5 * DAY, 0};

static const int64_t now0 = 1700000000 * SEC;

struct delay_row {
	const struct backoff_policy *p;
	const char *pname;
	unsigned attempts;
	int64_t delay; /* before the spread */
};

/* clang-format off */
#define D(p, n, d) { &p, #p, n, d }

static const struct delay_row delay_rows[] = {
	D(postfix, 0, 300 * SEC), /* 0 is taken as 1 */
	D(postfix, 1, 300 * SEC),
	D(postfix, 2, 600 * SEC),
	D(postfix, 3, 1200 * SEC),
	D(postfix, 4, 2400 * SEC),
	D(postfix, 5, 4000 * SEC), /* 4800 clamped */
	D(postfix, 6, 4000 * SEC),
	D(postfix, 7, 4000 * SEC),
	D(postfix, 8, 4000 * SEC),
	D(postfix, 9, 4000 * SEC),
	D(postfix, 10, 4000 * SEC),
	D(postfix, 11, 4000 * SEC),
	D(postfix, 12, 4000 * SEC),
	D(postfix, 13, 4000 * SEC),
	D(postfix, 14, 4000 * SEC),
	D(postfix, 15, 4000 * SEC),
	D(postfix, 16, 4000 * SEC),
	D(postfix, 17, 4000 * SEC),
	D(postfix, 18, 4000 * SEC),
	D(postfix, 19, 4000 * SEC),
	D(postfix, 20, 4000 * SEC),
	D(postfix, 1000, 4000 * SEC),
	D(postfix, UINT32_MAX, 4000 * SEC),
	D(unbounded, 1, 1 * SEC),
	D(unbounded, 2, 2 * SEC),
	D(unbounded, 11, 1024 * SEC),
	D(unbounded, 20, 524288 * SEC),
	D(unbounded, 31, (1ll << 30) * SEC),
	D(inverted, 1, 600 * SEC),
	D(inverted, 5, 600 * SEC),
};
/* clang-format on */

static void test_delays(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(delay_rows) / sizeof(delay_rows[0]); i++) {
		const struct delay_row *r = &delay_rows[i];
		int64_t lo = now0 + r->delay, hi = lo + r->delay / 10;

		for (uint64_t seed = 0; seed < 64; seed++) {
			int64_t got = backoff_next(r->p, r->attempts, now0, now0, seed);
			int64_t again = backoff_next(r->p, r->attempts, now0, now0, seed);

			if (got < lo || got >= hi)
				fail_msg("row %zu (%s, attempts %u, seed %llu): got now+%lld, "
					 "want now+[%lld, %lld)",
					 i, r->pname, r->attempts, (unsigned long long)seed,
					 (long long)(got - now0), (long long)r->delay,
					 (long long)(r->delay + r->delay / 10));
			if (again != got)
				fail_msg(
				    "row %zu (%s, attempts %u, seed %llu): got %lld then %lld, "
				    "want the same",
				    i, r->pname, r->attempts, (unsigned long long)seed,
				    (long long)got, (long long)again);
		}
	}
}

/* Huge attempts with an unbounded policy: saturates, never wraps into the past. */
static void test_no_overflow(void **state)
{
	static const unsigned attempts[] = {63, 64, 65, 100, UINT32_MAX};

	(void)state;
	for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
		int64_t got = backoff_next(&unbounded, attempts[i], now0, now0, 7);

		if (got < now0)
			fail_msg("attempts %u: got %lld, want at least now %lld", attempts[i],
				 (long long)got, (long long)now0);
	}
}

/* The spread: different seeds differ, and it covers most of [0, 10%). */
static void test_spread(void **state)
{
	enum { N = 1000 };
	static int64_t got[N];
	int64_t delay = 2400 * SEC, min = INT64_MAX, max = 0;
	size_t same = 0;

	(void)state;
	for (size_t i = 0; i < N; i++) {
		got[i] = backoff_next(&postfix, 4, now0, now0, 0x5eed0000 + i) - now0 - delay;
		if (got[i] < min)
			min = got[i];
		if (got[i] > max)
			max = got[i];
		if (i > 0 && got[i] == got[i - 1])
			same++;
	}
	if (same > 0)
		fail_msg("got %zu neighbouring seeds with the same time, want 0", same);
	if (min > delay / 100 || max < delay / 10 - delay / 100)
		fail_msg("got spread [%lld, %lld] over %d seeds, want about [0, %lld)",
			 (long long)min, (long long)max, N, (long long)(delay / 10));

	/* The same seed at another attempt count moves too. */
	int64_t a3 = backoff_next(&postfix, 6, now0, now0, 42) - now0;
	int64_t a4 = backoff_next(&postfix, 7, now0, now0, 42) - now0;
	if (a3 == a4)
		fail_msg("got the same spread %lld at attempts 6 and 7, want different",
			 (long long)(a3 - 4000 * SEC));
}

struct cap_row {
	unsigned attempts;
	int64_t now, arrival;	  /* relative to now0 */
	int64_t want_lo, want_hi; /* relative to now0, inclusive */
};

/* clang-format off */
static const struct cap_row cap_rows[] = {
	/* far from expiry: not capped */
	{ 1, 0, 0, 300 * SEC, 330 * SEC - 1 },
	{ 5, 0, -4 * DAY, 4000 * SEC, 4400 * SEC - 1 },
	/* next would be after arrival + 5 days: exactly the expiry */
	{ 5, 0, -5 * DAY + 1000 * SEC, 1000 * SEC, 1000 * SEC },
	{ 1, 0, -5 * DAY + 300 * SEC, 300 * SEC, 300 * SEC },
	{ 1, 0, -5 * DAY + 299 * SEC, 299 * SEC, 299 * SEC },
	/* expiry is now, or already past: now */
	{ 3, 0, -5 * DAY, 0, 0 },
	{ 3, 0, -6 * DAY, 0, 0 },
	{ 3, 0, -5 * DAY - 1, 0, 0 },
	/* expiry one microsecond away */
	{ 3, 0, -5 * DAY + 1, 1, 1 },
};
/* clang-format on */

static void test_lifetime_cap(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cap_rows) / sizeof(cap_rows[0]); i++) {
		const struct cap_row *r = &cap_rows[i];
		int64_t got =
		    backoff_next(&postfix, r->attempts, now0 + r->now, now0 + r->arrival, 12345) -
		    now0;

		if (got < r->want_lo || got > r->want_hi)
			fail_msg("row %zu (attempts %u, arrival now%+lld): got now%+lld, "
				 "want now+[%lld, %lld]",
				 i, r->attempts, (long long)r->arrival, (long long)got,
				 (long long)r->want_lo, (long long)r->want_hi);
	}
}

struct when_row {
	const struct backoff_policy *p;
	const char *pname;
	int64_t age; /* now - arrival */
	bool want;
};

/* clang-format off */
#define W(p, a, w) { &p, #p, a, w }

static const struct when_row expired_rows[] = {
	W(postfix, 0, false),
	W(postfix, 5 * DAY - 1, false),
	W(postfix, 5 * DAY, true),
	W(postfix, 5 * DAY + 1, true),
	W(postfix, 100 * DAY, true),
	W(postfix, -1 * DAY, false), /* arrival in the future (clock step) */
	W(unbounded, 1000 * DAY, false), /* arrival + INT64_MAX saturates */
};

static const struct backoff_policy warn_off = {300 * SEC, 4000 * SEC, 5 * DAY, 0};

static const struct when_row warn_rows[] = {
	W(postfix, 0, false),
	W(postfix, 4 * HOUR - 1, false),
	W(postfix, 4 * HOUR, true),
	W(postfix, 4 * HOUR + 1, true),
	W(postfix, 10 * DAY, true),
	W(warn_off, 0, false),
	W(warn_off, 4 * HOUR, false),
	W(warn_off, 10 * DAY, false),
};
/* clang-format on */

static void test_expired(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(expired_rows) / sizeof(expired_rows[0]); i++) {
		const struct when_row *r = &expired_rows[i];
		bool got = backoff_expired(r->p, now0, now0 - r->age);

		if (got != r->want)
			fail_msg("row %zu (%s, age %lld us): got %d, want %d", i, r->pname,
				 (long long)r->age, got, r->want);
	}
}

static void test_delay_warn(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(warn_rows) / sizeof(warn_rows[0]); i++) {
		const struct when_row *r = &warn_rows[i];
		bool got = backoff_delay_warn(r->p, now0, now0 - r->age);

		if (got != r->want)
			fail_msg("row %zu (%s, age %lld us): got %d, want %d", i, r->pname,
				 (long long)r->age, got, r->want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_delays),  cmocka_unit_test(test_no_overflow),
	    cmocka_unit_test(test_spread),  cmocka_unit_test(test_lifetime_cap),
	    cmocka_unit_test(test_expired), cmocka_unit_test(test_delay_warn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
