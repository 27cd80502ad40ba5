/*
 * body - the message content on its way out of the queue: a streaming
 * encoder from the queue's form (CR LF lines, dot-unstuffed, as
 * smtpserver stores them) to the form a transport writes.
 *
 * Forms:
 *   BODY_SMTP  CR LF lines, dot-stuffed (a line starting with "." gets
 *              another), bare CR and bare LF made CR LF, a missing last
 *              line end added; body_enc_finish() appends ".\r\n".  What
 *              SMTP DATA and LMTP DATA send.
 *   BODY_CRLF  CR LF lines, bare CR/LF made CR LF, last line end added.
 *   BODY_LF    LF lines (CR LF and bare CR become LF), last line end
 *              added: Maildir files and pipe commands' stdin.
 *   BODY_MBOX  BODY_LF plus mboxrd quoting: a line matching ">*From "
 *              gets one more ">"; body_enc_finish() adds the blank line
 *              that separates messages in an mbox.
 *
 * Callers feed content in chunks of any size (a CR LF split across two
 * chunks is handled); the output goes to an evbuffer, so the same encoder
 * serves a bufferevent (smtp, lmtp) and a file or pipe (local, pipe).
 * The state is a small struct the caller owns (no allocation), so memory
 * stays bounded whatever the message size: callers read the queue in
 * chunks (body_pump) and never hold a whole message.
 *
 * Callers: transport/smtp_client.c, local.c, pipe.c.  Pure apart from
 * body_pump(), which reads the queue store.
 */
#ifndef ZFARM_TRANSPORT_BODY_H
#define ZFARM_TRANSPORT_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct qstore_reader;

enum body_form { BODY_SMTP, BODY_CRLF, BODY_LF, BODY_MBOX };

struct body_enc {
	enum body_form form;
	bool bol;      /* at the start of a line */
	bool cr;       /* the last byte fed was a CR (line end pending) */
	unsigned gt;   /* BODY_MBOX: '>' seen at the start of this line */
	unsigned from; /* BODY_MBOX: bytes of "From " matched after them */
	uint64_t in;   /* bytes fed */
	uint64_t out;  /* bytes produced */
	bool eightbit; /* a byte >= 0x80 was fed */
};

/* body_enc_init - a fresh encoder for one message in this form. */
void body_enc_init(struct body_enc *e, enum body_form form);

/* body_enc_feed - encode in[0..len) onto out; -1 only if out fails (ENOMEM). */
int body_enc_feed(struct body_enc *e, const void *in, size_t len, struct evbuffer *out);

/*
 * body_enc_finish - the end of the content: the pending line end, a
 * missing last line end, and the form's trailer (SMTP ".\r\n", mbox a
 * blank line).  The encoder must not be fed afterwards.
 */
int body_enc_finish(struct body_enc *e, struct evbuffer *out);

/*
 * body_pump - read at most max content bytes from r and feed them; 1 if
 * more remains, 0 at the end of the content (finish not called: the
 * caller adds it), -1 + reason on a read error.
 */
int body_pump(struct qstore_reader *r, struct body_enc *e, struct evbuffer *out, size_t max,
	      char *err, size_t errlen);

/*
 * body_header_scan - whether the header block of content starts with a
 * line "name:" (case-insensitive, e.g. "Delivered-To") whose value, with
 * surrounding blanks removed, equals value (case-insensitive).  Reads the
 * header block in chunks (at most limit bytes of it; 0: 1 MiB) and
 * rewinds r.  1 found, 0 not, -1 + reason.  For the local transport's
 * Delivered-To loop check.
 */
int body_header_scan(struct qstore_reader *r, const char *name, const char *value,
		     size_t limit, char *err, size_t errlen);

#endif
