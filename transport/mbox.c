/*
 * mbox - locked appends to UNIX mailbox files (see mbox.h).
 *
 * Waiting for a lock is polling with a deadline (pauses growing from 10
 * to 100 ms), never a blocking F_SETLKW or an unbounded loop: a reader
 * that holds its lock for ever costs a delivery at most timeout_ms and
 * the message is retried later.
 */
#include "transport/mbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/xalloc.h"

struct mbox {
	char *path;
	int fd;
	off_t size; /* when locked: what a failed append truncates back to */
};

/* Temporary names of this process's dotlock attempts. */
static unsigned long mbox_counter;

int mbox_from_line(char *buf, size_t buflen, const char *sender, time_t t)
{
	char date[64], who[1024];
	struct tm tm;
	size_t n = 0;
	int len;

	if (!sender || !sender[0])
		sender = "MAILER-DAEMON";
	for (const char *p = sender; *p && n < sizeof(who) - 1; p++)
		who[n++] = (unsigned char)*p <= ' ' || *p == 0x7f ? '_' : *p;
	who[n] = '\0';
	/* asctime() form, "Thu Nov 24 18:22:48 1986", without its locale. */
	if (!localtime_r(&t, &tm) || strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm) == 0)
		snprintf(date, sizeof(date), "Thu Jan  1 00:00:00 1970");
	len = snprintf(buf, buflen, "From %s %s\n", who, date);
	return len < 0 || (size_t)len >= buflen ? -1 : 0;
}

/* ---- deadlines ---- */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* pause_ms - sleep the next pause (growing), never past the deadline. */
static void pause_until(unsigned *step_ms, uint64_t deadline)
{
	uint64_t now = mono_ms();
	uint64_t ms = *step_ms;
	struct timespec ts;

	if (now >= deadline)
		return;
	if (ms > deadline - now)
		ms = deadline - now;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
	if (*step_ms < 100)
		*step_ms += 10;
}

/* ---- dotlock ---- */

int mbox_dotlock(const char *path, unsigned timeout_ms, unsigned stale_s, int *errnum, char *err,
		 size_t errlen)
{
	char *lock = xasprintf("%s.lock", path);
	char *tmp = xasprintf("%s.lock.%ld.%lu", path, (long)getpid(), ++mbox_counter);
	uint64_t deadline = mono_ms() + timeout_ms;
	unsigned step = 10;
	char pid[32];
	struct stat st;
	int fd, n, rc = -1;

	*errnum = 0;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		*errnum = errno;
		snprintf(err, errlen, "cannot create lock file %s: %s", tmp, strerror(errno));
		goto out;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	{
		ssize_t w = write(fd, pid, (size_t)n);
		int e = w == n ? 0 : w < 0 ? errno : EIO;

		if (close(fd) < 0 && !e)
			e = errno;
		if (e) {
			*errnum = e;
			snprintf(err, errlen, "cannot write lock file %s: %s", tmp, strerror(e));
			unlink(tmp);
			goto out;
		}
	}
	for (;;) {
		int e = link(tmp, lock) < 0 ? errno : 0;

		/* NFS: link() may fail after it succeeded; the link count tells. */
		if (stat(tmp, &st) == 0 && st.st_nlink == 2) {
			rc = 0;
			break;
		}
		if (e != EEXIST) {
			*errnum = e ? e : EIO;
			snprintf(err, errlen, "cannot create lock %s: %s", lock, strerror(*errnum));
			break;
		}
		if (lstat(lock, &st) == 0 && time(NULL) - st.st_mtime > (time_t)stale_s) {
			/* A crash leftover: remove it and try again at once. */
			unlink(lock);
			continue;
		}
		if (mono_ms() >= deadline) {
			*errnum = EAGAIN;
			snprintf(err, errlen, "mailbox is locked (%s exists)", lock);
			break;
		}
		pause_until(&step, deadline);
	}
	unlink(tmp);
out:
	free(lock);
	free(tmp);
	return rc;
}

void mbox_dotunlock(const char *path)
{
	char *lock = xasprintf("%s.lock", path);

	unlink(lock);
	free(lock);
}

/* ---- fcntl lock ---- */

int mbox_lock_fd(int fd, unsigned timeout_ms, int *errnum, char *err, size_t errlen)
{
	uint64_t deadline = mono_ms() + timeout_ms;
	unsigned step = 10;
	struct flock fl;

	*errnum = 0;
	for (;;) {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = 0;
		fl.l_len = 0;
		if (fcntl(fd, F_SETLK, &fl) == 0)
			return 0;
		if (errno != EAGAIN && errno != EACCES && errno != EINTR) {
			*errnum = errno;
			snprintf(err, errlen, "cannot lock the mailbox: %s", strerror(errno));
			return -1;
		}
		if (mono_ms() >= deadline) {
			*errnum = EAGAIN;
			snprintf(err, errlen, "mailbox is locked (fcntl lock held)");
			return -1;
		}
		pause_until(&step, deadline);
	}
}

int mbox_truncate(int fd, off_t size, int *errnum, char *err, size_t errlen)
{
	if (ftruncate(fd, size) < 0 || fsync(fd) < 0) {
		*errnum = errno;
		snprintf(err, errlen, "cannot truncate the mailbox back to %lld bytes: %s",
			 (long long)size, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- open, append, close ---- */

struct mbox *mbox_open(const char *path, uid_t uid, gid_t gid, unsigned timeout_ms, int *errnum,
		       char *err, size_t errlen)
{
	uint64_t start = mono_ms();
	unsigned left;
	struct stat st;
	struct mbox *m;
	bool created = true;
	int fd;

	*errnum = 0;
	if (mbox_dotlock(path, timeout_ms, MBOX_STALE_SECONDS, errnum, err, errlen) < 0)
		return NULL;
	fd =
	    open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
		 0600);
	if (fd < 0 && errno == EEXIST) {
		created = false;
		fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	}
	if (fd < 0) {
		*errnum = errno;
		if (errno == ELOOP) {
			*errnum = EPERM;
			snprintf(err, errlen, "mailbox %s is a symbolic link", path);
		} else if (errno == ENXIO || errno == EISDIR) {
			*errnum = EPERM;
			snprintf(err, errlen, "mailbox %s is not a regular file", path);
		} else {
			snprintf(err, errlen, "cannot open mailbox %s: %s", path, strerror(errno));
		}
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		*errnum = errno;
		snprintf(err, errlen, "cannot stat mailbox %s: %s", path, strerror(errno));
		goto fail_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		*errnum = EPERM;
		snprintf(err, errlen, "mailbox %s is not a regular file", path);
		goto fail_fd;
	}
	if (st.st_nlink != 1) {
		*errnum = EPERM;
		snprintf(err, errlen, "mailbox %s has %lu hard links", path,
			 (unsigned long)st.st_nlink);
		goto fail_fd;
	}
	if (created && uid != (uid_t)-1 && fchown(fd, uid, gid) < 0) {
		*errnum = errno;
		snprintf(err, errlen, "cannot give mailbox %s to uid %lu: %s", path,
			 (unsigned long)uid, strerror(errno));
		unlink(path);
		goto fail_fd;
	}
	left = (unsigned)(mono_ms() - start) < timeout_ms
		   ? timeout_ms - (unsigned)(mono_ms() - start)
		   : 0;
	if (mbox_lock_fd(fd, left, errnum, err, errlen) < 0)
		goto fail_fd;
	/* The size that counts is the one under the lock. */
	if (fstat(fd, &st) < 0) {
		*errnum = errno;
		snprintf(err, errlen, "cannot stat mailbox %s: %s", path, strerror(errno));
		goto fail_fd;
	}
	m = xcalloc(1, sizeof(*m));
	m->path = xstrdup(path);
	m->fd = fd;
	m->size = st.st_size;
	return m;

fail_fd:
	close(fd);
fail:
	mbox_dotunlock(path);
	return NULL;
}

int mbox_fd(const struct mbox *m)
{
	return m->fd;
}

/* drain - write all of b to fd; -1 + *errnum. */
static int drain(struct evbuffer *b, int fd, int *errnum)
{
	while (evbuffer_get_length(b) > 0) {
		int n = evbuffer_write(b, fd);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			*errnum = errno ? errno : EIO;
			return -1;
		}
		if (n == 0) {
			*errnum = EIO;
			return -1;
		}
	}
	return 0;
}

int mbox_append(struct mbox *m,
		int (*fill)(void *arg, struct evbuffer *out, char *err, size_t errlen), void *arg,
		uint64_t *size, int *errnum, char *err, size_t errlen)
{
	struct evbuffer *out = evbuffer_new();
	uint64_t written = 0;
	char why[512], terr[256];
	int rc, terrnum;

	*errnum = 0;
	if (!out) {
		*errnum = ENOMEM;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	do {
		why[0] = '\0';
		rc = fill(arg, out, why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "%s", why[0] ? why : "cannot read the message");
			goto fail;
		}
		if (rc == 0 || evbuffer_get_length(out) > MBOX_FLUSH) {
			written += evbuffer_get_length(out);
			if (drain(out, m->fd, errnum) < 0) {
				snprintf(err, errlen, "cannot write mailbox %s: %s", m->path,
					 strerror(*errnum));
				goto fail;
			}
		}
	} while (rc > 0);
	if (fsync(m->fd) < 0) {
		*errnum = errno;
		snprintf(err, errlen, "cannot sync mailbox %s: %s", m->path, strerror(errno));
		goto fail;
	}
	evbuffer_free(out);
	if (size)
		*size = written;
	return 0;

fail:
	evbuffer_free(out);
	if (mbox_truncate(m->fd, m->size, &terrnum, terr, sizeof(terr)) < 0) {
		size_t n = strlen(err);

		snprintf(err + n, n < errlen ? errlen - n : 0, "; %s", terr);
	}
	return -1;
}

void mbox_close(struct mbox **mp)
{
	struct mbox *m = mp ? *mp : NULL;
	struct flock fl;

	if (!m)
		return;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_UNLCK;
	fl.l_whence = SEEK_SET;
	fcntl(m->fd, F_SETLK, &fl);
	close(m->fd);
	mbox_dotunlock(m->path);
	free(m->path);
	free(m);
	*mp = NULL;
}
