/*
 * passwd_file - a password file of crypt(3) hashes, one user a line, and
 * the password check against it.
 *
 * The format is the common one of htpasswd and Dovecot's passwd-file:
 *
 *   # comment
 *   alice:$y$j9T$...:anything after a second colon is ignored
 *   bob:{SHA512-CRYPT}$6$...
 *   carol:!$6$...                 a "!" or "*" first: locked, never matches
 *
 * Hashes are crypt(3) modular format, checked with libcrypt's crypt_r:
 * yescrypt ($y$, $gy$, $7$), SHA-512 ($6$), SHA-256 ($5$) or bcrypt
 * ($2b$, $2y$, $2a$); Dovecot's scheme prefixes {CRYPT}, {SHA512-CRYPT},
 * {SHA256-CRYPT} and {BLF-CRYPT} are accepted and dropped.  DES and MD5
 * crypt, plain text and anything else are an error, as are a user name
 * given twice, a user name with blanks or control characters, and a line
 * without a colon.  Lines end with LF (a CR before it is dropped).
 * zfpasswd(8) writes such files.
 *
 * Called by the smtpserver's passwd-file auth backend (auth.c), always
 * from its one worker thread: a check costs a slow hash on purpose
 * (yescrypt about 30 ms), which must not stall the event loop.  Not
 * thread-safe otherwise.  Errors are returned with "PATH:LINE: reason";
 * nothing here logs.  Unknown users cost a hash too (against a dummy
 * hash of the file's first entry's kind), so timing does not tell which
 * users exist.
 */
#ifndef ZFARM_PASSWD_FILE_H
#define ZFARM_PASSWD_FILE_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWD_FILE_MAX (64 * 1024 * 1024) /* octets of a file */

struct passwd_file;

/* passwd_file_parse - from text (len octets); label names it in errors.  NULL + reason. */
struct passwd_file *passwd_file_parse(const char *text, size_t len, const char *label, char *err,
				      size_t errlen);

/* passwd_file_load - read and parse path; NULL + reason. */
struct passwd_file *passwd_file_load(const char *path, char *err, size_t errlen);

/*
 * passwd_file_refresh - read *pf's file again if it changed on disk (its
 * inode, size or times).  Returns 1 when reloaded, 0 when unchanged, -1
 * with a reason when the new file is bad: *pf stays as it was, and the
 * same bad file is not reported again.  Only for files from _load.
 */
int passwd_file_refresh(struct passwd_file **pf, char *err, size_t errlen);

void passwd_file_free(struct passwd_file **pf);

/* passwd_file_count - the number of users. */
size_t passwd_file_count(const struct passwd_file *pf);

/* passwd_file_lookup - user's hash as written (prefix dropped), or NULL. */
const char *passwd_file_lookup(const struct passwd_file *pf, const char *user);

/* passwd_file_verify - does password match user's hash? */
bool passwd_file_verify(const struct passwd_file *pf, const char *user, const char *password);

/* passwd_hash_supported - is hash (prefix dropped) one of the kinds above? */
bool passwd_hash_supported(const char *hash);

/* passwd_check - crypt_r(password, hash) equals hash (constant time). */
bool passwd_check(const char *hash, const char *password);

#endif
