/*
 * qstore - the generic layer of the queue store; see qstore.h.
 *
 * Picks a backend by name and does everything that does not depend on
 * where bytes live: the message format ("ZFQ1", 4-byte big-endian length,
 * packed Envelope, then content), queue ID assignment with retry on a
 * collision, and the control record format (4-byte big-endian length +
 * packed CtlRecord, repeated).  Lengths read back are bounded (1 MiB) so a
 * corrupt file cannot make us allocate without limit.
 *
 * Contract with backends beyond qstore.h: ops->commit returns 0 (writer
 * freed), or -1 with *errnum == EEXIST when the ID is taken (writer still
 * valid, the caller retries with another ID), or -1 with any other errnum
 * (writer freed, nothing visible).  ops->write failing leaves the writer
 * failed (its bytes already released); only abort or commit may follow.
 */
#include "common/qstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/qstore_ram.h"
#include "common/xalloc.h"

#define QSTORE_MAGIC	    "ZFQ1"
#define QSTORE_HDR	    8
#define QSTORE_MAX_ENVELOPE (1024 * 1024)
/* Collisions need a clock stepped back and a reused pid; a few suffice. */
#define QSTORE_COMMIT_TRIES 8

extern const struct qstore_ops qstore_spool_ops;

static const struct qstore_ops *const qstore_backends[] = {
    &qstore_spool_ops,
    &qstore_ram_ops,
};

struct qstore {
	const struct qstore_ops *ops;
	void *be;
};

struct qstore_writer {
	struct qstore *qs;
	void *wr;
	uint64_t size;
	char qid[QID_SIZE]; /* the ID written into the envelope */
};

struct qstore_reader {
	struct qstore *qs;
	void *rd;
	Zfarm__Envelope *stored; /* as unpacked; owns the memory */
	Zfarm__Envelope view;	 /* stored, with the ID of the file name */
	char qid[QID_SIZE];
	unsigned flags; /* of qstore_read_flags */
	uint64_t content_off;
	uint64_t pos;
};

static void qstore_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t qstore_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void qstore_set_errnum(int *errnum, int e)
{
	if (errnum)
		*errnum = e;
}

struct qstore *qstore_open(const char *backend, const char *dir, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(qstore_backends) / sizeof(qstore_backends[0]); i++) {
		const struct qstore_ops *ops = qstore_backends[i];
		struct qstore *qs;
		void *be;

		if (strcmp(ops->name, backend) != 0)
			continue;
		be = ops->open(dir, err, errlen);
		if (!be)
			return NULL;
		qs = xmalloc(sizeof(*qs));
		qs->ops = ops;
		qs->be = be;
		return qs;
	}
	snprintf(err, errlen, "unknown queue store backend \"%s\"", backend);
	return NULL;
}

void qstore_close(struct qstore **qs)
{
	if (!qs || !*qs)
		return;
	(*qs)->ops->close((*qs)->be);
	free(*qs);
	*qs = NULL;
}

const char *qstore_backend(const struct qstore *qs)
{
	return qs->ops->name;
}

const char *qstore_commit_mode(struct qstore *qs)
{
	return qs->ops->commit_mode ? qs->ops->commit_mode(qs->be) : "none";
}

unsigned long long qstore_overwrite_commits(struct qstore *qs)
{
	return qs->ops->overwrite_commits ? qs->ops->overwrite_commits(qs->be) : 0;
}

long long qstore_free_bytes(struct qstore *qs)
{
	return qs->ops->free_bytes(qs->be);
}

/* ---- receiving ---- */

/*
 * The envelope goes first, so its queue ID is chosen here; commit tries
 * that ID first.  After a collision the file name holds a different ID
 * than the stored envelope: the name wins (qstore_read fills queue_id and
 * arrival_us from it).
 */
struct qstore_writer *qstore_create(struct qstore *qs, const Zfarm__Envelope *env, int *errnum,
				    char *err, size_t errlen)
{
	struct qstore_writer *w;
	Zfarm__Envelope copy = *env;
	uint8_t *buf;
	size_t len;
	int rc;

	w = xcalloc(1, sizeof(*w));
	w->qs = qs;
	/* The backend may choose the ID (the spool's slots: qid.h); else one is made here. */
	w->wr = qs->ops->create(qs->be, w->qid, errnum, err, errlen);
	if (!w->wr) {
		free(w);
		return NULL;
	}
	if (!w->qid[0])
		qid_generate(w->qid);
	copy.queue_id = w->qid;
	copy.arrival_us = (int64_t)qid_time_us(w->qid);
	len = zfarm__envelope__get_packed_size(&copy);
	if (len > QSTORE_MAX_ENVELOPE) {
		snprintf(err, errlen, "envelope too large (%zu bytes, limit %d)", len,
			 QSTORE_MAX_ENVELOPE);
		qstore_set_errnum(errnum, EMSGSIZE);
		qs->ops->abort(w->wr);
		free(w);
		return NULL;
	}
	buf = xmalloc(QSTORE_HDR + len);
	memcpy(buf, QSTORE_MAGIC, 4);
	qstore_put_be32(buf + 4, (uint32_t)len);
	zfarm__envelope__pack(&copy, buf + QSTORE_HDR);
	rc = qs->ops->write(w->wr, buf, QSTORE_HDR + len, errnum, err, errlen);
	free(buf);
	if (rc < 0) {
		qs->ops->abort(w->wr);
		free(w);
		return NULL;
	}
	return w;
}

int qstore_append(struct qstore_writer *w, const void *data, size_t len, int *errnum, char *err,
		  size_t errlen)
{
	if (len == 0)
		return 0;
	if (w->qs->ops->write(w->wr, data, len, errnum, err, errlen) < 0)
		return -1;
	w->size += len;
	return 0;
}

uint64_t qstore_size(const struct qstore_writer *w)
{
	return w->size;
}

const char *qstore_writer_qid(const struct qstore_writer *w)
{
	return w->qid;
}

int qstore_commit(struct qstore_writer **wp, char qid[QID_SIZE], int *errnum, char *err,
		  size_t errlen)
{
	struct qstore_writer *w = *wp;
	const struct qstore_ops *ops = w->qs->ops;
	char id[QID_SIZE];
	int e = 0;

	*wp = NULL;
	memcpy(id, w->qid, QID_SIZE);
	for (int tries = 0;; tries++) {
		if (ops->commit(w->wr, id, &e, err, errlen) == 0) {
			memcpy(qid, id, QID_SIZE);
			free(w);
			return 0;
		}
		if (e != EEXIST)
			break;
		if (tries + 1 >= QSTORE_COMMIT_TRIES) {
			ops->abort(w->wr);
			snprintf(err, errlen, "queue ID collision %d times, last %s",
				 QSTORE_COMMIT_TRIES, id);
			break;
		}
		qid_generate(id);
	}
	qstore_set_errnum(errnum, e);
	free(w);
	return -1;
}

int qstore_commit_begin(struct qstore_writer *w)
{
	const struct qstore_ops *ops = w->qs->ops;

	return ops->commit_begin && ops->commit_write && ops->commit_wait && ops->flush &&
	       ops->commit_end && ops->commit_begin(w->wr, w->qid) == 1;
}

/* qstore_group_failed - c's step returned rc: on failure the backend freed c's writer. */
static void qstore_group_failed(struct qstore_commit *c, int rc, int e)
{
	if (rc == 0)
		return;
	c->rc = -1;
	qstore_set_errnum(&c->errnum, e ? e : EIO);
	free(c->w);
	c->w = NULL;
}

void qstore_commit_group(struct qstore_commit *list)
{
	struct qstore *qs = list ? list->w->qs : NULL;
	char reason[256];
	int e, flush_errnum = 0;
	bool any = false;

	for (struct qstore_commit *c = list; c; c = c->next) {
		c->rc = 0;
		c->errnum = 0;
		c->reason[0] = '\0';
		e = 0;
		if (c->w->qs != qs) {
			snprintf(c->reason, sizeof(c->reason), "group commit across stores");
			c->w->qs->ops->abort(c->w->wr);
			qstore_group_failed(c, -1, EINVAL);
			continue;
		}
		qstore_group_failed(c, qs->ops->commit_write(c->w->wr, c->w->qid, &e, c->reason,
							     sizeof(c->reason)), e);
	}
	for (struct qstore_commit *c = list; c; c = c->next) {
		if (c->rc < 0)
			continue;
		e = 0;
		qstore_group_failed(c, qs->ops->commit_wait(c->w->wr, &e, c->reason,
							    sizeof(c->reason)), e);
		any |= c->rc == 0;
	}
	/* A failed flush fails each message, with its own reason (commit_end). */
	if (any && qs->ops->flush(qs->be, &e, reason, sizeof(reason)) < 0)
		flush_errnum = e ? e : EIO;
	for (struct qstore_commit *c = list; c; c = c->next) {
		if (c->rc < 0)
			continue;
		e = 0;
		memcpy(c->qid, c->w->qid, QID_SIZE);
		qstore_group_failed(c, qs->ops->commit_end(c->w->wr, flush_errnum, &e, c->reason,
							   sizeof(c->reason)), e);
		if (c->rc == 0) {
			free(c->w);
			c->w = NULL;
		} else {
			c->qid[0] = '\0';
		}
	}
}

void qstore_abort(struct qstore_writer **w)
{
	if (!w || !*w)
		return;
	(*w)->qs->ops->abort((*w)->wr);
	free(*w);
	*w = NULL;
}

/* ---- reading ---- */

/*
 * qstore_same_message - is the stored envelope ID (stored) the message
 * named qid?  A backend may recycle a removed message's storage (the spool
 * reuses inodes), so a reader racing a remove could find another message
 * under its handle.  Equal IDs match; so does an empty one (name wins).
 * After a commit collision the envelope keeps the ID first tried: made by
 * the same process (same pid part) and earlier, as one process's IDs only
 * grow (qid.h).  A recycled file holds a later ID or another pid's.
 */
static bool qstore_same_message(const char *stored, const char *qid)
{
	const size_t pid_off = QID_LEN - 5; /* 11 time characters, 5 of pid */

	if (!stored || !*stored || strcmp(stored, qid) == 0)
		return true;
	return qid_valid(stored) && memcmp(stored + pid_off, qid + pid_off, 5) == 0 &&
	       qid_time_us(stored) < qid_time_us(qid);
}

/* qstore_read_exact - len bytes at off or -1 (short file: corrupt). */
static int qstore_read_exact(struct qstore_reader *r, void *buf, size_t len, uint64_t off,
			     char *err, size_t errlen)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = r->qs->ops->pread(r->rd, (uint8_t *)buf + got, len - got, off + got,
					      err, errlen);

		if (n < 0)
			return -1;
		if (n == 0) {
			snprintf(err, errlen, "%s: truncated message file", r->qid);
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

struct qstore_reader *qstore_read(struct qstore *qs, const char *qid, int *errnum, char *err,
				  size_t errlen)
{
	return qstore_read_flags(qs, qid, 0, errnum, err, errlen);
}

struct qstore_reader *qstore_read_flags(struct qstore *qs, const char *qid, unsigned flags,
					int *errnum, char *err, size_t errlen)
{
	struct qstore_reader *r;
	uint8_t hdr[QSTORE_HDR], *buf;
	uint32_t len;

	if (!qid_valid(qid)) {
		snprintf(err, errlen, "not a queue ID: \"%s\"", qid);
		qstore_set_errnum(errnum, EINVAL);
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	r->qs = qs;
	r->flags = flags;
	memcpy(r->qid, qid, QID_SIZE);
	r->rd = qs->ops->read(qs->be, qid, flags, errnum, err, errlen);
	if (!r->rd) {
		free(r);
		return NULL;
	}
	qstore_set_errnum(errnum, EBADMSG);
	if (qstore_read_exact(r, hdr, sizeof(hdr), 0, err, errlen) < 0)
		goto fail;
	if (memcmp(hdr, QSTORE_MAGIC, 4) != 0) {
		snprintf(err, errlen, "%s: bad magic, not a queue file", qid);
		goto fail;
	}
	len = qstore_get_be32(hdr + 4);
	if (len > QSTORE_MAX_ENVELOPE) {
		snprintf(err, errlen, "%s: envelope length %u over limit %d", qid, len,
			 QSTORE_MAX_ENVELOPE);
		goto fail;
	}
	buf = xmalloc(len ? len : 1);
	if (qstore_read_exact(r, buf, len, QSTORE_HDR, err, errlen) < 0) {
		free(buf);
		goto fail;
	}
	r->stored = zfarm__envelope__unpack(NULL, len, buf);
	free(buf);
	if (!r->stored) {
		snprintf(err, errlen, "%s: envelope does not decode", qid);
		goto fail;
	}
	if (!qstore_same_message(r->stored->queue_id, qid)) {
		snprintf(err, errlen, "%s: file holds the envelope of %.*s", qid, QID_LEN,
			 r->stored->queue_id);
		goto fail;
	}
	r->view = *r->stored;
	r->view.queue_id = r->qid;
	r->view.arrival_us = (int64_t)qid_time_us(r->qid);
	r->content_off = QSTORE_HDR + (uint64_t)len;
	qstore_set_errnum(errnum, 0);
	return r;
fail:
	qstore_reader_free(&r);
	return NULL;
}

const Zfarm__Envelope *qstore_envelope(const struct qstore_reader *r)
{
	return &r->view;
}

ssize_t qstore_content(struct qstore_reader *r, void *buf, size_t len, char *err, size_t errlen)
{
	ssize_t n;

	if (len == 0)
		return 0;
	n = r->qs->ops->pread(r->rd, buf, len, r->content_off + r->pos, err, errlen);
	if (n > 0)
		r->pos += (uint64_t)n;
	return n;
}

int qstore_rewind(struct qstore_reader *r)
{
	r->pos = 0;
	return 0;
}

void qstore_reader_free(struct qstore_reader **r)
{
	if (!r || !*r)
		return;
	if ((*r)->stored)
		zfarm__envelope__free_unpacked((*r)->stored, NULL);
	if ((*r)->rd)
		(*r)->qs->ops->read_close((*r)->rd);
	free(*r);
	*r = NULL;
}

/* ---- control records ---- */

int qstore_ctl_pack(Zfarm__CtlRecord *const *recs, size_t n, uint8_t **data, size_t *len,
		    char *err, size_t errlen)
{
	size_t total = 0, off = 0;
	uint8_t *buf;

	*data = NULL;
	*len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t rl = zfarm__ctl_record__get_packed_size(recs[i]);

		if (rl > QSTORE_MAX_RECORD) {
			snprintf(err, errlen, "control record too large (%zu bytes)", rl);
			return -1;
		}
		total += 4 + rl;
	}
	if (total == 0)
		return 0;
	buf = xmalloc(total);
	for (size_t i = 0; i < n; i++) {
		size_t rl = zfarm__ctl_record__pack(recs[i], buf + off + 4);

		qstore_put_be32(buf + off, (uint32_t)rl);
		off += 4 + rl;
	}
	*data = buf;
	*len = total;
	return 0;
}

static int qstore_ctl_append_bytes(struct qstore *qs, const char *qid, const uint8_t *data,
				   size_t len, bool sync, char *err, size_t errlen)
{
	if (!qid_valid(qid)) {
		snprintf(err, errlen, "not a queue ID: \"%s\"", qid);
		return -1;
	}
	if (len == 0)
		return 0;
	return qs->ops->ctl_append(qs->be, qid, data, len, sync, err, errlen);
}

int qstore_ctl_append_packed(struct qstore *qs, const char *qid, const uint8_t *data, size_t len,
			     char *err, size_t errlen)
{
	return qstore_ctl_append_bytes(qs, qid, data, len, true, err, errlen);
}

static int qstore_ctl_append_recs(struct qstore *qs, const char *qid, Zfarm__CtlRecord *const *recs,
				  size_t n, bool sync, char *err, size_t errlen)
{
	uint8_t *buf;
	size_t total;
	int rc;

	if (!qid_valid(qid)) {
		snprintf(err, errlen, "not a queue ID: \"%s\"", qid);
		return -1;
	}
	if (qstore_ctl_pack(recs, n, &buf, &total, err, errlen) < 0)
		return -1;
	rc = qstore_ctl_append_bytes(qs, qid, buf, total, sync, err, errlen);
	free(buf);
	return rc;
}

int qstore_ctl_append(struct qstore *qs, const char *qid, Zfarm__CtlRecord *const *recs, size_t n,
		      char *err, size_t errlen)
{
	return qstore_ctl_append_recs(qs, qid, recs, n, true, err, errlen);
}

int qstore_ctl_append_lazy(struct qstore *qs, const char *qid, Zfarm__CtlRecord *const *recs,
			   size_t n, char *err, size_t errlen)
{
	return qstore_ctl_append_recs(qs, qid, recs, n, false, err, errlen);
}

/* qstore_all_zero - a zero-filled tail, as a crash may leave after an append. */
static bool qstore_all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

size_t qstore_ctl_valid_len(const uint8_t *data, size_t len)
{
	size_t off = 0;

	/* Where qstore_ctl_load() stops, without decoding all records. */
	while (off < len) {
		uint32_t rlen;

		if (len - off < 4 || qstore_all_zero(data + off, len - off))
			break;
		rlen = qstore_get_be32(data + off);
		if (rlen == 0 || len - off - 4 < rlen)
			break;
		if (rlen > QSTORE_MAX_RECORD)
			return len; /* damage, not a crash's tail: leave it to be seen */
		if (off + 4 + rlen == len) {
			/* The last record: a crash may have left zeros in it. */
			Zfarm__CtlRecord *rec = zfarm__ctl_record__unpack(NULL, rlen, data + off + 4);

			if (!rec)
				break;
			zfarm__ctl_record__free_unpacked(rec, NULL);
		}
		off += 4 + rlen;
	}
	return off;
}

int qstore_ctl_repair(struct qstore *qs, const char *qid, char *err, size_t errlen)
{
	uint8_t *data = NULL;
	size_t len = 0, valid;

	if (!qid_valid(qid)) {
		snprintf(err, errlen, "not a queue ID: \"%s\"", qid);
		return -1;
	}
	if (qs->ops->ctl_read(qs->be, qid, &data, &len, err, errlen) < 0)
		return -1;
	valid = qstore_ctl_valid_len(data, len);
	free(data);
	if (valid == len)
		return 0;
	return qs->ops->ctl_truncate(qs->be, qid, valid, err, errlen) < 0 ? -1 : 1;
}

/*
 * qstore_ctl_decode - the records of a control area (data, len bytes) into
 * a malloc'ed array; data stays the caller's.  See qstore_ctl_load.
 */
static int qstore_ctl_decode(const char *qid, const uint8_t *data, size_t len,
			     Zfarm__CtlRecord ***recs, size_t *n, char *err, size_t errlen)
{
	Zfarm__CtlRecord **out = NULL;
	size_t count = 0, cap = 0, off = 0;

	while (off < len) {
		Zfarm__CtlRecord *rec;
		uint32_t rlen;

		/*
		 * A torn append leaves a prefix of the last record, or after a
		 * crash a tail of zeros: stop there.  Only the bounds check and
		 * a bad record with more after it are errors.
		 */
		if (len - off < 4 || qstore_all_zero(data + off, len - off))
			break;
		rlen = qstore_get_be32(data + off);
		if (rlen == 0)
			break; /* never written: zeros, then a crash's leftovers */
		if (rlen > QSTORE_MAX_RECORD) {
			snprintf(err, errlen, "%s: control record at %zu: length %u over limit",
				 qid, off, rlen);
			goto fail;
		}
		if (len - off - 4 < rlen)
			break;
		rec = zfarm__ctl_record__unpack(NULL, rlen, data + off + 4);
		if (!rec) {
			/* The last record: a crash may have left zeros in it. */
			if (off + 4 + rlen == len)
				break;
			snprintf(err, errlen, "%s: control record at %zu does not decode", qid,
				 off);
			goto fail;
		}
		if (count == cap) {
			cap = cap ? cap * 2 : 8;
			out = xreallocarray(out, cap, sizeof(*out));
		}
		out[count++] = rec;
		off += 4 + rlen;
	}
	*recs = out;
	*n = count;
	return 0;
fail:
	qstore_ctl_free(&out, count);
	return -1;
}

int qstore_ctl_load(struct qstore *qs, const char *qid, Zfarm__CtlRecord ***recs, size_t *n,
		    char *err, size_t errlen)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	*recs = NULL;
	*n = 0;
	if (!qid_valid(qid)) {
		snprintf(err, errlen, "not a queue ID: \"%s\"", qid);
		return -1;
	}
	if (qs->ops->ctl_read(qs->be, qid, &data, &len, err, errlen) < 0)
		return -1;
	rc = qstore_ctl_decode(qid, data, len, recs, n, err, errlen);
	free(data);
	return rc;
}

int qstore_reader_ctl_load(struct qstore_reader *r, Zfarm__CtlRecord ***recs, size_t *n,
			   char *err, size_t errlen)
{
	const struct qstore_ops *ops = r->qs->ops;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	*recs = NULL;
	*n = 0;
	rc = ops->rd_ctl_read ? ops->rd_ctl_read(r->rd, &data, &len, err, errlen)
			      : ops->ctl_read(r->qs->be, r->qid, &data, &len, err, errlen);
	if (rc < 0)
		return -1;
	rc = qstore_ctl_decode(r->qid, data, len, recs, n, err, errlen);
	free(data);
	return rc;
}

int qstore_reader_ctl_append_lazy(struct qstore_reader *r, Zfarm__CtlRecord *const *recs,
				  size_t n, char *err, size_t errlen)
{
	const struct qstore_ops *ops = r->qs->ops;
	uint8_t *buf;
	size_t total;
	int rc;

	if (!(r->flags & QSTORE_APPEND)) {
		snprintf(err, errlen, "%s: not opened for appending", r->qid);
		return -1;
	}
	if (qstore_ctl_pack(recs, n, &buf, &total, err, errlen) < 0)
		return -1;
	if (total == 0)
		return 0;
	rc = ops->rd_ctl_append
		 ? ops->rd_ctl_append(r->rd, buf, total, false, err, errlen)
		 : ops->ctl_append(r->qs->be, r->qid, buf, total, false, err, errlen);
	free(buf);
	return rc;
}

void qstore_ctl_free(Zfarm__CtlRecord ***recs, size_t n)
{
	if (!recs || !*recs)
		return;
	for (size_t i = 0; i < n; i++)
		zfarm__ctl_record__free_unpacked((*recs)[i], NULL);
	free(*recs);
	*recs = NULL;
}

/* ---- queue management ---- */

int qstore_remove(struct qstore *qs, const char *qid, char *err, size_t errlen)
{
	if (!qid_valid(qid)) {
		snprintf(err, errlen, "not a queue ID: \"%s\"", qid);
		return -1;
	}
	return qs->ops->remove(qs->be, qid, err, errlen);
}

int qstore_quarantine(struct qstore *qs, const char *qid, char *err, size_t errlen)
{
	if (!qid_valid(qid)) {
		snprintf(err, errlen, "not a queue ID: \"%s\"", qid);
		return -1;
	}
	return qs->ops->quarantine(qs->be, qid, err, errlen);
}

int qstore_scan(struct qstore *qs, int (*fn)(const char *qid, void *arg),
		void (*bad_fn)(const char *name, void *arg), void *arg, char *err, size_t errlen)
{
	return qs->ops->scan(qs->be, fn, bad_fn, arg, err, errlen);
}

int qstore_sweep(struct qstore *qs, char *err, size_t errlen)
{
	return qs->ops->sweep(qs->be, err, errlen);
}

int qstore_trim(struct qstore *qs, char *err, size_t errlen)
{
	return qs->ops->trim ? qs->ops->trim(qs->be, err, errlen) : 0;
}
