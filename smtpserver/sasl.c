/*
 * sasl - see sasl.h.
 */
#include <string.h>
#include <strings.h>

#include "smtpserver/sasl.h"

/* Decoded responses: a full line of base64 fits. */
#define SASL_DECODED_MAX (SASL_LINE_MAX / 4 * 3)

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long base64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	size_t n = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		unsigned pad = 0;

		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)in[i + k];

			if (c == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad > 0) /* "=" then a letter: "ab=c" */
				return -1;
			v[k] = b64_value(c);
			if (v[k] < 0)
				return -1;
		}
		if (n + 3 - pad > cap)
			return -1;
		out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[n++] = (unsigned char)((v[1] & 0xf) << 4 | v[2] >> 2);
		if (pad < 1)
			out[n++] = (unsigned char)((v[2] & 0x3) << 6 | v[3]);
	}
	return (long)n;
}

long base64_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
	size_t n = 0;

	if (cap < (len + 2) / 3 * 4 + 1)
		return -1;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;

		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[n++] = b64[v >> 18 & 63];
		out[n++] = b64[v >> 12 & 63];
		out[n++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
		out[n++] = i + 2 < len ? b64[v & 63] : '=';
	}
	out[n] = '\0';
	return (long)n;
}

enum sasl_mech sasl_mech_parse(const char *name, size_t len)
{
	if (len == 5 && strncasecmp(name, "PLAIN", 5) == 0)
		return SASL_MECH_PLAIN;
	if (len == 5 && strncasecmp(name, "LOGIN", 5) == 0)
		return SASL_MECH_LOGIN;
	return SASL_MECH_NONE;
}

/* A user name or password we take: not empty, fits, no NUL or control characters. */
static bool sasl_value_ok(const unsigned char *p, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return true;
}

static void sasl_set(char *dst, const unsigned char *p, size_t n)
{
	memcpy(dst, p, n);
	dst[n] = '\0';
}

/* RFC 4616: [authzid] NUL authcid NUL passwd. */
static enum sasl_step sasl_plain(struct sasl_exchange *x, const unsigned char *m, size_t n)
{
	const unsigned char *nul1 = memchr(m, '\0', n), *nul2, *user, *pass;
	size_t zlen, ulen, plen;

	if (!nul1)
		return SASL_INVALID;
	nul2 = memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - m));
	if (!nul2)
		return SASL_INVALID;
	zlen = (size_t)(nul1 - m);
	user = nul1 + 1;
	ulen = (size_t)(nul2 - user);
	pass = nul2 + 1;
	plen = n - (size_t)(pass - m);
	if (!sasl_value_ok(user, ulen, SASL_USER_MAX) || !sasl_value_ok(pass, plen, SASL_PASS_MAX))
		return SASL_INVALID;
	/* Acting for someone else (proxy authorization) is not offered. */
	if (zlen > 0 && (zlen != ulen || memcmp(m, user, ulen) != 0))
		return SASL_INVALID;
	sasl_set(x->user, user, ulen);
	sasl_set(x->pass, pass, plen);
	return SASL_DONE;
}

/* One decoded response of the exchange. */
static enum sasl_step sasl_take(struct sasl_exchange *x, const unsigned char *m, size_t n)
{
	x->stage++;
	switch (x->mech) {
	case SASL_MECH_PLAIN:
		return sasl_plain(x, m, n);
	case SASL_MECH_LOGIN:
		if (x->stage == 1) {
			if (!sasl_value_ok(m, n, SASL_USER_MAX))
				return SASL_INVALID;
			sasl_set(x->user, m, n);
			x->challenge = "UGFzc3dvcmQ6"; /* "Password:" */
			return SASL_CHALLENGE;
		}
		if (!sasl_value_ok(m, n, SASL_PASS_MAX))
			return SASL_INVALID;
		sasl_set(x->pass, m, n);
		return SASL_DONE;
	default:
		return SASL_INVALID;
	}
}

/* Decode a response ("=" is the empty initial response) and take it. */
static enum sasl_step sasl_decode_take(struct sasl_exchange *x, const char *line, size_t len,
				       bool initial)
{
	unsigned char buf[SASL_DECODED_MAX];
	enum sasl_step r;
	long n;

	if (initial && len == 1 && line[0] == '=')
		n = 0;
	else if ((n = base64_decode(line, len, buf, sizeof(buf))) < 0)
		return SASL_MALFORMED;
	r = sasl_take(x, buf, (size_t)n);
	explicit_bzero(buf, sizeof(buf));
	return r;
}

enum sasl_step sasl_begin(struct sasl_exchange *x, enum sasl_mech mech, const char *initial,
			  size_t len)
{
	sasl_clear(x);
	x->mech = mech;
	if (mech == SASL_MECH_NONE)
		return SASL_INVALID;
	x->challenge = mech == SASL_MECH_LOGIN ? "VXNlcm5hbWU6" /* "Username:" */ : "";
	if (!initial)
		return SASL_CHALLENGE;
	return sasl_decode_take(x, initial, len, true);
}

enum sasl_step sasl_respond(struct sasl_exchange *x, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*')
		return SASL_CANCEL;
	return sasl_decode_take(x, line, len, false);
}

void sasl_clear(struct sasl_exchange *x)
{
	explicit_bzero(x, sizeof(*x));
	x->mech = SASL_MECH_NONE;
	x->challenge = "";
}
