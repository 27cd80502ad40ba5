/*
 * sched - the scheduler's queue state engine: which recipients go out
 * next, in which batches, and what happens with each result.
 *
 * Pure: no I/O, no logging, no clock (times are passed in, so the tests
 * use a fake clock).  schedd.c (the daemon) feeds it messages (from the
 * router and the reinjector) and delivery results, asks it for the next
 * deliveries whenever a transport connection is free, and arms one timer
 * for sched_next_wakeup(); everything durable or visible goes out through
 * the callbacks in struct sched_ops.
 *
 * Model:
 *   - A message (struct msgstate, owned by sched once added) has
 *     recipients; each PENDING or due DEFERRED recipient waits in the ready
 *     list of its destination (channel, nexthop); a DEFERRED one not yet
 *     due waits in one min-heap ordered by next_attempt_us (no polling: the
 *     daemon sleeps until sched_next_wakeup()).
 *   - A destination has a struct dest window (dest.h): initial
 *     destination_concurrency from params, limit from the channel's
 *     destination_concurrency; a dead destination is skipped and its ready
 *     recipients are deferred until it may live again without a delivery
 *     attempt (a ResultRecord TEMPFAIL "4.4.1 destination not responding"
 *     each).
 *   - A channel allows `concurrency` deliveries at once over all its
 *     destinations; its destinations take turns (round robin).
 *   - sched_next() builds one delivery: the next destination of the first
 *     channel (in channel order) that may start one, the first ready
 *     recipient there, and the following ready recipients of the same
 *     message at the same destination, up to the channel's
 *     recipient_limit.  Recipients of channel "error" never reach
 *     sched_next: they are final (or, for 4.x routing errors, retried by
 *     re-routing — not handled here yet: they stay DEFERRED in the heap).
 *   - sched_done() applies one delivery's per-recipient results
 *     (msgstate_apply), hands the ResultRecords to ops->record (the daemon
 *     appends them durably), reschedules TEMPFAIL recipients with
 *     backoff_next() — or fails them with 4.4.7 "delivery time expired"
 *     when backoff_expired() — and feeds the outcome to the destination
 *     window.
 *   - Notices (RFC 3464, made by the bounce transport): when a message is
 *     quiet (no recipient ready or running) and has final recipients whose
 *     NOTIFY wants a notice (msgstate_wants_notice), or a delay notice is
 *     due (backoff_delay_warn, once per message), one notice delivery on
 *     channel "bounce" (sched_delivery.notice) covers them all.  Its OK
 *     appends a NoticeRecord (never twice, also after a restart); a
 *     deferral retries it with backoff from now; a refusal gives it up.
 *     The null sender gets none; with double_bounce its failures are
 *     reported (the daemon sends them to the double-bounce recipient),
 *     never a double bounce's.  ops->final comes when every recipient is
 *     final and notified: the daemon removes the message.
 *   - Held messages (msgstate.held) keep their recipients out of the ready
 *     lists until sched_release().
 *   - Requeue (sched_requeue): the message's recipients leave the ready
 *     lists and the heap at once, its queued notice is dropped; running
 *     deliveries (and a running notice) end normally, their results
 *     recorded; when nothing runs any more, ops->requeue hands the message
 *     to the daemon (which records the requeue and sends the message to
 *     the router) and sched forgets it.  If by then every recipient is
 *     final, there is nothing to route again: the message goes on as
 *     usual (notice, ops->final).
 *   - Active limit: at most params.active_limit messages held at once;
 *     sched_room() says whether the daemon may add another now (the rest
 *     wait on disk, listed by the daemon, and are added later: no loss).
 *
 * Costs: adding a message is O(recipients log n); sched_next and sched_done
 * are O(batch + log n); nothing scans all messages except sched_flush and
 * the counters walk for queue control.
 */
#ifndef ZFARM_SCHED_H
#define ZFARM_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/qfile.pb-c.h"
#include "scheduler/backoff.h"
#include "scheduler/msgstate.h"

struct sched;

/* One channel's limits (from common/channel.h). */
struct sched_channel {
	const char *name;
	unsigned concurrency;		  /* deliveries at once on the channel */
	unsigned destination_concurrency; /* a destination's window limit */
	unsigned recipient_limit;	  /* recipients per delivery */
	int64_t rate_delay_us;		  /* between deliveries per destination; 0: none */
};

struct sched_params {
	struct backoff_policy backoff;
	unsigned initial_destination_concurrency; /* 0: 5 */
	unsigned dead_after;			   /* consecutive connection failures; 0: 1 */
	int64_t dead_retry_us;			   /* how long a dead destination rests */
	size_t active_limit;			   /* messages held; 0: 100,000 */
	bool double_bounce;			   /* report the null sender's failures
						      (to the double-bounce recipient) */
	const struct sched_channel *channels;	   /* in order; unknown channels get */
	size_t n_channels;			   /* concurrency 20, window 5, 50 rcpts */
};

struct sched_ops {
	/* Records to append durably to qid's control record (results, notices). */
	void (*record)(void *arg, const char *qid, Zfarm__CtlRecord *const *recs, size_t n);
	/*
	 * Every recipient of m is final (delivered or failed) and every notice
	 * about them is queued: remove the message.  m is freed after.
	 */
	void (*final)(void *arg, const struct msgstate *m);
	/* m was deleted (sched_delete) and nothing runs for it any more: remove it. */
	void (*deleted)(void *arg, const struct msgstate *m);
	/*
	 * m was requeued (sched_requeue), nothing runs for it any more and
	 * some recipient is not final (those are the ones to route again):
	 * sched forgets m after the call.
	 */
	void (*requeue)(void *arg, const struct msgstate *m);
	void *arg;
};

/* One delivery handed out by sched_next(); strings point into sched's state. */
struct sched_delivery {
	uint64_t id; /* for sched_done */
	const char *qid;
	const char *channel;
	const char *nexthop;
	const struct msgstate *m;
	uint32_t *index; /* route indexes of the recipients, n of them */
	size_t n;
	/*
	 * A delivery status notice about the recipients (channel "bounce",
	 * nexthop ""): each one's state says what it reports (failed,
	 * delivered, or for a delay notice deferred/pending).
	 */
	bool notice;
	bool delay; /* the notice includes the delay warning */
};

/* A recipient's result in a DeliveryReply. */
struct sched_result {
	uint32_t index;
	uint32_t status; /* queue.proto Status: OK, TEMPFAIL, PERMFAIL */
	uint32_t smtp_code;
	const char *enhanced;
	const char *text;
	bool dsn_passed; /* OK: the next hop notifies (no success notice from us) */
};

struct sched *sched_new(const struct sched_params *p, const struct sched_ops *ops);
void sched_free(struct sched **s);

/* sched_room - may another message be added now (active limit)? */
bool sched_room(const struct sched *s);
/*
 * sched_add - take m (ownership passes; m is moved, *m is cleared).  A
 * message already present (same queue ID) is refused: -1, m untouched.
 * A message that is already final calls ops->final at once.
 */
int sched_add(struct sched *s, struct msgstate *m, int64_t now_us);
bool sched_has(const struct sched *s, const char *qid);

/*
 * sched_next - the next delivery to start now, or false.  The delivery is
 * running until sched_done(); d's arrays stay valid until then.
 */
bool sched_next(struct sched *s, int64_t now_us, struct sched_delivery *d);
/*
 * sched_done - delivery id ended: results for some or all of its
 * recipients (recipients without a result count as TEMPFAIL "4.4.2
 * delivery ended without a result"); conn_failed: the destination could
 * not be reached (window shrink / dead marking).  -1 for an unknown id.
 */
int sched_done(struct sched *s, uint64_t id, const struct sched_result *r, size_t n,
	       bool conn_failed, int64_t now_us);

/* sched_next_wakeup - the earliest time something deferred is due; INT64_MAX if none. */
int64_t sched_next_wakeup(const struct sched *s);
/*
 * sched_pause_channel - start nothing on the channel before until_us (its
 * transport broke the protocol or timed out: transport_retry_time).  The
 * wakeup time includes the end of a pause while work waits.
 */
void sched_pause_channel(struct sched *s, const char *channel, int64_t until_us);
/* sched_due - move every deferred recipient due at now_us to its ready list. */
void sched_due(struct sched *s, int64_t now_us);

/*
 * sched_flush - everything deferred (or qid's recipients) is due now; dead
 * marks cleared.  Returns the recipients made due.
 */
size_t sched_flush(struct sched *s, const char *qid, int64_t now_us);
/* sched_flush_dest - the same for one nexthop (of one channel, or of any if NULL). */
size_t sched_flush_dest(struct sched *s, const char *channel, const char *nexthop, int64_t now_us);
/*
 * sched_hold / sched_release - keep a message out of the ready lists (and
 * its notice back), or let it back.  The daemon records the held flag.
 */
int sched_hold(struct sched *s, const char *qid);
int sched_release(struct sched *s, const char *qid, int64_t now_us);
/*
 * sched_delete - forget the message without notices: ops->deleted now, or
 * when its running deliveries end (their results are dropped).  -1 unknown.
 */
int sched_delete(struct sched *s, const char *qid);
/*
 * sched_requeue - route the message again: ops->requeue now, or when its
 * running deliveries end (see the model above).  0 (also when a requeue
 * is already waiting), -1 unknown or deleted.
 */
int sched_requeue(struct sched *s, const char *qid);
/*
 * sched_bounce - return the message to its sender now: every recipient not
 * final fails with 5.0.0 (running ones when they come back deferred), then
 * the usual notice.  -1 unknown.
 */
int sched_bounce(struct sched *s, const char *qid, int64_t now_us);

/* Counters for queue control and tests. */
struct sched_counts {
	size_t messages, ready, deferred, running; /* recipients in each state now */
	uint64_t received, delivered, failed, expired, deferrals, notices, notices_failed;
};
void sched_counts(const struct sched *s, struct sched_counts *c);
/* Per channel (recipient results). */
struct sched_chan_counts {
	uint64_t delivered, failed, expired, deferrals;
};
size_t sched_channels(const struct sched *s);
/* sched_channel_counts - channel i's name and counters; NULL past the end. */
const char *sched_channel_counts(const struct sched *s, size_t i, struct sched_chan_counts *c);

/* ---- queue control: reading the state (O(messages), never on the delivery path) ---- */
void sched_foreach(const struct sched *s, void (*fn)(void *arg, const struct msgstate *m),
		   void *arg);
/* sched_find - a known message (not deleted), or NULL. */
const struct msgstate *sched_find(const struct sched *s, const char *qid);
/* sched_rcpt_status - "pending", "active", "deferred", "delivered" or "failed". */
const char *sched_rcpt_status(const struct sched *s, const struct msgstate *m, uint32_t i);
struct sched_dest_info {
	unsigned window, active;
	int64_t dead_until_us; /* 0: alive */
};
bool sched_dest_info(const struct sched *s, const char *channel, const char *nexthop,
		     struct sched_dest_info *out);

#endif
