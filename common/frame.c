/*
 * frame - length-prefixed protobuf-c Frames: the codec, blocking fd I/O
 * and struct frame_conn over a libevent bufferevent; see frame.h.
 *
 * A frame_conn runs user code only from its libevent callbacks.  Each of
 * them brackets its work with frame_conn_enter() / frame_conn_leave(): a
 * frame_conn_free() inside that window just marks the connection, and
 * frame_conn_leave() frees it when the outermost callback is done.  Frames
 * are handed out by frame_conn_deliver() alone, which stops as soon as the
 * connection is paused, flushing, closed or marked for freeing.
 *
 * frame_conn_free() first writes what output the socket takes at once
 * (never blocking): a daemon's last report before it exits still leaves.
 * libevent then closes the fd from its finalizer, on the next loop turn or
 * in event_base_free().
 *
 * libevent writes with writev(), so a daemon must ignore SIGPIPE (write
 * errors then arrive as EPIPE through the close callback);
 * frame_write_fd() uses send(MSG_NOSIGNAL) on sockets and needs nothing.
 */
#include "common/err.h"
#include "common/frame.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "common/sockstream.h"
#include "common/xalloc.h"

struct frame_conn {
	struct bufferevent *bev;
	struct sockstream *ss; /* a plain socket from frame_conn_new(): its I/O */
	struct event *kick;    /* zero-delay work: after resume, flush already done */
	size_t max_frame;
	frame_recv_fn *on_recv;
	frame_close_fn *on_close;
	void *arg;
	unsigned in_callback; /* nesting depth of our libevent callbacks */
	bool freeing;	      /* frame_conn_free() called inside a callback */
	bool closed;	      /* close callback has run: no more callbacks */
	bool paused;	      /* frame_conn_pause(): deliver nothing */
	bool flushing;	      /* frame_conn_close_after_flush(): read nothing */
	bool eof;	      /* peer is done; report it once the input is used up */
};

/* frame_limit - 0 means the default; nothing goes above the hard ceiling. */
static size_t frame_limit(size_t max)
{
	if (max == 0)
		return FRAME_MAX_DEFAULT;
	return max > FRAME_MAX_LIMIT ? FRAME_MAX_LIMIT : max;
}

static uint32_t frame_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void frame_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * frame_check_length - the verdict on a length prefix: 0 if acceptable,
 * else -1 with the reason.
 */
static int frame_check_length(uint32_t n, size_t max, char *err, size_t errlen)
{
	if (n == 0) {
		err_printf(err, errlen, "empty frame");
		return -1;
	}
	if (n > max) {
		err_printf(err, errlen, "oversize frame: %lu bytes, max %zu", (unsigned long)n,
			   max);
		return -1;
	}
	return 0;
}

/* ---- codec ---- */

void frame_init(Zfarm__Frame *f, uint64_t request_id)
{
	zfarm__frame__init(f);
	f->version = FRAME_VERSION;
	f->request_id = request_id;
}

/*
 * frame_body_name - the oneof member's field name from the generated
 * descriptor, so new body types are named without touching this file.
 */
const char *frame_body_name(const Zfarm__Frame *f)
{
	const ProtobufCFieldDescriptor *fd;

	if (f->body_case == ZFARM__FRAME__BODY__NOT_SET)
		return "none";
	fd = protobuf_c_message_descriptor_get_field(&zfarm__frame__descriptor,
						     (unsigned)f->body_case);
	if (fd == NULL || !(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
		return "unknown";
	return fd->name;
}

/* frame_encoded_size - checks an outgoing frame; its encoded size or 0. */
static size_t frame_encoded_size(const Zfarm__Frame *f, size_t max, char *err, size_t errlen)
{
	size_t n;

	if (f->version != FRAME_VERSION) {
		err_printf(err, errlen, "refusing to send frame version %lu",
			   (unsigned long)f->version);
		return 0;
	}
	if (f->body_case == ZFARM__FRAME__BODY__NOT_SET) {
		err_printf(err, errlen, "refusing to send a frame without a body");
		return 0;
	}
	n = zfarm__frame__get_packed_size(f);
	if (n > frame_limit(max)) {
		err_printf(err, errlen, "%s frame too large: %zu bytes, max %zu",
			   frame_body_name(f), n, frame_limit(max));
		return 0;
	}
	return n;
}

/* frame_encode - header and body into p, which has room for both. */
static void frame_encode(const Zfarm__Frame *f, size_t n, uint8_t *p)
{
	frame_put_be32(p, (uint32_t)n);
	if (zfarm__frame__pack(f, p + FRAME_HEADER_SIZE) != n)
		abort(); /* protobuf-c disagrees with itself: a broken invariant */
}

int frame_pack(const Zfarm__Frame *f, size_t max, uint8_t **out, size_t *outlen, char *err,
	       size_t errlen)
{
	size_t n = frame_encoded_size(f, max, err, errlen);

	if (n == 0)
		return -1;
	*out = xmalloc(FRAME_HEADER_SIZE + n);
	*outlen = FRAME_HEADER_SIZE + n;
	frame_encode(f, n, *out);
	return 0;
}

Zfarm__Frame *frame_unpack(const uint8_t *body, size_t len, char *err, size_t errlen)
{
	Zfarm__Frame *f = zfarm__frame__unpack(NULL, len, body);

	if (f == NULL) {
		err_printf(err, errlen, "undecodable frame (%zu bytes)", len);
		return NULL;
	}
	if (f->version != FRAME_VERSION)
		err_printf(err, errlen, "unknown frame version %lu", (unsigned long)f->version);
	else if (f->body_case == ZFARM__FRAME__BODY__NOT_SET)
		err_printf(err, errlen, "frame without a body (unknown type?)");
	else
		return f;
	zfarm__frame__free_unpacked(f, NULL);
	return NULL;
}

Zfarm__Frame *frame_decode_exact(const uint8_t *buf, size_t len, size_t max, char *err,
				 size_t errlen)
{
	uint32_t n;

	if (len < FRAME_HEADER_SIZE) {
		err_printf(err, errlen, "truncated frame header (%zu bytes)", len);
		return NULL;
	}
	n = frame_get_be32(buf);
	if (frame_check_length(n, frame_limit(max), err, errlen) < 0)
		return NULL;
	len -= FRAME_HEADER_SIZE;
	if (len < n) {
		err_printf(err, errlen, "truncated frame: %zu of %lu bytes", len, (unsigned long)n);
		return NULL;
	}
	if (len > n) {
		err_printf(err, errlen, "%zu trailing bytes after frame", len - n);
		return NULL;
	}
	return frame_unpack(buf + FRAME_HEADER_SIZE, n, err, errlen);
}

void frame_free(Zfarm__Frame **f)
{
	if (f == NULL || *f == NULL)
		return;
	zfarm__frame__free_unpacked(*f, NULL);
	*f = NULL;
}

/* ---- blocking fd I/O ---- */

/*
 * frame_mono_ms - CLOCK_MONOTONIC directly, not clock_mono_ms(): these
 * deadlines bound real poll() waits, which a test's fake clock must not
 * stretch or shrink.
 */
static int64_t frame_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* frame_wait - poll until ready (1), the deadline (0; -1 is none) or an error (-1). */
static int frame_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int64_t left;
	int r;

	for (;;) {
		left = deadline < 0 ? -1 : deadline - frame_mono_ms();
		if (deadline >= 0 && left < 0)
			left = 0;
		r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (r > 0)
			return 1;
		if (r == 0 && (deadline < 0 || frame_mono_ms() >= deadline))
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/*
 * frame_read_full - read exactly n bytes by deadline.  Returns n, or the
 * count read before EOF, or -1 with the reason set (timeout, error).
 */
static ssize_t frame_read_full(int fd, uint8_t *buf, size_t n, int64_t deadline, char *err,
			       size_t errlen)
{
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = frame_wait(fd, POLLIN, deadline);
		if (r == 0) {
			err_printf(err, errlen, "read timeout");
			return -1;
		}
		if (r < 0) {
			err_printf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		r = read(fd, buf + got, n - got);
		if (r == 0)
			break;
		if (r > 0)
			got += (size_t)r;
		else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
			err_printf(err, errlen, "read: %s", strerror(errno));
			return -1;
		}
	}
	return (ssize_t)got;
}

Zfarm__Frame *frame_read_fd(int fd, size_t max, int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = timeout_ms < 0 ? -1 : frame_mono_ms() + timeout_ms;
	uint8_t hdr[FRAME_HEADER_SIZE], *body;
	Zfarm__Frame *f = NULL;
	ssize_t r;
	uint32_t n;

	err_printf(err, errlen, "%s", "");
	r = frame_read_full(fd, hdr, sizeof(hdr), deadline, err, errlen);
	if (r <= 0)
		return NULL; /* r == 0: clean EOF, err stays "" */
	if (r < FRAME_HEADER_SIZE) {
		err_printf(err, errlen, "truncated frame at EOF (%zd bytes)", r);
		return NULL;
	}
	n = frame_get_be32(hdr);
	if (frame_check_length(n, frame_limit(max), err, errlen) < 0)
		return NULL;
	body = xmalloc(n);
	r = frame_read_full(fd, body, n, deadline, err, errlen);
	if (r >= 0 && (size_t)r < n)
		err_printf(err, errlen, "truncated frame at EOF (%zd bytes)",
			   r + FRAME_HEADER_SIZE);
	else if (r >= 0)
		f = frame_unpack(body, n, err, errlen);
	free(body);
	return f;
}

/*
 * frame_write_all - write every byte, waiting for a non-blocking fd.
 * send(MSG_NOSIGNAL) turns a vanished peer into EPIPE rather than a
 * SIGPIPE; a pipe or file (ENOTSOCK) gets plain write().
 */
static int frame_write_all(int fd, const uint8_t *p, size_t n, char *err, size_t errlen)
{
	bool sock = true;
	ssize_t r;

	while (n > 0) {
		r = sock ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
		if (r >= 0) {
			p += r;
			n -= (size_t)r;
		} else if (errno == ENOTSOCK && sock) {
			sock = false;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (frame_wait(fd, POLLOUT, -1) < 0) {
				err_printf(err, errlen, "poll: %s", strerror(errno));
				return -1;
			}
		} else if (errno != EINTR) {
			err_printf(err, errlen, "write: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

int frame_write_fd(int fd, const Zfarm__Frame *f, char *err, size_t errlen)
{
	uint8_t *buf;
	size_t len;
	int r;

	if (frame_pack(f, FRAME_MAX_LIMIT, &buf, &len, err, errlen) < 0)
		return -1;
	r = frame_write_all(fd, buf, len, err, errlen);
	free(buf);
	return r;
}

/* ---- frame_conn ---- */

static bool frame_conn_live(const struct frame_conn *conn)
{
	return !conn->closed && !conn->freeing;
}

/* frame_conn_reading - want input or not, from whichever reads the socket. */
static void frame_conn_reading(struct frame_conn *conn, bool on)
{
	sockstream_read_either(conn->ss, conn->bev, on);
}

/*
 * frame_conn_flush_now - one non-blocking send of the queued output, on
 * our own sockets only (a TLS bufferevent must do its own writing).
 */
static void frame_conn_flush_now(struct frame_conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	struct evbuffer_iovec v[16];
	struct iovec iov[16];
	struct msghdr msg = {.msg_iov = iov};
	int n;

	if (conn->ss == NULL || evbuffer_get_length(out) == 0)
		return;
	n = evbuffer_peek(out, -1, NULL, v, 16);
	for (int i = 0; i < n && i < 16; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
		msg.msg_iovlen++;
	}
	(void)!sendmsg((int)bufferevent_getfd(conn->bev), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void frame_conn_destroy(struct frame_conn *conn)
{
	frame_conn_flush_now(conn);
	event_free(conn->kick);
	sockstream_free(&conn->ss);
	bufferevent_free(conn->bev);
	free(conn);
}

static void frame_conn_enter(struct frame_conn *conn)
{
	conn->in_callback++;
}

/* frame_conn_leave - the end of a callback; frees a connection marked for it. */
static void frame_conn_leave(struct frame_conn *conn)
{
	if (--conn->in_callback == 0 && conn->freeing)
		frame_conn_destroy(conn);
}

/* frame_conn_finish - run the close callback, once. */
static void frame_conn_finish(struct frame_conn *conn, const char *reason)
{
	if (!frame_conn_live(conn))
		return;
	conn->closed = true;
	frame_conn_reading(conn, false);
	if (conn->on_close)
		conn->on_close(conn, reason, conn->arg);
}

/* frame_conn_next - take one frame off the input: 1 got one, 0 need more, -1 failed. */
static int frame_conn_next(struct frame_conn *conn, Zfarm__Frame **f, char *err, size_t errlen)
{
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	size_t avail = evbuffer_get_length(in);
	uint8_t hdr[FRAME_HEADER_SIZE];
	uint32_t n;

	if (avail < FRAME_HEADER_SIZE)
		return 0;
	evbuffer_copyout(in, hdr, sizeof(hdr));
	n = frame_get_be32(hdr);
	if (frame_check_length(n, conn->max_frame, err, errlen) < 0)
		return -1;
	if (avail - FRAME_HEADER_SIZE < n)
		return 0;
	evbuffer_drain(in, FRAME_HEADER_SIZE);
	*f = frame_unpack(evbuffer_pullup(in, n), n, err, errlen);
	evbuffer_drain(in, n);
	return *f ? 1 : -1;
}

/*
 * frame_conn_deliver - hand out every complete buffered frame while the
 * owner still wants them; then, if the peer has gone, say how it went.
 */
static void frame_conn_deliver(struct frame_conn *conn)
{
	Zfarm__Frame *f = NULL;
	char err[128];
	size_t left;
	int r;

	while (frame_conn_live(conn) && !conn->paused && !conn->flushing) {
		r = frame_conn_next(conn, &f, err, sizeof(err));
		if (r < 0)
			frame_conn_finish(conn, err);
		if (r <= 0)
			break;
		conn->on_recv(conn, f, conn->arg);
	}
	if (!conn->eof || !frame_conn_live(conn) || conn->paused || conn->flushing)
		return;
	left = evbuffer_get_length(bufferevent_get_input(conn->bev));
	if (left == 0) {
		frame_conn_finish(conn, "");
	} else {
		snprintf(err, sizeof(err), "truncated frame at EOF (%zu bytes)", left);
		frame_conn_finish(conn, err);
	}
}

/* frame_conn_check_flushed - close_after_flush is done once the output is empty. */
static void frame_conn_check_flushed(struct frame_conn *conn)
{
	if (conn->flushing && evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0)
		frame_conn_finish(conn, "");
}

static void frame_conn_on_read(struct bufferevent *bev, void *arg)
{
	struct frame_conn *conn = arg;

	(void)bev;
	frame_conn_enter(conn);
	frame_conn_deliver(conn);
	frame_conn_leave(conn);
}

static void frame_conn_on_write(struct bufferevent *bev, void *arg)
{
	struct frame_conn *conn = arg;

	(void)bev;
	frame_conn_enter(conn);
	frame_conn_check_flushed(conn);
	frame_conn_leave(conn);
}

static void frame_conn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct frame_conn *conn = arg;
	int e = EVUTIL_SOCKET_ERROR();
	char reason[128];

	(void)bev;
	frame_conn_enter(conn);
	if (what & BEV_EVENT_EOF) {
		conn->eof = true;
		frame_conn_deliver(conn);
	} else if (what & BEV_EVENT_ERROR) {
		snprintf(reason, sizeof(reason), "%s error: %s",
			 what & BEV_EVENT_WRITING ? "write" : "read",
			 e ? evutil_socket_error_to_string(e) : "unknown");
		frame_conn_finish(conn, reason);
	} else if (what & BEV_EVENT_TIMEOUT) {
		frame_conn_finish(conn,
				  what & BEV_EVENT_READING ? "read timeout" : "write timeout");
	}
	frame_conn_leave(conn);
}

/* frame_conn_on_kick - deferred work: frames buffered across a pause, a finished flush. */
static void frame_conn_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct frame_conn *conn = arg;

	(void)fd;
	(void)what;
	frame_conn_enter(conn);
	if (conn->flushing)
		frame_conn_check_flushed(conn);
	else
		frame_conn_deliver(conn);
	frame_conn_leave(conn);
}

/*
 * frame_conn_alloc - everything that can fail before the bufferevent is
 * ours, so that a NULL return leaves the fd or bufferevent to the caller.
 */
static struct frame_conn *frame_conn_alloc(struct event_base *base, size_t max_frame,
					   frame_recv_fn *on_recv, frame_close_fn *on_close,
					   void *arg)
{
	struct frame_conn *conn = xcalloc(1, sizeof(*conn));

	conn->kick = event_new(base, -1, 0, frame_conn_on_kick, conn);
	if (conn->kick == NULL) {
		free(conn);
		return NULL;
	}
	conn->max_frame = frame_limit(max_frame);
	conn->on_recv = on_recv;
	conn->on_close = on_close;
	conn->arg = arg;
	return conn;
}

/* frame_conn_attach - a bufferevent someone else made (TLS, a pair) does its own I/O. */
static struct frame_conn *frame_conn_attach(struct frame_conn *conn, struct bufferevent *bev)
{
	conn->bev = bev;
	bufferevent_setcb(bev, frame_conn_on_read, frame_conn_on_write, frame_conn_on_event, conn);
	bufferevent_setwatermark(bev, EV_READ, 0, FRAME_HEADER_SIZE + conn->max_frame);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	return conn;
}

struct frame_conn *frame_conn_new(struct event_base *base, int fd, size_t max_frame,
				  frame_recv_fn *on_recv, frame_close_fn *on_close, void *arg)
{
	struct frame_conn *conn = frame_conn_alloc(base, max_frame, on_recv, on_close, arg);
	struct bufferevent *bev;

	if (conn == NULL)
		return NULL;
	bev = NULL;
	if (evutil_make_socket_nonblocking(fd) == 0)
		bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	/* Our own socket: a sockstream does the I/O (end-of-turn writes, large reads). */
	if (bev)
		conn->ss = sockstream_new(bev, FRAME_HEADER_SIZE + conn->max_frame,
					  frame_conn_on_read, frame_conn_on_write,
					  frame_conn_on_event, conn);
	if (conn->ss == NULL) {
		if (bev) {
			bufferevent_setfd(bev, -1); /* on failure the fd stays the caller's */
			bufferevent_free(bev);
		}
		event_free(conn->kick);
		free(conn);
		return NULL;
	}
	conn->bev = bev;
	sockstream_read(conn->ss, true);
	return conn;
}

struct frame_conn *frame_conn_new_bev(struct bufferevent *bev, size_t max_frame,
				      frame_recv_fn *on_recv, frame_close_fn *on_close, void *arg)
{
	struct frame_conn *conn =
	    frame_conn_alloc(bufferevent_get_base(bev), max_frame, on_recv, on_close, arg);

	return conn ? frame_conn_attach(conn, bev) : NULL;
}

int frame_conn_send(struct frame_conn *conn, const Zfarm__Frame *f, char *err, size_t errlen)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	struct evbuffer_iovec v;
	size_t n;

	if (!frame_conn_live(conn) || conn->flushing) {
		err_printf(err, errlen, "connection closing");
		return -1;
	}
	n = frame_encoded_size(f, FRAME_MAX_LIMIT, err, errlen);
	if (n == 0)
		return -1;
	/* Encode straight into the output buffer: one extent, no copy. */
	if (evbuffer_reserve_space(out, (ev_ssize_t)(FRAME_HEADER_SIZE + n), &v, 1) != 1) {
		err_printf(err, errlen, "cannot queue %zu bytes", FRAME_HEADER_SIZE + n);
		return -1;
	}
	frame_encode(f, n, v.iov_base);
	v.iov_len = FRAME_HEADER_SIZE + n;
	if (evbuffer_commit_space(out, &v, 1) < 0) {
		err_printf(err, errlen, "cannot queue %zu bytes", FRAME_HEADER_SIZE + n);
		return -1;
	}
	return 0;
}

void frame_conn_set_timeouts(struct frame_conn *conn, unsigned read_ms, unsigned write_ms)
{
	struct timeval r = {.tv_sec = read_ms / 1000, .tv_usec = (read_ms % 1000) * 1000};
	struct timeval w = {.tv_sec = write_ms / 1000, .tv_usec = (write_ms % 1000) * 1000};

	if (conn->ss)
		sockstream_set_timeouts(conn->ss, read_ms ? &r : NULL, write_ms ? &w : NULL);
	else
		bufferevent_set_timeouts(conn->bev, read_ms ? &r : NULL, write_ms ? &w : NULL);
}

/*
 * frame_conn_pause - reading stops too, so that the peer feels the
 * backpressure and an idle read timeout does not fire meanwhile.
 */
void frame_conn_pause(struct frame_conn *conn)
{
	conn->paused = true;
	frame_conn_reading(conn, false);
}

/* frame_conn_resume - frames already buffered go out from the event loop. */
void frame_conn_resume(struct frame_conn *conn)
{
	if (!conn->paused)
		return;
	conn->paused = false;
	if (!frame_conn_live(conn) || conn->flushing)
		return;
	if (!conn->eof)
		frame_conn_reading(conn, true);
	event_active(conn->kick, EV_TIMEOUT, 0);
}

size_t frame_conn_output_pending(const struct frame_conn *conn)
{
	return evbuffer_get_length(bufferevent_get_output(conn->bev));
}

int frame_conn_fd(const struct frame_conn *conn)
{
	return (int)bufferevent_getfd(conn->bev);
}

void frame_conn_set_arg(struct frame_conn *conn, void *arg)
{
	conn->arg = arg;
}

void frame_conn_close_after_flush(struct frame_conn *conn)
{
	if (!frame_conn_live(conn) || conn->flushing)
		return;
	conn->flushing = true;
	frame_conn_reading(conn, false);
	/* The write callback sees the output drain; if it already has, kick. */
	if (frame_conn_output_pending(conn) == 0)
		event_active(conn->kick, EV_TIMEOUT, 0);
}

void frame_conn_free(struct frame_conn **connp)
{
	struct frame_conn *conn;

	if (connp == NULL || *connp == NULL)
		return;
	conn = *connp;
	*connp = NULL;
	if (conn->in_callback > 0) {
		conn->freeing = true;
		if (conn->ss)
			sockstream_stop(conn->ss);
		else
			bufferevent_disable(conn->bev, EV_READ | EV_WRITE);
		return;
	}
	frame_conn_destroy(conn);
}
