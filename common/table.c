/*
 * table - the router's lookup tables (see table.h for the file formats).
 *
 * A loaded table is one arena holding "key\0value\0" for every entry, in
 * file order, keys lower-cased, plus an open-addressing index (linear
 * probing, power-of-two capacity, at least twice the number of keys) of
 * 16-byte slots {arena offset, source line, hash}.  The key length is not
 * stored: the comparison stops at the key's NUL, and the value starts one
 * byte after it.  Lookups lower-case the caller's key while hashing and
 * comparing, so they never allocate.
 *
 * The whole file is read into memory first (bounded by TABLE_MAX_FILE,
 * checked with fstat before reading), so the arena can be sized once:
 * every logical entry needs at most one byte more than its source line
 * ("k\n" becomes "k\0\0"), so file size + lines + 2 is enough.
 *
 * Duplicate keys are found while loading, through the index being built;
 * the slot's line number names the first occurrence in the message.
 */
#include "common/table.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/xalloc.h"

enum table_type {
	TABLE_HASH,
	TABLE_ALIASES,
	TABLE_SET,
	TABLE_INLINE,
};

static const struct {
	const char *name;
	enum table_type type;
} table_types[] = {
    {"hash", TABLE_HASH},     {"aliases", TABLE_ALIASES}, {"set", TABLE_SET},
    {"file", TABLE_SET}, /* one domain or .domain per line, as the channel docs say */
    {"inline", TABLE_INLINE},
};

/* One index slot; line == 0 marks an empty slot (lines count from 1). */
struct slot {
	uint64_t off;  /* arena offset of the lower-cased, NUL-terminated key */
	uint32_t line; /* source line (inline: item number) */
	uint32_t hash; /* FNV-1a of the lower-cased key */
};

/* What a load produces; swapped as a whole by table_refresh(). */
struct table_data {
	char *arena;
	size_t arena_len;
	struct slot *slots;
	size_t mask; /* capacity - 1 */
	size_t count;
	/* the file as loaded (not for inline) */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
};

/* The flat-file backend's state. */
struct flat {
	char *spec;	  /* as given to table_open() */
	const char *path; /* inside spec: the ARG part */
	enum table_type type;
	struct table_data d;
	/* the last file that failed to load, so it is not parsed again unchanged */
	bool failed;
	struct stat failed_st;
	char failed_reason[512];
};

/* A table: a backend and its state. */
struct table {
	char *spec;
	const struct table_ops *ops;
	void *be;
};

/* Loader state: the table being built and where errors point. */
struct builder {
	struct table_data *d;
	size_t arena_cap;
	const char *where; /* PATH, or SPEC for inline */
	const char *unit;  /* "line" or "item" (for duplicate messages) */
	bool is_inline;
	bool have_entry; /* a continuation line may follow */
	char *err;
	size_t errlen;
};

#define FNV_OFFSET 2166136261u
#define FNV_PRIME  16777619u
#define MIN_SLOTS  16

static inline unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static inline bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static uint32_t hash_lower(const char *key, size_t len)
{
	uint32_t h = FNV_OFFSET;

	for (size_t i = 0; i < len; i++) {
		h ^= lower((unsigned char)key[i]);
		h *= FNV_PRIME;
	}
	return h;
}

/* Does the stored (lower-case, NUL-terminated) key equal key[0..len) in any case? */
static bool key_equal(const char *stored, const char *key, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (stored[i] == '\0' || (unsigned char)stored[i] != lower((unsigned char)key[i]))
			return false;
	}
	return stored[len] == '\0';
}

/* The slot holding key, or the empty slot where it would go. */
static struct slot *find_slot(const struct table_data *d, const char *key, size_t len, uint32_t h)
{
	for (size_t i = h & d->mask;; i = (i + 1) & d->mask) {
		struct slot *s = &d->slots[i];

		if (s->line == 0)
			return s;
		if (s->hash == h && key_equal(d->arena + s->off, key, len))
			return s;
	}
}

/* "PATH:LINE: reason" for files, "SPEC: item N: reason" for inline; returns -1. */
static int build_err(struct builder *b, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int build_err(struct builder *b, unsigned line, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (b->is_inline)
		err_printf(b->err, b->errlen, "%s: item %u: %s", b->where, line, reason);
	else
		err_printf(b->err, b->errlen, "%s:%u: %s", b->where, line, reason);
	return -1;
}

static void data_free(struct table_data *d)
{
	free(d->arena);
	free(d->slots);
	d->arena = NULL;
	d->slots = NULL;
	d->count = 0;
}

static void builder_init(struct builder *b, struct table_data *d, size_t arena_cap)
{
	memset(d, 0, sizeof(*d));
	d->arena = xmalloc(arena_cap);
	d->slots = xcalloc(MIN_SLOTS, sizeof(*d->slots));
	d->mask = MIN_SLOTS - 1;
	b->d = d;
	b->arena_cap = arena_cap;
	b->have_entry = false;
}

/* Double the index and reinsert every slot (hashes are kept, not recomputed). */
static void grow_index(struct table_data *d)
{
	size_t cap = (d->mask + 1) * 2;
	struct slot *slots = xcalloc(cap, sizeof(*slots));

	for (size_t i = 0; i <= d->mask; i++) {
		const struct slot *s = &d->slots[i];
		size_t j;

		if (s->line == 0)
			continue;
		for (j = s->hash & (cap - 1); slots[j].line != 0; j = (j + 1) & (cap - 1))
			;
		slots[j] = *s;
	}
	free(d->slots);
	d->slots = slots;
	d->mask = cap - 1;
}

static void arena_put(struct builder *b, const char *p, size_t n)
{
	/* The arena was sized from the input; overrunning it is a bug here. */
	if (b->d->arena_len + n > b->arena_cap)
		abort();
	memcpy(b->d->arena + b->d->arena_len, p, n);
	b->d->arena_len += n;
}

/* Add key (any case) with value; a duplicate key is an error naming both lines. */
static int add_entry(struct builder *b, unsigned line, const char *key, size_t klen,
		     const char *val, size_t vlen)
{
	struct table_data *d = b->d;
	uint32_t h = hash_lower(key, klen);
	struct slot *s;

	if (klen == 0)
		return build_err(b, line, "empty key");
	s = find_slot(d, key, klen, h);
	if (s->line != 0)
		return build_err(b, line, "duplicate key \"%.*s\" (first at %s %u)",
				 klen > 200 ? 200 : (int)klen, key, b->unit, (unsigned)s->line);
	if ((d->count + 1) * 2 > d->mask + 1) {
		grow_index(d);
		s = find_slot(d, key, klen, h);
	}
	s->off = d->arena_len;
	s->line = line;
	s->hash = h;
	d->count++;
	for (size_t i = 0; i < klen; i++) {
		char c = (char)lower((unsigned char)key[i]);

		arena_put(b, &c, 1);
	}
	arena_put(b, "", 1);
	arena_put(b, val, vlen);
	arena_put(b, "", 1);
	b->have_entry = true;
	return 0;
}

/* Append text to the last entry's value (which ends the arena), joined by one space. */
static void append_value(struct builder *b, const char *text, size_t n)
{
	struct table_data *d = b->d;

	/* Drop the value's NUL; a non-empty value gets a space first. */
	d->arena_len--;
	if (d->arena[d->arena_len - 1] != '\0')
		arena_put(b, " ", 1);
	arena_put(b, text, n);
	arena_put(b, "", 1);
}

/* One physical line of a file, CR stripped, no NUL, not over TABLE_MAX_LINE. */
static int parse_line(struct builder *b, enum table_type type, unsigned line, const char *l,
		      size_t n)
{
	const char *p = l, *end = l + n;

	while (p < end && is_space(*p))
		p++;
	if (p == end || *p == '#')
		return 0;
	while (end > p && is_space(end[-1]))
		end--;

	if (p > l) { /* leading blank: continues the previous value */
		if (type == TABLE_SET)
			return build_err(b, line, "continuation line (leading blank) in a set");
		if (!b->have_entry)
			return build_err(b, line, "continuation line without a preceding entry");
		append_value(b, p, (size_t)(end - p));
		return 0;
	}

	if (type == TABLE_ALIASES) {
		const char *name = p, *name_end, *colon;

		if (*p == '"') {
			name = p + 1;
			name_end = memchr(name, '"', (size_t)(end - name));
			if (name_end == NULL)
				return build_err(b, line, "unterminated quoted name");
			colon = name_end + 1;
			while (colon < end && is_space(*colon))
				colon++;
			if (colon == end || *colon != ':')
				return build_err(b, line, "missing ':'");
		} else {
			colon = memchr(p, ':', (size_t)(end - p));
			if (colon == NULL)
				return build_err(b, line, "missing ':'");
			name_end = colon;
			while (name_end > name && is_space(name_end[-1]))
				name_end--;
		}
		if (name_end == name)
			return build_err(b, line, "empty name");
		p = colon + 1;
		while (p < end && is_space(*p))
			p++;
		return add_entry(b, line, name, (size_t)(name_end - name), p, (size_t)(end - p));
	}

	/* hash and set: the first word is the key */
	const char *key = p;

	while (p < end && !is_space(*p))
		p++;
	size_t klen = (size_t)(p - key);

	while (p < end && is_space(*p))
		p++;
	if (type == TABLE_SET && p < end)
		return build_err(b, line, "more than one word");
	return add_entry(b, line, key, klen, p, (size_t)(end - p));
}

static int parse_file(struct builder *b, enum table_type type, const char *buf, size_t len)
{
	size_t pos = 0;
	unsigned line = 0;

	while (pos < len) {
		const char *l = buf + pos;
		const char *eol = memchr(l, '\n', len - pos);
		size_t n = eol != NULL ? (size_t)(eol - l) : len - pos;

		pos += n + (eol != NULL);
		line++;
		if (n > 0 && l[n - 1] == '\r')
			n--;
		if (n > TABLE_MAX_LINE)
			return build_err(b, line, "line too long (over %d bytes)", TABLE_MAX_LINE);
		if (memchr(l, '\0', n) != NULL)
			return build_err(b, line, "NUL byte");
		if (parse_line(b, type, line, l, n) < 0)
			return -1;
	}
	return 0;
}

/* Give back the arena's unused tail (comments, blank lines). */
static void builder_finish(struct builder *b)
{
	struct table_data *d = b->d;

	if (d->arena_len > 0 && d->arena_len < b->arena_cap)
		d->arena = xrealloc(d->arena, d->arena_len);
}

/* Read the whole file at path into *bufp (malloc'd); *st is its fstat before reading. */
static int read_file(const char *path, struct stat *stp, char **bufp, size_t *lenp, char *err,
		     size_t errlen)
{
	struct stat st;
	char *buf;
	size_t len = 0, cap;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err_printf(err, errlen, "%s: open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		err_printf(err, errlen, "%s: fstat: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (st.st_size > TABLE_MAX_FILE) {
		err_printf(err, errlen, "%s: file too large (%lld bytes, max %ld)", path,
			   (long long)st.st_size, TABLE_MAX_FILE);
		close(fd);
		return -1;
	}
	*stp = st;

	/* One byte more than the size, so a file that grew is noticed. */
	cap = (size_t)st.st_size + 1;
	buf = xmalloc(cap);
	for (;;) {
		ssize_t r;

		if (len == cap) {
			if (cap > (size_t)TABLE_MAX_FILE) {
				err_printf(err, errlen, "%s: file too large (over %ld bytes)", path,
					   TABLE_MAX_FILE);
				free(buf);
				close(fd);
				return -1;
			}
			cap = cap * 2 > (size_t)TABLE_MAX_FILE + 1 ? (size_t)TABLE_MAX_FILE + 1
								   : cap * 2;
			buf = xrealloc(buf, cap);
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err_printf(err, errlen, "%s: read: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	*bufp = buf;
	*lenp = len;
	return 0;
}

/* Load a file table into d (zeroed on failure). */
static int load_file(const char *path, enum table_type type, struct table_data *d, char *err,
		     size_t errlen)
{
	struct builder b = {.where = path, .unit = "line", .err = err, .errlen = errlen};
	struct stat st;
	char *buf;
	size_t len, lines = 1;

	if (read_file(path, &st, &buf, &len, err, errlen) < 0)
		return -1;
	for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))) != NULL; p++)
		lines++;
	builder_init(&b, d, len + lines + 2);
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	d->size = st.st_size;
	d->mtim = st.st_mtim;
	if (parse_file(&b, type, buf, len) < 0) {
		free(buf);
		data_free(d);
		return -1;
	}
	free(buf);
	builder_finish(&b);
	return 0;
}

/* inline:{k1=v1, k2, ...}: arg is the text after "inline:". */
static int load_inline(const char *spec, const char *arg, struct table_data *d, char *err,
		       size_t errlen)
{
	struct builder b = {
	    .where = spec, .unit = "item", .is_inline = true, .err = err, .errlen = errlen};
	const char *p = arg, *end = arg + strlen(arg);
	size_t items = 1;
	unsigned item = 0;

	while (p < end && is_space(*p))
		p++;
	while (end > p && is_space(end[-1]))
		end--;
	if (p == end || *p != '{') {
		err_printf(err, errlen, "%s: missing '{'", spec);
		return -1;
	}
	if (end - p < 2 || end[-1] != '}') {
		err_printf(err, errlen, "%s: missing '}'", spec);
		return -1;
	}
	p++;
	end--;
	if (memchr(p, '}', (size_t)(end - p)) != NULL ||
	    memchr(p, '{', (size_t)(end - p)) != NULL) {
		err_printf(err, errlen, "%s: unexpected brace inside {...}", spec);
		return -1;
	}
	for (const char *q = p; q < end; q++)
		items += *q == ',';
	builder_init(&b, d, (size_t)(end - p) + items + 2);

	const char *s = p;

	while (s < end && is_space(*s))
		s++;
	if (s == end) /* "{}" or "{ }": an empty table */
		return 0;
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *ie = comma != NULL ? comma : end;
		const char *is = p, *eq, *ke, *vs, *ve;

		item++;
		while (is < ie && is_space(*is))
			is++;
		ve = ie;
		while (ve > is && is_space(ve[-1]))
			ve--;
		if (is == ve) {
			build_err(&b, item, "empty item");
			goto fail;
		}
		eq = memchr(is, '=', (size_t)(ve - is));
		ke = eq != NULL ? eq : ve;
		vs = eq != NULL ? eq + 1 : ve;
		while (ke > is && is_space(ke[-1]))
			ke--;
		while (vs < ve && is_space(*vs))
			vs++;
		for (const char *k = is; k < ke; k++) {
			if (is_space(*k)) {
				build_err(&b, item, "blank inside key");
				goto fail;
			}
		}
		if (add_entry(&b, item, is, (size_t)(ke - is), vs, (size_t)(ve - vs)) < 0)
			goto fail;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	builder_finish(&b);
	return 0;
fail:
	data_free(d);
	return -1;
}

static void *flat_open(const char *spec, char *err, size_t errlen)
{
	const char *colon = strchr(spec, ':');
	struct flat *t;
	size_t i, n;

	if (colon == NULL) {
		err_printf(err, errlen, "%s: missing ':' (want TYPE:ARG)", spec);
		return NULL;
	}
	n = (size_t)(colon - spec);
	for (i = 0; i < sizeof(table_types) / sizeof(table_types[0]); i++) {
		if (strlen(table_types[i].name) == n && memcmp(table_types[i].name, spec, n) == 0)
			break;
	}
	if (i == sizeof(table_types) / sizeof(table_types[0])) {
		err_printf(err, errlen, "%s: unknown table type", spec);
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	t->spec = xstrdup(spec);
	t->path = t->spec + n + 1;
	t->type = table_types[i].type;
	if (t->type == TABLE_INLINE) {
		if (load_inline(t->spec, t->path, &t->d, err, errlen) < 0)
			goto fail;
	} else {
		if (*t->path == '\0') {
			err_printf(err, errlen, "%s: empty path", spec);
			goto fail;
		}
		if (load_file(t->path, t->type, &t->d, err, errlen) < 0)
			goto fail;
	}
	return t;
fail:
	free(t->spec);
	free(t);
	return NULL;
}

static const char *flat_lookup(const void *be, const char *key, size_t len)
{
	const struct flat *t = be;
	const struct slot *s;

	if (t == NULL || t->d.count == 0)
		return NULL;
	s = find_slot(&t->d, key, len, hash_lower(key, len));
	if (s->line == 0)
		return NULL;
	return t->d.arena + s->off + len + 1;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int flat_refresh(void *be, char *err, size_t errlen)
{
	struct flat *t = be;
	struct table_data fresh;
	struct stat st;

	if (t->type == TABLE_INLINE)
		return 0;
	if (stat(t->path, &st) < 0) {
		err_printf(err, errlen, "%s: stat: %s", t->path, strerror(errno));
		return -1;
	}
	if (st.st_dev == t->d.dev && st.st_ino == t->d.ino && st.st_size == t->d.size &&
	    st.st_mtim.tv_sec == t->d.mtim.tv_sec && st.st_mtim.tv_nsec == t->d.mtim.tv_nsec)
		return 0;
	/* The same bad file as last time: its reason again, without reading it. */
	if (t->failed && same_file(&st, &t->failed_st)) {
		err_printf(err, errlen, "%s", t->failed_reason);
		return -1;
	}
	if (load_file(t->path, t->type, &fresh, t->failed_reason, sizeof(t->failed_reason)) < 0) {
		t->failed = true;
		t->failed_st = st;
		err_printf(err, errlen, "%s", t->failed_reason);
		return -1;
	}
	t->failed = false;
	data_free(&t->d);
	t->d = fresh;
	return 1;
}

static size_t flat_count(const void *be)
{
	return ((const struct flat *)be)->d.count;
}

static void flat_free(void *be)
{
	struct flat *t = be;

	data_free(&t->d);
	free(t->spec);
	free(t);
}

/* ---- the backends, chosen by TYPE ---- */

static const struct table_ops flat_ops = {
    .open = flat_open,
    .lookup = flat_lookup,
    .refresh = flat_refresh,
    .count = flat_count,
    .free = flat_free,
};

/* TYPE -> backend.  An LMDB or SQL backend adds its types here. */
static const struct {
	const char *type;
	const struct table_ops *ops;
} table_backends[] = {
    {"hash", &flat_ops}, {"aliases", &flat_ops}, {"set", &flat_ops},
    {"file", &flat_ops}, {"inline", &flat_ops},
};

struct table *table_open(const char *spec, char *err, size_t errlen)
{
	const char *colon = strchr(spec, ':');
	const struct table_ops *ops = NULL;
	struct table *t;
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);

	for (size_t i = 0; i < sizeof(table_backends) / sizeof(table_backends[0]); i++)
		if (strlen(table_backends[i].type) == n &&
		    memcmp(table_backends[i].type, spec, n) == 0)
			ops = table_backends[i].ops;
	if (!ops)
		ops = &flat_ops; /* it reports the bad spec precisely */
	t = xcalloc(1, sizeof(*t));
	t->ops = ops;
	t->be = ops->open(spec, err, errlen);
	if (!t->be) {
		free(t);
		return NULL;
	}
	t->spec = xstrdup(spec);
	return t;
}

const char *table_lookup_n(const struct table *t, const char *key, size_t len)
{
	return t ? t->ops->lookup(t->be, key, len) : NULL;
}

const char *table_lookup(const struct table *t, const char *key)
{
	return table_lookup_n(t, key, strlen(key));
}

int table_refresh(struct table *t, char *err, size_t errlen)
{
	return t->ops->refresh(t->be, err, errlen);
}

size_t table_count(const struct table *t)
{
	return t->ops->count(t->be);
}

const char *table_spec(const struct table *t)
{
	return t->spec;
}

void table_free(struct table **tp)
{
	struct table *t;

	if (tp == NULL || *tp == NULL)
		return;
	t = *tp;
	*tp = NULL;
	t->ops->free(t->be);
	free(t->spec);
	free(t);
}
