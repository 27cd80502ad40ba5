/*
 * Tests for transport/tls_client.c: security level names, Postfix-style
 * protocol lists, the context's settings errors, and what an SSL gets
 * per level (SNI, protocol range, the name to verify).  Handshakes,
 * verification results and the log line are driven against Python TLS
 * servers by tests/transport/test_smtp_tls.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "transport/tls_client.h"

static void test_levels(void **state)
{
	static const struct {
		const char *in;
		int ok;
		enum tls_level level;
		bool required;
	} cases[] = {
	    {"none", 0, TLS_LEV_NONE, false},	  {"may", 0, TLS_LEV_MAY, false},
	    {"MAY", 0, TLS_LEV_MAY, false},	  {"encrypt", 0, TLS_LEV_ENCRYPT, true},
	    {"verify", 0, TLS_LEV_VERIFY, true}, {"secure", -1, 0, false},
	    {"dane", -1, 0, false},		  {"", -1, 0, false},
	    {"may ", -1, 0, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum tls_level got = TLS_LEV_NONE;
		int r = tls_level_parse(cases[i].in, &got);

		if (r != cases[i].ok)
			fail_msg("\"%s\": got %d, want %d", cases[i].in, r, cases[i].ok);
		if (r == 0) {
			if (got != cases[i].level)
				fail_msg("\"%s\": got level %d, want %d", cases[i].in, got,
					 cases[i].level);
			if (tls_level_required(got) != cases[i].required)
				fail_msg("\"%s\": required got %d", cases[i].in,
					 tls_level_required(got));
			if (strcasecmp(tls_level_name(got), cases[i].in) != 0)
				fail_msg("\"%s\": name got %s", cases[i].in, tls_level_name(got));
		}
	}
}

static void test_protocols(void **state)
{
	static const struct {
		const char *in;
		int ok, min, max;
	} cases[] = {
	    {"", 0, TLS1_2_VERSION, TLS1_3_VERSION},
	    {">=TLSv1.2", 0, TLS1_2_VERSION, TLS1_3_VERSION},
	    {">=TLSv1.3", 0, TLS1_3_VERSION, TLS1_3_VERSION},
	    {">=TLSv1", 0, TLS1_2_VERSION, TLS1_3_VERSION}, /* never below 1.2 */
	    {"<=TLSv1.2", 0, TLS1_2_VERSION, TLS1_2_VERSION},
	    {"!SSLv2, !SSLv3", 0, TLS1_2_VERSION, TLS1_3_VERSION},
	    {"!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", 0, TLS1_2_VERSION, TLS1_3_VERSION},
	    {"!TLSv1.2", 0, TLS1_3_VERSION, TLS1_3_VERSION},
	    {"TLSv1.2", 0, TLS1_2_VERSION, TLS1_2_VERSION},
	    {"TLSv1.2 TLSv1.3", 0, TLS1_2_VERSION, TLS1_3_VERSION},
	    {"tlsv1.3", 0, TLS1_3_VERSION, TLS1_3_VERSION},
	    {"<=TLSv1.1", -1, 0, 0},
	    {"TLSv1", -1, 0, 0},
	    {"!TLSv1.2 !TLSv1.3", -1, 0, 0},
	    {">=TLSv1.4", -1, 0, 0},
	    {"SSLv23", -1, 0, 0},
	    {"=>TLSv1.2", -1, 0, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int min = -1, max = -1;
		char err[256] = "";
		int r = tls_client_protocols(cases[i].in, &min, &max, err, sizeof(err));

		if (r != cases[i].ok)
			fail_msg("\"%s\": got %d (%s), want %d", cases[i].in, r, err, cases[i].ok);
		if (r == 0 && (min != cases[i].min || max != cases[i].max))
			fail_msg("\"%s\": got %x..%x, want %x..%x", cases[i].in, min, max,
				 cases[i].min, cases[i].max);
		if (r < 0 && !err[0])
			fail_msg("\"%s\": no reason", cases[i].in);
	}
}

static void test_config_errors(void **state)
{
	static const struct {
		struct tls_client_config cfg;
		const char *want; /* in the reason */
	} cases[] = {
	    {{.ca_file = "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
	    {{.protocols = ">=TLSv1.9"}, "unknown TLS protocol"},
	    {{.mandatory_protocols = "<=TLSv1"}, "no version"},
	    {{.ciphers = "export"}, "cipher grade \"export\""},
	    {{.mandatory_ciphers = "low"}, "cipher grade \"low\""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[512] = "";
		struct tls_client *tc = tls_client_new(&cases[i].cfg, err, sizeof(err));

		if (tc) {
			tls_client_free(&tc);
			fail_msg("case %zu: made a context, want an error with \"%s\"", i,
				 cases[i].want);
		}
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: got \"%s\", want \"%s\" in it", i, err, cases[i].want);
	}
}

static void test_ssl_per_level(void **state)
{
	struct tls_client_config cfg = {.protocols = ">=TLSv1.2",
					.mandatory_protocols = ">=TLSv1.3",
					.ciphers = "medium",
					.mandatory_ciphers = "high"};
	static const struct {
		enum tls_level level;
		const char *host;
		const char *sni;    /* NULL: none sent */
		const char *verify; /* the name (or IP) checked; NULL: none */
		int min;
	} cases[] = {
	    {TLS_LEV_MAY, "mx.example.org", "mx.example.org", NULL, TLS1_2_VERSION},
	    {TLS_LEV_MAY, "mx.example.org.", "mx.example.org", NULL, TLS1_2_VERSION},
	    {TLS_LEV_MAY, "192.0.2.7", NULL, NULL, TLS1_2_VERSION},
	    {TLS_LEV_MAY, "", NULL, NULL, TLS1_2_VERSION},
	    {TLS_LEV_ENCRYPT, "mx.example.org", "mx.example.org", NULL, TLS1_3_VERSION},
	    {TLS_LEV_VERIFY, "mx.example.org", "mx.example.org", "mx.example.org",
	     TLS1_3_VERSION},
	    {TLS_LEV_VERIFY, "2001:db8::1", NULL, "2001:DB8:0:0:0:0:0:1", TLS1_3_VERSION},
	};
	char err[512] = "";
	struct tls_client *tc = tls_client_new(&cfg, err, sizeof(err));

	(void)state;
	if (!tc)
		fail_msg("tls_client_new: %s", err);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		SSL *ssl = tls_client_ssl(tc, cases[i].level, cases[i].host, err, sizeof(err));
		const char *sni;
		X509_VERIFY_PARAM *vp;
		char *ip = NULL;
		const char *host;

		if (!ssl)
			fail_msg("case %zu: %s", i, err);
		sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
		if ((sni == NULL) != (cases[i].sni == NULL) ||
		    (sni && strcmp(sni, cases[i].sni) != 0))
			fail_msg("case %zu: SNI got %s, want %s", i, sni ? sni : "(none)",
				 cases[i].sni ? cases[i].sni : "(none)");
		if (SSL_get_min_proto_version(ssl) != cases[i].min)
			fail_msg("case %zu: min version got %x, want %x", i,
				 (unsigned)SSL_get_min_proto_version(ssl), (unsigned)cases[i].min);
		vp = SSL_get0_param(ssl);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
		host = X509_VERIFY_PARAM_get0_host(vp, 0);
		ip = X509_VERIFY_PARAM_get1_ip_asc(vp);
#else
		/* no getters before OpenSSL 3.0: test_smtp_tls.py checks the names */
		(void)vp;
		host = cases[i].verify;
#endif
		if (!cases[i].verify) {
			if (host || ip)
				fail_msg("case %zu: a name to verify (%s%s) under %s", i,
					 host ? host : "", ip ? ip : "",
					 tls_level_name(cases[i].level));
		} else if (!(host && strcmp(host, cases[i].verify) == 0) &&
			   !(ip && strcmp(ip, cases[i].verify) == 0)) {
			fail_msg("case %zu: verify name got %s/%s, want %s", i, host ? host : "-",
				 ip ? ip : "-", cases[i].verify);
		}
		OPENSSL_free(ip);
		SSL_free(ssl);
	}
	/* verify with no name to check: refused, not an unchecked session */
	if (tls_client_ssl(tc, TLS_LEV_VERIFY, "", err, sizeof(err)) != NULL)
		fail_msg("verify without a host name: got an SSL");
	if (!strstr(err, "no host name"))
		fail_msg("verify without a host name: got \"%s\"", err);
	tls_client_free(&tc);
	assert_null(tc);
	tls_client_free(&tc); /* NULL is fine */
}

static void test_trust_names(void **state)
{
	(void)state;
	assert_string_equal(tls_trust_name(TLS_ANONYMOUS), "Anonymous");
	assert_string_equal(tls_trust_name(TLS_UNTRUSTED), "Untrusted");
	assert_string_equal(tls_trust_name(TLS_TRUSTED), "Trusted");
	assert_string_equal(tls_trust_name(TLS_VERIFIED), "Verified");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_levels),	   cmocka_unit_test(test_protocols),
	    cmocka_unit_test(test_config_errors), cmocka_unit_test(test_ssl_per_level),
	    cmocka_unit_test(test_trust_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
