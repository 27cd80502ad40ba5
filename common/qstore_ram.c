/*
 * qstore_ram - the in-memory queue store backend; see qstore_ram.h.
 *
 * Messages are reference-counted blobs in an array sorted by queue ID (so
 * scan is a walk), control records byte strings appended to, exactly as
 * the spool's files are.  Writers being received are on a list so that
 * qstore_sweep() can drop them like the spool drops tmp/ files: a swept
 * writer fails its commit.  Linear searches: this is for tests.
 */
#include "common/qstore_ram.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

struct ram_blob {
	int refs;
	size_t len;
	uint8_t *data;
};

struct ram_msg {
	char qid[QID_SIZE];
	struct ram_blob *blob;
};

struct ram_ctl {
	char qid[QID_SIZE];
	uint8_t *data;
	size_t len;
};

struct ram_writer;

struct ram_store {
	struct ram_msg *msgs; /* sorted by qid */
	size_t nmsgs;
	struct ram_ctl *ctls;
	size_t nctls;
	struct ram_writer *writers;
	size_t used;
	size_t quarantined;
};

struct ram_writer {
	struct ram_store *st; /* NULL once swept or the store closed */
	struct ram_writer *next, *prev;
	uint8_t *data;
	size_t len, cap;
	bool failed;
};

struct ram_reader {
	struct ram_blob *blob;
};

static size_t ram_capacity;
static struct ram_store *ram_current;

void qstore_ram_set_capacity(size_t bytes)
{
	ram_capacity = bytes;
}

/* ram_reserve - account for n more bytes; -1 with ENOSPC over capacity. */
static int ram_reserve(struct ram_store *st, size_t n, int *errnum, char *err, size_t errlen)
{
	if (ram_capacity && (st->used + n > ram_capacity || st->used + n < st->used)) {
		if (errnum)
			*errnum = ENOSPC;
		snprintf(err, errlen, "ram queue store full (%zu of %zu bytes used)", st->used,
			 ram_capacity);
		return -1;
	}
	st->used += n;
	return 0;
}

static void ram_blob_unref(struct ram_blob *b)
{
	if (b && --b->refs == 0) {
		free(b->data);
		free(b);
	}
}

static void ram_writer_unlink(struct ram_writer *w)
{
	if (!w->st)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		w->st->writers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->st->used -= w->len;
	w->st = NULL;
	w->next = w->prev = NULL;
}

/* ram_find_msg - index of qid, or where it would go (*found false). */
static size_t ram_find_msg(const struct ram_store *st, const char *qid, bool *found)
{
	size_t lo = 0, hi = st->nmsgs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(st->msgs[mid].qid, qid);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static struct ram_ctl *ram_find_ctl(struct ram_store *st, const char *qid)
{
	for (size_t i = 0; i < st->nctls; i++)
		if (strcmp(st->ctls[i].qid, qid) == 0)
			return &st->ctls[i];
	return NULL;
}

static void ram_drop_ctl(struct ram_store *st, struct ram_ctl *c)
{
	st->used -= c->len;
	free(c->data);
	*c = st->ctls[--st->nctls];
}

static void *ram_open(const char *dir, char *err, size_t errlen)
{
	struct ram_store *st = xcalloc(1, sizeof(*st));

	(void)dir;
	(void)err;
	(void)errlen;
	ram_current = st;
	return st;
}

static void ram_close(void *be)
{
	struct ram_store *st = be;

	while (st->writers)
		ram_writer_unlink(st->writers);
	for (size_t i = 0; i < st->nmsgs; i++)
		ram_blob_unref(st->msgs[i].blob);
	for (size_t i = 0; i < st->nctls; i++)
		free(st->ctls[i].data);
	free(st->msgs);
	free(st->ctls);
	if (ram_current == st)
		ram_current = NULL;
	free(st);
}

static long long ram_free_bytes(void *be)
{
	struct ram_store *st = be;

	return ram_capacity ? (long long)(ram_capacity - st->used) : -1;
}

static void *ram_create(void *be, char qid[QID_SIZE], int *errnum, char *err, size_t errlen)
{
	struct ram_store *st = be;
	struct ram_writer *w = xcalloc(1, sizeof(*w));

	(void)errnum;
	(void)err;
	(void)errlen;
	w->st = st;
	w->next = st->writers;
	if (w->next)
		w->next->prev = w;
	st->writers = w;
	return w;
}

static void ram_writer_release(struct ram_writer *w)
{
	ram_writer_unlink(w);
	free(w->data);
	w->data = NULL;
	w->len = w->cap = 0;
}

static int ram_write(void *wr, const void *data, size_t len, int *errnum, char *err, size_t errlen)
{
	struct ram_writer *w = wr;

	if (w->failed || !w->st) {
		if (errnum)
			*errnum = w->failed ? EIO : ENOENT;
		snprintf(err, errlen, "%s",
			 w->failed ? "message already failed"
				   : "message swept while being received");
		return -1;
	}
	if (ram_reserve(w->st, len, errnum, err, errlen) < 0) {
		/* Like the spool: a failed message gives its space back at once. */
		ram_writer_release(w);
		w->failed = true;
		return -1;
	}
	if (w->len + len > w->cap) {
		w->cap = w->len + len > 2 * w->cap ? w->len + len : 2 * w->cap;
		w->data = xrealloc(w->data, w->cap);
	}
	memcpy(w->data + w->len, data, len);
	w->len += len;
	return 0;
}

static void ram_abort(void *wr)
{
	struct ram_writer *w = wr;

	ram_writer_release(w);
	free(w);
}

static int ram_commit(void *wr, const char *qid, int *errnum, char *err, size_t errlen)
{
	struct ram_writer *w = wr;
	struct ram_store *st = w->st;
	struct ram_blob *b;
	bool found;
	size_t at;

	if (w->failed || !st) {
		if (errnum)
			*errnum = w->failed ? EIO : ENOENT;
		snprintf(err, errlen, "%s",
			 w->failed ? "message failed while being received"
				   : "message swept while being received");
		ram_abort(w);
		return -1;
	}
	at = ram_find_msg(st, qid, &found);
	if (found) {
		if (errnum)
			*errnum = EEXIST;
		snprintf(err, errlen, "%s: queue ID exists", qid);
		return -1;
	}
	b = xmalloc(sizeof(*b));
	b->refs = 1;
	b->len = w->len;
	b->data = w->data;
	w->data = NULL;
	/* The bytes stay accounted: they move from the writer to the blob. */
	st->used -= w->len;
	w->len = 0;
	st->used += b->len;
	st->msgs = xreallocarray(st->msgs, st->nmsgs + 1, sizeof(*st->msgs));
	memmove(&st->msgs[at + 1], &st->msgs[at], (st->nmsgs - at) * sizeof(*st->msgs));
	memcpy(st->msgs[at].qid, qid, QID_SIZE);
	st->msgs[at].blob = b;
	st->nmsgs++;
	ram_abort(w);
	return 0;
}

static void *ram_read(void *be, const char *qid, unsigned flags, int *errnum, char *err,
		      size_t errlen)
{
	struct ram_store *st = be;
	struct ram_reader *r;
	bool found;
	size_t at = ram_find_msg(st, qid, &found);

	(void)flags; /* control records go by ID: rd_ctl_read/rd_ctl_append are NULL */
	if (!found) {
		if (errnum)
			*errnum = ENOENT;
		snprintf(err, errlen, "%s: no such message", qid);
		return NULL;
	}
	r = xmalloc(sizeof(*r));
	r->blob = st->msgs[at].blob;
	r->blob->refs++;
	return r;
}

static ssize_t ram_pread(void *rd, void *buf, size_t len, uint64_t off, char *err, size_t errlen)
{
	struct ram_reader *r = rd;
	size_t n;

	(void)err;
	(void)errlen;
	if (off >= r->blob->len)
		return 0;
	n = r->blob->len - (size_t)off;
	if (n > len)
		n = len;
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	memcpy(buf, r->blob->data + off, n);
	return (ssize_t)n;
}

static void ram_read_close(void *rd)
{
	struct ram_reader *r = rd;

	ram_blob_unref(r->blob);
	free(r);
}

static int ram_ctl_put(void *be, const char *qid, const void *data, size_t len, char *err,
		       size_t errlen)
{
	struct ram_store *st = be;
	struct ram_ctl *c;

	if (ram_reserve(st, len, NULL, err, errlen) < 0)
		return -1;
	c = ram_find_ctl(st, qid);
	if (!c) {
		st->ctls = xreallocarray(st->ctls, st->nctls + 1, sizeof(*st->ctls));
		c = &st->ctls[st->nctls++];
		memcpy(c->qid, qid, QID_SIZE);
		c->data = NULL;
		c->len = 0;
	}
	c->data = xrealloc(c->data, c->len + len);
	memcpy(c->data + c->len, data, len);
	c->len += len;
	return 0;
}

static int ram_ctl_append(void *be, const char *qid, const void *data, size_t len, bool sync,
			  char *err, size_t errlen)
{
	(void)sync;
	return ram_ctl_put(be, qid, data, len, err, errlen);
}

static int ram_ctl_truncate(void *be, const char *qid, size_t ctl_len, char *err, size_t errlen)
{
	struct ram_ctl *c = ram_find_ctl(be, qid);

	(void)err;
	(void)errlen;
	if (c && ctl_len < c->len)
		c->len = ctl_len;
	return 0;
}

static int ram_ctl_read(void *be, const char *qid, uint8_t **data, size_t *len, char *err,
			size_t errlen)
{
	struct ram_store *st = be;
	struct ram_ctl *c = ram_find_ctl(st, qid);

	(void)err;
	(void)errlen;
	*data = NULL;
	*len = 0;
	if (c && c->len) {
		*data = xmalloc(c->len);
		memcpy(*data, c->data, c->len);
		*len = c->len;
	}
	return 0;
}

/* ram_take - unlink qid's message and control record; -1 if neither. */
static int ram_take(struct ram_store *st, const char *qid, char *err, size_t errlen)
{
	struct ram_ctl *c = ram_find_ctl(st, qid);
	bool found;
	size_t at = ram_find_msg(st, qid, &found);

	if (!found && !c) {
		snprintf(err, errlen, "%s: no such message", qid);
		errno = ENOENT;
		return -1;
	}
	if (found) {
		st->used -= st->msgs[at].blob->len;
		ram_blob_unref(st->msgs[at].blob);
		memmove(&st->msgs[at], &st->msgs[at + 1], (st->nmsgs - at - 1) * sizeof(*st->msgs));
		st->nmsgs--;
	}
	if (c)
		ram_drop_ctl(st, c);
	return found ? 0 : 1;
}

static int ram_remove(void *be, const char *qid, char *err, size_t errlen)
{
	/* As in the spool, a control record without message is not an error. */
	int rc = ram_take(be, qid, err, errlen);

	if (rc == 1) {
		snprintf(err, errlen, "%s: no such message", qid);
		errno = ENOENT; /* qstore.h */
		return -1;
	}
	return rc;
}

static int ram_quarantine(void *be, const char *qid, char *err, size_t errlen)
{
	struct ram_store *st = be;

	if (ram_take(st, qid, err, errlen) < 0)
		return -1;
	st->quarantined++;
	return 0;
}

static int ram_scan(void *be, int (*fn)(const char *qid, void *arg),
		    void (*bad_fn)(const char *name, void *arg), void *arg, char *err,
		    size_t errlen)
{
	struct ram_store *st = be;
	char(*ids)[QID_SIZE];
	size_t n = st->nmsgs;
	int rc = 0;

	(void)bad_fn;
	(void)err;
	(void)errlen;
	/* A copy: fn may remove messages as it goes. */
	ids = xreallocarray(NULL, n ? n : 1, sizeof(*ids));
	for (size_t i = 0; i < n; i++)
		memcpy(ids[i], st->msgs[i].qid, QID_SIZE);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = fn(ids[i], arg);
	free(ids);
	return rc;
}

static int ram_sweep(void *be, char *err, size_t errlen)
{
	struct ram_store *st = be;
	int count = 0;

	(void)err;
	(void)errlen;
	while (st->writers) {
		struct ram_writer *w = st->writers;

		ram_writer_unlink(w);
		free(w->data);
		w->data = NULL;
		w->len = w->cap = 0;
		count++;
	}
	return count;
}

int qstore_ram_ctl_truncate(const char *qid, size_t cut)
{
	struct ram_ctl *c = ram_current ? ram_find_ctl(ram_current, qid) : NULL;

	if (!c || cut > c->len)
		return -1;
	c->len -= cut;
	ram_current->used -= cut;
	return 0;
}

int qstore_ram_ctl_raw(const char *qid, const void *data, size_t len)
{
	char err[128];

	if (!ram_current)
		return -1;
	return ram_ctl_put(ram_current, qid, data, len, err, sizeof(err));
}

const struct qstore_ops qstore_ram_ops = {
    .name = "ram",
    .open = ram_open,
    .close = ram_close,
    .free_bytes = ram_free_bytes,
    .create = ram_create,
    .write = ram_write,
    .commit = ram_commit,
    .abort = ram_abort,
    .read = ram_read,
    .pread = ram_pread,
    .read_close = ram_read_close,
    .ctl_append = ram_ctl_append,
    .ctl_truncate = ram_ctl_truncate,
    .ctl_read = ram_ctl_read,
    .remove = ram_remove,
    .quarantine = ram_quarantine,
    .scan = ram_scan,
    .sweep = ram_sweep,
};
