/*
 * commit_group - what several commits at once cost the machine, for the
 * layouts a queue store could have: a file per message, each synced on
 * its own (the spool's slots today), against adjacent regions of one file
 * that one fdatasync makes durable together (group commit).  THREADS
 * writers commit COUNT messages of SIZE bytes in all; for each layout it
 * prints commits/s, this process's CPU per commit, the whole machine's
 * busy CPU per commit (/proc/stat: the kernel's block and interrupt work
 * is not all charged to the process) and the fdatasyncs per commit.  Not
 * a test; the numbers that decide whether a queue store redesign for
 * group commit pays (bench/README.md).
 *
 *   bench/commit_group DIR [THREADS [COUNT [SIZE]]]   (defaults 3, 3000, 4608)
 *
 * DIR must be on the file system to measure (a real disk, not tmpfs);
 * commit_group makes DIR/commit_group.PID and removes it afterwards.
 *
 *   files   each writer its own 32 files in turn: pwrite + fdatasync
 *   shared  one file, a region of ROUNDUP(SIZE, 4096) per message in turn:
 *           pwrite, then wait for an fdatasync that started after the
 *           write (one runs at a time; a writer that finds none running
 *           starts it for everything written so far)
 *   data    files, but sync_file_range (write and wait): the data alone
 *   flush   fdatasync of a file with nothing dirty: the device flush alone
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WINDOW	32   /* files per writer (a slot range's first window) */
#define REGIONS 1024 /* regions of the shared file */
#define MAXTHR	64

enum layout { FILES, SHARED, DATA, FLUSH };
static const char *const layout_names[] = {"files", "shared", "data", "flush"};

struct group {
	pthread_mutex_t lock;
	pthread_cond_t done;
	uint64_t written; /* writes finished */
	uint64_t synced;  /* writes an fdatasync that ended covers */
	bool running;
	long syncs;
	unsigned long next_region;
};

struct run {
	enum layout layout;
	char dir[4096];
	int threads;
	long per_thread;
	size_t size;
	int shared_fd;
	struct group g;
};

struct writer {
	struct run *run;
	int id;
	int fds[WINDOW];
};

static void die(const char *what)
{
	fprintf(stderr, "commit_group: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double cpu_self(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/* cpu_machine - busy seconds of all CPUs: user nice system irq softirq steal. */
static double cpu_machine(void)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");

	if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			 &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
		die("/proc/stat");
	fclose(f);
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void write_all(int fd, const char *buf, size_t len, off_t off)
{
	if (pwrite(fd, buf, len, off) != (ssize_t)len)
		die("pwrite");
}

/* group_sync - return once an fdatasync that started after our write ended. */
static void group_sync(struct group *g, int fd)
{
	uint64_t mine;

	pthread_mutex_lock(&g->lock);
	mine = ++g->written;
	while (g->synced < mine) {
		if (!g->running) {
			uint64_t upto = g->written;

			g->running = true;
			pthread_mutex_unlock(&g->lock);
			if (fdatasync(fd) < 0)
				die("fdatasync");
			pthread_mutex_lock(&g->lock);
			g->running = false;
			g->syncs++;
			g->synced = upto;
			pthread_cond_broadcast(&g->done);
		} else {
			pthread_cond_wait(&g->done, &g->lock);
		}
	}
	pthread_mutex_unlock(&g->lock);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct run *r = w->run;
	size_t region = (r->size + 4095) / 4096 * 4096;
	char *buf = malloc(r->size);

	if (!buf)
		die("malloc");
	memset(buf, 'm', r->size);
	for (long i = 0; i < r->per_thread; i++) {
		int fd = w->fds[i % WINDOW];

		switch (r->layout) {
		case FILES:
			write_all(fd, buf, r->size, 0);
			if (fdatasync(fd) < 0)
				die("fdatasync");
			break;
		case SHARED: {
			unsigned long n;

			pthread_mutex_lock(&r->g.lock);
			n = r->g.next_region++ % REGIONS;
			pthread_mutex_unlock(&r->g.lock);
			write_all(r->shared_fd, buf, r->size, (off_t)(n * region));
			group_sync(&r->g, r->shared_fd);
			break;
		}
		case DATA:
			write_all(fd, buf, r->size, 0);
			if (sync_file_range(fd, 0, 0,
					    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
						SYNC_FILE_RANGE_WAIT_AFTER) < 0)
				die("sync_file_range");
			break;
		case FLUSH:
			if (fdatasync(fd) < 0)
				die("fdatasync");
			break;
		}
	}
	free(buf);
	return NULL;
}

/* run_layout - files made and synced first (not measured), then the commits. */
static void run_layout(struct run *r, enum layout layout)
{
	struct writer w[MAXTHR];
	pthread_t th[MAXTHR];
	size_t region = (r->size + 4095) / 4096 * 4096;
	char path[4200], *buf = calloc(1, region);
	double t0, c0, m0, secs, cpu, mach;
	long n = r->per_thread * r->threads;

	if (!buf)
		die("calloc");
	r->layout = layout;
	memset(&r->g, 0, sizeof(r->g));
	pthread_mutex_init(&r->g.lock, NULL);
	pthread_cond_init(&r->g.done, NULL);
	snprintf(path, sizeof(path), "%s/shared", r->dir);
	if ((r->shared_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		die(path);
	for (int k = 0; k < REGIONS; k++)
		write_all(r->shared_fd, buf, region, (off_t)k * (off_t)region);
	if (fdatasync(r->shared_fd) < 0)
		die("fdatasync");
	for (int t = 0; t < r->threads; t++) {
		w[t].run = r;
		w[t].id = t;
		for (int k = 0; k < WINDOW; k++) {
			snprintf(path, sizeof(path), "%s/w%d.%d", r->dir, t, k);
			if ((w[t].fds[k] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
				die(path);
			write_all(w[t].fds[k], buf, r->size, 0);
			if (fdatasync(w[t].fds[k]) < 0)
				die("fdatasync");
		}
	}
	t0 = now();
	c0 = cpu_self();
	m0 = cpu_machine();
	for (int t = 0; t < r->threads; t++)
		if ((errno = pthread_create(&th[t], NULL, writer_main, &w[t])) != 0)
			die("pthread_create");
	for (int t = 0; t < r->threads; t++)
		pthread_join(th[t], NULL);
	secs = now() - t0;
	cpu = cpu_self() - c0;
	mach = cpu_machine() - m0;
	printf("%-7s %2d writers: %7.0f commits/s, CPU %4.0f us/commit (machine %4.0f us), "
	       "fdatasync %.2f/commit\n",
	       layout_names[layout], r->threads, (double)n / secs, cpu * 1e6 / (double)n,
	       mach * 1e6 / (double)n,
	       layout == SHARED ? (double)r->g.syncs / (double)n
	       : layout == DATA ? 0.0
				: 1.0);
	for (int t = 0; t < r->threads; t++)
		for (int k = 0; k < WINDOW; k++)
			close(w[t].fds[k]);
	close(r->shared_fd);
	free(buf);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(int argc, char **argv)
{
	static struct run r;
	long count;

	if (argc < 2 || argc > 5) {
		fprintf(stderr, "usage: commit_group DIR [THREADS [COUNT [SIZE]]]\n");
		return 2;
	}
	r.threads = argc > 2 ? atoi(argv[2]) : 3;
	count = argc > 3 ? atol(argv[3]) : 3000;
	r.size = argc > 4 ? (size_t)atol(argv[4]) : 4608;
	if (r.threads < 1 || r.threads > MAXTHR || count < r.threads || r.size < 1 ||
	    r.size > 1 << 20) {
		fprintf(stderr, "commit_group: THREADS 1..%d, COUNT >= THREADS, SIZE 1..1 MiB\n",
			MAXTHR);
		return 2;
	}
	r.per_thread = count / r.threads;
	snprintf(r.dir, sizeof(r.dir), "%s/commit_group.%ld", argv[1], (long)getpid());
	if (mkdir(r.dir, 0700) < 0)
		die(r.dir);
	for (int l = FILES; l <= FLUSH; l++)
		run_layout(&r, (enum layout)l);
	nftw(r.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
