/* Tests for common/endpoint.c: parsing, listen/connect on unix and inet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/endpoint.h"

static void test_parse_table(void **state)
{
	static const struct {
		const char *spec;
		int ok;
		const char *want; /* canonical form or error substring */
	} rows[] = {
		{"unix:/run/zfarm/private/router", 1, "unix:/run/zfarm/private/router"},
		{"unix:relative/sock", 1, "unix:relative/sock"},
		{"inet:127.0.0.1:2525", 1, "inet:127.0.0.1:2525"},
		{"inet:[::1]:25", 1, "inet:[::1]:25"},
		{"inet:localhost:0025", 1, "inet:localhost:25"},
		{"inet:127.0.0.1:0", 0, "bad port"},
		{"inet:127.0.0.1:65536", 0, "bad port"},
		{"inet:127.0.0.1:", 0, "bad port"},
		{"inet:127.0.0.1:25x", 0, "bad port"},
		{"inet:::1:25", 0, "brackets"},
		{"inet:[::1]25", 0, "[addr]:port"},
		{"inet::25", 0, "host length"},
		{"inet:nohostport", 0, "host:port"},
		{"unix:", 0, "path empty"},
		{"tcp:1.2.3.4:5", 0, "want unix:PATH"},
		{"", 0, "want unix:PATH"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct endpoint ep;
		char err[256] = "", buf[300];
		int rc = endpoint_parse(rows[i].spec, &ep, err, sizeof(err));

		if ((rc == 0) != rows[i].ok)
			fail_msg("row %zu \"%s\": got rc %d (%s), want ok=%d", i, rows[i].spec, rc,
				 err, rows[i].ok);
		if (rows[i].ok && strcmp(endpoint_format(&ep, buf, sizeof(buf)), rows[i].want))
			fail_msg("row %zu: got \"%s\", want \"%s\"", i, buf, rows[i].want);
		if (!rows[i].ok && strstr(err, rows[i].want) == NULL)
			fail_msg("row %zu: got error \"%s\", want it to contain \"%s\"", i, err,
				 rows[i].want);
	}
}

static void test_unix_path_too_long(void **state)
{
	char spec[300];
	struct endpoint ep;
	char err[256];

	(void)state;
	memset(spec, 'a', sizeof(spec));
	memcpy(spec, "unix:/", 6);
	spec[sizeof(spec) - 1] = '\0';
	assert_int_equal(endpoint_parse(spec, &ep, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer than"));
}

static void round_trip(int lfd, const struct endpoint *ep)
{
	char err[256];
	int cfd, afd = -1;
	char c = 0;

	cfd = endpoint_connect(ep, false, err, sizeof(err));
	if (cfd < 0)
		fail_msg("connect: %s", err);
	for (int i = 0; i < 1000 && afd < 0; i++) {
		afd = accept(lfd, NULL, NULL);
		if (afd < 0 && errno != EAGAIN)
			fail_msg("accept: %s", strerror(errno));
		if (afd < 0) {
			fd_set rd;
			struct timeval tv = {0, 10000};

			FD_ZERO(&rd);
			FD_SET(lfd, &rd);
			select(lfd + 1, &rd, NULL, NULL, &tv);
		}
	}
	assert_true(afd >= 0);
	assert_int_equal(write(cfd, "x", 1), 1);
	assert_int_equal(read(afd, &c, 1), 1);
	assert_int_equal(c, 'x');
	/* Everything we hand out is close-on-exec. */
	assert_true(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
	close(afd);
	close(cfd);
}

static void test_unix_listen_connect_and_stale(void **state)
{
	char dir[] = "/tmp/zfarm-ep-XXXXXX", spec[200], err[256];
	struct endpoint ep;
	struct stat st;
	int lfd, fd2;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(spec, sizeof(spec), "unix:%s/sock", dir);
	assert_int_equal(endpoint_parse(spec, &ep, err, sizeof(err)), 0);
	lfd = endpoint_listen(&ep, 16, 0660, err, sizeof(err));
	if (lfd < 0)
		fail_msg("listen: %s", err);
	assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(stat(ep.path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	round_trip(lfd, &ep);
	close(lfd);
	/* The socket file is now stale: a new listen replaces it. */
	fd2 = endpoint_listen(&ep, 16, 0666, err, sizeof(err));
	if (fd2 < 0)
		fail_msg("listen over stale socket: %s", err);
	round_trip(fd2, &ep);
	close(fd2);
	unlink(ep.path);
	/* A regular file is never removed. */
	close(open(ep.path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(endpoint_listen(&ep, 16, 0666, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a socket"));
	unlink(ep.path);
	/* Nobody listening: a reason naming the path. */
	assert_int_equal(endpoint_connect(&ep, false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ep.path));
	rmdir(dir);
}

static void test_inet_listen_connect(void **state)
{
	static const char *const hosts[] = {"127.0.0.1", "[::1]"};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct endpoint ep;
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		char spec[64], err[256];
		int lfd;

		/* Find a free port: bind port 0 is not expressible, so probe. */
		snprintf(spec, sizeof(spec), "inet:%s:1", hosts[i]);
		assert_int_equal(endpoint_parse(spec, &ep, err, sizeof(err)), 0);
		lfd = -1;
		for (int port = 20000 + (int)(getpid() % 20000), tries = 0; lfd < 0 && tries < 50;
		     tries++, port++) {
			snprintf(ep.port, sizeof(ep.port), "%d", port);
			lfd = endpoint_listen(&ep, 16, 0, err, sizeof(err));
		}
		if (lfd < 0) {
			if (i == 1 && strstr(err, "Cannot assign"))
				continue; /* no IPv6 loopback in this namespace */
			fail_msg("listen %s: %s", hosts[i], err);
		}
		assert_int_equal(getsockname(lfd, (struct sockaddr *)&ss, &sslen), 0);
		assert_int_equal(ss.ss_family, i == 0 ? AF_INET : AF_INET6);
		round_trip(lfd, &ep);
		close(lfd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_unix_path_too_long),
		cmocka_unit_test(test_unix_listen_connect_and_stale),
		cmocka_unit_test(test_inet_listen_connect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
