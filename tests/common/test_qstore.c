/*
 * Tests for common/qstore.c and its backends: every behaviour test runs
 * against both "spool" and "ram" (the backend name is the test's
 * prestate); spool-only tests cover what only files have: collisions
 * planted on disk, crash leftovers, foreign names, corrupt files, a full
 * or size-limited file system, and the spool's one-file layout (spool
 * header, message, control records) with its pool of recycled inodes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "common/clock.h"
#include "common/qid.h"
#include "common/qstore.h"
#include "common/qstore_ram.h"

/*
 * renameat is wrapped (-Wl,--wrap=renameat in tests/local.mk) to count the
 * claims from free/ that another process won (ENOENT).
 */
int __real_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
static unsigned renameat_enoent;

int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	int r = __real_renameat(olddirfd, oldpath, newdirfd, newpath);

	if (r < 0 && errno == ENOENT)
		renameat_enoent++;
	return r;
}

/*
 * fdatasync and sync_file_range are wrapped too (tests/local.mk): while
 * sync_failures is above 0, each call fails with EIO and counts it down,
 * as a disk that cannot write would.
 */
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __real_sync_file_range(int fd, off_t off, off_t n, unsigned int flags);
int __wrap_sync_file_range(int fd, off_t off, off_t n, unsigned int flags);
static unsigned sync_failures;

/* Also: fdatasync calls counted, flush_failures for fdatasync alone, every
 * sync_file_range of descriptor range_fail_fd failing. */
static unsigned fdatasync_calls, flush_failures;
static int range_fail_fd = -1;

int __wrap_fdatasync(int fd)
{
	fdatasync_calls++;
	if (sync_failures > 0 || flush_failures > 0) {
		if (flush_failures > 0)
			flush_failures--;
		else
			sync_failures--;
		errno = EIO;
		return -1;
	}
	return __real_fdatasync(fd);
}

int __wrap_sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
	if (fd == range_fail_fd) {
		errno = EIO;
		return -1;
	}
	if (sync_failures > 0) {
		sync_failures--;
		errno = EIO;
		return -1;
	}
	return __real_sync_file_range(fd, off, n, flags);
}

struct fixture {
	const char *backend;
	char top[64];  /* mkdtemp'ed */
	char dir[128]; /* the queue directory inside it */
	struct qstore *qs;
	char err[512];
};

/*
 * Prestates: "spool" (new messages in slots), "files" (the spool with
 * ZFARM_SPOOL_SLOTS=0: new messages the tmp/ + msg/XX way, which is also
 * how older versions left them) and "ram".
 */
#define IS_SPOOL(f) (strcmp((f)->backend, "ram") != 0)
#define IS_FILES(f) (strcmp((f)->backend, "files") == 0)

/* open_store - a qstore of the fixture's kind on dir. */
static struct qstore *open_store(const char *kind, const char *dir, char *err, size_t errlen)
{
	struct qstore *qs;

	if (strcmp(kind, "files") != 0)
		return qstore_open(kind, dir, err, errlen);
	setenv("ZFARM_SPOOL_SLOTS", "0", 1);
	qs = qstore_open("spool", dir, err, errlen);
	unsetenv("ZFARM_SPOOL_SLOTS");
	return qs;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->backend = *state;
	snprintf(f->top, sizeof(f->top), "/tmp/test_qstore.XXXXXX");
	if (!mkdtemp(f->top))
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/q", f->top);
	f->qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	if (!f->qs) {
		fprintf(stderr, "open %s: %s\n", f->backend, f->err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	qstore_close(&f->qs);
	nftw(f->top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	qstore_ram_set_capacity(0);
	clock_set_fake(0, 0);
	free(f);
	return 0;
}

/* ---- helpers ---- */

static Zfarm__EnvRecipient test_rcpts[2] = {ZFARM__ENV_RECIPIENT__INIT, ZFARM__ENV_RECIPIENT__INIT};
static Zfarm__EnvRecipient *test_rcpt_ptrs[2] = {&test_rcpts[0], &test_rcpts[1]};

static Zfarm__Envelope test_envelope(void)
{
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;

	test_rcpts[0].address = "a@example.org";
	test_rcpts[1].address = "b@example.net";
	test_rcpts[1].orcpt = "rfc822;B@example.net";
	test_rcpts[1].notify = 6;
	env.client_addr = "192.0.2.7";
	env.helo = "mx.example.com";
	env.protocol = "ESMTPS";
	env.sender = "s@example.com";
	env.n_recipients = 2;
	env.recipients = test_rcpt_ptrs;
	env.size_declared = 12345;
	env.smtputf8 = 1;
	return env;
}

static uint8_t content_byte(size_t i)
{
	return (uint8_t)(i * 31 + i / 251);
}

/* append_pattern - len content bytes (content_byte) into w in chunks. */
static void append_pattern(struct fixture *f, struct qstore_writer *w, size_t len, size_t chunk)
{
	uint8_t buf[8192];
	int e = 0;

	assert_true(chunk <= sizeof(buf));
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;

		for (size_t i = 0; i < n; i++)
			buf[i] = content_byte(off + i);
		if (qstore_append(w, buf, n, &e, f->err, sizeof(f->err)) < 0)
			fail_msg("append: %s", f->err);
	}
	if (qstore_size(w) != len)
		fail_msg("size: got %llu, want %zu", (unsigned long long)qstore_size(w), len);
}

/* write_commit - len content bytes into w in chunks, then commit (ID in qid). */
static void write_commit(struct fixture *f, struct qstore_writer *w, size_t len, size_t chunk,
			 char qid[QID_SIZE])
{
	int e = 0;

	append_pattern(f, w, len, chunk);
	if (qstore_commit(&w, qid, &e, f->err, sizeof(f->err)) < 0)
		fail_msg("commit: %s", f->err);
	assert_null(w);
	assert_true(qid_valid(qid));
}

/* commit_msg - create, append len pattern bytes in chunks, commit. */
static void commit_msg(struct fixture *f, size_t len, size_t chunk, char qid[QID_SIZE])
{
	Zfarm__Envelope env = test_envelope();
	struct qstore_writer *w;
	int e = 0;

	w = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
	if (!w)
		fail_msg("create: %s", f->err);
	write_commit(f, w, len, chunk, qid);
}

struct id_list {
	char ids[64][QID_SIZE];
	int n;
	int stop_after; /* 0: never */
	int bad;
};

static int collect_fn(const char *qid, void *arg)
{
	struct id_list *l = arg;

	if (l->n < 64)
		memcpy(l->ids[l->n], qid, QID_SIZE);
	l->n++;
	return l->stop_after && l->n >= l->stop_after ? 7 : 0;
}

static void bad_fn(const char *name, void *arg)
{
	struct id_list *l = arg;

	(void)name;
	l->bad++;
}

static int scan_count(struct fixture *f)
{
	struct id_list l = {.n = 0};

	if (qstore_scan(f->qs, collect_fn, bad_fn, &l, f->err, sizeof(f->err)) != 0)
		fail_msg("scan: %s", f->err);
	return l.n;
}

static int dir_count(struct fixture *f, const char *sub)
{
	char path[256];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", f->dir, sub);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* spool_file - qid's file under top ("msg": where it lives, a slot or msg/XX/ID). */
static void spool_file(struct fixture *f, char *out, size_t outlen, const char *top,
		       const char *qid)
{
	if (qid_is_slot(qid) && strcmp(top, "msg") == 0)
		snprintf(out, outlen, "%s/slot/%.3s/%.2s", f->dir, qid + QID_LEN - 5,
			 qid + QID_LEN - 2);
	else
		snprintf(out, outlen, "%s/%s/%s/%s", f->dir, top, qid + QID_LEN - 2, qid);
}

/* plant - write bytes to dir/rel, creating its parent directory. */
static void plant(struct fixture *f, const char *rel, const void *data, size_t len)
{
	char path[256], parent[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
	snprintf(parent, sizeof(parent), "%s", path);
	*strrchr(parent, '/') = '\0';
	mkdir(parent, 0700);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* plant_msg - plant a message file: spool header (M = len), then bytes. */
static void plant_msg(struct fixture *f, const char *rel, const void *data, size_t len)
{
	uint8_t *buf = calloc(1, 16 + len + 1);

	memcpy(buf, "ZSP1", 4);
	for (int i = 0; i < 8; i++)
		buf[8 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	memcpy(buf + 16, data, len);
	plant(f, rel, buf, 16 + len);
	free(buf);
}

/* ctl_tear - cut the last cut bytes off qid's control record. */
static void ctl_tear(struct fixture *f, const char *qid, size_t cut)
{
	char path[256];
	struct stat st;

	if (!IS_SPOOL(f)) {
		assert_int_equal(qstore_ram_ctl_truncate(qid, cut), 0);
		return;
	}
	spool_file(f, path, sizeof(path), "msg", qid);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - (off_t)cut), 0);
}

/* ctl_raw - append raw bytes to qid's control record. */
static void ctl_raw(struct fixture *f, const char *qid, const void *data, size_t len)
{
	char path[256];
	int fd;

	if (!IS_SPOOL(f)) {
		assert_int_equal(qstore_ram_ctl_raw(qid, data, len), 0);
		return;
	}
	spool_file(f, path, sizeof(path), "msg", qid);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void read_all(struct fixture *f, struct qstore_reader *r, size_t chunk, uint8_t *out,
		     size_t cap, size_t *got)
{
	ssize_t n;

	*got = 0;
	while ((n = qstore_content(r, out + *got, cap - *got < chunk ? cap - *got : chunk, f->err,
				   sizeof(f->err))) > 0)
		*got += (size_t)n;
	if (n < 0)
		fail_msg("content: %s", f->err);
}

/* The two control records most tests append. */
static Zfarm__RouteRecord test_route = ZFARM__ROUTE_RECORD__INIT;
static Zfarm__ResultRecord test_result = ZFARM__RESULT_RECORD__INIT;
static Zfarm__CtlRecord test_ctl[3] = {ZFARM__CTL_RECORD__INIT, ZFARM__CTL_RECORD__INIT,
				       ZFARM__CTL_RECORD__INIT};

static void test_records(Zfarm__CtlRecord *recs[3])
{
	test_route.index = 0;
	test_route.orig_address = "a@example.org";
	test_route.address = "alias@example.org";
	test_route.channel = "smtp";
	test_route.nexthop = "mx.example.org";
	test_result.index = 0;
	test_result.status = 2;
	test_result.enhanced_code = "4.2.2";
	test_result.smtp_code = 452;
	test_result.text = "mailbox full";
	test_result.next_attempt_us = 1800000000;
	test_ctl[0].body_case = ZFARM__CTL_RECORD__BODY_ROUTE;
	test_ctl[0].route = &test_route;
	test_ctl[1].body_case = ZFARM__CTL_RECORD__BODY_ROUTED;
	test_ctl[1].routed = 1;
	test_ctl[2].body_case = ZFARM__CTL_RECORD__BODY_RESULT;
	test_ctl[2].result = &test_result;
	for (int i = 0; i < 3; i++)
		recs[i] = &test_ctl[i];
}

static size_t ctl_load_n(struct fixture *f, const char *qid)
{
	Zfarm__CtlRecord **recs;
	size_t n;

	if (qstore_ctl_load(f->qs, qid, &recs, &n, f->err, sizeof(f->err)) < 0)
		fail_msg("ctl_load: %s", f->err);
	qstore_ctl_free(&recs, n);
	return n;
}

/* read_check_id - qid reads, and its envelope's queue ID and arrival time are want's. */
static void read_check_id(struct fixture *f, const char *qid, const char *want)
{
	struct qstore_reader *r;
	int e = 0;

	r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
	if (!r)
		fail_msg("read %s: %s", qid, f->err);
	assert_string_equal(qstore_envelope(r)->queue_id, want);
	assert_int_equal(qstore_envelope(r)->arrival_us, (int64_t)qid_time_us(want));
	qstore_reader_free(&r);
}

/* ---- both backends ---- */

static void test_roundtrip(void **state)
{
	static const size_t read_chunks[] = {1, 100, 4096, 65536, 300000};
	struct fixture *f = *state;
	const Zfarm__Envelope *env;
	struct qstore_reader *r;
	char qid[QID_SIZE];
	size_t len = 100000, got;
	uint8_t *buf = malloc(len + 1);
	int e = 0;

	commit_msg(f, len, 4093, qid);
	r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
	if (!r)
		fail_msg("read %s: %s", qid, f->err);
	env = qstore_envelope(r);
	assert_string_equal(env->queue_id, qid);
	assert_int_equal(env->arrival_us, (int64_t)qid_time_us(qid));
	assert_string_equal(env->sender, "s@example.com");
	assert_string_equal(env->helo, "mx.example.com");
	assert_int_equal(env->n_recipients, 2);
	assert_string_equal(env->recipients[1]->address, "b@example.net");
	assert_string_equal(env->recipients[1]->orcpt, "rfc822;B@example.net");
	assert_int_equal(env->recipients[1]->notify, 6);
	assert_int_equal(env->size_declared, 12345);
	assert_true(env->smtputf8);
	for (size_t i = 0; i < sizeof(read_chunks) / sizeof(read_chunks[0]); i++) {
		assert_int_equal(qstore_rewind(r), 0);
		read_all(f, r, read_chunks[i], buf, len + 1, &got);
		if (got != len)
			fail_msg("chunk %zu: got %zu bytes, want %zu", read_chunks[i], got, len);
		for (size_t j = 0; j < len; j++)
			if (buf[j] != content_byte(j))
				fail_msg("chunk %zu: byte %zu got %u, want %u", read_chunks[i], j,
					 buf[j], content_byte(j));
	}
	qstore_reader_free(&r);
	assert_null(r);
	qstore_reader_free(&r);
	free(buf);
}

static void test_empty_content(void **state)
{
	struct fixture *f = *state;
	struct qstore_reader *r;
	char qid[QID_SIZE], buf[16];
	int e = 0;

	commit_msg(f, 0, 1, qid);
	r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
	assert_non_null(r);
	assert_int_equal(qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err)), 0);
	qstore_reader_free(&r);
}

static void test_read_errors(void **state)
{
	struct fixture *f = *state;
	char qid[QID_SIZE];
	int e = 0;

	assert_null(qstore_read(f->qs, "not-an-id", &e, f->err, sizeof(f->err)));
	assert_int_equal(e, EINVAL);
	assert_null(qstore_read(f->qs, "../../etc/passwd", &e, f->err, sizeof(f->err)));
	qid_format(qid, 12345, 1);
	assert_null(qstore_read(f->qs, qid, &e, f->err, sizeof(f->err)));
	assert_int_equal(e, ENOENT);
}

static void test_ctl_roundtrip(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3], **out;
	char qid[QID_SIZE];
	size_t n = 99;

	test_records(in);
	commit_msg(f, 10, 10, qid);
	assert_int_equal(qstore_ctl_load(f->qs, qid, &out, &n, f->err, sizeof(f->err)), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 2, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in + 2, 1, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 0, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_ctl_load(f->qs, qid, &out, &n, f->err, sizeof(f->err)), 0);
	assert_int_equal(n, 3);
	assert_int_equal(out[0]->body_case, ZFARM__CTL_RECORD__BODY_ROUTE);
	assert_string_equal(out[0]->route->address, "alias@example.org");
	assert_string_equal(out[0]->route->channel, "smtp");
	assert_int_equal(out[1]->body_case, ZFARM__CTL_RECORD__BODY_ROUTED);
	assert_true(out[1]->routed);
	assert_int_equal(out[2]->body_case, ZFARM__CTL_RECORD__BODY_RESULT);
	assert_string_equal(out[2]->result->enhanced_code, "4.2.2");
	assert_int_equal(out[2]->result->smtp_code, 452);
	assert_int_equal(out[2]->result->next_attempt_us, 1800000000);
	qstore_ctl_free(&out, n);
	assert_null(out);
}

/*
 * The router's and the scheduler's way in: one reader for the envelope,
 * the control records and (QSTORE_APPEND) the appends, for messages from
 * tiny to past the spool's first read, with the end of that read falling
 * anywhere in the header, the content and the records.
 */
static void test_reader_ctl(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3], **out;
	size_t sizes[64], nsizes = 0;
	uint8_t *buf = malloc(100000 + 1);

	test_records(in);
	sizes[nsizes++] = 0;
	sizes[nsizes++] = 10;
	for (size_t len = 16384 - 400; len < 16384 + 60; len += 13)
		sizes[nsizes++] = len;
	sizes[nsizes++] = 100000;
	assert_true(nsizes <= sizeof(sizes) / sizeof(sizes[0]));
	for (size_t i = 0; i < nsizes; i++) {
		struct qstore_reader *r;
		char qid[QID_SIZE];
		size_t n = 99, got;
		int e = 0;

		commit_msg(f, sizes[i], 4096, qid);
		/* No records yet. */
		r = qstore_read_flags(f->qs, qid, QSTORE_APPEND, &e, f->err, sizeof(f->err));
		if (!r)
			fail_msg("size %zu: read: %s", sizes[i], f->err);
		assert_int_equal(qstore_reader_ctl_load(r, &out, &n, f->err, sizeof(f->err)), 0);
		assert_int_equal(n, 0);
		assert_null(out);
		qstore_reader_free(&r);
		/* Two records by ID, a third through the reader. */
		assert_int_equal(qstore_ctl_append_lazy(f->qs, qid, in, 2, f->err, sizeof(f->err)),
				 0);
		r = qstore_read_flags(f->qs, qid, QSTORE_APPEND, &e, f->err, sizeof(f->err));
		if (!r)
			fail_msg("size %zu: read: %s", sizes[i], f->err);
		assert_string_equal(qstore_envelope(r)->sender, "s@example.com");
		assert_int_equal(qstore_reader_ctl_load(r, &out, &n, f->err, sizeof(f->err)), 0);
		if (n != 2)
			fail_msg("size %zu: got %zu records, want 2", sizes[i], n);
		assert_string_equal(out[0]->route->address, "alias@example.org");
		assert_true(out[1]->routed);
		qstore_ctl_free(&out, n);
		assert_int_equal(
		    qstore_reader_ctl_append_lazy(r, in + 2, 1, f->err, sizeof(f->err)), 0);
		assert_int_equal(qstore_reader_ctl_append_lazy(r, in, 0, f->err, sizeof(f->err)),
				 0);
		assert_int_equal(qstore_reader_ctl_load(r, &out, &n, f->err, sizeof(f->err)), 0);
		if (n != 3)
			fail_msg("size %zu: after the append got %zu records, want 3", sizes[i], n);
		assert_string_equal(out[2]->result->text, "mailbox full");
		qstore_ctl_free(&out, n);
		/* The content ends where the records start. */
		read_all(f, r, 8192, buf, 100000 + 1, &got);
		if (got != sizes[i])
			fail_msg("size %zu: got %zu content bytes", sizes[i], got);
		for (size_t j = 0; j < got; j++)
			if (buf[j] != content_byte(j))
				fail_msg("size %zu: byte %zu got %u, want %u", sizes[i], j, buf[j],
					 content_byte(j));
		qstore_reader_free(&r);
		assert_int_equal(ctl_load_n(f, qid), 3);
		/* Without QSTORE_APPEND a reader does not append. */
		r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
		assert_non_null(r);
		f->err[0] = '\0';
		assert_int_equal(qstore_reader_ctl_append_lazy(r, in, 1, f->err, sizeof(f->err)),
				 -1);
		assert_true(f->err[0] != '\0');
		qstore_reader_free(&r);
		assert_int_equal(ctl_load_n(f, qid), 3);
		assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
	}
	free(buf);
}

/* A torn last record (any prefix of it) is ignored; earlier ones stay. */
static void test_ctl_torn(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	size_t last, first;

	test_records(in);
	first = 4 + zfarm__ctl_record__get_packed_size(in[0]);
	last = 4 + zfarm__ctl_record__get_packed_size(in[2]);
	const struct {
		size_t cut;
		size_t zeros; /* zero bytes appended after the cut */
		size_t want;
	} rows[] = {
	    {0, 0, 2},	      {1, 0, 1},    {3, 0, 1},	      {last - 4, 0, 1},
	    {last - 2, 0, 1}, {last, 0, 1}, {last + 1, 0, 0}, {last + first, 0, 0},
	    {0, 8, 2},	      {3, 3, 1}, /* crash left a zero-filled tail */
	    {0, 0xff, 2},		 /* a complete last record that does not decode */
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		static const uint8_t zeros[16];
		char qid[QID_SIZE];
		Zfarm__CtlRecord *two[2] = {in[0], in[2]};
		size_t got;

		commit_msg(f, 10, 10, qid);
		assert_int_equal(qstore_ctl_append_lazy(f->qs, qid, two, 2, f->err, sizeof(f->err)), 0);
		if (rows[i].cut)
			ctl_tear(f, qid, rows[i].cut);
		if (rows[i].zeros == 0xff)
			ctl_raw(f, qid, "\0\0\0\2\xff\xff", 6);
		else if (rows[i].zeros)
			ctl_raw(f, qid, zeros, rows[i].zeros);
		got = ctl_load_n(f, qid);
		if (got != rows[i].want)
			fail_msg("row %zu (cut %zu): got %zu records, want %zu", i, rows[i].cut,
				 got, rows[i].want);
		/*
		 * The reinjector's repair at start cuts the tail, so the next
		 * append is not hidden behind it.
		 */
		{
			int rc = qstore_ctl_repair(f->qs, qid, f->err, sizeof(f->err));

			if (rc < 0 || (i == 0 && rc != 0))
				fail_msg("row %zu: repair got %d (%s)", i, rc, f->err);
		}
		assert_int_equal(
		    qstore_ctl_append(f->qs, qid, in + 1, 1, f->err, sizeof(f->err)), 0);
		got = ctl_load_n(f, qid);
		if (got != rows[i].want + 1)
			fail_msg("row %zu (cut %zu) after an append: got %zu records, want %zu",
				 i, rows[i].cut, got, rows[i].want + 1);
	}
}

/* A damaged record that is not a torn tail is an error. */
static void test_ctl_bad(void **state)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t len;
		int good_after; /* a good record follows */
	} rows[] = {
	    {"garbage in the middle", "\0\0\0\3\xff\xff\xff", 7, 1},
	    {"length over 1 MiB in the middle", "\0\x20\0\0\x08\x01", 6, 1},
	    {"length over 1 MiB at the end", "\x7f\xff\xff\xff", 4, 0},
	};
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3], **out;

	test_records(in);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char qid[QID_SIZE];
		size_t n = 99;

		commit_msg(f, 10, 10, qid);
		assert_int_equal(qstore_ctl_append(f->qs, qid, in, 1, f->err, sizeof(f->err)), 0);
		ctl_raw(f, qid, rows[i].bytes, rows[i].len);
		if (rows[i].good_after) {
			/* Raw: an append would cut a bad last record as a crash's tail. */
			uint8_t *good;
			size_t glen;

			assert_int_equal(qstore_ctl_pack(in + 1, 1, &good, &glen, f->err,
							 sizeof(f->err)),
					 0);
			ctl_raw(f, qid, good, glen);
			free(good);
		}
		f->err[0] = '\0';
		if (qstore_ctl_load(f->qs, qid, &out, &n, f->err, sizeof(f->err)) != -1)
			fail_msg("%s: got success with %zu records, want an error", rows[i].what,
				 n);
		assert_true(f->err[0] != '\0');
		assert_null(out);
	}
}

static void test_remove(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	struct qstore_reader *r;
	char qid[QID_SIZE], buf[64];
	size_t got;
	int e = 0;

	test_records(in);
	commit_msg(f, 50, 7, qid);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 3, f->err, sizeof(f->err)), 0);
	/*
	 * A reader opened before the remove: ram keeps its message like an fd;
	 * the files way parks the file with its bytes, so the reader still
	 * reads them, until the file is reused for another message: then the
	 * reader gets an error, never the other message's bytes.  A slot is
	 * free at once: the reader gets the error at the end.
	 */
	r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
	assert_non_null(r);
	assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
	if (IS_SPOOL(f) && !IS_FILES(f)) {
		ssize_t n;

		do
			n = qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err));
		while (n > 0);
		if (n != -1 || errno != ESTALE)
			fail_msg("a reader of a removed slot: got %zd, want -1 (ESTALE)", n);
	} else {
		read_all(f, r, 64, (uint8_t *)buf, sizeof(buf), &got);
		assert_int_equal(got, 50);
	}
	if (IS_FILES(f)) {
		char other[QID_SIZE];
		ssize_t n;

		assert_int_equal(qstore_rewind(r), 0);
		commit_msg(f, 50, 7, other); /* takes the parked inode */
		do
			n = qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err));
		while (n > 0);
		if (n != -1)
			fail_msg("a reader of a removed, reused file: got %zd, want -1", n);
		assert_int_equal(qstore_remove(f->qs, other, f->err, sizeof(f->err)), 0);
	}
	qstore_reader_free(&r);
	assert_null(qstore_read(f->qs, qid, &e, f->err, sizeof(f->err)));
	assert_int_equal(e, ENOENT);
	assert_int_equal(ctl_load_n(f, qid), 0);
	assert_int_equal(scan_count(f), 0);
	assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), -1);
	assert_int_equal(errno, ENOENT);
	if (IS_SPOOL(f)) {
		char path[256];

		/* The files way: no name left; a slot stays, its header free. */
		spool_file(f, path, sizeof(path), "msg", qid);
		if (IS_FILES(f)) {
			assert_int_equal(access(path, F_OK), -1);
		} else {
			uint8_t hdr[16];
			int fd = open(path, O_RDONLY);

			assert_true(fd >= 0);
			assert_int_equal(read(fd, hdr, sizeof(hdr)), sizeof(hdr));
			assert_memory_equal(hdr, "ZSL0", 4);
			close(fd);
		}
		snprintf(path, sizeof(path), "%s/ctl", f->dir);
		assert_int_equal(access(path, F_OK), -1);
	}
}

static void test_quarantine(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	char qid[QID_SIZE], other[QID_SIZE];
	int e = 0;

	test_records(in);
	commit_msg(f, 50, 50, qid);
	commit_msg(f, 50, 50, other);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 1, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_quarantine(f->qs, qid, f->err, sizeof(f->err)), 0);
	assert_null(qstore_read(f->qs, qid, &e, f->err, sizeof(f->err)));
	assert_int_equal(e, ENOENT);
	assert_int_equal(ctl_load_n(f, qid), 0);
	assert_int_equal(scan_count(f), 1);
	assert_int_equal(qstore_quarantine(f->qs, qid, f->err, sizeof(f->err)), -1);
	if (IS_SPOOL(f)) {
		char path[256];

		struct stat st;

		/* One file: the control record went along inside it. */
		snprintf(path, sizeof(path), "%s/corrupt/%s", f->dir, qid);
		assert_int_equal(stat(path, &st), 0);
		assert_true(st.st_size > 16 + 50);
		snprintf(path, sizeof(path), "%s/corrupt/%s.ctl", f->dir, qid);
		assert_int_equal(access(path, F_OK), -1);
	}
}

static void test_scan_order(void **state)
{
	struct fixture *f = *state;
	struct id_list l = {.n = 0};
	char qids[5][QID_SIZE];

	for (int i = 0; i < 5; i++)
		commit_msg(f, 10, 10, qids[i]);
	assert_int_equal(qstore_scan(f->qs, collect_fn, NULL, &l, f->err, sizeof(f->err)), 0);
	assert_int_equal(l.n, 5);
	for (int i = 0; i < 5; i++) {
		assert_string_equal(l.ids[i], qids[i]);
		if (i)
			assert_true(strcmp(l.ids[i - 1], l.ids[i]) < 0);
	}
	/* A non-zero return stops the scan and is returned. */
	memset(&l, 0, sizeof(l));
	l.stop_after = 2;
	assert_int_equal(qstore_scan(f->qs, collect_fn, NULL, &l, f->err, sizeof(f->err)), 7);
	assert_int_equal(l.n, 2);
}

static void test_sweep(void **state)
{
	struct fixture *f = *state;
	Zfarm__Envelope env = test_envelope();
	struct qstore_writer *w;
	char qid[QID_SIZE], kept[QID_SIZE];
	int e = 0, want = 1;

	commit_msg(f, 10, 10, kept);
	w = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
	assert_non_null(w);
	assert_int_equal(qstore_append(w, "hello", 5, &e, f->err, sizeof(f->err)), 0);
	if (IS_SPOOL(f)) {
		plant(f, "tmp/leftover.1", "x", 1);
		plant(f, "tmp/0000000000000000", "ZFQ1", 4);
		want = IS_FILES(f) ? 3 : 2;
	}
	assert_int_equal(qstore_sweep(f->qs, f->err, sizeof(f->err)), want);
	if (IS_SPOOL(f)) {
		assert_int_equal(dir_count(f, "tmp"), 0);
		assert_int_equal(dir_count(f, "free"), want); /* recycled, not freed */
	}
	if (IS_SPOOL(f) && !IS_FILES(f)) {
		/*
		 * A slot being received is free by its header: nothing to sweep
		 * (a crashed writer's slot is reused by the range's next holder).
		 */
		assert_int_equal(qstore_commit(&w, qid, &e, f->err, sizeof(f->err)), 0);
		assert_int_equal(scan_count(f), 2);
		return;
	}
	/* The swept message cannot be committed any more. */
	assert_int_equal(qstore_commit(&w, qid, &e, f->err, sizeof(f->err)), -1);
	assert_null(w);
	assert_int_equal(qstore_sweep(f->qs, f->err, sizeof(f->err)), 0);
	assert_int_equal(scan_count(f), 1);
}

static void test_abort(void **state)
{
	struct fixture *f = *state;
	Zfarm__Envelope env = test_envelope();
	struct qstore_writer *w;
	int e = 0;

	w = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
	assert_non_null(w);
	assert_int_equal(qstore_append(w, "hello", 5, &e, f->err, sizeof(f->err)), 0);
	qstore_abort(&w);
	assert_null(w);
	qstore_abort(&w);
	qstore_abort(NULL);
	assert_int_equal(scan_count(f), 0);
	assert_int_equal(qstore_sweep(f->qs, f->err, sizeof(f->err)), 0);
	if (IS_SPOOL(f))
		assert_int_equal(dir_count(f, "tmp"), 0);
}

static void test_free_bytes(void **state)
{
	struct fixture *f = *state;

	if (IS_SPOOL(f)) {
		assert_true(qstore_free_bytes(f->qs) > 0);
		return;
	}
	assert_int_equal(qstore_free_bytes(f->qs), -1);
	qstore_ram_set_capacity(10000);
	assert_int_equal(qstore_free_bytes(f->qs), 10000);
}

static void test_envelope_too_large(void **state)
{
	struct fixture *f = *state;
	Zfarm__Envelope env = test_envelope();
	size_t big = 1024 * 1024 + 1;
	char *s = malloc(big + 1);
	int e = 0;

	memset(s, 'a', big);
	s[big] = '\0';
	env.helo = s;
	assert_null(qstore_create(f->qs, &env, &e, f->err, sizeof(f->err)));
	assert_int_equal(e, EMSGSIZE);
	assert_int_equal(scan_count(f), 0);
	if (IS_SPOOL(f))
		assert_int_equal(dir_count(f, "tmp"), 0);
	free(s);
}

/* ---- full disk ---- */

/* nothing_visible - after a failed commit: no message, no tmp file. */
static int nothing_visible(struct fixture *f)
{
	struct id_list l = {.n = 0};

	if (qstore_scan(f->qs, collect_fn, NULL, &l, f->err, sizeof(f->err)) != 0 || l.n != 0)
		return 0;
	return !IS_SPOOL(f) || dir_count(f, "tmp") == 0;
}

static void test_ram_enospc(void **state)
{
	struct fixture *f = *state;
	Zfarm__Envelope env = test_envelope();
	Zfarm__CtlRecord *in[3];
	struct qstore_writer *w;
	char qid[QID_SIZE], big[5000];
	int e = 0;

	test_records(in);
	memset(big, 'x', sizeof(big));
	qstore_ram_set_capacity(4096);
	w = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
	assert_non_null(w);
	assert_int_equal(qstore_append(w, big, 1000, &e, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_append(w, big, sizeof(big), &e, f->err, sizeof(f->err)), -1);
	assert_int_equal(e, ENOSPC);
	/* Its space is given back at once, before the caller gives up. */
	assert_int_equal(qstore_free_bytes(f->qs), 4096);
	e = 0;
	assert_int_equal(qstore_commit(&w, qid, &e, f->err, sizeof(f->err)), -1);
	assert_true(e != 0);
	assert_true(nothing_visible(f));

	/* A control record that does not fit leaves the earlier ones. */
	commit_msg(f, 3000, 1000, qid);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 1, f->err, sizeof(f->err)), 0);
	test_route.error = big; /* not NUL-terminated: make it so */
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 1, f->err, sizeof(f->err)), -1);
	test_route.error = (char *)"";
	assert_int_equal(ctl_load_n(f, qid), 1);
}

/*
 * Spool: a file size limit makes write() fail (EFBIG with SIGXFSZ
 * ignored), the same path as ENOSPC.  In a child: the limit is per process.
 */
static void test_spool_efbig(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	char kept[QID_SIZE];
	pid_t pid;
	int status;

	test_records(in);
	commit_msg(f, 10, 10, kept);
	assert_int_equal(qstore_ctl_append(f->qs, kept, in, 1, f->err, sizeof(f->err)), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		Zfarm__Envelope env = test_envelope();
		struct rlimit rl = {64 * 1024, 64 * 1024};
		static char chunk[8192], big[100000];
		struct qstore_writer *w;
		char qid[QID_SIZE];
		int e = 0, rc = 0;

		signal(SIGXFSZ, SIG_IGN);
		getrlimit(RLIMIT_FSIZE, &rl);
		rl.rlim_cur = 64 * 1024;
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(10);
		w = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
		if (!w)
			_exit(11);
		for (int i = 0; i < 32 && rc == 0; i++)
			rc = qstore_append(w, chunk, sizeof(chunk), &e, f->err, sizeof(f->err));
		if (rc != -1 || e != EFBIG)
			_exit(12);
		if (qstore_commit(&w, qid, &e, f->err, sizeof(f->err)) != -1)
			_exit(13);
		if (scan_count(f) != 1 || dir_count(f, "tmp") != 0)
			_exit(14);
		/* ctl: an append over the limit is cut back, not left torn. */
		memset(big, 'y', sizeof(big) - 1);
		test_route.error = big;
		if (qstore_ctl_append(f->qs, kept, in, 1, f->err, sizeof(f->err)) != -1)
			_exit(15);
		if (ctl_load_n(f, kept) != 1)
			_exit(16);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("child: got exit %d, want 0", WEXITSTATUS(status));
	assert_int_equal(ctl_load_n(f, kept), 1);
}

/*
 * in_tmpfs - run body in a child, on a spool queue in a fresh tmpfs of the
 * given size mounted in a private mount namespace (root only: skipped
 * otherwise).  body returns 0 or an exit code naming what failed.
 */
static void in_tmpfs(struct fixture *f, const char *size, int (*body)(struct fixture *sub))
{
	char mnt[96], opts[32];
	pid_t pid;
	int status;

	if (geteuid() != 0)
		skip();
	snprintf(mnt, sizeof(mnt), "%s/tmpfs", f->top);
	snprintf(opts, sizeof(opts), "size=%s", size);
	assert_int_equal(mkdir(mnt, 0700), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct fixture sub = {.backend = f->backend};
		int rc;

		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", mnt, "tmpfs", 0, opts) < 0)
			_exit(77);
		snprintf(sub.dir, sizeof(sub.dir), "%s/q", mnt);
		sub.qs = open_store(f->backend, sub.dir, sub.err, sizeof(sub.err));
		if (!sub.qs)
			_exit(20);
		rc = body(&sub);
		qstore_close(&sub.qs);
		_exit(rc);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	if (WEXITSTATUS(status) != 0)
		fail_msg("child: got exit %d, want 0", WEXITSTATUS(status));
}

/* Spool on a real full file system: a 64k tmpfs. */
static int enospc_body(struct fixture *sub)
{
	Zfarm__Envelope env = test_envelope();
	static char chunk[8192];
	struct qstore_writer *w;
	char qid[QID_SIZE];
	int e = 0, rc = 0;

	w = qstore_create(sub->qs, &env, &e, sub->err, sizeof(sub->err));
	if (!w)
		return 21;
	for (int i = 0; i < 32 && rc == 0; i++)
		rc = qstore_append(w, chunk, sizeof(chunk), &e, sub->err, sizeof(sub->err));
	if (rc != -1 || e != ENOSPC)
		return 22;
	if (qstore_commit(&w, qid, &e, sub->err, sizeof(sub->err)) != -1)
		return 23;
	if (!nothing_visible(sub))
		return 24;
	/* The space is back: a small message fits now. */
	commit_msg(sub, 100, 100, qid);
	return 0;
}

static void test_spool_enospc_tmpfs(void **state)
{
	in_tmpfs(*state, "64k", enospc_body);
}

/* ---- spool only ---- */

/*
 * Collisions: with the clock fixed, the ID the next message takes is
 * known; plant files under k consecutive IDs.  Fewer than the retry limit
 * (8): the message gets the first free one.  Otherwise commit fails.
 */
static void test_spool_collision(void **state)
{
	static const struct {
		int planted;
		int ok;
	} rows[] = {{1, 1}, {3, 1}, {7, 1}, {8, 0}};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		Zfarm__Envelope env = test_envelope();
		struct qstore_writer *w;
		char qid[QID_SIZE], want[QID_SIZE], path[256];
		uint64_t t;
		int e = 0, rc;

		clock_set_fake(0, 0);
		qid_generate(qid);
		t = qid_time_us(qid) + 1000;
		for (int k = 0; k < rows[i].planted; k++) {
			qid_format(qid, t + (uint64_t)k, (uint32_t)getpid());
			snprintf(path, sizeof(path), "msg/%s/%s", qid + QID_LEN - 2, qid);
			plant(f, path, "planted", 7);
		}
		qid_format(want, t + (uint64_t)rows[i].planted, (uint32_t)getpid());
		clock_set_fake(t, 1);
		w = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
		assert_non_null(w);
		assert_int_equal(qstore_append(w, "body", 4, &e, f->err, sizeof(f->err)), 0);
		rc = qstore_commit(&w, qid, &e, f->err, sizeof(f->err));
		clock_set_fake(0, 0);
		assert_int_equal(dir_count(f, "tmp"), 0);
		if (!rows[i].ok) {
			if (rc != -1 || e != EEXIST)
				fail_msg("row %zu: got rc %d errnum %d, want -1 EEXIST", i, rc, e);
			continue;
		}
		if (rc != 0)
			fail_msg("row %zu: commit: %s", i, f->err);
		if (strcmp(qid, want) != 0)
			fail_msg("row %zu: got ID %s, want %s", i, qid, want);
		/* The file name wins over the ID first written in the envelope. */
		read_check_id(f, qid, want);
	}
}

/* Crash before the link: the tmp/ file is invisible to scan and read. */
static void test_spool_crash_tmp(void **state)
{
	struct fixture *f = *state;
	Zfarm__Envelope env = test_envelope();
	struct qstore_writer *w;
	char qid[QID_SIZE], rel[64];
	int e = 0;

	w = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
	assert_non_null(w);
	assert_int_equal(qstore_append(w, "hello", 5, &e, f->err, sizeof(f->err)), 0);
	/* Even a tmp file named like an ID is not a message. */
	qid_format(qid, 777, 1);
	snprintf(rel, sizeof(rel), "tmp/%s", qid);
	plant(f, rel, "ZFQ1\0\0\0\0body", 12);
	assert_int_equal(dir_count(f, "tmp"), 2);
	assert_int_equal(scan_count(f), 0);
	assert_null(qstore_read(f->qs, qid, &e, f->err, sizeof(f->err)));
	assert_int_equal(e, ENOENT);
	qstore_abort(&w);
	assert_int_equal(qstore_sweep(f->qs, f->err, sizeof(f->err)), 1);
}

/* Crash after the link, before the tmp unlink: message intact, twin swept. */
static void test_spool_crash_after_link(void **state)
{
	struct fixture *f = *state;
	struct qstore_reader *r;
	char qid[QID_SIZE], path[256], twin[256];
	uint8_t buf[256];
	size_t got;
	int e = 0;

	commit_msg(f, 100, 100, qid);
	spool_file(f, path, sizeof(path), "msg", qid);
	snprintf(twin, sizeof(twin), "%s/tmp/1234.5.6", f->dir);
	assert_int_equal(link(path, twin), 0);
	assert_int_equal(scan_count(f), 1);
	assert_int_equal(qstore_sweep(f->qs, f->err, sizeof(f->err)), 1);
	/* The twin shares the message's inode: unlinked, never emptied into free/. */
	assert_int_equal(dir_count(f, "free"), 0);
	r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
	assert_non_null(r);
	read_all(f, r, 64, buf, sizeof(buf), &got);
	assert_int_equal(got, 100);
	qstore_reader_free(&r);
}

/* Scan sorts across XX directories and reports foreign names. */
static void test_spool_scan_foreign(void **state)
{
	static const struct {
		uint64_t us;
		uint32_t pid;
	} rows[] = {{3000, 17}, {1000, 99}, {2000, 5}, {1500, 1023}, {1000, 98}};
	struct fixture *f = *state;
	struct id_list l = {.n = 0};
	char qid[QID_SIZE], path[256], misplaced[QID_SIZE];
	const char *good = "ZSP1\0\0\0\0\0\0\0\0\0\0\0\x0cZFQ1\0\0\0\0body";

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char rel[64];

		qid_format(qid, rows[i].us, rows[i].pid);
		snprintf(rel, sizeof(rel), "msg/%s/%s", qid + QID_LEN - 2, qid);
		plant(f, rel, good, 28);
	}
	plant(f, "msg/junk", "x", 1);
	plant(f, "msg/AB/not-an-id", "x", 1);
	qid_format(misplaced, 4000, 1);
	snprintf(path, sizeof(path), "msg/ZZ/%s", misplaced);
	plant(f, path, good, 28);
	plant(f, "free/0000000000000000", "", 0); /* free/ and tmp/ are not messages */
	plant(f, "tmp/0000000000000001", good, 28);
	assert_int_equal(qstore_scan(f->qs, collect_fn, bad_fn, &l, f->err, sizeof(f->err)), 0);
	assert_int_equal(l.n, 5);
	assert_int_equal(l.bad, 3);
	for (int i = 1; i < l.n; i++)
		if (strcmp(l.ids[i - 1], l.ids[i]) >= 0)
			fail_msg("scan order: got %s before %s", l.ids[i - 1], l.ids[i]);
	qid_format(qid, 1000, 98);
	assert_string_equal(l.ids[0], qid);
	qid_format(qid, 3000, 17);
	assert_string_equal(l.ids[4], qid);
}

/* Corrupt message files are refused with EBADMSG, never crash the reader. */
static void test_spool_corrupt(void **state)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t len;
		int ok;
	} rows[] = {
	    {"empty file", "", 0, 0},
	    {"magic only", "ZFQ1", 4, 0},
	    {"wrong magic", "ZFQ2\0\0\0\0", 8, 0},
	    {"envelope over 1 MiB", "ZFQ1\0\x10\0\x01", 8, 0},
	    {"short envelope",
	     "ZFQ1\0\0\0\x10"
	     "abc",
	     11, 0},
	    {"undecodable envelope", "ZFQ1\0\0\0\2\xff\xff", 10, 0},
	    {"empty envelope", "ZFQ1\0\0\0\0body", 12, 1},
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct qstore_reader *r;
		char qid[QID_SIZE], rel[64], buf[16];
		int e = 0;

		qid_format(qid, 9000 + i, 3);
		snprintf(rel, sizeof(rel), "msg/%s/%s", qid + QID_LEN - 2, qid);
		plant_msg(f, rel, rows[i].bytes, rows[i].len);
		r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
		if (!rows[i].ok) {
			if (r || e != EBADMSG)
				fail_msg("%s: got %s errnum %d, want NULL EBADMSG", rows[i].what,
					 r ? "a reader" : "NULL", e);
			continue;
		}
		if (!r)
			fail_msg("%s: %s", rows[i].what, f->err);
		assert_string_equal(qstore_envelope(r)->queue_id, qid);
		assert_int_equal(qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err)), 4);
		assert_memory_equal(buf, "body", 4);
		qstore_reader_free(&r);
	}
}

/* ---- spool: one file per message, recycled inodes ---- */

static ino_t msg_ino(struct fixture *f, const char *qid)
{
	char path[256];
	struct stat st;

	spool_file(f, path, sizeof(path), "msg", qid);
	if (stat(path, &st) < 0)
		fail_msg("stat %s: %s", path, strerror(errno));
	return st.st_ino;
}

/* msg_files - regular files under msg/XX/ (the XX directories stay). */
static int msg_files(struct fixture *f)
{
	char path[256];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/msg", f->dir);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d))) {
		char sub[300];

		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "msg/%s", de->d_name);
		n += dir_count(f, sub) > 0 ? dir_count(f, sub) : 0;
	}
	closedir(d);
	return n;
}

/* free_sizes - the number of files in free/, and how many are not empty. */
static int free_nonempty(struct fixture *f)
{
	char path[256];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/free", f->dir);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d))) {
		char file[600];
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
		assert_int_equal(stat(file, &st), 0);
		if (st.st_size != 0)
			n++;
	}
	closedir(d);
	return n;
}

/*
 * How commit makes a name durable: a directory fsync per link when forced
 * (ZFARM_SPOOL_DIRSYNC, the fallback for unknown file systems), the
 * file's fsync alone on tmpfs (as on ext4 and xfs).  In both modes many
 * commits into one msg/XX (one process: one XX) grow the directory past
 * its first blocks and every message reads back.
 */
static void commit_many_check(struct fixture *f, int n)
{
	char (*qids)[QID_SIZE] = calloc((size_t)n, QID_SIZE);

	assert_non_null(qids);
	for (int i = 0; i < n; i++)
		commit_msg(f, 300, 300, qids[i]);
	for (int i = 0; i < n; i++) {
		struct qstore_reader *r;
		uint8_t buf[400];
		size_t got;
		int e = 0;

		r = qstore_read(f->qs, qids[i], &e, f->err, sizeof(f->err));
		if (!r)
			fail_msg("%s: %s", qids[i], f->err);
		read_all(f, r, 512, buf, sizeof(buf), &got);
		assert_int_equal(got, 300);
		qstore_reader_free(&r);
	}
	assert_int_equal(msg_files(f), n);
	free(qids);
}

/* On tmpfs a file's fsync covers its name: no directory fsync per link. */
static int commit_mode_tmpfs_body(struct fixture *sub)
{
	if (strcmp(qstore_commit_mode(sub->qs), "file fsync") != 0)
		return 21;
	commit_many_check(sub, 400);
	return 0;
}

static void test_spool_commit_mode(void **state)
{
	struct fixture *f = *state;

	qstore_close(&f->qs);
	assert_int_equal(setenv("ZFARM_SPOOL_DIRSYNC", "1", 1), 0);
	f->qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_int_equal(unsetenv("ZFARM_SPOOL_DIRSYNC"), 0);
	assert_non_null(f->qs);
	assert_string_equal(qstore_commit_mode(f->qs), "file and directory fsync");
	commit_many_check(f, 400);
	in_tmpfs(f, "64m", commit_mode_tmpfs_body);
}

/* The inode of a removed message is the next message's. */
static void test_spool_recycle_inode(void **state)
{
	struct fixture *f = *state;
	char qid[QID_SIZE], next[QID_SIZE];
	ino_t ino;

	commit_msg(f, 5000, 4096, qid);
	ino = msg_ino(f, qid);
	assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
	commit_msg(f, 10, 10, next);
	if (msg_ino(f, next) != ino)
		fail_msg("got inode %lu, want the recycled %lu", (unsigned long)msg_ino(f, next),
			 (unsigned long)ino);
	assert_int_equal(dir_count(f, "free"), 0);
	assert_int_equal(dir_count(f, "ctl"), -1); /* no ctl/ any more */
}

/*
 * Control records live after the message in the same file: read back
 * after reopening, and content reads stop where they start.
 */
static void test_spool_ctl_in_message(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	struct qstore_reader *r;
	char qid[QID_SIZE], path[256];
	size_t len = 3000, got;
	uint8_t *buf = malloc(len + 4096);
	struct stat st;
	int e = 0;

	test_records(in);
	commit_msg(f, len, 1000, qid);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 2, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in + 2, 1, f->err, sizeof(f->err)), 0);
	qstore_close(&f->qs);
	f->qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(f->qs);
	assert_int_equal(ctl_load_n(f, qid), 3);
	spool_file(f, path, sizeof(path), "msg", qid);
	assert_int_equal(stat(path, &st), 0);
	assert_true((size_t)st.st_size > 16 + len + 3 * 4);
	r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
	assert_non_null(r);
	read_all(f, r, 4096, buf, len + 4096, &got);
	if (got != len)
		fail_msg("got %zu content bytes, want %zu (no control records)", got, len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(buf[i], content_byte(i));
	/* Reads after the end stay at the end. */
	assert_int_equal(qstore_content(r, buf, 4096, f->err, sizeof(f->err)), 0);
	qstore_reader_free(&r);
	/* An append to a message that does not exist fails with ENOENT. */
	qid_format(qid, 4242, 42);
	errno = 0;
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 1, f->err, sizeof(f->err)), -1);
	assert_int_equal(errno, ENOENT);
	free(buf);
}

/*
 * A reader reads and appends the control records through the file it
 * opened, never by name again: moved away under it (here to corrupt/),
 * its message still gives its records and takes the append (a slot's
 * file is copied to corrupt/ instead: the append fails).  Records
 * someone else appends after the open are not read again: the header,
 * the envelope and a small message's records come from one read (a
 * slot's reader of a bigger file reads the records again).
 */
static void test_spool_reader_one_open(void **state)
{
	static const size_t sizes[] = {100, 100000};
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3], **out;

	test_records(in);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct qstore_reader *r;
		char qid[QID_SIZE], path[256];
		struct stat before, after;
		size_t n;
		int e = 0;

		commit_msg(f, sizes[i], 4096, qid);
		assert_int_equal(qstore_ctl_append(f->qs, qid, in, 2, f->err, sizeof(f->err)), 0);
		r = qstore_read_flags(f->qs, qid, QSTORE_APPEND, &e, f->err, sizeof(f->err));
		assert_non_null(r);
		/* By ID after the open: not seen through the reader. */
		assert_int_equal(qstore_ctl_append(f->qs, qid, in + 2, 1, f->err, sizeof(f->err)),
				 0);
		assert_int_equal(qstore_quarantine(f->qs, qid, f->err, sizeof(f->err)), 0);
		snprintf(path, sizeof(path), "%s/corrupt/%s", f->dir, qid);
		assert_int_equal(stat(path, &before), 0);
		assert_int_equal(qstore_reader_ctl_load(r, &out, &n, f->err, sizeof(f->err)), 0);
		/*
		 * A slot reader whose file is bigger than its first read reads
		 * the records again (qstore_spool.c): from the slot, emptied
		 * by the quarantine (a message over 64 KB), none.
		 */
		if (n != (qid_is_slot(qid) && sizes[i] > 16384 ? 0u : 2u))
			fail_msg("size %zu: got %zu records, want those there at the open",
				 sizes[i], n);
		qstore_ctl_free(&out, n);
		if (qid_is_slot(qid)) {
			/*
			 * A slot's quarantine copies the file and frees the slot
			 * (its file stays, kept open by the range's holder): an
			 * append through a reader opened before fails, it never
			 * lands in a slot that may hold another message now.
			 */
			errno = 0;
			assert_int_equal(
			    qstore_reader_ctl_append_lazy(r, in, 1, f->err, sizeof(f->err)), -1);
			assert_int_equal(errno, ENOENT);
			assert_int_equal(stat(path, &after), 0);
			assert_int_equal(after.st_size, before.st_size);
			qstore_reader_free(&r);
			continue;
		}
		assert_int_equal(qstore_reader_ctl_append_lazy(r, in, 1, f->err, sizeof(f->err)),
				 0);
		assert_int_equal(stat(path, &after), 0);
		if (after.st_size <= before.st_size)
			fail_msg("size %zu: the append did not go to the file opened", sizes[i]);
		qstore_reader_free(&r);
	}
}

/*
 * A big message's file is emptied when it is removed: a reader still
 * reading it (a transport the scheduler gave up on) gets an error, not a
 * message cut short.
 */
static void test_spool_reader_cut(void **state)
{
	struct fixture *f = *state;
	struct qstore_reader *r;
	char qid[QID_SIZE];
	uint8_t buf[4096];
	size_t got = 0;
	ssize_t n;
	int e = 0;

	commit_msg(f, 200000, 4096, qid);
	r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
	assert_non_null(r);
	assert_true(qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err)) > 0);
	assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
	while ((n = qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err))) > 0)
		got += (size_t)n;
	if (n != -1)
		fail_msg("a reader of an emptied file: got %zd after %zu more bytes, want -1", n,
			 got);
	qstore_reader_free(&r);
}

/* A torn append written by hand at the end of the file is ignored. */
static void test_spool_ctl_torn_by_hand(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	uint8_t rec[256];
	char qid[QID_SIZE];
	size_t len;

	test_records(in);
	commit_msg(f, 100, 100, qid);
	assert_int_equal(qstore_ctl_append(f->qs, qid, in, 2, f->err, sizeof(f->err)), 0);
	len = zfarm__ctl_record__get_packed_size(in[2]);
	assert_true(len + 4 <= sizeof(rec));
	rec[0] = rec[1] = 0;
	rec[2] = (uint8_t)(len >> 8);
	rec[3] = (uint8_t)len;
	zfarm__ctl_record__pack(in[2], rec + 4);
	ctl_raw(f, qid, rec, 4 + len / 2);
	assert_int_equal(ctl_load_n(f, qid), 2);
}

/*
 * Commits from many threads at once (smtpserver's committer pool): the
 * msg/XX fsyncs are shared between them (group commit); every message
 * must be there, whole, and no thread may wait for ever (alarm).
 */
#define CC_THREADS 8
#define CC_EACH	   25

struct cc_job {
	struct fixture *f;
	struct qstore_writer *w[CC_EACH];
	char qid[CC_EACH][QID_SIZE];
	int failed;
};

static void *cc_run(void *arg)
{
	struct cc_job *j = arg;
	char err[256];

	for (int i = 0; i < CC_EACH; i++) {
		int e = 0;

		if (qstore_commit(&j->w[i], j->qid[i], &e, err, sizeof(err)) < 0)
			j->failed++;
	}
	return NULL;
}

static void test_spool_concurrent_commits(void **state)
{
	struct fixture *f = *state;
	struct cc_job jobs[CC_THREADS];
	pthread_t t[CC_THREADS];
	Zfarm__Envelope env = test_envelope();

	alarm(60);
	for (int k = 0; k < CC_THREADS; k++) {
		jobs[k].f = f;
		jobs[k].failed = 0;
		for (int i = 0; i < CC_EACH; i++) {
			uint8_t buf[1000];
			int e = 0;

			for (size_t b = 0; b < sizeof(buf); b++)
				buf[b] = content_byte(b);
			jobs[k].w[i] = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
			assert_non_null(jobs[k].w[i]);
			assert_int_equal(qstore_append(jobs[k].w[i], buf, sizeof(buf), &e, f->err,
						       sizeof(f->err)),
					 0);
		}
	}
	for (int k = 0; k < CC_THREADS; k++)
		assert_int_equal(pthread_create(&t[k], NULL, cc_run, &jobs[k]), 0);
	for (int k = 0; k < CC_THREADS; k++)
		assert_int_equal(pthread_join(t[k], NULL), 0);
	alarm(0);
	for (int k = 0; k < CC_THREADS; k++) {
		assert_int_equal(jobs[k].failed, 0);
		for (int i = 0; i < CC_EACH; i++) {
			struct qstore_reader *r;
			uint8_t buf[1100];
			size_t got;
			int e = 0;

			r = qstore_read(f->qs, jobs[k].qid[i], &e, f->err, sizeof(f->err));
			if (!r)
				fail_msg("%s: %s", jobs[k].qid[i], f->err);
			read_all(f, r, 512, buf, sizeof(buf), &got);
			assert_int_equal(got, 1000);
			for (size_t b = 0; b < got; b++)
				if (buf[b] != content_byte(b))
					fail_msg("%s: byte %zu differs", jobs[k].qid[i], b);
			qstore_reader_free(&r);
		}
	}
	assert_int_equal(msg_files(f), CC_THREADS * CC_EACH);
}

/*
 * remove: nothing left under msg/, one file in free/: a small one with its
 * bytes (reused in place), a big one emptied (its space back at once).
 */
static void test_spool_remove_to_free(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	char qid[QID_SIZE];
	static const struct {
		size_t len;
		int nonempty;
	} rows[] = {{20000, 1}, {200000, 0}};

	test_records(in);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		commit_msg(f, rows[i].len, 8192, qid);
		assert_int_equal(qstore_ctl_append(f->qs, qid, in, 3, f->err, sizeof(f->err)), 0);
		assert_int_equal(msg_files(f), 1);
		assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
		assert_int_equal(msg_files(f), 0);
		assert_int_equal(dir_count(f, "free"), 1);
		if (free_nonempty(f) != rows[i].nonempty)
			fail_msg("%zu bytes: got %d non-empty in free/, want %d", rows[i].len,
				 free_nonempty(f), rows[i].nonempty);
		assert_int_equal(dir_count(f, "tmp"), 0);
		errno = 0;
		assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), -1);
		assert_int_equal(errno, ENOENT);
		assert_int_equal(dir_count(f, "free"), 1);
		/* The next message takes that inode back. */
		commit_msg(f, 100, 100, qid);
		assert_int_equal(dir_count(f, "free"), 0);
		assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
		assert_int_equal(dir_count(f, "free"), 1);
		qstore_sweep(f->qs, f->err, sizeof(f->err));
	}
}

/* sweep: tmp/ leftovers go to free/, emptied; free/ is trimmed. */
static void test_spool_sweep_free(void **state)
{
	struct fixture *f = *state;
	int n;

	plant(f, "tmp/1.2.3", "leftover", 8);
	plant(f, "tmp/1.2.4", "another leftover", 16);
	assert_int_equal(qstore_sweep(f->qs, f->err, sizeof(f->err)), 2);
	assert_int_equal(dir_count(f, "tmp"), 0);
	assert_int_equal(dir_count(f, "free"), 2);
	assert_int_equal(free_nonempty(f), 0);
	for (int i = 0; i < 4100; i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "free/planted.%d", i);
		plant(f, rel, "", 0);
	}
	assert_int_equal(qstore_sweep(f->qs, f->err, sizeof(f->err)), 0);
	n = dir_count(f, "free");
	if (n > 4096)
		fail_msg("free/: got %d files, want at most 4096", n);
	/* The pool still works after the trim. */
	commit_msg(f, 10, 10, (char[QID_SIZE]){0});
	assert_int_equal(dir_count(f, "free"), n - 1);
	/* trim alone (the reinjector's rerun): files over the limit go, with their space. */
	for (int i = 0; i < 10; i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "free/kept.%d", i);
		plant(f, rel, "bytes of a removed message", 26);
	}
	n = dir_count(f, "free");
	if (qstore_trim(f->qs, f->err, sizeof(f->err)) != n - 4096)
		fail_msg("trim of %d files: want %d removed", n, n - 4096);
	assert_int_equal(dir_count(f, "free"), 4096);
	assert_int_equal(qstore_trim(f->qs, f->err, sizeof(f->err)), 0);
	commit_msg(f, 10, 10, (char[QID_SIZE]){0});
	assert_int_equal(dir_count(f, "free"), 4095);
}

/* A damaged spool header is an error from qstore_read, not a crash. */
static void test_spool_bad_header(void **state)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t len;
	} rows[] = {
	    {"bad magic", "ZSP2\0\0\0\0\0\0\0\0\0\0\0\x0cZFQ1\0\0\0\0body", 28},
	    {"length past the end", "ZSP1\0\0\0\0\0\0\0\0\0\0\0\x0dZFQ1\0\0\0\0body", 28},
	    {"huge length", "ZSP1\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xffZFQ1\0\0\0\0body", 28},
	    {"length 0 (never committed)", "ZSP1\0\0\0\0\0\0\0\0\0\0\0\0ZFQ1\0\0\0\0body", 28},
	    {"header cut", "ZSP1\0\0\0\0\0\0", 10},
	    {"old layout", "ZFQ1\0\0\0\0body", 12},
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		Zfarm__CtlRecord **recs;
		char qid[QID_SIZE], rel[64];
		size_t n;
		int e = 0;

		qid_format(qid, 7000 + i, 3);
		snprintf(rel, sizeof(rel), "msg/%s/%s", qid + QID_LEN - 2, qid);
		plant(f, rel, rows[i].bytes, rows[i].len);
		f->err[0] = '\0';
		if (qstore_read(f->qs, qid, &e, f->err, sizeof(f->err)) || e != EBADMSG)
			fail_msg("%s: got errnum %d, want NULL EBADMSG", rows[i].what, e);
		assert_true(f->err[0] != '\0');
		assert_int_equal(qstore_ctl_load(f->qs, qid, &recs, &n, f->err, sizeof(f->err)),
				 -1);
		assert_int_equal(qstore_quarantine(f->qs, qid, f->err, sizeof(f->err)), 0);
	}
}

/* A file under a name that holds another message's envelope is refused. */
static void test_spool_wrong_envelope(void **state)
{
	struct fixture *f = *state;
	Zfarm__Envelope env = test_envelope();
	char qid[QID_SIZE], other[QID_SIZE], rel[64];
	uint8_t buf[512];
	size_t len;
	int e = 0;

	qid_format(qid, 8000, 3);
	qid_format(other, 8001, 3); /* a later ID: a recycled inode */
	env.queue_id = other;
	len = zfarm__envelope__get_packed_size(&env);
	assert_true(8 + len <= sizeof(buf));
	memcpy(buf, "ZFQ1", 4);
	buf[4] = buf[5] = 0;
	buf[6] = (uint8_t)(len >> 8);
	buf[7] = (uint8_t)len;
	zfarm__envelope__pack(&env, buf + 8);
	snprintf(rel, sizeof(rel), "msg/%s/%s", qid + QID_LEN - 2, qid);
	plant_msg(f, rel, buf, 8 + len);
	assert_null(qstore_read(f->qs, qid, &e, f->err, sizeof(f->err)));
	assert_int_equal(e, EBADMSG);
	/* Another pid's ID, earlier: refused as well. */
	qid_format(other, 7999, 4);
	zfarm__envelope__pack(&env, buf + 8);
	plant_msg(f, rel, buf, 8 + len);
	assert_null(qstore_read(f->qs, qid, &e, f->err, sizeof(f->err)));
	assert_int_equal(e, EBADMSG);
}

/* Many cycles: the pool keeps free/ small and allocates no new inodes. */
static void test_spool_cycles(void **state)
{
	struct fixture *f = *state;
	char qid[QID_SIZE];
	ino_t first = 0;
	int fresh = 0;

	for (int i = 0; i < 1000; i++) {
		commit_msg(f, 500, 500, qid);
		if (i == 0)
			first = msg_ino(f, qid);
		else if (msg_ino(f, qid) != first)
			fresh++;
		assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
	}
	if (dir_count(f, "free") > 2)
		fail_msg("free/: got %d files, want at most 2", dir_count(f, "free"));
	assert_int_equal(msg_files(f), 0);
	assert_int_equal(dir_count(f, "tmp"), 0);
	assert_int_equal(fresh, 0);
}

/*
 * Another process (here: a second qstore) removes a message while this
 * one's refill is rate-limited: create still works, with a new inode, and
 * takes the pooled one once the wait is over.
 */
static void test_spool_refill_limited(void **state)
{
	struct fixture *f = *state;
	struct qstore *other;
	char a[QID_SIZE], b[QID_SIZE], c[QID_SIZE];
	ino_t ino_a;

	clock_set_fake(1700000000000000ull, 5000);
	commit_msg(f, 10, 10, a); /* free/ empty: refill found nothing */
	ino_a = msg_ino(f, a);
	other = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(other);
	assert_int_equal(qstore_remove(other, a, f->err, sizeof(f->err)), 0);
	qstore_close(&other);
	assert_int_equal(dir_count(f, "free"), 1);
	commit_msg(f, 10, 10, b);
	assert_true(msg_ino(f, b) != ino_a);
	assert_int_equal(dir_count(f, "free"), 1);
	clock_advance_fake(1001);
	commit_msg(f, 10, 10, c);
	assert_true(msg_ino(f, c) == ino_a);
	assert_int_equal(dir_count(f, "free"), 0);
}

/* free_slice - the slice of a free/ name, as qstore_spool.c documents it: FNV-1a mod 16. */
static unsigned free_slice(const char *name)
{
	uint32_t h = 2166136261u;

	for (; *name; name++) {
		h ^= (unsigned char)*name;
		h *= 16777619u;
	}
	return h % 16;
}

/*
 * Processes sharing free/ claim from different slices of it: this one
 * takes every free/ name of its own slice (pid mod 16) before any other,
 * then the others, so two processes do not race for the same names.
 */
static void test_spool_slices(void **state)
{
	struct fixture *f = *state;
	unsigned mine = (unsigned)getpid() % 16, per[16] = {0}, n = 0, own;
	char names[200][16], qid[QID_SIZE], path[256];
	bool gone[200] = {false};

	/* names until every slice has at least two */
	for (unsigned covered = 0; covered < 16 && n < 200; n++) {
		snprintf(names[n], sizeof(names[n]), "s%u", n);
		snprintf(path, sizeof(path), "free/s%u", n);
		plant(f, path, "x", 1);
		if (++per[free_slice(names[n])] == 2)
			covered++;
	}
	assert_true(per[mine] >= 2);
	own = per[mine];
	for (unsigned claim = 0; claim <= own; claim++) {
		int found = -1;

		commit_msg(f, 10, 10, qid);
		for (unsigned i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/free/s%u", f->dir, i);
			if (!gone[i] && access(path, F_OK) < 0) {
				assert_int_equal(found, -1); /* one name per create */
				found = (int)i;
				gone[i] = true;
			}
		}
		assert_true(found >= 0);
		if (claim < own && free_slice(names[found]) != mine)
			fail_msg("claim %u: got %s of slice %u, want slice %u (own names left)",
				 claim, names[found], free_slice(names[found]), mine);
		if (claim == own)
			assert_int_not_equal(free_slice(names[found]), mine); /* then the others */
	}
}

/*
 * Another process used free/ after this one read it: after two names
 * that are gone, the pool is read afresh instead of trying every stale
 * name (with many smtpserver processes that was ten failed renames per
 * message).
 */
static void test_spool_stale_pool(void **state)
{
	struct fixture *f = *state;
	struct qstore *a = f->qs, *b;
	char qid[QID_SIZE], rel[64];

	for (int i = 0; i < 20; i++) {
		snprintf(rel, sizeof(rel), "free/p%d", i);
		plant(f, rel, "x", 1);
	}
	commit_msg(f, 10, 10, qid); /* a reads 20 names, takes one */
	b = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(b);
	f->qs = b;
	for (int i = 0; i < 19; i++)
		commit_msg(f, 10, 10, qid); /* b takes the other 19 */
	f->qs = a;
	assert_int_equal(dir_count(f, "free"), 0);
	for (int i = 0; i < 5; i++) {
		snprintf(rel, sizeof(rel), "free/q%d", i);
		plant(f, rel, "x", 1);
	}
	renameat_enoent = 0;
	commit_msg(f, 10, 10, qid); /* a's 19 names are all gone */
	if (renameat_enoent > 2)
		fail_msg("a stale pool: got %u failed claims, want at most 2", renameat_enoent);
	assert_int_equal(dir_count(f, "free"), 4);
	qstore_close(&b);
}

/* ---- slots (the spool's default for new messages) ---- */

/* slot_range - the three characters that name qid's range (slot/RRR). */
static void slot_range(const char *qid, char out[4])
{
	memcpy(out, qid + QID_LEN - 5, 3);
	out[3] = '\0';
}

/* slot_header - the first 16 bytes of qid's slot file. */
static void slot_header(struct fixture *f, const char *qid, uint8_t hdr[16])
{
	char path[256];
	int fd;

	spool_file(f, path, sizeof(path), "msg", qid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(read(fd, hdr, 16), 16);
	close(fd);
}

static uint64_t be_get(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * A committed message is in a slot file named by its ID: header "ZSL1",
 * the ID's time, the message length; no name made under msg/ or tmp/.
 */
static void test_slot_layout(void **state)
{
	struct fixture *f = *state;
	char qid[QID_SIZE], rr[4];
	uint8_t hdr[16];
	char path[256];
	struct stat st;

	commit_msg(f, 100, 100, qid);
	if (!qid_is_slot(qid))
		fail_msg("%s: not a slot's ID", qid);
	slot_header(f, qid, hdr);
	assert_memory_equal(hdr, "ZSL1", 4);
	assert_int_equal(be_get(hdr + 4, 8), qid_time_us(qid));
	spool_file(f, path, sizeof(path), "msg", qid);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(be_get(hdr + 12, 4), (uint64_t)st.st_size - 16);
	slot_range(qid, rr);
	snprintf(path, sizeof(path), "slot/%s", rr);
	assert_int_equal(dir_count(f, path), 1);
	assert_int_equal(dir_count(f, "msg"), 0);
	assert_int_equal(dir_count(f, "tmp"), 0);
	/* What is not a range under slot/ is reported, never scanned as a message. */
	plant(f, "slot/junk", "x", 1);
	{
		struct id_list l = {.n = 0};

		assert_int_equal(qstore_scan(f->qs, collect_fn, bad_fn, &l, f->err, sizeof(f->err)), 0);
		assert_int_equal(l.n, 1);
		assert_int_equal(l.bad, 1);
	}
	read_check_id(f, qid, qid);
}

/*
 * Removed slots are used again: many cycles use few files of one range
 * (the window), every ID is new, and a message's old ID is not found in
 * the slot that holds another message now.
 */
static void test_slot_reuse(void **state)
{
	struct fixture *f = *state;
	char qid[QID_SIZE], first[QID_SIZE], rr[4], rr0[4], path[64];
	int e = 0;

	commit_msg(f, 10, 10, first);
	assert_int_equal(qstore_remove(f->qs, first, f->err, sizeof(f->err)), 0);
	slot_range(first, rr0);
	for (int i = 0; i < 300; i++) {
		commit_msg(f, 10 + (size_t)i, 10, qid);
		assert_string_not_equal(qid, first);
		slot_range(qid, rr);
		assert_string_equal(rr, rr0);
		assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
	}
	snprintf(path, sizeof(path), "slot/%s", rr0);
	if (dir_count(f, path) > 32)
		fail_msg("300 cycles used %d slot files, want at most 32", dir_count(f, path));
	assert_int_equal(dir_count(f, "slot"), 1);
	/* "first"'s slot holds a later message or a free header: not found. */
	assert_null(qstore_read(f->qs, first, &e, f->err, sizeof(f->err)));
	assert_int_equal(e, ENOENT);
	assert_int_equal(scan_count(f), 0);
}

/*
 * Messages waiting in a range are skipped and the range's window grows:
 * 100 messages in flight get 100 slots of one range, found again by scan.
 */
static void test_slot_in_flight(void **state)
{
	struct fixture *f = *state;
	char qids[100][QID_SIZE], rr[4], rr0[4];

	for (int i = 0; i < 100; i++) {
		commit_msg(f, 20, 20, qids[i]);
		slot_range(qids[i], rr);
		if (i == 0)
			memcpy(rr0, rr, 4);
		assert_string_equal(rr, rr0);
		for (int j = 0; j < i; j++)
			assert_memory_not_equal(qids[i] + QID_LEN - 5, qids[j] + QID_LEN - 5, 5);
	}
	assert_int_equal(scan_count(f), 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(qstore_remove(f->qs, qids[i], f->err, sizeof(f->err)), 0);
	assert_int_equal(scan_count(f), 0);
}

/*
 * A range belongs to one process (qstore) at a time: a second one on the
 * same queue takes another; once the first is closed, its range is free
 * for the next, which skips the messages still waiting there.
 */
static void test_slot_ranges(void **state)
{
	struct fixture *f = *state;
	char a1[QID_SIZE], b1[QID_SIZE], c1[QID_SIZE], ra[4], rb[4], rc[4];
	struct qstore *b, *c;
	int e = 0;

	commit_msg(f, 10, 10, a1);
	b = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(b);
	{
		struct qstore *keep = f->qs;

		f->qs = b;
		commit_msg(f, 10, 10, b1);
		f->qs = keep;
	}
	slot_range(a1, ra);
	slot_range(b1, rb);
	assert_string_not_equal(ra, rb);
	qstore_close(&f->qs);
	c = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(c);
	f->qs = c;
	commit_msg(f, 10, 10, c1);
	slot_range(c1, rc);
	assert_string_equal(rc, ra);
	assert_memory_not_equal(c1 + QID_LEN - 5, a1 + QID_LEN - 5, 5);
	/* Every one is there, read through any qstore. */
	assert_int_equal(scan_count(f), 3);
	for (int i = 0; i < 3; i++) {
		const char *id = i == 0 ? a1 : i == 1 ? b1 : c1;
		struct qstore_reader *r = qstore_read(b, id, &e, f->err, sizeof(f->err));

		assert_non_null(r);
		qstore_reader_free(&r);
	}
	qstore_close(&b);
}

/* Two messages received at once get two slots. */
static void test_slot_busy(void **state)
{
	struct fixture *f = *state;
	Zfarm__Envelope env = test_envelope();
	struct qstore_writer *w1, *w2;
	char q1[QID_SIZE], q2[QID_SIZE];
	int e = 0;

	w1 = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
	w2 = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
	assert_non_null(w1);
	assert_non_null(w2);
	assert_string_not_equal(qstore_writer_qid(w1) + QID_LEN - 5,
				qstore_writer_qid(w2) + QID_LEN - 5);
	assert_int_equal(qstore_append(w1, "one", 3, &e, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_append(w2, "two", 3, &e, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_commit(&w2, q2, &e, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_commit(&w1, q1, &e, f->err, sizeof(f->err)), 0);
	assert_int_equal(scan_count(f), 2);
}

/*
 * A process killed while receiving leaves its slot with a free header:
 * nothing to scan, and the next holder of the range uses the slot again.
 */
static void test_slot_killed_writer(void **state)
{
	struct fixture *f = *state;
	char qid[QID_SIZE], got[QID_SIZE];
	int status, fds[2];
	pid_t pid;

	qstore_close(&f->qs); /* the child takes range 0 */
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		Zfarm__Envelope env = test_envelope();
		struct qstore *qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
		struct qstore_writer *w;
		int e = 0;

		w = qs ? qstore_create(qs, &env, &e, f->err, sizeof(f->err)) : NULL;
		if (!w || qstore_append(w, "partial", 7, &e, f->err, sizeof(f->err)) < 0)
			_exit(1);
		if (write(fds[1], qstore_writer_qid(w), QID_LEN) != QID_LEN)
			_exit(1);
		pause(); /* killed here, the message half received */
		_exit(1);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], qid, QID_LEN), QID_LEN);
	qid[QID_LEN] = '\0';
	close(fds[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	f->qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(f->qs);
	assert_int_equal(scan_count(f), 0);
	commit_msg(f, 10, 10, got);
	assert_memory_equal(got + QID_LEN - 5, qid + QID_LEN - 5, 5); /* the same slot */
	assert_int_equal(scan_count(f), 1);
}

/*
 * A queue with messages of both ways (one left by an older version, or
 * made while no slot could be had): scan finds both in time order, both
 * read and go.
 */
static void test_slot_mixed(void **state)
{
	struct fixture *f = *state;
	char legacy[QID_SIZE], slot[QID_SIZE];
	struct id_list l = {.n = 0};
	struct qstore *files, *keep = f->qs;
	int e = 0;

	files = open_store("files", f->dir, f->err, sizeof(f->err));
	assert_non_null(files);
	f->qs = files;
	commit_msg(f, 30, 30, legacy);
	f->qs = keep;
	commit_msg(f, 40, 40, slot);
	assert_false(qid_is_slot(legacy));
	assert_true(qid_is_slot(slot));
	assert_int_equal(qstore_scan(f->qs, collect_fn, NULL, &l, f->err, sizeof(f->err)), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.ids[0], legacy);
	assert_string_equal(l.ids[1], slot);
	for (int i = 0; i < 2; i++) {
		const char *id = i ? slot : legacy;
		struct qstore_reader *r = qstore_read(f->qs, id, &e, f->err, sizeof(f->err));

		assert_non_null(r);
		qstore_reader_free(&r);
		assert_int_equal(qstore_remove(f->qs, id, f->err, sizeof(f->err)), 0);
	}
	assert_int_equal(scan_count(f), 0);
	qstore_close(&files);
}

/* Not a check: the system CPU of a create+commit+remove cycle, printed. */
static void test_spool_cycle_cost(void **state)
{
	struct fixture *f = *state;
	struct rusage a, b;
	char qid[QID_SIZE];
	double sys;
	int n = 2000;

	getrusage(RUSAGE_SELF, &a);
	for (int i = 0; i < n; i++) {
		commit_msg(f, 2048, 2048, qid);
		assert_int_equal(qstore_remove(f->qs, qid, f->err, sizeof(f->err)), 0);
	}
	getrusage(RUSAGE_SELF, &b);
	sys = (double)(b.ru_stime.tv_sec - a.ru_stime.tv_sec) * 1e3 +
	      (double)(b.ru_stime.tv_usec - a.ru_stime.tv_usec) / 1e3;
	print_message("spool: %d create+commit+remove cycles: %.3f ms system CPU per cycle\n", n,
		      sys / n);
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	char path[256], err[256];

	assert_null(qstore_open("nosuch", f->dir, err, sizeof(err)));
	assert_non_null(strstr(err, "nosuch"));
	snprintf(path, sizeof(path), "%s/file", f->top);
	plant(f, "../file", "x", 1);
	assert_null(qstore_open("spool", path, err, sizeof(err)));
	snprintf(path, sizeof(path), "%s/q2", f->top);
	assert_int_equal(mkdir(path, 0700), 0);
	plant(f, "../q2/msg", "x", 1);
	assert_null(qstore_open("spool", path, err, sizeof(err)));
	assert_string_equal(qstore_backend(f->qs), IS_FILES(f) ? "spool" : f->backend);
}

#define BOTH(t)                                                                                    \
	cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)"spool"),             \
	    cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)"files"),         \
	    cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)"ram")
/* Both ways of the spool; FILES: the tmp/ + msg/XX way only. */
#define SPOOL(t)                                                                                   \
	cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)"spool"),             \
	    cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)"files")
#define FILES(t) cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)"files")
#define SLOT(t)	 cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)"spool")
#define RAM(t)	 cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)"ram")

/* ---- control records in a slot ---- */

/* file_size - the size of qid's file. */
static off_t file_size(struct fixture *f, const char *qid)
{
	char path[256];
	struct stat st;

	spool_file(f, path, sizeof(path), "msg", qid);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* file_write - len bytes at off of qid's file (a crash's leftovers by hand). */
static void file_write(struct fixture *f, const char *qid, off_t off, const void *data,
		       size_t len)
{
	char path[256];
	int fd;

	spool_file(f, path, sizeof(path), "msg", qid);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, off), (ssize_t)len);
	close(fd);
}

/*
 * slot_frame - rec framed for a slot whose ID has time idtime: length,
 * CRC-32 of the time (8 bytes big endian), the length and the record,
 * then the record (qstore_spool.c, "Control records in a slot").
 */
static size_t slot_frame(uint64_t idtime, const Zfarm__CtlRecord *rec, uint8_t *out)
{
	size_t n = zfarm__ctl_record__pack(rec, out + 8);
	uint8_t t[8];
	uLong crc;

	for (int i = 0; i < 8; i++)
		t[i] = (uint8_t)(idtime >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		out[i] = (uint8_t)(n >> (24 - 8 * i));
	crc = crc32(crc32(crc32(0L, t, 8), out, 4), out + 8, (uInt)n);
	for (int i = 0; i < 4; i++)
		out[4 + i] = (uint8_t)(crc >> (24 - 8 * i));
	return 8 + n;
}

/*
 * create_in_slot - a writer in other's slot file (the writers the cursor
 * gives on the way aborted).
 */
static struct qstore_writer *create_in_slot(struct fixture *f, const char *other)
{
	Zfarm__Envelope env = test_envelope();
	struct qstore_writer *w;
	int e = 0;

	for (int i = 0; i < 4096; i++) {
		w = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
		if (!w)
			fail_msg("create: %s", f->err);
		if (memcmp(qstore_writer_qid(w) + QID_LEN - 5, other + QID_LEN - 5, 5) == 0)
			return w;
		qstore_abort(&w);
	}
	fail_msg("no writer came into the slot of %s", other);
	return NULL;
}

/*
 * commit_in_slot - a len-byte message into other's slot file; whether its
 * commit was an overwrite in place (qstore_overwrite_commits moved).
 */
static bool commit_in_slot(struct fixture *f, size_t len, const char *other, char qid[QID_SIZE])
{
	struct qstore_writer *w = create_in_slot(f, other);
	unsigned long long before = qstore_overwrite_commits(f->qs);

	write_commit(f, w, len, 4096, qid);
	return qstore_overwrite_commits(f->qs) == before + 1;
}

/*
 * A slot keeps its size (a size change would make fdatasync write the
 * inode too): a smaller message after a bigger one leaves the older bytes
 * past it, whose records do not check for the new ID; the new message's
 * records go right after it, over them.
 */
static void test_slot_stale_tail(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	char a[QID_SIZE], b[QID_SIZE];
	struct qstore_reader *r;
	uint8_t buf[200];
	off_t size;
	int e = 0;

	test_records(in);
	commit_msg(f, 3000, 4096, a);
	assert_int_equal(qstore_ctl_append(f->qs, a, in, 3, f->err, sizeof(f->err)), 0);
	assert_int_equal(ctl_load_n(f, a), 3);
	size = file_size(f, a);
	assert_int_equal(qstore_remove(f->qs, a, f->err, sizeof(f->err)), 0);

	/* As big: the older records lie right where the new ones start. */
	commit_in_slot(f, 3000, a, b);
	assert_int_equal(file_size(f, b), size);
	if (ctl_load_n(f, b) != 0)
		fail_msg("a message got %zu records of the one before in its slot",
			 ctl_load_n(f, b));
	assert_int_equal(qstore_ctl_append(f->qs, b, in + 2, 1, f->err, sizeof(f->err)), 0);
	assert_int_equal(ctl_load_n(f, b), 1);
	assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);

	memcpy(a, b, QID_SIZE);
	commit_in_slot(f, 100, a, b);
	if (file_size(f, b) != size)
		fail_msg("the commit changed the slot's size: %lld, was %lld",
			 (long long)file_size(f, b), (long long)size);
	assert_int_equal(ctl_load_n(f, b), 0);
	assert_int_equal(qstore_ctl_repair(f->qs, b, f->err, sizeof(f->err)), 0);
	assert_int_equal(qstore_ctl_append(f->qs, b, in + 1, 1, f->err, sizeof(f->err)), 0);
	assert_int_equal(ctl_load_n(f, b), 1);
	assert_int_equal(file_size(f, b), size);
	/* Through a reader too, and its content ends where the message does. */
	r = qstore_read_flags(f->qs, b, QSTORE_APPEND, &e, f->err, sizeof(f->err));
	assert_non_null(r);
	assert_int_equal(qstore_reader_ctl_append_lazy(r, in + 2, 1, f->err, sizeof(f->err)), 0);
	{
		Zfarm__CtlRecord **out;
		size_t n;

		assert_int_equal(qstore_reader_ctl_load(r, &out, &n, f->err, sizeof(f->err)), 0);
		assert_int_equal(n, 2);
		assert_int_equal(out[1]->body_case, ZFARM__CTL_RECORD__BODY_RESULT);
		qstore_ctl_free(&out, n);
	}
	{
		size_t got = 0;
		ssize_t n;

		while ((n = qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err))) > 0) {
			for (ssize_t i = 0; i < n; i++)
				assert_int_equal(buf[i], content_byte(got + (size_t)i));
			got += (size_t)n;
		}
		assert_int_equal(n, 0);
		assert_int_equal(got, 100);
	}
	qstore_reader_free(&r);
	assert_int_equal(ctl_load_n(f, b), 2);
	assert_int_equal(file_size(f, b), size);
	assert_int_equal(scan_count(f), 1);
}

/*
 * A slot's records end at the first frame that does not check: a torn
 * last append (any prefix of its frame written, the rest zeros, older
 * bytes or the end of the file) hides only itself, repair finds nothing
 * to cut, and the next append goes over it.
 */
static void test_slot_ctl_torn(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	size_t last;
	uint8_t fill[512];

	test_records(in);
	last = 8 + zfarm__ctl_record__get_packed_size(in[2]);
	assert_true(last <= sizeof(fill));
	for (int how = 0; how < 3; how++) { /* zeros, older bytes, cut */
		const size_t keeps[] = {0, 1, 4, 7, 8, 9, last - 1};

		memset(fill, how == 0 ? 0 : 0xa5, sizeof(fill));
		for (size_t k = 0; k < sizeof(keeps) / sizeof(keeps[0]); k++) {
			char qid[QID_SIZE];
			off_t end1, end2;
			int rc;

			commit_msg(f, 10, 10, qid);
			assert_int_equal(
			    qstore_ctl_append_lazy(f->qs, qid, in, 1, f->err, sizeof(f->err)), 0);
			end1 = file_size(f, qid);
			assert_int_equal(
			    qstore_ctl_append_lazy(f->qs, qid, in + 2, 1, f->err, sizeof(f->err)),
			    0);
			end2 = file_size(f, qid);
			assert_int_equal((size_t)(end2 - end1), last);
			assert_int_equal(ctl_load_n(f, qid), 2);
			if (how == 2) {
				char path[256];

				spool_file(f, path, sizeof(path), "msg", qid);
				assert_int_equal(truncate(path, end1 + (off_t)keeps[k]), 0);
			} else {
				file_write(f, qid, end1 + (off_t)keeps[k], fill, last - keeps[k]);
			}
			if (ctl_load_n(f, qid) != 1)
				fail_msg("how %d, %zu bytes of the frame kept: got %zu records, want 1",
					 how, keeps[k], ctl_load_n(f, qid));
			rc = qstore_ctl_repair(f->qs, qid, f->err, sizeof(f->err));
			if (rc != 0)
				fail_msg("how %d keep %zu: repair got %d (%s), want 0", how, keeps[k],
					 rc, f->err);
			assert_int_equal(
			    qstore_ctl_append(f->qs, qid, in + 1, 1, f->err, sizeof(f->err)), 0);
			assert_int_equal(ctl_load_n(f, qid), 2);
		}
	}
}

/*
 * What follows a slot's records and is not a frame for its ID ends them,
 * no error: garbage, a record framed without a check (the msg/ way), a
 * frame checked for another ID.  A frame made by hand for its ID is read:
 * the format is what qstore_spool.c and tests/farmd/qspool.py say.
 */
static void test_slot_ctl_foreign(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3], **out;
	uint8_t frame[512];

	test_records(in);
	for (int row = 0; row < 4; row++) {
		char qid[QID_SIZE];
		size_t n = 0, want = row == 3 ? 2 : 1;

		commit_msg(f, 10, 10, qid);
		assert_int_equal(qstore_ctl_append(f->qs, qid, in, 1, f->err, sizeof(f->err)), 0);
		switch (row) {
		case 0:
			memcpy(frame, "\0\0\0\3\xff\xff\xff\0\0\0\0", n = 11);
			break;
		case 1:
			n = zfarm__ctl_record__pack(in[1], frame + 4);
			frame[0] = frame[1] = frame[2] = 0;
			frame[3] = (uint8_t)n;
			n += 4;
			break;
		case 2:
			n = slot_frame(qid_time_us(qid) + 1, in[1], frame);
			break;
		case 3:
			n = slot_frame(qid_time_us(qid), in[1], frame);
			break;
		}
		file_write(f, qid, file_size(f, qid), frame, n);
		f->err[0] = '\0';
		if (qstore_ctl_load(f->qs, qid, &out, &n, f->err, sizeof(f->err)) < 0)
			fail_msg("row %d: %s", row, f->err);
		if (n != want)
			fail_msg("row %d: got %zu records, want %zu", row, n, want);
		assert_int_equal(out[n - 1]->body_case, row == 3 ? ZFARM__CTL_RECORD__BODY_ROUTED
								 : ZFARM__CTL_RECORD__BODY_ROUTE);
		qstore_ctl_free(&out, n);
	}
}

/*
 * Appends to one slot message from two processes at once lose nothing:
 * each goes after the last record under an flock of the file.
 */
static void test_slot_ctl_concurrent(void **state)
{
	enum { PROCS = 2, EACH = 300 };
	struct fixture *f = *state;
	char qid[QID_SIZE];
	pid_t pids[PROCS];

	commit_msg(f, 10, 10, qid);
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			struct qstore *qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
			Zfarm__CtlRecord *in[3];

			test_records(in);
			for (int i = 0; qs && i < EACH; i++)
				if (qstore_ctl_append_lazy(qs, qid, in + (i + p) % 3, 1, f->err,
							   sizeof(f->err)) < 0)
					_exit(1);
			_exit(qs ? 0 : 1);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int status;

		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	if (ctl_load_n(f, qid) != PROCS * EACH)
		fail_msg("got %zu records, want %d", ctl_load_n(f, qid), PROCS * EACH);
}

/*
 * qstore_trim gives back a burst's slot files in a range nobody holds:
 * the free ones past the first window go, a waiting message's stays; a
 * range still held is left alone.
 */
static void test_slot_trim(void **state)
{
	struct fixture *f = *state;
	char qids[100][QID_SIZE], rr[4], path[64];
	struct qstore *other;
	int keep = -1, n;

	for (int i = 0; i < 100; i++)
		commit_msg(f, 20, 20, qids[i]);
	slot_range(qids[0], rr);
	snprintf(path, sizeof(path), "slot/%s", rr);
	assert_int_equal(dir_count(f, path), 100);
	for (int i = 0; i < 100; i++) {
		if (keep < 0 && (qid_tail(qids[i]) & 1023) >= 40) {
			keep = i; /* waits, past the first window */
			continue;
		}
		assert_int_equal(qstore_remove(f->qs, qids[i], f->err, sizeof(f->err)), 0);
	}
	assert_true(keep >= 0);
	/* Held by f->qs: nothing goes. */
	other = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(other);
	assert_int_equal(qstore_trim(other, f->err, sizeof(f->err)), 0);
	assert_int_equal(dir_count(f, path), 100);
	/* Released: all but the first window and the waiting message. */
	qstore_close(&f->qs);
	n = qstore_trim(other, f->err, sizeof(f->err));
	if (n != 100 - 32 - 1)
		fail_msg("trim removed %d files, want %d", n, 100 - 32 - 1);
	assert_int_equal(dir_count(f, path), 33);
	{
		int e = 0;
		struct qstore_reader *r = qstore_read(other, qids[keep], &e, f->err, sizeof(f->err));

		assert_non_null(r);
		qstore_reader_free(&r);
	}
	f->qs = other;
	/* The range is used again: its files come back as needed. */
	for (int i = 0; i < 60; i++)
		commit_msg(f, 20, 20, qids[i]);
	assert_int_equal(scan_count(f), 61);
}

/* read_len - qid read through qs: its content length, -1 with e set if it cannot be read. */
static long read_len(struct fixture *f, struct qstore *qs, const char *qid, int *e)
{
	struct qstore_reader *r = qstore_read(qs, qid, e, f->err, sizeof(f->err));
	char buf[4096];
	long len = 0;
	ssize_t n;

	if (!r)
		return -1;
	while ((n = qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err))) > 0)
		len += n;
	assert_int_equal(n, 0);
	qstore_reader_free(&r);
	return len;
}

/*
 * A process keeps the slot files it read open (qstore_spool.c,
 * spool_kept_take).  One whose file was unlinked meanwhile (qstore_trim
 * does it to a free slot of a range nobody holds) and made again for a
 * new message is not used: the new message is read, the old one is gone.
 */
static void test_slot_kept_stale(void **state)
{
	struct fixture *f = *state;
	char a[QID_SIZE], b[QID_SIZE], rr[4], path[256];
	struct qstore *reader, *remover;
	int e = 0;

	commit_msg(f, 100, 100, a);
	reader = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	remover = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(reader);
	assert_non_null(remover);
	assert_int_equal(read_len(f, reader, a, &e), 100); /* kept open now */
	assert_int_equal(read_len(f, remover, a, &e), 100);
	assert_int_equal(qstore_remove(f->qs, a, f->err, sizeof(f->err)), 0);
	qstore_close(&f->qs);
	slot_range(a, rr);
	snprintf(path, sizeof(path), "%s/slot/%s/%s", f->dir, rr, a + QID_LEN - 2);
	assert_int_equal(unlink(path), 0);
	f->qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(f->qs);
	commit_msg(f, 200, 200, b);
	assert_int_equal(qid_tail(a), qid_tail(b)); /* the same slot, a new file */
	if (read_len(f, reader, b, &e) != 200)
		fail_msg("the new message in the slot not read (%s): the unlinked file was", f->err);
	assert_int_equal(read_len(f, reader, a, &e), -1);
	assert_int_equal(e, ENOENT);
	/* A remove through a process that kept the unlinked file frees the new one. */
	if (qstore_remove(remover, b, f->err, sizeof(f->err)) != 0)
		fail_msg("remove of the new message in the slot: %s", f->err);
	assert_int_equal(read_len(f, reader, b, &e), -1);
	assert_int_equal(e, ENOENT);
	qstore_close(&remover);
	qstore_close(&reader);
}

/*
 * A slot's quarantine copies its file to corrupt/ and frees the slot: the
 * range's holder keeps the slot's file open and fills it again later; the
 * copy stays as it was.
 */
static void test_slot_quarantine_copy(void **state)
{
	struct fixture *f = *state;
	char a[QID_SIZE], q[40][QID_SIZE], path[256];
	struct qstore *other;
	struct stat before, after;
	int again = -1, e = 0;

	commit_msg(f, 100, 100, a);
	other = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(other);
	assert_int_equal(qstore_quarantine(other, a, f->err, sizeof(f->err)), 0);
	snprintf(path, sizeof(path), "%s/corrupt/%s", f->dir, a);
	assert_int_equal(stat(path, &before), 0);
	assert_true(before.st_size >= 16 + 100);
	assert_int_equal(read_len(f, other, a, &e), -1);
	assert_int_equal(e, ENOENT);
	for (int i = 0; i < 40; i++) {
		commit_msg(f, 300, 300, q[i]);
		if (again < 0 && qid_tail(q[i]) == qid_tail(a))
			again = i;
	}
	assert_true(again >= 0);
	assert_int_equal(stat(path, &after), 0);
	if (after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
	    after.st_mtim.tv_nsec != before.st_mtim.tv_nsec)
		fail_msg("the quarantined copy was written to (size %lld, was %lld)",
			 (long long)after.st_size, (long long)before.st_size);
	assert_int_equal(read_len(f, other, q[again], &e), 300);
	qstore_close(&other);
}

/*
 * An append through a reader opened before another process removed the
 * message fails (ENOENT): it never writes into the freed slot, which
 * the next message may hold already.
 */
static void test_slot_append_after_remove(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	char a[QID_SIZE], b[QID_SIZE];
	struct qstore_reader *r;
	struct qstore *other;
	int e = 0;

	test_records(in);
	commit_msg(f, 100, 100, a);
	other = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(other);
	r = qstore_read_flags(other, a, QSTORE_APPEND, &e, f->err, sizeof(f->err));
	assert_non_null(r);
	assert_int_equal(qstore_remove(f->qs, a, f->err, sizeof(f->err)), 0);
	errno = 0;
	if (qstore_reader_ctl_append_lazy(r, in, 1, f->err, sizeof(f->err)) != -1)
		fail_msg("an append went into the freed slot of %s", a);
	assert_int_equal(errno, ENOENT);
	qstore_reader_free(&r);
	/* The slot's next message has no records of the one before. */
	for (int i = 0; i < 40; i++) {
		size_t n = 1;
		Zfarm__CtlRecord **out;

		commit_msg(f, 100, 100, b);
		if (qid_tail(b) != qid_tail(a))
			continue;
		assert_int_equal(qstore_ctl_load(f->qs, b, &out, &n, f->err, sizeof(f->err)), 0);
		assert_int_equal(n, 0);
		break;
	}
	qstore_close(&other);
}

/* fd_count - descriptors this process has open. */
static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the directory's own */
}

/*
 * The slot files a process keeps open stay within a budget taken from its
 * open file limit: with a limit of 64, 300 messages waiting (a window of
 * 512 slots) are all created, and the descriptors stay few.
 */
static void test_slot_kept_budget(void **state)
{
	struct fixture *f = *state;
	pid_t pid;
	int st;

	qstore_close(&f->qs);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {64, 64};
		char qid[QID_SIZE];
		struct qstore *qs;
		int e = 0;

		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			_exit(2);
		qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
		if (!qs)
			_exit(3);
		for (int i = 0; i < 300; i++) {
			Zfarm__Envelope env = test_envelope();
			struct qstore_writer *w = qstore_create(qs, &env, &e, f->err, sizeof(f->err));

			if (!w || qstore_append(w, "x", 1, &e, f->err, sizeof(f->err)) < 0 ||
			    qstore_commit(&w, qid, &e, f->err, sizeof(f->err)) < 0) {
				fprintf(stderr, "message %d: %s\n", i, f->err);
				_exit(4);
			}
			if (fd_count() > 40) {
				fprintf(stderr, "message %d: %d descriptors open\n", i, fd_count());
				_exit(5);
			}
		}
		qstore_close(&qs);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) != 0)
		fail_msg("child exit %d", WEXITSTATUS(st));
	f->qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	assert_non_null(f->qs);
}

/*
 * commit_in_slot_as - commit_in_slot, and the message reads back.
 */
static bool commit_in_slot_as(struct fixture *f, size_t len, const char *slot, char qid[QID_SIZE])
{
	bool ow = commit_in_slot(f, len, slot, qid);
	int e = 0;

	read_check_id(f, qid, qid);
	assert_int_equal(read_len(f, f->qs, qid, &e), (long)len);
	return ow;
}

static int overwrite_tmpfs_body(struct fixture *sub)
{
	char a[QID_SIZE];

	for (int i = 0; i < 100; i++) {
		commit_msg(sub, 1000, 1000, a);
		if (qstore_remove(sub->qs, a, sub->err, sizeof(sub->err)) < 0)
			return 1;
	}
	return qstore_overwrite_commits(sub->qs) == 0 ? 0 : 2;
}

/*
 * On ext4 a slot's commit inside what an earlier fdatasync of its file
 * made durable is an overwrite in place (data written out, device cache
 * flushed: no inode write); a new file, a message past the durable size,
 * and the first one after the file was emptied (a big message's remove:
 * its blocks are gone) get the file's fdatasync.  ZFARM_SPOOL_OVERWRITE=0
 * and other file systems (tmpfs here) never overwrite so.
 */
static void test_slot_overwrite(void **state)
{
	struct fixture *f = *state;
	char a[QID_SIZE], b[QID_SIZE];
	struct statfs fs;
	bool ext4;

	assert_int_equal(statfs(f->dir, &fs), 0);
	ext4 = fs.f_type == 0xEF53; /* ext2, ext3 or ext4: the spool takes it for ext4 by name */

	commit_msg(f, 1000, 1000, a);
	assert_int_equal(qstore_overwrite_commits(f->qs), 0); /* a new file */
	assert_int_equal(qstore_remove(f->qs, a, f->err, sizeof(f->err)), 0);
	/* The same size again in that file: inside what a's fdatasync made durable. */
	assert_int_equal(commit_in_slot_as(f, 1000, a, b), ext4);
	assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
	/* Past it: the file grows, fdatasync; then that size is durable. */
	assert_false(commit_in_slot_as(f, 6000, a, b));
	assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
	assert_int_equal(commit_in_slot_as(f, 6000, a, b), ext4);
	assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
	/* A big message's remove empties the file: the next one allocates anew. */
	assert_false(commit_in_slot_as(f, 100000, a, b));
	assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
	assert_int_equal(file_size(f, a), 0);
	assert_false(commit_in_slot_as(f, 1000, a, b));
	assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
	assert_int_equal(commit_in_slot_as(f, 1000, a, b), ext4);
	assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
	/* Turned off. */
	qstore_close(&f->qs);
	setenv("ZFARM_SPOOL_OVERWRITE", "0", 1);
	f->qs = open_store(f->backend, f->dir, f->err, sizeof(f->err));
	unsetenv("ZFARM_SPOOL_OVERWRITE");
	assert_non_null(f->qs);
	for (int i = 0; i < 100; i++) {
		commit_msg(f, 1000, 1000, b);
		assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
	}
	assert_int_equal(qstore_overwrite_commits(f->qs), 0);
	in_tmpfs(f, "4m", overwrite_tmpfs_body);
}

/*
 * A commit whose write-out fails (EIO) is answered with the error, leaves
 * its slot free and unreadable, and forgets what the file's earlier
 * fdatasync made durable: the failed write-out may have left its blocks
 * in any state, so the next commit in that slot takes the file's
 * fdatasync again even on ext4, and only the one after that overwrites.
 */
static void test_slot_failed_commit(void **state)
{
	struct fixture *f = *state;
	char a[QID_SIZE], b[QID_SIZE], c[QID_SIZE];
	struct qstore_writer *w;
	uint8_t buf[1000], hdr[16];
	struct statfs fs;
	unsigned long long before;
	int e = 0;
	bool ext4;

	assert_int_equal(statfs(f->dir, &fs), 0);
	ext4 = fs.f_type == 0xEF53;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = content_byte(i);
	commit_msg(f, sizeof(buf), sizeof(buf), a);
	assert_int_equal(qstore_remove(f->qs, a, f->err, sizeof(f->err)), 0);
	/* The same size in that file again: an overwrite on ext4, made to fail. */
	w = create_in_slot(f, a);
	memcpy(b, qstore_writer_qid(w), QID_SIZE);
	assert_int_equal(qstore_append(w, buf, sizeof(buf), &e, f->err, sizeof(f->err)), 0);
	before = qstore_overwrite_commits(f->qs);
	sync_failures = 1;
	e = 0;
	assert_int_equal(qstore_commit(&w, c, &e, f->err, sizeof(f->err)), -1);
	assert_null(w);
	assert_int_equal(sync_failures, 0); /* the failure was the write-out's */
	assert_int_equal(e, EIO);
	assert_non_null(strstr(f->err, strerror(EIO)));
	assert_int_equal(qstore_overwrite_commits(f->qs), before);
	slot_header(f, b, hdr);
	assert_memory_equal(hdr, "ZSL0", 4);
	assert_int_equal(read_len(f, f->qs, b, &e), -1);
	/* Nothing is known durable in that file now: fdatasync, then overwrites again. */
	assert_false(commit_in_slot_as(f, sizeof(buf), a, c));
	assert_int_equal(qstore_remove(f->qs, c, f->err, sizeof(f->err)), 0);
	assert_int_equal(commit_in_slot_as(f, sizeof(buf), a, c), ext4);
	assert_int_equal(qstore_remove(f->qs, c, f->err, sizeof(f->err)), 0);
}

/* check_content - qid reads back as len pattern bytes (content_byte). */
static void check_content(struct fixture *f, const char *qid, size_t len)
{
	struct qstore_reader *r;
	uint8_t buf[8192];
	size_t got = 0;
	ssize_t n;
	int e = 0;

	r = qstore_read(f->qs, qid, &e, f->err, sizeof(f->err));
	if (!r)
		fail_msg("read %s: %s", qid, f->err);
	while ((n = qstore_content(r, buf, sizeof(buf), f->err, sizeof(f->err))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != content_byte(got + (size_t)i))
				fail_msg("%s: byte %zu differs", qid, got + (size_t)i);
		got += (size_t)n;
	}
	assert_int_equal(n, 0);
	assert_int_equal(got, len);
	qstore_reader_free(&r);
}

/* fd_of - a descriptor this process has open on qid's slot file; -1 if none. */
static int fd_of(struct fixture *f, const char *qid)
{
	char path[256];
	struct stat want, st;
	int found = -1;
	DIR *d;
	struct dirent *de;

	spool_file(f, path, sizeof(path), "msg", qid);
	assert_int_equal(stat(path, &want), 0);
	d = opendir("/proc/self/fd");
	assert_non_null(d);
	while (found < 0 && (de = readdir(d))) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] != '.' && fd != dirfd(d) && fstat(fd, &st) == 0 &&
		    st.st_dev == want.st_dev && st.st_ino == want.st_ino)
			found = fd;
	}
	closedir(d);
	return found;
}

/*
 * group_setup - three slots whose files an fdatasync made durable for
 * 1,000 bytes (a[]), and a writer of 1000 - 100 i pattern bytes in each (w[]):
 * whether qstore_commit_begin took them for a group commit, which it does
 * on ext4 in slots only (not the tmp/ way, not ram, not elsewhere).
 */
static bool group_setup(struct fixture *f, char a[3][QID_SIZE], struct qstore_writer *w[3])
{
	struct statfs fs;
	bool group;

	assert_int_equal(statfs(f->top, &fs), 0);
	group = fs.f_type == 0xEF53 && !IS_FILES(f) && IS_SPOOL(f);
	for (int i = 0; i < 3; i++) {
		Zfarm__Envelope env = test_envelope();
		int e = 0;

		/* The store is new: each of these is a new file, not begun. */
		w[i] = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
		assert_non_null(w[i]);
		append_pattern(f, w[i], 1000, 4096);
		assert_int_equal(qstore_commit_begin(w[i]), 0);
		assert_int_equal(qstore_commit(&w[i], a[i], &e, f->err, sizeof(f->err)), 0);
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(qstore_remove(f->qs, a[i], f->err, sizeof(f->err)), 0);
	for (int i = 0; i < 3; i++) {
		Zfarm__Envelope env = test_envelope();
		int e = 0;

		if (IS_SPOOL(f) && !IS_FILES(f)) {
			w[i] = create_in_slot(f, a[i]);
		} else {
			w[i] = qstore_create(f->qs, &env, &e, f->err, sizeof(f->err));
			assert_non_null(w[i]);
		}
		append_pattern(f, w[i], 1000 - 100 * (size_t)i, 4096);
		assert_int_equal(qstore_commit_begin(w[i]), group);
	}
	return group;
}

/* group_link - c[] a list of w[]'s commits. */
static struct qstore_commit *group_link(struct qstore_commit c[3], struct qstore_writer *w[3])
{
	for (int i = 0; i < 3; i++)
		c[i] = (struct qstore_commit){.w = w[i], .next = i < 2 ? &c[i + 1] : NULL};
	return c;
}

/*
 * Group commit: three messages begun in slots made durable before are
 * committed by one device flush (fdatasync of the queue directory) after
 * their write-outs, as overwrites; each reads back whole under its ID.
 * Elsewhere (tmp/ way, ram, not ext4) begin says no, and qstore_commit
 * after it commits as ever.  A message past what its file made durable, or
 * in a new file, is not begun.
 */
static void test_group_commit(void **state)
{
	struct fixture *f = *state;
	char a[3][QID_SIZE], qid[3][QID_SIZE];
	struct qstore_writer *w[3];
	struct qstore_commit c[3];
	unsigned long long ow;
	unsigned calls;
	int e = 0;

	if (!group_setup(f, a, w)) {
		for (int i = 0; i < 3; i++) {
			assert_int_equal(qstore_commit(&w[i], qid[i], &e, f->err, sizeof(f->err)), 0);
			check_content(f, qid[i], 1000 - 100 * (size_t)i);
		}
		return;
	}
	for (int i = 0; i < 3; i++)
		memcpy(qid[i], qstore_writer_qid(w[i]), QID_SIZE);
	ow = qstore_overwrite_commits(f->qs);
	calls = fdatasync_calls;
	qstore_commit_group(group_link(c, w));
	assert_int_equal(fdatasync_calls, calls + 1);
	assert_int_equal(qstore_overwrite_commits(f->qs), ow + 3);
	for (int i = 0; i < 3; i++) {
		if (c[i].rc != 0)
			fail_msg("message %d: %s", i, c[i].reason);
		assert_null(c[i].w);
		assert_string_equal(c[i].qid, qid[i]);
		read_check_id(f, qid[i], qid[i]);
		check_content(f, qid[i], 1000 - 100 * (size_t)i);
		assert_int_equal(qstore_remove(f->qs, qid[i], f->err, sizeof(f->err)), 0);
	}
	/* Past the durable size: not begun (fdatasync grows it). */
	w[0] = create_in_slot(f, a[0]);
	append_pattern(f, w[0], 6000, 4096);
	assert_int_equal(qstore_commit_begin(w[0]), 0);
	assert_int_equal(qstore_commit(&w[0], qid[0], &e, f->err, sizeof(f->err)), 0);
	check_content(f, qid[0], 6000);
}

/*
 * A group whose one write-out fails (EIO on its file): that message fails
 * with the reason, its slot free and unreadable; the others are committed
 * by the one flush.  A group whose flush fails: every message fails, each
 * slot free, and the next commit in each slot takes its file's fdatasync
 * (nothing known durable after a failed write-out or flush).
 */
static void test_group_commit_fails(void **state)
{
	struct fixture *f = *state;
	char a[3][QID_SIZE], qid[3][QID_SIZE], b[QID_SIZE];
	struct qstore_writer *w[3];
	struct qstore_commit c[3];
	uint8_t hdr[16];
	unsigned calls;
	int e = 0;

	if (!group_setup(f, a, w)) {
		for (int i = 0; i < 3; i++)
			qstore_abort(&w[i]);
		return;
	}
	for (int i = 0; i < 3; i++)
		memcpy(qid[i], qstore_writer_qid(w[i]), QID_SIZE);
	range_fail_fd = fd_of(f, a[1]);
	assert_true(range_fail_fd >= 0);
	calls = fdatasync_calls;
	qstore_commit_group(group_link(c, w));
	range_fail_fd = -1;
	assert_int_equal(fdatasync_calls, calls + 1);
	assert_int_equal(c[1].rc, -1);
	assert_int_equal(c[1].errnum, EIO);
	assert_non_null(strstr(c[1].reason, "write-out"));
	assert_null(c[1].w);
	slot_header(f, qid[1], hdr);
	assert_memory_equal(hdr, "ZSL0", 4);
	assert_int_equal(read_len(f, f->qs, qid[1], &e), -1);
	for (int i = 0; i < 3; i += 2) {
		if (c[i].rc != 0)
			fail_msg("message %d: %s", i, c[i].reason);
		check_content(f, qid[i], 1000 - 100 * (size_t)i);
		assert_int_equal(qstore_remove(f->qs, qid[i], f->err, sizeof(f->err)), 0);
	}
	/* Slot a[1] now needs an fdatasync first: only two can be begun. */
	assert_false(commit_in_slot_as(f, 1000, a[1], b));
	assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);

	/* The flush fails. */
	for (int i = 0; i < 3; i++) {
		w[i] = create_in_slot(f, a[i]);
		append_pattern(f, w[i], 1000, 4096);
		assert_int_equal(qstore_commit_begin(w[i]), 1);
		memcpy(qid[i], qstore_writer_qid(w[i]), QID_SIZE);
	}
	flush_failures = 1;
	qstore_commit_group(group_link(c, w));
	assert_int_equal(flush_failures, 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c[i].rc, -1);
		assert_int_equal(c[i].errnum, EIO);
		assert_non_null(strstr(c[i].reason, "device flush"));
		assert_null(c[i].w);
		slot_header(f, qid[i], hdr);
		assert_memory_equal(hdr, "ZSL0", 4);
		assert_int_equal(read_len(f, f->qs, qid[i], &e), -1);
		assert_false(commit_in_slot_as(f, 1000, a[i], b));
		assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
		assert_true(commit_in_slot_as(f, 1000, a[i], b));
		assert_int_equal(qstore_remove(f->qs, b, f->err, sizeof(f->err)), 0);
	}
}

/* lock_waiter - /proc/locks shows pid waiting for a flock on inode ino. */
static bool lock_waiter(pid_t pid, ino_t ino)
{
	char line[256], want_pid[32], want_ino[40];
	bool found = false;
	FILE *fp = fopen("/proc/locks", "r");

	assert_non_null(fp);
	snprintf(want_pid, sizeof(want_pid), " %ld ", (long)pid);
	snprintf(want_ino, sizeof(want_ino), ":%lu ", (unsigned long)ino);
	while (!found && fgets(line, sizeof(line), fp))
		found = strstr(line, "-> FLOCK") && strstr(line, want_pid) && strstr(line, want_ino);
	fclose(fp);
	return found;
}

/*
 * Freeing a slot waits for the file's flock (spool_slot_free), which an
 * append holds while it checks that the slot still holds its message and
 * writes (spool_slot_append): a remove meanwhile changes nothing until the
 * lock is let go, and an append through a reader opened before the remove
 * finds the slot free and writes nothing.
 */
static void test_slot_free_waits_for_lock(void **state)
{
	struct fixture *f = *state;
	Zfarm__CtlRecord *in[3];
	struct qstore_reader *r;
	char qid[QID_SIZE], path[256];
	uint8_t hdr[16];
	struct stat st, now;
	uint64_t deadline;
	int e = 0, status, fd;
	pid_t pid;

	test_records(in);
	commit_msg(f, 3000, 3000, qid);
	r = qstore_read_flags(f->qs, qid, QSTORE_APPEND, &e, f->err, sizeof(f->err));
	assert_non_null(r);
	spool_file(f, path, sizeof(path), "msg", qid);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(flock(fd, LOCK_EX), 0); /* as an append in another process would */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(qstore_remove(f->qs, qid, f->err, sizeof(f->err)) == 0 ? 0 : 1);
	deadline = clock_mono_ms() + 10000;
	while (!lock_waiter(pid, st.st_ino) && clock_mono_ms() < deadline &&
	       waitpid(pid, &status, WNOHANG) == 0) {
		struct timespec ms = {0, 1000000};

		nanosleep(&ms, NULL);
	}
	assert_true(lock_waiter(pid, st.st_ino));
	slot_header(f, qid, hdr);
	assert_memory_equal(hdr, "ZSL1", 4); /* not freed under the lock */
	assert_int_equal(flock(fd, LOCK_UN), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	slot_header(f, qid, hdr);
	assert_memory_equal(hdr, "ZSL0", 4);
	/* The reader's message is gone: its append is refused and writes nothing. */
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(qstore_reader_ctl_append_lazy(r, in, 1, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, strerror(ENOENT)));
	qstore_reader_free(&r);
	assert_int_equal(fstat(fd, &now), 0);
	assert_int_equal(now.st_size, st.st_size);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    BOTH(test_roundtrip),
	    BOTH(test_empty_content),
	    BOTH(test_read_errors),
	    BOTH(test_ctl_roundtrip),
	    BOTH(test_reader_ctl),
	    FILES(test_ctl_torn),
	    RAM(test_ctl_torn),
	    FILES(test_ctl_bad),
	    RAM(test_ctl_bad),
	    BOTH(test_remove),
	    BOTH(test_quarantine),
	    BOTH(test_scan_order),
	    BOTH(test_sweep),
	    BOTH(test_abort),
	    BOTH(test_free_bytes),
	    BOTH(test_envelope_too_large),
	    RAM(test_ram_enospc),
	    SPOOL(test_spool_efbig),
	    SPOOL(test_spool_enospc_tmpfs),
	    FILES(test_spool_commit_mode),
	    FILES(test_spool_collision),
	    FILES(test_spool_crash_tmp),
	    FILES(test_spool_crash_after_link),
	    SPOOL(test_spool_scan_foreign),
	    SPOOL(test_spool_corrupt),
	    SPOOL(test_open_errors),
	    FILES(test_spool_recycle_inode),
	    SPOOL(test_spool_ctl_in_message),
	    FILES(test_spool_ctl_torn_by_hand),
	    SPOOL(test_spool_reader_one_open),
	    SPOOL(test_spool_reader_cut),
	    FILES(test_spool_remove_to_free),
	    FILES(test_spool_concurrent_commits),
	    FILES(test_spool_sweep_free),
	    SPOOL(test_spool_bad_header),
	    SPOOL(test_spool_wrong_envelope),
	    FILES(test_spool_cycles),
	    FILES(test_spool_refill_limited),
	    FILES(test_spool_slices),
	    FILES(test_spool_stale_pool),
	    SPOOL(test_spool_cycle_cost),
	    SLOT(test_slot_layout),
	    SLOT(test_slot_reuse),
	    SLOT(test_slot_in_flight),
	    SLOT(test_slot_ranges),
	    SLOT(test_slot_busy),
	    SLOT(test_slot_killed_writer),
	    SLOT(test_slot_mixed),
	    SLOT(test_slot_stale_tail),
	    SLOT(test_slot_ctl_torn),
	    SLOT(test_slot_ctl_foreign),
	    SLOT(test_slot_ctl_concurrent),
	    SLOT(test_slot_trim),
	    SLOT(test_slot_kept_stale),
	    SLOT(test_slot_quarantine_copy),
	    SLOT(test_slot_append_after_remove),
	    SLOT(test_slot_kept_budget),
	    SLOT(test_slot_overwrite),
	    SLOT(test_slot_failed_commit),
	    SLOT(test_slot_free_waits_for_lock),
	    BOTH(test_group_commit),
	    BOTH(test_group_commit_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
