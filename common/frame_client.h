/*
 * frame_client - the requesting side of a zfarm IPC connection: send
 * request frames to one endpoint, get each reply (or the reason there is
 * none) through a callback.
 *
 * Used by the farms that ask another farm something per message: the
 * smtpserver (RouteRequest and VerifyRequest to the router), the router
 * (SchedSubmit to the scheduler), later the tools.  One connection, opened
 * on first use and again after it broke; requests are pipelined and
 * matched to replies by request id, which the client assigns.
 *
 * Every request's callback runs exactly once, always from the event loop
 * and never inside frame_client_request(): with the reply frame, or with
 * reply NULL and a reason when the endpoint is not configured, cannot be
 * reached, closes the connection with the request unanswered, or does not
 * answer within the timeout (then the connection is dropped and opened
 * again for the next request).  A deadline check runs once a second, only
 * while requests are pending.  frame_client_cancel() forgets the callbacks
 * of one owner (its object is going away) without failing its requests.
 */
#ifndef ZFARM_FRAME_CLIENT_H
#define ZFARM_FRAME_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/frame.pb-c.h"

struct event_base;
struct frame_client;

/* reply is borrowed: valid during the call only.  reason is "" with a reply. */
typedef void frame_client_reply_fn(void *arg, const Zfarm__Frame *reply, const char *reason);

/*
 * frame_client_new - spec unix:PATH (relative: under run_directory) or
 * inet:HOST:PORT; NULL spec: not configured (every request fails with
 * "none").  timeout_ms 0: no timeout.  NULL + reason for a bad spec.
 */
struct frame_client *frame_client_new(struct event_base *base, const char *spec,
				      const char *run_directory, unsigned timeout_ms, char *err,
				      size_t errlen);
/* frame_client_request - send f (its request_id is set here); fn later. */
void frame_client_request(struct frame_client *c, Zfarm__Frame *f, frame_client_reply_fn *fn,
			  void *arg);
/* frame_client_cancel - no callback will reach arg any more. */
void frame_client_cancel(struct frame_client *c, void *arg);
/* frame_client_pending - requests sent and not answered yet. */
size_t frame_client_pending(const struct frame_client *c);
/* frame_client_spec - the endpoint, "none" if not configured. */
const char *frame_client_spec(const struct frame_client *c);
/* frame_client_free - pending callbacks are dropped, not run; NULL ok. */
void frame_client_free(struct frame_client **c);

#endif
