/* pidfile - locked pid file; see pidfile.h. */
#include "farmd/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/xalloc.h"

struct pidfile {
	int fd;
	char *path;
};

pid_t pidfile_read(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return (pid_t)strtol(buf, NULL, 10);
}

struct pidfile *pidfile_acquire(const char *path, char *err, size_t errlen)
{
	struct pidfile *pf;
	char buf[32];
	int fd, n;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		close(fd);
		if (e == EWOULDBLOCK)
			snprintf(err, errlen, "%s is locked: farmd pid %ld already runs here", path,
				 (long)pidfile_read(path));
		else
			snprintf(err, errlen, "lock %s: %s", path, strerror(e));
		return NULL;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		snprintf(err, errlen, "write %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	pf = xmalloc(sizeof(*pf));
	pf->fd = fd;
	pf->path = xstrdup(path);
	return pf;
}

void pidfile_release(struct pidfile **pfp)
{
	struct pidfile *pf = *pfp;

	if (pf == NULL)
		return;
	unlink(pf->path);
	close(pf->fd);
	free(pf->path);
	free(pf);
	*pfp = NULL;
}
