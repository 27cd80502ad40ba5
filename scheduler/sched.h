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
 *     when backoff_expired() — feeds the outcome to the destination window,
 *     calls ops->delay once per message when a delay notice is due
 *     (backoff_delay_warn, NOTIFY allowing it is the daemon's business; the
 *     delay_warned record is part of the records), and calls ops->final
 *     when every recipient of the message is final (the daemon bounces
 *     what failed and removes the message); the message is then forgotten.
 *   - Held messages (msgstate.held) keep their recipients out of the ready
 *     lists until sched_release().
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
};

struct sched_params {
	struct backoff_policy backoff;
	unsigned initial_destination_concurrency; /* 0: 5 */
	unsigned dead_after;			   /* consecutive connection failures; 0: 1 */
	int64_t dead_retry_us;			   /* how long a dead destination rests */
	size_t active_limit;			   /* messages held; 0: 100,000 */
	const struct sched_channel *channels;	   /* in order; unknown channels get */
	size_t n_channels;			   /* concurrency 20, window 5, 50 rcpts */
};

struct sched_ops {
	/* Records to append durably to qid's control record (results, delay_warned). */
	void (*record)(void *arg, const char *qid, Zfarm__CtlRecord *const *recs, size_t n);
	/* Every recipient of m is final (delivered or failed); m is freed after. */
	void (*final)(void *arg, const struct msgstate *m);
	/* A delay notice for m is due (once per message). */
	void (*delay)(void *arg, const struct msgstate *m);
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
};

/* A recipient's result in a DeliveryReply. */
struct sched_result {
	uint32_t index;
	uint32_t status; /* queue.proto Status: OK, TEMPFAIL, PERMFAIL */
	uint32_t smtp_code;
	const char *enhanced;
	const char *text;
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
/* sched_due - move every deferred recipient due at now_us to its ready list. */
void sched_due(struct sched *s, int64_t now_us);

/* sched_flush - everything deferred (or qid's recipients) is due now; dead marks cleared. */
void sched_flush(struct sched *s, const char *qid, int64_t now_us);
/* sched_hold / sched_release - keep a message out of the ready lists, or let it back. */
int sched_hold(struct sched *s, const char *qid);
int sched_release(struct sched *s, const char *qid, int64_t now_us);

/* Counters for queue control and tests. */
struct sched_counts {
	size_t messages, ready, deferred, running; /* recipients in each state now */
	uint64_t delivered, failed, expired, deferrals;
};
void sched_counts(const struct sched *s, struct sched_counts *c);

#endif
