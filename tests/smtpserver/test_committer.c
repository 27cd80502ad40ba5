/*
 * Tests for smtpserver/committer.c on a real spool: commits finish in
 * the loop, and messages begun while the group worker flushes are made
 * durable together by the next single flush.  fdatasync is wrapped
 * (tests/local.mk) to count calls and to hold the first flush at a gate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/qid.h"
#include "common/qstore.h"
#include "smtpserver/committer.h"

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static unsigned fdatasync_calls;
static bool gate_armed, gate_held, gate_open;

/* fdatasync - counted; with the gate armed, the first call waits until it opens. */
int __wrap_fdatasync(int fd)
{
	pthread_mutex_lock(&gate_lock);
	fdatasync_calls++;
	if (gate_armed) {
		gate_armed = false;
		gate_held = true;
		pthread_cond_broadcast(&gate_cond);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_lock);
	}
	pthread_mutex_unlock(&gate_lock);
	return __real_fdatasync(fd);
}

static unsigned calls(void)
{
	unsigned n;

	pthread_mutex_lock(&gate_lock);
	n = fdatasync_calls;
	pthread_mutex_unlock(&gate_lock);
	return n;
}

/* wait_held - until a flush waits at the gate; fail after 10 s. */
static void wait_held(void)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&gate_lock);
	while (!gate_held && pthread_cond_timedwait(&gate_cond, &gate_lock, &until) == 0)
		;
	pthread_mutex_unlock(&gate_lock);
	assert_true(gate_held);
}

static void open_gate(void)
{
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

struct result {
	int rc, errnum;
	char qid[QID_SIZE];
	char reason[256];
};

static int ndone;

static void on_done(void *arg, int rc, const char *qid, int errnum, const char *reason)
{
	struct result *r = arg;

	r->rc = rc;
	r->errnum = errnum;
	snprintf(r->qid, sizeof(r->qid), "%s", qid);
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	ndone++;
}

static Zfarm__EnvRecipient rcpt = ZFARM__ENV_RECIPIENT__INIT;
static Zfarm__EnvRecipient *rcpts[] = {&rcpt};

static struct qstore_writer *writer(struct qstore *qs, size_t len)
{
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;
	struct qstore_writer *w;
	char buf[4096], err[256];
	int e = 0;

	rcpt.address = "r@example.org";
	env.sender = "s@example.com";
	env.n_recipients = 1;
	env.recipients = rcpts;
	w = qstore_create(qs, &env, &e, err, sizeof(err));
	if (!w)
		fail_msg("create: %s", err);
	memset(buf, 'x', sizeof(buf));
	for (size_t off = 0; off < len; off += sizeof(buf))
		if (qstore_append(w, buf, len - off < sizeof(buf) ? len - off : sizeof(buf), &e, err,
				  sizeof(err)) < 0)
			fail_msg("append: %s", err);
	return w;
}

static long content_len(struct qstore *qs, const char *qid)
{
	char buf[4096], err[256];
	struct qstore_reader *r;
	long len = 0;
	ssize_t n;
	int e = 0;

	r = qstore_read(qs, qid, &e, err, sizeof(err));
	if (!r)
		return -1;
	while ((n = qstore_content(r, buf, sizeof(buf), err, sizeof(err))) > 0)
		len += n;
	qstore_reader_free(&r);
	return n == 0 ? len : -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* loop_until - run base until ndone reaches want; fail after 10 s. */
static void loop_until(struct event_base *base, int want)
{
	for (int i = 0; i < 10000 && ndone < want; i++) {
		struct timeval tv = {0, 1000};

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	assert_int_equal(ndone, want);
}

/*
 * Four messages in slots an earlier fdatasync made durable (ext4): the
 * first is held in its group's flush; the three submitted meanwhile are
 * one group with one flush: two fdatasyncs for four commits, each message
 * committed and readable.  A message in a new file goes to the threads
 * (its file's own fdatasync) and is committed too.
 */
static void test_group_flush(void **state)
{
	char top[] = "/tmp/test_committer.XXXXXX", dir[64], err[256], qid[QID_SIZE];
	struct qstore_writer *w[4], *spare[64], *nf = NULL;
	struct result res[5] = {0};
	struct event_base *base;
	struct committer *c;
	struct qstore *qs;
	struct statfs fs;
	int n = 0, nspare = 0, e = 0;

	(void)state;
	assert_non_null(mkdtemp(top));
	assert_int_equal(statfs(top, &fs), 0);
	if (fs.f_type != 0xEF53) {
		rmdir(top);
		fprintf(stderr, "# skip: %s is not ext4 (group commit is for ext4)\n", top);
		skip();
	}
	snprintf(dir, sizeof(dir), "%s/q", top);
	qs = qstore_open("spool", dir, err, sizeof(err));
	assert_non_null(qs);
	/* Slot files made durable (fdatasync at their first commit), then free. */
	for (int i = 0; i < 8; i++)
		spare[i] = writer(qs, 4000);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(qstore_commit_begin(spare[i]), 0); /* new files */
		assert_int_equal(qstore_commit(&spare[i], qid, &e, err, sizeof(err)), 0);
		assert_int_equal(qstore_remove(qs, qid, err, sizeof(err)), 0);
	}
	/* Four writers in those, and one in a new file (nf); others set aside. */
	while ((n < 4 || !nf) && nspare < 64) {
		struct qstore_writer *x = writer(qs, 3000);

		if (!qstore_commit_begin(x) && !nf)
			nf = x;
		else if (n < 4 && qstore_commit_begin(x))
			w[n++] = x;
		else
			spare[nspare++] = x;
	}
	assert_int_equal(n, 4);
	assert_non_null(nf);

	base = event_base_new();
	c = committer_new(base, 2, err, sizeof(err));
	assert_non_null(c);
	pthread_mutex_lock(&gate_lock);
	gate_armed = true;
	fdatasync_calls = 0;
	pthread_mutex_unlock(&gate_lock);
	committer_submit(c, w[0], on_done, &res[0]);
	wait_held(); /* the group worker is in w[0]'s flush */
	for (int i = 1; i < 4; i++)
		committer_submit(c, w[i], on_done, &res[i]);
	assert_int_equal(committer_pending(c), 4);
	assert_int_equal(calls(), 1);
	open_gate();
	loop_until(base, 4);
	assert_int_equal(calls(), 2);
	for (int i = 0; i < 4; i++) {
		if (res[i].rc != 0)
			fail_msg("commit %d: %s", i, res[i].reason);
		assert_true(qid_valid(res[i].qid));
		assert_int_equal(content_len(qs, res[i].qid), 3000);
	}
	/* Not group-committed: through the threads, with the file's own fdatasync. */
	committer_submit(c, nf, on_done, &res[4]);
	loop_until(base, 5);
	if (res[4].rc != 0)
		fail_msg("commit: %s", res[4].reason);
	assert_int_equal(content_len(qs, res[4].qid), 3000);
	assert_true(calls() > 2);
	assert_int_equal(committer_pending(c), 0);
	committer_free(&c);
	assert_null(c);
	while (nspare > 0)
		qstore_abort(&spare[--nspare]);
	event_base_free(base);
	qstore_close(&qs);
	nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_group_flush),
	};

	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
