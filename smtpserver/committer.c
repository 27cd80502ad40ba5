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
	struct qstore_writer *w;
	committer_done_fn *done;
	void *arg;
	int rc;
	int errnum;
	char qid[QID_SIZE];
	char reason[256];
};

struct committer {
	struct workq *q;
	unsigned pending; /* loop thread only */
};

static void job_run(struct workq_item *it, void *ctx)
{
	struct job *j = (struct job *)it;

	(void)ctx;
	j->errnum = 0;
	j->reason[0] = '\0';
	j->rc = qstore_commit(&j->w, j->qid, &j->errnum, j->reason, sizeof(j->reason));
}

static void job_done(struct workq_item *it, void *ctx)
{
	struct committer *c = ctx;
	struct job *j = (struct job *)it;

	c->pending--;
	j->done(j->arg, j->rc, j->rc == 0 ? j->qid : "", j->errnum, j->reason);
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
	return c;
}

void committer_submit(struct committer *c, struct qstore_writer *w, committer_done_fn *done,
		      void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->w = w;
	j->done = done;
	j->arg = arg;
	c->pending++;
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
	workq_free(&c->q, true, job_drop);
	free(c);
}
