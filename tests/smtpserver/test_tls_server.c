/*
 * Tests for smtpserver/tls_server.c: the protocol policy parser
 * (table-driven), loading certificates and keys made here (no key is
 * committed), handshakes against an OpenSSL client in this process, and
 * a certificate renewed on disk being served without a restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "smtpserver/tls_server.h"

/* ---- protocols ---- */

struct proto_row {
	const char *spec;
	int min, max; /* 0: an error */
};

/* clang-format off */
static const struct proto_row proto_rows[] = {
	{"", TLS1_2_VERSION, TLS1_3_VERSION},
	{">=TLSv1.2", TLS1_2_VERSION, TLS1_3_VERSION},
	{">=TLSv1.3", TLS1_3_VERSION, TLS1_3_VERSION},
	{">=TLSv1", TLS1_2_VERSION, TLS1_3_VERSION},   /* never below 1.2 */
	{"<=TLSv1.2", TLS1_2_VERSION, TLS1_2_VERSION},
	{">=TLSv1.2, <=TLSv1.2", TLS1_2_VERSION, TLS1_2_VERSION},
	{"!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", TLS1_2_VERSION, TLS1_3_VERSION},
	{"!SSLv2 !SSLv3 !TLSv1 !TLSv1.1 !TLSv1.2", TLS1_3_VERSION, TLS1_3_VERSION},
	{"!TLSv1.3", TLS1_2_VERSION, TLS1_2_VERSION},
	{"TLSv1.2 TLSv1.3", TLS1_2_VERSION, TLS1_3_VERSION},
	{"TLSv1.3", TLS1_3_VERSION, TLS1_3_VERSION},
	{"tlsv1.3", TLS1_3_VERSION, TLS1_3_VERSION},
	{"TLSv1.1", 0, 0},                              /* nothing left */
	{"<=TLSv1.1", 0, 0},
	{"!TLSv1.2 !TLSv1.3", 0, 0},
	{">=TLSv1.4", 0, 0},
	{"SSLv23", 0, 0},
	{"=TLSv1.2", 0, 0},
};
/* clang-format on */

static void test_protocols(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(proto_rows) / sizeof(proto_rows[0]); i++) {
		const struct proto_row *r = &proto_rows[i];
		int min = -1, max = -1;
		char err[256] = "";
		int rc = tls_server_protocols(r->spec, &min, &max, err, sizeof(err));

		if (r->min == 0) {
			if (rc == 0)
				fail_msg("\"%s\": accepted (%x-%x), want an error", r->spec, min, max);
			assert_true(err[0] != '\0');
			continue;
		}
		if (rc < 0)
			fail_msg("\"%s\": %s", r->spec, err);
		if (min != r->min || max != r->max)
			fail_msg("\"%s\": got %x-%x, want %x-%x", r->spec, min, max, r->min, r->max);
	}
}

/* ---- certificates made here ---- */

static char dir[] = "/tmp/zfarm-tls-XXXXXX";

static void write_pem(const char *path, EVP_PKEY *key, X509 *crt)
{
	char tmp[300];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	if (crt)
		assert_int_equal(PEM_write_X509(fp, crt), 1);
	if (key)
		assert_int_equal(PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL), 1);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* A self-signed P-256 certificate for cn, with its key, in cert/key files. */
static void make_cert(const char *cn, const char *cert_path, const char *key_path)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *crt = X509_new();
	X509_NAME *name;

	assert_non_null(key);
	ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
	X509_gmtime_adj(X509_getm_notBefore(crt), -60);
	X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
	X509_set_pubkey(crt, key);
	name = X509_get_subject_name(crt);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(crt, name);
	assert_true(X509_sign(crt, key, EVP_sha256()) > 0);
	write_pem(cert_path, NULL, crt);
	write_pem(key_path, key, NULL);
	X509_free(crt);
	EVP_PKEY_free(key);
}

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[100];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_load(void **state)
{
	char cert[300], key[300], key2[300], cert2[300], err[1024], warn[1024];
	struct tls_server_params p = {0};
	struct tls_server *t;

	(void)state;
	path_of(cert, sizeof(cert), "a.crt");
	path_of(key, sizeof(key), "a.key");
	path_of(cert2, sizeof(cert2), "b.crt");
	path_of(key2, sizeof(key2), "b.key");
	make_cert("a.test", cert, key);
	make_cert("b.test", cert2, key2);

	assert_null(tls_server_new(&p, warn, sizeof(warn), err, sizeof(err)));
	assert_string_equal(err, "no certificate file");
	/* the policy is checked first, and is fatal */
	p.cert_file = "/nonexistent/cert.pem";
	p.protocols = "TLSv1";
	assert_null(tls_server_new(&p, warn, sizeof(warn), err, sizeof(err)));
	p.protocols = NULL;
	p.cipherlist = "NOSUCHCIPHER";
	assert_null(tls_server_new(&p, warn, sizeof(warn), err, sizeof(err)));
	assert_non_null(strstr(err, "bad TLS 1.2 cipher list"));
	p.cipherlist = NULL;
	p.ciphersuites = "TLS_NOSUCH";
	assert_null(tls_server_new(&p, warn, sizeof(warn), err, sizeof(err)));
	assert_non_null(strstr(err, "bad TLS 1.3 cipher suites"));
	p.ciphersuites = NULL;
	/* files that do not load are not: not ready, said in warn */
	t = tls_server_new(&p, warn, sizeof(warn), err, sizeof(err));
	assert_non_null(t);
	assert_non_null(strstr(warn, "cannot load the certificate /nonexistent/cert.pem"));
	assert_non_null(strstr(warn, "no TLS until the files load"));
	assert_false(tls_server_ready(t, warn, sizeof(warn)));
	assert_string_equal(warn, ""); /* said once */
	tls_server_free(&t);
	/* the key is not in the certificate file */
	p.cert_file = cert;
	t = tls_server_new(&p, warn, sizeof(warn), err, sizeof(err));
	assert_non_null(strstr(warn, "cannot load the private key"));
	assert_false(tls_server_ready(t, warn, sizeof(warn)));
	tls_server_free(&t);
	/* a key of another certificate */
	p.key_file = key2;
	t = tls_server_new(&p, warn, sizeof(warn), err, sizeof(err));
	assert_non_null(strstr(warn, "does not match"));
	tls_server_free(&t);
	p.key_file = key;
	t = tls_server_new(&p, warn, sizeof(warn), err, sizeof(err));
	if (!t || warn[0])
		fail_msg("tls_server_new: %s %s", err, warn);
	assert_true(tls_server_ready(t, warn, sizeof(warn)));
	tls_server_free(&t);
	assert_null(t);
	tls_server_free(&t);

	/* key and certificate in one file (key_file "") */
	{
		char both[300], cmd[1000];

		path_of(both, sizeof(both), "both.pem");
		snprintf(cmd, sizeof(cmd), "cat %s %s > %s", cert, key, both);
		assert_int_equal(system(cmd), 0);
		p.cert_file = both;
		p.key_file = "";
		t = tls_server_new(&p, warn, sizeof(warn), err, sizeof(err));
		if (!t || !tls_server_ready(t, warn, sizeof(warn)))
			fail_msg("one file: %s %s", err, warn);
		tls_server_free(&t);
	}
	/* files that appear later are taken without a restart */
	{
		char later[300], later_key[300];

		path_of(later, sizeof(later), "later.crt");
		path_of(later_key, sizeof(later_key), "later.key");
		p.cert_file = later;
		p.key_file = later_key;
		t = tls_server_new(&p, warn, sizeof(warn), err, sizeof(err));
		assert_non_null(t);
		assert_false(tls_server_ready(t, warn, sizeof(warn)));
		make_cert("later.test", later, later_key);
		assert_true(tls_server_ready(t, warn, sizeof(warn)));
		assert_string_equal(warn, "");
		tls_server_free(&t);
	}
}

/* ---- handshakes ---- */

struct server_side {
	bool connected, failed;
	char info[200];
};

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct server_side *ss = arg;

	if (what & BEV_EVENT_CONNECTED) {
		ss->connected = true;
		tls_server_describe(bufferevent_openssl_get_ssl(bev), ss->info, sizeof(ss->info));
	} else {
		ss->failed = true;
		tls_server_error(bev, ss->info, sizeof(ss->info));
	}
}

/*
 * handshake - a client SSL (max_version, 0: any) against t; returns the
 * CN of the certificate it got ("" if the handshake failed), server_side
 * filled.
 */
static void handshake(struct tls_server *t, int max_version, struct server_side *ss, char *cn,
		      size_t cnlen, char *warn, size_t warnlen)
{
	struct event_base *base = event_base_new();
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *c;
	int sv[2];
	char err[512];
	struct bufferevent *bev;
	uint64_t deadline = clock_mono_ms() + 5000;
	bool client_done = false;

	memset(ss, 0, sizeof(*ss));
	cn[0] = '\0';
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	if (max_version)
		SSL_CTX_set_max_proto_version(cctx, max_version);
	c = SSL_new(cctx);
	SSL_set_fd(c, sv[0]);
	SSL_set_connect_state(c);
	bev = tls_server_bev_new(t, base, sv[1], warn, warnlen, err, sizeof(err));
	if (!bev)
		fail_msg("tls_server_bev_new: %s", err);
	bufferevent_setcb(bev, NULL, NULL, on_event, ss);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	while (clock_mono_ms() < deadline && !ss->failed && !(ss->connected && client_done)) {
		if (!client_done) {
			int r = SSL_do_handshake(c);

			if (r == 1) {
				client_done = true;
			} else {
				int e = SSL_get_error(c, r);

				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
					client_done = true;
			}
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		poll(NULL, 0, 1);
	}
	if (SSL_is_init_finished(c)) {
		X509 *peer = SSL_get1_peer_certificate(c);

		if (peer) {
			X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
						  (int)cnlen);
			X509_free(peer);
		}
	}
	ERR_clear_error();
	SSL_free(c);
	SSL_CTX_free(cctx);
	close(sv[0]);
	bufferevent_free(bev);
	event_base_free(base);
}

static void test_handshake(void **state)
{
	char cert[300], key[300], err[1024], cn[100], warn[1024];
	struct tls_server_params p = {0};
	struct server_side ss;
	struct tls_server *t;

	(void)state;
	path_of(cert, sizeof(cert), "h.crt");
	path_of(key, sizeof(key), "h.key");
	make_cert("one.test", cert, key);
	p.cert_file = cert;
	p.key_file = key;
	t = tls_server_new(&p, warn, sizeof(warn), err, sizeof(err));
	assert_non_null(t);

	handshake(t, 0, &ss, cn, sizeof(cn), warn, sizeof(warn));
	assert_true(ss.connected);
	assert_string_equal(cn, "one.test");
	assert_string_equal(warn, "");
	if (strncmp(ss.info, "TLSv1.3 with cipher TLS_", 24) != 0 || !strstr(ss.info, " bits)"))
		fail_msg("describe: \"%s\"", ss.info);

	handshake(t, TLS1_2_VERSION, &ss, cn, sizeof(cn), warn, sizeof(warn));
	assert_true(ss.connected);
	if (strncmp(ss.info, "TLSv1.2 with cipher ECDHE-", 26) != 0)
		fail_msg("describe 1.2: \"%s\"", ss.info);

	/* TLS 1.1 is refused */
	handshake(t, TLS1_1_VERSION, &ss, cn, sizeof(cn), warn, sizeof(warn));
	assert_false(ss.connected);
	assert_true(ss.failed);
	assert_string_equal(cn, "");

	/* renewed on disk: the next handshake has it, no reload */
	make_cert("two.test", cert, key);
	handshake(t, 0, &ss, cn, sizeof(cn), warn, sizeof(warn));
	assert_true(ss.connected);
	assert_string_equal(cn, "two.test");
	assert_string_equal(warn, "");

	/* a key that does not match: a warning once, the loaded one keeps serving */
	{
		char other[300], okey[300];

		path_of(other, sizeof(other), "o.crt");
		path_of(okey, sizeof(okey), "o.key");
		make_cert("three.test", other, okey);
		assert_int_equal(rename(okey, key), 0);
	}
	handshake(t, 0, &ss, cn, sizeof(cn), warn, sizeof(warn));
	assert_true(ss.connected);
	assert_string_equal(cn, "two.test");
	assert_non_null(strstr(warn, "does not match"));
	handshake(t, 0, &ss, cn, sizeof(cn), warn, sizeof(warn));
	assert_string_equal(cn, "two.test");
	assert_string_equal(warn, "");
	tls_server_free(&t);
}

/* Garbage instead of a ClientHello fails the handshake, nothing else. */
static void test_garbage(void **state)
{
	char cert[300], key[300], err[1024], warn[100];
	struct tls_server_params p = {0};
	struct tls_server *t;
	struct event_base *base = event_base_new();
	struct server_side ss = {0};
	struct bufferevent *bev;
	int sv[2];
	uint64_t deadline = clock_mono_ms() + 5000;
	static const char junk[] = "EHLO plaintext.test\r\nMAIL FROM:<a@b>\r\n";

	(void)state;
	path_of(cert, sizeof(cert), "g.crt");
	path_of(key, sizeof(key), "g.key");
	make_cert("g.test", cert, key);
	p.cert_file = cert;
	p.key_file = key;
	t = tls_server_new(&p, warn, sizeof(warn), err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	bev = tls_server_bev_new(t, base, sv[1], warn, sizeof(warn), err, sizeof(err));
	assert_non_null(bev);
	bufferevent_setcb(bev, NULL, NULL, on_event, &ss);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	assert_int_equal(write(sv[0], junk, sizeof(junk) - 1), (ssize_t)sizeof(junk) - 1);
	while (!ss.failed && !ss.connected && clock_mono_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	assert_true(ss.failed);
	assert_false(ss.connected);
	assert_true(ss.info[0] != '\0');
	bufferevent_free(bev);
	close(sv[0]);
	event_base_free(base);
	tls_server_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_protocols),
	    cmocka_unit_test(test_load),
	    cmocka_unit_test(test_handshake),
	    cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
