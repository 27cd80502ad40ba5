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
 * it).
 *
 * TLS (smtp only; LMTP never uses STARTTLS): each delivery gets a
 * security level (tls_client.h), smtp_tls_policy_maps' entry for the
 * nexthop or smtp_tls_security_level (may); smtp_client.h does the
 * STARTTLS.  may: TLS when offered; when the TLS set-up fails (the
 * handshake, or the connection during it), the same server is tried
 * again at once in clear on a new connection, as Postfix does, and
 * that nexthop+address is remembered for FALLBACK_MS (10 minutes,
 * FALLBACK_MAX entries per process, the oldest forgotten first) so the
 * next deliveries go in clear without the failing handshake.  encrypt,
 * verify: no STARTTLS, a refused one or a failed handshake (4.7.4,
 * 4.7.5), an unverified certificate (4.7.5) fail that address; the next
 * MX address is tried; none left: every recipient deferred with the
 * last reason.  Nothing is ever sent in clear under them.  Connection
 * reuse keeps to the policy: a session is parked by address (for other
 * nexthops) only when it is in clear to a server that offers no
 * STARTTLS; a TLS session is reused only for its own nexthop; a cached
 * session made for another level (the policy table changed) is closed,
 * not used.  A new TLS session is logged at info, Postfix's way:
 *   "QID: Untrusted TLS connection established to mx[192.0.2.7]:25:
 *    TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
 * (Anonymous, Untrusted, Trusted: the chain verified, Verified: chain
 * and name), and bytes a server sent behind its STARTTLS reply (dropped
 * unread) with a warning.
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
 * connection_cache_size 50, mx_address_limit 5, port (25 / 24).  SMTP
 * only: starttls_timeout 300s, tls_security_level may, tls_policy_maps
 * (a table, common/table.h), tls_CAfile, tls_CApath (neither: the
 * system's trust store), tls_protocols and tls_mandatory_protocols
 * (">=TLSv1.2"), tls_ciphers and tls_mandatory_ciphers (medium).
 * Globals: queue_store, queue_directory, myhostname, dns_servers,
 * inet_protocols.
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
#include "common/table.h"
#include "common/xalloc.h"
#include "transport/conncache.h"
#include "transport/dns.h"
#include "transport/smtp_client.h"
#include "transport/tls_client.h"
#include "transport/transport.h"

/* A cached connection that died is replaced by another at most this often per delivery. */
#define LOST_RETRIES 3

/* Servers whose TLS failed under may: in clear for this long, at most this many remembered. */
#define FALLBACK_MS  (10 * 60 * 1000)
#define FALLBACK_MAX 256

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
	/* TLS (smtp only) */
	struct tls_client *tls;
	enum tls_level tls_level;   /* smtp_tls_security_level */
	struct table *tls_policy;   /* smtp_tls_policy_maps; NULL none */
	uint64_t policy_checked_ms; /* last table_refresh */
	char *policy_err;	    /* the last reload failure, logged once */
	struct fallback *fallback;  /* FALLBACK_MAX entries */
};

/* A nexthop and address whose TLS set-up failed under may. */
struct fallback {
	char key[720]; /* "NEXTHOPKEY ADDRKEY"; "" unused */
	uint64_t until_ms;
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
	enum tls_level level; /* the nexthop's TLS policy */
	char addr_key[300];   /* of d->s */
	bool have_err;
	struct smtp_error err;		 /* the last connection failure */
	uint64_t t_start, t_dns, t_conn; /* monotonic ms */
	uint64_t arrival_us;		 /* wall clock, for delay= */
};

static struct agent ag;

static void on_session(void *arg, struct smtp_session *s, enum smtp_event ev);
static void try_next(struct delivery *d);
static void resolve(struct delivery *d);
static void connect_peer(struct delivery *d, const struct smtp_peer *p);

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

/* ---- TLS policy ---- */

/*
 * policy_refresh - reload smtp_tls_policy_maps when its file changed (at
 * most once a second); a bad new file keeps the old table, logged once.
 */
static void policy_refresh(void)
{
	uint64_t now = clock_mono_ms();
	char err[512];

	if (!ag.tls_policy || now - ag.policy_checked_ms < 1000)
		return;
	ag.policy_checked_ms = now;
	if (table_refresh(ag.tls_policy, err, sizeof(err)) >= 0) {
		free(ag.policy_err);
		ag.policy_err = NULL;
	} else if (!ag.policy_err || strcmp(ag.policy_err, err) != 0) {
		log_warn("table %s not reloaded, the old one stays in use: %s",
			 table_spec(ag.tls_policy), err);
		free(ag.policy_err);
		ag.policy_err = xstrdup(err);
	}
}

/*
 * tls_policy - the security level for a nexthop: smtp_tls_policy_maps
 * looked up like Postfix does, with the nexthop as the scheduler gave
 * it (lower case, brackets and port included: "example.org",
 * "[mx.example.org]:2525"), then, for a bare domain, its parent domains
 * with a leading dot (".example.org", ".org"); no entry: the global
 * smtp_tls_security_level.  The value is one level word; anything else
 * (Postfix's dane, secure, fingerprint, attributes such as match=) is
 * refused with a reason, never taken for a weaker level.
 */
static int tls_policy(const char *nexthop, enum tls_level *out, char *err, size_t errlen)
{
	char key[512], word[32];
	const char *v, *p;
	size_t n = 0;

	*out = ag.tls_level;
	if (!ag.tls_policy)
		return 0;
	snprintf(key, sizeof(key), "%s", nexthop);
	lower(key);
	v = table_lookup(ag.tls_policy, key);
	if (!v && !strchr(key, '[') && !strchr(key, ':'))
		for (p = strchr(key, '.'); p && !v; p = strchr(p + 1, '.'))
			v = table_lookup(ag.tls_policy, p);
	if (!v)
		return 0;
	for (p = v; *p == ' ' || *p == '\t'; p++)
		;
	while (*p && *p != ' ' && *p != '\t' && n + 1 < sizeof(word))
		word[n++] = *p++;
	word[n] = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p || tls_level_parse(word, out) < 0) {
		snprintf(err, errlen,
			 "TLS policy for %.200s in %.100s: \"%.60s\" is not one of none, may, "
			 "encrypt, verify",
			 key, table_spec(ag.tls_policy), v);
		return -1;
	}
	return 0;
}

/* ---- plaintext fallback memory ---- */

static struct fallback *fallback_find(const char *key)
{
	uint64_t now = clock_mono_ms();

	for (size_t i = 0; ag.fallback && i < FALLBACK_MAX; i++)
		if (ag.fallback[i].key[0] && ag.fallback[i].until_ms > now &&
		    strcmp(ag.fallback[i].key, key) == 0)
			return &ag.fallback[i];
	return NULL;
}

static void fallback_key(char *buf, size_t len, const struct delivery *d, const char *akey)
{
	snprintf(buf, len, "%s %s", d->nh.key, akey);
}

/* fallback_add - remember a nexthop+address for FALLBACK_MS; the oldest goes when full */
static void fallback_add(const struct delivery *d, const char *akey)
{
	char key[sizeof(ag.fallback->key)];
	struct fallback *f;

	if (!ag.fallback)
		ag.fallback = xcalloc(FALLBACK_MAX, sizeof(*ag.fallback));
	fallback_key(key, sizeof(key), d, akey);
	f = fallback_find(key);
	if (!f) {
		/* an unused entry (until 0), else the one that expires first */
		f = &ag.fallback[0];
		for (size_t i = 1; i < FALLBACK_MAX; i++)
			if (ag.fallback[i].until_ms < f->until_ms)
				f = &ag.fallback[i];
	}
	snprintf(f->key, sizeof(f->key), "%s", key);
	f->until_ms = clock_mono_ms() + FALLBACK_MS;
}

/* level_for - the level for one address: none while a may fallback is remembered */
static enum tls_level level_for(const struct delivery *d, const char *akey)
{
	char key[sizeof(ag.fallback->key)];

	if (d->level != TLS_LEV_MAY || !ag.fallback)
		return d->level;
	fallback_key(key, sizeof(key), d, akey);
	return fallback_find(key) ? TLS_LEV_NONE : d->level;
}

/*
 * session_fits - may a cached session carry this delivery?  One made
 * with the level this delivery would use, or a clear one to a server
 * that offers no STARTTLS when this delivery permits clear.  A session
 * made for another TLS policy (the policy table changed) does not.
 */
static bool session_fits(const struct delivery *d, const struct smtp_session *s, const char *akey)
{
	if (smtp_session_tls_level(s) == level_for(d, akey))
		return true;
	return !tls_level_required(d->level) && !smtp_session_tls(s) &&
	       !smtp_session_caps(s)->starttls;
}

/* by_address - may a parked session be reused by address (for other nexthops)? */
static bool by_address(const struct smtp_session *s)
{
	/* TLS sessions only for their own nexthop; clear ones only where every permissive level gets clear */
	return !smtp_session_tls(s) && !smtp_session_caps(s)->starttls;
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
		log_debug("%s: connection parked for reuse (conn_use=%u%s)", relay, uses,
			  smtp_session_tls(s) ? ", TLS" : "");
		conncache_put(ag.cache, d->nh.key, by_address(s) ? d->addr_key : NULL, s);
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
	while ((d->s = conncache_take_dest(ag.cache, d->nh.key)) != NULL) {
		const struct smtp_peer *p = smtp_session_peer(d->s);

		addr_key(d->addr_key, sizeof(d->addr_key), ag.lmtp, p);
		if (session_fits(d, d->s, d->addr_key)) {
			d->t_dns = d->t_conn = clock_mono_ms();
			use_session(d);
			return;
		}
		log_debug("%s: cached connection to %s does not fit TLS policy %s: closed", d->qid,
			  smtp_session_relay(d->s), tls_level_name(d->level));
		smtp_session_quit(&d->s);
	}
	resolve(d);
}

/* tls_log - a new session's TLS, Postfix's way */
static void tls_log(const struct delivery *d)
{
	const struct tls_info *t = smtp_session_tls(d->s);
	size_t n = smtp_session_tls_discarded(d->s);

	if (n)
		log_warn("%s: %s sent %zu bytes behind its reply to STARTTLS, before the TLS "
			 "handshake: dropped unread",
			 d->qid, smtp_session_relay(d->s), n);
	if (t)
		log_info("%s: %s TLS connection established to %s: %s with cipher %s (%d/%d bits)",
			 d->qid, tls_trust_name(t->trust), smtp_session_relay(d->s), t->version,
			 t->cipher, t->bits, t->alg_bits);
}

static void on_session(void *arg, struct smtp_session *s, enum smtp_event ev)
{
	struct delivery *d = arg;

	(void)s;
	switch (ev) {
	case SMTP_EV_READY:
		d->t_conn = clock_mono_ms();
		tls_log(d);
		use_session(d);
		break;
	case SMTP_EV_FAILED:
		d->err = *smtp_session_error(d->s);
		d->have_err = true;
		log_debug("%s: %s", d->qid, d->err.text);
		if (d->err.tls_fallback) {
			/*
			 * Opportunistic TLS failed: this server again, in clear, on
			 * a new connection (Postfix does the same); remembered, so
			 * the next deliveries to it skip the failing handshake.
			 */
			struct smtp_peer p = *smtp_session_peer(d->s);

			log_info("%s: %s; trying %s again without TLS", d->qid, d->err.text,
				 smtp_session_relay(d->s));
			fallback_add(d, d->addr_key);
			smtp_session_free(&d->s);
			connect_peer(d, &p);
			break;
		}
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
	struct smtp_client_config cfg = ag.ccfg;
	char err[256];

	addr_key(d->addr_key, sizeof(d->addr_key), ag.lmtp, p);
	/* only clear sessions are cached by address: never for a level that requires TLS */
	while (!tls_level_required(d->level) &&
	       (d->s = conncache_take_addr(ag.cache, d->addr_key)) != NULL) {
		if (session_fits(d, d->s, d->addr_key)) {
			use_session(d);
			return;
		}
		smtp_session_quit(&d->s);
	}
	d->t_conn = 0;
	cfg.tls_level = level_for(d, d->addr_key);
	d->s = smtp_session_new(ag.base, &cfg, p, on_session, d, err, sizeof(err));
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
	policy_refresh();
	if (tls_policy(rq->nexthop, &d->level, err, sizeof(err)) < 0) {
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

/* tls_init - the smtp_tls_* parameters: the client context, the level, the policy table */
static int tls_init(const struct config *cfg, char *err, size_t errlen)
{
	struct tls_client_config tc = {0};
	const char *level, *policy;
	char why[512];

	if (get_ms(cfg, "starttls_timeout", 300, &ag.ccfg.starttls_ms, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "smtp_tls_security_level", "may", &level, err,
			      errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "smtp_tls_policy_maps", "", &policy, err, errlen) <
		0 ||
	    config_get_string(cfg, NULL, NULL, "smtp_tls_CAfile", "", &tc.ca_file, err, errlen) <
		0 ||
	    config_get_string(cfg, NULL, NULL, "smtp_tls_CApath", "", &tc.ca_path, err, errlen) <
		0 ||
	    config_get_string(cfg, NULL, NULL, "smtp_tls_protocols", ">=TLSv1.2", &tc.protocols,
			      err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "smtp_tls_mandatory_protocols", ">=TLSv1.2",
			      &tc.mandatory_protocols, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "smtp_tls_ciphers", "medium", &tc.ciphers, err,
			      errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "smtp_tls_mandatory_ciphers", "medium",
			      &tc.mandatory_ciphers, err, errlen) < 0)
		return -1;
	if (tls_level_parse(level[0] ? level : "none", &ag.tls_level) < 0) {
		snprintf(err, errlen,
			 "smtp_tls_security_level = %s: not one of none, may, encrypt, verify",
			 level);
		return -1;
	}
	if (policy[0]) {
		ag.tls_policy = table_open(policy, why, sizeof(why));
		if (!ag.tls_policy) {
			snprintf(err, errlen, "smtp_tls_policy_maps: %s", why);
			return -1;
		}
		ag.policy_checked_ms = clock_mono_ms();
	}
	ag.tls = tls_client_new(&tc, why, sizeof(why));
	if (!ag.tls) {
		snprintf(err, errlen, "smtp_tls_*: %s", why);
		return -1;
	}
	ag.ccfg.tls = ag.tls;
	ag.ccfg.tls_level = ag.tls_level;
	return 0;
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
	if (!ag.lmtp && tls_init(cfg, err, errlen) < 0)
		return -1;

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
	tls_client_free(&ag.tls);
	table_free(&ag.tls_policy);
	free(ag.policy_err);
	ag.policy_err = NULL;
	free(ag.fallback);
	ag.fallback = NULL;
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
