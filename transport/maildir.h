/*
 * maildir - deliver one message into a Maildir (tmp/, new/, cur/), the
 * way the Maildir specification and Dovecot expect it.
 *
 * A delivery:
 *   1. a unique name, "<sec>.M<usec>P<pid>Q<counter>R<random>.<host>"
 *      (host with '/' written \057 and ':' written \072, as the spec asks);
 *   2. tmp/NAME created exclusively (O_EXCL, mode 0600), the message
 *      streamed into it from the caller's fill callback through an evbuffer
 *      that is written out whenever it holds more than MAILDIR_FLUSH bytes
 *      (memory stays bounded whatever the message size);
 *   3. fsync of the file, rename to new/NAME,S=<size> (Dovecot's size
 *      field), fsync of new/: the message is durable before the caller
 *      reports it delivered.
 * Any failure unlinks tmp/NAME and returns -1 with the errno in *errnum
 * (ENOSPC, EDQUOT, EIO, EACCES...) and a reason; nothing appears in new/.
 *
 * maildir_mkpath() creates missing directories (mkdir -p, mode given);
 * the local transport also uses it for the parents of mbox files.
 *
 * Identity: files and directories are made with the process's effective
 * uid/gid; the caller (transport/local.c) switches identity before.
 *
 * Callers: transport/local.c and tests/transport/test_maildir.c.
 * Library code: errors are returned with a reason, never logged.
 */
#ifndef ZFARM_TRANSPORT_MAILDIR_H
#define ZFARM_TRANSPORT_MAILDIR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct evbuffer;

/* Buffered output is written to the file once it exceeds this. */
#define MAILDIR_FLUSH (64 * 1024)

/* Longest unique name (the host part is cut to fit). */
#define MAILDIR_NAME_MAX 255

/*
 * maildir_host - host with '/' → "\057" and ':' → "\072" (and control
 * characters, blanks and '.'-only names replaced) into out, cut to fit.
 */
void maildir_host(char *out, size_t outlen, const char *host);

/*
 * maildir_unique - the unique name for these values (host already
 * sanitised) into buf; -1 if it does not fit.
 */
int maildir_unique(char *buf, size_t buflen, uint64_t sec, unsigned usec, unsigned long pid,
		   unsigned long counter, uint32_t rnd, const char *host);

/*
 * maildir_mkpath - create path and its missing parents with mode (umask
 * applies); an existing directory is fine, an existing non-directory is
 * ENOTDIR.  -1 + *errnum + reason.
 */
int maildir_mkpath(const char *path, mode_t mode, int *errnum, char *err, size_t errlen);

/*
 * maildir_deliver - write one message into the Maildir dir (dir, dir/tmp,
 * dir/new and dir/cur are created with mode 0700 when missing).  fill
 * appends the next part of the message to out: 1 more to come, 0 the end
 * (after appending the last part), -1 + reason.  host is the unsanitised
 * host name.  On success name (if not NULL) gets the final file name
 * in new/ and *size the bytes written.  -1 + *errnum (0 for a fill error)
 * + reason.
 */
int maildir_deliver(const char *dir, const char *host,
		    int (*fill)(void *arg, struct evbuffer *out, char *err, size_t errlen),
		    void *arg, char *name, size_t namelen, uint64_t *size, int *errnum, char *err,
		    size_t errlen);

#endif
