/*
 * relay - smtpserver's relay control: may this client send mail to this
 * recipient through us?
 *
 * Called by the smtpserver session once per RCPT TO, after the address
 * parsed (smtp_cmd).  Pure: no I/O, no allocation after relay_policy_new(),
 * no logging.
 *
 * The rule (Postfix's permit_mynetworks + reject_unauth_destination, with
 * allow_untrusted_routing = no):
 *   1. A recipient whose domain is in mydestination is local: RELAY_LOCAL.
 *      An empty domain is local only for "postmaster" (any case).
 *   2. A recipient whose domain is in relay_domains: RELAY_DOMAIN.
 *   3. Any other domain (address literals included): RELAY_TRUSTED if the
 *      client is trusted (in mynetworks; later: authenticated), else
 *      RELAY_DENIED "Relay access denied".
 *   4. For an untrusted client, a recipient of 1 or 2 whose local part
 *      routes onward is RELAY_DENIED too, because a next hop may honour
 *      it: local part containing '%' (u%ext@local), '!' (ext!u@local) or
 *      '@' (a quoted "u@ext"@local).  A source route (@a:u@dom) is thrown
 *      away by the parser (RFC 5321 appendix C) and the domain after it
 *      decides.  Trusted clients may send such addresses.
 *
 * Domain lists: each entry is a domain ("example.com": that domain only)
 * or ".example.com" (every subdomain of example.com, not example.com
 * itself), compared case-insensitively (ASCII); a trailing dot on either
 * side is ignored.  An address literal matches an entry only if the entry
 * is the same literal ("[192.0.2.1]"), compared textually after lower-casing.
 * Lookups are hash-based: O(labels of the domain) per recipient.
 */
#ifndef ZFARM_RELAY_H
#define ZFARM_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/address.h"

struct relay_policy;

enum relay_verdict {
	RELAY_LOCAL,   /* domain in mydestination (or <postmaster>) */
	RELAY_DOMAIN,  /* domain in relay_domains */
	RELAY_TRUSTED, /* other domain, client trusted */
	RELAY_DENIED,  /* 554 5.7.1 */
};

/*
 * relay_policy_new - build from the mydestination and relay_domains
 * entries (as config_get_list() returns them).  NULL with "ENTRY: reason"
 * for an entry that is not a domain, ".domain" or address literal.
 */
struct relay_policy *relay_policy_new(const char *const *mydestination, size_t n_mydest,
				      const char *const *relay_domains, size_t n_relay, char *err,
				      size_t errlen);
void relay_policy_free(struct relay_policy **p);

/* relay_domain_is_local - is this domain (any case) in mydestination? */
bool relay_domain_is_local(const struct relay_policy *p, const char *domain);

/*
 * relay_check - the verdict for rcpt (a parsed RCPT TO path, not null)
 * from a client that is trusted or not.  For RELAY_DENIED *reason gets a
 * static text for the reply after "554 5.7.1 <addr>: ", e.g. "Relay
 * access denied"; reason may be NULL.
 */
enum relay_verdict relay_check(const struct relay_policy *p, const struct address *rcpt,
			       bool trusted, const char **reason);

#endif
