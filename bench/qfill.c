/*
 * qfill - fill a spool queue store with routed messages, for the
 * scheduler's benchmarks and load test (bench/sched_bench.py,
 * tests/scheduler/test_sched_load.py).
 *
 * Not a daemon and not a test.  Creates N committed messages in the queue
 * directory through the qstore API exactly as smtpserver does (create with
 * an Envelope, content, commit: durable), then appends the routing set in
 * one durable qstore_ctl_append exactly as the router does: R RouteRecords
 * (index k, orig_index k, channel "smtp", total R) closed by one CtlRecord
 * routed=true.  So the scheduler takes these messages in (msgstate_load)
 * like router-routed ones and delivers them to the smtp channel.
 *
 * Recipient k of message i is "u<i>.<k>@d<j>.example" with nexthop
 * "d<j>.example", where j cycles over the D destinations recipient by
 * recipient (j = (i*R + k) mod D), so a message's recipients go to
 * different destinations (one delivery each) unless -g puts all of them at
 * one destination (j = i mod D: one delivery of R recipients).
 *
 *     bench/qfill [-n messages] [-r recipients] [-d destinations]
 *                 [-s body-bytes] [-j threads] [-g] [-q] QUEUE_DIR
 *
 * Defaults: -n 10000 -r 1 -d 1000 -s 1000 -j 4.  Commits and route appends
 * (each a few fsyncs) run in -j threads: qstore_commit and
 * qstore_ctl_append may run in parallel threads, qstore_create must stay in
 * one (qstore.h), so the main thread creates and writes the content.
 * Prints the messages/s to stdout ("qfill: N messages ... in X s, Y/s").
 * Exit 1 (with the reason on stderr) on the first failure.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/qstore.h"
#include "common/xalloc.h"
#include "proto/qfile.pb-c.h"

#define QFILL_QUEUE_SLOTS 256
#define QFILL_MAX_THREADS 64

struct qfill_opts {
	unsigned long messages;
	unsigned recipients;
	unsigned destinations;
	size_t body_bytes;
	unsigned threads;
	bool group; /* all recipients of a message at one destination */
	bool quiet;
	const char *dir;
};

/* One message between the creating thread and a committing one. */
struct qfill_job {
	struct qstore_writer *w;
	unsigned long seq; /* message number i */
};

/* A bounded queue of jobs; the committing threads take from it. */
struct qfill_queue {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	struct qfill_job slot[QFILL_QUEUE_SLOTS];
	size_t head, n;
	bool done;   /* no more jobs will come */
	bool failed; /* a thread failed: everybody stops */
};

static struct qfill_opts opt = {10000, 1, 1000, 1000, 4, false, false, NULL};
static struct qfill_queue jobs = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .not_empty = PTHREAD_COND_INITIALIZER,
    .not_full = PTHREAD_COND_INITIALIZER,
};
static struct qstore *qs;

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: qfill [-n messages] [-r recipients-per-message] "
			"[-d destinations] [-s body-bytes] [-j threads] [-g] [-q] QUEUE_DIR\n");
	exit(2);
}

static unsigned long parse_num(int flag, const char *s, unsigned long min, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		fprintf(stderr, "qfill: -%c: want a number from %lu to %lu, got \"%s\"\n", flag,
			min, max, s);
		exit(2);
	}
	return v;
}

static unsigned dest_of(unsigned long i, unsigned k)
{
	if (opt.group)
		return (unsigned)(i % opt.destinations);
	return (unsigned)((i * opt.recipients + k) % opt.destinations);
}

static char *address_of(unsigned long i, unsigned k)
{
	return xasprintf("u%lu.%u@d%u.example", i, k, dest_of(i, k));
}

/* qfill_fail - the first failure wins; the others stop quietly. */
static void qfill_fail(const char *what, const char *err)
{
	pthread_mutex_lock(&jobs.lock);
	if (!jobs.failed)
		fprintf(stderr, "qfill: %s: %s\n", what, err);
	jobs.failed = true;
	pthread_cond_broadcast(&jobs.not_empty);
	pthread_cond_broadcast(&jobs.not_full);
	pthread_mutex_unlock(&jobs.lock);
}

/* qfill_route - append the routing set of message i as the router does. */
static int qfill_route(const char *qid, unsigned long i, char *err, size_t errlen)
{
	unsigned r = opt.recipients;
	Zfarm__RouteRecord *rr = xcalloc(r, sizeof(*rr));
	Zfarm__CtlRecord *cr = xcalloc(r + 1, sizeof(*cr));
	Zfarm__CtlRecord **recs = xcalloc(r + 1, sizeof(*recs));
	char **addr = xcalloc(r, sizeof(*addr));
	char **hop = xcalloc(r, sizeof(*hop));
	int rc;

	for (unsigned k = 0; k < r; k++) {
		addr[k] = address_of(i, k);
		hop[k] = xasprintf("d%u.example", dest_of(i, k));
		zfarm__route_record__init(&rr[k]);
		rr[k].index = k;
		rr[k].orig_index = k;
		rr[k].orig_address = addr[k];
		rr[k].orcpt = "";
		rr[k].address = addr[k];
		rr[k].channel = "smtp";
		rr[k].nexthop = hop[k];
		rr[k].user = "";
		rr[k].error = "";
		rr[k].total = r;
		zfarm__ctl_record__init(&cr[k]);
		cr[k].body_case = ZFARM__CTL_RECORD__BODY_ROUTE;
		cr[k].route = &rr[k];
		recs[k] = &cr[k];
	}
	zfarm__ctl_record__init(&cr[r]);
	cr[r].body_case = ZFARM__CTL_RECORD__BODY_ROUTED;
	cr[r].routed = true;
	recs[r] = &cr[r];
	rc = qstore_ctl_append(qs, qid, recs, r + 1, err, errlen);
	for (unsigned k = 0; k < r; k++) {
		free(addr[k]);
		free(hop[k]);
	}
	free(addr);
	free(hop);
	free(recs);
	free(cr);
	free(rr);
	return rc;
}

/* qfill_worker - commit messages and append their routes until done. */
static void *qfill_worker(void *arg)
{
	(void)arg;
	for (;;) {
		struct qfill_job j;
		char qid[QID_SIZE], err[512], what[64];
		int errnum = 0;

		pthread_mutex_lock(&jobs.lock);
		while (jobs.n == 0 && !jobs.done && !jobs.failed)
			pthread_cond_wait(&jobs.not_empty, &jobs.lock);
		if (jobs.failed || jobs.n == 0) {
			pthread_mutex_unlock(&jobs.lock);
			return NULL;
		}
		j = jobs.slot[jobs.head];
		jobs.head = (jobs.head + 1) % QFILL_QUEUE_SLOTS;
		jobs.n--;
		pthread_cond_signal(&jobs.not_full);
		pthread_mutex_unlock(&jobs.lock);

		snprintf(what, sizeof(what), "message %lu: commit", j.seq);
		if (qstore_commit(&j.w, qid, &errnum, err, sizeof(err)) < 0) {
			qfill_fail(what, err);
			return NULL;
		}
		if (qfill_route(qid, j.seq, err, sizeof(err)) < 0) {
			snprintf(what, sizeof(what), "%s: routes", qid);
			qfill_fail(what, err);
			return NULL;
		}
	}
}

/* qfill_body - an RFC 5322 message of about n bytes. */
static char *qfill_body(size_t n, size_t *len)
{
	static const char head[] = "From: <sender@example.test>\r\n"
				   "To: <bench@example.test>\r\n"
				   "Subject: qfill benchmark message\r\n"
				   "Message-ID: <qfill@example.test>\r\n"
				   "\r\n";
	static const char line[] = "The quick brown fox jumps over the lazy dog 0123456789.\r\n";
	size_t cap = sizeof(head) + n + sizeof(line);
	char *b = xmalloc(cap);
	size_t off = sizeof(head) - 1;

	memcpy(b, head, off);
	while (off < n) {
		memcpy(b + off, line, sizeof(line) - 1);
		off += sizeof(line) - 1;
	}
	*len = off;
	return b;
}

/* qfill_create - create message i with its envelope and content. */
static struct qstore_writer *qfill_create(unsigned long i, const char *body, size_t blen)
{
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;
	Zfarm__EnvRecipient *er = xcalloc(opt.recipients, sizeof(*er));
	Zfarm__EnvRecipient **erp = xcalloc(opt.recipients, sizeof(*erp));
	char **addr = xcalloc(opt.recipients, sizeof(*addr));
	struct qstore_writer *w;
	char err[512], what[64];
	int errnum = 0;

	for (unsigned k = 0; k < opt.recipients; k++) {
		addr[k] = address_of(i, k);
		zfarm__env_recipient__init(&er[k]);
		er[k].address = addr[k];
		erp[k] = &er[k];
	}
	env.client_addr = "127.0.0.1";
	env.client_name = "localhost";
	env.helo = "qfill.example.test";
	env.protocol = "ESMTP";
	env.sender = "sender@example.test";
	env.recipients = erp;
	env.n_recipients = opt.recipients;
	env.size_declared = blen;
	w = qstore_create(qs, &env, &errnum, err, sizeof(err));
	snprintf(what, sizeof(what), "message %lu: create", i);
	if (!w)
		qfill_fail(what, err);
	else if (qstore_append(w, body, blen, &errnum, err, sizeof(err)) < 0) {
		snprintf(what, sizeof(what), "message %lu: content", i);
		qfill_fail(what, err);
		qstore_abort(&w);
	}
	for (unsigned k = 0; k < opt.recipients; k++)
		free(addr[k]);
	free(addr);
	free(erp);
	free(er);
	return w;
}

static void qfill_options(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "n:r:d:s:j:gq")) != -1) {
		switch (c) {
		case 'n':
			opt.messages = parse_num(c, optarg, 0, 100000000);
			break;
		case 'r':
			opt.recipients = (unsigned)parse_num(c, optarg, 1, 100000);
			break;
		case 'd':
			opt.destinations = (unsigned)parse_num(c, optarg, 1, 100000000);
			break;
		case 's':
			opt.body_bytes = parse_num(c, optarg, 0, 100000000);
			break;
		case 'j':
			opt.threads = (unsigned)parse_num(c, optarg, 1, QFILL_MAX_THREADS);
			break;
		case 'g':
			opt.group = true;
			break;
		case 'q':
			opt.quiet = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	opt.dir = argv[optind];
}

int main(int argc, char **argv)
{
	pthread_t th[QFILL_MAX_THREADS];
	char err[512];
	size_t blen;
	char *body;
	double t0, dt;
	unsigned long i;
	bool failed;

	qfill_options(argc, argv);
	qs = qstore_open("spool", opt.dir, err, sizeof(err));
	if (!qs) {
		fprintf(stderr, "qfill: %s\n", err);
		return 1;
	}
	body = qfill_body(opt.body_bytes, &blen);
	t0 = mono_now();
	for (unsigned t = 0; t < opt.threads; t++) {
		int e = pthread_create(&th[t], NULL, qfill_worker, NULL);

		if (e) {
			fprintf(stderr, "qfill: pthread_create: %s\n", strerror(e));
			return 1;
		}
	}
	for (i = 0; i < opt.messages; i++) {
		struct qstore_writer *w = qfill_create(i, body, blen);

		if (!w)
			break;
		pthread_mutex_lock(&jobs.lock);
		while (jobs.n == QFILL_QUEUE_SLOTS && !jobs.failed)
			pthread_cond_wait(&jobs.not_full, &jobs.lock);
		if (jobs.failed) {
			pthread_mutex_unlock(&jobs.lock);
			qstore_abort(&w);
			break;
		}
		jobs.slot[(jobs.head + jobs.n) % QFILL_QUEUE_SLOTS] =
		    (struct qfill_job){.w = w, .seq = i};
		jobs.n++;
		pthread_cond_signal(&jobs.not_empty);
		pthread_mutex_unlock(&jobs.lock);
	}
	pthread_mutex_lock(&jobs.lock);
	jobs.done = true;
	pthread_cond_broadcast(&jobs.not_empty);
	pthread_mutex_unlock(&jobs.lock);
	for (unsigned t = 0; t < opt.threads; t++)
		pthread_join(th[t], NULL);
	dt = mono_now() - t0;
	failed = jobs.failed;
	/* Writers a failure left in the queue: nothing visible, just free them. */
	while (jobs.n > 0) {
		qstore_abort(&jobs.slot[jobs.head].w);
		jobs.head = (jobs.head + 1) % QFILL_QUEUE_SLOTS;
		jobs.n--;
	}
	free(body);
	qstore_close(&qs);
	if (failed)
		return 1;
	if (!opt.quiet)
		printf("qfill: %lu messages x %u recipient(s), %u destination(s), %zu-byte "
		       "content in %.3f s, %.0f messages/s\n",
		       opt.messages, opt.recipients, opt.destinations, blen, dt,
		       dt > 0 ? (double)opt.messages / dt : 0.0);
	return 0;
}
