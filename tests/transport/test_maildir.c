/*
 * Tests for transport/maildir.c: unique names, host sanitising, mkpath,
 * and deliveries into a temporary Maildir (content, the S= size, nothing
 * left in tmp/, nothing in new/ after a failure, a write error from
 * RLIMIT_FSIZE).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "transport/maildir.h"
#include "tests/transport/mailbox_src.h"

/* ---- helpers ---- */

/* The names in dir (at most 8), count returned. */
static int list(const char *dir, char names[8][300])
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n < 8)
			snprintf(names[n], 300, "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* ---- tests ---- */

static void test_host(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"mx.example.org", "mx.example.org"},
	    {"a/b:c", "a\\057b\\072c"},
	    {"", "localhost"},
	    {NULL, "localhost"},
	    {"..", "localhost"},
	    {"x y\tz", "x_y_z"},
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		maildir_host(out, sizeof(out), cases[i].in);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("maildir_host(\"%s\"): got \"%s\", want \"%s\"",
				 cases[i].in ? cases[i].in : "(null)", out, cases[i].want);
	}
	/* cut to fit, never half an escape */
	maildir_host(out, 6, "ab/cd");
	assert_string_equal(out, "ab");
}

static void test_unique(void **state)
{
	char buf[MAILDIR_NAME_MAX + 1];

	(void)state;
	assert_int_equal(
	    maildir_unique(buf, sizeof(buf), 1700000000, 42, 1234, 7, 0xdeadbeef, "mx.example.org"),
	    0);
	assert_string_equal(buf, "1700000000.M42P1234Q7Rdeadbeef.mx.example.org");
	assert_int_equal(maildir_unique(buf, sizeof(buf), 1, 0, 1, 1, 1, "h"), 0);
	assert_string_equal(buf, "1.M0P1Q1R00000001.h");
	assert_int_equal(maildir_unique(buf, 10, 1700000000, 42, 1234, 7, 1, "h"), -1);
}

static void test_mkpath(void **state)
{
	char *d = tmpdir(), path[512], err[256];
	struct stat st;
	int errnum;

	(void)state;
	snprintf(path, sizeof(path), "%s/a/b//c/", d);
	assert_int_equal(maildir_mkpath(path, 0700, &errnum, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/a/b/c", d);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	/* again: fine */
	assert_int_equal(maildir_mkpath(path, 0700, &errnum, err, sizeof(err)), 0);
	/* a file in the way */
	snprintf(path, sizeof(path), "%s/a/file", d);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	snprintf(path, sizeof(path), "%s/a/file/x", d);
	assert_int_equal(maildir_mkpath(path, 0700, &errnum, err, sizeof(err)), -1);
	assert_int_equal(errnum, ENOTDIR);
	rm_rf(d);
	free(d);
}

static void test_deliver(void **state)
{
	char *d = tmpdir(), md[512], sub[600], names[8][300], path[1000], err[256];
	char name1[300], name2[300];
	struct src s = {.line = "Subject: hi\n\nbody line\n", .chunks = 1};
	uint64_t size = 0;
	size_t len;
	char *got;
	int errnum;

	(void)state;
	snprintf(md, sizeof(md), "%s/deep/Maildir", d);
	assert_int_equal(maildir_deliver(md, "mx/x:y", src_fill, &s, name1, sizeof(name1), &size,
					 &errnum, err, sizeof(err)),
			 0);
	assert_int_equal(size, strlen(s.line));
	for (int i = 0; i < 3; i++) {
		struct stat st;

		snprintf(sub, sizeof(sub), "%s/%s", md, (const char *[]){"tmp", "new", "cur"}[i]);
		assert_int_equal(stat(sub, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0700);
	}
	snprintf(sub, sizeof(sub), "%s/new", md);
	assert_int_equal(list(sub, names), 1);
	assert_string_equal(names[0], name1);
	{
		char want[64];

		snprintf(want, sizeof(want), ".mx\\057x\\072y,S=%zu", strlen(s.line));
		len = strlen(name1);
		if (len < strlen(want) || strcmp(name1 + len - strlen(want), want) != 0)
			fail_msg("name %s: want it to end in %s", name1, want);
	}
	snprintf(path, sizeof(path), "%s/%s", sub, name1);
	got = slurp(path, &len);
	assert_string_equal(got, s.line);
	free(got);
	snprintf(sub, sizeof(sub), "%s/tmp", md);
	assert_int_equal(list(sub, names), 0);

	/* a second one gets another name */
	s.done = 0;
	assert_int_equal(maildir_deliver(md, "h", src_fill, &s, name2, sizeof(name2), NULL, &errnum,
					 err, sizeof(err)),
			 0);
	assert_string_not_equal(name1, name2);

	/* a large one in many chunks */
	s.line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
	s.chunks = 40000; /* 2.5 MB */
	s.done = 0;
	assert_int_equal(maildir_deliver(md, "h", src_fill, &s, name2, sizeof(name2), &size,
					 &errnum, err, sizeof(err)),
			 0);
	assert_int_equal(size, 40000u * 64);
	snprintf(path, sizeof(path), "%s/new/%s", md, name2);
	got = slurp(path, &len);
	assert_int_equal(len, 40000u * 64);
	assert_memory_equal(got + 64 * 39999, s.line, 64);
	free(got);
	rm_rf(d);
	free(d);
}

static void test_fill_failure(void **state)
{
	char *d = tmpdir(), md[512], sub[600], names[8][300], err[256];
	struct src s = {.line = "x\n", .chunks = 100000, .fail_at = 50000};
	int errnum = -1;

	(void)state;
	snprintf(md, sizeof(md), "%s/Maildir", d);
	assert_int_equal(
	    maildir_deliver(md, "h", src_fill, &s, NULL, 0, NULL, &errnum, err, sizeof(err)), -1);
	assert_int_equal(errnum, 0);
	assert_string_equal(err, "read error");
	snprintf(sub, sizeof(sub), "%s/new", md);
	assert_int_equal(list(sub, names), 0);
	snprintf(sub, sizeof(sub), "%s/tmp", md);
	assert_int_equal(list(sub, names), 0);
	rm_rf(d);
	free(d);
}

static void test_write_error(void **state)
{
	char *d = tmpdir(), md[512], sub[600], names[8][300], err[256];
	struct src s = {.line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n",
			.chunks = 10000};
	struct rlimit old, small;
	void (*oldsig)(int);
	int errnum = 0, rc;

	(void)state;
	snprintf(md, sizeof(md), "%s/Maildir", d);
	/* Files of this process may not grow past 100 KB: EFBIG instead of SIGXFSZ. */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 100 * 1024;
	oldsig = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	rc = maildir_deliver(md, "h", src_fill, &s, NULL, 0, NULL, &errnum, err, sizeof(err));
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, oldsig);
	assert_int_equal(rc, -1);
	if (errnum != EFBIG)
		fail_msg("errnum: got %d (%s), want EFBIG", errnum, err);
	snprintf(sub, sizeof(sub), "%s/new", md);
	assert_int_equal(list(sub, names), 0);
	snprintf(sub, sizeof(sub), "%s/tmp", md);
	assert_int_equal(list(sub, names), 0);
	rm_rf(d);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_host),	 cmocka_unit_test(test_unique),
	    cmocka_unit_test(test_mkpath),	 cmocka_unit_test(test_deliver),
	    cmocka_unit_test(test_fill_failure), cmocka_unit_test(test_write_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
