/*
 * transport - the skeleton every transport farm runs on (bounce now;
 * smtp, local, pipe, lmtp later): DeliveryRequests from the scheduler in,
 * one DeliveryReply per request out.
 *
 * A transport's main() is one call: transport_main(argc, argv, &ops).
 * The skeleton runs common/farm_server.h underneath (config, sockets,
 * status to farmd) and serves each accepted connection as a frame_conn:
 *   - the scheduler keeps the connection and sends DeliveryRequest frames
 *     (Frame body "delivery") on it, one at a time: a second request while
 *     one runs is a protocol error;
 *   - any other frame body, a frame that does not decode, a request
 *     without a valid queue reference: a log line, the connection is
 *     closed (a running job is cancelled), the process lives on;
 *   - for each request a struct transport_job is made and ops->deliver()
 *     called; the program reports per-recipient results with
 *     transport_job_result() and ends the job with transport_job_done(),
 *     inside deliver or later from the event loop (asynchronous programs
 *     keep per-job state with transport_job_set_data());
 *   - done: the DeliveryReply goes out with the request's request_id and
 *     the job is freed.  Recipients without a result are reported
 *     TEMPFAIL 4.3.0 "transport gave no result".  Texts are sanitised
 *     (control characters become '?', at most TRANSPORT_TEXT_MAX bytes).
 *   - the connection closes while a job runs: ops->cancel(job) (the
 *     program drops its per-job state and must not touch the job again),
 *     no reply;
 *   - every job is one farm_server request (FARM_SERVER_EXPLICIT_REQUESTS),
 *     so farmd sees the child busy while a delivery runs and max_requests
 *     counts deliveries.  On drain, connections with no job close; the
 *     others after their reply.
 *
 * Invariants: at most one job per connection; a job is finished exactly
 * once, by transport_job_done() or by ops->cancel(), never both; the
 * request a job holds stays valid until then.
 *
 * Callers: the transport programs in transport/.  The skeleton logs (it
 * is daemon code); start-up failures (ops->init) are fatal.
 */
#ifndef ZFARM_TRANSPORT_H
#define ZFARM_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/frame.pb-c.h"

struct farm_server;
struct transport_job;

/* Longest result text sent to the scheduler, in bytes. */
#define TRANSPORT_TEXT_MAX 1000

struct transport_ops {
	const char *name; /* program name for logs, e.g. "bounce" */
	/* After config and sockets, before the loop; -1 with reason is fatal. */
	int (*init)(struct farm_server *srv, char *err, size_t errlen);
	/*
	 * One delivery.  rq is the job's (valid until done or cancel).  The
	 * program calls transport_job_done(job, ...) exactly once, now or
	 * later, unless the skeleton cancels the job first.
	 */
	void (*deliver)(struct transport_job *job, const Zfarm__DeliveryRequest *rq);
	/* The scheduler went away: free per-job state; no done afterwards. */
	void (*cancel)(struct transport_job *job);
	/* Just before exit (optional). */
	void (*fini)(struct farm_server *srv);
};

/* transport_main - run the transport farm child; returns the exit status. */
int transport_main(int argc, char **argv, const struct transport_ops *ops);

/* transport_server - the farm skeleton (for config and event base); NULL before init. */
struct farm_server *transport_server(void);

/* transport_job_request - the DeliveryRequest this job serves. */
const Zfarm__DeliveryRequest *transport_job_request(const struct transport_job *job);
/* transport_job_qid - the queue ID of the message being delivered. */
const char *transport_job_qid(const struct transport_job *job);

/* Program state attached to a job. */
void transport_job_set_data(struct transport_job *job, void *data);
void *transport_job_get_data(const struct transport_job *job);

/*
 * transport_job_result - the result for the recipient with this index
 * (DeliveryRecipient.index); a later result for the same index replaces
 * an earlier one.  enhanced ("5.1.1") and text may be NULL; both are
 * copied and sanitised.  -1 if the request has no such recipient.
 */
int transport_job_result(struct transport_job *job, uint32_t index, Zfarm__Status status,
			 unsigned smtp_code, const char *enhanced, const char *text);

/*
 * transport_job_dsn_passed - the recipient with this index, already
 * reported OK, was handed on with its NOTIFY to a next hop that offers
 * DSN (RFC 3461): that hop sends any success notice, we do not.  -1 if
 * there is no such OK result.
 */
int transport_job_dsn_passed(struct transport_job *job, uint32_t index);

/*
 * transport_job_done - the delivery is over: the reply goes out (if the
 * connection is still there) and the job is freed.  relay says where the
 * message went ("mx.example.org[192.0.2.7]:25", "local", NULL: none);
 * connection_failed marks a destination-level failure.
 */
void transport_job_done(struct transport_job *job, const char *relay, bool connection_failed);

#endif
