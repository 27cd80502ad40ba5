/*
 * smtp_submit - a small blocking SMTP client for local submission, and the
 * encoder that turns a message read from a file or pipe into DATA bytes.
 *
 * Caller: sendmail(1) (tools/sendmail.c), which talks to the smtpserver
 * farm's unix socket $run_directory/public/submit.  One connection, one
 * process, commands one after another (no pipelining): simple beats fast
 * for a command that submits one message.
 *
 * Client.  Every read and write has a time limit (SMTP_SUBMIT_TIMEOUT_S);
 * writes never raise SIGPIPE.  A reply is read whole (multi-line "250-"
 * lines included) with bounded memory: at most SMTP_REPLY_LINE_MAX octets
 * a line and SMTP_REPLY_LINES_MAX lines, its text kept up to
 * SMTP_REPLY_TEXT_MAX octets with control characters as '?'.  Results:
 *   SMTP_SUBMIT_OK        a reply was read into *r (any code 200-599)
 *   SMTP_SUBMIT_IO        the connection failed, closed or timed out: the
 *                         mail system is not (or no longer) available
 *   SMTP_SUBMIT_PROTOCOL  the server sent something that is not a reply
 * Failures carry a reason in the caller's buffer; nothing here logs or
 * exits.  After a failure the connection is unusable (free it).
 *
 * Encoder (struct smtp_data).  Pure and streaming: any split of the input
 * gives the same output.  Input lines end with LF; a CR right before an
 * LF belongs to the line end, any other CR is dropped, so the output
 * holds no bare CR or LF (in effect every CR is dropped and every LF
 * becomes CR LF).  Every line goes out ending in CR LF, a line
 * starting with "." gets a second one (dot-stuffing), and a line longer
 * than SMTP_DATA_LINE_MAX octets is broken by inserting CR LF SPACE (as
 * Postfix's smtp_line_length_limit does).  With lone_dot_ends, an input
 * line that is exactly "." ends the input (sendmail without -i).  A NUL
 * octet stops the encoder with SMTP_DATA_NUL: SMTP DATA cannot carry it.
 */
#ifndef ZFARM_TOOLS_SMTP_SUBMIT_H
#define ZFARM_TOOLS_SMTP_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct strbuf;
struct smtp_submit;

enum smtp_submit_status {
	SMTP_SUBMIT_OK = 0,
	SMTP_SUBMIT_IO = -1,
	SMTP_SUBMIT_PROTOCOL = -2,
};

/* A reply wait or a blocked write longer than this fails (SMTP_SUBMIT_IO). */
#define SMTP_SUBMIT_TIMEOUT_S 300
#define SMTP_REPLY_LINE_MAX   4096
#define SMTP_REPLY_LINES_MAX  100
#define SMTP_REPLY_TEXT_MAX   1024

/* Service extensions the EHLO reply announced. */
enum {
	SMTP_EXT_PIPELINING = 1 << 0,
	SMTP_EXT_8BITMIME = 1 << 1,
	SMTP_EXT_DSN = 1 << 2,
	SMTP_EXT_SMTPUTF8 = 1 << 3,
	SMTP_EXT_SIZE = 1 << 4,
};

struct smtp_reply {
	int code;			/* 200..599 */
	char text[SMTP_REPLY_TEXT_MAX]; /* the last line: "550 5.1.1 <u@d>: ..." */
};

/*
 * smtp_submit_socket - a connected, close-on-exec unix stream socket to
 * path with the time limits set; -1 with a reason (nothing listens, no
 * such file, path too long).  For callers that relay bytes themselves.
 */
int smtp_submit_socket(const char *path, char *err, size_t errlen);

/*
 * smtp_submit_open - connect to path; trace (may be NULL) gets the
 * dialogue: "<<< " before each line read, ">>> " before each command.
 * NULL with a reason (SMTP_SUBMIT_IO).  Read the greeting with
 * smtp_submit_reply().
 */
struct smtp_submit *smtp_submit_open(const char *path, FILE *trace, char *err, size_t errlen);
/* smtp_submit_free - close; accepts NULL, clears the pointer. */
void smtp_submit_free(struct smtp_submit **cp);

/* smtp_submit_reply - read the next reply into *r. */
enum smtp_submit_status smtp_submit_reply(struct smtp_submit *c, struct smtp_reply *r, char *err,
					  size_t errlen);

/*
 * smtp_submit_command - send one command line (CR LF added; it must hold
 * no CR or LF: a protocol error otherwise), then read its reply.
 */
enum smtp_submit_status smtp_submit_command(struct smtp_submit *c, struct smtp_reply *r, char *err,
					    size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * smtp_submit_ehlo - EHLO name; on a 250 reply its keywords are kept for
 * smtp_submit_ext().  A 5xx (EHLO not supported) is retried as HELO.
 */
enum smtp_submit_status smtp_submit_ehlo(struct smtp_submit *c, const char *name,
					 struct smtp_reply *r, char *err, size_t errlen);
/* smtp_submit_ext - SMTP_EXT_* flags of the last EHLO reply (0 after HELO). */
unsigned smtp_submit_ext(const struct smtp_submit *c);

/*
 * smtp_submit_write - bytes as they are (DATA content), buffered; sent
 * when the buffer fills and by smtp_submit_flush() and the next command.
 */
enum smtp_submit_status smtp_submit_write(struct smtp_submit *c, const void *p, size_t n, char *err,
					  size_t errlen);
enum smtp_submit_status smtp_submit_flush(struct smtp_submit *c, char *err, size_t errlen);

/* ---- the DATA encoder ---- */

/* RFC 5322 2.1.1: octets a line, CR LF not counted. */
#define SMTP_DATA_LINE_MAX 998

enum smtp_data_error {
	SMTP_DATA_OK = 0,
	SMTP_DATA_NUL, /* a NUL octet in the input */
};

struct smtp_data {
	/* public, read-only */
	bool ended; /* a lone "." line ended the input */
	enum smtp_data_error error;
	/* private */
	bool bol;	 /* at the start of a line */
	bool dot;	 /* a "." at the start of a line, not yet written */
	size_t line_len; /* content octets on the current output line */
};

/* smtp_data_init - a new message: at the start of a line. */
void smtp_data_init(struct smtp_data *d);

/*
 * smtp_data_feed - encode in[0..len) onto out (a strbuf without a limit:
 * the output is at most about twice the input).  Returns the octets
 * consumed: all of them, or fewer when the input ended (d->ended, the
 * rest is not part of the message) or an error stopped it (d->error).
 */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len, bool lone_dot_ends,
		      struct strbuf *out);

/*
 * smtp_data_finish - end of input: end the last line if it is open and
 * append the terminating ".\r\n" (a last line "." without its LF ends
 * the input like one with it when lone_dot_ends).
 */
void smtp_data_finish(struct smtp_data *d, bool lone_dot_ends, struct strbuf *out);

#endif
