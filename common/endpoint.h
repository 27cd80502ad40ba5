/*
 * endpoint - "unix:/path" and "inet:host:port" socket addresses.
 *
 * Farms listen on endpoints and clients (smtpserver -> router, scheduler ->
 * transports, tools -> daemons) connect to them, so the one spelling lives
 * here.  Forms:
 *
 *   unix:/run/zfarm/private/router    a unix stream socket
 *   inet:127.0.0.1:2525               IPv4
 *   inet:[::1]:2525                   IPv6 (brackets required)
 *   inet:localhost:2525               a name, resolved with getaddrinfo
 *                                     (listen: first address only)
 *
 * Library code: errors are returned with a reason, never logged.  Callers:
 * farmd (opens every listen socket), the farm skeleton (standalone -s),
 * every client of a farm socket, tests.
 */
#ifndef ZFARM_ENDPOINT_H
#define ZFARM_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum endpoint_kind {
	ENDPOINT_UNIX = 1,
	ENDPOINT_INET,
};

struct endpoint {
	enum endpoint_kind kind;
	char path[108]; /* unix: socket path (sun_path size) */
	char host[256]; /* inet: host without brackets */
	char port[16];  /* inet: decimal port */
};

/* endpoint_parse - spec -> ep; -1 with a reason on a malformed spec. */
int endpoint_parse(const char *spec, struct endpoint *ep, char *err, size_t errlen);

/* endpoint_format - canonical spec into buf; returns buf. */
char *endpoint_format(const struct endpoint *ep, char *buf, size_t buflen);

/*
 * endpoint_listen - a non-blocking, close-on-exec listening socket.
 * unix: a stale socket file at the path is removed first (a regular file
 * is not: that is an error); the socket gets mode `mode` (e.g. 0666; access
 * control is the directory's mode).  inet: SO_REUSEADDR, IPV6_V6ONLY for
 * IPv6.  Returns the fd or -1 with a reason.
 */
int endpoint_listen(const struct endpoint *ep, int backlog, mode_t mode, char *err,
		    size_t errlen);

/*
 * endpoint_connect - a connected close-on-exec stream socket, blocking or
 * non-blocking (then the connect may still be in progress: EINPROGRESS is
 * success).  Returns the fd or -1 with a reason.
 */
int endpoint_connect(const struct endpoint *ep, bool nonblocking, char *err, size_t errlen);

/* fd_set_nonblock / fd_set_cloexec - 0 or -1 (errno set). */
int fd_set_nonblock(int fd, bool on);
int fd_set_cloexec(int fd, bool on);

#endif
