/*
 * dns - where to connect for a mail destination: MX lookup (RFC 5321
 * 5.1) and address lookups through c-ares, driven by the transport's
 * libevent loop (no threads, no blocking).
 *
 * dns_lookup_mx(domain): the MX records, sorted by preference with equal
 * preferences shuffled (random ties), each MX host's A and AAAA records
 * (the families inet_protocols allows; IPv6 first when preferred); no MX
 * records → the domain itself as the only host (implicit MX); a null MX
 * (RFC 7505: one MX with target ".") → permanent 5.1.10; NXDOMAIN →
 * permanent 5.1.2; SERVFAIL, timeout, refused → temporary 4.4.3.  MX
 * hosts without addresses are skipped; none left → temporary 4.4.3 (the
 * DNS may be mid-change).  dns_lookup_host(host): the A/AAAA records of
 * one name (nexthop "[host]:port": no MX lookup); an IP literal answers
 * at once without DNS.  At most DNS_MAX_HOSTS hosts, DNS_MAX_ADDRS
 * addresses each.
 *
 * The resolver: the system's (/etc/resolv.conf) unless dns_servers names
 * servers ("127.0.0.1:5353, [::1]:5353"): tests run a DNS server on
 * loopback and set it, so no query leaves the machine.
 *
 * Details: dns_lookup_host: no address, and some lookup failed for a
 * reason that may pass (SERVFAIL, timeout, refused) → temporary 4.4.3;
 * otherwise (NXDOMAIN, no A/AAAA records, malformed name) → permanent
 * 5.4.4.  An IP literal of a family inet_protocols excludes → temporary
 * 4.4.4.  dns_lookup_mx("[name]") is dns_lookup_host(name): brackets
 * suppress the MX lookup (RFC 5321 address literals, "[host]" nexthops).
 * Every MX host's name NXDOMAIN is still temporary 4.4.3, as the header
 * above says: a destination whose MX records point nowhere is most often
 * being moved.  Reasons are Postfix's: "Host or domain name not found.
 * Name service error for name=x type=A: Host not found, try again".
 *
 * Callers: transport/smtp.c (once per delivery whose nexthop has no idle
 * cached connection).  Library code: results carry a reason; nothing is
 * logged.  Callbacks run from the event loop, never inside the call that
 * started the query nor inside c-ares; a cancelled query's callback never
 * runs.  A callback may start lookups, cancel other queries and call
 * dns_free(); its own query is freed when it returns (dns_cancel on it is
 * a no-op).
 */
#ifndef ZFARM_TRANSPORT_DNS_H
#define ZFARM_TRANSPORT_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct dns;
struct dns_query;

#define DNS_MAX_HOSTS 10
#define DNS_MAX_ADDRS 8

enum dns_family { DNS_ANY, DNS_IPV4, DNS_IPV6 }; /* inet_protocols all/ipv4/ipv6 */

struct dns_config {
	const char *servers;	/* NULL or "": system resolver; else "ip[:port], ..." */
	unsigned timeout_ms;	/* per try; 0: 5000 */
	unsigned tries;		/* 0: 2 */
	enum dns_family family;
	bool prefer_ipv6;	/* within one host: IPv6 addresses first */
};

enum dns_status { DNS_OK, DNS_TEMPFAIL, DNS_PERMFAIL };

struct dns_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64]; /* "192.0.2.7" or "2001:db8::1" */
};

struct dns_host {
	char name[256];	    /* MX target (or the domain/host itself) */
	unsigned pref;	    /* MX preference (0 for implicit MX / host lookups) */
	size_t naddr;
	struct dns_addr addr[DNS_MAX_ADDRS];
};

struct dns_answer {
	enum dns_status status;
	char enhanced[8];   /* "5.1.10", "5.1.2", "4.4.3"; "" when OK */
	char reason[256];   /* "Host or domain name not found. Name service error for name=x type=MX: Host not found" */
	size_t nhost;	    /* hosts in order of preference, each with >= 1 address */
	struct dns_host host[DNS_MAX_HOSTS];
};

typedef void (*dns_cb)(void *arg, const struct dns_answer *answer);

/* dns_new - a resolver on base; NULL + reason (bad dns_servers, c-ares init). */
struct dns *dns_new(struct event_base *base, const struct dns_config *cfg, char *err,
		    size_t errlen);
/* dns_free - cancels pending queries (their callbacks do not run). */
void dns_free(struct dns **d);

/* dns_lookup_mx - MX for domain (see above); NULL only if out of memory. */
struct dns_query *dns_lookup_mx(struct dns *d, const char *domain, dns_cb cb, void *arg);
/* dns_lookup_host - A/AAAA of host (or an IP literal); never MX. */
struct dns_query *dns_lookup_host(struct dns *d, const char *host, dns_cb cb, void *arg);
/* dns_cancel - the callback will not run; the query is freed (at once, or
 * when c-ares gives back its outstanding lookups: c-ares cannot cancel one
 * query, so the small remains wait for their answer or timeout).  NULL ok. */
void dns_cancel(struct dns_query *q);
/* dns_pending - queries d still holds: running, answered but not yet
 * called back, and cancelled ones waiting for c-ares (tests, shutdown). */
size_t dns_pending(const struct dns *d);

/* dns_family_parse - "all", "ipv4", "ipv6" (inet_protocols); -1 + reason. */
int dns_family_parse(const char *s, enum dns_family *f, char *err, size_t errlen);

#endif
