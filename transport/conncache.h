/*
 * conncache - idle connections kept for reuse, keyed by destination.
 *
 * A transport that finished a delivery on a connection it could use
 * again parks the connection here under two keys: the destination
 * (nexthop, e.g. "smtp:example.org:25") and the exact address
 * ("smtp:192.0.2.7:25"), like Postfix's scache.  The next delivery to
 * that destination takes it back (no DNS, no connect, no greeting);
 * one to another destination whose MX has the same address takes it by
 * address.  The cache knows nothing of SMTP: a connection is a void *
 * with a close function the owner supplies.
 *
 * Limits: an entry lives at most ttl_ms (then close_fn(conn,
 * CONNCACHE_EXPIRED)); at most max entries (storing one more closes the
 * oldest, CONNCACHE_EVICTED).  ttl_ms 0 or max 0: the cache keeps
 * nothing (conncache_put closes at once, CONNCACHE_DISABLED).
 * conncache_take removes the entry and hands the connection back to
 * the caller; conncache_remove drops one the owner found dead (no
 * close_fn).  conncache_free closes everything (CONNCACHE_SHUTDOWN).
 *
 * Invariants: a connection is in the cache at most once; close_fn is
 * called at most once per put and never for a taken or removed one.
 * Callers: transport/smtp.c.  Pure apart from its timers on the base.
 */
#ifndef ZFARM_TRANSPORT_CONNCACHE_H
#define ZFARM_TRANSPORT_CONNCACHE_H

#include <stddef.h>

struct event_base;
struct conncache;

enum conncache_why { CONNCACHE_EXPIRED, CONNCACHE_EVICTED, CONNCACHE_DISABLED, CONNCACHE_SHUTDOWN };

typedef void (*conncache_close_fn)(void *conn, enum conncache_why why, void *arg);

struct conncache *conncache_new(struct event_base *base, size_t max, unsigned ttl_ms,
				conncache_close_fn close_fn, void *arg);
/* conncache_free - close every cached connection; NULL ok; *cc = NULL. */
void conncache_free(struct conncache **cc);

/* conncache_put - park conn under both keys (addr_key may be NULL). */
void conncache_put(struct conncache *cc, const char *dest_key, const char *addr_key, void *conn);
/* conncache_take_dest / _addr - the newest connection under this key, removed; NULL none. */
void *conncache_take_dest(struct conncache *cc, const char *dest_key);
void *conncache_take_addr(struct conncache *cc, const char *addr_key);
/* conncache_remove - forget conn (it died); no close_fn.  0, or -1 if not cached. */
int conncache_remove(struct conncache *cc, void *conn);
/* conncache_count - connections cached now. */
size_t conncache_count(const struct conncache *cc);

#endif
