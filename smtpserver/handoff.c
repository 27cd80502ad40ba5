/*
 * handoff - see handoff.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/endpoint.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "smtpserver/handoff.h"

/* Queued but unwritten bytes past which the router counts as stuck. */
#define HANDOFF_MAX_PENDING (256 * 1024)

struct handoff {
	struct event_base *base;
	struct endpoint ep;
	char spec[704];
	struct frame_conn *conn;
	uint64_t next_id;
	unsigned unanswered;
};

struct handoff *handoff_new(struct event_base *base, const char *spec, const char *run_directory,
			    char *err, size_t errlen)
{
	struct handoff *h = xcalloc(1, sizeof(*h));
	char full[700];

	if (strncmp(spec, "unix:", 5) == 0 && spec[5] != '/') {
		snprintf(full, sizeof(full), "unix:%s/%s", run_directory, spec + 5);
		spec = full;
	}
	if (endpoint_parse(spec, &h->ep, err, errlen) < 0) {
		free(h);
		return NULL;
	}
	snprintf(h->spec, sizeof(h->spec), "%s", spec);
	h->base = base;
	h->next_id = 1;
	return h;
}

static void handoff_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct handoff *h = arg;

	if (h->unanswered > 0)
		log_warn("router connection %s closed (%s) with %u hand-offs unanswered; "
			 "those messages stay in the queue for the reinjector",
			 h->spec, reason[0] ? reason : "EOF", h->unanswered);
	h->unanswered = 0;
	frame_conn_free(&conn);
	h->conn = NULL;
}

static void handoff_on_recv(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct handoff *h = arg;

	(void)conn;
	if (f->body_case == ZFARM__FRAME__BODY_ROUTE_REPLY) {
		Zfarm__RouteReply *r = f->route_reply;

		if (h->unanswered > 0)
			h->unanswered--;
		if (r->status != ZFARM__STATUS__OK)
			log_warn("router answered request %llu with status %d: %s",
				 (unsigned long long)f->request_id, (int)r->status,
				 r->reason ? r->reason : "");
	} else {
		log_warn("router %s sent an unexpected %s frame", h->spec, frame_body_name(f));
	}
	frame_free(&f);
}

static int handoff_connect(struct handoff *h, char *err, size_t errlen)
{
	int fd = endpoint_connect(&h->ep, true, err, errlen);

	if (fd < 0)
		return -1;
	h->conn = frame_conn_new(h->base, fd, 0, handoff_on_recv, handoff_on_close, h);
	if (!h->conn) {
		snprintf(err, errlen, "cannot set up the connection");
		return -1;
	}
	h->unanswered = 0;
	return 0;
}

int handoff_send(struct handoff *h, const char *qid, const char *store, uint64_t size,
		 unsigned nrcpt, int64_t arrival, char *err, size_t errlen)
{
	Zfarm__Frame f;
	Zfarm__RouteRequest req = ZFARM__ROUTE_REQUEST__INIT;
	Zfarm__QueueRef ref = ZFARM__QUEUE_REF__INIT;
	char why[256];

	if (!h->conn && handoff_connect(h, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "router %s: %s", h->spec, why);
		return -1;
	}
	if (frame_conn_output_pending(h->conn) > HANDOFF_MAX_PENDING) {
		snprintf(err, errlen, "router %s is not keeping up (%zu bytes unsent)", h->spec,
			 frame_conn_output_pending(h->conn));
		return -1;
	}
	ref.queue_id = (char *)qid;
	ref.store = (char *)store;
	ref.size = size;
	ref.nrcpt = nrcpt;
	ref.arrival = arrival;
	req.ref = &ref;
	frame_init(&f, h->next_id++);
	f.body_case = ZFARM__FRAME__BODY_ROUTE;
	f.route = &req;
	if (frame_conn_send(h->conn, &f, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "router %s: %s", h->spec, why);
		return -1;
	}
	h->unanswered++;
	return 0;
}

void handoff_free(struct handoff **hp)
{
	struct handoff *h = *hp;

	if (!h)
		return;
	*hp = NULL;
	frame_conn_free(&h->conn);
	free(h);
}
