/*
 * committer - see committer.h.  The threads and the hand-back to the
 * loop are common/workq's.
 */
#include <stdlib.h>

#include "common/qstore.h"
#include "common/workq.h"
#include "common/xalloc.h"
#include "smtpserver/committer.h"

struct job {
	struct workq_item item; /* first: a job is its item */
	struct qstore_commit c;
	committer_done_fn *done;
	void *arg;
};

struct committer {
	struct workq *q;
	struct workq *group; /* group commits (qstore_commit_begin); NULL with 0 threads */
	unsigned pending;    /* loop thread only */
};

static void job_run(struct workq_item *it, void *ctx)
{
	struct job *j = (struct job *)it;

	(void)ctx;
	j->c.errnum = 0;
	j->c.reason[0] = '\0';
	j->c.rc = qstore_commit(&j->c.w, j->c.qid, &j->c.errnum, j->c.reason,
				sizeof(j->c.reason));
}

/* group_run - the group worker: everything begun since it last looked, as one group. */
static void group_run(struct workq_item *first, void *ctx)
{
	(void)ctx;
	for (struct workq_item *it = first; it; it = it->next)
		((struct job *)it)->c.next = it->next ? &((struct job *)it->next)->c : NULL;
	qstore_commit_group(&((struct job *)first)->c);
}

static void job_done(struct workq_item *it, void *ctx)
{
	struct committer *c = ctx;
	struct job *j = (struct job *)it;

	c->pending--;
	j->done(j->arg, j->c.rc, j->c.rc == 0 ? j->c.qid : "", j->c.errnum, j->c.reason);
	free(j);
}

static void job_drop(struct workq_item *it, void *ctx)
{
	(void)ctx;
	free(it);
}

struct committer *committer_new(struct event_base *base, unsigned threads, char *err, size_t errlen)
{
	struct committer *c = xcalloc(1, sizeof(*c));

	c->q = workq_new(base, threads, job_run, job_done, c, err, errlen);
	if (!c->q) {
		free(c);
		return NULL;
	}
	if (threads > 0) {
		c->group = workq_new_batch(base, group_run, job_done, c, err, errlen);
		if (!c->group) {
			workq_free(&c->q, false, NULL);
			free(c);
			return NULL;
		}
	}
	return c;
}

void committer_submit(struct committer *c, struct qstore_writer *w, committer_done_fn *done,
		      void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->c.w = w;
	j->done = done;
	j->arg = arg;
	c->pending++;
	if (c->group && qstore_commit_begin(w))
		workq_submit(c->group, &j->item);
	else
		workq_submit(c->q, &j->item);
}

unsigned committer_pending(const struct committer *c)
{
	return c->pending;
}

void committer_free(struct committer **cp)
{
	struct committer *c = *cp;

	if (!c)
		return;
	*cp = NULL;
	/* Queued commits finish (their writers are durable or aborted), no callbacks. */
	workq_free(&c->group, true, job_drop);
	workq_free(&c->q, true, job_drop);
	free(c);
}
