/*
 * session - one SMTP server session: the RFC 5321 state machine from the
 * greeting to QUIT, receiving messages into the queue store.
 *
 * Called by smtpd.c (the farm's accept callback) once per accepted
 * connection; the session then lives on libevent callbacks and calls
 * env->session_end() when it is gone.  A session never ends the
 * process: every failure (client, disk, router) is answered or logged and
 * ends at most the transaction or the session.
 *
 * States: COMMAND (reading command lines, pipelined ones in order), DATA
 * (smtp_body DOT mode), BDAT (a chunk of counted octets, RAW mode),
 * VERIFY (the router is asked whether a local RCPT is deliverable; input
 * waits),
 * COMMIT (the committer is making the message durable; input waits in
 * the bufferevent, at most the read high-water mark), CLOSING (output is
 * flushed, then the connection closes).  The transaction (MAIL, RCPTs,
 * the message being written) is one struct reset by RSET, HELO/EHLO and
 * the end of each message, and the EHLO state lives apart from it, so
 * STARTTLS and AUTH reset exactly what they must.
 *
 * TLS and AUTH add states: TLS_START (STARTTLS answered 220: the input
 * the client pipelined behind it is thrown away unread, reading stops,
 * and once the 220 is out the socket gets a TLS bufferevent), HANDSHAKE
 * (until OpenSSL is done; on an implicit-TLS listener sessions start
 * here and the greeting follows the handshake), SASL (reading the lines
 * of an AUTH exchange, sasl.h) and AUTH (the backend checks the password,
 * auth.h, or a failure's delay runs; input waits).  STARTTLS forgets the
 * EHLO, the transaction and any AUTH (RFC 3207 4.2).
 *
 * Endpoint rules come from the listener's name (smtpd_config.h):
 * submission listeners offer AUTH whatever smtpd_sasl_auth_enable says,
 * refuse MAIL before AUTH (530 5.7.0) and add Message-ID:/Date: when a
 * message has none (header_fixup.h); wrapper-mode listeners speak TLS
 * from the first octet.  Unix-socket clients (the local injector) never
 * get TLS or AUTH and need neither.
 *
 * Memory per session is bounded whatever the client sends: the input
 * buffer by the read high-water mark, a command line by
 * smtpd_command_line_limit (longer lines are answered 500 and skipped,
 * never buffered), replies to pipelined commands by pausing input while
 * the output buffer is full, recipients by smtpd_recipient_limit, content
 * by a fixed staging buffer written through to the queue store, an AUTH
 * response line by SASL_LINE_MAX, TLS state by OpenSSL's record size.
 */
#ifndef ZFARM_SESSION_H
#define ZFARM_SESSION_H

#include <stdbool.h>

struct event_base;
struct smtpd_config;
struct qstore;
struct committer;
struct handoff;
struct frame_client;
struct tls_server;
struct auth_backend;

/*
 * What every session of one smtpserver child shares; owned by smtpd.c
 * (or a test).  session_end is called once per session when it is gone
 * (the skeleton's farm_server_session_end()).
 */
struct session_env {
	struct event_base *base;
	const struct smtpd_config *cfg;
	struct qstore *qs;
	struct committer *committer;
	struct handoff *handoff;     /* NULL: no router, messages wait for the reinjector */
	struct frame_client *verify; /* the router, for RCPT checks; NULL: none */
	struct tls_server *tls;	     /* STARTTLS and implicit TLS; NULL: no certificate */
	struct auth_backend *auth;   /* AUTH; NULL: no backend, AUTH is not offered */
	bool (*stress)(void *arg);   /* farmd runs us under stress (may be NULL) */
	void (*session_end)(void *arg);
	void *arg;
};

/* session_start - serve the accepted fd (ownership passes) from listener. */
void session_start(struct session_env *env, int fd, const char *listener);

#endif
