/*
 * smtp_client - see smtp_client.h.
 *
 * A session is an explicit state (enum sess_state) plus, during a
 * transaction, the queue of commands sent and not yet answered
 * (s->pend): every reply is matched to the command at its head, so one
 * dispatcher serves lockstep and pipelined sessions alike.  Callbacks out
 * to the owner are the last thing a handler does; the owner may free the
 * session inside one, so entry points count their depth and a free
 * inside a callback is finished when the outermost handler returns
 * (objects reached from callbacks are marked, then freed by the loop).
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "common/sockstream.h"
#include "common/xalloc.h"
#include "transport/body.h"
#include "transport/smtp_client.h"

/* ---- replies ---- */

void smtp_reply_init(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
	strbuf_init(&r->text, SMTP_REPLY_MAX_BYTES);
}

void smtp_reply_reset(struct smtp_reply *r)
{
	r->code = 0;
	r->nlines = 0;
	r->done = false;
	strbuf_reset(&r->text);
}

void smtp_reply_release(struct smtp_reply *r)
{
	strbuf_release(&r->text);
}

int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len, char *err, size_t errlen)
{
	unsigned code;
	bool last;

	if (r->done) {
		snprintf(err, errlen, "reply line after the last line of a reply");
		return -1;
	}
	if (memchr(line, '\0', len)) {
		snprintf(err, errlen, "NUL byte in a reply");
		return -1;
	}
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9') {
		snprintf(err, errlen, "malformed reply line (no reply code)");
		return -1;
	}
	if (len > 3 && line[3] != ' ' && line[3] != '-') {
		snprintf(err, errlen, "malformed reply line (code not followed by space or '-')");
		return -1;
	}
	code = (unsigned)(line[0] - '0') * 100 + (unsigned)(line[1] - '0') * 10 +
	       (unsigned)(line[2] - '0');
	if (r->nlines > 0 && code != r->code) {
		snprintf(err, errlen, "reply code %u changes to %u within a multi-line reply",
			 r->code, code);
		return -1;
	}
	if (r->nlines >= SMTP_REPLY_MAX_LINES) {
		snprintf(err, errlen, "reply of more than %d lines", SMTP_REPLY_MAX_LINES);
		return -1;
	}
	last = len == 3 || line[3] == ' ';
	if ((r->nlines > 0 && strbuf_append_char(&r->text, '\n') < 0) ||
	    (len > 4 && strbuf_append(&r->text, line + 4, len - 4) < 0)) {
		snprintf(err, errlen, "reply of more than %d bytes", SMTP_REPLY_MAX_BYTES);
		return -1;
	}
	r->code = code;
	r->nlines++;
	r->done = last;
	return last ? 1 : 0;
}

/* enhanced_len - length of an enhanced code "c.sss.ddd" at s (class c), 0 if none. */
static size_t enhanced_len(const char *s, size_t len, char cls)
{
	size_t i = 0, n;

	if (len < 5 || s[0] != cls || s[1] != '.')
		return 0;
	i = 2;
	for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		n++;
	if (n < 1 || n > 3 || i >= len || s[i] != '.')
		return 0;
	i++;
	for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		n++;
	if (n < 1 || n > 3)
		return 0;
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

static size_t first_line_len(const struct smtp_reply *r)
{
	const char *t = strbuf_cstr(&r->text);
	const char *nl = strchr(t, '\n');

	return nl ? (size_t)(nl - t) : strlen(t);
}

const char *smtp_reply_enhanced(const struct smtp_reply *r, char out[SMTP_ENHANCED_MAX])
{
	const char *t = strbuf_cstr(&r->text);
	char cls = (char)('0' + (r->code / 100) % 10);
	size_t n = enhanced_len(t, first_line_len(r), cls);

	if (n > 0 && n < SMTP_ENHANCED_MAX) {
		memcpy(out, t, n);
		out[n] = '\0';
	} else {
		snprintf(out, SMTP_ENHANCED_MAX, "%c.0.0", cls >= '2' && cls <= '5' ? cls : '4');
	}
	return out;
}

/* put - append s[0..n) to out at *pos, control characters as '?', cut at outlen - 1. */
static void put(char *out, size_t outlen, size_t *pos, const char *s, size_t n)
{
	for (size_t i = 0; i < n && *pos + 1 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		out[(*pos)++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	out[*pos] = '\0';
}

char *smtp_reply_format(const struct smtp_reply *r, char *out, size_t outlen)
{
	const char *t = strbuf_cstr(&r->text), *line = t;
	char code[8], enh[SMTP_ENHANCED_MAX] = "";
	size_t pos = 0, elen;

	if (outlen == 0)
		return out;
	out[0] = '\0';
	snprintf(code, sizeof(code), "%03u", r->code);
	put(out, outlen, &pos, code, strlen(code));
	elen = enhanced_len(t, first_line_len(r), (char)('0' + (r->code / 100) % 10));
	if (elen && elen < sizeof(enh)) {
		memcpy(enh, t, elen);
		enh[elen] = '\0';
	}
	for (unsigned i = 0; i < r->nlines && line; i++) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);

		/* continuation lines repeat the enhanced code (RFC 2034): keep it once */
		if (i > 0 && elen && n >= elen && memcmp(line, enh, elen) == 0 &&
		    (n == elen || line[elen] == ' ')) {
			line += elen;
			n -= elen;
			while (n && *line == ' ') {
				line++;
				n--;
			}
		}
		if (n) {
			put(out, outlen, &pos, " ", 1);
			put(out, outlen, &pos, line, n);
		}
		line = nl ? nl + 1 : NULL;
	}
	return out;
}

/* ---- capabilities ---- */

void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps)
{
	const char *line = strbuf_cstr(&r->text);
	const char *nl;

	memset(caps, 0, sizeof(*caps));
	caps->esmtp = true;
	/* the first line is the server's name and greeting text */
	nl = strchr(line, '\n');
	while (nl) {
		char kw[32];
		size_t n = 0;
		const char *p;

		line = nl + 1;
		nl = strchr(line, '\n');
		while (*line == ' ')
			line++;
		for (p = line; *p && *p != ' ' && *p != '\n' && *p != '='; p++)
			if (n + 1 < sizeof(kw))
				kw[n++] = *p;
		kw[n] = '\0';
		if (strcasecmp(kw, "PIPELINING") == 0)
			caps->pipelining = true;
		else if (strcasecmp(kw, "8BITMIME") == 0)
			caps->eightbitmime = true;
		else if (strcasecmp(kw, "SMTPUTF8") == 0)
			caps->smtputf8 = true;
		else if (strcasecmp(kw, "DSN") == 0)
			caps->dsn = true;
		else if (strcasecmp(kw, "STARTTLS") == 0)
			caps->starttls = true;
		else if (strcasecmp(kw, "SIZE") == 0) {
			uint64_t v = 0;

			caps->size = true;
			while (*p == ' ' || *p == '=')
				p++;
			for (; *p >= '0' && *p <= '9'; p++) {
				if (v > (UINT64_MAX - 9) / 10) {
					v = 0; /* absurd: treat as no limit */
					break;
				}
				v = v * 10 + (uint64_t)(*p - '0');
			}
			caps->size_limit = v;
		}
	}
}

/* ---- commands ---- */

int smtp_xtext_append(struct strbuf *sb, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= '!' && c <= '~' && c != '+' && c != '=') {
			if (strbuf_append_char(sb, (char)c) < 0)
				return -1;
		} else {
			char e[3] = {'+', hex[c >> 4], hex[c & 15]};

			if (strbuf_append(sb, e, 3) < 0)
				return -1;
		}
	}
	return 0;
}

bool smtp_address_ok(const char *s)
{
	size_t n = 0;

	for (; s && s[n]; n++) {
		unsigned char c = (unsigned char)s[n];

		if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
			return false;
	}
	return n <= SMTP_ADDRESS_MAX;
}

bool smtp_needs_utf8(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

int smtp_build_mail(struct strbuf *sb, const struct smtp_caps *caps, const struct smtp_msg *m,
		    bool utf8)
{
	if (strbuf_printf(sb, "MAIL FROM:<%s>", m->sender ? m->sender : "") < 0)
		return -1;
	if (caps->size && strbuf_printf(sb, " SIZE=%" PRIu64, m->size) < 0)
		return -1;
	if (m->eightbit && caps->eightbitmime && strbuf_append_str(sb, " BODY=8BITMIME") < 0)
		return -1;
	if (utf8 && strbuf_append_str(sb, " SMTPUTF8") < 0)
		return -1;
	if (caps->dsn) {
		if (m->ret &&
		    (strcasecmp(m->ret, "FULL") == 0 || strcasecmp(m->ret, "HDRS") == 0) &&
		    strbuf_printf(sb, " RET=%s",
				  strcasecmp(m->ret, "FULL") == 0 ? "FULL" : "HDRS") < 0)
			return -1;
		if (m->envid && m->envid[0] &&
		    (strbuf_append_str(sb, " ENVID=") < 0 || smtp_xtext_append(sb, m->envid) < 0))
			return -1;
	}
	return strbuf_append(sb, "\r\n", 2);
}

int smtp_build_rcpt(struct strbuf *sb, const struct smtp_caps *caps, const struct smtp_rcpt *r)
{
	if (strbuf_printf(sb, "RCPT TO:<%s>", r->address) < 0)
		return -1;
	if (caps->dsn) {
		if (r->notify & SMTP_NOTIFY_NEVER) {
			if (strbuf_append_str(sb, " NOTIFY=NEVER") < 0)
				return -1;
		} else if (r->notify &
			   (SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)) {
			const char *sep = " NOTIFY=";

			if ((r->notify & SMTP_NOTIFY_SUCCESS) &&
			    strbuf_printf(sb, "%sSUCCESS", sep) < 0)
				return -1;
			if (r->notify & SMTP_NOTIFY_SUCCESS)
				sep = ",";
			if ((r->notify & SMTP_NOTIFY_FAILURE) &&
			    strbuf_printf(sb, "%sFAILURE", sep) < 0)
				return -1;
			if (r->notify & SMTP_NOTIFY_FAILURE)
				sep = ",";
			if ((r->notify & SMTP_NOTIFY_DELAY) &&
			    strbuf_printf(sb, "%sDELAY", sep) < 0)
				return -1;
		}
		if (r->orcpt && r->orcpt[0]) {
			const char *semi = strchr(r->orcpt, ';');

			if (semi) {
				if (strbuf_printf(sb, " ORCPT=%.*s;", (int)(semi - r->orcpt),
						  r->orcpt) < 0 ||
				    smtp_xtext_append(sb, semi + 1) < 0)
					return -1;
			} else if (strbuf_append_str(sb, " ORCPT=rfc822;") < 0 ||
				   smtp_xtext_append(sb, r->orcpt) < 0) {
				return -1;
			}
		} else if (r->orig_address && r->orig_address[0]) {
			if (strbuf_append_str(sb, " ORCPT=rfc822;") < 0 ||
			    smtp_xtext_append(sb, r->orig_address) < 0)
				return -1;
		}
	}
	return strbuf_append(sb, "\r\n", 2);
}

/* ---- sessions ---- */

enum sess_state {
	S_CONNECTING, /* TCP/unix connect under way */
	S_GREETING,   /* waiting for the 220 */
	S_HELLO,      /* EHLO or LHLO sent */
	S_HELO,	      /* HELO sent after a 5xx EHLO */
	S_STARTTLS,   /* STARTTLS sent */
	S_HANDSHAKE,  /* TLS handshake under way */
	S_READY,      /* open, no transaction, not parked */
	S_TXN,	      /* a transaction: commands out, replies awaited */
	S_BODY,	      /* streaming the content after 354 */
	S_IDLE,	      /* parked between transactions */
	S_QUIT,	      /* QUIT sent, engine-owned, closing */
	S_DEAD,	      /* connection broken; waiting to be freed */
};

/* Commands whose replies are awaited. */
enum cmd {
	C_GREETING,
	C_EHLO,
	C_HELO,
	C_LHLO,
	C_STARTTLS,
	C_MAIL,
	C_RCPT,
	C_DATA,
	C_DOT,
	C_RSET,
	C_QUIT
};

struct pending {
	enum cmd cmd;
	size_t idx; /* C_RCPT, LMTP C_DOT: the recipient */
};

struct smtp_session {
	struct smtp_session *next, *prev; /* the quitting list */
	struct event_base *base;
	struct smtp_client_config cfg;
	char *helo_name;
	struct smtp_peer peer;
	char relay[512];
	char name[400]; /* "host[addr]" for texts */
	struct bufferevent *bev;
	struct sockstream *ss; /* in clear, once connected: the socket's I/O */
	struct event *timer;
	struct event *kick; /* deferred completion of a transaction sent nothing */
	const char *phase;  /* "sending RCPT TO": what a timeout or EOF interrupts */
	enum sess_state state;
	struct smtp_caps caps;
	struct smtp_reply reply;
	struct smtp_error error;
	char *line; /* cfg.line_limit + 1 bytes */
	smtp_session_cb cb;
	void *arg;
	unsigned uses;
	bool clean; /* the server has no transaction open and the connection is good */
	/* the transaction */
	struct smtp_msg *m;
	struct pending *pend;
	size_t npend, pcap, phead;
	size_t next_rcpt; /* lockstep: next recipient to send */
	size_t naccepted;
	bool replied; /* a reply of this transaction was read */
	bool mail_ok, utf8, need_rset, quit_after;
	struct body_enc enc;
	/* lifecycle */
	unsigned depth;
	bool freeing;
	bool listed;	     /* on the quitting list */
	bool connect_failed; /* error already set by a failed connect() */
	/* TLS */
	bool filtered;	  /* s->bev is the OpenSSL filter (from STARTTLS's 2xx on) */
	bool tls_on;	  /* the handshake completed: s->bev is the OpenSSL filter */
	bool tls_setup;	  /* between the STARTTLS reply and READY */
	size_t discarded; /* bytes dropped behind the STARTTLS reply */
	struct tls_info tls;
};

static struct smtp_session *quitting;

static void session_really_free(struct smtp_session *s);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static void enter(struct smtp_session *s)
{
	s->depth++;
}

static void leave(struct smtp_session *s)
{
	if (--s->depth == 0 && s->freeing)
		session_really_free(s);
}

static void notify(struct smtp_session *s, enum smtp_event ev)
{
	if (s->cb && !s->freeing)
		s->cb(s->arg, s, ev);
}

/*
 * I/O.  The bufferevent connects; from then on, in clear, a sockstream
 * does the socket's I/O: commands and body leave at the end of the loop
 * turn in one write (EV_WRITE registered only for what the socket does
 * not take) and replies are read without libevent's FIONREAD before
 * every read.  Under TLS the filter does all of it.
 */
static void reading_on(struct smtp_session *s)
{
	if (s->ss)
		sockstream_read(s->ss, true);
	else if (s->filtered)
		bufferevent_enable(s->bev, EV_READ);
}

static void io_off(struct smtp_session *s)
{
	if (s->ss)
		sockstream_stop(s->ss);
	else if (s->bev)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
}

static unsigned ms_or_1(unsigned ms)
{
	return ms ? ms : 1;
}

static void timer_arm(struct smtp_session *s, unsigned ms, const char *phase)
{
	struct timeval tv;

	ms = ms_or_1(ms);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	s->phase = phase;
	evtimer_add(s->timer, &tv);
}

static void timer_stop(struct smtp_session *s)
{
	evtimer_del(s->timer);
}

static const char *cmd_phase(const struct smtp_session *s, enum cmd c)
{
	switch (c) {
	case C_GREETING:
		return "receiving the initial server greeting";
	case C_EHLO:
		return "performing the EHLO handshake";
	case C_HELO:
		return "performing the HELO handshake";
	case C_LHLO:
		return "performing the LHLO handshake";
	case C_STARTTLS:
		return "sending STARTTLS";
	case C_MAIL:
		return "sending MAIL FROM";
	case C_RCPT:
		return "sending RCPT TO";
	case C_DATA:
		return "sending DATA command";
	case C_DOT:
		return "sending end of data -- message may be sent more than once";
	case C_RSET:
		return "sending RSET";
	case C_QUIT:
		return "sending QUIT";
	}
	(void)s;
	return "talking";
}

static const char *cmd_name(enum cmd c)
{
	switch (c) {
	case C_GREETING:
		return "initial greeting";
	case C_EHLO:
		return "EHLO command";
	case C_HELO:
		return "HELO command";
	case C_LHLO:
		return "LHLO command";
	case C_STARTTLS:
		return "STARTTLS command";
	case C_MAIL:
		return "MAIL FROM command";
	case C_RCPT:
		return "RCPT TO command";
	case C_DATA:
		return "DATA command";
	case C_DOT:
		return "end of DATA command";
	case C_RSET:
		return "RSET command";
	case C_QUIT:
		return "QUIT command";
	}
	return "command";
}

static unsigned cmd_timeout(const struct smtp_session *s, enum cmd c)
{
	switch (c) {
	case C_GREETING:
	case C_EHLO:
	case C_HELO:
	case C_LHLO:
	case C_STARTTLS:
		return s->cfg.helo_ms;
	case C_MAIL:
		return s->cfg.mail_ms;
	case C_RCPT:
		return s->cfg.rcpt_ms;
	case C_DATA:
		return s->cfg.data_init_ms;
	case C_DOT:
		return s->cfg.data_done_ms;
	case C_RSET:
		return s->cfg.rset_ms;
	case C_QUIT:
		return s->cfg.quit_ms < SMTP_QUIT_WAIT_MS ? s->cfg.quit_ms : SMTP_QUIT_WAIT_MS;
	}
	return s->cfg.helo_ms;
}

/* ---- pending commands ---- */

static void pend_push(struct smtp_session *s, enum cmd c, size_t idx)
{
	if (s->phead + s->npend == s->pcap) {
		if (s->phead > 0) {
			memmove(s->pend, s->pend + s->phead, s->npend * sizeof(*s->pend));
			s->phead = 0;
		} else {
			s->pcap = s->pcap ? s->pcap * 2 : 8;
			s->pend = xrealloc(s->pend, s->pcap * sizeof(*s->pend));
		}
	}
	s->pend[s->phead + s->npend++] = (struct pending){c, idx};
}

static struct pending pend_pop(struct smtp_session *s)
{
	struct pending p = s->pend[s->phead++];

	if (--s->npend == 0)
		s->phead = 0;
	return p;
}

/* arm the timer for the command whose reply comes next */
static void pend_arm(struct smtp_session *s)
{
	if (s->npend) {
		enum cmd c = s->pend[s->phead].cmd;

		timer_arm(s, cmd_timeout(s, c), cmd_phase(s, c));
	} else {
		timer_stop(s);
	}
}

static int send_text(struct smtp_session *s, const char *data, size_t len)
{
	return bufferevent_write(s->bev, data, len);
}

static int send_cmd(struct smtp_session *s, enum cmd c, size_t idx, const char *line)
{
	pend_push(s, c, idx);
	return send_text(s, line, strlen(line));
}

/* ---- results ---- */

static void err_set(struct smtp_error *e, unsigned code, const char *enhanced, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void err_set(struct smtp_error *e, unsigned code, const char *enhanced, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	e->perm = code >= 500;
	e->tls_fallback = false;
	snprintf(e->enhanced, sizeof(e->enhanced), "%s", enhanced);
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	for (char *p = e->text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

static void rcpt_set(struct smtp_rcpt *r, enum smtp_status st, unsigned code, const char *enhanced,
		     const char *text)
{
	r->status = st;
	r->accepted = false;
	r->code = code;
	snprintf(r->enhanced, sizeof(r->enhanced), "%s", enhanced);
	snprintf(r->text, sizeof(r->text), "%s", text);
	for (char *p = r->text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

/* the current reply as a result for r: OK only for an end-of-data 2xx */
static void rcpt_from_reply(struct smtp_session *s, struct smtp_rcpt *r, enum cmd c)
{
	char one[SMTP_TEXT_MAX + 1], text[SMTP_TEXT_MAX + 1], enh[SMTP_ENHANCED_MAX];
	unsigned code = s->reply.code;

	smtp_reply_format(&s->reply, one, sizeof(one));
	smtp_reply_enhanced(&s->reply, enh);
	if (code / 100 == 2 && c == C_DOT) {
		rcpt_set(r, SMTP_OK, code, enh, one);
		r->dsn_passed = s->caps.dsn && r->notify != 0;
		return;
	}
	if (snprintf(text, sizeof(text), "%s said: %s (in reply to %s)", s->name, one,
		     cmd_name(c)) >= (int)sizeof(text))
		text[sizeof(text) - 1] = '\0'; /* cut: the text says enough */
	rcpt_set(r, code / 100 == 5 ? SMTP_PERMFAIL : SMTP_TEMPFAIL, code, enh, text);
}

/* every recipient still open (not yet a final result) gets err */
static void rcpt_fail_open(struct smtp_session *s, const struct smtp_error *e)
{
	for (size_t i = 0; s->m && i < s->m->nrcpt; i++) {
		struct smtp_rcpt *r = &s->m->rcpt[i];

		if (r->status == SMTP_PENDING)
			rcpt_set(r, e->perm ? SMTP_PERMFAIL : SMTP_TEMPFAIL, e->code, e->enhanced,
				 e->text);
	}
}

/* ---- ending things ---- */

static void txn_finish(struct smtp_session *s);

/*
 * session_broken - the connection is unusable (err filled in).  Before
 * READY: FAILED.  In a transaction: LOST if this is a reused connection
 * that has not answered anything yet, else the open recipients get err
 * and TXN_DONE.  Idle: IDLE_CLOSED.  Quitting: freed.
 */
static void session_broken(struct smtp_session *s)
{
	enum sess_state st = s->state;

	timer_stop(s);
	s->clean = false;
	s->state = S_DEAD;
	io_off(s);
	/* under may, a TLS set-up that broke down may be retried in clear */
	if (s->tls_setup && s->cfg.tls_level == TLS_LEV_MAY)
		s->error.tls_fallback = true;
	s->tls_setup = false;
	switch (st) {
	case S_CONNECTING:
	case S_GREETING:
	case S_HELLO:
	case S_HELO:
	case S_STARTTLS:
	case S_HANDSHAKE:
		notify(s, SMTP_EV_FAILED);
		break;
	case S_TXN:
	case S_BODY:
		if (s->uses > 1 && !s->replied) {
			s->m = NULL;
			notify(s, SMTP_EV_TXN_LOST);
		} else {
			rcpt_fail_open(s, &s->error);
			s->m = NULL;
			notify(s, SMTP_EV_TXN_DONE);
		}
		break;
	case S_IDLE:
	case S_READY:
		notify(s, SMTP_EV_IDLE_CLOSED);
		break;
	case S_QUIT:
		s->freeing = true;
		break;
	case S_DEAD:
		break;
	}
}

static void fail_lost(struct smtp_session *s, const char *why)
{
	const char *phase = s->phase ? s->phase : "talking";

	if (why && why[0])
		err_set(&s->error, 0, "4.4.2", "lost connection with %s while %s: %s", s->name,
			phase, why);
	else
		err_set(&s->error, 0, "4.4.2", "lost connection with %s while %s", s->name, phase);
	session_broken(s);
}

static void fail_protocol(struct smtp_session *s, const char *why)
{
	err_set(&s->error, 0, "4.5.0", "protocol error with %s while %s: %s", s->name,
		s->phase ? s->phase : "talking", why);
	session_broken(s);
}

/* the transaction's commands are all answered: RSET if needed, then TXN_DONE */
static void txn_finish(struct smtp_session *s)
{
	if (s->need_rset && s->state == S_TXN) {
		s->need_rset = false;
		s->clean = false;
		if (send_cmd(s, C_RSET, 0, "RSET\r\n") < 0) {
			fail_lost(s, "cannot write");
			return;
		}
		pend_arm(s);
		return;
	}
	timer_stop(s);
	s->m = NULL;
	if (s->state == S_TXN)
		s->state = S_READY;
	notify(s, SMTP_EV_TXN_DONE);
}

/* ---- the body ---- */

static void body_more(struct smtp_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char err[256];
	int r;

	if (evbuffer_get_length(out) >= SMTP_BODY_CHUNK)
		return;
	r = body_pump(s->m->content, &s->enc, out, SMTP_BODY_CHUNK, err, sizeof(err));
	if (r < 0) {
		/* never end a partial message with "." (the connection is dropped) */
		err_set(&s->error, 0, "4.3.0", "cannot read the queued message: %s", err);
		session_broken(s);
		return;
	}
	if (r == 0 && body_enc_finish(&s->enc, out) < 0) {
		err_set(&s->error, 0, "4.3.0", "out of memory finishing the message");
		session_broken(s);
		return;
	}
	timer_arm(s, s->cfg.data_xfer_ms, "sending message body");
	if (r > 0) {
		/*
		 * More to come.  Queued output calls write_cb when it drains
		 * below the low-water mark; a chunk the socket took whole
		 * leaves nothing queued, so the next one is asked for from the
		 * loop (other sessions get their turn in between).
		 */
		if (evbuffer_get_length(out) == 0)
			bufferevent_trigger(s->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
		return;
	}
	s->state = S_TXN;
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
	if (s->cfg.lmtp) {
		for (size_t i = 0; i < s->m->nrcpt; i++)
			if (s->m->rcpt[i].accepted)
				pend_push(s, C_DOT, i);
	} else {
		pend_push(s, C_DOT, SIZE_MAX);
	}
	pend_arm(s);
}

static void body_start(struct smtp_session *s)
{
	body_enc_init(&s->enc, BODY_SMTP);
	s->state = S_BODY;
	bufferevent_setwatermark(s->bev, EV_WRITE, SMTP_BODY_CHUNK, 0);
	body_more(s);
}

/* ---- the transaction's replies ---- */

static void send_next_rcpt(struct smtp_session *s);

/* lockstep: after the last RCPT reply, DATA or (nobody accepted) RSET */
static void lockstep_after_rcpts(struct smtp_session *s)
{
	if (s->naccepted > 0) {
		if (send_cmd(s, C_DATA, 0, "DATA\r\n") < 0) {
			fail_lost(s, "cannot write");
			return;
		}
		pend_arm(s);
	} else {
		s->need_rset = true;
		txn_finish(s);
	}
}

static void send_next_rcpt(struct smtp_session *s)
{
	struct strbuf sb;

	while (s->next_rcpt < s->m->nrcpt && s->m->rcpt[s->next_rcpt].status != SMTP_PENDING)
		s->next_rcpt++;
	if (s->next_rcpt >= s->m->nrcpt) {
		lockstep_after_rcpts(s);
		return;
	}
	strbuf_init(&sb, 0);
	smtp_build_rcpt(&sb, &s->caps, &s->m->rcpt[s->next_rcpt]);
	pend_push(s, C_RCPT, s->next_rcpt);
	s->next_rcpt++;
	if (send_text(s, sb.data, sb.len) < 0) {
		strbuf_release(&sb);
		fail_lost(s, "cannot write");
		return;
	}
	strbuf_release(&sb);
	pend_arm(s);
}

static void txn_reply(struct smtp_session *s)
{
	struct pending p;
	unsigned code = s->reply.code;
	bool pipelined;

	if (s->npend == 0) {
		fail_protocol(s, "reply without a command");
		return;
	}
	p = pend_pop(s);
	pipelined = s->caps.pipelining;
	/* a reused connection the server has closed in the meantime */
	if (!s->replied && code == 421 && s->uses > 1) {
		s->clean = false;
		s->state = S_DEAD;
		timer_stop(s);
		io_off(s);
		s->m = NULL;
		notify(s, SMTP_EV_TXN_LOST);
		return;
	}
	s->replied = true;
	if (code == 421) {
		/* the server is closing: this reply for everyone still open */
		char one[SMTP_TEXT_MAX + 1], enh[SMTP_ENHANCED_MAX];

		smtp_reply_format(&s->reply, one, sizeof(one));
		err_set(&s->error, code, smtp_reply_enhanced(&s->reply, enh),
			"%s said: %s (in reply to %s)", s->name, one, cmd_name(p.cmd));
		s->error.perm = false;
		session_broken(s);
		return;
	}
	switch (p.cmd) {
	case C_MAIL:
		if (code / 100 == 2) {
			s->mail_ok = true;
			if (!pipelined)
				send_next_rcpt(s);
		} else {
			for (size_t i = 0; i < s->m->nrcpt; i++)
				if (s->m->rcpt[i].status == SMTP_PENDING)
					rcpt_from_reply(s, &s->m->rcpt[i], C_MAIL);
		}
		break;
	case C_RCPT:
		if (s->mail_ok && s->m->rcpt[p.idx].status == SMTP_PENDING) {
			if (code / 100 == 2) {
				s->m->rcpt[p.idx].accepted = true;
				s->naccepted++;
			} else {
				rcpt_from_reply(s, &s->m->rcpt[p.idx], C_RCPT);
			}
		}
		if (!pipelined)
			send_next_rcpt(s);
		break;
	case C_DATA:
		if (code == 354) {
			if (s->naccepted == 0) {
				/* DATA accepted with no recipient: do not send an empty message */
				fail_protocol(s, "354 to DATA although no recipient was accepted");
				return;
			}
			body_start(s);
			return;
		}
		for (size_t i = 0; i < s->m->nrcpt; i++)
			if (s->m->rcpt[i].accepted)
				rcpt_from_reply(s, &s->m->rcpt[i], C_DATA);
		/* MAIL was taken: the transaction is open on the server */
		s->need_rset = s->mail_ok;
		break;
	case C_DOT:
		if (p.idx == SIZE_MAX) {
			for (size_t i = 0; i < s->m->nrcpt; i++)
				if (s->m->rcpt[i].accepted)
					rcpt_from_reply(s, &s->m->rcpt[i], C_DOT);
		} else if (p.idx < s->m->nrcpt) {
			rcpt_from_reply(s, &s->m->rcpt[p.idx], C_DOT);
		}
		if (s->npend == 0)
			s->clean = true;
		break;
	case C_RSET:
		s->clean = code / 100 == 2;
		if (!s->clean) {
			timer_stop(s);
			s->m = NULL;
			s->state = S_READY;
			notify(s, SMTP_EV_TXN_DONE);
			return;
		}
		break;
	default:
		fail_protocol(s, "unexpected reply");
		return;
	}
	if (s->freeing || s->state != S_TXN)
		return;
	if (s->npend > 0) {
		pend_arm(s);
		return;
	}
	if (!s->mail_ok)
		s->clean = true; /* MAIL refused: no transaction is open */
	txn_finish(s);
}

/* ---- session set-up replies ---- */

static void hello_send(struct smtp_session *s, enum cmd c)
{
	char line[600];

	snprintf(line, sizeof(line), "%s %s\r\n",
		 c == C_LHLO   ? "LHLO"
		 : c == C_EHLO ? "EHLO"
			       : "HELO",
		 s->helo_name);
	s->state = c == C_HELO ? S_HELO : S_HELLO;
	if (send_cmd(s, c, 0, line) < 0) {
		fail_lost(s, "cannot write");
		return;
	}
	pend_arm(s);
}

static void setup_refused(struct smtp_session *s, enum cmd c)
{
	char one[SMTP_TEXT_MAX + 1], enh[SMTP_ENHANCED_MAX];

	smtp_reply_format(&s->reply, one, sizeof(one));
	smtp_reply_enhanced(&s->reply, enh);
	if (c == C_GREETING)
		err_set(&s->error, s->reply.code, enh, "host %s refused to talk to me: %s", s->name,
			one);
	else
		err_set(&s->error, s->reply.code, enh, "host %s said: %s (in reply to %s)", s->name,
			one, cmd_name(c));
	s->tls_setup = false; /* the server's answer, not a TLS failure */
	session_broken(s);
}

static void session_ready(struct smtp_session *s)
{
	timer_stop(s);
	s->tls_setup = false;
	s->state = S_READY;
	s->clean = true;
	notify(s, SMTP_EV_READY);
}

static bool tls_wanted(const struct smtp_session *s)
{
	return s->cfg.tls && !s->cfg.lmtp && s->cfg.tls_level != TLS_LEV_NONE;
}

/*
 * starttls_next - after the EHLO/HELO: STARTTLS if it is wanted and
 * offered, a failure if TLS is required and cannot be had; false when
 * the session goes on in clear (or is already in TLS).
 */
static bool starttls_next(struct smtp_session *s)
{
	if (!tls_wanted(s) || s->tls_on)
		return false;
	if (s->caps.starttls) {
		s->state = S_STARTTLS;
		if (send_cmd(s, C_STARTTLS, 0, "STARTTLS\r\n") < 0)
			fail_lost(s, "cannot write");
		else
			pend_arm(s);
		return true;
	}
	if (tls_level_required(s->cfg.tls_level)) {
		err_set(&s->error, 0, "4.7.4", "TLS is required, but was not offered by host %s",
			s->name);
		session_broken(s);
		return true;
	}
	return false;
}

/*
 * starttls_begin - the server said 220 to STARTTLS: the handshake, as a
 * filter over the connection's bufferevent.
 */
static void starttls_begin(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct bufferevent *fbev;
	char err[300];
	SSL *ssl;

	/*
	 * Whatever the server sent behind its reply was sent before any
	 * TLS: an honest server sends nothing until our ClientHello.  Those
	 * bytes are dropped unread (CVE-2011-0411: parsed after the
	 * handshake they would pass for the encrypted EHLO reply).  Dropped
	 * rather than failing the session: under may a failure falls back
	 * to clear, so failing would let a man in the middle turn a byte of
	 * injection into a downgrade; dropping them costs nothing, and a
	 * server that meant them as TLS records fails the handshake anyway.
	 * Bytes that arrive later belong to the TLS layer, which takes only
	 * authenticated records.
	 */
	s->discarded = evbuffer_get_length(in);
	if (s->discarded)
		evbuffer_drain(in, s->discarded);
	s->tls_setup = true;
	/* from here on every byte goes through the filter, which reads the socket bufferevent */
	s->filtered = true;
	sockstream_free(&s->ss);
	ssl = tls_client_ssl(s->cfg.tls, s->cfg.tls_level, s->peer.port ? s->peer.host : "", err,
			     sizeof(err));
	if (!ssl) {
		err_set(&s->error, 0, "4.7.5", "Cannot start TLS: %s", err);
		session_broken(s);
		return;
	}
	/*
	 * The filter takes the socket bufferevent over (its callbacks, its
	 * read high-water mark); what it writes to the socket is held under
	 * a high-water mark, so a slow server cannot make the body pile up
	 * in memory below the filter.
	 */
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, SMTP_BODY_CHUNK);
	fbev = bufferevent_openssl_filter_new(s->base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
					      BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!fbev)
		abort(); /* out of memory (the socket bufferevent's fate is unknown): xalloc's policy */
	s->bev = fbev;
	bufferevent_openssl_set_allow_dirty_shutdown(fbev, 1);
	bufferevent_setcb(fbev, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(fbev, EV_READ, 0, s->cfg.line_limit + 1024);
	bufferevent_enable(fbev, EV_READ | EV_WRITE);
	s->state = S_HANDSHAKE;
	timer_arm(s, s->cfg.starttls_ms, "performing the TLS handshake");
}

/* starttls_done - the handshake completed: check the certificate, EHLO again */
static void starttls_done(struct smtp_session *s)
{
	tls_client_info(bufferevent_openssl_get_ssl(s->bev), s->cfg.tls_level == TLS_LEV_VERIFY,
			&s->tls);
	s->tls_on = true;
	if (s->cfg.tls_level == TLS_LEV_VERIFY && s->tls.trust != TLS_VERIFIED) {
		err_set(&s->error, 0, "4.7.5", "Server certificate not verified: %s (host %s)",
			s->tls.verify_error[0] ? s->tls.verify_error : "not trusted", s->name);
		session_broken(s);
		return;
	}
	/* RFC 3207 4.2: forget everything learnt before the handshake */
	memset(&s->caps, 0, sizeof(s->caps));
	hello_send(s, s->cfg.lmtp ? C_LHLO : C_EHLO);
}

/* starttls_failed - the handshake ended in an error or EOF */
static void starttls_failed(struct smtp_session *s, short what)
{
	char why[200] = "", one[200];
	unsigned long e;

	while ((e = bufferevent_get_openssl_error(s->bev)) != 0) {
		/* the queue pops the newest first; keep the oldest, the cause */
		tls_client_error_text(e, one, sizeof(one));
		snprintf(why, sizeof(why), "%s", one);
	}
	if (!why[0]) {
		int err = EVUTIL_SOCKET_ERROR();

		snprintf(why, sizeof(why), "%s",
			 (what & BEV_EVENT_EOF) || !err ? "lost connection" : strerror(err));
	}
	err_set(&s->error, 0, "4.7.5", "Cannot start TLS: handshake failure with %s: %s", s->name,
		why);
	session_broken(s);
}

static void starttls_reply(struct smtp_session *s)
{
	char one[SMTP_TEXT_MAX + 1];

	if (s->reply.code / 100 == 2) {
		starttls_begin(s);
		return;
	}
	if (s->reply.code == 421) {
		/* the server is closing, whatever the level: this address failed */
		setup_refused(s, C_STARTTLS);
		return;
	}
	if (tls_level_required(s->cfg.tls_level)) {
		smtp_reply_format(&s->reply, one, sizeof(one));
		err_set(&s->error, 0, "4.7.4", "TLS is required, but host %s refused to start TLS: %s",
			s->name, one);
		session_broken(s);
		return;
	}
	/* may: on in clear, as after an EHLO without STARTTLS */
	s->caps.starttls = false;
	session_ready(s);
}

static void setup_reply(struct smtp_session *s)
{
	struct pending p;
	unsigned code = s->reply.code;

	if (s->npend == 0) {
		fail_protocol(s, "reply without a command");
		return;
	}
	p = pend_pop(s);
	switch (p.cmd) {
	case C_GREETING:
		if (code / 100 != 2) {
			setup_refused(s, C_GREETING);
			return;
		}
		hello_send(s, s->cfg.lmtp ? C_LHLO : C_EHLO);
		return;
	case C_EHLO:
	case C_LHLO:
		if (code / 100 == 2) {
			smtp_caps_parse(&s->reply, &s->caps);
			break;
		}
		if (p.cmd == C_EHLO && code / 100 == 5) {
			hello_send(s, C_HELO);
			return;
		}
		setup_refused(s, p.cmd);
		return;
	case C_HELO:
		if (code / 100 != 2) {
			setup_refused(s, C_HELO);
			return;
		}
		memset(&s->caps, 0, sizeof(s->caps));
		break;
	case C_STARTTLS:
		starttls_reply(s);
		return;
	default:
		fail_protocol(s, "unexpected reply");
		return;
	}
	if (starttls_next(s))
		return;
	session_ready(s);
}

static void quit_reply(struct smtp_session *s)
{
	s->freeing = true;
}

/* ---- libevent callbacks ---- */

static void on_reply(struct smtp_session *s)
{
	switch (s->state) {
	case S_GREETING:
	case S_HELLO:
	case S_HELO:
	case S_STARTTLS:
		setup_reply(s);
		break;
	case S_TXN:
		txn_reply(s);
		break;
	case S_BODY:
		/* a reply while we send the body: the server gave up early */
		fail_protocol(s, "reply while the message body was being sent");
		break;
	case S_QUIT:
		quit_reply(s);
		break;
	case S_IDLE:
	case S_READY:
		err_set(&s->error, s->reply.code, "4.4.2", "%s spoke while idle", s->name);
		session_broken(s);
		break;
	default:
		break;
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char err[256];

	enter(s);
	/* bev != s->bev: STARTTLS replaced the socket bufferevent by the TLS filter */
	while (!s->freeing && s->state != S_DEAD && bev == s->bev) {
		size_t eol = 0, n;
		struct evbuffer_ptr ptr;
		int r;

		if (s->state == S_IDLE || s->state == S_READY) {
			if (evbuffer_get_length(in) == 0)
				break;
			/* anything now is a 421 at best: the connection is not reusable */
			evbuffer_drain(in, evbuffer_get_length(in));
			err_set(&s->error, 0, "4.4.2", "%s spoke while idle", s->name);
			session_broken(s);
			break;
		}
		ptr = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_CRLF);
		if (ptr.pos < 0) {
			if (evbuffer_get_length(in) > s->cfg.line_limit)
				fail_protocol(s, "reply line too long");
			break;
		}
		n = (size_t)ptr.pos;
		if (n > s->cfg.line_limit) {
			fail_protocol(s, "reply line too long");
			break;
		}
		evbuffer_remove(in, s->line, n);
		evbuffer_drain(in, eol);
		s->line[n] = '\0';
		r = smtp_reply_feed(&s->reply, s->line, n, err, sizeof(err));
		if (r < 0) {
			fail_protocol(s, err);
			break;
		}
		if (r == 0)
			continue;
		on_reply(s);
		smtp_reply_reset(&s->reply);
	}
	leave(s);
}

/* sock_stream - connected in clear: a sockstream takes the socket's I/O over; -1 out of memory */
static int sock_stream(struct smtp_session *s)
{
	s->ss = sockstream_new(s->bev, s->cfg.line_limit + 1024, read_cb, write_cb, event_cb, s);
	if (!s->ss)
		return -1;
	sockstream_read(s->ss, true);
	return 0;
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	(void)bev;
	enter(s);
	if (s->state == S_BODY)
		body_more(s);
	leave(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	char why[256] = "";

	enter(s);
	if (bev != s->bev) {
		/* an event of the socket bufferevent the TLS filter replaced */
	} else if (what & BEV_EVENT_CONNECTED) {
		if (s->state == S_CONNECTING && sock_stream(s) < 0) {
			err_set(&s->error, 0, "4.4.1", "connect to %s: out of memory", s->relay);
			session_broken(s);
		} else if (s->state == S_CONNECTING) {
			s->state = S_GREETING;
			pend_push(s, C_GREETING, 0);
			pend_arm(s);
		} else if (s->state == S_HANDSHAKE) {
			starttls_done(s);
		}
	} else if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && s->state == S_HANDSHAKE) {
		starttls_failed(s, what);
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		int e = EVUTIL_SOCKET_ERROR();

		if ((what & BEV_EVENT_ERROR) && e)
			snprintf(why, sizeof(why), "%s", strerror(e));
		if (s->tls_on) {
			/* a TLS error says more than errno (often 0 then) */
			unsigned long te;

			while ((te = bufferevent_get_openssl_error(s->bev)) != 0)
				tls_client_error_text(te, why, sizeof(why));
		}
		if (s->state == S_CONNECTING) {
			if (s->peer.port)
				err_set(&s->error, 0, "4.4.1", "connect to %s:%u: %s", s->name,
					s->peer.port, why[0] ? why : "Connection failed");
			else
				err_set(&s->error, 0, "4.4.1", "connect to %s: %s", s->name,
					why[0] ? why : "Connection failed");
			session_broken(s);
		} else if (s->state == S_QUIT) {
			s->freeing = true;
		} else if (s->state == S_IDLE || s->state == S_READY) {
			err_set(&s->error, 0, "4.4.2", "%s closed the idle connection", s->name);
			session_broken(s);
		} else if (s->state != S_DEAD) {
			fail_lost(s, why);
		}
	}
	leave(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	enter(s);
	if (s->state == S_CONNECTING && s->connect_failed) {
		session_broken(s);
	} else if (s->state == S_CONNECTING) {
		if (s->peer.port)
			err_set(&s->error, 0, "4.4.1", "connect to %s:%u: Connection timed out",
				s->name, s->peer.port);
		else
			err_set(&s->error, 0, "4.4.1", "connect to %s: Connection timed out",
				s->name);
		session_broken(s);
	} else if (s->state == S_QUIT) {
		s->freeing = true;
	} else if (s->state != S_DEAD && s->state != S_IDLE && s->state != S_READY) {
		err_set(&s->error, 0, "4.4.2", "conversation with %s timed out while %s", s->name,
			s->phase ? s->phase : "talking");
		session_broken(s);
	}
	leave(s);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	enter(s);
	if (s->state == S_TXN && s->npend == 0)
		txn_finish(s);
	leave(s);
}

/* ---- the public side ---- */

struct smtp_session *smtp_session_new(struct event_base *base, const struct smtp_client_config *cfg,
				      const struct smtp_peer *peer, smtp_session_cb cb, void *arg,
				      char *err, size_t errlen)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->cfg = *cfg;
	if (s->cfg.line_limit < 512)
		s->cfg.line_limit = 512;
	s->helo_name = xstrdup(cfg->helo_name && cfg->helo_name[0] ? cfg->helo_name : "localhost");
	s->cfg.helo_name = s->helo_name;
	s->peer = *peer;
	if (peer->port) {
		snprintf(s->name, sizeof(s->name), "%s[%s]", peer->host, peer->addr);
		snprintf(s->relay, sizeof(s->relay), "%s:%u", s->name, peer->port);
	} else {
		snprintf(s->name, sizeof(s->name), "%s[%s]", peer->host, peer->addr);
		snprintf(s->relay, sizeof(s->relay), "%s", s->name);
	}
	s->cb = cb;
	s->arg = arg;
	s->line = xmalloc(s->cfg.line_limit + 1);
	smtp_reply_init(&s->reply);
	s->timer = evtimer_new(base, timer_cb, s);
	s->kick = event_new(base, -1, 0, kick_cb, s);
	s->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!s->timer || !s->kick || !s->bev) {
		snprintf(err, errlen, "cannot make a socket for %s: out of memory", s->relay);
		session_really_free(s);
		return NULL;
	}
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	/* bounded input: a line longer than the limit is an error, never buffered whole */
	bufferevent_setwatermark(s->bev, EV_READ, 0, s->cfg.line_limit + 1024);
	/* the bufferevent connects; then a sockstream does the I/O (see sock_stream) */
	bufferevent_enable(s->bev, EV_WRITE);
	s->state = S_CONNECTING;
	s->phase = "connecting";
	timer_arm(s, s->cfg.connect_ms, "connecting");
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&s->peer.ss, (int)s->peer.len) <
	    0) {
		/*
		 * An immediate failure (no socket, unreachable): report it
		 * from the loop like any other connect failure, so callers
		 * see one path.
		 */
		int e = EVUTIL_SOCKET_ERROR();

		err_set(&s->error, 0, "4.4.1", "connect to %s: %s", s->relay,
			e ? strerror(e) : "Connection failed");
		s->connect_failed = true;
		timer_arm(s, 1, "connecting");
	} else if (s->peer.ss.ss_family == AF_INET || s->peer.ss.ss_family == AF_INET6) {
		/*
		 * No Nagle: a command, a TLS record or the message end is
		 * written whole and waits for its reply; held back for the
		 * server's delayed ACK it would cost ~40 ms.
		 */
		int one = 1;

		(void)setsockopt(bufferevent_getfd(s->bev), IPPROTO_TCP, TCP_NODELAY, &one,
				 sizeof(one));
	}
	return s;
}

int smtp_session_start(struct smtp_session *s, struct smtp_msg *m, smtp_session_cb cb, void *arg,
		       char *err, size_t errlen)
{
	bool utf8 = false, all_utf8 = false;
	size_t active = 0;
	char text[SMTP_TEXT_MAX + 1];

	if ((s->state != S_READY && s->state != S_IDLE) || !s->clean || s->freeing) {
		snprintf(err, errlen, "session to %s is not ready for a transaction", s->relay);
		return -1;
	}
	s->cb = cb;
	s->arg = arg;
	s->m = m;
	s->uses++;
	s->replied = false;
	s->mail_ok = false;
	s->need_rset = false;
	s->naccepted = 0;
	s->next_rcpt = 0;
	s->npend = s->phead = 0;
	s->state = S_TXN;
	for (size_t i = 0; i < m->nrcpt; i++) {
		struct smtp_rcpt *r = &m->rcpt[i];

		r->status = SMTP_PENDING;
		r->accepted = false;
		r->dsn_passed = false;
		r->code = 0;
		r->enhanced[0] = r->text[0] = '\0';
	}

	/* refusals decided here, without sending anything */
	for (size_t i = 0; i < m->nrcpt; i++)
		if (!smtp_address_ok(m->sender))
			rcpt_set(&m->rcpt[i], SMTP_PERMFAIL, 0, "5.1.7",
				 "bad sender address syntax");
		else if (!smtp_address_ok(m->rcpt[i].address) || !m->rcpt[i].address[0])
			rcpt_set(&m->rcpt[i], SMTP_PERMFAIL, 0, "5.1.3",
				 "bad recipient address syntax");
	if (s->caps.size && s->caps.size_limit && m->size > s->caps.size_limit) {
		snprintf(text, sizeof(text),
			 "message size %" PRIu64 " exceeds size limit %" PRIu64 " of server %s",
			 m->size, s->caps.size_limit, s->name);
		for (size_t i = 0; i < m->nrcpt; i++)
			rcpt_set(&m->rcpt[i], SMTP_PERMFAIL, 0, "5.3.4", text);
	}
	all_utf8 = m->smtputf8 || smtp_needs_utf8(m->sender);
	for (size_t i = 0; i < m->nrcpt; i++) {
		struct smtp_rcpt *r = &m->rcpt[i];
		bool need = all_utf8 || smtp_needs_utf8(r->address);

		if (r->status != SMTP_PENDING || !need)
			continue;
		if (s->caps.smtputf8) {
			utf8 = true;
			continue;
		}
		snprintf(text, sizeof(text), "SMTPUTF8 is required, but was not offered by host %s",
			 s->name);
		rcpt_set(r, SMTP_PERMFAIL, 0, "5.6.7", text);
	}
	s->utf8 = utf8;
	for (size_t i = 0; i < m->nrcpt; i++)
		if (m->rcpt[i].status == SMTP_PENDING)
			active++;
	if (active == 0) {
		/* nothing to say to the server: the session stays clean */
		event_active(s->kick, EV_TIMEOUT, 1);
		return 0;
	}

	{
		struct strbuf sb;

		strbuf_init(&sb, 0);
		smtp_build_mail(&sb, &s->caps, m, utf8);
		pend_push(s, C_MAIL, 0);
		if (s->caps.pipelining) {
			for (size_t i = 0; i < m->nrcpt; i++) {
				if (m->rcpt[i].status != SMTP_PENDING)
					continue;
				smtp_build_rcpt(&sb, &s->caps, &m->rcpt[i]);
				pend_push(s, C_RCPT, i);
			}
			strbuf_append(&sb, "DATA\r\n", 6);
			pend_push(s, C_DATA, 0);
		}
		s->clean = false;
		if (send_text(s, sb.data, sb.len) < 0) {
			strbuf_release(&sb);
			snprintf(err, errlen, "cannot write to %s", s->relay);
			return -1;
		}
		strbuf_release(&sb);
	}
	reading_on(s);
	pend_arm(s);
	return 0;
}

void smtp_session_idle(struct smtp_session *s, smtp_session_cb cb, void *arg)
{
	s->cb = cb;
	s->arg = arg;
	s->state = S_IDLE;
	timer_stop(s);
	reading_on(s);
	/* bytes may be waiting already (a 421 sent right after the reply) */
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0)
		bufferevent_trigger(s->bev, EV_READ,
				    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

bool smtp_session_reusable(const struct smtp_session *s)
{
	return s->clean && (s->state == S_READY || s->state == S_IDLE) && !s->freeing;
}

unsigned smtp_session_uses(const struct smtp_session *s)
{
	return s->uses;
}

const char *smtp_session_relay(const struct smtp_session *s)
{
	return s->relay;
}

const struct smtp_peer *smtp_session_peer(const struct smtp_session *s)
{
	return &s->peer;
}

const struct smtp_caps *smtp_session_caps(const struct smtp_session *s)
{
	return &s->caps;
}

const struct smtp_error *smtp_session_error(const struct smtp_session *s)
{
	return &s->error;
}

const struct tls_info *smtp_session_tls(const struct smtp_session *s)
{
	return s->tls_on ? &s->tls : NULL;
}

size_t smtp_session_tls_discarded(const struct smtp_session *s)
{
	return s->discarded;
}

enum tls_level smtp_session_tls_level(const struct smtp_session *s)
{
	return tls_wanted(s) ? s->cfg.tls_level : TLS_LEV_NONE;
}

static void session_really_free(struct smtp_session *s)
{
	if (s->listed) {
		s->listed = false;
		if (s->prev)
			s->prev->next = s->next;
		else if (quitting == s)
			quitting = s->next;
		if (s->next)
			s->next->prev = s->prev;
	}
	sockstream_free(&s->ss);
	if (s->bev)
		bufferevent_free(s->bev);
	if (s->timer)
		event_free(s->timer);
	if (s->kick)
		event_free(s->kick);
	smtp_reply_release(&s->reply);
	free(s->pend);
	free(s->line);
	free(s->helo_name);
	free(s);
}

void smtp_session_free(struct smtp_session **sp)
{
	struct smtp_session *s = sp ? *sp : NULL;

	if (!s)
		return;
	*sp = NULL;
	s->cb = NULL;
	if (s->depth > 0) {
		s->freeing = true;
		io_off(s);
		timer_stop(s);
		return;
	}
	session_really_free(s);
}

void smtp_session_quit(struct smtp_session **sp)
{
	struct smtp_session *s = sp ? *sp : NULL;

	if (!s)
		return;
	*sp = NULL;
	if (!smtp_session_reusable(s)) {
		smtp_session_free(&s);
		return;
	}
	s->cb = NULL;
	s->state = S_QUIT;
	s->npend = s->phead = 0;
	if (send_cmd(s, C_QUIT, 0, "QUIT\r\n") < 0) {
		smtp_session_free(&s);
		return;
	}
	reading_on(s);
	pend_arm(s);
	s->listed = true;
	s->next = quitting;
	s->prev = NULL;
	if (quitting)
		quitting->prev = s;
	quitting = s;
}

void smtp_client_shutdown(void)
{
	while (quitting) {
		struct smtp_session *s = quitting;

		quitting = s->next;
		s->next = s->prev = NULL;
		s->listed = false;
		/*
		 * best effort: the QUIT still buffered goes out before the
		 * close (under TLS the filter has already moved it, encrypted,
		 * into the socket bufferevent below)
		 */
		if (s->bev) {
			struct bufferevent *sock = bufferevent_get_underlying(s->bev);

			if (!sock)
				sock = s->bev;
			if (bufferevent_getfd(sock) >= 0)
				evbuffer_write(bufferevent_get_output(sock), bufferevent_getfd(sock));
		}
		s->state = S_DEAD;
		if (s->depth > 0)
			s->freeing = true;
		else
			session_really_free(s);
	}
}
