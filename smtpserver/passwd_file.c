/*
 * passwd_file - see passwd_file.h.
 *
 * The users are a sorted array searched by bsearch: the file is read
 * whole and parsed once per change, lookups are O(log n).
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xalloc.h"
#include "smtpserver/passwd_file.h"

struct pw_entry {
	char *user;
	char *hash; /* prefix dropped; "!..." or "*..." is locked */
	unsigned line;
};

struct file_sig {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct passwd_file {
	struct pw_entry *e;
	size_t n;
	char *path; /* NULL for parsed text */
	struct file_sig sig, bad_sig;
	bool bad;
	char dummy[128]; /* the hash unknown users are checked against */
};

static const char *const scheme_prefixes[] = {"{CRYPT}", "{SHA512-CRYPT}", "{SHA256-CRYPT}",
					      "{BLF-CRYPT}"};
static const char *const hash_ids[] = {"$y$", "$gy$", "$7$", "$6$", "$5$", "$2b$", "$2y$", "$2a$"};

bool passwd_hash_supported(const char *hash)
{
	for (size_t i = 0; i < sizeof(hash_ids) / sizeof(hash_ids[0]); i++)
		if (strncmp(hash, hash_ids[i], strlen(hash_ids[i])) == 0)
			return strlen(hash) > strlen(hash_ids[i]) + 1;
	return false;
}

bool passwd_check(const char *hash, const char *password)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *out;
	size_t n = strlen(hash);
	unsigned char diff = 0;
	bool ok;

	out = crypt_r(password, hash, cd);
	/* A failure gives NULL or a string starting with '*', never the hash. */
	ok = out && strlen(out) == n;
	if (ok) {
		for (size_t i = 0; i < n; i++)
			diff |= (unsigned char)(out[i] ^ hash[i]);
		ok = diff == 0;
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pw_entry *)a)->user, ((const struct pw_entry *)b)->user);
}

static void entries_free(struct pw_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].user);
		if (e[i].hash) {
			explicit_bzero(e[i].hash, strlen(e[i].hash));
			free(e[i].hash);
		}
	}
	free(e);
}

/* A user name: 1-255 octets, none of them blank, control, ':' or '#' first. */
static bool user_ok(const char *u, size_t n)
{
	if (n == 0 || n > 255 || u[0] == '#')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)u[i];

		if (c <= 0x20 || c == 0x7f || c == ':')
			return false;
	}
	return true;
}

/* parse_line - one non-comment line into *e; -1 + reason. */
static int parse_line(const char *p, size_t len, struct pw_entry *e, char *err, size_t errlen)
{
	const char *colon = memchr(p, ':', len), *h, *end;
	size_t hl;
	bool locked = false;

	if (!colon) {
		snprintf(err, errlen, "no \":\" after the user name");
		return -1;
	}
	if (!user_ok(p, (size_t)(colon - p))) {
		snprintf(err, errlen, "bad user name (1-255 octets, no blanks, control "
				      "characters or \":\")");
		return -1;
	}
	h = colon + 1;
	end = memchr(h, ':', len - (size_t)(h - p));
	if (!end)
		end = p + len;
	if (h < end && (*h == '!' || *h == '*')) {
		locked = true;
		h++;
	}
	for (size_t i = 0; i < sizeof(scheme_prefixes) / sizeof(scheme_prefixes[0]); i++) {
		size_t k = strlen(scheme_prefixes[i]);

		if ((size_t)(end - h) >= k && strncmp(h, scheme_prefixes[i], k) == 0) {
			h += k;
			break;
		}
	}
	hl = (size_t)(end - h);
	e->user = xstrndup(p, (size_t)(colon - p));
	e->hash = xmalloc(hl + 2);
	if (locked)
		e->hash[0] = '!';
	memcpy(e->hash + locked, h, hl);
	e->hash[hl + locked] = '\0';
	if (memchr(h, '\0', hl) || !passwd_hash_supported(e->hash + locked)) {
		snprintf(err, errlen, "user %s: not a yescrypt, SHA-512, SHA-256 or bcrypt crypt(3) "
				      "hash",
			 e->user);
		return -1;
	}
	return 0;
}

/* The dummy hash: the first usable entry's setting with a fixed salt and a wrong digest. */
static void make_dummy(struct passwd_file *pf)
{
	const char *h = NULL;

	for (size_t i = 0; i < pf->n && !h; i++)
		if (pf->e[i].hash[0] != '!')
			h = pf->e[i].hash;
	snprintf(pf->dummy, sizeof(pf->dummy), "%s", h ? h : "$6$zfarmdummysalt$x");
}

struct passwd_file *passwd_file_parse(const char *text, size_t len, const char *label, char *err,
				      size_t errlen)
{
	struct passwd_file *pf = xcalloc(1, sizeof(*pf));
	size_t cap = 0;
	unsigned line = 0;
	const char *p = text, *end = text + len;
	char why[256];

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		const char *q = p;

		line++;
		p = nl ? nl + 1 : end;
		if (n > 0 && q[n - 1] == '\r')
			n--;
		while (n > 0 && (q[0] == ' ' || q[0] == '\t')) {
			q++;
			n--;
		}
		if (n == 0 || q[0] == '#')
			continue;
		if (pf->n == cap) {
			cap = cap ? cap * 2 : 16;
			pf->e = xrealloc(pf->e, cap * sizeof(*pf->e));
		}
		memset(&pf->e[pf->n], 0, sizeof(pf->e[0]));
		pf->e[pf->n].line = line;
		if (parse_line(q, n, &pf->e[pf->n], why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", label, line, why);
			pf->n++;
			passwd_file_free(&pf);
			return NULL;
		}
		pf->n++;
	}
	if (pf->n > 1)
		qsort(pf->e, pf->n, sizeof(*pf->e), entry_cmp);
	for (size_t i = 1; i < pf->n; i++) {
		if (strcmp(pf->e[i - 1].user, pf->e[i].user) == 0) {
			unsigned a = pf->e[i - 1].line, b = pf->e[i].line;

			snprintf(err, errlen, "%s:%u: user %s given twice (also line %u)", label,
				 a > b ? a : b, pf->e[i].user, a > b ? b : a);
			passwd_file_free(&pf);
			return NULL;
		}
	}
	make_dummy(pf);
	return pf;
}

static void sig_of(const struct stat *st, struct file_sig *s)
{
	memset(s, 0, sizeof(*s));
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtime = st->st_mtim;
	s->ctime = st->st_ctim;
}

static bool sig_eq(const struct file_sig *a, const struct file_sig *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* read_file - the whole file and its signature (taken before reading); NULL + reason. */
static char *read_file(const char *path, size_t *len, struct file_sig *sig, char *err,
		       size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t n = 0;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > PASSWD_FILE_MAX) {
		snprintf(err, errlen, "%s: not a regular file of at most %d octets", path,
			 PASSWD_FILE_MAX);
		close(fd);
		return NULL;
	}
	sig_of(&st, sig);
	buf = xmalloc((size_t)st.st_size + 1);
	while (n < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break; /* shrunk while we read: the signature will differ next time */
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

struct passwd_file *passwd_file_load(const char *path, char *err, size_t errlen)
{
	struct passwd_file *pf;
	struct file_sig sig;
	size_t len;
	char *text = read_file(path, &len, &sig, err, errlen);

	if (!text)
		return NULL;
	pf = passwd_file_parse(text, len, path, err, errlen);
	explicit_bzero(text, len);
	free(text);
	if (!pf)
		return NULL;
	pf->path = xstrdup(path);
	pf->sig = sig;
	return pf;
}

int passwd_file_refresh(struct passwd_file **pfp, char *err, size_t errlen)
{
	struct passwd_file *old = *pfp, *pf;
	struct stat st;
	struct file_sig now;

	if (!old->path)
		return 0;
	if (stat(old->path, &st) < 0) {
		memset(&now, 0, sizeof(now));
	} else {
		sig_of(&st, &now);
	}
	if (sig_eq(&now, &old->sig) || (old->bad && sig_eq(&now, &old->bad_sig)))
		return 0;
	pf = passwd_file_load(old->path, err, errlen);
	if (!pf) {
		old->bad = true;
		old->bad_sig = now;
		return -1;
	}
	passwd_file_free(pfp);
	*pfp = pf;
	return 1;
}

void passwd_file_free(struct passwd_file **pfp)
{
	struct passwd_file *pf = *pfp;

	if (!pf)
		return;
	*pfp = NULL;
	entries_free(pf->e, pf->n);
	free(pf->path);
	free(pf);
}

size_t passwd_file_count(const struct passwd_file *pf)
{
	return pf->n;
}

static const struct pw_entry *find(const struct passwd_file *pf, const char *user)
{
	struct pw_entry key = {.user = (char *)user};

	if (pf->n == 0)
		return NULL;
	return bsearch(&key, pf->e, pf->n, sizeof(*pf->e), entry_cmp);
}

const char *passwd_file_lookup(const struct passwd_file *pf, const char *user)
{
	const struct pw_entry *e = find(pf, user);

	return e ? e->hash : NULL;
}

bool passwd_file_verify(const struct passwd_file *pf, const char *user, const char *password)
{
	const struct pw_entry *e = find(pf, user);

	if (!e || e->hash[0] == '!') {
		/* The same work as a real check, and always false. */
		(void)passwd_check(pf->dummy, password);
		return false;
	}
	return passwd_check(e->hash, password);
}
