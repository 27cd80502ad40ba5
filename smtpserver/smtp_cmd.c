/* smtp_cmd - SMTP command line parser; see smtp_cmd.h. */
#include "smtpserver/smtp_cmd.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* What follows the verb. */
enum smtp_cmd_args {
	ARGS_NONE,     /* nothing */
	ARGS_OPTIONAL, /* [SP string] */
	ARGS_REQUIRED, /* SP string */
	ARGS_SPECIAL,  /* parsed by the verb's own function */
};

struct smtp_cmd_verb_def {
	const char *name;
	enum smtp_cmd_verb verb;
	enum smtp_cmd_args args;
};

/* Indexed by enum smtp_cmd_verb. */
static const struct smtp_cmd_verb_def smtp_cmd_verbs[] = {
    {"?", SMTP_CMD_NONE, ARGS_NONE},
    {"HELO", SMTP_CMD_HELO, ARGS_SPECIAL},
    {"EHLO", SMTP_CMD_EHLO, ARGS_SPECIAL},
    {"MAIL", SMTP_CMD_MAIL, ARGS_SPECIAL},
    {"RCPT", SMTP_CMD_RCPT, ARGS_SPECIAL},
    {"DATA", SMTP_CMD_DATA, ARGS_NONE},
    {"BDAT", SMTP_CMD_BDAT, ARGS_SPECIAL},
    {"RSET", SMTP_CMD_RSET, ARGS_NONE},
    {"NOOP", SMTP_CMD_NOOP, ARGS_OPTIONAL},
    {"QUIT", SMTP_CMD_QUIT, ARGS_NONE},
    {"VRFY", SMTP_CMD_VRFY, ARGS_REQUIRED},
    {"HELP", SMTP_CMD_HELP, ARGS_OPTIONAL},
    {"STARTTLS", SMTP_CMD_STARTTLS, ARGS_NONE},
    {"AUTH", SMTP_CMD_AUTH, ARGS_SPECIAL},
};

#define SMTP_CMD_NVERBS (sizeof(smtp_cmd_verbs) / sizeof(smtp_cmd_verbs[0]))

/* Reply per result, indexed by enum smtp_cmd_result. */
static const struct {
	int code;
	const char *enhanced;
	const char *text;
} smtp_cmd_replies[] = {
    {0, "", ""},
    {500, "5.5.2", "Line too long"},
    {501, "5.5.2", "Invalid character in command line"},
    {500, "5.5.2", "Command unrecognized"},
    {501, "5.5.4", "Syntax error in parameters or arguments"},
    {555, "5.5.4", "Parameter not recognized or not implemented"},
    {553, "5.1.3", "Bad address syntax"},
    {552, "5.3.4", "Message size exceeds fixed maximum message size"},
};

/* A parse in progress: the rest of the line, the result and the reason. */
struct smtp_cmd_ctx {
	const char *p;	 /* next byte */
	const char *end; /* one past the last byte */
	const struct smtp_cmd_opts *opts;
	struct smtp_cmd *out;
	char *err;
	size_t errlen;
};

static const struct smtp_cmd_opts smtp_cmd_no_opts;

__attribute__((format(printf, 3, 4))) static enum smtp_cmd_result
smtp_cmd_fail(struct smtp_cmd_ctx *c, enum smtp_cmd_result r, const char *fmt, ...)
{
	va_list ap;

	if (c->err != NULL && c->errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int smtp_cmd_upper(int ch)
{
	return ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch;
}

static bool smtp_cmd_isdigit(int ch)
{
	return ch >= '0' && ch <= '9';
}

static bool smtp_cmd_isalnum(int ch)
{
	ch = smtp_cmd_upper(ch);
	return smtp_cmd_isdigit(ch) || (ch >= 'A' && ch <= 'Z');
}

/* Case-insensitive: do the n bytes at s equal the NUL-terminated word? */
static bool smtp_cmd_eq(const char *s, size_t n, const char *word)
{
	size_t i;

	if (strlen(word) != n)
		return false;
	for (i = 0; i < n; i++)
		if (smtp_cmd_upper((unsigned char)s[i]) != word[i])
			return false;
	return true;
}

/* Case-insensitive prefix match; advances c->p past it on success. */
static bool smtp_cmd_skip(struct smtp_cmd_ctx *c, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(c->end - c->p) < n || !smtp_cmd_eq(c->p, n, word))
		return false;
	c->p += n;
	return true;
}

/* Decimal digits only, no sign; -1 if empty, not digits or over max. */
static int smtp_cmd_number(const char *s, size_t n, uint64_t max, uint64_t *val)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned d;

		if (!smtp_cmd_isdigit((unsigned char)s[i]))
			return -1;
		d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*val = v;
	return 0;
}

int xtext_decode(const char *in, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (len > INT_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		unsigned char byte;

		if (ch == '+') {
			const char *hi, *lo;

			if (len - i < 3 || in[i + 1] == '\0' || in[i + 2] == '\0')
				goto bad;
			hi = strchr(hex, in[i + 1]);
			lo = strchr(hex, in[i + 2]);
			if (hi == NULL || lo == NULL)
				goto bad;
			byte = (unsigned char)((hi - hex) << 4 | (lo - hex));
			i += 2;
		} else if (ch >= 33 && ch <= 126 && ch != '=') {
			byte = ch;
		} else {
			goto bad;
		}
		if (o + 1 >= outlen)
			goto bad;
		out[o++] = (char)byte;
	}
	out[o] = '\0';
	return (int)o;
bad:
	out[0] = '\0';
	return -1;
}

/* Decode an xtext value that must come out as printable ASCII (32-126). */
static int smtp_cmd_xtext_printable(const char *in, size_t len, char *out, size_t outlen)
{
	int n = xtext_decode(in, len, out, outlen);
	int i;

	if (n < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if ((unsigned char)out[i] < 32 || (unsigned char)out[i] > 126) {
			out[0] = '\0';
			return -1;
		}
	}
	return n;
}

/* HELO domain / EHLO domain or address literal. */
static enum smtp_cmd_result smtp_cmd_helo(struct smtp_cmd_ctx *c, bool ehlo)
{
	char domain[ADDRESS_DOMAIN_SIZE];
	char why[128];
	size_t n;

	if (c->p == c->end || *c->p != ' ' || c->end - c->p < 2)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "%s needs a domain",
				     ehlo ? "EHLO" : "HELO");
	c->p++;
	n = (size_t)(c->end - c->p);
	if (memchr(c->p, ' ', n) != NULL)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "%s takes one argument",
				     ehlo ? "EHLO" : "HELO");
	if (n > ADDRESS_DOMAIN_MAX)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "domain longer than %d octets",
				     ADDRESS_DOMAIN_MAX);
	if (!ehlo && *c->p == '[')
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
				     "HELO needs a domain name, use EHLO for a literal");
	memcpy(domain, c->p, n);
	domain[n] = '\0';
	if (address_domain_valid(domain, 0, why, sizeof(why)) < 0)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "bad domain: %s", why);
	c->out->arg = c->p;
	c->out->arg_len = n;
	return SMTP_CMD_OK;
}

/* BDAT SP chunk-size [SP "LAST"] (RFC 3030). */
static enum smtp_cmd_result smtp_cmd_bdat(struct smtp_cmd_ctx *c)
{
	const char *sp;
	size_t n;

	if (c->p == c->end || *c->p != ' ')
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "BDAT needs a chunk size");
	c->p++;
	sp = memchr(c->p, ' ', (size_t)(c->end - c->p));
	n = (size_t)((sp != NULL ? sp : c->end) - c->p);
	if (smtp_cmd_number(c->p, n, SMTP_CMD_BDAT_MAX, &c->out->chunk_size) < 0)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
				     "BDAT chunk size must be a decimal number below 2^63");
	if (sp == NULL)
		return SMTP_CMD_OK;
	c->p = sp + 1;
	if (!smtp_cmd_eq(c->p, (size_t)(c->end - c->p), "LAST"))
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "BDAT takes only LAST after the size");
	c->out->last = true;
	return SMTP_CMD_OK;
}

/* AUTH SP mechanism [SP initial-response] (RFC 4954); not checked further. */
static enum smtp_cmd_result smtp_cmd_auth(struct smtp_cmd_ctx *c)
{
	const char *mech, *sp, *q;
	size_t n;

	if (c->p == c->end || *c->p != ' ')
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "AUTH needs a mechanism");
	mech = ++c->p;
	sp = memchr(mech, ' ', (size_t)(c->end - mech));
	n = (size_t)((sp != NULL ? sp : c->end) - mech);
	/* RFC 4422 3.1: 1-20 of upper-case letters, digits, "-" and "_". */
	if (n == 0 || n > 20)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "bad SASL mechanism name");
	for (q = mech; q < mech + n; q++)
		if (!smtp_cmd_isalnum((unsigned char)*q) && *q != '-' && *q != '_')
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "bad SASL mechanism name");
	c->out->arg = mech;
	c->out->arg_len = n;
	if (sp == NULL)
		return SMTP_CMD_OK;
	q = sp + 1;
	if (q == c->end)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "empty initial response");
	if (!(c->end - q == 1 && *q == '=')) {
		const char *r;
		size_t pad = 0;

		for (r = q; r < c->end; r++) {
			unsigned char ch = (unsigned char)*r;

			if (ch == '=') {
				pad++;
			} else if (pad == 0 && (smtp_cmd_isalnum(ch) || ch == '+' || ch == '/')) {
				continue;
			} else {
				return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
						     "initial response is not base64");
			}
		}
		if (pad > 2 || (c->end - q) % 4 != 0)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
					     "initial response is not base64");
	}
	c->out->auth_initial = q;
	c->out->auth_initial_len = (size_t)(c->end - q);
	return SMTP_CMD_OK;
}

/* NOTIFY=NEVER / NOTIFY=SUCCESS,FAILURE,DELAY in any order (RFC 3461 4.1). */
static enum smtp_cmd_result smtp_cmd_notify(struct smtp_cmd_ctx *c, const char *v, size_t vlen)
{
	static const struct {
		const char *name;
		unsigned bit;
	} words[] = {
	    {"NEVER", SMTP_CMD_NOTIFY_NEVER},
	    {"SUCCESS", SMTP_CMD_NOTIFY_SUCCESS},
	    {"FAILURE", SMTP_CMD_NOTIFY_FAILURE},
	    {"DELAY", SMTP_CMD_NOTIFY_DELAY},
	};
	const char *end = v + vlen;
	unsigned bits = 0;

	for (;;) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		size_t n = (size_t)((comma != NULL ? comma : end) - v);
		unsigned bit = 0;
		size_t i;

		for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (smtp_cmd_eq(v, n, words[i].name))
				bit = words[i].bit;
		if (bit == 0)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
					     "NOTIFY takes NEVER or SUCCESS, FAILURE, DELAY");
		if (bits & bit)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "NOTIFY value repeated");
		bits |= bit;
		if ((bits & SMTP_CMD_NOTIFY_NEVER) && bits != SMTP_CMD_NOTIFY_NEVER)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
					     "NOTIFY=NEVER cannot be combined");
		if (comma == NULL)
			break;
		v = comma + 1;
	}
	c->out->notify = bits;
	return SMTP_CMD_OK;
}

/* ORCPT=addr-type;xtext (RFC 3461 4.2). */
static enum smtp_cmd_result smtp_cmd_orcpt(struct smtp_cmd_ctx *c, const char *v, size_t vlen)
{
	static const char atext_specials[] = "!#$%&'*+-/=?^_`{|}~";
	const char *semi = memchr(v, ';', vlen);
	size_t tlen, i;

	if (semi == NULL)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "ORCPT needs addr-type;address");
	tlen = (size_t)(semi - v);
	if (tlen == 0 || tlen > SMTP_CMD_ATYPE_MAX)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "bad ORCPT address type");
	for (i = 0; i < tlen; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (!smtp_cmd_isalnum(ch) && strchr(atext_specials, ch) == NULL)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "bad ORCPT address type");
	}
	if (vlen - tlen - 1 == 0)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "empty ORCPT address");
	if (smtp_cmd_xtext_printable(semi + 1, vlen - tlen - 1, c->out->orcpt,
				     sizeof(c->out->orcpt)) < 0)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
				     "ORCPT address is not xtext or longer than %d octets",
				     SMTP_CMD_ORCPT_MAX);
	memcpy(c->out->orcpt_type, v, tlen);
	c->out->orcpt_type[tlen] = '\0';
	c->out->has_orcpt = true;
	return SMTP_CMD_OK;
}

/* Parameter keywords, as bits to catch repeats. */
enum {
	P_SIZE = 0x01,
	P_BODY = 0x02,
	P_SMTPUTF8 = 0x04,
	P_RET = 0x08,
	P_ENVID = 0x10,
	P_AUTH = 0x20,
	P_NOTIFY = 0x40,
	P_ORCPT = 0x80,
};

static const struct {
	const char *name;
	unsigned bit;
	bool mail; /* a MAIL parameter, else RCPT */
} smtp_cmd_params[] = {
    {"SIZE", P_SIZE, true},	 {"BODY", P_BODY, true},    {"SMTPUTF8", P_SMTPUTF8, true},
    {"RET", P_RET, true},	 {"ENVID", P_ENVID, true},  {"AUTH", P_AUTH, true},
    {"NOTIFY", P_NOTIFY, false}, {"ORCPT", P_ORCPT, false},
};

static bool smtp_cmd_param_enabled(const struct smtp_cmd_opts *o, unsigned bit)
{
	switch (bit) {
	case P_SIZE:
		return o->size;
	case P_BODY:
		return o->eightbitmime || o->binarymime;
	case P_SMTPUTF8:
		return o->smtputf8;
	case P_RET:
	case P_ENVID:
	case P_NOTIFY:
	case P_ORCPT:
		return o->dsn;
	case P_AUTH:
		return o->auth;
	}
	return false;
}

/* One keyword[=value] of MAIL (mail true) or RCPT. */
static enum smtp_cmd_result smtp_cmd_param(struct smtp_cmd_ctx *c, bool mail, const char *kw,
					   size_t kwlen, const char *v, size_t vlen, bool has_v,
					   unsigned *seen)
{
	struct smtp_cmd *out = c->out;
	unsigned bit = 0;
	size_t i;

	for (i = 0; i < sizeof(smtp_cmd_params) / sizeof(smtp_cmd_params[0]); i++)
		if (smtp_cmd_params[i].mail == mail &&
		    smtp_cmd_eq(kw, kwlen, smtp_cmd_params[i].name))
			bit = smtp_cmd_params[i].bit;
	/* The keyword is letters, digits and "-", so safe to quote back. */
	if (bit == 0 || !smtp_cmd_param_enabled(c->opts, bit))
		return smtp_cmd_fail(c, SMTP_CMD_ERR_PARAM, "unsupported %s parameter %.*s",
				     mail ? "MAIL" : "RCPT", (int)(kwlen > 20 ? 20 : kwlen), kw);
	if (*seen & bit)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "parameter %.*s given twice",
				     (int)kwlen, kw);
	*seen |= bit;
	if (bit == P_SMTPUTF8) {
		if (has_v)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "SMTPUTF8 takes no value");
		out->smtputf8 = true;
		return SMTP_CMD_OK;
	}
	if (!has_v)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "parameter %.*s needs a value",
				     (int)kwlen, kw);
	switch (bit) {
	case P_SIZE:
		for (i = 0; i < vlen; i++)
			if (!smtp_cmd_isdigit((unsigned char)v[i]))
				return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
						     "SIZE must be a decimal number");
		/* Too big for 64 bits is over any limit. */
		if (smtp_cmd_number(v, vlen, UINT64_MAX, &out->size) < 0 ||
		    (c->opts->size_limit > 0 && out->size > c->opts->size_limit))
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SIZE,
					     "message size exceeds fixed maximum message size");
		out->has_size = true;
		return SMTP_CMD_OK;
	case P_BODY:
		if (smtp_cmd_eq(v, vlen, "7BIT")) {
			out->body = SMTP_CMD_BODY_7BIT;
		} else if (smtp_cmd_eq(v, vlen, "8BITMIME")) {
			if (!c->opts->eightbitmime)
				return smtp_cmd_fail(c, SMTP_CMD_ERR_PARAM,
						     "8BITMIME not supported");
			out->body = SMTP_CMD_BODY_8BITMIME;
		} else if (smtp_cmd_eq(v, vlen, "BINARYMIME")) {
			if (!c->opts->binarymime)
				return smtp_cmd_fail(c, SMTP_CMD_ERR_PARAM,
						     "BINARYMIME not supported");
			out->body = SMTP_CMD_BODY_BINARYMIME;
		} else {
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "unknown BODY type");
		}
		return SMTP_CMD_OK;
	case P_RET:
		if (smtp_cmd_eq(v, vlen, "FULL"))
			out->ret = SMTP_CMD_RET_FULL;
		else if (smtp_cmd_eq(v, vlen, "HDRS"))
			out->ret = SMTP_CMD_RET_HDRS;
		else
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "RET takes FULL or HDRS");
		return SMTP_CMD_OK;
	case P_ENVID:
		if (vlen > SMTP_CMD_ENVID_MAX ||
		    smtp_cmd_xtext_printable(v, vlen, out->envid, sizeof(out->envid)) < 0)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
					     "ENVID must be xtext of at most %d characters",
					     SMTP_CMD_ENVID_MAX);
		out->has_envid = true;
		return SMTP_CMD_OK;
	case P_AUTH:
		if (vlen == 2 && v[0] == '<' && v[1] == '>') {
			out->auth_null = true;
		} else if (vlen == 0 ||
			   smtp_cmd_xtext_printable(v, vlen, out->auth, sizeof(out->auth)) < 0) {
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
					     "AUTH= takes <> or an xtext mailbox");
		}
		out->has_auth = true;
		return SMTP_CMD_OK;
	case P_NOTIFY:
		return smtp_cmd_notify(c, v, vlen);
	case P_ORCPT:
		return smtp_cmd_orcpt(c, v, vlen);
	}
	return smtp_cmd_fail(c, SMTP_CMD_ERR_PARAM, "unsupported parameter");
}

/* The parameters after a path: *(SP esmtp-keyword ["=" esmtp-value]). */
static enum smtp_cmd_result smtp_cmd_params_parse(struct smtp_cmd_ctx *c, bool mail)
{
	unsigned seen = 0;

	while (c->p < c->end) {
		const char *kw, *v = NULL, *q;
		size_t kwlen, vlen = 0;
		enum smtp_cmd_result r;

		if (*c->p != ' ' || c->end - c->p < 2 || c->p[1] == ' ')
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
					     "parameters must be separated by one space");
		kw = ++c->p;
		while (c->p < c->end && *c->p != ' ' && *c->p != '=')
			c->p++;
		kwlen = (size_t)(c->p - kw);
		/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
		if (kwlen == 0 || !smtp_cmd_isalnum((unsigned char)kw[0]))
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "bad parameter keyword");
		for (q = kw; q < c->p; q++)
			if (!smtp_cmd_isalnum((unsigned char)*q) && *q != '-')
				return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
						     "bad parameter keyword");
		if (c->p < c->end && *c->p == '=') {
			v = ++c->p;
			/* esmtp-value = 1*(%d33-60 / %d62-126), RFC 6531 adds UTF-8 */
			while (c->p < c->end && *c->p != ' ') {
				unsigned char ch = (unsigned char)*c->p;

				if (ch < 33 || ch == '=' || ch == 127)
					return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
							     "bad parameter value");
				c->p++;
			}
			vlen = (size_t)(c->p - v);
			if (vlen == 0)
				return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX,
						     "empty parameter value");
		}
		r = smtp_cmd_param(c, mail, kw, kwlen, v, vlen, v != NULL, &seen);
		if (r != SMTP_CMD_OK)
			return r;
	}
	return SMTP_CMD_OK;
}

static bool smtp_cmd_is_postmaster(const char *local)
{
	return smtp_cmd_eq(local, strlen(local), "POSTMASTER");
}

/* MAIL FROM:<path> [params] / RCPT TO:<path> [params]. */
static enum smtp_cmd_result smtp_cmd_mail_rcpt(struct smtp_cmd_ctx *c, bool mail)
{
	const char *what = mail ? " FROM:" : " TO:";
	struct smtp_cmd *out = c->out;
	unsigned flags;
	size_t used = 0;
	const char *path;
	char why[128];
	enum smtp_cmd_result r;

	if (!smtp_cmd_skip(c, what))
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "syntax is %s%s<address>",
				     mail ? "MAIL" : "RCPT", what);
	/* Like Postfix, accept "MAIL FROM: <a@b>": many clients send it. */
	if (c->p < c->end && *c->p == ' ')
		c->p++;
	if (c->p == c->end || *c->p != '<')
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "address must be in angle brackets");
	path = c->p;
	/*
	 * For MAIL, SMTPUTF8 comes after the path: parse the path allowing
	 * UTF-8 to find its end, and again strictly below unless SMTPUTF8
	 * was given, so the reason is address.c's.
	 */
	if (mail)
		flags = ADDRESS_ALLOW_NULL | ADDRESS_SMTPUTF8;
	else
		flags =
		    ADDRESS_ALLOW_NO_DOMAIN | (c->opts->utf8_transaction ? ADDRESS_SMTPUTF8 : 0);
	if (address_parse_path(path, (size_t)(c->end - path), flags, &out->addr, &used, why,
			       sizeof(why)) < 0)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_ADDRESS, "%s", why);
	c->p = path + used;
	r = smtp_cmd_params_parse(c, mail);
	if (r != SMTP_CMD_OK) {
		memset(&out->addr, 0, sizeof(out->addr));
		return r;
	}
	if (mail && !out->smtputf8 && out->addr.utf8 &&
	    address_parse_path(path, used, ADDRESS_ALLOW_NULL, &out->addr, NULL, why, sizeof(why)) <
		0)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_ADDRESS, "%s", why);
	if (!mail && out->addr.domain[0] == '\0' && !smtp_cmd_is_postmaster(out->addr.local)) {
		memset(&out->addr, 0, sizeof(out->addr));
		return smtp_cmd_fail(c, SMTP_CMD_ERR_ADDRESS,
				     "a recipient without a domain must be postmaster");
	}
	return SMTP_CMD_OK;
}

/* [SP string] or SP string: the rest of the line, not empty. */
static enum smtp_cmd_result smtp_cmd_string(struct smtp_cmd_ctx *c, const char *name, bool required)
{
	if (c->p == c->end) {
		if (required)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "%s needs an argument", name);
		return SMTP_CMD_OK;
	}
	if (*c->p != ' ' || c->end - c->p < 2)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "%s: bad argument", name);
	c->out->arg = c->p + 1;
	c->out->arg_len = (size_t)(c->end - c->p - 1);
	return SMTP_CMD_OK;
}

static enum smtp_cmd_result smtp_cmd_dispatch(struct smtp_cmd_ctx *c)
{
	const struct smtp_cmd_verb_def *def = NULL;
	const char *verb = c->p;
	size_t i, n;

	while (c->p < c->end && *c->p != ' ')
		c->p++;
	n = (size_t)(c->p - verb);
	for (i = 1; i < SMTP_CMD_NVERBS; i++)
		if (smtp_cmd_eq(verb, n, smtp_cmd_verbs[i].name))
			def = &smtp_cmd_verbs[i];
	if (def == NULL)
		return smtp_cmd_fail(c, SMTP_CMD_ERR_UNKNOWN, "unknown command");
	c->out->verb = def->verb;
	switch (def->verb) {
	case SMTP_CMD_HELO:
		return smtp_cmd_helo(c, false);
	case SMTP_CMD_EHLO:
		return smtp_cmd_helo(c, true);
	case SMTP_CMD_MAIL:
		return smtp_cmd_mail_rcpt(c, true);
	case SMTP_CMD_RCPT:
		return smtp_cmd_mail_rcpt(c, false);
	case SMTP_CMD_BDAT:
		return smtp_cmd_bdat(c);
	case SMTP_CMD_AUTH:
		return smtp_cmd_auth(c);
	default:
		break;
	}
	switch (def->args) {
	case ARGS_NONE:
		if (c->p != c->end)
			return smtp_cmd_fail(c, SMTP_CMD_ERR_SYNTAX, "%s takes no arguments",
					     def->name);
		return SMTP_CMD_OK;
	case ARGS_OPTIONAL:
		return smtp_cmd_string(c, def->name, false);
	default:
		return smtp_cmd_string(c, def->name, true);
	}
}

enum smtp_cmd_result smtp_cmd_parse(const char *line, size_t len, const struct smtp_cmd_opts *opts,
				    struct smtp_cmd *out, char *err, size_t errlen)
{
	struct smtp_cmd_ctx c = {
	    .p = line,
	    .end = line + len,
	    .opts = opts != NULL ? opts : &smtp_cmd_no_opts,
	    .out = out,
	    .err = err,
	    .errlen = errlen,
	};
	size_t line_max = c.opts->line_max != 0 ? c.opts->line_max : SMTP_CMD_LINE_MAX;
	enum smtp_cmd_result r;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (len > line_max || line_max - len < 2) {
		r = smtp_cmd_fail(&c, SMTP_CMD_ERR_TOO_LONG, "line longer than %zu octets",
				  line_max);
		goto done;
	}
	for (i = 0; i < len; i++) {
		if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0') {
			r = smtp_cmd_fail(&c, SMTP_CMD_ERR_BAD_CHAR, "%s in command line",
					  line[i] == '\r'   ? "bare CR"
					  : line[i] == '\n' ? "bare LF"
							    : "NUL");
			goto done;
		}
	}
	r = smtp_cmd_dispatch(&c);
done:
	if (r != SMTP_CMD_OK) {
		enum smtp_cmd_verb verb = out->verb;

		memset(out, 0, sizeof(*out));
		out->verb = verb;
	}
	out->reply_code = smtp_cmd_replies[r].code;
	out->enhanced = smtp_cmd_replies[r].enhanced;
	out->text = smtp_cmd_replies[r].text;
	if (r == SMTP_CMD_ERR_ADDRESS && out->verb == SMTP_CMD_MAIL)
		out->enhanced = "5.1.7";
	return r;
}

const char *smtp_cmd_verb_name(enum smtp_cmd_verb verb)
{
	if ((size_t)verb >= SMTP_CMD_NVERBS)
		return "?";
	return smtp_cmd_verbs[verb].name;
}
