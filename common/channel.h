/*
 * channel - the channel table: named delivery channels (seed 001), each
 * bound to the socket of the transport farm that delivers for it, with its
 * limits and, optionally, the set of domains routed to it.
 *
 * One [channel NAME] section per channel in zfarm.conf; read by the router
 * (domain sets, known names), the scheduler (socket and limits) and the
 * tools.  Built-in channels exist without a section and can be changed by
 * one: local, smtp, relay (smtp to a relayhost), error (permanent failure
 * with the route's text, never delivered), discard (dropped as delivered),
 * hold (kept until released), bounce (delivery status notifications).
 *
 * Parameters of a section (defaults in brackets):
 *   endpoint                  transport farm socket [unix:private/NAME];
 *                             "none" for channels the scheduler handles
 *                             itself (error, discard, hold)
 *   domains                   router table spec of the domains routed to
 *                             this channel, e.g. set:/etc/zfarm/bulk.domains
 *                             (entries "domain" or ".domain") [none]
 *   concurrency               deliveries at once on the channel [20]
 *   destination_concurrency   deliveries at once per nexthop at most [20]
 *                             (the window starts at the global
 *                             initial_destination_concurrency and grows)
 *   recipient_limit           recipients per delivery [50]
 *   rate_delay                pause between deliveries per nexthop [0s]
 * Anything else in a section is an error naming the file and line.
 *
 * Library code: errors are returned with a reason, never logged; loading
 * is at start-up and reload, lookups are O(channels).
 */
#ifndef ZFARM_CHANNEL_H
#define ZFARM_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

struct config;

struct channel_def {
	char *name;
	char *endpoint; /* NULL: handled by the scheduler itself */
	char *domains;	/* table spec, NULL if none */
	unsigned concurrency;
	unsigned destination_concurrency;
	unsigned recipient_limit;
	unsigned rate_delay; /* seconds */
	bool builtin;	     /* exists without a section */
};

struct channel_table;

/*
 * channel_table_load - the sections of cfg in file order, then the
 * built-ins that have no section.  NULL + "FILE:LINE: reason".
 */
struct channel_table *channel_table_load(const struct config *cfg, char *err, size_t errlen);
size_t channel_table_count(const struct channel_table *ct);
const struct channel_def *channel_table_get(const struct channel_table *ct, size_t i);
/* channel_table_find - by name (exact), NULL if none. */
const struct channel_def *channel_table_find(const struct channel_table *ct, const char *name);
void channel_table_free(struct channel_table **ct);

#endif
