/*
 * dns_probe - drive transport/dns.c from the command line, for
 * tests/transport/test_dns.py (which runs it against dnsserver.py on
 * loopback).
 *
 *   dns_probe [-t timeout_ms] [-r tries] [-f all|ipv4|ipv6] [-6]
 *             [-c | -F | -X] [-w ms] SERVERS mx|host NAME...
 *
 * Every NAME is looked up at once (one resolver, queries in parallel); the
 * answers are printed in argument order when all are in:
 *
 *   == NAME
 *   status ok
 *   host mx1.example.test 10 127.0.0.1 ::1
 *   == NAME
 *   status permfail 5.1.2 Host or domain name not found. ...
 *
 * -6 prefers IPv6 within a host.  -c cancels every query right after
 * starting it, runs the loop until the resolver holds nothing more (or -w
 * ms pass), prints "cancelled pending=N", then frees the resolver.  -F
 * frees the resolver right after starting ("freed").  -X: the first
 * callback frees the resolver; no other may run ("freed in callback").
 * -w bounds the whole run (default 20000 ms): "timeout" and exit 2.
 *
 * Checked on the way (exit 3 with "ERROR: ..."): a callback inside the
 * call that started its query, a second callback for one query, a
 * callback for a cancelled query, an address whose sockaddr, port, length
 * or text disagree.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "transport/dns.h"

struct probe {
	const char *name;
	struct dns_query *q;
	int calls;
	char *out; /* the answer as text */
};

static struct event_base *base;
static struct dns *resolver;
static struct probe *probes;
static int nprobe, nanswered;
static bool in_call, cancelled, free_in_cb;

__attribute__((noreturn)) static void fail(const char *what, const char *name)
{
	printf("ERROR: %s (%s)\n", what, name);
	fflush(stdout);
	exit(3);
}

static void check_addr(const struct dns_addr *a, const char *name)
{
	char text[64];

	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;

		if (a->len != sizeof(*sin) || sin->sin_port != 0)
			fail("IPv4 address length or port", name);
		inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
	} else if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

		if (a->len != sizeof(*sin6) || sin6->sin6_port != 0)
			fail("IPv6 address length or port", name);
		inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
	} else {
		fail("address family", name);
	}
	if (strcmp(text, a->text) != 0)
		fail("address text", name);
}

static char *format(const struct dns_answer *ans, const char *name)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	static const char *st[] = {"ok", "tempfail", "permfail"};

	if (!f)
		fail("open_memstream", name);
	if (ans->status == DNS_OK)
		fprintf(f, "status ok\n");
	else
		fprintf(f, "status %s %s %s\n", st[ans->status], ans->enhanced, ans->reason);
	if (ans->nhost > DNS_MAX_HOSTS)
		fail("too many hosts", name);
	if (ans->status == DNS_OK && !ans->nhost)
		fail("ok without hosts", name);
	for (size_t i = 0; i < ans->nhost; i++) {
		const struct dns_host *h = &ans->host[i];

		if (!h->naddr || h->naddr > DNS_MAX_ADDRS)
			fail("host address count", name);
		fprintf(f, "host %s %u", h->name, h->pref);
		for (size_t k = 0; k < h->naddr; k++) {
			check_addr(&h->addr[k], name);
			fprintf(f, " %s", h->addr[k].text);
		}
		fprintf(f, "\n");
	}
	fclose(f);
	return buf;
}

static void answered(void *arg, const struct dns_answer *ans)
{
	struct probe *p = arg;

	if (in_call)
		fail("callback inside the call", p->name);
	if (cancelled)
		fail("callback of a cancelled query", p->name);
	if (p->calls++)
		fail("second callback", p->name);
	p->out = format(ans, p->name);
	if (free_in_cb) {
		printf("== %s\n%s", p->name, p->out);
		dns_free(&resolver);
		printf("freed in callback\n");
		event_base_loopbreak(base);
		return;
	}
	if (++nanswered == nprobe)
		event_base_loopbreak(base);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
	event_base_loopbreak(base);
}

static void usage(void)
{
	fprintf(stderr, "usage: dns_probe [-t timeout_ms] [-r tries] [-f all|ipv4|ipv6] [-6]"
			" [-c | -F | -X] [-w ms] SERVERS mx|host NAME...\n");
	exit(64);
}

int main(int argc, char **argv)
{
	struct dns_config cfg = {0};
	char err[256];
	int c, rc = 0;
	long wait_ms = 20000;
	bool mx, free_now = false, timed_out = false;
	struct event *deadline;
	struct timeval tv;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt(argc, argv, "t:r:f:6cFXw:")) != -1) {
		switch (c) {
		case 't':
			cfg.timeout_ms = (unsigned)atoi(optarg);
			break;
		case 'r':
			cfg.tries = (unsigned)atoi(optarg);
			break;
		case 'f':
			if (dns_family_parse(optarg, &cfg.family, err, sizeof(err)) < 0) {
				fprintf(stderr, "dns_probe: %s\n", err);
				return 64;
			}
			break;
		case '6':
			cfg.prefer_ipv6 = true;
			break;
		case 'c':
			cancelled = true;
			break;
		case 'F':
			free_now = true;
			break;
		case 'X':
			free_in_cb = true;
			break;
		case 'w':
			wait_ms = atol(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 3)
		usage();
	cfg.servers = argv[optind];
	if (strcmp(argv[optind + 1], "mx") == 0)
		mx = true;
	else if (strcmp(argv[optind + 1], "host") == 0)
		mx = false;
	else
		usage();
	nprobe = argc - optind - 2;
	probes = calloc((size_t)nprobe, sizeof(*probes));
	base = event_base_new();
	if (!probes || !base)
		return 70;
	resolver = dns_new(base, &cfg, err, sizeof(err));
	if (!resolver) {
		printf("dns_new: %s\n", err);
		free(probes);
		event_base_free(base);
		return 1;
	}
	for (int i = 0; i < nprobe; i++) {
		probes[i].name = argv[optind + 2 + i];
		in_call = true;
		probes[i].q = mx ? dns_lookup_mx(resolver, probes[i].name, answered, &probes[i])
				 : dns_lookup_host(resolver, probes[i].name, answered, &probes[i]);
		in_call = false;
		if (!probes[i].q)
			fail("out of memory", probes[i].name);
		if (cancelled)
			dns_cancel(probes[i].q);
	}
	if (free_now) {
		dns_free(&resolver);
		printf("freed\n");
	}
	deadline = evtimer_new(base, deadline_cb, &timed_out);
	tv.tv_sec = wait_ms / 1000;
	tv.tv_usec = (wait_ms % 1000) * 1000;
	evtimer_add(deadline, &tv);
	if (cancelled) {
		/* the cancelled queries' lookups come back (answers, timeouts);
		 * run until the resolver has let go of every one */
		while (!timed_out && dns_pending(resolver))
			event_base_loop(base, EVLOOP_ONCE);
		printf("cancelled pending=%zu\n", dns_pending(resolver));
	} else if (!free_now) {
		event_base_dispatch(base);
		if (!free_in_cb) {
			for (int i = 0; i < nprobe; i++)
				if (probes[i].out)
					printf("== %s\n%s", probes[i].name, probes[i].out);
			if (timed_out || nanswered != nprobe) {
				printf("timeout: %d of %d answered\n", nanswered, nprobe);
				rc = 2;
			}
		}
	}
	dns_free(&resolver);
	event_free(deadline);
	event_base_free(base);
	for (int i = 0; i < nprobe; i++)
		free(probes[i].out);
	free(probes);
	return rc;
}
