/* Tests for common/channel.c: the channel table from [channel NAME] sections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/channel.h"
#include "common/config.h"

static struct channel_table *load(const char *text, char *err, size_t errlen)
{
	struct config *cfg = config_new();
	struct channel_table *ct;

	assert_int_equal(config_load_string(cfg, text, "t.conf", err, errlen), 0);
	ct = channel_table_load(cfg, err, errlen);
	config_free(&cfg);
	return ct;
}

static void test_builtins(void **state)
{
	char err[256];
	struct channel_table *ct = load("", err, sizeof(err));
	static const char *const names[] = {"local", "smtp", "relay", "error",
					    "discard", "hold", "bounce"};
	const struct channel_def *d;

	(void)state;
	assert_non_null(ct);
	assert_int_equal(channel_table_count(ct), 7);
	for (size_t i = 0; i < 7; i++) {
		d = channel_table_get(ct, i);
		assert_string_equal(d->name, names[i]);
		assert_true(d->builtin);
		assert_int_equal(d->concurrency, 20);
		assert_int_equal(d->recipient_limit, 50);
		assert_null(d->domains);
	}
	assert_string_equal(channel_table_find(ct, "smtp")->endpoint, "unix:private/smtp");
	assert_null(channel_table_find(ct, "error")->endpoint);
	assert_null(channel_table_find(ct, "discard")->endpoint);
	assert_null(channel_table_find(ct, "nope"));
	assert_null(channel_table_get(ct, 7));
	channel_table_free(&ct);
	assert_null(ct);
	channel_table_free(&ct);
}

static void test_sections(void **state)
{
	char err[256];
	struct channel_table *ct = load("[channel bulk]\n"
					"domains = set:/etc/zfarm/bulk\n"
					"concurrency = 4\n"
					"destination_concurrency = 2\n"
					"recipient_limit = 10\n"
					"rate_delay = 2m\n"
					"[channel smtp]\n"
					"concurrency = 100\n"
					"[channel partner1]\n"
					"endpoint = unix:private/smtp\n",
					err, sizeof(err));
	const struct channel_def *d;

	(void)state;
	assert_non_null(ct);
	assert_int_equal(channel_table_count(ct), 9); /* 3 sections + 6 other built-ins */
	d = channel_table_get(ct, 0);
	assert_string_equal(d->name, "bulk");
	assert_false(d->builtin);
	assert_string_equal(d->endpoint, "unix:private/bulk");
	assert_string_equal(d->domains, "set:/etc/zfarm/bulk");
	assert_int_equal(d->concurrency, 4);
	assert_int_equal(d->destination_concurrency, 2);
	assert_int_equal(d->recipient_limit, 10);
	assert_int_equal(d->rate_delay, 120);
	d = channel_table_get(ct, 1);
	assert_string_equal(d->name, "smtp");
	assert_true(d->builtin);
	assert_int_equal(d->concurrency, 100);
	assert_int_equal(d->recipient_limit, 50);
	assert_string_equal(channel_table_find(ct, "partner1")->endpoint, "unix:private/smtp");
	assert_string_equal(channel_table_get(ct, 3)->name, "local"); /* built-ins follow */
	channel_table_free(&ct);
}

static void test_errors(void **state)
{
	static const struct {
		const char *text, *want;
	} rows[] = {
	    {"[channel x]\nconcurency = 3\n", "t.conf:2: unknown channel parameter \"concurency\""},
	    {"[channel x]\nconcurrency = 0\n", "concurrency"},
	    {"[channel x]\nrecipient_limit = many\n", "recipient_limit"},
	    {"[channel x]\nrate_delay = -1\n", "rate_delay"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char err[256] = "";
		struct channel_table *ct = load(rows[i].text, err, sizeof(err));

		if (ct)
			fail_msg("row %zu: loaded, want an error with \"%s\"", i, rows[i].want);
		if (!strstr(err, rows[i].want))
			fail_msg("row %zu: got \"%s\", want \"%s\" in it", i, err, rows[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_builtins),
	    cmocka_unit_test(test_sections),
	    cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
