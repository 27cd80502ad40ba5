/* log - one line per event to syslog or stderr; see log.h. */
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

static char log_name[64] = "zfarm";
static enum log_target log_target = LOG_TARGET_STDERR;
static enum log_level log_min = LOG_LEVEL_INFO;

static const char *const log_level_names[] = {
	[LOG_LEVEL_DEBUG] = "debug", [LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warning", [LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_FATAL] = "fatal", [LOG_LEVEL_PANIC] = "panic",
};

static const int log_syslog_prio[] = {
	[LOG_LEVEL_DEBUG] = LOG_DEBUG, [LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_WARN] = LOG_WARNING, [LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_FATAL] = LOG_CRIT, [LOG_LEVEL_PANIC] = LOG_CRIT,
};

void log_open(const char *progname, enum log_target target)
{
	const char *base = strrchr(progname, '/');

	snprintf(log_name, sizeof(log_name), "%s", base ? base + 1 : progname);
	if (log_target == LOG_TARGET_SYSLOG)
		closelog();
	log_target = target;
	if (target == LOG_TARGET_SYSLOG)
		openlog(log_name, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level level)
{
	log_min = level;
}

enum log_level log_get_level(void)
{
	return log_min;
}

int log_level_parse(const char *name)
{
	static const struct {
		const char *name;
		enum log_level level;
	} words[] = {
		{"debug", LOG_LEVEL_DEBUG}, {"info", LOG_LEVEL_INFO},
		{"warn", LOG_LEVEL_WARN},   {"warning", LOG_LEVEL_WARN},
		{"error", LOG_LEVEL_ERROR},
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(name, words[i].name) == 0)
			return (int)words[i].level;
	return -1;
}

const char *log_progname(void)
{
	return log_name;
}

char *log_sanitize(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	size_t n = srclen < dstlen - 1 ? srclen : dstlen - 1;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[n] = '\0';
	return dst;
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char text[LOG_LINE_MAX];
	char line[LOG_LINE_MAX + 128];
	int saved_errno = errno;
	int n;

	if (level < log_min)
		return;
	n = vsnprintf(text, sizeof(text), fmt, ap);
	if (n < 0)
		snprintf(text, sizeof(text), "(unformattable log line: %s)", fmt);
	/* vsnprintf truncation is fine; the sanitiser keeps one line. */
	log_sanitize(text, sizeof(text), text, strlen(text));
	if (log_target == LOG_TARGET_SYSLOG) {
		if (level == LOG_LEVEL_INFO)
			syslog(log_syslog_prio[level], "%s", text);
		else
			syslog(log_syslog_prio[level], "%s: %s", log_level_names[level], text);
	} else {
		if (level == LOG_LEVEL_INFO)
			n = snprintf(line, sizeof(line), "%s[%ld]: %s\n", log_name,
				     (long)getpid(), text);
		else
			n = snprintf(line, sizeof(line), "%s[%ld]: %s: %s\n", log_name,
				     (long)getpid(), log_level_names[level], text);
		if (n > (int)sizeof(line) - 1)
			n = (int)sizeof(line) - 1;
		/* One write(2) per line so lines of many processes never mix. */
		if (n > 0)
			(void)!write(STDERR_FILENO, line, (size_t)n);
	}
	errno = saved_errno;
}

void log_write(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_PANIC, fmt, ap);
	va_end(ap);
	abort();
}
