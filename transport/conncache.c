/*
 * conncache - see conncache.h.  A doubly linked list, oldest first,
 * with a timer per entry: the cache holds at most
 * smtp_connection_cache_size entries (50 by default), so lookups walk
 * the list; no index is worth its code at that size.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/xalloc.h"
#include "transport/conncache.h"

struct entry {
	struct entry *prev, *next;
	struct conncache *cc;
	char *dest, *addr;
	void *conn;
	struct event *timer;
};

struct conncache {
	struct event_base *base;
	size_t max;
	unsigned ttl_ms;
	conncache_close_fn close_fn;
	void *arg;
	struct entry *head, *tail; /* oldest at head */
	size_t count;
};

struct conncache *conncache_new(struct event_base *base, size_t max, unsigned ttl_ms,
				conncache_close_fn close_fn, void *arg)
{
	struct conncache *cc = xcalloc(1, sizeof(*cc));

	cc->base = base;
	cc->max = max;
	cc->ttl_ms = ttl_ms;
	cc->close_fn = close_fn;
	cc->arg = arg;
	return cc;
}

static void *entry_unlink(struct entry *e)
{
	struct conncache *cc = e->cc;
	void *conn = e->conn;

	if (e->prev)
		e->prev->next = e->next;
	else
		cc->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		cc->tail = e->prev;
	cc->count--;
	event_free(e->timer);
	free(e->dest);
	free(e->addr);
	free(e);
	return conn;
}

static void entry_close(struct entry *e, enum conncache_why why)
{
	struct conncache *cc = e->cc;
	void *conn = entry_unlink(e);

	cc->close_fn(conn, why, cc->arg);
}

static void on_expire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	entry_close(arg, CONNCACHE_EXPIRED);
}

void conncache_free(struct conncache **ccp)
{
	struct conncache *cc = ccp ? *ccp : NULL;

	if (!cc)
		return;
	*ccp = NULL;
	while (cc->head)
		entry_close(cc->head, CONNCACHE_SHUTDOWN);
	free(cc);
}

void conncache_put(struct conncache *cc, const char *dest_key, const char *addr_key, void *conn)
{
	struct entry *e;
	struct timeval tv;

	if (cc->max == 0 || cc->ttl_ms == 0) {
		cc->close_fn(conn, CONNCACHE_DISABLED, cc->arg);
		return;
	}
	while (cc->count >= cc->max && cc->head)
		entry_close(cc->head, CONNCACHE_EVICTED);
	e = xcalloc(1, sizeof(*e));
	e->cc = cc;
	e->dest = xstrdup(dest_key);
	e->addr = addr_key ? xstrdup(addr_key) : NULL;
	e->conn = conn;
	e->timer = evtimer_new(cc->base, on_expire, e);
	if (!e->timer)
		abort(); /* out of memory: xalloc's policy */
	tv.tv_sec = cc->ttl_ms / 1000;
	tv.tv_usec = (cc->ttl_ms % 1000) * 1000;
	evtimer_add(e->timer, &tv);
	e->prev = cc->tail;
	if (cc->tail)
		cc->tail->next = e;
	else
		cc->head = e;
	cc->tail = e;
	cc->count++;
}

/* newest first: the connection with the most time left */
static void *take(struct conncache *cc, const char *key, bool by_addr)
{
	for (struct entry *e = cc->tail; e; e = e->prev) {
		const char *k = by_addr ? e->addr : e->dest;

		if (k && strcmp(k, key) == 0)
			return entry_unlink(e);
	}
	return NULL;
}

void *conncache_take_dest(struct conncache *cc, const char *dest_key)
{
	return take(cc, dest_key, false);
}

void *conncache_take_addr(struct conncache *cc, const char *addr_key)
{
	return take(cc, addr_key, true);
}

int conncache_remove(struct conncache *cc, void *conn)
{
	for (struct entry *e = cc->head; e; e = e->next) {
		if (e->conn == conn) {
			entry_unlink(e);
			return 0;
		}
	}
	return -1;
}

size_t conncache_count(const struct conncache *cc)
{
	return cc->count;
}
