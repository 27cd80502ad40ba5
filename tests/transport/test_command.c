/*
 * Tests for transport/command.c: the command runner, with real children
 * (/bin/cat, /bin/sh -c, /bin/sleep, /usr/bin/env).  Every test ends by
 * checking that no child is left (waitpid(-1, WNOHANG) says ECHILD) and
 * that no SIGPIPE is left pending for us.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "transport/command.h"

/* ---- a feed from memory, in chunks ---- */

struct src {
	size_t total, off, chunk;
	unsigned calls;
	int fail_at; /* fail on this call (0: never) */
};

static char src_byte(size_t i)
{
	/* lines of 64 printable bytes, so cut output is easy to compare */
	return (i % 65) == 64 ? '\n' : (char)('A' + (i * 7 + i / 65) % 26);
}

static int src_feed(void *arg, struct evbuffer *out, char *err, size_t errlen)
{
	struct src *s = arg;
	char buf[8192];
	size_t n = s->total - s->off;

	s->calls++;
	if (s->fail_at && (int)s->calls == s->fail_at) {
		snprintf(err, errlen, "the queue file went away");
		return -1;
	}
	if (n > s->chunk)
		n = s->chunk;
	if (n > sizeof(buf))
		n = sizeof(buf);
	for (size_t i = 0; i < n; i++)
		buf[i] = src_byte(s->off + i);
	if (evbuffer_add(out, buf, n) < 0)
		return -1;
	s->off += n;
	return s->off < s->total ? 1 : 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void assert_no_children(void)
{
	int st;
	pid_t got = waitpid(-1, &st, WNOHANG);

	if (got != -1 || errno != ECHILD)
		fail_msg("a child was left: waitpid(-1) got %ld, want -1/ECHILD", (long)got);
}

static void assert_no_sigpipe_pending(void)
{
	sigset_t p;

	sigpending(&p);
	if (sigismember(&p, SIGPIPE))
		fail_msg("a SIGPIPE is left pending");
}

static int run(char *const *argv, struct src *s, unsigned timeout_ms, struct command_result *res,
	       char *err, size_t errlen)
{
	struct command_spec spec = {
	    .argv = argv,
	    .env = NULL,
	    .uid = (uid_t)-1,
	    .gid = (gid_t)-1,
	    .timeout_ms = timeout_ms,
	    .feed = s ? src_feed : NULL,
	    .feed_arg = s,
	};

	return command_run(&spec, res, err, errlen);
}

static struct command_result res;

/* ---- tests ---- */

static void test_cat_echoes_small_input(void **state)
{
	char *argv[] = {"/bin/cat", NULL};
	struct src s = {.total = 1000, .chunk = 100};
	char err[256] = "";

	(void)state;
	assert_int_equal(run(argv, &s, 10000, &res, err, sizeof(err)), 0);
	assert_true(res.exited);
	assert_int_equal(res.exit_status, 0);
	assert_int_equal(res.signal, 0);
	assert_false(res.timed_out);
	assert_int_equal(res.exec_errno, 0);
	assert_int_equal(res.output_len, 1000);
	for (size_t i = 0; i < 1000; i++)
		if (res.output[i] != src_byte(i))
			fail_msg("output byte %zu: got %d, want %d", i, res.output[i], src_byte(i));
	assert_int_equal(res.output[1000], '\0');
	assert_no_children();
}

static void test_cat_large_input_no_deadlock(void **state)
{
	/* cat writes back all it reads: 1 MB in, the pipes fill both ways. */
	char *argv[] = {"/bin/cat", NULL};
	struct src s = {.total = 1 << 20, .chunk = 5000};
	char err[256] = "";
	int64_t t0 = now_ms();

	(void)state;
	assert_int_equal(run(argv, &s, 20000, &res, err, sizeof(err)), 0);
	assert_true(res.exited);
	assert_int_equal(res.exit_status, 0);
	assert_false(res.timed_out);
	assert_int_equal(s.off, s.total);
	assert_int_equal(res.output_len, COMMAND_OUTPUT_MAX);
	for (size_t i = 0; i < COMMAND_OUTPUT_MAX; i++)
		if (res.output[i] != src_byte(i))
			fail_msg("output byte %zu: got %d, want %d", i, res.output[i], src_byte(i));
	assert_int_equal(res.output[COMMAND_OUTPUT_MAX], '\0');
	if (now_ms() - t0 > 15000)
		fail_msg("1 MB through cat took %lld ms", (long long)(now_ms() - t0));
	assert_no_children();
}

static void test_exit_codes(void **state)
{
	static const int codes[] = {0, 1, 2, 67, 75, 127, 255};
	char err[256] = "";

	(void)state;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		char script[64];
		char *argv[] = {"/bin/sh", "-c", script, NULL};

		snprintf(script, sizeof(script), "echo out; echo err >&2; exit %d", codes[i]);
		assert_int_equal(run(argv, NULL, 10000, &res, err, sizeof(err)), 0);
		if (!res.exited || res.exit_status != codes[i])
			fail_msg("exit %d: got exited=%d status %d", codes[i], res.exited,
				 res.exit_status);
		assert_int_equal(res.exec_errno, 0);
		assert_string_equal(res.output, "out\nerr\n");
	}
	assert_no_children();
}

static void test_killed_by_signal(void **state)
{
	char *argv[] = {"/bin/sh", "-c", "echo dying; kill -TERM $$; sleep 5", NULL};
	char err[256] = "";

	(void)state;
	assert_int_equal(run(argv, NULL, 10000, &res, err, sizeof(err)), 0);
	assert_false(res.exited);
	assert_int_equal(res.signal, SIGTERM);
	assert_false(res.timed_out);
	assert_string_equal(res.output, "dying\n");
	assert_no_children();
}

/* gone_or_zombie - pid has died (a zombie of some other parent counts), waiting up to 2 s. */
static bool gone_or_zombie(long pid)
{
	int64_t deadline = now_ms() + 2000;
	char path[64], buf[512];

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	for (;;) {
		FILE *f = fopen(path, "r");
		char *rp;

		if (!f)
			return true;
		buf[0] = '\0';
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
		rp = strrchr(buf, ')');
		if (rp && (rp[2] == 'Z' || rp[2] == 'X'))
			return true;
		if (now_ms() > deadline)
			return false;
		poll(NULL, 0, 10);
	}
}

static void test_timeout_kills_the_group(void **state)
{
	/* The shell's own child (sleep) holds the output pipe open too, and must die. */
	char *argv[] = {"/bin/sh", "-c", "/bin/sleep 30 & echo $!; wait; echo never", NULL};
	char err[256] = "";
	int64_t t0 = now_ms(), took;
	long grandchild = 0;

	(void)state;
	assert_int_equal(run(argv, NULL, 300, &res, err, sizeof(err)), 0);
	took = now_ms() - t0;
	assert_true(res.timed_out);
	assert_false(res.exited);
	assert_int_equal(res.signal, SIGKILL);
	assert_int_equal(sscanf(res.output, "%ld", &grandchild), 1);
	assert_null(strstr(res.output, "never"));
	if (took < 250 || took > 5000)
		fail_msg("a 300 ms limit took %lld ms", (long long)took);
	if (!gone_or_zombie(grandchild))
		fail_msg("the command's child %ld survived the time limit", grandchild);
	assert_no_children();
}

static void test_timeout_while_writing(void **state)
{
	/* The child never reads: the input blocks; the limit still holds. */
	char *argv[] = {"/bin/sleep", "30", NULL};
	struct src s = {.total = 1 << 20, .chunk = 65536};
	char err[256] = "";
	int64_t t0 = now_ms();

	(void)state;
	assert_int_equal(run(argv, &s, 300, &res, err, sizeof(err)), 0);
	assert_true(res.timed_out);
	assert_int_equal(res.signal, SIGKILL);
	if (now_ms() - t0 > 5000)
		fail_msg("took %lld ms", (long long)(now_ms() - t0));
	assert_no_children();
}

static void test_timeout_after_closing_output(void **state)
{
	/* Output closed at once, the process lives on: waited for until the limit. */
	char *argv[] = {"/bin/sh", "-c", "exec >&- 2>&- <&-; /bin/sleep 30", NULL};
	char err[256] = "";
	int64_t t0 = now_ms();

	(void)state;
	assert_int_equal(run(argv, NULL, 300, &res, err, sizeof(err)), 0);
	assert_true(res.timed_out);
	if (now_ms() - t0 > 5000)
		fail_msg("took %lld ms", (long long)(now_ms() - t0));
	assert_no_children();
}

static void test_missing_program(void **state)
{
	char *argv[] = {"/nonexistent/zfarm-no-such-program", "x", NULL};
	char err[256] = "";

	(void)state;
	assert_int_equal(run(argv, NULL, 10000, &res, err, sizeof(err)), 0);
	assert_true(res.exited);
	assert_int_equal(res.exit_status, 127);
	assert_int_equal(res.exec_errno, ENOENT);
	assert_string_equal(res.output, "cannot execute /nonexistent/zfarm-no-such-program: "
					"No such file or directory\n");
	assert_no_children();
}

static void test_not_executable(void **state)
{
	char *argv[] = {"/etc/passwd", NULL};
	char err[256] = "";

	(void)state; /* no x bit at all: EACCES even for root */
	assert_int_equal(run(argv, NULL, 10000, &res, err, sizeof(err)), 0);
	assert_int_equal(res.exec_errno, EACCES);
	assert_int_equal(res.exit_status, 127);
	assert_no_children();
}

static void test_relative_path_refused(void **state)
{
	char *argv[] = {"cat", NULL};
	char err[256] = "";

	(void)state;
	assert_int_equal(run(argv, NULL, 10000, &res, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "absolute"));
	assert_no_children();
}

static void test_child_closes_stdin_early(void **state)
{
	/* /bin/true reads nothing: EPIPE for us, no SIGPIPE death, its exit 0 counts. */
	char *argv[] = {"/bin/true", NULL};
	struct src s = {.total = 1 << 20, .chunk = 65536};
	char err[256] = "";

	(void)state;
	assert_int_equal(run(argv, &s, 10000, &res, err, sizeof(err)), 0);
	assert_true(res.exited);
	assert_int_equal(res.exit_status, 0);
	assert_false(res.timed_out);
	assert_no_sigpipe_pending();
	assert_no_children();
}

static void test_signals_default_in_child(void **state)
{
	/*
	 * We ignore SIGPIPE and SIGHUP like farm programs do, and command_run()
	 * blocks SIGPIPE; the command must still start with nothing ignored
	 * or blocked (writers like yes(1) rely on dying of SIGPIPE).
	 */
	char *argv[] = {"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL};
	char err[256] = "";
	void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
	void (*old_hup)(int) = signal(SIGHUP, SIG_IGN);

	(void)state;
	assert_int_equal(run(argv, NULL, 10000, &res, err, sizeof(err)), 0);
	signal(SIGPIPE, old_pipe);
	signal(SIGHUP, old_hup);
	/*
	 * Signals 32 and 33 belong to the C library (it refuses to touch them)
	 * and may come ignored from whoever started us: only 1..31 are ours.
	 */
	{
		unsigned long long blk = ~0ULL, ign = ~0ULL;

		if (sscanf(res.output, "SigBlk: %llx SigIgn: %llx", &blk, &ign) != 2)
			fail_msg("cannot read %s", res.output);
		if (blk != 0 || (ign & 0x7fffffffULL) != 0)
			fail_msg("the command starts with signals blocked %llx, ignored %llx", blk,
				 ign);
	}
	assert_no_children();
}

static void test_output_over_the_cap(void **state)
{
	/* 1 MB of output, no input: the first COMMAND_OUTPUT_MAX bytes kept. */
	char *argv[] = {"/bin/sh", "-c",
			"i=0; while [ $i -lt 16384 ]; do "
			"echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde; "
			"i=$((i+1)); done; exit 3",
			NULL};
	char err[256] = "";

	(void)state;
	assert_int_equal(run(argv, NULL, 60000, &res, err, sizeof(err)), 0);
	assert_true(res.exited);
	assert_int_equal(res.exit_status, 3);
	assert_int_equal(res.output_len, COMMAND_OUTPUT_MAX);
	assert_int_equal(strlen(res.output), COMMAND_OUTPUT_MAX);
	assert_memory_equal(res.output, "0123456789abcdef", 16);
	assert_int_equal(res.output[63], '\n'); /* 63 bytes and LF per line */
	assert_no_children();
}

static void test_environment_is_exactly_env(void **state)
{
	char *argv[] = {"/usr/bin/env", NULL};
	char *env[] = {"A=1", "PATH=/bin:/usr/bin", "WITH SPACE=x y", NULL};
	struct command_spec spec = {.argv = argv, .env = env, .uid = (uid_t)-1, .timeout_ms = 10000};
	char err[256] = "";

	(void)state;
	setenv("ZFARM_TEST_LEAK", "1", 1);
	assert_int_equal(command_run(&spec, &res, err, sizeof(err)), 0);
	assert_string_equal(res.output, "A=1\nPATH=/bin:/usr/bin\nWITH SPACE=x y\n");

	spec.env = NULL;
	assert_int_equal(command_run(&spec, &res, err, sizeof(err)), 0);
	assert_true(res.exited);
	assert_int_equal(res.exit_status, 0);
	assert_string_equal(res.output, "");
	unsetenv("ZFARM_TEST_LEAK");
	assert_no_children();
}

static void test_cwd_umask_and_descriptors(void **state)
{
	/* Working directory, umask 077, and only 0, 1, 2 open (3 is the shell's /proc read). */
	char *argv[] = {"/bin/sh", "-c", "pwd; umask; ls /proc/self/fd | wc -l", NULL};
	char *env[] = {"PATH=/bin:/usr/bin", NULL};
	struct command_spec spec = {
	    .argv = argv, .env = env, .cwd = "/tmp", .uid = (uid_t)-1, .timeout_ms = 10000};
	char err[256] = "";
	FILE *leak = tmpfile(); /* an open descriptor of ours the child must not see */
	int nfds = -1;
	char cwd[64] = "", mask[16] = "";

	(void)state;
	assert_non_null(leak);
	assert_int_equal(command_run(&spec, &res, err, sizeof(err)), 0);
	fclose(leak);
	assert_int_equal(sscanf(res.output, "%63s %15s %d", cwd, mask, &nfds), 3);
	assert_string_equal(cwd, "/tmp");
	assert_string_equal(mask, "0077");
	/* ls sees 0, 1, 2 and its own directory descriptor; wc's pipe is ls's stdout */
	if (nfds != 4)
		fail_msg("got %d descriptors in the child, want 4 (0, 1, 2 and ls's own): %s",
			 nfds, res.output);
	spec.cwd = "/nonexistent-dir";
	assert_int_equal(command_run(&spec, &res, err, sizeof(err)), 0);
	assert_int_equal(res.exec_errno, ENOENT);
	assert_int_equal(res.exit_status, 127);
	assert_non_null(strstr(res.output, "cannot change to directory /nonexistent-dir"));
	assert_no_children();
}

static void test_feed_error_kills_and_reaps(void **state)
{
	char *argv[] = {"/bin/cat", NULL};
	struct src s = {.total = 1 << 20, .chunk = 1000, .fail_at = 5};
	char err[256] = "";

	(void)state;
	assert_int_equal(run(argv, &s, 10000, &res, err, sizeof(err)), -1);
	assert_string_equal(err, "the queue file went away");
	assert_no_children();
	assert_no_sigpipe_pending();
}

static void test_drops_privileges_as_root(void **state)
{
	char *argv[] = {"/bin/sh", "-c", "id -u; id -g; id -G", NULL};
	char *env[] = {"PATH=/bin:/usr/bin", NULL};
	struct passwd *pw = getpwnam("nobody");
	struct command_spec spec = {.argv = argv, .env = env, .timeout_ms = 10000};
	char err[256] = "", want[128];

	(void)state;
	if (geteuid() != 0 || !pw)
		skip();
	spec.uid = pw->pw_uid;
	spec.gid = pw->pw_gid;
	assert_int_equal(command_run(&spec, &res, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%u\n%u\n", (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	if (strncmp(res.output, want, strlen(want)) != 0)
		fail_msg("got %s, want %s...", res.output, want);
	/* supplementary groups: nobody's, not root's 0 */
	assert_null(strstr(res.output + strlen(want), " 0\n"));
	assert_true(strcmp(res.output + strlen(want), "0\n") != 0);
	assert_no_children();
}

static void test_many_runs_no_descriptor_leak(void **state)
{
	char *argv[] = {"/bin/true", NULL};
	char err[256] = "";
	int before = dup(0), after;

	(void)state;
	close(before);
	for (int i = 0; i < 50; i++)
		assert_int_equal(run(argv, NULL, 10000, &res, err, sizeof(err)), 0);
	after = dup(0);
	close(after);
	assert_int_equal(after, before);
	assert_no_children();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cat_echoes_small_input),
	    cmocka_unit_test(test_cat_large_input_no_deadlock),
	    cmocka_unit_test(test_exit_codes),
	    cmocka_unit_test(test_killed_by_signal),
	    cmocka_unit_test(test_timeout_kills_the_group),
	    cmocka_unit_test(test_timeout_while_writing),
	    cmocka_unit_test(test_timeout_after_closing_output),
	    cmocka_unit_test(test_missing_program),
	    cmocka_unit_test(test_not_executable),
	    cmocka_unit_test(test_relative_path_refused),
	    cmocka_unit_test(test_child_closes_stdin_early),
	    cmocka_unit_test(test_signals_default_in_child),
	    cmocka_unit_test(test_output_over_the_cap),
	    cmocka_unit_test(test_environment_is_exactly_env),
	    cmocka_unit_test(test_cwd_umask_and_descriptors),
	    cmocka_unit_test(test_feed_error_kills_and_reaps),
	    cmocka_unit_test(test_drops_privileges_as_root),
	    cmocka_unit_test(test_many_runs_no_descriptor_leak),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
