/* Tests for common/params.c: the table of known global parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>

#include "common/params.h"

static void test_known(void **state)
{
	/* first, last and middle of the table (bsearch boundaries) */
	static const char *const known[] = {
	    "busy_warn_interval", "throttle_max",   "mynetworks",	"smtpd_timeout",
	    "run_directory",	  "queue_minfree",  "smtpd_banner", "message_size_limit",
	};
	static const char *const unknown[] = {
	    "", "a", "zzz", "procses_limit", "smtpd_timeou", "smtpd_timeoutx", "MYNETWORKS",
	    "process_limit", /* a farm parameter, not a global */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!params_known(known[i]))
			fail_msg("params_known(\"%s\"): got false, want true", known[i]);
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		if (params_known(unknown[i]))
			fail_msg("params_known(\"%s\"): got true, want false", unknown[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
