/* Tests for smtpserver/smtp_body.c: end of data, smuggling, unstuffing, limits, splits, fuzzing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpserver/smtp_body.h"

/* The table and its macros are laid out by hand, one row a line. */
/* clang-format off */

struct row {
	const char *name;
	enum smtp_body_mode mode;
	const char *in;
	size_t len;
	struct smtp_body_limits lim;
	size_t consumed;        /* wanted */
	bool end;
	const char *out;        /* RAW: including smtp_body_finish's octets */
	size_t out_len;
	enum smtp_body_error err; /* RAW: after smtp_body_finish */
	/* checked when not 0, as the wanted value + 1 */
	uint64_t size1, hb1, hops1, inh1;
};

#define SZ(n)   .size1 = (uint64_t)(n) + 1
#define HB(n)   .hb1 = (uint64_t)(n) + 1
#define HOPS(n) .hops1 = (uint64_t)(n) + 1
#define INH(b)  .inh1 = (uint64_t)(b) + 1
#define LIM(size, line, hdr, hops) .lim = { size, line, hdr, hops }

/* DOT mode, the end found after c octets. */
#define DE(nm, i, c, o, e, ...) { .name = nm, .mode = SMTP_BODY_DOT, .in = i, .len = sizeof(i) - 1, \
	.consumed = c, .end = true, .out = o, .out_len = sizeof(o) - 1, .err = e, __VA_ARGS__ }
/* DOT mode, no end: everything consumed. */
#define DN(nm, i, o, e, ...) { .name = nm, .mode = SMTP_BODY_DOT, .in = i, .len = sizeof(i) - 1, \
	.consumed = sizeof(i) - 1, .end = false, .out = o, .out_len = sizeof(o) - 1, .err = e, __VA_ARGS__ }
/* RAW mode, then smtp_body_finish. */
#define RW(nm, i, o, e, ...) { .name = nm, .mode = SMTP_BODY_RAW, .in = i, .len = sizeof(i) - 1, \
	.consumed = sizeof(i) - 1, .end = false, .out = o, .out_len = sizeof(o) - 1, .err = e, __VA_ARGS__ }

#define OK   SMTP_BODY_OK
#define BCR  SMTP_BODY_BARE_CR
#define BLF  SMTP_BODY_BARE_LF
#define NUL  SMTP_BODY_NUL
#define LONG SMTP_BODY_LINE_TOO_LONG
#define HDR  SMTP_BODY_HEADER_TOO_LARGE
#define HOP  SMTP_BODY_TOO_MANY_HOPS
#define BIG  SMTP_BODY_TOO_BIG

#define RCV3 "Received: a\r\nReceived: b\r\nReceived: c\r\n"

static const struct row rows[] = {
	/* legitimate ends */
	DE("empty message", ".\r\n", 3, "", OK, SZ(0), HB(0), HOPS(0), INH(1)),
	DE("empty line only", "\r\n.\r\n", 5, "\r\n", OK, SZ(2), HB(0), INH(0)),
	DE("one line", "a\r\n.\r\n", 6, "a\r\n", OK, SZ(3), HB(0), INH(0)),
	DE("header and body", "From: x\r\nSubject: y\r\n\r\nbody\r\n.\r\n", 32, "From: x\r\nSubject: y\r\n\r\nbody\r\n", OK, SZ(29), HB(21), HOPS(0), INH(0)),
	DE("dot-stuffed lines", "..a\r\n.b\r\n..\r\n.\r\n", 16, ".a\r\nb\r\n.\r\n", OK, SZ(10)),
	DE("line '..' alone", "..\r\n.\r\n", 7, ".\r\n", OK, SZ(3)),
	DE("'..' after a line", "a\r\n..\r\n.\r\n", 10, "a\r\n.\r\n", OK, SZ(6)),
	DE("'...' is '..'", "...\r\n.\r\n", 8, "..\r\n", OK, SZ(4)),
	DE("dot in mid-line kept", "a.b\r\na.\r\n.\r\n", 12, "a.b\r\na.\r\n", OK, SZ(9)),
	DE("pipelined MAIL after end", "a\r\n.\r\nMAIL FROM:<x>\r\n", 6, "a\r\n", OK, SZ(3)),
	DE("pipelined after empty message", ".\r\nMAIL FROM:<x>\r\n", 3, "", OK),
	DE("pipelined after a second end", "a\r\n.\r\n.\r\n", 6, "a\r\n", OK),
	DE("dot-space line", ". \r\n.\r\n", 7, " \r\n", OK, SZ(3), HB(3), INH(1)),
	/* smuggling: none of these ends the data */
	DN("LF.LF", "a\n.\nMAIL FROM:<x>\r\n", "a", BLF, SZ(19)),
	DE("LF.LF then the real end", "a\n.\nMAIL FROM:<x>\r\n.\r\nRSET\r\n", 22, "a", BLF, SZ(19)),
	DE("LF.CRLF", "a\n.\r\nMAIL\r\n.\r\n", 14, "a", BLF, SZ(11)),
	DE("CR.CRLF", "a\r.\r\n.\r\n", 8, "a\r", BCR, SZ(5)),
	DE("CRLF.LF", "a\r\n.\nMAIL\r\n.\r\n", 14, "a\r\n", BLF, SZ(10)),
	DE("CRLF.CR x", "a\r\n.\rMAIL\r\n.\r\n", 14, "a\r\n\r", BCR, SZ(10)),
	DE("CRLF.CR CR LF", "a\r\n.\r\r\n.\r\n", 10, "a\r\n\r", BCR, SZ(6)),
	DE("CRLF.NUL CRLF", "a\r\n.\0\r\n.\r\n", 10, "a\r\n", NUL, SZ(6)),
	DE("CR CRLF.CRLF ends", "a\r\r\n.\r\n", 7, "a\r", BCR, SZ(4)),
	DN("LF.CRLF at start", "\n.\r\n", "", BLF, SZ(4)),
	DN(".LF at start", ".\nMAIL\r\n", "", BLF, SZ(7)),
	DN(".CR x at start", ".\rx\r\n", "\r", BCR, SZ(4)),
	DN(".NUL CRLF at start", ".\0\r\n", "", NUL, SZ(3)),
	DN("dot alone, no CRLF", "a\r\n.", "a\r\n", OK, SZ(3)),
	DN(".CR pending", "a\r\n.\r", "a\r\n", OK, SZ(3)),
	DN(".CR pending at start", ".\r", "", OK, SZ(0)),
	DN("CR pending", "a\r", "a\r", OK, SZ(2)),
	DN("empty input", "", "", OK, SZ(0), HB(0), HOPS(0), INH(1)),
	DN("no end", "a\r\nb\r\n", "a\r\nb\r\n", OK, SZ(6)),
	DN("CRLF..CRLF is not the end", "a\r\n..\r\n", "a\r\n.\r\n", OK, SZ(6)),
	/* first error kept, end still found */
	DE("NUL", "a\0b\r\n.\r\n", 8, "a", NUL, SZ(5)),
	DE("NUL before bare LF", "a\0b\nc\r\n.\r\n", 10, "a", NUL, SZ(7)),
	DE("bare LF before NUL", "a\nb\0c\r\n.\r\n", 10, "a", BLF, SZ(7)),
	DE("bare CR before NUL", "a\r\0\r\n.\r\n", 8, "a\r", BCR, SZ(5)),
	/* header */
	DE("continuation lines", "A: 1\r\n 2\r\n\t3\r\nB:\r\n\r\nx\r\n.\r\n", 26, "A: 1\r\n 2\r\n\t3\r\nB:\r\n\r\nx\r\n", OK, HB(18), INH(0)),
	DE("header ended by a non-field", "A: 1\r\nnot a field\r\nB: 2\r\n.\r\n", 28, "A: 1\r\nnot a field\r\nB: 2\r\n", OK, HB(6), HOPS(0), INH(0)),
	DE("Received counting", "Received: a\r\nRECEIVED: b\r\nreceived:\r\nReceived-SPF: pass\r\nX-Received: c\r\nReceivedX: d\r\n\r\nReceived: body\r\n.\r\n", 107, "Received: a\r\nRECEIVED: b\r\nreceived:\r\nReceived-SPF: pass\r\nX-Received: c\r\nReceivedX: d\r\n\r\nReceived: body\r\n", OK, HB(86), HOPS(3), INH(0)),
	DE("'Received :' ends the header", "Received : x\r\nReceived: y\r\n.\r\n", 30, "Received : x\r\nReceived: y\r\n", OK, HB(0), HOPS(0), INH(0)),
	DE("'Receive:' not counted", "Receive: x\r\nReceivedd: y\r\n\r\n.\r\n", 31, "Receive: x\r\nReceivedd: y\r\n\r\n", OK, HB(26), HOPS(0), INH(0)),
	DE("8-octet name not Received", "Deceived: x\r\nReceivex: y\r\nxECEIVED: z\r\n\r\n.\r\n", 44, "Deceived: x\r\nReceivex: y\r\nxECEIVED: z\r\n\r\n", OK, HB(39), HOPS(0), INH(0)),
	DE("stuffed header field", ".Received: x\r\n.\r\n", 17, "Received: x\r\n", OK, HB(13), HOPS(1), INH(1)),
	DE("':' first ends the header", ":x\r\n.\r\n", 7, ":x\r\n", OK, HB(0), INH(0)),
	DE("field with NUL still counted", "A:\0\r\n\r\n.\r\n", 10, "A:", NUL, HB(5), INH(0)),
	DN("name not finished", "Received", "Received", OK, HB(0), HOPS(0), INH(1)),
	DN("CR at line start pending", "A: 1\r\n\r", "A: 1\r\n\r", OK, HB(6), INH(1)),
	DN("empty line ends the header", "A: 1\r\n\r\nB: 2\r\n", "A: 1\r\n\r\nB: 2\r\n", OK, HB(6), INH(0)),
	/* line_max: content octets after unstuffing, CR LF not counted */
	DE("line at line_max", "abc\r\n.\r\n", 8, "abc\r\n", OK, LIM(0, 3, 0, 0)),
	DE("line over line_max", "abcd\r\ne\r\n.\r\n", 12, "abc", LONG, LIM(0, 3, 0, 0), SZ(9)),
	DE("stuffed line at line_max", "....\r\n.\r\n", 9, "...\r\n", OK, LIM(0, 3, 0, 0)),
	DE("stuffed line over line_max", ".....\r\n.\r\n", 10, "...", LONG, LIM(0, 3, 0, 0)),
	DE("line_max per line", "abc\r\nabc\r\n.\r\n", 13, "abc\r\nabc\r\n", OK, LIM(0, 3, 0, 0)),
	/* header_max */
	DE("header at header_max", "A: 1\r\n\r\nbody\r\n.\r\n", 17, "A: 1\r\n\r\nbody\r\n", OK, LIM(0, 0, 6, 0), HB(6)),
	DE("header over header_max", "A: 1\r\n\r\nbody\r\n.\r\n", 17, "A: 1\r", HDR, LIM(0, 0, 5, 0), HB(6)),
	DE("header over at the name", "AB: x\r\n.\r\n", 10, "AB", HDR, LIM(0, 0, 1, 0), HB(7)),
	/* hops_max */
	DE("hops at hops_max", RCV3 "\r\n.\r\n", 44, RCV3 "\r\n", OK, LIM(0, 0, 0, 3), HOPS(3)),
	DE("hops over hops_max", RCV3 "\r\n.\r\n", 44, "Received: a\r\nReceived: b\r\nReceived", HOP, LIM(0, 0, 0, 2), HOPS(3)),
	/* size_max */
	DE("size at size_max", "abc\r\n.\r\n", 8, "abc\r\n", OK, LIM(5, 0, 0, 0), SZ(5)),
	DE("size over size_max", "abc\r\nxyz\r\n.\r\n", 13, "abc\r", BIG, LIM(4, 0, 0, 0), SZ(10)),
	DE("stuffing not in size", "..\r\n.\r\n", 7, ".\r\n", OK, LIM(3, 0, 0, 0), SZ(3)),
	DE("size_max 1", "ab\r\n.\r\n", 7, "a", BIG, LIM(1, 0, 0, 0), SZ(4)),
	/* RAW mode, smtp_body_finish included */
	RW("raw empty", "", "", OK, SZ(0), INH(1)),
	RW("raw ends with CRLF", "a\r\n", "a\r\n", OK, SZ(3)),
	RW("raw ends mid-line", "a", "a\r\n", OK, SZ(3)),
	RW("raw ends with CR", "a\r", "a\r", BCR, SZ(2)),
	RW("raw ends with CR alone", "\r", "\r", BCR, SZ(1)),
	RW("raw: no dot handling", "a\r\n.\r\nMAIL\r\n", "a\r\n.\r\nMAIL\r\n", OK, SZ(12)),
	RW("raw: no unstuffing", "..x\r\n.\r\n", "..x\r\n.\r\n", OK, SZ(8)),
	RW("raw bare LF", "a\nb", "a", BLF, SZ(5)),
	RW("raw bare CR", "a\rb\r\n", "a\r", BCR, SZ(5)),
	RW("raw bare LF at the end", "a\r\n\n", "a\r\n", BLF, SZ(6)),
	RW("raw NUL", "a\0", "a", NUL, SZ(4)),
	RW("raw header unterminated", "A: 1", "A: 1\r\n", OK, HB(6), INH(1)),
	RW("raw header", "Received: x\r\n\r\nb", "Received: x\r\n\r\nb\r\n", OK, HB(13), HOPS(1), INH(0)),
	RW("raw size at size_max", "abc", "abc\r\n", OK, LIM(5, 0, 0, 0), SZ(5)),
	RW("raw size over by finish", "abc", "abc", BIG, LIM(4, 0, 0, 0), SZ(5)),
	RW("raw line over line_max", "abcd", "abc", LONG, LIM(0, 3, 0, 0)),
};

/* clang-format on */

struct result {
	size_t consumed;
	bool end;
	char *out;
	size_t out_len;
	struct smtp_body b;
};

/*
 * Feed in[0..len) cut at the sorted points cuts[0..ncuts), each piece in its
 * own heap buffer of exactly the piece's size, so ASan catches any write past
 * the promised room; stops feeding after the end; RAW: then finishes.
 */
static void run(enum smtp_body_mode mode, const struct smtp_body_limits *lim, const char *in,
		size_t len, const size_t *cuts, size_t ncuts, struct result *r)
{
	size_t start = 0, k;

	smtp_body_init(&r->b, mode, lim);
	r->out = malloc(len + 2);
	assert_non_null(r->out);
	r->out_len = 0;
	r->consumed = 0;
	r->end = false;
	for (k = 0; k <= ncuts && !r->end; k++) {
		size_t stop = k < ncuts ? cuts[k] : len, n = stop - start, got, out_len = 99;
		char *piece = malloc(n ? n : 1), *out = malloc(n ? n : 1);
		bool end = true;

		assert_non_null(piece);
		assert_non_null(out);
		memcpy(piece, in + start, n);
		got = smtp_body_feed(&r->b, piece, n, out, &out_len, &end);
		if (got > n || out_len > n || (got < n && !end))
			fail_msg("feed of %zu octets: got consumed %zu out %zu end %d", n, got,
				 out_len, end);
		if (mode == SMTP_BODY_RAW && end)
			fail_msg("RAW mode: got end, want none");
		memcpy(r->out + r->out_len, out, out_len);
		r->out_len += out_len;
		r->consumed += got;
		r->end = end;
		free(piece);
		free(out);
		start = stop;
	}
	if (mode == SMTP_BODY_RAW) {
		char tail[2];
		size_t n = smtp_body_finish(&r->b, tail);

		if (n != 0 && n != 2)
			fail_msg("finish: got %zu, want 0 or 2", n);
		memcpy(r->out + r->out_len, tail, n);
		r->out_len += n;
	} else {
		char tail[2];

		if (smtp_body_finish(&r->b, tail) != 0)
			fail_msg("finish in DOT mode: got octets, want 0");
	}
}

static void show(char *dst, size_t size, const char *s, size_t len)
{
	size_t i, j = 0;

	for (i = 0; i < len && j + 5 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r')
			j += (size_t)snprintf(dst + j, size - j, "\\r");
		else if (c == '\n')
			j += (size_t)snprintf(dst + j, size - j, "\\n");
		else if (c < 32 || c > 126)
			j += (size_t)snprintf(dst + j, size - j, "\\%o", c);
		else
			dst[j++] = (char)c;
	}
	dst[j] = '\0';
}

static void check_result(size_t i, const char *how, const struct result *r)
{
	const struct row *w = &rows[i];
	char got[512], want[512];

	if (r->consumed != w->consumed || r->end != w->end)
		fail_msg("row %zu (%s, %s): got consumed %zu end %d, want %zu %d", i, w->name, how,
			 r->consumed, r->end, w->consumed, w->end);
	if (r->out_len != w->out_len || memcmp(r->out, w->out, w->out_len) != 0) {
		show(got, sizeof(got), r->out, r->out_len);
		show(want, sizeof(want), w->out, w->out_len);
		fail_msg("row %zu (%s, %s): got output \"%s\", want \"%s\"", i, w->name, how, got,
			 want);
	}
	if (r->b.error != w->err)
		fail_msg("row %zu (%s, %s): got error %d, want %d", i, w->name, how,
			 (int)r->b.error, (int)w->err);
	if (w->size1 && r->b.size != w->size1 - 1)
		fail_msg("row %zu (%s, %s): got size %llu, want %llu", i, w->name, how,
			 (unsigned long long)r->b.size, (unsigned long long)(w->size1 - 1));
	if (w->hb1 && r->b.header_bytes != w->hb1 - 1)
		fail_msg("row %zu (%s, %s): got header_bytes %llu, want %llu", i, w->name, how,
			 (unsigned long long)r->b.header_bytes, (unsigned long long)(w->hb1 - 1));
	if (w->hops1 && r->b.hops != w->hops1 - 1)
		fail_msg("row %zu (%s, %s): got hops %u, want %llu", i, w->name, how, r->b.hops,
			 (unsigned long long)(w->hops1 - 1));
	if (w->inh1 && r->b.in_header != (w->inh1 - 1 != 0))
		fail_msg("row %zu (%s, %s): got in_header %d, want %d", i, w->name, how,
			 r->b.in_header, (int)(w->inh1 - 1));
}

static void test_table(void **state)
{
	size_t i, k, n = sizeof(rows) / sizeof(rows[0]), runs = 0;

	(void)state;
	assert_true(n >= 70);
	for (i = 0; i < n; i++) {
		const struct row *w = &rows[i];
		struct result r;
		size_t *cuts = malloc((w->len + 1) * sizeof(*cuts));
		char how[64];

		assert_non_null(cuts);
		run(w->mode, &w->lim, w->in, w->len, NULL, 0, &r);
		check_result(i, "whole", &r);
		free(r.out);
		runs++;
		/* every 2-way split, the empty pieces included */
		for (k = 0; k <= w->len; k++) {
			cuts[0] = k;
			run(w->mode, &w->lim, w->in, w->len, cuts, 1, &r);
			snprintf(how, sizeof(how), "split at %zu", k);
			check_result(i, how, &r);
			free(r.out);
			runs++;
		}
		/* byte by byte */
		for (k = 0; k + 1 < w->len; k++)
			cuts[k] = k + 1;
		run(w->mode, &w->lim, w->in, w->len, cuts, w->len ? w->len - 1 : 0, &r);
		check_result(i, "byte by byte", &r);
		free(r.out);
		runs++;
		free(cuts);
	}
	printf("[ INFO     ] %zu table rows, %zu runs\n", n, runs);
}

/* No limits at all when lim is NULL; an error after the end is not possible. */
static void test_null_limits(void **state)
{
	static char big[200000];
	struct smtp_body b;
	char *out = malloc(sizeof(big));
	size_t i, got, out_len;
	bool end;

	(void)state;
	assert_non_null(out);
	for (i = 0; i < sizeof(big); i++)
		big[i] = i % 1000 == 998 ? '\r' : i % 1000 == 999 ? '\n' : 'x';
	memcpy(big + sizeof(big) - 5, "\r\n.\r\n", 5);
	smtp_body_init(&b, SMTP_BODY_DOT, NULL);
	got = smtp_body_feed(&b, big, sizeof(big), out, &out_len, &end);
	assert_true(end);
	assert_int_equal(got, sizeof(big));
	assert_int_equal(out_len, sizeof(big) - 3);
	assert_memory_equal(out, big, out_len);
	assert_int_equal(b.error, SMTP_BODY_OK);
	assert_int_equal(b.size, sizeof(big) - 3);
	free(out);
}

static void test_reply(void **state)
{
	static const struct {
		enum smtp_body_error e;
		int code;
		const char *enh, *text;
	} want[] = {
	    {SMTP_BODY_OK, 250, "2.0.0", "Ok"},
	    {SMTP_BODY_BARE_CR, 550, "5.6.0",
	     "Message contains a bare CR (only CR LF ends a line)"},
	    {SMTP_BODY_BARE_LF, 550, "5.6.0",
	     "Message contains a bare LF (only CR LF ends a line)"},
	    {SMTP_BODY_NUL, 550, "5.6.0", "Message contains a NUL octet"},
	    {SMTP_BODY_LINE_TOO_LONG, 550, "5.6.0", "Message line longer than the limit"},
	    {SMTP_BODY_HEADER_TOO_LARGE, 552, "5.3.4", "Message header size exceeds limit"},
	    {SMTP_BODY_TOO_MANY_HOPS, 554, "5.4.0", "Too many hops"},
	    {SMTP_BODY_TOO_BIG, 552, "5.3.4", "Message size exceeds fixed limit"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int code = 0;
		const char *enh = NULL, *text = NULL;

		smtp_body_reply(want[i].e, &code, &enh, &text);
		if (code != want[i].code || enh == NULL || strcmp(enh, want[i].enh) != 0 ||
		    text == NULL || strcmp(text, want[i].text) != 0)
			fail_msg("reply %d: got %d %s %s, want %d %s %s", (int)want[i].e, code,
				 enh ? enh : "(null)", text ? text : "(null)", want[i].code,
				 want[i].enh, want[i].text);
	}
}

/*
 * The reference: DOT mode decoded the slow way, on the whole input at once.
 *  1. The end is ".\r\n" at offset 0, else the first "\r\n.\r\n"; the
 *     terminator line starts at d.
 *  2. The content is in[0..d) without the "." at each line start (offset
 *     0 or after "\r\n").  Without an end, a last line ".\r" holds its CR
 *     back (it may still become the end), so that CR is not content yet.
 *  3. The first error is at the first content octet that shows one: the
 *     octet after a CR that is not LF (bare CR), an LF not after a CR, a
 *     NUL, the octet that makes a line's non-CR/LF octets exceed line_max,
 *     the octet that makes the content exceed size_max - in that order for
 *     the same octet.  The output is the content before that octet.
 *  4. The header: the content's CRLF-ended lines from the start, while each
 *     is a continuation or "name:"; an unfinished last line counts only
 *     once it is known to be one.
 */
struct ref {
	size_t consumed;
	bool end;
	char out[128];
	size_t out_len;
	enum smtp_body_error err;
	uint64_t size, hb;
	unsigned hops;
	bool in_header;
};

static bool ref_name_char(char c)
{
	return (unsigned char)c >= 33 && (unsigned char)c <= 126 && c != ':';
}

static void ref_dot(const char *in, size_t len, const struct smtp_body_limits *lim, struct ref *r)
{
	char c[128];
	size_t d = len, n = 0, i, j, pos;

	memset(r, 0, sizeof(*r));
	r->consumed = len;
	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0) {
		d = 0;
		r->consumed = 3;
		r->end = true;
	} else {
		for (i = 0; i + 5 <= len; i++)
			if (memcmp(in + i, "\r\n.\r\n", 5) == 0) {
				d = i + 2;
				r->consumed = i + 5;
				r->end = true;
				break;
			}
	}
	for (i = 0; i < d; i++) {
		bool line_start = i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n');

		if (!(line_start && in[i] == '.'))
			c[n++] = in[i];
	}
	if (!r->end && d >= 2 && in[d - 1] == '\r' && in[d - 2] == '.' &&
	    (d == 2 || (d >= 4 && in[d - 4] == '\r' && in[d - 3] == '\n')))
		n--;
	r->size = n;

	r->err = SMTP_BODY_OK;
	for (j = 0; j < n && r->err == SMTP_BODY_OK; j++) {
		size_t ls = 0, count = 0, k;

		for (k = 0; k + 1 < j; k++)
			if (c[k] == '\r' && c[k + 1] == '\n')
				ls = k + 2;
		for (k = ls; k <= j; k++)
			if (c[k] != '\r' && c[k] != '\n')
				count++;
		if (j > 0 && c[j - 1] == '\r' && c[j] != '\n')
			r->err = SMTP_BODY_BARE_CR;
		else if (c[j] == '\n' && (j == 0 || c[j - 1] != '\r'))
			r->err = SMTP_BODY_BARE_LF;
		else if (c[j] == '\0')
			r->err = SMTP_BODY_NUL;
		else if (lim->line_max && c[j] != '\r' && c[j] != '\n' && count > lim->line_max)
			r->err = SMTP_BODY_LINE_TOO_LONG;
		else if (lim->size_max && j + 1 > lim->size_max)
			r->err = SMTP_BODY_TOO_BIG;
		else
			continue;
		break;
	}
	memcpy(r->out, c, j);
	r->out_len = j;

	r->in_header = true;
	for (pos = 0; r->in_header;) {
		size_t e, ll, k;
		bool term = false;

		for (e = pos; e + 1 < n; e++)
			if (c[e] == '\r' && c[e + 1] == '\n') {
				term = true;
				break;
			}
		if (!term)
			e = n;
		ll = e - pos;
		for (k = pos; k < e && ref_name_char(c[k]); k++)
			;
		if (!term) {
			if (ll == 0 || (ll == 1 && c[pos] == '\r') || k == e)
				break; /* not known yet */
		} else if (ll == 0) {
			r->in_header = false; /* the empty line */
			break;
		}
		if (c[pos] == ' ' || c[pos] == '\t') {
			r->hb += ll + (term ? 2 : 0);
		} else if (k > pos && c[k] == ':') {
			r->hb += ll + (term ? 2 : 0);
			if (k - pos == 8 && strncasecmp(c + pos, "received", 8) == 0)
				r->hops++;
		} else {
			r->in_header = false;
		}
		if (!term)
			break;
		pos = e + 2;
	}
}

static uint64_t fuzz_state = 0x9E3779B97F4A7C15ull;

static unsigned fuzz_rand(void)
{
	fuzz_state ^= fuzz_state << 13;
	fuzz_state ^= fuzz_state >> 7;
	fuzz_state ^= fuzz_state << 17;
	return (unsigned)(fuzz_state >> 11);
}

static void fuzz_check(size_t t, const char *how, const char *in, size_t len,
		       const struct smtp_body_limits *lim, const struct ref *want,
		       const struct result *got)
{
	char s[512], a[512], b[512];

	if (got->consumed == want->consumed && got->end == want->end &&
	    got->out_len == want->out_len && memcmp(got->out, want->out, want->out_len) == 0 &&
	    got->b.error == want->err && got->b.size == want->size &&
	    got->b.header_bytes == want->hb && got->b.hops == want->hops &&
	    got->b.in_header == want->in_header)
		return;
	show(s, sizeof(s), in, len);
	show(a, sizeof(a), got->out, got->out_len);
	show(b, sizeof(b), want->out, want->out_len);
	fail_msg("fuzz %zu (%s, line_max %zu size_max %llu) \"%s\": got consumed %zu end %d out "
		 "\"%s\" error %d size %llu hb %llu hops %u inh %d, want %zu %d \"%s\" %d %llu "
		 "%llu %u %d",
		 t, how, lim->line_max, (unsigned long long)lim->size_max, s, got->consumed,
		 got->end, a, (int)got->b.error, (unsigned long long)got->b.size,
		 (unsigned long long)got->b.header_bytes, got->b.hops, got->b.in_header,
		 want->consumed, want->end, b, (int)want->err, (unsigned long long)want->size,
		 (unsigned long long)want->hb, want->hops, want->in_header);
}

static void test_fuzz(void **state)
{
	static const char alphabet[] = {'\r', '\n', '.', 'a', '\0', ':', ' '};
	/* pieces that make ends and near-ends likely */
	static const char *const pieces[] = {"\r\n", "\r\n.", ".\r\n", "\r\n.\r\n", "\n.\n"};
	static const struct smtp_body_limits lims[] = {{0, 0, 0, 0}, {24, 3, 0, 0}, {6, 0, 0, 0}};
	size_t t, ends = 0, errs[SMTP_BODY_TOO_BIG + 1] = {0};

	(void)state;
	for (t = 0; t < 20000; t++) {
		char in[64];
		size_t len = 0, target = fuzz_rand() % 40, l, k, cuts[3];

		while (len < target) {
			if (fuzz_rand() % 4 == 0) {
				const char *p = pieces[fuzz_rand() % 5];

				if (len + strlen(p) > sizeof(in))
					break;
				memcpy(in + len, p, strlen(p));
				len += strlen(p);
			} else {
				in[len++] = alphabet[fuzz_rand() % sizeof(alphabet)];
			}
		}
		for (l = 0; l < 3; l++) {
			struct ref want;
			struct result got;

			ref_dot(in, len, &lims[l], &want);
			if (want.end)
				ends++;
			errs[want.err]++;
			run(SMTP_BODY_DOT, &lims[l], in, len, NULL, 0, &got);
			fuzz_check(t, "whole", in, len, &lims[l], &want, &got);
			free(got.out);
			{
				size_t *bb = malloc((len + 1) * sizeof(*bb));

				assert_non_null(bb);
				for (k = 0; k + 1 < len; k++)
					bb[k] = k + 1;
				run(SMTP_BODY_DOT, &lims[l], in, len, bb, len ? len - 1 : 0, &got);
				fuzz_check(t, "byte by byte", in, len, &lims[l], &want, &got);
				free(got.out);
				free(bb);
			}
			cuts[0] = len ? fuzz_rand() % (len + 1) : 0;
			cuts[1] = len ? fuzz_rand() % (len + 1) : 0;
			if (cuts[1] < cuts[0]) {
				k = cuts[0];
				cuts[0] = cuts[1];
				cuts[1] = k;
			}
			run(SMTP_BODY_DOT, &lims[l], in, len, cuts, 2, &got);
			fuzz_check(t, "3 pieces", in, len, &lims[l], &want, &got);
			free(got.out);
		}
	}
	printf("[ INFO     ] 20000 random inputs x 3 limit sets: %zu ends; errors ok %zu cr %zu "
	       "lf %zu nul %zu long %zu big %zu\n",
	       ends, errs[SMTP_BODY_OK], errs[SMTP_BODY_BARE_CR], errs[SMTP_BODY_BARE_LF],
	       errs[SMTP_BODY_NUL], errs[SMTP_BODY_LINE_TOO_LONG], errs[SMTP_BODY_TOO_BIG]);
	/* the generator must reach every class, or the comparison proves little */
	assert_true(ends > 1000);
	for (t = SMTP_BODY_OK; t <= SMTP_BODY_TOO_BIG; t++)
		if (t != SMTP_BODY_HEADER_TOO_LARGE && t != SMTP_BODY_TOO_MANY_HOPS)
			assert_true(errs[t] > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_null_limits),
	    cmocka_unit_test(test_reply),
	    cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
