/*
 * smtp_agent - the delivery agent of the smtp farm (channels smtp and
 * relay) and of the lmtp farm (see smtp_agent.h): the scheduler's DeliveryRequests in, messages to
 * mail servers over SMTP/LMTP out (smtp_client.h does the protocol).
 *
 * Asynchronous: one process serves many scheduler connections
 * (client_limit) and many SMTP sessions at once on the farm's event base;
 * nothing blocks.  Per request (struct delivery):
 *   1. open the message (gone or damaged: PERMFAIL; other: TEMPFAIL);
 *   2. parse the nexthop: "[host]:port", "[host]", "[1.2.3.4]", "[::1]:25"
 *      (no MX lookup), "domain" or "domain:port" (MX lookup; the port
 *      applies to every MX host); default port smtp_port (25).  LMTP:
 *      "unix:/abs/path", "inet:host:port", "[host]:port" or "host:port"
 *      (never MX), default port lmtp_port (24).  A bad one: TEMPFAIL 4.3.5;
 *   3. an idle cached connection to this nexthop?  Use it: no DNS, no
 *      connect, no greeting.  If the server closed it meanwhile (it
 *      dies before the first reply of the transaction: SMTP_EV_TXN_LOST)
 *      nothing was sent: fall back to another cached one or a fresh
 *      connection, transparently;
 *   4. otherwise DNS (dns.h): permanent failure (NXDOMAIN 5.1.2, null MX
 *      5.1.10): PERMFAIL with the DNS reason, no connection; temporary:
 *      TEMPFAIL, connection_failed;
 *   5. the hosts in preference order, each address in order, at most
 *      smtp_mx_address_limit addresses in all; an address with an idle
 *      cached connection (another nexthop, same MX) uses it.  Connect
 *      failure or timeout, a non-2xx greeting (5xx too, like Postfix's
 *      smtp_skip_5xx_greeting), EHLO/HELO refused: the next address.
 *      None left: every recipient TEMPFAIL with the last error,
 *      connection_failed=true (the scheduler shrinks its window);
 *   6. one transaction for all recipients (smtp_client.h says how the
 *      replies become results);
 *   7. the connection, if clean and used fewer than
 *      smtp_connection_reuse_count_limit times, is parked in the
 *      connection cache (conncache.h) under the nexthop and the address
 *      for smtp_connection_cache_time_limit (10s; 0 disables reuse),
 *      at most smtp_connection_cache_size (50) per process, the oldest
 *      evicted; otherwise, and on expiry or eviction, QUIT (not waited
 *      for long).  A parked connection the server closes is dropped.
 *      No RSET is sent before reusing a clean connection (Postfix does
 *      not either): the transaction before it ended with the end-of-data
 *      reply or an RSET.
 *
 * 8BITMIME: BODY=8BITMIME when the envelope says so and the server
 * offers it; when it does not, the content goes as it is, unconverted
 * (Postfix with disable_mime_output_conversion=yes; most servers take
 * it).  STARTTLS is recorded in the capabilities but not used yet.
 *
 * Logging: the scheduler already logs every recipient's status at info
 * ("to=<..>, relay=.., dsn=.., status=sent (...)"), so this program logs
 * one info line per delivery with what only it knows,
 *   "QID: relay=mx[192.0.2.7]:25, conn_use=3, delay=0.41,
 *    delays=0.1/0/0.01/0.3, sent=2, deferred=1, bounced=0"
 * (delays: in queue before the request / DNS / connection set-up /
 * transaction) and the Postfix-style per-recipient line with conn_use
 * and the remote reply at debug.  Cached connection events (parked,
 * lost, expired) are debug lines.
 *
 * Parameters (prefix smtp_ or lmtp_): connect_timeout 30s, helo_timeout
 * 300s, mail_timeout 300s, rcpt_timeout 300s, data_init_timeout 120s,
 * data_xfer_timeout 180s, data_done_timeout 600s, rset_timeout 20s,
 * quit_timeout 300s, helo_name ($myhostname), line_length_limit 2048,
 * connection_cache_time_limit 10s, connection_reuse_count_limit 100,
 * connection_cache_size 50, mx_address_limit 5, port (25 / 24).  Globals:
 * queue_store, queue_directory, myhostname, dns_servers, inet_protocols.
 */
#include "transport/smtp_agent.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/farm_server.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/qstore.h"
#include "common/xalloc.h"
#include "transport/conncache.h"
#include "transport/dns.h"
#include "transport/smtp_client.h"
#include "transport/transport.h"

/* A cached connection that died is replaced by another at most this often per delivery. */
#define LOST_RETRIES 3

struct nexthop {
	bool unixsock; /* LMTP unix:/path */
	bool mx;       /* MX lookup (SMTP "domain[:port]") */
	char host[256];
	unsigned port;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char key[400]; /* conncache destination key */
};

struct agent {
	bool lmtp;
	const char *name; /* "smtp" / "lmtp": program and parameter prefix */
	struct event_base *base;
	struct qstore *qs;
	struct dns *dns;
	struct conncache *cache;
	struct smtp_client_config ccfg;
	char *helo_name;
	unsigned port;
	unsigned addr_limit;
	unsigned reuse_limit;
	struct delivery *deliveries;
};

struct delivery {
	struct delivery *next, *prev;
	struct transport_job *job;
	const Zfarm__DeliveryRequest *rq;
	const char *qid;
	struct qstore_reader *rd;
	struct smtp_msg msg;
	struct smtp_rcpt *rcpt;
	struct nexthop nh;
	struct dns_query *q;
	struct dns_answer *ans;
	size_t hi, ai, tried;
	unsigned lost;
	struct smtp_session *s;
	char addr_key[300]; /* of d->s */
	bool have_err;
	struct smtp_error err;		 /* the last connection failure */
	uint64_t t_start, t_dns, t_conn; /* monotonic ms */
	uint64_t arrival_us;		 /* wall clock, for delay= */
};

static struct agent ag;

static void on_session(void *arg, struct smtp_session *s, enum smtp_event ev);
static void try_next(struct delivery *d);
static void resolve(struct delivery *d);

/* ---- nexthops ---- */

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

static int parse_port(const char *s, unsigned *port)
{
	char *end;
	unsigned long v;

	if (!s[0])
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 65535 || s[0] < '0' || s[0] > '9')
		return -1;
	*port = (unsigned)v;
	return 0;
}

/* nexthop_parse - see the header comment for the forms; -1 + reason. */
static int nexthop_parse(const char *in, bool lmtp, unsigned defport, struct nexthop *nh, char *err,
			 size_t errlen)
{
	const char *p = in, *colon;
	size_t n;

	memset(nh, 0, sizeof(*nh));
	nh->port = defport;
	if (!in || !in[0]) {
		snprintf(err, errlen, "empty nexthop");
		return -1;
	}
	if (lmtp && strncmp(p, "unix:", 5) == 0) {
		p += 5;
		if (p[0] != '/' || strlen(p) >= sizeof(nh->path)) {
			snprintf(err, errlen,
				 "nexthop %s: unix socket path must be absolute and "
				 "shorter than %zu bytes",
				 in, sizeof(nh->path));
			return -1;
		}
		nh->unixsock = true;
		nh->port = 0;
		snprintf(nh->path, sizeof(nh->path), "%s", p);
		snprintf(nh->host, sizeof(nh->host), "localhost");
		snprintf(nh->key, sizeof(nh->key), "lmtp:unix:%s", p);
		return 0;
	}
	if (lmtp && strncmp(p, "inet:", 5) == 0)
		p += 5;
	if (p[0] == '[') {
		const char *close = strchr(p, ']');

		if (!close || close == p + 1 || (size_t)(close - p - 1) >= sizeof(nh->host)) {
			snprintf(err, errlen, "nexthop %s: bad [host]", in);
			return -1;
		}
		memcpy(nh->host, p + 1, (size_t)(close - p - 1));
		nh->host[close - p - 1] = '\0';
		if (strncasecmp(nh->host, "ipv6:", 5) == 0)
			memmove(nh->host, nh->host + 5, strlen(nh->host + 5) + 1);
		if (close[1] == ':') {
			if (parse_port(close + 2, &nh->port) < 0) {
				snprintf(err, errlen, "nexthop %s: bad port", in);
				return -1;
			}
		} else if (close[1]) {
			snprintf(err, errlen, "nexthop %s: text after ']'", in);
			return -1;
		}
		nh->mx = false;
	} else {
		colon = strchr(p, ':');
		n = colon ? (size_t)(colon - p) : strlen(p);
		if (n == 0 || n >= sizeof(nh->host) || (colon && strchr(colon + 1, ':'))) {
			snprintf(err, errlen, "nexthop %s: bad host", in);
			return -1;
		}
		memcpy(nh->host, p, n);
		nh->host[n] = '\0';
		if (colon && parse_port(colon + 1, &nh->port) < 0) {
			snprintf(err, errlen, "nexthop %s: bad port", in);
			return -1;
		}
		nh->mx = !lmtp;
	}
	for (const char *c = nh->host; *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == '[' || *c == ']' || *c == '/' ||
		    (unsigned char)*c >= 0x7f) {
			snprintf(err, errlen, "nexthop %s: bad character in the host", in);
			return -1;
		}
	}
	lower(nh->host);
	snprintf(nh->key, sizeof(nh->key), "%s:%s%s%s:%u", lmtp ? "lmtp" : "smtp",
		 nh->mx ? "" : "[", nh->host, nh->mx ? "" : "]", nh->port);
	return 0;
}

/* ---- results ---- */

static Zfarm__Status status_of(enum smtp_status st)
{
	switch (st) {
	case SMTP_OK:
		return ZFARM__STATUS__OK;
	case SMTP_PERMFAIL:
		return ZFARM__STATUS__PERMFAIL;
	default:
		return ZFARM__STATUS__TEMPFAIL;
	}
}

static const char *status_word(enum smtp_status st)
{
	return st == SMTP_OK ? "sent" : st == SMTP_PERMFAIL ? "bounced" : "deferred";
}

static double secs(uint64_t ms)
{
	return (double)ms / 1000.0;
}

static void delivery_free(struct delivery *d)
{
	if (d->prev)
		d->prev->next = d->next;
	else if (ag.deliveries == d)
		ag.deliveries = d->next;
	if (d->next)
		d->next->prev = d->prev;
	if (d->q)
		dns_cancel(d->q);
	smtp_session_free(&d->s);
	qstore_reader_free(&d->rd);
	free(d->ans);
	free(d->rcpt);
	free(d);
}

/* delay_of - seconds since the message arrived (Postfix's delay=) */
static double delay_of(const struct delivery *d)
{
	uint64_t now = clock_now_us();

	return d->arrival_us && now > d->arrival_us ? (double)(now - d->arrival_us) / 1e6 : 0.0;
}

static void rcpt_pending_fail(struct smtp_rcpt *r)
{
	r->status = SMTP_TEMPFAIL;
	r->code = 0;
	snprintf(r->enhanced, sizeof(r->enhanced), "4.3.0");
	snprintf(r->text, sizeof(r->text), "no result from the SMTP client");
}

/* every recipient the same answer, the job done, d freed */
static void fail_all(struct delivery *d, Zfarm__Status st, unsigned code, const char *enhanced,
		     const char *text, bool conn_failed)
{
	const Zfarm__DeliveryRequest *rq = d->rq;
	double delay = delay_of(d);

	for (size_t i = 0; i < rq->n_recipients; i++) {
		transport_job_result(d->job, rq->recipients[i]->index, st, code, enhanced, text);
		log_debug("%s: to=<%s>, relay=none, delay=%.2f, dsn=%s, status=%s (%s)", d->qid,
			  rq->recipients[i]->address, delay, enhanced,
			  st == ZFARM__STATUS__OK	  ? "sent"
			  : st == ZFARM__STATUS__PERMFAIL ? "bounced"
							  : "deferred",
			  text);
	}
	log_info("%s: relay=none, delay=%.2f, sent=0, deferred=%zu, bounced=%zu (%s)", d->qid,
		 secs(clock_mono_ms() - d->t_start),
		 st == ZFARM__STATUS__PERMFAIL ? 0 : rq->n_recipients,
		 st == ZFARM__STATUS__PERMFAIL ? rq->n_recipients : 0, text);
	transport_job_set_data(d->job, NULL);
	transport_job_done(d->job, "none", conn_failed);
	delivery_free(d);
}

/* ---- connection cache ---- */

static void cache_close(void *conn, enum conncache_why why, void *arg)
{
	struct smtp_session *s = conn;

	(void)arg;
	log_debug("%s: closing cached connection (%s, used %u times)", smtp_session_relay(s),
		  why == CONNCACHE_EXPIRED    ? "idle time limit"
		  : why == CONNCACHE_EVICTED  ? "cache full"
		  : why == CONNCACHE_DISABLED ? "reuse disabled"
					      : "exit",
		  smtp_session_uses(s));
	smtp_session_quit(&s);
}

static void on_idle(void *arg, struct smtp_session *s, enum smtp_event ev)
{
	(void)arg;
	if (ev != SMTP_EV_IDLE_CLOSED)
		return;
	log_debug("%s: cached connection closed by the server: %s", smtp_session_relay(s),
		  smtp_session_error(s)->text);
	conncache_remove(ag.cache, s);
	smtp_session_free(&s);
}

static void addr_key(char *buf, size_t len, bool lmtp, const struct smtp_peer *p)
{
	if (p->port)
		snprintf(buf, len, "%s:[%s]:%u", lmtp ? "lmtp" : "smtp", p->addr, p->port);
	else
		snprintf(buf, len, "lmtp:unix:%s", p->addr);
}

/* ---- the transaction's end ---- */

static void finish(struct delivery *d)
{
	const Zfarm__DeliveryRequest *rq = d->rq;
	struct smtp_session *s = d->s;
	uint64_t now = clock_mono_ms();
	double delay = delay_of(d);
	size_t sent = 0, deferred = 0, bounced = 0;
	unsigned uses = smtp_session_uses(s);
	char relay[600];

	snprintf(relay, sizeof(relay), "%s", smtp_session_relay(s));
	for (size_t i = 0; i < d->msg.nrcpt; i++) {
		struct smtp_rcpt *r = &d->rcpt[i];

		if (r->status == SMTP_PENDING)
			rcpt_pending_fail(r);
		transport_job_result(d->job, rq->recipients[i]->index, status_of(r->status),
				     r->code, r->enhanced, r->text);
		if (r->status == SMTP_OK && r->dsn_passed)
			transport_job_dsn_passed(d->job, rq->recipients[i]->index);
		if (r->status == SMTP_OK)
			sent++;
		else if (r->status == SMTP_PERMFAIL)
			bounced++;
		else
			deferred++;
		log_debug("%s: to=<%s>, relay=%s, delay=%.2f, conn_use=%u, dsn=%s, status=%s (%s)",
			  d->qid, r->address, relay, delay, uses, r->enhanced,
			  status_word(r->status), r->text);
	}
	log_info("%s: relay=%s, conn_use=%u, delay=%.2f, delays=%.2f/%.2f/%.2f, sent=%zu, "
		 "deferred=%zu, bounced=%zu",
		 d->qid, relay, uses, delay, secs(d->t_dns - d->t_start),
		 secs(d->t_conn - d->t_dns), secs(now - d->t_conn), sent, deferred, bounced);

	d->s = NULL;
	if (smtp_session_reusable(s) && uses < ag.reuse_limit) {
		smtp_session_idle(s, on_idle, NULL);
		log_debug("%s: connection parked for reuse (conn_use=%u)", relay, uses);
		conncache_put(ag.cache, d->nh.key, d->addr_key, s);
	} else {
		smtp_session_quit(&s);
	}
	transport_job_set_data(d->job, NULL);
	transport_job_done(d->job, relay, false);
	delivery_free(d);
}

/* ---- sessions ---- */

static void use_session(struct delivery *d)
{
	char err[256];

	if (!d->t_conn)
		d->t_conn = clock_mono_ms();
	if (qstore_rewind(d->rd) < 0) {
		smtp_session_quit(&d->s);
		fail_all(d, ZFARM__STATUS__TEMPFAIL, 0, "4.3.0", "cannot rewind the queued message",
			 false);
		return;
	}
	if (smtp_session_start(d->s, &d->msg, on_session, d, err, sizeof(err)) < 0) {
		log_warn("%s: %s", d->qid, err);
		smtp_session_free(&d->s);
		try_next(d);
	}
}

/* begin - a cached connection to the nexthop, or DNS */
static void begin(struct delivery *d)
{
	d->s = conncache_take_dest(ag.cache, d->nh.key);
	if (d->s) {
		const struct smtp_peer *p = smtp_session_peer(d->s);

		addr_key(d->addr_key, sizeof(d->addr_key), ag.lmtp, p);
		d->t_dns = d->t_conn = clock_mono_ms();
		use_session(d);
		return;
	}
	resolve(d);
}

static void on_session(void *arg, struct smtp_session *s, enum smtp_event ev)
{
	struct delivery *d = arg;

	(void)s;
	switch (ev) {
	case SMTP_EV_READY:
		d->t_conn = clock_mono_ms();
		use_session(d);
		break;
	case SMTP_EV_FAILED:
		d->err = *smtp_session_error(d->s);
		d->have_err = true;
		log_debug("%s: %s", d->qid, d->err.text);
		smtp_session_free(&d->s);
		try_next(d);
		break;
	case SMTP_EV_TXN_LOST:
		log_debug("%s: cached connection to %s was lost before MAIL; trying another",
			  d->qid, smtp_session_relay(d->s));
		smtp_session_free(&d->s);
		if (++d->lost > LOST_RETRIES) {
			resolve(d);
			break;
		}
		d->t_conn = 0;
		begin(d);
		break;
	case SMTP_EV_TXN_DONE:
		finish(d);
		break;
	case SMTP_EV_IDLE_CLOSED:
		break;
	}
}

static void all_failed(struct delivery *d)
{
	char text[SMTP_TEXT_MAX + 1];

	if (d->have_err) {
		fail_all(d, ZFARM__STATUS__TEMPFAIL, d->err.code >= 400 ? d->err.code : 0,
			 d->err.enhanced[0] == '5' ? "4.4.1" : d->err.enhanced, d->err.text, true);
		return;
	}
	snprintf(text, sizeof(text), "no address to connect to for %s", d->nh.host);
	fail_all(d, ZFARM__STATUS__TEMPFAIL, 0, "4.4.1", text, true);
}

/* peer_of - the sockaddr for one DNS address and the port */
static void peer_of(struct smtp_peer *p, const struct dns_host *h, const struct dns_addr *a,
		    unsigned port)
{
	memset(p, 0, sizeof(*p));
	memcpy(&p->ss, &a->ss, a->len);
	p->len = a->len;
	if (p->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&p->ss)->sin_port = htons((uint16_t)port);
	else if (p->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&p->ss)->sin6_port = htons((uint16_t)port);
	snprintf(p->host, sizeof(p->host), "%s", h->name);
	snprintf(p->addr, sizeof(p->addr), "%s", a->text);
	p->port = port;
}

static void connect_peer(struct delivery *d, const struct smtp_peer *p)
{
	char err[256];

	addr_key(d->addr_key, sizeof(d->addr_key), ag.lmtp, p);
	d->s = conncache_take_addr(ag.cache, d->addr_key);
	if (d->s) {
		use_session(d);
		return;
	}
	d->t_conn = 0;
	d->s = smtp_session_new(ag.base, &ag.ccfg, p, on_session, d, err, sizeof(err));
	if (!d->s) {
		snprintf(d->err.text, sizeof(d->err.text), "%s", err);
		snprintf(d->err.enhanced, sizeof(d->err.enhanced), "4.4.1");
		d->err.code = 0;
		d->have_err = true;
		try_next(d);
	}
}

/* try_next - the next address of the DNS answer, or give up */
static void try_next(struct delivery *d)
{
	const struct dns_answer *a = d->ans;

	while (a && d->hi < a->nhost && d->tried < ag.addr_limit) {
		const struct dns_host *h = &a->host[d->hi];

		if (d->ai < h->naddr) {
			struct smtp_peer p;

			peer_of(&p, h, &h->addr[d->ai], d->nh.port);
			d->ai++;
			d->tried++;
			connect_peer(d, &p);
			return;
		}
		d->hi++;
		d->ai = 0;
	}
	all_failed(d);
}

static void on_dns(void *arg, const struct dns_answer *answer)
{
	struct delivery *d = arg;

	d->q = NULL;
	d->t_dns = clock_mono_ms();
	if (answer->status != DNS_OK) {
		bool perm = answer->status == DNS_PERMFAIL;

		fail_all(d, perm ? ZFARM__STATUS__PERMFAIL : ZFARM__STATUS__TEMPFAIL, 0,
			 answer->enhanced[0] ? answer->enhanced
			 : perm		     ? "5.4.4"
					     : "4.4.3",
			 answer->reason, !perm);
		return;
	}
	free(d->ans);
	d->ans = xmalloc(sizeof(*d->ans));
	memcpy(d->ans, answer, sizeof(*answer));
	d->hi = d->ai = d->tried = 0;
	try_next(d);
}

static void resolve(struct delivery *d)
{
	d->t_conn = 0;
	if (d->nh.unixsock) {
		struct smtp_peer p;
		struct sockaddr_un *su = (struct sockaddr_un *)&p.ss;

		memset(&p, 0, sizeof(p));
		su->sun_family = AF_UNIX;
		snprintf(su->sun_path, sizeof(su->sun_path), "%s", d->nh.path);
		p.len = (socklen_t)sizeof(*su);
		snprintf(p.host, sizeof(p.host), "localhost");
		snprintf(p.addr, sizeof(p.addr), "%s", d->nh.path);
		d->t_dns = clock_mono_ms();
		if (d->tried++ > 0) {
			all_failed(d);
			return;
		}
		connect_peer(d, &p);
		return;
	}
	d->q = d->nh.mx ? dns_lookup_mx(ag.dns, d->nh.host, on_dns, d)
			: dns_lookup_host(ag.dns, d->nh.host, on_dns, d);
	if (!d->q)
		fail_all(d, ZFARM__STATUS__TEMPFAIL, 0, "4.3.0", "cannot start a DNS lookup",
			 false);
}

/* ---- requests ---- */

/* content_size - bytes of content when the request does not say (reads it once). */
static int content_size(struct qstore_reader *rd, uint64_t *size, char *err, size_t errlen)
{
	char buf[16384];
	ssize_t n;

	*size = 0;
	while ((n = qstore_content(rd, buf, sizeof(buf), err, errlen)) > 0)
		*size += (uint64_t)n;
	if (n < 0)
		return -1;
	return qstore_rewind(rd);
}

static void smtp_deliver(struct transport_job *job, const Zfarm__DeliveryRequest *rq)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	const Zfarm__Envelope *env;
	char err[512], why[700];
	int errnum = 0;

	d->job = job;
	d->rq = rq;
	d->qid = rq->ref->queue_id;
	d->t_start = clock_mono_ms();
	d->next = ag.deliveries;
	if (ag.deliveries)
		ag.deliveries->prev = d;
	ag.deliveries = d;
	transport_job_set_data(job, d);
	d->arrival_us = (uint64_t)(rq->ref->arrival > 0 ? rq->ref->arrival : 0) * 1000000;

	if (rq->n_recipients == 0) {
		transport_job_set_data(job, NULL);
		transport_job_done(job, "none", false);
		delivery_free(d);
		return;
	}
	d->rd = qstore_read(ag.qs, d->qid, &errnum, err, sizeof(err));
	if (!d->rd) {
		bool gone = errnum == ENOENT || errnum == EBADMSG;

		snprintf(why, sizeof(why), "%s: %s",
			 errnum == ENOENT ? "message is gone" : "cannot read the queued message",
			 err);
		fail_all(d, gone ? ZFARM__STATUS__PERMFAIL : ZFARM__STATUS__TEMPFAIL, 0,
			 gone ? "5.3.0" : "4.3.0", why, false);
		return;
	}
	env = qstore_envelope(d->rd);
	if (env->arrival_us)
		d->arrival_us = (uint64_t)env->arrival_us; /* finer than ref.arrival */
	d->msg.sender = rq->sender ? rq->sender : env->sender ? env->sender : "";
	d->msg.envid = rq->envid && rq->envid[0] ? rq->envid : env->envid;
	d->msg.ret = rq->ret && rq->ret[0] ? rq->ret : env->ret;
	d->msg.eightbit = env->body && (strcasecmp(env->body, "8BITMIME") == 0 ||
					strcasecmp(env->body, "BINARYMIME") == 0);
	d->msg.smtputf8 = env->smtputf8;
	d->msg.content = d->rd;
	d->msg.size = rq->ref->size;
	if (!d->msg.size && content_size(d->rd, &d->msg.size, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "cannot read the queued message: %s", err);
		fail_all(d, ZFARM__STATUS__TEMPFAIL, 0, "4.3.0", why, false);
		return;
	}
	d->rcpt = xcalloc(rq->n_recipients, sizeof(*d->rcpt));
	for (size_t i = 0; i < rq->n_recipients; i++) {
		const Zfarm__DeliveryRecipient *r = rq->recipients[i];

		d->rcpt[i].address = r->address ? r->address : "";
		d->rcpt[i].orcpt = r->orcpt;
		d->rcpt[i].orig_address = r->orig_address;
		d->rcpt[i].notify = r->notify;
	}
	d->msg.rcpt = d->rcpt;
	d->msg.nrcpt = rq->n_recipients;

	if (nexthop_parse(rq->nexthop, ag.lmtp, ag.port, &d->nh, err, sizeof(err)) < 0) {
		log_warn("%s: %s", d->qid, err);
		fail_all(d, ZFARM__STATUS__TEMPFAIL, 0, "4.3.5", err, false);
		return;
	}
	begin(d);
}

static void smtp_cancel(struct transport_job *job)
{
	struct delivery *d = transport_job_get_data(job);

	if (!d)
		return;
	log_info("%s: the scheduler went away during the delivery", d->qid);
	delivery_free(d);
}

/* ---- start and end ---- */

static int get_ms(const struct config *cfg, const char *param, long long def, unsigned *out,
		  char *err, size_t errlen)
{
	char name[128];
	long long v;

	snprintf(name, sizeof(name), "%s_%s", ag.name, param);
	if (config_get_time(cfg, NULL, NULL, name, def, 0, 86400, &v, err, errlen) < 0)
		return -1;
	*out = (unsigned)(v * 1000);
	return 0;
}

static int get_int(const struct config *cfg, const char *param, long long def, long long min,
		   long long max, long long *out, char *err, size_t errlen)
{
	char name[128];

	snprintf(name, sizeof(name), "%s_%s", ag.name, param);
	return config_get_int(cfg, NULL, NULL, name, def, min, max, out, err, errlen);
}

static int smtp_init(struct farm_server *srv, char *err, size_t errlen)
{
	const struct config *cfg = farm_server_config(srv);
	const char *store, *qdir, *host, *helo, *servers, *protos;
	char rundir[4096], defq[4200], name[128];
	long long v, cache_size, reuse, addr_limit, port;
	unsigned cache_ms;
	struct dns_config dc = {0};

	ag.base = farm_server_base(srv);
	if (farmd_run_directory(cfg, rundir, sizeof(rundir), err, errlen) < 0)
		return -1;
	snprintf(defq, sizeof(defq), "%s/queue", rundir);
	if (config_get_string(cfg, NULL, NULL, "queue_store", "spool", &store, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "queue_directory", defq, &qdir, err, errlen) < 0)
		return -1;
	ag.qs = qstore_open(store, qdir, err, errlen);
	if (!ag.qs)
		return -1;
	if (config_get_string(cfg, NULL, NULL, "myhostname", "localhost", &host, err, errlen) < 0)
		return -1;
	snprintf(name, sizeof(name), "%s_helo_name", ag.name);
	if (config_get_string(cfg, NULL, NULL, name, host, &helo, err, errlen) < 0)
		return -1;
	ag.helo_name = xstrdup(helo[0] ? helo : "localhost");

	ag.ccfg.lmtp = ag.lmtp;
	ag.ccfg.helo_name = ag.helo_name;
	if (get_ms(cfg, "connect_timeout", 30, &ag.ccfg.connect_ms, err, errlen) < 0 ||
	    get_ms(cfg, "helo_timeout", 300, &ag.ccfg.helo_ms, err, errlen) < 0 ||
	    get_ms(cfg, "mail_timeout", 300, &ag.ccfg.mail_ms, err, errlen) < 0 ||
	    get_ms(cfg, "rcpt_timeout", 300, &ag.ccfg.rcpt_ms, err, errlen) < 0 ||
	    get_ms(cfg, "data_init_timeout", 120, &ag.ccfg.data_init_ms, err, errlen) < 0 ||
	    get_ms(cfg, "data_xfer_timeout", 180, &ag.ccfg.data_xfer_ms, err, errlen) < 0 ||
	    get_ms(cfg, "data_done_timeout", 600, &ag.ccfg.data_done_ms, err, errlen) < 0 ||
	    get_ms(cfg, "rset_timeout", 20, &ag.ccfg.rset_ms, err, errlen) < 0 ||
	    get_ms(cfg, "quit_timeout", 300, &ag.ccfg.quit_ms, err, errlen) < 0 ||
	    get_ms(cfg, "connection_cache_time_limit", 10, &cache_ms, err, errlen) < 0)
		return -1;
	if (get_int(cfg, "line_length_limit", 2048, 512, 1 << 20, &v, err, errlen) < 0 ||
	    get_int(cfg, "connection_cache_size", 50, 0, 10000, &cache_size, err, errlen) < 0 ||
	    get_int(cfg, "connection_reuse_count_limit", 100, 0, 1000000, &reuse, err, errlen) <
		0 ||
	    get_int(cfg, "mx_address_limit", 5, 1, 100, &addr_limit, err, errlen) < 0 ||
	    get_int(cfg, "port", ag.lmtp ? 24 : 25, 1, 65535, &port, err, errlen) < 0)
		return -1;
	ag.ccfg.line_limit = (size_t)v;
	ag.reuse_limit = reuse ? (unsigned)reuse : UINT32_MAX;
	ag.addr_limit = (unsigned)addr_limit;
	ag.port = (unsigned)port;
	ag.cache = conncache_new(ag.base, (size_t)cache_size, cache_ms, cache_close, NULL);

	if (config_get_string(cfg, NULL, NULL, "dns_servers", "", &servers, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "inet_protocols", "all", &protos, err, errlen) < 0)
		return -1;
	if (dns_family_parse(protos, &dc.family, err, errlen) < 0)
		return -1;
	dc.servers = servers;
	ag.dns = dns_new(ag.base, &dc, err, errlen);
	if (!ag.dns)
		return -1;
	return 0;
}

static void smtp_fini(struct farm_server *srv)
{
	(void)srv;
	while (ag.deliveries)
		delivery_free(ag.deliveries);
	conncache_free(&ag.cache);
	smtp_client_shutdown();
	dns_free(&ag.dns);
	qstore_close(&ag.qs);
	free(ag.helo_name);
	ag.helo_name = NULL;
}

int smtp_agent_main(int argc, char **argv, bool lmtp)
{
	static const struct transport_ops smtp_ops = {
	    .name = "smtp",
	    .init = smtp_init,
	    .deliver = smtp_deliver,
	    .cancel = smtp_cancel,
	    .fini = smtp_fini,
	};
	static const struct transport_ops lmtp_ops = {
	    .name = "lmtp",
	    .init = smtp_init,
	    .deliver = smtp_deliver,
	    .cancel = smtp_cancel,
	    .fini = smtp_fini,
	};

	ag.lmtp = lmtp;
	ag.name = lmtp ? "lmtp" : "smtp";
	return transport_main(argc, argv, lmtp ? &lmtp_ops : &smtp_ops);
}
