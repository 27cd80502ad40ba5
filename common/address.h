/*
 * address - RFC 5321 paths and mailboxes: parse, check, canonicalise.
 *
 * Parses the <...> argument of MAIL FROM and RCPT TO (smtpserver, once per
 * command) and the addresses and domains in lookup tables and the config
 * (router, config checks).  Nothing here allocates, logs or exits: each
 * function returns 0/-1 (or a length/-1) and, on failure, writes a short
 * reason into the caller's err buffer (NUL-terminated, truncated to errlen;
 * err may be NULL when errlen is 0).  Reasons are printable ASCII with no
 * CR/LF, e.g. "local part longer than 64 octets", so the SMTP server can
 * send them to the client after a 501 or 553 code.
 *
 * Grammar (RFC 5321 4.1.2, 4.1.3; RFC 6531 with ADDRESS_SMTPUTF8):
 *   path       = "<" [ "@" domain *( ",@" domain ) ":" ] mailbox ">" / "<>"
 *   mailbox    = local-part "@" ( domain / address-literal )
 *   local-part = dot-string / quoted-string
 * Source routes are checked and thrown away (RFC 5321 appendix C: "MUST
 * BE accepted", "SHOULD NOT be used"); route hops must be domain names.
 * Stricter than the grammar on purpose: a domain whose last label is all
 * digits ("u@127.0.0.1") is refused, so a numeric host can only be named
 * as a literal ("u@[127.0.0.1]") and never reaches a resolver as a name;
 * UTF-8 C1 controls (U+0080-U+009F) are refused like C0 controls.
 * General address literals ("[tag:content]") other than IPv6 are refused.
 * IDNA rules for U-labels (allowed code points, NFC, A-label length) are
 * not checked: the 63-octet label limit applies to the UTF-8 octets.
 *
 * Limits (RFC 5321 4.5.3.1): local part 64 octets, domain 255, path 256
 * including "<", ">" and any source route.  A bare address (no brackets)
 * may be 254 octets, what fits in a 256-octet path once bracketed.  The
 * local-part limit is applied to the canonical form (see below), which is
 * the form passed on to the next hop.
 *
 * Canonical form, held by struct address after a successful parse:
 *   - local: a dot-string as given; a quoted string that is a valid
 *     dot-string once unquoted loses its quotes ("joe" -> joe, "\j" -> j);
 *     otherwise it keeps them, with a backslash before '"' and '\' only
 *     ("a\ b" -> "a b").  Case is kept: local parts are case-sensitive.
 *   - domain: exactly as given, case kept (a literal keeps its brackets);
 *     domain_lc is the same with ASCII letters lower-cased, for lookups.
 *   - empty domain: only with ADDRESS_ALLOW_NO_DOMAIN ("<postmaster>").
 * The canonical form is never longer than its input, parses again to
 * itself, and its fields are NUL-terminated, within the limits, and free
 * of C0 controls and DEL; bytes >= 0x80 only with ADDRESS_SMTPUTF8.
 *
 * Relay checks: "%" and "!" are ordinary local-part characters and a
 * quoted "@" stays inside the quoted local part: <u%ext@local> has local
 * u%ext and <"u@ext"@local> has local "u@ext" (quotes kept), both with
 * domain "local".  The domain is always what follows the one unquoted "@".
 *
 * Callers: MAIL FROM parses with ADDRESS_ALLOW_NULL, RCPT TO with
 * ADDRESS_ALLOW_NO_DOMAIN and then accepts an empty domain only when local
 * is "postmaster" in any case (RFC 5321 4.5.1); both add ADDRESS_SMTPUTF8
 * when the transaction asked for it.  Literals are kept as written
 * ("[IPv6:2001:DB8::1]"), so compare them as addresses, not as strings.
 * The cost is bounded whatever len is: at most the first 260 bytes of s
 * are read, nothing is allocated, so it is fine on the per-RCPT hot path.
 */
#ifndef ZFARM_ADDRESS_H
#define ZFARM_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define ADDRESS_LOCAL_MAX   64	/* octets, RFC 5321 4.5.3.1.1 */
#define ADDRESS_DOMAIN_MAX  255 /* octets, RFC 5321 4.5.3.1.2 */
#define ADDRESS_PATH_MAX    256 /* octets with "<>" and route, 4.5.3.1.3 */
#define ADDRESS_MAILBOX_MAX (ADDRESS_PATH_MAX - 2)

#define ADDRESS_LOCAL_SIZE  (ADDRESS_LOCAL_MAX + 1)
#define ADDRESS_DOMAIN_SIZE (ADDRESS_DOMAIN_MAX + 1)
/* A buffer this big always holds address_format() of a parsed address. */
#define ADDRESS_MAILBOX_SIZE (ADDRESS_MAILBOX_MAX + 1)

/* Flags for the parse functions; 0 is strict RFC 5321 without SMTPUTF8. */
#define ADDRESS_ALLOW_NULL	  0x01u /* accept "<>" (MAIL FROM, bounces) */
#define ADDRESS_SMTPUTF8	  0x02u /* accept UTF-8 in local part and domain */
#define ADDRESS_ALLOW_NO_BRACKETS 0x04u /* accept a bare user@domain */
#define ADDRESS_ALLOW_NO_DOMAIN	  0x08u /* accept a local part alone */

/*
 * A parsed address in canonical form (see above).  Transparent: callers
 * read the fields; after a failed parse every field is empty/false.
 */
struct address {
	char local[ADDRESS_LOCAL_SIZE];	     /* "" only for the null path */
	char domain[ADDRESS_DOMAIN_SIZE];    /* as given; "" if none */
	char domain_lc[ADDRESS_DOMAIN_SIZE]; /* domain, ASCII lower-cased */
	bool is_null;			     /* "<>": local and domain are "" */
	bool had_route;			     /* a source route was given and stripped */
	bool quoted_local;		     /* local is a quoted string (in canonical form) */
	bool literal_domain;		     /* domain is "[...]" */
	bool utf8;			     /* local or domain holds bytes >= 0x80 */
};

/*
 * address_parse_path - parse the path at the start of s (len bytes).
 *
 * s is "<...>" or, with ADDRESS_ALLOW_NO_BRACKETS, a bare mailbox, and may
 * go on after it (ESMTP parameters): *consumed (if consumed is not NULL)
 * gets the bytes used, the ">" included; a bare mailbox ends at a space or
 * at len and the space is not consumed.  s need not be NUL-terminated and
 * may hold NULs (refused as part of an address).  Returns 0 with out
 * filled in (err untouched), or -1 with out cleared, *consumed 0 and a
 * reason in err.
 */
int address_parse_path(const char *s, size_t len, unsigned flags, struct address *out,
		       size_t *consumed, char *err, size_t errlen);

/*
 * address_parse - parse all of the NUL-terminated s as one path (or bare
 * mailbox with ADDRESS_ALLOW_NO_BRACKETS); anything after it is an error.
 * Returns 0, or -1 with out cleared and a reason in err.
 */
int address_parse(const char *s, unsigned flags, struct address *out, char *err, size_t errlen);

/*
 * address_format - write "local@domain" ("local" if there is no domain, ""
 * for the null path), without brackets, NUL-terminated.  Returns the
 * length, or -1 if it does not fit in buflen (buf then holds "" when
 * buflen > 0).  ADDRESS_MAILBOX_SIZE is always enough for a parsed address.
 */
int address_format(const struct address *a, char *buf, size_t buflen);

/*
 * address_domain_valid - check that the NUL-terminated domain is a domain
 * name or an address literal as a mailbox would accept it (flags: only
 * ADDRESS_SMTPUTF8 matters).  For config and table checks.  Returns 0, or
 * -1 with a reason in err.
 */
int address_domain_valid(const char *domain, unsigned flags, char *err, size_t errlen);

/*
 * address_local_needs_quoting - true if the len raw (unquoted) bytes of a
 * local part are not a dot-string and so must be sent as a quoted string.
 * Bytes >= 0x80 count as dot-string characters (RFC 6531); whether they
 * are allowed at all is the caller's business.
 */
bool address_local_needs_quoting(const char *local, size_t len);

/*
 * address_local_unquote - write the raw form of a canonical local part
 * (struct address.local): quotes and backslashes removed, so "a\"b" gives
 * a"b (for mailbox names in local delivery).  Returns the length, or -1 if
 * it does not fit in buflen (buf then holds "" when buflen > 0).
 * ADDRESS_LOCAL_SIZE is always enough.
 */
int address_local_unquote(const char *local, char *buf, size_t buflen);

#endif
