/*
 * tls_server - see tls_server.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/xalloc.h"
#include "smtpserver/tls_server.h"

/* What a file looked like when it was loaded: a change of any field reloads. */
struct file_sig {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	int err; /* errno of stat, 0 when it worked */
};

struct tls_server {
	SSL_CTX *ctx;
	char *cert_file, *key_file, *cipherlist, *ciphersuites;
	int min_version, max_version;
	struct file_sig cert_sig, key_sig; /* of the files in ctx */
	struct file_sig bad_cert, bad_key; /* of a pair that failed to load */
	bool bad;			   /* bad_* are set */
};

/* ---- protocol policy ---- */

/* Protocol names, oldest first; index 4 is TLS 1.2, 5 is TLS 1.3. */
static const char *const proto_names[] = {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2",
					  "TLSv1.3"};
#define PROTO_N	   6
#define PROTO_TLS12 4

static int proto_index(const char *s, size_t n)
{
	for (int i = 0; i < PROTO_N; i++)
		if (strlen(proto_names[i]) == n && strncasecmp(s, proto_names[i], n) == 0)
			return i;
	return -1;
}

int tls_server_protocols(const char *spec, int *min, int *max, char *err, size_t errlen)
{
	bool on[PROTO_N] = {false, false, false, false, true, true};
	bool include[PROTO_N] = {false}, any_include = false;
	const char *p = spec ? spec : "";
	int lo = -1, hi = -1;

	while (*p) {
		const char *q;
		size_t n;
		int op = 0, i;

		while (*p == ' ' || *p == '\t' || *p == ',' || *p == ':')
			p++;
		if (!*p)
			break;
		q = p;
		while (*q && *q != ' ' && *q != '\t' && *q != ',' && *q != ':')
			q++;
		n = (size_t)(q - p);
		if (n >= 2 && (p[0] == '>' || p[0] == '<') && p[1] == '=') {
			op = p[0];
			p += 2;
			n -= 2;
		} else if (n >= 1 && p[0] == '!') {
			op = '!';
			p++;
			n--;
		}
		i = proto_index(p, n);
		if (i < 0) {
			snprintf(err, errlen, "unknown protocol \"%.*s\" (SSLv2, SSLv3, TLSv1, "
					      "TLSv1.1, TLSv1.2 or TLSv1.3)",
				 (int)(n > 32 ? 32 : n), p);
			return -1;
		}
		switch (op) {
		case '>':
			lo = i > lo ? i : lo;
			break;
		case '<':
			hi = hi < 0 || i < hi ? i : hi;
			break;
		case '!':
			on[i] = false;
			break;
		default:
			include[i] = true;
			any_include = true;
			break;
		}
		p = q;
	}
	lo = lo < PROTO_TLS12 ? PROTO_TLS12 : lo;
	hi = hi < 0 ? PROTO_N - 1 : hi;
	*min = *max = 0;
	for (int i = PROTO_TLS12; i < PROTO_N; i++) {
		int v = i == PROTO_TLS12 ? TLS1_2_VERSION : TLS1_3_VERSION;

		if (!on[i] || i < lo || i > hi || (any_include && !include[i]))
			continue;
		if (*min == 0)
			*min = v;
		*max = v;
	}
	if (*min == 0) {
		snprintf(err, errlen, "\"%s\" leaves no protocol enabled (TLSv1.2 and TLSv1.3 "
				      "are the only ones offered)",
			 spec);
		return -1;
	}
	return 0;
}

/* ---- errors ---- */

/* The OpenSSL error queue as one line, emptied; "" if it was empty. */
static void ssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t n = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];

		ERR_error_string_n(e, one, sizeof(one));
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "; " : "", one);
	}
}

void tls_server_error(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e;
	size_t n = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	while (bev && (e = bufferevent_get_openssl_error(bev)) != 0) {
		char one[256];

		ERR_error_string_n(e, one, sizeof(one));
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "; " : "", one);
	}
	if (n == 0)
		ssl_errors(buf, len);
}

/* ---- the context ---- */

static void file_sig_of(const char *path, struct file_sig *sig)
{
	struct stat st;

	memset(sig, 0, sizeof(*sig));
	if (stat(path, &st) < 0) {
		sig->err = errno ? errno : EIO;
		return;
	}
	sig->dev = st.st_dev;
	sig->ino = st.st_ino;
	sig->size = st.st_size;
	sig->mtime = st.st_mtim;
	sig->ctime = st.st_ctim;
}

static bool file_sig_eq(const struct file_sig *a, const struct file_sig *b)
{
	return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/*
 * ctx_build - a context from the files as they are now (files false:
 * only the policy, to check it); NULL + reason.
 */
static SSL_CTX *ctx_build(const struct tls_server *t, bool files, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[512];

	if (!ctx) {
		ssl_errors(why, sizeof(why));
		snprintf(err, errlen, "cannot make a TLS context: %s", why);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, t->min_version);
	SSL_CTX_set_max_proto_version(ctx, t->max_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_RENEGOTIATION | SSL_OP_SINGLE_DH_USE |
				     SSL_OP_SINGLE_ECDH_USE);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/*
	 * A client that closes without close_notify (most do after QUIT) ends
	 * the session like a plain EOF; SMTP's QUIT and final dot, not TLS,
	 * say whether a message or session was complete.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	/* Idle sessions give their read and write buffers back (~34 KB each). */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_dh_auto(ctx, 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"zfarm", 5);
	/*
	 * No server-side session cache (up to 20480 sessions a process that
	 * clients could fill); resumption works with tickets, which cost
	 * nothing here (each process has its own ticket key).
	 */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_cipher_list(ctx, t->cipherlist) != 1) {
		ssl_errors(why, sizeof(why));
		snprintf(err, errlen, "bad TLS 1.2 cipher list \"%s\": %s", t->cipherlist, why);
		goto fail;
	}
	if (SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1) {
		ssl_errors(why, sizeof(why));
		snprintf(err, errlen, "bad TLS 1.3 cipher suites \"%s\": %s", t->ciphersuites, why);
		goto fail;
	}
	if (!files)
		return ctx;
	if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
		ssl_errors(why, sizeof(why));
		snprintf(err, errlen, "cannot load the certificate %s: %s", t->cert_file, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();

		ssl_errors(why, sizeof(why));
		if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			snprintf(err, errlen,
				 "the private key %s does not match the certificate %s: %s",
				 t->key_file, t->cert_file, why);
		else
			snprintf(err, errlen, "cannot load the private key %s: %s", t->key_file,
				 why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_errors(why, sizeof(why));
		snprintf(err, errlen, "the private key %s does not match the certificate %s: %s",
			 t->key_file, t->cert_file, why);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static int tls_server_load(struct tls_server *t, char *err, size_t errlen)
{
	struct file_sig cs, ks;
	SSL_CTX *ctx;

	/* Signatures first: a file replaced while we read it is read again next time. */
	file_sig_of(t->cert_file, &cs);
	file_sig_of(t->key_file, &ks);
	ctx = ctx_build(t, true, err, errlen);
	if (!ctx) {
		t->bad_cert = cs;
		t->bad_key = ks;
		t->bad = true;
		return -1;
	}
	SSL_CTX_free(t->ctx);
	t->ctx = ctx;
	t->cert_sig = cs;
	t->key_sig = ks;
	t->bad = false;
	return 0;
}

struct tls_server *tls_server_new(const struct tls_server_params *p, char *warn, size_t warnlen,
				  char *err, size_t errlen)
{
	struct tls_server *t;
	SSL_CTX *check;
	int min, max;

	if (warnlen > 0)
		warn[0] = '\0';
	if (!p->cert_file || !p->cert_file[0]) {
		snprintf(err, errlen, "no certificate file");
		return NULL;
	}
	if (tls_server_protocols(p->protocols ? p->protocols : TLS_SERVER_DEFAULT_PROTOCOLS, &min,
				 &max, err, errlen) < 0)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->min_version = min;
	t->max_version = max;
	t->cert_file = xstrdup(p->cert_file);
	t->key_file = xstrdup(p->key_file && p->key_file[0] ? p->key_file : p->cert_file);
	t->cipherlist = xstrdup(p->cipherlist && p->cipherlist[0] ? p->cipherlist
								  : TLS_SERVER_DEFAULT_CIPHERLIST);
	t->ciphersuites = xstrdup(p->ciphersuites && p->ciphersuites[0]
				      ? p->ciphersuites
				      : TLS_SERVER_DEFAULT_CIPHERSUITES);
	/* The policy is the config's business: wrong is fatal.  The files may come later. */
	check = ctx_build(t, false, err, errlen);
	if (!check) {
		tls_server_free(&t);
		return NULL;
	}
	SSL_CTX_free(check);
	if (tls_server_load(t, warn, warnlen) < 0 && warnlen > 0) {
		char why[1024];

		snprintf(why, sizeof(why), "%s", warn);
		snprintf(warn, warnlen, "%s; no TLS until the files load", why);
	}
	return t;
}

void tls_server_free(struct tls_server **tp)
{
	struct tls_server *t = *tp;

	if (!t)
		return;
	*tp = NULL;
	SSL_CTX_free(t->ctx);
	free(t->cert_file);
	free(t->key_file);
	free(t->cipherlist);
	free(t->ciphersuites);
	free(t);
}

/* tls_server_refresh - reload the files if they changed; -1 + reason once per bad change. */
static int tls_server_refresh(struct tls_server *t, char *err, size_t errlen)
{
	struct file_sig cs, ks;

	file_sig_of(t->cert_file, &cs);
	file_sig_of(t->key_file, &ks);
	if (file_sig_eq(&cs, &t->cert_sig) && file_sig_eq(&ks, &t->key_sig))
		return 0;
	if (t->bad && file_sig_eq(&cs, &t->bad_cert) && file_sig_eq(&ks, &t->bad_key))
		return 0; /* the same broken pair: said so already */
	return tls_server_load(t, err, errlen);
}

bool tls_server_ready(struct tls_server *t, char *warn, size_t warnlen)
{
	char why[1024];

	if (warnlen > 0)
		warn[0] = '\0';
	if (tls_server_refresh(t, why, sizeof(why)) < 0 && warnlen > 0)
		snprintf(warn, warnlen, "%s; %s", why,
			 t->ctx ? "still serving the certificate loaded before"
				: "no TLS until the files load");
	return t->ctx != NULL;
}

struct bufferevent *tls_server_bev_new(struct tls_server *t, struct event_base *base, int fd,
				       char *warn, size_t warnlen, char *err, size_t errlen)
{
	struct bufferevent *bev;
	char why[512];
	SSL *ssl;

	if (!tls_server_ready(t, warn, warnlen)) {
		snprintf(err, errlen, "no certificate loaded");
		close(fd);
		return NULL;
	}
	ssl = SSL_new(t->ctx);
	if (!ssl) {
		ssl_errors(why, sizeof(why));
		snprintf(err, errlen, "SSL_new: %s", why);
		close(fd);
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		/*
		 * Only allocation or event_add failures get here; libevent may
		 * or may not have freed ssl and closed fd by then, so both are
		 * left alone rather than freed twice.
		 */
		snprintf(err, errlen, "cannot make a TLS bufferevent");
		return NULL;
	}
	/* A client that closes without close_notify (most do after QUIT) is no error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

void tls_server_describe(const SSL *ssl, char *buf, size_t len)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	int alg = 0, bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;

	snprintf(buf, len, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
		 c ? SSL_CIPHER_get_name(c) : "unknown", bits, alg);
}
