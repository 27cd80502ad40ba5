/*
 * session - see session.h.
 *
 * Reading: session_process() is the only place that consumes input.  It
 * runs from the read callback and again when a commit finishes or the
 * output drained, and loops over whatever is buffered, so pipelined
 * commands and the commands behind a message's end are handled in order.
 * It stops in COMMIT (until the committer calls back), in CLOSING, and
 * while the output buffer is over SESSION_OUT_HIGH (a client that sends
 * without reading replies).
 *
 * Replies use Postfix's texts where Postfix has one, so operators and
 * their log tools recognise them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "common/cidr.h"
#include "common/clock.h"
#include "common/frame.h"
#include "common/frame_client.h"
#include "common/log.h"
#include "common/qstore.h"
#include "common/sockstream.h"
#include "common/xalloc.h"
#include "proto/qfile.pb-c.h"
#include "smtpserver/auth.h"
#include "smtpserver/committer.h"
#include "smtpserver/handoff.h"
#include "smtpserver/header_fixup.h"
#include "smtpserver/relay.h"
#include "smtpserver/sasl.h"
#include "smtpserver/session.h"
#include "smtpserver/smtp_body.h"
#include "smtpserver/smtp_cmd.h"
#include "smtpserver/smtpd_config.h"
#include "smtpserver/tls_server.h"

#define SESSION_IN_HIGH	  (64 * 1024) /* read high-water mark */
#define SESSION_OUT_HIGH  (64 * 1024) /* stop reading commands above this */
#define SESSION_STAGE	  (64 * 1024) /* content staged before a queue write */
#define SESSION_PEER_SIZE (INET6_ADDRSTRLEN + 32)

enum session_state {
	SESSION_COMMAND,
	SESSION_DATA,
	SESSION_BDAT,
	SESSION_COMMIT,
	SESSION_VERIFY,
	SESSION_CLOSING,
	SESSION_TLS_START, /* STARTTLS answered: the 220 goes out, then TLS */
	SESSION_HANDSHAKE, /* the TLS handshake runs */
	SESSION_SASL,	   /* reading the client's lines of an AUTH exchange */
	SESSION_AUTH,	   /* the auth backend is asked, or a failure's delay runs */
};

/* Counters for the "disconnect from" line, one per verb. */
struct verb_count {
	unsigned total, ok;
};

/* The mail transaction: MAIL FROM up to the end of the message. */
struct transaction {
	bool active; /* MAIL was accepted */
	char sender[ADDRESS_MAILBOX_SIZE];
	bool smtputf8;
	bool has_size;
	uint64_t size;
	enum smtp_cmd_body body;
	enum smtp_cmd_ret ret;
	char envid[SMTP_CMD_ENVID_MAX + 1];
	bool has_auth_param; /* MAIL AUTH= of an authenticated client (RFC 4954 5) */
	char auth_param[SMTP_CMD_AUTH_MAX + 1];
	Zfarm__EnvRecipient **rcpt;
	unsigned nrcpt, rcpt_cap;
	/* receiving */
	struct qstore_writer *w;
	char qid[QID_SIZE];
	struct smtp_body body_dec;
	struct header_fixup *fix; /* submission: adds Message-ID:/Date: */
	bool bdat;	   /* a BDAT transaction started */
	bool failed;	   /* BDAT: a chunk failed; the rest are skipped */
	bool write_failed; /* the queue store refused a write */
	int write_errnum;
	char write_reason[256];
	uint64_t bdat_left; /* octets of the current chunk still to read */
	bool bdat_last;
	bool bdat_skip;	    /* this chunk is read and thrown away */
	int bdat_skip_code; /* ... and then answered with this */
	const char *bdat_skip_enh, *bdat_skip_text;
};

/* A RCPT waiting for the router's verification. */
struct pending_rcpt {
	char addr[ADDRESS_MAILBOX_SIZE];
	char orcpt[SMTP_CMD_ATYPE_MAX + SMTP_CMD_ORCPT_MAX + 2];
	unsigned notify;
};

struct session {
	struct session_env *env;
	const struct smtpd_config *cfg;
	struct bufferevent *bev;
	int fd;
	struct sockstream *ss; /* plain socket: its I/O (replies out at the end of the turn) */
	enum session_state state;
	char listener[32];
	bool unix_client;
	char peer[SESSION_PEER_SIZE]; /* "unknown[192.0.2.1]" */
	char addr[INET6_ADDRSTRLEN];
	char local_addr[INET6_ADDRSTRLEN];
	bool trusted;
	bool submission; /* the listener has the submission rules */
	bool wrapper;	 /* the listener speaks TLS from the start */

	/* TLS: on once the handshake started (fd then belongs to the TLS bufferevent) */
	bool tls;
	bool tls_discarded;  /* TLS_START: the pipelined input was thrown away */
	char tls_info[160]; /* "TLSv1.3 with cipher ... (256/256 bits)" */

	/* AUTH; forgotten by STARTTLS, except the failures */
	bool authenticated;
	char auth_user[SASL_USER_MAX + 1];
	const char *auth_mech;
	unsigned auth_failures;
	bool auth_pending; /* the backend has our request */
	bool auth_closing; /* the delayed reply is the last: 421 after it */
	struct sasl_exchange sasl;
	struct event *auth_timer;
	unsigned timeout;
	unsigned error_limit;

	/* EHLO state */
	bool helo_seen, esmtp;
	char helo[ADDRESS_DOMAIN_SIZE + 2];

	struct transaction t;
	struct pending_rcpt vrcpt;

	/* staging for content on its way to the queue store */
	char *stage;
	size_t stage_len;

	bool skipping;	  /* discarding the rest of an over-long line */
	bool out_blocked; /* input paused until the output drains */
	bool commit_gone; /* the client left while a commit ran */
	unsigned errors, junk, commands;
	const char *last_verb; /* for "lost connection after X" */
	struct verb_count counts[SMTP_CMD_AUTH + 2];
};

static void session_process(struct session *s);
static void session_read(struct session *s, bool on);

/* ---- replies ---- */

static void session_vreply(struct session *s, int code, const char *enh, const char *fmt,
			   va_list ap)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	if (enh && enh[0] && s->cfg->enhancedstatuscodes)
		evbuffer_add_printf(out, "%d %s ", code, enh);
	else
		evbuffer_add_printf(out, "%d ", code);
	evbuffer_add_vprintf(out, fmt, ap);
	evbuffer_add(out, "\r\n", 2);
}

static void session_reply(struct session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void session_reply(struct session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_vreply(s, code, enh, fmt, ap);
	va_end(ap);
}

/* ---- life cycle ---- */

static void transaction_reset(struct session *s)
{
	struct transaction *t = &s->t;

	qstore_abort(&t->w);
	for (unsigned i = 0; i < t->nrcpt; i++) {
		free(t->rcpt[i]->address);
		free(t->rcpt[i]->orcpt);
		free(t->rcpt[i]);
	}
	free(t->rcpt);
	free(t->fix);
	memset(t, 0, sizeof(*t));
	s->stage_len = 0;
}

static void session_log_disconnect(struct session *s)
{
	char line[512];
	size_t n = 0;

	for (int v = SMTP_CMD_HELO; v <= SMTP_CMD_AUTH + 1 && n < sizeof(line); v++) {
		const struct verb_count *c = &s->counts[v];
		const char *name = v <= SMTP_CMD_AUTH ? smtp_cmd_verb_name(v) : "unknown";
		char lower[16];
		size_t i;

		if (c->total == 0)
			continue;
		for (i = 0; name[i] && i < sizeof(lower) - 1; i++)
			lower[i] = (char)(name[i] | 0x20);
		lower[i] = '\0';
		if (c->ok == c->total)
			n +=
			    (size_t)snprintf(line + n, sizeof(line) - n, " %s=%u", lower, c->total);
		else
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%u/%u", lower, c->ok,
					      c->total);
	}
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	line[n] = '\0';
	log_info("disconnect from %s%s commands=%u", s->peer, line, s->commands);
}

static void session_free(struct session *s)
{
	struct session_env *env = s->env;

	if (env->verify)
		frame_client_cancel(env->verify, s);
	if (s->auth_pending)
		auth_cancel(env->auth, s);
	if (s->auth_timer)
		event_free(s->auth_timer);
	sasl_clear(&s->sasl);
	session_log_disconnect(s);
	transaction_reset(s);
	if (s->bev) {
		SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;

		/* Say goodbye properly (close_notify) if it can go out at once. */
		if (ssl && SSL_is_init_finished(ssl))
			SSL_shutdown(ssl);
		sockstream_free(&s->ss);
		bufferevent_free(s->bev);
	}
	/* A TLS bufferevent closes the socket itself; a plain one leaves it to us. */
	if (!s->tls)
		close(s->fd);
	free(s->stage);
	free(s);
	env->session_end(env->arg);
}

/* session_close - stop reading; close once the queued replies are out. */
static void session_close(struct session *s)
{
	struct timeval tv = {s->timeout < 10 ? s->timeout : 10, 0};

	if (s->state == SESSION_COMMIT) {
		s->commit_gone = true; /* freed when the committer calls back */
		if (s->ss)
			sockstream_stop(s->ss);
		return;
	}
	s->state = SESSION_CLOSING;
	session_read(s, false);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
		session_free(s);
		return;
	}
	/* A client that does not read gets a short grace, then the door. */
	if (s->ss)
		sockstream_set_timeouts(s->ss, NULL, &tv);
	else
		bufferevent_set_timeouts(s->bev, NULL, &tv);
}

static void session_error(struct session *s)
{
	s->errors++;
	if (s->errors >= s->error_limit) {
		log_info("too many errors after %s from %s", s->last_verb, s->peer);
		session_reply(s, 421, "4.7.0", "%s Error: too many errors", s->cfg->myhostname);
		session_close(s);
	}
}

static void session_junk(struct session *s)
{
	if (++s->junk > s->cfg->junk_command_limit)
		session_error(s);
}

/* ---- content staging ---- */

static void stage_flush(struct session *s)
{
	struct transaction *t = &s->t;

	if (s->stage_len == 0)
		return;
	if (!t->write_failed && t->w &&
	    qstore_append(t->w, s->stage, s->stage_len, &t->write_errnum, t->write_reason,
			  sizeof(t->write_reason)) < 0)
		t->write_failed = true;
	s->stage_len = 0;
}

static void stage_add(struct session *s, const char *p, size_t n)
{
	while (n > 0) {
		size_t room = SESSION_STAGE - s->stage_len;
		size_t k = n < room ? n : room;

		memcpy(s->stage + s->stage_len, p, k);
		s->stage_len += k;
		p += k;
		n -= k;
		if (s->stage_len == SESSION_STAGE)
			stage_flush(s);
	}
}

/* ---- message start and end ---- */

/* RFC 3848 (and RFC 6531 for UTF8SMTP): S for TLS, A for AUTH. */
static const char *session_protocol(const struct session *s)
{
	static const char *const names[2][4] = {
	    {"ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA"},
	    {"UTF8SMTP", "UTF8SMTPS", "UTF8SMTPA", "UTF8SMTPSA"},
	};

	if (!s->esmtp && !s->t.smtputf8)
		return "SMTP";
	return names[s->t.smtputf8][(s->tls ? 1 : 0) + (s->authenticated ? 2 : 0)];
}

static const char *body_name(enum smtp_cmd_body b)
{
	switch (b) {
	case SMTP_CMD_BODY_7BIT:
		return "7BIT";
	case SMTP_CMD_BODY_8BITMIME:
		return "8BITMIME";
	case SMTP_CMD_BODY_BINARYMIME:
		return "BINARYMIME";
	default:
		return "";
	}
}

/* Reply to a queue store failure (full disk, I/O error): 452 4.3.1, try later. */
static void session_reply_store_error(struct session *s, int errnum)
{
	if (errnum == ENOSPC || errnum == EDQUOT)
		session_reply(s, 452, "4.3.1", "Insufficient system storage");
	else
		session_reply(s, 452, "4.3.1", "Error: queue file write error");
}

/* The "QID: client=" line, with the AUTH details Postfix logs there. */
static void session_log_client(struct session *s)
{
	struct transaction *t = &s->t;
	char user[2 * SASL_USER_MAX + 8], sender[2 * SMTP_CMD_AUTH_MAX + 8];

	if (!s->authenticated) {
		log_info("%s: client=%s", t->qid, s->peer);
		return;
	}
	log_sanitize(user, sizeof(user), s->auth_user, strlen(s->auth_user));
	log_sanitize(sender, sizeof(sender), t->auth_param, strlen(t->auth_param));
	log_info("%s: client=%s, sasl_method=%s, sasl_username=%s%s%s", t->qid, s->peer,
		 s->auth_mech, user, t->has_auth_param ? ", sasl_sender=" : "",
		 t->has_auth_param ? sender : "");
}

/* Content octets on their way to the queue file: through the header fix-up while it holds. */
static void session_content(struct session *s, const char *p, size_t n)
{
	if (s->t.fix)
		header_fixup_feed(s->t.fix, p, n);
	else
		stage_add(s, p, n);
}

static void session_fixup_emit(void *arg, const char *p, size_t n)
{
	stage_add(arg, p, n);
}

/*
 * session_fixup_begin - a submission: Message-ID: and Date: are added
 * when the message has none (RFC 6409 8).  The Message-ID is Postfix's
 * form, <YYYYMMDDhhmmss.QID@myhostname>, unique with the queue ID.
 */
static void session_fixup_begin(struct session *s, const char *date)
{
	struct transaction *t = &s->t;
	time_t now = clock_now();
	struct tm tm;
	char id[HEADER_FIXUP_FIELD];

	gmtime_r(&now, &tm);
	snprintf(id, sizeof(id), "<%04d%02d%02d%02d%02d%02d.%s@%.200s>", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, t->qid,
		 s->cfg->myhostname);
	t->fix = xmalloc(sizeof(*t->fix));
	header_fixup_init(t->fix, id, date, session_fixup_emit, s);
}

/* session_content_end - the client's content is all in: what the fix-up held goes out. */
static void session_content_end(struct session *s)
{
	if (s->t.fix)
		header_fixup_finish(s->t.fix);
}

/*
 * message_begin - create the queue file (envelope first) and stage the
 * Received: header.  -1 after replying when the store refused.
 */
static int message_begin(struct session *s, enum smtp_body_mode mode)
{
	struct transaction *t = &s->t;
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;
	struct smtp_body_limits lim = {
	    .size_max = s->cfg->message_size_limit,
	    .line_max = s->cfg->data_line_limit,
	    .header_max = s->cfg->header_size_limit,
	    .hops_max = s->cfg->hopcount_limit,
	};
	char reason[256], date[64], hdr[1024];
	int errnum = 0, n;

	env.client_addr = s->addr;
	env.client_name = s->unix_client ? "localhost" : "unknown";
	env.helo = s->helo;
	env.protocol = (char *)session_protocol(s);
	env.sender = t->sender;
	env.n_recipients = t->nrcpt;
	env.recipients = t->rcpt;
	env.envid = t->envid;
	env.ret = t->ret == SMTP_CMD_RET_FULL ? "FULL" : t->ret == SMTP_CMD_RET_HDRS ? "HDRS" : "";
	env.size_declared = t->has_size ? t->size : 0;
	env.body = (char *)body_name(t->body);
	env.smtputf8 = t->smtputf8;
	env.auth_user = s->authenticated ? s->auth_user : "";
	t->w = qstore_create(s->env->qs, &env, &errnum, reason, sizeof(reason));
	if (!t->w) {
		log_error("NOQUEUE: cannot create a queue file for %s: %s", s->peer, reason);
		session_reply_store_error(s, errnum);
		return -1;
	}
	memcpy(t->qid, qstore_writer_qid(t->w), QID_SIZE);
	session_log_client(s);
	smtp_body_init(&t->body_dec, mode, &lim);
	t->write_failed = false;
	s->stage_len = 0;

	clock_format_rfc5322(clock_now(), date, sizeof(date));
	if (s->unix_client)
		n = snprintf(hdr, sizeof(hdr), "Received: from %s (localhost)",
			     s->helo[0] ? s->helo : "localhost");
	else
		n = snprintf(hdr, sizeof(hdr), "Received: from %s (unknown [%s])",
			     s->helo[0] ? s->helo : "unknown", s->addr);
	stage_add(s, hdr, (size_t)n);
	if (s->tls) {
		/* Postfix's form: the protocol and cipher, nothing about the client. */
		n = snprintf(hdr, sizeof(hdr), "\r\n\t(using %s)", s->tls_info);
		stage_add(s, hdr, (size_t)n);
	}
	n = snprintf(hdr, sizeof(hdr), "\r\n\tby %s (zfarm) with %s id %s", s->cfg->myhostname,
		     session_protocol(s), t->qid);
	stage_add(s, hdr, (size_t)n);
	if (t->nrcpt == 1)
		n = snprintf(hdr, sizeof(hdr), "\r\n\tfor <%s>; %s\r\n", t->rcpt[0]->address, date);
	else
		n = snprintf(hdr, sizeof(hdr), "; %s\r\n", date);
	stage_add(s, hdr, (size_t)n);
	if (s->submission)
		session_fixup_begin(s, date);
	return 0;
}

static void session_log_reject(struct session *s, const char *stage, const char *qid, int code,
			       const char *enh, const char *text, const char *rcpt)
{
	log_info("%s: reject: %s from %s: %d %s %s; from=<%s>%s%s%s proto=%s helo=<%s>",
		 qid ? qid : "NOQUEUE", stage, s->peer, code, enh, text, s->t.sender,
		 rcpt ? " to=<" : "", rcpt ? rcpt : "", rcpt ? ">" : "", session_protocol(s),
		 s->helo);
}

static void session_on_committed(void *arg, int rc, const char *qid, int errnum, const char *reason)
{
	struct session *s = arg;
	struct transaction *t = &s->t;
	uint64_t size = t->body_dec.size;
	char why[512];

	if (rc < 0) {
		log_error("%s: cannot commit the message from %s: %s", t->qid, s->peer, reason);
		if (!s->commit_gone)
			session_reply_store_error(s, errnum);
	} else {
		log_info("%s: from=<%s>, size=%" PRIu64 ", nrcpt=%u, proto=%s (queued)", qid,
			 t->sender, size, t->nrcpt, session_protocol(s));
		if (s->env->handoff &&
		    handoff_send(s->env->handoff, qid, qstore_backend(s->env->qs), size, t->nrcpt,
				 (int64_t)(qid_time_us(qid) / 1000000), why, sizeof(why)) < 0)
			log_warn("%s: hand-off to the router failed: %s; the message stays in "
				 "the queue for the reinjector",
				 qid, why);
		if (s->commit_gone)
			log_info("%s: the client from %s left before the 250; the message is "
				 "queued and may arrive twice if it is sent again",
				 qid, s->peer);
		else
			session_reply(s, 250, "2.0.0", "Ok: queued as %s", qid);
		s->counts[t->bdat ? SMTP_CMD_BDAT : SMTP_CMD_DATA].ok++;
	}
	transaction_reset(s);
	if (s->commit_gone) {
		s->state = SESSION_CLOSING;
		session_free(s);
		return;
	}
	s->state = SESSION_COMMAND;
	session_process(s);
}

/*
 * message_end - the client finished the message: answer its errors, or
 * commit it (the 250 comes from session_on_committed).
 */
static void message_end(struct session *s)
{
	struct transaction *t = &s->t;
	int code;
	const char *enh, *text;

	stage_flush(s);
	if (t->body_dec.error != SMTP_BODY_OK) {
		smtp_body_reply(t->body_dec.error, &code, &enh, &text);
		session_log_reject(s, "END-OF-MESSAGE", t->qid, code, enh, text, NULL);
		session_reply(s, code, enh, "%s", text);
		transaction_reset(s);
		s->state = SESSION_COMMAND;
		session_error(s);
		return;
	}
	if (t->write_failed) {
		log_error("%s: cannot write the message from %s: %s", t->qid, s->peer,
			  t->write_reason);
		session_reply_store_error(s, t->write_errnum);
		transaction_reset(s);
		s->state = SESSION_COMMAND;
		return;
	}
	s->state = SESSION_COMMIT;
	committer_submit(s->env->committer, t->w, session_on_committed, s);
	t->w = NULL;
}

/* ---- commands ---- */

/* TLS can start now: a certificate is loaded (and reloaded if it changed). */
static bool session_tls_ready(struct session *s)
{
	char warn[1200];
	bool ok;

	if (!s->env->tls)
		return false;
	ok = tls_server_ready(s->env->tls, warn, sizeof(warn));
	if (warn[0])
		log_warn("TLS certificate: %s", warn);
	return ok;
}

/* STARTTLS is offered: a certificate, TCP, not yet TLS, not switched off. */
static bool session_tls_offered(struct session *s)
{
	return !s->tls && !s->unix_client && s->cfg->tls_level != SMTPD_TLS_NONE &&
	       session_tls_ready(s);
}

/* AUTH would be offered once TLS is on (smtpd_tls_auth_only). */
static bool session_auth_configured(const struct session *s)
{
	return s->env->auth && !s->unix_client && (s->submission || s->cfg->sasl_auth_enable);
}

/* AUTH is offered now. */
static bool session_auth_offered(const struct session *s)
{
	return session_auth_configured(s) && (s->tls || !s->cfg->tls_auth_only);
}

static bool session_need_mail(struct session *s)
{
	if (!s->t.active) {
		session_reply(s, 503, "5.5.1", "Error: need MAIL command");
		session_error(s);
		return false;
	}
	return true;
}

static void do_helo(struct session *s, const struct smtp_cmd *c)
{
	const struct smtpd_config *cfg = s->cfg;
	struct evbuffer *out = bufferevent_get_output(s->bev);

	transaction_reset(s);
	snprintf(s->helo, sizeof(s->helo), "%.*s", (int)c->arg_len, c->arg);
	s->helo_seen = true;
	s->esmtp = c->verb == SMTP_CMD_EHLO;
	s->counts[c->verb].ok++;
	if (!s->esmtp) {
		session_reply(s, 250, NULL, "%s", cfg->myhostname);
		return;
	}
	evbuffer_add_printf(out, "250-%s\r\n", cfg->myhostname);
	if (cfg->pipelining)
		evbuffer_add_printf(out, "250-PIPELINING\r\n");
	if (cfg->size) {
		if (cfg->message_size_limit)
			evbuffer_add_printf(out, "250-SIZE %" PRIu64 "\r\n",
					    cfg->message_size_limit);
		else
			evbuffer_add_printf(out, "250-SIZE\r\n");
	}
	if (cfg->vrfy_command)
		evbuffer_add_printf(out, "250-VRFY\r\n");
	if (session_tls_offered(s))
		evbuffer_add_printf(out, "250-STARTTLS\r\n");
	if (session_auth_offered(s))
		evbuffer_add_printf(out, "250-AUTH " SASL_MECHANISMS "\r\n");
	if (cfg->eightbitmime)
		evbuffer_add_printf(out, "250-8BITMIME\r\n");
	if (cfg->enhancedstatuscodes)
		evbuffer_add_printf(out, "250-ENHANCEDSTATUSCODES\r\n");
	if (cfg->smtputf8)
		evbuffer_add_printf(out, "250-SMTPUTF8\r\n");
	if (cfg->chunking)
		evbuffer_add_printf(out, "250-CHUNKING\r\n");
	if (cfg->dsn)
		evbuffer_add_printf(out, "250-DSN\r\n");
	evbuffer_add_printf(out, "250 HELP\r\n");
}

static void do_mail(struct session *s, const struct smtp_cmd *c)
{
	const struct smtpd_config *cfg = s->cfg;
	struct transaction *t = &s->t;
	long long avail;

	/* After TLS the client must introduce itself again (RFC 3207 4.2). */
	if ((cfg->helo_required || s->tls) && !s->helo_seen) {
		session_reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
		session_error(s);
		return;
	}
	if (t->active) {
		session_reply(s, 503, "5.5.1", "Error: nested MAIL command");
		session_error(s);
		return;
	}
	if (cfg->tls_level == SMTPD_TLS_ENCRYPT && !s->tls && !s->unix_client) {
		if (session_tls_ready(s)) {
			session_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
			session_error(s);
		} else {
			session_reply(s, 454, "4.7.0", "TLS not available due to local problem");
		}
		return;
	}
	if (s->submission && !s->authenticated && !s->unix_client) {
		session_reply(s, 530, "5.7.0", "Authentication required");
		session_error(s);
		return;
	}
	if (cfg->queue_minfree) {
		avail = qstore_free_bytes(s->env->qs);
		/* Room for the declared size 1.5 times over, as Postfix does. */
		if (avail >= 0 &&
		    ((uint64_t)avail < cfg->queue_minfree ||
		     (c->has_size && (uint64_t)avail - cfg->queue_minfree < c->size / 2 * 3))) {
			log_warn("NOQUEUE: reject: MAIL from %s: 452 4.3.1 Insufficient system "
				 "storage; %lld bytes free, queue_minfree %" PRIu64,
				 s->peer, avail, cfg->queue_minfree);
			session_reply(s, 452, "4.3.1", "Insufficient system storage");
			return;
		}
	}
	transaction_reset(s);
	t->active = true;
	address_format(&c->addr, t->sender, sizeof(t->sender));
	t->smtputf8 = c->smtputf8;
	t->has_size = c->has_size;
	t->size = c->size;
	t->body = c->body;
	t->ret = c->ret;
	if (c->has_envid)
		snprintf(t->envid, sizeof(t->envid), "%s", c->envid);
	/* RFC 4954 5: AUTH= of a client that did not authenticate is as if <> was given. */
	if (c->has_auth && !c->auth_null && s->authenticated) {
		t->has_auth_param = true;
		snprintf(t->auth_param, sizeof(t->auth_param), "%s", c->auth);
	}
	s->counts[SMTP_CMD_MAIL].ok++;
	session_reply(s, 250, "2.1.0", "Ok");
}

/* rcpt_add - the recipient is accepted: into the envelope, 250. */
static void rcpt_add(struct session *s, const char *addr, const char *orcpt, unsigned notify)
{
	struct transaction *t = &s->t;
	Zfarm__EnvRecipient *r;

	if (t->nrcpt == t->rcpt_cap) {
		t->rcpt_cap = t->rcpt_cap ? t->rcpt_cap * 2 : 4;
		t->rcpt = xrealloc(t->rcpt, t->rcpt_cap * sizeof(*t->rcpt));
	}
	r = xmalloc(sizeof(*r));
	zfarm__env_recipient__init(r);
	r->address = xstrdup(addr);
	r->orcpt = xstrdup(orcpt);
	r->notify = notify;
	t->rcpt[t->nrcpt++] = r;
	s->counts[SMTP_CMD_RCPT].ok++;
	session_reply(s, 250, "2.1.5", "Ok");
}

/* The router's answer to "is this local recipient deliverable?". */
static void session_on_verified(void *arg, const Zfarm__Frame *reply, const char *reason)
{
	struct session *s = arg;
	struct pending_rcpt *p = &s->vrcpt;
	const Zfarm__VerifyReply *vr = reply && reply->body_case == ZFARM__FRAME__BODY_VERIFY_REPLY
					   ? reply->verify_reply
					   : NULL;
	char text[ADDRESS_MAILBOX_SIZE + 700];

	s->state = SESSION_COMMAND;
	if (vr && vr->status == ZFARM__STATUS__OK) {
		rcpt_add(s, p->addr, p->orcpt, p->notify);
	} else if (vr && vr->status == ZFARM__STATUS__PERMFAIL) {
		snprintf(text, sizeof(text), "<%s>: Recipient address rejected: %.600s", p->addr,
			 vr->text && vr->text[0] ? vr->text : "undeliverable address");
		session_log_reject(s, "RCPT", NULL, 550, vr->enhanced_code, text, p->addr);
		session_reply(
		    s, 550, vr->enhanced_code && vr->enhanced_code[0] ? vr->enhanced_code : "5.1.1",
		    "%s", text);
		session_error(s);
	} else {
		if (!vr)
			log_warn("cannot verify <%s> for %s: %s", p->addr, s->peer, reason);
		snprintf(text, sizeof(text),
			 "<%s>: Recipient address rejected: Temporary lookup "
			 "failure",
			 p->addr);
		session_log_reject(s, "RCPT", NULL, 451, "4.3.0", text, p->addr);
		session_reply(s, 451, "4.3.0", "%s", text);
	}
	if (s->state == SESSION_COMMAND)
		session_process(s);
}

static void do_rcpt(struct session *s, const struct smtp_cmd *c)
{
	struct transaction *t = &s->t;
	char addr[ADDRESS_MAILBOX_SIZE], orcpt[SMTP_CMD_ATYPE_MAX + SMTP_CMD_ORCPT_MAX + 2] = "";
	const char *why = NULL;
	enum relay_verdict v;

	if (!session_need_mail(s))
		return;
	if (t->nrcpt >= s->cfg->recipient_limit) {
		session_reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	address_format(&c->addr, addr, sizeof(addr));
	/* An authenticated client relays like a trusted one (permit_sasl_authenticated). */
	v = relay_check(s->cfg->relay, &c->addr, s->trusted || s->authenticated, &why);
	if (v == RELAY_DENIED) {
		char text[ADDRESS_MAILBOX_SIZE + 128];

		snprintf(text, sizeof(text), "<%s>: %s", addr, why);
		session_log_reject(s, "RCPT", NULL, 554, "5.7.1", text, addr);
		session_reply(s, 554, "5.7.1", "%s", text);
		session_error(s);
		return;
	}
	if (c->has_orcpt)
		snprintf(orcpt, sizeof(orcpt), "%s;%s", c->orcpt_type, c->orcpt);
	if (v == RELAY_LOCAL && s->env->verify) {
		/* Unknown local users are refused now, not bounced later. */
		Zfarm__Frame f;
		Zfarm__VerifyRequest vq = ZFARM__VERIFY_REQUEST__INIT;

		snprintf(s->vrcpt.addr, sizeof(s->vrcpt.addr), "%s", addr);
		snprintf(s->vrcpt.orcpt, sizeof(s->vrcpt.orcpt), "%s", orcpt);
		s->vrcpt.notify = c->notify;
		vq.address = s->vrcpt.addr;
		vq.sender = t->sender;
		frame_init(&f, 0);
		f.body_case = ZFARM__FRAME__BODY_VERIFY;
		f.verify = &vq;
		s->state = SESSION_VERIFY;
		frame_client_request(s->env->verify, &f, session_on_verified, s);
		return;
	}
	rcpt_add(s, addr, orcpt, c->notify);
}

static void do_data(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	if (!session_need_mail(s))
		return;
	if (s->t.bdat) {
		session_reply(s, 503, "5.5.1", "Error: DATA after BDAT");
		session_error(s);
		return;
	}
	if (s->t.nrcpt == 0) {
		session_reply(s, 503, "5.5.1", "Error: need RCPT command");
		session_error(s);
		return;
	}
	if (message_begin(s, SMTP_BODY_DOT) < 0) {
		transaction_reset(s);
		return;
	}
	session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	s->state = SESSION_DATA;
}

/* bdat_skip - read this chunk and throw it away, then reply code. */
static void bdat_skip(struct session *s, uint64_t size, int code, const char *enh, const char *text)
{
	struct transaction *t = &s->t;

	t->bdat_left = size;
	t->bdat_skip = true;
	t->bdat_skip_code = code;
	t->bdat_skip_enh = enh;
	t->bdat_skip_text = text;
	s->state = SESSION_BDAT;
}

static void do_bdat(struct session *s, const struct smtp_cmd *c)
{
	struct transaction *t = &s->t;

	/* Whatever the answer, the chunk's octets are read: they are not commands. */
	if (!s->cfg->chunking) {
		bdat_skip(s, c->chunk_size, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	if (!t->active) {
		bdat_skip(s, c->chunk_size, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (t->nrcpt == 0) {
		bdat_skip(s, c->chunk_size, 503, "5.5.1", "Error: need RCPT command");
		return;
	}
	if (t->failed) {
		bdat_skip(s, c->chunk_size, 503, "5.5.1", "Error: the message failed; send RSET");
		return;
	}
	if (!t->bdat) {
		if (message_begin(s, SMTP_BODY_RAW) < 0) {
			/* Replied already; the chunk still has to go. */
			t->failed = true;
			t->bdat = true;
			bdat_skip(s, c->chunk_size, 0, NULL, NULL);
			return;
		}
		t->bdat = true;
	}
	t->bdat_left = c->chunk_size;
	t->bdat_last = c->last;
	t->bdat_skip = false;
	s->state = SESSION_BDAT;
}

/* bdat_chunk_end - every octet of the chunk is read. */
static void bdat_chunk_end(struct session *s)
{
	struct transaction *t = &s->t;
	int code;
	const char *enh, *text;
	char tail[2];
	size_t n;

	s->state = SESSION_COMMAND;
	if (t->bdat_skip) {
		if (t->bdat_skip_code) {
			session_reply(s, t->bdat_skip_code, t->bdat_skip_enh, "%s",
				      t->bdat_skip_text);
			session_error(s);
		}
		return;
	}
	if (t->bdat_last) {
		n = smtp_body_finish(&t->body_dec, tail);
		session_content(s, tail, n);
		session_content_end(s);
		message_end(s);
		return;
	}
	if (t->body_dec.error != SMTP_BODY_OK) {
		/* RFC 3030: a failed chunk fails the message; later chunks are skipped. */
		smtp_body_reply(t->body_dec.error, &code, &enh, &text);
		session_log_reject(s, "BDAT", t->qid, code, enh, text, NULL);
		session_reply(s, code, enh, "%s", text);
		qstore_abort(&t->w);
		t->failed = true;
		session_error(s);
		return;
	}
	s->counts[SMTP_CMD_BDAT].ok++;
	session_reply(s, 250, "2.0.0", "Ok: %" PRIu64 " octets", t->body_dec.size);
}

static void do_vrfy(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, 252, "2.0.0",
		      "Cannot VRFY user, but will accept message and attempt "
		      "delivery");
}

static void do_rset(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	transaction_reset(s);
	session_reply(s, 250, "2.0.0", "Ok");
}

static void do_noop(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, 250, "2.0.0", "Ok");
}

static void do_quit(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, 221, "2.0.0", "Bye");
	session_close(s);
}

static void do_help(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, 214, "2.0.0",
		      "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT "
		      "VRFY HELP STARTTLS AUTH");
}

/* ---- STARTTLS ---- */

static void do_starttls(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	if (s->tls) {
		session_reply(s, 554, "5.5.1", "Error: TLS already active");
		session_error(s);
		return;
	}
	if (!session_tls_offered(s)) {
		session_reply(s, 502, "5.5.1", "Error: command not implemented");
		session_error(s);
		return;
	}
	s->counts[SMTP_CMD_STARTTLS].ok++;
	session_reply(s, 220, "2.0.0", "Ready to start TLS");
	/* RFC 3207 4.2: nothing the client said before TLS counts after it. */
	transaction_reset(s);
	s->helo_seen = s->esmtp = false;
	s->helo[0] = '\0';
	s->authenticated = false;
	s->auth_user[0] = '\0';
	sasl_clear(&s->sasl);
	s->state = SESSION_TLS_START;
	s->tls_discarded = false;
	/* session_process() throws away what is buffered behind this line. */
}

/*
 * session_tls_begin - the 220 is out: the socket gets a TLS bufferevent.
 * Whatever the client sent after STARTTLS and before its handshake is
 * read by OpenSSL as TLS, so plaintext commands cannot get in.
 */
static bool session_bev_setup(struct session *s);

static void session_tls_begin(struct session *s)
{
	char warn[700], err[700];

	sockstream_free(&s->ss);
	bufferevent_free(s->bev);
	s->tls = true; /* the socket belongs to the TLS bufferevent from here */
	s->state = SESSION_HANDSHAKE;
	s->bev = tls_server_bev_new(s->env->tls, s->env->base, s->fd, warn, sizeof(warn), err,
				    sizeof(err));
	if (warn[0])
		log_warn("TLS certificate: %s", warn);
	if (!s->bev) {
		log_error("cannot start TLS with %s: %s", s->peer, err);
		s->state = SESSION_CLOSING;
		session_free(s);
		return;
	}
	(void)session_bev_setup(s); /* a TLS bufferevent: cannot fail */
}

/* session_tls_done - the handshake is done. */
static void session_tls_done(struct session *s)
{
	tls_server_describe(bufferevent_openssl_get_ssl(s->bev), s->tls_info, sizeof(s->tls_info));
	log_info("Anonymous TLS connection established from %s: %s", s->peer, s->tls_info);
	s->state = SESSION_COMMAND;
	if (s->wrapper)
		session_reply(s, 220, NULL, "%s", s->cfg->banner);
	session_process(s);
}

/* ---- AUTH ---- */

static void session_sasl_step(struct session *s, enum sasl_step step);

/* The delayed answer to a failed AUTH. */
static void session_on_auth_delay(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	session_reply(s, 535, "5.7.8", "Authentication credentials invalid");
	s->state = SESSION_COMMAND;
	if (s->auth_closing) {
		log_info("too many AUTH failures from %s", s->peer);
		session_reply(s, 421, "4.7.0", "%s Error: too many authentication failures",
			      s->cfg->myhostname);
		session_close(s);
		return;
	}
	session_error(s);
	if (s->state == SESSION_COMMAND)
		session_process(s);
}

/*
 * session_auth_failed - 535 5.7.8, never saying why, after
 * smtpd_sasl_failure_delay; the smtpd_sasl_failure_limit-th failure of a
 * session is followed by 421 and the end of the session.
 */
static void session_auth_failed(struct session *s, const char *user, const char *reason)
{
	struct timeval tv = {s->cfg->sasl_failure_delay, 0};
	char u[2 * SASL_USER_MAX + 8];

	log_sanitize(u, sizeof(u), user, strlen(user));
	log_warn("%s: SASL %s authentication failed: %s, sasl_username=%s", s->peer, s->auth_mech,
		 reason && reason[0] ? reason : "authentication failure", u);
	s->auth_failures++;
	s->auth_closing = s->auth_failures >= s->cfg->sasl_failure_limit;
	s->state = SESSION_AUTH;
	if (!s->auth_timer)
		s->auth_timer = evtimer_new(s->env->base, session_on_auth_delay, s);
	evtimer_add(s->auth_timer, &tv);
}

static void session_on_auth(void *arg, enum auth_result r, const char *user, const char *reason)
{
	struct session *s = arg;
	char u[2 * SASL_USER_MAX + 8];

	s->auth_pending = false;
	switch (r) {
	case AUTH_OK:
		s->authenticated = true;
		snprintf(s->auth_user, sizeof(s->auth_user), "%s", user);
		s->counts[SMTP_CMD_AUTH].ok++;
		log_sanitize(u, sizeof(u), s->auth_user, strlen(s->auth_user));
		log_info("AUTH from %s: sasl_method=%s, sasl_username=%s", s->peer, s->auth_mech, u);
		session_reply(s, 235, "2.7.0", "Authentication successful");
		break;
	case AUTH_FAIL:
		session_auth_failed(s, user, reason);
		return;
	case AUTH_TEMPFAIL:
		log_warn("%s: SASL %s authentication: temporary failure: %s", s->peer, s->auth_mech,
			 reason && reason[0] ? reason : "backend unavailable");
		session_reply(s, 454, "4.7.0", "Temporary authentication failure");
		break;
	}
	s->state = SESSION_COMMAND;
	session_process(s);
}

static void session_sasl_step(struct session *s, enum sasl_step step)
{
	struct auth_request req = {
	    .service = "smtp",
	    .local_addr = s->local_addr,
	    .remote_addr = s->addr,
	    .secured = s->tls,
	};

	switch (step) {
	case SASL_CHALLENGE:
		s->state = SESSION_SASL;
		session_reply(s, 334, NULL, "%s", s->sasl.challenge);
		return;
	case SASL_DONE:
		req.user = s->sasl.user;
		req.pass = s->sasl.pass;
		s->state = SESSION_AUTH;
		s->auth_pending = true;
		auth_verify(s->env->auth, &req, session_on_auth, s);
		explicit_bzero(s->sasl.pass, sizeof(s->sasl.pass));
		return;
	case SASL_CANCEL:
		session_reply(s, 501, "5.7.0", "Authentication aborted");
		break;
	case SASL_MALFORMED:
		session_reply(s, 501, "5.5.2", "Cannot decode response");
		session_error(s);
		break;
	case SASL_INVALID:
		session_auth_failed(s, s->sasl.user, "malformed credentials");
		sasl_clear(&s->sasl);
		return;
	}
	sasl_clear(&s->sasl);
	if (s->state == SESSION_SASL)
		s->state = SESSION_COMMAND;
}

static void do_auth(struct session *s, const struct smtp_cmd *c)
{
	enum sasl_mech mech;

	if (!session_auth_offered(s)) {
		if (session_auth_configured(s) && session_tls_offered(s))
			session_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
		else
			session_reply(s, 503, "5.5.1", "Error: authentication not enabled");
		session_error(s);
		return;
	}
	if (!s->esmtp) {
		session_reply(s, 503, "5.5.1", "Error: send EHLO first");
		session_error(s);
		return;
	}
	if (s->authenticated) {
		session_reply(s, 503, "5.5.1", "Error: already authenticated");
		session_error(s);
		return;
	}
	if (s->t.active) {
		session_reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
		session_error(s);
		return;
	}
	mech = sasl_mech_parse(c->arg, c->arg_len);
	if (mech == SASL_MECH_NONE) {
		session_reply(s, 504, "5.5.4", "Unsupported authentication mechanism");
		session_error(s);
		return;
	}
	s->auth_mech = mech == SASL_MECH_PLAIN ? "PLAIN" : "LOGIN";
	session_sasl_step(s, sasl_begin(&s->sasl, mech, c->auth_initial, c->auth_initial_len));
}

/* One line of the client in an AUTH exchange (without CR LF). */
static void session_sasl_line(struct session *s, const char *line, size_t len)
{
	s->state = SESSION_COMMAND; /* unless the step asks for more */
	session_sasl_step(s, sasl_respond(&s->sasl, line, len));
}

/*
 * The command table.  ok: the verb always succeeds once parsed (the
 * others count their own successes in s->counts); junk: counts against
 * smtpd_junk_command_limit.  Sequence checks (503) are in the handlers.
 */
static const struct command {
	void (*handle)(struct session *s, const struct smtp_cmd *c);
	bool ok, junk;
} commands[] = {
    [SMTP_CMD_HELO] = {do_helo, false, false},
    [SMTP_CMD_EHLO] = {do_helo, false, false},
    [SMTP_CMD_MAIL] = {do_mail, false, false},
    [SMTP_CMD_RCPT] = {do_rcpt, false, false},
    [SMTP_CMD_DATA] = {do_data, false, false},
    [SMTP_CMD_BDAT] = {do_bdat, false, false},
    [SMTP_CMD_RSET] = {do_rset, true, true},
    [SMTP_CMD_NOOP] = {do_noop, true, true},
    [SMTP_CMD_QUIT] = {do_quit, true, false},
    [SMTP_CMD_VRFY] = {do_vrfy, true, true},
    [SMTP_CMD_HELP] = {do_help, true, true},
    [SMTP_CMD_STARTTLS] = {do_starttls, false, false},
    [SMTP_CMD_AUTH] = {do_auth, false, false},
};

static void session_command(struct session *s, const char *line, size_t len)
{
	const struct smtpd_config *cfg = s->cfg;
	struct smtp_cmd_opts opts = {
	    .size = cfg->size && s->esmtp,
	    .eightbitmime = cfg->eightbitmime && s->esmtp,
	    .smtputf8 = cfg->smtputf8 && s->esmtp,
	    .dsn = cfg->dsn && s->esmtp,
	    .chunking = cfg->chunking && s->esmtp,
	    .auth = session_auth_offered(s) && s->esmtp,
	    .utf8_transaction = s->t.smtputf8,
	    .size_limit = cfg->message_size_limit,
	    .line_max = cfg->command_line_limit,
	};
	const struct command *cmd;
	struct smtp_cmd c;
	char why[256];
	enum smtp_cmd_result r;

	s->commands++;
	r = smtp_cmd_parse(line, len, &opts, &c, why, sizeof(why));
	s->counts[c.verb == SMTP_CMD_NONE ? SMTP_CMD_AUTH + 1 : c.verb].total++;
	s->last_verb = c.verb == SMTP_CMD_NONE ? "unknown command" : smtp_cmd_verb_name(c.verb);
	if (r != SMTP_CMD_OK) {
		/* BDAT with a size we understood still owns its octets. */
		if (c.verb == SMTP_CMD_BDAT && c.chunk_size > 0) {
			bdat_skip(s, c.chunk_size, c.reply_code, c.enhanced, c.text);
			return;
		}
		if (r == SMTP_CMD_ERR_UNKNOWN)
			session_reply(s, 500, "5.5.2", "Error: command not recognized");
		else
			session_reply(s, c.reply_code, c.enhanced, "%s: %s", c.text, why);
		session_error(s);
		return;
	}
	cmd = &commands[c.verb];
	if (cmd->ok)
		s->counts[c.verb].ok++;
	cmd->handle(s, &c);
	if (cmd->junk && s->state != SESSION_CLOSING)
		session_junk(s);
}

/* ---- input ---- */

/* A line over the limit: a command gets 500, an AUTH exchange ends (RFC 4954 4). */
static void session_line_too_long(struct session *s)
{
	if (s->state == SESSION_SASL) {
		sasl_clear(&s->sasl);
		s->state = SESSION_COMMAND;
		session_reply(s, 500, "5.5.6", "Authentication Exchange line is too long");
	} else {
		session_reply(s, 500, "5.5.2", "Error: line too long");
	}
}

/*
 * One command line (or, in SASL, one line of an AUTH exchange) from the
 * input; false when more input is needed.
 */
static bool session_read_command(struct session *s, struct evbuffer *in)
{
	size_t limit = s->state == SESSION_SASL ? SASL_LINE_MAX : s->cfg->command_line_limit;
	size_t avail = evbuffer_get_length(in);
	struct evbuffer_ptr p;
	char *line;
	size_t len;

	p = evbuffer_search(in, "\n", 1, NULL);
	if (s->skipping) {
		if (p.pos < 0) {
			evbuffer_drain(in, avail);
			return false;
		}
		evbuffer_drain(in, (size_t)p.pos + 1);
		s->skipping = false;
		return true;
	}
	if (p.pos < 0) {
		if (avail < limit)
			return false;
		/* No LF within the limit: answer now, drop the rest of the line. */
		s->commands++;
		session_line_too_long(s);
		evbuffer_drain(in, avail);
		s->skipping = true;
		session_error(s);
		return s->state == SESSION_COMMAND;
	}
	len = (size_t)p.pos + 1;
	if (len > limit) {
		s->commands++;
		session_line_too_long(s);
		evbuffer_drain(in, len);
		session_error(s);
		return true;
	}
	line = (char *)evbuffer_pullup(in, (ssize_t)len);
	if (len < 2 || line[len - 2] != '\r') {
		s->commands++;
		if (s->state == SESSION_SASL) {
			sasl_clear(&s->sasl);
			s->state = SESSION_COMMAND;
		}
		session_reply(s, 501, "5.5.2",
			      "Error: bare <LF> received; commands end with <CR><LF>");
		evbuffer_drain(in, len);
		session_error(s);
		return true;
	}
	if (s->state == SESSION_SASL)
		session_sasl_line(s, line, len - 2);
	else
		session_command(s, line, len - 2);
	evbuffer_drain(in, len);
	return true;
}

/* Feed DATA or a BDAT chunk through the decoder; false when more is needed. */
static bool session_read_content(struct session *s, struct evbuffer *in)
{
	struct transaction *t = &s->t;
	struct evbuffer_iovec v[8];
	size_t want = evbuffer_get_length(in), used = 0;
	bool end = false;
	int n;

	if (s->state == SESSION_BDAT && want > t->bdat_left)
		want = t->bdat_left;
	if (want == 0)
		return s->state == SESSION_BDAT && t->bdat_left == 0 ? (bdat_chunk_end(s), true)
								     : false;
	n = evbuffer_peek(in, (ssize_t)want, NULL, v, 8);
	if (n > 8)
		n = 8;
	for (int i = 0; i < n && used < want && !end; i++) {
		const char *p = v[i].iov_base;
		size_t len = v[i].iov_len;

		if (len > want - used)
			len = want - used;
		if (s->state == SESSION_BDAT && t->bdat_skip) {
			used += len;
			continue;
		}
		while (len > 0 && !end) {
			size_t room = SESSION_STAGE - s->stage_len, k = len < room ? len : room;
			size_t out_len, c;

			if (t->fix && !header_fixup_passing(t->fix)) {
				/* In the header of a submission: through the fix-up. */
				char tmp[1024];

				k = len < sizeof(tmp) ? len : sizeof(tmp);
				c = smtp_body_feed(&t->body_dec, p, k, tmp, &out_len, &end);
				header_fixup_feed(t->fix, tmp, out_len);
			} else {
				c = smtp_body_feed(&t->body_dec, p, k, s->stage + s->stage_len,
						   &out_len, &end);
				s->stage_len += out_len;
				if (s->stage_len == SESSION_STAGE)
					stage_flush(s);
			}
			p += c;
			len -= c;
			used += c;
		}
	}
	evbuffer_drain(in, used);
	if (s->state == SESSION_DATA) {
		if (end) {
			session_content_end(s);
			message_end(s);
			return true;
		}
		return evbuffer_get_length(in) > 0;
	}
	t->bdat_left -= used;
	if (t->bdat_left == 0) {
		bdat_chunk_end(s);
		return true;
	}
	return evbuffer_get_length(in) > 0;
}

static void session_process(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	bool more = true;

	while (more) {
		switch (s->state) {
		case SESSION_COMMAND:
			if (evbuffer_get_length(out) > SESSION_OUT_HIGH) {
				/* Resumed by the write callback once the client reads. */
				s->out_blocked = true;
				session_read(s, false);
				return;
			}
			more = evbuffer_get_length(in) > 0 && session_read_command(s, in);
			break;
		case SESSION_SASL:
			more = evbuffer_get_length(in) > 0 && session_read_command(s, in);
			break;
		case SESSION_DATA:
		case SESSION_BDAT:
			more = session_read_content(s, in);
			break;
		case SESSION_TLS_START:
			/* Behind STARTTLS: plaintext the client must not have sent (CVE-2011-0411). */
			if (!s->tls_discarded && evbuffer_get_length(in) > 0)
				log_warn("%s: %zu octets of plaintext pipelined after STARTTLS "
					 "discarded",
					 s->peer, evbuffer_get_length(in));
			evbuffer_drain(in, evbuffer_get_length(in));
			s->tls_discarded = true;
			session_read(s, false);
			return;
		case SESSION_COMMIT:
		case SESSION_VERIFY:
		case SESSION_CLOSING:
		case SESSION_HANDSHAKE:
		case SESSION_AUTH:
			return;
		}
	}
}

/* ---- events ---- */

static void session_on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_process(arg);
}

static void session_on_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	/*
	 * A TLS bufferevent may run this callback late (deferred), when more
	 * output has been queued since: only an empty buffer means sent.
	 */
	if ((s->state == SESSION_CLOSING || s->state == SESSION_TLS_START) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (s->state == SESSION_CLOSING) {
		session_free(s);
		return;
	}
	if (s->state == SESSION_TLS_START) {
		session_tls_begin(s);
		return;
	}
	if (s->out_blocked) {
		s->out_blocked = false;
		session_read(s, true);
		session_process(s);
	}
}

static void session_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->state == SESSION_CLOSING) {
		session_free(s);
		return;
	}
	if ((what & BEV_EVENT_CONNECTED) && s->state == SESSION_HANDSHAKE) {
		session_tls_done(s);
		return;
	}
	if (s->state == SESSION_HANDSHAKE || s->state == SESSION_TLS_START) {
		/* No reply: the client is not talking TLS (or not at all). */
		char why[512];

		if (what & BEV_EVENT_TIMEOUT)
			snprintf(why, sizeof(why), "timeout");
		else if (s->tls)
			tls_server_error(s->bev, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "%s", strerror(EVUTIL_SOCKET_ERROR()));
		log_info("SSL_accept error from %s: %s", s->peer,
			 why[0] ? why : "lost connection");
		s->state = SESSION_CLOSING;
		session_free(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_info("timeout after %s from %s", s->last_verb, s->peer);
		session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->cfg->myhostname);
		session_close(s);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && s->tls) {
		char why[512];

		tls_server_error(s->bev, why, sizeof(why));
		log_info("lost connection after %s from %s: %s", s->last_verb, s->peer,
			 why[0] ? why : strerror(EVUTIL_SOCKET_ERROR()));
	} else if (what & BEV_EVENT_ERROR)
		log_info("lost connection after %s from %s: %s", s->last_verb, s->peer,
			 strerror(EVUTIL_SOCKET_ERROR()));
	else if (s->state != SESSION_COMMAND || s->t.active)
		log_info("lost connection after %s from %s", s->last_verb, s->peer);
	if (s->state == SESSION_COMMIT) {
		s->commit_gone = true;
		if (s->ss)
			sockstream_stop(s->ss);
		else
			bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	s->state = SESSION_CLOSING;
	session_free(s);
}

/* The most input held: room for a whole command line at the limit, so a full buffer holds an LF. */
static size_t session_in_high(const struct session *s)
{
	return SESSION_IN_HIGH + s->cfg->command_line_limit;
}

/* session_read - want input or not (a sockstream bounds the input it reads). */
static void session_read(struct session *s, bool on)
{
	sockstream_read_either(s->ss, s->bev, on);
}

/* ---- start ---- */

static void session_peer(struct session *s, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	memset(&ss, 0, sizeof(ss));

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, s->addr,
			  sizeof(s->addr));
	} else if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, s->addr,
			  sizeof(s->addr));
	} else {
		struct ucred cred;
		socklen_t cl = sizeof(cred);

		s->unix_client = true;
		/* Local users: the sendmail injector is trusted like Postfix's. */
		s->trusted = true;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
			snprintf(s->peer, sizeof(s->peer), "local[uid=%u]", (unsigned)cred.uid);
		else
			snprintf(s->peer, sizeof(s->peer), "local");
		return;
	}
	snprintf(s->peer, sizeof(s->peer), "unknown[%s]", s->addr);
	s->trusted = cidr_list_match(s->cfg->mynetworks, (struct sockaddr *)&ss);
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, s->local_addr,
			  sizeof(s->local_addr));
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, s->local_addr,
			  sizeof(s->local_addr));
}

/*
 * session_bev_setup - callbacks, the input bound and the timeouts, on a
 * new bufferevent too; false if out of memory.
 */
static bool session_bev_setup(struct session *s)
{
	struct timeval tv = {s->timeout, 0};

	if (s->tls) {
		bufferevent_setcb(s->bev, session_on_read, session_on_write, session_on_event, s);
		/* Room for a whole command line at the limit, so a full buffer always holds an LF. */
		bufferevent_setwatermark(s->bev, EV_READ, 0, session_in_high(s));
		bufferevent_set_timeouts(s->bev, &tv, &tv);
		bufferevent_enable(s->bev, EV_READ | EV_WRITE);
		return true;
	}
	/* In clear a sockstream does the I/O: replies leave at the end of the turn. */
	s->ss = sockstream_new(s->bev, session_in_high(s), session_on_read, session_on_write,
			       session_on_event, s);
	if (!s->ss)
		return false;
	sockstream_set_timeouts(s->ss, &tv, &tv);
	session_read(s, true);
	return true;
}

void session_start(struct session_env *env, int fd, const char *listener)
{
	struct session *s = xcalloc(1, sizeof(*s));
	bool stress = env->stress && env->stress(env->arg);
	char warn[700], err[700];

	s->env = env;
	s->cfg = env->cfg;
	s->state = SESSION_COMMAND;
	s->last_verb = "CONNECT";
	{
		/*
		 * No Nagle: a reply written in more than one piece (TLS
		 * records, session tickets then the EHLO reply) would wait
		 * for the client's delayed ACK, ~40 ms.  Fails harmlessly on
		 * a unix socket.
		 */
		int one = 1;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	snprintf(s->listener, sizeof(s->listener), "%s", listener ? listener : "");
	s->timeout = stress ? env->cfg->stress_timeout : env->cfg->timeout;
	s->error_limit = stress ? env->cfg->stress_error_limit : env->cfg->hard_error_limit;
	if (s->error_limit == 0)
		s->error_limit = 1;
	s->fd = fd;
	session_peer(s, fd);
	s->submission = smtpd_listener_in(env->cfg->submission_listeners, s->listener);
	s->wrapper = !s->unix_client &&
		     smtpd_listener_in(env->cfg->tls_wrappermode_listeners, s->listener);
	s->stage = xmalloc(SESSION_STAGE);
	log_info("connect from %s", s->peer);
	if (s->wrapper) {
		/* Implicit TLS (RFC 8314): the handshake first, then the greeting. */
		if (!session_tls_ready(s)) {
			log_warn("%s: listener %s speaks TLS only, but there is no certificate "
				 "(smtpd_tls_cert_file): connection closed",
				 s->peer, s->listener);
			s->state = SESSION_CLOSING;
			session_free(s);
			return;
		}
		s->tls = true;
		s->state = SESSION_HANDSHAKE;
		s->bev = tls_server_bev_new(env->tls, env->base, fd, warn, sizeof(warn), err,
					    sizeof(err));
		if (warn[0])
			log_warn("TLS certificate: %s", warn);
	} else {
		/* Not CLOSE_ON_FREE: STARTTLS hands the socket on to a TLS bufferevent. */
		s->bev = bufferevent_socket_new(env->base, fd, 0);
		if (!s->bev)
			snprintf(err, sizeof(err), "cannot make a bufferevent");
	}
	if (s->bev && !session_bev_setup(s))
		snprintf(err, sizeof(err), "cannot make an event");
	if (!s->bev || (!s->tls && !s->ss)) {
		log_error("cannot set up a session for %s: %s", s->peer, err);
		s->state = SESSION_CLOSING;
		session_free(s);
		return;
	}
	if (!s->wrapper)
		session_reply(s, 220, NULL, "%s", env->cfg->banner);
}
