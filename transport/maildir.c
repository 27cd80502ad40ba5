/*
 * maildir - Maildir delivery (see maildir.h).
 */
#include "transport/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>

/* Deliveries by this process: the Q part of the name. */
static unsigned long maildir_counter;

void maildir_host(char *out, size_t outlen, const char *host)
{
	size_t o = 0;

	if (outlen == 0)
		return;
	if (!host || !host[0] || strcmp(host, ".") == 0 || strcmp(host, "..") == 0)
		host = "localhost";
	for (const char *p = host; *p; p++) {
		const char *rep = NULL;
		char one[2] = {*p, '\0'};
		size_t n;

		if (*p == '/')
			rep = "\\057";
		else if (*p == ':')
			rep = "\\072";
		else if ((unsigned char)*p <= ' ' || *p == 0x7f)
			rep = "_";
		else
			rep = one;
		n = strlen(rep);
		if (o + n >= outlen)
			break;
		memcpy(out + o, rep, n);
		o += n;
	}
	out[o] = '\0';
}

int maildir_unique(char *buf, size_t buflen, uint64_t sec, unsigned usec, unsigned long pid,
		   unsigned long counter, uint32_t rnd, const char *host)
{
	int n = snprintf(buf, buflen, "%" PRIu64 ".M%uP%luQ%luR%08" PRIx32 ".%s", sec, usec, pid,
			 counter, rnd, host);

	return n < 0 || (size_t)n >= buflen ? -1 : 0;
}

int maildir_mkpath(const char *path, mode_t mode, int *errnum, char *err, size_t errlen)
{
	char buf[4096];
	size_t len = strlen(path);
	struct stat st;

	*errnum = 0;
	if (len == 0 || len >= sizeof(buf)) {
		*errnum = ENAMETOOLONG;
		snprintf(err, errlen, "bad directory path \"%.200s\"", path);
		return -1;
	}
	memcpy(buf, path, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	/* Each prefix ending before a '/', then the whole path. */
	for (size_t i = 1; i <= len; i++) {
		if (i < len && buf[i] != '/')
			continue;
		if (i < len && buf[i - 1] == '/')
			continue; /* "//" */
		buf[i] = '\0';
		int e = mkdir(buf, mode) < 0 ? errno : 0;

		if (e && e != EEXIST) {
			*errnum = e;
			snprintf(err, errlen, "cannot create directory %s: %s", buf, strerror(e));
			return -1;
		}
		if (i == len || e == EEXIST) {
			if (stat(buf, &st) < 0) {
				*errnum = errno;
				snprintf(err, errlen, "cannot stat %s: %s", buf, strerror(errno));
				return -1;
			}
			if (!S_ISDIR(st.st_mode)) {
				*errnum = ENOTDIR;
				snprintf(err, errlen, "%s is not a directory", buf);
				return -1;
			}
		}
		if (i < len)
			buf[i] = '/';
	}
	return 0;
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

static int fsync_dir(const char *dir, int *errnum)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		*errnum = errno;
		return -1;
	}
	if (fsync(fd) < 0) {
		*errnum = errno;
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static uint32_t maildir_random(void)
{
	uint32_t r;
	struct timeval tv;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		return r;
	gettimeofday(&tv, NULL);
	return (uint32_t)tv.tv_usec * 2654435761u ^ (uint32_t)getpid();
}

int maildir_deliver(const char *dir, const char *host,
		    int (*fill)(void *arg, struct evbuffer *out, char *err, size_t errlen),
		    void *arg, char *name, size_t namelen, uint64_t *size, int *errnum, char *err,
		    size_t errlen)
{
	static const char *const subs[] = {"tmp", "new", "cur"};
	char hostbuf[128], uniq[MAILDIR_NAME_MAX + 1], final[MAILDIR_NAME_MAX + 32];
	char tmppath[4400], newpath[4600], newdir[4200], why[512];
	struct evbuffer *out = NULL;
	struct timeval tv;
	uint64_t written = 0;
	int fd = -1, rc;

	*errnum = 0;
	if (maildir_mkpath(dir, 0700, errnum, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < 3; i++) {
		char sub[4200];

		snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
		if (maildir_mkpath(sub, 0700, errnum, err, errlen) < 0)
			return -1;
	}
	maildir_host(hostbuf, sizeof(hostbuf), host);
	gettimeofday(&tv, NULL);
	if (maildir_unique(uniq, sizeof(uniq), (uint64_t)tv.tv_sec, (unsigned)tv.tv_usec,
			   (unsigned long)getpid(), ++maildir_counter, maildir_random(),
			   hostbuf) < 0) {
		*errnum = ENAMETOOLONG;
		snprintf(err, errlen, "maildir file name too long");
		return -1;
	}
	snprintf(tmppath, sizeof(tmppath), "%s/tmp/%s", dir, uniq);
	snprintf(newdir, sizeof(newdir), "%s/new", dir);
	fd = open(tmppath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		*errnum = errno;
		snprintf(err, errlen, "cannot create %s: %s", tmppath, strerror(errno));
		return -1;
	}
	out = evbuffer_new();
	if (!out) {
		*errnum = ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail_quiet;
	}
	do {
		why[0] = '\0';
		rc = fill(arg, out, why, sizeof(why));
		if (rc < 0) {
			*errnum = 0;
			snprintf(err, errlen, "%s", why[0] ? why : "cannot read the message");
			goto fail_quiet;
		}
		if (rc == 0 || evbuffer_get_length(out) > MAILDIR_FLUSH) {
			written += evbuffer_get_length(out);
			if (drain(out, fd, errnum) < 0)
				goto fail;
		}
	} while (rc > 0);
	if (fsync(fd) < 0) {
		*errnum = errno;
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		*errnum = errno;
		goto fail;
	}
	fd = -1;
	snprintf(final, sizeof(final), "%s,S=%" PRIu64, uniq, written);
	snprintf(newpath, sizeof(newpath), "%s/%s", newdir, final);
	if (rename(tmppath, newpath) < 0) {
		*errnum = errno;
		goto fail;
	}
	if (fsync_dir(newdir, errnum) < 0) {
		/* It is in new/ but not known durable: the caller retries (a duplicate at worst).
		 */
		snprintf(err, errlen, "cannot sync %s: %s", newdir, strerror(*errnum));
		unlink(newpath);
		evbuffer_free(out);
		return -1;
	}
	evbuffer_free(out);
	if (name)
		snprintf(name, namelen, "%s", final);
	if (size)
		*size = written;
	return 0;

fail:
	snprintf(err, errlen, "cannot write %s: %s", tmppath, strerror(*errnum));
fail_quiet:
	if (fd >= 0)
		close(fd);
	unlink(tmppath);
	if (out)
		evbuffer_free(out);
	return -1;
}
