/*
 * dovecot_auth - the client side of Dovecot's authentication protocol
 * (version 1.2, the one Postfix's smtpd_sasl_type = dovecot speaks), as
 * the "dovecot" auth backend of smtpserver (auth.h).
 *
 * The protocol: lines of tab-separated fields over a unix stream socket.
 *
 *   client: VERSION 1 2 / CPID <pid>
 *   server: VERSION 1 2 / MECH <name> <flags>... / SPID / CUID / COOKIE / DONE
 *   client: AUTH <id> PLAIN service=smtp nologin lip=.. rip=.. [secured] resp=<base64>
 *   server: OK <id> user=<name> ...  |  FAIL <id> [code=temp_fail] [reason=..] ...
 *           |  CONT <id> <b64>
 *
 * Values are tab-escaped: \001 followed by '1', 't', 'r', 'n' (or 'l')
 * or '0' stands for \001, TAB, CR, LF or NUL; any other letter for itself.
 * A temporary failure is "code=temp_fail" (Dovecot 2.3) or "temp"
 * (older).  An OK with "nologin" or "proxy" means the password was right
 * but the user must not be let in: it counts as a failure (as Dovecot's
 * protocol document requires of clients).  A user= name with blanks or
 * control characters is not taken; the name asked about is used.  Whatever mechanism the SMTP client used, the
 * session hands us a user name and a password and we ask Dovecot with
 * PLAIN; so Dovecot's own mechanism list does not limit ours, but it must
 * offer PLAIN.
 *
 * One connection per process, opened at the first request, shared by all
 * sessions (requests carry ids), opened again after it broke.  While the
 * server cannot be reached, does not answer within the timeout, breaks
 * the protocol or is of another major version, requests get
 * AUTH_TEMPFAIL (logged once per connection attempt).  Lines are at most
 * DOVECOT_AUTH_LINE_MAX octets.
 *
 * dovecot_auth_parse() and dovecot_auth_format() are pure (unit-tested);
 * the rest lives on libevent callbacks.
 */
#ifndef ZFARM_DOVECOT_AUTH_H
#define ZFARM_DOVECOT_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "smtpserver/auth.h"

#define DOVECOT_AUTH_LINE_MAX	16384
#define DOVECOT_AUTH_TIMEOUT_MS 30000 /* for an answer to a request */

enum dovecot_auth_type {
	DOVECOT_UNKNOWN = 0, /* a line we do not know: ignored */
	DOVECOT_VERSION,
	DOVECOT_MECH,
	DOVECOT_SPID,
	DOVECOT_CUID,
	DOVECOT_COOKIE,
	DOVECOT_DONE,
	DOVECOT_OK,
	DOVECOT_CONT,
	DOVECOT_FAIL,
};

/* One line from the server, parsed.  Strings are unescaped and bounded. */
struct dovecot_auth_reply {
	enum dovecot_auth_type type;
	unsigned major, minor;	/* VERSION */
	char mech[32];		/* MECH: the name, upper case */
	bool plaintext;		/* MECH: has the "plaintext" flag */
	unsigned long id;	/* OK, CONT, FAIL */
	char user[256];		/* OK, FAIL: user= ("" if none) */
	char reason[256];	/* FAIL: reason= ("" if none) */
	bool temp;		/* FAIL: temp or code=temp_fail (a temporary failure) */
	bool nologin;		/* OK: nologin or proxy (not to be let in) */
};

/*
 * dovecot_auth_parse - parse the len octets of line (without its LF).
 * Returns 0, or -1 with a reason for a malformed line of a known type
 * (a missing or bad id, a VERSION without numbers).
 */
int dovecot_auth_parse(const char *line, size_t len, struct dovecot_auth_reply *r, char *err,
		       size_t errlen);

/*
 * dovecot_auth_format - the AUTH line (with its LF) asking about req's
 * user and password under id, NUL-terminated in buf.  Returns its length,
 * or -1 if it does not fit in cap.
 */
long dovecot_auth_format(char *buf, size_t cap, unsigned long id, const struct auth_request *req);

/* The backend (auth.c's table): path is the socket. */
extern const struct auth_backend_ops dovecot_auth_backend;

#endif
