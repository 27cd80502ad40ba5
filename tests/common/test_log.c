/* Tests for common/log.c: format, levels, sanitising, fatal vs panic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"

/* run_logged - run fn in a child with stderr on a pipe; return its output. */
static int run_logged(void (*fn)(void), char *out, size_t outlen)
{
	int pipefd[2], status;
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		/* No core files from the panic test. */
		signal(SIGABRT, SIG_DFL);
		fn();
		_exit(0);
	}
	close(pipefd[1]);
	while (n < outlen - 1 && (r = read(pipefd[0], out + n, outlen - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void emit_levels(void)
{
	log_open("/usr/libexec/zfarm/testprog", LOG_TARGET_STDERR);
	log_debug("not shown %d", 1);
	log_info("ABCDEFGHJK000001: from=<a@b>, size=%d", 42);
	log_warn("warned");
	log_set_level(LOG_LEVEL_DEBUG);
	log_debug("now shown");
	log_set_level(LOG_LEVEL_ERROR);
	log_warn("hidden warning");
	log_error("an error");
}

static void test_levels_and_format(void **state)
{
	char out[4096], want[512];
	int status;

	(void)state;
	status = run_logged(emit_levels, out, sizeof(out));
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_null(strstr(out, "not shown"));
	assert_null(strstr(out, "hidden warning"));
	assert_non_null(strstr(out, "warning: warned\n"));
	assert_non_null(strstr(out, "debug: now shown\n"));
	assert_non_null(strstr(out, "error: an error\n"));
	/* Program name is the basename; the queue ID leads the text. */
	snprintf(want, sizeof(want), "testprog[");
	assert_true(strncmp(out, want, strlen(want)) == 0);
	assert_non_null(strstr(out, "]: ABCDEFGHJK000001: from=<a@b>, size=42\n"));
}

static void emit_hostile(void)
{
	char big[LOG_LINE_MAX * 2];

	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_open("t", LOG_TARGET_STDERR);
	log_info("x\r\nfake: line\x1b[31m\x7f end");
	log_info("%s", big);
}

static void test_sanitised_and_bounded(void **state)
{
	char out[16384];
	char *second;

	(void)state;
	run_logged(emit_hostile, out, sizeof(out));
	assert_non_null(strstr(out, "x??fake: line?[31m? end\n"));
	second = strchr(out, '\n');
	assert_non_null(second);
	second++;
	/* One line, cut: prefix + at most LOG_LINE_MAX-1 bytes of text. */
	assert_true(strlen(second) < LOG_LINE_MAX + 64);
	assert_int_equal(second[strlen(second) - 1], '\n');
	assert_ptr_equal(strchr(second, '\n'), second + strlen(second) - 1);
}

static void do_fatal(void)
{
	log_open("t", LOG_TARGET_STDERR);
	log_fatal("cannot open %s", "/nonexistent");
}

static void do_panic(void)
{
	log_open("t", LOG_TARGET_STDERR);
	log_panic("invariant broken: %d", 7);
}

static void test_fatal_exits_panic_aborts(void **state)
{
	char out[1024];
	int status;

	(void)state;
	status = run_logged(do_fatal, out, sizeof(out));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_non_null(strstr(out, "fatal: cannot open /nonexistent\n"));

	status = run_logged(do_panic, out, sizeof(out));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	assert_non_null(strstr(out, "panic: invariant broken: 7\n"));
}

static void test_level_parse_and_sanitize(void **state)
{
	static const struct {
		const char *name;
		int want;
	} rows[] = {
		{"debug", LOG_LEVEL_DEBUG}, {"INFO", LOG_LEVEL_INFO},	{"warn", LOG_LEVEL_WARN},
		{"warning", LOG_LEVEL_WARN}, {"error", LOG_LEVEL_ERROR}, {"loud", -1},
		{"", -1},
	};
	char buf[8];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (log_level_parse(rows[i].name) != rows[i].want)
			fail_msg("row %zu \"%s\": got %d, want %d", i, rows[i].name,
				 log_level_parse(rows[i].name), rows[i].want);
	assert_string_equal(log_sanitize(buf, sizeof(buf), "a\0b\tc", 5), "a?b?c");
	assert_string_equal(log_sanitize(buf, sizeof(buf), "0123456789", 10), "0123456");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_and_format),
		cmocka_unit_test(test_sanitised_and_bounded),
		cmocka_unit_test(test_fatal_exits_panic_aborts),
		cmocka_unit_test(test_level_parse_and_sanitize),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
