/*
 * sched_link - see sched_link.h.  A SchedSubmit over common/frame_client.
 */
#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/frame_client.h"
#include "common/xalloc.h"
#include "router/sched_link.h"

struct sched_link {
	struct frame_client *fc;
};

/* One submission's callback, so cancel can match the caller's arg. */
struct sub {
	sched_link_done_fn *done;
	void *arg;
};

struct sched_link *sched_link_new(struct event_base *base, const char *spec,
				  const char *run_directory, char *err, size_t errlen)
{
	struct sched_link *l = xcalloc(1, sizeof(*l));

	l->fc = frame_client_new(base, spec, run_directory, SCHED_LINK_TIMEOUT_MS, err, errlen);
	if (!l->fc) {
		free(l);
		return NULL;
	}
	return l;
}

static void sched_link_on_reply(void *arg, const Zfarm__Frame *reply, const char *reason)
{
	struct sub *s = arg;

	if (s->done) {
		if (!reply)
			s->done(s->arg, false, reason);
		else if (reply->body_case != ZFARM__FRAME__BODY_SCHED_ACK)
			s->done(s->arg, false, "the scheduler answered with something else");
		else
			s->done(s->arg, reply->sched_ack->status == ZFARM__STATUS__OK,
				reply->sched_ack->reason ? reply->sched_ack->reason : "");
	}
	free(s);
}

void sched_link_submit(struct sched_link *l, const char *qid, const char *store, uint64_t size,
		       unsigned nrcpt, int64_t arrival, sched_link_done_fn *done, void *arg)
{
	struct sub *s = xcalloc(1, sizeof(*s));
	Zfarm__Frame f;
	Zfarm__SchedSubmit sub = ZFARM__SCHED_SUBMIT__INIT;
	Zfarm__QueueRef ref = ZFARM__QUEUE_REF__INIT;

	s->done = done;
	s->arg = arg;
	ref.queue_id = (char *)qid;
	ref.store = (char *)store;
	ref.size = size;
	ref.nrcpt = nrcpt;
	ref.arrival = arrival;
	sub.ref = &ref;
	frame_init(&f, 0);
	f.body_case = ZFARM__FRAME__BODY_SCHED_SUBMIT;
	f.sched_submit = &sub;
	frame_client_request(l->fc, &f, sched_link_on_reply, s);
}

void sched_link_free(struct sched_link **lp)
{
	struct sched_link *l = *lp;

	if (!l)
		return;
	*lp = NULL;
	frame_client_free(&l->fc);
	free(l);
}
