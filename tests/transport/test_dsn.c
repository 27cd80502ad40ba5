/*
 * Tests for transport/dsn.c: the delivery status notice builder.  The
 * original is read from memory in small chunks (so every line end and
 * header end falls across reads somewhere), the notice collected in a
 * strbuf and checked line by line.
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

#include "common/strbuf.h"
#include "transport/dsn.h"

#define BOUNDARY "NEWQID.1700000000/mx.example.test"
#define DELIM	 "\r\n--" BOUNDARY "\r\n"
#define RECEIVED "Received: by mx.example.test (zfarm)\r\n\tid NEWQID; "
#define CLOSE	 "\r\n--" BOUNDARY "--\r\n"

/* ---- memory original and output ---- */

struct mem {
	const char *data;
	size_t len, off, chunk;
	unsigned rewinds;
};

static ssize_t mem_read(void *arg, void *buf, size_t len, char *err, size_t errlen)
{
	struct mem *m = arg;
	size_t n = m->len - m->off;

	(void)err;
	(void)errlen;
	if (n > len)
		n = len;
	if (n > m->chunk)
		n = m->chunk;
	memcpy(buf, m->data + m->off, n);
	m->off += n;
	return (ssize_t)n;
}

static int mem_rewind(void *arg, char *err, size_t errlen)
{
	struct mem *m = arg;

	(void)err;
	(void)errlen;
	m->off = 0;
	m->rewinds++;
	return 0;
}

struct sink {
	struct strbuf sb;
	size_t fail_after; /* 0: never fail */
};

static int sink_write(void *arg, const void *data, size_t len, char *err, size_t errlen)
{
	struct sink *s = arg;

	if (s->fail_after && s->sb.len + len > s->fail_after) {
		snprintf(err, errlen, "disk full");
		return -1;
	}
	assert_int_equal(strbuf_append(&s->sb, data, len), 0);
	return 0;
}

/* ---- checks ---- */

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0, k = strlen(needle);

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += k)
		n++;
	return n;
}

/* check_lines - CR LF only, every line at most 998 bytes. */
static void check_lines(const char *name, const struct strbuf *sb)
{
	size_t start = 0;

	for (size_t i = 0; i < sb->len; i++) {
		if (sb->data[i] == '\r' && (i + 1 == sb->len || sb->data[i + 1] != '\n'))
			fail_msg("%s: bare CR at offset %zu", name, i);
		if (sb->data[i] == '\n') {
			if (i == 0 || sb->data[i - 1] != '\r')
				fail_msg("%s: bare LF at offset %zu", name, i);
			if (i - 1 - start > 998)
				fail_msg("%s: line at offset %zu has %zu bytes, want <= 998", name,
					 start, i - 1 - start);
			start = i + 1;
		}
	}
	if (start != sb->len)
		fail_msg("%s: the notice does not end with CR LF", name);
}

static void want(const char *name, const char *got, const char *needle)
{
	if (!strstr(got, needle))
		fail_msg("%s: got no \"%s\" in:\n%s", name, needle, got);
}

static void want_not(const char *name, const char *got, const char *needle)
{
	if (strstr(got, needle))
		fail_msg("%s: got \"%s\", want none, in:\n%s", name, needle, got);
}

static void want_count(const char *name, const char *got, const char *needle, size_t n)
{
	size_t c = count(got, needle);

	if (c != n)
		fail_msg("%s: got %zu \"%s\", want %zu", name, c, needle, n);
}

/* ---- inputs ---- */

static const char ORIGINAL[] = "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
			       "From: Sender <s@example.org>\r\n"
			       "Subject: hello\r\n"
			       "\tfolded\r\n"
			       "\r\n"
			       "body line one\r\n"
			       "body line two\r\n";

static const struct dsn_recipient RCPT_FAILED = {
    .address = "bob@remote.test",
    .orig_address = "bob@remote.test",
    .orcpt = "rfc822;bob@remote.test",
    .action = "failed",
    .status = "5.1.1",
    .smtp_code = 550,
    .text = "550 5.1.1 no such user",
    .last_attempt = 1700000000,
};
static const struct dsn_recipient RCPT_LOCAL = {
    .address = "carol@remote.test",
    .orig_address = "team@example.test",
    .orcpt = "",
    .action = "failed",
    .status = "5.4.4",
    .smtp_code = 0,
    .text = "Host not found",
};
static const struct dsn_recipient RCPT_DELAYED = {
    .address = "dave@slow.test",
    .orig_address = "dave@slow.test",
    .action = "delayed",
    .status = "4.4.1",
    .text = "connection timed out",
    .last_attempt = 1700000500,
};
static const struct dsn_recipient RCPT_DELIVERED = {
    .address = "erin@ok.test",
    .action = "delivered",
    .status = "2.0.0",
    .text = "250 ok",
    .smtp_code = 250,
};

static void input_init(struct dsn_input *in, const struct dsn_recipient *r, size_t n)
{
	memset(in, 0, sizeof(*in));
	in->reporting_mta = "mx.example.test";
	in->queue_id = "ORIGQID";
	in->new_queue_id = "NEWQID";
	in->sender = "s@example.org";
	in->envid = "";
	in->ret = "";
	in->arrival = 1699990000;
	in->notice_to = "s@example.org";
	in->rcpts = r;
	in->n_rcpts = n;
	in->now = 1700000600;
	in->boundary = BOUNDARY;
	in->size_limit = 50000;
}

/* build - scan and write; the notice in out (caller releases). */
static int build(const struct dsn_input *in, const char *original, size_t len, size_t chunk,
		 struct dsn_scan *scan, struct sink *out, char *err, size_t errlen)
{
	struct mem m = {original, len, 0, chunk, 0};
	struct dsn_original orig = {mem_read, mem_rewind, &m};

	if (dsn_scan(in, &orig, scan, err, errlen) < 0)
		return -1;
	assert_int_equal(m.off, 0); /* rewound */
	return dsn_write(in, scan, &orig, sink_write, out, err, errlen);
}

/* ---- tests ---- */

static void test_structure(void **state)
{
	static const size_t chunks[] = {1, 2, 3, 7, 64, 8192};
	struct dsn_recipient r[2] = {RCPT_FAILED, RCPT_LOCAL};
	struct dsn_input in;

	(void)state;
	input_init(&in, r, 2);
	in.envid = "ENV-1";
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct sink out = {STRBUF_INIT, 0};
		struct dsn_scan scan;
		char err[256], name[32];
		const char *s;

		snprintf(name, sizeof(name), "chunk %zu", chunks[c]);
		assert_int_equal(build(&in, ORIGINAL, strlen(ORIGINAL), chunks[c], &scan, &out, err,
				       sizeof(err)),
				 0);
		s = strbuf_cstr(&out.sb);
		check_lines(name, &out.sb);
		if (strncmp(s, RECEIVED, strlen(RECEIVED)) != 0)
			fail_msg("%s: notice starts %.60s", name, s);
		want(name, s, "\r\nDate: ");
		want(name, s, "\r\nFrom: MAILER-DAEMON@mx.example.test (Mail Delivery System)\r\n");
		want(name, s, "\r\nTo: <s@example.org>\r\n");
		want(name, s, "\r\nSubject: Undelivered Mail Returned to Sender\r\n");
		want(name, s, "\r\nAuto-Submitted: auto-replied\r\n");
		want(name, s, ".NEWQID@mx.example.test>\r\n");
		want(name, s, "\r\nMIME-Version: 1.0\r\n");
		want(name, s,
		     "\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
		     "\tboundary=\"" BOUNDARY "\"\r\n");
		/* three parts, closed once, nothing after the close */
		want_count(name, s, DELIM, 3);
		want_count(name, s, CLOSE, 1);
		if (strcmp(s + out.sb.len - strlen(CLOSE), CLOSE) != 0)
			fail_msg("%s: the notice does not end with the closing boundary", name);
		want(name, s,
		     DELIM "Content-Description: Notification\r\n"
			   "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
		want(name, s, "\r\n<bob@remote.test>: 550 5.1.1 no such user\r\n");
		want(name, s,
		     "\r\n<carol@remote.test> (expanded from <team@example.test>): Host not "
		     "found\r\n");
		/* the delivery-status part */
		want(name, s,
		     DELIM "Content-Description: Delivery report\r\n"
			   "Content-Type: message/delivery-status\r\n\r\n"
			   "Reporting-MTA: dns; mx.example.test\r\n"
			   "X-Zfarm-Queue-ID: ORIGQID\r\n"
			   "X-Zfarm-Sender: rfc822; s@example.org\r\n"
			   "Original-Envelope-Id: ENV-1\r\n"
			   "Arrival-Date: ");
		want(name, s,
		     "\r\n\r\nFinal-Recipient: rfc822; bob@remote.test\r\n"
		     "Original-Recipient: rfc822;bob@remote.test\r\n"
		     "Action: failed\r\n"
		     "Status: 5.1.1\r\n"
		     "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
		     "Last-Attempt-Date: ");
		want(name, s,
		     "\r\n\r\nFinal-Recipient: rfc822; carol@remote.test\r\n"
		     "Action: failed\r\n"
		     "Status: 5.4.4\r\n"
		     "Diagnostic-Code: x-zfarm; Host not found\r\n" DELIM);
		want_not(name, s, "Will-Retry-Until");
		/* the original, whole, as it was */
		want(name, s,
		     DELIM "Content-Description: Undelivered Message\r\n"
			   "Content-Type: message/rfc822\r\n"
			   "Content-Transfer-Encoding: 7bit\r\n\r\n");
		want(name, s,
		     "\r\n\r\n"
		     "Received: from x by y");
		want(name, s, "body line two\r\n" CLOSE);
		assert_true(scan.full);
		assert_false(scan.eightbit);
		strbuf_release(&out.sb);
	}
}

/* The third part: RET, size limit, 8-bit, odd originals. */
static void test_returned_part(void **state)
{
	static char big[4000];
	static const struct {
		const char *name;
		const char *ret;
		uint64_t limit;
		const char *original; /* NULL: big */
		bool full, eightbit;
		const char *present[3];
		const char *absent[2];
	} cases[] = {
	    {"ret unset",
	     "",
	     50000,
	     ORIGINAL,
	     true,
	     false,
	     {"Content-Type: message/rfc822\r\n", "body line one\r\n"},
	     {NULL}},
	    {"ret full",
	     "FULL",
	     50000,
	     ORIGINAL,
	     true,
	     false,
	     {"Content-Type: message/rfc822\r\n", "body line two\r\n"},
	     {NULL}},
	    {"ret hdrs",
	     "HDRS",
	     50000,
	     ORIGINAL,
	     false,
	     false,
	     {"Content-Type: text/rfc822-headers\r\n", "Subject: hello\r\n\tfolded\r\n" CLOSE},
	     {"body line"}},
	    {"ret hdrs lower case",
	     "hdrs",
	     50000,
	     ORIGINAL,
	     false,
	     false,
	     {"Content-Type: text/rfc822-headers\r\n"},
	     {"body line"}},
	    {"over the limit",
	     "FULL",
	     100,
	     ORIGINAL,
	     false,
	     false,
	     {"Content-Description: Message Headers\r\n", "Its header is attached"},
	     {"body line"}},
	    {"exactly the limit",
	     "",
	     sizeof(ORIGINAL) - 1,
	     ORIGINAL,
	     true,
	     false,
	     {"body line two\r\n" CLOSE},
	     {NULL}},
	    {"big over the limit",
	     "",
	     1000,
	     NULL,
	     false,
	     false,
	     {"Content-Type: text/rfc822-headers\r\n", "X-Big: 1\r\n" CLOSE},
	     {"xxxx"}},
	    {"8-bit body",
	     "",
	     50000,
	     "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n",
	     true,
	     true,
	     {"Content-Transfer-Encoding: 8bit\r\n\r\nSubject: caf\xc3\xa9"},
	     {NULL}},
	    {"8-bit body, headers only",
	     "HDRS",
	     50000,
	     "Subject: plain\r\n\r\nna\xc3\xafve\r\n",
	     false,
	     false,
	     {"Content-Transfer-Encoding: 7bit\r\n\r\nSubject: plain\r\n" CLOSE},
	     {"na\xc3\xafve"}},
	    {"bare LF and CR",
	     "",
	     50000,
	     "Subject: lf\n\nline\nother\rend",
	     true,
	     false,
	     {"Subject: lf\r\n\r\nline\r\nother\r\nend\r\n" CLOSE},
	     {NULL}},
	    {"no empty line",
	     "HDRS",
	     50000,
	     "Subject: a\r\nnot a header\r\nX-After: b\r\n",
	     false,
	     false,
	     {"Subject: a\r\n" CLOSE},
	     {"X-After"}},
	    {"no header at all",
	     "HDRS",
	     50000,
	     "\r\nbody only\r\n",
	     false,
	     false,
	     {"Content-Transfer-Encoding: 7bit\r\n\r\n" CLOSE},
	     {"body only"}},
	    {"empty original",
	     "",
	     50000,
	     "",
	     true,
	     false,
	     {"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" CLOSE},
	     {NULL}},
	    {"no final line end",
	     "",
	     50000,
	     "Subject: x\r\n\r\nlast",
	     true,
	     false,
	     {"\r\nlast\r\n" CLOSE},
	     {NULL}},
	};
	struct dsn_recipient r = RCPT_FAILED;

	(void)state;
	memcpy(big, "X-Big: 1\r\n\r\n", 12);
	memset(big + 12, 'x', sizeof(big) - 13);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *orig = cases[i].original ? cases[i].original : big;
		struct sink out = {STRBUF_INIT, 0};
		struct dsn_input in;
		struct dsn_scan scan;
		char err[256];
		const char *s;

		input_init(&in, &r, 1);
		in.ret = cases[i].ret;
		in.size_limit = cases[i].limit;
		assert_int_equal(build(&in, orig, strlen(orig), 5, &scan, &out, err, sizeof(err)),
				 0);
		s = strbuf_cstr(&out.sb);
		check_lines(cases[i].name, &out.sb);
		if (scan.full != cases[i].full || scan.eightbit != cases[i].eightbit)
			fail_msg("%s: got full=%d eightbit=%d, want %d %d", cases[i].name,
				 scan.full, scan.eightbit, cases[i].full, cases[i].eightbit);
		for (size_t k = 0; k < 3 && cases[i].present[k]; k++)
			want(cases[i].name, s, cases[i].present[k]);
		for (size_t k = 0; k < 2 && cases[i].absent[k]; k++)
			want_not(cases[i].name, s, cases[i].absent[k]);
		want_count(cases[i].name, s, DELIM, 3);
		want_count(cases[i].name, s, CLOSE, 1);
		strbuf_release(&out.sb);
	}
}

/* A header block longer than DSN_HEADER_MAX is cut at a whole line. */
static void test_header_cap(void **state)
{
	struct dsn_recipient r = RCPT_FAILED;
	struct strbuf orig = STRBUF_INIT;
	struct sink out = {STRBUF_INIT, 0};
	struct dsn_input in;
	struct dsn_scan scan;
	char err[256];
	const char *part;

	(void)state;
	for (unsigned i = 0; orig.len < 2 * DSN_HEADER_MAX; i++)
		strbuf_printf(&orig, "X-Line-%06u: %s\r\n", i,
			      "................................................................");
	strbuf_append_str(&orig, "\r\nbody\r\n");
	input_init(&in, &r, 1);
	in.ret = "HDRS";
	assert_int_equal(build(&in, orig.data, orig.len, 4096, &scan, &out, err, sizeof(err)), 0);
	check_lines("header cap", &out.sb);
	part = strstr(strbuf_cstr(&out.sb), "text/rfc822-headers\r\n");
	assert_non_null(part);
	part = strstr(part, "\r\n\r\n") + 4;
	if ((size_t)(strstr(part, CLOSE) - part) > DSN_HEADER_MAX)
		fail_msg("header part has %zu bytes, want <= %d",
			 (size_t)(strstr(part, CLOSE) - part), DSN_HEADER_MAX);
	want("header cap", part, "X-Line-000000: ");
	want_not("header cap", part, "body");
	assert_true(scan.header_lines > 100);
	strbuf_release(&orig);
	strbuf_release(&out.sb);
}

static void test_subject(void **state)
{
	static const struct {
		const char *actions[3];
		const char *subject;
	} cases[] = {
	    {{"failed"}, "Undelivered Mail Returned to Sender"},
	    {{"delayed", "failed"}, "Undelivered Mail Returned to Sender"},
	    {{"delivered", "delayed"}, "Delayed Mail (still being retried)"},
	    {{"delayed"}, "Delayed Mail (still being retried)"},
	    {{"delivered"}, "Successful Mail Delivery Report"},
	    {{"relayed", "delivered"}, "Successful Mail Delivery Report"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dsn_recipient r[3];
		struct dsn_input in;
		size_t n = 0;

		for (; n < 3 && cases[i].actions[n]; n++) {
			r[n] = RCPT_FAILED;
			r[n].action = cases[i].actions[n];
		}
		input_init(&in, r, n);
		if (strcmp(dsn_subject(&in), cases[i].subject) != 0)
			fail_msg("case %zu: got subject \"%s\", want \"%s\"", i, dsn_subject(&in),
				 cases[i].subject);
	}
}

static void test_delay_notice(void **state)
{
	struct dsn_recipient r[2] = {RCPT_DELAYED, RCPT_DELIVERED};
	struct sink out = {STRBUF_INIT, 0};
	struct dsn_input in;
	struct dsn_scan scan;
	char err[256];
	const char *s;

	(void)state;
	input_init(&in, r, 2);
	in.retry_until = 1700400000;
	assert_int_equal(build(&in, ORIGINAL, strlen(ORIGINAL), 100, &scan, &out, err, sizeof(err)),
			 0);
	s = strbuf_cstr(&out.sb);
	check_lines("delay", &out.sb);
	want("delay", s, "\r\nSubject: Delayed Mail (still being retried)\r\n");
	want("delay", s, "YOU DO NOT NEED TO RESEND YOUR MESSAGE");
	want("delay", s, "Delivery will be retried until ");
	want("delay", s,
	     "Final-Recipient: rfc822; dave@slow.test\r\nAction: delayed\r\n"
	     "Status: 4.4.1\r\nDiagnostic-Code: x-zfarm; connection timed out\r\n"
	     "Last-Attempt-Date: ");
	want_count("delay", s, "\r\nWill-Retry-Until: ", 1); /* the delayed one only */
	want("delay", s,
	     "Final-Recipient: rfc822; erin@ok.test\r\nAction: delivered\r\n"
	     "Status: 2.0.0\r\nDiagnostic-Code: smtp; 250 ok\r\n" DELIM);
	strbuf_release(&out.sb);
}

/* Peer text cannot add lines or boundaries; long text stays within 998. */
static void test_sanitised(void **state)
{
	static char longtext[5000];
	struct dsn_recipient r[2] = {RCPT_FAILED, RCPT_LOCAL};
	struct sink out = {STRBUF_INIT, 0};
	struct dsn_input in;
	struct dsn_scan scan;
	char err[256];
	const char *s;

	(void)state;
	memset(longtext, 'L', sizeof(longtext) - 1);
	r[0].text = "bad\r\nInjected: yes\r\n\r\n--" BOUNDARY "--\r\n\x01\x1b\x7f\t\xff end";
	r[0].address = "evil\r\nBcc: x@y@remote.test";
	r[1].text = longtext;
	r[1].orcpt = "rfc822;a\nb";
	input_init(&in, r, 2);
	in.notice_to = "s@example.org>\r\nBcc: <victim@example.net";
	in.envid = "E\r\nX: y";
	in.reporting_mta = "mx\r\nX-Host: y";
	assert_int_equal(build(&in, ORIGINAL, strlen(ORIGINAL), 100, &scan, &out, err, sizeof(err)),
			 0);
	s = strbuf_cstr(&out.sb);
	check_lines("sanitised", &out.sb);
	want_not("sanitised", s, "\r\nInjected:");
	want_not("sanitised", s, "\r\nBcc:");
	want_not("sanitised", s, "\r\nX: y");
	want_not("sanitised", s, "\r\nX-Host:");
	want_count("sanitised", s, DELIM, 3);
	want_count("sanitised", s, CLOSE, 1);
	want("sanitised", s,
	     "Diagnostic-Code: smtp; 550 bad??Injected: yes???"
	     "?--");
	want("sanitised", s, "?????? end\r\n");
	want("sanitised", s, "Final-Recipient: rfc822; evil??Bcc: x@y@remote.test\r\n");
	want("sanitised", s, "To: <s@example.org>??Bcc: <victim@example.net>\r\n");
	want("sanitised", s, "Original-Recipient: rfc822;a?b\r\n");
	want("sanitised", s, "Diagnostic-Code: x-zfarm; LLLL");
	strbuf_release(&out.sb);
}

/* A failing writer or reader is reported, not ignored. */
static void test_errors(void **state)
{
	struct dsn_recipient r = RCPT_FAILED;
	struct sink out = {STRBUF_INIT, 1500};
	struct dsn_input in;
	struct dsn_scan scan;
	char err[256] = "";

	(void)state;
	input_init(&in, &r, 1);
	assert_int_equal(build(&in, ORIGINAL, strlen(ORIGINAL), 100, &scan, &out, err, sizeof(err)),
			 -1);
	if (!strstr(err, "disk full"))
		fail_msg("got reason \"%s\", want disk full", err);
	strbuf_release(&out.sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_structure),	 cmocka_unit_test(test_returned_part),
	    cmocka_unit_test(test_header_cap),	 cmocka_unit_test(test_subject),
	    cmocka_unit_test(test_delay_notice), cmocka_unit_test(test_sanitised),
	    cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
