/*
 * routerd - the router farm's main(): RouteRequests in, routing results
 * recorded durably in the message's control record, the handle on to the
 * scheduler, RouteReply back; VerifyRequests answered from the same tables.
 *
 * Runs under farmd (or alone with -s); clients (smtpserver children, the
 * reinjector) keep a connection and pipeline requests on it, so the farm
 * uses explicit requests (busy = a message is being routed).
 *
 * One RouteRequest:
 *   1. open the message (qstore_read_flags, once for steps 1 to 3: the
 *      control record is read and appended through the same reader);
 *      gone: PERMFAIL; damaged: quarantine
 *   2. its control record already holds a routing set: skip to 4, so
 *      routing again after a crash is idempotent (after a requeue: a set
 *      since the RequeueRecord; routeset.h)
 *   3. route every envelope recipient (route_resolve) (after a requeue:
 *      those of the superseded routes, leaving out the addresses of the
 *      routes that still count; the new set follows the old ones), append the
 *      RouteRecords and the routed marker in one append (unless a
 *      recipient has a temporary 4.x routing error: then nothing is
 *      written and the answer is TEMPFAIL, the message waits), and log
 *      "ID: to=<final>, orig_to=<rcpt>, channel=C, nexthop=N"
 *   4. SchedSubmit to the scheduler; when it acks (or cannot be reached:
 *      logged, the message waits for the reinjector), RouteReply OK
 *
 * Parameters (see router(8)): mydestination, recipient_delimiter,
 * virtual_alias_maps, alias_maps, local_recipient_maps, transport_maps,
 * relayhost, allow_mail_to_commands, allow_mail_to_files,
 * scheduler_endpoint, queue_directory, queue_store, and the [channel NAME]
 * sections (common/channel.h).  Tables are checked for changes at most once
 * a second and reloaded only when the new file is good.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/channel.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/farm_server.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/qstore.h"
#include "common/xalloc.h"
#include "router/route.h"
#include "router/routeset.h"
#include "router/sched_link.h"
#include "common/table.h"

struct router {
	struct farm_server *srv;
	struct qstore *qs;
	struct sched_link *sched;
	struct channel_table *channels;
	struct route_config rc;
	char **mydest;
	struct table *tables[4]; /* virtual, aliases, local recipients, transport */
	struct table **domain_tables;
	char *table_err[4]; /* the last reload failure of each, logged once */
	char **domain_err;
	struct route_channel *rchan;
	char *relayhost;
	char *delimiter;
	uint64_t checked_ms; /* last table_refresh round */
	struct client *clients;
};

/* One client connection (an smtpserver child, the reinjector). */
struct client {
	struct client *next, *prev; /* router.clients */
	struct router *r;
	struct frame_conn *conn;
	unsigned inflight; /* RouteRequests waiting for the scheduler */
	bool closed;	   /* the peer went; freed when inflight drops to 0 */
};

/* One RouteRequest between its routing and the scheduler's ack. */
struct job {
	struct client *c;
	uint64_t request_id;
	char qid[QID_SIZE];
	unsigned routed;
};

static struct router router;

/* ---- tables ---- */

static void router_refresh(struct router *r)
{
	uint64_t now = clock_mono_ms();
	char err[512];

	if (now - r->checked_ms < 1000)
		return;
	r->checked_ms = now;
	for (size_t i = 0; i < 4 + r->rc.n_channels; i++) {
		struct table *t = i < 4 ? r->tables[i] : r->domain_tables[i - 4];
		char **last = i < 4 ? &r->table_err[i] : &r->domain_err[i - 4];

		if (!t)
			continue;
		if (table_refresh(t, err, sizeof(err)) >= 0) {
			free(*last);
			*last = NULL;
		} else if (!*last || strcmp(*last, err) != 0) {
			/* Once per problem, not once a second while it lasts. */
			log_warn("table %s not reloaded, the old one stays in use: %s",
				 table_spec(t), err);
			free(*last);
			*last = xstrdup(err);
		}
	}
}

static int router_table(const struct config *cfg, const char *param, struct table **out, char *err,
			size_t errlen)
{
	const char *spec;
	char why[512];

	if (config_get_string(cfg, NULL, NULL, param, "", &spec, err, errlen) < 0)
		return -1;
	while (*spec == ' ' || *spec == '\t')
		spec++;
	if (!spec[0])
		return 0;
	*out = table_open(spec, why, sizeof(why));
	if (!*out) {
		snprintf(err, errlen, "parameter %s: %s", param, why);
		return -1;
	}
	return 0;
}

static bool list_has(char **list, const char *word)
{
	for (size_t i = 0; list && list[i]; i++)
		if (strcasecmp(list[i], word) == 0)
			return true;
	return false;
}

static int router_configure(struct router *r, const struct config *cfg, char *err, size_t errlen)
{
	static const char *const maps[4] = {"virtual_alias_maps", "alias_maps",
					    "local_recipient_maps", "transport_maps"};
	char **cmds = NULL, **files = NULL, def[600], why[512];
	const char *v;
	size_t n = 0;

	snprintf(def, sizeof(def), "localhost %s",
		 config_get_default(cfg, NULL, NULL, "myhostname", "localhost"));
	if (config_get_list(cfg, NULL, NULL, "mydestination", def, &r->mydest, &n, err, errlen) < 0)
		return -1;
	r->rc.mydestination = (const char *const *)r->mydest;
	r->rc.n_mydestination = n;
	if (config_get_string(cfg, NULL, NULL, "recipient_delimiter", "+", &v, err, errlen) < 0)
		return -1;
	r->delimiter = xstrdup(v);
	r->rc.recipient_delimiter = r->delimiter;
	if (config_get_string(cfg, NULL, NULL, "relayhost", "", &v, err, errlen) < 0)
		return -1;
	r->relayhost = xstrdup(v);
	r->rc.relayhost = r->relayhost;
	for (size_t i = 0; i < 4; i++)
		if (router_table(cfg, maps[i], &r->tables[i], err, errlen) < 0)
			return -1;
	r->rc.virtual_alias_maps = r->tables[0];
	r->rc.alias_maps = r->tables[1];
	r->rc.local_recipient_maps = r->tables[2];
	r->rc.transport_maps = r->tables[3];
	if (config_get_list(cfg, NULL, NULL, "allow_mail_to_commands", "alias", &cmds, NULL, err,
			    errlen) < 0 ||
	    config_get_list(cfg, NULL, NULL, "allow_mail_to_files", "alias", &files, NULL, err,
			    errlen) < 0)
		return -1;
	r->rc.allow_alias_commands = list_has(cmds, "alias");
	r->rc.allow_alias_files = list_has(files, "alias");
	config_list_free(&cmds);
	config_list_free(&files);

	r->channels = channel_table_load(cfg, err, errlen);
	if (!r->channels)
		return -1;
	r->rc.n_channels = channel_table_count(r->channels);
	r->rchan = xcalloc(r->rc.n_channels + 1, sizeof(*r->rchan));
	r->domain_tables = xcalloc(r->rc.n_channels + 1, sizeof(*r->domain_tables));
	r->domain_err = xcalloc(r->rc.n_channels + 1, sizeof(*r->domain_err));
	for (size_t i = 0; i < r->rc.n_channels; i++) {
		const struct channel_def *d = channel_table_get(r->channels, i);

		r->rchan[i].name = d->name;
		if (d->domains) {
			r->domain_tables[i] = table_open(d->domains, why, sizeof(why));
			if (!r->domain_tables[i]) {
				snprintf(err, errlen, "channel %s: domains: %s", d->name, why);
				return -1;
			}
		}
		r->rchan[i].domains = r->domain_tables[i];
	}
	r->rc.channels = r->rchan;
	return 0;
}

/* ---- replies ---- */

static void client_free_if_done(struct client *c)
{
	if (c->closed && c->inflight == 0) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->r->clients = c->next;
		if (c->next)
			c->next->prev = c->prev;
		frame_conn_free(&c->conn);
		free(c);
	}
}

static void reply_route(struct client *c, uint64_t id, Zfarm__Status status, const char *reason,
			unsigned routed)
{
	Zfarm__Frame f;
	Zfarm__RouteReply rr = ZFARM__ROUTE_REPLY__INIT;
	char err[256];

	if (c->closed)
		return;
	rr.status = status;
	rr.reason = (char *)reason;
	rr.routed = routed;
	frame_init(&f, id);
	f.body_case = ZFARM__FRAME__BODY_ROUTE_REPLY;
	f.route_reply = &rr;
	if (frame_conn_send(c->conn, &f, err, sizeof(err)) < 0)
		log_warn("cannot answer a route request: %s", err);
}

static void job_on_submitted(void *arg, bool ok, const char *reason)
{
	struct job *j = arg;
	struct client *c = j->c;

	if (ok)
		log_debug("%s: handed to the scheduler", j->qid);
	else
		log_warn("%s: routed, but not handed to the scheduler: %s; the message stays "
			 "in the queue for the reinjector",
			 j->qid, reason);
	reply_route(c, j->request_id, ZFARM__STATUS__OK, ok ? "" : reason, j->routed);
	c->inflight--;
	farm_server_request_end(c->r->srv);
	free(j);
	if (c->inflight == 0 && !c->closed && farm_server_draining(c->r->srv))
		frame_conn_close_after_flush(c->conn);
	client_free_if_done(c);
}

/* ---- routing one message ---- */

static char *s_or_empty(const char *s)
{
	return (char *)(s ? s : "");
}

/* A set of (channel, nexthop, address) keys: open addressing on FNV-1a. */
struct dedup {
	char **keys;
	size_t cap;
};

static struct dedup dedup_new(size_t n)
{
	struct dedup d;

	for (d.cap = 16; d.cap < 2 * n; d.cap *= 2)
		;
	d.keys = xcalloc(d.cap, sizeof(*d.keys));
	return d;
}

/* dedup_add - false if the key was there already. */
static bool dedup_add(struct dedup *d, const char *channel, const char *nexthop,
		      const char *address)
{
	char *key;
	uint64_t h = 1469598103934665603ULL;
	size_t i;

	if (asprintf(&key, "%s\n%s\n%s", channel, nexthop, address) < 0)
		abort();
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	for (i = h & (d->cap - 1); d->keys[i]; i = (i + 1) & (d->cap - 1))
		if (strcmp(d->keys[i], key) == 0) {
			free(key);
			return false;
		}
	d->keys[i] = key;
	return true;
}

static void dedup_free(struct dedup *d)
{
	for (size_t i = 0; i < d->cap; i++)
		free(d->keys[i]);
	free(d->keys);
	d->keys = NULL;
}

/*
 * route_message - steps 1 to 3; returns the status for the reply, the
 * number of routes in *routed.
 */
static Zfarm__Status route_message(struct router *r, const char *qid, unsigned *routed, char *why,
				   size_t whylen)
{
	struct qstore_reader *rd;
	const Zfarm__Envelope *env;
	Zfarm__CtlRecord **old = NULL, **recs = NULL, routed_rec = ZFARM__CTL_RECORD__INIT;
	Zfarm__RouteRecord *rr = NULL;
	struct route_result *res = NULL;
	size_t nold = 0, total = 0, k = 0;
	struct dedup seen = {0};
	struct routeset rs = {0};
	char err[512];
	int errnum = 0;
	Zfarm__Status st = ZFARM__STATUS__OK;

	/* One open for the envelope, the records and the append (qstore_read_flags). */
	rd = qstore_read_flags(r->qs, qid, QSTORE_APPEND, &errnum, err, sizeof(err));
	if (!rd) {
		snprintf(why, whylen, "%s", err);
		if (errnum == EBADMSG) {
			log_error("%s: damaged queue file, quarantined: %s", qid, err);
			qstore_quarantine(r->qs, qid, err, sizeof(err));
		}
		return errnum == ENOENT || errnum == EBADMSG ? ZFARM__STATUS__PERMFAIL
							     : ZFARM__STATUS__TEMPFAIL;
	}
	env = qstore_envelope(rd);
	if (qstore_reader_ctl_load(rd, &old, &nold, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "control record: %s", err);
		st = ZFARM__STATUS__TEMPFAIL;
		goto out;
	}
	if (routeset_scan(old, nold, env->n_recipients, &rs, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "control record: %s", err);
		st = ZFARM__STATUS__TEMPFAIL;
		goto out;
	}
	if (!rs.due) {
		log_debug("%s: already routed (%zu routes)", qid, rs.last);
		*routed = (unsigned)rs.last;
		goto out;
	}
	if (rs.requeue)
		log_info("%s: requeued: routing %zu of %zu recipient(s) again", qid,
			 routeset_rerouted(&rs), env->n_recipients);
	router_refresh(r);
	res = xcalloc(env->n_recipients ? env->n_recipients : 1, sizeof(*res));
	for (size_t i = 0; i < env->n_recipients; i++) {
		if (!routeset_routes_rcpt(&rs, i))
			continue;
		if (route_resolve(&r->rc, env->recipients[i]->address, &res[i], err, sizeof(err)) <
		    0) {
			snprintf(why, whylen, "routing <%s>: %s", env->recipients[i]->address, err);
			st = ZFARM__STATUS__TEMPFAIL;
			for (size_t j = 0; j < i; j++)
				route_result_free(&res[j]);
			goto out;
		}
		total += res[i].n;
		/*
		 * A temporary routing failure (4.x: a table or :include: file
		 * that cannot be read) routes nothing: a routing set is final,
		 * so the whole message waits for a retry (the reinjector).
		 */
		for (size_t t = 0; t < res[i].n; t++)
			if (res[i].t[t].error[0] == '4') {
				snprintf(why, whylen, "temporary routing failure for <%s>: %s",
					 env->recipients[i]->address, res[i].t[t].error);
				st = ZFARM__STATUS__TEMPFAIL;
				for (size_t j = 0; j <= i; j++)
					route_result_free(&res[j]);
				goto out;
			}
	}
	rr = xcalloc(total ? total : 1, sizeof(*rr));
	recs = xcalloc(total + 1, sizeof(*recs));
	seen = dedup_new(total);
	for (size_t i = 0; i < env->n_recipients; i++) {
		const Zfarm__EnvRecipient *er = env->recipients[i];

		for (size_t t = 0; t < res[i].n; t++) {
			const struct route_target *tg = &res[i].t[t];
			Zfarm__CtlRecord *cr;

			/* Two recipients expanding to one delivery: delivered once. */
			if (!tg->error[0] &&
			    !dedup_add(&seen, tg->channel, tg->nexthop, tg->address))
				continue;
			/* Requeue: delivered or failed before, it stays so. */
			if (routeset_kept(&rs, tg->address)) {
				log_info(
				    "%s: to=<%s>, orig_to=<%s>: final already, not routed again",
				    qid, tg->address, er->address);
				continue;
			}
			cr = xmalloc(sizeof(*cr));

			zfarm__route_record__init(&rr[k]);
			rr[k].index = (uint32_t)k;
			rr[k].orig_index = (uint32_t)i;
			rr[k].orig_address = s_or_empty(er->address);
			rr[k].orcpt = s_or_empty(er->orcpt);
			rr[k].address = s_or_empty(tg->address);
			rr[k].channel = s_or_empty(tg->channel);
			rr[k].nexthop = s_or_empty(tg->nexthop);
			rr[k].user = s_or_empty(tg->user);
			rr[k].notify = er->notify;
			rr[k].error = s_or_empty(tg->error);
			zfarm__ctl_record__init(cr);
			cr->body_case = ZFARM__CTL_RECORD__BODY_ROUTE;
			cr->route = &rr[k];
			recs[k++] = cr;
		}
	}
	dedup_free(&seen);
	for (size_t x = 0; x < k; x++)
		rr[x].total = (uint32_t)k;
	total = k;
	routed_rec.body_case = ZFARM__CTL_RECORD__BODY_ROUTED;
	routed_rec.routed = true;
	recs[total] = &routed_rec;
	/*
	 * Not synced: the scheduler's first durable append (a result, a
	 * notice, a hold) makes the routes durable with it, and routes an OS
	 * crash loses are made again (the message comes back unrouted).  A
	 * message delivered and removed before any such append loses nothing
	 * either: its removal was not synced, so it comes back whole.
	 */
	if (qstore_reader_ctl_append_lazy(rd, recs, total + 1, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "cannot record the routes: %s", err);
		st = ZFARM__STATUS__TEMPFAIL;
	} else {
		for (k = 0; k < total; k++) {
			if (rr[k].error[0])
				log_info("%s: to=<%s>, orig_to=<%s>, channel=%s, error=%s", qid,
					 rr[k].address, rr[k].orig_address, rr[k].channel,
					 rr[k].error);
			else
				log_info("%s: to=<%s>, orig_to=<%s>, channel=%s, nexthop=%s", qid,
					 rr[k].address, rr[k].orig_address, rr[k].channel,
					 rr[k].nexthop[0] ? rr[k].nexthop : "-");
		}
		*routed = (unsigned)total;
	}
	for (k = 0; k < total; k++)
		free(recs[k]);
	free(recs);
	free(rr);
	for (size_t i = 0; i < env->n_recipients; i++)
		route_result_free(&res[i]);
out:
	free(res);
	routeset_release(&rs);
	qstore_ctl_free(&old, nold);
	qstore_reader_free(&rd);
	return st;
}

static void handle_route(struct client *c, Zfarm__Frame *f)
{
	struct router *r = c->r;
	Zfarm__QueueRef *ref = f->route->ref;
	struct job *j;
	unsigned routed = 0;
	char why[600] = "";
	Zfarm__Status st;

	if (!ref || !ref->queue_id || !qid_valid(ref->queue_id) ||
	    strlen(ref->queue_id) != QID_LEN) {
		reply_route(c, f->request_id, ZFARM__STATUS__PERMFAIL, "bad queue ID", 0);
		return;
	}
	farm_server_request_begin(r->srv);
	st = route_message(r, ref->queue_id, &routed, why, sizeof(why));
	if (st != ZFARM__STATUS__OK) {
		log_warn("%s: not routed: %s", ref->queue_id, why);
		reply_route(c, f->request_id, st, why, 0);
		farm_server_request_end(r->srv);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->c = c;
	j->request_id = f->request_id;
	j->routed = routed;
	snprintf(j->qid, sizeof(j->qid), "%s", ref->queue_id);
	c->inflight++;
	sched_link_submit(r->sched, j->qid, qstore_backend(r->qs), ref->size, ref->nrcpt,
			  ref->arrival, job_on_submitted, j);
}

static void handle_verify(struct client *c, Zfarm__Frame *f)
{
	struct router *r = c->r;
	Zfarm__Frame out;
	Zfarm__VerifyReply vr = ZFARM__VERIFY_REPLY__INIT;
	struct route_result res = {0};
	char err[512], text[600] = "", code[16] = "2.1.5";
	const char *addr = f->verify->address ? f->verify->address : "";

	router_refresh(r);
	vr.status = ZFARM__STATUS__OK;
	vr.smtp_code = 250;
	if (route_resolve(&r->rc, addr, &res, err, sizeof(err)) < 0) {
		vr.status = ZFARM__STATUS__TEMPFAIL;
		vr.smtp_code = 450;
		snprintf(code, sizeof(code), "4.3.0");
		snprintf(text, sizeof(text), "Recipient address lookup failed");
	} else {
		/* Deliverable if any branch is; else the first branch's error. */
		bool any_ok = false;

		for (size_t i = 0; i < res.n; i++)
			if (!res.t[i].error[0])
				any_ok = true;
		if (!any_ok && res.n > 0) {
			const char *e = res.t[0].error;
			size_t cl = strcspn(e, " ");

			snprintf(code, sizeof(code), "%.*s", (int)(cl < 15 ? cl : 15), e);
			snprintf(text, sizeof(text), "%s", e[cl] ? e + cl + 1 : "");
			vr.status = e[0] == '4' ? ZFARM__STATUS__TEMPFAIL : ZFARM__STATUS__PERMFAIL;
			vr.smtp_code = e[0] == '4' ? 450 : 550;
		}
		route_result_free(&res);
	}
	vr.enhanced_code = code;
	vr.text = text;
	frame_init(&out, f->request_id);
	out.body_case = ZFARM__FRAME__BODY_VERIFY_REPLY;
	out.verify_reply = &vr;
	if (frame_conn_send(c->conn, &out, err, sizeof(err)) < 0)
		log_warn("cannot answer a verify request: %s", err);
}

/* ---- connections ---- */

static void client_on_recv(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct client *c = arg;

	(void)conn;
	switch (f->body_case) {
	case ZFARM__FRAME__BODY_ROUTE:
		handle_route(c, f);
		break;
	case ZFARM__FRAME__BODY_VERIFY:
		handle_verify(c, f);
		break;
	case ZFARM__FRAME__BODY_PING: {
		Zfarm__Frame pong;
		Zfarm__Ping p = ZFARM__PING__INIT;
		char err[128];

		frame_init(&pong, f->request_id);
		pong.body_case = ZFARM__FRAME__BODY_PONG;
		pong.pong = &p;
		frame_conn_send(c->conn, &pong, err, sizeof(err));
		break;
	}
	default:
		log_warn("unexpected %s frame from a client; closing it", frame_body_name(f));
		frame_conn_close_after_flush(c->conn);
		break;
	}
	frame_free(&f);
}

static void client_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct client *c = arg;

	(void)conn;
	if (reason[0])
		log_warn("client connection closed: %s", reason);
	c->closed = true;
	farm_server_session_end(c->r->srv);
	client_free_if_done(c);
}

static void routerd_accept(struct farm_server *srv, int fd, const char *listener)
{
	struct client *c = xcalloc(1, sizeof(*c));

	(void)listener;
	c->r = &router;
	c->conn = frame_conn_new(farm_server_base(srv), fd, 0, client_on_recv, client_on_close, c);
	if (!c->conn) {
		log_error("cannot set up a client connection");
		free(c);
		farm_server_session_end(srv);
		return;
	}
	c->next = router.clients;
	if (c->next)
		c->next->prev = c;
	router.clients = c;
}

/*
 * routerd_drain - farmd wants this child gone (reload, stop): connections
 * with nothing in flight close now (their clients reconnect to a fresh
 * child); the others close when their last answer is out.
 */
static void routerd_drain(struct farm_server *srv)
{
	(void)srv;
	for (struct client *c = router.clients; c; c = c->next)
		if (!c->closed && c->inflight == 0)
			frame_conn_close_after_flush(c->conn);
}

/* ---- start and end ---- */

static int routerd_init(struct farm_server *srv, char *err, size_t errlen)
{
	struct router *r = &router;
	const struct config *cfg = farm_server_config(srv);
	const char *store, *sched;
	char rundir[4096], qdir[4200], *q = NULL;

	r->srv = srv;
	if (router_configure(r, cfg, err, errlen) < 0)
		return -1;
	if (farmd_run_directory(cfg, rundir, sizeof(rundir), err, errlen) < 0)
		return -1;
	snprintf(qdir, sizeof(qdir), "%s/queue", rundir);
	if (config_get_string(cfg, NULL, NULL, "queue_store", "spool", &store, err, errlen) < 0)
		return -1;
	q = xstrdup(config_get_default(cfg, NULL, NULL, "queue_directory", qdir));
	r->qs = qstore_open(store, q, err, errlen);
	free(q);
	if (!r->qs)
		return -1;
	if (config_get_string(cfg, NULL, NULL, "scheduler_endpoint", "unix:private/scheduler",
			      &sched, err, errlen) < 0)
		return -1;
	while (*sched == ' ')
		sched++;
	r->sched = sched_link_new(farm_server_base(srv),
				  strcmp(sched, "none") == 0 || !sched[0] ? NULL : sched, rundir,
				  err, errlen);
	if (!r->sched)
		return -1;
	return 0;
}

static void routerd_fini(struct farm_server *srv)
{
	struct router *r = &router;

	(void)srv;
	sched_link_free(&r->sched);
	qstore_close(&r->qs);
	for (size_t i = 0; i < 4; i++) {
		table_free(&r->tables[i]);
		free(r->table_err[i]);
	}
	for (size_t i = 0; r->domain_tables && i < r->rc.n_channels; i++) {
		table_free(&r->domain_tables[i]);
		free(r->domain_err[i]);
	}
	free(r->domain_tables);
	free(r->domain_err);
	free(r->rchan);
	channel_table_free(&r->channels);
	config_list_free(&r->mydest);
	free(r->relayhost);
	free(r->delimiter);
}

static const struct farm_server_ops routerd_ops = {
    .name = "router",
    .flags = FARM_SERVER_EXPLICIT_REQUESTS,
    .init = routerd_init,
    .accept = routerd_accept,
    .drain = routerd_drain,
    .fini = routerd_fini,
};

int main(int argc, char **argv)
{
	return farm_server_main(argc, argv, &routerd_ops);
}
