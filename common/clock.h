/*
 * clock - time helpers with a replaceable source, so tests can fake time.
 *
 * clock_now_us() and clock_mono_ms() read the real clocks unless a test has
 * installed a fake with clock_set_fake(); modules that make time-based
 * decisions (retry, throttling, idle exit) read time only through here.
 */
#ifndef ZFARM_CLOCK_H
#define ZFARM_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* clock_now_us - wall-clock microseconds since the epoch. */
uint64_t clock_now_us(void);
/* clock_now - wall-clock seconds since the epoch. */
time_t clock_now(void);
/* clock_mono_ms - monotonic milliseconds, for durations and deadlines. */
uint64_t clock_mono_ms(void);

/*
 * clock_set_fake - tests only: make every reader above return this wall
 * time (microseconds) and monotonic time (milliseconds); pass 0, 0 to go
 * back to the real clocks.  clock_advance_fake() moves both forward.
 */
void clock_set_fake(uint64_t wall_us, uint64_t mono_ms);
void clock_advance_fake(uint64_t ms);

/*
 * clock_format_rfc5322 - "Mon, 23 Nov 2026 07:11:02 +0000" style date in
 * local time for Received: and Date: headers.  Returns buf.
 */
char *clock_format_rfc5322(time_t t, char *buf, size_t buflen);

#endif
