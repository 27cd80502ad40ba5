/*
 * qctl - the read side of queue control; see qctl.h.
 *
 * Every string in a reply points into the scheduler's state or into a
 * message loaded for this reply (kept in struct qctl_reply until freed).
 */
#include "scheduler/qctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qstore.h"
#include "common/xalloc.h"
#include "scheduler/msgstate.h"
#include "scheduler/sched.h"

struct qctl_reply {
	Zfarm__QueueControlReply msg;
	struct msgstate **loaded; /* backlog messages read for this reply */
	size_t nloaded;
	char err[300];
};

/* ---- candidates: the messages a LIST or SHOW considers ---- */

struct cand {
	const char *qid;
	const struct msgstate *m; /* NULL: in the backlog, read it */
};

struct cands {
	struct cand *v;
	size_t n, cap;
	const Zfarm__QueueControlRequest *rq;
	const struct sched *s;
};

static bool wanted_id(const Zfarm__QueueControlRequest *rq, const char *qid)
{
	if (rq->after && rq->after[0] && strcmp(qid, rq->after) <= 0)
		return false;
	if (rq->n_queue_ids == 0)
		return true;
	for (size_t i = 0; i < rq->n_queue_ids; i++)
		if (strcmp(rq->queue_ids[i], qid) == 0 || strcmp(rq->queue_ids[i], "ALL") == 0)
			return true;
	return false;
}

/* rcpt_status - from the scheduler, or (a backlog message, s NULL) from the state. */
static const char *rcpt_status(const struct sched *s, const struct msgstate *m, uint32_t i)
{
	return s ? sched_rcpt_status(s, m, i) : msgstate_state_name(m->r[i].state);
}

/* matches - the channel/destination/status filters over a message's recipients. */
static bool matches(const struct sched *s, const Zfarm__QueueControlRequest *rq,
		    const struct msgstate *m)
{
	const char *ch = rq->channel && rq->channel[0] ? rq->channel : NULL;
	const char *dst = rq->destination && rq->destination[0] ? rq->destination : NULL;
	const char *st = rq->status && rq->status[0] ? rq->status : NULL;
	bool any = false;

	if (st && strcmp(st, "hold") == 0 && !m->held)
		return false;
	for (size_t i = 0; i < m->n; i++) {
		const struct rcpt *r = &m->r[i];
		const char *rs = rcpt_status(s, m, (uint32_t)i);

		if (r->state == RCPT_SUPERSEDED)
			continue;
		if (ch && strcmp(r->channel, ch) != 0)
			continue;
		if (dst && strcmp(r->nexthop, dst) != 0)
			continue;
		if (st && strcmp(st, "active") == 0 &&
		    !(strcmp(rs, "active") == 0 || (strcmp(rs, "pending") == 0 && !m->held)))
			continue;
		if (st && strcmp(st, "deferred") == 0 && strcmp(rs, "deferred") != 0)
			continue;
		any = true;
		break;
	}
	return any || (!ch && !dst && (!st || strcmp(st, "hold") == 0));
}

static void cand_push(struct cands *c, const char *qid, const struct msgstate *m)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 256;
		c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
	}
	c->v[c->n++] = (struct cand){qid, m};
}

static void cand_from_sched(void *arg, const struct msgstate *m)
{
	struct cands *c = arg;

	if (wanted_id(c->rq, m->qid) && matches(c->s, c->rq, m))
		cand_push(c, m->qid, m);
}

static int cand_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cand *)a)->qid, ((const struct cand *)b)->qid);
}

/* ---- entries ---- */

static Zfarm__QueueEntry *entry_new(const struct sched *s, const struct msgstate *m)
{
	Zfarm__QueueEntry *e = xcalloc(1, sizeof(*e));
	size_t n = m->n < QCTL_RCPT_MAX ? m->n : QCTL_RCPT_MAX;

	zfarm__queue_entry__init(e);
	e->queue_id = (char *)m->qid;
	e->arrival = m->arrival_us / 1000000;
	e->size = m->size;
	e->sender = m->sender;
	e->held = m->held;
	e->recipients = xcalloc(n ? n : 1, sizeof(*e->recipients));
	for (size_t i = 0; i < m->n && e->n_recipients < n; i++) {
		const struct rcpt *r = &m->r[i];
		Zfarm__RecipientState *rs;

		if (r->state == RCPT_SUPERSEDED)
			continue; /* requeued: its new route is listed */
		rs = xcalloc(1, sizeof(*rs));

		zfarm__recipient_state__init(rs);
		rs->address = r->address;
		rs->channel = r->channel;
		rs->nexthop = r->nexthop;
		rs->status = (char *)rcpt_status(s, m, (uint32_t)i);
		/* The last result or routing error, as the logs show it. */
		rs->reason = r->text;
		rs->next_attempt = r->state == RCPT_DEFERRED ? r->next_attempt_us / 1000000 : 0;
		rs->attempts = r->attempts;
		e->recipients[e->n_recipients++] = rs;
	}
	return e;
}

static void entry_free(Zfarm__QueueEntry *e)
{
	for (size_t i = 0; i < e->n_recipients; i++)
		free(e->recipients[i]);
	free(e->recipients);
	free(e);
}

/* load_backlog - read a backlog message for this reply; NULL if it cannot be. */
static const struct msgstate *load_backlog(const struct qctl_view *v, struct qctl_reply *r,
					   const char *qid)
{
	struct qstore_reader *rd;
	Zfarm__CtlRecord **recs = NULL;
	size_t n = 0;
	struct msgstate m;
	char err[256];
	int errnum = 0;

	rd = qstore_read(v->qs, qid, &errnum, err, sizeof(err));
	if (!rd)
		return NULL;
	if (qstore_reader_ctl_load(rd, &recs, &n, err, sizeof(err)) < 0) {
		qstore_reader_free(&rd);
		return NULL;
	}
	if (msgstate_load(&m, qstore_envelope(rd), recs, n, err, sizeof(err)) != MSGSTATE_OK) {
		msgstate_release(&m);
		m.n = 0;
		qstore_ctl_free(&recs, n);
		qstore_reader_free(&rd);
		return NULL;
	}
	qstore_ctl_free(&recs, n);
	qstore_reader_free(&rd);
	/* One allocation each: entries point into them. */
	r->loaded = xreallocarray(r->loaded, r->nloaded + 1, sizeof(*r->loaded));
	r->loaded[r->nloaded] = xmalloc(sizeof(m));
	*r->loaded[r->nloaded] = m;
	return r->loaded[r->nloaded++];
}

static void answer_list(const struct qctl_view *v, const Zfarm__QueueControlRequest *rq,
			struct qctl_reply *r)
{
	struct cands c = {.rq = rq, .s = v->s};
	size_t limit = rq->limit ? rq->limit : QCTL_LIST_DEFAULT, bytes = 0, i;
	Zfarm__QueueControlReply *msg = &r->msg;

	sched_foreach(v->s, cand_from_sched, &c);
	for (size_t k = 0; k < v->backlog_n; k++) {
		const char *qid = v->backlog[(v->backlog_head + k) % v->backlog_cap];

		if (qid[0] && wanted_id(rq, qid))
			cand_push(&c, qid, NULL);
	}
	if (c.n > 1)
		qsort(c.v, c.n, sizeof(*c.v), cand_cmp);
	msg->entries = xcalloc(c.n < limit ? c.n + 1 : limit + 1, sizeof(*msg->entries));
	for (i = 0; i < c.n && msg->n_entries < limit && bytes < QCTL_REPLY_BUDGET; i++) {
		const struct msgstate *m = c.v[i].m;
		Zfarm__QueueEntry *e;

		if (!m) {
			m = load_backlog(v, r, c.v[i].qid);
			if (!m || !matches(NULL, rq, m))
				continue;
		}
		e = entry_new(v->s && c.v[i].m ? v->s : NULL, m);
		bytes += zfarm__queue_entry__get_packed_size(e) + 8;
		msg->entries[msg->n_entries++] = e;
	}
	msg->truncated = i < c.n;
	free(c.v);
}

/* ---- summary ---- */

struct drow {
	const char *channel, *nexthop;
	const struct msgstate *m;
};

static int drow_cmp(const void *a, const void *b)
{
	const struct drow *x = a, *y = b;
	int c = strcmp(x->channel, y->channel);

	if (c == 0)
		c = strcmp(x->nexthop, y->nexthop);
	if (c == 0)
		c = x->m < y->m ? -1 : x->m > y->m;
	return c;
}

struct drows {
	struct drow *v;
	size_t n, cap;
};

static void drows_add(void *arg, const struct msgstate *m)
{
	struct drows *d = arg;

	for (size_t i = 0; i < m->n; i++) {
		const struct rcpt *r = &m->r[i];

		if (msgstate_is_final(r->state))
			continue;
		if (d->n == d->cap) {
			d->cap = d->cap ? 2 * d->cap : 256;
			d->v = xreallocarray(d->v, d->cap, sizeof(*d->v));
		}
		d->v[d->n++] = (struct drow){r->channel, r->nexthop, m};
	}
}

static void answer_summary(const struct qctl_view *v, struct qctl_reply *r)
{
	struct drows d = {0};
	Zfarm__QueueControlReply *msg = &r->msg;
	size_t bytes = 0, cap = 0;

	sched_foreach(v->s, drows_add, &d);
	if (d.n > 1)
		qsort(d.v, d.n, sizeof(*d.v), drow_cmp);
	for (size_t i = 0; i < d.n;) {
		Zfarm__DestinationSummary *ds;
		struct sched_dest_info info;
		size_t j = i;

		if (bytes >= QCTL_REPLY_BUDGET) {
			msg->truncated = true;
			break;
		}
		ds = xcalloc(1, sizeof(*ds));
		zfarm__destination_summary__init(ds);
		ds->channel = (char *)d.v[i].channel;
		ds->nexthop = (char *)d.v[i].nexthop;
		for (; j < d.n && strcmp(d.v[j].channel, ds->channel) == 0 &&
		       strcmp(d.v[j].nexthop, ds->nexthop) == 0;
		     j++) {
			ds->recipients++;
			if (j == i || d.v[j].m != d.v[j - 1].m)
				ds->messages++;
		}
		if (sched_dest_info(v->s, ds->channel, ds->nexthop, &info)) {
			ds->window = info.window;
			ds->active = info.active;
			ds->dead = info.dead_until_us != 0;
		}
		if (msg->n_destinations == cap) {
			cap = cap ? 2 * cap : 16;
			msg->destinations =
			    xreallocarray(msg->destinations, cap, sizeof(*msg->destinations));
		}
		msg->destinations[msg->n_destinations++] = ds;
		bytes += zfarm__destination_summary__get_packed_size(ds) + 8;
		i = j;
	}
	free(d.v);
}

/* ---- counters ---- */

static void counter_add(Zfarm__QueueControlReply *msg, size_t *cap, const char *name,
			const char *channel, uint64_t value)
{
	Zfarm__QueueCounter *c = xcalloc(1, sizeof(*c));

	zfarm__queue_counter__init(c);
	c->name = (char *)name;
	c->channel = (char *)channel;
	c->value = value;
	if (msg->n_counters == *cap) {
		*cap = *cap ? 2 * *cap : 32;
		msg->counters = xreallocarray(msg->counters, *cap, sizeof(*msg->counters));
	}
	msg->counters[msg->n_counters++] = c;
}

static void answer_counters(const struct qctl_view *v, struct qctl_reply *r)
{
	Zfarm__QueueControlReply *msg = &r->msg;
	struct sched_counts c;
	struct sched_chan_counts cc;
	size_t cap = 0, backlog = 0;
	const char *name;

	for (size_t k = 0; k < v->backlog_n; k++)
		if (v->backlog[(v->backlog_head + k) % v->backlog_cap][0])
			backlog++;
	sched_counts(v->s, &c);
	counter_add(msg, &cap, "received", "", c.received);
	counter_add(msg, &cap, "delivered", "", c.delivered);
	counter_add(msg, &cap, "deferred", "", c.deferrals);
	counter_add(msg, &cap, "bounced", "", c.failed);
	counter_add(msg, &cap, "expired", "", c.expired);
	counter_add(msg, &cap, "notices", "", c.notices);
	counter_add(msg, &cap, "notices_failed", "", c.notices_failed);
	counter_add(msg, &cap, "messages", "", c.messages);
	counter_add(msg, &cap, "backlog", "", backlog);
	counter_add(msg, &cap, "recipients_ready", "", c.ready);
	counter_add(msg, &cap, "recipients_deferred", "", c.deferred);
	counter_add(msg, &cap, "recipients_active", "", c.running);
	for (size_t i = 0; (name = sched_channel_counts(v->s, i, &cc)); i++) {
		counter_add(msg, &cap, "delivered", name, cc.delivered);
		counter_add(msg, &cap, "deferred", name, cc.deferrals);
		counter_add(msg, &cap, "bounced", name, cc.failed);
		counter_add(msg, &cap, "expired", name, cc.expired);
	}
}

struct qctl_reply *qctl_answer(const struct qctl_view *v, const Zfarm__QueueControlRequest *rq)
{
	struct qctl_reply *r;

	switch (rq->op) {
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__LIST:
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__SHOW:
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__SUMMARY:
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__COUNTERS:
		break;
	default:
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	zfarm__queue_control_reply__init(&r->msg);
	r->msg.ok = true;
	r->msg.error = r->err;
	switch (rq->op) {
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__LIST:
		answer_list(v, rq, r);
		break;
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__SHOW:
		if (rq->n_queue_ids != 1 || !qid_valid(rq->queue_ids[0])) {
			r->msg.ok = false;
			snprintf(r->err, sizeof(r->err), "show: give one queue ID");
			break;
		}
		answer_list(v, rq, r);
		if (r->msg.n_entries == 0) {
			r->msg.ok = false;
			snprintf(r->err, sizeof(r->err), "%s: no such message in the queue",
				 rq->queue_ids[0]);
		}
		break;
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__SUMMARY:
		answer_summary(v, r);
		break;
	default:
		answer_counters(v, r);
		break;
	}
	return r;
}

Zfarm__QueueControlReply *qctl_reply_msg(struct qctl_reply *r)
{
	return &r->msg;
}

void qctl_reply_free(struct qctl_reply **rp)
{
	struct qctl_reply *r;

	if (!rp || !*rp)
		return;
	r = *rp;
	for (size_t i = 0; i < r->msg.n_entries; i++)
		entry_free(r->msg.entries[i]);
	free(r->msg.entries);
	for (size_t i = 0; i < r->msg.n_destinations; i++)
		free(r->msg.destinations[i]);
	free(r->msg.destinations);
	for (size_t i = 0; i < r->msg.n_counters; i++)
		free(r->msg.counters[i]);
	free(r->msg.counters);
	for (size_t i = 0; i < r->nloaded; i++) {
		msgstate_release(r->loaded[i]);
		free(r->loaded[i]);
	}
	free(r->loaded);
	free(r);
	*rp = NULL;
}
