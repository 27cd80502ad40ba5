/*
 * log - one line per event to syslog (LOG_MAIL) or stderr.
 *
 * Every daemon calls log_open() once at start with its program name; after
 * that log_info()/log_warn()/... write "prog[pid]: level: text" to stderr
 * (foreground, tests) or the same text to syslog.  Lines about a message
 * start with its queue ID: log_info("%s: from=<%s>, size=%zu", qid, ...).
 *
 * log_fatal() is for configuration and resource problems at start-up: it
 * logs and exit(1)s.  log_panic() is for broken invariants: it logs and
 * abort()s so a core file shows the state.  Library code (common/) never
 * calls either: it returns an error with a reason and the daemon decides.
 *
 * Text is sanitised: control characters (CR, LF, NUL never reach here, but
 * ESC, TAB, DEL from a peer might) are written as '?', and one line is cut
 * at LOG_LINE_MAX bytes, so a peer can neither forge log lines nor flood.
 */
#ifndef ZFARM_LOG_H
#define ZFARM_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define LOG_LINE_MAX 2048

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_FATAL,
	LOG_LEVEL_PANIC,
};

enum log_target {
	LOG_TARGET_STDERR = 0,
	LOG_TARGET_SYSLOG,
};

/* log_open - set program name and target; may be called again (re-exec). */
void log_open(const char *progname, enum log_target target);
/* log_set_level - lines below this level are dropped (default INFO). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* log_level_parse - "debug", "info", "warn", "error"; -1 if unknown. */
int log_level_parse(const char *name);
/* log_progname - the name given to log_open() ("zfarm" before). */
const char *log_progname(void);

void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_get_level() <= LOG_LEVEL_DEBUG)                        \
			log_write(LOG_LEVEL_DEBUG, __VA_ARGS__);               \
	} while (0)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

/* log_fatal - log and exit(1): start-up and resource problems only. */
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* log_panic - log and abort(): a broken invariant. */
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * log_sanitize - copy src into dst (dstlen > 0), replacing bytes < 0x20 and
 * 0x7f with '?', cutting at dstlen - 1.  For peer-supplied text that goes
 * into logs, the queue or a DSN.  Returns dst.
 */
char *log_sanitize(char *dst, size_t dstlen, const char *src, size_t srclen);

#endif
