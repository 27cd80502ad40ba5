/*
 * smtp_cmd - parse one SMTP command line (RFC 5321 4.1, with the ESMTP
 * parameters of SIZE, 8BITMIME, BINARYMIME, SMTPUTF8, DSN and AUTH).
 *
 * Called by the smtpserver session state machine (later) once per command
 * line, after it has cut the line at CRLF and bounded its length.  The
 * parser only checks syntax and the parameters allowed by the extensions
 * the session advertised (struct smtp_cmd_opts); whether a verb is
 * allowed now (sequence, STARTTLS done, CHUNKING advertised for BDAT) is
 * the session's business and answered by it (502/503).
 *
 * Pure: no I/O, no allocation, no logging; the cost is linear in the line
 * length.  Arguments that are not copied (HELO/EHLO domain, NOOP/VRFY/
 * HELP string, AUTH mechanism and initial response) point into the line
 * and are valid as long as it is.  Addresses and decoded xtext values are
 * copied into struct smtp_cmd and so are bounded.
 *
 * Every failure is returned, none is fatal.  On failure the reply the
 * server should send is in out->reply_code, out->enhanced and out->text
 * (a fixed text), and a specific reason (printable ASCII, no CR/LF, may
 * quote the client's input only as a verb/keyword of letters and digits)
 * is written into err:
 *
 *   result                   reply  enhanced  when
 *   SMTP_CMD_OK               -      -        parsed
 *   SMTP_CMD_ERR_TOO_LONG     500   5.5.2     len + 2 (CRLF) > line_max
 *   SMTP_CMD_ERR_BAD_CHAR     501   5.5.2     CR, LF or NUL inside the line
 *   SMTP_CMD_ERR_UNKNOWN      500   5.5.2     unknown verb
 *   SMTP_CMD_ERR_SYNTAX       501   5.5.4     bad or missing arguments, bad
 *                                             parameter value, duplicate
 *   SMTP_CMD_ERR_PARAM        555   5.5.4     MAIL/RCPT parameter unknown or
 *                                             its extension not enabled
 *   SMTP_CMD_ERR_ADDRESS      553   5.1.7     MAIL FROM path refused
 *                             553   5.1.3     RCPT TO path refused
 *   SMTP_CMD_ERR_SIZE         552   5.3.4     SIZE over opts->size_limit
 *
 * Checks run in that order (length, characters, verb, then left to right
 * through the arguments); the first failure is reported.
 */
#ifndef ZFARM_SMTP_CMD_H
#define ZFARM_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/address.h"

#define SMTP_CMD_LINE_MAX  512		    /* octets with CRLF, RFC 5321 4.5.3.1.4 */
#define SMTP_CMD_ENVID_MAX 100		    /* xtext characters, RFC 3461 4.4 */
#define SMTP_CMD_ORCPT_MAX 500		    /* decoded octets, RFC 3461 4.2 */
#define SMTP_CMD_ATYPE_MAX 32		    /* ORCPT addr-type (an atom, "rfc822") */
#define SMTP_CMD_AUTH_MAX  ADDRESS_PATH_MAX /* decoded AUTH= value */
#define SMTP_CMD_BDAT_MAX  INT64_MAX	    /* largest BDAT chunk size */

enum smtp_cmd_verb {
	SMTP_CMD_NONE = 0, /* not (yet) known */
	SMTP_CMD_HELO,
	SMTP_CMD_EHLO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_BDAT,
	SMTP_CMD_RSET,
	SMTP_CMD_NOOP,
	SMTP_CMD_QUIT,
	SMTP_CMD_VRFY,
	SMTP_CMD_HELP,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_AUTH,
};

enum smtp_cmd_result {
	SMTP_CMD_OK = 0,
	SMTP_CMD_ERR_TOO_LONG,
	SMTP_CMD_ERR_BAD_CHAR,
	SMTP_CMD_ERR_UNKNOWN,
	SMTP_CMD_ERR_SYNTAX,
	SMTP_CMD_ERR_PARAM,
	SMTP_CMD_ERR_ADDRESS,
	SMTP_CMD_ERR_SIZE,
};

enum smtp_cmd_body {
	SMTP_CMD_BODY_NONE = 0, /* no BODY= given */
	SMTP_CMD_BODY_7BIT,
	SMTP_CMD_BODY_8BITMIME,
	SMTP_CMD_BODY_BINARYMIME,
};

enum smtp_cmd_ret {
	SMTP_CMD_RET_NONE = 0, /* no RET= given */
	SMTP_CMD_RET_FULL,
	SMTP_CMD_RET_HDRS,
};

/* NOTIFY= bits (RFC 3461 4.1); NEVER is never combined with the others. */
#define SMTP_CMD_NOTIFY_NEVER	0x01u
#define SMTP_CMD_NOTIFY_SUCCESS 0x02u
#define SMTP_CMD_NOTIFY_FAILURE 0x04u
#define SMTP_CMD_NOTIFY_DELAY	0x08u

/*
 * What the session advertised.  A parameter whose extension is off is
 * answered 555 like an unknown one.  A NULL opts means all off, no size
 * limit, line_max SMTP_CMD_LINE_MAX.
 */
struct smtp_cmd_opts {
	bool size;	       /* SIZE= (RFC 1870) */
	bool eightbitmime;     /* BODY=7BIT|8BITMIME (RFC 6152) */
	bool smtputf8;	       /* SMTPUTF8 (RFC 6531) */
	bool dsn;	       /* RET= ENVID= NOTIFY= ORCPT= (RFC 3461) */
	bool binarymime;       /* BODY=BINARYMIME (RFC 3030) */
	bool chunking;	       /* BDAT (RFC 3030); informational, see above */
	bool auth;	       /* AUTH= on MAIL (RFC 4954) */
	bool utf8_transaction; /* RCPT: the MAIL FROM carried SMTPUTF8 */
	uint64_t size_limit;   /* SIZE= above this gives 552; 0: no limit */
	size_t line_max;       /* longest line with CRLF; 0: SMTP_CMD_LINE_MAX */
};

/*
 * The parsed command.  Only the fields of out->verb are meaningful; the
 * rest are zero/empty.  After a failure verb is set if the verb was
 * recognised, and reply_code/enhanced/text hold the reply to send.
 */
struct smtp_cmd {
	enum smtp_cmd_verb verb;

	int reply_code;	      /* 0 on success, else 500, 501, 552, 553, 555 */
	const char *enhanced; /* "" on success, else e.g. "5.5.4" */
	const char *text;     /* "" on success, else a fixed reply text */

	/* HELO/EHLO domain or literal, NOOP/VRFY/HELP string, AUTH mechanism */
	const char *arg;
	size_t arg_len;
	/* AUTH initial response (base64 or "="), NULL if none */
	const char *auth_initial;
	size_t auth_initial_len;

	/* MAIL FROM / RCPT TO path, parsed by address_parse_path() */
	struct address addr;

	/* MAIL parameters */
	bool has_size;
	uint64_t size;
	enum smtp_cmd_body body;
	bool smtputf8;
	enum smtp_cmd_ret ret;
	bool has_envid;
	char envid[SMTP_CMD_ENVID_MAX + 1]; /* decoded, printable ASCII */
	bool has_auth;
	bool auth_null;			  /* AUTH=<> */
	char auth[SMTP_CMD_AUTH_MAX + 1]; /* decoded, printable ASCII */

	/* RCPT parameters */
	unsigned notify; /* SMTP_CMD_NOTIFY_* bits, 0 if no NOTIFY= */
	bool has_orcpt;
	char orcpt_type[SMTP_CMD_ATYPE_MAX + 1]; /* as given, e.g. "rfc822" */
	char orcpt[SMTP_CMD_ORCPT_MAX + 1];	 /* decoded, printable ASCII */

	/* BDAT */
	uint64_t chunk_size;
	bool last;
};

/*
 * smtp_cmd_parse - parse the len bytes of line, a command without its
 * CRLF (need not be NUL-terminated).  Fills *out (always: cleared first)
 * and returns SMTP_CMD_OK, or an error class with the reply in out and a
 * reason in err (NUL-terminated, truncated to errlen; err may be NULL
 * when errlen is 0).  opts may be NULL (see struct smtp_cmd_opts).
 */
enum smtp_cmd_result smtp_cmd_parse(const char *line, size_t len, const struct smtp_cmd_opts *opts,
				    struct smtp_cmd *out, char *err, size_t errlen);

/*
 * xtext_decode - check and decode the len bytes of RFC 3461 xtext:
 * characters 33-126 except "+" and "=", and "+" with two upper-case hex
 * digits for any octet.  Writes the decoded octets NUL-terminated to out
 * (which may then hold NULs: use the length).  Returns the decoded
 * length, or -1 if in is not xtext or the result and its NUL do not fit
 * in outlen (out then holds "" when outlen > 0).
 */
int xtext_decode(const char *in, size_t len, char *out, size_t outlen);

/* smtp_cmd_verb_name - "MAIL", "RCPT", ...; "?" for SMTP_CMD_NONE. */
const char *smtp_cmd_verb_name(enum smtp_cmd_verb verb);

#endif
