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
 * STARTTLS and AUTH can later reset exactly what they must.
 *
 * Memory per session is bounded whatever the client sends: the input
 * buffer by the read high-water mark, a command line by
 * smtpd_command_line_limit (longer lines are answered 500 and skipped,
 * never buffered), replies to pipelined commands by pausing input while
 * the output buffer is full, recipients by smtpd_recipient_limit, content
 * by a fixed staging buffer written through to the queue store.
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
	bool (*stress)(void *arg);   /* farmd runs us under stress (may be NULL) */
	void (*session_end)(void *arg);
	void *arg;
};

/* session_start - serve the accepted fd (ownership passes) from listener. */
void session_start(struct session_env *env, int fd, const char *listener);

#endif
