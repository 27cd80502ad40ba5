/*
 * strbuf - a growable byte buffer with an optional hard size limit.
 *
 * For building strings and collecting bytes whose size a peer controls:
 * every append checks the limit and fails (returns -1, buffer unchanged)
 * instead of growing past it, so memory stays bounded.  The data is always
 * NUL-terminated (one byte beyond len) so it can be used as a C string when
 * it holds text.  The struct is transparent on purpose (like sds): callers
 * read data/len directly; only strbuf_* functions change them.
 *
 * Allocation failures abort (xalloc); limit overflows are returned.
 */
#ifndef ZFARM_STRBUF_H
#define ZFARM_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	char *data;   /* NUL-terminated; NULL until the first append */
	size_t len;   /* bytes in use, not counting the NUL */
	size_t cap;   /* allocated bytes, including room for the NUL */
	size_t limit; /* maximum len; 0 means unlimited */
};

#define STRBUF_INIT {NULL, 0, 0, 0}

/* strbuf_init - empty buffer whose len may never exceed limit (0: none). */
void strbuf_init(struct strbuf *sb, size_t limit);
/* strbuf_release - free the data; the buffer is empty and reusable. */
void strbuf_release(struct strbuf *sb);
/* strbuf_reset - len = 0, keep the allocation. */
void strbuf_reset(struct strbuf *sb);
/* strbuf_append - append n bytes; -1 (unchanged) if over the limit. */
int strbuf_append(struct strbuf *sb, const void *p, size_t n);
int strbuf_append_str(struct strbuf *sb, const char *s);
int strbuf_append_char(struct strbuf *sb, char c);
int strbuf_printf(struct strbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int strbuf_vprintf(struct strbuf *sb, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* strbuf_cstr - the contents as a C string ("" when empty). */
const char *strbuf_cstr(const struct strbuf *sb);
/* strbuf_steal - hand the allocated string to the caller; buffer empties. */
char *strbuf_steal(struct strbuf *sb);
/* strbuf_consume - drop the first n bytes (n <= len). */
void strbuf_consume(struct strbuf *sb, size_t n);

/* String helpers that do not allocate. */
/* str_trim - strip leading/trailing ASCII whitespace in place; returns s. */
char *str_trim(char *s);
/* str_lower - ASCII lower-case in place; returns s. */
char *str_lower(char *s);
/* str_has_prefix_ci - case-insensitive ASCII prefix test. */
int str_has_prefix_ci(const char *s, const char *prefix);

#endif
