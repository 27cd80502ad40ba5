/*
 * frame - the one framing module for zfarm IPC.
 *
 * Every message between zfarm processes is a protobuf-c Zfarm__Frame
 * (proto/frame.proto) sent as a 4-byte big-endian length followed by that
 * many bytes of encoded Frame.  Decoding is strict: a length of 0 or above
 * the connection's maximum, bytes that do not decode, a version other than
 * FRAME_VERSION, a Frame without a body, and (for frame_decode_exact) bytes
 * after the frame are all errors.  An error drops that peer: the close
 * callback runs with a reason the owner logs; the process lives on.
 *
 * Three layers:
 *   - codec: frame_pack() / frame_unpack() / frame_decode_exact(), pure;
 *   - blocking fd I/O for tools and tests: frame_write_fd(), frame_read_fd();
 *   - struct frame_conn over a libevent bufferevent for daemons: frames in
 *     through a receive callback, out through frame_conn_send().
 *
 * Ownership: a decoded frame belongs to the caller, released with
 * frame_free().  frame_conn_new() takes ownership of the fd (or
 * bufferevent).  frame_conn_free() may be called from inside the receive or
 * close callback: the connection is then marked closing and freed when the
 * callback returns (nothing else of it is touched afterwards).
 *
 * Library code: never logs, never exits.  Callers: the farm skeleton
 * (status channel), farmd, every farm speaking to another, the tools.
 */
#ifndef ZFARM_FRAME_H
#define ZFARM_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/frame.pb-c.h"

struct event_base;
struct bufferevent;

#define FRAME_VERSION 1
#define FRAME_HEADER_SIZE 4
/* Default and hard ceiling for one frame's encoded size. */
#define FRAME_MAX_DEFAULT (1024u * 1024u)
#define FRAME_MAX_LIMIT (64u * 1024u * 1024u)

/* frame_init - zfarm__frame__init() plus version and request id. */
void frame_init(Zfarm__Frame *f, uint64_t request_id);

/* frame_body_name - "ping", "farm_status", ...; "none" or "unknown". */
const char *frame_body_name(const Zfarm__Frame *f);

/*
 * frame_pack - encode f with its 4-byte length prefix into a malloc'ed
 * buffer (*out, *outlen).  Fails (-1 with reason) if f has no body, a
 * version other than FRAME_VERSION, or encodes to more than max bytes.
 */
int frame_pack(const Zfarm__Frame *f, size_t max, uint8_t **out, size_t *outlen, char *err,
	       size_t errlen);

/*
 * frame_unpack - decode one Frame body (no length prefix) of len bytes and
 * check it (version, body set).  NULL with a reason on any problem.
 */
Zfarm__Frame *frame_unpack(const uint8_t *body, size_t len, char *err, size_t errlen);

/*
 * frame_decode_exact - buf must hold exactly one length-prefixed frame of at
 * most max bytes: a short buffer is "truncated", extra bytes "trailing".
 */
Zfarm__Frame *frame_decode_exact(const uint8_t *buf, size_t len, size_t max, char *err,
				 size_t errlen);

/* frame_free - release a decoded frame; accepts NULL, clears the pointer. */
void frame_free(Zfarm__Frame **f);

/*
 * frame_write_fd - blocking write of one frame (handles short writes and
 * EINTR; a non-blocking fd is waited on with poll).  0 or -1 with reason.
 */
int frame_write_fd(int fd, const Zfarm__Frame *f, char *err, size_t errlen);

/*
 * frame_read_fd - blocking read of one frame of at most max bytes, waiting
 * at most timeout_ms in total (-1: forever).  Returns the frame, or NULL
 * with err set: "" (empty) on a clean EOF before any byte, otherwise the
 * reason (timeout, truncated, oversize, undecodable, ...).
 */
Zfarm__Frame *frame_read_fd(int fd, size_t max, int timeout_ms, char *err, size_t errlen);

struct frame_conn;

/* The callee owns f and must frame_free() it. */
typedef void frame_recv_fn(struct frame_conn *conn, Zfarm__Frame *f, void *arg);
/*
 * The connection is finished: reason is "" on a clean EOF at a frame
 * boundary, else why (EOF inside a frame, oversize, undecodable, I/O error,
 * timeout).  The owner must call frame_conn_free() (here or later); no
 * further callbacks arrive.
 */
typedef void frame_close_fn(struct frame_conn *conn, const char *reason, void *arg);

/*
 * frame_conn_new - wrap a connected fd (ownership passes; it is made
 * non-blocking and closed by frame_conn_free).  max_frame is the largest
 * accepted incoming frame (0: FRAME_MAX_DEFAULT); input buffering never
 * exceeds it plus the header.  NULL only if libevent fails.
 */
struct frame_conn *frame_conn_new(struct event_base *base, int fd, size_t max_frame,
				  frame_recv_fn *on_recv, frame_close_fn *on_close, void *arg);
/* frame_conn_new_bev - the same over an existing bufferevent (e.g. TLS). */
struct frame_conn *frame_conn_new_bev(struct bufferevent *bev, size_t max_frame,
				      frame_recv_fn *on_recv, frame_close_fn *on_close, void *arg);

/*
 * frame_conn_send - queue one frame for sending.  0, or -1 with a reason
 * if it cannot be encoded or the connection is closing.
 */
int frame_conn_send(struct frame_conn *conn, const Zfarm__Frame *f, char *err, size_t errlen);

/* frame_conn_set_timeouts - idle read / write timeouts in ms (0: none). */
void frame_conn_set_timeouts(struct frame_conn *conn, unsigned read_ms, unsigned write_ms);
/* frame_conn_pause / resume - stop/start delivering frames (backpressure). */
void frame_conn_pause(struct frame_conn *conn);
void frame_conn_resume(struct frame_conn *conn);
/* frame_conn_output_pending - bytes queued but not yet written. */
size_t frame_conn_output_pending(const struct frame_conn *conn);
/* frame_conn_fd - the underlying fd. */
int frame_conn_fd(const struct frame_conn *conn);
/* frame_conn_set_arg - change the callback argument. */
void frame_conn_set_arg(struct frame_conn *conn, void *arg);
/*
 * frame_conn_close_after_flush - stop reading; once queued output is
 * written, run the close callback with reason "".
 */
void frame_conn_close_after_flush(struct frame_conn *conn);
/*
 * frame_conn_free - close and free; accepts NULL; safe inside callbacks.
 * Queued output is written if the socket takes it at once (never blocks),
 * so a last report queued just before exit still reaches the peer.
 */
void frame_conn_free(struct frame_conn **conn);

#endif
