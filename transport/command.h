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
 *   - fork; in the child: stdin a pipe, stdout and stderr one pipe, the
 *     other descriptors closed, a clean environment (spec->env), umask
 *     077, the working directory spec->cwd (or "/"), then, when the
 *     process runs as root and spec->uid is not (uid_t)-1: initgroups +
 *     setgid + setuid to spec->uid/gid (uid 0 is refused by the caller,
 *     not here); then execve(spec->argv[0], spec->argv, spec->env).
 *   - the parent writes the message through spec->feed (called until it
 *     returns 0; it appends to an evbuffer that the parent writes to the
 *     child's stdin), reading output meanwhile (poll(), no deadlock with a
 *     child that writes before it reads); a child that closes stdin early
 *     (EPIPE) is not an error by itself: its exit status decides.
 *   - output beyond COMMAND_OUTPUT_MAX bytes is read and dropped.
 *   - at spec->timeout_ms the child's process group gets SIGKILL; the
 *     result says timed_out.
 *
 * Errors of our own (fork, pipe, feed failing) are -1 with a reason; the
 * command's own failures (exit status, signal, timeout, exec failure:
 * exit 127 in the child with "cannot execute ..." in its output) are a
 * 0 return with struct command_result filled in.
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
	char output[COMMAND_OUTPUT_MAX + 1]; /* NUL-terminated, as received */
	size_t output_len;
};

/* command_run - run it; 0 with *res filled, -1 + reason (nothing run or a feed error). */
int command_run(const struct command_spec *spec, struct command_result *res, char *err,
		size_t errlen);

#endif
