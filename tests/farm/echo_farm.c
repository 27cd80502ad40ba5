/*
 * echo_farm - a tiny line-echo service on the farm child skeleton, the test
 * farm for common/farm_server.c and for farmd's integration tests.
 *
 * Protocol, one LF-terminated line at a time (a CR before the LF is
 * dropped), answers in order:
 *   SLOW <ms>   "OK\n" after <ms> milliseconds (reading pauses meanwhile)
 *   PID         "<pid>\n" of the serving process
 *   STRESS      "1\n" in stress mode, else "0\n"
 *   QUIT        the server closes the connection (after pending answers)
 *   other       the line itself, echoed back
 * A wakeup from farmd is logged ("wakeup received").
 * A bad SLOW argument answers "ERR\n".
 *
 * Bounds: input buffering stops at ECHO_READ_HIGH; a line longer than
 * ECHO_LINE_MAX closes the connection; while more than ECHO_OUT_HIGH bytes
 * of answers wait for a slow reader, no more lines are read.  A connection
 * being closed gets ECHO_CLOSE_TIMEOUT_MS to take its last answers.
 *
 * With --explicit-requests as the first argument (the rest are the
 * skeleton's options) every line is one request of
 * FARM_SERVER_EXPLICIT_REQUESTS: begun when the line is taken, ended when
 * it is answered (a SLOW line when its "OK" is queued), so "busy" means a
 * line is being answered and an idle connection is not busy; otherwise
 * one connection is one request.
 *
 * Draining (ops->drain): idle sessions are closed at once; a SLOW session
 * is closed right after its "OK".  Idle means answered at least one line
 * and nothing pending: a connection that has not spoken yet is a request
 * about to arrive (e.g. the one whose accept reached max_requests), so it
 * is served, not dropped.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "common/farm_server.h"
#include "common/log.h"
#include "common/xalloc.h"

#define ECHO_READ_HIGH	      (64u * 1024u)
#define ECHO_LINE_MAX	      (4u * 1024u)
#define ECHO_OUT_HIGH	      (64u * 1024u)
#define ECHO_SLOW_MAX_MS      (10ul * 60ul * 1000ul)
#define ECHO_CLOSE_TIMEOUT_MS 5000

struct echo_session {
	struct farm_server *srv;
	struct bufferevent *bev;
	struct event *slow; /* the pending SLOW answer's timer */
	bool slow_pending;
	bool in_request;     /* explicit mode: a request is begun, not ended */
	bool closing;	     /* no more input; freed once output is written */
	unsigned long lines; /* lines answered so far */
	unsigned long id;
	char *listener;
	LIST_ENTRY(echo_session) entry;
};

struct echo_farm {
	LIST_HEAD(, echo_session) sessions;
	unsigned long next_id;
};

static void echo_session_process(struct echo_session *s);

static bool echo_explicit; /* --explicit-requests */

/* echo_request_begin / end - explicit mode: one line is one request. */
static void echo_request_begin(struct echo_session *s)
{
	if (!echo_explicit)
		return;
	s->in_request = true;
	farm_server_request_begin(s->srv);
}

static void echo_request_end(struct echo_session *s)
{
	if (!s->in_request)
		return;
	s->in_request = false;
	farm_server_request_end(s->srv);
}

/* echo_session_destroy - release everything; tell the skeleton if asked. */
static void echo_session_destroy(struct echo_session *s, bool end_session)
{
	struct farm_server *srv = s->srv;

	log_debug("session %lu: closed, listener=%s", s->id, s->listener);
	LIST_REMOVE(s, entry);
	if (end_session)
		echo_request_end(s);
	if (s->slow)
		event_free(s->slow);
	bufferevent_free(s->bev);
	free(s->listener);
	free(s);
	if (end_session)
		farm_server_session_end(srv);
}

static void echo_session_free(struct echo_session *s)
{
	echo_session_destroy(s, true);
}

/* echo_session_adjust - read only when a line could be processed now. */
static void echo_session_adjust(struct echo_session *s)
{
	size_t out = evbuffer_get_length(bufferevent_get_output(s->bev));

	if (s->closing || s->slow_pending || out > ECHO_OUT_HIGH)
		bufferevent_disable(s->bev, EV_READ);
	else
		bufferevent_enable(s->bev, EV_READ);
}

/*
 * echo_session_close - stop reading and free the session once its queued
 * answers are written.  Returns true if it was freed already.
 */
static bool echo_session_close(struct echo_session *s)
{
	struct timeval tv = {ECHO_CLOSE_TIMEOUT_MS / 1000, (ECHO_CLOSE_TIMEOUT_MS % 1000) * 1000};

	s->closing = true;
	echo_session_adjust(s);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
		echo_session_free(s);
		return true;
	}
	bufferevent_set_timeouts(s->bev, NULL, &tv);
	return false;
}

static void echo_reply(struct echo_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void echo_reply(struct echo_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

static void echo_on_slow(evutil_socket_t fd, short what, void *arg)
{
	struct echo_session *s = arg;

	(void)fd;
	(void)what;
	s->slow_pending = false;
	echo_reply(s, "OK\n");
	echo_request_end(s);
	if (farm_server_draining(s->srv)) {
		echo_session_close(s);
		return;
	}
	echo_session_process(s);
}

static void echo_start_slow(struct echo_session *s, const char *arg)
{
	char *end;
	unsigned long ms;
	struct timeval tv;

	errno = 0;
	ms = strtoul(arg, &end, 10);
	if (errno || end == arg || *end != '\0' || *arg == '-' || ms > ECHO_SLOW_MAX_MS) {
		echo_reply(s, "ERR\n");
		return;
	}
	if (s->slow == NULL)
		s->slow = evtimer_new(bufferevent_get_base(s->bev), echo_on_slow, s);
	if (s->slow == NULL)
		log_fatal("session %lu: evtimer_new failed", s->id);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(s->slow, &tv);
	s->slow_pending = true;
}

/* echo_session_line - one command; returns true if the session was freed. */
static bool echo_session_line(struct echo_session *s, char *line, size_t len)
{
	s->lines++;
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (strcmp(line, "QUIT") == 0)
		return echo_session_close(s);
	/* The session is not idle (in_request) should this start a drain. */
	echo_request_begin(s);
	if (strcmp(line, "PID") == 0)
		echo_reply(s, "%ld\n", (long)getpid());
	else if (strcmp(line, "STRESS") == 0)
		echo_reply(s, "%d\n", farm_server_stress(s->srv) ? 1 : 0);
	else if (strncmp(line, "SLOW ", 5) == 0)
		echo_start_slow(s, line + 5);
	else if (evbuffer_add(bufferevent_get_output(s->bev), line, len) < 0 ||
		 evbuffer_add(bufferevent_get_output(s->bev), "\n", 1) < 0)
		log_fatal("session %lu: out of memory", s->id);
	if (!s->slow_pending)
		echo_request_end(s);
	return false;
}

/* echo_session_process - answer every complete line we may answer now. */
static void echo_session_process(struct echo_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);

	while (!s->closing && !s->slow_pending && evbuffer_get_length(out) <= ECHO_OUT_HIGH) {
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
		size_t pending = evbuffer_get_length(in);
		size_t len;
		char *line;
		bool freed;

		if (eol.pos < 0 ? pending > ECHO_LINE_MAX : (size_t)eol.pos > ECHO_LINE_MAX) {
			log_warn("session %lu: line longer than %u bytes, closing", s->id,
				 ECHO_LINE_MAX);
			echo_session_free(s);
			return;
		}
		if (eol.pos < 0)
			break;
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
		if (line == NULL)
			log_fatal("session %lu: out of memory", s->id);
		freed = echo_session_line(s, line, len);
		free(line);
		if (freed)
			return;
	}
	echo_session_adjust(s);
}

static void echo_on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	echo_session_process(arg);
}

static void echo_on_write(struct bufferevent *bev, void *arg)
{
	struct echo_session *s = arg;

	(void)bev;
	/* The output is empty: finish a close, or take input again. */
	if (s->closing)
		echo_session_free(s);
	else
		echo_session_process(s);
}

static void echo_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct echo_session *s = arg;

	(void)bev;
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		log_debug("session %lu: %s", s->id,
			  (what & BEV_EVENT_TIMEOUT) ? "timeout" : strerror(errno));
		echo_session_free(s);
	} else if (what & BEV_EVENT_EOF) {
		/* The peer may still read what is queued for it. */
		echo_session_close(s);
	}
}

static void echo_accept(struct farm_server *srv, int fd, const char *listener)
{
	struct echo_farm *farm = farm_server_ctx(srv);
	struct echo_session *s;

	s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->id = ++farm->next_id;
	s->listener = xstrdup(listener);
	s->bev = bufferevent_socket_new(farm_server_base(srv), fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		log_error("session %lu: bufferevent_socket_new failed", s->id);
		close(fd);
		free(s->listener);
		free(s);
		farm_server_session_end(srv);
		return;
	}
	LIST_INSERT_HEAD(&farm->sessions, s, entry);
	bufferevent_setwatermark(s->bev, EV_READ, 0, ECHO_READ_HIGH);
	bufferevent_setcb(s->bev, echo_on_read, echo_on_write, echo_on_event, s);
	bufferevent_enable(s->bev, EV_READ);
	log_debug("session %lu: accepted, listener=%s", s->id, s->listener);
}

/* echo_session_idle - answered before, nothing read or owed now. */
static bool echo_session_idle(struct echo_session *s)
{
	return s->lines > 0 && !s->closing && !s->slow_pending && !s->in_request &&
	       evbuffer_get_length(bufferevent_get_input(s->bev)) == 0;
}

static void echo_drain(struct farm_server *srv)
{
	struct echo_farm *farm = farm_server_ctx(srv);
	struct echo_session *s, *next;

	for (s = LIST_FIRST(&farm->sessions); s; s = next) {
		next = LIST_NEXT(s, entry);
		if (echo_session_idle(s))
			echo_session_close(s);
	}
}

/* echo_wakeup - farmd's periodic poke (farm parameter "wakeup"). */
static void echo_wakeup(struct farm_server *srv)
{
	log_info("wakeup received, farm=%s", farm_server_farm_name(srv));
}

static int echo_init(struct farm_server *srv, char *err, size_t errlen)
{
	struct echo_farm *farm = xcalloc(1, sizeof(*farm));

	(void)err;
	(void)errlen;
	LIST_INIT(&farm->sessions);
	farm_server_set_ctx(srv, farm);
	return 0;
}

/* echo_fini - the skeleton is exiting (maybe on a second SIGTERM). */
static void echo_fini(struct farm_server *srv)
{
	struct echo_farm *farm = farm_server_ctx(srv);

	while (!LIST_EMPTY(&farm->sessions))
		echo_session_destroy(LIST_FIRST(&farm->sessions), false);
	free(farm);
	farm_server_set_ctx(srv, NULL);
}

static const struct farm_server_ops echo_ops = {
    .name = "echo_farm",
    .init = echo_init,
    .accept = echo_accept,
    .drain = echo_drain,
    .wakeup = echo_wakeup,
    .fini = echo_fini,
};

static const struct farm_server_ops echo_explicit_ops = {
    .name = "echo_farm",
    .flags = FARM_SERVER_EXPLICIT_REQUESTS,
    .init = echo_init,
    .accept = echo_accept,
    .drain = echo_drain,
    .wakeup = echo_wakeup,
    .fini = echo_fini,
};

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--explicit-requests") == 0) {
		echo_explicit = true;
		argv[1] = argv[0];
		return farm_server_main(argc - 1, argv + 1, &echo_explicit_ops);
	}
	return farm_server_main(argc, argv, &echo_ops);
}
