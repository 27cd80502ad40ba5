/*
 * xalloc - allocation that cannot fail.
 *
 * For daemons whose worker can simply be restarted (STYLE.md rule 7): on
 * out-of-memory these print one line to stderr and abort(), so farmd sees
 * a crash and replaces the worker.  Use plain malloc() and return an error
 * where a failure must be survived (e.g. in farmd itself for per-client
 * state).  Every function accepts the same arguments as its libc twin.
 */
#ifndef ZFARM_XALLOC_H
#define ZFARM_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
/* xreallocarray: overflow-checked nmemb * size, like reallocarray(3). */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* xasprintf: allocated formatted string; never NULL. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
