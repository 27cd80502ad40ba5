/*
 * mbox - append one message to a UNIX mailbox file (mboxrd), locked the
 * way mail readers expect: a dotlock file and an fcntl() lock, both.
 *
 * A delivery is mbox_open(), mbox_append(), mbox_close():
 *   - mbox_open: the dotlock "PATH.lock" (made as a unique temporary
 *     file in the same directory and link()ed to the lock name, as
 *     Postfix and liblockfile do, so it works on NFS; a lock older than
 *     MBOX_STALE_SECONDS is taken for a crash leftover and removed), then
 *     the file, opened O_APPEND|O_NOFOLLOW|O_NONBLOCK (created 0600 when
 *     missing, and given to uid/gid when those are not -1), checked with
 *     fstat (a regular file with one link), then an fcntl() write lock.
 *     Locks are tried, not waited for: both are retried with short pauses
 *     until timeout_ms has passed, never longer.
 *   - mbox_append: the message from the caller's fill callback (the
 *     caller produces the From_ line and mboxrd-quoted content, see
 *     transport/body.h BODY_MBOX), written through an evbuffer flushed
 *     every MBOX_FLUSH bytes, then fsync.  On any write or sync error the
 *     file is truncated back to the size it had when locked, so no partial
 *     message is left behind.
 *   - mbox_close: unlock, close, remove the dotlock.
 *
 * Failures are -1 with *errnum and a reason; the errno values the local
 * transport maps:
 *   EPERM   the mailbox is a symbolic link, not a regular file, or has
 *           more than one hard link (permanent, Postfix's 5.2.0)
 *   EAGAIN  a lock could not be had within timeout_ms (temporary)
 *   ENOSPC, EDQUOT, EFBIG  the file system or quota is full
 *   0       the fill callback failed (the message could not be read)
 *   others  as the system call returned them
 *
 * Identity: everything happens with the effective uid/gid of the caller
 * (transport/local.c switches before); the dotlock needs write access to
 * the mailbox's directory.
 *
 * Callers: transport/local.c, tests/transport/test_mbox.c.
 * Library code: errors are returned with a reason, never logged.
 */
#ifndef ZFARM_TRANSPORT_MBOX_H
#define ZFARM_TRANSPORT_MBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct evbuffer;
struct mbox;

#define MBOX_FLUSH	   (64 * 1024)
#define MBOX_STALE_SECONDS 300

/*
 * mbox_from_line - "From SENDER DATE\n" into buf, DATE in asctime() form
 * of t in local time; sender "" is MAILER-DAEMON; blanks and control
 * characters in the sender become '_' (the line is split on blanks).
 * -1 if buf is too small.
 */
int mbox_from_line(char *buf, size_t buflen, const char *sender, time_t t);

/*
 * mbox_dotlock - create PATH.lock (see above) within timeout_ms; a lock
 * older than stale_s seconds is removed.  EAGAIN when it stays taken.
 */
int mbox_dotlock(const char *path, unsigned timeout_ms, unsigned stale_s, int *errnum, char *err,
		 size_t errlen);
/* mbox_dotunlock - remove PATH.lock. */
void mbox_dotunlock(const char *path);

/* mbox_lock_fd - fcntl() write lock on fd within timeout_ms; EAGAIN when held. */
int mbox_lock_fd(int fd, unsigned timeout_ms, int *errnum, char *err, size_t errlen);

/* mbox_truncate - back to size and fsync; -1 + *errnum. */
int mbox_truncate(int fd, off_t size, int *errnum, char *err, size_t errlen);

/* mbox_open - lock and open path (see above); NULL + *errnum + reason. */
struct mbox *mbox_open(const char *path, uid_t uid, gid_t gid, unsigned timeout_ms, int *errnum,
		       char *err, size_t errlen);

/* mbox_fd - the open, locked file. */
int mbox_fd(const struct mbox *m);

/*
 * mbox_append - write the message (fill as in maildir.h), fsync; *size
 * gets the bytes written.  On failure the file is back at its old size.
 */
int mbox_append(struct mbox *m,
		int (*fill)(void *arg, struct evbuffer *out, char *err, size_t errlen), void *arg,
		uint64_t *size, int *errnum, char *err, size_t errlen);

/* mbox_close - unlock and close; NULL ok; *m = NULL. */
void mbox_close(struct mbox **m);

#endif
