/*
 * table - lookup tables (router, local transport): a key gives a value.
 *
 * Opened from a spec string in the config, "TYPE:ARG":
 *   hash:PATH     Postfix "postmap source" lines: the key is the first
 *                 blank-delimited word, the value the rest of the line,
 *                 trimmed (may be empty).  A line starting with a blank
 *                 continues the previous value (joined with one space).
 *   aliases:PATH  aliases(5): "name: value", the value a comma list kept as
 *                 text (the router splits it); continuation lines start
 *                 with a blank; a quoted name ("a b": x) is allowed.
 *   set:PATH      one key per line, value "" (domain sets, local
 *                 recipient lists); anything after the first word is an
 *                 error.  file:PATH is the same.
 *   inline:{k1=v1, k2=v2, k3}  the same in the config itself (tests, small
 *                 maps); a key without "=" has value "".
 * In every file type: blank lines and lines whose first non-blank is "#"
 * are ignored; NUL, a line over TABLE_MAX_LINE or a file over
 * TABLE_MAX_FILE is an error; a key given twice is an error naming both
 * lines ("PATH:LINE: duplicate key \"k\" (first at line N)").
 *
 * Keys are case-insensitive (ASCII): stored lower-cased; table_lookup()
 * lower-cases its argument.  Values keep their case.
 *
 * Cost: loading is O(file size); the whole table lives in one arena plus
 * an open-addressing index (16-byte slots, 2 to 4 per key: ~77 bytes per
 * key in all for 100,000 short entries), so a lookup is O(key length)
 * with no allocation.  Callers: the router, once per lookup step
 * per recipient, and at start and reload.
 *
 * Reload: table_refresh() checks the file (device, inode, size, mtime in
 * ns) and, when it changed, loads a new table and swaps it in only on
 * success; on failure the old table stays in use and the reason is
 * returned, so a half-written file never takes effect.  Values returned by
 * table_lookup() stay valid until the next successful refresh or free.
 *
 * Library code: errors are returned with a reason, never logged.
 */
#ifndef ZFARM_COMMON_TABLE_H
#define ZFARM_COMMON_TABLE_H

#include <stdbool.h>
#include <stddef.h>

#define TABLE_MAX_LINE 65536
#define TABLE_MAX_FILE (1024L * 1024 * 1024)

struct table;

/*
 * Backends: a TYPE names a struct table_ops (table.c keeps the list).  The
 * flat-file family above is built in; an LMDB or SQL backend adds its own
 * entry with these operations and the router does not change.
 */
struct table_ops {
	/* open - load spec ("TYPE:ARG"); NULL + reason. */
	void *(*open)(const char *spec, char *err, size_t errlen);
	const char *(*lookup)(const void *be, const char *key, size_t len);
	int (*refresh)(void *be, char *err, size_t errlen); /* as table_refresh() */
	size_t (*count)(const void *be);
	void (*free)(void *be);
};

/* table_open - load spec; NULL + "SPEC: reason" or "PATH:LINE: reason". */
struct table *table_open(const char *spec, char *err, size_t errlen);

/* table_lookup - the value for key (any case), NULL if absent. */
const char *table_lookup(const struct table *t, const char *key);
/* table_lookup_n - the same for a key that is not NUL-terminated. */
const char *table_lookup_n(const struct table *t, const char *key, size_t len);

/*
 * table_refresh - reload if the file changed.  Returns 1 if reloaded, 0 if
 * unchanged (or inline), -1 with a reason if the new file is bad (the old
 * table is kept).
 */
int table_refresh(struct table *t, char *err, size_t errlen);

/* table_count - number of keys. */
size_t table_count(const struct table *t);
/* table_spec - the spec it was opened with. */
const char *table_spec(const struct table *t);

/* table_free - NULL ok; *t = NULL. */
void table_free(struct table **t);

#endif
