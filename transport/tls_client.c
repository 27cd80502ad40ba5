/*
 * tls_client - see tls_client.h.  One SSL_CTX holds what every
 * connection shares (trust anchors, options, the floor of TLS 1.2);
 * what differs between opportunistic and mandatory levels (protocol
 * range, cipher list) is set per SSL, so one context serves both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/xalloc.h"
#include "transport/tls_client.h"

/* TLS 1.2 suites per grade; TLS 1.3 suites are OpenSSL's defaults. */
#define CIPHERS_MEDIUM "DEFAULT:!aNULL:!eNULL:!RC4:!3DES:!MD5"
#define CIPHERS_HIGH   "HIGH:!aNULL:!eNULL:!RC4:!3DES:!MD5"

struct profile {
	int min, max;	     /* protocol versions */
	const char *ciphers; /* one of the grade strings above */
};

struct tls_client {
	SSL_CTX *ctx;
	struct profile opportunistic, mandatory;
};

/* ---- levels ---- */

static const char *const level_names[] = {"none", "may", "encrypt", "verify"};

int tls_level_parse(const char *s, enum tls_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (s && strcasecmp(s, level_names[i]) == 0) {
			*out = (enum tls_level)i;
			return 0;
		}
	}
	return -1;
}

const char *tls_level_name(enum tls_level level)
{
	return (unsigned)level < sizeof(level_names) / sizeof(level_names[0]) ? level_names[level]
									      : "?";
}

bool tls_level_required(enum tls_level level)
{
	return level == TLS_LEV_ENCRYPT || level == TLS_LEV_VERIFY;
}

/* ---- settings ---- */

static const struct {
	const char *name;
	int version; /* 0: before TLS 1.2, never enabled */
	int rank;
} versions[] = {
    {"SSLv2", 0, 0},	       {"SSLv3", 0, 1},		  {"TLSv1", 0, 2},
    {"TLSv1.1", 0, 3},	       {"TLSv1.2", TLS1_2_VERSION, 4}, {"TLSv1.3", TLS1_3_VERSION, 5},
};
#define NVERSIONS (sizeof(versions) / sizeof(versions[0]))

static int version_rank(const char *s, size_t n)
{
	for (size_t i = 0; i < NVERSIONS; i++)
		if (strlen(versions[i].name) == n && strncasecmp(s, versions[i].name, n) == 0)
			return versions[i].rank;
	return -1;
}

int tls_client_protocols(const char *list, int *min, int *max, char *err, size_t errlen)
{
	bool on[NVERSIONS];
	bool any_include = false, include[NVERSIONS];
	const char *p = list && list[0] ? list : ">=TLSv1.2";

	for (size_t i = 0; i < NVERSIONS; i++) {
		on[i] = true;
		include[i] = false;
	}
	while (*p) {
		const char *w;
		size_t n;
		int rank;
		enum { INCLUDE, EXCLUDE, ATLEAST, ATMOST } op = INCLUDE;

		while (*p == ' ' || *p == '\t' || *p == ',' || *p == ':')
			p++;
		if (!*p)
			break;
		if (*p == '!') {
			op = EXCLUDE;
			p++;
		} else if (p[0] == '>' && p[1] == '=') {
			op = ATLEAST;
			p += 2;
		} else if (p[0] == '<' && p[1] == '=') {
			op = ATMOST;
			p += 2;
		}
		w = p;
		while (*p && *p != ' ' && *p != '\t' && *p != ',' && *p != ':')
			p++;
		n = (size_t)(p - w);
		rank = version_rank(w, n);
		if (rank < 0) {
			snprintf(err, errlen, "unknown TLS protocol \"%.*s\" in \"%s\"",
				 (int)(n > 40 ? 40 : n), w, list);
			return -1;
		}
		for (size_t i = 0; i < NVERSIONS; i++) {
			if (op == EXCLUDE && versions[i].rank == rank)
				on[i] = false;
			else if (op == ATLEAST && versions[i].rank < rank)
				on[i] = false;
			else if (op == ATMOST && versions[i].rank > rank)
				on[i] = false;
			else if (op == INCLUDE && versions[i].rank == rank)
				include[i] = any_include = true;
		}
	}
	*min = *max = 0;
	for (size_t i = 0; i < NVERSIONS; i++) {
		if (!on[i] || !versions[i].version || (any_include && !include[i]))
			continue;
		if (!*min)
			*min = versions[i].version;
		*max = versions[i].version;
	}
	if (!*min) {
		snprintf(err, errlen,
			 "TLS protocols \"%s\" leave no version enabled (TLSv1.2 and TLSv1.3 "
			 "are the ones supported)",
			 list);
		return -1;
	}
	return 0;
}

static int grade(const char *name, const char **out, char *err, size_t errlen)
{
	if (!name || !name[0] || strcasecmp(name, "medium") == 0) {
		*out = CIPHERS_MEDIUM;
		return 0;
	}
	if (strcasecmp(name, "high") == 0) {
		*out = CIPHERS_HIGH;
		return 0;
	}
	snprintf(err, errlen, "unknown TLS cipher grade \"%s\" (medium or high)", name);
	return -1;
}

/* ssl_reason - the oldest queued OpenSSL error as text, the queue emptied. */
static void ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e)
		tls_client_error_text(e, buf, len);
	else
		snprintf(buf, len, "unknown OpenSSL error");
	ERR_clear_error();
}

static int profile_set(struct profile *pf, SSL_CTX *ctx, const char *protocols,
		       const char *ciphers, char *err, size_t errlen)
{
	char why[256];

	if (tls_client_protocols(protocols, &pf->min, &pf->max, err, errlen) < 0 ||
	    grade(ciphers, &pf->ciphers, err, errlen) < 0)
		return -1;
	/* check the list against this OpenSSL once, here, not per connection */
	if (SSL_CTX_set_cipher_list(ctx, pf->ciphers) != 1) {
		ssl_reason(why, sizeof(why));
		snprintf(err, errlen, "TLS cipher list \"%s\": %s", pf->ciphers, why);
		return -1;
	}
	return 0;
}

struct tls_client *tls_client_new(const struct tls_client_config *cfg, char *err, size_t errlen)
{
	struct tls_client *tc = xcalloc(1, sizeof(*tc));
	const char *file = cfg->ca_file && cfg->ca_file[0] ? cfg->ca_file : NULL;
	const char *path = cfg->ca_path && cfg->ca_path[0] ? cfg->ca_path : NULL;
	char why[256];

	ERR_clear_error();
	tc->ctx = SSL_CTX_new(TLS_client_method());
	if (!tc->ctx) {
		ssl_reason(why, sizeof(why));
		snprintf(err, errlen, "cannot make a TLS client context: %s", why);
		goto fail;
	}
	if (profile_set(&tc->opportunistic, tc->ctx, cfg->protocols, cfg->ciphers, err, errlen) <
		0 ||
	    profile_set(&tc->mandatory, tc->ctx, cfg->mandatory_protocols, cfg->mandatory_ciphers,
			err, errlen) < 0)
		goto fail;
	SSL_CTX_set_min_proto_version(tc->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(tc->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* verified afterwards (tls_client_info), never a reason to abort the handshake */
	SSL_CTX_set_verify(tc->ctx, SSL_VERIFY_NONE, NULL);
	/* one connection per handshake: no resumption cache to bound */
	SSL_CTX_set_session_cache_mode(tc->ctx, SSL_SESS_CACHE_OFF);
	if (file || path) {
		if (SSL_CTX_load_verify_locations(tc->ctx, file, path) != 1) {
			ssl_reason(why, sizeof(why));
			snprintf(err, errlen, "cannot load the TLS trust anchors %s%s%s: %s",
				 file ? file : "", file && path ? ", " : "", path ? path : "",
				 why);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(tc->ctx) != 1) {
		ssl_reason(why, sizeof(why));
		snprintf(err, errlen, "cannot load the system's TLS trust anchors: %s", why);
		goto fail;
	}
	return tc;
fail:
	tls_client_free(&tc);
	return NULL;
}

void tls_client_free(struct tls_client **tcp)
{
	struct tls_client *tc = tcp ? *tcp : NULL;

	if (!tc)
		return;
	*tcp = NULL;
	SSL_CTX_free(tc->ctx);
	free(tc);
}

/* ---- connections ---- */

static bool is_ip(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

struct ssl_st *tls_client_ssl(struct tls_client *tc, enum tls_level level, const char *host,
			      char *err, size_t errlen)
{
	const struct profile *pf = tls_level_required(level) ? &tc->mandatory : &tc->opportunistic;
	char name[256], why[256];
	size_t n;
	SSL *ssl;

	snprintf(name, sizeof(name), "%s", host ? host : "");
	n = strlen(name);
	if (n > 0 && name[n - 1] == '.') /* a DNS name may come absolute */
		name[n - 1] = '\0';
	ERR_clear_error();
	ssl = SSL_new(tc->ctx);
	if (!ssl) {
		ssl_reason(why, sizeof(why));
		snprintf(err, errlen, "cannot make a TLS connection: %s", why);
		return NULL;
	}
	if (SSL_set_min_proto_version(ssl, pf->min) != 1 ||
	    SSL_set_max_proto_version(ssl, pf->max) != 1 ||
	    SSL_set_cipher_list(ssl, pf->ciphers) != 1)
		goto fail;
	/* SNI carries host names only (RFC 6066 3) */
	if (name[0] && !is_ip(name) && SSL_set_tlsext_host_name(ssl, name) != 1)
		goto fail;
	if (level == TLS_LEV_VERIFY) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

		if (!name[0]) {
			SSL_free(ssl);
			snprintf(err, errlen, "no host name to verify the certificate against");
			return NULL;
		}
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (is_ip(name) ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1
				: X509_VERIFY_PARAM_set1_host(vp, name, 0) != 1)
			goto fail;
	}
	return ssl;
fail:
	ssl_reason(why, sizeof(why));
	snprintf(err, errlen, "cannot set up a TLS connection to %s: %s", name, why);
	SSL_free(ssl);
	return NULL;
}

static void sanitise(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

void tls_client_info(struct ssl_st *ssl, bool name_checked, struct tls_info *out)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	X509 *cert;
	long vr;

	memset(out, 0, sizeof(*out));
	snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(ssl));
	if (c) {
		snprintf(out->cipher, sizeof(out->cipher), "%s", SSL_CIPHER_get_name(c));
		out->bits = SSL_CIPHER_get_bits(c, &out->alg_bits);
	}
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	cert = SSL_get1_peer_certificate(ssl);
#else
	cert = SSL_get_peer_certificate(ssl);
#endif
	if (!cert) {
		out->trust = TLS_ANONYMOUS;
		snprintf(out->verify_error, sizeof(out->verify_error), "no server certificate");
		return;
	}
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out->peer_cn,
				      (int)sizeof(out->peer_cn)) < 0)
		out->peer_cn[0] = '\0';
	sanitise(out->peer_cn);
	X509_free(cert);
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		out->trust = TLS_UNTRUSTED;
		snprintf(out->verify_error, sizeof(out->verify_error), "%s",
			 X509_verify_cert_error_string(vr));
		return;
	}
	out->trust = name_checked ? TLS_VERIFIED : TLS_TRUSTED;
}

const char *tls_trust_name(enum tls_trust t)
{
	switch (t) {
	case TLS_ANONYMOUS:
		return "Anonymous";
	case TLS_UNTRUSTED:
		return "Untrusted";
	case TLS_TRUSTED:
		return "Trusted";
	case TLS_VERIFIED:
		return "Verified";
	}
	return "Untrusted";
}

void tls_client_error_text(unsigned long e, char *buf, size_t len)
{
	const char *r = ERR_reason_error_string(e);

	if (len == 0)
		return;
	if (r)
		snprintf(buf, len, "%s", r);
	else
		ERR_error_string_n(e, buf, len);
}
