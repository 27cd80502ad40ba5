/* address - RFC 5321 paths and mailboxes: parse, check, canonicalise; see address.h. */
#include "common/address.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ADDRESS_LABEL_MAX 63
/* Longest address literal text looked at: "IPv6:" plus 45 for the address. */
#define ADDRESS_LITERAL_MAX 64

/*
 * Parse state.  The scan window [0, end) is the input cut one byte past
 * the longest path we accept, so no input costs more than 257 steps and
 * the fixed buffers below cannot overflow (only fail_8bit looks up to 3
 * bytes further, to tell a cut UTF-8 character from a malformed one).
 * Running into the end of a cut window (end < len) means the address is
 * too long, whatever rule the parser was checking at that moment: fail()
 * reports it so.
 */
struct cursor {
	const unsigned char *s;
	size_t len;   /* bytes the caller gave */
	size_t end;   /* scan window: min(len, limit + 1) */
	size_t limit; /* longest path (bracketed) or mailbox (bare) */
	size_t pos;
	unsigned flags;
	bool bracketed;
	char *err;
	size_t errlen;
};

/* A cursor over all len bytes of s (no cut window, no brackets). */
static void cursor_init(struct cursor *c, const char *s, size_t len, unsigned flags, char *err,
			size_t errlen)
{
	c->s = (const unsigned char *)s;
	c->len = len;
	c->end = len;
	c->limit = len;
	c->pos = 0;
	c->flags = flags;
	c->bracketed = false;
	c->err = err;
	c->errlen = errlen;
}

static int peek(const struct cursor *c)
{
	return c->pos < c->end ? c->s[c->pos] : -1;
}

static int fail_length(struct cursor *c)
{
	if (c->bracketed)
		snprintf(c->err, c->errlen, "path longer than %d octets", ADDRESS_PATH_MAX);
	else
		snprintf(c->err, c->errlen, "address longer than %d octets", ADDRESS_MAILBOX_MAX);
	return -1;
}

__attribute__((format(printf, 2, 3))) static int fail(struct cursor *c, const char *fmt, ...)
{
	va_list ap;

	if (c->pos >= c->end && c->end < c->len)
		return fail_length(c);
	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static bool is_digit(int ch)
{
	return ch >= '0' && ch <= '9';
}

static bool is_alnum(int ch)
{
	return is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* atext of RFC 5321 4.1.2 (ASCII part); not locale-dependent like ctype. */
static bool is_atext(int ch)
{
	return is_alnum(ch) || (ch > 0 && ch < 0x80 && strchr("!#$%&'*+-/=?^_`{|}~", ch));
}

static char ascii_lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), 0 if none. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
	unsigned char lo = 0x80, hi = 0xBF;
	size_t n;

	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		n = 3;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		n = 4;
	else
		return 0; /* ASCII, continuation byte, C0/C1 overlong, > U+10FFFF */
	if (p[0] == 0xE0)
		lo = 0xA0; /* overlong */
	else if (p[0] == 0xED)
		hi = 0x9F; /* surrogates */
	else if (p[0] == 0xF0)
		lo = 0x90; /* overlong */
	else if (p[0] == 0xF4)
		hi = 0x8F; /* above U+10FFFF */
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

/* The C1 controls U+0080-U+009F are C2 80 to C2 9F. */
static bool utf8_is_c1(const unsigned char *p)
{
	return p[0] == 0xC2 && p[1] <= 0x9F;
}

/* Length of an acceptable UTF-8 character at the cursor, 0 if none. */
static size_t utf8_at(const struct cursor *c)
{
	const unsigned char *p = c->s + c->pos;
	size_t n;

	if (!(c->flags & ADDRESS_SMTPUTF8) || c->pos >= c->end || *p < 0x80)
		return 0;
	n = utf8_len(p, c->end - c->pos);
	return n && !utf8_is_c1(p) ? n : 0;
}

static int fail_8bit(struct cursor *c, const char *where)
{
	const unsigned char *p = c->s + c->pos;
	size_t n;

	if (!(c->flags & ADDRESS_SMTPUTF8))
		return fail(c, "non-ASCII byte 0x%02X in %s without SMTPUTF8", *p, where);
	n = utf8_len(p, c->len - c->pos);
	if (n == 0)
		return fail(c, "malformed UTF-8 in %s", where);
	if (c->pos + n > c->end)
		return fail_length(c); /* well-formed, but cut by the window */
	if (utf8_is_c1(p))
		return fail(c, "control character U+%04X in %s", p[1], where);
	return fail(c, "non-ASCII character in %s", where);
}

/* Say what is wrong with the byte at the cursor, which may not be in where. */
static int fail_char(struct cursor *c, const char *where)
{
	int ch = peek(c);

	if (ch < 0 && c->bracketed)
		return fail(c, "missing '>' at end of path");
	if (ch < 0)
		return fail(c, "unexpected end of address");
	/* "<a@b SIZE=1": the client forgot the ">", not a space in the domain */
	if (ch == ' ' && c->bracketed && !memchr(c->s + c->pos, '>', c->end - c->pos))
		return fail(c, "missing '>' at end of path");
	if (ch >= 0x80)
		return fail_8bit(c, where);
	if (ch == '\0')
		return fail(c, "NUL byte in %s", where);
	if (ch == '\r')
		return fail(c, "CR in %s", where);
	if (ch == '\n')
		return fail(c, "LF in %s", where);
	if (ch == '\t')
		return fail(c, "TAB in %s", where);
	if (ch == 0x7F)
		return fail(c, "DEL in %s", where);
	if (ch < 0x20)
		return fail(c, "control character 0x%02X in %s", (unsigned)ch, where);
	if (ch == ' ')
		return fail(c, "space in %s", where);
	return fail(c, "invalid character '%c' in %s", ch, where);
}

/* True where a mailbox may end: at ">" in brackets, else a space or the end. */
static bool at_mailbox_end(const struct cursor *c)
{
	int ch = peek(c);

	if (c->bracketed)
		return ch == '>';
	return ch < 0 || ch == ' ';
}

/* An empty label: what is at the cursor tells which rule was broken. */
static int fail_empty_label(struct cursor *c, const char *where, bool first)
{
	int ch = peek(c);
	bool stop = ch < 0 || ch == ',' || ch == ':' || at_mailbox_end(c);

	if (ch == '.' && first)
		return fail(c, "%s starts with '.'", where);
	if (ch == '.')
		return fail(c, "consecutive dots in %s", where);
	if (stop && first)
		return fail(c, "empty %s", where);
	if (stop)
		return fail(c, "%s ends with '.'", where);
	return fail_char(c, where);
}

/* Skip one label (RFC 5321 sub-domain, or a U-label); *numeric if all digits. */
static int skip_label(struct cursor *c, const char *where, bool first, bool *numeric)
{
	size_t start = c->pos, n;
	int ch;

	*numeric = true;
	for (;;) {
		ch = peek(c);
		if (is_alnum(ch) || ch == '-')
			n = 1;
		else if ((n = utf8_at(c)) == 0)
			break;
		if (!is_digit(ch))
			*numeric = false;
		c->pos += n;
	}
	if (c->pos == start)
		return fail_empty_label(c, where, first);
	if (c->pos - start > ADDRESS_LABEL_MAX)
		return fail(c, "label longer than %d octets in %s", ADDRESS_LABEL_MAX, where);
	if (c->s[start] == '-')
		return fail(c, "label starting with '-' in %s", where);
	if (c->s[c->pos - 1] == '-')
		return fail(c, "label ending with '-' in %s", where);
	return 0;
}

/* Parse a domain name (not a literal); it ends at the first other byte. */
static int parse_domain_name(struct cursor *c, const char *where)
{
	size_t start = c->pos;
	bool numeric;

	for (;;) {
		if (skip_label(c, where, c->pos == start, &numeric) < 0)
			return -1;
		if (peek(c) != '.')
			break;
		c->pos++;
	}
	if (c->pos - start > ADDRESS_DOMAIN_MAX)
		return fail(c, "%s longer than %d octets", where, ADDRESS_DOMAIN_MAX);
	/* "u@127.0.0.1" must be written "u@[127.0.0.1]"; see address.h */
	if (numeric)
		return fail(c, "all-numeric top-level label in %s", where);
	return 0;
}

static bool ascii_prefix_ci(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++)
		if (ascii_lower(*s) != ascii_lower(*prefix))
			return false;
	return true;
}

/* Check the text between "[" and "]" (printable ASCII only, see caller). */
static int check_literal(struct cursor *c, const char *text)
{
	unsigned char addr[16];

	if (*text == '\0')
		return fail(c, "empty address literal");
	if (ascii_prefix_ci(text, "IPv6:")) {
		if (inet_pton(AF_INET6, text + 5, addr) != 1)
			return fail(c, "bad IPv6 address literal [%s]", text);
		return 0;
	}
	if (strchr(text, ':'))
		return fail(c, "general address literal [%s] not supported", text);
	if (inet_pton(AF_INET, text, addr) != 1)
		return fail(c, "bad IPv4 address literal [%s]", text);
	return 0;
}

static int fail_literal_char(struct cursor *c)
{
	int ch = peek(c);

	if (ch < 0)
		return fail(c, "missing ']' at end of address literal");
	if (ch >= 0x80 && (c->flags & ADDRESS_SMTPUTF8))
		return fail(c, "non-ASCII character in address literal");
	return fail_char(c, "address literal");
}

/* Parse "[...]" at the cursor: an IPv4 or IPv6 address literal. */
static int parse_literal(struct cursor *c)
{
	char text[ADDRESS_LITERAL_MAX + 1];
	size_t n = 0;
	int ch;

	c->pos++; /* "[" */
	while ((ch = peek(c)) != ']') {
		/* dcontent = %d33-90 / %d94-126: printable except "[", "\", "]" */
		if (ch < 33 || ch > 126 || ch == '[' || ch == '\\')
			return fail_literal_char(c);
		if (n == ADDRESS_LITERAL_MAX)
			return fail(c, "address literal longer than %d octets",
				    ADDRESS_LITERAL_MAX);
		text[n++] = (char)ch;
		c->pos++;
	}
	c->pos++;
	text[n] = '\0';
	return check_literal(c, text);
}

/* Parse the domain after "@" up to the end of the mailbox, into out. */
static int parse_domain_part(struct cursor *c, struct address *out)
{
	size_t start = c->pos, n;
	int r;

	out->literal_domain = peek(c) == '[';
	r = out->literal_domain ? parse_literal(c) : parse_domain_name(c, "domain");
	if (r < 0)
		return -1;
	if (!at_mailbox_end(c))
		return fail_char(c, "domain");
	n = c->pos - start;
	if (n > ADDRESS_DOMAIN_MAX) /* cannot happen: names are checked, literals short */
		return fail(c, "domain longer than %d octets", ADDRESS_DOMAIN_MAX);
	memcpy(out->domain, c->s + start, n);
	out->domain[n] = '\0';
	return 0;
}

/* Skip a run of atext (and UTF-8 with SMTPUTF8); returns the bytes skipped. */
static size_t skip_atext(struct cursor *c)
{
	size_t start = c->pos, n;

	for (;;) {
		if (is_atext(peek(c)))
			n = 1;
		else if ((n = utf8_at(c)) == 0)
			return c->pos - start;
		c->pos += n;
	}
}

static int fail_empty_atom(struct cursor *c, bool first)
{
	int ch = peek(c);

	if (ch == '.' && first)
		return fail(c, "local part starts with '.'");
	if (ch == '.')
		return fail(c, "consecutive dots in local part");
	if (!first && (ch == '@' || at_mailbox_end(c)))
		return fail(c, "local part ends with '.'");
	return fail_char(c, "local part");
}

/* Dot-string = Atom *("." Atom): already canonical, copied as is. */
static int parse_dot_local(struct cursor *c, struct address *out)
{
	size_t start = c->pos, n;

	for (;;) {
		if (skip_atext(c) == 0)
			return fail_empty_atom(c, c->pos == start);
		if (peek(c) != '.')
			break;
		c->pos++;
	}
	n = c->pos - start;
	if (n > ADDRESS_LOCAL_MAX)
		return fail(c, "local part longer than %d octets", ADDRESS_LOCAL_MAX);
	memcpy(out->local, c->s + start, n);
	out->local[n] = '\0';
	return 0;
}

static int fail_quoted_char(struct cursor *c, bool escaped)
{
	int ch = peek(c);

	if (ch < 0)
		return fail(c, "unterminated quoted local part");
	if (escaped && ch >= 0x80 && (c->flags & ADDRESS_SMTPUTF8))
		return fail(c, "non-ASCII character after '\\' in local part");
	return fail_char(c, "quoted local part");
}

/*
 * Quoted-string = DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE; its content,
 * unescaped, goes to raw, which must hold the window (the content is shorter).
 */
static int parse_quoted(struct cursor *c, char *raw, size_t *rawlen)
{
	size_t n = 0, k;
	int ch;

	c->pos++; /* opening quote */
	while ((ch = peek(c)) != '"') {
		if (ch == '\\') {
			c->pos++;
			ch = peek(c);
			if (ch < 0x20 || ch > 0x7E)
				return fail_quoted_char(c, true);
			k = 1;
		} else if (ch >= 0x20 && ch <= 0x7E) {
			k = 1;
		} else if ((k = utf8_at(c)) == 0) {
			return fail_quoted_char(c, false);
		}
		memcpy(raw + n, c->s + c->pos, k);
		n += k;
		c->pos += k;
	}
	c->pos++;
	*rawlen = n;
	return 0;
}

/* Store raw content of a quoted string in canonical form (see address.h). */
static int set_quoted_local(struct cursor *c, const char *raw, size_t n, struct address *out)
{
	size_t need = n + 2, len = 0;

	if (!address_local_needs_quoting(raw, n)) {
		if (n > ADDRESS_LOCAL_MAX)
			return fail(c, "local part longer than %d octets", ADDRESS_LOCAL_MAX);
		memcpy(out->local, raw, n);
		out->local[n] = '\0';
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		need += raw[i] == '"' || raw[i] == '\\';
	if (need > ADDRESS_LOCAL_MAX)
		return fail(c, "local part longer than %d octets", ADDRESS_LOCAL_MAX);
	out->local[len++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (raw[i] == '"' || raw[i] == '\\')
			out->local[len++] = '\\';
		out->local[len++] = raw[i];
	}
	out->local[len++] = '"';
	out->local[len] = '\0';
	out->quoted_local = true;
	return 0;
}

static int parse_local(struct cursor *c, struct address *out)
{
	char raw[ADDRESS_PATH_MAX + 1]; /* > window - 2: "<" and the quote */
	size_t n = 0;
	int ch = peek(c);

	if (ch == '@' || at_mailbox_end(c))
		return fail(c, "missing local part");
	if (ch != '"')
		return parse_dot_local(c, out);
	if (parse_quoted(c, raw, &n) < 0)
		return -1;
	return set_quoted_local(c, raw, n, out);
}

static int parse_mailbox(struct cursor *c, struct address *out)
{
	if (parse_local(c, out) < 0)
		return -1;
	if (peek(c) == '@') {
		c->pos++;
		return parse_domain_part(c, out);
	}
	if (!at_mailbox_end(c))
		return fail_char(c, "local part");
	if (!(c->flags & ADDRESS_ALLOW_NO_DOMAIN))
		return fail(c, "address has no domain");
	return 0;
}

/* A-d-l = At-domain *( "," At-domain ) ":" -- checked and dropped. */
static int parse_route(struct cursor *c, struct address *out)
{
	int ch;

	for (;;) {
		c->pos++; /* "@" */
		if (parse_domain_name(c, "route domain") < 0)
			return -1;
		ch = peek(c);
		if (ch == ':')
			break;
		if (at_mailbox_end(c))
			return fail(c, "missing local part");
		if (ch != ',')
			return fail_char(c, "source route");
		c->pos++;
		if (peek(c) != '@')
			return fail(c, "missing '@' after ',' in source route");
	}
	c->pos++;
	out->had_route = true;
	return 0;
}

static int parse_path(struct cursor *c, struct address *out)
{
	if (c->len == 0)
		return fail(c, "empty address");
	if (!c->bracketed && !(c->flags & ADDRESS_ALLOW_NO_BRACKETS))
		return fail(c, "address must be enclosed in '<' and '>'");
	if (c->bracketed && c->len > 1 && c->s[1] == '>') {
		if (!(c->flags & ADDRESS_ALLOW_NULL))
			return fail(c, "null path <> not allowed here");
		c->pos = 2;
		out->is_null = true;
		return 0;
	}
	c->pos = c->bracketed ? 1 : 0;
	if (peek(c) == '@' && parse_route(c, out) < 0)
		return -1;
	if (parse_mailbox(c, out) < 0)
		return -1;
	if (c->bracketed)
		c->pos++; /* the ">" seen by parse_mailbox */
	if (c->pos > c->limit)
		return fail_length(c);
	return 0;
}

static bool has_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

int address_parse_path(const char *s, size_t len, unsigned flags, struct address *out,
		       size_t *consumed, char *err, size_t errlen)
{
	struct cursor c;
	size_t i;

	cursor_init(&c, s, len, flags, err, errlen);
	c.bracketed = len > 0 && s[0] == '<';
	c.limit = c.bracketed ? ADDRESS_PATH_MAX : ADDRESS_MAILBOX_MAX;
	c.end = len < c.limit + 1 ? len : c.limit + 1;
	memset(out, 0, sizeof(*out));
	if (consumed)
		*consumed = 0;
	if (parse_path(&c, out) < 0) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	for (i = 0; out->domain[i]; i++)
		out->domain_lc[i] = ascii_lower(out->domain[i]);
	out->domain_lc[i] = '\0';
	out->utf8 = has_8bit(out->local) || has_8bit(out->domain);
	if (consumed)
		*consumed = c.pos;
	return 0;
}

int address_parse(const char *s, unsigned flags, struct address *out, char *err, size_t errlen)
{
	size_t len = strlen(s), used;

	if (address_parse_path(s, len, flags, out, &used, err, errlen) < 0)
		return -1;
	if (used == len)
		return 0;
	memset(out, 0, sizeof(*out));
	snprintf(err, errlen, "unexpected text after address");
	return -1;
}

int address_domain_valid(const char *domain, unsigned flags, char *err, size_t errlen)
{
	size_t len = strnlen(domain, ADDRESS_DOMAIN_MAX + 1);
	struct cursor c;
	int r;

	if (len > ADDRESS_DOMAIN_MAX) {
		snprintf(err, errlen, "domain longer than %d octets", ADDRESS_DOMAIN_MAX);
		return -1;
	}
	cursor_init(&c, domain, len, flags, err, errlen);
	r = domain[0] == '[' ? parse_literal(&c) : parse_domain_name(&c, "domain");
	if (r == 0 && c.pos < c.len)
		r = fail_char(&c, "domain");
	return r;
}

int address_format(const struct address *a, char *buf, size_t buflen)
{
	int n;

	if (a->is_null)
		n = snprintf(buf, buflen, "%s", "");
	else if (a->domain[0])
		n = snprintf(buf, buflen, "%s@%s", a->local, a->domain);
	else
		n = snprintf(buf, buflen, "%s", a->local);
	if (n < 0 || (size_t)n >= buflen) {
		if (buflen > 0)
			buf[0] = '\0';
		return -1;
	}
	return n;
}

bool address_local_needs_quoting(const char *local, size_t len)
{
	const unsigned char *p = (const unsigned char *)local;

	if (len == 0 || p[0] == '.' || p[len - 1] == '.')
		return true;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '.' && p[i + 1] == '.') /* i + 1 < len: last is not '.' */
			return true;
		if (p[i] != '.' && p[i] < 0x80 && !is_atext(p[i]))
			return true;
	}
	return false;
}

int address_local_unquote(const char *local, char *buf, size_t buflen)
{
	size_t len = strlen(local), i = 0, n = 0;
	bool quoted = len >= 2 && local[0] == '"' && local[len - 1] == '"';

	if (quoted) {
		i = 1;
		len--;
	}
	for (; i < len; i++) {
		if (quoted && local[i] == '\\' && i + 1 < len)
			i++;
		if (n + 1 >= buflen) {
			if (buflen > 0)
				buf[0] = '\0';
			return -1;
		}
		buf[n++] = local[i];
	}
	if (buflen == 0)
		return -1;
	buf[n] = '\0';
	return (int)n;
}
