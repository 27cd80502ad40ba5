/*
 * farm_server - the one child skeleton every farm daemon runs on.
 *
 * A farm daemon's main() is one call: farm_server_main(argc, argv, &ops).
 * The skeleton then
 *   - loads the config (-c FILE or $ZFARM_CONFIG, -o overrides and
 *     $ZFARM_OVERRIDES, one "name=value" per line);
 *   - takes its listen sockets the systemd way: LISTEN_FDS (count),
 *     LISTEN_FDNAMES (colon-separated names), LISTEN_PID (must be ours if
 *     set), fds from 3; or, standalone, opens them itself from -s [NAME=]SPEC
 *     (see endpoint.h), so a farm can run alone in a test or under systemd;
 *   - accepts connections non-blockingly (EAGAIN is normal: siblings race
 *     for the same socket), at most client_limit at once, and hands each fd
 *     to ops->accept; the service calls farm_server_session_end() once per
 *     accepted connection when it is finished with it;
 *   - reports to the manager over the status channel ($ZFARM_STATUS_FD, a
 *     stream socket; absent when standalone) FarmStatus frames with pid,
 *     generation ($ZFARM_GENERATION), state, busy (inside a request),
 *     sessions and served: at once on every change of state, AVAILABLE
 *     (can take one more connection), TAKEN (at client_limit), EXITING
 *     (accepts nothing more); changes of busy, sessions or served alone at
 *     most once per 500 ms (the first sign of work and the last report
 *     before exit at once), so a child serving thousands of requests a
 *     second costs the manager a couple of frames, not thousands;
 *   - stops accepting and exits once its sessions are finished: after
 *     max_requests connections, after max_idle seconds without a session,
 *     on SIGTERM (a second SIGTERM exits at once), and on EOF of the status
 *     channel (the manager is gone).  ops->drain is called when draining
 *     starts so a service can close idle persistent connections early.
 *
 * Limits come from the manager's environment ($ZFARM_CLIENT_LIMIT,
 * $ZFARM_MAX_REQUESTS, $ZFARM_MAX_IDLE, $ZFARM_STRESS, $ZFARM_FARM) or the
 * options -n, -r, -i, -S, -F (options win).  Other options: -v (debug
 * logging), -L syslog|stderr.  The LISTEN_* and ZFARM_* variables are
 * removed from the environment once read, so programs the service runs
 * do not inherit them.
 *
 * Requests: by default one connection is one request (served counts
 * finished connections; busy means sessions > 0).  A service whose
 * connections are persistent and carry many requests (a transport fed by
 * the scheduler) sets FARM_SERVER_EXPLICIT_REQUESTS and brackets each with
 * farm_server_request_begin()/end(); then busy is "inside a request" and
 * max_requests counts requests.  Requests may overlap (a router answers
 * the next one while an earlier one waits for the scheduler): busy lasts
 * while any is under way.
 *
 * Failures at start-up (bad options, config, sockets, ops->init) are fatal
 * with a log line naming the cause; after that nothing in the skeleton
 * exits the process except the rules above.
 */
#ifndef ZFARM_FARM_SERVER_H
#define ZFARM_FARM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct config;
struct farm_server;

#define FARM_SERVER_EXPLICIT_REQUESTS 0x1u

struct farm_server_ops {
	const char *name; /* program name for logs, e.g. "smtpserver" */
	unsigned flags;   /* FARM_SERVER_* */
	/* After config and sockets, before the loop; -1 with reason is fatal. */
	int (*init)(struct farm_server *srv, char *err, size_t errlen);
	/*
	 * A new connection: the service owns fd (non-blocking, close-on-exec)
	 * and calls farm_server_session_end() once when done with it.
	 * listener is the socket's name from LISTEN_FDNAMES or -s.
	 */
	void (*accept)(struct farm_server *srv, int fd, const char *listener);
	/* Draining began (optional): finish soon, close idle sessions. */
	void (*drain)(struct farm_server *srv);
	/* The manager sent a wakeup (optional; farms with "wakeup" set). */
	void (*wakeup)(struct farm_server *srv);
	/* Just before exit(0) (optional). */
	void (*fini)(struct farm_server *srv);
};

/* farm_server_main - run the child; returns only the exit status. */
int farm_server_main(int argc, char **argv, const struct farm_server_ops *ops);

/* The service's view of its skeleton. */
struct event_base *farm_server_base(struct farm_server *srv);
const struct config *farm_server_config(struct farm_server *srv);
const char *farm_server_farm_name(struct farm_server *srv);
bool farm_server_stress(struct farm_server *srv);
bool farm_server_draining(struct farm_server *srv);
unsigned farm_server_sessions(struct farm_server *srv);
void *farm_server_ctx(struct farm_server *srv);
void farm_server_set_ctx(struct farm_server *srv, void *ctx);

/* farm_server_session_end - one accepted connection is finished. */
void farm_server_session_end(struct farm_server *srv);
/* With FARM_SERVER_EXPLICIT_REQUESTS: bracket each request (they may overlap). */
void farm_server_request_begin(struct farm_server *srv);
void farm_server_request_end(struct farm_server *srv);

#endif
