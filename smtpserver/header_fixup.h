/*
 * header_fixup - add the Message-ID: and Date: header fields a submitted
 * message lacks (RFC 6409 8.2 and 8.3), streaming.
 *
 * Called by the smtpserver session for messages on a submission endpoint:
 * the decoded content (smtp_body's output) goes through
 * header_fixup_feed() on its way to the queue file.  The fields that were
 * missing are written at the end of the header: before the empty line
 * that ends it, or before the first line that is not a header line, or
 * at the end of a message that is all header.  Nothing else changes.
 *
 * A header line is a field ("name:" with name octets 33-126 except ':',
 * blanks allowed before the colon) or a continuation (starts with SP or
 * HTAB), as smtp_body has it.  Lines end with LF (content from smtp_body
 * has CR LF).  To put the fields before a line, the start of each header
 * line is held back until it is clear what the line is: at most
 * HEADER_FIXUP_HOLD octets (a longer undecided start is taken as body),
 * so memory is fixed whatever the client sends.
 *
 * Pure: no I/O, no allocation, no logging; the output goes to the
 * caller's emit function, in order.
 */
#ifndef ZFARM_HEADER_FIXUP_H
#define ZFARM_HEADER_FIXUP_H

#include <stdbool.h>
#include <stddef.h>

#define HEADER_FIXUP_HOLD  1000 /* octets of an undecided line start */
#define HEADER_FIXUP_FIELD 300	/* octets of one added field, with CR LF */

typedef void header_fixup_emit_fn(void *arg, const char *p, size_t n);

struct header_fixup {
	unsigned state; /* private */
	char name[12];	/* the field name so far, lower case, while it fits */
	size_t name_len;
	char hold[HEADER_FIXUP_HOLD];
	size_t hold_len;
	bool has_message_id, has_date; /* seen in the header */
	char message_id[HEADER_FIXUP_FIELD], date[HEADER_FIXUP_FIELD];
	header_fixup_emit_fn *emit;
	void *arg;
};

/*
 * header_fixup_init - start a message.  message_id and date are the
 * values to add when missing ("<...@host>", an RFC 5322 date), without
 * the field name; longer values are cut.
 */
void header_fixup_init(struct header_fixup *h, const char *message_id, const char *date,
		       header_fixup_emit_fn *emit, void *arg);

/* header_fixup_feed - n more content octets. */
void header_fixup_feed(struct header_fixup *h, const char *p, size_t n);

/* header_fixup_finish - the content ended: emit what is held (and the fields, if due). */
void header_fixup_finish(struct header_fixup *h);

/* header_fixup_passing - the header is over: feed would pass the octets through as they are. */
bool header_fixup_passing(const struct header_fixup *h);

#endif
