/* endpoint - "unix:" and "inet:" socket addresses; see endpoint.h. */
#include "common/endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int fd_set_nonblock(int fd, bool on)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0)
		return -1;
	flags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, flags);
}

int fd_set_cloexec(int fd, bool on)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags < 0)
		return -1;
	flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
	return fcntl(fd, F_SETFD, flags);
}

static int endpoint_parse_port(const char *p, struct endpoint *ep, char *err, size_t errlen)
{
	char *end;
	long port;

	errno = 0;
	port = strtol(p, &end, 10);
	if (*p == '\0' || *end != '\0' || errno || port < 1 || port > 65535) {
		snprintf(err, errlen, "bad port \"%s\": want 1-65535", p);
		return -1;
	}
	snprintf(ep->port, sizeof(ep->port), "%ld", port);
	return 0;
}

static int endpoint_parse_inet(const char *s, struct endpoint *ep, char *err, size_t errlen)
{
	const char *colon;
	size_t hostlen;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "bad inet endpoint \"%s\": want [addr]:port", s);
			return -1;
		}
		hostlen = (size_t)(close - s - 1);
		s++;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL) {
			snprintf(err, errlen,
				 "bad inet endpoint \"%s\": want host:port (IPv6 in brackets)", s);
			return -1;
		}
		hostlen = (size_t)(colon - s);
	}
	if (hostlen == 0 || hostlen >= sizeof(ep->host)) {
		snprintf(err, errlen, "bad inet endpoint host length %zu", hostlen);
		return -1;
	}
	memcpy(ep->host, s, hostlen);
	ep->host[hostlen] = '\0';
	return endpoint_parse_port(colon + 1, ep, err, errlen);
}

int endpoint_parse(const char *spec, struct endpoint *ep, char *err, size_t errlen)
{
	memset(ep, 0, sizeof(*ep));
	if (strncmp(spec, "unix:", 5) == 0) {
		const char *path = spec + 5;

		if (*path == '\0' || strlen(path) >= sizeof(ep->path)) {
			snprintf(err, errlen, "bad unix endpoint: path empty or longer than %zu",
				 sizeof(ep->path) - 1);
			return -1;
		}
		ep->kind = ENDPOINT_UNIX;
		strcpy(ep->path, path);
		return 0;
	}
	if (strncmp(spec, "inet:", 5) == 0) {
		ep->kind = ENDPOINT_INET;
		return endpoint_parse_inet(spec + 5, ep, err, errlen);
	}
	snprintf(err, errlen, "bad endpoint \"%s\": want unix:PATH or inet:HOST:PORT", spec);
	return -1;
}

char *endpoint_format(const struct endpoint *ep, char *buf, size_t buflen)
{
	if (ep->kind == ENDPOINT_UNIX)
		snprintf(buf, buflen, "unix:%s", ep->path);
	else if (strchr(ep->host, ':'))
		snprintf(buf, buflen, "inet:[%s]:%s", ep->host, ep->port);
	else
		snprintf(buf, buflen, "inet:%s:%s", ep->host, ep->port);
	return buf;
}

static int endpoint_unix_addr(const struct endpoint *ep, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, ep->path, strlen(ep->path) + 1);
	return 0;
}

static int endpoint_listen_unix(const struct endpoint *ep, int backlog, mode_t mode, char *err,
				size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	if (lstat(ep->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", ep->path);
			return -1;
		}
		/* A stale socket from a dead manager: binding needs it gone. */
		if (unlink(ep->path) < 0) {
			snprintf(err, errlen, "unlink stale %s: %s", ep->path, strerror(errno));
			return -1;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	endpoint_unix_addr(ep, &sun);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(ep->path, mode) < 0 ||
	    listen(fd, backlog) < 0) {
		snprintf(err, errlen, "listen on unix:%s: %s", ep->path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int endpoint_resolve(const struct endpoint *ep, bool passive, struct addrinfo **res,
			    char *err, size_t errlen)
{
	struct addrinfo hints;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(ep->host, ep->port, &hints, res);
	if (rc != 0) {
		snprintf(err, errlen, "resolve %s: %s", ep->host, gai_strerror(rc));
		return -1;
	}
	return 0;
}

static int endpoint_listen_inet(const struct endpoint *ep, int backlog, char *err, size_t errlen)
{
	struct addrinfo *res;
	int fd, on = 1;

	if (endpoint_resolve(ep, true, &res, err, errlen) < 0)
		return -1;
	fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    res->ai_protocol);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
		char spec[300];

		int e = errno;

		snprintf(err, errlen, "listen on %s: %s", endpoint_format(ep, spec, sizeof(spec)),
			 strerror(e));
		close(fd);
		fd = -1;
		errno = e;
	}
	freeaddrinfo(res);
	return fd;
}

int endpoint_listen(const struct endpoint *ep, int backlog, mode_t mode, char *err,
		    size_t errlen)
{
	if (ep->kind == ENDPOINT_UNIX)
		return endpoint_listen_unix(ep, backlog, mode, err, errlen);
	return endpoint_listen_inet(ep, backlog, err, errlen);
}

static int endpoint_connect_one(int family, const struct sockaddr *sa, socklen_t salen,
				bool nonblocking, char *err, size_t errlen)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, sa, salen) < 0 && !(nonblocking && errno == EINPROGRESS)) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int endpoint_connect(const struct endpoint *ep, bool nonblocking, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	struct sockaddr_un sun;
	int fd = -1;

	if (ep->kind == ENDPOINT_UNIX) {
		endpoint_unix_addr(ep, &sun);
		fd = endpoint_connect_one(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun),
					  nonblocking, err, errlen);
		if (fd < 0)
			snprintf(err + strlen(err), errlen - strlen(err), " (%s)", ep->path);
		return fd;
	}
	if (endpoint_resolve(ep, false, &res, err, errlen) < 0)
		return -1;
	for (ai = res; ai && fd < 0; ai = ai->ai_next)
		fd = endpoint_connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, nonblocking,
					  err, errlen);
	freeaddrinfo(res);
	return fd;
}
