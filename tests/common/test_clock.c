/* Tests for common/clock.c: real clocks move, the fake clock obeys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

static void test_real_clocks(void **state)
{
	uint64_t a = clock_mono_ms(), us = clock_now_us();

	(void)state;
	/* After 2020-01-01 and monotonic never goes back. */
	assert_true(us > UINT64_C(1577836800000000));
	assert_true(clock_mono_ms() >= a);
	assert_true((uint64_t)clock_now() >= us / 1000000u);
}

static void test_fake_clock(void **state)
{
	(void)state;
	clock_set_fake(UINT64_C(1000000000000000), 5000);
	assert_int_equal(clock_now_us(), UINT64_C(1000000000000000));
	assert_int_equal(clock_now(), 1000000000);
	assert_int_equal(clock_mono_ms(), 5000);
	clock_advance_fake(1500);
	assert_int_equal(clock_mono_ms(), 6500);
	assert_int_equal(clock_now_us(), UINT64_C(1000000001500000));
	clock_set_fake(0, 0);
	assert_true(clock_now_us() > UINT64_C(1577836800000000));
}

static void test_rfc5322_date(void **state)
{
	char buf[64];

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	clock_format_rfc5322(0, buf, sizeof(buf));
	assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 +0000");
	clock_format_rfc5322(1795000000, buf, sizeof(buf));
	assert_string_equal(buf, "Wed, 18 Nov 2026 11:06:40 +0000");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_clocks),
		cmocka_unit_test(test_fake_clock),
		cmocka_unit_test(test_rfc5322_date),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
