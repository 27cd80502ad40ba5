/*
 * workq - blocking work off the event loop: worker threads run items, and
 * each item's done callback runs later in the event loop thread.
 *
 * Items go from the loop to the workers through a list under a mutex and
 * a condition variable, and back through a second list and an eventfd
 * that wakes the loop; workers never touch libevent.  done runs in the
 * order items finished, never inside workq_submit().  With 0 threads an
 * item runs inside workq_submit() (for work that must stay in the loop's
 * thread) but done still comes from the loop.
 *
 * Callers embed struct workq_item in their job (any position; use
 * container_of-style casts) and own the job: the queue only links it.
 * Used by smtpserver's committer (qstore commits: many threads, and a
 * batch worker for group commits) and its password-file AUTH backend
 * (crypt(3), one thread).  Errors of
 * workq_new are returned with a reason; a failing eventfd write aborts
 * (it cannot fail while the loop reads the counter).
 */
#ifndef ZFARM_WORKQ_H
#define ZFARM_WORKQ_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct workq;

struct workq_item {
	struct workq_item *next;
};

/* run (a worker thread), done (the loop thread), drop (workq_free). */
typedef void workq_fn(struct workq_item *it, void *ctx);

/* workq_new - threads workers calling run, done in base's loop; NULL + reason. */
struct workq *workq_new(struct event_base *base, unsigned threads, workq_fn *run, workq_fn *done,
			void *ctx, char *err, size_t errlen);
/*
 * workq_new_batch - one worker that takes everything queued when it gets
 * to work and calls run_batch(first, ctx) once for all of it: the items
 * linked by next in the order submitted (run_batch must not relink them);
 * then done for each.  For work that shares a cost between items (the
 * committer's device flush).  NULL + reason.
 */
struct workq *workq_new_batch(struct event_base *base, workq_fn *run_batch, workq_fn *done,
			      void *ctx, char *err, size_t errlen);
/* workq_submit - queue it (ownership stays with the caller until done). */
void workq_submit(struct workq *q, struct workq_item *it);
/*
 * workq_each - fn on every item not yet done (queued, running, finished),
 * under the queue's lock, so a caller can mark items a running worker
 * or the done callback will look at (a cancelled session).
 */
void workq_each(struct workq *q, workq_fn *fn, void *arg);
/*
 * workq_free - stop the workers: with finish, queued items are run
 * first; then every item whose done has not run (queued, finished) goes
 * to drop (may be NULL).  No done callback runs.  NULL ok.
 */
void workq_free(struct workq **q, bool finish, workq_fn *drop);

#endif
