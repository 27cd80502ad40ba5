/*
 * handoff - see handoff.h.  RouteRequests over common/frame_client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/frame_client.h"
#include "common/log.h"
#include "common/qid.h"
#include "common/xalloc.h"
#include "smtpserver/handoff.h"

/* Unanswered hand-offs past which the router counts as stuck. */
#define HANDOFF_MAX_PENDING 10000
/* A router that has not answered a hand-off in this long is reconnected. */
#define HANDOFF_TIMEOUT_MS 60000

struct handoff {
	struct frame_client *fc;
};

struct handoff *handoff_new(struct event_base *base, const char *spec, const char *run_directory,
			    char *err, size_t errlen)
{
	struct handoff *h = xcalloc(1, sizeof(*h));

	h->fc = frame_client_new(base, spec, run_directory, HANDOFF_TIMEOUT_MS, err, errlen);
	if (!h->fc) {
		free(h);
		return NULL;
	}
	return h;
}

/* The router's answer: only failures are news (the message stays queued). */
static void handoff_on_reply(void *arg, const Zfarm__Frame *reply, const char *reason)
{
	char *qid = arg;

	if (!reply)
		log_warn("%s: hand-off to the router failed: %s; the message stays in the queue "
			 "for the reinjector",
			 qid, reason);
	else if (reply->body_case != ZFARM__FRAME__BODY_ROUTE_REPLY)
		log_warn("%s: the router answered with a %s frame", qid, frame_body_name(reply));
	else if (reply->route_reply->status != ZFARM__STATUS__OK)
		log_warn("%s: the router did not route the message: %s; it stays in the queue "
			 "for the reinjector",
			 qid, reply->route_reply->reason ? reply->route_reply->reason : "");
	else if (reply->route_reply->reason && reply->route_reply->reason[0])
		log_info("%s: routed; %s", qid, reply->route_reply->reason);
	free(qid);
}

int handoff_send(struct handoff *h, const char *qid, const char *store, uint64_t size,
		 unsigned nrcpt, int64_t arrival, char *err, size_t errlen)
{
	Zfarm__Frame f;
	Zfarm__RouteRequest req = ZFARM__ROUTE_REQUEST__INIT;
	Zfarm__QueueRef ref = ZFARM__QUEUE_REF__INIT;

	if (frame_client_pending(h->fc) >= HANDOFF_MAX_PENDING) {
		snprintf(err, errlen, "router %.600s is not keeping up (%zu hand-offs unanswered)",
			 frame_client_spec(h->fc), frame_client_pending(h->fc));
		return -1;
	}
	ref.queue_id = (char *)qid;
	ref.store = (char *)store;
	ref.size = size;
	ref.nrcpt = nrcpt;
	ref.arrival = arrival;
	req.ref = &ref;
	frame_init(&f, 0);
	f.body_case = ZFARM__FRAME__BODY_ROUTE;
	f.route = &req;
	frame_client_request(h->fc, &f, handoff_on_reply, xstrdup(qid));
	return 0;
}

void handoff_free(struct handoff **hp)
{
	struct handoff *h = *hp;

	if (!h)
		return;
	*hp = NULL;
	frame_client_free(&h->fc);
	free(h);
}
