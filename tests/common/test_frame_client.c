/*
 * Tests for common/frame_client.c: replies matched by request id, every
 * failure reported once and never inside the call, cancel, timeout.
 *
 * A server in the same event loop listens on a unix socket in a temporary
 * directory and answers Ping with Pong in the order a test chooses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/clock.h"
#include "common/endpoint.h"
#include "common/frame.h"
#include "common/frame_client.h"

#define MAXF 16

struct server {
	struct event_base *base;
	int lfd;
	struct event *ev;
	struct frame_conn *conn;
	uint64_t ids[MAXF]; /* request ids received, in order */
	size_t n;
	bool answer;	    /* answer each request at once */
	bool close_on_recv; /* close the connection at the first request */
};

struct call {
	int calls;
	bool got_reply;
	uint64_t reply_id;
	char reason[600];
};

static bool inside_request;

static void server_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct server *s = arg;

	(void)reason;
	frame_conn_free(&conn);
	s->conn = NULL;
}

static void server_answer(struct server *s, uint64_t id)
{
	Zfarm__Frame f;
	Zfarm__Ping p = ZFARM__PING__INIT;
	char err[128];

	frame_init(&f, id);
	f.body_case = ZFARM__FRAME__BODY_PONG;
	f.pong = &p;
	assert_int_equal(frame_conn_send(s->conn, &f, err, sizeof(err)), 0);
}

static void server_on_recv(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct server *s = arg;

	(void)conn;
	if (s->n < MAXF)
		s->ids[s->n++] = f->request_id;
	if (s->close_on_recv) {
		frame_free(&f);
		frame_conn_free(&s->conn);
		return;
	}
	if (s->answer)
		server_answer(s, f->request_id);
	frame_free(&f);
}

static void server_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	int c = accept(fd, NULL, NULL);

	(void)what;
	if (c < 0)
		return;
	frame_conn_free(&s->conn);
	s->conn = frame_conn_new(s->base, c, 0, server_on_recv, server_on_close, s);
}

static char dir[64], path[128], spec[160];

static void server_start(struct server *s, struct event_base *base)
{
	struct endpoint ep;
	char err[256];

	memset(s, 0, sizeof(*s));
	s->base = base;
	s->answer = true;
	snprintf(dir, sizeof(dir), "/tmp/test_frame_client.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sock", dir);
	snprintf(spec, sizeof(spec), "unix:%s", path);
	assert_int_equal(endpoint_parse(spec, &ep, err, sizeof(err)), 0);
	s->lfd = endpoint_listen(&ep, 16, 0600, err, sizeof(err));
	assert_true(s->lfd >= 0);
	s->ev = event_new(base, s->lfd, EV_READ | EV_PERSIST, server_on_accept, s);
	event_add(s->ev, NULL);
}

static void server_stop(struct server *s)
{
	frame_conn_free(&s->conn);
	event_free(s->ev);
	close(s->lfd);
	unlink(path);
	rmdir(dir);
}

static void on_reply(void *arg, const Zfarm__Frame *reply, const char *reason)
{
	struct call *c = arg;

	assert_false(inside_request);
	c->calls++;
	c->got_reply = reply != NULL;
	c->reply_id = reply ? reply->request_id : 0;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

static void request(struct frame_client *fc, struct call *c)
{
	Zfarm__Frame f;
	Zfarm__Ping p = ZFARM__PING__INIT;

	frame_init(&f, 0);
	f.body_case = ZFARM__FRAME__BODY_PING;
	f.ping = &p;
	inside_request = true;
	frame_client_request(fc, &f, on_reply, c);
	inside_request = false;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/*
 * run_until - run the loop until all n calls have their callback, or 3 s
 * pass.  Each round blocks in the loop until an event, at most 100 ms (a
 * timer), then looks again.
 */
static void run_until(struct event_base *base, struct call *calls, size_t n)
{
	uint64_t deadline = clock_mono_ms() + 3000;
	struct event *t = evtimer_new(base, tick, NULL);
	struct timeval tv = {0, 100000};

	for (;;) {
		size_t done = 0;

		for (size_t i = 0; i < n; i++)
			done += calls[i].calls > 0;
		if (done == n || clock_mono_ms() > deadline)
			break;
		evtimer_add(t, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(t);
}

static void test_replies_matched(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct frame_client *fc;
	struct call c[3] = {0};
	char err[256];

	(void)state;
	server_start(&s, base);
	s.answer = false;
	fc = frame_client_new(base, spec, "/nonexistent", 0, err, sizeof(err));
	assert_non_null(fc);
	for (int i = 0; i < 3; i++)
		request(fc, &c[i]);
	assert_int_equal(frame_client_pending(fc), 3);
	{
		uint64_t deadline = clock_mono_ms() + 3000;
		struct event *t = evtimer_new(base, tick, NULL);
		struct timeval tv = {0, 100000};

		while (s.n < 3 && clock_mono_ms() < deadline) {
			evtimer_add(t, &tv);
			event_base_loop(base, EVLOOP_ONCE);
		}
		event_free(t);
		assert_int_equal(s.n, 3);
	}
	/* answer out of order: last, first, middle */
	server_answer(&s, s.ids[2]);
	server_answer(&s, s.ids[0]);
	server_answer(&s, s.ids[1]);
	run_until(base, c, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c[i].calls, 1);
		assert_true(c[i].got_reply);
		assert_int_equal(c[i].reply_id, s.ids[i]);
		assert_string_equal(c[i].reason, "");
	}
	assert_int_equal(frame_client_pending(fc), 0);
	frame_client_free(&fc);
	server_stop(&s);
	event_base_free(base);
}

static void test_failures(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct frame_client *none, *absent, *fc;
	struct call a = {0}, b = {0}, c[2] = {0}, d = {0};
	char err[256];

	(void)state;
	server_start(&s, base);
	/* not configured */
	none = frame_client_new(base, NULL, "/", 0, err, sizeof(err));
	request(none, &a);
	assert_int_equal(a.calls, 0); /* never inside the call */
	run_until(base, &a, 1);
	assert_int_equal(a.calls, 1);
	assert_false(a.got_reply);
	assert_non_null(strstr(a.reason, "not configured"));
	assert_string_equal(frame_client_spec(none), "none");
	/* nothing listening: relative path under the run directory */
	absent = frame_client_new(base, "unix:private/absent", dir, 0, err, sizeof(err));
	request(absent, &b);
	run_until(base, &b, 1);
	assert_int_equal(b.calls, 1);
	assert_false(b.got_reply);
	assert_non_null(strstr(b.reason, "private/absent"));
	/* the server closes with two requests unanswered */
	s.close_on_recv = true;
	fc = frame_client_new(base, spec, "/", 0, err, sizeof(err));
	request(fc, &c[0]);
	request(fc, &c[1]);
	run_until(base, c, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(c[i].calls, 1);
		assert_false(c[i].got_reply);
		assert_non_null(strstr(c[i].reason, "closed"));
	}
	/* the next request reconnects */
	s.close_on_recv = false;
	request(fc, &d);
	run_until(base, &d, 1);
	assert_true(d.got_reply);
	/* a bad spec */
	assert_null(frame_client_new(base, "bogus:x", "/", 0, err, sizeof(err)));
	frame_client_free(&none);
	frame_client_free(&absent);
	frame_client_free(&fc);
	frame_client_free(&fc);
	server_stop(&s);
	event_base_free(base);
}

static void test_cancel_and_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct frame_client *fc;
	struct call kept = {0}, gone = {0}, late = {0};
	char err[256];

	(void)state;
	server_start(&s, base);
	fc = frame_client_new(base, spec, "/", 300, err, sizeof(err));
	request(fc, &gone);
	request(fc, &kept);
	frame_client_cancel(fc, &gone);
	run_until(base, &kept, 1);
	assert_int_equal(kept.calls, 1);
	assert_true(kept.got_reply);
	assert_int_equal(gone.calls, 0);
	/* a server that stops answering: the deadline check fails it */
	s.answer = false;
	request(fc, &late);
	run_until(base, &late, 1);
	assert_int_equal(late.calls, 1);
	assert_false(late.got_reply);
	assert_non_null(strstr(late.reason, "did not answer in time"));
	assert_int_equal(frame_client_pending(fc), 0);
	frame_client_free(&fc);
	server_stop(&s);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_replies_matched),
	    cmocka_unit_test(test_failures),
	    cmocka_unit_test(test_cancel_and_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
