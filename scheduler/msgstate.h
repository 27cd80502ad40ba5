/*
 * msgstate - the delivery state of one queued message, rebuilt from its
 * envelope and control records, and the records that change it.
 *
 * Called by the scheduler when it takes a message in (from the router or
 * the reinjector) and after every delivery reply.  Pure: no I/O, no
 * logging; the scheduler reads records with qstore_reader_ctl_load() and
 * appends the ones msgstate_result() builds with qstore_ctl_append().
 *
 * Loading (msgstate_load):
 *   - The routing set is the `total` RouteRecords right before the first
 *     routed marker (proto/qfile.proto); records before them are a torn
 *     earlier attempt and ignored.  No routed marker: not routed
 *     (MSGSTATE_UNROUTED, for the reinjector to send to the router).
 *   - A RequeueRecord after a routing set supersedes the routes it lists
 *     (RCPT_SUPERSEDED; a listed route already final stays final) and
 *     opens the next routing set: the `total` RouteRecords right before
 *     the first routed marker after it, numbered after the routes of the
 *     sets before (r[k].index == k message-wide).  Until that marker the
 *     message is MSGSTATE_UNROUTED again, with requeued set: the router
 *     has to route it.  A RequeueRecord with no set since the last one
 *     (or before the first) supersedes nothing; later markers of a set
 *     already closed (a duplicate routing) are ignored, as before.
 *   - A RouteRecord with channel "error" is a permanent failure from the
 *     start (its text is the reason).
 *   - ResultRecords after the marker apply in order by route index: OK →
 *     delivered, PERMFAIL → failed (final), TEMPFAIL → deferred until
 *     next_attempt_us (attempts counted).  A result for an index out of
 *     range or for a recipient already final is ignored (a duplicate after
 *     a crash); results never move a final recipient back.
 *   - held (last one wins) and delay_warned records set the flags; a
 *     RequeueRecord releases (held = false), as Postfix's postsuper -r
 *     takes a message out of the hold queue.
 *   - A NoticeRecord marks its recipients notified (a delivery status
 *     notice about their final state was queued) and, with delay, the
 *     message delay_warned.  A ResultRecord OK with dsn_passed marks the
 *     recipient notified too: the next hop sends any success notice.
 * Every string in the state is a copy; the records may be freed after.
 */
#ifndef ZFARM_MSGSTATE_H
#define ZFARM_MSGSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/qfile.pb-c.h"

enum rcpt_state {
	RCPT_PENDING,	 /* never tried */
	RCPT_DEFERRED,	 /* tried, try again at next_attempt_us */
	RCPT_DELIVERED,	 /* final */
	RCPT_FAILED,	 /* final: bounce unless NOTIFY says otherwise */
	RCPT_SUPERSEDED, /* requeued: routed again; never delivered, never reported */
};

struct rcpt {
	uint32_t index;	     /* route index */
	char *address;	     /* final address */
	char *orig_address;  /* envelope recipient it came from */
	char *orcpt;	     /* "rfc822;..." or "" */
	char *channel;
	char *nexthop;
	char *user;
	uint32_t notify;     /* Notify bits (queue.proto), 0 = default */
	enum rcpt_state state;
	unsigned attempts;
	int64_t next_attempt_us; /* DEFERRED: not before */
	bool notified;		 /* a notice about its final state was queued */
	int64_t last_attempt_us; /* time of the last result, 0 if none */
	uint32_t smtp_code;	 /* last result */
	char *enhanced;		 /* last result, e.g. "4.4.1"; "" if none */
	char *text;		 /* last result or the routing error */
};

enum msgstate_load_result {
	MSGSTATE_OK,
	MSGSTATE_UNROUTED, /* no complete routing set yet */
	MSGSTATE_BAD,	   /* records contradict each other: quarantine */
};

struct msgstate {
	char qid[17];
	char *sender; /* "" for the null sender */
	char *envid;
	char *ret; /* "FULL", "HDRS" or "" */
	int64_t arrival_us;
	uint64_t size;
	bool held;
	bool delay_warned;
	bool double_bounce; /* a notice about a notice: never answered by one */
	bool requeued;	    /* a RequeueRecord was seen (UNROUTED: routes due) */
	struct rcpt *r; /* r[k] is the recipient with route index k */
	size_t n;
};

/*
 * msgstate_load - fill *m from env and the records (any order of results
 * as described above).  MSGSTATE_BAD with a reason when the routing set is
 * inconsistent (total does not match, indexes not 0..total-1).
 */
enum msgstate_load_result msgstate_load(struct msgstate *m, const Zfarm__Envelope *env,
					Zfarm__CtlRecord *const *recs, size_t n, char *err,
					size_t errlen);
void msgstate_release(struct msgstate *m);

/* msgstate_final - every recipient delivered, failed or superseded. */
bool msgstate_final(const struct msgstate *m);
/* msgstate_is_final - s is delivered, failed or superseded: nothing more happens to it. */
bool msgstate_is_final(enum rcpt_state s);
/* msgstate_state_name - "pending", "deferred", "delivered", "failed" or "superseded". */
const char *msgstate_state_name(enum rcpt_state s);
/* msgstate_count - recipients in state s. */
size_t msgstate_count(const struct msgstate *m, enum rcpt_state s);

/*
 * msgstate_wants_notice - recipient r is final and its sender should hear
 * of it (RFC 3461 NOTIFY: failures unless NEVER or a NOTIFY without
 * FAILURE; deliveries only with SUCCESS), and no notice covered it yet.
 * Who the notice goes to (the sender, or nobody for the null sender) is
 * the caller's policy.
 */
bool msgstate_wants_notice(const struct rcpt *r);
/* msgstate_wants_delay - r is not final and NOTIFY allows a delay notice. */
bool msgstate_wants_delay(const struct rcpt *r);

/*
 * msgstate_apply - apply one delivery result to recipient index (as a
 * loaded ResultRecord would) and fill *rec (a ResultRecord the caller
 * appends durably before acting on it; its strings point into m).
 * status OK/TEMPFAIL/PERMFAIL (queue.proto Status); next_attempt_us only
 * for TEMPFAIL.  Returns 0, or -1 if index is unknown or already final
 * (nothing changed, *rec untouched).
 */
int msgstate_apply(struct msgstate *m, uint32_t index, uint32_t status, uint32_t smtp_code,
		   const char *enhanced, const char *text, int64_t now_us, int64_t next_attempt_us,
		   Zfarm__ResultRecord *rec);
/* msgstate_passed - r's OK result said dsn_passed: no success notice from us. */
void msgstate_passed(struct msgstate *m, uint32_t index, Zfarm__ResultRecord *rec);
/*
 * msgstate_notified - a notice covering these recipients (final ones; the
 * delay notice also covers deferred ones, which stay un-notified) was
 * queued; fill *rec (its index array is the caller's, n entries).
 */
void msgstate_notified(struct msgstate *m, const uint32_t *index, size_t n, bool delay,
		       Zfarm__NoticeRecord *rec);

#endif
