/*
 * transport - see transport.h.  One struct conn per scheduler connection,
 * at most one struct transport_job on it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/farm_server.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/qid.h"
#include "common/xalloc.h"
#include "transport/transport.h"

/* Longest enhanced status code and relay name passed on. */
#define TRANSPORT_CODE_MAX  32
#define TRANSPORT_RELAY_MAX 300

/* One connection from the scheduler. */
struct conn {
	struct conn *next, *prev; /* transport.conns */
	struct frame_conn *fc;
	struct transport_job *job; /* the running delivery, or NULL */
	unsigned served;	   /* deliveries answered on this connection */
};

struct transport_job {
	struct conn *c;
	Zfarm__Frame *frame; /* the request, owned */
	const Zfarm__DeliveryRequest *rq;
	/* results[i] belongs to rq->recipients[i]; set[i] once reported */
	Zfarm__RecipientResult *results;
	bool *set;
	void *data;
};

struct transport {
	const struct transport_ops *ops;
	struct farm_server *srv;
	struct conn *conns;
};

static struct transport tp;

struct farm_server *transport_server(void)
{
	return tp.srv;
}

/* ---- jobs ---- */

const Zfarm__DeliveryRequest *transport_job_request(const struct transport_job *job)
{
	return job->rq;
}

const char *transport_job_qid(const struct transport_job *job)
{
	return job->rq->ref->queue_id;
}

void transport_job_set_data(struct transport_job *job, void *data)
{
	job->data = data;
}

void *transport_job_get_data(const struct transport_job *job)
{
	return job->data;
}

/* sanitized - a new copy of s with control characters replaced, at most max bytes. */
static char *sanitized(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	char *out = xmalloc((n < max ? n : max) + 1);

	return log_sanitize(out, (n < max ? n : max) + 1, s ? s : "", n);
}

static void job_clear_result(Zfarm__RecipientResult *r)
{
	free(r->enhanced_code);
	free(r->text);
	r->enhanced_code = NULL;
	r->text = NULL;
	r->dsn_passed = false;
}

int transport_job_result(struct transport_job *job, uint32_t index, Zfarm__Status status,
			 unsigned smtp_code, const char *enhanced, const char *text)
{
	int found = -1;

	for (size_t i = 0; i < job->rq->n_recipients; i++) {
		Zfarm__RecipientResult *r = &job->results[i];

		if (job->rq->recipients[i]->index != index)
			continue;
		job_clear_result(r);
		r->status = status;
		r->smtp_code = smtp_code;
		r->enhanced_code = sanitized(enhanced, TRANSPORT_CODE_MAX);
		r->text = sanitized(text, TRANSPORT_TEXT_MAX);
		job->set[i] = true;
		found = 0;
	}
	return found;
}

int transport_job_dsn_passed(struct transport_job *job, uint32_t index)
{
	for (size_t i = 0; i < job->rq->n_recipients; i++) {
		if (job->rq->recipients[i]->index == index && job->set[i] &&
		    job->results[i].status == ZFARM__STATUS__OK) {
			job->results[i].dsn_passed = true;
			return 0;
		}
	}
	return -1;
}

static void job_free(struct transport_job *job)
{
	for (size_t i = 0; i < job->rq->n_recipients; i++)
		job_clear_result(&job->results[i]);
	free(job->results);
	free(job->set);
	frame_free(&job->frame);
	free(job);
}

void transport_job_done(struct transport_job *job, const char *relay, bool connection_failed)
{
	struct conn *c = job->c;
	const Zfarm__DeliveryRequest *rq = job->rq;
	Zfarm__Frame f;
	Zfarm__DeliveryReply dr = ZFARM__DELIVERY_REPLY__INIT;
	Zfarm__RecipientResult **rp;
	char *rl, err[256];

	if (c->job != job)
		log_panic("transport_job_done: not the running job of its connection");
	rp = xcalloc(rq->n_recipients + 1, sizeof(*rp));
	for (size_t i = 0; i < rq->n_recipients; i++) {
		if (!job->set[i])
			transport_job_result(job, rq->recipients[i]->index, ZFARM__STATUS__TEMPFAIL,
					     0, "4.3.0", "transport gave no result");
		rp[i] = &job->results[i];
	}
	rl = sanitized(relay, TRANSPORT_RELAY_MAX);
	dr.results = rp;
	dr.n_results = rq->n_recipients;
	dr.relay = rl;
	dr.connection_failed = connection_failed;
	frame_init(&f, job->frame->request_id);
	f.body_case = ZFARM__FRAME__BODY_DELIVERY_REPLY;
	f.delivery_reply = &dr;
	if (frame_conn_send(c->fc, &f, err, sizeof(err)) < 0)
		log_warn("%s: cannot answer the scheduler: %s", rq->ref->queue_id, err);
	free(rl);
	free(rp);
	c->job = NULL;
	c->served++;
	job_free(job);
	farm_server_request_end(tp.srv);
	if (farm_server_draining(tp.srv))
		frame_conn_close_after_flush(c->fc);
}

/* ---- connections ---- */

/*
 * conn_release - drop c now: cancel its job and free it; with account,
 * end its request and session in the skeleton (not at exit).
 */
static void conn_release(struct conn *c, bool account)
{
	struct transport_job *job = c->job;

	if (job) {
		c->job = NULL;
		tp.ops->cancel(job);
		job_free(job);
		if (account)
			farm_server_request_end(tp.srv);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		tp.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	frame_conn_free(&c->fc);
	free(c);
	if (account)
		farm_server_session_end(tp.srv);
}

static void conn_close(struct conn *c)
{
	conn_release(c, true);
}

/* request_check - is rq something a job can be made of?  NULL or why not. */
static const char *request_check(const Zfarm__DeliveryRequest *rq)
{
	if (!rq->ref || !rq->ref->queue_id || !qid_valid(rq->ref->queue_id))
		return "a DeliveryRequest without a valid queue ID";
	for (size_t i = 0; i < rq->n_recipients; i++)
		if (!rq->recipients[i])
			return "a DeliveryRequest with an empty recipient";
	return NULL;
}

static void conn_on_recv(struct frame_conn *fc, Zfarm__Frame *f, void *arg)
{
	struct conn *c = arg;
	struct transport_job *job;
	const char *bad;

	(void)fc;
	if (f->body_case != ZFARM__FRAME__BODY_DELIVERY) {
		log_warn("the scheduler sent a %s frame, not a DeliveryRequest; closing the "
			 "connection",
			 frame_body_name(f));
		frame_free(&f);
		conn_close(c);
		return;
	}
	if (c->job) {
		log_warn("%s: protocol error: a second DeliveryRequest (%s) while one runs; "
			 "closing the connection",
			 transport_job_qid(c->job),
			 f->delivery->ref && f->delivery->ref->queue_id ? f->delivery->ref->queue_id
									: "?");
		frame_free(&f);
		conn_close(c);
		return;
	}
	bad = request_check(f->delivery);
	if (bad) {
		log_warn("the scheduler sent %s; closing the connection", bad);
		frame_free(&f);
		conn_close(c);
		return;
	}
	job = xcalloc(1, sizeof(*job));
	job->c = c;
	job->frame = f;
	job->rq = f->delivery;
	job->results = xcalloc(job->rq->n_recipients + 1, sizeof(*job->results));
	job->set = xcalloc(job->rq->n_recipients + 1, sizeof(*job->set));
	for (size_t i = 0; i < job->rq->n_recipients; i++) {
		zfarm__recipient_result__init(&job->results[i]);
		/* Ours to free: no static default strings. */
		job->results[i].enhanced_code = NULL;
		job->results[i].text = NULL;
		job->results[i].index = job->rq->recipients[i]->index;
	}
	c->job = job;
	farm_server_request_begin(tp.srv);
	/* job may be done and freed when this returns: not touched again. */
	tp.ops->deliver(job, job->rq);
}

static void conn_on_close(struct frame_conn *fc, const char *reason, void *arg)
{
	struct conn *c = arg;

	(void)fc;
	if (reason[0])
		log_warn("%sscheduler connection closed: %s", c->job ? "job cancelled, " : "",
			 reason);
	else if (c->job)
		log_info("%s: the scheduler closed the connection; delivery cancelled",
			 transport_job_qid(c->job));
	conn_close(c);
}

static void transport_accept(struct farm_server *srv, int fd, const char *listener)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	(void)listener;
	c->fc = frame_conn_new(farm_server_base(srv), fd, 0, conn_on_recv, conn_on_close, c);
	if (!c->fc) {
		log_error("cannot set up a scheduler connection");
		free(c);
		farm_server_session_end(srv);
		return;
	}
	c->next = tp.conns;
	if (c->next)
		c->next->prev = c;
	tp.conns = c;
}

/*
 * transport_drain - connections that answered a delivery and wait idle
 * close now (the scheduler reconnects to a fresh child); one that has not
 * spoken yet carries a request about to arrive and is served first.
 */
static void transport_drain(struct farm_server *srv)
{
	(void)srv;
	for (struct conn *c = tp.conns; c; c = c->next)
		if (!c->job && c->served > 0)
			frame_conn_close_after_flush(c->fc);
}

/* ---- start and end ---- */

static int transport_init(struct farm_server *srv, char *err, size_t errlen)
{
	tp.srv = srv;
	return tp.ops->init ? tp.ops->init(srv, err, errlen) : 0;
}

static void transport_fini(struct farm_server *srv)
{
	while (tp.conns)
		conn_release(tp.conns, false);
	if (tp.ops->fini)
		tp.ops->fini(srv);
}

int transport_main(int argc, char **argv, const struct transport_ops *ops)
{
	static struct farm_server_ops fops;

	if (!ops->deliver || !ops->cancel)
		log_panic("transport %s: deliver and cancel are required", ops->name);
	tp.ops = ops;
	fops.name = ops->name;
	fops.flags = FARM_SERVER_EXPLICIT_REQUESTS;
	fops.init = transport_init;
	fops.accept = transport_accept;
	fops.drain = transport_drain;
	fops.fini = transport_fini;
	return farm_server_main(argc, argv, &fops);
}
