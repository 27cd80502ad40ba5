/*
 * command - run one external command for a delivery: execve() of an argv
 * (never a shell unless the caller asks for one by passing /bin/sh -c),
 * the message on its stdin, a time limit, stdout+stderr captured (bounded)
 * for the delivery's reason text.
 *
 * Synchronous: command_run() returns when the child has exited or been
 * killed.  The local and pipe transports deliver one message per
 * process at a time (client_limit 1), so blocking is their model.
 *
 * What happens:
 *   - fork; in the child: its own process group, every signal at its
 *     default (farm programs ignore SIGPIPE and SIGHUP, and ignoring
 *     survives execve) and none blocked, stdin a pipe, stdout and stderr
 *     one pipe, the other descriptors closed, umask 077; when the process
 *     runs as root and spec->uid is not (uid_t)-1: initgroups (the name
 *     from getpwuid(), looked up before the fork; no name:
 *     setgroups(1, &gid)) + setgid + setuid to spec->uid/gid (uid 0 is
 *     refused by the caller, not here); then the working directory
 *     spec->cwd (or "/"), as the new user; then execve(spec->argv[0],
 *     spec->argv, spec->env) with a clean environment (spec->env only).
 *   - the parent writes the message through spec->feed (called until it
 *     returns 0; it appends to an evbuffer that the parent writes to the
 *     child's stdin), reading output meanwhile (poll(), no deadlock with a
 *     child that writes before it reads); a child that closes stdin early
 *     (EPIPE) is not an error by itself: its exit status decides.
 *   - output beyond COMMAND_OUTPUT_MAX bytes is read and dropped.
 *   - at spec->timeout_ms (0: no limit) the child's process group gets
 *     SIGKILL; the result says timed_out.  The limit covers the whole run:
 *     a command that closes its output and lives on is still waited for
 *     only until then, and whatever it left running in its group dies too.
 *   - SIGPIPE is blocked while command_run() runs (one it causes is taken
 *     back before it returns), so the caller's disposition does not matter.
 *   - the child is always reaped before command_run() returns, also on
 *     errors of our own (it is killed first).
 *
 * Errors of our own (fork, pipe, feed failing) are -1 with a reason; the
 * command's own failures (exit status, signal, timeout, exec failure:
 * exit 127 in the child with "cannot execute PATH: reason" in its output,
 * and exec_errno set, known for sure through a close-on-exec status pipe)
 * are a 0 return with struct command_result filled in.
 *
 * Callers: transport/pipe.c, transport/local.c (|command aliases).
 */
#ifndef ZFARM_TRANSPORT_COMMAND_H
#define ZFARM_TRANSPORT_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct evbuffer;

#define COMMAND_OUTPUT_MAX 4096

struct command_spec {
	char *const *argv; /* argv[0] an absolute path */
	char *const *env;  /* NULL: an empty environment */
	const char *cwd;   /* NULL: "/" */
	uid_t uid;	   /* (uid_t)-1: keep the current identity */
	gid_t gid;
	unsigned timeout_ms;
	/*
	 * feed - append the next part of stdin to out: 1 more to come, 0 the
	 * end (after appending the last part), -1 + reason in err.
	 */
	int (*feed)(void *arg, struct evbuffer *out, char *err, size_t errlen);
	void *feed_arg;
};

struct command_result {
	bool exited;	   /* normal exit: status in exit_status */
	int exit_status;
	int signal;	   /* killed by this signal (0 if exited) */
	bool timed_out;	   /* we killed it at timeout_ms */
	int exec_errno;	   /* not 0: the command never ran (execve, or the
			      set-up before it, failed with this errno);
			      exited, exit_status 127 and output says why */
	char output[COMMAND_OUTPUT_MAX + 1]; /* NUL-terminated, as received */
	size_t output_len;
};

/*
 * command_run - run it; 0 with *res filled, -1 + reason (nothing run, or
 * a feed error: the child was killed and reaped).  spec->feed NULL: an
 * empty stdin.
 */
int command_run(const struct command_spec *spec, struct command_result *res, char *err,
		size_t errlen);

#endif
