/*
 * test_sockstream - the plain-socket fast path: end-of-turn writes with
 * no registration, the EV_WRITE fallback, bounded reads, EOF, errors,
 * the read timeout and stop, over real unix socket pairs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "common/sockstream.h"
#include "tests/common/evtest.h"

struct fix {
	struct event_base *base;
	struct bufferevent *bev;
	struct sockstream *ss;
	int peer;
	unsigned reads, writes, events;
	short what;
	int err;
	size_t max_in; /* the most input seen by the read callback */
	bool drain;    /* the read callback uses up the input */
	bool free_on_event;
};

static void on_read(struct bufferevent *bev, void *arg)
{
	struct fix *f = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	f->reads++;
	if (evbuffer_get_length(in) > f->max_in)
		f->max_in = evbuffer_get_length(in);
	if (f->drain)
		evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct fix *f = arg;

	assert_int_equal(evbuffer_get_length(bufferevent_get_output(bev)), 0);
	f->writes++;
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct fix *f = arg;

	(void)bev;
	f->events++;
	f->what = what;
	f->err = EVUTIL_SOCKET_ERROR();
	if (f->free_on_event)
		sockstream_free(&f->ss);
}

static void fix_open(struct fix *f, size_t in_bound, int sndbuf)
{
	int sv[2];

	memset(f, 0, sizeof(*f));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	if (sndbuf) {
		assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
		assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf)), 0);
	}
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->bev = bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(f->bev);
	f->ss = sockstream_new(f->bev, in_bound, on_read, on_write, on_event, f);
	assert_non_null(f->ss);
	f->peer = sv[1];
}

static void fix_close(struct fix *f)
{
	sockstream_free(&f->ss);
	bufferevent_free(f->bev);
	event_base_free(f->base);
	if (f->peer >= 0)
		close(f->peer);
}

static void turn(struct fix *f)
{
	event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* loop_until - run the loop (blocking turns, 100 ms each at most) until *flag, 5 s at most. */
static void loop_until(struct fix *f, const unsigned *counter, unsigned want)
{
	struct timeval tick = {0, 100000};
	time_t end = time(NULL) + 5;

	while (*counter < want && time(NULL) < end) {
		event_base_loopexit(f->base, &tick);
		event_base_loop(f->base, EVLOOP_ONCE);
	}
	assert_true(*counter >= want);
}

/* Three writes in one turn: one write at the end of it, nothing registered for it. */
static void test_write_in_the_turn(void **state)
{
	struct fix f;
	char buf[64];
	int before;

	(void)state;
	fix_open(&f, 1024, 0);
	before = evtest_registered(f.base);
	for (int i = 0; i < 3; i++)
		assert_int_equal(bufferevent_write(f.bev, "abc", 3), 0);
	/* nothing is on the wire before the loop runs */
	assert_int_equal(recv(f.peer, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	turn(&f);
	assert_int_equal(evtest_registered(f.base), before);
	assert_int_equal(recv(f.peer, buf, sizeof(buf), MSG_DONTWAIT), 9);
	assert_memory_equal(buf, "abcabcabc", 9);
	assert_int_equal(f.writes, 1);
	fix_close(&f);
}

/*
 * More than the socket takes: EV_WRITE carries the rest, the write
 * callback comes once the output is empty, and EV_WRITE is off again.
 */
static void test_write_fallback(void **state)
{
	struct fix f;
	size_t total = 1 << 20, got = 0;
	char *data = malloc(total), buf[65536];
	int before;

	(void)state;
	for (size_t i = 0; i < total; i++)
		data[i] = (char)(i * 7 + i / 251);
	fix_open(&f, 1024, 4096);
	before = evtest_registered(f.base);
	assert_int_equal(bufferevent_write(f.bev, data, total), 0);
	turn(&f);
	assert_true(evbuffer_get_length(bufferevent_get_output(f.bev)) > 0);
	assert_int_equal(evtest_registered(f.base), before + 1); /* the bufferevent's EV_WRITE */
	assert_int_equal(f.writes, 0);
	while (got < total) {
		struct pollfd p = {.fd = f.peer, .events = POLLIN};
		ssize_t n;

		turn(&f);
		assert_true(poll(&p, 1, 5000) == 1);
		n = recv(f.peer, buf, sizeof(buf), MSG_DONTWAIT);
		assert_true(n > 0);
		assert_memory_equal(buf, data + got, (size_t)n);
		got += (size_t)n;
	}
	loop_until(&f, &f.writes, 1);
	assert_int_equal(evtest_registered(f.base), before);
	/* and direct again: the next write needs no registration */
	assert_int_equal(bufferevent_write(f.bev, "x", 1), 0);
	turn(&f);
	assert_int_equal(evtest_registered(f.base), before);
	assert_int_equal(recv(f.peer, buf, sizeof(buf), MSG_DONTWAIT), 1);
	assert_int_equal(f.writes, 2);
	free(data);
	fix_close(&f);
}

/*
 * A peer that sends more than the bound: input never exceeds it, reading
 * waits while it is full and goes on once the owner drains it.
 */
static void test_read_bounded(void **state)
{
	struct fix f;
	char data[200000];
	size_t sent = 0, got = 0;
	struct evbuffer *in;

	(void)state;
	memset(data, 'r', sizeof(data));
	fix_open(&f, 5000, 0);
	sockstream_read(f.ss, true);
	in = bufferevent_get_input(f.bev);
	while (got < sizeof(data)) {
		ssize_t n = send(f.peer, data + sent, sizeof(data) - sent, MSG_DONTWAIT);

		if (n > 0)
			sent += (size_t)n;
		loop_until(&f, &f.reads, f.reads + 1);
		assert_true(evbuffer_get_length(in) <= 5000);
		if (evbuffer_get_length(in) == 5000) {
			/* full: another turn reads nothing more */
			unsigned reads = f.reads;

			turn(&f);
			assert_int_equal(f.reads, reads);
			assert_int_equal(evbuffer_get_length(in), 5000);
		}
		got += evbuffer_get_length(in);
		evbuffer_drain(in, evbuffer_get_length(in)); /* re-arms reading */
	}
	assert_int_equal(got, sizeof(data));
	assert_int_equal(f.max_in, 5000);
	assert_int_equal(f.events, 0);
	fix_close(&f);
}

/* A single read takes up to SOCKSTREAM_READ_MAX, not libevent's 4096. */
static void test_read_large(void **state)
{
	struct fix f;
	static char data[SOCKSTREAM_READ_MAX];
	int big = 1 << 20;

	(void)state;
	fix_open(&f, 1 << 20, 0);
	(void)setsockopt(f.peer, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	memset(data, 'L', sizeof(data));
	assert_int_equal(send(f.peer, data, sizeof(data), 0), (ssize_t)sizeof(data));
	sockstream_read(f.ss, true);
	loop_until(&f, &f.reads, 1);
	assert_int_equal(f.reads, 1);
	assert_int_equal(evbuffer_get_length(bufferevent_get_input(f.bev)), sizeof(data));
	fix_close(&f);
}

/* Data, then EOF: both arrive, EOF as READING|EOF, and reading is off after it. */
static void test_read_eof(void **state)
{
	struct fix f;

	(void)state;
	fix_open(&f, 1024, 0);
	f.drain = true;
	sockstream_read(f.ss, true);
	assert_true(sockstream_reading(f.ss));
	assert_int_equal(send(f.peer, "hello", 5, 0), 5);
	shutdown(f.peer, SHUT_WR);
	loop_until(&f, &f.events, 1);
	assert_int_equal(f.reads, 1);
	assert_int_equal(f.what, BEV_EVENT_READING | BEV_EVENT_EOF);
	assert_false(sockstream_reading(f.ss));
	fix_close(&f);
}

/* Reading nothing for the read timeout: READING|TIMEOUT, and the owner may free in the callback. */
static void test_read_timeout(void **state)
{
	struct fix f;
	struct timeval rd = {0, 50000};

	(void)state;
	fix_open(&f, 1024, 0);
	f.free_on_event = true;
	sockstream_set_timeouts(f.ss, &rd, NULL);
	sockstream_read(f.ss, true);
	loop_until(&f, &f.events, 1);
	assert_int_equal(f.what, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
	assert_null(f.ss);
	fix_close(&f);
}

/* A peer that is gone: the write error arrives as WRITING|ERROR with EPIPE, no SIGPIPE. */
static void test_write_error(void **state)
{
	struct fix f;

	(void)state;
	fix_open(&f, 1024, 0);
	close(f.peer);
	f.peer = -1;
	assert_int_equal(bufferevent_write(f.bev, "lost", 4), 0);
	loop_until(&f, &f.events, 1);
	assert_int_equal(f.what, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
	assert_int_equal(f.err, EPIPE);
	assert_int_equal(f.writes, 0);
	fix_close(&f);
}

/* After stop: queued output stays, input is not read, no callback runs. */
static void test_stop(void **state)
{
	struct fix f;
	char buf[16];

	(void)state;
	fix_open(&f, 1024, 0);
	sockstream_read(f.ss, true);
	assert_int_equal(bufferevent_write(f.bev, "kept", 4), 0);
	sockstream_stop(f.ss);
	assert_int_equal(send(f.peer, "ignored", 7, 0), 7);
	for (int i = 0; i < 3; i++)
		turn(&f);
	assert_int_equal(f.reads + f.writes + f.events, 0);
	assert_int_equal(evbuffer_get_length(bufferevent_get_output(f.bev)), 4);
	assert_int_equal(recv(f.peer, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_false(sockstream_reading(f.ss));
	sockstream_read(f.ss, true); /* stays stopped */
	turn(&f);
	assert_int_equal(f.reads, 0);
	fix_close(&f);
}

/* Output queued before the sockstream took over leaves in the first turn. */
static void test_queued_before(void **state)
{
	struct event_base *base = event_base_new();
	struct fix f = {0};
	int sv[2];
	char buf[16];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	f.base = base;
	f.bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_disable(f.bev, EV_WRITE);
	assert_int_equal(bufferevent_write(f.bev, "early", 5), 0);
	f.ss = sockstream_new(f.bev, 1024, on_read, on_write, on_event, &f);
	f.peer = sv[1];
	turn(&f);
	assert_int_equal(recv(f.peer, buf, sizeof(buf), MSG_DONTWAIT), 5);
	fix_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_in_the_turn), cmocka_unit_test(test_write_fallback),
	    cmocka_unit_test(test_read_bounded),      cmocka_unit_test(test_read_large),
	    cmocka_unit_test(test_read_eof),	      cmocka_unit_test(test_read_timeout),
	    cmocka_unit_test(test_write_error),	      cmocka_unit_test(test_stop),
	    cmocka_unit_test(test_queued_before),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
