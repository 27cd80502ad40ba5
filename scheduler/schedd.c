/*
 * schedd - the scheduler daemon: one process (farm kind "single") around
 * the queue state engine (sched.h).
 *
 *   - SchedSubmit from the router and the reinjector (on its first
 *     listener, private/scheduler): the message is read from the queue
 *     store and added (a message already held is simply acknowledged);
 *     past the active limit its ID waits in a backlog list and is loaded
 *     when there is room (accepted, never lost).
 *   - Deliveries: whenever a transport connection of a channel is free,
 *     sched_next() gives a batch; a DeliveryRequest goes to the channel's
 *     transport farm (common/channel.h endpoint), one delivery per
 *     connection at a time, up to the channel's concurrency; the
 *     DeliveryReply goes to sched_done().  A transport that breaks the
 *     protocol, times out (transport_timeout) or cannot be reached gets
 *     its recipients deferred and its channel rests for
 *     transport_retry_time.
 *   - Notices: sched hands out notice deliveries on channel "bounce"; the
 *     DeliveryRequest carries each recipient's RFC 3464 fields and
 *     notice_to (the sender, or double_bounce_recipient for the null
 *     sender); the bounce farm queues the notice as a new message.
 *   - Results and notices are appended durably to the message's control
 *     record before anything else happens with them (sched ops->record);
 *     a message whose recipients are all final and notified is removed.
 *   - Queue control (qctl.h for the read side): listener "qctl" takes
 *     every op, "showq" only LIST/SHOW/SUMMARY/COUNTERS; hold/release are
 *     recorded durably, delete removes (at once, or when the running
 *     delivery ends), bounce fails what is not final with 5.0.0.
 *   - Requeue (like Postfix's postsuper -r): when nothing runs for the
 *     message any more (sched_requeue), its collected records are
 *     flushed, then a RequeueRecord naming the routes not final is
 *     appended durably, the message leaves memory and goes to the router
 *     (router_endpoint, handoff.h; at most SCHEDD_REROUTE_WINDOW at once),
 *     which routes those recipients again, records the new routing set and
 *     submits the message here as if it were new.  A crash before the
 *     record: not requeued; after it: the message is unrouted on disk, and
 *     the router gets it from this scheduler's start (schedd_recover) or
 *     the reinjector; the old routes never count again.
 *   - One timer, armed at sched_next_wakeup(): nothing polls (seed 002).
 *   - At start the queue is scanned once and every routed message taken in
 *     (schedd_recover), so a scheduler restarted alone after a crash loses
 *     nothing; at worst a delivery that was running is made again.
 *
 * Parameters: queue_directory, queue_store, minimal_backoff_time (300s),
 * maximal_backoff_time (4000s), maximal_queue_lifetime (5d),
 * delay_warning_time (0: off), initial_destination_concurrency (5),
 * qmgr_message_active_limit (20000), transport_timeout (600s),
 * transport_retry_time (60s), double_bounce_recipient (""), router_endpoint
 * (requeue), and the [channel NAME] sections.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/channel.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/farm_server.h"
#include "common/frame.h"
#include "common/frame_client.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/qstore.h"
#include "common/xalloc.h"
#include "scheduler/handoff.h"
#include "scheduler/msgstate.h"
#include "scheduler/qctl.h"
#include "scheduler/sched.h"

/* One transport connection: at most one delivery on it at a time. */
struct link {
	struct frame_client *fc;
	bool busy;
	uint64_t delivery; /* the sched delivery id on it */
	struct chan *ch;
	const char *notice; /* a notice: "non-delivery", "delay", "delivery status" */
	/* for the log lines of the reply */
	char qid[QID_SIZE];
	uint32_t *index;
	char **address;
	size_t n;
	/*
	 * The nexthop of the last delivery on this connection: the transport
	 * child behind it may hold an idle SMTP connection there, so the
	 * next delivery to that nexthop prefers this link.
	 */
	char *nexthop;
};

static void link_forget(struct link *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->address[i]);
	free(l->address);
	free(l->index);
	l->address = NULL;
	l->index = NULL;
	l->n = 0;
}

static const char *link_address(const struct link *l, uint32_t index)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->index[i] == index)
			return l->address[i];
	return "?";
}

struct chan {
	const struct channel_def *def;
	struct link *links; /* nlinks_max of them, created on first use */
	unsigned nlinks_max; /* the channel's concurrency, capped by its farm's capacity */
	unsigned nlinks;
};

struct backlog {
	char (*qid)[QID_SIZE];
	size_t head, n, cap;
};

/* Requeued messages on their way to the router (handoff.h). */
#define SCHEDD_REROUTE_WINDOW	 64
#define SCHEDD_ROUTER_TIMEOUT_MS 60000

struct reroute {
	struct schedd *d;
	char qid[QID_SIZE];
	uint64_t size;
	int64_t arrival; /* unix time */
	bool used;	 /* a slot: a RouteRequest in flight */
};

struct schedd {
	struct farm_server *srv;
	struct event_base *base;
	struct qstore *qs;
	struct channel_table *channels;
	struct chan *chans;
	size_t nchans;
	struct sched_channel *sch;
	struct sched *s;
	struct event *timer;
	struct backlog backlog;
	/* Requeue: waiting for the router (a ring), and the requests in flight. */
	struct frame_client *router;
	struct reroute *reroute;
	size_t reroute_head, reroute_n, reroute_cap;
	struct reroute rerouting[SCHEDD_REROUTE_WINDOW];
	size_t nrerouting;
	char rundir[4096];
	char *double_bounce_rcpt; /* "" : the null sender's failures are only logged */
	int64_t lifetime_us;
	int64_t transport_retry_us;
	unsigned transport_timeout_ms;
	bool pumping;
	size_t recovered;
	/*
	 * Control records collected during one pass of the event loop and
	 * appended (one fdatasync per message) when the pass ends; those of
	 * a message removed meanwhile are dropped: its removal says all.
	 */
	struct pending_rec {
		char qid[QID_SIZE];
		uint8_t *data;
		size_t len;
	} *pending;
	size_t npending, pending_cap;
	struct event *flush_ev;
};

static struct schedd sd;

static int64_t now_us(void)
{
	return (int64_t)clock_now_us();
}

/* ---- sched callbacks ---- */

#define SCHEDD_PENDING_MAX 256

static void schedd_flush(struct schedd *d);

/*
 * schedd_record - results and notices of qid: durable before the pass of
 * the event loop ends (schedd_flush), unless the message is removed in the
 * same pass.  A crash (even kill -9) before the flush means at worst a
 * recipient delivered or a notice sent twice, as for a delivery that was
 * running; a crash after the removal of a message whose removal had not
 * reached the disk brings it back without these records: the same.  This
 * saves the one fdatasync per message that dominated on a disk.
 */
static void schedd_record(void *arg, const char *qid, Zfarm__CtlRecord *const *recs, size_t n)
{
	struct schedd *d = arg;
	struct pending_rec *p;
	char err[512];

	/* A bounded batch keeps schedd_drop_pending's scan short. */
	if (d->npending >= SCHEDD_PENDING_MAX)
		schedd_flush(d);
	if (d->npending == d->pending_cap) {
		d->pending_cap = d->pending_cap ? 2 * d->pending_cap : 64;
		d->pending = xreallocarray(d->pending, d->pending_cap, sizeof(*d->pending));
	}
	p = &d->pending[d->npending];
	if (qstore_ctl_pack(recs, n, &p->data, &p->len, err, sizeof(err)) < 0) {
		log_error("%s: cannot record delivery results: %s", qid, err);
		return;
	}
	if (!p->data)
		return;
	snprintf(p->qid, sizeof(p->qid), "%s", qid);
	d->npending++;
	if (d->flush_ev)
		event_active(d->flush_ev, EV_TIMEOUT, 0);
}

/* schedd_drop_pending - qid is removed: its collected records are not written. */
static void schedd_drop_pending(struct schedd *d, const char *qid)
{
	for (size_t i = 0; i < d->npending; i++) {
		if (d->pending[i].data && strcmp(d->pending[i].qid, qid) == 0) {
			free(d->pending[i].data);
			d->pending[i].data = NULL;
		}
	}
}

/* schedd_flush - append the collected records, one append (one sync) per message. */
static void schedd_flush(struct schedd *d)
{
	char err[512];

	for (size_t i = 0; i < d->npending; i++) {
		struct pending_rec *p = &d->pending[i];

		if (!p->data)
			continue;
		/* following records of the same message join this append */
		for (size_t k = i + 1; k < d->npending; k++) {
			struct pending_rec *q = &d->pending[k];

			if (!q->data)
				continue;
			if (strcmp(q->qid, p->qid) != 0)
				break;
			p->data = xrealloc(p->data, p->len + q->len);
			memcpy(p->data + p->len, q->data, q->len);
			p->len += q->len;
			free(q->data);
			q->data = NULL;
		}
		if (qstore_ctl_append_packed(d->qs, p->qid, p->data, p->len, err, sizeof(err)) < 0)
			log_error("%s: cannot record delivery results: %s", p->qid, err);
		free(p->data);
		p->data = NULL;
	}
	d->npending = 0;
}

static void schedd_on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	schedd_flush(arg);
}

static void schedd_remove(struct schedd *d, const char *qid, const char *why)
{
	char err[512];

	schedd_drop_pending(d, qid);

	if (qstore_remove(d->qs, qid, err, sizeof(err)) < 0)
		log_error("%s: cannot remove: %s", qid, err);
	else
		log_info("%s: removed%s", qid, why);
}

static void schedd_final(void *arg, const struct msgstate *m)
{
	struct schedd *d = arg;
	size_t silent = 0;

	/* Failures nobody hears of: the null sender's (double bounces off) or NOTIFY=NEVER. */
	for (size_t i = 0; i < m->n; i++)
		if (m->r[i].state == RCPT_FAILED && !m->r[i].notified)
			silent++;
	if (silent && !m->sender[0])
		log_info("%s: %zu recipient(s) of a message from the null sender failed; no notice "
			 "(%s)",
			 m->qid, silent,
			 m->double_bounce ? "it is a double bounce"
					  : "double_bounce_recipient is not set");
	schedd_remove(d, m->qid, "");
}

static void schedd_deleted(void *arg, const struct msgstate *m)
{
	schedd_remove(arg, m->qid, " (deleted by the queue administrator)");
}

/* ---- requeue ---- */

static void schedd_backlog_push(struct schedd *d, const char *qid);
static void schedd_reroute_pump(struct schedd *d);

static void schedd_on_rerouted(void *arg, const Zfarm__Frame *reply, const char *reason)
{
	struct reroute *q = arg;
	struct schedd *d = q->d;
	const char *why;

	if (handoff_route_status(reply, reason, &why) == ZFARM__STATUS__OK)
		log_debug("%s: routed again", q->qid);
	else
		log_warn("%s: requeued, but not routed again: %s; it waits in the queue for the "
			 "reinjector",
			 q->qid, why[0] ? why : "refused");
	q->used = false;
	d->nrerouting--;
	schedd_reroute_pump(d);
}

/* schedd_reroute_pump - RouteRequests for waiting requeued messages, within the window. */
static void schedd_reroute_pump(struct schedd *d)
{
	for (size_t slot = 0; slot < SCHEDD_REROUTE_WINDOW && d->reroute_n > 0; slot++) {
		struct reroute *q = &d->rerouting[slot];

		if (q->used)
			continue;
		*q = d->reroute[d->reroute_head];
		q->d = d;
		q->used = true;
		d->reroute_head = (d->reroute_head + 1) % d->reroute_cap;
		d->reroute_n--;
		d->nrerouting++;
		handoff_route(d->router, q->qid, qstore_backend(d->qs), q->size, 0, q->arrival,
			      schedd_on_rerouted, q);
	}
}

static void schedd_reroute_push(struct schedd *d, const char *qid, uint64_t size, int64_t arrival)
{
	struct reroute *q;

	if (d->reroute_n == d->reroute_cap) {
		size_t cap = d->reroute_cap ? 2 * d->reroute_cap : 64;
		struct reroute *v = xcalloc(cap, sizeof(*v));

		for (size_t i = 0; i < d->reroute_n; i++)
			v[i] = d->reroute[(d->reroute_head + i) % d->reroute_cap];
		free(d->reroute);
		d->reroute = v;
		d->reroute_head = 0;
		d->reroute_cap = cap;
	}
	q = &d->reroute[(d->reroute_head + d->reroute_n) % d->reroute_cap];
	memset(q, 0, sizeof(*q));
	snprintf(q->qid, sizeof(q->qid), "%s", qid);
	q->size = size;
	q->arrival = arrival;
	d->reroute_n++;
	schedd_reroute_pump(d);
}

/*
 * schedd_requeued - sched hands over a requeued message, nothing running
 * for it.  Its collected records go to disk first (they are older), then
 * the RequeueRecord: once that is durable the old routes of the
 * recipients not final never count again, and until the router records
 * new ones the message is unrouted (schedd_recover and the reinjector send
 * it to the router after a crash).  If the record cannot be written the
 * message comes back from the queue with its old routes (the backlog).
 */
static void schedd_requeued(void *arg, const struct msgstate *m)
{
	struct schedd *d = arg;
	Zfarm__RequeueRecord rq = ZFARM__REQUEUE_RECORD__INIT;
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT, *cp = &c;
	uint32_t *idx = xcalloc(m->n ? m->n : 1, sizeof(*idx));
	char err[512];

	for (size_t i = 0; i < m->n; i++)
		if (!msgstate_is_final(m->r[i].state))
			idx[rq.n_index++] = (uint32_t)i;
	rq.index = idx;
	c.body_case = ZFARM__CTL_RECORD__BODY_REQUEUE;
	c.requeue = &rq;
	schedd_flush(d);
	if (qstore_ctl_append(d->qs, m->qid, &cp, 1, err, sizeof(err)) < 0) {
		log_error("%s: cannot record the requeue, the message keeps its routes: %s", m->qid,
			  err);
		schedd_backlog_push(d, m->qid);
	} else {
		log_info("%s: requeued by the queue administrator: %zu recipient(s) to route "
			 "again%s",
			 m->qid, rq.n_index, m->held ? ", released from hold" : "");
		schedd_reroute_push(d, m->qid, m->size, m->arrival_us / 1000000);
	}
	free(idx);
}

/* ---- deliveries ---- */

static void schedd_pump(struct schedd *d);

static struct chan *schedd_chan(struct schedd *d, const char *name)
{
	for (size_t i = 0; i < d->nchans; i++)
		if (strcmp(d->chans[i].def->name, name) == 0)
			return &d->chans[i];
	return NULL;
}

static void schedd_on_delivery(void *arg, const Zfarm__Frame *reply, const char *reason)
{
	struct link *l = arg;
	struct schedd *d = &sd;
	struct sched_result *r = NULL;
	size_t n = 0;
	bool conn_failed = true;
	char why[600];

	l->busy = false;
	if (reply && reply->body_case == ZFARM__FRAME__BODY_DELIVERY_REPLY) {
		const Zfarm__DeliveryReply *dr = reply->delivery_reply;

		r = xcalloc(dr->n_results + 1, sizeof(*r));
		for (size_t i = 0; i < dr->n_results; i++) {
			const Zfarm__RecipientResult *rr = dr->results[i];

			r[n].index = rr->index;
			r[n].status = rr->status;
			r[n].smtp_code = rr->smtp_code;
			r[n].enhanced = rr->enhanced_code ? rr->enhanced_code : "";
			r[n].text = rr->text ? rr->text : "";
			r[n].dsn_passed = rr->dsn_passed;
			if (!l->notice)
				log_info("%s: to=<%s>, relay=%s, dsn=%s, status=%s (%s)", l->qid,
					 link_address(l, rr->index), dr->relay ? dr->relay : "",
					 r[n].enhanced,
					 rr->status == ZFARM__STATUS__OK	 ? "sent"
					 : rr->status == ZFARM__STATUS__PERMFAIL ? "bounced"
										 : "deferred",
					 r[n].text);
			n++;
		}
		if (l->notice)
			log_info("%s: sender %s notification: %s", l->qid, l->notice,
				 n ? r[0].text : "no result");
		conn_failed = dr->connection_failed;
	} else {
		/*
		 * The transport, not the destination, failed (it broke the
		 * protocol, timed out or went away): its recipients are
		 * deferred ("4.4.2 ... without a result") and the channel
		 * rests for transport_retry_time, as Postfix's qmgr does.
		 */
		conn_failed = false;
		snprintf(why, sizeof(why), "transport %s failed: %s", l->ch->def->name,
			 reply ? "unexpected frame" : reason);
		r = xcalloc(l->n + 1, sizeof(*r));
		for (size_t i = 0; i < l->n; i++)
			r[n++] = (struct sched_result){.index = l->index[i],
						       .status = ZFARM__STATUS__TEMPFAIL,
						       .enhanced = "4.3.0",
						       .text = why};
		sched_pause_channel(d->s, l->ch->def->name, now_us() + d->transport_retry_us);
		log_warn("%s: channel %s: delivery ended without a reply (%s); the channel rests "
			 "for %lld s",
			 l->qid, l->ch->def->name, reply ? "unexpected frame" : reason,
			 (long long)(d->transport_retry_us / 1000000));
		free(l->nexthop); /* whatever the transport held is gone */
		l->nexthop = NULL;
	}
	link_forget(l);
	sched_done(d->s, l->delivery, r, n, conn_failed, now_us());
	free(r);
	schedd_pump(d);
}

/*
 * schedd_free_link - an idle connection of ch for a delivery to nexthop:
 * one whose last delivery went to the same nexthop (its transport may
 * reuse an SMTP connection), else a connected one, else a new one.
 * O(channel concurrency).
 */
static struct link *schedd_free_link(struct schedd *d, struct chan *ch, const char *nexthop)
{
	struct link *connected = NULL, *unused = NULL, *l;
	char err[512];

	if (!ch->def->endpoint)
		return NULL;
	if (!ch->links) {
		ch->nlinks = ch->nlinks_max ? ch->nlinks_max : 1;
		ch->links = xcalloc(ch->nlinks, sizeof(*ch->links));
	}
	for (unsigned i = 0; i < ch->nlinks; i++) {
		l = &ch->links[i];
		if (l->busy)
			continue;
		if (!l->fc) {
			if (!unused)
				unused = l;
			continue;
		}
		if (nexthop && l->nexthop && strcmp(l->nexthop, nexthop) == 0)
			return l;
		if (!connected)
			connected = l;
	}
	if (connected)
		return connected;
	l = unused;
	if (!l)
		return NULL;
	l->fc = frame_client_new(d->base, ch->def->endpoint, d->rundir, d->transport_timeout_ms,
				 err, sizeof(err));
	if (!l->fc) {
		log_error("channel %s: endpoint: %s", ch->def->name, err);
		return NULL;
	}
	l->ch = ch;
	return l;
}

/* schedd_dsn_fields - what a notice says about recipient r (RFC 3464 fields). */
static void schedd_dsn_fields(Zfarm__DeliveryRecipient *rs, const struct rcpt *r)
{
	switch (r->state) {
	case RCPT_FAILED:
		rs->dsn_action = "failed";
		rs->dsn_status = r->enhanced[0] ? r->enhanced : "5.0.0";
		break;
	case RCPT_DELIVERED:
		/* Handed to an SMTP server that took no NOTIFY: "relayed" (RFC 3464 2.3.3). */
		rs->dsn_action = strcmp(r->channel, "smtp") == 0 || strcmp(r->channel, "relay") == 0
				     ? "relayed"
				     : "delivered";
		rs->dsn_status = r->enhanced[0] ? r->enhanced : "2.0.0";
		break;
	default:
		rs->dsn_action = "delayed";
		rs->dsn_status = r->enhanced[0] ? r->enhanced : "4.0.0";
		break;
	}
	rs->dsn_smtp_code = r->smtp_code;
	rs->dsn_text = r->text;
	rs->dsn_last_attempt = r->last_attempt_us / 1000000;
}

static bool schedd_any_failed(Zfarm__DeliveryRecipient *rs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rs[i].dsn_action && strcmp(rs[i].dsn_action, "failed") == 0)
			return true;
	return false;
}

static void schedd_start(struct schedd *d, const struct sched_delivery *dl, struct link *l)
{
	const struct msgstate *m = dl->m;
	Zfarm__Frame f;
	Zfarm__DeliveryRequest rq = ZFARM__DELIVERY_REQUEST__INIT;
	Zfarm__QueueRef ref = ZFARM__QUEUE_REF__INIT;
	Zfarm__DeliveryRecipient *rs = xcalloc(dl->n, sizeof(*rs));
	Zfarm__DeliveryRecipient **rp = xcalloc(dl->n, sizeof(*rp));

	for (size_t i = 0; i < dl->n; i++) {
		/* msgstate keeps recipient k at route index k (msgstate.h). */
		const struct rcpt *r = dl->index[i] < m->n ? &m->r[dl->index[i]] : NULL;

		zfarm__delivery_recipient__init(&rs[i]);
		rs[i].index = dl->index[i];
		if (r) {
			rs[i].address = r->address;
			rs[i].orcpt = r->orcpt;
			rs[i].notify = r->notify;
			rs[i].user = r->user;
			rs[i].orig_address = r->orig_address;
			if (dl->notice)
				schedd_dsn_fields(&rs[i], r);
		}
		rp[i] = &rs[i];
	}
	ref.queue_id = (char *)dl->qid;
	ref.store = (char *)qstore_backend(d->qs);
	ref.size = m->size;
	ref.nrcpt = (uint32_t)m->n;
	ref.arrival = m->arrival_us / 1000000;
	rq.ref = &ref;
	rq.channel = (char *)dl->channel;
	rq.nexthop = (char *)dl->nexthop;
	rq.sender = m->sender;
	rq.recipients = rp;
	rq.n_recipients = dl->n;
	rq.envid = m->envid;
	rq.ret = m->ret;
	l->notice = NULL;
	if (dl->notice) {
		/* A notice about a null-sender message goes to the double-bounce recipient. */
		rq.notice_to = m->sender[0] ? m->sender : d->double_bounce_rcpt;
		rq.retry_until = (m->arrival_us + d->lifetime_us) / 1000000;
		l->notice = schedd_any_failed(rs, dl->n) ? "non-delivery"
			    : dl->delay			 ? "delay"
							 : "delivery status";
	}
	frame_init(&f, 0);
	f.body_case = ZFARM__FRAME__BODY_DELIVERY;
	f.delivery = &rq;
	l->busy = true;
	if (!l->nexthop || strcmp(l->nexthop, dl->nexthop) != 0) {
		free(l->nexthop);
		l->nexthop = xstrdup(dl->nexthop);
	}
	l->delivery = dl->id;
	snprintf(l->qid, sizeof(l->qid), "%s", dl->qid);
	l->n = dl->n;
	l->index = xcalloc(dl->n, sizeof(*l->index));
	l->address = xcalloc(dl->n, sizeof(*l->address));
	for (size_t i = 0; i < dl->n; i++) {
		l->index[i] = dl->index[i];
		l->address[i] = xstrdup(rs[i].address ? rs[i].address : "");
	}
	frame_client_request(l->fc, &f, schedd_on_delivery, l);
	free(rs);
	free(rp);
}

static void schedd_load_backlog(struct schedd *d);

static void schedd_arm(struct schedd *d)
{
	int64_t when = sched_next_wakeup(d->s), now = now_us();
	struct timeval tv = {0, 0};

	if (when == INT64_MAX) {
		evtimer_del(d->timer);
		return;
	}
	if (when > now) {
		tv.tv_sec = (time_t)((when - now) / 1000000);
		tv.tv_usec = (suseconds_t)((when - now) % 1000000);
	}
	evtimer_add(d->timer, &tv);
}

/* schedd_pump - start every delivery a free transport connection can take. */
static void schedd_pump(struct schedd *d)
{
	struct sched_delivery dl;

	if (d->pumping)
		return; /* a callback inside; the outer loop goes on */
	d->pumping = true;
	schedd_load_backlog(d);
	for (;;) {
		struct link *l;
		struct chan *ch;

		if (!sched_next(d->s, now_us(), &dl))
			break;
		ch = schedd_chan(d, dl.channel);
		l = ch ? schedd_free_link(d, ch, dl.nexthop) : NULL;
		if (!l) {
			/* No transport for this channel: defer its recipients. */
			struct sched_result *r = xcalloc(dl.n, sizeof(*r));

			for (size_t i = 0; i < dl.n; i++) {
				r[i].index = dl.index[i];
				r[i].status = ZFARM__STATUS__TEMPFAIL;
				r[i].enhanced = "4.3.5";
				r[i].text = "no transport for this channel";
			}
			log_warn("%s: channel %s has no transport; recipients deferred", dl.qid,
				 dl.channel);
			sched_done(d->s, dl.id, r, dl.n, false, now_us());
			free(r);
			continue;
		}
		schedd_start(d, &dl, l);
	}
	d->pumping = false;
	schedd_arm(d);
}

static void schedd_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct schedd *d = arg;

	(void)fd;
	(void)what;
	sched_due(d->s, now_us());
	schedd_pump(d);
}

/* ---- intake ---- */

/*
 * schedd_load - read qid and add it; ack status.  reroute (at start): a
 * requeued message whose new routes are not recorded yet goes to the
 * router (it is not taken in: TEMPFAIL "not routed").
 */
static Zfarm__Status schedd_load(struct schedd *d, const char *qid, uint64_t size, bool reroute,
				 char *why, size_t whylen)
{
	struct qstore_reader *rd;
	Zfarm__CtlRecord **recs = NULL;
	size_t n = 0;
	struct msgstate m;
	enum msgstate_load_result lr;
	char err[512];
	int errnum = 0;
	Zfarm__Status st = ZFARM__STATUS__OK;

	if (sched_has(d->s, qid))
		return ZFARM__STATUS__OK;
	/* One open, and for a small message one read, for envelope and records. */
	rd = qstore_read(d->qs, qid, &errnum, err, sizeof(err));
	if (!rd) {
		snprintf(why, whylen, "%s", err);
		return errnum == ENOENT ? ZFARM__STATUS__PERMFAIL : ZFARM__STATUS__TEMPFAIL;
	}
	if (qstore_reader_ctl_load(rd, &recs, &n, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "control record: %s", err);
		qstore_reader_free(&rd);
		return ZFARM__STATUS__TEMPFAIL;
	}
	lr = msgstate_load(&m, qstore_envelope(rd), recs, n, err, sizeof(err));
	if (lr == MSGSTATE_OK) {
		m.size = size;
		if (sched_add(d->s, &m, now_us()) < 0)
			msgstate_release(&m);
	} else {
		snprintf(why, whylen, "%s", lr == MSGSTATE_UNROUTED ? "not routed" : err);
		st = lr == MSGSTATE_UNROUTED ? ZFARM__STATUS__TEMPFAIL : ZFARM__STATUS__PERMFAIL;
		if (lr == MSGSTATE_UNROUTED && m.requeued && reroute) {
			log_info("%s: requeued, new routes not recorded yet: to the router again",
				 qid);
			schedd_reroute_push(d, qid, size, m.arrival_us / 1000000);
		}
		msgstate_release(&m);
	}
	qstore_ctl_free(&recs, n);
	qstore_reader_free(&rd);
	return st;
}

static void schedd_load_backlog(struct schedd *d)
{
	struct backlog *b = &d->backlog;
	char why[600];

	while (b->n > 0 && sched_room(d->s)) {
		const char *qid = b->qid[b->head];

		if (qid[0] && /* "": deleted from the backlog */
		    schedd_load(d, qid, 0, false, why, sizeof(why)) != ZFARM__STATUS__OK)
			log_warn("%s: not loaded from the backlog: %s", qid, why);
		b->head = (b->head + 1) % b->cap;
		b->n--;
	}
}

static void schedd_backlog_push(struct schedd *d, const char *qid)
{
	struct backlog *b = &d->backlog;

	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		char(*q)[QID_SIZE] = xcalloc(cap, sizeof(*q));

		for (size_t i = 0; i < b->n; i++)
			memcpy(q[i], b->qid[(b->head + i) % b->cap], QID_SIZE);
		free(b->qid);
		b->qid = q;
		b->head = 0;
		b->cap = cap;
	}
	memcpy(b->qid[(b->head + b->n) % b->cap], qid, QID_SIZE);
	b->n++;
}

/* ---- queue control ---- */

/* backlog_find - position of qid in the backlog ring, or -1. */
static long backlog_find(const struct backlog *b, const char *qid)
{
	for (size_t k = 0; k < b->n; k++)
		if (strcmp(b->qid[(b->head + k) % b->cap], qid) == 0)
			return (long)((b->head + k) % b->cap);
	return -1;
}

static int schedd_held_record(struct schedd *d, const char *qid, bool held)
{
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT, *cp = &c;
	char err[512];

	c.body_case = ZFARM__CTL_RECORD__BODY_HELD;
	c.held = held;
	if (qstore_ctl_append(d->qs, qid, &cp, 1, err, sizeof(err)) < 0) {
		log_error("%s: cannot record %s: %s", qid, held ? "hold" : "release", err);
		return -1;
	}
	return 0;
}

/*
 * schedd_change_one - apply a changing op to one message, loaded or in the
 * backlog.  1 done, 0 nothing to do, -1 unknown (not in the scheduler's
 * queue: not routed yet, or gone).
 */
static int schedd_change_one(struct schedd *d, Zfarm__QueueControlRequest__Op op, const char *qid)
{
	const struct msgstate *m = sched_find(d->s, qid);
	long b = m ? -1 : backlog_find(&d->backlog, qid);
	char why[600];

	if (!m && b < 0)
		return -1;
	switch (op) {
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__HOLD:
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__RELEASE: {
		bool hold = op == ZFARM__QUEUE_CONTROL_REQUEST__OP__HOLD;

		if (m && m->held == hold)
			return 0;
		/* Durable first: the flag must survive a restart. */
		if (schedd_held_record(d, qid, hold) < 0)
			return 0;
		if (m)
			(void)(hold ? sched_hold(d->s, qid) : sched_release(d->s, qid, now_us()));
		log_info("%s: %s by the queue administrator", qid, hold ? "held" : "released");
		return 1;
	}
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__DELETE:
		if (m)
			return sched_delete(d->s, qid) == 0 ? 1 : -1;
		d->backlog.qid[b][0] = '\0';
		schedd_remove(d, qid, " (deleted by the queue administrator)");
		return 1;
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__BOUNCE: {
		bool held;

		if (!m) {
			/* Load it now, past the active limit if need be: one message. */
			d->backlog.qid[b][0] = '\0';
			if (schedd_load(d, qid, 0, false, why, sizeof(why)) != ZFARM__STATUS__OK ||
			    !(m = sched_find(d->s, qid)))
				return -1;
		}
		held = m->held;
		if (held && schedd_held_record(d, qid, false) < 0)
			return 0;
		log_info("%s: returned to the sender by the queue administrator", qid);
		return sched_bounce(d->s, qid, now_us()) == 0 ? 1 : -1;
	}
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__REQUEUE:
		if (!m) {
			/* Load it now, past the active limit if need be: it leaves at once. */
			d->backlog.qid[b][0] = '\0';
			if (schedd_load(d, qid, 0, false, why, sizeof(why)) != ZFARM__STATUS__OK ||
			    !sched_find(d->s, qid))
				return -1;
		}
		/* schedd_requeued logs it: now, or when the running deliveries end. */
		return sched_requeue(d->s, qid) == 0 ? 1 : -1;
	case ZFARM__QUEUE_CONTROL_REQUEST__OP__FLUSH:
		if (m)
			return sched_flush(d->s, qid, now_us()) > 0;
		return 0;
	default:
		return 0;
	}
}

struct id_list {
	char (*v)[QID_SIZE];
	size_t n, cap;
};

static void id_push(struct id_list *l, const char *qid)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	snprintf(l->v[l->n++], QID_SIZE, "%s", qid);
}

static void id_from_sched(void *arg, const struct msgstate *m)
{
	id_push(arg, m->qid);
}

/* schedd_change - a changing request; fills ok/error/affected. */
static void schedd_change(struct schedd *d, const Zfarm__QueueControlRequest *rq,
			  Zfarm__QueueControlReply *out, char *err, size_t errlen)
{
	struct id_list ids = {0};
	size_t unknown = 0, off = 0;

	out->ok = true;
	if (rq->op == ZFARM__QUEUE_CONTROL_REQUEST__OP__FLUSH && rq->n_queue_ids == 0) {
		if (rq->destination && rq->destination[0])
			out->affected = (uint32_t)sched_flush_dest(
			    d->s, rq->channel && rq->channel[0] ? rq->channel : NULL,
			    rq->destination, now_us());
		else
			out->affected = (uint32_t)sched_flush(d->s, NULL, now_us());
		log_info("flush by the queue administrator: %u recipient(s) due now",
			 out->affected);
		return;
	}
	if (rq->n_queue_ids == 0) {
		out->ok = false;
		snprintf(err, errlen, "give queue IDs (or ALL)");
		return;
	}
	for (size_t i = 0; i < rq->n_queue_ids; i++) {
		if (strcmp(rq->queue_ids[i], "ALL") == 0) {
			sched_foreach(d->s, id_from_sched, &ids);
			for (size_t k = 0; k < d->backlog.n; k++) {
				const char *q = d->backlog.qid[(d->backlog.head + k) % d->backlog.cap];

				if (q[0])
					id_push(&ids, q);
			}
		} else if (qid_valid(rq->queue_ids[i])) {
			id_push(&ids, rq->queue_ids[i]);
		} else {
			unknown++;
			off += (size_t)snprintf(err + off, off < errlen ? errlen - off : 0,
						"%s%s: not a queue ID", off ? "; " : "",
						rq->queue_ids[i]);
		}
	}
	for (size_t i = 0; i < ids.n; i++) {
		int rc = schedd_change_one(d, rq->op, ids.v[i]);

		if (rc > 0)
			out->affected++;
		if (rc < 0) {
			unknown++;
			if (off < errlen)
				off += (size_t)snprintf(err + off, errlen - off,
							"%s%s: no such message in the queue",
							off ? "; " : "", ids.v[i]);
		}
	}
	if (unknown)
		out->ok = false;
	free(ids.v);
}

/* One client connection: its listener decides what it may ask. */
enum client_role { CLIENT_SUBMIT, CLIENT_QCTL, CLIENT_SHOWQ };

struct client {
	struct schedd *d;
	enum client_role role;
};

static void client_control(struct client *c, struct frame_conn *conn, const Zfarm__Frame *f)
{
	struct schedd *d = c->d;
	const Zfarm__QueueControlRequest *rq = f->queue_control;
	Zfarm__QueueControlReply plain = ZFARM__QUEUE_CONTROL_REPLY__INIT, *rep = &plain;
	struct qctl_view v = {d->s,	       d->qs,	      (const char(*)[QID_SIZE])d->backlog.qid,
			      d->backlog.head, d->backlog.n, d->backlog.cap};
	struct qctl_reply *qr = qctl_answer(&v, rq);
	Zfarm__Frame out;
	char err[2048] = "", serr[256];

	if (qr) {
		rep = qctl_reply_msg(qr);
	} else if (c->role != CLIENT_QCTL) {
		snprintf(err, sizeof(err), "not permitted on this socket (use private/qctl)");
	} else {
		schedd_change(d, rq, &plain, err, sizeof(err));
		schedd_pump(d);
	}
	if (!qr)
		plain.error = err;
	frame_init(&out, f->request_id);
	out.body_case = ZFARM__FRAME__BODY_QUEUE_CONTROL_REPLY;
	out.queue_control_reply = rep;
	if (frame_conn_send(conn, &out, serr, sizeof(serr)) < 0)
		log_warn("cannot answer a queue control request: %s", serr);
	qctl_reply_free(&qr);
}

static void client_submit(struct schedd *d, struct frame_conn *conn, const Zfarm__Frame *f)
{
	Zfarm__Frame out;
	Zfarm__SchedAck ack = ZFARM__SCHED_ACK__INIT;
	char why[600] = "", err[256];

	if (!sched_room(d->s)) {
		/* A rescan's message is not pushed: see SchedSubmit.rescan. */
		if (!f->sched_submit->rescan)
			schedd_backlog_push(d, f->sched_submit->ref->queue_id);
		ack.status = ZFARM__STATUS__OK;
	} else {
		ack.status = schedd_load(d, f->sched_submit->ref->queue_id,
					 f->sched_submit->ref->size, false, why, sizeof(why));
		if (ack.status != ZFARM__STATUS__OK)
			log_warn("%s: not scheduled: %s", f->sched_submit->ref->queue_id, why);
	}
	ack.reason = why;
	frame_init(&out, f->request_id);
	out.body_case = ZFARM__FRAME__BODY_SCHED_ACK;
	out.sched_ack = &ack;
	if (frame_conn_send(conn, &out, err, sizeof(err)) < 0)
		log_warn("cannot acknowledge a submission: %s", err);
	schedd_pump(d);
}

static void client_on_recv(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct client *c = arg;

	if (c->role == CLIENT_SUBMIT && f->body_case == ZFARM__FRAME__BODY_SCHED_SUBMIT &&
	    f->sched_submit->ref && f->sched_submit->ref->queue_id &&
	    strlen(f->sched_submit->ref->queue_id) == QID_LEN &&
	    qid_valid(f->sched_submit->ref->queue_id)) {
		client_submit(c->d, conn, f);
	} else if (c->role != CLIENT_SUBMIT &&
		   f->body_case == ZFARM__FRAME__BODY_QUEUE_CONTROL && f->queue_control) {
		client_control(c, conn, f);
	} else {
		log_warn("a client sent a %s frame that this socket does not take; closing it",
			 frame_body_name(f));
		frame_conn_close_after_flush(conn);
	}
	frame_free(&f);
}

static void client_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct client *c = arg;
	struct schedd *d = c->d;

	if (reason[0])
		log_warn("client connection closed: %s", reason);
	frame_conn_free(&conn);
	free(c);
	farm_server_session_end(d->srv);
}

static void schedd_accept(struct farm_server *srv, int fd, const char *listener)
{
	struct client *c = xcalloc(1, sizeof(*c));

	c->d = &sd;
	c->role = strcmp(listener, "qctl") == 0	   ? CLIENT_QCTL
		  : strcmp(listener, "showq") == 0 ? CLIENT_SHOWQ
						   : CLIENT_SUBMIT;
	if (!frame_conn_new(farm_server_base(srv), fd, 0, client_on_recv, client_on_close, c)) {
		log_error("cannot set up a client connection");
		free(c);
		farm_server_session_end(srv);
	}
}

/* ---- start ---- */

static int schedd_recover_one(const char *qid, void *arg)
{
	struct schedd *d = arg;
	char why[600];

	if (!sched_room(d->s))
		schedd_backlog_push(d, qid);
	else if (schedd_load(d, qid, 0, true, why, sizeof(why)) == ZFARM__STATUS__OK)
		d->recovered++;
	/* other unrouted ones are the reinjector's and the router's business */
	return 0;
}

/*
 * schedd_recover - at start, take in every routed message of the queue:
 * after a crash of the scheduler alone (farmd restarts it, the reinjector
 * does not run again) nothing else would.  Once per start, never per
 * message; messages the reinjector submits again are acknowledged as
 * already held.
 */
static void schedd_recover(struct schedd *d)
{
	char err[512];
	uint64_t t0 = clock_mono_ms();

	if (qstore_scan(d->qs, schedd_recover_one, NULL, d, err, sizeof(err)) < 0)
		log_error("queue scan: %s", err);
	log_info("took in %zu queued message(s) in %.3f s (%zu waiting for room)", d->recovered,
		 (double)(clock_mono_ms() - t0) / 1000.0, d->backlog.n);
	/* Deliveries start from the loop, once the skeleton runs it. */
	event_active(d->timer, EV_TIMEOUT, 0);
}

/*
 * schedd_farm_capacity - how many connections the farm listening on
 * endpoint serves at once (process_limit x client_limit, client_limit for
 * kind single), 0 if no [farm] section lists it (e.g. a farm elsewhere).
 * The scheduler keeps one connection per concurrent delivery: more than
 * the farm serves would leave deliveries waiting in the listen queue
 * until transport_timeout (a local farm serves one per process).
 */
static unsigned long schedd_farm_capacity(const struct config *cfg, const char *endpoint,
					  const char **farm)
{
	size_t nf = config_section_count(cfg, "farm");
	char err[256];

	for (size_t i = 0; i < nf; i++) {
		const char *name = config_section_name(cfg, "farm", i);
		char **listen = NULL;
		bool match = false;
		long long procs, clients;
		const char *kind;

		if (config_get_list(cfg, "farm", name, "listen", NULL, &listen, NULL, err,
				    sizeof(err)) < 0)
			continue;
		for (size_t k = 0; listen && listen[k] && !match; k++) {
			/* "[NAME=]unix:PATH" or "[NAME=]inet:HOST:PORT" */
			const char *eq = strchr(listen[k], '=');
			const char *colon = strchr(listen[k], ':');
			const char *spec = eq && (!colon || eq < colon) ? eq + 1 : listen[k];

			match = strcmp(spec, endpoint) == 0;
		}
		config_list_free(&listen);
		if (!match)
			continue;
		if (config_get_int(cfg, "farm", name, "process_limit", 100, 1, 100000, &procs, err,
				   sizeof(err)) < 0 ||
		    config_get_int(cfg, "farm", name, "client_limit", 1, 1, 1000000, &clients, err,
				   sizeof(err)) < 0)
			return 0;
		kind = config_get_default(cfg, "farm", name, "kind", "farm");
		*farm = name;
		return strcmp(kind, "single") == 0 ? (unsigned long)clients
						   : (unsigned long)(procs * clients);
	}
	return 0;
}

static int schedd_time(const struct config *cfg, const char *param, long long def, int64_t *out,
		       char *err, size_t errlen)
{
	long long v;

	if (config_get_time(cfg, NULL, NULL, param, def, 0, 100LL * 365 * 86400, &v, err, errlen) <
	    0)
		return -1;
	*out = (int64_t)v * 1000000;
	return 0;
}

/* schedd_router - the connection requeued messages go out on (router_endpoint; "none"). */
static int schedd_router(struct schedd *d, const struct config *cfg, char *err, size_t errlen)
{
	const char *spec =
	    config_get_default(cfg, NULL, NULL, "router_endpoint", "unix:private/router");

	while (*spec == ' ' || *spec == '\t')
		spec++;
	d->router = frame_client_new(d->base, !spec[0] || strcmp(spec, "none") == 0 ? NULL : spec,
				     d->rundir, SCHEDD_ROUTER_TIMEOUT_MS, err, errlen);
	return d->router ? 0 : -1;
}

static int schedd_init(struct farm_server *srv, char *err, size_t errlen)
{
	struct schedd *d = &sd;
	const struct config *cfg = farm_server_config(srv);
	struct sched_params p = {0};
	struct sched_ops ops = {schedd_record, schedd_final, schedd_deleted, schedd_requeued, d};
	char qdir[4200];
	long long v;
	int64_t tt;

	d->srv = srv;
	d->base = farm_server_base(srv);
	if (farmd_run_directory(cfg, d->rundir, sizeof(d->rundir), err, errlen) < 0)
		return -1;
	snprintf(qdir, sizeof(qdir), "%s/queue", d->rundir);
	d->qs =
	    qstore_open(config_get_default(cfg, NULL, NULL, "queue_store", "spool"),
			config_get_default(cfg, NULL, NULL, "queue_directory", qdir), err, errlen);
	if (!d->qs)
		return -1;
	d->channels = channel_table_load(cfg, err, errlen);
	if (!d->channels)
		return -1;
	d->nchans = channel_table_count(d->channels);
	d->chans = xcalloc(d->nchans, sizeof(*d->chans));
	d->sch = xcalloc(d->nchans, sizeof(*d->sch));
	for (size_t i = 0; i < d->nchans; i++) {
		const struct channel_def *c = channel_table_get(d->channels, i);

		unsigned long cap = 0;
		const char *farm = NULL;

		d->chans[i].def = c;
		d->sch[i].name = c->name;
		d->sch[i].concurrency = c->concurrency;
		if (c->endpoint)
			cap = schedd_farm_capacity(cfg, c->endpoint, &farm);
		if (cap && cap < c->concurrency) {
			log_info("channel %s: %lu deliveries at once, not %u: farm %s serves "
				 "that many connections",
				 c->name, cap, c->concurrency, farm);
			d->sch[i].concurrency = (unsigned)cap;
		}
		d->chans[i].nlinks_max = d->sch[i].concurrency;
		d->sch[i].destination_concurrency = c->destination_concurrency;
		d->sch[i].recipient_limit = c->recipient_limit;
		d->sch[i].rate_delay_us = (int64_t)c->rate_delay * 1000000;
	}
	if (schedd_time(cfg, "minimal_backoff_time", 300, &p.backoff.minimal_us, err, errlen) < 0 ||
	    schedd_time(cfg, "maximal_backoff_time", 4000, &p.backoff.maximal_us, err, errlen) <
		0 ||
	    schedd_time(cfg, "maximal_queue_lifetime", 5 * 86400, &p.backoff.lifetime_us, err,
			errlen) < 0 ||
	    schedd_time(cfg, "delay_warning_time", 0, &p.backoff.delay_warning_us, err, errlen) <
		0 ||
	    schedd_time(cfg, "transport_timeout", 600, &tt, err, errlen) < 0 ||
	    schedd_time(cfg, "transport_retry_time", 60, &d->transport_retry_us, err, errlen) < 0)
		return -1;
	d->transport_timeout_ms = (unsigned)(tt / 1000);
	d->lifetime_us = p.backoff.lifetime_us;
	d->double_bounce_rcpt =
	    xstrdup(config_get_default(cfg, NULL, NULL, "double_bounce_recipient", ""));
	p.double_bounce = d->double_bounce_rcpt[0] != '\0';
	p.dead_retry_us = p.backoff.minimal_us;
	if (config_get_int(cfg, NULL, NULL, "initial_destination_concurrency", 5, 1, 10000, &v, err,
			   errlen) < 0)
		return -1;
	p.initial_destination_concurrency = (unsigned)v;
	if (config_get_int(cfg, NULL, NULL, "qmgr_message_active_limit", 20000, 1, 100000000, &v,
			   err, errlen) < 0)
		return -1;
	p.active_limit = (size_t)v;
	p.channels = d->sch;
	p.n_channels = d->nchans;
	if (schedd_router(d, cfg, err, errlen) < 0)
		return -1;
	d->s = sched_new(&p, &ops);
	d->timer = evtimer_new(d->base, schedd_on_timer, d);
	d->flush_ev = evtimer_new(d->base, schedd_on_flush, d);
	schedd_recover(d);
	return 0;
}

static void schedd_fini(struct farm_server *srv)
{
	struct schedd *d = &sd;

	(void)srv;
	for (size_t i = 0; i < d->nchans; i++) {
		for (unsigned k = 0; k < d->chans[i].nlinks; k++) {
			frame_client_free(&d->chans[i].links[k].fc);
			free(d->chans[i].links[k].nexthop);
			link_forget(&d->chans[i].links[k]);
		}
		free(d->chans[i].links);
	}
	sched_free(&d->s);
	frame_client_free(&d->router); /* RouteRequests in flight: the reinjector's */
	free(d->reroute);
	if (d->timer)
		event_free(d->timer);
	schedd_flush(d);
	free(d->pending);
	if (d->flush_ev)
		event_free(d->flush_ev);
	free(d->chans);
	free(d->sch);
	free(d->backlog.qid);
	free(d->double_bounce_rcpt);
	channel_table_free(&d->channels);
	qstore_close(&d->qs);
}

static const struct farm_server_ops schedd_ops = {
    .name = "scheduler",
    .init = schedd_init,
    .accept = schedd_accept,
    .fini = schedd_fini,
};

int main(int argc, char **argv)
{
	return farm_server_main(argc, argv, &schedd_ops);
}
