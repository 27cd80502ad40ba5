/*
 * Tests for transport/body.c: each case is encoded whole, byte by byte and
 * split at every position into two chunks, so every line end, dot and
 * "From " falls across a chunk boundary somewhere; the output must be the
 * same every time.  body_pump and body_header_scan run on the RAM queue
 * store.
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

#include <event2/buffer.h>

#include "common/qstore.h"
#include "transport/body.h"
#include "tests/transport/ram_message.h"

struct body_case {
	enum body_form form;
	const char *in;
	const char *want;
};

static const struct body_case cases[] = {
	/* SMTP: dot-stuffing, line ends, the terminator */
	{BODY_SMTP, "", ".\r\n"},
	{BODY_SMTP, "a\r\n", "a\r\n.\r\n"},
	{BODY_SMTP, "a", "a\r\n.\r\n"},
	{BODY_SMTP, ".\r\n", "..\r\n.\r\n"},
	{BODY_SMTP, "x\r\n.\r\n..y\r\n", "x\r\n..\r\n...y\r\n.\r\n"},
	{BODY_SMTP, "a\nb\rc\r\n", "a\r\nb\r\nc\r\n.\r\n"},
	{BODY_SMTP, "a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"},
	{BODY_SMTP, "a\n.b\r.c\r", "a\r\n..b\r\n..c\r\n.\r\n"},
	{BODY_SMTP, "a.b\r\n x.\r\n", "a.b\r\n x.\r\n.\r\n"},
	{BODY_SMTP, "\r\n\r\n", "\r\n\r\n.\r\n"},
	/* CRLF */
	{BODY_CRLF, "a\nb\r\n.c", "a\r\nb\r\n.c\r\n"},
	{BODY_CRLF, "", ""},
	/* LF */
	{BODY_LF, "a\r\nb\rc\nd", "a\nb\nc\nd\n"},
	{BODY_LF, ".x\r\n", ".x\n"},
	{BODY_LF, "", ""},
	/* mboxrd */
	{BODY_MBOX, "From a\r\n", ">From a\n\n"},
	{BODY_MBOX, "x\r\nFrom b\r\n>From c\r\n>>From d\r\n", "x\n>From b\n>>From c\n>>>From d\n\n"},
	{BODY_MBOX, "Fro\r\n>Fr\r\n>>\r\nFrom\r\n", "Fro\n>Fr\n>>\nFrom\n\n"},
	{BODY_MBOX, " From x\r\nFromage\r\n>From", " From x\nFromage\n>From\n\n"},
	{BODY_MBOX, "a From b\r\n", "a From b\n\n"},
	{BODY_MBOX, "From ", ">From \n\n"},
	{BODY_MBOX, ">>>", ">>>\n\n"},
	{BODY_MBOX, "", "\n"},
};

/* encode in as chunks of the given sizes (0-terminated list; the rest in one). */
static char *encode(enum body_form form, const char *in, size_t len, size_t split, bool bytewise,
		    size_t *outlen, struct body_enc *e)
{
	struct evbuffer *out = evbuffer_new();
	char *s;

	body_enc_init(e, form);
	if (bytewise) {
		for (size_t i = 0; i < len; i++)
			assert_int_equal(body_enc_feed(e, in + i, 1, out), 0);
	} else {
		assert_int_equal(body_enc_feed(e, in, split, out), 0);
		assert_int_equal(body_enc_feed(e, in + split, len - split, out), 0);
	}
	assert_int_equal(body_enc_finish(e, out), 0);
	*outlen = evbuffer_get_length(out);
	s = malloc(*outlen + 1);
	evbuffer_remove(out, s, *outlen);
	s[*outlen] = '\0';
	evbuffer_free(out);
	return s;
}

static void check(const struct body_case *c, const char *got, size_t glen, const char *how)
{
	if (glen != strlen(c->want) || memcmp(got, c->want, glen) != 0) {
		fail_msg("form %d, input \"%s\" (%s): got \"%s\", want \"%s\"", c->form, c->in, how,
			 got, c->want);
	}
}

static void test_body_cases(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const struct body_case *c = &cases[k];
		size_t len = strlen(c->in), glen;
		struct body_enc e;
		char *got, how[32];

		got = encode(c->form, c->in, len, len, true, &glen, &e);
		check(c, got, glen, "byte by byte");
		assert_int_equal(e.out, glen);
		assert_int_equal(e.in, len);
		free(got);
		for (size_t split = 0; split <= len; split++) {
			snprintf(how, sizeof(how), "split at %zu", split);
			got = encode(c->form, c->in, len, split, false, &glen, &e);
			check(c, got, glen, how);
			free(got);
		}
	}
}

static void test_body_eightbit(void **state)
{
	struct body_enc e;
	size_t glen;
	char *got;

	(void)state;
	got = encode(BODY_SMTP, "plain\r\n", 7, 3, false, &glen, &e);
	assert_false(e.eightbit);
	free(got);
	got = encode(BODY_SMTP, "caf\xc3\xa9\r\n", 7, 3, false, &glen, &e);
	assert_true(e.eightbit);
	free(got);
	/* runs of any length, the 8-bit byte at every place in them (the scan goes 8 bytes at a time) */
	for (size_t len = 1; len <= 41; len++) {
		char line[64];

		memset(line, 0x7f, len); /* the highest 7-bit byte */
		memcpy(line + len, "\r\n", 2);
		got = encode(BODY_CRLF, line, len + 2, len + 2, false, &glen, &e);
		if (e.eightbit)
			fail_msg("%zu bytes of 0x7f: got eightbit, want none", len);
		free(got);
		for (size_t at = 0; at < len; at++) {
			line[at] = (char)0x80;
			got = encode(BODY_CRLF, line, len + 2, len + 2, false, &glen, &e);
			if (!e.eightbit)
				fail_msg("0x80 at %zu of %zu bytes: got no eightbit, want it", at, len);
			free(got);
			line[at] = 0x7f;
		}
	}
}

/* A 1 MB body of lines starting with dots: one more byte per line. */
static void test_body_large(void **state)
{
	size_t n = 1000000, glen; /* whole 100-byte lines */
	char *in = malloc(n), *got;
	struct body_enc e;

	(void)state;
	for (size_t i = 0; i < n; i++)
		in[i] = (i % 100 == 98) ? '\r' : (i % 100 == 99) ? '\n' : (i % 100 == 0) ? '.' : 'x';
	got = encode(BODY_SMTP, in, n, n / 3, false, &glen, &e);
	/* every line starts with '.', gets one more; plus ".\r\n" */
	assert_int_equal(glen, n + n / 100 + 3);
	assert_memory_equal(got, "..xx", 4);
	free(got);
	free(in);
}

static char qid_of[QID_SIZE];

static void test_body_pump(void **state)
{
	char err[256];
	int errnum = 0, rc;
	static const char msg[] = "Subject: x\r\n\r\n.dot\r\nend";
	struct qstore *qs = ram_message(msg, sizeof(msg) - 1, qid_of);
	struct qstore_reader *r = qstore_read(qs, qid_of, &errnum, err, sizeof(err));
	struct evbuffer *out = evbuffer_new();
	struct body_enc e;
	char got[128];
	size_t n;

	(void)state;
	assert_non_null(r);
	body_enc_init(&e, BODY_SMTP);
	/* 5 bytes at a time: more, more, ..., then the end */
	while ((rc = body_pump(r, &e, out, 5, err, sizeof(err))) == 1)
		;
	assert_int_equal(rc, 0);
	assert_int_equal(body_enc_finish(&e, out), 0);
	n = evbuffer_remove(out, got, sizeof(got) - 1);
	got[n] = '\0';
	assert_string_equal(got, "Subject: x\r\n\r\n..dot\r\nend\r\n.\r\n");
	evbuffer_free(out);
	qstore_reader_free(&r);
	qstore_close(&qs);
}

static void test_body_header_scan(void **state)
{
	char err[256], buf[64];
	int errnum = 0;
	static const char msg[] = "Received: x\r\n"
				  "Delivered-To:  Bob+x@Example.test \r\n"
				  "X-Long: a\r\n"
				  " Delivered-To: carol@example.test\r\n"
				  "\r\n"
				  "Delivered-To: dave@example.test\r\n";
	struct qstore *qs = ram_message(msg, sizeof(msg) - 1, qid_of);
	struct qstore_reader *r = qstore_read(qs, qid_of, &errnum, err, sizeof(err));

	(void)state;
	assert_non_null(r);
	assert_int_equal(body_header_scan(r, "Delivered-To", "bob+x@example.test", 0, err,
					  sizeof(err)),
			 1);
	/* a continuation line is no field; the body is no header */
	assert_int_equal(body_header_scan(r, "Delivered-To", "carol@example.test", 0, err,
					  sizeof(err)),
			 0);
	assert_int_equal(body_header_scan(r, "delivered-to", "dave@example.test", 0, err,
					  sizeof(err)),
			 0);
	/* rewound: the content reads from the start again */
	assert_int_equal(qstore_content(r, buf, 9, err, sizeof(err)), 9);
	assert_memory_equal(buf, "Received:", 9);
	qstore_reader_free(&r);
	qstore_close(&qs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_cases),   cmocka_unit_test(test_body_eightbit),
		cmocka_unit_test(test_body_large),   cmocka_unit_test(test_body_pump),
		cmocka_unit_test(test_body_header_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
