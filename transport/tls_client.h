/*
 * tls_client - the OpenSSL side of the smtp transport's STARTTLS: one
 * client context per process (trust anchors, protocol range, cipher
 * grade), one SSL object per connection (SNI, the name the certificate
 * must match), and what a finished handshake gives (protocol, cipher,
 * key bits, how far the server's certificate is trusted).
 *
 * Security levels are Postfix's (smtp_tls_security_level, the values of
 * smtp_tls_policy_maps):
 *   none     never STARTTLS;
 *   may      STARTTLS when offered, no certificate check; a failed TLS
 *            set-up may be retried in clear (the caller decides how);
 *   encrypt  TLS required (never in clear), no certificate check;
 *   verify   TLS required, the chain must lead to a trust anchor
 *            (smtp_tls_CAfile / smtp_tls_CApath, else the system's
 *            default store) and a name in the certificate must match the
 *            MX host name (or the IP address of an [address] nexthop).
 * Levels "may" and below are "opportunistic": they use
 * smtp_tls_protocols and smtp_tls_ciphers; "encrypt" and "verify" are
 * "mandatory": smtp_tls_mandatory_protocols and
 * smtp_tls_mandatory_ciphers.
 *
 * Protocols: Postfix's syntax, a list of ">=V", "<=V", "V" (only these)
 * or "!V" (not this) with V one of SSLv2 SSLv3 TLSv1 TLSv1.1 TLSv1.2
 * TLSv1.3, separated by blanks, commas or colons.  Versions before
 * TLSv1.2 are never enabled, whatever the list says (naming them is
 * allowed so Postfix settings such as "!SSLv2, !SSLv3" load); a list
 * that leaves no version is an error.  Default ">=TLSv1.2".
 * Ciphers: a Postfix grade for TLS 1.2 cipher suites, "medium" (OpenSSL's
 * DEFAULT without anonymous, null, RC4, 3DES or MD5 suites) or "high"
 * (OpenSSL's HIGH with the same exclusions).  TLS 1.3 suites are
 * OpenSSL's defaults, all of them strong.
 *
 * Verification happens during the handshake but never aborts it
 * (SSL_VERIFY_NONE): the result is read afterwards so the caller can
 * log a trusted or untrusted session, and refuse one under "verify"
 * with the precise reason (tls_info.verify_error).
 *
 * Callers: transport/smtp_agent.c (context at start-up, level names),
 * transport/smtp_client.c (an SSL per STARTTLS, the info after the
 * handshake), tests/transport/test_tls_client.c.  Library code: nothing
 * is logged; failures are returned with a reason.  The context is not
 * shared between threads.
 */
#ifndef ZFARM_TRANSPORT_TLS_CLIENT_H
#define ZFARM_TRANSPORT_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct ssl_st; /* OpenSSL's SSL */
struct tls_client;

enum tls_level { TLS_LEV_NONE, TLS_LEV_MAY, TLS_LEV_ENCRYPT, TLS_LEV_VERIFY };

/* tls_level_parse - "none", "may", "encrypt", "verify" (any case); -1 otherwise. */
int tls_level_parse(const char *s, enum tls_level *out);
/* tls_level_name - "none", "may", "encrypt", "verify". */
const char *tls_level_name(enum tls_level level);
/* tls_level_required - encrypt or verify: never deliver in clear. */
bool tls_level_required(enum tls_level level);

struct tls_client_config {
	const char *ca_file;		  /* PEM bundle; NULL/"" none */
	const char *ca_path;		  /* c_rehash directory; NULL/"" none */
	const char *protocols;		  /* opportunistic; NULL/"": ">=TLSv1.2" */
	const char *mandatory_protocols;  /* encrypt, verify; NULL/"": ">=TLSv1.2" */
	const char *ciphers;		  /* "medium" / "high"; NULL/"": medium */
	const char *mandatory_ciphers;	  /* the same for encrypt, verify */
};

/*
 * tls_client_protocols - parse a protocol list (see above) into the
 * lowest and highest version enabled (OpenSSL's TLS1_2_VERSION, ...).
 * -1 + reason: an unknown word, nothing left.
 */
int tls_client_protocols(const char *list, int *min, int *max, char *err, size_t errlen);

/*
 * tls_client_new - the context: settings checked, trust anchors loaded
 * (the system's default store when neither ca_file nor ca_path is
 * given).  NULL + reason (an unreadable CA file, a bad protocol list or
 * cipher grade).
 */
struct tls_client *tls_client_new(const struct tls_client_config *cfg, char *err, size_t errlen);
/* tls_client_free - NULL ok; *tc = NULL.  SSL objects made from it hold their own reference. */
void tls_client_free(struct tls_client **tc);

/*
 * tls_client_ssl - a new client SSL for one connection at this level:
 * SNI host (not sent for an IP address or an empty host), the
 * level's protocol range and ciphers, and under TLS_LEV_VERIFY the name
 * (or IP address) the certificate must match.  The caller owns it
 * (SSL_free, or a bufferevent that frees it).  NULL + reason.
 */
struct ssl_st *tls_client_ssl(struct tls_client *tc, enum tls_level level, const char *host,
			      char *err, size_t errlen);

enum tls_trust {
	TLS_ANONYMOUS, /* no certificate */
	TLS_UNTRUSTED, /* the chain (or the name, under verify) did not verify */
	TLS_TRUSTED,   /* the chain verified, the name was not checked */
	TLS_VERIFIED,  /* the chain and the name verified */
};

/* What a finished handshake gives. */
struct tls_info {
	char version[16]; /* "TLSv1.3" */
	char cipher[64];  /* "TLS_AES_256_GCM_SHA384" */
	int bits;	  /* secret bits of the cipher in use */
	int alg_bits;	  /* bits of the algorithm */
	enum tls_trust trust;
	char verify_error[128]; /* why not trusted/verified; "" otherwise */
	char peer_cn[64];	/* the certificate's subject CN, sanitised; "" none */
};

/*
 * tls_client_info - the session's info after the handshake; name_checked:
 * the SSL was made for TLS_LEV_VERIFY (a verified chain is then
 * TLS_VERIFIED, else TLS_TRUSTED).
 */
void tls_client_info(struct ssl_st *ssl, bool name_checked, struct tls_info *out);

/* tls_trust_name - Postfix's log word: "Anonymous", "Untrusted", "Trusted", "Verified". */
const char *tls_trust_name(enum tls_trust t);

/* tls_client_error_text - OpenSSL's reason for an error code ("wrong version number"). */
void tls_client_error_text(unsigned long e, char *buf, size_t len);

#endif
