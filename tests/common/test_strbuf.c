/* Tests for common/strbuf.c: growth, the hard limit, helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"

static void test_append_and_grow(void **state)
{
	struct strbuf sb;

	(void)state;
	strbuf_init(&sb, 0);
	assert_string_equal(strbuf_cstr(&sb), "");
	for (int i = 0; i < 10000; i++)
		assert_int_equal(strbuf_append(&sb, "ab", 2), 0);
	assert_int_equal(sb.len, 20000);
	assert_int_equal(sb.data[sb.len], '\0');
	assert_memory_equal(sb.data + 19998, "ab", 2);
	strbuf_release(&sb);
	assert_null(sb.data);
}

static void test_limit_is_hard(void **state)
{
	static const struct {
		size_t limit, first, second;
		int want_second;
		size_t want_len;
	} rows[] = {
		{10, 10, 0, 0, 10}, {10, 10, 1, -1, 10}, {10, 5, 6, -1, 5},
		{10, 0, 11, -1, 0}, {1, 1, 1, -1, 1},	 {100, 50, 50, 0, 100},
	};
	char bytes[128];

	(void)state;
	memset(bytes, 'x', sizeof(bytes));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct strbuf sb;
		int got;

		strbuf_init(&sb, rows[i].limit);
		assert_int_equal(strbuf_append(&sb, bytes, rows[i].first), 0);
		got = strbuf_append(&sb, bytes, rows[i].second);
		if (got != rows[i].want_second || sb.len != rows[i].want_len)
			fail_msg("row %zu: got rc %d len %zu, want rc %d len %zu", i, got, sb.len,
				 rows[i].want_second, rows[i].want_len);
		/* Never more memory than the limit needs. */
		assert_true(sb.cap <= rows[i].limit + 1);
		strbuf_release(&sb);
	}
}

static void test_printf_and_limit(void **state)
{
	struct strbuf sb;

	(void)state;
	strbuf_init(&sb, 8);
	assert_int_equal(strbuf_printf(&sb, "%d-%s", 12, "ab"), 0);
	assert_string_equal(strbuf_cstr(&sb), "12-ab");
	assert_int_equal(strbuf_printf(&sb, "%s", "toolong"), -1);
	assert_string_equal(strbuf_cstr(&sb), "12-ab");
	strbuf_release(&sb);
}

static void test_consume_steal_reset(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	char *s;

	(void)state;
	strbuf_append_str(&sb, "hello world");
	strbuf_consume(&sb, 6);
	assert_string_equal(strbuf_cstr(&sb), "world");
	strbuf_consume(&sb, 100);
	assert_int_equal(sb.len, 0);
	strbuf_append_char(&sb, 'z');
	s = strbuf_steal(&sb);
	assert_string_equal(s, "z");
	assert_null(sb.data);
	free(s);
	s = strbuf_steal(&sb);
	assert_string_equal(s, "");
	free(s);
}

static void test_string_helpers(void **state)
{
	static const struct {
		const char *in, *want;
	} trims[] = {
		{"  a b  ", "a b"}, {"", ""}, {"   ", ""}, {"\tx\r\n", "x"}, {"y", "y"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(trims) / sizeof(trims[0]); i++) {
		char buf[32];

		strcpy(buf, trims[i].in);
		if (strcmp(str_trim(buf), trims[i].want) != 0)
			fail_msg("trim row %zu: got \"%s\", want \"%s\"", i, buf, trims[i].want);
	}
	{
		char buf[] = "MiXeD.Example.ORG";

		assert_string_equal(str_lower(buf), "mixed.example.org");
	}
	assert_true(str_has_prefix_ci("MAIL FROM:<a@b>", "mail from:"));
	assert_false(str_has_prefix_ci("MAIL", "mail from:"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_grow),
		cmocka_unit_test(test_limit_is_hard),
		cmocka_unit_test(test_printf_and_limit),
		cmocka_unit_test(test_consume_steal_reset),
		cmocka_unit_test(test_string_helpers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
