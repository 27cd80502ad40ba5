/* Tests for scheduler/msgstate.c: routing sets, results, flags, apply, fuzzing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "proto/queue.pb-c.h"
#include "scheduler/msgstate.h"

#define ST_OK ZFARM__STATUS__OK
#define ST_TF ZFARM__STATUS__TEMPFAIL
#define ST_PF ZFARM__STATUS__PERMFAIL

#include "tests/scheduler/ctl_list.h"

/* add_route - route i of total, with fields derived from i. */
static void add_route(struct list *l, uint32_t i, uint32_t total, const char *channel,
		      const char *error)
{
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;
	Zfarm__RouteRecord r = ZFARM__ROUTE_RECORD__INIT;
	char addr[64], orig[64], orcpt[80], hop[64], user[16];

	snprintf(addr, sizeof(addr), "r%u@example.org", i);
	snprintf(orig, sizeof(orig), "o%u@example.org", i);
	snprintf(orcpt, sizeof(orcpt), "rfc822;o%u@example.org", i);
	snprintf(hop, sizeof(hop), "mx%u.example.org", i);
	snprintf(user, sizeof(user), "u%u", i);
	r.index = i;
	r.orig_index = i;
	r.orig_address = orig;
	r.orcpt = orcpt;
	r.address = addr;
	r.channel = (char *)channel;
	r.nexthop = hop;
	r.user = user;
	r.notify = i % 16;
	r.error = (char *)error;
	r.total = total;
	c.body_case = ZFARM__CTL_RECORD__BODY_ROUTE;
	c.route = &r;
	list_push_packed(l, &c);
}

static void add_result_rec(struct list *l, const Zfarm__ResultRecord *res)
{
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;

	c.body_case = ZFARM__CTL_RECORD__BODY_RESULT;
	c.result = (Zfarm__ResultRecord *)res;
	list_push_packed(l, &c);
}

static void add_result(struct list *l, uint32_t index, uint32_t status, uint32_t code,
		       const char *enh, const char *text, int64_t next)
{
	Zfarm__ResultRecord r = ZFARM__RESULT_RECORD__INIT;

	r.index = index;
	r.status = status;
	r.smtp_code = code;
	r.enhanced_code = (char *)enh;
	r.text = (char *)text;
	r.time_us = 1;
	r.next_attempt_us = next;
	add_result_rec(l, &r);
}

static void add_flag(struct list *l, Zfarm__CtlRecord__BodyCase bc, bool v)
{
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;

	c.body_case = bc;
	if (bc == ZFARM__CTL_RECORD__BODY_ROUTED)
		c.routed = v;
	else if (bc == ZFARM__CTL_RECORD__BODY_HELD)
		c.held = v;
	else if (bc == ZFARM__CTL_RECORD__BODY_DELAY_WARNED)
		c.delay_warned = v;
	list_push_packed(l, &c);
}

/* add_requeue - a RequeueRecord superseding the indexes in list ("1,2"; "" none). */
static void add_requeue(struct list *l, const char *list)
{
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;
	Zfarm__RequeueRecord rq = ZFARM__REQUEUE_RECORD__INIT;
	uint32_t idx[16];
	char *copy = xstrdup(list), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t && rq.n_index < 16;
	     t = strtok_r(NULL, ",", &save))
		idx[rq.n_index++] = (uint32_t)strtoul(t, NULL, 10);
	free(copy);
	rq.index = idx;
	c.body_case = ZFARM__CTL_RECORD__BODY_REQUEUE;
	c.requeue = &rq;
	list_push_packed(l, &c);
}

#define ERR5 "5.1.1 no such user"
#define ERR4 "4.3.0 Cannot read include file"

/*
 * build - records from a spec, tokens separated by spaces:
 *   R<i>/<t>  route i of t (channel smtp)
 *   E<i>/<t>  route i of t, channel error, ERR5
 *   T<i>/<t>  route i of t, channel error, ERR4
 *   M m       routed marker true / false
 *   ok<i> pf<i> tf<i>  result for index i (tf: next_attempt_us = 1000 * position)
 *   st<s>:<i> result with raw status s for index i
 *   H h W w   held true/false, delay_warned true/false
 *   Q<i,j>    a RequeueRecord superseding routes i, j (message-wide; "Q" none)
 *   x         a record with no body
 */
static void build(struct list *l, const char *spec)
{
	char *copy = xstrdup(spec), *save = NULL;

	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		unsigned a = 0, b = 0;
		int64_t pos = (int64_t)l->n;

		if ((t[0] == 'R' || t[0] == 'E' || t[0] == 'T') &&
		    sscanf(t + 1, "%u/%u", &a, &b) == 2)
			add_route(l, a, b, t[0] == 'R' ? "smtp" : "error",
				  t[0] == 'R'	? ""
				  : t[0] == 'E' ? ERR5
						: ERR4);
		else if (strcmp(t, "M") == 0 || strcmp(t, "m") == 0)
			add_flag(l, ZFARM__CTL_RECORD__BODY_ROUTED, t[0] == 'M');
		else if (strcmp(t, "H") == 0 || strcmp(t, "h") == 0)
			add_flag(l, ZFARM__CTL_RECORD__BODY_HELD, t[0] == 'H');
		else if (strcmp(t, "W") == 0 || strcmp(t, "w") == 0)
			add_flag(l, ZFARM__CTL_RECORD__BODY_DELAY_WARNED, t[0] == 'W');
		else if (strcmp(t, "x") == 0)
			add_flag(l, ZFARM__CTL_RECORD__BODY__NOT_SET, false);
		else if (t[0] == 'Q')
			add_requeue(l, t + 1);
		else if (sscanf(t, "ok%u", &a) == 1)
			add_result(l, a, ST_OK, 250, "2.0.0", "ok", 0);
		else if (sscanf(t, "pf%u", &a) == 1)
			add_result(l, a, ST_PF, 550, "5.7.1", "rejected", 0);
		else if (sscanf(t, "tf%u", &a) == 1)
			add_result(l, a, ST_TF, 451, "4.4.1", "try later", 1000 * pos);
		else if (sscanf(t, "st%u:%u", &b, &a) == 2)
			add_result(l, a, b, 299, "2.9.9", "odd", 0);
		else
			fail_msg("bad spec token %s", t);
	}
	free(copy);
}

static Zfarm__Envelope test_env(void)
{
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;

	env.queue_id = "2F4K7Q1Z9VABCDEF";
	env.arrival_us = 1700000000000000;
	env.sender = "bob@example.org";
	env.envid = "env-1";
	env.ret = "HDRS";
	return env;
}

static const char *load_name(enum msgstate_load_result r)
{
	return r == MSGSTATE_OK ? "OK" : r == MSGSTATE_UNROUTED ? "UNROUTED" : "BAD";
}

static char state_char(enum rcpt_state s)
{
	switch (s) {
	case RCPT_PENDING:
		return 'P';
	case RCPT_DEFERRED:
		return 'D';
	case RCPT_DELIVERED:
		return 'S';
	case RCPT_FAILED:
		return 'F';
	case RCPT_SUPERSEDED:
		return 'X';
	}
	return '?';
}

/* The table is laid out by hand, one row a line. */
/* clang-format off */

struct row {
	const char *spec;
	enum msgstate_load_result want;
	const char *states;   /* one of PDSF per recipient */
	const char *attempts; /* NULL: not checked; else one digit per recipient */
	bool held, warned;
	const char *err;      /* substring of the reason (BAD) */
};

#define OKR(s, st, ...) { .spec = s, .want = MSGSTATE_OK, .states = st, __VA_ARGS__ }
#define UNR(s, ...)     { .spec = s, .want = MSGSTATE_UNROUTED, .states = "", __VA_ARGS__ }
#define BAD(s, e, ...)  { .spec = s, .want = MSGSTATE_BAD, .states = "", .err = e, __VA_ARGS__ }

static const struct row rows[] = {
	/* not routed */
	UNR(""),
	UNR("R0/2 R1/2"),
	UNR("R0/1 m"),
	UNR("x x"),
	UNR("ok0 tf1"),
	UNR("H", .held = true),
	UNR("W R0/1", .warned = true),
	/* routing sets */
	OKR("M", ""),
	OKR("R0/1 M", "P", .attempts = "0"),
	OKR("R0/3 R1/3 R2/3 M", "PPP"),
	OKR("R0/3 R1/3 R2/3 m M", "", ),           /* the record before the first marker is no route */
	OKR("R0/3 R1/3 R0/3 R1/3 R2/3 M", "PPP"), /* torn earlier attempt */
	OKR("R0/5 R1/5 R0/3 R1/3 R2/3 M", "PPP"), /* torn, another total */
	OKR("x R0/2 R1/2 M", "PP"),
	OKR("R0/2 R1/2 M R0/1 M", "PP"),          /* only the first marker counts */
	OKR("R0/2 R1/2 m R0/1 M", "P"),           /* a false marker is no marker */
	OKR("R0/1 ok0 M", ""),                    /* like routing_set_size(): no route right before */
	BAD("R0/3 R1/3 M", "total 3 but 2 records"),
	BAD("x R0/3 R1/3 M", "only 2 route records"),
	BAD("H R0/3 R1/3 M", "only 2 route records", .held = true),
	BAD("R0/3 ok0 R2/3 M", "only 1 route records"),
	BAD("R0/3 R1/2 R2/3 M", "route 1 says total 2"),
	BAD("R0/2 R1/2 R2/3 M", "route 0 says total 2"),
	BAD("R1/3 R0/3 R2/3 M", "route 0 has index 1"),
	BAD("R0/3 R0/3 R2/3 M", "route 1 has index 0"),
	BAD("R0/2 R2/2 M", "route 1 has index 2"),
	BAD("R0/0 M", "total 0"),
	BAD("R0/4294967295 M", "total 4294967295"),
	BAD("R0/2 R1/2 R1/2 R0/1 R1/1 M", "route 0 has index 1"),
	/* results */
	OKR("R0/3 R1/3 R2/3 M ok0 pf1 tf2", "SFD", .attempts = "001"),
	OKR("R0/1 M tf0 tf0 tf0", "D", .attempts = "3"),
	OKR("R0/1 M tf0 ok0", "S", .attempts = "1"),
	OKR("R0/1 M tf0 pf0", "F", .attempts = "1"),
	OKR("R0/1 M ok0 ok0", "S"),                /* duplicate after a crash */
	OKR("R0/1 M ok0 pf0 tf0", "S", .attempts = "0"),
	OKR("R0/1 M pf0 ok0 tf0", "F", .attempts = "0"),
	OKR("R0/2 R1/2 M ok2 pf7 tf4294967295", "PP", .attempts = "00"),
	OKR("ok0 pf1 R0/2 R1/2 M", "PP"),          /* before the marker */
	OKR("tf0 R0/2 R1/2 M pf1", "PF", .attempts = "00"),
	OKR("R0/2 R1/2 M st0:0 st4:1 st99:0", "PP", .attempts = "00"),
	OKR("R0/2 R1/2 M ok0 x m M tf1", "SD", .attempts = "01"),
	/* routing errors */
	OKR("E0/2 R1/2 M", "FP"),
	OKR("E0/1 M ok0 tf0", "F", .attempts = "0"),
	OKR("T0/1 M", "D", .attempts = "0"),
	OKR("T0/1 M tf0", "D", .attempts = "1"),
	OKR("T0/2 E1/2 M ok0", "SF"),
	/* flags */
	OKR("R0/1 M H", "P", .held = true),
	OKR("R0/1 M H h", "P"),
	OKR("R0/1 M H h H", "P", .held = true),
	OKR("H R0/1 M", "P", .held = true),
	OKR("H R0/1 M h", "P"),
	OKR("R0/1 M h", "P"),
	OKR("R0/1 M W", "P", .warned = true),
	OKR("R0/1 M W w", "P", .warned = true),
	OKR("R0/1 M w", "P"),
	OKR("W R0/1 M H", "P", .held = true, .warned = true),
	/* requeue: superseded routes, the next routing set numbered after them */
	UNR("R0/2 R1/2 M ok0 tf1 Q1"),
	UNR("R0/2 R1/2 M ok0 tf1 Q1 R0/1"),        /* a torn new set */
	UNR("Q R0/1 M tf0 Q0 m"),
	OKR("R0/2 R1/2 M ok0 tf1 Q1 R0/1 M", "SXP", .attempts = "010"),
	OKR("R0/2 R1/2 M ok0 tf1 Q1 M", "SX"),    /* every target final already */
	OKR("R0/2 R1/2 M ok0 tf1 Q1 R0/2 R1/2 M ok3 tf2", "SXDS", .attempts = "0110"),
	OKR("R0/2 R1/2 M tf1 Q1 R0/1 M ok1 pf1 tf2", "PXD", .attempts = "011"), /* old index: ignored */
	OKR("R0/1 M ok0 Q0 M", "S"),              /* a listed final route stays final */
	OKR("R0/1 M Q5 R0/1 M", "PP"),            /* out of range: nothing superseded */
	OKR("R0/1 M Q0 R0/2 R0/1 M", "XP"),       /* torn attempt after the requeue */
	OKR("R0/1 M Q0 M R0/1 M", "X"),           /* a duplicate routing is ignored */
	OKR("R0/1 M Q0 R0/1 M R0/1 M", "XP"),
	OKR("R0/1 M Q0 Q0 R0/1 M", "XP"),         /* a requeue while one is due: nothing */
	OKR("Q0 R0/1 M", "P"),                    /* before any set: nothing */
	OKR("R0/1 M tf0 Q0 R0/1 M tf1 Q1 R0/2 R1/2 M ok2", "XXSP"),
	OKR("R0/1 M tf0 Q0 pf0 ok1 R0/1 M ok1", "XS"), /* between requeue and set */
	OKR("R0/1 M H Q0 R0/1 M", "XP"),          /* a requeue releases */
	OKR("R0/1 M H Q0 R0/1 M H", "XP", .held = true),
	OKR("R0/1 M W Q0 R0/1 M", "XP", .warned = true),
	UNR("R0/1 M H Q0", .held = false),
	BAD("R0/1 M Q0 R0/2 M", "total 2 but 1 records"),
	BAD("R0/1 M Q0 R1/1 M", "route 0 has index 1"),
};

/* clang-format on */

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		Zfarm__Envelope env = test_env();
		struct list l = {0};
		struct msgstate m;
		char err[256] = "", got[64] = "", att[64] = "";
		enum msgstate_load_result res;

		build(&l, w->spec);
		res = msgstate_load(&m, &env, l.v, l.n, err, sizeof(err));
		if (res != w->want)
			fail_msg("\"%s\": got %s (%s), want %s", w->spec, load_name(res), err,
				 load_name(w->want));
		for (size_t k = 0; k < m.n && k < sizeof(got) - 1; k++) {
			got[k] = state_char(m.r[k].state);
			att[k] = (char)('0' + (m.r[k].attempts > 9 ? 9 : m.r[k].attempts));
			if (m.r[k].index != k)
				fail_msg("\"%s\": rcpt %zu index %u", w->spec, k, m.r[k].index);
		}
		if (strcmp(got, w->states) != 0)
			fail_msg("\"%s\": got states \"%s\", want \"%s\"", w->spec, got, w->states);
		if (w->attempts && strcmp(att, w->attempts) != 0)
			fail_msg("\"%s\": got attempts \"%s\", want \"%s\"", w->spec, att,
				 w->attempts);
		if (m.held != w->held || m.delay_warned != w->warned)
			fail_msg("\"%s\": got held %d warned %d, want %d %d", w->spec, m.held,
				 m.delay_warned, w->held, w->warned);
		if (w->err && !strstr(err, w->err))
			fail_msg("\"%s\": got reason \"%s\", want \"%s\"", w->spec, err, w->err);
		/* The envelope part is there whatever the result. */
		if (strcmp(m.qid, "2F4K7Q1Z9VABCDEF") != 0 || strcmp(m.sender, "bob@example.org"))
			fail_msg("\"%s\": got qid %s sender %s", w->spec, m.qid, m.sender);
		msgstate_release(&m);
		list_free(&l);
	}
}

static void check_str(const char *what, const char *got, const char *want)
{
	if (!got || strcmp(got, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", what, got ? got : "(null)", want);
}

static void check_int(const char *what, long long got, long long want)
{
	if (got != want)
		fail_msg("%s: got %lld, want %lld", what, got, want);
}

/* Every field a RouteRecord gives, and the envelope's. */
static void test_fields(void **state)
{
	Zfarm__Envelope env = test_env();
	struct list l = {0};
	struct msgstate m;
	char err[128];

	(void)state;
	build(&l, "R0/2 R1/2 M");
	check_int("load", msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);
	check_str("qid", m.qid, "2F4K7Q1Z9VABCDEF");
	check_str("sender", m.sender, "bob@example.org");
	check_str("envid", m.envid, "env-1");
	check_str("ret", m.ret, "HDRS");
	check_int("arrival_us", m.arrival_us, 1700000000000000);
	check_int("size", (long long)m.size, 0);
	check_int("n", (long long)m.n, 2);
	for (uint32_t i = 0; i < 2; i++) {
		const struct rcpt *r = &m.r[i];
		char want[80];

		check_int("index", r->index, i);
		snprintf(want, sizeof(want), "r%u@example.org", i);
		check_str("address", r->address, want);
		snprintf(want, sizeof(want), "o%u@example.org", i);
		check_str("orig_address", r->orig_address, want);
		snprintf(want, sizeof(want), "rfc822;o%u@example.org", i);
		check_str("orcpt", r->orcpt, want);
		check_str("channel", r->channel, "smtp");
		snprintf(want, sizeof(want), "mx%u.example.org", i);
		check_str("nexthop", r->nexthop, want);
		snprintf(want, sizeof(want), "u%u", i);
		check_str("user", r->user, want);
		check_int("notify", r->notify, i % 16);
		check_int("state", r->state, RCPT_PENDING);
		check_int("attempts", r->attempts, 0);
		check_int("next_attempt_us", r->next_attempt_us, 0);
		check_int("smtp_code", r->smtp_code, 0);
		check_str("enhanced", r->enhanced, "");
		check_str("text", r->text, "");
	}
	/* Copies: the records can go first. */
	list_free(&l);
	check_str("address after free", m.r[1].address, "r1@example.org");
	msgstate_release(&m);

	/* NULL envelope strings are "", a long queue id is cut to 16. */
	env.queue_id = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	env.sender = NULL;
	env.envid = NULL;
	env.ret = NULL;
	check_int("load", msgstate_load(&m, &env, NULL, 0, err, sizeof(err)), MSGSTATE_UNROUTED);
	check_str("qid", m.qid, "ABCDEFGHIJKLMNOP");
	check_str("sender", m.sender, "");
	check_str("envid", m.envid, "");
	check_str("ret", m.ret, "");
	msgstate_release(&m);
	env.queue_id = NULL;
	check_int("load", msgstate_load(&m, &env, NULL, 0, err, sizeof(err)), MSGSTATE_UNROUTED);
	check_str("qid", m.qid, "");
	msgstate_release(&m);
}

/* Codes, texts and times of the last result. */
static void test_results(void **state)
{
	Zfarm__Envelope env = test_env();
	struct list l = {0};
	struct msgstate m;
	char err[128];

	(void)state;
	build(&l, "R0/3 R1/3 R2/3 M");
	add_result(&l, 0, ST_TF, 451, "4.4.1", "connection refused", 5000);
	add_result(&l, 0, ST_TF, 421, "4.4.2", "timeout", 9000);
	add_result(&l, 1, ST_TF, 450, "4.2.0", "greylisted", 7000);
	add_result(&l, 1, ST_OK, 250, "2.0.0", "queued as X", 0);
	add_result(&l, 2, ST_PF, 550, "5.1.1", "user unknown", 0);
	add_result(&l, 2, ST_OK, 250, "2.0.0", "late duplicate", 0);
	add_result(&l, 1, ST_TF, 451, "4.0.0", "late duplicate", 1);
	check_int("load", msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);

	check_int("0 state", m.r[0].state, RCPT_DEFERRED);
	check_int("0 attempts", m.r[0].attempts, 2);
	check_int("0 next", m.r[0].next_attempt_us, 9000);
	check_int("0 code", m.r[0].smtp_code, 421);
	check_str("0 enhanced", m.r[0].enhanced, "4.4.2");
	check_str("0 text", m.r[0].text, "timeout");

	check_int("1 state", m.r[1].state, RCPT_DELIVERED);
	check_int("1 attempts", m.r[1].attempts, 1);
	check_int("1 next", m.r[1].next_attempt_us, 0);
	check_int("1 code", m.r[1].smtp_code, 250);
	check_str("1 enhanced", m.r[1].enhanced, "2.0.0");
	check_str("1 text", m.r[1].text, "queued as X");

	check_int("2 state", m.r[2].state, RCPT_FAILED);
	check_int("2 code", m.r[2].smtp_code, 550);
	check_str("2 enhanced", m.r[2].enhanced, "5.1.1");
	check_str("2 text", m.r[2].text, "user unknown");
	msgstate_release(&m);
	list_free(&l);
}

/* clang-format off */
static const struct {
	const char *error;
	enum rcpt_state state;
	uint32_t code;
	const char *enhanced;
	const char *text;
} error_rows[] = {
	{ ERR5, RCPT_FAILED, 550, "5.1.1", ERR5 },
	{ ERR4, RCPT_DEFERRED, 450, "4.3.0", ERR4 },
	{ "5.1.1", RCPT_FAILED, 550, "5.1.1", "5.1.1" },
	{ "5.123.456 long", RCPT_FAILED, 550, "5.123.456", "5.123.456 long" },
	{ "4.7.0 temporary", RCPT_DEFERRED, 450, "4.7.0", "4.7.0 temporary" },
	{ "no such user", RCPT_FAILED, 550, "", "no such user" },
	{ "5.1.1x bad", RCPT_FAILED, 550, "", "5.1.1x bad" },
	{ "5.1234.1 bad", RCPT_FAILED, 550, "", "5.1234.1 bad" },
	{ "3.1.1 odd", RCPT_FAILED, 550, "", "3.1.1 odd" },
	{ "2.0.0 odd", RCPT_FAILED, 550, "", "2.0.0 odd" },
	{ "5..1 bad", RCPT_FAILED, 550, "", "5..1 bad" },
	{ "4.1. bad", RCPT_FAILED, 550, "", "4.1. bad" },
	{ "4", RCPT_FAILED, 550, "", "4" },
	{ "", RCPT_FAILED, 550, "", "routing failed" },
};
/* clang-format on */

static void test_error_channel(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(error_rows) / sizeof(error_rows[0]); i++) {
		Zfarm__Envelope env = test_env();
		struct list l = {0};
		struct msgstate m;
		char err[128], what[128];

		add_route(&l, 0, 2, "error", error_rows[i].error);
		add_route(&l, 1, 2, "smtp", "5.0.0 ignored on a non-error channel");
		add_flag(&l, ZFARM__CTL_RECORD__BODY_ROUTED, true);
		check_int("load", msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);
		snprintf(what, sizeof(what), "\"%s\" state", error_rows[i].error);
		check_int(what, m.r[0].state, error_rows[i].state);
		snprintf(what, sizeof(what), "\"%s\" smtp_code", error_rows[i].error);
		check_int(what, m.r[0].smtp_code, error_rows[i].code);
		snprintf(what, sizeof(what), "\"%s\" enhanced", error_rows[i].error);
		check_str(what, m.r[0].enhanced, error_rows[i].enhanced);
		snprintf(what, sizeof(what), "\"%s\" text", error_rows[i].error);
		check_str(what, m.r[0].text, error_rows[i].text);
		check_int("attempts", m.r[0].attempts, 0);
		check_int("next", m.r[0].next_attempt_us, 0);
		check_str("channel", m.r[0].channel, "error");
		check_int("other state", m.r[1].state, RCPT_PENDING);
		check_str("other text", m.r[1].text, "");
		msgstate_release(&m);
		list_free(&l);
	}
}

static void test_final_count(void **state)
{
	static const struct {
		const char *spec;
		bool final;
		size_t p, d, s, f;
	} cases[] = {
	    {"M", true, 0, 0, 0, 0},
	    {"R0/1 M", false, 1, 0, 0, 0},
	    {"R0/1 M ok0", true, 0, 0, 1, 0},
	    {"E0/1 M", true, 0, 0, 0, 1},
	    {"T0/1 M", false, 0, 1, 0, 0},
	    {"R0/4 R1/4 R2/4 R3/4 M ok0 pf1 tf2", false, 1, 1, 1, 1},
	    {"R0/4 R1/4 R2/4 T3/4 M ok0 pf1 tf2 ok2", false, 0, 1, 2, 1},
	    {"R0/4 R1/4 R2/4 E3/4 M ok0 pf1 tf2 ok2 ok3", true, 0, 0, 2, 2},
	    {"R0/3 R1/3 E2/3 M ok0 pf1", true, 0, 0, 1, 2},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Zfarm__Envelope env = test_env();
		struct list l = {0};
		struct msgstate m;
		char err[128];
		size_t p, d, s, f;

		build(&l, cases[i].spec);
		check_int("load", msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);
		p = msgstate_count(&m, RCPT_PENDING);
		d = msgstate_count(&m, RCPT_DEFERRED);
		s = msgstate_count(&m, RCPT_DELIVERED);
		f = msgstate_count(&m, RCPT_FAILED);
		if (p != cases[i].p || d != cases[i].d || s != cases[i].s || f != cases[i].f)
			fail_msg("\"%s\": got P%zu D%zu S%zu F%zu, want P%zu D%zu S%zu F%zu",
				 cases[i].spec, p, d, s, f, cases[i].p, cases[i].d, cases[i].s,
				 cases[i].f);
		if (msgstate_final(&m) != cases[i].final)
			fail_msg("\"%s\": got final %d, want %d", cases[i].spec, msgstate_final(&m),
				 cases[i].final);
		msgstate_release(&m);
		list_free(&l);
	}
}

static void test_apply(void **state)
{
	Zfarm__Envelope env = test_env();
	struct list l = {0};
	struct msgstate m;
	Zfarm__ResultRecord rec, sentinel;
	char err[128], text[32];

	(void)state;
	build(&l, "R0/3 R1/3 E2/3 M");
	check_int("load", msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);

	/* The caller's strings are copied: change them after. */
	snprintf(text, sizeof(text), "connection refused");
	check_int("apply tf", msgstate_apply(&m, 0, ST_TF, 451, "4.4.1", text, 100, 600, &rec), 0);
	memset(text, 'X', sizeof(text) - 1);
	check_int("rec index", rec.index, 0);
	check_int("rec status", rec.status, ST_TF);
	check_int("rec smtp_code", rec.smtp_code, 451);
	check_str("rec enhanced", rec.enhanced_code, "4.4.1");
	check_str("rec text", rec.text, "connection refused");
	check_int("rec time", rec.time_us, 100);
	check_int("rec next", rec.next_attempt_us, 600);
	if (rec.text != m.r[0].text || rec.enhanced_code != m.r[0].enhanced)
		fail_msg("rec strings do not point into m");
	check_int("state", m.r[0].state, RCPT_DEFERRED);
	check_int("attempts", m.r[0].attempts, 1);
	check_int("next", m.r[0].next_attempt_us, 600);

	/* OK: next_attempt_us is for TEMPFAIL only; NULL strings are "". */
	check_int("apply ok", msgstate_apply(&m, 0, ST_OK, 250, NULL, NULL, 200, 999, &rec), 0);
	check_int("rec status", rec.status, ST_OK);
	check_int("rec next", rec.next_attempt_us, 0);
	check_int("rec time", rec.time_us, 200);
	check_str("rec enhanced", rec.enhanced_code, "");
	check_str("rec text", rec.text, "");
	check_int("state", m.r[0].state, RCPT_DELIVERED);
	check_int("attempts", m.r[0].attempts, 1);
	check_int("next", m.r[0].next_attempt_us, 0);

	check_int("apply pf", msgstate_apply(&m, 1, ST_PF, 554, "5.7.1", "spam", 300, 0, &rec), 0);
	check_int("state", m.r[1].state, RCPT_FAILED);
	check_int("rec index", rec.index, 1);

	/* Refused: final (delivered, failed, error channel), unknown, bad status. */
	memset(&sentinel, 0xA5, sizeof(sentinel));
	static const struct {
		uint32_t index, status;
	} refused[] = {{0, ST_TF}, {1, ST_OK}, {2, ST_OK}, {3, ST_OK}, {UINT32_MAX, ST_TF}};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		memcpy(&rec, &sentinel, sizeof(rec));
		if (msgstate_apply(&m, refused[i].index, refused[i].status, 250, "2.0.0", "x", 1, 2,
				   &rec) != -1)
			fail_msg("apply index %u: got 0, want -1", refused[i].index);
		if (memcmp(&rec, &sentinel, sizeof(rec)) != 0)
			fail_msg("apply index %u: *rec touched", refused[i].index);
	}
	check_int("0 still delivered", m.r[0].state, RCPT_DELIVERED);
	check_str("0 text unchanged", m.r[0].text, "");
	check_str("2 text unchanged", m.r[2].text, ERR5);
	msgstate_release(&m);

	/* Bad status on a pending recipient: refused, nothing changed. */
	check_int("load", msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);
	for (uint32_t st = 0; st < 6; st += 4) {
		memcpy(&rec, &sentinel, sizeof(rec));
		check_int("apply bad status",
			  msgstate_apply(&m, 0, st, 250, "2.0.0", "x", 1, 2, &rec), -1);
		if (memcmp(&rec, &sentinel, sizeof(rec)) != 0)
			fail_msg("apply status %u: *rec touched", st);
		check_int("state", m.r[0].state, RCPT_PENDING);
	}
	msgstate_release(&m);

	/* A message with no recipients refuses everything. */
	list_free(&l);
	build(&l, "M");
	check_int("load", msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);
	check_int("apply empty", msgstate_apply(&m, 0, ST_OK, 250, "", "", 1, 0, &rec), -1);
	msgstate_release(&m);
	list_free(&l);
}

static void compare_states(const struct msgstate *a, const struct msgstate *b)
{
	check_str("qid", b->qid, a->qid);
	check_str("sender", b->sender, a->sender);
	check_str("envid", b->envid, a->envid);
	check_str("ret", b->ret, a->ret);
	check_int("arrival_us", b->arrival_us, a->arrival_us);
	check_int("size", (long long)b->size, (long long)a->size);
	check_int("held", b->held, a->held);
	check_int("delay_warned", b->delay_warned, a->delay_warned);
	check_int("n", (long long)b->n, (long long)a->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct rcpt *x = &a->r[i], *y = &b->r[i];

		check_int("index", y->index, x->index);
		check_str("address", y->address, x->address);
		check_str("orig_address", y->orig_address, x->orig_address);
		check_str("orcpt", y->orcpt, x->orcpt);
		check_str("channel", y->channel, x->channel);
		check_str("nexthop", y->nexthop, x->nexthop);
		check_str("user", y->user, x->user);
		check_int("notify", y->notify, x->notify);
		check_int("state", y->state, x->state);
		check_int("attempts", y->attempts, x->attempts);
		check_int("next_attempt_us", y->next_attempt_us, x->next_attempt_us);
		check_int("smtp_code", y->smtp_code, x->smtp_code);
		check_str("enhanced", y->enhanced, x->enhanced);
		check_str("text", y->text, x->text);
	}
}

/* Results made by msgstate_apply, appended and loaded again: same state. */
static void test_roundtrip(void **state)
{
	static const struct {
		uint32_t index, status, code;
		const char *enh, *text;
		int64_t next;
		int want;
	} steps[] = {
	    {0, ST_TF, 451, "4.4.1", "refused", 1000, 0},
	    {1, ST_TF, 450, "4.2.0", "greylisted", 2000, 0},
	    {4, ST_TF, 451, "4.3.0", "still cannot read", 3000, 0}, /* 4.x routing error */
	    {0, ST_TF, 421, "4.4.2", "timeout", 4000, 0},
	    {1, ST_OK, 250, "2.0.0", "queued as Y", 0, 0},
	    {1, ST_OK, 250, "2.0.0", "dup", 0, -1},
	    {2, ST_PF, 550, "5.1.1", "unknown", 0, 0},
	    {3, ST_OK, 250, "2.0.0", "error channel", 0, -1},
	    {5, ST_OK, 250, "2.0.0", "no such index", 0, -1},
	    {0, ST_TF, 451, "", "", 5000, 0},
	};
	Zfarm__Envelope env = test_env();
	struct list l = {0};
	struct msgstate m, again;
	char err[128];

	(void)state;
	build(&l, "R0/2 R1/2 R0/5 R1/5 R2/5 E3/5 T4/5 M H W");
	check_int("load", msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		Zfarm__ResultRecord rec;
		int got =
		    msgstate_apply(&m, steps[i].index, steps[i].status, steps[i].code, steps[i].enh,
				   steps[i].text, (int64_t)i, steps[i].next, &rec);

		if (got != steps[i].want)
			fail_msg("step %zu: got %d, want %d", i, got, steps[i].want);
		if (got == 0)
			add_result_rec(&l, &rec);

		/* After every step the records on disk say what m says. */
		check_int("reload", msgstate_load(&again, &env, l.v, l.n, err, sizeof(err)),
			  MSGSTATE_OK);
		compare_states(&m, &again);
		msgstate_release(&again);
	}
	check_int("0 attempts", m.r[0].attempts, 3);
	check_int("4 attempts", m.r[4].attempts, 1);
	check_int("4 next", m.r[4].next_attempt_us, 3000);
	check_int("held", m.held, 1);
	check_int("count D", (long long)msgstate_count(&m, RCPT_DEFERRED), 2);
	msgstate_release(&m);
	list_free(&l);
}

/* Hand-built records protobuf-c would never give: NULLs everywhere. */
static void test_nulls(void **state)
{
	Zfarm__Envelope env = test_env();
	Zfarm__RouteRecord r0 = ZFARM__ROUTE_RECORD__INIT, r1 = ZFARM__ROUTE_RECORD__INIT;
	Zfarm__ResultRecord res = ZFARM__RESULT_RECORD__INIT;
	Zfarm__CtlRecord c[6];
	Zfarm__CtlRecord *v[8];
	struct msgstate m;
	char err[128];

	(void)state;
	for (size_t i = 0; i < 6; i++)
		zfarm__ctl_record__init(&c[i]);
	r0.total = r1.total = 2;
	r1.index = 1;
	r1.channel = "error"; /* error NULL */
	c[0].body_case = c[1].body_case = ZFARM__CTL_RECORD__BODY_ROUTE;
	c[0].route = &r0;
	c[1].route = &r1;
	c[2].body_case = ZFARM__CTL_RECORD__BODY_ROUTED;
	c[2].routed = true;
	res.status = ST_TF;
	res.next_attempt_us = 77;
	c[3].body_case = ZFARM__CTL_RECORD__BODY_RESULT;
	c[3].result = &res;
	c[4].body_case = ZFARM__CTL_RECORD__BODY_RESULT; /* result NULL */
	c[5].body_case = ZFARM__CTL_RECORD__BODY_ROUTE;	 /* route NULL, after the marker */
	v[0] = &c[0];
	v[1] = &c[1];
	v[2] = &c[2];
	v[3] = NULL;
	v[4] = &c[3];
	v[5] = &c[4];
	v[6] = &c[5];
	v[7] = NULL;
	check_int("load", msgstate_load(&m, &env, v, 8, err, sizeof(err)), MSGSTATE_OK);
	check_str("address", m.r[0].address, "");
	check_str("channel", m.r[0].channel, "");
	check_str("enhanced", m.r[0].enhanced, "");
	check_str("text", m.r[0].text, "");
	check_int("state", m.r[0].state, RCPT_DEFERRED);
	check_int("next", m.r[0].next_attempt_us, 77);
	check_int("error state", m.r[1].state, RCPT_FAILED);
	check_str("error text", m.r[1].text, "routing failed");
	msgstate_release(&m);

	/* A NULL route inside the set, or right before the marker. */
	c[0].route = NULL;
	check_int("null route in set", msgstate_load(&m, &env, v, 3, err, sizeof(err)),
		  MSGSTATE_BAD);
	msgstate_release(&m);
	c[0].route = &r0;
	c[1].route = NULL;
	check_int("null last route", msgstate_load(&m, &env, v, 3, err, sizeof(err)), MSGSTATE_BAD);
	msgstate_release(&m);
	c[1].route = &r1;
	/* A NULL record inside the set. */
	v[0] = NULL;
	check_int("null record in set", msgstate_load(&m, &env, v, 3, err, sizeof(err)),
		  MSGSTATE_BAD);
	msgstate_release(&m);

	/* No envelope, no record array, no error buffer. */
	check_int("null env", msgstate_load(&m, NULL, v, 3, err, sizeof(err)), MSGSTATE_BAD);
	check_str("reason", err, "no envelope");
	msgstate_release(&m);
	check_int("null recs", msgstate_load(&m, &env, NULL, 5, err, sizeof(err)),
		  MSGSTATE_UNROUTED);
	msgstate_release(&m);
	v[0] = &c[0];
	check_int("null err", msgstate_load(&m, &env, v, 3, NULL, 0), MSGSTATE_OK);
	msgstate_release(&m);
	v[0] = NULL;
	check_int("null err bad", msgstate_load(&m, &env, v, 3, NULL, 0), MSGSTATE_BAD);

	/* Release twice, release NULL. */
	msgstate_release(&m);
	msgstate_release(&m);
	msgstate_release(NULL);
	check_int("n after release", (long long)m.n, 0);
}

static uint64_t fuzz_state = 0x9E3779B97F4A7C15u;

static unsigned fuzz_rand(void)
{
	fuzz_state = fuzz_state * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)(fuzz_state >> 33);
}

static char *fuzz_str(void)
{
	static char *pool[] = {NULL,	"",   "smtp",	  "error", "4.3.0 x", "5.1.1 y",
			       "4.1.1", "5.", "2.0.0 ok", "a@b",   "9.9.9"};

	return pool[fuzz_rand() % (sizeof(pool) / sizeof(pool[0]))];
}

static uint32_t fuzz_small(void)
{
	switch (fuzz_rand() % 8) {
	case 0:
		return UINT32_MAX - fuzz_rand() % 2;
	case 1:
		return fuzz_rand();
	default:
		return fuzz_rand() % 6;
	}
}

/* Random record sequences: no crash, no leak, invariants hold. */
static void test_fuzz(void **state)
{
	enum { MAXR = 24 };
	static Zfarm__CtlRecord c[MAXR];
	static Zfarm__RouteRecord rr[MAXR];
	static Zfarm__ResultRecord res[MAXR];
	static Zfarm__RequeueRecord rq[MAXR];
	static uint32_t rqi[MAXR][3];
	Zfarm__CtlRecord *v[MAXR];
	size_t seen[3] = {0};

	(void)state;
	for (int iter = 0; iter < 5000; iter++) {
		Zfarm__Envelope env = test_env();
		size_t n = fuzz_rand() % MAXR;
		struct msgstate m;
		char err[64];
		enum msgstate_load_result got;

		for (size_t i = 0; i < n; i++) {
			zfarm__ctl_record__init(&c[i]);
			zfarm__route_record__init(&rr[i]);
			zfarm__result_record__init(&res[i]);
			v[i] = fuzz_rand() % 40 ? &c[i] : NULL;
			c[i].body_case = (Zfarm__CtlRecord__BodyCase)(fuzz_rand() % 8);
			switch (c[i].body_case) {
			case ZFARM__CTL_RECORD__BODY_ROUTE:
				/* Mostly plausible sets, so some load. */
				rr[i].index = fuzz_rand() % 3 ? (uint32_t)(i % 4) : fuzz_small();
				rr[i].total = fuzz_rand() % 3 ? 4 : fuzz_small();
				rr[i].channel = fuzz_str();
				rr[i].error = fuzz_str();
				rr[i].address = fuzz_str();
				rr[i].orig_address = fuzz_str();
				rr[i].orcpt = fuzz_str();
				rr[i].nexthop = fuzz_str();
				rr[i].user = fuzz_str();
				c[i].route = fuzz_rand() % 30 ? &rr[i] : NULL;
				break;
			case ZFARM__CTL_RECORD__BODY_RESULT:
				res[i].index = fuzz_small();
				res[i].status = fuzz_small();
				res[i].smtp_code = fuzz_rand();
				res[i].enhanced_code = fuzz_str();
				res[i].text = fuzz_str();
				res[i].next_attempt_us = (int64_t)fuzz_rand() - (1 << 30);
				c[i].result = fuzz_rand() % 30 ? &res[i] : NULL;
				break;
			case ZFARM__CTL_RECORD__BODY_ROUTED:
			case ZFARM__CTL_RECORD__BODY_HELD:
			case ZFARM__CTL_RECORD__BODY_DELAY_WARNED:
				c[i].routed = fuzz_rand() % 4 != 0;
				break;
			case ZFARM__CTL_RECORD__BODY_REQUEUE:
				zfarm__requeue_record__init(&rq[i]);
				rq[i].n_index = fuzz_rand() % 4;
				for (size_t k = 0; k < rq[i].n_index; k++)
					rqi[i][k] = fuzz_small();
				rq[i].index = rq[i].n_index ? rqi[i] : NULL;
				c[i].requeue = fuzz_rand() % 30 ? &rq[i] : NULL;
				break;
			default:
				break;
			}
		}
		env.sender = fuzz_str();
		env.envid = fuzz_str();
		env.ret = fuzz_str();
		env.queue_id = fuzz_str();
		got = msgstate_load(&m, &env, v, n, err, sizeof(err));
		assert_true(got == MSGSTATE_OK || got == MSGSTATE_UNROUTED || got == MSGSTATE_BAD);
		seen[got]++;
		if (got != MSGSTATE_OK)
			assert_int_equal(m.n, 0);
		assert_true(m.n <= n);
		assert_non_null(m.sender);
		size_t total = 0;
		for (int s = RCPT_PENDING; s <= RCPT_SUPERSEDED; s++)
			total += msgstate_count(&m, (enum rcpt_state)s);
		assert_int_equal(total, m.n);
		for (size_t k = 0; k < m.n; k++) {
			assert_int_equal(m.r[k].index, k);
			assert_non_null(m.r[k].text);
			assert_non_null(m.r[k].enhanced);
		}
		/* A few applies on whatever loaded. */
		for (int a = 0; a < 4; a++) {
			Zfarm__ResultRecord rec;
			uint32_t idx = fuzz_small();
			bool was_final = idx < m.n && (m.r[idx].state == RCPT_DELIVERED ||
						       m.r[idx].state == RCPT_FAILED ||
						       m.r[idx].state == RCPT_SUPERSEDED);
			int rc = msgstate_apply(&m, idx, fuzz_small(), 250, fuzz_str(), fuzz_str(),
						1, 2, &rec);

			if (idx >= m.n || was_final)
				assert_int_equal(rc, -1);
		}
		msgstate_release(&m);
	}
	/* The generator reaches all three outcomes. */
	if (!seen[MSGSTATE_OK] || !seen[MSGSTATE_UNROUTED] || !seen[MSGSTATE_BAD])
		fail_msg("fuzz outcomes OK %zu UNROUTED %zu BAD %zu", seen[0], seen[1], seen[2]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),	cmocka_unit_test(test_fields),
	    cmocka_unit_test(test_results),	cmocka_unit_test(test_error_channel),
	    cmocka_unit_test(test_final_count), cmocka_unit_test(test_apply),
	    cmocka_unit_test(test_roundtrip),	cmocka_unit_test(test_nulls),
	    cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
