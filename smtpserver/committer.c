/*
 * committer - see committer.h.
 *
 * Jobs go from the loop to the workers through `todo` (mutex + condition
 * variable) and back through `done` (mutex + eventfd that wakes the loop).
 * Workers never touch libevent.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/qstore.h"
#include "common/xalloc.h"
#include "smtpserver/committer.h"

struct job {
	struct job *next;
	struct qstore_writer *w;
	committer_done_fn *done;
	void *arg;
	int rc;
	int errnum;
	char qid[QID_SIZE];
	char reason[256];
};

struct jobq {
	struct job *head, *tail;
};

struct committer {
	struct event_base *base;
	unsigned nthreads;
	pthread_t *threads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct jobq todo; /* under lock */
	struct jobq done; /* under lock */
	bool stopping;	  /* under lock */
	int efd;
	struct event *ev;
	unsigned pending; /* loop thread only */
};

static void jobq_push(struct jobq *q, struct job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

static struct job *jobq_pop(struct jobq *q)
{
	struct job *j = q->head;

	if (j) {
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
	}
	return j;
}

static void job_run(struct job *j)
{
	j->errnum = 0;
	j->reason[0] = '\0';
	j->rc = qstore_commit(&j->w, j->qid, &j->errnum, j->reason, sizeof(j->reason));
}

static void *committer_worker(void *arg)
{
	struct committer *c = arg;
	struct job *j;
	uint64_t one = 1;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->todo.head && !c->stopping)
			pthread_cond_wait(&c->cond, &c->lock);
		j = jobq_pop(&c->todo);
		if (!j)
			break; /* stopping and nothing left */
		pthread_mutex_unlock(&c->lock);
		job_run(j);
		pthread_mutex_lock(&c->lock);
		jobq_push(&c->done, j);
		/* The counter cannot overflow: the loop reads it. */
		if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			abort();
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void committer_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct committer *c = arg;
	struct jobq q;
	struct job *j;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		abort();
	pthread_mutex_lock(&c->lock);
	q = c->done;
	c->done.head = c->done.tail = NULL;
	pthread_mutex_unlock(&c->lock);
	while ((j = jobq_pop(&q))) {
		c->pending--;
		j->done(j->arg, j->rc, j->rc == 0 ? j->qid : "", j->errnum, j->reason);
		free(j);
	}
}

struct committer *committer_new(struct event_base *base, unsigned threads, char *err, size_t errlen)
{
	struct committer *c = xcalloc(1, sizeof(*c));

	c->base = base;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, committer_on_done, c);
	if (!c->ev || event_add(c->ev, NULL) < 0) {
		snprintf(err, errlen, "cannot add the committer's event");
		goto fail;
	}
	c->threads = xcalloc(threads ? threads : 1, sizeof(*c->threads));
	for (unsigned i = 0; i < threads; i++) {
		int e = pthread_create(&c->threads[i], NULL, committer_worker, c);

		if (e != 0) {
			snprintf(err, errlen, "pthread_create: %s", strerror(e));
			goto fail;
		}
		c->nthreads++;
	}
	return c;
fail:
	committer_free(&c);
	return NULL;
}

void committer_submit(struct committer *c, struct qstore_writer *w, committer_done_fn *done,
		      void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));
	uint64_t one = 1;

	j->w = w;
	j->done = done;
	j->arg = arg;
	c->pending++;
	if (c->nthreads == 0) {
		job_run(j);
		pthread_mutex_lock(&c->lock);
		jobq_push(&c->done, j);
		pthread_mutex_unlock(&c->lock);
		if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			abort();
		return;
	}
	pthread_mutex_lock(&c->lock);
	jobq_push(&c->todo, j);
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

unsigned committer_pending(const struct committer *c)
{
	return c->pending;
}

void committer_free(struct committer **cp)
{
	struct committer *c = *cp;
	struct job *j;

	if (!c)
		return;
	*cp = NULL;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < c->nthreads; i++)
		pthread_join(c->threads[i], NULL);
	while ((j = jobq_pop(&c->done)))
		free(j);
	if (c->ev)
		event_free(c->ev);
	if (c->efd >= 0)
		close(c->efd);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->threads);
	free(c);
}
