/*
 * qstore_spool - the spool-directory queue store backend ("spool").
 *
 * Layout and durability as in qstore.h.  All names are opened relative to
 * a descriptor of the queue directory (openat and friends), so the spool
 * keeps working if its path is renamed and paths never need building from
 * untrusted parts: every name here is a fixed word or a valid queue ID.
 *
 * Order of operations, and what a crash at each point leaves:
 *   commit:  tmp/N written, fsync'ed; linked to msg/XX/ID; msg/XX fsync'ed;
 *            tmp/N unlinked.  Before the link: a tmp/ leftover, swept at
 *            start.  After: the message (and maybe a tmp/ twin, swept).
 *   remove:  msg/XX/ID unlinked, msg/XX fsync'ed, then ctl/XX/ID unlinked.
 *            A crash in between leaves a control record without message,
 *            which scan never sees (it walks msg/) and which is harmless.
 *            The other order could leave a message without its delivery
 *            state: delivered again to every recipient.
 *   ctl:     O_APPEND write + fsync (and ctl/XX fsync on creation); a torn
 *            append is cut back (ftruncate) or, after a crash, ignored by
 *            qstore_ctl_load().
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/qstore.h"
#include "common/xalloc.h"

/* Defined here, declared where the backend table is (qstore.c). */
extern const struct qstore_ops qstore_spool_ops;

#define SPOOL_PATH    64 /* "msg/XX/" + ID + ".ctl" fits with room to spare */
#define SPOOL_MAX_CTL (256 * 1024 * 1024)

struct spool {
	int dfd; /* the queue directory */
	char *dir;
	unsigned long tmp_seq;
};

struct spool_writer {
	struct spool *sp;
	int fd;
	char tmp[SPOOL_PATH];
	bool failed;
};

struct spool_reader {
	int fd;
	char qid[QID_SIZE];
};

static const char *const spool_subdirs[] = {"tmp", "msg", "ctl", "corrupt"};

static void spool_errnum(int *errnum, int e)
{
	if (errnum)
		*errnum = e;
}

/* spool_path - "top/XX/ID" for a valid queue ID. */
static void spool_path(char out[SPOOL_PATH], const char *top, const char *qid)
{
	snprintf(out, SPOOL_PATH, "%s/%s/%s", top, qid + QID_LEN - 2, qid);
}

/* spool_fsync_dir - fsync a directory relative to the queue directory. */
static int spool_fsync_dir(struct spool *sp, const char *name)
{
	int fd = openat(sp->dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, e;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* spool_mkdir_xx - top/XX for qid exists (and is durable if new). */
static int spool_mkdir_xx(struct spool *sp, const char *top, const char *qid)
{
	char name[SPOOL_PATH];

	snprintf(name, sizeof(name), "%s/%s", top, qid + QID_LEN - 2);
	if (mkdirat(sp->dfd, name, 0700) == 0)
		return spool_fsync_dir(sp, top);
	return errno == EEXIST ? 0 : -1;
}

static void *spool_open(const char *dir, char *err, size_t errlen)
{
	struct spool *sp;
	int dfd;

	if (!dir || !*dir) {
		snprintf(err, errlen, "spool: no queue directory given");
		return NULL;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: mkdir: %s", dir, strerror(errno));
		return NULL;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	for (size_t i = 0; i < sizeof(spool_subdirs) / sizeof(spool_subdirs[0]); i++) {
		struct stat st;

		if (mkdirat(dfd, spool_subdirs[i], 0700) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s/%s: mkdir: %s", dir, spool_subdirs[i],
				 strerror(errno));
			close(dfd);
			return NULL;
		}
		if (fstatat(dfd, spool_subdirs[i], &st, 0) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "%s/%s: not a directory", dir, spool_subdirs[i]);
			close(dfd);
			return NULL;
		}
	}
	sp = xcalloc(1, sizeof(*sp));
	sp->dfd = dfd;
	sp->dir = xstrdup(dir);
	return sp;
}

static void spool_close(void *be)
{
	struct spool *sp = be;

	close(sp->dfd);
	free(sp->dir);
	free(sp);
}

static long long spool_free_bytes(void *be)
{
	struct spool *sp = be;
	struct statvfs vfs;

	if (fstatvfs(sp->dfd, &vfs) < 0)
		return -1;
	return (long long)vfs.f_bavail * (long long)vfs.f_frsize;
}

static void *spool_create(void *be, int *errnum, char *err, size_t errlen)
{
	struct spool *sp = be;
	struct spool_writer *w = xcalloc(1, sizeof(*w));

	w->sp = sp;
	/* Unique per process and open; O_EXCL catches the rest. */
	for (int tries = 0; tries < 100; tries++) {
		snprintf(w->tmp, sizeof(w->tmp), "tmp/%ld.%llu.%lu", (long)getpid(),
			 (unsigned long long)clock_mono_ms(), ++sp->tmp_seq);
		w->fd = openat(sp->dfd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (w->fd >= 0 || errno != EEXIST)
			break;
	}
	if (w->fd < 0) {
		spool_errnum(errnum, errno);
		snprintf(err, errlen, "%s/%s: %s", sp->dir, w->tmp, strerror(errno));
		free(w);
		return NULL;
	}
	return w;
}

/* spool_fail - drop the tmp file at once, giving its space back. */
static void spool_fail(struct spool_writer *w)
{
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
		unlinkat(w->sp->dfd, w->tmp, 0);
	}
	w->failed = true;
}

static int spool_write(void *wr, const void *data, size_t len, int *errnum, char *err,
		       size_t errlen)
{
	struct spool_writer *w = wr;
	const uint8_t *p = data;

	if (w->failed) {
		spool_errnum(errnum, EIO);
		snprintf(err, errlen, "message already failed");
		return -1;
	}
	while (len > 0) {
		ssize_t n = write(w->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : ENOSPC;

			spool_errnum(errnum, e);
			snprintf(err, errlen, "%s/%s: write: %s", w->sp->dir, w->tmp, strerror(e));
			spool_fail(w);
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void spool_abort(void *wr)
{
	struct spool_writer *w = wr;

	spool_fail(w);
	free(w);
}

static int spool_commit(void *wr, const char *qid, int *errnum, char *err, size_t errlen)
{
	struct spool_writer *w = wr;
	struct spool *sp = w->sp;
	char msg[SPOOL_PATH], xx[SPOOL_PATH];
	int e;

	if (w->failed) {
		spool_errnum(errnum, EIO);
		snprintf(err, errlen, "message failed while being received");
		spool_abort(w);
		return -1;
	}
	spool_path(msg, "msg", qid);
	snprintf(xx, sizeof(xx), "msg/%s", qid + QID_LEN - 2);
	if (fsync(w->fd) < 0) {
		e = errno;
		snprintf(err, errlen, "%s/%s: fsync: %s", sp->dir, w->tmp, strerror(e));
		goto fail;
	}
	if (spool_mkdir_xx(sp, "msg", qid) < 0) {
		e = errno;
		snprintf(err, errlen, "%s/%s: mkdir: %s", sp->dir, xx, strerror(e));
		goto fail;
	}
	if (linkat(sp->dfd, w->tmp, sp->dfd, msg, 0) < 0) {
		e = errno;
		snprintf(err, errlen, "%s/%s: link: %s", sp->dir, msg, strerror(e));
		if (e == EEXIST) {
			/* A collision: the writer stays for a retry with a new ID. */
			spool_errnum(errnum, e);
			return -1;
		}
		goto fail;
	}
	if (spool_fsync_dir(sp, xx) < 0) {
		e = errno;
		snprintf(err, errlen, "%s/%s: fsync: %s", sp->dir, xx, strerror(e));
		unlinkat(sp->dfd, msg, 0);
		goto fail;
	}
	/* Durable now; a leftover tmp name is only swept. */
	unlinkat(sp->dfd, w->tmp, 0);
	close(w->fd);
	free(w);
	return 0;
fail:
	spool_errnum(errnum, e);
	spool_abort(w);
	return -1;
}

static void *spool_read(void *be, const char *qid, int *errnum, char *err, size_t errlen)
{
	struct spool *sp = be;
	struct spool_reader *r;
	char msg[SPOOL_PATH];
	int fd;

	spool_path(msg, "msg", qid);
	fd = openat(sp->dfd, msg, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		spool_errnum(errnum, errno);
		if (errno == ENOENT)
			snprintf(err, errlen, "%s: no such message", qid);
		else
			snprintf(err, errlen, "%s/%s: %s", sp->dir, msg, strerror(errno));
		return NULL;
	}
	r = xmalloc(sizeof(*r));
	r->fd = fd;
	memcpy(r->qid, qid, QID_SIZE);
	return r;
}

static ssize_t spool_pread(void *rd, void *buf, size_t len, uint64_t off, char *err, size_t errlen)
{
	struct spool_reader *r = rd;
	ssize_t n;

	do
		n = pread(r->fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		snprintf(err, errlen, "%s: read: %s", r->qid, strerror(errno));
	return n;
}

static void spool_read_close(void *rd)
{
	struct spool_reader *r = rd;

	close(r->fd);
	free(r);
}

static int spool_ctl_append(void *be, const char *qid, const void *data, size_t len, char *err,
			    size_t errlen)
{
	struct spool *sp = be;
	char ctl[SPOOL_PATH], xx[SPOOL_PATH];
	const uint8_t *p = data;
	bool created = false;
	struct stat st = {.st_size = -1};
	int fd;

	spool_path(ctl, "ctl", qid);
	snprintf(xx, sizeof(xx), "ctl/%s", qid + QID_LEN - 2);
	fd = openat(sp->dfd, ctl, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (spool_mkdir_xx(sp, "ctl", qid) < 0) {
			snprintf(err, errlen, "%s/%s: mkdir: %s", sp->dir, xx, strerror(errno));
			return -1;
		}
		fd = openat(sp->dfd, ctl, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		created = true;
	}
	if (fd < 0) {
		snprintf(err, errlen, "%s/%s: %s", sp->dir, ctl, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0)
		goto fail;
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = ENOSPC;
			goto fail;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0)
		goto fail;
	close(fd);
	if (created && spool_fsync_dir(sp, xx) < 0) {
		snprintf(err, errlen, "%s/%s: fsync: %s", sp->dir, xx, strerror(errno));
		return -1;
	}
	return 0;
fail:
	snprintf(err, errlen, "%s/%s: %s", sp->dir, ctl, strerror(errno));
	/* No torn record left behind while we can help it. */
	if (st.st_size >= 0 && ftruncate(fd, st.st_size) == 0)
		fsync(fd);
	close(fd);
	return -1;
}

static int spool_ctl_read(void *be, const char *qid, uint8_t **data, size_t *len, char *err,
			  size_t errlen)
{
	struct spool *sp = be;
	char ctl[SPOOL_PATH];
	size_t got = 0, cap = 0;
	uint8_t *buf = NULL;
	int fd;

	*data = NULL;
	*len = 0;
	spool_path(ctl, "ctl", qid);
	fd = openat(sp->dfd, ctl, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s/%s: %s", sp->dir, ctl, strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n;

		if (got == cap) {
			if (cap >= SPOOL_MAX_CTL) {
				snprintf(err, errlen, "%s/%s: control record over %d bytes",
					 sp->dir, ctl, SPOOL_MAX_CTL);
				goto fail;
			}
			cap = cap ? cap * 2 : 4096;
			buf = xrealloc(buf, cap);
		}
		n = read(fd, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s/%s: read: %s", sp->dir, ctl, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*data = buf;
	*len = got;
	return 0;
fail:
	close(fd);
	free(buf);
	return -1;
}

static int spool_remove(void *be, const char *qid, char *err, size_t errlen)
{
	struct spool *sp = be;
	char msg[SPOOL_PATH], ctl[SPOOL_PATH], xx[SPOOL_PATH];
	int rc = 0;

	spool_path(msg, "msg", qid);
	spool_path(ctl, "ctl", qid);
	snprintf(xx, sizeof(xx), "msg/%s", qid + QID_LEN - 2);
	/* Message first (see the top of this file), made durable, then ctl. */
	if (unlinkat(sp->dfd, msg, 0) < 0) {
		if (errno == ENOENT)
			snprintf(err, errlen, "%s: no such message", qid);
		else
			snprintf(err, errlen, "%s/%s: unlink: %s", sp->dir, msg, strerror(errno));
		if (errno != ENOENT)
			return -1;
		rc = -1; /* still clear an orphaned control record */
	} else if (spool_fsync_dir(sp, xx) < 0) {
		snprintf(err, errlen, "%s/%s: fsync: %s", sp->dir, xx, strerror(errno));
		return -1;
	}
	if (unlinkat(sp->dfd, ctl, 0) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s/%s: unlink: %s", sp->dir, ctl, strerror(errno));
		return -1;
	}
	return rc;
}

static int spool_quarantine(void *be, const char *qid, char *err, size_t errlen)
{
	struct spool *sp = be;
	char from[SPOOL_PATH], to[SPOOL_PATH];
	int moved = 0;

	spool_path(from, "msg", qid);
	snprintf(to, sizeof(to), "corrupt/%s", qid);
	if (renameat(sp->dfd, from, sp->dfd, to) == 0)
		moved++;
	else if (errno != ENOENT)
		goto fail;
	spool_path(from, "ctl", qid);
	snprintf(to, sizeof(to), "corrupt/%s.ctl", qid);
	if (renameat(sp->dfd, from, sp->dfd, to) == 0)
		moved++;
	else if (errno != ENOENT)
		goto fail;
	if (!moved) {
		snprintf(err, errlen, "%s: no such message", qid);
		return -1;
	}
	if (spool_fsync_dir(sp, "corrupt") < 0) {
		snprintf(err, errlen, "%s/corrupt: fsync: %s", sp->dir, strerror(errno));
		return -1;
	}
	return 0;
fail:
	snprintf(err, errlen, "%s/%s: rename: %s", sp->dir, from, strerror(errno));
	return -1;
}

static int spool_qid_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* spool_report_bad - hand "dir/msg/..." to bad_fn. */
static void spool_report_bad(struct spool *sp, void (*bad_fn)(const char *, void *), void *arg,
			     const char *sub, const char *name)
{
	char *path;

	if (!bad_fn)
		return;
	if (sub)
		path = xasprintf("%s/msg/%s/%s", sp->dir, sub, name);
	else
		path = xasprintf("%s/msg/%s", sp->dir, name);
	bad_fn(path, arg);
	free(path);
}

static bool spool_is_xx(const char *name)
{
	char probe[QID_SIZE];

	if (strlen(name) != 2)
		return false;
	/* A valid two-character tail of a queue ID. */
	memcpy(probe, "00000000000000", QID_LEN - 2);
	memcpy(probe + QID_LEN - 2, name, 3);
	return qid_valid(probe);
}

static int spool_scan(void *be, int (*fn)(const char *qid, void *arg),
		      void (*bad_fn)(const char *name, void *arg), void *arg, char *err,
		      size_t errlen)
{
	struct spool *sp = be;
	char(*ids)[QID_SIZE] = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *top;
	int fd, rc = 0;

	fd = openat(sp->dfd, "msg", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(top = fdopendir(fd))) {
		snprintf(err, errlen, "%s/msg: %s", sp->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((de = readdir(top))) {
		char xx[3];
		DIR *sub;
		int sfd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		sfd = spool_is_xx(de->d_name)
			  ? openat(dirfd(top), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
			  : -1;
		if (sfd < 0 || !(sub = fdopendir(sfd))) {
			if (sfd >= 0)
				close(sfd);
			spool_report_bad(sp, bad_fn, arg, NULL, de->d_name);
			continue;
		}
		memcpy(xx, de->d_name, sizeof(xx));
		while ((de = readdir(sub))) {
			const char *name = de->d_name;

			if (!strcmp(name, ".") || !strcmp(name, ".."))
				continue;
			/* An ID outside its own XX directory is not ours either. */
			if (!qid_valid(name) || strcmp(name + QID_LEN - 2, xx) != 0) {
				spool_report_bad(sp, bad_fn, arg, xx, name);
				continue;
			}
			if (n == cap) {
				cap = cap ? 2 * cap : 64;
				ids = xreallocarray(ids, cap, sizeof(*ids));
			}
			memcpy(ids[n++], name, QID_SIZE);
		}
		closedir(sub);
	}
	closedir(top);
	if (n)
		qsort(ids, n, sizeof(*ids), spool_qid_cmp);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = fn(ids[i], arg);
	free(ids);
	return rc;
}

static int spool_sweep(void *be, char *err, size_t errlen)
{
	struct spool *sp = be;
	struct dirent *de;
	int fd, count = 0;
	DIR *d;

	fd = openat(sp->dfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		snprintf(err, errlen, "%s/tmp: %s", sp->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			snprintf(err, errlen, "%s/tmp/%s: unlink: %s", sp->dir, de->d_name,
				 strerror(errno));
			closedir(d);
			return -1;
		}
		count++;
	}
	closedir(d);
	return count;
}

const struct qstore_ops qstore_spool_ops = {
    .name = "spool",
    .open = spool_open,
    .close = spool_close,
    .free_bytes = spool_free_bytes,
    .create = spool_create,
    .write = spool_write,
    .commit = spool_commit,
    .abort = spool_abort,
    .read = spool_read,
    .pread = spool_pread,
    .read_close = spool_read_close,
    .ctl_append = spool_ctl_append,
    .ctl_read = spool_ctl_read,
    .remove = spool_remove,
    .quarantine = spool_quarantine,
    .scan = spool_scan,
    .sweep = spool_sweep,
};
