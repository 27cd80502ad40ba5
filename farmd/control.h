/*
 * control - farmd's control socket: zfarmctl's requests in, replies out.
 *
 * Each connection carries FarmControlRequest frames; each gets one
 * FarmControlReply with the same request id.  The control module only
 * speaks the protocol: what a request does is farmd's (callbacks).  A peer
 * that sends a bad frame is dropped with a log line.  Called by farmd.
 */
#ifndef ZFARM_CONTROL_H
#define ZFARM_CONTROL_H

#include <stddef.h>

#include "proto/farm.pb-c.h"

struct event_base;
struct control;

/*
 * The handler fills reply (ok, error, farms...) for request; memory it
 * hangs off reply must stay valid until the handler's next call.
 */
typedef void control_handler_fn(const Zfarm__FarmControlRequest *req,
				Zfarm__FarmControlReply *reply, void *arg);

/* control_new - listen on the unix socket path (mode 0600).  NULL + reason. */
struct control *control_new(struct event_base *base, const char *path,
			    control_handler_fn *handler, void *arg, char *err, size_t errlen);
/* control_free - close the socket (and unlink it) and every connection. */
void control_free(struct control **ctl);

#endif
