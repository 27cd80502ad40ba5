/*
 * sockstream - the fast path of a plain-socket bufferevent; see sockstream.h.
 *
 * Two events of our own do the work: push, made active (never added) by
 * a callback on the output whenever bytes are queued, so it runs once at
 * the end of the loop turn; and rd, a persistent read event with the read
 * timeout, registered only while input is wanted and the input is below
 * its bound.  The bufferevent keeps EV_READ off for good and has EV_WRITE
 * on only while output it could not write at once is left (writing).
 *
 * A socket bufferevent keeps the end of its input and the front of its
 * output frozen except while it does I/O itself; we thaw them around ours.
 */
#include "common/sockstream.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/xalloc.h"

struct sockstream {
	struct bufferevent *bev;
	evutil_socket_t fd;
	struct event *rd;   /* readable or read timeout */
	struct event *push; /* end of the loop turn: write the output */
	struct evbuffer_cb_entry *in_cb, *out_cb;
	size_t in_bound;
	struct timeval rd_tv;
	bool rd_timeout; /* rd_tv applies */
	bufferevent_data_cb readcb, writecb;
	bufferevent_event_cb eventcb;
	void *arg;
	bool reading; /* the owner wants input */
	bool writing; /* output left over: the bufferevent writes it */
	bool wfailed; /* a write failed: no more writing */
	bool stopped;
};

/* sockstream_arm - rd registered exactly when input is wanted and has room. */
static void sockstream_arm(struct sockstream *ss, bool reset_timeout)
{
	bool want = ss->reading &&
		    evbuffer_get_length(bufferevent_get_input(ss->bev)) < ss->in_bound;

	if (!want) {
		event_del(ss->rd);
		return;
	}
	if (event_pending(ss->rd, EV_READ, NULL) && !reset_timeout)
		return;
	event_add(ss->rd, ss->rd_timeout ? &ss->rd_tv : NULL);
}

/* sockstream_read_end - EOF, an error or a timeout: reading is off, the owner hears of it. */
static void sockstream_read_end(struct sockstream *ss, short what)
{
	int e = errno;

	ss->reading = false;
	event_del(ss->rd);
	errno = e;
	ss->eventcb(ss->bev, (short)(BEV_EVENT_READING | what), ss->arg);
}

/*
 * sockstream_on_readable - one recv into a buffer on the stack, then added
 * to the input: its chains are only as big as what came (a read into
 * reserved space would allocate a chain of the whole bound), and only the
 * stack pages a read touches become resident (a thread-local buffer would
 * cost 64 KB in every thread of every process).
 */
static void sockstream_on_readable(evutil_socket_t fd, short what, void *arg)
{
	char buf[SOCKSTREAM_READ_MAX];
	struct sockstream *ss = arg;
	struct evbuffer *in = bufferevent_get_input(ss->bev);
	size_t have = evbuffer_get_length(in), want;
	ssize_t n;
	int r;

	if (what & EV_TIMEOUT) {
		errno = ETIMEDOUT;
		sockstream_read_end(ss, BEV_EVENT_TIMEOUT);
		return;
	}
	if (have >= ss->in_bound) {
		sockstream_arm(ss, false); /* the input callback arms it again */
		return;
	}
	want = ss->in_bound - have;
	if (want > sizeof(buf))
		want = sizeof(buf);
	n = recv(fd, buf, want, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n < 0) {
		sockstream_read_end(ss, BEV_EVENT_ERROR);
		return;
	}
	if (n == 0) {
		errno = 0;
		sockstream_read_end(ss, BEV_EVENT_EOF);
		return;
	}
	evbuffer_unfreeze(in, 0);
	r = evbuffer_add(in, buf, (size_t)n);
	evbuffer_freeze(in, 0);
	if (r < 0)
		abort(); /* out of memory: xalloc's policy */
	if (have + (size_t)n >= ss->in_bound)
		event_del(ss->rd); /* full: the input callback arms it again */
	ss->readcb(ss->bev, ss->arg);
}

/*
 * sockstream_on_push - one sendmsg of what the output holds (up to 64
 * extents; the bufferevent takes any rest).  MSG_NOSIGNAL: a peer that is
 * gone makes EPIPE, reported as the bufferevent would (WRITING|ERROR).
 */
static void sockstream_on_push(evutil_socket_t fd, short what, void *arg)
{
	struct sockstream *ss = arg;
	struct evbuffer *out = bufferevent_get_output(ss->bev);
	struct evbuffer_iovec v[64];
	struct iovec iov[64];
	struct msghdr msg = {.msg_iov = iov};
	ssize_t n;
	int nv;

	(void)fd;
	(void)what;
	if (ss->stopped || ss->writing || ss->wfailed || evbuffer_get_length(out) == 0)
		return;
	nv = evbuffer_peek(out, -1, NULL, v, 64);
	if (nv > 64)
		nv = 64;
	for (int i = 0; i < nv; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
	}
	msg.msg_iovlen = (size_t)nv;
	n = sendmsg((int)ss->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		ss->wfailed = true;
		ss->eventcb(ss->bev, BEV_EVENT_WRITING | BEV_EVENT_ERROR, ss->arg);
		return;
	}
	if (n > 0) {
		evbuffer_unfreeze(out, 1);
		evbuffer_drain(out, (size_t)n);
		evbuffer_freeze(out, 1);
	}
	if (evbuffer_get_length(out) == 0) {
		ss->writecb(ss->bev, ss->arg);
		return;
	}
	ss->writing = true;
	bufferevent_enable(ss->bev, EV_WRITE);
}

/* sockstream_on_output - bytes queued: written at the end of this turn. */
static void sockstream_on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info,
				 void *arg)
{
	struct sockstream *ss = arg;

	(void)buf;
	if (info->n_added && !ss->writing && !ss->wfailed && !ss->stopped)
		event_active(ss->push, EV_WRITE, 0);
}

/* sockstream_on_input - the owner used input: read again if it waited for room. */
static void sockstream_on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info,
				void *arg)
{
	struct sockstream *ss = arg;

	(void)buf;
	if (info->n_deleted && ss->reading && !ss->stopped)
		sockstream_arm(ss, false);
}

/*
 * sockstream_on_bev_write - the bufferevent wrote (some of) the leftover,
 * down to the owner's low-water mark; once all of it, back to direct writes.
 */
static void sockstream_on_bev_write(struct bufferevent *bev, void *arg)
{
	struct sockstream *ss = arg;

	if (ss->writing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		ss->writing = false;
		bufferevent_disable(bev, EV_WRITE);
	}
	ss->writecb(bev, ss->arg);
}

/* sockstream_on_bev_read - only from bufferevent_trigger(EV_READ): the owner asked for it. */
static void sockstream_on_bev_read(struct bufferevent *bev, void *arg)
{
	struct sockstream *ss = arg;

	ss->readcb(bev, ss->arg);
}

static void sockstream_on_bev_event(struct bufferevent *bev, short what, void *arg)
{
	struct sockstream *ss = arg;

	ss->eventcb(bev, what, ss->arg);
}

struct sockstream *sockstream_new(struct bufferevent *bev, size_t in_bound,
				  bufferevent_data_cb readcb, bufferevent_data_cb writecb,
				  bufferevent_event_cb eventcb, void *arg)
{
	struct sockstream *ss = xcalloc(1, sizeof(*ss));
	struct event_base *base = bufferevent_get_base(bev);

	ss->bev = bev;
	ss->fd = bufferevent_getfd(bev);
	ss->in_bound = in_bound ? in_bound : 1;
	ss->readcb = readcb;
	ss->writecb = writecb;
	ss->eventcb = eventcb;
	ss->arg = arg;
	ss->rd = event_new(base, ss->fd, EV_READ | EV_PERSIST, sockstream_on_readable, ss);
	ss->push = event_new(base, -1, 0, sockstream_on_push, ss);
	if (ss->rd)
		ss->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), sockstream_on_input, ss);
	if (ss->in_cb)
		ss->out_cb =
		    evbuffer_add_cb(bufferevent_get_output(bev), sockstream_on_output, ss);
	if (!ss->rd || !ss->push || !ss->in_cb || !ss->out_cb) {
		if (ss->in_cb)
			evbuffer_remove_cb_entry(bufferevent_get_input(bev), ss->in_cb);
		if (ss->rd)
			event_free(ss->rd);
		if (ss->push)
			event_free(ss->push);
		free(ss);
		return NULL;
	}
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_setcb(bev, sockstream_on_bev_read, sockstream_on_bev_write,
			  sockstream_on_bev_event, ss);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	/* Anything already queued leaves at the end of this turn. */
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		event_active(ss->push, EV_WRITE, 0);
	return ss;
}

void sockstream_free(struct sockstream **ssp)
{
	struct sockstream *ss;

	if (ssp == NULL || *ssp == NULL)
		return;
	ss = *ssp;
	*ssp = NULL;
	bufferevent_disable(ss->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(ss->bev, NULL, NULL, NULL, NULL);
	evbuffer_remove_cb_entry(bufferevent_get_input(ss->bev), ss->in_cb);
	evbuffer_remove_cb_entry(bufferevent_get_output(ss->bev), ss->out_cb);
	event_free(ss->rd);
	event_free(ss->push);
	free(ss);
}

void sockstream_read(struct sockstream *ss, bool on)
{
	if (ss->stopped)
		return;
	ss->reading = on;
	sockstream_arm(ss, true);
}

void sockstream_read_either(struct sockstream *ss, struct bufferevent *bev, bool on)
{
	if (ss)
		sockstream_read(ss, on);
	else if (on)
		bufferevent_enable(bev, EV_READ);
	else
		bufferevent_disable(bev, EV_READ);
}

bool sockstream_reading(const struct sockstream *ss)
{
	return ss->reading;
}

void sockstream_set_timeouts(struct sockstream *ss, const struct timeval *rd,
			     const struct timeval *wr)
{
	ss->rd_timeout = rd != NULL;
	if (rd)
		ss->rd_tv = *rd;
	/* event_add() keeps an old timeout when given none: start over. */
	if (event_pending(ss->rd, EV_READ, NULL)) {
		event_del(ss->rd);
		sockstream_arm(ss, true);
	}
	bufferevent_set_timeouts(ss->bev, NULL, wr);
}

void sockstream_stop(struct sockstream *ss)
{
	ss->stopped = true;
	ss->reading = false;
	event_del(ss->rd);
	event_del(ss->push);
	bufferevent_disable(ss->bev, EV_READ | EV_WRITE);
}
