/*
 * msgstate - the delivery state of one queued message; see msgstate.h.
 *
 * Everything here trusts nothing in the records: strings may be NULL,
 * totals and indexes may be anything, record pointers may be NULL.  The
 * worst a hostile or damaged control file gets is MSGSTATE_BAD.
 *
 * What *m holds after msgstate_load, whatever the result: the envelope
 * fields (qid, sender, envid, ret, arrival_us; size is 0, the scheduler
 * fills it from the QueueRef) and the held/delay_warned flags, so the
 * caller can log and quarantine with them.  Recipients only with
 * MSGSTATE_OK (n == 0 otherwise).  msgstate_release is always safe.
 */
#include "scheduler/msgstate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "proto/queue.pb-c.h"

static const char *s_or_empty(const char *s)
{
	return s ? s : "";
}

static void set_str(char **dst, const char *src)
{
	char *c = xstrdup(s_or_empty(src));

	free(*dst);
	*dst = c;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool is_final(enum rcpt_state s)
{
	return s == RCPT_DELIVERED || s == RCPT_FAILED || s == RCPT_SUPERSEDED;
}

bool msgstate_is_final(enum rcpt_state s)
{
	return is_final(s);
}

/*
 * enhanced_prefix - length of an RFC 3463 status code ("4.3.0": class 2,
 * 4 or 5, then 1-3 digits, 1-3 digits) at the start of s, followed by a
 * space or the end; 0 if there is none.
 */
static size_t enhanced_prefix(const char *s)
{
	size_t i = 0, d;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	if (s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		for (d = 0; d < 3 && s[i] >= '0' && s[i] <= '9'; d++)
			i++;
		if (d == 0)
			return 0;
		if (part == 0) {
			if (s[i] != '.')
				return 0;
			i++;
		}
	}
	if (s[i] != '\0' && s[i] != ' ')
		return 0;
	return i;
}

/*
 * apply_result - the one transition function, shared by loading a
 * ResultRecord and msgstate_apply.  The caller has checked that r is not
 * final and status is OK, TEMPFAIL or PERMFAIL.
 */
static void apply_result(struct rcpt *r, uint32_t status, uint32_t smtp_code, const char *enhanced,
			 const char *text, int64_t now_us, int64_t next_attempt_us)
{
	r->last_attempt_us = now_us;
	switch (status) {
	case ZFARM__STATUS__OK:
		r->state = RCPT_DELIVERED;
		r->next_attempt_us = 0;
		break;
	case ZFARM__STATUS__PERMFAIL:
		r->state = RCPT_FAILED;
		r->next_attempt_us = 0;
		break;
	default: /* ZFARM__STATUS__TEMPFAIL */
		r->state = RCPT_DEFERRED;
		if (r->attempts < ~0u)
			r->attempts++;
		r->next_attempt_us = next_attempt_us;
		break;
	}
	r->smtp_code = smtp_code;
	set_str(&r->enhanced, enhanced);
	set_str(&r->text, text);
}

static bool valid_status(uint32_t status)
{
	return status == ZFARM__STATUS__OK || status == ZFARM__STATUS__TEMPFAIL ||
	       status == ZFARM__STATUS__PERMFAIL;
}

/* rcpt_from_route - a recipient as its RouteRecord leaves it. */
static void rcpt_from_route(struct rcpt *r, const Zfarm__RouteRecord *rr)
{
	const char *error = s_or_empty(rr->error);
	const char *channel = s_or_empty(rr->channel);
	size_t elen;

	memset(r, 0, sizeof(*r));
	r->index = rr->index;
	r->address = xstrdup(s_or_empty(rr->address));
	r->orig_address = xstrdup(s_or_empty(rr->orig_address));
	r->orcpt = xstrdup(s_or_empty(rr->orcpt));
	r->channel = xstrdup(channel);
	r->nexthop = xstrdup(s_or_empty(rr->nexthop));
	r->user = xstrdup(s_or_empty(rr->user));
	r->notify = rr->notify;
	r->state = RCPT_PENDING;
	if (strcmp(channel, "error") != 0) {
		r->enhanced = xstrdup("");
		r->text = xstrdup("");
		return;
	}
	/* The routing error: "5.1.1 no such user" or a bare text. */
	elen = enhanced_prefix(error);
	r->enhanced = elen && error[0] != '2' ? xstrndup(error, elen) : xstrdup("");
	r->text = xstrdup(error[0] ? error : "routing failed");
	if (elen && error[0] == '4') {
		/*
		 * A temporary routing error ("4.3.0 Cannot read include
		 * file") is not a reason to bounce: deferred, due now, no
		 * attempt made yet, so the scheduler retries it at once and
		 * its retry policy takes over from there.
		 */
		r->state = RCPT_DEFERRED;
		r->smtp_code = 450;
		r->attempts = 0;
		r->next_attempt_us = 0;
	} else {
		r->state = RCPT_FAILED;
		r->smtp_code = 550;
	}
}

static void free_rcpts(struct msgstate *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct rcpt *r = &m->r[i];

		free(r->address);
		free(r->orig_address);
		free(r->orcpt);
		free(r->channel);
		free(r->nexthop);
		free(r->user);
		free(r->enhanced);
		free(r->text);
	}
	free(m->r);
	m->r = NULL;
	m->n = 0;
}

void msgstate_release(struct msgstate *m)
{
	if (!m)
		return;
	free_rcpts(m);
	free(m->sender);
	free(m->envid);
	free(m->ret);
	memset(m, 0, sizeof(*m));
}

static bool is_case(const Zfarm__CtlRecord *c, Zfarm__CtlRecord__BodyCase bc)
{
	return c && c->body_case == bc;
}

/*
 * routing_set - check the routing set ending right before recs[mark] (the
 * first routed marker at or after recs[from]) and return where it starts,
 * or -1 with a reason.  Like the router's routeset_scan(), a marker not
 * preceded by a RouteRecord (after from) closes an empty set.
 */
static long routing_set(Zfarm__CtlRecord *const *recs, size_t from, size_t mark, size_t *total,
			char *err, size_t errlen)
{
	const Zfarm__RouteRecord *last;
	size_t t, start;

	*total = 0;
	if (mark == from || !is_case(recs[mark - 1], ZFARM__CTL_RECORD__BODY_ROUTE))
		return (long)mark;
	last = recs[mark - 1]->route;
	if (!last) {
		set_err(err, errlen, "empty route record before the routed marker");
		return -1;
	}
	t = last->total;
	if (t == 0 || t > mark - from) {
		set_err(err, errlen, "routing set: total %zu but %zu records before the marker", t,
			mark - from);
		return -1;
	}
	start = mark - t;
	for (size_t k = 0; k < t; k++) {
		const Zfarm__CtlRecord *c = recs[start + k];
		const Zfarm__RouteRecord *rr =
		    is_case(c, ZFARM__CTL_RECORD__BODY_ROUTE) ? c->route : NULL;

		if (!rr) {
			set_err(err, errlen, "routing set: total %zu but only %zu route records", t,
				t - k - 1);
			return -1;
		}
		if (rr->total != t) {
			set_err(err, errlen, "routing set: route %zu says total %u, last says %zu",
				k, rr->total, t);
			return -1;
		}
		if (rr->index != k) {
			set_err(err, errlen, "routing set: route %zu has index %u", k, rr->index);
			return -1;
		}
	}
	*total = t;
	return (long)start;
}

/* add_set - append the routing set of total records at recs[start], numbered from m->n. */
static void add_set(struct msgstate *m, Zfarm__CtlRecord *const *recs, size_t start, size_t total)
{
	m->r = xreallocarray(m->r, m->n + total + 1, sizeof(*m->r));
	for (size_t k = 0; k < total; k++) {
		rcpt_from_route(&m->r[m->n + k], recs[start + k]->route);
		m->r[m->n + k].index = (uint32_t)(m->n + k);
	}
	m->n += total;
}

/* supersede - a RequeueRecord: its routes not final no longer count. */
static void supersede(struct msgstate *m, const Zfarm__RequeueRecord *rq)
{
	for (size_t k = 0; k < rq->n_index; k++)
		if (rq->index[k] < m->n && !is_final(m->r[rq->index[k]].state))
			m->r[rq->index[k]].state = RCPT_SUPERSEDED;
}

/* apply_record - a ResultRecord or NoticeRecord after a routing set. */
static void apply_record(struct msgstate *m, const Zfarm__CtlRecord *c)
{
	const Zfarm__ResultRecord *res;

	if (is_case(c, ZFARM__CTL_RECORD__BODY_NOTIFIED) && c->notified) {
		const Zfarm__NoticeRecord *nr = c->notified;

		/* Only final ones: a delay notice leaves the rest open. */
		for (size_t k = 0; k < nr->n_index; k++)
			if (nr->index[k] < m->n && is_final(m->r[nr->index[k]].state))
				m->r[nr->index[k]].notified = true;
		if (nr->delay)
			m->delay_warned = true;
		return;
	}
	if (!is_case(c, ZFARM__CTL_RECORD__BODY_RESULT) || !c->result)
		return;
	res = c->result;
	/* Out of range, final (a duplicate after a crash) or nonsense. */
	if (res->index >= m->n || is_final(m->r[res->index].state) || !valid_status(res->status))
		return;
	apply_result(&m->r[res->index], res->status, res->smtp_code, res->enhanced_code, res->text,
		     res->time_us, res->next_attempt_us);
	if (res->status == ZFARM__STATUS__OK && res->dsn_passed)
		m->r[res->index].notified = true;
}

/*
 * One pass over the records.  `open` is true while a routing set is due
 * (at the start, and after each RequeueRecord): the first routed marker
 * closes it; `from` is where its records may start.  Results and notices
 * count from the first set on (before it there is nothing they could
 * name), also between a RequeueRecord and the next set.
 */
enum msgstate_load_result msgstate_load(struct msgstate *m, const Zfarm__Envelope *env,
					Zfarm__CtlRecord *const *recs, size_t n, char *err,
					size_t errlen)
{
	size_t from = 0, total = 0;
	bool open = true, any = false;
	long start;

	memset(m, 0, sizeof(*m));
	m->sender = xstrdup("");
	m->envid = xstrdup("");
	m->ret = xstrdup("");
	if (!env) {
		set_err(err, errlen, "no envelope");
		return MSGSTATE_BAD;
	}
	snprintf(m->qid, sizeof(m->qid), "%.16s", s_or_empty(env->queue_id));
	set_str(&m->sender, env->sender);
	set_str(&m->envid, env->envid);
	set_str(&m->ret, env->ret);
	m->arrival_us = env->arrival_us;
	m->double_bounce = env->notice && strcmp(env->notice, "double-bounce") == 0;
	m->size = 0;
	if (!recs)
		n = 0;

	/* Flags may be set at any time, before routing too. */
	for (size_t i = 0; i < n; i++) {
		if (is_case(recs[i], ZFARM__CTL_RECORD__BODY_HELD))
			m->held = recs[i]->held;
		else if (is_case(recs[i], ZFARM__CTL_RECORD__BODY_REQUEUE) && recs[i]->requeue)
			m->held = false;
		else if (is_case(recs[i], ZFARM__CTL_RECORD__BODY_DELAY_WARNED) &&
			 recs[i]->delay_warned)
			m->delay_warned = true;
	}

	for (size_t i = 0; i < n; i++) {
		const Zfarm__CtlRecord *c = recs[i];

		if (is_case(c, ZFARM__CTL_RECORD__BODY_ROUTED) && c->routed) {
			if (!open)
				continue; /* a duplicate routing's marker */
			start = routing_set(recs, from, i, &total, err, errlen);
			if (start < 0) {
				free_rcpts(m);
				return MSGSTATE_BAD;
			}
			add_set(m, recs, (size_t)start, total);
			open = false;
			any = true;
		} else if (is_case(c, ZFARM__CTL_RECORD__BODY_REQUEUE) && c->requeue) {
			m->requeued = true;
			if (open)
				continue; /* nothing routed since the last one: nothing to supersede
					   */
			supersede(m, c->requeue);
			open = true;
			from = i + 1;
		} else if (any) {
			apply_record(m, c);
		}
	}
	if (open) {
		free_rcpts(m);
		set_err(err, errlen, "not routed");
		return MSGSTATE_UNROUTED;
	}
	return MSGSTATE_OK;
}

bool msgstate_final(const struct msgstate *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (!is_final(m->r[i].state))
			return false;
	return true;
}

const char *msgstate_state_name(enum rcpt_state s)
{
	switch (s) {
	case RCPT_PENDING:
		return "pending";
	case RCPT_DEFERRED:
		return "deferred";
	case RCPT_DELIVERED:
		return "delivered";
	case RCPT_SUPERSEDED:
		return "superseded";
	default:
		return "failed";
	}
}

size_t msgstate_count(const struct msgstate *m, enum rcpt_state s)
{
	size_t c = 0;

	for (size_t i = 0; i < m->n; i++)
		if (m->r[i].state == s)
			c++;
	return c;
}

/*
 * An unknown status is refused like an unknown index: a record that
 * msgstate_load would ignore must not be written.  next_attempt_us is
 * kept for TEMPFAIL only (apply_result), and *rec carries what m holds.
 * rec's strings are m's: a later apply to the same index frees them, so
 * pack the record before that.
 */
int msgstate_apply(struct msgstate *m, uint32_t index, uint32_t status, uint32_t smtp_code,
		   const char *enhanced, const char *text, int64_t now_us, int64_t next_attempt_us,
		   Zfarm__ResultRecord *rec)
{
	struct rcpt *r;

	if (index >= m->n || is_final(m->r[index].state) || !valid_status(status))
		return -1;
	r = &m->r[index];
	apply_result(r, status, smtp_code, enhanced, text, now_us, next_attempt_us);
	zfarm__result_record__init(rec);
	rec->index = index;
	rec->status = status;
	rec->enhanced_code = r->enhanced;
	rec->smtp_code = r->smtp_code;
	rec->text = r->text;
	rec->time_us = now_us;
	rec->next_attempt_us = r->next_attempt_us;
	return 0;
}

void msgstate_passed(struct msgstate *m, uint32_t index, Zfarm__ResultRecord *rec)
{
	if (index >= m->n || m->r[index].state != RCPT_DELIVERED)
		return;
	m->r[index].notified = true;
	rec->dsn_passed = true;
}

/* notify_bits - NOTIFY as it applies: not given means FAILURE + DELAY (RFC 3461 4.1). */
static uint32_t notify_bits(const struct rcpt *r)
{
	if (r->notify == 0)
		return ZFARM__NOTIFY__NOTIFY_FAILURE | ZFARM__NOTIFY__NOTIFY_DELAY;
	if (r->notify & ZFARM__NOTIFY__NOTIFY_NEVER)
		return 0;
	return r->notify;
}

bool msgstate_wants_notice(const struct rcpt *r)
{
	if (r->notified)
		return false;
	if (r->state == RCPT_FAILED)
		return notify_bits(r) & ZFARM__NOTIFY__NOTIFY_FAILURE;
	if (r->state == RCPT_DELIVERED)
		return notify_bits(r) & ZFARM__NOTIFY__NOTIFY_SUCCESS;
	return false;
}

bool msgstate_wants_delay(const struct rcpt *r)
{
	return !is_final(r->state) && (notify_bits(r) & ZFARM__NOTIFY__NOTIFY_DELAY);
}

void msgstate_notified(struct msgstate *m, const uint32_t *index, size_t n, bool delay,
		       Zfarm__NoticeRecord *rec)
{
	zfarm__notice_record__init(rec);
	for (size_t k = 0; k < n; k++)
		if (index[k] < m->n && is_final(m->r[index[k]].state))
			m->r[index[k]].notified = true;
	if (delay)
		m->delay_warned = true;
	rec->index = (uint32_t *)index;
	rec->n_index = n;
	rec->delay = delay;
}
