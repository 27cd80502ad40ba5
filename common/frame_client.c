/*
 * frame_client - see frame_client.h.
 *
 * Pending requests are a FIFO list.  Failures are marked on the entries and
 * reported from a zero-delay event, so callbacks never run inside the
 * caller's stack.  A request whose send failed stays in the list as failed.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/clock.h"
#include "common/endpoint.h"
#include "common/frame.h"
#include "common/frame_client.h"
#include "common/xalloc.h"

struct pending {
	struct pending *next;
	uint64_t id;
	uint64_t deadline_ms; /* 0: none */
	frame_client_reply_fn *fn;
	void *arg;
	bool failed;
	char reason[512];
};

struct frame_client {
	struct event_base *base;
	bool none;
	struct endpoint ep;
	char spec[704];
	unsigned timeout_ms;
	struct frame_conn *conn;
	uint64_t next_id;
	struct pending *head, *tail;
	size_t npending;
	struct event *flush; /* reports failures outside the caller's stack */
	struct event *timer; /* deadline check, armed only while pending */
};

/* reason_copy - truncating copy. */
static void reason_copy(char *dst, size_t n, const char *src)
{
	size_t len = strnlen(src, n - 1);

	memcpy(dst, src, len);
	dst[len] = '\0';
}

static void client_relink_tail(struct frame_client *c)
{
	c->tail = NULL;
	for (struct pending *p = c->head; p; p = p->next)
		c->tail = p;
}

static void client_fail_all(struct frame_client *c, const char *reason)
{
	for (struct pending *p = c->head; p; p = p->next)
		if (!p->failed) {
			p->failed = true;
			reason_copy(p->reason, sizeof(p->reason), reason);
		}
	event_active(c->flush, EV_TIMEOUT, 0);
}

static void client_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct frame_client *c = arg;
	struct pending **pp = &c->head, *p;
	struct pending *done = NULL, **dt = &done;

	(void)fd;
	(void)what;
	/* Unlink first: a callback may send new requests. */
	while ((p = *pp)) {
		if (p->failed) {
			*pp = p->next;
			p->next = NULL;
			*dt = p;
			dt = &p->next;
			c->npending--;
		} else {
			pp = &p->next;
		}
	}
	client_relink_tail(c);
	while ((p = done)) {
		done = p->next;
		if (p->fn)
			p->fn(p->arg, NULL, p->reason);
		free(p);
	}
}

static void client_arm(struct frame_client *c)
{
	struct timeval sec = {1, 0};

	if (c->timeout_ms && c->head && !evtimer_pending(c->timer, NULL))
		evtimer_add(c->timer, &sec);
}

static void client_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct frame_client *c = arg;
	uint64_t now = clock_mono_ms();

	(void)fd;
	(void)what;
	for (struct pending *p = c->head; p; p = p->next)
		if (!p->failed && p->deadline_ms && now >= p->deadline_ms) {
			char why[760];

			/* An endpoint that stopped answering: start over. */
			snprintf(why, sizeof(why), "%.700s did not answer in time", c->spec);
			frame_conn_free(&c->conn);
			client_fail_all(c, why);
			break;
		}
	client_arm(c);
}

static void client_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct frame_client *c = arg;
	char why[800];

	snprintf(why, sizeof(why), "connection to %.600s closed (%.100s)", c->spec,
		 reason[0] ? reason : "EOF");
	frame_conn_free(&conn);
	c->conn = NULL;
	client_fail_all(c, why);
}

static void client_on_recv(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct frame_client *c = arg;
	struct pending **pp, *p;

	(void)conn;
	for (pp = &c->head; (p = *pp); pp = &p->next)
		if (p->id == f->request_id && !p->failed)
			break;
	if (p) {
		*pp = p->next;
		client_relink_tail(c);
		c->npending--;
		if (p->fn)
			p->fn(p->arg, f, "");
		free(p);
	}
	frame_free(&f);
}

struct frame_client *frame_client_new(struct event_base *base, const char *spec,
				      const char *run_directory, unsigned timeout_ms, char *err,
				      size_t errlen)
{
	struct frame_client *c = xcalloc(1, sizeof(*c));
	char full[704];

	c->base = base;
	c->next_id = 1;
	c->timeout_ms = timeout_ms;
	if (!spec) {
		c->none = true;
		snprintf(c->spec, sizeof(c->spec), "none");
	} else {
		if (strncmp(spec, "unix:", 5) == 0 && spec[5] != '/') {
			snprintf(full, sizeof(full), "unix:%.400s/%.290s", run_directory, spec + 5);
			spec = full;
		}
		if (endpoint_parse(spec, &c->ep, err, errlen) < 0) {
			free(c);
			return NULL;
		}
		reason_copy(c->spec, sizeof(c->spec), spec);
	}
	c->flush = event_new(base, -1, 0, client_on_flush, c);
	c->timer = evtimer_new(base, client_on_timer, c);
	return c;
}

void frame_client_request(struct frame_client *c, Zfarm__Frame *f, frame_client_reply_fn *fn,
			  void *arg)
{
	struct pending *p = xcalloc(1, sizeof(*p));
	char why[512];
	int fd;

	p->id = c->next_id++;
	p->fn = fn;
	p->arg = arg;
	p->deadline_ms = c->timeout_ms ? clock_mono_ms() + c->timeout_ms : 0;
	p->next = NULL;
	if (c->tail)
		c->tail->next = p;
	else
		c->head = p;
	c->tail = p;
	c->npending++;
	client_arm(c);
	if (c->none) {
		p->failed = true;
		reason_copy(p->reason, sizeof(p->reason), "not configured (none)");
		event_active(c->flush, EV_TIMEOUT, 0);
		return;
	}
	if (!c->conn) {
		fd = endpoint_connect(&c->ep, true, why, sizeof(why));
		if (fd >= 0)
			c->conn =
			    frame_conn_new(c->base, fd, 0, client_on_recv, client_on_close, c);
		if (!c->conn) {
			p->failed = true;
			snprintf(p->reason, sizeof(p->reason), "%.250s: %.250s", c->spec,
				 fd >= 0 ? "cannot set up the connection" : why);
			event_active(c->flush, EV_TIMEOUT, 0);
			return;
		}
	}
	f->request_id = p->id;
	if (frame_conn_send(c->conn, f, why, sizeof(why)) < 0) {
		p->failed = true;
		snprintf(p->reason, sizeof(p->reason), "%.250s: %.250s", c->spec, why);
		event_active(c->flush, EV_TIMEOUT, 0);
	}
}

void frame_client_cancel(struct frame_client *c, void *arg)
{
	for (struct pending *p = c->head; p; p = p->next)
		if (p->arg == arg)
			p->fn = NULL;
}

size_t frame_client_pending(const struct frame_client *c)
{
	return c->npending;
}

const char *frame_client_spec(const struct frame_client *c)
{
	return c->spec;
}

void frame_client_free(struct frame_client **cp)
{
	struct frame_client *c = *cp;
	struct pending *p;

	if (!c)
		return;
	*cp = NULL;
	frame_conn_free(&c->conn);
	while ((p = c->head)) {
		c->head = p->next;
		free(p);
	}
	event_free(c->flush);
	event_free(c->timer);
	free(c);
}
