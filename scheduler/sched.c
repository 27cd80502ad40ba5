/*
 * sched - the scheduler's queue state engine (see sched.h).
 *
 * Where a recipient is: every non-final recipient of a known message is
 * in exactly one place, recorded in its struct sloc: the ready FIFO of its
 * destination (W_READY), the deferred min-heap (W_HEAP), a running
 * delivery (W_RUNNING), set aside because the message is held (W_HELD),
 * or parked (W_PARKED: a due DEFERRED recipient of channel "error", which
 * needs re-routing that is not done here; keeping it in the heap would
 * make sched_next_wakeup() stay in the past and the daemon spin).
 *
 * Lazy removal: FIFO and heap entries carry the recipient's generation,
 * bumped on every move, so a hold or a flush simply moves the recipient
 * and the old entry is dropped when it reaches the front.  Entries hold a
 * reference on their struct smsg, so a message that became final and was
 * forgotten stays allocated until its last stale entry is dropped.
 *
 * Round robin: a destination is on its channel's ring while it may have
 * ready entries; visiting it either starts a delivery or takes it off the
 * ring (empty, dead, or window full), so sched_next is amortised
 * O(batch + log n).  dest_done and new ready entries put it back.
 *
 * The callbacks must not call back into sched.
 */
#include "scheduler/sched.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "proto/queue.pb-c.h"
#include "scheduler/dest.h"

#define DEF_CONCURRENCY	     20
#define DEF_DEST_CONCURRENCY 5
#define DEF_RCPT_LIMIT	     50
#define DEF_INITIAL_WINDOW   5
#define DEF_ACTIVE_LIMIT     100000

/* Synthetic results (no SMTP reply behind them: smtp_code 0). */
#define DEAD_ENH      "4.4.1"
#define DEAD_TEXT     "destination not responding"
#define NORESULT_ENH  "4.4.2"
#define NORESULT_TEXT "delivery ended without a result"
#define EXPIRED_ENH   "4.4.7"
#define EXPIRED_TEXT  "delivery time expired"
#define RETURNED_ENH  "5.0.0"
#define RETURNED_TEXT "message returned by the queue administrator"

/* The route index of a message's notice in FIFO and heap entries. */
#define NOTICE_IDX UINT32_MAX

/* ---- a small chained hash table keyed by byte strings ---- */

struct hnode {
	struct hnode *next;
	uint64_t hash;
	const char *key;
	size_t klen;
};

struct htab {
	struct hnode **b;
	size_t nb, n;
};

static uint64_t hash_bytes(const char *k, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)k[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static struct hnode *ht_find(const struct htab *t, const char *key, size_t klen)
{
	uint64_t h = hash_bytes(key, klen);

	if (t->nb == 0)
		return NULL;
	for (struct hnode *e = t->b[h & (t->nb - 1)]; e; e = e->next)
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			return e;
	return NULL;
}

static void ht_insert(struct htab *t, struct hnode *e)
{
	e->hash = hash_bytes(e->key, e->klen);
	if (t->n >= t->nb) {
		size_t nb = t->nb ? 2 * t->nb : 64;
		struct hnode **b = xcalloc(nb, sizeof(*b));

		for (size_t i = 0; i < t->nb; i++)
			for (struct hnode *x = t->b[i], *nx; x; x = nx) {
				nx = x->next;
				x->next = b[x->hash & (nb - 1)];
				b[x->hash & (nb - 1)] = x;
			}
		free(t->b);
		t->b = b;
		t->nb = nb;
	}
	e->next = t->b[e->hash & (t->nb - 1)];
	t->b[e->hash & (t->nb - 1)] = e;
	t->n++;
}

static void ht_remove(struct htab *t, struct hnode *e)
{
	for (struct hnode **p = &t->b[e->hash & (t->nb - 1)]; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			t->n--;
			return;
		}
}

/* ---- state ---- */

enum where { W_NONE, W_READY, W_HEAP, W_RUNNING, W_HELD, W_PARKED };

struct sdest;

struct sloc {
	struct sdest *d; /* NULL for channel "error" */
	uint32_t gen;	 /* bumped on every move: older entries are stale */
	uint32_t slot;	 /* W_RUNNING: the delivery slot */
	uint8_t where;
};

struct smsg {
	struct hnode h; /* first: key is m.qid */
	struct msgstate m;
	struct sloc *loc;
	struct sloc nloc; /* the message's notice: W_NONE, W_READY, W_HEAP, W_RUNNING */
	unsigned nattempts; /* notice attempts that failed */
	uint64_t seed;	 /* backoff spread */
	size_t live;	 /* recipients not final */
	size_t busy;	 /* recipients ready or running: a notice waits for 0 */
	size_t refs;	 /* FIFO and heap entries pointing here */
	size_t inflight; /* deliveries (and notices) running */
	bool delay_due;	 /* the delay notice should go with the next notice */
	bool doomed;	 /* deleted: forgotten when nothing runs any more */
	bool give_up;	 /* bounce-now: what is not final fails */
	bool requeue;	 /* requeued: handed on (ops->requeue) when nothing runs */
	bool forgotten;
};

struct rentry {
	struct smsg *m;
	uint32_t idx, gen;
};

struct schan {
	char *name;
	unsigned concurrency, dest_concurrency, rcpt_limit;
	unsigned active;
	int64_t paused_until_us; /* its transport misbehaved: nothing starts before */
	int64_t rate_delay_us;	 /* per destination, between delivery starts */
	struct sched_chan_counts n;
	struct sdest *rr; /* ring of destinations to visit, next first */
	struct sdest *rate_wait; /* out of the ring until their rate delay passes */
};

struct sdest {
	struct hnode h; /* first: key is "channel\0nexthop" */
	char *key;
	const char *nexthop;
	struct schan *ch;
	struct dest d;
	struct rentry *q; /* ready FIFO (ring buffer) */
	size_t qhead, qlen, qcap;
	struct sdest *rr_prev, *rr_next;
	bool in_rr;
	struct sdest *rate_next; /* on ch->rate_wait */
	bool in_rate_wait;
};

struct hentry {
	int64_t t;
	struct smsg *m;
	uint32_t idx, gen;
};

struct sdel {
	struct smsg *m;
	struct sdest *d; /* NULL for a notice */
	bool notice, delay;
	uint32_t *index;
	size_t n, cap;
	uint32_t gen;
	bool used;
};

struct sched {
	struct backoff_policy backoff;
	unsigned initial, dead_after;
	int64_t dead_retry_us;
	size_t active_limit;
	struct sched_ops ops;

	struct schan **ch;
	size_t nch;
	struct htab msgs, dests;

	struct hentry *heap;
	size_t nheap, heapcap;

	struct sdel *del;
	size_t ndel;
	uint32_t *freeslot;
	size_t nfree;

	/* scratch for the records of one call to ops->record */
	Zfarm__CtlRecord *sc;
	Zfarm__ResultRecord *sr;
	Zfarm__CtlRecord **sp;
	size_t scap;
	struct rentry *run; /* defer_dead */
	size_t runcap;

	/* notices: FIFO of NOTICE_IDX entries (no ring, no window), on channel bounce */
	struct sdest notices;
	struct schan *bounce;
	bool double_bounce;

	size_t n_ready, n_heap, n_running, n_held, n_parked;
	uint64_t received, delivered, failed, expired, deferrals, notices_sent, notices_failed;
};

static size_t *where_counter(struct sched *s, uint8_t w)
{
	switch (w) {
	case W_READY:
		return &s->n_ready;
	case W_HEAP:
		return &s->n_heap;
	case W_RUNNING:
		return &s->n_running;
	case W_HELD:
		return &s->n_held;
	case W_PARKED:
		return &s->n_parked;
	default:
		return NULL;
	}
}

static void set_where(struct sched *s, struct smsg *sm, uint32_t i, uint8_t w)
{
	struct sloc *l = &sm->loc[i];
	size_t *c;

	if ((c = where_counter(s, l->where)))
		(*c)--;
	if ((c = where_counter(s, w)))
		(*c)++;
	if (l->where == W_READY || l->where == W_RUNNING)
		sm->busy--;
	if (w == W_READY || w == W_RUNNING)
		sm->busy++;
	l->where = w;
	l->gen++;
}

static bool is_final(enum rcpt_state st)
{
	return msgstate_is_final(st);
}

static void smsg_free(struct smsg *sm)
{
	msgstate_release(&sm->m);
	free(sm->loc);
	free(sm);
}

static void maybe_free(struct smsg *sm)
{
	if (sm->forgotten && sm->refs == 0 && sm->inflight == 0)
		smsg_free(sm);
}

static void unref(struct smsg *sm)
{
	sm->refs--;
	maybe_free(sm);
}

/* notice_where - move the message's notice (no counters; gen makes old entries stale). */
static void notice_where(struct smsg *sm, uint8_t w)
{
	sm->nloc.where = w;
	sm->nloc.gen++;
}

/* forget - the message is final: out of the table, freed when unreferenced. */
static void forget(struct sched *s, struct smsg *sm)
{
	for (size_t i = 0; i < sm->m.n; i++)
		if (sm->loc[i].where != W_NONE)
			set_where(s, sm, (uint32_t)i, W_NONE);
	notice_where(sm, W_NONE);
	ht_remove(&s->msgs, &sm->h);
	sm->forgotten = true;
	maybe_free(sm);
}

/* ---- channels and destinations ---- */

static struct schan *chan_get(struct sched *s, const char *name)
{
	struct schan *c;

	for (size_t i = 0; i < s->nch; i++)
		if (strcmp(s->ch[i]->name, name) == 0)
			return s->ch[i];
	c = xcalloc(1, sizeof(*c));
	c->name = xstrdup(name);
	c->concurrency = DEF_CONCURRENCY;
	c->dest_concurrency = DEF_DEST_CONCURRENCY;
	c->rcpt_limit = DEF_RCPT_LIMIT;
	s->ch = xreallocarray(s->ch, s->nch + 1, sizeof(*s->ch));
	s->ch[s->nch++] = c;
	return c;
}

static struct sdest *dest_get(struct sched *s, const char *channel, const char *nexthop)
{
	size_t cl = strlen(channel), nl = strlen(nexthop);
	char *key = xmalloc(cl + nl + 2);
	struct hnode *e;
	struct sdest *d;
	unsigned initial;

	memcpy(key, channel, cl + 1);
	memcpy(key + cl + 1, nexthop, nl + 1);
	if ((e = ht_find(&s->dests, key, cl + nl + 1))) {
		free(key);
		return (struct sdest *)e;
	}
	d = xcalloc(1, sizeof(*d));
	d->key = key;
	d->nexthop = key + cl + 1;
	d->h.key = key;
	d->h.klen = cl + nl + 1;
	d->ch = chan_get(s, channel);
	initial = s->initial < d->ch->dest_concurrency ? s->initial : d->ch->dest_concurrency;
	dest_init(&d->d, initial, d->ch->dest_concurrency, s->dead_after, s->dead_retry_us);
	dest_set_rate_delay(&d->d, d->ch->rate_delay_us);
	ht_insert(&s->dests, &d->h);
	return d;
}

static void rr_insert(struct sdest *d)
{
	struct schan *c = d->ch;

	if (d->in_rr)
		return;
	d->in_rr = true;
	if (!c->rr) {
		d->rr_prev = d->rr_next = d;
		c->rr = d;
		return;
	}
	/* Last in the rotation: right before the next one to visit. */
	d->rr_next = c->rr;
	d->rr_prev = c->rr->rr_prev;
	d->rr_prev->rr_next = d;
	c->rr->rr_prev = d;
}

static void rr_remove(struct sdest *d)
{
	struct schan *c = d->ch;

	if (!d->in_rr)
		return;
	d->in_rr = false;
	if (d->rr_next == d) {
		c->rr = NULL;
	} else {
		d->rr_prev->rr_next = d->rr_next;
		d->rr_next->rr_prev = d->rr_prev;
		if (c->rr == d)
			c->rr = d->rr_next;
	}
	d->rr_next = d->rr_prev = NULL;
}

static void fifo_push(struct sdest *d, struct rentry e)
{
	if (d->qlen == d->qcap) {
		size_t cap = d->qcap ? 2 * d->qcap : 8;
		struct rentry *q = xreallocarray(NULL, cap, sizeof(*q));

		for (size_t i = 0; i < d->qlen; i++)
			q[i] = d->q[(d->qhead + i) % d->qcap];
		free(d->q);
		d->q = q;
		d->qcap = cap;
		d->qhead = 0;
	}
	d->q[(d->qhead + d->qlen) % d->qcap] = e;
	d->qlen++;
}

static struct rentry *fifo_peek(struct sdest *d)
{
	return &d->q[d->qhead];
}

static struct rentry fifo_pop(struct sdest *d)
{
	struct rentry e = d->q[d->qhead];

	d->qhead = (d->qhead + 1) % d->qcap;
	d->qlen--;
	return e;
}

static bool entry_valid(const struct smsg *sm, uint32_t idx, uint32_t gen)
{
	return idx == NOTICE_IDX ? sm->nloc.gen == gen : sm->loc[idx].gen == gen;
}

/* fifo_prune - drop stale entries at the front. */
static void fifo_prune(struct sdest *d)
{
	while (d->qlen) {
		struct rentry *e = fifo_peek(d);

		if (entry_valid(e->m, e->idx, e->gen))
			return;
		unref(fifo_pop(d).m);
	}
}

/* ---- the deferred heap ---- */

static bool heap_less(const struct hentry *a, const struct hentry *b)
{
	return a->t < b->t;
}

static void heap_push(struct sched *s, struct hentry e)
{
	size_t i;

	if (s->nheap == s->heapcap) {
		s->heapcap = s->heapcap ? 2 * s->heapcap : 64;
		s->heap = xreallocarray(s->heap, s->heapcap, sizeof(*s->heap));
	}
	i = s->nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!heap_less(&e, &s->heap[p]))
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = e;
}

static struct hentry heap_pop(struct sched *s)
{
	struct hentry top = s->heap[0], last = s->heap[--s->nheap];
	size_t i = 0, n = s->nheap;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && heap_less(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!heap_less(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (n > 0)
		s->heap[i] = last;
	return top;
}

/* heap_prune - drop stale entries at the top, so sched_next_wakeup is exact. */
static void heap_prune(struct sched *s)
{
	while (s->nheap && !entry_valid(s->heap[0].m, s->heap[0].idx, s->heap[0].gen))
		unref(heap_pop(s).m);
}

/* ---- placing a recipient ---- */

static void to_ready(struct sched *s, struct smsg *sm, uint32_t i)
{
	struct sdest *d = sm->loc[i].d;

	if (!d) {
		/* Channel "error", 4.x: wants re-routing, not done here. */
		set_where(s, sm, i, W_PARKED);
		return;
	}
	set_where(s, sm, i, W_READY);
	fifo_push(d, (struct rentry){sm, i, sm->loc[i].gen});
	sm->refs++;
	rr_insert(d);
}

/* place - put recipient i where its state says, due if not after now. */
static void place(struct sched *s, struct smsg *sm, uint32_t i, int64_t now_us)
{
	const struct rcpt *r = &sm->m.r[i];

	if (is_final(r->state) || sm->requeue)
		set_where(s, sm, i, W_NONE);
	else if (sm->m.held)
		set_where(s, sm, i, W_HELD);
	else if (r->state == RCPT_DEFERRED && r->next_attempt_us > now_us) {
		set_where(s, sm, i, W_HEAP);
		heap_push(s, (struct hentry){r->next_attempt_us, sm, i, sm->loc[i].gen});
		sm->refs++;
	} else
		to_ready(s, sm, i);
}

/* ---- results ---- */

static void scratch_reserve(struct sched *s, size_t n)
{
	if (n <= s->scap)
		return;
	s->scap = n > 2 * s->scap ? n : 2 * s->scap;
	s->sc = xreallocarray(s->sc, s->scap, sizeof(*s->sc));
	s->sr = xreallocarray(s->sr, s->scap, sizeof(*s->sr));
	s->sp = xreallocarray(s->sp, s->scap, sizeof(*s->sp));
}

/*
 * apply_one - apply one result to recipient i into scratch record k.
 * TEMPFAIL is retried at next_us (< 0: backoff_next), or becomes a 4.4.7
 * PERMFAIL when the message has expired.  Returns 0, -1 if refused.
 */
static int apply_one(struct sched *s, struct smsg *sm, uint32_t i, uint32_t status, uint32_t code,
		     const char *enh, const char *text, int64_t next_us, int64_t now_us, size_t k)
{
	struct rcpt *r = &sm->m.r[i];
	struct sched_chan_counts *cc = sm->loc[i].d ? &sm->loc[i].d->ch->n : NULL;
	bool expired = false;

	if (status == ZFARM__STATUS__TEMPFAIL) {
		if (sm->give_up) {
			status = ZFARM__STATUS__PERMFAIL;
			code = 0;
			enh = RETURNED_ENH;
			text = RETURNED_TEXT;
		} else if (backoff_expired(&s->backoff, now_us, sm->m.arrival_us)) {
			status = ZFARM__STATUS__PERMFAIL;
			enh = EXPIRED_ENH;
			text = EXPIRED_TEXT;
			expired = true;
		} else if (next_us < 0) {
			next_us = backoff_next(&s->backoff, r->attempts + 1, now_us,
					       sm->m.arrival_us, sm->seed);
		}
	}
	if (msgstate_apply(&sm->m, i, status, code, enh, text, now_us, next_us, &s->sr[k]) < 0)
		return -1;
	zfarm__ctl_record__init(&s->sc[k]);
	s->sc[k].body_case = ZFARM__CTL_RECORD__BODY_RESULT;
	s->sc[k].result = &s->sr[k];
	switch (status) {
	case ZFARM__STATUS__OK:
		s->delivered++;
		if (cc)
			cc->delivered++;
		break;
	case ZFARM__STATUS__PERMFAIL:
		s->failed++;
		if (cc)
			cc->failed++;
		if (expired) {
			s->expired++;
			if (cc)
				cc->expired++;
		}
		break;
	default:
		s->deferrals++;
		if (cc)
			cc->deferrals++;
		break;
	}
	if (is_final(r->state))
		sm->live--;
	return 0;
}

/* ---- notices (delivery status notifications, on channel bounce) ---- */

/*
 * notice_collect - the recipients the message's next notice covers: final
 * ones that want one (msgstate_wants_notice), and with a delay notice due
 * the ones not final whose NOTIFY allows it.  The null sender hears
 * nothing; only with double_bounce set are its failures reported (to the
 * double-bounce recipient), and never those of a double bounce.  out may
 * be NULL (count only).
 */
static size_t notice_collect(const struct sched *s, const struct smsg *sm, uint32_t *out,
			     bool *delay)
{
	bool null = sm->m.sender[0] == '\0';
	bool want_delay = sm->delay_due && !null;
	size_t n = 0;

	*delay = false;
	if (null && (!s->double_bounce || sm->m.double_bounce))
		return 0;
	for (uint32_t i = 0; i < sm->m.n; i++) {
		const struct rcpt *r = &sm->m.r[i];
		bool take;

		if (is_final(r->state))
			take = msgstate_wants_notice(r) && (!null || r->state == RCPT_FAILED);
		else
			take = want_delay && msgstate_wants_delay(r);
		if (!take)
			continue;
		if (!is_final(r->state))
			*delay = true;
		if (out)
			out[n] = i;
		n++;
	}
	return n;
}

/*
 * notice_check - queue the message's notice when one is wanted and the
 * message is quiet (nothing ready or running: one notice aggregates what
 * this round of deliveries found, as Postfix does per queue run).  A
 * delay notice with nobody to tell is simply not due any more.
 */
static void notice_check(struct sched *s, struct smsg *sm)
{
	bool delay;

	if (sm->doomed || sm->requeue || sm->m.held || sm->nloc.where != W_NONE || sm->busy > 0)
		return;
	if (notice_collect(s, sm, NULL, &delay) == 0) {
		if (sm->delay_due) {
			sm->delay_due = false;
			sm->m.delay_warned = true; /* nothing to say; not asked again */
		}
		return;
	}
	notice_where(sm, W_READY);
	fifo_push(&s->notices, (struct rentry){sm, NOTICE_IDX, sm->nloc.gen});
	sm->refs++;
}

/* settle - after sm changed: its notice, or the end (sm may be freed on return). */
static void settle(struct sched *s, struct smsg *sm)
{
	if (sm->doomed) {
		if (sm->inflight == 0) {
			if (s->ops.deleted)
				s->ops.deleted(s->ops.arg, &sm->m);
			forget(s, sm);
		}
		return;
	}
	if (sm->requeue) {
		if (sm->inflight > 0)
			return; /* the last delivery's end brings us back */
		if (sm->live > 0) {
			if (s->ops.requeue)
				s->ops.requeue(s->ops.arg, &sm->m);
			forget(s, sm);
			return;
		}
		sm->requeue = false; /* all final meanwhile: nothing to route again */
	}
	notice_check(s, sm);
	if (sm->live == 0 && sm->nloc.where == W_NONE) {
		if (s->ops.final)
			s->ops.final(s->ops.arg, &sm->m);
		forget(s, sm);
	}
}

/*
 * finish - after k records for recipients idx[0..n-1] of sm: ops->record,
 * put the recipients back, then settle (sm may be freed on return).  A
 * delay notice becomes due here, once per message; its delay flag is
 * recorded with the notice when that is queued.
 */
static void finish(struct sched *s, struct smsg *sm, const uint32_t *idx, size_t n, size_t k,
		   int64_t now_us)
{
	if (sm->live > 0 && !sm->m.delay_warned && !sm->delay_due &&
	    backoff_delay_warn(&s->backoff, now_us, sm->m.arrival_us))
		sm->delay_due = true;
	for (size_t j = 0; j < k; j++)
		s->sp[j] = &s->sc[j];
	if (k && s->ops.record)
		s->ops.record(s->ops.arg, sm->m.qid, s->sp, k);
	for (size_t j = 0; j < n; j++)
		if (sm->loc[idx[j]].where == W_NONE)
			place(s, sm, idx[j], now_us);
	settle(s, sm);
}

/*
 * defer_dead - d is dead: every ready recipient there is deferred until
 * it may live again, without a delivery attempt (4.4.1 records).
 */
static void defer_dead(struct sched *s, struct sdest *d, int64_t now_us)
{
	size_t n = 0, start = 0;

	if (s->runcap < d->qlen) {
		s->runcap = d->qlen;
		s->run = xreallocarray(s->run, s->runcap, sizeof(*s->run));
	}
	while (d->qlen) {
		struct rentry e = fifo_pop(d);

		if (entry_valid(e.m, e.idx, e.gen))
			s->run[n++] = e;
		else
			unref(e.m);
	}
	/* Group consecutive recipients of one message into one ops->record. */
	while (start < n) {
		struct smsg *sm = s->run[start].m;
		size_t end = start, k = 0;
		uint32_t *idx;

		while (end < n && s->run[end].m == sm)
			end++;
		scratch_reserve(s, end - start + 1);
		idx = xreallocarray(NULL, end - start, sizeof(*idx));
		for (size_t j = start; j < end; j++) {
			uint32_t i = s->run[j].idx;

			idx[j - start] = i;
			set_where(s, sm, i, W_NONE);
			if (apply_one(s, sm, i, ZFARM__STATUS__TEMPFAIL, 0, DEAD_ENH, DEAD_TEXT,
				      d->d.dead_until_us, now_us, k) == 0)
				k++;
		}
		finish(s, sm, idx, end - start, k, now_us);
		free(idx);
		/* The entries' references kept sm alive through finish. */
		for (size_t j = start; j < end; j++)
			unref(s->run[j].m);
		start = end;
	}
}

/* ---- the API ---- */

struct sched *sched_new(const struct sched_params *p, const struct sched_ops *ops)
{
	struct sched *s = xcalloc(1, sizeof(*s));

	s->backoff = p->backoff;
	s->initial = p->initial_destination_concurrency ? p->initial_destination_concurrency
							: DEF_INITIAL_WINDOW;
	s->dead_after = p->dead_after ? p->dead_after : 1;
	s->dead_retry_us = p->dead_retry_us;
	s->active_limit = p->active_limit ? p->active_limit : DEF_ACTIVE_LIMIT;
	if (ops)
		s->ops = *ops;
	for (size_t i = 0; i < p->n_channels; i++) {
		const struct sched_channel *pc = &p->channels[i];
		struct schan *c = chan_get(s, pc->name ? pc->name : "");

		/* 0 in a field: the default, as for an unknown channel. */
		if (pc->concurrency)
			c->concurrency = pc->concurrency;
		if (pc->destination_concurrency)
			c->dest_concurrency = pc->destination_concurrency;
		if (pc->recipient_limit)
			c->rcpt_limit = pc->recipient_limit;
		c->rate_delay_us = pc->rate_delay_us;
	}
	s->bounce = chan_get(s, "bounce");
	s->notices.ch = s->bounce;
	s->double_bounce = p->double_bounce;
	return s;
}

void sched_free(struct sched **sp)
{
	struct sched *s;

	if (!sp || !*sp)
		return;
	s = *sp;
	/* Drop every entry's reference, then the messages still known. */
	while (s->nheap)
		unref(heap_pop(s).m);
	while (s->notices.qlen)
		unref(fifo_pop(&s->notices).m);
	free(s->notices.q);
	for (size_t b = 0; b < s->dests.nb; b++)
		for (struct hnode *e = s->dests.b[b], *ne; e; e = ne) {
			struct sdest *d = (struct sdest *)e;

			ne = e->next;
			while (d->qlen)
				unref(fifo_pop(d).m);
			free(d->q);
			free(d->key);
			free(d);
		}
	for (size_t b = 0; b < s->msgs.nb; b++)
		for (struct hnode *e = s->msgs.b[b], *ne; e; e = ne) {
			ne = e->next;
			smsg_free((struct smsg *)e);
		}
	free(s->dests.b);
	free(s->msgs.b);
	for (size_t i = 0; i < s->nch; i++) {
		free(s->ch[i]->name);
		free(s->ch[i]);
	}
	free(s->ch);
	free(s->heap);
	for (size_t i = 0; i < s->ndel; i++)
		free(s->del[i].index);
	free(s->del);
	free(s->freeslot);
	free(s->sc);
	free(s->sr);
	free(s->sp);
	free(s->run);
	free(s);
	*sp = NULL;
}

bool sched_room(const struct sched *s)
{
	return s->msgs.n < s->active_limit;
}

static struct smsg *msg_find(const struct sched *s, const char *qid)
{
	return qid ? (struct smsg *)ht_find(&s->msgs, qid, strlen(qid)) : NULL;
}

bool sched_has(const struct sched *s, const char *qid)
{
	return msg_find(s, qid) != NULL;
}

int sched_add(struct sched *s, struct msgstate *m, int64_t now_us)
{
	struct smsg *sm;

	if (sched_has(s, m->qid))
		return -1;
	sm = xcalloc(1, sizeof(*sm));
	sm->m = *m;
	memset(m, 0, sizeof(*m));
	sm->loc = xcalloc(sm->m.n ? sm->m.n : 1, sizeof(*sm->loc));
	sm->seed = hash_bytes(sm->m.qid, strlen(sm->m.qid));
	for (size_t i = 0; i < sm->m.n; i++)
		if (!is_final(sm->m.r[i].state))
			sm->live++;
	s->received++;
	sm->h.key = sm->m.qid;
	sm->h.klen = strlen(sm->m.qid);
	ht_insert(&s->msgs, &sm->h);
	for (size_t i = 0; i < sm->m.n; i++) {
		const struct rcpt *r = &sm->m.r[i];

		if (is_final(r->state))
			continue;
		if (strcmp(r->channel, "error") != 0)
			sm->loc[i].d = dest_get(s, r->channel, r->nexthop);
		place(s, sm, (uint32_t)i, now_us);
	}
	/* Already final (failures not yet notified after a restart, say): settle. */
	settle(s, sm);
	return 0;
}

static uint32_t slot_alloc(struct sched *s)
{
	if (s->nfree)
		return s->freeslot[--s->nfree];
	s->del = xreallocarray(s->del, s->ndel + 1, sizeof(*s->del));
	s->freeslot = xreallocarray(s->freeslot, s->ndel + 1, sizeof(*s->freeslot));
	memset(&s->del[s->ndel], 0, sizeof(s->del[s->ndel]));
	return (uint32_t)s->ndel++;
}

/* start - a delivery of the recipients at the front of d's FIFO (all of one message). */
static void start(struct sched *s, struct sdest *d, struct sched_delivery *out, int64_t now_us)
{
	uint32_t slot = slot_alloc(s);
	struct sdel *del = &s->del[slot];
	struct smsg *sm = fifo_peek(d)->m;
	unsigned limit = d->ch->rcpt_limit ? d->ch->rcpt_limit : 1;

	if (del->cap < limit) {
		del->cap = limit;
		del->index = xreallocarray(del->index, limit, sizeof(*del->index));
	}
	del->used = true;
	del->gen++;
	del->m = sm;
	del->d = d;
	del->notice = false;
	del->delay = false;
	del->n = 0;
	while (d->qlen && del->n < limit) {
		struct rentry *e = fifo_peek(d);

		if (!entry_valid(e->m, e->idx, e->gen)) {
			unref(fifo_pop(d).m);
			continue;
		}
		if (e->m != sm)
			break;
		del->index[del->n++] = e->idx;
		set_where(s, sm, e->idx, W_RUNNING);
		sm->loc[e->idx].slot = slot;
		unref(fifo_pop(d).m); /* not the last reference: sm is not forgotten */
	}
	sm->inflight++;
	d->ch->active++;
	dest_start(&d->d, now_us);
	*out = (struct sched_delivery){
	    .id = (uint64_t)del->gen << 32 | slot,
	    .qid = sm->m.qid,
	    .channel = d->ch->name,
	    .nexthop = d->nexthop,
	    .m = &sm->m,
	    .index = del->index,
	    .n = del->n,
	};
}

/*
 * start_notice - the next queued notice, if the bounce channel has room;
 * false when there is none.  A notice with nothing left to say (the
 * message changed since it was queued) is dropped on the way.
 */
static bool start_notice(struct sched *s, int64_t now_us, struct sched_delivery *out)
{
	if (s->bounce->paused_until_us > now_us)
		return false;
	while (s->notices.qlen && s->bounce->active < s->bounce->concurrency) {
		struct rentry e = fifo_pop(&s->notices);
		struct smsg *sm = e.m;
		uint32_t slot;
		struct sdel *del;
		bool delay;
		size_t n;

		if (!entry_valid(sm, e.idx, e.gen) || sm->forgotten) {
			unref(sm);
			continue;
		}
		n = notice_collect(s, sm, NULL, &delay);
		if (n == 0) {
			notice_where(sm, W_NONE);
			sm->refs--; /* settle may free sm: no unref after it */
			settle(s, sm);
			continue;
		}
		slot = slot_alloc(s);
		del = &s->del[slot];
		if (del->cap < n) {
			del->cap = n;
			del->index = xreallocarray(del->index, n, sizeof(*del->index));
		}
		del->n = notice_collect(s, sm, del->index, &del->delay);
		del->used = true;
		del->gen++;
		del->m = sm;
		del->d = NULL;
		del->notice = true;
		notice_where(sm, W_RUNNING);
		sm->nloc.slot = slot;
		sm->inflight++;
		s->bounce->active++;
		unref(sm); /* inflight keeps it */
		*out = (struct sched_delivery){
		    .id = (uint64_t)del->gen << 32 | slot,
		    .qid = sm->m.qid,
		    .channel = s->bounce->name,
		    .nexthop = "",
		    .m = &sm->m,
		    .index = del->index,
		    .n = del->n,
		    .notice = true,
		    .delay = del->delay,
		};
		return true;
	}
	return false;
}

/*
 * rate_wait_add / rate_wait_due - a destination held by its rate delay
 * leaves the ring and waits on its channel's list, so neither sched_next
 * nor dest_done visits it before its time; due ones go back in the ring.
 * The list holds only rate-delayed destinations with mail waiting.
 */
static void rate_wait_add(struct sdest *d)
{
	if (d->in_rate_wait)
		return;
	d->in_rate_wait = true;
	d->rate_next = d->ch->rate_wait;
	d->ch->rate_wait = d;
}

static void rate_wait_due(struct schan *ch, int64_t now_us)
{
	struct sdest **pp = &ch->rate_wait;

	while (*pp) {
		struct sdest *d = *pp;

		if (d->d.next_start_us <= now_us || d->d.active) {
			*pp = d->rate_next;
			d->in_rate_wait = false;
			if (d->qlen)
				rr_insert(d);
		} else {
			pp = &d->rate_next;
		}
	}
}

bool sched_next(struct sched *s, int64_t now_us, struct sched_delivery *out)
{
	if (start_notice(s, now_us, out))
		return true;
	for (size_t c = 0; c < s->nch; c++) {
		struct schan *ch = s->ch[c];

		if (ch->paused_until_us && ch->paused_until_us <= now_us)
			ch->paused_until_us = 0; /* over: not a wakeup time any more */
		if (ch->active >= ch->concurrency || ch->paused_until_us)
			continue;
		if (ch->rate_wait)
			rate_wait_due(ch, now_us);
		while (ch->rr) {
			struct sdest *d = ch->rr;

			fifo_prune(d);
			if (d->qlen == 0) {
				rr_remove(d);
			} else if (dest_dead(&d->d, now_us)) {
				rr_remove(d);
				defer_dead(s, d, now_us);
			} else if (!dest_may_start(&d->d, now_us)) {
				rr_remove(d); /* back with dest_done */
				if (dest_rate_wait(&d->d, now_us))
					rate_wait_add(d); /* or when its rate delay ends */
			} else {
				start(s, d, out, now_us);
				if (ch->rr == d)
					ch->rr = d->rr_next; /* take turns */
				heap_prune(s);
				return true;
			}
		}
	}
	heap_prune(s);
	return false;
}

/*
 * notice_done - the bounce transport answered for a notice: every
 * recipient OK (queued) or any PERMFAIL (it cannot be made: given up,
 * logged by the daemon) ends it with a NoticeRecord; anything else is
 * retried with backoff counted from now, not from arrival, so an
 * expired message's notice does not spin.
 */
static int notice_done(struct sched *s, uint32_t slot, const struct sched_result *res, size_t n,
		       int64_t now_us)
{
	struct sdel *del = &s->del[slot];
	struct smsg *sm = del->m;
	bool ok = n > 0, perm = false;

	for (size_t j = 0; j < n; j++) {
		if (res[j].status != ZFARM__STATUS__OK)
			ok = false;
		if (res[j].status == ZFARM__STATUS__PERMFAIL)
			perm = true;
	}
	sm->inflight--;
	s->bounce->active--;
	del->used = false;
	s->freeslot[s->nfree++] = slot;
	if (sm->doomed) {
		notice_where(sm, W_NONE);
	} else if (ok || perm) {
		Zfarm__NoticeRecord nr;
		Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT, *cp = &c;
		size_t k = 0;

		/* Only final recipients are marked; a delay notice leaves the rest open. */
		for (size_t j = 0; j < del->n; j++)
			if (is_final(sm->m.r[del->index[j]].state))
				del->index[k++] = del->index[j];
		msgstate_notified(&sm->m, del->index, k, del->delay, &nr);
		c.body_case = ZFARM__CTL_RECORD__BODY_NOTIFIED;
		c.notified = &nr;
		if (s->ops.record)
			s->ops.record(s->ops.arg, sm->m.qid, &cp, 1);
		if (ok)
			s->notices_sent++;
		else
			s->notices_failed++;
		sm->delay_due = false;
		sm->nattempts = 0;
		notice_where(sm, W_NONE);
	} else if (sm->requeue) {
		notice_where(sm, W_NONE); /* made again after the requeue */
	} else {
		sm->nattempts++;
		notice_where(sm, W_HEAP);
		heap_push(s, (struct hentry){backoff_next(&s->backoff, sm->nattempts, now_us, now_us,
							  sm->seed),
					     sm, NOTICE_IDX, sm->nloc.gen});
		sm->refs++;
	}
	settle(s, sm);
	heap_prune(s);
	return 0;
}

int sched_done(struct sched *s, uint64_t id, const struct sched_result *res, size_t n,
	       bool conn_failed, int64_t now_us)
{
	uint32_t slot = (uint32_t)id, gen = (uint32_t)(id >> 32);
	struct sdel *del;
	struct smsg *sm;
	struct sdest *d;
	size_t k = 0;

	if (slot >= s->ndel || !s->del[slot].used || s->del[slot].gen != gen)
		return -1;
	del = &s->del[slot];
	sm = del->m;
	d = del->d;
	if (del->notice)
		return notice_done(s, slot, res, n, now_us);
	if (sm->doomed) {
		/* Deleted while running: the results go nowhere. */
		for (size_t j = 0; j < del->n; j++)
			if (sm->loc[del->index[j]].where == W_RUNNING)
				set_where(s, sm, del->index[j], W_NONE);
		sm->inflight--;
		d->ch->active--;
		dest_done(&d->d, conn_failed ? DEST_CONN_FAIL : DEST_OK, now_us);
		del->used = false;
		s->freeslot[s->nfree++] = slot;
		if (d->qlen)
			rr_insert(d);
		settle(s, sm);
		heap_prune(s);
		return 0;
	}
	scratch_reserve(s, del->n + 1);
	for (size_t j = 0; j < n; j++) {
		uint32_t i = res[j].index;

		/* Only recipients of this delivery, once each. */
		if (i >= sm->m.n || sm->loc[i].where != W_RUNNING || sm->loc[i].slot != slot)
			continue;
		if (apply_one(s, sm, i, res[j].status, res[j].smtp_code, res[j].enhanced,
			      res[j].text, -1, now_us, k) < 0)
			continue; /* unknown status: as if no result */
		if (res[j].dsn_passed && res[j].status == ZFARM__STATUS__OK)
			msgstate_passed(&sm->m, i, &s->sr[k]);
		set_where(s, sm, i, W_NONE);
		k++;
	}
	for (size_t j = 0; j < del->n; j++) {
		uint32_t i = del->index[j];

		if (sm->loc[i].where != W_RUNNING)
			continue;
		set_where(s, sm, i, W_NONE);
		if (apply_one(s, sm, i, ZFARM__STATUS__TEMPFAIL, 0, NORESULT_ENH, NORESULT_TEXT, -1,
			      now_us, k) == 0)
			k++;
	}
	sm->inflight--;
	d->ch->active--;
	dest_done(&d->d, conn_failed ? DEST_CONN_FAIL : DEST_OK, now_us);
	finish(s, sm, del->index, del->n, k, now_us);
	del->used = false;
	s->freeslot[s->nfree++] = slot;
	if (d->qlen)
		rr_insert(d);
	heap_prune(s);
	return 0;
}

int64_t sched_next_wakeup(const struct sched *s)
{
	int64_t t = s->nheap ? s->heap[0].t : INT64_MAX;

	/* A paused channel with work waiting wakes the daemon when the pause ends. */
	for (size_t c = 0; c < s->nch; c++) {
		if (s->ch[c]->paused_until_us && s->ch[c]->paused_until_us < t &&
		    (s->ch[c]->rr || (s->ch[c] == s->bounce && s->notices.qlen)))
			t = s->ch[c]->paused_until_us;
		/* So does the end of a destination's rate delay. */
		for (const struct sdest *d = s->ch[c]->rate_wait; d; d = d->rate_next)
			if (d->qlen && d->d.next_start_us < t)
				t = d->d.next_start_us;
	}
	return t;
}

void sched_pause_channel(struct sched *s, const char *channel, int64_t until_us)
{
	struct schan *c = chan_get(s, channel);

	if (until_us > c->paused_until_us)
		c->paused_until_us = until_us;
}

void sched_due(struct sched *s, int64_t now_us)
{
	while (s->nheap && s->heap[0].t <= now_us) {
		struct hentry e = heap_pop(s);

		if (entry_valid(e.m, e.idx, e.gen)) {
			if (e.idx == NOTICE_IDX) {
				notice_where(e.m, W_READY);
				fifo_push(&s->notices, (struct rentry){e.m, NOTICE_IDX, e.m->nloc.gen});
				e.m->refs++;
			} else {
				to_ready(s, e.m, e.idx);
			}
		}
		unref(e.m);
	}
	heap_prune(s);
}

/* notice_due - a notice waiting for its retry goes now. */
static void notice_due(struct sched *s, struct smsg *sm)
{
	if (sm->nloc.where != W_HEAP)
		return;
	notice_where(sm, W_READY);
	fifo_push(&s->notices, (struct rentry){sm, NOTICE_IDX, sm->nloc.gen});
	sm->refs++;
}

/*
 * sched_flush - the recipients' next_attempt_us in the msgstate are left
 * as they were (nothing durable changes); they are simply made ready.
 * With a qid, the dead destinations of its flushed recipients are revived
 * too, or the flush would only defer them again.
 */
size_t sched_flush(struct sched *s, const char *qid, int64_t now_us)
{
	size_t n = 0;

	(void)now_us;
	if (qid) {
		struct smsg *sm = msg_find(s, qid);

		if (!sm)
			return 0;
		for (uint32_t i = 0; i < sm->m.n; i++) {
			if (sm->loc[i].where != W_HEAP)
				continue;
			if (sm->loc[i].d && sm->loc[i].d->d.dead_until_us)
				dest_revive(&sm->loc[i].d->d);
			to_ready(s, sm, i);
			n++;
		}
		notice_due(s, sm);
		heap_prune(s);
		return n;
	}
	n = s->n_heap;
	sched_due(s, INT64_MAX);
	for (size_t b = 0; b < s->dests.nb; b++)
		for (struct hnode *e = s->dests.b[b]; e; e = e->next) {
			struct sdest *d = (struct sdest *)e;

			if (d->d.dead_until_us)
				dest_revive(&d->d);
		}
	return n;
}

/*
 * sched_flush_dest - one scan of the heap (a control request, not the
 * delivery path): the deferred recipients of matching destinations are
 * made ready, those destinations revived.
 */
size_t sched_flush_dest(struct sched *s, const char *channel, const char *nexthop, int64_t now_us)
{
	size_t n = 0;

	(void)now_us;
	for (size_t b = 0; b < s->dests.nb; b++)
		for (struct hnode *e = s->dests.b[b]; e; e = e->next) {
			struct sdest *d = (struct sdest *)e;

			if (strcmp(d->nexthop, nexthop) == 0 &&
			    (!channel || strcmp(d->ch->name, channel) == 0) && d->d.dead_until_us)
				dest_revive(&d->d);
		}
	for (size_t h = 0; h < s->nheap; h++) {
		struct hentry *e = &s->heap[h];
		struct sdest *d;

		if (e->idx == NOTICE_IDX || !entry_valid(e->m, e->idx, e->gen))
			continue;
		d = e->m->loc[e->idx].d;
		if (!d || strcmp(d->nexthop, nexthop) != 0 ||
		    (channel && strcmp(d->ch->name, channel) != 0))
			continue;
		/* The heap entry goes stale; to_ready does not reorder the heap. */
		to_ready(s, e->m, e->idx);
		n++;
	}
	heap_prune(s);
	return n;
}

int sched_hold(struct sched *s, const char *qid)
{
	struct smsg *sm = msg_find(s, qid);

	if (!sm || sm->doomed)
		return -1;
	sm->m.held = true;
	for (uint32_t i = 0; i < sm->m.n; i++) {
		uint8_t w = sm->loc[i].where;

		if (w == W_READY || w == W_HEAP || w == W_PARKED)
			set_where(s, sm, i, W_HELD);
	}
	if (sm->nloc.where == W_READY || sm->nloc.where == W_HEAP)
		notice_where(sm, W_NONE); /* queued again at release */
	heap_prune(s);
	return 0;
}

int sched_release(struct sched *s, const char *qid, int64_t now_us)
{
	struct smsg *sm = msg_find(s, qid);

	if (!sm || sm->doomed)
		return -1;
	sm->m.held = false;
	for (uint32_t i = 0; i < sm->m.n; i++)
		if (sm->loc[i].where == W_HELD)
			place(s, sm, i, now_us);
	settle(s, sm);
	return 0;
}

int sched_delete(struct sched *s, const char *qid)
{
	struct smsg *sm = msg_find(s, qid);

	if (!sm || sm->doomed)
		return -1;
	sm->doomed = true;
	for (uint32_t i = 0; i < sm->m.n; i++)
		if (sm->loc[i].where != W_RUNNING && sm->loc[i].where != W_NONE)
			set_where(s, sm, i, W_NONE);
	if (sm->nloc.where != W_RUNNING)
		notice_where(sm, W_NONE);
	settle(s, sm);
	heap_prune(s);
	return 0;
}

int sched_requeue(struct sched *s, const char *qid)
{
	struct smsg *sm = msg_find(s, qid);

	if (!sm || sm->doomed)
		return -1;
	if (sm->requeue)
		return 0;
	sm->requeue = true;
	for (uint32_t i = 0; i < sm->m.n; i++)
		if (sm->loc[i].where != W_RUNNING && sm->loc[i].where != W_NONE)
			set_where(s, sm, i, W_NONE);
	if (sm->nloc.where != W_RUNNING)
		notice_where(sm, W_NONE);
	settle(s, sm);
	heap_prune(s);
	return 0;
}

int sched_bounce(struct sched *s, const char *qid, int64_t now_us)
{
	struct smsg *sm = msg_find(s, qid);
	uint32_t *idx;
	size_t n = 0, k = 0;

	if (!sm || sm->doomed)
		return -1;
	sm->give_up = true;
	sm->m.held = false; /* a held message is returned too */
	scratch_reserve(s, sm->m.n + 1);
	idx = xcalloc(sm->m.n ? sm->m.n : 1, sizeof(*idx));
	for (uint32_t i = 0; i < sm->m.n; i++) {
		uint8_t w = sm->loc[i].where;

		if (w == W_RUNNING || is_final(sm->m.r[i].state))
			continue; /* running ones fail when they come back deferred */
		if (w != W_NONE)
			set_where(s, sm, i, W_NONE);
		idx[n++] = i;
		if (apply_one(s, sm, i, ZFARM__STATUS__TEMPFAIL, 0, "", "", -1, now_us, k) == 0)
			k++;
	}
	finish(s, sm, idx, n, k, now_us);
	free(idx);
	heap_prune(s);
	return 0;
}

void sched_counts(const struct sched *s, struct sched_counts *c)
{
	*c = (struct sched_counts){
	    .messages = s->msgs.n,
	    .ready = s->n_ready,
	    .deferred = s->n_heap + s->n_held + s->n_parked,
	    .running = s->n_running,
	    .received = s->received,
	    .delivered = s->delivered,
	    .failed = s->failed,
	    .expired = s->expired,
	    .deferrals = s->deferrals,
	    .notices = s->notices_sent,
	    .notices_failed = s->notices_failed,
	};
}

size_t sched_channels(const struct sched *s)
{
	return s->nch;
}

const char *sched_channel_counts(const struct sched *s, size_t i, struct sched_chan_counts *c)
{
	if (i >= s->nch)
		return NULL;
	*c = s->ch[i]->n;
	return s->ch[i]->name;
}

void sched_foreach(const struct sched *s, void (*fn)(void *arg, const struct msgstate *m),
		   void *arg)
{
	for (size_t b = 0; b < s->msgs.nb; b++)
		for (struct hnode *e = s->msgs.b[b]; e; e = e->next)
			fn(arg, &((struct smsg *)e)->m);
}

const struct msgstate *sched_find(const struct sched *s, const char *qid)
{
	struct smsg *sm = msg_find(s, qid);

	return sm && !sm->doomed ? &sm->m : NULL;
}

const char *sched_rcpt_status(const struct sched *s, const struct msgstate *m, uint32_t i)
{
	const struct smsg *sm = (const struct smsg *)((const char *)m - offsetof(struct smsg, m));

	(void)s;
	if (i >= m->n)
		return "unknown";
	if (sm->loc[i].where == W_RUNNING)
		return "active";
	return msgstate_state_name(m->r[i].state);
}

bool sched_dest_info(const struct sched *s, const char *channel, const char *nexthop,
		     struct sched_dest_info *out)
{
	size_t cl = strlen(channel), nl = strlen(nexthop);
	char *key = xmalloc(cl + nl + 2);
	const struct sdest *d;

	memcpy(key, channel, cl + 1);
	memcpy(key + cl + 1, nexthop, nl + 1);
	d = (const struct sdest *)ht_find(&s->dests, key, cl + nl + 1);
	free(key);
	if (!d)
		return false;
	out->window = d->d.window;
	out->active = d->d.active;
	out->dead_until_us = d->d.dead_until_us;
	return true;
}
