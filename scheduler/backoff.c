/*
 * backoff - retry times, expiry and the delay warning (see backoff.h).
 *
 * All arithmetic saturates: a huge lifetime or maximal backoff (an
 * operator's "never") must not wrap around into the past.
 */
#include "scheduler/backoff.h"

static int64_t add_sat(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* splitmix64's finaliser: a cheap, well-mixed hash of one 64-bit word. */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

int64_t backoff_next(const struct backoff_policy *p, unsigned attempts, int64_t now_us,
		     int64_t arrival_us, uint64_t seed)
{
	int64_t delay = p->minimal_us > 0 ? p->minimal_us : 0;
	int64_t expiry = add_sat(arrival_us, p->lifetime_us);
	int64_t next;
	uint64_t r;

	if (attempts == 0)
		attempts = 1;
	/* Stop doubling once past maximal: the clamp below wins anyway. */
	for (unsigned i = 1; i < attempts && delay > 0 && delay < p->maximal_us; i++)
		delay = delay > INT64_MAX / 2 ? INT64_MAX : delay * 2;
	if (delay > p->maximal_us)
		delay = p->maximal_us;
	if (delay < p->minimal_us)
		delay = p->minimal_us; /* minimal wins over a smaller maximal */
	if (delay < 0)
		delay = 0;

	/* spread = delay * r / 2^32 / 10 with r in [0, 2^32): below 10% of delay. */
	r = mix64(seed ^ mix64(attempts)) >> 32;
	next = add_sat(now_us, delay);
	next = add_sat(next, (int64_t)(((unsigned __int128)delay * r >> 32) / 10));

	if (expiry <= now_us)
		return now_us;
	return next < expiry ? next : expiry;
}

bool backoff_expired(const struct backoff_policy *p, int64_t now_us, int64_t arrival_us)
{
	return now_us >= add_sat(arrival_us, p->lifetime_us);
}

bool backoff_delay_warn(const struct backoff_policy *p, int64_t now_us, int64_t arrival_us)
{
	return p->delay_warning_us > 0 && now_us >= add_sat(arrival_us, p->delay_warning_us);
}
