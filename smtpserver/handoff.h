/*
 * handoff - passes each committed message's queue handle to the router
 * farm (RouteRequest over the router's socket).
 *
 * Called by the smtpserver session right after a commit succeeded, before
 * the 250 goes out.  One connection per smtpserver child (common/
 * frame_client), requests pipelined on it; the replies are only logged, so
 * a slow router never holds up a 250.  The message is already durable when
 * handoff_send() is called, so every failure (router not running,
 * connection lost with the request unanswered, no answer within a minute,
 * router too far behind) leaves it in the queue for the reinjector and is
 * logged with the queue ID: here when the reply fails, by the caller when
 * handoff_send() refuses at once.
 */
#ifndef ZFARM_HANDOFF_H
#define ZFARM_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct handoff;

/*
 * handoff_new - for the router at endpoint spec (unix:PATH, a relative
 * PATH is under run_directory; inet:HOST:PORT).  NULL + reason if spec is
 * malformed (nothing is connected yet).
 */
struct handoff *handoff_new(struct event_base *base, const char *spec, const char *run_directory,
			    char *err, size_t errlen);
/* handoff_send - queue one RouteRequest; 0, or -1 + reason (message stays queued). */
int handoff_send(struct handoff *h, const char *qid, const char *store, uint64_t size,
		 unsigned nrcpt, int64_t arrival, char *err, size_t errlen);
void handoff_free(struct handoff **h);

#endif
