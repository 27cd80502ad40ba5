/*
 * sockstream - the fast path of a plain-socket bufferevent.
 *
 * libevent 2.1 registers EV_WRITE for every write a bufferevent makes
 * (an epoll_ctl to add it, another to remove it, and a loop turn between)
 * and reads at most 4096 octets at a time, each read preceded by an
 * ioctl(FIONREAD).  A sockstream takes over the I/O of a bufferevent on
 * a plain (non-TLS) socket and does it the cheap way:
 *
 *   - whatever the owner adds to the bufferevent's output during a loop
 *     turn leaves at the end of that turn in one writev, without any
 *     registration; EV_WRITE is enabled only for what the socket does not
 *     take (the bufferevent then writes the rest under its write timeout)
 *     and disabled again once the output has drained;
 *   - input is read with one recv per readiness into the bufferevent's
 *     input, up to the owner's bound (what a full input may hold), under
 *     the read timeout; an input at its bound is not read again until the
 *     owner drains it below the bound.
 *
 * The owner keeps the bufferevent, its buffers and its callbacks: it
 * passes the same read, write and event callbacks it would give
 * bufferevent_setcb(), and gets the same calls: read after new input
 * (and from bufferevent_trigger(EV_READ)), write when the output has
 * drained to its low-water mark (empty unless the owner set one after
 * sockstream_new()), event with BEV_EVENT_READING or
 * BEV_EVENT_WRITING and EOF, ERROR (errno as EVUTIL_SOCKET_ERROR() reads
 * it) or TIMEOUT.  Callbacks run from the event loop only, never from a
 * sockstream function.  After EOF, an error or a timeout on the read
 * side, reading is off.
 *
 * The owner must not enable the bufferevent itself while a sockstream
 * runs it (sockstream_read() is the switch for reading), nor use
 * bufferevent_set_timeouts() (sockstream_set_timeouts() instead).
 *
 * Users: frame_conn on its own sockets (common/frame.c), the smtpserver
 * session in clear (smtpserver/session.c) and the smtp/lmtp client once
 * connected in clear (transport/smtp_client.c).  A sockstream belongs to
 * the thread running its event loop.
 */
#ifndef ZFARM_SOCKSTREAM_H
#define ZFARM_SOCKSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/time.h>

#include <event2/bufferevent.h>

struct sockstream;

/* The most one read takes from the socket. */
#define SOCKSTREAM_READ_MAX 65536

/*
 * sockstream_new - run bev's I/O (bev must be a socket bufferevent with
 * its fd set).  in_bound: the most input held (> 0).  Reading starts off;
 * nothing is registered until sockstream_read(on) or output is queued.
 * NULL if out of memory (bev untouched).
 */
struct sockstream *sockstream_new(struct bufferevent *bev, size_t in_bound,
				  bufferevent_data_cb readcb, bufferevent_data_cb writecb,
				  bufferevent_event_cb eventcb, void *arg);

/*
 * sockstream_free - give the bufferevent back (callbacks cleared, EV_READ
 * and EV_WRITE disabled, buffers and fd untouched).  Accepts NULL.
 */
void sockstream_free(struct sockstream **ssp);

/* sockstream_read - want input or not (bounded as above). */
void sockstream_read(struct sockstream *ss, bool on);

/*
 * sockstream_read_either - want input from whichever reads bev's socket:
 * ss if there is one (plain sockets), else bev itself (TLS, a pair).
 */
void sockstream_read_either(struct sockstream *ss, struct bufferevent *bev, bool on);

/* sockstream_reading - the owner wants input (sockstream_read(on) and no EOF, error or stop since). */
bool sockstream_reading(const struct sockstream *ss);

/*
 * sockstream_set_timeouts - the read timeout (while reading) and the write
 * timeout (while output waits for the socket); NULL for none.
 */
void sockstream_set_timeouts(struct sockstream *ss, const struct timeval *rd,
			     const struct timeval *wr);

/*
 * sockstream_stop - no more reading, writing or callbacks: the peer is
 * gone or the owner is tearing down.  The output stays as it is.
 */
void sockstream_stop(struct sockstream *ss);

#endif
