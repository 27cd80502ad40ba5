/*
 * Tests for scheduler/sched.c: batching, channel and destination limits,
 * dead destinations, retries and expiry, delay notices, results and
 * records, hold/release/flush, the active limit, and a throughput print.
 * The clock is fake: every time is passed in.
 */
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
#include <sys/resource.h>
#include <time.h>

#include "common/xalloc.h"
#include "proto/queue.pb-c.h"
#include "scheduler/sched.h"

#define ST_OK ZFARM__STATUS__OK
#define ST_TF ZFARM__STATUS__TEMPFAIL
#define ST_PF ZFARM__STATUS__PERMFAIL

#define SEC 1000000ll

/* ---- fixtures: messages built from records, as test_msgstate.c does ---- */

#include "tests/scheduler/ctl_list.h"

/* Table rows leave trailing fields (NOTIFY, dsn_passed) zero. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* One route: channel, nexthop, the routing error for channel "error", NOTIFY bits. */
struct rt {
	const char *channel, *nexthop, *error;
	uint32_t notify;
};

/* The envelope mk() writes: sender and notice kind (reset before each test). */
static struct {
	const char *sender, *notice;
} env_opt;

static void add_route(struct list *l, uint32_t i, uint32_t total, const struct rt *rt)
{
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;
	Zfarm__RouteRecord r = ZFARM__ROUTE_RECORD__INIT;
	char addr[64];

	snprintf(addr, sizeof(addr), "r%u@example.org", i);
	r.index = i;
	r.orig_index = i;
	r.orig_address = addr;
	r.address = addr;
	r.channel = (char *)rt->channel;
	r.nexthop = (char *)(rt->nexthop ? rt->nexthop : "");
	r.error = (char *)(rt->error ? rt->error : "");
	r.notify = rt->notify;
	r.total = total;
	c.body_case = ZFARM__CTL_RECORD__BODY_ROUTE;
	c.route = &r;
	list_push_packed(l, &c);
}

/* mk - a loaded message qid with these routes, arrived at arrival_us. */
static void mk(struct msgstate *m, const char *qid, int64_t arrival_us, const struct rt *rts,
	       size_t n)
{
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;
	Zfarm__CtlRecord mark = ZFARM__CTL_RECORD__INIT;
	struct list l = {0};
	char err[200] = "";

	env.queue_id = (char *)qid;
	env.arrival_us = arrival_us;
	env.sender = (char *)(env_opt.sender ? env_opt.sender : "s@example.com");
	env.notice = (char *)(env_opt.notice ? env_opt.notice : "");
	for (size_t i = 0; i < n; i++)
		add_route(&l, (uint32_t)i, (uint32_t)n, &rts[i]);
	mark.body_case = ZFARM__CTL_RECORD__BODY_ROUTED;
	mark.routed = true;
	list_push_packed(&l, &mark);
	if (msgstate_load(m, &env, l.v, l.n, err, sizeof(err)) != MSGSTATE_OK)
		fail_msg("%s: load failed: %s", qid, err);
	list_free(&l);
}

/* mk_simple - n recipients of channel smtp, recipient j to nexthop "mx<j % hops>". */
static void mk_simple(struct msgstate *m, const char *qid, int64_t arrival_us, size_t n,
		      unsigned hops)
{
	struct rt *rts = xcalloc(n, sizeof(*rts));
	char(*names)[16] = xcalloc(n, sizeof(*names));

	for (size_t j = 0; j < n; j++) {
		snprintf(names[j], sizeof(names[j]), "mx%zu", j % hops);
		rts[j] = (struct rt){"smtp", names[j], NULL};
	}
	mk(m, qid, arrival_us, rts, n);
	free(names);
	free(rts);
}

static void add_simple(struct sched *s, const char *qid, int64_t arrival_us, size_t n,
		       unsigned hops, int64_t now)
{
	struct msgstate m;

	mk_simple(&m, qid, arrival_us, n, hops);
	if (sched_add(s, &m, now) != 0)
		fail_msg("%s: sched_add failed", qid);
}

/* ---- fake ops: everything handed out, copied ---- */

struct rec {
	char qid[17];
	bool delay_warned; /* a delay_warned record */
	bool notice;	   /* a NoticeRecord: index[0..nidx-1], delay in delay_warned */
	uint32_t nidx, idx[8];
	uint32_t index, status, code;
	char enh[16], text[80];
	int64_t next, time;
};

static struct fake {
	struct rec *r;
	size_t nr, cap;
	size_t record_calls, finals, deleted, requeued;
	char final_qid[17], final_states[32], deleted_qid[17];
	char requeued_qid[17], requeued_states[32];
	size_t requeued_after; /* records handed out before the requeue */
} fk;

static char state_char(enum rcpt_state s)
{
	return "PTDFX"[s]; /* pending, temp (deferred), delivered, failed, superseded */
}

static void fake_record(void *arg, const char *qid, Zfarm__CtlRecord *const *recs, size_t n)
{
	(void)arg;
	fk.record_calls++;
	for (size_t i = 0; i < n; i++) {
		/* Round-trip: what the daemon would append durably. */
		size_t len = zfarm__ctl_record__get_packed_size(recs[i]);
		uint8_t *buf = xmalloc(len);
		Zfarm__CtlRecord *u;
		struct rec *r;

		assert_int_equal(zfarm__ctl_record__pack(recs[i], buf), len);
		u = zfarm__ctl_record__unpack(NULL, len, buf);
		assert_non_null(u);
		free(buf);
		if (fk.nr == fk.cap) {
			fk.cap = fk.cap ? 2 * fk.cap : 64;
			fk.r = xreallocarray(fk.r, fk.cap, sizeof(*fk.r));
		}
		r = &fk.r[fk.nr++];
		memset(r, 0, sizeof(*r));
		snprintf(r->qid, sizeof(r->qid), "%s", qid);
		if (u->body_case == ZFARM__CTL_RECORD__BODY_DELAY_WARNED) {
			assert_true(u->delay_warned);
			r->delay_warned = true;
		} else if (u->body_case == ZFARM__CTL_RECORD__BODY_NOTIFIED) {
			r->notice = true;
			r->delay_warned = u->notified->delay;
			for (size_t k = 0; k < u->notified->n_index && k < 8; k++)
				r->idx[r->nidx++] = u->notified->index[k];
		} else {
			assert_int_equal(u->body_case, ZFARM__CTL_RECORD__BODY_RESULT);
			r->index = u->result->index;
			r->status = u->result->status;
			r->code = u->result->smtp_code;
			snprintf(r->enh, sizeof(r->enh), "%s", u->result->enhanced_code);
			snprintf(r->text, sizeof(r->text), "%s", u->result->text);
			r->next = u->result->next_attempt_us;
			r->time = u->result->time_us;
		}
		zfarm__ctl_record__free_unpacked(u, NULL);
	}
}

static void fake_final(void *arg, const struct msgstate *m)
{
	(void)arg;
	fk.finals++;
	snprintf(fk.final_qid, sizeof(fk.final_qid), "%s", m->qid);
	memset(fk.final_states, 0, sizeof(fk.final_states));
	for (size_t i = 0; i < m->n && i + 1 < sizeof(fk.final_states); i++)
		fk.final_states[i] = state_char(m->r[i].state);
}

static void fake_deleted(void *arg, const struct msgstate *m)
{
	(void)arg;
	fk.deleted++;
	snprintf(fk.deleted_qid, sizeof(fk.deleted_qid), "%s", m->qid);
}

static void fake_requeue(void *arg, const struct msgstate *m)
{
	(void)arg;
	fk.requeued++;
	fk.requeued_after = fk.nr;
	snprintf(fk.requeued_qid, sizeof(fk.requeued_qid), "%s", m->qid);
	memset(fk.requeued_states, 0, sizeof(fk.requeued_states));
	for (size_t i = 0; i < m->n && i + 1 < sizeof(fk.requeued_states); i++)
		fk.requeued_states[i] = state_char(m->r[i].state);
}

static const struct sched_ops fake_ops = {fake_record, fake_final, fake_deleted, fake_requeue,
					  NULL};

static int reset_fake(void **state)
{
	(void)state;
	free(fk.r);
	memset(&fk, 0, sizeof(fk));
	memset(&env_opt, 0, sizeof(env_opt));
	return 0;
}

/* ---- parameters ---- */

static struct sched_channel chans[2];

static struct sched_params params(unsigned conc, unsigned dconc, unsigned limit)
{
	struct sched_params p = {0};

	chans[0] = (struct sched_channel){"smtp", conc, dconc, limit};
	chans[1] = (struct sched_channel){"local", 10, 10, 1};
	p.backoff = (struct backoff_policy){
	    .minimal_us = 300 * SEC,
	    .maximal_us = 4000 * SEC,
	    .lifetime_us = 5 * 86400 * SEC,
	    .delay_warning_us = 0,
	};
	p.initial_destination_concurrency = dconc;
	p.dead_after = 1;
	p.dead_retry_us = 600 * SEC;
	p.channels = chans;
	p.n_channels = 2;
	return p;
}

static void check_counts(const struct sched *s, size_t msgs, size_t ready, size_t deferred,
			 size_t running)
{
	struct sched_counts c;

	sched_counts(s, &c);
	if (c.messages != msgs || c.ready != ready || c.deferred != deferred ||
	    c.running != running)
		fail_msg("counts: got messages=%zu ready=%zu deferred=%zu running=%zu, want "
			 "%zu %zu %zu %zu",
			 c.messages, c.ready, c.deferred, c.running, msgs, ready, deferred,
			 running);
}

static void done1(struct sched *s, const struct sched_delivery *d, uint32_t status,
		  bool conn_failed, int64_t now)
{
	struct sched_result *r = xcalloc(d->n ? d->n : 1, sizeof(*r));

	for (size_t j = 0; j < d->n; j++)
		r[j] = (struct sched_result){d->index[j], status,
					     status == ST_OK   ? 250
					     : status == ST_TF ? 451
							       : 550,
					     status == ST_OK   ? "2.0.0"
					     : status == ST_TF ? "4.3.0"
							       : "5.1.1",
					     "reply"};
	if (sched_done(s, d->id, r, d->n, conn_failed, now) != 0)
		fail_msg("sched_done(%" PRIu64 ") failed", d->id);
	free(r);
}

/*
 * notice1 - the next delivery must be qid's notice covering exactly the
 * route indexes in want (a string of digits, in order) with this delay
 * flag; it is answered with status.
 */
static void notice1(struct sched *s, int64_t now, const char *qid, const char *want, bool delay,
		    uint32_t status)
{
	struct sched_delivery d;
	char got[16] = "";
	struct sched_result r[8];

	if (!sched_next(s, now, &d))
		fail_msg("%s: no delivery, want its notice", qid);
	if (!d.notice || strcmp(d.channel, "bounce") != 0 || strcmp(d.qid, qid) != 0)
		fail_msg("got a delivery of %s on %s (notice %d), want %s's notice", d.qid,
			 d.channel, d.notice, qid);
	for (size_t j = 0; j < d.n && j < 8; j++) {
		got[j] = (char)('0' + d.index[j]);
		r[j] = (struct sched_result){d.index[j], status, 250, "2.0.0", "queued"};
	}
	if (strcmp(got, want) != 0 || d.delay != delay)
		fail_msg("%s: notice covers \"%s\" delay %d, want \"%s\" delay %d", qid, got,
			 d.delay, want, delay);
	if (sched_done(s, d.id, r, d.n, false, now) != 0)
		fail_msg("%s: sched_done of the notice failed", qid);
}

/* ---- batching ---- */

static const struct batch_case {
	const char *name;
	unsigned limit;
	size_t nmsg, nrcpt;
	unsigned hops;
	const char *want; /* batch sizes in order */
} batch_cases[] = {
    {"7 rcpts, limit 3", 3, 1, 7, 1, "3,3,1"},
    {"limit 1", 1, 1, 3, 1, "1,1,1"},
    {"two messages never share", 10, 2, 2, 1, "2,2"},
    {"three messages, one rcpt each", 10, 3, 1, 1, "1,1,1"},
    {"two nexthops", 10, 1, 4, 2, "2,2"},
    {"three nexthops, limit 1", 1, 1, 3, 3, "1,1,1"},
    {"6 rcpts, 3 nexthops", 50, 1, 6, 3, "2,2,2"},
};

static void test_batching(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(batch_cases) / sizeof(batch_cases[0]); c++) {
		const struct batch_case *bc = &batch_cases[c];
		struct sched_params p = params(100, 100, bc->limit);
		struct sched *s = sched_new(&p, &fake_ops);
		struct sched_delivery d;
		char got[128] = "", qid[32];
		size_t total = 0;
		struct sched_counts cn;

		reset_fake(NULL);
		for (size_t i = 0; i < bc->nmsg; i++) {
			snprintf(qid, sizeof(qid), "BATCH%u", (unsigned)i % 100);
			add_simple(s, qid, 0, bc->nrcpt, bc->hops, 0);
		}
		while (sched_next(s, 1, &d)) {
			size_t len = strlen(got);

			snprintf(got + len, sizeof(got) - len, "%s%zu", len ? "," : "", d.n);
			assert_string_equal(d.channel, "smtp");
			for (size_t j = 0; j < d.n; j++) {
				const struct rcpt *r = &d.m->r[d.index[j]];

				if (strcmp(r->nexthop, d.nexthop) != 0)
					fail_msg("%s: rcpt %u nexthop got %s, batch %s", bc->name,
						 d.index[j], r->nexthop, d.nexthop);
				for (size_t k = 0; k < j; k++)
					assert_int_not_equal(d.index[k], d.index[j]);
			}
			assert_string_equal(d.qid, d.m->qid);
			total += d.n;
			done1(s, &d, ST_OK, false, 2);
		}
		if (strcmp(got, bc->want) != 0)
			fail_msg("%s: batches got %s, want %s", bc->name, got, bc->want);
		sched_counts(s, &cn);
		if (total != bc->nmsg * bc->nrcpt || cn.delivered != total ||
		    fk.finals != bc->nmsg || cn.messages != 0)
			fail_msg("%s: got %zu rcpts, %" PRIu64 " delivered, %zu finals, %zu left",
				 bc->name, total, cn.delivered, fk.finals, cn.messages);
		sched_free(&s);
		assert_null(s);
	}
}

/* ---- channel concurrency ---- */

static void test_channel_concurrency(void **state)
{
	struct sched_params p = params(2, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d1, d2, d3;

	(void)state;
	add_simple(s, "CONC0", 0, 1, 1, 0);
	add_simple(s, "CONC1", 0, 1, 1, 0);
	add_simple(s, "CONC2", 0, 1, 1, 0);
	assert_true(sched_next(s, 1, &d1));
	assert_true(sched_next(s, 1, &d2));
	if (sched_next(s, 1, &d3))
		fail_msg("third delivery with channel concurrency 2: got true, want false");
	check_counts(s, 3, 1, 0, 2);
	done1(s, &d1, ST_OK, false, 2);
	assert_true(sched_next(s, 2, &d3));
	assert_string_equal(d3.qid, "CONC2");
	done1(s, &d2, ST_OK, false, 3);
	done1(s, &d3, ST_OK, false, 3);
	check_counts(s, 0, 0, 0, 0);
	/* Unknown and finished ids. */
	assert_int_equal(sched_done(s, d3.id, NULL, 0, false, 4), -1);
	assert_int_equal(sched_done(s, 12345, NULL, 0, false, 4), -1);
	sched_free(&s);
}

/* Two channels: "smtp" first in order, a full "smtp" does not block "local". */
static void test_channel_order(void **state)
{
	struct sched_params p = params(1, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d1, d2;
	struct msgstate m;
	const struct rt rl[] = {{"local", "", NULL}};
	const struct rt ru[] = {{"uucp", "gw", NULL}};

	(void)state;
	mk(&m, "LOCAL", 0, rl, 1);
	assert_int_equal(sched_add(s, &m, 0), 0);
	add_simple(s, "SMTP0", 0, 1, 1, 0);
	add_simple(s, "SMTP1", 0, 1, 1, 0);
	mk(&m, "UUCP", 0, ru, 1); /* unknown channel: defaults */
	assert_int_equal(sched_add(s, &m, 0), 0);
	assert_true(sched_next(s, 1, &d1));
	assert_string_equal(d1.channel, "smtp");
	assert_true(sched_next(s, 1, &d2));
	assert_string_equal(d2.channel, "local");
	done1(s, &d2, ST_OK, false, 1);
	assert_true(sched_next(s, 1, &d2));
	assert_string_equal(d2.channel, "uucp");
	assert_string_equal(d2.nexthop, "gw");
	done1(s, &d2, ST_OK, false, 1);
	assert_false(sched_next(s, 1, &d2));
	done1(s, &d1, ST_OK, false, 1);
	assert_true(sched_next(s, 1, &d1));
	done1(s, &d1, ST_OK, false, 1);
	check_counts(s, 0, 0, 0, 0);
	sched_free(&s);
}

/* ---- destination window, dead destinations ---- */

static size_t count_records(const char *enh, uint32_t status)
{
	size_t n = 0;

	for (size_t i = 0; i < fk.nr; i++)
		if (!fk.r[i].delay_warned && strcmp(fk.r[i].enh, enh) == 0 &&
		    fk.r[i].status == status)
			n++;
	return n;
}

static void test_dest_window(void **state)
{
	struct sched_params p = params(100, 3, 50);
	struct sched *s;
	struct sched_delivery d[4];
	struct sched_counts c;
	char qid[17];
	int64_t t = 10 * SEC;

	(void)state;
	p.initial_destination_concurrency = 1;
	p.dead_after = 2;
	s = sched_new(&p, &fake_ops);
	for (int i = 0; i < 6; i++) {
		snprintf(qid, sizeof(qid), "WIN%d", i);
		add_simple(s, qid, 0, 1, 1, 0);
	}
	/* Window 1. */
	assert_true(sched_next(s, t, &d[0]));
	if (sched_next(s, t, &d[1]))
		fail_msg("second delivery with window 1: got true, want false");
	/* Success: window 2. */
	done1(s, &d[0], ST_OK, false, t);
	assert_true(sched_next(s, t, &d[1]));
	assert_true(sched_next(s, t, &d[2]));
	if (sched_next(s, t, &d[3]))
		fail_msg("third delivery with window 2: got true, want false");
	/* A connection failure: window 1 with one still running. */
	done1(s, &d[1], ST_TF, true, t);
	assert_false(sched_next(s, t, &d[3]));
	/* Second consecutive failure, nothing running: dead until t + 600 s. */
	fk.nr = 0;
	done1(s, &d[2], ST_TF, true, t);
	assert_int_equal(fk.nr, 1); /* d[2]'s own result only */
	check_counts(s, 5, 3, 2, 0);
	fk.nr = 0;
	if (sched_next(s, t + 1, &d[3]))
		fail_msg("delivery to a dead destination: got true, want false");
	if (count_records("4.4.1", ST_TF) != 3 || fk.nr != 3)
		fail_msg("dead destination: got %zu records (%zu 4.4.1), want 3 4.4.1", fk.nr,
			 count_records("4.4.1", ST_TF));
	for (size_t i = 0; i < fk.nr; i++) {
		if (fk.r[i].next != t + 600 * SEC)
			fail_msg("4.4.1 next attempt got %" PRId64 ", want %" PRId64, fk.r[i].next,
				 t + 600 * SEC);
		assert_string_equal(fk.r[i].text, "destination not responding");
	}
	check_counts(s, 5, 0, 5, 0);
	sched_counts(s, &c);
	assert_int_equal(c.deferrals, 5);
	/* Everything comes back by t + 600 s (the 4.x retries are earlier). */
	assert_true(sched_next_wakeup(s) <= t + 600 * SEC);
	sched_due(s, t + 600 * SEC);
	check_counts(s, 5, 5, 0, 0);
	assert_int_equal(sched_next_wakeup(s), INT64_MAX);
	/* Revived with the initial window. */
	assert_true(sched_next(s, t + 600 * SEC, &d[0]));
	assert_false(sched_next(s, t + 600 * SEC, &d[1]));
	done1(s, &d[0], ST_OK, false, t + 601 * SEC);
	sched_free(&s);
}

/* flush(NULL) revives a dead destination at once. */
static void test_flush_revives(void **state)
{
	struct sched_params p = params(100, 3, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;

	(void)state;
	add_simple(s, "DEAD0", 0, 1, 1, 0);
	add_simple(s, "DEAD1", 0, 1, 1, 0);
	assert_true(sched_next(s, 1, &d));
	done1(s, &d, ST_TF, true, 1); /* dead_after 1 */
	assert_false(sched_next(s, 2, &d));
	check_counts(s, 2, 0, 2, 0);
	sched_flush(s, NULL, 3);
	check_counts(s, 2, 2, 0, 0);
	assert_true(sched_next(s, 3, &d));
	done1(s, &d, ST_OK, false, 3);
	assert_true(sched_next(s, 3, &d));
	done1(s, &d, ST_OK, false, 3);
	check_counts(s, 0, 0, 0, 0);
	sched_free(&s);
}

/* ---- retries, expiry, delay notice ---- */

static void check_next(const char *what, int64_t got, int64_t now, int64_t delay)
{
	/* backoff_next: delay plus a spread below 10 %. */
	if (got < now + delay || got >= now + delay + delay / 10)
		fail_msg("%s: next attempt got %" PRId64 ", want in [%" PRId64 ", %" PRId64 ")",
			 what, got, now + delay, now + delay + delay / 10);
}

static void test_retry(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;
	int64_t t = 10 * SEC, next;

	(void)state;
	add_simple(s, "RETRY", 0, 1, 1, 0);
	assert_int_equal(sched_next_wakeup(s), INT64_MAX);
	assert_true(sched_next(s, t, &d));
	done1(s, &d, ST_TF, false, t);
	assert_int_equal(fk.nr, 1);
	assert_int_equal(fk.r[0].status, ST_TF);
	assert_int_equal(fk.r[0].code, 451);
	assert_string_equal(fk.r[0].enh, "4.3.0");
	assert_int_equal(fk.r[0].time, t);
	check_next("first retry", fk.r[0].next, t, 300 * SEC);
	next = fk.r[0].next;
	if (sched_next_wakeup(s) != next)
		fail_msg("wakeup got %" PRId64 ", want %" PRId64, sched_next_wakeup(s), next);
	check_counts(s, 1, 0, 1, 0);
	sched_due(s, next - 1);
	assert_false(sched_next(s, next - 1, &d));
	sched_due(s, next);
	assert_int_equal(sched_next_wakeup(s), INT64_MAX);
	assert_true(sched_next(s, next, &d));
	done1(s, &d, ST_TF, false, next);
	check_next("second retry", fk.r[1].next, next, 600 * SEC);
	/* Third: 1200 s. */
	t = fk.r[1].next;
	sched_due(s, t);
	assert_true(sched_next(s, t, &d));
	done1(s, &d, ST_TF, false, t);
	check_next("third retry", fk.r[2].next, t, 1200 * SEC);
	assert_int_equal(d.m->r[0].attempts, 3);
	sched_free(&s);
}

static void test_expiry(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s;
	struct sched_delivery d;
	struct sched_counts c;
	int64_t t;

	(void)state;
	p.backoff.lifetime_us = 1000 * SEC;
	s = sched_new(&p, &fake_ops);
	add_simple(s, "EXPIRE", 0, 1, 1, 0);
	/* Just before expiry: the retry is clamped to the expiry time. */
	assert_true(sched_next(s, 900 * SEC, &d));
	done1(s, &d, ST_TF, false, 900 * SEC);
	t = fk.r[0].next;
	if (t != 1000 * SEC)
		fail_msg("retry near expiry got %" PRId64 ", want %" PRId64, t, 1000 * SEC);
	sched_due(s, t);
	assert_true(sched_next(s, t, &d));
	done1(s, &d, ST_TF, false, t);
	assert_int_equal(fk.nr, 2);
	assert_int_equal(fk.r[1].status, ST_PF);
	assert_string_equal(fk.r[1].enh, "4.4.7");
	assert_string_equal(fk.r[1].text, "delivery time expired");
	assert_int_equal(fk.finals, 0); /* the notice first */
	notice1(s, t, "EXPIRE", "0", false, ST_OK);
	assert_int_equal(fk.finals, 1);
	assert_string_equal(fk.final_qid, "EXPIRE");
	assert_string_equal(fk.final_states, "F");
	assert_false(sched_has(s, "EXPIRE"));
	sched_counts(s, &c);
	if (c.expired != 1 || c.failed != 1 || c.deferrals != 1 || c.messages != 0)
		fail_msg("got expired=%" PRIu64 " failed=%" PRIu64 " deferrals=%" PRIu64
			 " messages=%zu, want 1 1 1 0",
			 c.expired, c.failed, c.deferrals, c.messages);
	sched_free(&s);
}

static void test_delay_notice(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s;
	struct sched_delivery d;
	int64_t t = 50 * SEC;
	size_t notices = 0;

	(void)state;
	p.backoff.delay_warning_us = 100 * SEC;
	s = sched_new(&p, &fake_ops);
	add_simple(s, "DELAY", 0, 1, 1, 0);
	/* Before the warning time: no notice. */
	assert_true(sched_next(s, t, &d));
	done1(s, &d, ST_TF, false, t);
	assert_int_equal(fk.nr, 1);
	assert_false(sched_next(s, t, &d));
	/* After: one delay notice, then none in later rounds. */
	for (int round = 0; round < 3; round++) {
		t = fk.r[fk.nr - 1].notice ? fk.r[fk.nr - 2].next : fk.r[fk.nr - 1].next;
		sched_due(s, t);
		assert_true(sched_next(s, t, &d));
		assert_false(d.notice);
		done1(s, &d, ST_TF, false, t);
		if (round == 0) {
			notice1(s, t, "DELAY", "0", true, ST_OK);
			notices++;
		}
		assert_false(sched_next(s, t, &d));
	}
	/* Records: result, result, notice (delay, no final recipient), result, result. */
	assert_int_equal(fk.nr, 5);
	for (size_t i = 0; i < fk.nr; i++)
		if (fk.r[i].notice != (i == 2))
			fail_msg("record %zu: notice got %d, want %d", i, fk.r[i].notice, i == 2);
	assert_true(fk.r[2].delay_warned);
	assert_int_equal(fk.r[2].nidx, 0);
	assert_int_equal(notices, 1);
	/* Final and delivered: no success notice (NOTIFY not given). */
	t = fk.r[4].next;
	sched_due(s, t);
	assert_true(sched_next(s, t, &d));
	done1(s, &d, ST_OK, false, t);
	assert_false(sched_next(s, t, &d));
	assert_int_equal(fk.finals, 1);
	assert_string_equal(fk.final_states, "D");
	sched_free(&s);
}

/* ---- results and records ---- */

struct want_rec {
	uint32_t index, status, code;
	const char *enh, *text;
};

static void check_recs(const char *what, size_t from, const struct want_rec *w, size_t n)
{
	if (fk.nr - from != n)
		fail_msg("%s: got %zu records, want %zu", what, fk.nr - from, n);
	for (size_t i = 0; i < n; i++) {
		const struct rec *r = &fk.r[from + i];

		if (r->delay_warned || r->index != w[i].index || r->status != w[i].status ||
		    r->code != w[i].code || strcmp(r->enh, w[i].enh) != 0 ||
		    strcmp(r->text, w[i].text) != 0)
			fail_msg("%s: record %zu got {%u %u %u %s \"%s\"}, want {%u %u %u %s "
				 "\"%s\"}",
				 what, i, r->index, r->status, r->code, r->enh, r->text, w[i].index,
				 w[i].status, w[i].code, w[i].enh, w[i].text);
	}
}

static void test_results(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;
	struct sched_counts c;
	const struct sched_result res[] = {
	    {0, ST_OK, 250, "2.0.0", "ok"},
	    {1, ST_PF, 550, "5.1.1", "no such user"},
	    {0, ST_PF, 550, "5.0.0", "duplicate: ignored"},
	    {7, ST_OK, 250, "2.0.0", "not in the batch: ignored"},
	    {2, 9, 250, "2.0.0", "bad status: as if none"},
	};
	const struct want_rec want1[] = {
	    {0, ST_OK, 250, "2.0.0", "ok"},
	    {1, ST_PF, 550, "5.1.1", "no such user"},
	    {2, ST_TF, 0, "4.4.2", "delivery ended without a result"},
	};
	const struct want_rec want2[] = {{2, ST_OK, 250, "2.0.0", "fine now"}};
	const struct sched_result res2[] = {{2, ST_OK, 250, "2.0.0", "fine now"}};

	(void)state;
	add_simple(s, "RESULTS", 0, 3, 1, 0);
	assert_true(sched_next(s, 1, &d));
	assert_int_equal(d.n, 3);
	assert_int_equal(sched_done(s, d.id, res, sizeof(res) / sizeof(res[0]), false, 5), 0);
	assert_int_equal(fk.record_calls, 1);
	check_recs("first delivery", 0, want1, 3);
	assert_string_equal(fk.r[0].qid, "RESULTS");
	assert_int_equal(fk.finals, 0);
	sched_counts(s, &c);
	if (c.delivered != 1 || c.failed != 1 || c.deferrals != 1)
		fail_msg("got delivered=%" PRIu64 " failed=%" PRIu64 " deferrals=%" PRIu64
			 ", want 1 1 1",
			 c.delivered, c.failed, c.deferrals);
	check_counts(s, 1, 0, 1, 0);
	/* Nothing ready or running: the failure's notice goes now, not at the end. */
	notice1(s, 5, "RESULTS", "1", false, ST_OK);
	assert_true(fk.r[3].notice);
	assert_int_equal(fk.r[3].nidx, 1);
	assert_int_equal(fk.r[3].idx[0], 1);
	/* flush(qid): due now. */
	assert_int_equal(sched_flush(s, "RESULTS", 6), 1);
	check_counts(s, 1, 1, 0, 0);
	assert_true(sched_next(s, 6, &d));
	assert_int_equal(d.n, 1);
	assert_int_equal(d.index[0], 2);
	assert_int_equal(sched_done(s, d.id, res2, 1, false, 7), 0);
	check_recs("second delivery", 4, want2, 1);
	assert_int_equal(fk.finals, 1);
	assert_string_equal(fk.final_qid, "RESULTS");
	assert_string_equal(fk.final_states, "DFD");
	assert_false(sched_has(s, "RESULTS"));
	check_counts(s, 0, 0, 0, 0);
	sched_free(&s);
}

/* Destinations of a channel take turns. */
static void test_round_robin(void **state)
{
	struct sched_params p = params(100, 10, 1);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d[6];
	char got[16] = "";

	(void)state;
	add_simple(s, "RRA", 0, 3, 1, 0); /* all to mx0 */
	{
		struct msgstate m;
		const struct rt rb[] = {
		    {"smtp", "other", NULL}, {"smtp", "other", NULL}, {"smtp", "other", NULL}};

		mk(&m, "RRB", 0, rb, 3);
		assert_int_equal(sched_add(s, &m, 0), 0);
	}
	for (int i = 0; i < 6; i++) {
		assert_true(sched_next(s, 1, &d[i]));
		got[i] = d[i].qid[2];
	}
	assert_false(sched_next(s, 1, &d[0]));
	if (strcmp(got, "ABABAB") != 0)
		fail_msg("destination order got %s, want ABABAB", got);
	for (int i = 0; i < 6; i++)
		done1(s, &d[i], ST_OK, false, 2);
	assert_int_equal(fk.finals, 2);
	sched_free(&s);
}

/* Results for recipients of another delivery, or twice, are ignored. */
static void test_foreign_results(void **state)
{
	struct sched_params p = params(100, 10, 1);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d1, d2;
	const struct sched_result res[] = {
	    {1, ST_OK, 250, "2.0.0", "other delivery's"},
	    {0, ST_TF, 451, "4.3.0", "first"},
	    {0, ST_TF, 452, "4.3.1", "twice"},
	};
	const struct want_rec want1[] = {{0, ST_TF, 451, "4.3.0", "first"}};
	const struct want_rec want2[] = {{1, ST_OK, 250, "2.0.0", "reply"}};

	(void)state;
	add_simple(s, "FOREIGN", 0, 2, 1, 0);
	assert_true(sched_next(s, 1, &d1));
	assert_true(sched_next(s, 1, &d2));
	assert_int_equal(d1.index[0], 0);
	assert_int_equal(d2.index[0], 1);
	assert_int_equal(sched_done(s, d1.id, res, 3, false, 2), 0);
	check_recs("first delivery", 0, want1, 1);
	check_counts(s, 1, 0, 1, 1);
	done1(s, &d2, ST_OK, false, 3);
	check_recs("second delivery", 1, want2, 1);
	assert_int_equal(fk.finals, 0);
	sched_free(&s);
}

static void test_error_channel(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;
	struct msgstate m;
	const struct rt mixed[] = {{"error", "", "5.1.1 no such user"}, {"smtp", "mx", NULL}};
	const struct rt allerr[] = {{"error", "", "5.1.1 no such user"}};
	const struct rt temp[] = {{"error", "", "4.3.0 cannot read include file"}};

	(void)state;
	/* All failed at routing: the notice at once, then final. */
	mk(&m, "ALLERR", 0, allerr, 1);
	assert_int_equal(sched_add(s, &m, 0), 0);
	assert_int_equal(fk.finals, 0);
	notice1(s, 0, "ALLERR", "0", false, ST_OK);
	assert_int_equal(fk.finals, 1);
	assert_string_equal(fk.final_qid, "ALLERR");
	assert_string_equal(fk.final_states, "F");
	assert_false(sched_has(s, "ALLERR"));
	/* A failed error recipient beside a deliverable one. */
	mk(&m, "MIXED", 0, mixed, 2);
	assert_int_equal(sched_add(s, &m, 0), 0);
	assert_true(sched_next(s, 1, &d));
	assert_int_equal(d.n, 1);
	assert_int_equal(d.index[0], 1);
	assert_false(sched_next(s, 1, &d)); /* the notice waits for the running delivery */
	done1(s, &d, ST_OK, false, 2);
	notice1(s, 2, "MIXED", "0", false, ST_OK);
	assert_int_equal(fk.finals, 2);
	assert_string_equal(fk.final_states, "FD");
	/* A 4.x routing error is never delivered and never wakes the daemon. */
	mk(&m, "TEMPERR", 0, temp, 1);
	assert_int_equal(sched_add(s, &m, 0), 0);
	assert_false(sched_next(s, 3, &d));
	assert_int_equal(sched_next_wakeup(s), INT64_MAX);
	check_counts(s, 1, 0, 1, 0);
	sched_flush(s, NULL, 4);
	assert_false(sched_next(s, 4, &d));
	sched_free(&s);
}

/* ---- notices: NOTIFY, the null sender, retries, reloading ---- */

#define N_NEVER	  ZFARM__NOTIFY__NOTIFY_NEVER
#define N_SUCCESS ZFARM__NOTIFY__NOTIFY_SUCCESS
#define N_FAILURE ZFARM__NOTIFY__NOTIFY_FAILURE
#define N_DELAY	  ZFARM__NOTIFY__NOTIFY_DELAY

static const struct notify_case {
	const char *name, *sender, *notice;
	bool double_bounce;
	uint32_t notify[4];
	uint32_t status[4]; /* each recipient's one result */
	const char *want;   /* notice covers these, "" none */
	bool passed;	    /* results say dsn_passed */
} notify_cases[] = {
    {"default: failures", NULL, NULL, false, {0, 0, 0, 0}, {ST_OK, ST_PF, ST_OK, ST_PF}, "13"},
    {"NEVER", NULL, NULL, false, {N_NEVER, N_NEVER, 0, 0}, {ST_PF, ST_PF, ST_OK, ST_OK}, ""},
    {"SUCCESS only", NULL, NULL, false,
     {N_SUCCESS, N_SUCCESS, 0, 0}, {ST_OK, ST_PF, ST_OK, ST_OK}, "0"},
    {"SUCCESS,FAILURE", NULL, NULL, false,
     {N_SUCCESS | N_FAILURE, N_SUCCESS | N_FAILURE, N_DELAY, 0}, {ST_OK, ST_PF, ST_PF, ST_OK},
     "01"},
    {"null sender", "", NULL, false, {0, N_SUCCESS, 0, 0}, {ST_PF, ST_OK, ST_OK, ST_OK}, ""},
    {"null sender, double bounce on", "", NULL, true,
     {0, N_SUCCESS, 0, 0}, {ST_PF, ST_OK, ST_PF, ST_OK}, "02"},
    {"a double bounce never", "", "double-bounce", true,
     {0, 0, 0, 0}, {ST_PF, ST_PF, ST_OK, ST_OK}, ""},
    {"nothing failed", NULL, NULL, true, {0, 0, 0, 0}, {ST_OK, ST_OK, ST_OK, ST_OK}, ""},
    {"SUCCESS passed on", NULL, NULL, false,
     {N_SUCCESS, N_SUCCESS | N_FAILURE, 0, 0}, {ST_OK, ST_PF, ST_OK, ST_OK}, "1", true},
};

static void test_notify(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(notify_cases) / sizeof(notify_cases[0]); c++) {
		const struct notify_case *nc = &notify_cases[c];
		struct sched_params p = params(100, 10, 50);
		struct sched *s;
		struct sched_delivery d;
		struct sched_result r[4];
		struct rt rts[4];
		struct msgstate m;

		reset_fake(NULL);
		p.double_bounce = nc->double_bounce;
		s = sched_new(&p, &fake_ops);
		env_opt.sender = nc->sender;
		env_opt.notice = nc->notice;
		for (int k = 0; k < 4; k++)
			rts[k] = (struct rt){"smtp", "mx", NULL, nc->notify[k]};
		mk(&m, "NOTIFY", 0, rts, 4);
		assert_int_equal(sched_add(s, &m, 0), 0);
		assert_true(sched_next(s, 1, &d));
		assert_int_equal(d.n, 4);
		for (int k = 0; k < 4; k++)
			r[k] = (struct sched_result){d.index[k], nc->status[d.index[k]], 250, "2.0.0",
						     "x", nc->passed};
		assert_int_equal(sched_done(s, d.id, r, 4, false, 2), 0);
		if (nc->want[0])
			notice1(s, 3, "NOTIFY", nc->want, false, ST_OK);
		if (sched_next(s, 3, &d))
			fail_msg("%s: an unexpected delivery (notice %d)", nc->name, d.notice);
		if (fk.finals != 1)
			fail_msg("%s: finals got %zu, want 1", nc->name, fk.finals);
		sched_free(&s);
	}
}

/* A notice the bounce transport defers is retried later; one it refuses is given up. */
static void test_notice_retry(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;
	struct sched_counts c;
	int64_t t = 1000 * SEC;

	(void)state;
	add_simple(s, "NRETRY", 0, 1, 1, 0);
	assert_true(sched_next(s, t, &d));
	done1(s, &d, ST_PF, false, t);
	notice1(s, t, "NRETRY", "0", false, ST_TF);
	assert_int_equal(fk.finals, 0);
	assert_false(sched_next(s, t, &d));
	/* Backoff from now (not from arrival): minimal backoff, within its spread. */
	if (sched_next_wakeup(s) < t + 300 * SEC || sched_next_wakeup(s) > t + 330 * SEC)
		fail_msg("notice retry at %" PRId64 ", want now + 300..330 s",
			 sched_next_wakeup(s) - t);
	t = sched_next_wakeup(s);
	sched_due(s, t);
	notice1(s, t, "NRETRY", "0", false, ST_PF);
	assert_int_equal(fk.finals, 1);
	sched_counts(s, &c);
	assert_int_equal(c.notices, 0);
	assert_int_equal(c.notices_failed, 1);
	assert_true(fk.r[fk.nr - 1].notice);
	sched_free(&s);
}

/* After a restart the NoticeRecord stops a second notice; a missing one brings it back. */
static void test_notice_reload(void **state)
{
	const struct rt rts[] = {{"smtp", "mx", NULL, 0}, {"smtp", "mx", NULL, 0}};
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;
	struct list l = {0};
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;
	struct msgstate m;
	char err[200];

	(void)state;
	mk(&m, "RELOAD", 0, rts, 2);
	assert_int_equal(sched_add(s, &m, 0), 0);
	assert_true(sched_next(s, 1, &d));
	{
		struct sched_result r[2] = {{0, ST_PF, 550, "5.1.1", "gone"},
					    {1, ST_OK, 250, "2.0.0", "ok"}};
		assert_int_equal(sched_done(s, d.id, r, 2, false, 2), 0);
	}
	notice1(s, 3, "RELOAD", "0", false, ST_OK);
	assert_int_equal(fk.finals, 1);
	sched_free(&s);
	/* Replay: routes + marker + the records the daemon appended. */
	for (uint32_t i = 0; i < 2; i++)
		add_route(&l, i, 2, &rts[i]);
	{
		Zfarm__CtlRecord mark = ZFARM__CTL_RECORD__INIT;

		mark.body_case = ZFARM__CTL_RECORD__BODY_ROUTED;
		mark.routed = true;
		list_push_packed(&l, &mark);
	}
	for (size_t k = 0; k + 1 < fk.nr; k++) { /* the results, not the notice */
		Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;
		Zfarm__ResultRecord rr = ZFARM__RESULT_RECORD__INIT;

		assert_false(fk.r[k].notice);
		rr.index = fk.r[k].index;
		rr.status = fk.r[k].status;
		rr.enhanced_code = fk.r[k].enh;
		rr.text = fk.r[k].text;
		c.body_case = ZFARM__CTL_RECORD__BODY_RESULT;
		c.result = &rr;
		list_push_packed(&l, &c);
	}
	env.queue_id = "RELOAD";
	env.sender = "s@example.com";
	for (int with_notice = 0; with_notice < 2; with_notice++) {
		size_t finals = fk.finals;

		if (with_notice) {
			Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;
			Zfarm__NoticeRecord nr = ZFARM__NOTICE_RECORD__INIT;
			uint32_t idx0 = 0;

			nr.index = &idx0;
			nr.n_index = 1;
			c.body_case = ZFARM__CTL_RECORD__BODY_NOTIFIED;
			c.notified = &nr;
			list_push_packed(&l, &c);
		}
		assert_int_equal(msgstate_load(&m, &env, l.v, l.n, err, sizeof(err)), MSGSTATE_OK);
		assert_int_equal(m.r[0].notified, with_notice);
		s = sched_new(&p, &fake_ops);
		assert_int_equal(sched_add(s, &m, 10), 0);
		if (!with_notice)
			notice1(s, 10, "RELOAD", "0", false, ST_OK);
		assert_false(sched_next(s, 10, &d));
		assert_int_equal(fk.finals, finals + 1);
		sched_free(&s);
	}
	list_free(&l);
}

/* delete: idle at once; running when the delivery ends, its results dropped. */
static void test_delete(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;

	(void)state;
	assert_int_equal(sched_delete(s, "NOSUCH"), -1);
	add_simple(s, "IDLE", 0, 2, 1, 0);
	assert_int_equal(sched_delete(s, "IDLE"), 0);
	assert_int_equal(fk.deleted, 1);
	assert_false(sched_has(s, "IDLE"));
	assert_false(sched_next(s, 1, &d));
	add_simple(s, "BUSY", 0, 2, 1, 0);
	assert_true(sched_next(s, 1, &d));
	assert_int_equal(sched_delete(s, "BUSY"), 0);
	assert_int_equal(fk.deleted, 1);
	assert_null(sched_find(s, "BUSY"));
	done1(s, &d, ST_PF, false, 2);
	assert_int_equal(fk.deleted, 2);
	assert_string_equal(fk.deleted_qid, "BUSY");
	assert_int_equal(fk.nr, 0); /* no results, no notice */
	assert_int_equal(fk.finals, 0);
	assert_false(sched_next(s, 3, &d));
	check_counts(s, 0, 0, 0, 0);
	sched_free(&s);
}

/* bounce-now: deferred and held recipients fail at once, a running one when it comes back. */
static void test_bounce_now(void **state)
{
	struct sched_params p = params(100, 10, 1);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d1, d2;

	(void)state;
	assert_int_equal(sched_bounce(s, "NOSUCH", 0), -1);
	add_simple(s, "BOUNCE", 0, 3, 1, 0);
	assert_true(sched_next(s, 1, &d1));
	done1(s, &d1, ST_TF, false, 1); /* r0 deferred */
	assert_true(sched_next(s, 1, &d2));
	assert_true(sched_next(s, 1, &d1)); /* r1, r2 running */
	done1(s, &d1, ST_TF, false, 2);	    /* r2 deferred */
	assert_int_equal(sched_bounce(s, "BOUNCE", 3), 0);
	assert_int_equal(fk.r[fk.nr - 1].status, ST_PF);
	assert_string_equal(fk.r[fk.nr - 1].enh, "5.0.0");
	assert_string_equal(fk.r[fk.nr - 1].text, "message returned by the queue administrator");
	assert_false(sched_next(s, 3, &d1)); /* r1 still running: no notice yet */
	done1(s, &d2, ST_TF, false, 4);	     /* r1 comes back deferred: fails */
	assert_int_equal(fk.r[fk.nr - 1].status, ST_PF);
	assert_string_equal(fk.r[fk.nr - 1].enh, "5.0.0");
	notice1(s, 4, "BOUNCE", "012", false, ST_OK);
	assert_int_equal(fk.finals, 1);
	assert_string_equal(fk.final_states, "FFF");
	sched_free(&s);
}

/*
 * Requeue: an idle message goes at once (ops->requeue, then forgotten); a
 * busy one leaves the ready lists and the heap at once, its running
 * delivery ends normally (result recorded before the requeue), then it
 * goes; one that became final meanwhile is not requeued but finishes.
 */
static void test_requeue(void **state)
{
	struct sched_params p = params(100, 10, 1);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d0, d1, d2, d;

	(void)state;
	assert_int_equal(sched_requeue(s, "NOSUCH"), -1);

	/* idle: deferred and pending recipients, one delivered */
	add_simple(s, "IDLE", 0, 3, 3, 0);
	assert_true(sched_next(s, 1, &d0));
	done1(s, &d0, ST_OK, false, 1);
	assert_true(sched_next(s, 1, &d1));
	done1(s, &d1, ST_TF, false, 1);
	check_counts(s, 1, 1, 1, 0);
	assert_int_equal(sched_requeue(s, "IDLE"), 0);
	assert_int_equal(fk.requeued, 1);
	assert_string_equal(fk.requeued_qid, "IDLE");
	assert_string_equal(fk.requeued_states, "DTP");
	assert_false(sched_has(s, "IDLE"));
	assert_int_equal(sched_requeue(s, "IDLE"), -1);
	check_counts(s, 0, 0, 0, 0);
	assert_false(sched_next(s, 2, &d));
	sched_due(s, 1000 * SEC); /* its heap entry is stale */
	assert_false(sched_next(s, 1000 * SEC, &d));
	assert_int_equal(fk.finals + fk.deleted, 0);

	/* busy: r0 running, r1 deferred, r2 ready */
	add_simple(s, "BUSY", 0, 3, 3, 0);
	assert_true(sched_next(s, 1, &d0));
	assert_true(sched_next(s, 1, &d1));
	done1(s, &d1, ST_TF, false, 1);
	check_counts(s, 1, 1, 1, 1);
	assert_int_equal(sched_requeue(s, "BUSY"), 0);
	assert_int_equal(sched_requeue(s, "BUSY"), 0); /* again: one requeue */
	assert_int_equal(fk.requeued, 1);
	check_counts(s, 1, 0, 0, 1);
	assert_false(sched_next(s, 2, &d)); /* r2 does not start */
	assert_non_null(sched_find(s, "BUSY"));
	done1(s, &d0, ST_TF, false, 3);
	assert_int_equal(fk.requeued, 2);
	assert_string_equal(fk.requeued_qid, "BUSY");
	assert_string_equal(fk.requeued_states, "TTP");
	/* r0's result was handed out before the requeue */
	assert_int_equal(fk.requeued_after, fk.nr);
	assert_int_equal(fk.r[fk.nr - 1].index, 0);
	assert_int_equal(fk.r[fk.nr - 1].status, ST_TF);
	assert_false(sched_has(s, "BUSY"));
	check_counts(s, 0, 0, 0, 0);

	/* final meanwhile: the running delivery delivers the last recipient */
	add_simple(s, "DONE", 0, 1, 1, 0);
	assert_true(sched_next(s, 4, &d2));
	assert_int_equal(sched_requeue(s, "DONE"), 0);
	done1(s, &d2, ST_OK, false, 5);
	assert_int_equal(fk.requeued, 2);
	assert_int_equal(fk.finals, 1);
	assert_string_equal(fk.final_qid, "DONE");

	/* held, and deleted */
	add_simple(s, "HELD", 0, 1, 1, 0);
	assert_int_equal(sched_hold(s, "HELD"), 0);
	assert_int_equal(sched_requeue(s, "HELD"), 0);
	assert_int_equal(fk.requeued, 3);
	add_simple(s, "GONE", 0, 1, 1, 0);
	assert_true(sched_next(s, 6, &d));
	assert_int_equal(sched_delete(s, "GONE"), 0);
	assert_int_equal(sched_requeue(s, "GONE"), -1);
	done1(s, &d, ST_OK, false, 7);
	assert_int_equal(fk.requeued, 3);
	assert_int_equal(fk.deleted, 1);
	check_counts(s, 0, 0, 0, 0);
	sched_free(&s);
}

/* A queued notice is dropped by a requeue (made again after it); a running one ends first. */
static void test_requeue_notice(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;
	struct sched_result r[2];
	size_t nrec;

	(void)state;
	add_simple(s, "NOTE", 0, 2, 1, 0);
	assert_true(sched_next(s, 1, &d));
	r[0] = (struct sched_result){0, ST_PF, 550, "5.1.1", "no"};
	r[1] = (struct sched_result){1, ST_TF, 451, "4.3.0", "later"};
	assert_int_equal(sched_done(s, d.id, r, 2, false, 1), 0);
	/* the failure notice is queued: the requeue takes it back */
	assert_int_equal(sched_requeue(s, "NOTE"), 0);
	assert_int_equal(fk.requeued, 1);
	assert_string_equal(fk.requeued_states, "FT");
	assert_false(sched_next(s, 2, &d));

	add_simple(s, "NOTE2", 0, 2, 1, 0);
	assert_true(sched_next(s, 3, &d));
	assert_int_equal(sched_done(s, d.id, r, 2, false, 3), 0);
	assert_true(sched_next(s, 3, &d)); /* the notice runs */
	assert_true(d.notice);
	assert_int_equal(sched_requeue(s, "NOTE2"), 0);
	assert_int_equal(fk.requeued, 1);
	nrec = fk.nr;
	r[0] = (struct sched_result){0, ST_OK, 250, "2.0.0", "queued"};
	assert_int_equal(sched_done(s, d.id, r, 1, false, 4), 0);
	assert_int_equal(fk.requeued, 2);
	assert_int_equal(fk.nr, nrec + 1); /* the NoticeRecord, before the requeue */
	assert_true(fk.r[fk.nr - 1].notice);
	assert_int_equal(fk.requeued_after, fk.nr);
	assert_false(sched_next(s, 5, &d));
	check_counts(s, 0, 0, 0, 0);
	sched_free(&s);
}

/* Hold takes a queued notice back; release queues it again. */
static void test_hold_notice(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;

	(void)state;
	add_simple(s, "HOLDN", 0, 1, 1, 0);
	assert_true(sched_next(s, 1, &d));
	done1(s, &d, ST_PF, false, 1);
	assert_int_equal(sched_hold(s, "HOLDN"), 0);
	assert_false(sched_next(s, 2, &d));
	assert_int_equal(fk.finals, 0);
	assert_int_equal(sched_release(s, "HOLDN", 3), 0);
	notice1(s, 3, "HOLDN", "0", false, ST_OK);
	assert_int_equal(fk.finals, 1);
	sched_free(&s);
}

/* Counters per channel and in total; the status of each recipient. */
static void test_counters(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;
	struct sched_counts c;
	struct sched_chan_counts cc;
	const struct rt rts[] = {{"smtp", "mx", NULL, 0}, {"local", "", NULL, 0}};
	struct msgstate m;
	const char *name;
	bool seen = false;

	(void)state;
	mk(&m, "COUNT", 0, rts, 2);
	assert_int_equal(sched_add(s, &m, 0), 0);
	assert_string_equal(sched_rcpt_status(s, sched_find(s, "COUNT"), 0), "pending");
	assert_true(sched_next(s, 1, &d));
	assert_string_equal(sched_rcpt_status(s, d.m, d.index[0]), "active");
	done1(s, &d, strcmp(d.channel, "smtp") == 0 ? ST_TF : ST_OK, false, 1);
	assert_true(sched_next(s, 1, &d));
	done1(s, &d, strcmp(d.channel, "smtp") == 0 ? ST_TF : ST_OK, false, 1);
	assert_string_equal(sched_rcpt_status(s, sched_find(s, "COUNT"), 0), "deferred");
	assert_string_equal(sched_rcpt_status(s, sched_find(s, "COUNT"), 1), "delivered");
	sched_counts(s, &c);
	assert_int_equal(c.received, 1);
	assert_int_equal(c.delivered, 1);
	assert_int_equal(c.deferrals, 1);
	for (size_t i = 0; (name = sched_channel_counts(s, i, &cc)); i++) {
		if (strcmp(name, "smtp") == 0) {
			assert_int_equal(cc.deferrals, 1);
			assert_int_equal(cc.delivered, 0);
			seen = true;
		} else if (strcmp(name, "local") == 0) {
			assert_int_equal(cc.delivered, 1);
			assert_int_equal(cc.deferrals, 0);
		}
	}
	assert_true(seen);
	assert_int_equal(sched_channels(s), 3); /* smtp, local, bounce */
	sched_free(&s);
}

/* A paused channel starts nothing until the pause ends, and says when that is. */
static void test_pause(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;

	(void)state;
	sched_pause_channel(s, "smtp", 50 * SEC);
	assert_int_equal(sched_next_wakeup(s), INT64_MAX); /* nothing waits */
	add_simple(s, "PAUSE", 0, 1, 1, 0);
	assert_false(sched_next(s, 10 * SEC, &d));
	assert_int_equal(sched_next_wakeup(s), 50 * SEC);
	assert_true(sched_next(s, 50 * SEC, &d));
	done1(s, &d, ST_OK, false, 51 * SEC);
	/* Over: never a wakeup time in the past (the daemon would spin). */
	assert_false(sched_next(s, 52 * SEC, &d));
	assert_int_equal(sched_next_wakeup(s), INT64_MAX);
	sched_free(&s);
}

/*
 * rate_delay: one delivery at a time per destination, starts at least the
 * delay apart, the daemon woken when it ends; other destinations are not
 * held up.
 */
static void test_rate_delay(void **state)
{
	struct sched_params p = params(100, 10, 1);
	struct sched *s;
	struct sched_delivery d, e;

	(void)state;
	chans[0].rate_delay_us = 10 * SEC;
	s = sched_new(&p, &fake_ops);
	add_simple(s, "RATEA", 0, 3, 1, 0); /* 3 rcpts, one nexthop, 1 per delivery */
	assert_true(sched_next(s, 1 * SEC, &d));
	assert_false(sched_next(s, 1 * SEC, &e)); /* window 1 */
	done1(s, &d, ST_OK, false, 2 * SEC);
	if (sched_next(s, 2 * SEC, &e))
		fail_msg("a delivery 1 s after the last start, want none before 11 s");
	if (sched_next_wakeup(s) != 11 * SEC)
		fail_msg("wakeup at %" PRId64 " us, want 11 s", sched_next_wakeup(s));
	assert_false(sched_next(s, 10 * SEC, &e));
	assert_true(sched_next(s, 11 * SEC, &e));
	done1(s, &e, ST_OK, false, 11 * SEC);
	/* A destination of its own (mx1) is not held up by mx0's delay. */
	add_simple(s, "RATEB", 0, 2, 2, 11 * SEC);
	assert_true(sched_next(s, 12 * SEC, &d));
	if (strcmp(d.qid, "RATEB") != 0 || strcmp(d.nexthop, "mx1") != 0)
		fail_msg("got %s to %s, want RATEB to mx1", d.qid, d.nexthop);
	done1(s, &d, ST_OK, false, 12 * SEC);
	assert_false(sched_next(s, 12 * SEC, &d));
	assert_true(sched_next(s, 21 * SEC, &d));
	assert_string_equal(d.qid, "RATEA");
	done1(s, &d, ST_OK, false, 21 * SEC);
	assert_false(sched_next(s, 30 * SEC, &d));
	assert_true(sched_next(s, 31 * SEC, &d));
	assert_string_equal(d.qid, "RATEB");
	assert_string_equal(d.nexthop, "mx0");
	done1(s, &d, ST_OK, false, 31 * SEC);
	assert_false(sched_next(s, 40 * SEC, &d)); /* all delivered */
	assert_int_equal(sched_next_wakeup(s), INT64_MAX);
	sched_free(&s);
	chans[0].rate_delay_us = 0;
}

/* ---- hold, release, flush ---- */

static void test_hold_release(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;
	struct msgstate m;
	int64_t next;

	(void)state;
	assert_int_equal(sched_hold(s, "NOSUCH"), -1);
	assert_int_equal(sched_release(s, "NOSUCH", 0), -1);
	/* Held while ready. */
	add_simple(s, "HOLD", 0, 2, 1, 0);
	assert_int_equal(sched_hold(s, "HOLD"), 0);
	assert_false(sched_next(s, 1, &d));
	check_counts(s, 1, 0, 2, 0);
	assert_int_equal(sched_release(s, "HOLD", 2), 0);
	assert_true(sched_next(s, 2, &d));
	assert_int_equal(d.n, 2);
	/* Held while running: the deferred results stay out. */
	assert_int_equal(sched_hold(s, "HOLD"), 0);
	done1(s, &d, ST_TF, false, 3);
	next = fk.r[0].next;
	sched_due(s, next);
	sched_flush(s, NULL, next);
	sched_flush(s, "HOLD", next);
	assert_false(sched_next(s, next, &d));
	assert_int_equal(sched_next_wakeup(s), INT64_MAX);
	/* Released before the retry time: back in the heap. */
	assert_int_equal(sched_release(s, "HOLD", 4), 0);
	assert_int_equal(sched_next_wakeup(s), next);
	assert_false(sched_next(s, 4, &d));
	sched_flush(s, "HOLD", 5);
	assert_true(sched_next(s, 5, &d));
	done1(s, &d, ST_OK, false, 5);
	assert_int_equal(fk.finals, 1);
	/* Added held (a held record on disk). */
	mk_simple(&m, "HELDADD", 0, 1, 1);
	m.held = true;
	assert_int_equal(sched_add(s, &m, 6), 0);
	assert_false(sched_next(s, 6, &d));
	assert_int_equal(sched_release(s, "HELDADD", 7), 0);
	assert_true(sched_next(s, 7, &d));
	sched_free(&s); /* with a delivery running: no leak */
}

static void test_flush(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s = sched_new(&p, &fake_ops);
	struct sched_delivery d;

	(void)state;
	add_simple(s, "FLUSHA", 0, 1, 1, 0);
	add_simple(s, "FLUSHB", 0, 1, 2, 0);
	for (int i = 0; i < 2; i++) {
		assert_true(sched_next(s, 1, &d));
		done1(s, &d, ST_TF, false, 1);
	}
	check_counts(s, 2, 0, 2, 0);
	sched_flush(s, "FLUSHA", 2);
	check_counts(s, 2, 1, 1, 0);
	assert_true(sched_next(s, 2, &d));
	assert_string_equal(d.qid, "FLUSHA");
	assert_false(sched_next(s, 2, &d));
	sched_flush(s, "NOSUCH", 2);
	sched_flush(s, NULL, 2);
	check_counts(s, 2, 1, 0, 1);
	assert_int_equal(sched_next_wakeup(s), INT64_MAX);
	sched_free(&s);
}

/* ---- room, duplicates ---- */

static void test_room_duplicate(void **state)
{
	struct sched_params p = params(100, 10, 50);
	struct sched *s;
	struct sched_delivery d;
	struct msgstate m;

	(void)state;
	p.active_limit = 2;
	s = sched_new(&p, &fake_ops);
	assert_true(sched_room(s));
	add_simple(s, "ROOMA", 0, 1, 1, 0);
	assert_true(sched_room(s));
	add_simple(s, "ROOMB", 0, 1, 1, 0);
	assert_false(sched_room(s));
	mk_simple(&m, "ROOMA", 0, 3, 1);
	assert_int_equal(sched_add(s, &m, 0), -1);
	/* Refused: m untouched. */
	assert_string_equal(m.qid, "ROOMA");
	assert_int_equal(m.n, 3);
	msgstate_release(&m);
	assert_true(sched_has(s, "ROOMA"));
	assert_false(sched_has(s, "ROOMC"));
	check_counts(s, 2, 2, 0, 0);
	assert_true(sched_next(s, 1, &d));
	done1(s, &d, ST_OK, false, 1);
	assert_true(sched_room(s));
	/* Accepted: m is moved and cleared. */
	mk_simple(&m, "ROOMC", 0, 1, 1);
	assert_int_equal(sched_add(s, &m, 0), 0);
	assert_int_equal(m.n, 0);
	assert_null(m.r);
	assert_false(sched_room(s));
	sched_free(&s);
	sched_free(&s); /* NULL is fine */
}

/* ---- throughput (printed, not asserted) ---- */

static long max_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static double secs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A message built directly (no protobuf round trip): the cost is sched's. */
static void mk_direct(struct msgstate *m, const char *qid, const char *nexthop)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->qid, sizeof(m->qid), "%s", qid);
	m->sender = xstrdup("");
	m->envid = xstrdup("");
	m->ret = xstrdup("");
	m->r = xcalloc(1, sizeof(*m->r));
	m->n = 1;
	m->r[0] = (struct rcpt){
	    .address = xstrdup("u@example.org"),
	    .orig_address = xstrdup("u@example.org"),
	    .orcpt = xstrdup(""),
	    .channel = xstrdup("smtp"),
	    .nexthop = xstrdup(nexthop),
	    .user = xstrdup(""),
	    .enhanced = xstrdup(""),
	    .text = xstrdup(""),
	};
}

static void null_record(void *arg, const char *qid, Zfarm__CtlRecord *const *recs, size_t n)
{
	(void)qid;
	(void)recs;
	*(size_t *)arg += n;
}

static void null_final(void *arg, const struct msgstate *m)
{
	(void)arg;
	(void)m;
}

static void test_throughput(void **state)
{
	enum { NMSG = 100000, NDEST = 1000 };
	size_t nrec = 0;
	const struct sched_ops ops = {null_record, null_final, NULL, NULL, &nrec};
	struct sched_params p = params(1000, 20, 50);
	struct sched *s;
	struct sched_delivery d;
	struct sched_counts c;
	const struct sched_result ok = {0, ST_OK, 250, "2.0.0", "ok"};
	long rss0 = max_rss_kb(), rss1;
	double t0, t1, t2;
	size_t deliveries = 0;

	(void)state;
	p.active_limit = NMSG;
	s = sched_new(&p, &ops);
	t0 = secs();
	for (int i = 0; i < NMSG; i++) {
		struct msgstate m;
		char qid[17], hop[32];

		snprintf(qid, sizeof(qid), "T%015d", i);
		snprintf(hop, sizeof(hop), "mx%d.example.org", i % NDEST);
		mk_direct(&m, qid, hop);
		assert_int_equal(sched_add(s, &m, 0), 0);
	}
	t1 = secs();
	rss1 = max_rss_kb();
	while (sched_next(s, 1, &d)) {
		assert_int_equal(sched_done(s, d.id, &ok, 1, false, 2), 0);
		deliveries++;
	}
	t2 = secs();
	sched_counts(s, &c);
	assert_int_equal(c.delivered, NMSG);
	assert_int_equal(c.messages, 0);
	assert_int_equal(nrec, NMSG);
	print_message("throughput: %d messages over %d destinations: add %.0f msg/s, "
		      "next+done %.0f msg/s (%zu deliveries), peak RSS growth %.0f bytes/msg\n",
		      NMSG, NDEST, NMSG / (t1 - t0), NMSG / (t2 - t1), deliveries,
		      (double)(rss1 - rss0) * 1024.0 / NMSG);
	sched_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_batching, reset_fake),
	    cmocka_unit_test_setup(test_channel_concurrency, reset_fake),
	    cmocka_unit_test_setup(test_channel_order, reset_fake),
	    cmocka_unit_test_setup(test_dest_window, reset_fake),
	    cmocka_unit_test_setup(test_flush_revives, reset_fake),
	    cmocka_unit_test_setup(test_retry, reset_fake),
	    cmocka_unit_test_setup(test_expiry, reset_fake),
	    cmocka_unit_test_setup(test_delay_notice, reset_fake),
	    cmocka_unit_test_setup(test_results, reset_fake),
	    cmocka_unit_test_setup(test_round_robin, reset_fake),
	    cmocka_unit_test_setup(test_foreign_results, reset_fake),
	    cmocka_unit_test_setup(test_error_channel, reset_fake),
	    cmocka_unit_test_setup(test_notify, reset_fake),
	    cmocka_unit_test_setup(test_notice_retry, reset_fake),
	    cmocka_unit_test_setup(test_notice_reload, reset_fake),
	    cmocka_unit_test_setup(test_delete, reset_fake),
	    cmocka_unit_test_setup(test_bounce_now, reset_fake),
	    cmocka_unit_test_setup(test_requeue, reset_fake),
	    cmocka_unit_test_setup(test_requeue_notice, reset_fake),
	    cmocka_unit_test_setup(test_hold_notice, reset_fake),
	    cmocka_unit_test_setup(test_counters, reset_fake),
	    cmocka_unit_test_setup(test_pause, reset_fake),
	    cmocka_unit_test_setup(test_rate_delay, reset_fake),
	    cmocka_unit_test_setup(test_hold_release, reset_fake),
	    cmocka_unit_test_setup(test_flush, reset_fake),
	    cmocka_unit_test_setup(test_room_duplicate, reset_fake),
	    cmocka_unit_test_setup(test_throughput, reset_fake),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	reset_fake(NULL);
	return rc;
}
