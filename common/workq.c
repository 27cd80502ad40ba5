/* workq - worker threads with done callbacks in the event loop; see workq.h. */
#include "common/workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/xalloc.h"

struct itemq {
	struct workq_item *head, *tail;
};

struct workq {
	workq_fn *run, *done;
	void *ctx;
	unsigned nthreads;
	pthread_t *threads;
	struct workq_item **running; /* per thread, under lock */
	bool batch;		     /* one worker runs all queued items at once */
	struct itemq batch_running;  /* its batch, under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct itemq todo, finished; /* under lock */
	bool stopping, finish;	     /* under lock */
	int efd;
	struct event *ev;
};

struct worker_arg {
	struct workq *q;
	unsigned index;
};

static void itemq_push(struct itemq *l, struct workq_item *it)
{
	it->next = NULL;
	if (l->tail)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
}

static struct workq_item *itemq_pop(struct itemq *l)
{
	struct workq_item *it = l->head;

	if (it) {
		l->head = it->next;
		if (!l->head)
			l->tail = NULL;
	}
	return it;
}

/*
 * workq_finished - under the lock: queue it for done; true if the loop
 * must be woken (the list was empty: whoever made it non-empty wakes it).
 */
static bool workq_finished(struct workq *q, struct workq_item *it)
{
	bool wake = q->finished.head == NULL;

	itemq_push(&q->finished, it);
	return wake;
}

/* workq_wake - outside the lock, so the woken loop does not wait for it. */
static void workq_wake(struct workq *q)
{
	uint64_t one = 1;

	if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		abort();
}

/*
 * workq_run_batch - under q's lock: run everything queued as one batch
 * (the lock let go meanwhile) and move it to finished; false if nothing
 * was queued.
 */
static bool workq_run_batch(struct workq *q)
{
	struct itemq l = q->todo;
	bool wake;

	if (!l.head)
		return false;
	q->todo.head = q->todo.tail = NULL;
	q->batch_running = l;
	pthread_mutex_unlock(&q->lock);
	q->run(l.head, q->ctx);
	pthread_mutex_lock(&q->lock);
	q->batch_running.head = q->batch_running.tail = NULL;
	wake = q->finished.head == NULL;
	if (q->finished.tail)
		q->finished.tail->next = l.head;
	else
		q->finished.head = l.head;
	q->finished.tail = l.tail;
	if (wake) {
		pthread_mutex_unlock(&q->lock);
		workq_wake(q);
		pthread_mutex_lock(&q->lock);
	}
	return true;
}

static void *workq_worker(void *arg)
{
	struct worker_arg *wa = arg;
	struct workq *q = wa->q;
	unsigned me = wa->index;
	struct workq_item *it;

	free(wa);
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->todo.head && !q->stopping)
			pthread_cond_wait(&q->cond, &q->lock);
		if (q->stopping && !q->finish)
			break;
		if (q->batch) {
			if (!workq_run_batch(q))
				break;
			continue;
		}
		it = itemq_pop(&q->todo);
		if (!it)
			break; /* stopping and nothing left */
		q->running[me] = it;
		pthread_mutex_unlock(&q->lock);
		q->run(it, q->ctx);
		pthread_mutex_lock(&q->lock);
		q->running[me] = NULL;
		if (workq_finished(q, it)) {
			pthread_mutex_unlock(&q->lock);
			workq_wake(q);
			pthread_mutex_lock(&q->lock);
		}
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static void workq_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct workq *q = arg;
	struct itemq l;
	struct workq_item *it;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		abort();
	pthread_mutex_lock(&q->lock);
	l = q->finished;
	q->finished.head = q->finished.tail = NULL;
	pthread_mutex_unlock(&q->lock);
	while ((it = itemq_pop(&l)))
		q->done(it, q->ctx);
}

static struct workq *workq_make(struct event_base *base, unsigned threads, bool batch,
				 workq_fn *run, workq_fn *done, void *ctx, char *err, size_t errlen)
{
	struct workq *q = xcalloc(1, sizeof(*q));

	q->batch = batch;
	q->run = run;
	q->done = done;
	q->ctx = ctx;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	q->threads = xcalloc(threads ? threads : 1, sizeof(*q->threads));
	q->running = xcalloc(threads ? threads : 1, sizeof(*q->running));
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	q->ev = event_new(base, q->efd, EV_READ | EV_PERSIST, workq_on_done, q);
	if (!q->ev || event_add(q->ev, NULL) < 0) {
		snprintf(err, errlen, "cannot add the work queue's event");
		goto fail;
	}
	for (unsigned i = 0; i < threads; i++) {
		struct worker_arg *wa = xmalloc(sizeof(*wa));
		int e;

		wa->q = q;
		wa->index = i;
		e = pthread_create(&q->threads[i], NULL, workq_worker, wa);
		if (e != 0) {
			free(wa);
			snprintf(err, errlen, "pthread_create: %s", strerror(e));
			goto fail;
		}
		q->nthreads++;
	}
	return q;
fail:
	workq_free(&q, false, NULL);
	return NULL;
}

struct workq *workq_new(struct event_base *base, unsigned threads, workq_fn *run, workq_fn *done,
			void *ctx, char *err, size_t errlen)
{
	return workq_make(base, threads, false, run, done, ctx, err, errlen);
}

struct workq *workq_new_batch(struct event_base *base, workq_fn *run_batch, workq_fn *done,
			      void *ctx, char *err, size_t errlen)
{
	return workq_make(base, 1, true, run_batch, done, ctx, err, errlen);
}

void workq_submit(struct workq *q, struct workq_item *it)
{
	if (q->nthreads == 0) {
		bool wake;

		q->run(it, q->ctx);
		pthread_mutex_lock(&q->lock);
		wake = workq_finished(q, it);
		pthread_mutex_unlock(&q->lock);
		if (wake)
			workq_wake(q);
		return;
	}
	pthread_mutex_lock(&q->lock);
	itemq_push(&q->todo, it);
	pthread_mutex_unlock(&q->lock);
	/* After the unlock: the woken worker does not block on the lock at once. */
	pthread_cond_signal(&q->cond);
}

void workq_each(struct workq *q, workq_fn *fn, void *arg)
{
	pthread_mutex_lock(&q->lock);
	for (struct workq_item *it = q->todo.head; it; it = it->next)
		fn(it, arg);
	for (unsigned i = 0; i < q->nthreads; i++)
		if (q->running[i])
			fn(q->running[i], arg);
	for (struct workq_item *it = q->batch_running.head; it; it = it->next)
		fn(it, arg);
	for (struct workq_item *it = q->finished.head; it; it = it->next)
		fn(it, arg);
	pthread_mutex_unlock(&q->lock);
}

void workq_free(struct workq **qp, bool finish, workq_fn *drop)
{
	struct workq *q = *qp;
	struct workq_item *it;

	if (!q)
		return;
	*qp = NULL;
	pthread_mutex_lock(&q->lock);
	q->stopping = true;
	q->finish = finish;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	for (unsigned i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	while ((it = itemq_pop(&q->todo)))
		if (drop)
			drop(it, q->ctx);
	while ((it = itemq_pop(&q->finished)))
		if (drop)
			drop(it, q->ctx);
	if (q->ev)
		event_free(q->ev);
	if (q->efd >= 0)
		close(q->efd);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q->threads);
	free(q->running);
	free(q);
}
