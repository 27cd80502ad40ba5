/*
 * dns - MX and address lookups through c-ares on the transport's libevent
 * loop (interface and semantics: dns.h).
 *
 * The loop glue: c-ares tells us which sockets it wants watched through
 * its socket-state callback (one persistent libevent event per socket),
 * and one timer is armed from ares_timeout() after every call into c-ares;
 * both call ares_process_fd().  No polling, no threads.
 *
 * A query is a small state machine: an MX lookup (for dns_lookup_mx), then
 * A and/or AAAA lookups of every chosen host, all in parallel (at most
 * DNS_MAX_HOSTS * 2 at a time, slots inside the query).  q->pending counts
 * the c-ares lookups still owed to the query, plus one "hold" while the
 * query starts lookups (c-ares may call back inside ares_query()).  When it
 * reaches zero the answer is built and the query's own event made active:
 * the user's callback runs from the event loop, never inside c-ares or the
 * call that started the query, so it may do anything, dns_free() included.
 *
 * Cancelling: c-ares cannot cancel one query (ares_cancel() ends every
 * query of the channel), so a cancelled query with lookups outstanding is
 * only marked; the c-ares callbacks see the mark, start nothing, and the
 * last one frees it.  dns_free() marks every query, then ares_destroy()
 * calls each outstanding lookup back with ARES_EDESTRUCTION (and closes
 * the sockets through the socket-state callback), which frees the rest:
 * the struct dns outlives every callback c-ares can make.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <ares.h>
#include <arpa/nameser.h>
#include <event2/event.h>

#include "common/err.h"
#include "transport/dns.h"
#include "transport/dns_private.h"

#define DNS_DEFAULT_TIMEOUT_MS 5000
#define DNS_DEFAULT_TRIES      2
#define DNS_NAME_MAX	       253 /* RFC 1035 (without the trailing dot) */

enum { FAM_V4, FAM_V6 };
enum dns_sub_kind { SUB_MX, SUB_A, SUB_AAAA };

struct dns_sock {
	struct dns_sock *next;
	struct dns *d;
	ares_socket_t fd;
	short what;
	struct event *ev;
};

/* One c-ares lookup's context: what it is for. */
struct dns_sub {
	struct dns_query *q;
	enum dns_sub_kind kind;
	unsigned target;
};

/* One host to find addresses for. */
struct dns_target {
	char name[256];
	unsigned pref;
	int status[2]; /* ares status per family (FAM_V4, FAM_V6); -1: not asked */
	size_t n4, n6;
	struct in_addr a4[DNS_MAX_ADDRS];
	struct in6_addr a6[DNS_MAX_ADDRS];
};

enum dns_query_type { Q_MX, Q_HOST };

struct dns_query {
	struct dns *d;
	struct dns_query *prev, *next;
	enum dns_query_type type;
	dns_cb cb;
	void *arg;
	char name[256];
	unsigned pending;
	bool cancelled;
	bool delivering;
	bool answered; /* ans is final (an error, or a literal) */
	struct event *ev;
	struct dns_sub mxsub;
	struct dns_sub subs[DNS_MAX_HOSTS * 2];
	unsigned nsub;
	unsigned ntarget;
	struct dns_target target[DNS_MAX_HOSTS];
	struct dns_answer ans;
};

struct dns {
	struct event_base *base;
	ares_channel ch;
	struct event *timer;
	struct dns_sock *socks;
	struct dns_query *queries;
	size_t nquery;
	uint64_t rng;
	enum dns_family family;
	bool prefer_ipv6;
	bool closing;
};

/* ---- pure helpers (dns_private.h) ---- */

static int parse_port(const char *s, unsigned *port)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < 1 || v > 65535)
		return -1;
	*port = (unsigned)v;
	return 0;
}

int dns_servers_csv(const char *servers, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *p = servers;
	size_t used = 0;
	unsigned n = 0;

	if (outlen)
		out[0] = 0;
	while (*p) {
		char item[128], host[128];
		const char *end;
		size_t len;
		unsigned port = 53;
		struct in6_addr a6;
		struct in_addr a4;
		bool v6;
		int w;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		end = p + strcspn(p, ", \t");
		len = (size_t)(end - p);
		if (len >= sizeof(item)) {
			err_printf(err, errlen, "dns_servers: \"%.*s...\": too long", 40, p);
			return -1;
		}
		memcpy(item, p, len);
		item[len] = 0;
		p = end;
		if (item[0] == '[') {
			char *rb = strchr(item, ']');

			if (!rb || (size_t)(rb - item - 1) >= sizeof(host)) {
				err_printf(err, errlen, "dns_servers: \"%s\": no closing ]", item);
				return -1;
			}
			memcpy(host, item + 1, (size_t)(rb - item - 1));
			host[rb - item - 1] = 0;
			if (rb[1] == ':') {
				if (parse_port(rb + 2, &port) < 0) {
					err_printf(err, errlen, "dns_servers: \"%s\": bad port", item);
					return -1;
				}
			} else if (rb[1]) {
				err_printf(err, errlen, "dns_servers: \"%s\": junk after ]", item);
				return -1;
			}
			if (inet_pton(AF_INET6, host, &a6) != 1) {
				err_printf(err, errlen, "dns_servers: \"%s\": not an IPv6 address", item);
				return -1;
			}
			v6 = true;
		} else {
			char *colon = strchr(item, ':');

			if (colon && strchr(colon + 1, ':')) {
				/* several colons: a bare IPv6 address, no port */
				if (inet_pton(AF_INET6, item, &a6) != 1) {
					err_printf(err, errlen,
						   "dns_servers: \"%s\": not an IPv6 address"
						   " (with a port: [addr]:port)", item);
					return -1;
				}
				snprintf(host, sizeof(host), "%s", item);
				v6 = true;
			} else {
				if (colon) {
					*colon = 0;
					if (parse_port(colon + 1, &port) < 0) {
						err_printf(err, errlen, "dns_servers: \"%s:%s\": bad port",
							   item, colon + 1);
						return -1;
					}
				}
				if (inet_pton(AF_INET, item, &a4) != 1) {
					err_printf(err, errlen,
						   "dns_servers: \"%s\": not an IPv4 address"
						   " (names are not allowed)", item);
					return -1;
				}
				snprintf(host, sizeof(host), "%s", item);
				v6 = false;
			}
		}
		w = snprintf(out + used, outlen - used, "%s%s%s%s:%u", n ? "," : "", v6 ? "[" : "",
			     host, v6 ? "]" : "", port);
		if (w < 0 || (size_t)w >= outlen - used) {
			err_printf(err, errlen, "dns_servers: too many servers");
			return -1;
		}
		used += (size_t)w;
		n++;
	}
	if (!n) {
		err_printf(err, errlen, "dns_servers: no server");
		return -1;
	}
	return 0;
}

uint64_t dns_rand_seed(void)
{
	uint64_t seed;
	struct timespec ts;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
		return seed;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
	       ((uint64_t)getpid() << 32);
}

/* splitmix64: small, fast, good enough to spread load over equal MX. */
static uint64_t rand_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

size_t dns_rand_below(uint64_t *state, size_t n)
{
	uint64_t limit, r;

	if (n <= 1)
		return 0;
	/* reject the top partial range so every value is equally likely */
	limit = UINT64_MAX - UINT64_MAX % n;
	do
		r = rand_next(state);
	while (r >= limit);
	return (size_t)(r % n);
}

static int mx_cmp(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;

	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

/* Same DNS name: case-insensitive, one trailing dot ignored. */
static bool same_name(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la && a[la - 1] == '.')
		la--;
	if (lb && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

size_t dns_mx_order(struct dns_mx *mx, size_t n, uint64_t *rng)
{
	size_t i, j, kept = 0;

	if (n > 1)
		qsort(mx, n, sizeof(*mx), mx_cmp);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && mx[j].pref == mx[i].pref; j++)
			;
		/* Fisher-Yates over the run [i, j) */
		for (size_t k = j - i; k > 1; k--) {
			size_t r = dns_rand_below(rng, k);
			struct dns_mx t = mx[i + k - 1];

			mx[i + k - 1] = mx[i + r];
			mx[i + r] = t;
		}
	}
	for (i = 0; i < n && kept < DNS_MAX_HOSTS; i++) {
		bool dup = false;

		if (!mx[i].name[0] || strcmp(mx[i].name, ".") == 0)
			continue;
		for (j = 0; j < kept && !dup; j++)
			dup = same_name(mx[j].name, mx[i].name);
		if (!dup)
			mx[kept++] = mx[i];
	}
	return kept;
}

int dns_literal_parse(const char *s, int bare_ok, struct dns_addr *a)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t len = strlen(s);
	struct in_addr a4;
	struct in6_addr a6;
	bool tagged = false;

	memset(a, 0, sizeof(*a));
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
		if (len > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
			s += 5;
			len -= 5;
			tagged = true;
		}
	} else if (!bare_ok) {
		return 0;
	}
	if (len >= sizeof(buf))
		return 0;
	memcpy(buf, s, len);
	buf[len] = 0;
	if (!tagged && inet_pton(AF_INET, buf, &a4) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

		sin->sin_family = AF_INET;
		sin->sin_addr = a4;
		a->len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, buf, &a6) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = a6;
		a->len = sizeof(*sin6);
	} else {
		return 0;
	}
	snprintf(a->text, sizeof(a->text), "%s", buf);
	/* canonical text ("::1", not "0::1") */
	if (a->ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &a4, a->text, sizeof(a->text));
	else
		inet_ntop(AF_INET6, &a6, a->text, sizeof(a->text));
	return 1;
}

/* ---- the event loop glue ---- */

static void dns_rearm(struct dns *d)
{
	struct timeval tvbuf, *tv;

	if (d->closing)
		return;
	tv = ares_timeout(d->ch, NULL, &tvbuf);
	if (tv)
		evtimer_add(d->timer, tv);
	else
		evtimer_del(d->timer);
}

static void dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	(void)fd;
	(void)what;
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_rearm(d);
}

static void dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	/* s may be freed inside ares_process_fd (the socket closed): keep d */
	struct dns_sock *s = arg;
	struct dns *d = s->d;

	ares_process_fd(d->ch, (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
	dns_rearm(d);
}

static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock **sp, *s;
	short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));

	for (sp = &d->socks; *sp && (*sp)->fd != fd; sp = &(*sp)->next)
		;
	s = *sp;
	if (!what) {
		if (s) {
			*sp = s->next;
			if (s->ev)
				event_free(s->ev);
			free(s);
		}
		return;
	}
	if (s && s->what == what)
		return;
	if (!s) {
		/* Out of memory: the socket goes unwatched and its lookups
		 * end by c-ares' timeout (the timer still runs). */
		s = calloc(1, sizeof(*s));
		if (!s)
			return;
		s->d = d;
		s->fd = fd;
		s->next = d->socks;
		d->socks = s;
	} else if (s->ev) {
		event_free(s->ev);
		s->ev = NULL;
	}
	s->what = what;
	s->ev = event_new(d->base, fd, what | EV_PERSIST, dns_sock_cb, s);
	if (s->ev)
		event_add(s->ev, NULL);
}

/* ---- queries ---- */

static void query_unlink(struct dns_query *q)
{
	struct dns *d = q->d;

	if (q->prev)
		q->prev->next = q->next;
	else
		d->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
	d->nquery--;
}

static void query_free(struct dns_query *q)
{
	if (q->ev)
		event_free(q->ev);
	free(q);
}

static void dns_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;

	(void)fd;
	(void)what;
	/* Unlinked first: the callback may dns_free() the resolver. */
	query_unlink(q);
	q->delivering = true;
	q->cb(q->arg, &q->ans);
	query_free(q);
}

static const char *type_name(enum dns_sub_kind k)
{
	return k == SUB_MX ? "MX" : k == SUB_A ? "A" : "AAAA";
}

/* Lookup results that may change soon (the caller should retry later). */
static bool status_temporary(int status)
{
	switch (status) {
	case ARES_SUCCESS:
	case ARES_ENODATA:
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:
		return false;
	default:
		return true;
	}
}

/* Postfix's texts (dns_strerror) for what the status means. */
static const char *status_text(int status)
{
	switch (status) {
	case ARES_ENOTFOUND:
		return "Host not found";
	case ARES_ENODATA:
	case ARES_SUCCESS: /* an answer without a usable record */
		return "Host found but no data record of requested type";
	case ARES_EBADNAME:
		return "Malformed or unexpected name";
	case ARES_EFORMERR:
	case ARES_ENOTIMP:
	case ARES_EBADRESP:
		return "Non-recoverable error";
	case ARES_ENOMEM:
		return "Out of memory";
	default: /* SERVFAIL, REFUSED, timeout, connection refused, ... */
		return "Host not found, try again";
	}
}

__attribute__((format(printf, 4, 5))) static void
query_fail(struct dns_query *q, enum dns_status st, const char *enhanced, const char *fmt, ...)
{
	va_list ap;

	q->ans.status = st;
	snprintf(q->ans.enhanced, sizeof(q->ans.enhanced), "%s", enhanced);
	va_start(ap, fmt);
	vsnprintf(q->ans.reason, sizeof(q->ans.reason), fmt, ap);
	va_end(ap);
	q->ans.nhost = 0;
	q->answered = true;
}

static void query_fail_status(struct dns_query *q, enum dns_status st, const char *enhanced,
			      const char *name, enum dns_sub_kind k, int status)
{
	query_fail(q, st, enhanced,
		   "Host or domain name not found. Name service error for name=%s type=%s: %s",
		   name, type_name(k), status_text(status));
}

static void fill_addr4(struct dns_addr *a, const struct in_addr *in)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

	memset(a, 0, sizeof(*a));
	sin->sin_family = AF_INET;
	sin->sin_addr = *in;
	a->len = sizeof(*sin);
	inet_ntop(AF_INET, in, a->text, sizeof(a->text));
}

static void fill_addr6(struct dns_addr *a, const struct in6_addr *in)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

	memset(a, 0, sizeof(*a));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_addr = *in;
	a->len = sizeof(*sin6);
	inet_ntop(AF_INET6, in, a->text, sizeof(a->text));
}

/* The families in the order they are asked and listed. */
static int families(const struct dns *d, int fam[2])
{
	if (d->family == DNS_IPV4) {
		fam[0] = FAM_V4;
		return 1;
	}
	if (d->family == DNS_IPV6) {
		fam[0] = FAM_V6;
		return 1;
	}
	fam[0] = d->prefer_ipv6 ? FAM_V6 : FAM_V4;
	fam[1] = d->prefer_ipv6 ? FAM_V4 : FAM_V6;
	return 2;
}

/* The answer from the targets' addresses (all lookups done). */
static void query_build(struct dns_query *q)
{
	struct dns_answer *ans = &q->ans;
	int fam[2], nfam = families(q->d, fam);
	const struct dns_target *t;
	bool temporary = false;
	int why;

	ans->nhost = 0;
	for (unsigned i = 0; i < q->ntarget; i++) {
		struct dns_host *h = &ans->host[ans->nhost];

		t = &q->target[i];
		h->naddr = 0;
		for (int f = 0; f < nfam; f++) {
			if (fam[f] == FAM_V4)
				for (size_t k = 0; k < t->n4 && h->naddr < DNS_MAX_ADDRS; k++)
					fill_addr4(&h->addr[h->naddr++], &t->a4[k]);
			else
				for (size_t k = 0; k < t->n6 && h->naddr < DNS_MAX_ADDRS; k++)
					fill_addr6(&h->addr[h->naddr++], &t->a6[k]);
			if (status_temporary(t->status[fam[f]]))
				temporary = true;
		}
		if (h->naddr) {
			_Static_assert(sizeof(h->name) == sizeof(t->name), "name sizes");
			memcpy(h->name, t->name, sizeof(h->name));
			h->pref = t->pref;
			ans->nhost++;
		}
	}
	if (ans->nhost) {
		ans->status = DNS_OK;
		ans->enhanced[0] = 0;
		ans->reason[0] = 0;
		return;
	}
	/* The reason: the first (most preferred) host's first temporary
	 * failure, else its first failure, families in the order asked. */
	t = &q->target[0];
	why = fam[0];
	for (int f = 0; f < nfam; f++)
		if (status_temporary(t->status[fam[f]])) {
			why = fam[f];
			break;
		}
	query_fail_status(q, q->type == Q_MX || temporary ? DNS_TEMPFAIL : DNS_PERMFAIL,
			  q->type == Q_MX || temporary ? "4.4.3" : "5.4.4", t->name,
			  why == FAM_V4 ? SUB_A : SUB_AAAA, t->status[why]);
}

/* Called whenever q->pending drops: at zero, finish (or free if cancelled). */
static void query_step(struct dns_query *q)
{
	if (q->pending)
		return;
	if (q->cancelled) {
		query_unlink(q);
		query_free(q);
		return;
	}
	if (!q->answered)
		query_build(q);
	event_active(q->ev, EV_TIMEOUT, 1);
}

static void dns_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

static void query_start(struct dns_query *q, struct dns_sub *sub, const char *name, int type)
{
	q->pending++;
	ares_query(q->d->ch, name, ns_c_in, type, dns_ares_cb, sub);
}

/* A and/or AAAA lookups of every target, in parallel. */
static void query_start_addrs(struct dns_query *q)
{
	int fam[2], nfam = families(q->d, fam);

	q->pending++; /* hold: a lookup may end inside ares_query() */
	for (unsigned i = 0; i < q->ntarget; i++) {
		struct dns_target *t = &q->target[i];

		t->status[FAM_V4] = t->status[FAM_V6] = -1;
		for (int f = 0; f < nfam; f++) {
			struct dns_sub *sub = &q->subs[q->nsub++];

			sub->q = q;
			sub->target = i;
			sub->kind = fam[f] == FAM_V4 ? SUB_A : SUB_AAAA;
			query_start(q, sub, t->name, fam[f] == FAM_V4 ? ns_t_a : ns_t_aaaa);
		}
	}
	q->pending--;
}

static void mx_answer(struct dns_query *q, int status, const unsigned char *abuf, int alen)
{
	struct ares_mx_reply *list = NULL, *r;
	struct dns_mx *mx;
	size_t n = 0, kept;

	if (status == ARES_SUCCESS) {
		status = ares_parse_mx_reply(abuf, alen, &list);
		if (status != ARES_SUCCESS && status != ARES_ENODATA) {
			query_fail_status(q, DNS_TEMPFAIL, "4.4.3", q->name, SUB_MX, status);
			return;
		}
	}
	if (status == ARES_ENODATA) {
		/* RFC 5321 5.1: no MX records: the domain is its own MX */
		q->ntarget = 1;
		snprintf(q->target[0].name, sizeof(q->target[0].name), "%s", q->name);
		q->target[0].pref = 0;
		query_start_addrs(q);
		return;
	}
	if (status == ARES_ENOTFOUND || status == ARES_EBADNAME) {
		query_fail_status(q, DNS_PERMFAIL, "5.1.2", q->name, SUB_MX, status);
		return;
	}
	if (status != ARES_SUCCESS) {
		query_fail_status(q, DNS_TEMPFAIL, "4.4.3", q->name, SUB_MX, status);
		return;
	}
	for (r = list; r; r = r->next)
		n++;
	if (n == 1 && (!list->host[0] || strcmp(list->host, ".") == 0)) {
		ares_free_data(list);
		query_fail(q, DNS_PERMFAIL, "5.1.10", "Domain %s does not accept mail (null MX)",
			   q->name);
		return;
	}
	mx = calloc(n, sizeof(*mx));
	if (!mx) {
		ares_free_data(list);
		query_fail_status(q, DNS_TEMPFAIL, "4.4.3", q->name, SUB_MX, ARES_ENOMEM);
		return;
	}
	n = 0;
	for (r = list; r; r = r->next) {
		mx[n].pref = r->priority;
		mx[n].name = r->host;
		n++;
	}
	kept = dns_mx_order(mx, n, &q->d->rng);
	for (size_t i = 0; i < kept; i++) {
		struct dns_target *t = &q->target[q->ntarget];
		int w = snprintf(t->name, sizeof(t->name), "%s", mx[i].name);

		if (w < 0 || (size_t)w >= sizeof(t->name))
			continue; /* cannot be a DNS name */
		t->pref = mx[i].pref;
		q->ntarget++;
	}
	free(mx);
	ares_free_data(list);
	if (!q->ntarget) {
		/* several MX records, every one "." */
		query_fail(q, DNS_PERMFAIL, "5.1.10", "Domain %s does not accept mail (null MX)",
			   q->name);
		return;
	}
	query_start_addrs(q);
}

static void addr_answer(struct dns_query *q, const struct dns_sub *sub, int status,
			const unsigned char *abuf, int alen)
{
	struct dns_target *t = &q->target[sub->target];

	if (status == ARES_SUCCESS && sub->kind == SUB_A) {
		struct ares_addrttl ttl[DNS_MAX_ADDRS];
		int n = DNS_MAX_ADDRS;

		status = ares_parse_a_reply(abuf, alen, NULL, ttl, &n);
		if (status == ARES_SUCCESS)
			for (int i = 0; i < n && t->n4 < DNS_MAX_ADDRS; i++)
				t->a4[t->n4++] = ttl[i].ipaddr;
	} else if (status == ARES_SUCCESS) {
		struct ares_addr6ttl ttl[DNS_MAX_ADDRS];
		int n = DNS_MAX_ADDRS;

		status = ares_parse_aaaa_reply(abuf, alen, NULL, ttl, &n);
		if (status == ARES_SUCCESS)
			for (int i = 0; i < n && t->n6 < DNS_MAX_ADDRS; i++)
				memcpy(&t->a6[t->n6++], &ttl[i].ip6addr, sizeof(t->a6[0]));
	}
	t->status[sub->kind == SUB_A ? FAM_V4 : FAM_V6] = status;
}

static void dns_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_sub *sub = arg;
	struct dns_query *q = sub->q;

	(void)timeouts;
	q->pending--;
	/* Cancelled (dns_cancel, or dns_free: ARES_EDESTRUCTION): nothing
	 * new may start, c-ares may be tearing down. */
	if (!q->cancelled && !q->answered) {
		if (sub->kind == SUB_MX)
			mx_answer(q, status, abuf, alen);
		else
			addr_answer(q, sub, status, abuf, alen);
	}
	query_step(q);
}

static struct dns_query *query_new(struct dns *d, enum dns_query_type type, const char *name,
				   dns_cb cb, void *arg)
{
	struct dns_query *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->ev = event_new(d->base, -1, 0, dns_deliver_cb, q);
	if (!q->ev) {
		free(q);
		return NULL;
	}
	q->d = d;
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	snprintf(q->name, sizeof(q->name), "%s", name);
	q->next = d->queries;
	if (d->queries)
		d->queries->prev = q;
	d->queries = q;
	d->nquery++;
	return q;
}

static bool name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len && name[len - 1] == '.')
		len--;
	return len > 0 && len <= DNS_NAME_MAX && !strchr(name, ' ');
}

/* An IP literal's answer, at once (delivered from the loop all the same). */
static void literal_answer(struct dns_query *q, const struct dns_addr *a)
{
	struct dns *d = q->d;
	bool v6 = a->ss.ss_family == AF_INET6;

	if ((v6 && d->family == DNS_IPV4) || (!v6 && d->family == DNS_IPV6)) {
		query_fail(q, DNS_TEMPFAIL, "4.4.4",
			   "Address family of %s is not enabled (inet_protocols %s)", a->text,
			   d->family == DNS_IPV4 ? "ipv4" : "ipv6");
		return;
	}
	snprintf(q->ans.host[0].name, sizeof(q->ans.host[0].name), "%s", a->text);
	q->ans.host[0].pref = 0;
	q->ans.host[0].naddr = 1;
	q->ans.host[0].addr[0] = *a;
	q->ans.nhost = 1;
	q->ans.status = DNS_OK;
	q->answered = true;
}

static struct dns_query *lookup_host(struct dns *d, const char *host, const char *shown,
				     dns_cb cb, void *arg)
{
	struct dns_query *q;
	struct dns_addr lit;
	char name[256];
	size_t len = strlen(host);

	/* "[name]": the name (no MX lookup either way) */
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(name)) {
		memcpy(name, host + 1, len - 2);
		name[len - 2] = 0;
	} else {
		snprintf(name, sizeof(name), "%s", host);
	}
	q = query_new(d, Q_HOST, shown, cb, arg);
	if (!q)
		return NULL;
	q->pending++; /* hold */
	if (dns_literal_parse(host, 1, &lit)) {
		literal_answer(q, &lit);
	} else if (!name_ok(name) || strlen(host) >= sizeof(name)) {
		query_fail_status(q, DNS_PERMFAIL, "5.4.4", q->name, SUB_A, ARES_EBADNAME);
	} else {
		q->ntarget = 1;
		snprintf(q->target[0].name, sizeof(q->target[0].name), "%s", name);
		query_start_addrs(q);
	}
	q->pending--;
	query_step(q);
	dns_rearm(d);
	return q;
}

/* ---- the interface ---- */

struct dns *dns_new(struct event_base *base, const struct dns_config *cfg, char *err,
		    size_t errlen)
{
	struct ares_options opt;
	char csv[1024];
	char lookups[] = "b";
	int optmask, rc;
	struct dns *d;

	if (cfg->servers && cfg->servers[0] &&
	    dns_servers_csv(cfg->servers, csv, sizeof(csv), err, errlen) < 0)
		return NULL;
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		err_printf(err, errlen, "c-ares: %s", ares_strerror(rc));
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->timer = evtimer_new(base, dns_timer_cb, d))) {
		free(d);
		ares_library_cleanup();
		err_printf(err, errlen, "dns: out of memory");
		return NULL;
	}
	d->base = base;
	d->family = cfg->family;
	d->prefer_ipv6 = cfg->prefer_ipv6;
	d->rng = dns_rand_seed();

	memset(&opt, 0, sizeof(opt));
	/* Raw ares_query() lookups: no search list, no HOSTALIASES, and no
	 * /etc/hosts ("b": DNS only, for any c-ares path that would look). */
	opt.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	opt.timeout = (int)(cfg->timeout_ms ? cfg->timeout_ms : DNS_DEFAULT_TIMEOUT_MS);
	opt.tries = (int)(cfg->tries ? cfg->tries : DNS_DEFAULT_TRIES);
	opt.sock_state_cb = dns_sock_state;
	opt.sock_state_cb_data = d;
	opt.lookups = lookups;
	optmask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB |
		  ARES_OPT_LOOKUPS;
	rc = ares_init_options(&d->ch, &opt, optmask);
	if (rc != ARES_SUCCESS) {
		err_printf(err, errlen, "c-ares: %s", ares_strerror(rc));
		event_free(d->timer);
		free(d);
		ares_library_cleanup();
		return NULL;
	}
	if (cfg->servers && cfg->servers[0]) {
		rc = ares_set_servers_ports_csv(d->ch, csv);
		if (rc != ARES_SUCCESS) {
			err_printf(err, errlen, "dns_servers: %s: %s", cfg->servers, ares_strerror(rc));
			d->closing = true;
			ares_destroy(d->ch);
			event_free(d->timer);
			free(d);
			ares_library_cleanup();
			return NULL;
		}
	}
	return d;
}

void dns_free(struct dns **dp)
{
	struct dns *d = dp ? *dp : NULL;
	struct dns_query *q, *next;

	if (!d)
		return;
	*dp = NULL;
	d->closing = true;
	for (q = d->queries; q; q = next) {
		next = q->next;
		q->cancelled = true;
		if (!q->pending) { /* answered, not yet called back: no c-ares part */
			query_unlink(q);
			query_free(q);
		}
	}
	/* every outstanding lookup calls back with ARES_EDESTRUCTION and
	 * the last one of each query frees it; sockets close through
	 * dns_sock_state() */
	ares_destroy(d->ch);
	while (d->socks) {
		struct dns_sock *s = d->socks;

		d->socks = s->next;
		if (s->ev)
			event_free(s->ev);
		free(s);
	}
	while ((q = d->queries)) { /* c-ares owed nothing more: none expected */
		query_unlink(q);
		query_free(q);
	}
	event_free(d->timer);
	free(d);
	ares_library_cleanup();
}

struct dns_query *dns_lookup_mx(struct dns *d, const char *domain, dns_cb cb, void *arg)
{
	struct dns_query *q;
	size_t len = strlen(domain);

	if (len >= 2 && domain[0] == '[' && domain[len - 1] == ']')
		return lookup_host(d, domain, domain, cb, arg);
	q = query_new(d, Q_MX, domain, cb, arg);
	if (!q)
		return NULL;
	q->pending++; /* hold */
	if (!name_ok(domain) || len >= sizeof(q->name)) {
		query_fail_status(q, DNS_PERMFAIL, "5.1.2", q->name, SUB_MX, ARES_EBADNAME);
	} else {
		q->mxsub.q = q;
		q->mxsub.kind = SUB_MX;
		query_start(q, &q->mxsub, domain, ns_t_mx);
	}
	q->pending--;
	query_step(q);
	dns_rearm(d);
	return q;
}

struct dns_query *dns_lookup_host(struct dns *d, const char *host, dns_cb cb, void *arg)
{
	return lookup_host(d, host, host, cb, arg);
}

void dns_cancel(struct dns_query *q)
{
	if (!q || q->delivering)
		return;
	if (!q->pending) {
		query_unlink(q);
		query_free(q);
		return;
	}
	q->cancelled = true;
	event_free(q->ev);
	q->ev = NULL;
}

size_t dns_pending(const struct dns *d)
{
	return d->nquery;
}

int dns_family_parse(const char *s, enum dns_family *f, char *err, size_t errlen)
{
	bool v4 = false, v6 = false;
	const char *p = s;

	while (*p) {
		size_t len;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		len = strcspn(p, ", \t");
		if (len == 3 && strncasecmp(p, "all", 3) == 0) {
			v4 = v6 = true;
		} else if (len == 4 && strncasecmp(p, "ipv4", 4) == 0) {
			v4 = true;
		} else if (len == 4 && strncasecmp(p, "ipv6", 4) == 0) {
			v6 = true;
		} else {
			err_printf(err, errlen,
				   "inet_protocols: \"%.*s\": not all, ipv4 or ipv6", (int)len, p);
			return -1;
		}
		p += len;
	}
	if (!v4 && !v6) {
		err_printf(err, errlen, "inet_protocols: empty (all, ipv4, ipv6)");
		return -1;
	}
	*f = v4 && v6 ? DNS_ANY : v4 ? DNS_IPV4 : DNS_IPV6;
	return 0;
}
