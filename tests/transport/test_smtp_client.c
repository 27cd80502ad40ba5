/*
 * Tests for transport/smtp_client.c (the pure parts: reply parser,
 * enhanced codes, one-line format, EHLO capabilities, xtext, MAIL/RCPT
 * building; and how a session writes: at once when the socket takes it,
 * through the bufferevent when it is full) and transport/conncache.c
 * (keys, eviction, expiry on a real event base, driven with a deadline).
 * The session engine's protocol is driven against scripted servers by
 * tests/transport/test_smtp.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "common/clock.h"
#include "common/qstore.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "transport/conncache.h"
#include "transport/smtp_client.h"
#include "tests/common/evtest.h"
#include "tests/transport/ram_message.h"

/* feed - every line of text ("\n"-separated) into r; the last feed's result */
static int feed(struct smtp_reply *r, const char *text, char *err, size_t errlen)
{
	const char *line = text;
	int got = 0;

	while (line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);

		got = smtp_reply_feed(r, line, n, err, errlen);
		if (got != 0)
			return got;
		line = nl ? nl + 1 : NULL;
	}
	return got;
}

static void test_reply_parse(void **state)
{
	static const struct {
		const char *in;
		int want;
		unsigned code, nlines;
		const char *text, *enhanced, *oneline;
	} cases[] = {
	    {"250 ok", 1, 250, 1, "ok", "2.0.0", "250 ok"},
	    {"250", 1, 250, 1, "", "2.0.0", "250"},
	    {"550 5.1.1 <x@y>: user unknown", 1, 550, 1, "5.1.1 <x@y>: user unknown", "5.1.1",
	     "550 5.1.1 <x@y>: user unknown"},
	    {"250-mx.example.org\n250-PIPELINING\n250 SIZE 1000", 1, 250, 3,
	     "mx.example.org\nPIPELINING\nSIZE 1000", "2.0.0",
	     "250 mx.example.org PIPELINING SIZE 1000"},
	    {"550-5.7.1 first\n550-5.7.1 second\n550 5.7.1 third", 1, 550, 3, NULL, "5.7.1",
	     "550 5.7.1 first second third"},
	    /* class must match the code: 4.x.x in a 5xx is not an enhanced code */
	    {"550 4.1.1 odd", 1, 550, 1, NULL, "5.0.0", "550 4.1.1 odd"},
	    {"451 4.3.0 try later", 1, 451, 1, NULL, "4.3.0", NULL},
	    {"452 4.5.3x not a code", 1, 452, 1, NULL, "4.0.0", NULL},
	    {"250 2.0.0", 1, 250, 1, NULL, "2.0.0", "250 2.0.0"},
	    {"250 2.1.10 long detail", 1, 250, 1, NULL, "2.1.10", NULL},
	    {"421 4.4.2 bye\tnow\x7f", 1, 421, 1, NULL, "4.4.2", "421 4.4.2 bye?now?"},
	    {"250-first", 0, 250, 1, NULL, NULL, NULL},
	    /* malformed */
	    {"hello", -1, 0, 0, NULL, NULL, NULL},
	    {"25", -1, 0, 0, NULL, NULL, NULL},
	    {"2500 x", -1, 0, 0, NULL, NULL, NULL},
	    {"150 x", -1, 0, 0, NULL, NULL, NULL},
	    {"650 x", -1, 0, 0, NULL, NULL, NULL},
	    {"25a x", -1, 0, 0, NULL, NULL, NULL},
	    {"250-a\n251 b", -1, 0, 0, NULL, NULL, NULL},
	    {"250_x", -1, 0, 0, NULL, NULL, NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_reply r;
		char err[256] = "", enh[SMTP_ENHANCED_MAX], one[512];
		int got;

		smtp_reply_init(&r);
		got = feed(&r, cases[i].in, err, sizeof(err));
		if (got != cases[i].want)
			fail_msg("case %zu %s: got %d, want %d (%s)", i, cases[i].in, got,
				 cases[i].want, err);
		if (got < 0) {
			assert_true(err[0] != '\0');
			smtp_reply_release(&r);
			continue;
		}
		if (r.code != cases[i].code || r.nlines != cases[i].nlines)
			fail_msg("case %zu: got code %u lines %u, want %u %u", i, r.code, r.nlines,
				 cases[i].code, cases[i].nlines);
		if (cases[i].text && strcmp(strbuf_cstr(&r.text), cases[i].text) != 0)
			fail_msg("case %zu: got text '%s', want '%s'", i, strbuf_cstr(&r.text),
				 cases[i].text);
		if (cases[i].enhanced &&
		    strcmp(smtp_reply_enhanced(&r, enh), cases[i].enhanced) != 0)
			fail_msg("case %zu: got enhanced %s, want %s", i, enh, cases[i].enhanced);
		if (cases[i].oneline &&
		    strcmp(smtp_reply_format(&r, one, sizeof(one)), cases[i].oneline) != 0)
			fail_msg("case %zu: got '%s', want '%s'", i, one, cases[i].oneline);
		smtp_reply_release(&r);
	}
}

static void test_reply_limits(void **state)
{
	struct smtp_reply r;
	char err[256], line[64], one[32];
	int got = 0;
	unsigned n;

	(void)state;
	/* an endless continuation stops at SMTP_REPLY_MAX_LINES */
	smtp_reply_init(&r);
	for (n = 0; n < 10000; n++) {
		got = smtp_reply_feed(&r, "250-more", 8, err, sizeof(err));
		if (got != 0)
			break;
	}
	assert_int_equal(got, -1);
	assert_int_equal(n, SMTP_REPLY_MAX_LINES);
	assert_non_null(strstr(err, "lines"));
	smtp_reply_release(&r);

	/* total bytes bounded even with few lines */
	{
		size_t len = 2000;
		char *big = malloc(len);

		memset(big, 'x', len);
		memcpy(big, "550-", 4);
		smtp_reply_init(&r);
		for (n = 0; n < SMTP_REPLY_MAX_LINES; n++) {
			got = smtp_reply_feed(&r, big, len, err, sizeof(err));
			if (got != 0)
				break;
		}
		assert_int_equal(got, -1);
		assert_true((size_t)n * len <= SMTP_REPLY_MAX_BYTES + len);
		assert_non_null(strstr(err, "bytes"));
		smtp_reply_release(&r);
		free(big);
	}

	/* NUL inside; a line after the end; reset makes it reusable */
	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_feed(&r, "250 a\0b", 7, err, sizeof(err)), -1);
	smtp_reply_reset(&r);
	assert_int_equal(smtp_reply_feed(&r, "250 ok", 6, err, sizeof(err)), 1);
	assert_int_equal(smtp_reply_feed(&r, "250 again", 9, err, sizeof(err)), -1);
	smtp_reply_reset(&r);
	snprintf(line, sizeof(line), "354 go ahead");
	assert_int_equal(smtp_reply_feed(&r, line, strlen(line), err, sizeof(err)), 1);
	assert_int_equal(r.code, 354);
	/* format cuts at the buffer */
	smtp_reply_format(&r, one, 8);
	assert_string_equal(one, "354 go ");
	smtp_reply_release(&r);
}

static void caps_of(const char *text, struct smtp_caps *caps)
{
	struct smtp_reply r;
	char err[128];

	smtp_reply_init(&r);
	assert_int_equal(feed(&r, text, err, sizeof(err)), 1);
	smtp_caps_parse(&r, caps);
	smtp_reply_release(&r);
}

static void test_caps(void **state)
{
	struct smtp_caps c;

	(void)state;
	caps_of("250-mx.example.org Hello\n250-PIPELINING\n250-SIZE 10240000\n250-8BITMIME\n"
		"250-SMTPUTF8\n250-DSN\n250-STARTTLS\n250 ENHANCEDSTATUSCODES",
		&c);
	assert_true(c.esmtp && c.pipelining && c.eightbitmime && c.smtputf8 && c.dsn &&
		    c.starttls && c.size);
	assert_int_equal(c.size_limit, 10240000);

	/* the greeting line is not a keyword; case-insensitive; SIZE without a number */
	caps_of("250-PIPELINING is my name\n250-size\n250 dsn", &c);
	assert_false(c.pipelining);
	assert_true(c.size && c.dsn);
	assert_int_equal(c.size_limit, 0);

	caps_of("250 mx.example.org", &c);
	assert_true(c.esmtp);
	assert_false(c.pipelining || c.size || c.dsn || c.smtputf8 || c.eightbitmime);

	/* absurd SIZE: no limit rather than a wrapped one */
	caps_of("250-x\n250 SIZE 999999999999999999999999", &c);
	assert_true(c.size);
	assert_int_equal(c.size_limit, 0);
}

static void test_xtext(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"user@example.org", "user@example.org"},
	    {"a+b=c", "a+2Bb+3Dc"},
	    {"with space", "with+20space"},
	    {"tab\tcr\r", "tab+09cr+0D"},
	    {"caf\xc3\xa9", "caf+C3+A9"},
	    {"~!", "~!"},
	    {"", ""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf sb;

		strbuf_init(&sb, 0);
		assert_int_equal(smtp_xtext_append(&sb, cases[i].in), 0);
		if (strcmp(strbuf_cstr(&sb), cases[i].want) != 0)
			fail_msg("case %zu: got %s, want %s", i, strbuf_cstr(&sb), cases[i].want);
		strbuf_release(&sb);
	}
	{
		struct strbuf sb;

		strbuf_init(&sb, 4);
		assert_int_equal(smtp_xtext_append(&sb, "a b"), -1);
		strbuf_release(&sb);
	}
}

static void test_build_mail(void **state)
{
	struct smtp_caps none = {0}, all = {.esmtp = true,
					    .pipelining = true,
					    .size = true,
					    .eightbitmime = true,
					    .smtputf8 = true,
					    .dsn = true};
	struct smtp_msg m = {.sender = "s@example.org",
			     .envid = "env 42+x",
			     .ret = "hdrs",
			     .size = 1234,
			     .eightbit = true};
	static const struct {
		bool all, utf8;
		const char *sender, *want;
	} cases[] = {
	    {false, false, "s@example.org", "MAIL FROM:<s@example.org>\r\n"},
	    {false, false, "", "MAIL FROM:<>\r\n"},
	    {true, false, "s@example.org",
	     "MAIL FROM:<s@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=env+2042+2Bx\r\n"},
	    {true, true, "s@example.org",
	     "MAIL FROM:<s@example.org> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS "
	     "ENVID=env+2042+2Bx\r\n"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf sb;

		strbuf_init(&sb, 0);
		m.sender = cases[i].sender;
		assert_int_equal(
		    smtp_build_mail(&sb, cases[i].all ? &all : &none, &m, cases[i].utf8), 0);
		if (strcmp(strbuf_cstr(&sb), cases[i].want) != 0)
			fail_msg("case %zu: got %s, want %s", i, strbuf_cstr(&sb), cases[i].want);
		strbuf_release(&sb);
	}
	/* no RET/ENVID when absent or bogus */
	{
		struct strbuf sb;
		struct smtp_msg m2 = {.sender = "a@b", .ret = "BOGUS", .envid = "", .size = 5};

		strbuf_init(&sb, 0);
		smtp_build_mail(&sb, &all, &m2, false);
		assert_string_equal(strbuf_cstr(&sb), "MAIL FROM:<a@b> SIZE=5\r\n");
		strbuf_release(&sb);
	}
}

static void test_build_rcpt(void **state)
{
	struct smtp_caps none = {0}, dsn = {.esmtp = true, .dsn = true};
	static const struct {
		bool dsn;
		const char *addr, *orcpt, *orig;
		unsigned notify;
		const char *want;
	} cases[] = {
	    {false, "u@x", "rfc822;u@x", NULL, 2, "RCPT TO:<u@x>\r\n"},
	    {true, "u@x", NULL, NULL, 0, "RCPT TO:<u@x>\r\n"},
	    {true, "u@x", NULL, "list@x", 0, "RCPT TO:<u@x> ORCPT=rfc822;list@x\r\n"},
	    {true, "u@x", "rfc822;o+1@x", "list@x", 1,
	     "RCPT TO:<u@x> NOTIFY=NEVER ORCPT=rfc822;o+2B1@x\r\n"},
	    {true, "u@x", "", NULL, 2 | 4 | 8, "RCPT TO:<u@x> NOTIFY=SUCCESS,FAILURE,DELAY\r\n"},
	    {true, "u@x", NULL, NULL, 4 | 8, "RCPT TO:<u@x> NOTIFY=FAILURE,DELAY\r\n"},
	    {true, "u@x", NULL, NULL, 8, "RCPT TO:<u@x> NOTIFY=DELAY\r\n"},
	    {true, "u@x", "o=x@y", NULL, 2,
	     "RCPT TO:<u@x> NOTIFY=SUCCESS ORCPT=rfc822;o+3Dx@y\r\n"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf sb;
		struct smtp_rcpt r = {.address = cases[i].addr,
				      .orcpt = cases[i].orcpt,
				      .orig_address = cases[i].orig,
				      .notify = cases[i].notify};

		strbuf_init(&sb, 0);
		assert_int_equal(smtp_build_rcpt(&sb, cases[i].dsn ? &dsn : &none, &r), 0);
		if (strcmp(strbuf_cstr(&sb), cases[i].want) != 0)
			fail_msg("case %zu: got %s, want %s", i, strbuf_cstr(&sb), cases[i].want);
		strbuf_release(&sb);
	}
	assert_true(smtp_address_ok("u@x"));
	assert_true(smtp_address_ok(""));
	assert_false(smtp_address_ok("u@x>\r\nRSET"));
	assert_false(smtp_address_ok("a<b@x"));
	assert_false(smtp_address_ok("tab\t@x"));
	assert_true(smtp_needs_utf8("j\xc3\xb6rg@x"));
	assert_false(smtp_needs_utf8("plain@x"));
	assert_false(smtp_needs_utf8(NULL));
}

/* ---- conncache ---- */

struct closed {
	char log[256];
	unsigned n;
};

static void on_close(void *conn, enum conncache_why why, void *arg)
{
	struct closed *c = arg;
	size_t len = strlen(c->log);

	snprintf(c->log + len, sizeof(c->log) - len, "%s:%d ", (const char *)conn, (int)why);
	c->n++;
}

static void test_conncache_keys(void **state)
{
	struct event_base *base = event_base_new();
	struct closed c = {"", 0};
	struct conncache *cc = conncache_new(base, 2, 60000, on_close, &c);
	char a[] = "a", b[] = "b", d[] = "d";

	(void)state;
	conncache_put(cc, "smtp:x.org:25", "smtp:1.1.1.1:25", a);
	conncache_put(cc, "smtp:y.org:25", "smtp:1.1.1.1:25", b);
	assert_int_equal(conncache_count(cc), 2);
	/* by address: the newest */
	assert_ptr_equal(conncache_take_addr(cc, "smtp:1.1.1.1:25"), b);
	assert_null(conncache_take_dest(cc, "smtp:y.org:25"));
	assert_ptr_equal(conncache_take_dest(cc, "smtp:x.org:25"), a);
	assert_int_equal(conncache_count(cc), 0);
	assert_int_equal(c.n, 0);

	/* full: the oldest is evicted through close_fn */
	conncache_put(cc, "k1", NULL, a);
	conncache_put(cc, "k2", NULL, b);
	conncache_put(cc, "k3", NULL, d);
	assert_int_equal(conncache_count(cc), 2);
	assert_string_equal(c.log, "a:1 ");
	assert_null(conncache_take_dest(cc, "k1"));
	/* removed: no close_fn; remove of an unknown: -1 */
	assert_int_equal(conncache_remove(cc, b), 0);
	assert_int_equal(conncache_remove(cc, b), -1);
	conncache_free(&cc);
	assert_null(cc);
	assert_string_equal(c.log, "a:1 d:3 ");
	conncache_free(&cc);

	/* disabled */
	c.log[0] = '\0';
	cc = conncache_new(base, 10, 0, on_close, &c);
	conncache_put(cc, "k", NULL, a);
	assert_string_equal(c.log, "a:2 ");
	assert_int_equal(conncache_count(cc), 0);
	conncache_free(&cc);
	event_base_free(base);
}

static void test_conncache_expiry(void **state)
{
	struct event_base *base = event_base_new();
	struct closed c = {"", 0};
	struct conncache *cc = conncache_new(base, 10, 30, on_close, &c);
	char a[] = "a";
	uint64_t deadline = clock_mono_ms() + 5000;
	struct timeval tick = {0, 10000};

	(void)state;
	conncache_put(cc, "k", "addr", a);
	while (c.n == 0 && clock_mono_ms() < deadline) {
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
	assert_string_equal(c.log, "a:0 ");
	assert_int_equal(conncache_count(cc), 0);
	conncache_free(&cc);
	event_base_free(base);
}

/* ---- sessions: how the engine writes ---- */

/*
 * A scripted server on loopback, driven by hand: the test reads what the
 * client sent (running the client's event loop in between, or not, to
 * tell a write made at once from one left for the loop) and answers.
 */
struct srv {
	int lfd, fd;
	struct sockaddr_in sin;
	char *buf; /* everything read so far */
	size_t len, cap;
};

/* What a session reported to its owner. */
struct seen {
	unsigned ready, done, failed, other;
};

static void on_event(void *arg, struct smtp_session *s, enum smtp_event ev)
{
	struct seen *w = arg;

	(void)s;
	if (ev == SMTP_EV_READY)
		w->ready++;
	else if (ev == SMTP_EV_TXN_DONE)
		w->done++;
	else if (ev == SMTP_EV_FAILED)
		w->failed++;
	else
		w->other++;
}

/* srv_listen - 127.0.0.1, a port of the kernel's choice; rcvbuf > 0: that SO_RCVBUF */
static void srv_listen(struct srv *v, int rcvbuf)
{
	socklen_t sl = sizeof(v->sin);
	int one = 1;

	memset(v, 0, sizeof(*v));
	v->fd = -1;
	v->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(v->lfd >= 0);
	setsockopt(v->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (rcvbuf > 0)
		setsockopt(v->lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	v->sin.sin_family = AF_INET;
	v->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(v->lfd, (struct sockaddr *)&v->sin, sizeof(v->sin)), 0);
	assert_int_equal(listen(v->lfd, 4), 0);
	assert_int_equal(getsockname(v->lfd, (struct sockaddr *)&v->sin, &sl), 0);
}

static void srv_close(struct srv *v)
{
	if (v->fd >= 0)
		close(v->fd);
	close(v->lfd);
	free(v->buf);
}

static void srv_say(struct srv *v, const char *text)
{
	size_t n = strlen(text);

	assert_int_equal(write(v->fd, text, n), (ssize_t)n);
}

/* srv_take - append what can be read now; the bytes read */
static size_t srv_take(struct srv *v)
{
	size_t got = 0;

	for (;;) {
		ssize_t r;

		if (v->cap - v->len < 65536) {
			v->cap = v->cap ? v->cap * 2 : 131072;
			v->buf = xrealloc(v->buf, v->cap);
		}
		r = recv(v->fd, v->buf + v->len, v->cap - v->len - 1, MSG_DONTWAIT);
		if (r <= 0)
			break;
		v->len += (size_t)r;
		got += (size_t)r;
	}
	v->buf[v->len] = '\0';
	return got;
}

/* srv_has - the bytes read so far end with tail */
static bool srv_has(const struct srv *v, const char *tail)
{
	size_t n = strlen(tail);

	return v->len >= n && memcmp(v->buf + v->len - n, tail, n) == 0;
}

/*
 * srv_wait - read until what was read ends with tail, within 5 s;
 * with loop, the client's event loop runs meanwhile, else it does not
 * (the bytes must already be on their way).
 */
static void srv_wait(struct srv *v, struct event_base *base, bool loop, const char *tail)
{
	uint64_t deadline = clock_mono_ms() + 5000;
	struct pollfd p = {.fd = v->fd, .events = POLLIN};

	while (srv_take(v), !srv_has(v, tail)) {
		if (clock_mono_ms() > deadline)
			fail_msg("server: got \"%.200s\" (%zu bytes), want it to end with \"%s\"%s",
				 v->len > 200 ? v->buf + v->len - 200 : v->buf, v->len, tail,
				 loop ? "" : " without the client's loop running");
		if (loop)
			event_base_loop(base, EVLOOP_NONBLOCK);
		(void)poll(&p, 1, loop ? 1 : 50);
	}
}

/* loop_until - run the client's loop until *flag is set, within 5 s */
static void loop_until(struct event_base *base, const unsigned *flag, const char *what)
{
	uint64_t deadline = clock_mono_ms() + 5000;
	struct timeval tick = {0, 10000};

	while (*flag == 0) {
		if (clock_mono_ms() > deadline)
			fail_msg("client: no %s within 5 s", what);
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
}

/* session_ready - a session to v, through the greeting and EHLO (PIPELINING) */
static struct smtp_session *session_ready(struct event_base *base, struct srv *v, struct seen *w)
{
	struct smtp_client_config cfg = {
	    .helo_name = "client.test",
	    .line_limit = 2048,
	    .connect_ms = 5000,
	    .helo_ms = 5000,
	    .mail_ms = 5000,
	    .rcpt_ms = 5000,
	    .data_init_ms = 5000,
	    .data_xfer_ms = 5000,
	    .data_done_ms = 5000,
	    .rset_ms = 5000,
	    .quit_ms = 5000,
	};
	struct smtp_peer peer = {0};
	struct smtp_session *s;
	char err[256];

	memcpy(&peer.ss, &v->sin, sizeof(v->sin));
	peer.len = sizeof(v->sin);
	snprintf(peer.host, sizeof(peer.host), "srv.test");
	snprintf(peer.addr, sizeof(peer.addr), "127.0.0.1");
	peer.port = ntohs(v->sin.sin_port);
	s = smtp_session_new(base, &cfg, &peer, on_event, w, err, sizeof(err));
	if (!s)
		fail_msg("smtp_session_new: %s", err);
	v->fd = accept(v->lfd, NULL, NULL);
	assert_true(v->fd >= 0);
	srv_say(v, "220 srv.test ESMTP\r\n");
	srv_wait(v, base, true, "EHLO client.test\r\n");
	srv_say(v, "250-srv.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
	loop_until(base, &w->ready, "READY");
	v->len = 0;
	return s;
}

static char msg_qid[QID_SIZE];

static void msg_init(struct smtp_msg *m, struct smtp_rcpt *r, struct qstore_reader *rd,
		     uint64_t size)
{
	memset(m, 0, sizeof(*m));
	memset(r, 0, sizeof(*r));
	r->address = "r@example.test";
	m->sender = "s@example.test";
	m->size = size;
	m->content = rd;
	m->nrcpt = 1;
	m->rcpt = r;
}

/*
 * A server that keeps up takes every write at once, so the engine writes
 * in the loop turn that queued it, with nothing registered for
 * writability: the MAIL/RCPT/DATA group is on the wire after one
 * non-blocking turn following smtp_session_start(), the body with its
 * final dot in the turn that read the 354, QUIT after one turn following
 * smtp_session_quit().  None waits a turn for an EV_WRITE registration.
 */
static void test_session_writes_at_once(void **state)
{
	static const char content[] = "Subject: t\r\n\r\n.dot line\r\nend\r\n";
	static const char cmds[] =
	    "MAIL FROM:<s@example.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n";
	struct event_base *base = event_base_new();
	struct qstore *qs = ram_message(content, sizeof(content) - 1, msg_qid);
	struct qstore_reader *rd;
	struct srv v;
	struct seen w = {0};
	struct smtp_session *s;
	struct smtp_msg m;
	struct smtp_rcpt r;
	char err[256];
	int errnum = 0, registered;

	(void)state;
	srv_listen(&v, 0);
	s = session_ready(base, &v, &w);
	rd = qstore_read(qs, msg_qid, &errnum, err, sizeof(err));
	assert_non_null(rd);
	msg_init(&m, &r, rd, sizeof(content) - 1);
	registered = evtest_registered(base);
	assert_int_equal(smtp_session_start(s, &m, on_event, &w, err, sizeof(err)), 0);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(evtest_registered(base), registered + 1); /* the reply timer */
	srv_wait(&v, base, false, cmds);
	assert_string_equal(v.buf, cmds);
	v.len = 0;
	srv_say(&v, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	/* one turn reads the 354; the body goes out inside it */
	event_base_loop(base, EVLOOP_ONCE);
	srv_wait(&v, base, false, "Subject: t\r\n\r\n..dot line\r\nend\r\n.\r\n");
	assert_string_equal(v.buf, "Subject: t\r\n\r\n..dot line\r\nend\r\n.\r\n");
	v.len = 0;
	srv_say(&v, "250 2.0.0 queued as X\r\n");
	loop_until(base, &w.done, "TXN_DONE");
	assert_int_equal(r.status, SMTP_OK);
	assert_int_equal(r.code, 250);
	assert_true(smtp_session_reusable(s));
	assert_int_equal(w.failed + w.other, 0);
	smtp_session_quit(&s);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	srv_wait(&v, base, false, "QUIT\r\n");
	srv_say(&v, "221 bye\r\n");
	smtp_client_shutdown();
	qstore_reader_free(&rd);
	qstore_close(&qs);
	srv_close(&v);
	event_base_free(base);
}

/*
 * A body far larger than the socket buffers while the server reads
 * nothing: what the socket does not take is queued and written as it
 * drains, in order, every byte once, the final dot last.
 */
static void test_session_socket_full(void **state)
{
	enum { LINES = 400000 };
	static const char cmds[] =
	    "MAIL FROM:<s@example.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n";
	struct event_base *base = event_base_new();
	struct strbuf in, want;
	struct qstore *qs;
	struct qstore_reader *rd;
	struct srv v;
	struct seen w = {0};
	struct smtp_session *s;
	struct smtp_msg m;
	struct smtp_rcpt r;
	char err[256];
	int errnum = 0;

	(void)state;
	strbuf_init(&in, 0);
	strbuf_init(&want, 0);
	for (unsigned i = 0; i < LINES; i++) {
		strbuf_printf(&in, "%sline %u\r\n", i % 5 == 0 ? "." : "", i);
		strbuf_printf(&want, "%sline %u\r\n", i % 5 == 0 ? ".." : "", i);
	}
	strbuf_append_str(&want, ".\r\n");
	qs = ram_message(in.data, in.len, msg_qid);
	srv_listen(&v, 4096);
	s = session_ready(base, &v, &w);
	rd = qstore_read(qs, msg_qid, &errnum, err, sizeof(err));
	assert_non_null(rd);
	msg_init(&m, &r, rd, in.len);
	assert_int_equal(smtp_session_start(s, &m, on_event, &w, err, sizeof(err)), 0);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	srv_wait(&v, base, false, cmds);
	v.len = 0;
	srv_say(&v, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	/* the server reads nothing for a while: the socket fills */
	for (int i = 0; i < 50; i++) {
		struct timeval tick = {0, 2000};

		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
	assert_true(want.len > 4 * 1024 * 1024); /* more than the buffers hold */
	srv_wait(&v, base, true, "\r\n.\r\n");
	if (v.len != want.len || memcmp(v.buf, want.data, want.len) != 0) {
		size_t i = 0;

		while (i < v.len && i < want.len && v.buf[i] == want.data[i])
			i++;
		fail_msg("server: got %zu bytes, want %zu; first difference at byte %zu", v.len,
			 want.len, i);
	}
	srv_say(&v, "250 2.0.0 queued as Y\r\n");
	loop_until(base, &w.done, "TXN_DONE");
	assert_int_equal(r.status, SMTP_OK);
	assert_true(smtp_session_reusable(s));
	smtp_session_free(&s);
	qstore_reader_free(&rd);
	qstore_close(&qs);
	strbuf_release(&in);
	strbuf_release(&want);
	srv_close(&v);
	event_base_free(base);
}

/*
 * The session reads its socket itself in clear: a reply that arrives a
 * byte at a time is put together; a reply line over the limit ends the
 * session without buffering more than the bound; EOF inside a reply is
 * a lost connection.
 */
static void test_session_reads(void **state)
{
	static const char cmds[] =
	    "MAIL FROM:<s@example.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n";
	struct event_base *base = event_base_new();
	struct qstore *qs = ram_message("x\r\n", 3, msg_qid);
	struct qstore_reader *rd;
	struct srv v;
	struct smtp_session *s;
	struct smtp_msg m;
	struct smtp_rcpt r;
	char err[256], *flood = xmalloc(8192);
	int errnum = 0;

	(void)state;
	rd = qstore_read(qs, msg_qid, &errnum, err, sizeof(err));
	assert_non_null(rd);
	for (int round = 0; round < 3; round++) {
		static const char *const want[] = {
		    NULL,
		    "protocol error with srv.test[127.0.0.1] while sending MAIL FROM: reply line "
		    "too long",
		    "lost connection with srv.test[127.0.0.1] while sending RCPT TO",
		};
		struct seen w = {0};

		srv_listen(&v, 0);
		s = session_ready(base, &v, &w);
		msg_init(&m, &r, rd, 3);
		assert_int_equal(qstore_rewind(rd), 0);
		assert_int_equal(smtp_session_start(s, &m, on_event, &w, err, sizeof(err)), 0);
		srv_wait(&v, base, true, cmds);
		v.len = 0;
		if (round == 0) {
			/* byte by byte, the loop running between the bytes */
			static const char reply[] = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n";

			for (size_t i = 0; i < sizeof(reply) - 1; i++) {
				char one[2] = {reply[i], '\0'};

				srv_say(&v, one);
				event_base_loop(base, EVLOOP_NONBLOCK);
			}
			srv_wait(&v, base, true, "x\r\n.\r\n");
			srv_say(&v, "250 2.0.0 ok\r\n");
		} else if (round == 1) {
			memset(flood, 'a', 8191);
			flood[0] = '2', flood[1] = '5', flood[2] = '0', flood[3] = '-';
			flood[8191] = '\0';
			srv_say(&v, flood);
		} else {
			srv_say(&v, "250 2.1.0 ok\r\n250-partial");
			shutdown(v.fd, SHUT_WR);
		}
		loop_until(base, &w.done, "TXN_DONE");
		if (want[round]) {
			assert_int_equal(r.status, SMTP_TEMPFAIL);
			assert_string_equal(r.text, want[round]);
			assert_false(smtp_session_reusable(s));
		} else {
			assert_int_equal(r.status, SMTP_OK);
			assert_true(smtp_session_reusable(s));
		}
		smtp_session_free(&s);
		srv_close(&v);
	}
	free(flood);
	qstore_reader_free(&rd);
	qstore_close(&qs);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reply_parse),
	    cmocka_unit_test(test_reply_limits),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_xtext),
	    cmocka_unit_test(test_build_mail),
	    cmocka_unit_test(test_build_rcpt),
	    cmocka_unit_test(test_conncache_keys),
	    cmocka_unit_test(test_conncache_expiry),
	    cmocka_unit_test(test_session_writes_at_once),
	    cmocka_unit_test(test_session_socket_full),
	    cmocka_unit_test(test_session_reads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
