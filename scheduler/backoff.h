/*
 * backoff - when to try a deferred recipient again, and when a message is
 * too old to keep trying or to stay silent about.
 *
 * Called by the scheduler after each deferral and by its timers.  Pure:
 * the times are passed in.
 *
 *   backoff_next: after the n-th failed attempt (n >= 1) the delay is
 *   minimal * 2^(n-1), clamped to [minimal, maximal] (Postfix's
 *   minimal_backoff_time 300s and maximal_backoff_time 4000s by default),
 *   never later than the message's expiry (arrival + lifetime), plus a
 *   deterministic spread of up to 10% derived from a seed (the queue ID's
 *   hash) so that messages deferred together do not all retry in the same
 *   second.
 *   backoff_expired: now >= arrival + lifetime (maximal_queue_lifetime,
 *   5 days by default): pending recipients fail with 4.4.7.
 *   backoff_delay_warn: delay_warning_time > 0 and now >= arrival +
 *   delay_warning_time (a notice is due, the caller sends it once).
 */
#ifndef ZFARM_BACKOFF_H
#define ZFARM_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

struct backoff_policy {
	int64_t minimal_us;	 /* minimal_backoff_time */
	int64_t maximal_us;	 /* maximal_backoff_time */
	int64_t lifetime_us;	 /* maximal_queue_lifetime */
	int64_t delay_warning_us; /* delay_warning_time; 0: off */
};

/* backoff_next - absolute time of the next attempt after `attempts` failures. */
int64_t backoff_next(const struct backoff_policy *p, unsigned attempts, int64_t now_us,
		     int64_t arrival_us, uint64_t seed);
bool backoff_expired(const struct backoff_policy *p, int64_t now_us, int64_t arrival_us);
bool backoff_delay_warn(const struct backoff_policy *p, int64_t now_us, int64_t arrival_us);

#endif
