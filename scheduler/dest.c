/*
 * dest - one destination's delivery window and dead mark (see dest.h).
 *
 * The window follows Postfix's qmgr in its simplest form: +1 per delivery
 * that reached the destination, -1 per one that could not, between 1 and
 * the channel's limit.  A destination is only declared dead when no
 * delivery is still running: a running one may yet succeed, and marking
 * the destination dead under it would defer recipients for nothing.
 */
#include "scheduler/dest.h"

/* Saturating a + b for b >= 0: a dead mark far in the future stays there. */
static int64_t add_sat(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

void dest_init(struct dest *d, unsigned initial, unsigned limit, unsigned dead_after,
	       int64_t retry_us)
{
	*d = (struct dest){
	    .initial = initial,
	    .limit = limit,
	    .dead_after = dead_after,
	    .retry_us = retry_us,
	    .window = initial,
	};
}

bool dest_dead(struct dest *d, int64_t now_us)
{
	if (d->dead_until_us == 0)
		return false;
	if (now_us < d->dead_until_us)
		return true;
	dest_revive(d);
	return false;
}

bool dest_may_start(struct dest *d, int64_t now_us)
{
	if (dest_dead(d, now_us))
		return false;
	if (d->rate_delay_us)
		return d->active == 0 && now_us >= d->next_start_us;
	return d->active < d->window;
}

void dest_set_rate_delay(struct dest *d, int64_t us)
{
	d->rate_delay_us = us > 0 ? us : 0;
}

int64_t dest_rate_wait(const struct dest *d, int64_t now_us)
{
	if (d->rate_delay_us && d->active == 0 && now_us < d->next_start_us)
		return d->next_start_us;
	return 0;
}

void dest_start(struct dest *d, int64_t now_us)
{
	d->active++;
	if (d->rate_delay_us)
		d->next_start_us = now_us + d->rate_delay_us;
}

void dest_done(struct dest *d, enum dest_outcome o, int64_t now_us)
{
	if (d->active > 0)
		d->active--;
	switch (o) {
	case DEST_OK:
		if (d->window < d->limit)
			d->window++;
		d->failures = 0;
		d->delivered++;
		break;
	case DEST_CONN_FAIL:
		if (d->window > 1)
			d->window--;
		d->failures++;
		d->failed_conn++;
		if (d->failures >= d->dead_after && d->active == 0) {
			d->dead_until_us = add_sat(now_us, d->retry_us);
			/* 0 means alive: a mark that lands on it must still hold for an instant. */
			if (d->dead_until_us == 0)
				d->dead_until_us = 1;
		}
		break;
	}
}

void dest_revive(struct dest *d)
{
	d->dead_until_us = 0;
	d->window = d->initial;
	d->failures = 0;
}
