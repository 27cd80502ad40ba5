/*
 * Tests for common/farm_server.c: the harness plays farmd.  It opens a
 * listen socket, forks tests/farm/echo_farm with the socket on fd 3
 * (LISTEN_FDS) and a status socketpair (ZFARM_STATUS_FD), then checks the
 * FarmStatus reports, client_limit, max_requests, max_idle, SIGTERM,
 * manager EOF, stress mode, standalone mode and the thundering herd.
 *
 * Every wait is a loop with a deadline; each test's children are killed
 * and reaped in teardown, whatever happened.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/endpoint.h"
#include "common/frame.h"

#define MAX_KIDS	  4
#define MAX_CLIENTS	  8
#define GENERATION	  7
#define STATUS_TIMEOUT_MS 5000
#define LINE_TIMEOUT_MS	  5000
#define EXIT_TIMEOUT_MS	  5000
#define LINE_EOF	  (-2)

#define ST_AVAILABLE ZFARM__FARM_STATUS__STATE__AVAILABLE
#define ST_TAKEN     ZFARM__FARM_STATUS__STATE__TAKEN
#define ST_EXITING   ZFARM__FARM_STATUS__STATE__EXITING

struct kid {
	pid_t pid;     /* 0: slot unused */
	int status_fd; /* harness end of the status channel, -1: none/closed */
	bool status_eof;
	bool exited;
	int wstatus;
	int last_state; /* last FarmStatus seen, -1: none */
	bool last_busy;
	unsigned last_sessions;
};

struct fixture {
	char dir[64];
	char sock[128];
	struct endpoint ep;
	int lfd;
	struct kid kids[MAX_KIDS];
	int clients[MAX_CLIENTS];
};

/* How to start one child; NULL strings leave the variable unset. */
struct spawn {
	const char *client_limit;
	const char *max_requests;
	const char *max_idle;
	const char *stress;
	bool foreign_listen_pid; /* LISTEN_PID of another process */
	bool standalone;	 /* no LISTEN_*, no status channel */
	const char *log;	 /* stderr to this file in the temp dir */
	const char *args[8];	 /* extra arguments, NULL-terminated */
};

static char echo_path[PATH_MAX];

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

static const char *state_name(int state)
{
	switch (state) {
	case ST_AVAILABLE:
		return "AVAILABLE";
	case ST_TAKEN:
		return "TAKEN";
	case ST_EXITING:
		return "EXITING";
	case -1:
		return "(none)";
	default:
		return "UNSPECIFIED";
	}
}

/* ---- fixture ---- */

static int group_setup(void **state)
{
	const char *top = getenv("top_builddir");

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	snprintf(echo_path, sizeof(echo_path), "%s/tests/farm/echo_farm", top ? top : ".");
	if (access(echo_path, X_OK) < 0) {
		print_error("echo farm %s: %s (build it first; set top_builddir)\n", echo_path,
			    strerror(errno));
		return -1;
	}
	return 0;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char spec[160], err[256];

	if (fx == NULL)
		return -1;
	fx->lfd = -1;
	for (int i = 0; i < MAX_KIDS; i++)
		fx->kids[i].status_fd = -1;
	for (int i = 0; i < MAX_CLIENTS; i++)
		fx->clients[i] = -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/zfarm-fs-XXXXXX");
	if (mkdtemp(fx->dir) == NULL) {
		print_error("mkdtemp: %s\n", strerror(errno));
		free(fx);
		return -1;
	}
	snprintf(fx->sock, sizeof(fx->sock), "%s/echo", fx->dir);
	snprintf(spec, sizeof(spec), "unix:%s", fx->sock);
	if (endpoint_parse(spec, &fx->ep, err, sizeof(err)) < 0 ||
	    (fx->lfd = endpoint_listen(&fx->ep, 16, 0600, err, sizeof(err))) < 0) {
		print_error("listen %s: %s\n", spec, err);
		rmdir(fx->dir);
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static void remove_dir(const char *dir)
{
	static const char *const names[] = {"echo", "alone", "kid.log"};
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	if (rmdir(dir) < 0)
		print_error("rmdir %s: %s\n", dir, strerror(errno));
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	for (int i = 0; i < MAX_CLIENTS; i++)
		if (fx->clients[i] >= 0)
			close(fx->clients[i]);
	for (int i = 0; i < MAX_KIDS; i++) {
		struct kid *k = &fx->kids[i];

		if (k->pid > 0 && !k->exited) {
			kill(k->pid, SIGKILL);
			while (waitpid(k->pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		if (k->status_fd >= 0)
			close(k->status_fd);
	}
	if (fx->lfd >= 0)
		close(fx->lfd);
	remove_dir(fx->dir);
	free(fx);
	return 0;
}

/* ---- children ---- */

static void kid_setenv(const char *name, const char *value)
{
	if (value && setenv(name, value, 1) < 0)
		_exit(126);
}

/* kid_exec - in the forked child: arrange fds and environment, exec. */
static void kid_exec(struct fixture *fx, const struct spawn *sp, int status_end)
{
	static const char *const vars[] = {
	    "LISTEN_FDS",	"LISTEN_FDNAMES",     "LISTEN_PID",	    "ZFARM_STATUS_FD",
	    "ZFARM_GENERATION", "ZFARM_CLIENT_LIMIT", "ZFARM_MAX_REQUESTS", "ZFARM_MAX_IDLE",
	    "ZFARM_STRESS",	"ZFARM_FARM",	      "ZFARM_CONFIG",	    "ZFARM_OVERRIDES",
	    "ZFARM_LOG",
	};
	const char *argv[16];
	char num[32];
	int argc = 0;

	signal(SIGPIPE, SIG_DFL);
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	if (!sp->standalone) {
		/* Out of the way first, so fd 3 and 4 never clobber each other. */
		int l = fcntl(fx->lfd, F_DUPFD_CLOEXEC, 10);
		int s = fcntl(status_end, F_DUPFD_CLOEXEC, 10);

		if (l < 0 || s < 0 || dup2(l, 3) < 0 || dup2(s, 4) < 0 ||
		    fcntl(3, F_SETFD, 0) < 0 || fcntl(4, F_SETFD, 0) < 0)
			_exit(126);
		kid_setenv("LISTEN_FDS", "1");
		kid_setenv("LISTEN_FDNAMES", "echo");
		snprintf(num, sizeof(num), "%ld",
			 sp->foreign_listen_pid ? (long)getppid() : (long)getpid());
		kid_setenv("LISTEN_PID", num);
		kid_setenv("ZFARM_STATUS_FD", "4");
		snprintf(num, sizeof(num), "%d", GENERATION);
		kid_setenv("ZFARM_GENERATION", num);
	}
	kid_setenv("ZFARM_CLIENT_LIMIT", sp->client_limit);
	kid_setenv("ZFARM_MAX_REQUESTS", sp->max_requests);
	kid_setenv("ZFARM_MAX_IDLE", sp->max_idle);
	kid_setenv("ZFARM_STRESS", sp->stress);
	if (sp->log) {
		char path[PATH_MAX];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", fx->dir, sp->log);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(126);
	}
	argv[argc++] = echo_path;
	for (int i = 0; sp->args[i] && argc < 15; i++)
		argv[argc++] = sp->args[i];
	argv[argc] = NULL;
	execv(echo_path, (char *const *)argv);
	_exit(127);
}

static struct kid *spawn_kid(struct fixture *fx, const struct spawn *sp)
{
	struct kid *k = NULL;
	int sv[2] = {-1, -1};

	for (int i = 0; i < MAX_KIDS && k == NULL; i++)
		if (fx->kids[i].pid == 0)
			k = &fx->kids[i];
	if (k == NULL)
		fail_msg("more than %d children", MAX_KIDS);
	if (!sp->standalone && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fail_msg("socketpair: %s", strerror(errno));
	k->last_state = -1;
	k->pid = fork();
	if (k->pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (k->pid == 0)
		kid_exec(fx, sp, sv[1]);
	if (!sp->standalone) {
		close(sv[1]);
		k->status_fd = sv[0];
	}
	return k;
}

/* read_status - the next report, checked for pid and generation. */
static void read_status(struct kid *k, Zfarm__FarmStatus *out, int line)
{
	char err[256] = "";
	Zfarm__Frame *f;

	f = frame_read_fd(k->status_fd, FRAME_MAX_DEFAULT, STATUS_TIMEOUT_MS, err, sizeof(err));
	if (f == NULL) {
		if (*err == '\0')
			k->status_eof = true;
		fail_msg("line %d: pid %ld status: got %s, want a FarmStatus frame", line,
			 (long)k->pid, *err ? err : "EOF");
	}
	if (f->body_case != ZFARM__FRAME__BODY_FARM_STATUS) {
		const char *name = frame_body_name(f);

		frame_free(&f);
		fail_msg("line %d: got %s frame, want farm_status", line, name);
	}
	*out = *f->farm_status;
	out->base.descriptor = NULL;
	frame_free(&f);
	k->last_state = (int)out->state;
	k->last_busy = out->busy;
	k->last_sessions = out->sessions;
	if (out->pid != (uint32_t)k->pid)
		fail_msg("line %d: report pid: got %u, want %ld", line, out->pid, (long)k->pid);
	if (out->generation != GENERATION)
		fail_msg("line %d: report generation: got %llu, want %d", line,
			 (unsigned long long)out->generation, GENERATION);
}

/* expect_status - the next report is state/busy/sessions (sessions -1: any). */
static void expect_status_at(struct kid *k, int state, bool busy, int sessions, int line)
{
	Zfarm__FarmStatus st;

	read_status(k, &st, line);
	if ((int)st.state != state || st.busy != busy ||
	    (sessions >= 0 && st.sessions != (unsigned)sessions))
		fail_msg("line %d: got state %s busy=%d sessions=%u, want %s busy=%d sessions=%d",
			 line, state_name((int)st.state), st.busy, st.sessions, state_name(state),
			 busy, sessions);
}
#define expect_status(k, state, busy, sessions)                                                    \
	expect_status_at((k), (state), (busy), (sessions), __LINE__)

/*
 * collect_status - read reports until one is state/busy/sessions/served
 * (sessions, served -1: any) or timeout_ms pass; returns how many were read,
 * that one included.
 */
static unsigned collect_status_at(struct kid *k, int state, bool busy, int sessions, long served,
				  int timeout_ms, int line)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	unsigned n = 0;

	for (;;) {
		struct pollfd p = {k->status_fd, POLLIN, 0};
		Zfarm__FarmStatus st;
		int rc = poll(&p, 1, remaining_ms(deadline));

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0)
			fail_msg("line %d: after %u reports in %d ms: last %s busy=%d sessions=%u, "
				 "want %s busy=%d sessions=%d served=%ld",
				 line, n, timeout_ms, state_name(k->last_state), k->last_busy,
				 k->last_sessions, state_name(state), busy, sessions, served);
		read_status(k, &st, line);
		n++;
		if ((int)st.state == state && st.busy == busy &&
		    (sessions < 0 || st.sessions == (unsigned)sessions) &&
		    (served < 0 || st.served == (uint64_t)served))
			return n;
	}
}
#define collect_status(k, state, busy, sessions, served, timeout_ms)                               \
	collect_status_at((k), (state), (busy), (sessions), (served), (timeout_ms), __LINE__)

/* drain_status - read whatever reports are there now, without waiting long. */
static void drain_status(struct kid *k)
{
	struct pollfd p = {k->status_fd, POLLIN, 0};

	while (k->status_fd >= 0 && !k->status_eof && poll(&p, 1, 0) > 0) {
		char err[256] = "";
		Zfarm__Frame *f =
		    frame_read_fd(k->status_fd, FRAME_MAX_DEFAULT, 1000, err, sizeof(err));

		if (f == NULL) {
			if (*err)
				fail_msg("pid %ld status: got \"%s\", want frames or EOF",
					 (long)k->pid, err);
			k->status_eof = true;
			break;
		}
		if (f->body_case == ZFARM__FRAME__BODY_FARM_STATUS) {
			k->last_state = (int)f->farm_status->state;
			k->last_busy = f->farm_status->busy;
			k->last_sessions = f->farm_status->sessions;
		}
		frame_free(&f);
	}
}

/*
 * wait_exit - reap k within timeout_ms, reading its reports meanwhile;
 * false if it is still running at the deadline.
 */
static bool wait_exit(struct kid *k, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	while (!k->exited) {
		struct pollfd p = {k->status_fd, POLLIN, 0};
		bool watch = k->status_fd >= 0 && !k->status_eof;
		pid_t r = waitpid(k->pid, &k->wstatus, WNOHANG);

		if (r == k->pid) {
			k->exited = true;
			break;
		}
		if (r < 0 && errno != EINTR)
			fail_msg("waitpid %ld: %s", (long)k->pid, strerror(errno));
		if (remaining_ms(deadline) == 0)
			return false;
		if (poll(watch ? &p : NULL, watch ? 1 : 0, 5) > 0)
			drain_status(k);
	}
	if (k->status_fd >= 0)
		drain_status(k);
	return true;
}

static void expect_exit_at(struct kid *k, int code, int timeout_ms, int line)
{
	if (!wait_exit(k, timeout_ms))
		fail_msg("line %d: pid %ld still running after %d ms, want exit %d", line,
			 (long)k->pid, timeout_ms, code);
	if (WIFSIGNALED(k->wstatus))
		fail_msg("line %d: pid %ld got signal %d, want exit %d", line, (long)k->pid,
			 WTERMSIG(k->wstatus), code);
	if (WEXITSTATUS(k->wstatus) != code)
		fail_msg("line %d: pid %ld got exit %d, want %d", line, (long)k->pid,
			 WEXITSTATUS(k->wstatus), code);
}
#define expect_exit(k, code, timeout_ms) expect_exit_at((k), (code), (timeout_ms), __LINE__)

static void expect_running_at(struct kid *k, int line)
{
	if (waitpid(k->pid, &k->wstatus, WNOHANG) == k->pid) {
		k->exited = true;
		fail_msg("line %d: pid %ld exited (status 0x%x), want it running", line,
			 (long)k->pid, k->wstatus);
	}
}
#define expect_running(k) expect_running_at((k), __LINE__)

static void close_status(struct kid *k)
{
	close(k->status_fd);
	k->status_fd = -1;
}

/* ---- clients ---- */

static int track_client(struct fixture *fx, int fd)
{
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (fx->clients[i] < 0) {
			fx->clients[i] = fd;
			return fd;
		}
	}
	close(fd);
	fail_msg("more than %d clients", MAX_CLIENTS);
	return -1;
}

static void client_close(struct fixture *fx, int fd)
{
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (fx->clients[i] == fd)
			fx->clients[i] = -1;
	close(fd);
}

static int client_connect_at(struct fixture *fx, const struct endpoint *ep, int line)
{
	char err[256];
	int fd = endpoint_connect(ep, false, err, sizeof(err));

	if (fd < 0)
		fail_msg("line %d: connect: got \"%s\", want a connection", line, err);
	return track_client(fx, fd);
}
#define client_connect(fx) client_connect_at((fx), &(fx)->ep, __LINE__)

static void client_send_at(int fd, const char *text, size_t len, int line)
{
	while (len > 0) {
		ssize_t n = write(fd, text, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_msg("line %d: write: %s", line, strerror(errno));
		text += n;
		len -= (size_t)n;
	}
}
#define client_send(fd, text) client_send_at((fd), (text), strlen(text), __LINE__)

/*
 * client_read_line - one line without its LF, byte by byte so nothing after
 * it is consumed.  Returns its length, LINE_EOF on EOF (or reset) before any
 * byte, -1 on timeout or error (reason in err).
 */
static int client_read_line(int fd, char *buf, size_t len, int timeout_ms, char *err, size_t errlen)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	size_t n = 0;

	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		int rc = poll(&p, 1, remaining_ms(deadline));
		ssize_t r;
		char c;

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0) {
			snprintf(err, errlen, "timeout after \"%.*s\"", (int)n, buf);
			return -1;
		}
		r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if ((r == 0 || (r < 0 && errno == ECONNRESET)) && n == 0)
			return LINE_EOF;
		if (r <= 0) {
			snprintf(err, errlen, "%s after \"%.*s\"", r == 0 ? "EOF" : strerror(errno),
				 (int)n, buf);
			return -1;
		}
		if (c == '\n') {
			buf[n] = '\0';
			return (int)n;
		}
		if (n + 1 >= len) {
			snprintf(err, errlen, "line longer than %zu bytes", len);
			return -1;
		}
		buf[n++] = c;
	}
}

static void expect_line_at(int fd, const char *want, int line)
{
	char buf[8192], err[256];
	int n = client_read_line(fd, buf, sizeof(buf), LINE_TIMEOUT_MS, err, sizeof(err));

	if (n == LINE_EOF)
		fail_msg("line %d: got EOF, want \"%s\"", line, want);
	if (n < 0)
		fail_msg("line %d: got %s, want \"%s\"", line, err, want);
	if (strcmp(buf, want) != 0)
		fail_msg("line %d: got \"%.80s\", want \"%.80s\"", line, buf, want);
}
#define expect_line(fd, want) expect_line_at((fd), (want), __LINE__)

static void expect_eof_at(int fd, int line)
{
	char buf[8192], err[256];
	int n = client_read_line(fd, buf, sizeof(buf), LINE_TIMEOUT_MS, err, sizeof(err));

	if (n >= 0)
		fail_msg("line %d: got \"%.80s\", want EOF", line, buf);
	if (n != LINE_EOF)
		fail_msg("line %d: got %s, want EOF", line, err);
}
#define expect_eof(fd) expect_eof_at((fd), __LINE__)

/* expect_silence - nothing arrives on fd for ms (a bounded negative check). */
static void expect_silence_at(int fd, int ms, int line)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	struct pollfd p = {fd, POLLIN, 0};
	int rc;

	while ((rc = poll(&p, 1, remaining_ms(deadline))) < 0 && errno == EINTR)
		;
	if (rc > 0)
		fail_msg("line %d: got data or EOF within %d ms, want nothing", line, ms);
}
#define expect_silence(fd, ms) expect_silence_at((fd), (ms), __LINE__)

/*
 * wait_consumed - until the server has read everything we sent on fd:
 * SIOCOUTQ on a unix stream socket counts bytes the peer has not read.
 * The echo farm handles a line in the same callback that reads it, so after
 * this the line has been acted upon.
 */
static void wait_consumed_at(int fd, int line)
{
	uint64_t deadline = now_ms() + (uint64_t)LINE_TIMEOUT_MS;
	int queued = -1;

	while (remaining_ms(deadline) > 0) {
		if (ioctl(fd, SIOCOUTQ, &queued) < 0)
			fail_msg("line %d: SIOCOUTQ: %s", line, strerror(errno));
		if (queued == 0)
			return;
		poll(NULL, 0, 2);
	}
	fail_msg("line %d: got %d bytes still unread by the server, want 0", line, queued);
}
#define wait_consumed(fd) wait_consumed_at((fd), __LINE__)

static void send_signal(struct kid *k, int sig)
{
	if (kill(k->pid, sig) < 0)
		fail_msg("kill %ld: %s", (long)k->pid, strerror(errno));
}

/* ---- tests ---- */

static void test_initial_report_and_commands(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "2"};
	struct kid *k = spawn_kid(fx, &sp);
	Zfarm__FarmStatus st;
	char want[32];
	int c;

	expect_status(k, ST_AVAILABLE, false, 0);
	c = client_connect(fx);
	/* One of two slots in use: still available, but busy. */
	expect_status(k, ST_AVAILABLE, true, 1);
	client_send(c, "hello\n");
	expect_line(c, "hello");
	client_send(c, "PID\n");
	snprintf(want, sizeof(want), "%ld", (long)k->pid);
	expect_line(c, want);
	client_send(c, "STRESS\n");
	expect_line(c, "0");
	client_send(c, "SLOW 30\n");
	expect_line(c, "OK");
	/* Pipelined: answers stay in order around a SLOW. */
	client_send(c, "a\r\nSLOW 20\nb\nSLOW x\n\n");
	expect_line(c, "a");
	expect_line(c, "OK");
	expect_line(c, "b");
	expect_line(c, "ERR");
	expect_line(c, "");
	client_send(c, "QUIT\n");
	expect_eof(c);
	client_close(fx, c);
	read_status(k, &st, __LINE__);
	if (st.state != ST_AVAILABLE || st.busy || st.sessions != 0 || st.served != 1)
		fail_msg("got %s busy=%d sessions=%u served=%llu, want AVAILABLE busy=0 "
			 "sessions=0 served=1",
			 state_name((int)st.state), st.busy, st.sessions,
			 (unsigned long long)st.served);
	expect_running(k);
}

static void test_long_line_closes_connection(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "1"};
	struct kid *k = spawn_kid(fx, &sp);
	char *line = malloc(4096 + 2 + 1);
	int c;

	assert_non_null(line);
	expect_status(k, ST_AVAILABLE, false, 0);

	/* Exactly 4 KiB is still a line. */
	c = client_connect(fx);
	expect_status(k, ST_TAKEN, true, 1);
	memset(line, 'x', 4096);
	line[4096] = '\0';
	client_send(c, line);
	client_send(c, "\n");
	expect_line(c, line);

	/* One byte more is not, with or without its LF. */
	memset(line, 'y', 4097);
	strcpy(line + 4097, "\n");
	client_send(c, line);
	expect_eof(c);
	client_close(fx, c);
	expect_status(k, ST_AVAILABLE, false, 0);

	c = client_connect(fx);
	expect_status(k, ST_TAKEN, true, 1);
	line[4097] = '\0';
	client_send(c, line);
	free(line);
	expect_eof(c);
	client_close(fx, c);
	expect_status(k, ST_AVAILABLE, false, 0);
	expect_running(k);
}

static void test_client_limit_and_backlog(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "2"};
	struct kid *k = spawn_kid(fx, &sp);
	int c1, c2, c3;

	expect_status(k, ST_AVAILABLE, false, 0);
	c1 = client_connect(fx);
	expect_status(k, ST_AVAILABLE, true, 1);
	c2 = client_connect(fx);
	expect_status(k, ST_TAKEN, true, 2);
	client_send(c1, "one\n");
	expect_line(c1, "one");
	client_send(c2, "two\n");
	expect_line(c2, "two");

	/* At the limit a third client waits in the kernel's queue, not refused. */
	c3 = client_connect(fx);
	client_send(c3, "three\n");
	expect_silence(c3, 300);

	client_close(fx, c1);
	expect_status(k, ST_AVAILABLE, true, 1);
	expect_status(k, ST_TAKEN, true, 2);
	expect_line(c3, "three");
	client_close(fx, c2);
	expect_status(k, ST_AVAILABLE, true, 1);
	client_close(fx, c3);
	expect_status(k, ST_AVAILABLE, false, 0);
	expect_running(k);
}

static void test_max_requests(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "5", .max_requests = "3"};
	struct kid *k = spawn_kid(fx, &sp);
	int c[3];

	expect_status(k, ST_AVAILABLE, false, 0);
	c[0] = client_connect(fx);
	expect_status(k, ST_AVAILABLE, true, 1);
	client_send(c[0], "r1\n");
	expect_line(c[0], "r1");
	c[1] = client_connect(fx);
	client_send(c[1], "r2\n");
	expect_line(c[1], "r2");
	c[2] = client_connect(fx);
	/* The third connection used the child up: it exits when all are done. */
	expect_status(k, ST_EXITING, true, -1);
	/* Draining closed the idle ones; the new one is still served. */
	expect_eof(c[0]);
	expect_eof(c[1]);
	client_send(c[2], "r3\n");
	expect_line(c[2], "r3");
	client_send(c[2], "r3 again\n");
	expect_line(c[2], "r3 again");
	expect_running(k);
	client_close(fx, c[2]);
	expect_exit(k, 0, EXIT_TIMEOUT_MS);
	if (k->last_state != ST_EXITING || k->last_busy || k->last_sessions != 0)
		fail_msg("last report: got %s busy=%d sessions=%u, want EXITING busy=0 sessions=0",
			 state_name(k->last_state), k->last_busy, k->last_sessions);
}

static void test_max_idle(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "1", .max_idle = "1"};
	struct kid *k = spawn_kid(fx, &sp);
	uint64_t idle_since, took;
	int c;

	expect_status(k, ST_AVAILABLE, false, 0);
	/* An open session is not idleness: hold one past max_idle. */
	c = client_connect(fx);
	expect_status(k, ST_TAKEN, true, 1);
	client_send(c, "SLOW 1500\n");
	expect_line(c, "OK");
	expect_running(k);
	client_close(fx, c);
	expect_status(k, ST_AVAILABLE, false, 0);
	idle_since = now_ms();
	expect_exit(k, 0, 4000);
	took = now_ms() - idle_since;
	if (took < 800 || took > 3000)
		fail_msg("idle exit after %llu ms, want 1000..3000", (unsigned long long)took);
}

static void test_manager_eof_finishes_session(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "1"};
	struct kid *k = spawn_kid(fx, &sp);
	int c;

	expect_status(k, ST_AVAILABLE, false, 0);
	c = client_connect(fx);
	expect_status(k, ST_TAKEN, true, 1);
	client_send(c, "SLOW 700\n");
	wait_consumed(c);
	/* The manager is gone; the running session still gets its answer. */
	close_status(k);
	expect_line(c, "OK");
	expect_eof(c);
	expect_exit(k, 0, EXIT_TIMEOUT_MS);
}

static void test_sigterm_finishes_slow_session(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "2"};
	struct kid *k = spawn_kid(fx, &sp);
	int c;

	expect_status(k, ST_AVAILABLE, false, 0);
	c = client_connect(fx);
	expect_status(k, ST_AVAILABLE, true, 1);
	client_send(c, "SLOW 700\n");
	wait_consumed(c);
	send_signal(k, SIGTERM);
	expect_status(k, ST_EXITING, true, 1);
	expect_line(c, "OK");
	expect_eof(c);
	expect_exit(k, 0, EXIT_TIMEOUT_MS);
}

static void test_sigterm_closes_idle_session(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "2"};
	struct kid *k = spawn_kid(fx, &sp);
	int c;

	expect_status(k, ST_AVAILABLE, false, 0);
	c = client_connect(fx);
	expect_status(k, ST_AVAILABLE, true, 1);
	client_send(c, "idle\n");
	expect_line(c, "idle");
	send_signal(k, SIGTERM);
	expect_status(k, ST_EXITING, true, 1);
	/* ops->drain closed the idle session. */
	expect_eof(c);
	expect_exit(k, 0, EXIT_TIMEOUT_MS);
}

static void test_second_sigterm_exits_at_once(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "2"};
	struct kid *k = spawn_kid(fx, &sp);
	uint64_t t0;
	int c;

	expect_status(k, ST_AVAILABLE, false, 0);
	c = client_connect(fx);
	expect_status(k, ST_AVAILABLE, true, 1);
	client_send(c, "SLOW 30000\n");
	wait_consumed(c);
	send_signal(k, SIGTERM);
	expect_status(k, ST_EXITING, true, 1);
	t0 = now_ms();
	send_signal(k, SIGTERM);
	expect_exit(k, 0, 3000);
	if (now_ms() - t0 > 2000)
		fail_msg("second SIGTERM: exit after %llu ms, want < 2000",
			 (unsigned long long)(now_ms() - t0));
	/* The abandoned session never got its answer. */
	expect_eof(c);
}

static void test_stress_mode(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "1", .stress = "1"};
	struct kid *k = spawn_kid(fx, &sp);
	int c;

	expect_status(k, ST_AVAILABLE, false, 0);
	c = client_connect(fx);
	expect_status(k, ST_TAKEN, true, 1);
	client_send(c, "STRESS\n");
	expect_line(c, "1");
	client_send(c, "QUIT\n");
	expect_eof(c);
	expect_status(k, ST_AVAILABLE, false, 0);
}

static void test_foreign_listen_pid_refused(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.foreign_listen_pid = true, .log = "kid.log"};
	struct kid *k = spawn_kid(fx, &sp);
	char path[PATH_MAX], text[4096] = "", err[256] = "";
	Zfarm__Frame *f;
	ssize_t n;
	int fd;

	if (!wait_exit(k, EXIT_TIMEOUT_MS))
		fail_msg("LISTEN_PID of another process: still running, want it to refuse");
	if (!WIFEXITED(k->wstatus) || WEXITSTATUS(k->wstatus) == 0)
		fail_msg("got wait status 0x%x, want a non-zero exit", k->wstatus);
	if (k->last_state != -1)
		fail_msg("got a %s report, want none", state_name(k->last_state));
	f = frame_read_fd(k->status_fd, FRAME_MAX_DEFAULT, 1000, err, sizeof(err));
	if (f != NULL || *err)
		fail_msg("status channel: got %s, want EOF", f ? frame_body_name(f) : err);
	snprintf(path, sizeof(path), "%s/kid.log", fx->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0 || strstr(text, "LISTEN_PID") == NULL)
		fail_msg("log: got \"%s\", want a line naming LISTEN_PID", n > 0 ? text : "");
}

static void test_standalone(void **state)
{
	struct fixture *fx = *state;
	char spec[200], err[256], want[32];
	struct spawn sp = {.standalone = true};
	struct endpoint ep;
	uint64_t deadline;
	struct kid *k;
	int c = -1;

	snprintf(spec, sizeof(spec), "unix:%s/alone", fx->dir);
	assert_int_equal(endpoint_parse(spec, &ep, err, sizeof(err)), 0);
	sp.args[0] = "-s";
	sp.args[1] = spec;
	sp.args[2] = "-n";
	sp.args[3] = "1";
	k = spawn_kid(fx, &sp);
	/* No status channel: the socket's appearance is the sign of life. */
	deadline = now_ms() + 5000;
	while (c < 0) {
		c = endpoint_connect(&ep, false, err, sizeof(err));
		if (c >= 0)
			break;
		if (remaining_ms(deadline) == 0)
			fail_msg("connect %s: got \"%s\", want a connection", spec, err);
		if (waitpid(k->pid, &k->wstatus, WNOHANG) == k->pid) {
			k->exited = true;
			fail_msg("standalone child exited (status 0x%x), want it serving",
				 k->wstatus);
		}
		poll(NULL, 0, 10);
	}
	track_client(fx, c);
	client_send(c, "alone\nPID\n");
	expect_line(c, "alone");
	snprintf(want, sizeof(want), "%ld", (long)k->pid);
	expect_line(c, want);
	send_signal(k, SIGTERM);
	expect_eof(c);
	expect_exit(k, 0, EXIT_TIMEOUT_MS);
}

/*
 * expect_coalesced - what happened since t0 (ms) gave at most one status
 * report per 500 ms, plus the leading edge and the final report.
 */
static void expect_coalesced(const char *what, uint64_t t0, unsigned frames)
{
	uint64_t took = now_ms() - t0;
	unsigned most = 3 + (unsigned)(took / 500);

	print_message("%s in %llu ms: %u reports\n", what, (unsigned long long)took, frames);
	if (frames > most)
		fail_msg("%s in %llu ms: got %u reports, want at most %u (one per 500 ms)", what,
			 (unsigned long long)took, frames, most);
}

/*
 * Changes of busy, sessions and served alone are coalesced: 50 connections
 * in a row (each a busy/idle pair at AVAILABLE) give a few reports, one per
 * 500 ms at most, and the last one still says what is true at the end.
 */
static void test_busy_reports_coalesced(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "4"};
	struct kid *k = spawn_kid(fx, &sp);
	uint64_t t0, t_last, late;
	unsigned frames;

	expect_status(k, ST_AVAILABLE, false, 0);
	t0 = now_ms();
	for (int n = 0; n < 50; n++) {
		int c = client_connect(fx);

		client_send(c, "ping\n");
		expect_line(c, "ping");
		client_close(fx, c);
	}
	t_last = now_ms();
	frames = collect_status(k, ST_AVAILABLE, false, 0, 50, 5000);
	late = now_ms() - t_last;
	expect_coalesced("50 connections", t0, frames);
	if (late > 2000)
		fail_msg("final idle report %llu ms after the last close, want < 2000",
			 (unsigned long long)late);
	expect_running(k);
}

/*
 * Explicit requests (one line = one request): 100 requests on one
 * connection give a few reports; a stuck request is reported busy and then
 * nothing moves (what farmd's max_processtime looks for) until it ends.
 */
static void test_explicit_requests_coalesced(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "2", .args = {"--explicit-requests"}};
	struct kid *k = spawn_kid(fx, &sp);
	uint64_t t0;
	unsigned frames;
	int c;

	expect_status(k, ST_AVAILABLE, false, 0);
	c = client_connect(fx);
	t0 = now_ms();
	for (int n = 0; n < 100; n++) {
		client_send(c, "ping\n");
		expect_line(c, "ping");
	}
	/* An open connection between requests is not busy. */
	frames = collect_status(k, ST_AVAILABLE, false, 1, 100, 5000);
	expect_coalesced("100 requests", t0, frames);

	client_send(c, "SLOW 2500\n");
	collect_status(k, ST_AVAILABLE, true, 1, 100, 2000);
	/* Stuck: busy and served stand still, so there is nothing to report. */
	expect_silence(k->status_fd, 800);
	expect_line(c, "OK");
	collect_status(k, ST_AVAILABLE, false, 1, 101, 2000);
	expect_running(k);
}

/*
 * Busy without a pause (a stuck request beside quick ones on another
 * connection): the reports still show served moving while busy.
 */
static void test_explicit_progress_while_busy(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "2", .args = {"--explicit-requests"}};
	struct kid *k = spawn_kid(fx, &sp);
	int c1, c2;

	expect_status(k, ST_AVAILABLE, false, 0);
	c1 = client_connect(fx);
	c2 = client_connect(fx);
	expect_status(k, ST_TAKEN, false, 2);
	client_send(c1, "SLOW 4000\n");
	collect_status(k, ST_TAKEN, true, 2, 0, 2000);
	for (int n = 0; n < 20; n++) {
		client_send(c2, "ping\n");
		expect_line(c2, "ping");
	}
	/* Still inside SLOW 4000, and the progress was reported. */
	collect_status(k, ST_TAKEN, true, 2, 20, 2000);
	expect_line(c1, "OK");
	collect_status(k, ST_TAKEN, false, 2, 21, 2000);
}

/* cpu_ticks - utime + stime of pid from /proc/<pid>/stat. */
static unsigned long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, stime = 0;
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		fail_msg("%s: empty", path);
	buf[n] = '\0';
	/* Fields after "(comm)": state ppid pgrp session tty tpgid flags
	 * minflt cminflt majflt cmajflt utime stime. */
	p = strrchr(buf, ')');
	if (p == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stime) != 2)
		fail_msg("%s: got \"%s\", want utime and stime", path, buf);
	return ut + stime;
}

static void test_thundering_herd(void **state)
{
	struct fixture *fx = *state;
	struct spawn sp = {.client_limit = "1"};
	struct kid *k[3];
	unsigned served[3] = {0, 0, 0};
	unsigned long before[3];

	for (int i = 0; i < 3; i++)
		k[i] = spawn_kid(fx, &sp);
	for (int i = 0; i < 3; i++)
		expect_status(k[i], ST_AVAILABLE, false, 0);
	for (int n = 0; n < 30; n++) {
		char buf[64], err[256];
		int c = client_connect(fx), who = -1, len;
		long pid;

		client_send(c, "PID\n");
		len = client_read_line(c, buf, sizeof(buf), LINE_TIMEOUT_MS, err, sizeof(err));
		if (len <= 0)
			fail_msg("connection %d: got %s, want a pid", n,
				 len == LINE_EOF ? "EOF"
				 : len == 0	 ? "\"\""
						 : err);
		pid = strtol(buf, NULL, 10);
		for (int i = 0; i < 3; i++)
			if (pid == (long)k[i]->pid)
				who = i;
		if (who < 0)
			fail_msg("connection %d: got pid \"%s\", want one of %ld %ld %ld", n, buf,
				 (long)k[0]->pid, (long)k[1]->pid, (long)k[2]->pid);
		served[who]++;
		client_close(fx, c);
	}
	print_message("served per child: %u %u %u\n", served[0], served[1], served[2]);

	/* Idle children sharing a socket must sleep, not spin on EAGAIN. */
	for (int i = 0; i < 3; i++)
		before[i] = cpu_ticks(k[i]->pid);
	poll(NULL, 0, 500);
	for (int i = 0; i < 3; i++) {
		unsigned long delta = cpu_ticks(k[i]->pid) - before[i];

		if (delta > 2)
			fail_msg("child %d idle 500 ms: got %lu CPU ticks, want <= 2", i, delta);
	}
	for (int i = 0; i < 3; i++)
		expect_running(k[i]);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_initial_report_and_commands),
	    T(test_long_line_closes_connection),
	    T(test_client_limit_and_backlog),
	    T(test_max_requests),
	    T(test_max_idle),
	    T(test_manager_eof_finishes_session),
	    T(test_sigterm_finishes_slow_session),
	    T(test_sigterm_closes_idle_session),
	    T(test_second_sigterm_exits_at_once),
	    T(test_stress_mode),
	    T(test_foreign_listen_pid_refused),
	    T(test_standalone),
	    T(test_busy_reports_coalesced),
	    T(test_explicit_requests_coalesced),
	    T(test_explicit_progress_while_busy),
	    T(test_thundering_herd),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
