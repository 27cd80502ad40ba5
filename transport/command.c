/*
 * command - run one external command for a delivery; see command.h.
 *
 * The parent side is one poll() loop over three pipes: the child's stdin
 * (written from an evbuffer that spec->feed refills), its stdout+stderr
 * (read into the result, the rest dropped) and a status pipe, close-on-
 * exec in the child, that carries an errno when the child cannot get as
 * far as execve().  EOF on the status pipe means the exec happened.  The
 * loop ends when the output pipe is at EOF, stdin is closed and the status
 * is known; then the child is waited for (still within the time limit).
 * At the time limit, or on an error of our own, the child's process group
 * is killed; the child is always reaped before command_run() returns.
 */
#include "transport/command.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

/* Refill the stdin buffer from spec->feed while it holds less than this. */
#define COMMAND_FEED_LOW 65536
/* One read() of the child's output. */
#define COMMAND_READ_CHUNK 16384
/* The child's report on the status pipe: the step that failed and errno. */
struct command_status {
	int step;
	int errnum;
};

enum command_step {
	STEP_EXEC = 0,
	STEP_GROUPS,
	STEP_SETGID,
	STEP_SETUID,
	STEP_CHDIR,
	STEP_FDS,
};

static int64_t command_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void command_close(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* ---- the child (after fork, before execve) ---- */

/* command_child_write - best-effort write of all of s to fd (no stdio after fork). */
static void command_child_write(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		ssize_t w = write(fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/*
 * command_child_fail - say why on the output (for the reason text) and on
 * the status pipe (for the parent), then exit 127 like a shell does.
 */
static void __attribute__((noreturn))
command_child_fail(int status_fd, enum command_step step, int errnum, const char *what)
{
	struct command_status st = {.step = (int)step, .errnum = errnum};
	const char *verb;

	switch (step) {
	case STEP_EXEC:
		verb = "cannot execute ";
		break;
	case STEP_GROUPS:
		verb = "cannot set the groups of ";
		break;
	case STEP_SETGID:
		verb = "cannot set the group id for ";
		break;
	case STEP_SETUID:
		verb = "cannot set the user id for ";
		break;
	case STEP_CHDIR:
		verb = "cannot change to directory ";
		break;
	default:
		verb = "cannot set up the descriptors for ";
		break;
	}
	command_child_write(STDOUT_FILENO, verb);
	command_child_write(STDOUT_FILENO, what);
	command_child_write(STDOUT_FILENO, ": ");
	command_child_write(STDOUT_FILENO, strerror(errnum));
	command_child_write(STDOUT_FILENO, "\n");
	if (write(status_fd, &st, sizeof(st)) < 0) {
		/* nothing more to tell anyone */
	}
	_exit(127);
}

/* command_child_close_from - close every descriptor >= lowfd. */
static void command_child_close_from(int lowfd)
{
	long max;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0)
		return;
#endif
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 1 << 20)
		max = 1 << 20;
	for (int fd = lowfd; fd < max; fd++)
		close(fd);
}

static void __attribute__((noreturn))
command_child(const struct command_spec *spec, const char *user, int in_fd, int out_fd,
	      int status_fd)
{
	static char *const empty_env[] = {NULL};
	const char *cwd = spec->cwd ? spec->cwd : "/";
	sigset_t none;

	/*
	 * Signals: the parent may ignore SIGPIPE and SIGHUP (farm_server does),
	 * and ignored dispositions survive execve; the command gets defaults.
	 */
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);

	/*
	 * stdin, stdout, stderr; the status pipe at 3 (close-on-exec); nothing
	 * else open.  The pipes are first moved above the standard descriptors:
	 * a caller that runs with 0, 1 or 2 closed gets pipes there.
	 */
	in_fd = fcntl(in_fd, F_DUPFD_CLOEXEC, 10);
	out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 10);
	status_fd = fcntl(status_fd, F_DUPFD_CLOEXEC, 10);
	if (in_fd < 0 || out_fd < 0 || status_fd < 0)
		_exit(127);
	if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
	    dup2(out_fd, STDERR_FILENO) < 0 || dup2(status_fd, 3) < 0)
		_exit(127);
	status_fd = 3;
	if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) < 0)
		command_child_fail(status_fd, STEP_FDS, errno, spec->argv[0]);
	command_child_close_from(4);
	umask(077);

	if (spec->uid != (uid_t)-1 && geteuid() == 0) {
		int rc = user ? initgroups(user, spec->gid) : setgroups(1, &spec->gid);

		if (rc < 0)
			command_child_fail(status_fd, STEP_GROUPS, errno,
					   user ? user : spec->argv[0]);
		if (setgid(spec->gid) < 0)
			command_child_fail(status_fd, STEP_SETGID, errno, spec->argv[0]);
		if (setuid(spec->uid) < 0)
			command_child_fail(status_fd, STEP_SETUID, errno, spec->argv[0]);
	}
	/* After the identity change: the command's user must be able to get there. */
	if (chdir(cwd) < 0)
		command_child_fail(status_fd, STEP_CHDIR, errno, cwd);
	execve(spec->argv[0], spec->argv, spec->env ? spec->env : empty_env);
	command_child_fail(status_fd, STEP_EXEC, errno, spec->argv[0]);
}

/* ---- the parent ---- */

struct command_run {
	const struct command_spec *spec;
	struct command_result *res;
	pid_t pid;
	int in_fd, out_fd, status_fd;
	struct evbuffer *pending; /* stdin not written yet */
	bool fed;		  /* feed returned 0 */
	bool epipe;		  /* a write to stdin got EPIPE */
	struct command_status st;
	size_t st_len;
};

/* command_kill - SIGKILL to the child's group (and the child, should it have left it). */
static void command_kill(struct command_run *r)
{
	kill(-r->pid, SIGKILL);
	kill(r->pid, SIGKILL);
}

/* command_reap - wait for the child (blocking) and fill in how it ended. */
static void command_reap(struct command_run *r)
{
	int status;
	pid_t got;

	do
		got = waitpid(r->pid, &status, 0);
	while (got < 0 && errno == EINTR);
	if (got != r->pid)
		return; /* ECHILD: SIGCHLD ignored by our caller; nothing to say */
	if (WIFEXITED(status)) {
		r->res->exited = true;
		r->res->exit_status = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		r->res->signal = WTERMSIG(status);
	}
}

/*
 * command_wait - wait for the child until deadline (-1: none) once its pipes
 * are done: it may still run after closing them.  false at the deadline.
 */
static bool command_wait(struct command_run *r, int64_t deadline)
{
	int nap = 1, status;

	for (;;) {
		pid_t got = waitpid(r->pid, &status, WNOHANG);

		if (got == r->pid) {
			if (WIFEXITED(status)) {
				r->res->exited = true;
				r->res->exit_status = WEXITSTATUS(status);
			} else if (WIFSIGNALED(status)) {
				r->res->signal = WTERMSIG(status);
			}
			return true;
		}
		if (got < 0 && errno != EINTR)
			return true; /* ECHILD: nothing left to wait for */
		if (deadline >= 0) {
			int64_t left = deadline - command_now_ms();

			if (left <= 0)
				return false;
			if (nap > left)
				nap = (int)left;
		}
		poll(NULL, 0, nap);
		if (nap < 50)
			nap *= 2;
	}
}

static void command_read_output(struct command_run *r)
{
	char buf[COMMAND_READ_CHUNK];

	for (;;) {
		ssize_t n = read(r->out_fd, buf, sizeof(buf));

		if (n > 0) {
			size_t room = COMMAND_OUTPUT_MAX - r->res->output_len;
			size_t keep = (size_t)n < room ? (size_t)n : room;

			memcpy(r->res->output + r->res->output_len, buf, keep);
			r->res->output_len += keep;
			r->res->output[r->res->output_len] = '\0';
			continue; /* the rest is dropped */
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		command_close(&r->out_fd); /* EOF, or an error: no more output */
		return;
	}
}

static void command_read_status(struct command_run *r)
{
	for (;;) {
		ssize_t n = read(r->status_fd, (char *)&r->st + r->st_len, sizeof(r->st) - r->st_len);

		if (n > 0) {
			r->st_len += (size_t)n;
			if (r->st_len < sizeof(r->st))
				continue;
			r->res->exec_errno = r->st.errnum ? r->st.errnum : EINVAL;
			command_close(&r->status_fd);
			return;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		command_close(&r->status_fd);
		return;
	}
}

/* command_fill - top up the stdin buffer from spec->feed; -1 + reason. */
static int command_fill(struct command_run *r, char *err, size_t errlen)
{
	while (!r->fed && evbuffer_get_length(r->pending) < COMMAND_FEED_LOW) {
		int rc;

		if (!r->spec->feed) {
			r->fed = true;
			break;
		}
		rc = r->spec->feed(r->spec->feed_arg, r->pending, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 0)
			r->fed = true;
	}
	return 0;
}

/*
 * command_write_input - write what is pending to the child's stdin (non-
 * blocking).  SIGPIPE is blocked by command_run(), so a reader gone is
 * EPIPE here: the rest of the input is dropped, the exit status decides.
 */
static int command_write_input(struct command_run *r, char *err, size_t errlen)
{
	for (;;) {
		int n;

		if (command_fill(r, err, errlen) < 0)
			return -1;
		if (evbuffer_get_length(r->pending) == 0) {
			if (r->fed)
				command_close(&r->in_fd);
			return 0;
		}
		n = evbuffer_write(r->pending, r->in_fd);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		/* EPIPE (or another write error): the child takes no more input. */
		r->epipe = errno == EPIPE;
		command_close(&r->in_fd);
		evbuffer_drain(r->pending, evbuffer_get_length(r->pending));
		r->fed = true;
		return 0;
	}
}

/* command_loop - the poll loop; 1 done, 0 timed out, -1 + reason (feed). */
static int command_loop(struct command_run *r, int64_t deadline, char *err, size_t errlen)
{
	if (command_write_input(r, err, errlen) < 0)
		return -1;
	while (r->out_fd >= 0 || r->in_fd >= 0 || r->status_fd >= 0) {
		struct pollfd pfd[3];
		nfds_t n = 0;
		int timeout = -1, rc;

		if (r->in_fd >= 0)
			pfd[n++] = (struct pollfd){.fd = r->in_fd, .events = POLLOUT};
		if (r->out_fd >= 0)
			pfd[n++] = (struct pollfd){.fd = r->out_fd, .events = POLLIN};
		if (r->status_fd >= 0)
			pfd[n++] = (struct pollfd){.fd = r->status_fd, .events = POLLIN};
		if (deadline >= 0) {
			int64_t left = deadline - command_now_ms();

			if (left <= 0)
				return 0;
			timeout = left > INT_MAX ? INT_MAX : (int)left;
		}
		rc = poll(pfd, n, timeout);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		for (nfds_t i = 0; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (pfd[i].fd == r->in_fd) {
				if (command_write_input(r, err, errlen) < 0)
					return -1;
			} else if (pfd[i].fd == r->out_fd) {
				command_read_output(r);
			} else if (pfd[i].fd == r->status_fd) {
				command_read_status(r);
			}
		}
	}
	return 1;
}

/* command_pipe - a pipe, both ends close-on-exec. */
static int command_pipe(int fds[2], char *err, size_t errlen)
{
	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		fds[0] = fds[1] = -1;
		return -1;
	}
	return 0;
}

int command_run(const struct command_spec *spec, struct command_result *res, char *err,
		size_t errlen)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, stp[2] = {-1, -1};
	struct command_run r = {.spec = spec, .res = res, .in_fd = -1, .out_fd = -1,
				.status_fd = -1};
	char *user = NULL;
	sigset_t pipe_set, old_mask, pending_before, pending_after;
	int64_t deadline = -1;
	int rc = -1, loop;

	memset(res, 0, sizeof(*res));
	if (!spec->argv || !spec->argv[0] || spec->argv[0][0] != '/') {
		snprintf(err, errlen, "the command is not an absolute path");
		return -1;
	}
	if (spec->uid != (uid_t)-1 && geteuid() == 0) {
		/* Looked up here: the child should not need the user database. */
		struct passwd *pw = getpwuid(spec->uid);

		if (pw && pw->pw_name)
			user = strdup(pw->pw_name);
	}
	if (command_pipe(in, err, errlen) < 0 || command_pipe(out, err, errlen) < 0 ||
	    command_pipe(stp, err, errlen) < 0)
		goto out;

	/*
	 * SIGPIPE stays blocked while we write to the child, whatever our
	 * caller does with it; one we cause is taken back before returning.
	 */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_set, &old_mask);
	sigpending(&pending_before);

	r.pid = fork();
	if (r.pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		goto restore;
	}
	if (r.pid == 0) {
		close(in[1]);
		close(out[0]);
		close(stp[0]);
		command_child(spec, user, in[0], out[1], stp[1]);
	}
	setpgid(r.pid, r.pid); /* also in the child: whichever runs first */
	command_close(&in[0]);
	command_close(&out[1]);
	command_close(&stp[1]);
	r.in_fd = in[1];
	r.out_fd = out[0];
	r.status_fd = stp[0];
	in[1] = out[0] = stp[0] = -1;
	fcntl(r.in_fd, F_SETFL, fcntl(r.in_fd, F_GETFL) | O_NONBLOCK);
	fcntl(r.out_fd, F_SETFL, fcntl(r.out_fd, F_GETFL) | O_NONBLOCK);
	fcntl(r.status_fd, F_SETFL, fcntl(r.status_fd, F_GETFL) | O_NONBLOCK);
	r.pending = evbuffer_new();
	if (spec->timeout_ms)
		deadline = command_now_ms() + spec->timeout_ms;

	loop = r.pending ? command_loop(&r, deadline, err, errlen) : -1;
	if (!r.pending)
		snprintf(err, errlen, "out of memory");
	if (loop == 1 && !command_wait(&r, deadline))
		loop = 0;
	if (loop == 1) {
		rc = 0;
	} else {
		/* The time limit, or an error of ours: the command goes. */
		command_kill(&r);
		command_reap(&r);
		if (loop == 0) {
			res->timed_out = true;
			rc = 0;
		}
	}
	/* The status pipe may still hold the child's report (timeout right after). */
	if (r.status_fd >= 0)
		command_read_status(&r);
	command_close(&r.in_fd);
	command_close(&r.out_fd);
	command_close(&r.status_fd);
	if (r.pending)
		evbuffer_free(r.pending);

restore:
	sigpending(&pending_after);
	if (sigismember(&pending_after, SIGPIPE) && !sigismember(&pending_before, SIGPIPE)) {
		struct timespec zero = {0, 0};

		sigtimedwait(&pipe_set, NULL, &zero);
	}
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
out:
	for (int i = 0; i < 2; i++) {
		command_close(&in[i]);
		command_close(&out[i]);
		command_close(&stp[i]);
	}
	free(user);
	return rc;
}
