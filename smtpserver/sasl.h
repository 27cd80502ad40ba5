/*
 * sasl - the server side of the SASL mechanisms PLAIN (RFC 4616) and
 * LOGIN (draft-murchison-sasl-login) as carried by SMTP AUTH (RFC 4954):
 * decode the client's base64 responses into a user name and a password.
 *
 * Called by the smtpserver session: sasl_begin() for "AUTH MECH
 * [initial-response]", then sasl_respond() for each line the client sends
 * after a 334 challenge, until the exchange is DONE (the credentials go
 * to an auth backend) or failed.  Checking the password is not done here.
 *
 * Pure: no I/O, no allocation, no logging.  Input is bounded by the
 * caller (a response line is at most SASL_LINE_MAX octets); decoded
 * values are copied into the exchange, bounded.  sasl_clear() wipes the
 * password; the session calls it as soon as the backend has it.
 *
 * Outcomes of a step (what the session answers):
 *   SASL_CHALLENGE  334 x->challenge; the client sends one more line
 *   SASL_DONE       the credentials are in x->user and x->pass
 *   SASL_CANCEL     the client sent "*": 501 5.7.0 Authentication aborted
 *   SASL_MALFORMED  not base64: 501 5.5.2 Cannot decode response
 *   SASL_INVALID    decoded, but not credentials this server takes (no
 *                   NUL separators, an authorization identity other than
 *                   the user, empty, too long, control characters):
 *                   answered like a wrong password, 535 5.7.8
 */
#ifndef ZFARM_SASL_H
#define ZFARM_SASL_H

#include <stdbool.h>
#include <stddef.h>

#define SASL_LINE_MAX 12288 /* octets of a response line with CRLF (RFC 4954 4) */
#define SASL_USER_MAX 255   /* octets of a user name */
#define SASL_PASS_MAX 1024  /* octets of a password */

enum sasl_mech {
	SASL_MECH_NONE = 0,
	SASL_MECH_PLAIN,
	SASL_MECH_LOGIN,
};

enum sasl_step {
	SASL_CHALLENGE,
	SASL_DONE,
	SASL_CANCEL,
	SASL_MALFORMED,
	SASL_INVALID,
};

struct sasl_exchange {
	enum sasl_mech mech;
	unsigned stage;		/* responses taken so far */
	const char *challenge;	/* base64 text after "334 " (static) */
	char user[SASL_USER_MAX + 1];
	char pass[SASL_PASS_MAX + 1];
};

/* The mechanisms offered, for "250-AUTH ...". */
#define SASL_MECHANISMS "PLAIN LOGIN"

/* sasl_mech_parse - the mechanism named by the len octets of name (any case). */
enum sasl_mech sasl_mech_parse(const char *name, size_t len);

/*
 * sasl_begin - start mech; initial is the AUTH command's initial
 * response (base64, or "=" for an empty one) or NULL when there was none.
 */
enum sasl_step sasl_begin(struct sasl_exchange *x, enum sasl_mech mech, const char *initial,
			  size_t len);

/* sasl_respond - one client line (without CRLF) after a SASL_CHALLENGE. */
enum sasl_step sasl_respond(struct sasl_exchange *x, const char *line, size_t len);

/* sasl_clear - forget the exchange, the password wiped. */
void sasl_clear(struct sasl_exchange *x);

/*
 * base64_decode - strict RFC 4648 base64 (the standard alphabet, padding
 * to a multiple of 4, no blanks) of the len octets of in, into out (cap
 * octets).  Returns the decoded length, or -1 when in is not base64 or
 * out is too small.
 */
long base64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/*
 * base64_encode - the base64 of len octets, NUL-terminated in out; returns
 * its length, or -1 if it does not fit in cap (4 * ceil(len / 3) + 1).
 */
long base64_encode(const unsigned char *in, size_t len, char *out, size_t cap);

#endif
