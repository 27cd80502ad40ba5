/*
 * commit_cost - what one durable 4 KB message costs the file system here:
 * the spool store's real create/append/commit (and remove, apart) against
 * the bare minimum a queue store could do (overwrite a preallocated file
 * in place and sync it), one process, serial.  For each it prints
 * commits/s, the CPU (user + system) per commit and the context switches
 * per commit: the numbers a redesign of the queue store is judged by.
 *
 *   bench/commit_cost DIR [COUNT [SIZE]]      (defaults 2000 and 4096)
 *
 * DIR must be on the file system to measure (a real disk, not tmpfs);
 * commit_cost makes DIR/commit_cost.PID and removes it afterwards.
 *
 *   files      qstore_create + qstore_append + qstore_commit ("spool"
 *              backend, ZFARM_SPOOL_SLOTS=0: claim from free/, write,
 *              cut, link, fsync)
 *   slot       the same in slots (the default: write, cut, fdatasync)
 *   remove     qstore_remove of those messages (files: park in free/;
 *              slot: mark the header free; no sync)
 *   (/new: the first round, which makes the files; then they are reused)
 *   overwrite  pwrite SIZE at offset 0 of a preallocated file + fdatasync
 *   direct     the same through O_DIRECT | O_DSYNC (no page cache)
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/qid.h"
#include "common/qstore.h"

struct mark {
	uint64_t ms;
	double cpu;
	long cs;
};

static struct mark mark_now(void)
{
	struct rusage r;
	struct mark m;

	getrusage(RUSAGE_SELF, &r);
	m.ms = clock_mono_ms();
	m.cpu = (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
		(double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
	m.cs = r.ru_nvcsw + r.ru_nivcsw;
	return m;
}

static void mark_print(const char *what, struct mark a, struct mark b, int n)
{
	double s = (double)(b.ms - a.ms) / 1e3;

	printf("%-10s %6d ops  %8.0f /s serial  %7.1f us CPU/op  %5.2f cs/op\n", what, n,
	       s > 0 ? n / s : 0.0, (b.cpu - a.cpu) * 1e6 / n, (double)(b.cs - a.cs) / n);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void die(const char *what, const char *err)
{
	fprintf(stderr, "commit_cost: %s: %s\n", what, err);
	exit(1);
}

/*
 * bench_spool - n create/append/commit, then n removes, twice: the second
 * round recycles.  slots: new messages in slots, else the tmp/ + msg/XX
 * way (ZFARM_SPOOL_SLOTS=0).
 */
static void bench_spool(const char *dir, int n, size_t size, bool slots)
{
	char err[512], (*qids)[QID_SIZE] = calloc((size_t)n, QID_SIZE);
	char *body = malloc(size);
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;
	struct qstore *qs;
	struct mark a, b;
	int errnum;

	if (!slots)
		setenv("ZFARM_SPOOL_SLOTS", "0", 1);
	qs = qstore_open("spool", dir, err, sizeof(err));
	unsetenv("ZFARM_SPOOL_SLOTS");

	if (!qs || !qids || !body)
		die("spool", qs ? "out of memory" : err);
	memset(body, 'x', size);
	env.sender = "sender@example.test";
	printf("spool commit mode: %s\n", qstore_commit_mode(qs));
	for (int round = 0; round < 2; round++) {
		a = mark_now();
		for (int i = 0; i < n; i++) {
			struct qstore_writer *w = qstore_create(qs, &env, &errnum, err, sizeof(err));

			if (!w || qstore_append(w, body, size, &errnum, err, sizeof(err)) < 0 ||
			    qstore_commit(&w, qids[i], &errnum, err, sizeof(err)) < 0)
				die("spool", err);
		}
		b = mark_now();
		mark_print(round ? (slots ? "slot" : "files") : (slots ? "slot/new" : "files/new"),
			   a, b, n);
		a = mark_now();
		for (int i = 0; i < n; i++)
			if (qstore_remove(qs, qids[i], err, sizeof(err)) < 0)
				die("remove", err);
		b = mark_now();
		mark_print(round ? "remove" : "remove/new", a, b, n);
	}
	qstore_close(&qs);
	free(qids);
	free(body);
}

/* bench_overwrite - n preallocated files of 2 x size, each overwritten once and synced. */
static void bench_overwrite(const char *dir, int n, size_t size, bool direct)
{
	size_t len = (size + 4095) & ~(size_t)4095;
	char path[4200];
	void *buf;
	struct mark a, b;

	if (posix_memalign(&buf, 4096, len) != 0)
		die("overwrite", "out of memory");
	memset(buf, 'y', len);
	snprintf(path, sizeof(path), "%s/slots", dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		die(path, strerror(errno));
	for (int i = 0; i < n; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/slots/%d", dir, i);
		fd = open(path, O_WRONLY | O_CREAT, 0600);
		if (fd < 0 || posix_fallocate(fd, 0, (off_t)(2 * len)) != 0 || fsync(fd) < 0)
			die(path, strerror(errno));
		close(fd);
	}
	a = mark_now();
	for (int i = 0; i < n; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/slots/%d", dir, i);
		fd = open(path, O_WRONLY | (direct ? O_DIRECT | O_DSYNC : 0));
		if (fd < 0 || pwrite(fd, buf, direct ? len : size, 0) < 0 ||
		    (!direct && fdatasync(fd) < 0))
			die(path, strerror(errno));
		close(fd);
	}
	b = mark_now();
	mark_print(direct ? "direct" : "overwrite", a, b, n);
	free(buf);
}

int main(int argc, char **argv)
{
	char dir[4096];
	int n = argc > 2 ? atoi(argv[2]) : 2000;
	size_t size = argc > 3 ? (size_t)atol(argv[3]) : 4096;

	if (argc < 2 || n <= 0 || size == 0) {
		fprintf(stderr, "usage: commit_cost DIR [COUNT [SIZE]]\n");
		return 2;
	}
	snprintf(dir, sizeof(dir), "%s/commit_cost.%ld", argv[1], (long)getpid());
	if (mkdir(dir, 0700) < 0)
		die(dir, strerror(errno));
	printf("%d commits of %zu bytes in %s\n", n, size, dir);
	bench_spool(dir, n, size, false);
	bench_spool(dir, n, size, true);
	bench_overwrite(dir, n, size, false);
	bench_overwrite(dir, n, size, true);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
