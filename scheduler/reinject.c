/*
 * reinject - the run-once queue recovery job: every queued message goes
 * back to the stage that was handling it when zfarm stopped.
 *
 * farmd runs it as a "once" job at start; the farms that write new mail
 * into the queue (smtpserver, bounce) name it in start_after and start
 * when it has finished, so no writer is live while leftovers in the
 * queue's tmp/ are cleared; the router and the scheduler it hands
 * messages to run meanwhile.  It walks the queue store oldest first and,
 * per message:
 *   - unreadable or inconsistent (bad header, damaged control record,
 *     contradicting routing set): moved to corrupt/ and logged, never
 *     retried in a loop;
 *   - no complete routing set (also a requeued message whose new routes
 *     are not recorded yet): a RouteRequest to the router farm, as the
 *     smtpserver would have sent (handoff.h);
 *   - routed: a SchedSubmit to the scheduler, as the router would have
 *     (also when every recipient is final: the scheduler removes it).
 * It makes no routing or scheduling decision of its own.  At most
 * REINJECT_WINDOW requests are outstanding at once, so memory stays flat
 * for any queue size.  Exit status 0 when every message was handed on or
 * quarantined, 1 when some could not be (they stay queued, logged), 2 for
 * a bad config or queue.
 *
 *     reinject [-c config] [-o name=value]... [-v]
 *
 * Parameters: queue_directory, queue_store, router_endpoint,
 * scheduler_endpoint ("none": that stage is skipped, its messages stay).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/frame.h"
#include "common/frame_client.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/qstore.h"
#include "common/xalloc.h"
#include "scheduler/handoff.h"
#include "scheduler/msgstate.h"

#define REINJECT_WINDOW	    256
#define REINJECT_TIMEOUT_MS 60000

struct reinject {
	struct event_base *base;
	struct qstore *qs;
	struct frame_client *router, *sched;
	size_t inflight;
	size_t scanned, routed, submitted, quarantined, failed, skipped;
	/*
	 * A rerun on farmd's wakeup timer while everything runs: only
	 * messages that arrived more than min_age_us ago (their hand-off
	 * failed: a process died between the 250 and the hand-off), no tmp/
	 * sweep, no quarantine (a file may be being removed under us: skip
	 * it), failures are not errors.
	 */
	bool live;
	int64_t min_age_us, now_us;
	size_t young;
};

struct req {
	struct reinject *ri;
	char qid[QID_SIZE];
	bool to_router;
};

static void reinject_on_reply(void *arg, const Zfarm__Frame *reply, const char *reason)
{
	struct req *q = arg;
	struct reinject *ri = q->ri;
	Zfarm__Status st = ZFARM__STATUS__STATUS_UNSPECIFIED;
	const char *why = reason;

	if (q->to_router) {
		st = handoff_route_status(reply, reason, &why);
	} else if (reply && reply->body_case == ZFARM__FRAME__BODY_SCHED_ACK) {
		st = reply->sched_ack->status;
		why = reply->sched_ack->reason ? reply->sched_ack->reason : "";
	} else if (reply) {
		why = "unexpected reply";
	}
	if (st == ZFARM__STATUS__OK) {
		if (q->to_router)
			ri->routed++;
		else
			ri->submitted++;
		log_debug("%s: handed to the %s", q->qid, q->to_router ? "router" : "scheduler");
	} else {
		ri->failed++;
		log_warn("%s: not handed to the %s: %s; it stays in the queue", q->qid,
			 q->to_router ? "router" : "scheduler", why[0] ? why : "refused");
	}
	ri->inflight--;
	free(q);
}

static void reinject_quarantine(struct reinject *ri, const char *qid, const char *why)
{
	char err[512];

	if (ri->live) {
		log_debug("%s: skipped: %s", qid, why);
		return;
	}

	if (qstore_quarantine(ri->qs, qid, err, sizeof(err)) < 0)
		log_error("%s: %s; cannot quarantine it: %s", qid, why, err);
	else
		log_error("%s: %s; moved to corrupt/", qid, why);
	ri->quarantined++;
}

static void reinject_send(struct reinject *ri, const char *qid, const Zfarm__Envelope *env,
			  bool to_router)
{
	struct req *q = xcalloc(1, sizeof(*q));
	Zfarm__Frame f;
	Zfarm__QueueRef ref = ZFARM__QUEUE_REF__INIT;
	Zfarm__SchedSubmit ss = ZFARM__SCHED_SUBMIT__INIT;

	q->ri = ri;
	q->to_router = to_router;
	memcpy(q->qid, qid, QID_SIZE);
	ri->inflight++;
	if (to_router) {
		handoff_route(ri->router, q->qid, qstore_backend(ri->qs), 0,
			      (uint32_t)env->n_recipients, env->arrival_us / 1000000,
			      reinject_on_reply, q);
	} else {
		ref.queue_id = q->qid;
		ref.store = (char *)qstore_backend(ri->qs);
		ref.nrcpt = (uint32_t)env->n_recipients;
		ref.arrival = env->arrival_us / 1000000;
		ss.rescan = ri->live;
		ss.ref = &ref;
		frame_init(&f, 0);
		f.body_case = ZFARM__FRAME__BODY_SCHED_SUBMIT;
		f.sched_submit = &ss;
		frame_client_request(ri->sched, &f, reinject_on_reply, q);
	}
	/* Keep at most REINJECT_WINDOW outstanding: memory stays flat. */
	while (ri->inflight >= REINJECT_WINDOW)
		event_base_loop(ri->base, EVLOOP_ONCE);
}

static int reinject_one(const char *qid, void *arg)
{
	struct reinject *ri = arg;
	struct qstore_reader *rd;
	Zfarm__CtlRecord **recs = NULL;
	size_t n = 0;
	struct msgstate m;
	enum msgstate_load_result lr;
	char err[512], why[600];
	int errnum = 0;

	ri->scanned++;
	rd = qstore_read(ri->qs, qid, &errnum, err, sizeof(err));
	if (!rd && ri->live) {
		log_debug("%s: skipped: %s", qid, err);
		return 0;
	}
	if (rd && ri->live && qstore_envelope(rd)->arrival_us > ri->now_us - ri->min_age_us) {
		ri->young++;
		qstore_reader_free(&rd);
		return 0;
	}
	if (!rd) {
		if (errnum == ENOENT)
			return 0; /* gone meanwhile */
		snprintf(why, sizeof(why), "unreadable: %.500s", err);
		reinject_quarantine(ri, qid, why);
		return 0;
	}
	/*
	 * At start nothing appends yet: cut what an OS crash left after the
	 * last whole record (a lost lazy append), or records appended later
	 * would hide behind it.
	 */
	if (!ri->live) {
		int rc = qstore_ctl_repair(ri->qs, qid, err, sizeof(err));

		if (rc > 0)
			log_warn("%s: control record: cut a torn tail a crash left", qid);
		else if (rc < 0)
			log_warn("%s: control record: cannot cut a torn tail: %s", qid, err);
	}
	if (qstore_ctl_load(ri->qs, qid, &recs, &n, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "damaged control record: %.480s", err);
		qstore_reader_free(&rd);
		reinject_quarantine(ri, qid, why);
		return 0;
	}
	lr = msgstate_load(&m, qstore_envelope(rd), recs, n, err, sizeof(err));
	if (lr == MSGSTATE_BAD) {
		snprintf(why, sizeof(why), "inconsistent control record: %.480s", err);
		reinject_quarantine(ri, qid, why);
	} else if (lr == MSGSTATE_UNROUTED) {
		if (ri->router)
			reinject_send(ri, qid, qstore_envelope(rd), true);
		else
			ri->skipped++;
	} else if (ri->sched) {
		reinject_send(ri, qid, qstore_envelope(rd), false);
	} else {
		ri->skipped++;
	}
	msgstate_release(&m);
	qstore_ctl_free(&recs, n);
	qstore_reader_free(&rd);
	return 0;
}

static void reinject_bad(const char *name, void *arg)
{
	(void)arg;
	log_warn("not a queue file, left alone: %s", name);
}

static struct frame_client *reinject_client(struct reinject *ri, const struct config *cfg,
					    const char *param, const char *def, const char *rundir)
{
	const char *spec = config_get_default(cfg, NULL, NULL, param, def);
	char err[512];
	struct frame_client *c;

	while (*spec == ' ' || *spec == '\t')
		spec++;
	if (!spec[0] || strcmp(spec, "none") == 0)
		return NULL;
	c = frame_client_new(ri->base, spec, rundir, REINJECT_TIMEOUT_MS, err, sizeof(err));
	if (!c)
		log_fatal("parameter %s: %s", param, err);
	return c;
}

int main(int argc, char **argv)
{
	struct reinject ri = {0};
	char *overrides[256], err[1024], rundir[4096], qdir[4200];
	const char *config_path = NULL, *store;
	size_t noverrides = 0;
	struct config *cfg;
	uint64_t t0 = clock_mono_ms();
	int c, swept, level;
	long long min_age;

	log_open("reinject", LOG_TARGET_STDERR);
	while ((c = getopt(argc, argv, "c:o:v")) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			if (noverrides == sizeof(overrides) / sizeof(overrides[0]))
				log_fatal("too many -o options");
			overrides[noverrides++] = optarg;
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		default:
			fprintf(stderr, "usage: reinject [-c config] [-o name=value]... [-v]\n");
			return 2;
		}
	}
	cfg = paths_load_config(config_path, overrides, noverrides, err, sizeof(err));
	if (!cfg) {
		log_error("%s", err);
		return 2;
	}
	level = log_level_parse(config_get_default(cfg, NULL, NULL, "log_level", "info"));
	if (level >= 0 && log_get_level() != LOG_LEVEL_DEBUG)
		log_set_level((enum log_level)level);
	if (farmd_run_directory(cfg, rundir, sizeof(rundir), err, sizeof(err)) < 0) {
		log_error("%s", err);
		return 2;
	}
	snprintf(qdir, sizeof(qdir), "%s/queue", rundir);
	store = config_get_default(cfg, NULL, NULL, "queue_store", "spool");
	ri.qs = qstore_open(store, config_get_default(cfg, NULL, NULL, "queue_directory", qdir),
			    err, sizeof(err));
	if (!ri.qs) {
		log_error("queue: %s", err);
		return 2;
	}
	ri.base = event_base_new();
	ri.router = reinject_client(&ri, cfg, "router_endpoint", "unix:private/router", rundir);
	ri.sched =
	    reinject_client(&ri, cfg, "scheduler_endpoint", "unix:private/scheduler", rundir);

	ri.live = getenv("ZFARM_RERUN") != NULL;
	ri.now_us = (int64_t)clock_now_us();
	if (config_get_time(cfg, NULL, NULL, "reinject_min_age", 60, 1, 86400, &min_age, err,
			    sizeof(err)) < 0) {
		log_error("%s", err);
		return 2;
	}
	ri.min_age_us = (int64_t)min_age * 1000000;
	if (!ri.live) {
		swept = qstore_sweep(ri.qs, err, sizeof(err));
		if (swept < 0)
			log_warn("cannot clear the queue's tmp/: %s", err);
		else if (swept > 0)
			log_info("cleared %d unfinished message file(s) from the queue's tmp/",
				 swept);
	}
	if (ri.live) {
		/* Space kept in free/ and slots after a burst goes back (start: the sweep). */
		int n = qstore_trim(ri.qs, err, sizeof(err));

		if (n < 0)
			log_warn("cannot trim the queue's free/ and slots: %s", err);
		else if (n > 0)
			log_info("gave back %d file(s) kept for reuse in the queue's free/ and slots",
				 n);
	}
	if (qstore_scan(ri.qs, reinject_one, reinject_bad, &ri, err, sizeof(err)) < 0)
		log_error("queue scan: %s", err);
	while (ri.inflight > 0)
		event_base_loop(ri.base, EVLOOP_ONCE);
	if (ri.live) {
		/* Messages the running daemons have are acknowledged again: harmless. */
		log_debug("rescan: %zu message(s), %zu younger than reinject_min_age, %zu handed "
			  "to the router, %zu to the scheduler, %zu failed",
			  ri.scanned, ri.young, ri.routed, ri.submitted, ri.failed);
		ri.failed = 0;
	} else {
		log_info("reinjected %zu message(s) in %.3f s: %zu to the router, %zu to the scheduler, "
			 "%zu quarantined, %zu left (stage not configured), %zu failed",
			 ri.scanned, (double)(clock_mono_ms() - t0) / 1000.0, ri.routed, ri.submitted,
			 ri.quarantined, ri.skipped, ri.failed);
	}
	frame_client_free(&ri.router);
	frame_client_free(&ri.sched);
	event_base_free(ri.base);
	qstore_close(&ri.qs);
	config_free(&cfg);
	return ri.failed ? 1 : 0;
}
