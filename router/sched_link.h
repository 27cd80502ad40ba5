/*
 * sched_link - the router child's connection to the scheduler: SchedSubmit
 * one routed message's handle, learn when the scheduler has it.
 *
 * Called by routerd once per routed message.  Over common/frame_client:
 * one connection per router child, submissions pipelined, and each gets
 * its done callback exactly once, never inside the call: when the
 * SchedAck arrives (ok = the scheduler's status is OK), or with ok = false
 * and a reason when the scheduler is not configured, cannot be reached,
 * closes the connection or does not answer within SCHED_LINK_TIMEOUT_MS.
 * The message is routed on disk before it is submitted, so a failure
 * leaves it for the reinjector; the caller logs the reason.
 */
#ifndef ZFARM_SCHED_LINK_H
#define ZFARM_SCHED_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHED_LINK_TIMEOUT_MS 30000

struct event_base;
struct sched_link;

typedef void sched_link_done_fn(void *arg, bool ok, const char *reason);

/* sched_link_new - spec as handoff: unix:PATH (relative: under run_directory), inet:...; NULL spec: none. */
struct sched_link *sched_link_new(struct event_base *base, const char *spec,
				  const char *run_directory, char *err, size_t errlen);
/* sched_link_submit - send SchedSubmit for qid; done(arg, ...) comes later. */
void sched_link_submit(struct sched_link *l, const char *qid, const char *store, uint64_t size,
		       unsigned nrcpt, int64_t arrival, sched_link_done_fn *done, void *arg);
void sched_link_free(struct sched_link **l);

#endif
