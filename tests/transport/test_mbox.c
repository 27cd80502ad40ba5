/*
 * Tests for transport/mbox.c: the From_ line, dotlocks (taken, timed
 * out, stale), fcntl locks held by another process, refused mailboxes
 * (symlink, directory, FIFO, hard link), appends, and truncation back to
 * the old size after a fill error and after a write error (RLIMIT_FSIZE).
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "transport/mbox.h"
#include "tests/transport/mailbox_src.h"

/* ---- helpers ---- */

static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static off_t size_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A child process holding an fcntl lock on path until we close *release. */
static pid_t hold_fcntl(const char *path, int *release)
{
	int ready[2], rel[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(rel), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		int fd = open(path, O_RDWR | O_CREAT, 0600);

		close(ready[0]);
		close(rel[1]);
		if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		if (read(rel[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(rel[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	*release = rel[1];
	return pid;
}

static void release_fcntl(pid_t pid, int release)
{
	int st;

	close(release);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- tests ---- */

static void test_from_line(void **state)
{
	static const struct {
		const char *sender;
		time_t t;
		const char *want;
	} cases[] = {
	    {"a@example.org", 0, "From a@example.org Thu Jan  1 00:00:00 1970\n"},
	    {"", 1700000000, "From MAILER-DAEMON Tue Nov 14 22:13:20 2023\n"},
	    {NULL, 1700000000, "From MAILER-DAEMON Tue Nov 14 22:13:20 2023\n"},
	    {"\"a b\"@x\n", 86400 * 10, "From \"a_b\"@x_ Sun Jan 11 00:00:00 1970\n"},
	};
	char buf[200];

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(mbox_from_line(buf, sizeof(buf), cases[i].sender, cases[i].t), 0);
		if (strcmp(buf, cases[i].want) != 0)
			fail_msg("from line %zu: got \"%s\", want \"%s\"", i, buf, cases[i].want);
	}
	assert_int_equal(mbox_from_line(buf, 10, "a@example.org", 0), -1);
}

static void test_dotlock(void **state)
{
	char *d = tmpdir(), path[512], lock[600], err[256];
	struct stat st;
	struct timespec old[2];
	uint64_t t0, took;
	int errnum;

	(void)state;
	snprintf(path, sizeof(path), "%s/mbox", d);
	snprintf(lock, sizeof(lock), "%s.lock", path);
	assert_int_equal(mbox_dotlock(path, 1000, 300, &errnum, err, sizeof(err)), 0);
	assert_int_equal(lstat(lock, &st), 0);
	assert_int_equal(entries(d), 1); /* no temporary name left */

	/* taken: given up after the time limit, not before, not much after */
	t0 = now_ms();
	assert_int_equal(mbox_dotlock(path, 300, 300, &errnum, err, sizeof(err)), -1);
	took = now_ms() - t0;
	assert_int_equal(errnum, EAGAIN);
	assert_non_null(strstr(err, "mailbox is locked"));
	if (took < 280 || took > 2000)
		fail_msg("gave up after %llu ms, want about 300", (unsigned long long)took);
	assert_int_equal(entries(d), 1);

	/* released: can be had again */
	mbox_dotunlock(path);
	assert_int_equal(lstat(lock, &st), -1);
	assert_int_equal(mbox_dotlock(path, 0, 300, &errnum, err, sizeof(err)), 0);

	/* stale (10 minutes old): removed and taken at once */
	old[0].tv_sec = old[1].tv_sec = time(NULL) - 600;
	old[0].tv_nsec = old[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, lock, old, 0), 0);
	t0 = now_ms();
	assert_int_equal(mbox_dotlock(path, 5000, 300, &errnum, err, sizeof(err)), 0);
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(lstat(lock, &st), 0);
	assert_true(st.st_mtime > time(NULL) - 60);

	/* not stale yet (2 minutes): still locked */
	old[0].tv_sec = old[1].tv_sec = time(NULL) - 120;
	assert_int_equal(utimensat(AT_FDCWD, lock, old, 0), 0);
	assert_int_equal(mbox_dotlock(path, 100, 300, &errnum, err, sizeof(err)), -1);
	assert_int_equal(errnum, EAGAIN);
	mbox_dotunlock(path);

	/* a directory nobody may write: the reason says so */
	if (geteuid() != 0) {
		char ro[600], p2[700];

		snprintf(ro, sizeof(ro), "%s/ro", d);
		assert_int_equal(mkdir(ro, 0500), 0);
		snprintf(p2, sizeof(p2), "%s/mbox", ro);
		assert_int_equal(mbox_dotlock(p2, 100, 300, &errnum, err, sizeof(err)), -1);
		assert_int_equal(errnum, EACCES);
		chmod(ro, 0700);
	}
	rm_rf(d);
	free(d);
}

static void test_fcntl_lock(void **state)
{
	char *d = tmpdir(), path[512], lock[600], err[256];
	struct stat st;
	uint64_t t0, took;
	int errnum, release, fd;
	pid_t pid;
	struct mbox *m;

	(void)state;
	snprintf(path, sizeof(path), "%s/mbox", d);
	snprintf(lock, sizeof(lock), "%s.lock", path);
	pid = hold_fcntl(path, &release);

	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	t0 = now_ms();
	assert_int_equal(mbox_lock_fd(fd, 300, &errnum, err, sizeof(err)), -1);
	took = now_ms() - t0;
	assert_int_equal(errnum, EAGAIN);
	if (took < 280 || took > 2000)
		fail_msg("gave up after %llu ms, want about 300", (unsigned long long)took);
	close(fd);

	/* mbox_open gives up too, and leaves no dotlock behind */
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 200, &errnum, err, sizeof(err));
	assert_null(m);
	assert_int_equal(errnum, EAGAIN);
	assert_int_equal(lstat(lock, &st), -1);

	/* released while we wait: we get it */
	release_fcntl(pid, release);
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 1000, &errnum, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(lstat(lock, &st), 0);
	mbox_close(&m);
	assert_null(m);
	assert_int_equal(lstat(lock, &st), -1);
	rm_rf(d);
	free(d);
}

static void test_refused(void **state)
{
	char *d = tmpdir(), path[512], target[512], err[256];
	int errnum;
	struct mbox *m;

	(void)state;
	snprintf(target, sizeof(target), "%s/target", d);
	close(open(target, O_CREAT | O_WRONLY, 0600));

	snprintf(path, sizeof(path), "%s/link", d);
	assert_int_equal(symlink(target, path), 0);
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_null(m);
	assert_int_equal(errnum, EPERM);
	assert_non_null(strstr(err, "symbolic link"));
	assert_int_equal(size_of(target), 0);

	snprintf(path, sizeof(path), "%s/dir", d);
	assert_int_equal(mkdir(path, 0700), 0);
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_null(m);
	assert_int_equal(errnum, EPERM);
	assert_non_null(strstr(err, "not a regular file"));

	snprintf(path, sizeof(path), "%s/fifo", d);
	assert_int_equal(mkfifo(path, 0600), 0);
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_null(m);
	assert_int_equal(errnum, EPERM);

	snprintf(path, sizeof(path), "%s/hardlink", d);
	assert_int_equal(link(target, path), 0);
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_null(m);
	assert_int_equal(errnum, EPERM);
	assert_non_null(strstr(err, "hard links"));

	/* no dotlock left for any of them */
	assert_int_equal(entries(d), 5);
	rm_rf(d);
	free(d);
}

static void test_append(void **state)
{
	char *d = tmpdir(), path[512], err[256], buf[256];
	struct src a = {.line = "From x Thu Jan  1 00:00:00 1970\nSubject: a\n\n>From body\n\n",
			.chunks = 1};
	struct src b = {.line = "From y Thu Jan  1 00:00:00 1970\nSubject: b\n\nb\n\n",
			.chunks = 1};
	uint64_t size = 0;
	struct stat st;
	struct mbox *m;
	int errnum, fd;
	ssize_t n;

	(void)state;
	snprintf(path, sizeof(path), "%s/sub/mbox", d);
	assert_null(mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err)));
	assert_int_equal(errnum, ENOENT);

	snprintf(path, sizeof(path), "%s/mbox", d);
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(mbox_append(m, src_fill, &a, &size, &errnum, err, sizeof(err)), 0);
	assert_int_equal(size, strlen(a.line));
	mbox_close(&m);
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(mbox_append(m, src_fill, &b, NULL, &errnum, err, sizeof(err)), 0);
	mbox_close(&m);

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	snprintf(err, sizeof(err), "%s%s", a.line, b.line);
	assert_string_equal(buf, err);
	assert_int_equal(entries(d), 1);
	rm_rf(d);
	free(d);
}

static void test_truncate_back(void **state)
{
	char *d = tmpdir(), path[512], err[512];
	struct src first = {.line = "From x Thu Jan  1 00:00:00 1970\n\nfirst\n\n", .chunks = 1};
	/* 64-byte lines: more than MBOX_FLUSH is on disk before the failure */
	struct src bad = {.line =
			      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n",
			  .chunks = 10000,
			  .fail_at = 5000};
	struct rlimit old, small;
	void (*oldsig)(int);
	off_t before;
	struct mbox *m;
	int errnum, rc, fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/mbox", d);
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(mbox_append(m, src_fill, &first, NULL, &errnum, err, sizeof(err)), 0);
	mbox_close(&m);
	before = size_of(path);

	/* the direct function */
	fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "partial", 7), 7);
	assert_int_equal(size_of(path), before + 7);
	assert_int_equal(mbox_truncate(fd, before, &errnum, err, sizeof(err)), 0);
	assert_int_equal(size_of(path), before);
	close(fd);

	/* the message cannot be read half way: back to the old size */
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(mbox_append(m, src_fill, &bad, NULL, &errnum, err, sizeof(err)), -1);
	assert_int_equal(errnum, 0);
	assert_string_equal(err, "read error");
	assert_int_equal(size_of(path), before);
	mbox_close(&m);

	/* a write error (file size limit) half way: back to the old size */
	bad.fail_at = 0;
	bad.done = 0;
	m = mbox_open(path, (uid_t)-1, (gid_t)-1, 100, &errnum, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = (rlim_t)before + 200 * 1024;
	oldsig = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	rc = mbox_append(m, src_fill, &bad, NULL, &errnum, err, sizeof(err));
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, oldsig);
	assert_int_equal(rc, -1);
	if (errnum != EFBIG)
		fail_msg("errnum: got %d (%s), want EFBIG", errnum, err);
	assert_int_equal(size_of(path), before);
	mbox_close(&m);
	rm_rf(d);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_from_line),  cmocka_unit_test(test_dotlock),
	    cmocka_unit_test(test_fcntl_lock), cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_append),     cmocka_unit_test(test_truncate_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
