/*
 * ack_transport - an instant-ack transport farm, for the scheduler's
 * benchmarks and load test (bench/sched_bench.py,
 * tests/scheduler/test_sched_load.py).
 *
 * Not a real transport: it runs on the farm child skeleton like one (farmd
 * starts it as the farm of a channel, e.g. [farm smtp] with listen
 * unix:private/smtp, kind single, client_limit at least the channel's
 * concurrency) and answers every DeliveryRequest at once with a
 * DeliveryReply in which every recipient is delivered: status OK, 250,
 * "2.0.0", relay "ack".  Nothing is read from the queue store, so what is
 * measured is the scheduler alone.
 *
 * Statistics: if $ZF_ACK_STATS names a file, it is rewritten (a temporary
 * name, then rename, so a reader never sees half of it) at start, at the
 * first request, every ACK_STATS_INTERVAL_MS while requests come, and at
 * exit, as "key=value" lines:
 *   pid, first_request_mono, first_request_wall, last_request_mono
 *     (seconds as floats: CLOCK_MONOTONIC, which a driver on the same
 *     machine can compare with its own, and the wall clock; 0 before any),
 *   deliveries, recipients, connections, rejected (connections closed for
 *   a bad frame).
 * The first request and a summary at exit are also logged.
 *
 * Bounds: frames above FRAME_MAX_DEFAULT, undecodable frames and any frame
 * other than a DeliveryRequest close that connection (frame_conn is strict);
 * a peer that leaves more than ACK_OUT_HIGH bytes of replies unread is
 * closed too, so memory stays bounded whatever a peer does.  Requests are
 * answered inside the receive callback: draining closes every session at
 * once after its last reply is flushed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/farm_server.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "proto/queue.pb-c.h"

#define ACK_OUT_HIGH	      (1024u * 1024u)
#define ACK_STATS_INTERVAL_MS 100
#define ACK_STATS_ENV	      "ZF_ACK_STATS"

struct ack_session {
	struct farm_server *srv;
	struct frame_conn *conn;
	unsigned long id;
	LIST_ENTRY(ack_session) entry;
};

struct ack_stats {
	double first_mono, first_wall, last_mono;
	unsigned long long deliveries, recipients, connections, rejected;
};

struct ack_farm {
	LIST_HEAD(, ack_session) sessions;
	unsigned long next_id;
	struct ack_stats st;
	char *stats_path; /* NULL: no stats file */
	struct event *stats_timer;
	bool dirty; /* counts changed since the last write */
};

static double ack_clock(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ack_stats_write - replace the stats file; a failure is logged once per call. */
static void ack_stats_write(struct ack_farm *farm)
{
	char tmp[4200];
	FILE *f;

	farm->dirty = false;
	if (!farm->stats_path)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", farm->stats_path);
	f = fopen(tmp, "w");
	if (!f) {
		log_warn("stats file %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f,
		"pid=%ld\nfirst_request_mono=%.6f\nfirst_request_wall=%.6f\n"
		"last_request_mono=%.6f\ndeliveries=%llu\nrecipients=%llu\n"
		"connections=%llu\nrejected=%llu\n",
		(long)getpid(), farm->st.first_mono, farm->st.first_wall, farm->st.last_mono,
		farm->st.deliveries, farm->st.recipients, farm->st.connections, farm->st.rejected);
	if (fclose(f) != 0 || rename(tmp, farm->stats_path) < 0) {
		log_warn("stats file %s: %s", farm->stats_path, strerror(errno));
		unlink(tmp);
	}
}

static void ack_on_stats_timer(evutil_socket_t fd, short what, void *arg)
{
	struct ack_farm *farm = arg;

	(void)fd;
	(void)what;
	ack_stats_write(farm);
}

/* ack_dirty - the counts changed: the file is rewritten within the interval. */
static void ack_dirty(struct ack_farm *farm)
{
	struct timeval tv = {0, ACK_STATS_INTERVAL_MS * 1000};

	if (farm->dirty)
		return;
	farm->dirty = true;
	evtimer_add(farm->stats_timer, &tv);
}

static void ack_session_free(struct ack_session *s)
{
	struct farm_server *srv = s->srv;

	LIST_REMOVE(s, entry);
	frame_conn_free(&s->conn);
	free(s);
	farm_server_session_end(srv);
}

/* ack_count - one delivery of n recipients answered. */
static void ack_count(struct ack_farm *farm, size_t n)
{
	double mono = ack_clock(CLOCK_MONOTONIC);

	if (farm->st.deliveries == 0) {
		farm->st.first_mono = mono;
		farm->st.first_wall = ack_clock(CLOCK_REALTIME);
		log_info("first delivery request: mono=%.6f wall=%.6f", farm->st.first_mono,
			 farm->st.first_wall);
	}
	farm->st.last_mono = mono;
	farm->st.deliveries++;
	farm->st.recipients += n;
	if (farm->st.deliveries == 1)
		ack_stats_write(farm);
	else
		ack_dirty(farm);
}

/* ack_reply - every recipient delivered; -1 with a reason if it cannot be sent. */
static int ack_reply(struct ack_session *s, const Zfarm__Frame *f, char *err, size_t errlen)
{
	const Zfarm__DeliveryRequest *rq = f->delivery;
	size_t n = rq->n_recipients;
	Zfarm__RecipientResult *res = xcalloc(n ? n : 1, sizeof(*res));
	Zfarm__RecipientResult **rp = xcalloc(n ? n : 1, sizeof(*rp));
	Zfarm__DeliveryReply dr = ZFARM__DELIVERY_REPLY__INIT;
	Zfarm__Frame out;
	int rc;

	for (size_t i = 0; i < n; i++) {
		zfarm__recipient_result__init(&res[i]);
		res[i].index = rq->recipients[i] ? rq->recipients[i]->index : 0;
		res[i].status = ZFARM__STATUS__OK;
		res[i].smtp_code = 250;
		res[i].enhanced_code = "2.0.0";
		res[i].text = "250 2.0.0 ok";
		rp[i] = &res[i];
	}
	dr.results = rp;
	dr.n_results = n;
	dr.relay = "ack";
	frame_init(&out, f->request_id);
	out.body_case = ZFARM__FRAME__BODY_DELIVERY_REPLY;
	out.delivery_reply = &dr;
	rc = frame_conn_send(s->conn, &out, err, errlen);
	free(rp);
	free(res);
	return rc;
}

static void ack_on_recv(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct ack_session *s = arg;
	struct ack_farm *farm = farm_server_ctx(s->srv);
	char err[256];

	(void)conn;
	if (f->body_case != ZFARM__FRAME__BODY_DELIVERY || !f->delivery) {
		log_warn("session %lu: a %s frame is not a DeliveryRequest; closing", s->id,
			 frame_body_name(f));
		farm->st.rejected++;
		ack_dirty(farm);
		frame_free(&f);
		ack_session_free(s);
		return;
	}
	farm_server_request_begin(s->srv);
	if (ack_reply(s, f, err, sizeof(err)) < 0) {
		log_warn("session %lu: cannot reply: %s; closing", s->id, err);
		farm_server_request_end(s->srv);
		frame_free(&f);
		ack_session_free(s);
		return;
	}
	ack_count(farm, f->delivery->n_recipients);
	farm_server_request_end(s->srv);
	frame_free(&f);
	if (frame_conn_output_pending(s->conn) > ACK_OUT_HIGH) {
		log_warn("session %lu: peer leaves over %u bytes of replies unread; closing", s->id,
			 ACK_OUT_HIGH);
		farm->st.rejected++;
		ack_dirty(farm);
		ack_session_free(s);
		return;
	}
	if (farm_server_draining(s->srv))
		frame_conn_close_after_flush(s->conn);
}

static void ack_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct ack_session *s = arg;
	struct ack_farm *farm = farm_server_ctx(s->srv);

	(void)conn;
	if (reason[0]) {
		log_warn("session %lu: closed: %s", s->id, reason);
		farm->st.rejected++;
		ack_dirty(farm);
	}
	ack_session_free(s);
}

static void ack_accept(struct farm_server *srv, int fd, const char *listener)
{
	struct ack_farm *farm = farm_server_ctx(srv);
	struct ack_session *s = xcalloc(1, sizeof(*s));

	(void)listener;
	s->srv = srv;
	s->id = ++farm->next_id;
	s->conn = frame_conn_new(farm_server_base(srv), fd, 0, ack_on_recv, ack_on_close, s);
	if (!s->conn) {
		log_error("session %lu: cannot set up the connection", s->id);
		free(s);
		farm_server_session_end(srv);
		return;
	}
	LIST_INSERT_HEAD(&farm->sessions, s, entry);
	farm->st.connections++;
	ack_dirty(farm);
}

/* ack_drain - nothing is ever under way between frames: close them all. */
static void ack_drain(struct farm_server *srv)
{
	struct ack_farm *farm = farm_server_ctx(srv);
	struct ack_session *s;

	/* The close callbacks run later, from the loop: the list stays intact. */
	for (s = LIST_FIRST(&farm->sessions); s; s = LIST_NEXT(s, entry))
		frame_conn_close_after_flush(s->conn);
}

static int ack_init(struct farm_server *srv, char *err, size_t errlen)
{
	struct ack_farm *farm = xcalloc(1, sizeof(*farm));
	const char *path = getenv(ACK_STATS_ENV);

	LIST_INIT(&farm->sessions);
	farm->stats_timer = evtimer_new(farm_server_base(srv), ack_on_stats_timer, farm);
	if (!farm->stats_timer) {
		snprintf(err, errlen, "evtimer_new failed");
		free(farm);
		return -1;
	}
	if (path && path[0])
		farm->stats_path = xstrdup(path);
	farm_server_set_ctx(srv, farm);
	ack_stats_write(farm);
	return 0;
}

static void ack_fini(struct farm_server *srv)
{
	struct ack_farm *farm = farm_server_ctx(srv);

	while (!LIST_EMPTY(&farm->sessions)) {
		struct ack_session *s = LIST_FIRST(&farm->sessions);

		LIST_REMOVE(s, entry);
		frame_conn_free(&s->conn);
		free(s);
	}
	log_info("exiting: deliveries=%llu, recipients=%llu, connections=%llu, rejected=%llu",
		 farm->st.deliveries, farm->st.recipients, farm->st.connections, farm->st.rejected);
	ack_stats_write(farm);
	event_free(farm->stats_timer);
	free(farm->stats_path);
	free(farm);
	farm_server_set_ctx(srv, NULL);
}

static const struct farm_server_ops ack_ops = {
    .name = "ack_transport",
    .flags = FARM_SERVER_EXPLICIT_REQUESTS,
    .init = ack_init,
    .accept = ack_accept,
    .drain = ack_drain,
    .fini = ack_fini,
};

int main(int argc, char **argv)
{
	return farm_server_main(argc, argv, &ack_ops);
}
