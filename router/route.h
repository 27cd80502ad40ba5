/*
 * route - the routing engine: one envelope recipient in, the deliveries it
 * becomes out, each (address, channel, nexthop, user) or a permanent error.
 *
 * Called by the router farm for every recipient of a message (and for
 * smtpserver's verification queries).  Pure apart from reading
 * :include: files and getpwnam(): no logging, no queue access; the tables
 * are read-only during a call.
 *
 * Lookup order for one address (documented in router(8)):
 *   1. canonicalise: parse the address (common/address.h, source routes
 *      dropped), lower-case the domain; an empty domain (<postmaster>)
 *      becomes the first mydestination domain.
 *   2. virtual_alias_maps: "user+ext@domain", then "user@domain", then
 *      "@domain" (catch-all); a hit is a comma list of addresses, each
 *      routed again from step 1 (one level deeper).
 *   3. local domains (mydestination, "domain" or ".domain" entries): the
 *      local part, lower-cased, is looked up in alias_maps as "user+ext",
 *      then "user"; a hit is a comma list of items: an address (routed
 *      again), "|command" and "/file" (channel local, only when
 *      allow_alias_commands / allow_alias_files; otherwise a permanent
 *      error), ":include:/path" (the file's items, comma or newline
 *      separated, "#" comments).  An alias that names itself ("bob: bob,
 *      x") delivers to the local user bob.  No alias: the user (local part
 *      without "+ext") must be in local_recipient_maps (a set table) or,
 *      when that is not configured, in the passwd database; otherwise
 *      5.1.1 "User unknown in local recipient table".  Result: channel
 *      "local", nexthop "", user = the user, address = user+ext@domain.
 *   4. channel domain sets (each channel's "domains" table, in channel
 *      order): "domain" or a parent ".parent" entry → that channel,
 *      nexthop = the domain.
 *   5. transport_maps: "domain", then ".parent" for each parent → value
 *      "channel:nexthop" ("channel:" or "channel" keeps the domain as
 *      nexthop; "error:5.x.y text" is a permanent error).
 *   6. relayhost (if set) → channel "smtp", nexthop relayhost.
 *   7. default: channel "smtp", nexthop = the domain.
 * Expansion is recursive up to max_depth levels and max_targets results
 * per envelope recipient; deeper, or an address that reappears in its own
 * expansion chain (a: b, b: a), is a permanent error 5.4.6 "Alias
 * expansion loop" for that branch only.  Duplicate results (same channel,
 * nexthop and address) are kept once.  A bad address in a table is a
 * permanent error 5.1.3 for that branch.  An error never stops the other
 * branches.
 *
 * Results use the channel names of the config; "error" marks permanent
 * failures (target->error holds "5.1.1 User unknown ...").
 */
#ifndef ZFARM_ROUTER_ROUTE_H
#define ZFARM_ROUTER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

struct table;

struct route_channel {
	const char *name;
	const struct table *domains; /* may be NULL */
};

struct route_config {
	const char *const *mydestination; /* "domain" or ".domain" */
	size_t n_mydestination;
	const char *recipient_delimiter;  /* e.g. "+"; "" or NULL: none; any of its characters */
	const struct table *virtual_alias_maps; /* each may be NULL */
	const struct table *alias_maps;
	const struct table *local_recipient_maps; /* NULL: passwd */
	const struct table *transport_maps;
	const struct route_channel *channels;
	size_t n_channels;
	const char *relayhost; /* "" or NULL: none */
	unsigned max_depth;    /* 0: 20 */
	unsigned max_targets;  /* 0: 1000 */
	bool allow_alias_commands;
	bool allow_alias_files;
};

struct route_target {
	char *address; /* final address, or "|command" / "/file" */
	char *channel; /* "local", "smtp", ..., "error" */
	char *nexthop; /* "" for local */
	char *user;    /* local user, "" otherwise */
	char *error;   /* channel "error": "5.1.1 text"; else "" */
};

struct route_result {
	struct route_target *t;
	size_t n;
};

/*
 * route_resolve - route rcpt (an address without brackets, as stored in
 * the envelope).  Fills *res (caller frees with route_result_free); 0, or
 * -1 with a reason only for internal failures (a bad recipient is a
 * result with channel "error", not a failure).
 */
int route_resolve(const struct route_config *rc, const char *rcpt, struct route_result *res,
		  char *err, size_t errlen);
void route_result_free(struct route_result *res);

#endif
