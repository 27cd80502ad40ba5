/*
 * handoff - hand a queued message to the router farm the way the
 * smtpserver does after its 250: one RouteRequest with the message's
 * QueueRef.  The router routes what is not routed yet (or, after a
 * requeue, routes the superseded recipients again), records the routes
 * durably and submits the message to the scheduler before it answers.
 *
 * Callers: the reinjector (messages without a routing set after a
 * restart or a lost hand-off) and the scheduler (messages the queue
 * administrator requeued).  Both keep their own window of requests in
 * flight; the reply (or its absence) comes to fn as frame_client.h says,
 * and handoff_route_status() reads it.
 */
#ifndef ZFARM_SCHEDULER_HANDOFF_H
#define ZFARM_SCHEDULER_HANDOFF_H

#include <stdint.h>

#include "common/frame_client.h"
#include "proto/frame.pb-c.h"

/*
 * handoff_route - send the RouteRequest for qid (store: the queue store
 * backend name; size, nrcpt and arrival (unix time) as the QueueRef
 * carries them, 0 if unknown) on router; fn(arg, ...) later.
 */
void handoff_route(struct frame_client *router, const char *qid, const char *store, uint64_t size,
		   uint32_t nrcpt, int64_t arrival, frame_client_reply_fn *fn, void *arg);

/*
 * handoff_route_status - the router's answer: its status (OK: routed and
 * handed on or left for the reinjector), and in *why its reason, or the
 * reason there was no answer, or "unexpected reply".
 */
Zfarm__Status handoff_route_status(const Zfarm__Frame *reply, const char *reason, const char **why);

#endif
