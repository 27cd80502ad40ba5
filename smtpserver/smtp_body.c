/*
 * smtp_body - the message content decoder; see smtp_body.h.
 *
 * Two layers.  The DOT layer (smtp_body_feed in DOT mode) sees wire octets,
 * removes the stuffing dot, holds back the "." and CR of a line that may be
 * the end of data, and finds that end.  Every other octet goes to
 * body_octet(), the content layer shared with RAW mode: it checks CR/LF/NUL,
 * counts lines, header and size, and writes the octet out while there is no
 * error.
 *
 * The end of data is recognised only as "." CR LF at a content line start,
 * and a content line starts only after CR LF: a bare CR or LF never starts a
 * line, so neither can end the data (SMTP smuggling).
 */
#include "smtpserver/smtp_body.h"

#include <string.h>

/* hdr_state values */
enum {
	HDR_START = 0, /* at the start of a header line */
	HDR_NAME = 1,  /* reading a possible field name (name_len octets pending) */
	HDR_LINE = 2,  /* in a header line: field after ':' or continuation */
	HDR_CR = 3,    /* a CR at the start of the line: maybe the empty line */
};

static const char received[] = "received";

void smtp_body_init(struct smtp_body *b, enum smtp_body_mode mode,
		    const struct smtp_body_limits *lim)
{
	memset(b, 0, sizeof(*b));
	b->error = SMTP_BODY_OK;
	b->in_header = true;
	b->mode = mode;
	if (lim != NULL)
		b->lim = *lim;
	b->line_start = true;
	b->hdr_state = HDR_START;
}

static inline void body_error(struct smtp_body *b, enum smtp_body_error e)
{
	if (b->error == SMTP_BODY_OK)
		b->error = e;
}

static inline bool name_octet(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

static inline void header_add(struct smtp_body *b, uint64_t n)
{
	b->header_bytes += n;
	if (b->lim.header_max != 0 && b->header_bytes > b->lim.header_max)
		body_error(b, SMTP_BODY_HEADER_TOO_LARGE);
}

static inline void header_end(struct smtp_body *b)
{
	b->in_header = false;
}

/* Header tracking for one content octet; eol: c is the LF of a CR LF. */
static inline void header_octet(struct smtp_body *b, unsigned char c, bool eol)
{
	switch (b->hdr_state) {
	case HDR_START:
		if (c == ' ' || c == '\t') {
			b->hdr_state = HDR_LINE;
			header_add(b, 1);
		} else if (c == '\r') {
			b->hdr_state = HDR_CR;
		} else if (name_octet(c)) {
			b->hdr_state = HDR_NAME;
			b->name_len = 1;
			b->name_received = (c | 0x20) == received[0];
		} else {
			header_end(b);
		}
		break;
	case HDR_CR:
		/* CR LF: the empty line ends the header (and is not part of it);
		 * a bare CR: the line is not a header line either. */
		header_end(b);
		break;
	case HDR_NAME:
		if (c == ':') {
			b->hdr_state = HDR_LINE;
			header_add(b, b->name_len + 1);
			if (b->name_received && b->name_len == sizeof(received) - 1) {
				b->hops++;
				if (b->lim.hops_max != 0 && b->hops > b->lim.hops_max)
					body_error(b, SMTP_BODY_TOO_MANY_HOPS);
			}
		} else if (name_octet(c)) {
			b->name_len++;
			b->name_received = b->name_received &&
					   b->name_len <= sizeof(received) - 1 &&
					   (c | 0x20) == received[b->name_len - 1];
		} else {
			header_end(b);
		}
		break;
	default: /* HDR_LINE */
		header_add(b, 1);
		if (eol)
			b->hdr_state = HDR_START;
		break;
	}
}

/* One content octet, both modes. */
static inline void body_octet(struct smtp_body *b, unsigned char c, char *out, size_t *n)
{
	bool eol = false;

	if (b->cr) {
		if (c == '\n')
			eol = true;
		else
			body_error(b, SMTP_BODY_BARE_CR);
	} else if (c == '\n') {
		body_error(b, SMTP_BODY_BARE_LF);
	}
	if (c == '\0')
		body_error(b, SMTP_BODY_NUL);
	if (c != '\r' && c != '\n') {
		b->line_len++;
		if (b->lim.line_max != 0 && b->line_len > b->lim.line_max)
			body_error(b, SMTP_BODY_LINE_TOO_LONG);
	}
	if (b->in_header)
		header_octet(b, c, eol);
	b->size++;
	if (b->lim.size_max != 0 && b->size > b->lim.size_max)
		body_error(b, SMTP_BODY_TOO_BIG);
	b->cr = c == '\r';
	b->line_start = eol;
	if (eol)
		b->line_len = 0;
	if (b->error == SMTP_BODY_OK)
		out[(*n)++] = (char)c;
}

/*
 * body_run - octets from p that body_octet() would only copy and count: in
 * the body (headers are parsed octet by octet), not after a CR or at a
 * line start, no error yet, and up to the next CR, LF or NUL or a limit.
 * 0: take the next octet the slow way.
 */
static size_t body_run(const struct smtp_body *b, const unsigned char *p, size_t len)
{
	size_t i = 0;

	if (b->in_header || b->cr || b->line_start || b->error != SMTP_BODY_OK)
		return 0;
	if (b->lim.line_max != 0 && len > b->lim.line_max - b->line_len)
		len = b->lim.line_max > b->line_len ? (size_t)(b->lim.line_max - b->line_len) : 0;
	if (b->lim.size_max != 0 && len > b->lim.size_max - b->size)
		len = b->lim.size_max > b->size ? (size_t)(b->lim.size_max - b->size) : 0;
	while (i < len && p[i] != '\r' && p[i] != '\n' && p[i] != '\0')
		i++;
	return i;
}

/* body_copy - take a run of n octets body_run() found. */
static inline void body_copy(struct smtp_body *b, const unsigned char *p, size_t n, char *out,
			     size_t *o)
{
	memcpy(out + *o, p, n);
	*o += n;
	b->line_len += n;
	b->size += n;
}

size_t smtp_body_feed(struct smtp_body *b, const char *in, size_t len, char *out, size_t *out_len,
		      bool *end)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i, n = 0;

	*end = false;
	if (b->mode == SMTP_BODY_RAW) {
		for (i = 0; i < len; i++) {
			size_t run = body_run(b, p + i, len - i);

			if (run) {
				body_copy(b, p + i, run, out, &n);
				i += run - 1;
				continue;
			}
			body_octet(b, p[i], out, &n);
		}
		*out_len = n;
		return len;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = p[i];
		size_t run;

		if (!b->dot_only && (run = body_run(b, p + i, len - i)) != 0) {
			body_copy(b, p + i, run, out, &n);
			i += run - 1;
			continue;
		}
		if (b->dot_only) {
			if (b->dot_cr) {
				if (c == '\n') {
					/* CR LF "." CR LF: the end of data. */
					b->dot_only = b->dot_cr = false;
					*end = true;
					*out_len = n;
					return i + 1;
				}
				/* ".\r" and not LF: the CR was content (a bare one). */
				b->dot_only = b->dot_cr = false;
				body_octet(b, '\r', out, &n);
				body_octet(b, c, out, &n);
			} else if (c == '\r') {
				b->dot_cr = true;
			} else {
				b->dot_only = false;
				body_octet(b, c, out, &n);
			}
			continue;
		}
		if (b->line_start && c == '.') {
			/* Stuffing or the end: this dot is never content. */
			b->line_start = false;
			b->dot_only = true;
			continue;
		}
		body_octet(b, c, out, &n);
	}
	*out_len = n;
	return len;
}

size_t smtp_body_finish(struct smtp_body *b, char out[2])
{
	size_t n = 0;

	if (b->mode != SMTP_BODY_RAW)
		return 0;
	if (b->cr) {
		/* The CR's LF never came. */
		body_error(b, SMTP_BODY_BARE_CR);
		b->cr = false;
		return 0;
	}
	if (b->line_start)
		return 0;
	body_octet(b, '\r', out, &n);
	body_octet(b, '\n', out, &n);
	return b->error == SMTP_BODY_OK ? n : 0;
}

void smtp_body_reply(enum smtp_body_error e, int *code, const char **enhanced, const char **text)
{
	switch (e) {
	case SMTP_BODY_OK:
		*code = 250;
		*enhanced = "2.0.0";
		*text = "Ok";
		return;
	case SMTP_BODY_BARE_CR:
		*code = 550;
		*enhanced = "5.6.0";
		*text = "Message contains a bare CR (only CR LF ends a line)";
		return;
	case SMTP_BODY_BARE_LF:
		*code = 550;
		*enhanced = "5.6.0";
		*text = "Message contains a bare LF (only CR LF ends a line)";
		return;
	case SMTP_BODY_NUL:
		*code = 550;
		*enhanced = "5.6.0";
		*text = "Message contains a NUL octet";
		return;
	case SMTP_BODY_LINE_TOO_LONG:
		*code = 550;
		*enhanced = "5.6.0";
		*text = "Message line longer than the limit";
		return;
	case SMTP_BODY_HEADER_TOO_LARGE:
		*code = 552;
		*enhanced = "5.3.4";
		*text = "Message header size exceeds limit";
		return;
	case SMTP_BODY_TOO_MANY_HOPS:
		*code = 554;
		*enhanced = "5.4.0";
		*text = "Too many hops";
		return;
	case SMTP_BODY_TOO_BIG:
		*code = 552;
		*enhanced = "5.3.4";
		*text = "Message size exceeds fixed limit";
		return;
	}
	/* Not an enum value: a broken caller; answer as a generic failure. */
	*code = 554;
	*enhanced = "5.0.0";
	*text = "Message rejected";
}
