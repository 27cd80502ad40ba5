/*
 * committer - makes received messages durable (qstore_commit) off the
 * event loop, so one smtpserver child keeps serving its other sessions
 * while a message's fsyncs run.  A message the store can group commit
 * (qstore_commit_begin: on ext4, a slot overwritten inside what its
 * file's earlier fdatasync made durable, i.e. nearly every message once
 * the slots are warm) goes to one group worker, which takes everything
 * begun while it was busy and commits it with one device flush
 * (qstore_commit_group): fewer flushes, thread wake-ups and hand-backs
 * per message the more arrive together.  Other messages (a new slot
 * file, the tmp/ way) go to the threads, each with its own fdatasync.
 *
 * Called by the smtpserver session at the end of DATA/BDAT LAST; the done
 * callback runs later in the event loop thread, in the order the commits
 * finished, never inside committer_submit().  With 0 threads the commit
 * runs inside committer_submit() (for backends that are not thread-safe,
 * like "ram") but done still comes from the loop.
 *
 * The committer owns a submitted writer until done; done always comes,
 * also when the session that submitted has gone (the session keeps itself
 * alive until then).  committer_free() finishes every queued commit and
 * runs no more callbacks.
 */
#ifndef ZFARM_COMMITTER_H
#define ZFARM_COMMITTER_H

#include <stddef.h>

#include "common/qid.h"

struct event_base;
struct qstore_writer;
struct committer;

/*
 * The result: rc 0 and the queue ID, or rc -1 with errnum (ENOSPC, EIO,
 * ...) and a reason.  Strings are valid during the call only.
 */
typedef void committer_done_fn(void *arg, int rc, const char *qid, int errnum, const char *reason);

/* committer_new - start `threads` worker threads and the group worker (0: inline); NULL + reason. */
struct committer *committer_new(struct event_base *base, unsigned threads, char *err,
				size_t errlen);
/* committer_submit - commit w (ownership passes), then call done(arg, ...). */
void committer_submit(struct committer *c, struct qstore_writer *w, committer_done_fn *done,
		      void *arg);
/* committer_pending - commits submitted whose done has not run yet. */
unsigned committer_pending(const struct committer *c);
/* committer_free - finish queued commits, stop the threads; NULL ok. */
void committer_free(struct committer **c);

#endif
