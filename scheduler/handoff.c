/*
 * handoff - the RouteRequest to the router farm; see handoff.h.
 */
#include "scheduler/handoff.h"

#include "common/frame.h"

void handoff_route(struct frame_client *router, const char *qid, const char *store, uint64_t size,
		   uint32_t nrcpt, int64_t arrival, frame_client_reply_fn *fn, void *arg)
{
	Zfarm__Frame f;
	Zfarm__QueueRef ref = ZFARM__QUEUE_REF__INIT;
	Zfarm__RouteRequest rr = ZFARM__ROUTE_REQUEST__INIT;

	ref.queue_id = (char *)qid;
	ref.store = (char *)store;
	ref.size = size;
	ref.nrcpt = nrcpt;
	ref.arrival = arrival;
	rr.ref = &ref;
	frame_init(&f, 0);
	f.body_case = ZFARM__FRAME__BODY_ROUTE;
	f.route = &rr;
	frame_client_request(router, &f, fn, arg);
}

Zfarm__Status handoff_route_status(const Zfarm__Frame *reply, const char *reason, const char **why)
{
	if (!reply) {
		*why = reason;
		return ZFARM__STATUS__STATUS_UNSPECIFIED;
	}
	if (reply->body_case != ZFARM__FRAME__BODY_ROUTE_REPLY || !reply->route_reply) {
		*why = "unexpected reply";
		return ZFARM__STATUS__STATUS_UNSPECIFIED;
	}
	*why = reply->route_reply->reason ? reply->route_reply->reason : "";
	return reply->route_reply->status;
}
