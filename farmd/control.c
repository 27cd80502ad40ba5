/* control - farmd's control socket; see control.h. */
#include "farmd/control.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/endpoint.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/xalloc.h"

#define CONTROL_MAX_FRAME (64u * 1024u)
#define CONTROL_MAX_CONNS 64
#define CONTROL_TIMEOUT_MS 30000u

struct control_conn {
	struct control_conn *next;
	struct control *ctl;
	struct frame_conn *conn;
};

struct control {
	struct event_base *base;
	char *path;
	int fd;
	struct event *ev;
	control_handler_fn *handler;
	void *arg;
	struct control_conn *conns;
	unsigned nconns;
};

static void control_conn_drop(struct control_conn *cc)
{
	struct control *ctl = cc->ctl;
	struct control_conn **pp;

	for (pp = &ctl->conns; *pp != cc; pp = &(*pp)->next)
		;
	*pp = cc->next;
	ctl->nconns--;
	frame_conn_free(&cc->conn);
	free(cc);
}

static void control_on_frame(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct control_conn *cc = arg;
	Zfarm__FarmControlReply reply;
	Zfarm__Frame out;
	char err[256];

	if (f->body_case != ZFARM__FRAME__BODY_FARM_CONTROL) {
		log_warn("control: unexpected %s frame: dropping client", frame_body_name(f));
		frame_free(&f);
		control_conn_drop(cc);
		return;
	}
	zfarm__farm_control_reply__init(&reply);
	cc->ctl->handler(f->farm_control, &reply, cc->ctl->arg);
	frame_init(&out, f->request_id);
	out.body_case = ZFARM__FRAME__BODY_FARM_CONTROL_REPLY;
	out.farm_control_reply = &reply;
	if (frame_conn_send(cc->conn, &out, err, sizeof(err)) < 0) {
		log_warn("control: reply: %s", err);
		control_conn_drop(cc);
	}
	frame_free(&f);
}

static void control_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct control_conn *cc = arg;

	if (*reason)
		log_warn("control: client dropped: %s", reason);
	control_conn_drop(cc);
}

static void control_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct control *ctl = arg;
	struct control_conn *cc;
	int fd;

	while ((fd = accept4((int)lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (ctl->nconns >= CONTROL_MAX_CONNS) {
			log_warn("control: more than %d clients: refusing one", CONTROL_MAX_CONNS);
			close(fd);
			continue;
		}
		cc = xcalloc(1, sizeof(*cc));
		cc->ctl = ctl;
		cc->conn = frame_conn_new(ctl->base, fd, CONTROL_MAX_FRAME, control_on_frame,
					  control_on_close, cc);
		if (cc->conn == NULL) {
			close(fd);
			free(cc);
			continue;
		}
		frame_conn_set_timeouts(cc->conn, CONTROL_TIMEOUT_MS, CONTROL_TIMEOUT_MS);
		cc->next = ctl->conns;
		ctl->conns = cc;
		ctl->nconns++;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		log_warn("control: accept: %s", strerror(errno));
}

struct control *control_new(struct event_base *base, const char *path,
			    control_handler_fn *handler, void *arg, char *err, size_t errlen)
{
	struct control *ctl;
	struct endpoint ep;
	char spec[sizeof(ep.path) + 8];
	int fd;

	snprintf(spec, sizeof(spec), "unix:%s", path);
	if (endpoint_parse(spec, &ep, err, errlen) < 0)
		return NULL;
	fd = endpoint_listen(&ep, 16, 0600, err, errlen);
	if (fd < 0)
		return NULL;
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->base = base;
	ctl->path = xstrdup(path);
	ctl->fd = fd;
	ctl->handler = handler;
	ctl->arg = arg;
	ctl->ev = event_new(base, fd, EV_READ | EV_PERSIST, control_on_accept, ctl);
	event_add(ctl->ev, NULL);
	return ctl;
}

void control_free(struct control **ctlp)
{
	struct control *ctl = *ctlp;

	if (ctl == NULL)
		return;
	while (ctl->conns)
		control_conn_drop(ctl->conns);
	event_free(ctl->ev);
	close(ctl->fd);
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
	*ctlp = NULL;
}
