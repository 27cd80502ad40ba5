/*
 * header_fixup - see header_fixup.h.
 */
#include <stdio.h>
#include <string.h>

#include "smtpserver/header_fixup.h"

enum {
	HF_LINE_START, /* at the start of a header line (nothing held) */
	HF_NAME,       /* holding: a field name so far */
	HF_BLANKS,     /* holding: a name and blanks, a colon may follow */
	HF_CR,	       /* holding: a CR at the start of a line */
	HF_LINE,       /* inside a header line: passing through to its LF */
	HF_BODY,       /* the header is over: passing everything through */
};

void header_fixup_init(struct header_fixup *h, const char *message_id, const char *date,
		       header_fixup_emit_fn *emit, void *arg)
{
	memset(h, 0, sizeof(*h));
	h->state = HF_LINE_START;
	h->emit = emit;
	h->arg = arg;
	snprintf(h->message_id, sizeof(h->message_id), "%s", message_id);
	snprintf(h->date, sizeof(h->date), "%s", date);
}

bool header_fixup_passing(const struct header_fixup *h)
{
	return h->state == HF_BODY;
}

static void emit_field(struct header_fixup *h, const char *name, const char *value)
{
	char line[HEADER_FIXUP_FIELD + 16];
	int n = snprintf(line, sizeof(line), "%s: %.*s\r\n", name, HEADER_FIXUP_FIELD - 20, value);

	h->emit(h->arg, line, (size_t)n);
}

/* The header is over: the missing fields, then what was held. */
static void header_end(struct header_fixup *h)
{
	if (!h->has_message_id)
		emit_field(h, "Message-ID", h->message_id);
	if (!h->has_date)
		emit_field(h, "Date", h->date);
	if (h->hold_len)
		h->emit(h->arg, h->hold, h->hold_len);
	h->hold_len = 0;
	h->state = HF_BODY;
}

/* The held line is a header line: note its name, let it pass. */
static void header_line(struct header_fixup *h, bool field)
{
	if (field && h->name_len == 10 && memcmp(h->name, "message-id", 10) == 0)
		h->has_message_id = true;
	if (field && h->name_len == 4 && memcmp(h->name, "date", 4) == 0)
		h->has_date = true;
	if (h->hold_len)
		h->emit(h->arg, h->hold, h->hold_len);
	h->hold_len = 0;
	h->state = HF_LINE;
}

static void hold(struct header_fixup *h, char c)
{
	h->hold[h->hold_len++] = c;
}

void header_fixup_feed(struct header_fixup *h, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		char c = p[i];

		switch (h->state) {
		case HF_BODY:
			h->emit(h->arg, p + i, n - i);
			return;
		case HF_LINE: {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t k = nl ? (size_t)(nl - (p + i)) + 1 : n - i;

			h->emit(h->arg, p + i, k);
			i += k;
			if (nl)
				h->state = HF_LINE_START;
			continue;
		}
		case HF_LINE_START:
			h->name_len = 0;
			if (c == ' ' || c == '\t') {
				header_line(h, false); /* a continuation */
				continue;	       /* the octet passes in HF_LINE */
			}
			if (c == '\n') {
				header_end(h); /* the empty line passes in HF_BODY */
				continue;
			}
			hold(h, c);
			i++;
			if (c == '\r') {
				h->state = HF_CR;
			} else if (c > 32 && c < 127 && c != ':') {
				h->name[h->name_len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
				h->state = HF_NAME;
			} else {
				header_end(h); /* ":x" or a control octet: body */
			}
			continue;
		case HF_CR:
			/* "\r\n" is the empty line; anything else is no header line. */
			header_end(h);
			continue;
		case HF_NAME:
		case HF_BLANKS:
			if (c == ':' && h->hold_len < HEADER_FIXUP_HOLD) {
				hold(h, c);
				i++;
				header_line(h, true);
				continue;
			}
			if ((c == ' ' || c == '\t') && h->hold_len < HEADER_FIXUP_HOLD) {
				hold(h, c);
				i++;
				h->state = HF_BLANKS;
				continue;
			}
			if (h->state == HF_NAME && c > 32 && c < 127 &&
			    h->hold_len < HEADER_FIXUP_HOLD) {
				if (h->name_len < sizeof(h->name))
					h->name[h->name_len] =
					    (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
				h->name_len++;
				hold(h, c);
				i++;
				continue;
			}
			header_end(h); /* not a field after all (or too long to tell) */
			continue;
		}
	}
}

void header_fixup_finish(struct header_fixup *h)
{
	switch (h->state) {
	case HF_BODY:
		return;
	case HF_LINE:
		/* A last header line without its LF (smtp_body never gives one). */
		h->emit(h->arg, "\r\n", 2);
		header_end(h);
		return;
	default:
		header_end(h);
		return;
	}
}
