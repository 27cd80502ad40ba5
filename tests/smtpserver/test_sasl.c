/* Tests for smtpserver/sasl.c: base64, AUTH PLAIN and LOGIN decoding, table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Rows leave trailing fields out on purpose (zero). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpserver/sasl.h"

static const char *const step_names[] = {
    [SASL_CHALLENGE] = "CHALLENGE", [SASL_DONE] = "DONE",	  [SASL_CANCEL] = "CANCEL",
    [SASL_MALFORMED] = "MALFORMED", [SASL_INVALID] = "INVALID",
};

/* ---- base64 ---- */

struct b64_row {
	const char *in;
	long want_len; /* -1: refused */
	const char *want;
};

/* clang-format off */
static const struct b64_row b64_rows[] = {
	{"", 0, ""},
	{"Zg==", 1, "f"},
	{"Zm8=", 2, "fo"},
	{"Zm9v", 3, "foo"},
	{"Zm9vYg==", 4, "foob"},
	{"Zm9vYmE=", 5, "fooba"},
	{"Zm9vYmFy", 6, "foobar"},
	{"+/+/", 3, "\xfb\xff\xbf"},
	{"Zg=", -1, NULL},       /* not a multiple of 4 */
	{"Zg", -1, NULL},
	{"Z===", -1, NULL},      /* three pad characters */
	{"Zg==Zg==", -1, NULL},  /* padding in the middle */
	{"Z=g=", -1, NULL},      /* a letter after "=" */
	{"Zm9v\r\n", -1, NULL},
	{"Zm 9", -1, NULL},
	{"Zm-_", -1, NULL},      /* the URL alphabet is not ours */
	{"Zm9\x80", -1, NULL},
};
/* clang-format on */

static void test_base64(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(b64_rows) / sizeof(b64_rows[0]); i++) {
		const struct b64_row *r = &b64_rows[i];
		unsigned char out[64];
		char enc[64];
		long n = base64_decode(r->in, strlen(r->in), out, sizeof(out));

		if (n != r->want_len)
			fail_msg("base64_decode(\"%s\"): got %ld, want %ld", r->in, n, r->want_len);
		if (n < 0)
			continue;
		if (memcmp(out, r->want, (size_t)n) != 0)
			fail_msg("base64_decode(\"%s\"): wrong octets", r->in);
		/* and back */
		assert_int_equal(base64_encode(out, (size_t)n, enc, sizeof(enc)),
				 (long)strlen(r->in));
		if (strcmp(enc, r->in) != 0)
			fail_msg("base64_encode: got \"%s\", want \"%s\"", enc, r->in);
	}
}

static void test_base64_bounds(void **state)
{
	unsigned char out[3];
	char enc[9];

	(void)state;
	/* the output must fit */
	assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 3), -1);
	assert_int_equal(base64_decode("Zm9v", 4, out, 3), 3);
	assert_int_equal(base64_decode("Zm8=", 4, out, 2), 2);
	assert_int_equal(base64_encode((const unsigned char *)"foobar", 6, enc, 8), -1);
	assert_int_equal(base64_encode((const unsigned char *)"foobar", 6, enc, 9), 8);
}

/* ---- exchanges ---- */

/* One exchange: AUTH MECH [initial], then responses, each with the step it must give. */
struct ex_row {
	const char *name;
	const char *mech;
	const char *initial;	  /* NULL: none */
	enum sasl_step first;	  /* after sasl_begin */
	const char *challenge1;	  /* the 334 text, if first is CHALLENGE */
	const char *resp[3];	  /* then these, NULL-terminated */
	enum sasl_step steps[3];  /* what each gives */
	const char *user, *pass;  /* at DONE */
};

/* base64: "\0alice\0secret" AGFsaWNlAHNlY3JldA==, "alice" YWxpY2U=, "secret" c2VjcmV0 */
/* clang-format off */
static const struct ex_row ex_rows[] = {
	{"PLAIN initial", "PLAIN", "AGFsaWNlAHNlY3JldA==", SASL_DONE, NULL, {NULL}, {0}, "alice", "secret"},
	{"plain lower case", "plain", "AGFsaWNlAHNlY3JldA==", SASL_DONE, NULL, {NULL}, {0}, "alice", "secret"},
	{"PLAIN after 334", "PLAIN", NULL, SASL_CHALLENGE, "", {"AGFsaWNlAHNlY3JldA=="}, {SASL_DONE},
	 "alice", "secret"},
	{"PLAIN authzid = authcid", "PLAIN", "YWxpY2UAYWxpY2UAc2VjcmV0", SASL_DONE, NULL, {NULL}, {0},
	 "alice", "secret"},
	{"PLAIN other authzid", "PLAIN", "Ym9iAGFsaWNlAHNlY3JldA==", SASL_INVALID, NULL, {NULL}, {0}},
	{"PLAIN no NUL", "PLAIN", "YWxpY2U=", SASL_INVALID, NULL, {NULL}, {0}},
	{"PLAIN one NUL", "PLAIN", "AGFsaWNl", SASL_INVALID, NULL, {NULL}, {0}},
	{"PLAIN third NUL in password", "PLAIN", "AGEAYgBj", SASL_INVALID, NULL, {NULL}, {0}},
	{"PLAIN empty user", "PLAIN", "AABzZWNyZXQ=", SASL_INVALID, NULL, {NULL}, {0}},
	{"PLAIN empty password", "PLAIN", "AGFsaWNlAA==", SASL_INVALID, NULL, {NULL}, {0}},
	{"PLAIN control char in user", "PLAIN", "AGEKYgBz", SASL_INVALID, NULL, {NULL}, {0}},
	{"PLAIN empty initial (=)", "PLAIN", "=", SASL_INVALID, NULL, {NULL}, {0}},
	{"PLAIN garbage initial", "PLAIN", "!!!!", SASL_MALFORMED, NULL, {NULL}, {0}},
	{"PLAIN garbage response", "PLAIN", NULL, SASL_CHALLENGE, "", {"AGFsaWNl*"}, {SASL_MALFORMED}},
	{"PLAIN cancelled", "PLAIN", NULL, SASL_CHALLENGE, "", {"*"}, {SASL_CANCEL}},
	{"PLAIN '=' is no empty response after 334", "PLAIN", NULL, SASL_CHALLENGE, "", {"="},
	 {SASL_MALFORMED}},
	{"LOGIN", "LOGIN", NULL, SASL_CHALLENGE, "VXNlcm5hbWU6", {"YWxpY2U=", "c2VjcmV0"},
	 {SASL_CHALLENGE, SASL_DONE}, "alice", "secret"},
	{"LOGIN initial user", "LOGIN", "YWxpY2U=", SASL_CHALLENGE, "UGFzc3dvcmQ6", {"c2VjcmV0"},
	 {SASL_DONE}, "alice", "secret"},
	{"LOGIN cancel at password", "LOGIN", NULL, SASL_CHALLENGE, "VXNlcm5hbWU6", {"YWxpY2U=", "*"},
	 {SASL_CHALLENGE, SASL_CANCEL}},
	{"LOGIN empty user", "LOGIN", NULL, SASL_CHALLENGE, "VXNlcm5hbWU6", {""}, {SASL_INVALID}},
	{"LOGIN empty password", "LOGIN", NULL, SASL_CHALLENGE, "VXNlcm5hbWU6", {"YWxpY2U=", ""},
	 {SASL_CHALLENGE, SASL_INVALID}},
	{"LOGIN bad base64", "LOGIN", NULL, SASL_CHALLENGE, "VXNlcm5hbWU6", {"YWxpY2U"},
	 {SASL_MALFORMED}},
	{"unknown mechanism", "CRAM-MD5", NULL, SASL_INVALID, NULL, {NULL}, {0}},
};
/* clang-format on */

static void check_step(const char *name, const char *when, enum sasl_step got, enum sasl_step want)
{
	if (got != want)
		fail_msg("%s: %s: got %s, want %s", name, when, step_names[got], step_names[want]);
}

static void test_exchanges(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ex_rows) / sizeof(ex_rows[0]); i++) {
		const struct ex_row *r = &ex_rows[i];
		struct sasl_exchange x;
		enum sasl_mech m = sasl_mech_parse(r->mech, strlen(r->mech));
		enum sasl_step st = sasl_begin(&x, m, r->initial, r->initial ? strlen(r->initial) : 0);

		check_step(r->name, "begin", st, r->first);
		if (st == SASL_CHALLENGE && strcmp(x.challenge, r->challenge1) != 0)
			fail_msg("%s: challenge \"%s\", want \"%s\"", r->name, x.challenge,
				 r->challenge1);
		for (int k = 0; k < 3 && r->resp[k]; k++) {
			char when[32];

			snprintf(when, sizeof(when), "response %d", k + 1);
			st = sasl_respond(&x, r->resp[k], strlen(r->resp[k]));
			check_step(r->name, when, st, r->steps[k]);
		}
		if (st == SASL_DONE) {
			if (strcmp(x.user, r->user) != 0 || strcmp(x.pass, r->pass) != 0)
				fail_msg("%s: got %s/%s, want %s/%s", r->name, x.user, x.pass,
					 r->user, r->pass);
		}
		sasl_clear(&x);
		assert_int_equal(x.pass[0], '\0');
		assert_int_equal(x.user[0], '\0');
	}
}

/* Values at and over the limits: a user of 255 octets is taken, 256 is not. */
static void test_limits(void **state)
{
	unsigned char plain[1 + 300 + 1 + 1100];
	char b64[2000];
	struct sasl_exchange x;
	size_t n;

	(void)state;
	for (size_t ulen = 255; ulen <= 256; ulen++) {
		for (size_t plen = 1024; plen <= 1025; plen++) {
			enum sasl_step want = ulen <= 255 && plen <= 1024 ? SASL_DONE : SASL_INVALID;

			plain[0] = '\0';
			memset(plain + 1, 'u', ulen);
			plain[1 + ulen] = '\0';
			memset(plain + 2 + ulen, 'p', plen);
			n = 2 + ulen + plen;
			assert_true(base64_encode(plain, n, b64, sizeof(b64)) > 0);
			check_step("limits", "begin", sasl_begin(&x, SASL_MECH_PLAIN, b64, strlen(b64)),
				   want);
			if (want == SASL_DONE) {
				assert_int_equal(strlen(x.user), ulen);
				assert_int_equal(strlen(x.pass), plen);
			}
		}
	}
	/* the longest line that fits SASL_LINE_MAX decodes (to nothing useful) */
	{
		size_t len = SASL_LINE_MAX - 4;
		char *line = malloc(len);

		memset(line, 'A', len);
		check_step("long line", "respond",
			   (sasl_begin(&x, SASL_MECH_PLAIN, NULL, 0), sasl_respond(&x, line, len)),
			   SASL_INVALID);
		free(line);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_base64_bounds),
	    cmocka_unit_test(test_exchanges),
	    cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
