/*
 * bounce - the bounce transport farm: the scheduler's DeliveryRequests of
 * channel "bounce" in, delivery status notices into the queue out.
 *
 * Runs on the transport skeleton (transport.h).  One request describes one
 * notice: the original message (ref), who gets the notice (notice_to) and
 * per recipient what to say (DeliveryRecipient dsn_* fields).  For each:
 *   1. no notice_to or no recipients, or a notice_to with control
 *      characters: PERMFAIL 5.3.0 for all, nothing made;
 *   2. open the original (gone or damaged: PERMFAIL; other: TEMPFAIL);
 *   3. build the notice (dsn.h) straight into a new queue file: envelope
 *      sender "", one recipient notice_to (NOTIFY never), notice "bounce",
 *      or "double-bounce" when the original had the null sender; the
 *      original is streamed in chunks, never held whole;
 *   4. commit it (failure: TEMPFAIL 4.3.0 with the reason) and log
 *      "ORIGID: sender <kind> notice NEWID, to=<...>, failed=N, ...";
 *   5. hand the notice to the router (RouteRequest, like smtpserver) and
 *      wait for its answer (ROUTER_TIMEOUT_MS) before replying; the notice
 *      is durable once committed, so a failed hand-off is only logged (the
 *      reinjector routes it at the next start) and the answer is still OK
 *      "notice queued as NEWID" for every recipient.
 *
 * Parameters: queue_directory, queue_store, myhostname, router_endpoint
 * (unix:private/router; "none": no hand-off), bounce_size_limit (50000:
 * larger originals are returned as headers only).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/farm_server.h"
#include "common/frame.h"
#include "common/frame_client.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/qstore.h"
#include "common/xalloc.h"
#include "transport/dsn.h"
#include "transport/transport.h"

/* A router that has not answered a hand-off in this long is given up on. */
#define ROUTER_TIMEOUT_MS 30000

struct bounce {
	struct qstore *qs;
	struct frame_client *router; /* NULL: router_endpoint none */
	char *myhostname;
	uint64_t size_limit;
};

/* One notice waiting for the router's answer. */
struct notice {
	struct transport_job *job;
	char qid[QID_SIZE];
};

static struct bounce bn;

/* Longest notice recipient address taken (RFC 5321 allows 256). */
#define NOTICE_TO_MAX 1000

/* ---- answers ---- */

static void answer_all(struct transport_job *job, Zfarm__Status st, unsigned code,
		       const char *enhanced, const char *text)
{
	const Zfarm__DeliveryRequest *rq = transport_job_request(job);

	for (size_t i = 0; i < rq->n_recipients; i++)
		transport_job_result(job, rq->recipients[i]->index, st, code, enhanced, text);
}

static void fail_all(struct transport_job *job, Zfarm__Status st, const char *text)
{
	bool perm = st == ZFARM__STATUS__PERMFAIL;

	log_warn("%s: no notice made: %s", transport_job_qid(job), text);
	answer_all(job, st, 0, perm ? "5.3.0" : "4.3.0", text);
	transport_job_done(job, "none", false);
}

static void notice_done(struct transport_job *job, const char *newqid)
{
	char text[64];

	snprintf(text, sizeof(text), "notice queued as %s", newqid);
	answer_all(job, ZFARM__STATUS__OK, 0, "2.0.0", text);
	transport_job_done(job, "bounce", false);
}

/* ---- the original, for dsn.c ---- */

static ssize_t original_read(void *arg, void *buf, size_t len, char *err, size_t errlen)
{
	return qstore_content(arg, buf, len, err, errlen);
}

static int original_rewind(void *arg, char *err, size_t errlen)
{
	if (qstore_rewind(arg) < 0) {
		snprintf(err, errlen, "cannot rewind the original");
		return -1;
	}
	return 0;
}

static int notice_write(void *arg, const void *data, size_t len, char *err, size_t errlen)
{
	int errnum = 0;

	return qstore_append(arg, data, len, &errnum, err, errlen);
}

/* ---- one notice ---- */

static void on_routed(void *arg, const Zfarm__Frame *reply, const char *reason)
{
	struct notice *n = arg;
	struct transport_job *job = n->job;

	if (!reply)
		log_warn("%s: hand-off to the router failed: %s; the notice stays in the queue "
			 "for the reinjector",
			 n->qid, reason);
	else if (reply->body_case != ZFARM__FRAME__BODY_ROUTE_REPLY)
		log_warn("%s: the router answered with a %s frame", n->qid, frame_body_name(reply));
	else if (reply->route_reply->status != ZFARM__STATUS__OK)
		log_warn("%s: the router did not route the notice: %s; it stays in the queue for "
			 "the reinjector",
			 n->qid, reply->route_reply->reason ? reply->route_reply->reason : "");
	transport_job_set_data(job, NULL);
	notice_done(job, n->qid);
	free(n);
}

static void route_notice(struct transport_job *job, const char *qid, uint64_t size)
{
	struct notice *n;
	Zfarm__Frame f;
	Zfarm__RouteRequest req = ZFARM__ROUTE_REQUEST__INIT;
	Zfarm__QueueRef ref = ZFARM__QUEUE_REF__INIT;

	if (!bn.router) {
		notice_done(job, qid);
		return;
	}
	n = xcalloc(1, sizeof(*n));
	n->job = job;
	snprintf(n->qid, sizeof(n->qid), "%s", qid);
	transport_job_set_data(job, n);
	ref.queue_id = n->qid;
	ref.store = (char *)qstore_backend(bn.qs);
	ref.size = size;
	ref.nrcpt = 1;
	ref.arrival = (int64_t)(qid_time_us(qid) / 1000000);
	req.ref = &ref;
	frame_init(&f, 0);
	f.body_case = ZFARM__FRAME__BODY_ROUTE;
	f.route = &req;
	frame_client_request(bn.router, &f, on_routed, n);
}

/* notice_to_ok - it becomes an envelope recipient: bounded, no control characters. */
static bool notice_to_ok(const char *addr)
{
	size_t n = 0;

	for (; addr[n]; n++)
		if ((unsigned char)addr[n] < 0x20 || addr[n] == 0x7f)
			return false;
	return n <= NOTICE_TO_MAX;
}

static const char *notice_kind(size_t failed, size_t delayed)
{
	if (failed)
		return "non-delivery";
	if (delayed)
		return "delay";
	return "delivery status";
}

static void bounce_deliver(struct transport_job *job, const Zfarm__DeliveryRequest *rq)
{
	const char *qid = rq->ref->queue_id;
	struct qstore_reader *rd;
	struct qstore_writer *w;
	const Zfarm__Envelope *oenv;
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;
	Zfarm__EnvRecipient er = ZFARM__ENV_RECIPIENT__INIT, *erp = &er;
	struct dsn_recipient *dr;
	struct dsn_input in = {0};
	struct dsn_scan scan;
	struct dsn_original orig;
	char err[512], why[600], newqid[QID_SIZE], boundary[128];
	size_t failed = 0, delayed = 0, delivered = 0;
	uint64_t size;
	int errnum = 0;

	if (!rq->notice_to || !rq->notice_to[0] || rq->n_recipients == 0) {
		fail_all(job, ZFARM__STATUS__PERMFAIL,
			 rq->n_recipients ? "no notice recipient" : "no recipients to report on");
		return;
	}
	if (!notice_to_ok(rq->notice_to)) {
		fail_all(job, ZFARM__STATUS__PERMFAIL, "bad notice recipient address");
		return;
	}
	rd = qstore_read(bn.qs, qid, &errnum, err, sizeof(err));
	if (!rd) {
		if (errnum == ENOENT)
			snprintf(why, sizeof(why), "original message is gone");
		else
			snprintf(why, sizeof(why), "cannot read the original: %s", err);
		fail_all(job,
			 errnum == ENOENT || errnum == EBADMSG ? ZFARM__STATUS__PERMFAIL
							       : ZFARM__STATUS__TEMPFAIL,
			 why);
		return;
	}
	oenv = qstore_envelope(rd);

	dr = xcalloc(rq->n_recipients, sizeof(*dr));
	for (size_t i = 0; i < rq->n_recipients; i++) {
		const Zfarm__DeliveryRecipient *r = rq->recipients[i];

		dr[i].address = r->address;
		dr[i].orig_address = r->orig_address;
		dr[i].orcpt = r->orcpt;
		dr[i].action = r->dsn_action;
		dr[i].status = r->dsn_status;
		dr[i].smtp_code = r->dsn_smtp_code;
		dr[i].text = r->dsn_text;
		dr[i].last_attempt = (time_t)r->dsn_last_attempt;
		if (r->dsn_action && strcasecmp(r->dsn_action, "failed") == 0)
			failed++;
		else if (r->dsn_action && strcasecmp(r->dsn_action, "delayed") == 0)
			delayed++;
		else
			delivered++;
	}

	env.client_addr = "";
	env.client_name = "localhost";
	env.helo = "";
	env.protocol = "bounce";
	env.sender = "";
	er.address = rq->notice_to;
	er.orcpt = "";
	er.notify = ZFARM__NOTIFY__NOTIFY_NEVER;
	env.recipients = &erp;
	env.n_recipients = 1;
	env.envid = "";
	env.ret = "";
	env.auth_user = "";
	env.notice = oenv->sender && oenv->sender[0] ? "bounce" : "double-bounce";

	in.reporting_mta = bn.myhostname;
	in.queue_id = qid;
	in.sender = oenv->sender ? oenv->sender : "";
	in.envid = rq->envid && rq->envid[0] ? rq->envid : oenv->envid;
	in.ret = rq->ret && rq->ret[0] ? rq->ret : oenv->ret;
	in.arrival = (time_t)(oenv->arrival_us / 1000000);
	in.notice_to = rq->notice_to;
	in.retry_until = (time_t)rq->retry_until;
	in.rcpts = dr;
	in.n_rcpts = rq->n_recipients;
	in.now = clock_now();
	in.size_limit = bn.size_limit;
	orig.read = original_read;
	orig.rewind = original_rewind;
	orig.arg = rd;

	if (dsn_scan(&in, &orig, &scan, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "cannot read the original: %s", err);
		goto tempfail;
	}
	env.body = scan.eightbit ? "8BITMIME" : "7BIT";
	w = qstore_create(bn.qs, &env, &errnum, err, sizeof(err));
	if (!w) {
		snprintf(why, sizeof(why), "cannot create the notice: %s", err);
		goto tempfail;
	}
	/* A boundary nobody can put into the original beforehand. */
	snprintf(boundary, sizeof(boundary), "%s.%" PRIu64 "/%.40s", qstore_writer_qid(w),
		 clock_now_us(), bn.myhostname);
	in.new_queue_id = qstore_writer_qid(w);
	in.boundary = boundary;
	if (dsn_write(&in, &scan, &orig, notice_write, w, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "cannot write the notice: %s", err);
		qstore_abort(&w);
		goto tempfail;
	}
	size = qstore_size(w);
	if (qstore_commit(&w, newqid, &errnum, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "cannot commit the notice: %s", err);
		goto tempfail;
	}
	log_info("%s: sender %s notice %s, to=<%s>, failed=%zu, delayed=%zu, delivered=%zu", qid,
		 notice_kind(failed, delayed), newqid, rq->notice_to, failed, delayed, delivered);
	free(dr);
	qstore_reader_free(&rd);
	route_notice(job, newqid, size);
	return;

tempfail:
	free(dr);
	qstore_reader_free(&rd);
	fail_all(job, ZFARM__STATUS__TEMPFAIL, why);
}

static void bounce_cancel(struct transport_job *job)
{
	struct notice *n = transport_job_get_data(job);

	if (n) {
		frame_client_cancel(bn.router, n);
		log_info("%s: the scheduler went away while the notice was handed to the router",
			 n->qid);
		free(n);
	}
}

/* ---- start and end ---- */

static int bounce_init(struct farm_server *srv, char *err, size_t errlen)
{
	const struct config *cfg = farm_server_config(srv);
	const char *store, *qdir, *router, *host;
	char rundir[4096], defq[4200];
	long long limit;

	if (farmd_run_directory(cfg, rundir, sizeof(rundir), err, errlen) < 0)
		return -1;
	snprintf(defq, sizeof(defq), "%s/queue", rundir);
	if (config_get_string(cfg, NULL, NULL, "queue_store", "spool", &store, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "queue_directory", defq, &qdir, err, errlen) < 0)
		return -1;
	bn.qs = qstore_open(store, qdir, err, errlen);
	if (!bn.qs)
		return -1;
	if (config_get_string(cfg, NULL, NULL, "myhostname", "localhost", &host, err, errlen) < 0)
		return -1;
	bn.myhostname = xstrdup(host[0] ? host : "localhost");
	if (config_get_size(cfg, NULL, NULL, "bounce_size_limit", 50000, 0, 1LL << 40, &limit, err,
			    errlen) < 0)
		return -1;
	bn.size_limit = (uint64_t)limit;
	if (config_get_string(cfg, NULL, NULL, "router_endpoint", "unix:private/router", &router,
			      err, errlen) < 0)
		return -1;
	while (*router == ' ' || *router == '\t')
		router++;
	if (router[0] && strcmp(router, "none") != 0) {
		bn.router = frame_client_new(farm_server_base(srv), router, rundir,
					     ROUTER_TIMEOUT_MS, err, errlen);
		if (!bn.router)
			return -1;
	}
	return 0;
}

static void bounce_fini(struct farm_server *srv)
{
	(void)srv;
	frame_client_free(&bn.router);
	qstore_close(&bn.qs);
	free(bn.myhostname);
	bn.myhostname = NULL;
}

static const struct transport_ops bounce_ops = {
    .name = "bounce",
    .init = bounce_init,
    .deliver = bounce_deliver,
    .cancel = bounce_cancel,
    .fini = bounce_fini,
};

int main(int argc, char **argv)
{
	return transport_main(argc, argv, &bounce_ops);
}
