/*
 * qctl - the read side of queue control: answers LIST, SHOW, SUMMARY and
 * COUNTERS requests (proto/qctl.proto) from mailq and the queue tool with
 * the scheduler's state.
 *
 * Called by schedd.c for requests on its control sockets; the changing
 * operations (flush, hold, release, delete, bounce) are the daemon's own,
 * since they write records and start deliveries.  Never on the delivery
 * path: a LIST walks every message held (O(messages log messages)).
 *
 * Messages accepted but not yet loaded (past the active limit: the
 * daemon's backlog) are listed too, read from the queue store for the
 * page being answered only.
 *
 * Replies are bounded: at most `limit` entries (default 1000) and about
 * QCTL_REPLY_BUDGET bytes, with `truncated` set when more follow (the
 * tools page with `after`); at most QCTL_RCPT_MAX recipients per entry.
 */
#ifndef ZFARM_QCTL_H
#define ZFARM_QCTL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/qid.h"
#include "proto/qctl.pb-c.h"

struct sched;
struct qstore;

#define QCTL_REPLY_BUDGET (768u * 1024u)
#define QCTL_RCPT_MAX	  1000u
#define QCTL_LIST_DEFAULT 1000u

/* What qctl may read: the state, the store, and the backlog (a ring of IDs; "" = gone). */
struct qctl_view {
	const struct sched *s;
	struct qstore *qs;
	const char (*backlog)[QID_SIZE];
	size_t backlog_head, backlog_n, backlog_cap;
};

struct qctl_reply;

/*
 * qctl_answer - fill a reply for a read request (LIST, SHOW, SUMMARY,
 * COUNTERS).  Returns NULL for any other op.  The reply points into the
 * scheduler's state: pack it before the state changes, then free it.
 */
struct qctl_reply *qctl_answer(const struct qctl_view *v, const Zfarm__QueueControlRequest *rq);
Zfarm__QueueControlReply *qctl_reply_msg(struct qctl_reply *r);
void qctl_reply_free(struct qctl_reply **r);

#endif
