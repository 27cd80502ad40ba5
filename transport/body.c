/*
 * body - streaming content encoder (see body.h).
 *
 * The encoder walks the input once, copying runs of ordinary bytes with one
 * evbuffer_add() each and handling only line ends and line starts byte by
 * byte.  A CR is held back (e->cr) until the next byte shows whether it is
 * part of CR LF or a bare CR; either way one line end is produced.
 */
#include "transport/body.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "common/qstore.h"
#include "common/xalloc.h"

void body_enc_init(struct body_enc *e, enum body_form form)
{
	memset(e, 0, sizeof(*e));
	e->form = form;
	e->bol = true;
}

static int enc_add(struct body_enc *e, struct evbuffer *out, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (evbuffer_add(out, p, n) < 0)
		return -1;
	e->out += n;
	return 0;
}

/* mbox_flush - emit the held ">*" and "From " prefix (plus one '>' if quote). */
static int mbox_flush(struct body_enc *e, struct evbuffer *out, bool quote)
{
	for (unsigned k = 0; k < e->gt + (quote ? 1 : 0); k++)
		if (enc_add(e, out, ">", 1) < 0)
			return -1;
	if (enc_add(e, out, "From ", e->from) < 0)
		return -1;
	e->gt = e->from = 0;
	return 0;
}

/* The line end of the form; the next byte starts a line. */
static int enc_eol(struct body_enc *e, struct evbuffer *out)
{
	/* A line that was all ">*Fro" (held back, undecided): emit it as it was. */
	if (e->form == BODY_MBOX && (e->gt || e->from)) {
		if (mbox_flush(e, out, false) < 0)
			return -1;
	}
	e->bol = true;
	if (e->form == BODY_LF || e->form == BODY_MBOX)
		return enc_add(e, out, "\n", 1);
	return enc_add(e, out, "\r\n", 2);
}

/*
 * mbox_start - at the start of a line (or within its ">*From " prefix):
 * consume bytes of p that belong to a possible ">*From " prefix.  Returns
 * the bytes consumed; e->bol stays true while undecided.
 */
static size_t mbox_start(struct body_enc *e, const unsigned char *p, size_t n,
			 struct evbuffer *out, int *rc)
{
	static const char from[] = "From ";
	size_t i = 0;

	*rc = 0;
	while (i < n) {
		unsigned char c = p[i];

		if (e->from == 0 && c == '>') {
			e->gt++;
			i++;
			continue;
		}
		if (c == (unsigned char)from[e->from]) {
			e->from++;
			i++;
			if (e->from == 5) {
				/* ">*From ": one more '>' */
				*rc = mbox_flush(e, out, true);
				e->bol = false;
				return i;
			}
			continue;
		}
		/* Not a From_ line: emit what was held back, the line goes on. */
		*rc = mbox_flush(e, out, false);
		e->bol = false;
		return i;
	}
	return i; /* still undecided at the end of this chunk */
}

/* high_bit - a byte >= 0x80 in p[0..n): an OR over eight bytes at a time */
static bool high_bit(const unsigned char *p, size_t n)
{
	uint64_t acc = 0, w;
	size_t k = 0;

	for (; k + 8 <= n; k += 8) {
		memcpy(&w, p + k, 8);
		acc |= w;
	}
	for (; k < n; k++)
		acc |= p[k];
	return (acc & 0x8080808080808080ull) != 0;
}

/*
 * enc_run - the end of the run of ordinary bytes from j (the next CR or
 * LF, or len), noting 8-bit bytes: memchr and an OR over the run, not
 * three tests a byte.
 */
static size_t enc_run(struct body_enc *e, const unsigned char *p, size_t j, size_t len)
{
	const unsigned char *cr = memchr(p + j, '\r', len - j);
	size_t end = cr ? (size_t)(cr - p) : len;
	const unsigned char *lf = memchr(p + j, '\n', end - j);

	if (lf)
		end = (size_t)(lf - p);
	if (!e->eightbit && high_bit(p + j, end - j))
		e->eightbit = true;
	return end;
}

int body_enc_feed(struct body_enc *e, const void *in, size_t len, struct evbuffer *out)
{
	const unsigned char *p = in;
	size_t i = 0;

	e->in += len;
	while (i < len) {
		if (e->cr) {
			/* A held CR: CR LF or bare CR, one line end either way. */
			e->cr = false;
			if (enc_eol(e, out) < 0)
				return -1;
			if (p[i] == '\n') {
				i++;
				continue;
			}
		}
		if (e->bol) {
			if (e->form == BODY_SMTP && p[i] == '.') {
				if (enc_add(e, out, ".", 1) < 0)
					return -1;
				/* the '.' itself is copied with the run below */
			} else if (e->form == BODY_MBOX && p[i] != '\r' && p[i] != '\n') {
				int rc;
				size_t used = mbox_start(e, p + i, len - i, out, &rc);

				if (rc < 0)
					return -1;
				i += used;
				if (e->bol)
					continue; /* undecided or chunk ended */
				if (i >= len)
					break;
			}
		}
		/*
		 * A run of ordinary bytes up to the next CR or LF; in the CR LF
		 * forms the run goes on over whole CR LF lines (the queue form
		 * already has them) up to a line the encoder must change (a '.'
		 * to stuff, a bare CR or LF), so a message is a few evbuffer
		 * additions, not two per line.
		 */
		size_t j = i, eol_end = 0;
		bool crlf = e->form == BODY_SMTP || e->form == BODY_CRLF;

		for (;;) {
			j = enc_run(e, p, j, len);
			if (!crlf || j + 2 >= len || p[j] != '\r' || p[j + 1] != '\n' ||
			    (e->form == BODY_SMTP && p[j + 2] == '.'))
				break;
			j += 2; /* a whole line, and the next one starts in this chunk */
			eol_end = j;
		}
		if (j > i) {
			if (enc_add(e, out, p + i, j - i) < 0)
				return -1;
			e->bol = j == eol_end;
		}
		i = j;
		if (i >= len)
			break;
		if (p[i] == '\r') {
			e->cr = true;
			i++;
		} else { /* bare LF */
			if (enc_eol(e, out) < 0)
				return -1;
			i++;
		}
	}
	return 0;
}

int body_enc_finish(struct body_enc *e, struct evbuffer *out)
{
	if (e->cr) {
		e->cr = false;
		if (enc_eol(e, out) < 0)
			return -1;
	}
	if (!e->bol || e->gt || e->from) {
		if (enc_eol(e, out) < 0)
			return -1;
	}
	if (e->form == BODY_SMTP)
		return enc_add(e, out, ".\r\n", 3);
	if (e->form == BODY_MBOX)
		return enc_add(e, out, "\n", 1);
	return 0;
}

/*
 * Content bytes read per system call: as much as every caller pumps at a
 * time (64 KB), so a chunk is one read, not four; on the stack (the
 * transports are single-threaded event loops).
 */
#define BODY_READ_MAX 65536

int body_pump(struct qstore_reader *r, struct body_enc *e, struct evbuffer *out, size_t max,
	      char *err, size_t errlen)
{
	char buf[BODY_READ_MAX];
	size_t done = 0;

	while (done < max) {
		size_t want = max - done < sizeof(buf) ? max - done : sizeof(buf);
		ssize_t n = qstore_content(r, buf, want, err, errlen);

		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (body_enc_feed(e, buf, (size_t)n, out) < 0) {
			snprintf(err, errlen, "out of memory encoding the message");
			return -1;
		}
		done += (size_t)n;
	}
	return 1;
}

/*
 * Header scan: lines are cut at LF (CR before it dropped); a line starting
 * with a blank continues the previous one and is not a field start; the
 * header ends at the first empty line.  Only the first 998+ bytes of a
 * line are compared (longer lines cannot match a sane value anyway).
 */
int body_header_scan(struct qstore_reader *r, const char *name, const char *value,
		     size_t limit, char *err, size_t errlen)
{
	char buf[8192];
	char line[1024];
	size_t ll = 0, nl = strlen(name), total = 0;
	bool over = false;
	int found = 0;

	if (limit == 0)
		limit = 1 << 20;
	if (qstore_rewind(r) < 0) {
		snprintf(err, errlen, "cannot rewind the message");
		return -1;
	}
	while (!found && total < limit) {
		ssize_t n = qstore_content(r, buf, sizeof(buf), err, errlen);

		if (n < 0)
			return -1;
		if (n == 0)
			break;
		total += (size_t)n;
		for (ssize_t i = 0; i < n && !found; i++) {
			char c = buf[i];

			if (c != '\n') {
				if (ll < sizeof(line) - 1)
					line[ll++] = c;
				else
					over = true;
				continue;
			}
			if (ll > 0 && line[ll - 1] == '\r')
				ll--;
			line[ll] = '\0';
			if (ll == 0)
				goto end; /* end of the header block */
			if (!over && ll > nl && line[nl] == ':' &&
			    strncasecmp(line, name, nl) == 0) {
				char *v = line + nl + 1, *z = line + ll;

				while (*v == ' ' || *v == '\t')
					v++;
				while (z > v && (z[-1] == ' ' || z[-1] == '\t'))
					z--;
				*z = '\0';
				if (strcasecmp(v, value) == 0)
					found = 1;
			}
			ll = 0;
			over = false;
		}
	}
end:
	if (qstore_rewind(r) < 0) {
		snprintf(err, errlen, "cannot rewind the message");
		return -1;
	}
	return found;
}
