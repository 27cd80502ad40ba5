/*
 * smtp_client - the SMTP and LMTP client protocol engine: one struct
 * smtp_session per connection to a mail server, one transaction
 * (MAIL, RCPT..., DATA, body) at a time on it, driven by the caller's
 * libevent loop.
 *
 * Two layers:
 *   - pure helpers, unit-tested alone: the reply parser (multi-line
 *     replies, RFC 2034 enhanced codes, bounded), EHLO capability
 *     parsing, xtext (RFC 3461) and the MAIL/RCPT command builders;
 *   - the session: connect, greeting, EHLO (HELO fallback on a 5xx EHLO)
 *     or LHLO, then transactions.  With PIPELINING (RFC 2920) MAIL, every
 *     RCPT and DATA go out in one write and the replies are matched in
 *     order; without it, command by command.  The body is streamed from
 *     the queue (body_pump, BODY_SMTP) as the socket drains: the output
 *     buffer never holds more than about SMTP_BODY_CHUNK * 2 bytes, the
 *     input at most smtp_line_length_limit plus a little (read high-water
 *     mark), a reply at most SMTP_REPLY_MAX_LINES lines and
 *     SMTP_REPLY_MAX_BYTES bytes.  Every wait for a reply has the
 *     phase's timeout (Postfix names: connect, helo, mail, rcpt,
 *     data_init, data_xfer per write progress, data_done, rset, quit).
 *     In clear, whatever is written while nothing is queued goes to
 *     the socket at once (non-blocking): a server that keeps up costs
 *     one write per command group and per body chunk (a small message
 *     and its final dot: one), with no EV_WRITE registration; what the
 *     socket does not take waits in the bufferevent, in order.  Replies
 *     are read with one recv each (no FIONREAD before it).
 *
 * Per transaction the caller gives a struct smtp_msg (envelope, recipients,
 * the content reader) and gets every recipient's result filled in:
 *   - refused locally without sending: message larger than the server's
 *     SIZE (5.3.4), SMTPUTF8 needed but not offered (5.6.7: all recipients
 *     when the sender or the envelope needs it, else the non-ASCII ones);
 *   - the RCPT reply when it is not 2xx (4xx TEMPFAIL, 5xx PERMFAIL);
 *   - for accepted recipients, the DATA reply when not 354, else the
 *     reply to the end of data (LMTP: one reply per accepted recipient,
 *     in RCPT order, RFC 2033);
 *   - when the MAIL reply is not 2xx: that reply for all;
 *   - a session failure (timeout, lost connection, malformed reply, a 421
 *     reply) mid-transaction: TEMPFAIL 4.4.2 (4.4.2/the 421's code) with
 *     "conversation with H[A] timed out while sending RCPT TO" etc. for
 *     every recipient still without a result.
 * Result texts are Postfix's: "H[A] said: 550 5.1.1 <x>: user unknown
 * (in reply to RCPT TO command)", sanitised (control characters '?').
 *
 * Connection reuse: a transaction that ends with the server in a clean
 * state (end-of-data reply read; or no transaction open; or RSET
 * answered 250 after a transaction that could not complete) leaves the
 * session reusable.  The next MAIL is sent without an RSET (like
 * Postfix).  A reused session whose connection turns out dead before
 * the first reply of the next transaction (EOF, reset, a 421 to MAIL)
 * reports SMTP_EV_TXN_LOST with no results: nothing was delivered and
 * the caller retries on a fresh connection.  An idle session (between
 * transactions, smtp_session_idle) watches its socket: EOF or any bytes
 * from the server report SMTP_EV_IDLE_CLOSED.
 *
 * STARTTLS (RFC 3207; SMTP only, when the config has a TLS context and
 * a level above none): after the EHLO, when the server offers STARTTLS,
 * the engine sends it; on a 2xx reply it drops whatever the server sent
 * behind that reply (plaintext injection, CVE-2011-0411: those bytes are
 * never parsed), runs the TLS handshake over the connection (libevent's
 * OpenSSL filter), checks the certificate (verify), forgets the
 * capabilities and sends EHLO again; READY comes after that EHLO.  A
 * refused STARTTLS (non-2xx) continues in clear under may.  Under
 * encrypt or verify nothing is ever sent in clear after the EHLO: no
 * STARTTLS offered, STARTTLS refused (4.7.4), a failed handshake or an
 * unverified certificate (4.7.5) end the session with FAILED.  Under may
 * a failure between the STARTTLS reply and the end of the second EHLO
 * (handshake, its timeout, a connection lost) sets
 * smtp_error.tls_fallback: the caller may try the same server again in
 * clear on a new connection (Postfix does).  A TLS session keeps its
 * TLS state when parked and reused; smtp_session_tls() tells what it
 * is.  Memory: the filter's output towards the socket is held under
 * SMTP_BODY_CHUNK bytes by a write high-water mark, its input by the
 * same read high-water mark as in clear.
 *
 * Callbacks: the owner's smtp_session_cb runs from the event loop (never
 * inside smtp_session_new/start), and may free, quit, park or start the
 * session from inside the callback.
 *
 * Callers: transport/smtp.c and transport/lmtp.c (through smtp.c's
 * shared main), tests/transport/test_smtp_client.c.  Library code:
 * nothing is logged, failures are returned with a reason.
 */
#ifndef ZFARM_TRANSPORT_SMTP_CLIENT_H
#define ZFARM_TRANSPORT_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/strbuf.h"
#include "transport/tls_client.h"

struct event_base;
struct qstore_reader;
struct smtp_session;

#define SMTP_REPLY_MAX_LINES 100
#define SMTP_REPLY_MAX_BYTES 65536
#define SMTP_ENHANCED_MAX    16	   /* "5.123.123" and NUL, with room */
#define SMTP_BODY_CHUNK	     65536 /* content bytes encoded per pump */
#define SMTP_TEXT_MAX	     1000  /* result texts are cut here */

/* ---- replies ---- */

struct smtp_reply {
	unsigned code; /* 0 until the first line */
	unsigned nlines;
	bool done;	    /* the last line ("ddd " or "ddd") was fed */
	struct strbuf text; /* each line's text after "ddd-"/"ddd ", joined by '\n' */
};

void smtp_reply_init(struct smtp_reply *r);
void smtp_reply_reset(struct smtp_reply *r);
void smtp_reply_release(struct smtp_reply *r);

/*
 * smtp_reply_feed - one reply line without its line end.  1 the reply is
 * complete, 0 more lines follow, -1 + reason: not "ddd", "ddd " or
 * "ddd-" with a valid code (2xx-5xx), a code different from the first
 * line's, more than SMTP_REPLY_MAX_LINES lines or SMTP_REPLY_MAX_BYTES
 * bytes, a NUL byte, a line fed to a complete reply.
 */
int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len, char *err, size_t errlen);

/*
 * smtp_reply_enhanced - the RFC 2034 enhanced status code at the start of
 * the first line's text if there is one whose class matches the reply
 * code's first digit ("5.1.1"), else the derived "2.0.0"/"4.0.0"/
 * "5.0.0".  Returns out.
 */
const char *smtp_reply_enhanced(const struct smtp_reply *r, char out[SMTP_ENHANCED_MAX]);

/*
 * smtp_reply_format - the reply on one line: "550 5.1.1 text of line 1
 * text of line 2" (the enhanced code kept once, control characters '?',
 * cut at outlen - 1).  Returns out.
 */
char *smtp_reply_format(const struct smtp_reply *r, char *out, size_t outlen);

/* ---- capabilities ---- */

struct smtp_caps {
	bool esmtp; /* EHLO/LHLO answered 250 */
	bool pipelining, eightbitmime, smtputf8, dsn, starttls, size;
	uint64_t size_limit; /* SIZE n; 0: none announced */
};

/* smtp_caps_parse - the keywords of a 250 EHLO/LHLO reply (line 2 on). */
void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps);

/* ---- commands ---- */

/* smtp_xtext_append - RFC 3461 xtext of s onto sb; -1 over sb's limit. */
int smtp_xtext_append(struct strbuf *sb, const char *s);

/* NOTIFY bits as in proto/queue.proto's Notify. */
#define SMTP_NOTIFY_NEVER   1u
#define SMTP_NOTIFY_SUCCESS 2u
#define SMTP_NOTIFY_FAILURE 4u
#define SMTP_NOTIFY_DELAY   8u

enum smtp_status { SMTP_PENDING = 0, SMTP_OK, SMTP_TEMPFAIL, SMTP_PERMFAIL };

/* One recipient of a transaction: input, then its result. */
struct smtp_rcpt {
	const char *address;
	const char *orcpt;	  /* "rfc822;addr" (decoded) or NULL/"" */
	const char *orig_address; /* ORCPT when orcpt is empty; NULL/"" none */
	unsigned notify;	  /* SMTP_NOTIFY_* bits; 0: not given */
	/* result */
	enum smtp_status status;
	bool accepted; /* RCPT got 2xx, waiting for the end of data */
	bool dsn_passed;
	unsigned code;
	char enhanced[SMTP_ENHANCED_MAX];
	char text[SMTP_TEXT_MAX + 1];
};

/* One message to one set of recipients. */
struct smtp_msg {
	const char *sender;	       /* "" null sender */
	const char *envid;	       /* "" / NULL none */
	const char *ret;	       /* "FULL", "HDRS", "" / NULL */
	uint64_t size;		       /* content bytes (SIZE=) */
	bool eightbit;		       /* envelope BODY=8BITMIME (or BINARYMIME) */
	bool smtputf8;		       /* envelope SMTPUTF8 */
	struct qstore_reader *content; /* read from its current position */
	size_t nrcpt;
	struct smtp_rcpt *rcpt;
};

/*
 * smtp_address_ok - s can go between "<" and ">" of MAIL/RCPT: no control
 * characters (no command injection through CR LF), no angle brackets, at
 * most SMTP_ADDRESS_MAX bytes.  The engine refuses others (5.1.7 sender,
 * 5.1.3 recipient) without sending them.
 */
#define SMTP_ADDRESS_MAX 998
bool smtp_address_ok(const char *s);

/* smtp_needs_utf8 - s has a byte >= 0x80. */
bool smtp_needs_utf8(const char *s);

/*
 * smtp_build_mail / smtp_build_rcpt - the command line with CR LF onto sb
 * for these capabilities: MAIL FROM:<s> [SIZE=n] [BODY=8BITMIME]
 * [SMTPUTF8] [RET=..] [ENVID=xtext]; RCPT TO:<a> [NOTIFY=..]
 * [ORCPT=type;xtext].  DSN parameters only when caps->dsn.  -1 over sb's
 * limit.
 */
int smtp_build_mail(struct strbuf *sb, const struct smtp_caps *caps, const struct smtp_msg *m,
		    bool utf8);
int smtp_build_rcpt(struct strbuf *sb, const struct smtp_caps *caps, const struct smtp_rcpt *r);

/* ---- sessions ---- */

struct smtp_client_config {
	bool lmtp;	       /* LHLO, per-recipient end-of-data replies */
	const char *helo_name; /* EHLO/HELO/LHLO argument */
	size_t line_limit;     /* longest reply line taken (2048) */
	/* timeouts in milliseconds; 0 is taken as 1 */
	unsigned connect_ms, helo_ms, mail_ms, rcpt_ms, data_init_ms, data_xfer_ms, data_done_ms,
	    rset_ms, quit_ms;
	/* STARTTLS: never when tls is NULL, lmtp is set or tls_level is none */
	struct tls_client *tls; /* borrowed: must outlive the session */
	enum tls_level tls_level;
	unsigned starttls_ms; /* the TLS handshake's time limit */
};

/* Where a session goes. */
struct smtp_peer {
	struct sockaddr_storage ss; /* AF_INET, AF_INET6 or AF_UNIX */
	socklen_t len;
	char host[256]; /* "mx1.example.org"; "localhost" for unix sockets */
	char addr[128]; /* "192.0.2.7", "2001:db8::1" or the socket path */
	unsigned port;	/* 0 for unix sockets */
};

enum smtp_event {
	SMTP_EV_READY,	     /* greeting and EHLO/HELO/LHLO done: start a transaction */
	SMTP_EV_FAILED,	     /* no session (connect, greeting, EHLO): see smtp_session_error */
	SMTP_EV_TXN_DONE,    /* every recipient has its result */
	SMTP_EV_TXN_LOST,    /* reused connection dead before the first reply: no results */
	SMTP_EV_IDLE_CLOSED, /* the server closed (or spoke on) an idle connection */
};

typedef void (*smtp_session_cb)(void *arg, struct smtp_session *s, enum smtp_event ev);

/* What went wrong with a session (SMTP_EV_FAILED, or a failed transaction). */
struct smtp_error {
	unsigned code; /* the server's reply code, 0 if none */
	bool perm;     /* a 5xx reply */
	char enhanced[SMTP_ENHANCED_MAX];
	char text[SMTP_TEXT_MAX + 1];
	bool tls_fallback; /* a TLS set-up failure under may: clear may work */
};

/*
 * smtp_session_new - start connecting to peer; cb reports READY or
 * FAILED later.  cfg is copied (helo_name too).  NULL + reason when no
 * socket can be made.
 */
struct smtp_session *smtp_session_new(struct event_base *base, const struct smtp_client_config *cfg,
				      const struct smtp_peer *peer, smtp_session_cb cb, void *arg,
				      char *err, size_t errlen);

/*
 * smtp_session_start - one transaction on a READY or idle session; m
 * (and its strings, recipients and reader) must stay valid until
 * TXN_DONE or TXN_LOST.  cb/arg replace the session's.  -1 + reason if
 * the session is not ready for one (a bug in the caller).
 */
int smtp_session_start(struct smtp_session *s, struct smtp_msg *m, smtp_session_cb cb, void *arg,
		       char *err, size_t errlen);

/* smtp_session_idle - park: watch for the server closing; cb gets IDLE_CLOSED. */
void smtp_session_idle(struct smtp_session *s, smtp_session_cb cb, void *arg);

/* smtp_session_reusable - after TXN_DONE: clean, open, may carry another transaction. */
bool smtp_session_reusable(const struct smtp_session *s);
/* smtp_session_uses - transactions started on this connection, this one included. */
unsigned smtp_session_uses(const struct smtp_session *s);
/* smtp_session_relay - "host[addr]:port" (unix: "host[path]"). */
const char *smtp_session_relay(const struct smtp_session *s);
const struct smtp_peer *smtp_session_peer(const struct smtp_session *s);
const struct smtp_caps *smtp_session_caps(const struct smtp_session *s);
/* smtp_session_tls - the TLS session's info; NULL while the connection is in clear. */
const struct tls_info *smtp_session_tls(const struct smtp_session *s);
/*
 * smtp_session_tls_discarded - bytes the server sent behind its STARTTLS
 * reply, before the handshake, that were dropped unread (0 normally).
 */
size_t smtp_session_tls_discarded(const struct smtp_session *s);
/* smtp_session_tls_level - the level the session was made with (none for LMTP). */
enum tls_level smtp_session_tls_level(const struct smtp_session *s);
/* smtp_session_error - why FAILED (or why a transaction failed as a whole). */
const struct smtp_error *smtp_session_error(const struct smtp_session *s);

/*
 * smtp_session_quit - polite close: QUIT, wait at most quit_ms (capped
 * at SMTP_QUIT_WAIT_MS) for the reply, close.  The engine owns the
 * session from now on (no more callbacks); *s = NULL.  A session that is
 * not clean (mid-transaction, broken) is closed at once.
 */
#define SMTP_QUIT_WAIT_MS 2000
void smtp_session_quit(struct smtp_session **s);

/* smtp_session_free - close now (no QUIT); NULL ok; *s = NULL. */
void smtp_session_free(struct smtp_session **s);

/* smtp_client_shutdown - close every session still quitting (at exit). */
void smtp_client_shutdown(void);

#endif
