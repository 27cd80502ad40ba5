/*
 * dns_private - the pure parts of transport/dns.c (no c-ares, no event
 * loop), exported for its unit tests (tests/transport/test_dns.c) only.
 * Nothing else includes this header.
 */
#ifndef ZFARM_TRANSPORT_DNS_PRIVATE_H
#define ZFARM_TRANSPORT_DNS_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "transport/dns.h"

/* One MX record: the name points into the caller's storage. */
struct dns_mx {
	unsigned pref;
	const char *name;
};

/*
 * dns_servers_csv - dns_servers ("127.0.0.1:5353, [::1]:53, 192.0.2.1")
 * into c-ares' ares_set_servers_ports_csv() form ("127.0.0.1:5353,[::1]:53,
 * 192.0.2.1:53" without spaces, IPv6 always bracketed, the port always
 * given).  Each address must be a numeric IPv4 or IPv6 address, each port
 * 1-65535; an empty list is an error.  0, or -1 + reason.
 */
int dns_servers_csv(const char *servers, char *out, size_t outlen, char *err, size_t errlen);

/* dns_rand_seed - a seed from getrandom() (the clock and pid if that fails). */
uint64_t dns_rand_seed(void);
/* dns_rand_below - uniform in [0, n) (n >= 1), advancing *state (splitmix64, rejection). */
size_t dns_rand_below(uint64_t *state, size_t n);

/*
 * dns_mx_order - sort mx[0..n) by preference, equal preferences in random
 * order (a Fisher-Yates shuffle of each run), then keep at most
 * DNS_MAX_HOSTS distinct names (case-insensitive, trailing dot ignored;
 * the first, lowest-preference occurrence stays) at the front, dropping
 * empty and "." targets.  Returns how many were kept.
 */
size_t dns_mx_order(struct dns_mx *mx, size_t n, uint64_t *rng);

/*
 * dns_literal_parse - an address literal: "[192.0.2.1]", "[IPv6:2001:db8::1]",
 * "[2001:db8::1]", and when bare_ok also "192.0.2.1" and "2001:db8::1".
 * Fills a (port 0); 1 if s is a literal, 0 if not.
 */
int dns_literal_parse(const char *s, int bare_ok, struct dns_addr *a);

#endif
