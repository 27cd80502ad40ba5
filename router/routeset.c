/*
 * routeset - a message's routing as the router needs it; see routeset.h.
 *
 * One pass over the records, like msgstate_load(): `due` while a routing
 * set is expected (at the start, after each RequeueRecord), `from` where
 * its records may start.  The routes of the complete sets are collected
 * (origin and address, borrowed from the records), each with the requeue
 * that superseded it; only when the result is a requeue are they turned
 * into the recipients to route again (those of the routes the last
 * requeue superseded: earlier ones were routed again already) and the
 * sorted kept addresses (routes never superseded).
 */
#include "router/routeset.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

struct rroute {
	uint32_t orig_index;
	const char *address;
	size_t superseded; /* by the n-th requeue (from 1); 0: still counts */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool is_case(const Zfarm__CtlRecord *c, Zfarm__CtlRecord__BodyCase bc)
{
	return c && c->body_case == bc;
}

/*
 * set_start - the routing set closed by the marker at recs[mark] (records
 * from `from` on): where it starts, its size in *total; -1 if damaged.
 */
static long set_start(Zfarm__CtlRecord *const *recs, size_t from, size_t mark, size_t *total,
		      char *err, size_t errlen)
{
	size_t t, start;

	*total = 0;
	if (mark == from || !is_case(recs[mark - 1], ZFARM__CTL_RECORD__BODY_ROUTE))
		return (long)mark;
	if (!recs[mark - 1]->route) {
		set_err(err, errlen, "empty route record before the routed marker");
		return -1;
	}
	t = recs[mark - 1]->route->total;
	if (t == 0 || t > mark - from) {
		set_err(err, errlen, "routing set: total %zu but %zu records before the marker", t,
			mark - from);
		return -1;
	}
	start = mark - t;
	for (size_t k = 0; k < t; k++) {
		const Zfarm__CtlRecord *c = recs[start + k];
		const Zfarm__RouteRecord *rr =
		    is_case(c, ZFARM__CTL_RECORD__BODY_ROUTE) ? c->route : NULL;

		if (!rr || rr->total != t || rr->index != k) {
			set_err(err, errlen, "routing set: route %zu of %zu does not fit", k, t);
			return -1;
		}
	}
	*total = t;
	return (long)start;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int routeset_scan(Zfarm__CtlRecord *const *recs, size_t n, size_t n_env, struct routeset *rs,
		  char *err, size_t errlen)
{
	struct rroute *r = NULL;
	size_t nr = 0, from = 0, total, requeues = 0;
	long start;

	memset(rs, 0, sizeof(*rs));
	rs->due = true;
	rs->n_env = n_env;
	if (!recs)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		const Zfarm__CtlRecord *c = recs[i];

		if (is_case(c, ZFARM__CTL_RECORD__BODY_ROUTED) && c->routed) {
			if (!rs->due)
				continue;
			start = set_start(recs, from, i, &total, err, errlen);
			if (start < 0) {
				free(r);
				return -1;
			}
			r = xreallocarray(r, nr + total + 1, sizeof(*r));
			for (size_t k = 0; k < total; k++) {
				const Zfarm__RouteRecord *rr = recs[(size_t)start + k]->route;

				r[nr + k] = (struct rroute){rr->orig_index,
							    rr->address ? rr->address : "", 0};
			}
			nr += total;
			rs->last = total;
			rs->due = false;
		} else if (is_case(c, ZFARM__CTL_RECORD__BODY_REQUEUE) && c->requeue && !rs->due) {
			requeues++;
			for (size_t k = 0; k < c->requeue->n_index; k++)
				if (c->requeue->index[k] < nr &&
				    !r[c->requeue->index[k]].superseded)
					r[c->requeue->index[k]].superseded = requeues;
			rs->due = true;
			from = i + 1;
		}
	}
	rs->routes = nr;
	if (rs->due && requeues) {
		rs->requeue = true;
		rs->reroute = xcalloc(n_env ? n_env : 1, sizeof(*rs->reroute));
		rs->keep = xcalloc(nr ? nr : 1, sizeof(*rs->keep));
		for (size_t k = 0; k < nr; k++) {
			if (!r[k].superseded)
				rs->keep[rs->nkeep++] = r[k].address;
			else if (r[k].superseded == requeues && r[k].orig_index < n_env)
				rs->reroute[r[k].orig_index] = true;
		}
		qsort(rs->keep, rs->nkeep, sizeof(*rs->keep), cmp_str);
	}
	free(r);
	return 0;
}

bool routeset_routes_rcpt(const struct routeset *rs, size_t i)
{
	if (!rs->requeue)
		return true;
	return i < rs->n_env && rs->reroute[i];
}

bool routeset_kept(const struct routeset *rs, const char *address)
{
	if (!rs->requeue || rs->nkeep == 0)
		return false;
	return bsearch(&address, rs->keep, rs->nkeep, sizeof(*rs->keep), cmp_str) != NULL;
}

size_t routeset_rerouted(const struct routeset *rs)
{
	size_t c = 0;

	if (!rs->requeue)
		return rs->n_env;
	for (size_t i = 0; i < rs->n_env; i++)
		c += rs->reroute[i];
	return c;
}

void routeset_release(struct routeset *rs)
{
	if (!rs)
		return;
	free(rs->reroute);
	free(rs->keep);
	memset(rs, 0, sizeof(*rs));
}
