/*
 * dsn - see dsn.h.  The notice's own lines go through out_line(), which
 * bounds and terminates them; the original goes through a small line
 * scanner shared by dsn_scan() and dsn_write().
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "transport/dsn.h"

/* Bytes read from the original at a time. */
#define DSN_CHUNK 8192
/* Longest line of the notice's own text, CR LF not counted (RFC 5322: 998). */
#define DSN_LINE_MAX 990
/* RFC 2046: a boundary is at most 70 characters. */
#define DSN_BOUNDARY_MAX 70

/* ---- output ---- */

struct out {
	dsn_write_fn *wr;
	void *arg;
	char buf[DSN_CHUNK];
	size_t len;
	int failed;
	char *err;
	size_t errlen;
};

static void out_flush(struct out *o)
{
	if (!o->failed && o->len > 0 && o->wr(o->arg, o->buf, o->len, o->err, o->errlen) < 0)
		o->failed = 1;
	o->len = 0;
}

static void out_bytes(struct out *o, const void *p, size_t n)
{
	const char *s = p;

	while (n > 0 && !o->failed) {
		size_t k = sizeof(o->buf) - o->len;

		if (k > n)
			k = n;
		memcpy(o->buf + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
		if (o->len == sizeof(o->buf))
			out_flush(o);
	}
}

/* out_line - one line of our own text, cut at DSN_LINE_MAX, then CR LF. */
static void out_line(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_line(struct out *o, const char *fmt, ...)
{
	char line[DSN_LINE_MAX + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > DSN_LINE_MAX)
		n = DSN_LINE_MAX;
	out_bytes(o, line, (size_t)n);
	out_bytes(o, "\r\n", 2);
}

/* ---- input text ---- */

/*
 * clean - src reduced to printable ASCII (anything else becomes '?'),
 * cut to fit dst (dstlen > 0).  NULL is "".  Returns dst.
 */
static char *clean(char *dst, size_t dstlen, const char *src)
{
	size_t i = 0;

	for (; src && src[i] && i + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[i] = '\0';
	return dst;
}

static bool is_action(const struct dsn_recipient *r, const char *action)
{
	return r->action && strcasecmp(r->action, action) == 0;
}

static size_t count_action(const struct dsn_input *in, const char *action)
{
	size_t n = 0;

	for (size_t i = 0; i < in->n_rcpts; i++)
		n += is_action(&in->rcpts[i], action);
	return n;
}

const char *dsn_subject(const struct dsn_input *in)
{
	if (count_action(in, "failed") > 0)
		return "Undelivered Mail Returned to Sender";
	if (count_action(in, "delayed") > 0)
		return "Delayed Mail (still being retried)";
	return "Successful Mail Delivery Report";
}

static char *date(time_t t, char *buf, size_t len)
{
	return clock_format_rfc5322(t, buf, len);
}

/* boundary_clean - the boundary with only RFC 2046 bcharsnospace, at most 70. */
static char *boundary_clean(char *dst, size_t dstlen, const char *src)
{
	static const char ok[] = "'()+_,-./:=?";
	size_t i = 0;

	for (; src && src[i] && i + 1 < dstlen && i < DSN_BOUNDARY_MAX; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = (c < 0x80 && ((c >= '0' && c <= '9') ||
				       ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || strchr(ok, c)))
			     ? (char)c
			     : '.';
	}
	dst[i] = '\0';
	if (i == 0)
		snprintf(dst, dstlen, "zfarm-dsn-boundary");
	return dst;
}

/* ---- the original, line by line ---- */

/*
 * A line scanner over the original: a line ends at LF, CR LF or a bare
 * CR (the last two are how a stray byte in a queue file is normalised).
 * hstate says whether the current line can be a header line: a field
 * ("name:") or a continuation (starts with SP or HTAB).
 */
enum hstate { H_START, H_NAME, H_FIELD, H_CONT, H_BODY };

struct lines {
	bool cr;	/* the byte before was a CR */
	size_t len;	/* bytes of the current line so far */
	bool eight;	/* the current line has an octet above 127 */
	enum hstate hs; /* of the current line */
};

static enum hstate hstate_next(enum hstate hs, unsigned char c)
{
	switch (hs) {
	case H_START:
		if (c == ' ' || c == '\t')
			return H_CONT;
		return c > 32 && c < 127 && c != ':' ? H_NAME : H_BODY;
	case H_NAME:
		if (c == ':')
			return H_FIELD;
		return c > 32 && c < 127 ? H_NAME : H_BODY;
	default:
		return hs;
	}
}

/* ---- scan ---- */

struct scanner {
	struct lines ln;
	uint64_t total;	  /* bytes read */
	bool eight_all;	  /* any octet above 127 in what was read */
	bool hdr_done;	  /* the header block (as far as copied) is known */
	size_t hdr_bytes; /* normalised bytes of the lines taken */
	size_t hdr_lines; /* lines taken */
	bool hdr_eight;	  /* octets above 127 in them */
};

static void scan_eol(struct scanner *s)
{
	struct lines *ln = &s->ln;

	if (!s->hdr_done) {
		if (ln->len == 0 || (ln->hs != H_FIELD && ln->hs != H_CONT) ||
		    s->hdr_bytes + ln->len + 2 > DSN_HEADER_MAX) {
			s->hdr_done = true;
		} else {
			s->hdr_lines++;
			s->hdr_bytes += ln->len + 2;
			s->hdr_eight |= ln->eight;
		}
	}
	ln->len = 0;
	ln->eight = false;
	ln->hs = H_START;
}

static void scan_byte(struct scanner *s, unsigned char c)
{
	struct lines *ln = &s->ln;

	s->total++;
	if (c >= 0x80)
		s->eight_all = true;
	if (s->hdr_done)
		return;
	if (ln->cr) {
		ln->cr = false;
		scan_eol(s);
		if (c == '\n')
			return;
		if (s->hdr_done)
			return;
	}
	if (c == '\r') {
		ln->cr = true;
		return;
	}
	if (c == '\n') {
		scan_eol(s);
		return;
	}
	ln->len++;
	ln->eight |= c >= 0x80;
	ln->hs = hstate_next(ln->hs, c);
	if (ln->len > DSN_HEADER_MAX)
		s->hdr_done = true; /* a line too long to take: the block ends before it */
}

static bool ret_hdrs(const struct dsn_input *in)
{
	return in->ret && strcasecmp(in->ret, "HDRS") == 0;
}

int dsn_scan(const struct dsn_input *in, const struct dsn_original *orig, struct dsn_scan *scan,
	     char *err, size_t errlen)
{
	struct scanner s = {.ln = {.hs = H_START}};
	bool want_size = !ret_hdrs(in);
	unsigned char buf[DSN_CHUNK];
	bool eof = false;
	ssize_t n;

	/* Read until the header block and (for RET=FULL) the size are known. */
	while (!s.hdr_done || (want_size && s.total <= in->size_limit)) {
		n = orig->read(orig->arg, buf, sizeof(buf), err, errlen);
		if (n < 0)
			return -1;
		if (n == 0) {
			eof = true;
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			scan_byte(&s, buf[i]);
	}
	if (eof && !s.hdr_done) {
		/* The last line had no terminator: it still counts as a line. */
		if (s.ln.cr || s.ln.len > 0) {
			s.ln.cr = false;
			scan_eol(&s);
		}
		s.hdr_done = true;
	}
	memset(scan, 0, sizeof(*scan));
	scan->full = want_size && eof && s.total <= in->size_limit;
	scan->eightbit = scan->full ? s.eight_all : s.hdr_eight;
	scan->header_lines = s.hdr_lines;
	return orig->rewind(orig->arg, err, errlen);
}

/* ---- write ---- */

/*
 * copy_original - stream the original to o with line ends made CR LF:
 * all of it (max_lines 0 and full) or its first max_lines lines.  The
 * result always ends with CR LF unless it is empty.
 */
static int copy_original(struct out *o, const struct dsn_original *orig, bool full,
			 size_t max_lines, char *err, size_t errlen)
{
	unsigned char buf[DSN_CHUNK];
	struct lines ln = {0};
	size_t lines = 0;
	ssize_t n;

	if (!full && max_lines == 0)
		return 0;
	for (;;) {
		n = orig->read(orig->arg, buf, sizeof(buf), err, errlen);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			unsigned char c = buf[i];

			if (ln.cr) {
				ln.cr = false;
				out_bytes(o, "\r\n", 2);
				ln.len = 0;
				if (!full && ++lines == max_lines)
					return 0;
				if (c == '\n')
					continue;
			}
			if (c == '\r') {
				ln.cr = true;
			} else if (c == '\n') {
				out_bytes(o, "\r\n", 2);
				ln.len = 0;
				if (!full && ++lines == max_lines)
					return 0;
			} else {
				out_bytes(o, &c, 1);
				ln.len++;
			}
		}
		if (o->failed)
			return 0;
	}
	if (ln.cr || ln.len > 0)
		out_bytes(o, "\r\n", 2);
	return 0;
}

/* diag_text - the recipient's text, without the reply code it may repeat. */
static const char *diag_text(const struct dsn_recipient *r, const char *text)
{
	char code[16];
	size_t n;

	if (!r->smtp_code)
		return text;
	n = (size_t)snprintf(code, sizeof(code), "%u", r->smtp_code);
	if (strncmp(text, code, n) == 0 && (text[n] == ' ' || text[n] == '-' || !text[n]))
		return text[n] ? text + n + 1 : "";
	return text;
}

static const char *default_status(const struct dsn_recipient *r)
{
	if (is_action(r, "failed"))
		return "5.0.0";
	if (is_action(r, "delayed"))
		return "4.0.0";
	return "2.0.0";
}

static void write_headers(struct out *o, const struct dsn_input *in, const struct dsn_scan *scan,
			  const char *host, const char *boundary)
{
	char now[64], to[DSN_ADDR_MAX + 1], qid[DSN_ADDR_MAX + 1], stamp[32];
	struct tm tm;

	date(in->now, now, sizeof(now));
	clean(qid, sizeof(qid), in->new_queue_id ? in->new_queue_id : in->queue_id);
	if (in->new_queue_id && in->new_queue_id[0])
		out_line(o, "Received: by %s (zfarm)\r\n\tid %s; %s", host, qid, now);
	else
		out_line(o, "Received: by %s (zfarm); %s", host, now);
	out_line(o, "Date: %s", now);
	out_line(o, "From: MAILER-DAEMON@%s (Mail Delivery System)", host);
	out_line(o, "To: <%s>", clean(to, sizeof(to), in->notice_to));
	out_line(o, "Subject: %s", dsn_subject(in));
	out_line(o, "Auto-Submitted: auto-replied");
	gmtime_r(&in->now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
	out_line(o, "Message-ID: <%s.%s@%s>", stamp, qid[0] ? qid : "dsn", host);
	out_line(o, "MIME-Version: 1.0");
	out_line(o, "Content-Type: multipart/report; report-type=delivery-status;");
	out_line(o, "\tboundary=\"%s\"", boundary);
	out_line(o, "Content-Transfer-Encoding: %s", scan->eightbit ? "8bit" : "7bit");
	out_line(o, "%s", "");
	out_line(o, "This is a MIME-encapsulated message.");
	out_line(o, "%s", "");
}

static void write_text_part(struct out *o, const struct dsn_input *in, const struct dsn_scan *scan,
			    const char *host, const char *boundary)
{
	char addr[DSN_ADDR_MAX + 1], orig[DSN_ADDR_MAX + 1], text[DSN_TEXT_MAX + 1];
	char until[64], reason[DSN_TEXT_MAX + 16];

	out_line(o, "--%s", boundary);
	out_line(o, "Content-Description: Notification");
	out_line(o, "Content-Type: text/plain; charset=us-ascii");
	out_line(o, "%s", "");
	out_line(o, "This is the mail system at host %s.", host);
	out_line(o, "%s", "");
	if (count_action(in, "failed") > 0) {
		out_line(o, "I'm sorry to have to inform you that your message could not");
		out_line(o, "be delivered to one or more recipients. %s attached below.",
			 scan->full ? "It is" : "Its header is");
	} else if (count_action(in, "delayed") > 0) {
		out_line(o, "THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE.");
		out_line(o, "%s", "");
		out_line(o, "Your message could not be delivered yet to one or more recipients.");
		if (in->retry_until)
			out_line(o, "Delivery will be retried until %s.",
				 date(in->retry_until, until, sizeof(until)));
		else
			out_line(o, "Delivery will be retried.");
	} else {
		out_line(o, "Your message was successfully delivered to the destination(s)");
		out_line(o, "listed below.");
	}
	out_line(o, "%s", "");
	out_line(o, "For further assistance, please send mail to postmaster.");
	out_line(o, "%s", "");
	out_line(o, "                   The mail system");
	for (size_t i = 0; i < in->n_rcpts; i++) {
		const struct dsn_recipient *r = &in->rcpts[i];
		const char *t;

		clean(addr, sizeof(addr), r->address);
		clean(orig, sizeof(orig), r->orig_address);
		clean(text, sizeof(text), r->text);
		t = diag_text(r, text);
		if (r->smtp_code)
			snprintf(reason, sizeof(reason), "%u %s", r->smtp_code, t);
		else
			snprintf(reason, sizeof(reason), "%s",
				 t[0]			     ? t
				 : r->action && r->action[0] ? r->action
							     : "failed");
		clean(reason, sizeof(reason), reason);
		out_line(o, "%s", "");
		if (orig[0] && strcmp(orig, addr) != 0)
			out_line(o, "<%s> (expanded from <%s>): %s", addr, orig, reason);
		else
			out_line(o, "<%s>: %s", addr, reason);
	}
	out_line(o, "%s", "");
}

static void write_status_part(struct out *o, const struct dsn_input *in, const char *host,
			      const char *boundary)
{
	char buf[DSN_ADDR_MAX + 1], text[DSN_TEXT_MAX + 1], when[64];

	out_line(o, "--%s", boundary);
	out_line(o, "Content-Description: Delivery report");
	out_line(o, "Content-Type: message/delivery-status");
	out_line(o, "%s", "");
	out_line(o, "Reporting-MTA: dns; %s", host);
	out_line(o, "X-Zfarm-Queue-ID: %s", clean(buf, sizeof(buf), in->queue_id));
	out_line(o, "X-Zfarm-Sender: rfc822; %s", clean(buf, sizeof(buf), in->sender));
	if (in->envid && in->envid[0])
		out_line(o, "Original-Envelope-Id: %s", clean(buf, sizeof(buf), in->envid));
	if (in->arrival)
		out_line(o, "Arrival-Date: %s", date(in->arrival, when, sizeof(when)));
	for (size_t i = 0; i < in->n_rcpts; i++) {
		const struct dsn_recipient *r = &in->rcpts[i];
		const char *t;

		out_line(o, "%s", "");
		out_line(o, "Final-Recipient: rfc822; %s", clean(buf, sizeof(buf), r->address));
		if (r->orcpt && r->orcpt[0])
			out_line(o, "Original-Recipient: %s", clean(buf, sizeof(buf), r->orcpt));
		out_line(o, "Action: %s",
			 r->action && r->action[0] ? clean(buf, sizeof(buf), r->action) : "failed");
		out_line(o, "Status: %s",
			 r->status && r->status[0] ? clean(buf, sizeof(buf), r->status)
						   : default_status(r));
		clean(text, sizeof(text), r->text);
		t = diag_text(r, text);
		if (r->smtp_code)
			out_line(o, "Diagnostic-Code: smtp; %u %s", r->smtp_code, t);
		else if (t[0])
			out_line(o, "Diagnostic-Code: x-zfarm; %s", t);
		if (r->last_attempt)
			out_line(o, "Last-Attempt-Date: %s",
				 date(r->last_attempt, when, sizeof(when)));
		if (is_action(r, "delayed") && in->retry_until)
			out_line(o, "Will-Retry-Until: %s",
				 date(in->retry_until, when, sizeof(when)));
	}
	out_line(o, "%s", "");
}

int dsn_write(const struct dsn_input *in, const struct dsn_scan *scan,
	      const struct dsn_original *orig, dsn_write_fn *wr, void *wrarg, char *err,
	      size_t errlen)
{
	struct out o = {.wr = wr, .arg = wrarg, .err = err, .errlen = errlen};
	char host[DSN_ADDR_MAX + 1], boundary[DSN_BOUNDARY_MAX + 1];

	clean(host, sizeof(host),
	      in->reporting_mta && in->reporting_mta[0] ? in->reporting_mta : "localhost");
	boundary_clean(boundary, sizeof(boundary), in->boundary);
	write_headers(&o, in, scan, host, boundary);
	write_text_part(&o, in, scan, host, boundary);
	write_status_part(&o, in, host, boundary);
	out_line(&o, "--%s", boundary);
	out_line(&o, "Content-Description: %s",
		 scan->full ? "Undelivered Message" : "Message Headers");
	out_line(&o, "Content-Type: %s", scan->full ? "message/rfc822" : "text/rfc822-headers");
	out_line(&o, "Content-Transfer-Encoding: %s", scan->eightbit ? "8bit" : "7bit");
	out_line(&o, "%s", "");
	if (copy_original(&o, orig, scan->full, scan->header_lines, err, errlen) < 0)
		return -1;
	out_line(&o, "%s", "");
	out_line(&o, "--%s--", boundary);
	out_flush(&o);
	return o.failed ? -1 : 0;
}
