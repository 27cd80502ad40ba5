/*
 * smtp_body - the message content decoder: wire bytes of DATA or BDAT in,
 * content bytes out, end of DATA found, every content rule checked.
 *
 * Called by the smtpserver session for each read while it receives a
 * message.  Pure and streaming: no I/O, no allocation, no logging; any
 * split of the input into feeds gives the same result, so CR, LF and the
 * final dot may arrive in separate reads.  Linear in the input.
 *
 * DOT mode (DATA, RFC 5321 4.1.1.4 and 4.5.2):
 *   - The input starts at the start of a line (after DATA's CRLF).
 *   - A line is ended only by CR LF.  The end of data is a line that is
 *     exactly "." (".\r\n" right after a CR LF or at the very start): the
 *     feed stops right after its LF (*end = true, the bytes after it are
 *     not consumed: they are the next pipelined command).
 *   - Nothing else ends the data: "\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n",
 *     ".\0\r\n" and the like are content (and errors, below), so no
 *     smuggled command can follow a false end (SMTP smuggling).
 *   - A line starting with "." loses that first "." (dot-unstuffing).
 * RAW mode (BDAT chunks, RFC 3030): every byte fed is content; the caller
 *   counts the chunk sizes and calls smtp_body_finish() after the LAST one.
 *
 * Content rules, both modes.  The first violation is kept in b->error;
 * from then on nothing more is written to out (the message is lost anyway)
 * but DOT mode still looks for the end of data, so the session stays in
 * step with the client and replies once, after the end:
 *   SMTP_BODY_BARE_CR         a CR not followed by LF
 *   SMTP_BODY_BARE_LF         an LF not preceded by CR
 *   SMTP_BODY_NUL             a NUL octet (no BINARYMIME here)
 *   SMTP_BODY_LINE_TOO_LONG   a content line longer than line_max octets,
 *                             CR LF not counted, after unstuffing
 *   SMTP_BODY_HEADER_TOO_LARGE the header longer than header_max octets
 *   SMTP_BODY_TOO_MANY_HOPS   more than hops_max "Received:" header fields
 *   SMTP_BODY_TOO_BIG         more than size_max content octets
 * A limit of 0 means no limit.
 *
 * Header: the content starts in the header.  A header line is a field
 * ("name:" with name octets 33-126 except ':') or a continuation (starts
 * with SP or HTAB).  The header ends at the first empty line or at the
 * first line that is neither (that line is body).  header_bytes counts the
 * header lines with their CR LF; hops counts fields named "Received"
 * (ASCII case-insensitive).
 */
#ifndef ZFARM_SMTP_BODY_H
#define ZFARM_SMTP_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_body_mode {
	SMTP_BODY_DOT, /* DATA: dot-stuffed, ends with CRLF.CRLF */
	SMTP_BODY_RAW, /* BDAT: octets as they are */
};

enum smtp_body_error {
	SMTP_BODY_OK = 0,
	SMTP_BODY_BARE_CR,
	SMTP_BODY_BARE_LF,
	SMTP_BODY_NUL,
	SMTP_BODY_LINE_TOO_LONG,
	SMTP_BODY_HEADER_TOO_LARGE,
	SMTP_BODY_TOO_MANY_HOPS,
	SMTP_BODY_TOO_BIG,
};

struct smtp_body_limits {
	uint64_t size_max; /* content octets; 0: none */
	size_t line_max;   /* octets per line without CR LF; 0: none */
	size_t header_max; /* header octets; 0: none */
	unsigned hops_max; /* Received: fields; 0: none */
};

/* Decoder state.  The public part is read-only for callers. */
struct smtp_body {
	/* public */
	enum smtp_body_error error; /* first violation, SMTP_BODY_OK if none */
	uint64_t size;		    /* content octets so far (also after an error) */
	uint64_t header_bytes;	    /* header octets so far */
	unsigned hops;		    /* Received: fields so far */
	bool in_header;		    /* still in the header */

	/* private */
	enum smtp_body_mode mode;
	struct smtp_body_limits lim;
	bool line_start;   /* the last content octets were CR LF (or none yet) */
	bool cr;	   /* the last content octet was a CR */
	bool dot_only;	   /* DOT: the line so far is "." (removed, maybe the end) */
	bool dot_cr;	   /* DOT: ... followed by a CR held back */
	uint64_t line_len; /* content octets of this line, CR LF not counted */
	/* header field name tracking for the line being read */
	unsigned hdr_state; /* 0 line start, 1 in name, 2 in a header line, 3 CR at line start */
	uint64_t name_len;  /* name octets read (not yet in header_bytes) */
	bool name_received; /* name so far is a prefix of "received" */
};

/* smtp_body_init - start a message; lim may be NULL (no limits). */
void smtp_body_init(struct smtp_body *b, enum smtp_body_mode mode,
		    const struct smtp_body_limits *lim);

/*
 * smtp_body_feed - decode up to len octets of in.  Writes the content
 * octets to out (room for len octets: the output is never longer than the
 * input) and their count to *out_len.  Returns the number of octets
 * consumed: len, or in DOT mode less when the end of data was found (then
 * *end = true and the rest of in belongs to the next command).  *end is
 * false otherwise; RAW mode never sets it.  Nothing is fed after the end.
 */
size_t smtp_body_feed(struct smtp_body *b, const char *in, size_t len, char *out, size_t *out_len,
		      bool *end);

/*
 * smtp_body_finish - RAW mode after the LAST chunk: a final CR (waiting
 * for its LF) becomes SMTP_BODY_BARE_CR; a last line without CR LF gets
 * one so stored content always ends with CR LF (returns 2 and writes
 * "\r\n" to out unless there is an error); otherwise returns 0.  Counts in
 * size.  DOT mode: returns 0 (the end of data already ended a line).
 */
size_t smtp_body_finish(struct smtp_body *b, char out[2]);

/*
 * smtp_body_reply - the SMTP reply for an error: code (550, 552, 554),
 * enhanced code and text, e.g. 550 "5.6.0" "Message contains a bare LF
 * (only CR LF ends a line)".  Static strings.  For SMTP_BODY_OK: 250,
 * "2.0.0", "Ok".
 */
void smtp_body_reply(enum smtp_body_error e, int *code, const char **enhanced, const char **text);

#endif
