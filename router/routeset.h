/*
 * routeset - what a message's control records say about its routing, as
 * the router needs it: is a routing set due, and, after a requeue, which
 * envelope recipients to route again and which addresses to leave out.
 *
 * Called by routerd for every RouteRequest before it routes.  Pure: no
 * I/O, no logging.  The rules are the scheduler's (scheduler/msgstate.h,
 * proto/qfile.proto), read from the router's side:
 *   - a routing set is the `total` RouteRecords right before the first
 *     routed marker; records before them are a torn earlier attempt; a
 *     marker not preceded by a RouteRecord closes an empty set;
 *   - a RequeueRecord after a set supersedes the routes it lists
 *     (message-wide indexes: the routes of earlier sets come first) and
 *     makes a new set due, closed by the first routed marker after it;
 *     a RequeueRecord while a set is due changes nothing; markers of a
 *     set already closed (a duplicate routing) are ignored.
 * A requeue routes again the envelope recipients that a route superseded
 * by the last RequeueRecord came from (earlier ones were routed again
 * already), and leaves out every target whose address is that of a route
 * never superseded (delivered or failed: the scheduler lists only
 * routes not final, so those are the final ones), so a recipient is never
 * delivered again after a requeue, also when an alias now expands to it
 * from another envelope recipient.
 *
 * Records are not trusted: a set whose records do not add up is an error
 * (the scheduler and the reinjector quarantine such a message).
 */
#ifndef ZFARM_ROUTER_ROUTESET_H
#define ZFARM_ROUTER_ROUTESET_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/qfile.pb-c.h"

struct routeset {
	bool due;     /* a routing set is due: the first one, or one after a requeue */
	bool requeue; /* due after a requeue: route only rerouted recipients, skip kept addresses */
	size_t routes; /* routes in the complete sets */
	size_t last;   /* routes in the latest complete set */
	bool *reroute; /* [n_env]: a route of the recipient was superseded by the last requeue */
	size_t n_env;
	const char **keep; /* sorted addresses of the routes that still count (requeue) */
	size_t nkeep;
};

/*
 * routeset_scan - fill *rs from the n records (n_env envelope
 * recipients).  0, or -1 with a reason when a routing set is damaged.
 * rs->keep points into recs: release rs before freeing them.
 */
int routeset_scan(Zfarm__CtlRecord *const *recs, size_t n, size_t n_env, struct routeset *rs,
		  char *err, size_t errlen);
/* routeset_routes_rcpt - route envelope recipient i now? (all of them for a first set) */
bool routeset_routes_rcpt(const struct routeset *rs, size_t i);
/* routeset_kept - a route that still counts has this address (requeue only). */
bool routeset_kept(const struct routeset *rs, const char *address);
/* routeset_rerouted - envelope recipients routed again (requeue), else all. */
size_t routeset_rerouted(const struct routeset *rs);
void routeset_release(struct routeset *rs);

#endif
