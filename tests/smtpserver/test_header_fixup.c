/*
 * Tests for smtpserver/header_fixup.c: where Message-ID:/Date: go, when
 * they are not added, and that every split of the input gives the same
 * output (table-driven: each row is fed whole, byte by byte and in
 * chunks of 7).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpserver/header_fixup.h"

#define MID  "Message-ID: <1.Q@h>\r\n"
#define DATE "Date: D\r\n"

struct row {
	const char *name;
	const char *in;
	const char *want;
};

/* clang-format off */
static const struct row rows[] = {
	{"both missing", "Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n" MID DATE "\r\nbody\r\n"},
	{"both there", "Date: a\r\nMessage-ID: <b>\r\n\r\nbody\r\n", "Date: a\r\nMessage-ID: <b>\r\n\r\nbody\r\n"},
	{"names in any case", "DATE: a\r\nmessage-id: <b>\r\n\r\nx\r\n", "DATE: a\r\nmessage-id: <b>\r\n\r\nx\r\n"},
	{"blanks before the colon", "Date : a\r\n\r\nx\r\n", "Date : a\r\n" MID "\r\nx\r\n"},
	{"only Date missing", "Message-Id: <b>\r\n\r\nx\r\n", "Message-Id: <b>\r\n" DATE "\r\nx\r\n"},
	{"continuation lines", "Subject: a\r\n b\r\n\tc\r\n\r\nx\r\n", "Subject: a\r\n b\r\n\tc\r\n" MID DATE "\r\nx\r\n"},
	{"a field in the body does not count", "Subject: a\r\n\r\nDate: b\r\n", "Subject: a\r\n" MID DATE "\r\nDate: b\r\n"},
	{"a continuation named Date does not count", "Subject: a\r\n Date: b\r\n\r\n", "Subject: a\r\n Date: b\r\n" MID DATE "\r\n"},
	{"a longer name is another field", "Dates: a\r\nX-Message-ID: b\r\n\r\n", "Dates: a\r\nX-Message-ID: b\r\n" MID DATE "\r\n"},
	{"no header at all", "\r\nbody\r\n", MID DATE "\r\nbody\r\n"},
	{"body without an empty line", "Subject: a\r\nthis is body\r\n", "Subject: a\r\n" MID DATE "this is body\r\n"},
	{"body line with a colon later", "Subject: a\r\nnot a field: x\r\n", "Subject: a\r\n" MID DATE "not a field: x\r\n"},
	{"first line is body", "hello\r\n", MID DATE "hello\r\n"},
	{"colon first", ":x\r\n", MID DATE ":x\r\n"},
	{"all header, no body", "Subject: a\r\n", "Subject: a\r\n" MID DATE},
	{"empty message", "", MID DATE},
	{"last line without LF", "Subject: a", "Subject: a\r\n" MID DATE},
	{"undecided at the end", "Subject", MID DATE "Subject"},
	{"CR then no LF", "Subject: a\r\n\rx\r\n", "Subject: a\r\n" MID DATE "\rx\r\n"},
};
/* clang-format on */

struct out {
	char buf[8192];
	size_t len;
};

static void emit(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	assert_true(o->len + n < sizeof(o->buf));
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void run(const char *in, size_t len, size_t chunk, struct out *o)
{
	struct header_fixup h;

	o->len = 0;
	o->buf[0] = '\0';
	header_fixup_init(&h, "<1.Q@h>", "D", emit, o);
	for (size_t i = 0; i < len; i += chunk)
		header_fixup_feed(&h, in + i, len - i < chunk ? len - i : chunk);
	header_fixup_finish(&h);
}

static void test_rows(void **state)
{
	static const size_t chunks[] = {1, 7, 100000};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			struct out o;

			run(rows[i].in, strlen(rows[i].in), chunks[c], &o);
			if (strcmp(o.buf, rows[i].want) != 0)
				fail_msg("%s (chunks of %zu): got\n%s\nwant\n%s", rows[i].name,
					 chunks[c], o.buf, rows[i].want);
		}
	}
}

/* A header line whose name goes on past HEADER_FIXUP_HOLD is taken as body; memory stays fixed. */
static void test_long_name(void **state)
{
	size_t n = HEADER_FIXUP_HOLD + 500;
	char *in = malloc(n + 20);
	struct out o;

	(void)state;
	memcpy(in, "Subject: a\r\n", 12);
	memset(in + 12, 'X', n);
	memcpy(in + 12 + n, ": v\r\n", 6);
	run(in, strlen(in), 3, &o);
	assert_int_equal(o.len, strlen(in) + strlen(MID DATE));
	assert_memory_equal(o.buf, "Subject: a\r\n" MID DATE "XXX", 12 + strlen(MID DATE) + 3);
	/* a name just under the hold is still a field */
	memset(in + 12, 'X', HEADER_FIXUP_HOLD - 1);
	memcpy(in + 12 + HEADER_FIXUP_HOLD - 1, ":\r\n\r\n", 6);
	run(in, strlen(in), 5, &o);
	assert_int_equal(o.len, strlen(in) + strlen(MID DATE));
	assert_string_equal(o.buf + strlen(in) - 2, MID DATE "\r\n");
	free(in);
}

/* Long values are cut to fit, the line still ends with CR LF. */
static void test_long_value(void **state)
{
	char id[1000];
	struct header_fixup h;
	struct out o = {.len = 0};

	(void)state;
	memset(id, 'i', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	header_fixup_init(&h, id, "D", emit, &o);
	header_fixup_feed(&h, "\r\n", 2);
	header_fixup_finish(&h);
	assert_true(o.len < 2 * HEADER_FIXUP_FIELD);
	assert_non_null(strstr(o.buf, "i\r\nDate: D\r\n\r\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rows),
	    cmocka_unit_test(test_long_name),
	    cmocka_unit_test(test_long_value),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
