/*
 * dest - one destination's delivery window: how many deliveries to one
 * (channel, nexthop) may run at once, and whether it is dead.
 *
 * Called by the scheduler before starting a delivery (dest_may_start) and
 * with each delivery's outcome.  Pure: the time is passed in (tests use a
 * fake clock); no I/O, no logging.
 *
 * Policy (Postfix's qmgr, simplified):
 *   - The window starts at `initial` (initial_destination_concurrency)
 *     and never exceeds `limit` (the channel's destination_concurrency) or
 *     drops below 1.
 *   - A delivery that reached the destination (DEST_OK: any per-recipient
 *     outcome, 2xx, 4xx or 5xx replies alike) grows the window by 1, up to
 *     limit, and clears the consecutive failure count.
 *   - A delivery that could not reach it (DEST_CONN_FAIL: connection or
 *     handshake failure, timeout) shrinks the window by 1 and counts a
 *     consecutive failure; after `dead_after` consecutive failures (and no
 *     delivery running that could still succeed) the destination is dead
 *     until now + retry_us: dest_may_start says no, and the scheduler
 *     defers its recipients without a connection attempt.
 *   - dest_revive (operator flush, or the retry time passed: dest_dead
 *     notices it) clears the dead mark and resets the window to `initial`.
 *   - A rate delay (the channel's rate_delay, Postfix's
 *     default_destination_rate_delay) makes the window 1 and spaces the
 *     starts of deliveries at least that far apart.
 */
#ifndef ZFARM_DEST_H
#define ZFARM_DEST_H

#include <stdbool.h>
#include <stdint.h>

enum dest_outcome {
	DEST_OK,	/* reached the destination, whatever it answered */
	DEST_CONN_FAIL, /* could not talk to it */
};

struct dest {
	unsigned initial, limit, dead_after;
	int64_t retry_us;	/* how long a dead destination stays dead */
	unsigned window;	/* deliveries allowed at once now */
	unsigned active;	/* deliveries running */
	unsigned failures;	/* consecutive DEST_CONN_FAIL */
	int64_t dead_until_us;	/* 0: alive */
	int64_t rate_delay_us;	/* 0: none */
	int64_t next_start_us;	/* with a rate delay: no start before */
	uint64_t delivered, failed_conn; /* counters */
};

/* dest_init - a fresh destination (initial >= 1, limit >= initial, dead_after >= 1). */
void dest_init(struct dest *d, unsigned initial, unsigned limit, unsigned dead_after,
	       int64_t retry_us);
/* dest_dead - dead at now_us?  Revives it (dest_revive) when the time has passed. */
bool dest_dead(struct dest *d, int64_t now_us);
/* dest_may_start - alive and active < window. */
bool dest_may_start(struct dest *d, int64_t now_us);
/* dest_set_rate_delay - at most one delivery at once, starts us apart (0: off). */
void dest_set_rate_delay(struct dest *d, int64_t us);
/* dest_rate_wait - nothing runs, but the rate delay holds the next start until this (0: not). */
int64_t dest_rate_wait(const struct dest *d, int64_t now_us);
/* dest_start - a delivery begins at now_us (caller checked dest_may_start). */
void dest_start(struct dest *d, int64_t now_us);
/* dest_done - a delivery ended with this outcome. */
void dest_done(struct dest *d, enum dest_outcome o, int64_t now_us);
/* dest_revive - alive again, window back to initial, failures cleared. */
void dest_revive(struct dest *d);

#endif
