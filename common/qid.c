/* qid - queue IDs unique across processes and sortable by time; see qid.h. */
#include "common/qid.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"

#define QID_TIME_CHARS 11
#define QID_PID_CHARS 5

static const char qid_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The last microsecond this process issued, so it never issues one twice. */
static uint64_t qid_last_us;
/* smtpserver commits in threads; a collision retry generates there. */
static pthread_mutex_t qid_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * This process's pid, asked once (three getpid calls a message were
 * seen); a forked child forgets it and the last microsecond, so it starts
 * its own sequence under its own pid.
 */
static pid_t qid_pid;
static pthread_once_t qid_once = PTHREAD_ONCE_INIT;

static void qid_forked(void)
{
	qid_pid = 0;
	qid_last_us = 0;
}

static void qid_init(void)
{
	pthread_atfork(NULL, NULL, qid_forked);
}

static pid_t qid_getpid(void)
{
	pthread_once(&qid_once, qid_init);
	if (!qid_pid)
		qid_pid = getpid();
	return qid_pid;
}

static void qid_put(char *out, uint64_t value, int chars)
{
	for (int i = chars - 1; i >= 0; i--) {
		out[i] = qid_alphabet[value & 31];
		value >>= 5;
	}
}

static int qid_digit(char c)
{
	const char *p = c ? strchr(qid_alphabet, c) : NULL;

	return p ? (int)(p - qid_alphabet) : -1;
}

void qid_format(char out[QID_SIZE], uint64_t time_us, uint32_t pid)
{
	qid_put(out, time_us, QID_TIME_CHARS);
	qid_put(out + QID_TIME_CHARS, pid, QID_PID_CHARS);
	out[QID_LEN] = '\0';
}

/* qid_next_us - this process's next microsecond: never one issued before. */
static uint64_t qid_next_us(void)
{
	uint64_t now = clock_now_us();

	pthread_once(&qid_once, qid_init);
	pthread_mutex_lock(&qid_lock);
	if (now <= qid_last_us)
		now = qid_last_us + 1;
	qid_last_us = now;
	pthread_mutex_unlock(&qid_lock);
	return now;
}

void qid_generate(char out[QID_SIZE])
{
	qid_format(out, qid_next_us(), (uint32_t)qid_getpid());
}

void qid_generate_slot(char out[QID_SIZE], uint32_t slot)
{
	qid_format(out, qid_next_us(), QID_SLOT_FLAG | (slot & (QID_SLOT_FLAG - 1)));
}

bool qid_is_slot(const char *qid)
{
	return qid_digit(qid[QID_TIME_CHARS]) >= 16;
}

uint32_t qid_tail(const char *qid)
{
	uint32_t v = 0;

	for (int i = QID_TIME_CHARS; i < QID_LEN; i++)
		v = (v << 5) | (uint32_t)qid_digit(qid[i]);
	return v;
}

bool qid_valid(const char *s)
{
	for (int i = 0; i < QID_LEN; i++)
		if (qid_digit(s[i]) < 0)
			return false;
	return s[QID_LEN] == '\0';
}

uint64_t qid_time_us(const char *qid)
{
	uint64_t v = 0;

	for (int i = 0; i < QID_TIME_CHARS; i++)
		v = (v << 5) | (uint64_t)qid_digit(qid[i]);
	return v;
}
