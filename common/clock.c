/* clock - time helpers with a replaceable source; see clock.h. */
#include "common/clock.h"

#include <stdbool.h>
#include <stdio.h>

static bool clock_fake;
static uint64_t clock_fake_wall_us;
static uint64_t clock_fake_mono_ms;

uint64_t clock_now_us(void)
{
	struct timespec ts;

	if (clock_fake)
		return clock_fake_wall_us;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

time_t clock_now(void)
{
	return (time_t)(clock_now_us() / 1000000u);
}

uint64_t clock_mono_ms(void)
{
	struct timespec ts;

	if (clock_fake)
		return clock_fake_mono_ms;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void clock_set_fake(uint64_t wall_us, uint64_t mono_ms)
{
	clock_fake = wall_us != 0 || mono_ms != 0;
	clock_fake_wall_us = wall_us;
	clock_fake_mono_ms = mono_ms;
}

void clock_advance_fake(uint64_t ms)
{
	clock_fake_wall_us += ms * 1000u;
	clock_fake_mono_ms += ms;
}

char *clock_format_rfc5322(time_t t, char *buf, size_t buflen)
{
	struct tm tm;

	localtime_r(&t, &tm);
	if (strftime(buf, buflen, "%a, %d %b %Y %H:%M:%S %z", &tm) == 0 && buflen)
		buf[0] = '\0';
	return buf;
}
