/*
 * err - writing a failure's reason into a caller's buffer.
 *
 * Library code returns 0/-1 and puts the reason in (err, errlen) (STYLE.md
 * rule 6); callers may pass err NULL with errlen 0 when they do not care.
 * Used by config, frame, the router's tables and whoever else reports
 * reasons that way.
 */
#ifndef ZFARM_ERR_H
#define ZFARM_ERR_H

#include <stddef.h>

/* err_printf - format into err (NUL-terminated, truncated); nothing if err is NULL or errlen 0. */
void err_printf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
