/*
 * smtp_submit - blocking SMTP client over a unix socket and the DATA
 * encoder, for sendmail(1); see smtp_submit.h.
 */
#include "tools/smtp_submit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/endpoint.h"
#include "common/err.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

#define SMTP_SUBMIT_BUF 65536

struct smtp_submit {
	int fd;
	FILE *trace;
	unsigned ext;
	char in[SMTP_SUBMIT_BUF]; /* received, not yet parsed: in[in_pos..in_len) */
	size_t in_pos, in_len;
	char out[SMTP_SUBMIT_BUF]; /* to send: out[0..out_len) */
	size_t out_len;
};

/* ---- connection ---- */

int smtp_submit_socket(const char *path, char *err, size_t errlen)
{
	struct timeval tv = {.tv_sec = SMTP_SUBMIT_TIMEOUT_S};
	struct endpoint ep;
	char spec[4200], why[512];
	int fd;

	snprintf(spec, sizeof(spec), "unix:%s", path);
	if (endpoint_parse(spec, &ep, why, sizeof(why)) < 0) {
		err_printf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	fd = endpoint_connect(&ep, false, why, sizeof(why));
	if (fd < 0) {
		err_printf(err, errlen, "%s", why);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		err_printf(err, errlen, "setsockopt: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct smtp_submit *smtp_submit_open(const char *path, FILE *trace, char *err, size_t errlen)
{
	struct smtp_submit *c;
	int fd = smtp_submit_socket(path, err, errlen);

	if (fd < 0)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->trace = trace;
	return c;
}

void smtp_submit_free(struct smtp_submit **cp)
{
	if (!cp || !*cp)
		return;
	if ((*cp)->fd >= 0)
		close((*cp)->fd);
	free(*cp);
	*cp = NULL;
}

/* ---- sending ---- */

enum smtp_submit_status smtp_submit_flush(struct smtp_submit *c, char *err, size_t errlen)
{
	size_t off = 0;

	while (off < c->out_len) {
		ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				err_printf(err, errlen, "timed out sending to the server");
			else
				err_printf(err, errlen, "lost connection sending to the server: %s",
					   strerror(errno));
			c->out_len = 0;
			return SMTP_SUBMIT_IO;
		}
		off += (size_t)n;
	}
	c->out_len = 0;
	return SMTP_SUBMIT_OK;
}

enum smtp_submit_status smtp_submit_write(struct smtp_submit *c, const void *p, size_t n, char *err,
					  size_t errlen)
{
	const char *s = p;

	while (n > 0) {
		size_t k = sizeof(c->out) - c->out_len;

		if (k == 0) {
			enum smtp_submit_status st = smtp_submit_flush(c, err, errlen);

			if (st != SMTP_SUBMIT_OK)
				return st;
			continue;
		}
		if (k > n)
			k = n;
		memcpy(c->out + c->out_len, s, k);
		c->out_len += k;
		s += k;
		n -= k;
	}
	return SMTP_SUBMIT_OK;
}

/* ---- replies ---- */

/*
 * smtp_read_line - the next line without its CR LF (a bare LF is taken as
 * a line end too) into line (NUL-terminated, len in *len).
 */
static enum smtp_submit_status smtp_read_line(struct smtp_submit *c, char *line, size_t *len,
					      char *err, size_t errlen)
{
	size_t n = 0;

	for (;;) {
		while (c->in_pos < c->in_len) {
			char ch = c->in[c->in_pos++];

			if (ch == '\n') {
				if (n > 0 && line[n - 1] == '\r')
					n--;
				line[n] = '\0';
				*len = n;
				return SMTP_SUBMIT_OK;
			}
			if (n >= SMTP_REPLY_LINE_MAX) {
				err_printf(err, errlen, "reply line longer than %d octets",
					   SMTP_REPLY_LINE_MAX);
				return SMTP_SUBMIT_PROTOCOL;
			}
			line[n++] = ch;
		}
		ssize_t r = recv(c->fd, c->in, sizeof(c->in), 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			err_printf(err, errlen, "timed out waiting for the server's reply");
			return SMTP_SUBMIT_IO;
		}
		if (r < 0) {
			err_printf(err, errlen, "lost connection reading the server's reply: %s",
				   strerror(errno));
			return SMTP_SUBMIT_IO;
		}
		if (r == 0) {
			err_printf(err, errlen, "the server closed the connection%s",
				   n ? " inside a reply" : "");
			return SMTP_SUBMIT_IO;
		}
		c->in_pos = 0;
		c->in_len = (size_t)r;
	}
}

/* smtp_ehlo_keyword - note an EHLO keyword line ("DSN", "SIZE 1000"). */
static void smtp_ehlo_keyword(struct smtp_submit *c, const char *kw)
{
	static const struct {
		const char *name;
		unsigned flag;
	} known[] = {
	    {"PIPELINING", SMTP_EXT_PIPELINING},
	    {"8BITMIME", SMTP_EXT_8BITMIME},
	    {"DSN", SMTP_EXT_DSN},
	    {"SMTPUTF8", SMTP_EXT_SMTPUTF8},
	    {"SIZE", SMTP_EXT_SIZE},
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		size_t n = strlen(known[i].name);

		if (strncasecmp(kw, known[i].name, n) == 0 && (kw[n] == '\0' || kw[n] == ' '))
			c->ext |= known[i].flag;
	}
}

/*
 * smtp_reply_read - one reply; with keywords, every line but the first
 * is an EHLO keyword to note.
 */
static enum smtp_submit_status smtp_reply_read(struct smtp_submit *c, struct smtp_reply *r,
					       bool keywords, char *err, size_t errlen)
{
	char *line = xmalloc(SMTP_REPLY_LINE_MAX + 1);
	enum smtp_submit_status st;
	int code = 0;

	r->code = 0;
	r->text[0] = '\0';
	for (unsigned i = 0;; i++) {
		size_t len;

		st = smtp_read_line(c, line, &len, err, errlen);
		if (st != SMTP_SUBMIT_OK)
			break;
		if (c->trace)
			fprintf(c->trace, "<<< %s\n", line);
		if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9' ||
		    (len > 3 && line[3] != ' ' && line[3] != '-')) {
			err_printf(err, errlen, "not an SMTP reply: \"%.80s\"", line);
			st = SMTP_SUBMIT_PROTOCOL;
			break;
		}
		int this_code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');

		if (i > 0 && this_code != code) {
			err_printf(err, errlen, "reply code changed inside a reply: \"%.80s\"",
				   line);
			st = SMTP_SUBMIT_PROTOCOL;
			break;
		}
		code = this_code;
		if (keywords && i > 0 && len > 4)
			smtp_ehlo_keyword(c, line + 4);
		/* The text a user sees: the last line, control characters as '?'. */
		size_t k = len < sizeof(r->text) - 1 ? len : sizeof(r->text) - 1;

		for (size_t j = 0; j < k; j++) {
			unsigned char ch = (unsigned char)line[j];

			r->text[j] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
		}
		r->text[k] = '\0';
		if (len == 3 || line[3] == ' ') {
			r->code = code;
			break;
		}
		if (i + 1 >= SMTP_REPLY_LINES_MAX) {
			err_printf(err, errlen, "reply of more than %d lines",
				   SMTP_REPLY_LINES_MAX);
			st = SMTP_SUBMIT_PROTOCOL;
			break;
		}
	}
	free(line);
	if (c->trace)
		fflush(c->trace);
	return st;
}

enum smtp_submit_status smtp_submit_reply(struct smtp_submit *c, struct smtp_reply *r, char *err,
					  size_t errlen)
{
	return smtp_reply_read(c, r, false, err, errlen);
}

/* smtp_send_command - format, check and send one command line. */
static enum smtp_submit_status smtp_send_command(struct smtp_submit *c, char *err, size_t errlen,
						 const char *fmt, va_list ap)
{
	enum smtp_submit_status st;
	char *line;

	if (vasprintf(&line, fmt, ap) < 0) {
		err_printf(err, errlen, "out of memory");
		return SMTP_SUBMIT_IO;
	}
	if (strpbrk(line, "\r\n")) {
		/* A command must never smuggle a second one. */
		err_printf(err, errlen, "command holds CR or LF");
		free(line);
		return SMTP_SUBMIT_PROTOCOL;
	}
	if (c->trace) {
		fprintf(c->trace, ">>> %s\n", line);
		fflush(c->trace);
	}
	st = smtp_submit_write(c, line, strlen(line), err, errlen);
	if (st == SMTP_SUBMIT_OK)
		st = smtp_submit_write(c, "\r\n", 2, err, errlen);
	if (st == SMTP_SUBMIT_OK)
		st = smtp_submit_flush(c, err, errlen);
	free(line);
	return st;
}

enum smtp_submit_status smtp_submit_command(struct smtp_submit *c, struct smtp_reply *r, char *err,
					    size_t errlen, const char *fmt, ...)
{
	enum smtp_submit_status st;
	va_list ap;

	va_start(ap, fmt);
	st = smtp_send_command(c, err, errlen, fmt, ap);
	va_end(ap);
	if (st != SMTP_SUBMIT_OK)
		return st;
	return smtp_reply_read(c, r, false, err, errlen);
}

/* smtp_command_kw - smtp_submit_command() whose reply lists EHLO keywords. */
static enum smtp_submit_status smtp_command_kw(struct smtp_submit *c, struct smtp_reply *r,
					       char *err, size_t errlen, const char *fmt, ...)
{
	enum smtp_submit_status st;
	va_list ap;

	va_start(ap, fmt);
	st = smtp_send_command(c, err, errlen, fmt, ap);
	va_end(ap);
	if (st != SMTP_SUBMIT_OK)
		return st;
	return smtp_reply_read(c, r, true, err, errlen);
}

enum smtp_submit_status smtp_submit_ehlo(struct smtp_submit *c, const char *name,
					 struct smtp_reply *r, char *err, size_t errlen)
{
	enum smtp_submit_status st;

	c->ext = 0;
	st = smtp_command_kw(c, r, err, errlen, "EHLO %s", name);
	if (st != SMTP_SUBMIT_OK)
		return st;
	if (r->code / 100 == 2)
		return SMTP_SUBMIT_OK;
	c->ext = 0;
	if (r->code / 100 != 5)
		return SMTP_SUBMIT_OK;
	return smtp_submit_command(c, r, err, errlen, "HELO %s", name);
}

unsigned smtp_submit_ext(const struct smtp_submit *c)
{
	return c->ext;
}

/* ---- the DATA encoder ---- */

void smtp_data_init(struct smtp_data *d)
{
	memset(d, 0, sizeof(*d));
	d->bol = true;
}

/* smtp_data_content - one content octet onto the current line. */
static void smtp_data_content(struct smtp_data *d, char ch, struct strbuf *out)
{
	if (d->line_len >= SMTP_DATA_LINE_MAX) {
		strbuf_append(out, "\r\n ", 3);
		d->line_len = 1;
	}
	strbuf_append_char(out, ch);
	d->line_len++;
	d->bol = false;
}

/* smtp_data_dot - write the held-back leading dot, stuffed. */
static void smtp_data_dot(struct smtp_data *d, struct strbuf *out)
{
	strbuf_append(out, "..", 2);
	d->dot = false;
	d->bol = false;
	d->line_len = 1;
}

size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len, bool lone_dot_ends,
		      struct strbuf *out)
{
	size_t i;

	if (d->ended || d->error)
		return 0;
	for (i = 0; i < len; i++) {
		char ch = in[i];

		/* CR LF is a line end like LF, any other CR is bare: either way it goes. */
		if (ch == '\r')
			continue;
		if (ch == '\n') {
			if (d->dot) {
				if (lone_dot_ends) {
					d->dot = false;
					d->ended = true;
					return i + 1;
				}
				smtp_data_dot(d, out);
			}
			strbuf_append(out, "\r\n", 2);
			d->bol = true;
			d->line_len = 0;
			continue;
		}
		if (ch == '\0') {
			d->error = SMTP_DATA_NUL;
			return i;
		}
		if (d->dot) {
			smtp_data_dot(d, out);
		} else if (d->bol && ch == '.') {
			/* Held back until the line shows whether it is a lone ".". */
			d->dot = true;
			continue;
		}
		smtp_data_content(d, ch, out);
	}
	return i;
}

void smtp_data_finish(struct smtp_data *d, bool lone_dot_ends, struct strbuf *out)
{
	/* A dot still held back is a last line "." without its LF. */
	if (d->dot) {
		if (lone_dot_ends)
			d->ended = true;
		else
			smtp_data_dot(d, out);
		d->dot = false;
	}
	if (!d->bol)
		strbuf_append(out, "\r\n", 2);
	strbuf_append(out, ".\r\n", 3);
	d->bol = true;
	d->line_len = 0;
}
