/*
 * tls_server - the server side of TLS: one OpenSSL context built from a
 * certificate, a key and a protocol/cipher policy, and libevent
 * bufferevents that speak TLS on an accepted socket.
 *
 * Knows nothing of mail: smtpserver uses it for STARTTLS (RFC 3207) and
 * for implicit TLS (RFC 8314), but any server could.  Called by smtpd.c
 * (tls_server_new at start-up, where a failure is fatal) and by the
 * session (tls_server_bev_new for each TLS session, tls_server_describe
 * for logs and the Received: header).
 *
 * The policy: TLS 1.2 at least (never SSL or TLS 1.0/1.1, whatever the
 * protocol string says), no compression, no renegotiation, the server's
 * cipher order, ECDHE/DHE groups chosen by OpenSSL.  No client
 * certificates are requested.
 *
 * Certificate renewal: tls_server_ready() and tls_server_bev_new() first
 * look at the certificate and key files (two stat calls) and, when either
 * changed since the context was built, build a new context from them;
 * sessions under way keep the old one (OpenSSL counts references).  A
 * new pair that does not load (a key that does not match, a half-written
 * file) is reported once through *warn and the old context stays until
 * the files change again.  So a renewed certificate is served without any
 * reload; other parameters change with the process (a farmd reload with a
 * changed config starts new children).
 *
 * Files that do not load at all (missing, unreadable, not matching) are
 * not fatal: the server exists without a context, tls_server_ready() says
 * false (the caller offers no TLS) and the files are tried again whenever
 * they change, so fixing them needs no restart.  Only a bad protocol or
 * cipher policy (the configuration itself) fails tls_server_new().
 *
 * Errors are returned with a reason (the OpenSSL error text included);
 * nothing here logs or exits.  Not thread-safe: one event loop thread.
 */
#ifndef ZFARM_TLS_SERVER_H
#define ZFARM_TLS_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct event_base;
struct bufferevent;
struct tls_server;

#define TLS_SERVER_DEFAULT_PROTOCOLS ">=TLSv1.2"
/* TLS 1.2 suites: AEAD with forward secrecy first, no anonymous, export, RC4, 3DES or MD5. */
#define TLS_SERVER_DEFAULT_CIPHERLIST                                                              \
	"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:DHE+AES:HIGH:"           \
	"!aNULL:!eNULL:!MD5:!RC4:!3DES:!DES:!SEED:!IDEA:!CAMELLIA:!ARIA:!PSK:!SRP:!DSS"
/* TLS 1.3 suites: OpenSSL's default set. */
#define TLS_SERVER_DEFAULT_CIPHERSUITES                                                            \
	"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"

struct tls_server_params {
	const char *cert_file;	  /* PEM: the certificate, then its chain */
	const char *key_file;	  /* PEM private key; NULL or "": in cert_file */
	const char *protocols;	  /* see tls_server_protocols(); NULL: the default */
	const char *cipherlist;	  /* OpenSSL cipher list (TLS 1.2); NULL: the default */
	const char *ciphersuites; /* OpenSSL TLS 1.3 suites; NULL: the default */
};

/*
 * tls_server_protocols - parse a protocol policy into OpenSSL versions.
 * Accepted: ">=TLSv1.2", ">=TLSv1.3", "<=TLSv1.2" (Postfix 3.6 syntax),
 * or Postfix's older exclusion list ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1",
 * comma or blank separated), or "" (the default).  Versions below TLS 1.2
 * are never enabled; a policy that leaves nothing is an error.  Sets
 * *min and *max (TLS1_2_VERSION or TLS1_3_VERSION).
 */
int tls_server_protocols(const char *spec, int *min, int *max, char *err, size_t errlen);

/*
 * tls_server_new - check the policy, load the certificate and key.  NULL
 * with a reason in err for a bad policy; files that do not load give a
 * server that is not ready yet, with the reason in warn.
 */
struct tls_server *tls_server_new(const struct tls_server_params *p, char *warn, size_t warnlen,
				  char *err, size_t errlen);

/*
 * tls_server_ready - can TLS be offered now?  Loads changed files first;
 * a new failure's reason goes to warn (else warn is "").
 */
bool tls_server_ready(struct tls_server *t, char *warn, size_t warnlen);

/* tls_server_free - free *tp (sessions keep their own references); NULL ok. */
void tls_server_free(struct tls_server **tp);

/*
 * tls_server_bev_new - a bufferevent that accepts TLS on fd (consumed in
 * every case: owned by the bufferevent, or gone on failure), handshake
 * pending: BEV_EVENT_CONNECTED comes when it is done, BEV_EVENT_ERROR
 * when it failed.  Freeing the bufferevent frees the TLS state and closes
 * fd.  A certificate that changed on disk is loaded first; if that fails,
 * warn gets the reason once and the old one serves.  Returns NULL with a
 * reason when no TLS state could be made (no certificate loaded: fd is
 * closed).
 */
struct bufferevent *tls_server_bev_new(struct tls_server *t, struct event_base *base, int fd,
				       char *warn, size_t warnlen, char *err, size_t errlen);

/*
 * tls_server_describe - "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
 * (256/256 bits)" for a finished handshake (Postfix's wording).
 */
void tls_server_describe(const SSL *ssl, char *buf, size_t len);

/*
 * tls_server_error - the reason of the last TLS failure of bev (OpenSSL's
 * error queue of that bufferevent, or of the thread), "" when none.
 */
void tls_server_error(struct bufferevent *bev, char *buf, size_t len);

#endif
