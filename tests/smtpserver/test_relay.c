/* Tests for smtpserver/relay.c: local, relay and foreign domains, open-relay tricks, bad entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/address.h"
#include "smtpserver/relay.h"

static const char *const mydest[] = {
    "localhost",
    "example.test",
    ".sub.example.test",
    "[192.0.2.1]",
};
static const char *const relay_domains[] = {"relay.test"};

#define N_MYDEST (sizeof(mydest) / sizeof(mydest[0]))

static const char *const verdict_names[] = {
    [RELAY_LOCAL] = "LOCAL",
    [RELAY_DOMAIN] = "DOMAIN",
    [RELAY_TRUSTED] = "TRUSTED",
    [RELAY_DENIED] = "DENIED",
};

#define DENY_RELAY  "Relay access denied"
#define DENY_DOMAIN "Recipient address needs a domain"

struct row {
	const char *rcpt; /* an RCPT TO path */
	bool trusted;
	enum relay_verdict want;
	const char *reason; /* RELAY_DENIED only */
};

/* The table and its macros are laid out by hand, one row a line. */
/* clang-format off */
#define LOCAL(r, t)   {r, t, RELAY_LOCAL, NULL}
#define DOMAIN(r, t)  {r, t, RELAY_DOMAIN, NULL}
#define TRUSTED(r)    {r, true, RELAY_TRUSTED, NULL}
#define DENIED(r, why) {r, false, RELAY_DENIED, why}

static const struct row rows[] = {
	/* mydestination */
	LOCAL("<u@example.test>", false),
	LOCAL("<u@example.test>", true),
	LOCAL("<U@EXAMPLE.Test>", false),
	LOCAL("<u@localhost>", false),
	LOCAL("<u@LocalHost>", false),
	/* ".sub.example.test": subdomains at any depth, not the domain itself */
	LOCAL("<u@a.sub.example.test>", false),
	LOCAL("<u@b.a.SUB.example.test>", false),
	DENIED("<u@sub.example.test>", DENY_RELAY),
	TRUSTED("<u@sub.example.test>"),
	/* "example.test" covers no subdomain */
	DENIED("<u@other.example.test>", DENY_RELAY),
	DENIED("<u@xsub.example.test>", DENY_RELAY),
	DENIED("<u@example.test.evil.test>", DENY_RELAY),
	DENIED("<u@notexample.test>", DENY_RELAY),
	DENIED("<u@test>", DENY_RELAY),
	/* relay_domains */
	DOMAIN("<u@relay.test>", false),
	DOMAIN("<u@Relay.TEST>", true),
	DENIED("<u@a.relay.test>", DENY_RELAY),
	/* other domains */
	DENIED("<u@ext.test>", DENY_RELAY),
	TRUSTED("<u@ext.test>"),
	/* postmaster and other local parts alone */
	LOCAL("<postmaster>", false),
	LOCAL("<PostMaster>", false),
	LOCAL("<\"postmaster\">", false),
	LOCAL("<postmaster>", true),
	DENIED("<alice>", DENY_DOMAIN),
	{"<alice>", true, RELAY_DENIED, DENY_DOMAIN},
	DENIED("<postmasters>", DENY_DOMAIN),
	DENIED("<@a.test:alice>", DENY_DOMAIN),
	LOCAL("<@a.test:postmaster>", false),
	/* open-relay tricks from an untrusted client */
	DENIED("<u%ext.test@example.test>", DENY_RELAY),
	DENIED("<ext.test!u@example.test>", DENY_RELAY),
	DENIED("<\"u@ext.test\"@example.test>", DENY_RELAY),
	DENIED("<\"u%ext.test\"@example.test>", DENY_RELAY),
	DENIED("<u%ext.test@relay.test>", DENY_RELAY),
	DENIED("<ext.test!u@relay.test>", DENY_RELAY),
	DENIED("<\"u@ext.test\"@relay.test>", DENY_RELAY),
	DENIED("<u%ext.test@a.sub.example.test>", DENY_RELAY),
	DENIED("<u%ext.test@ext.test>", DENY_RELAY),
	DENIED("<@a.test:u@ext.test>", DENY_RELAY),
	LOCAL("<@a.test:u@example.test>", false),
	LOCAL("<@ext.test,@b.test:u@example.test>", false),
	DOMAIN("<@a.test:u@relay.test>", false),
	/* ... the same from a trusted client */
	LOCAL("<u%ext.test@example.test>", true),
	LOCAL("<ext.test!u@example.test>", true),
	LOCAL("<\"u@ext.test\"@example.test>", true),
	DOMAIN("<u%ext.test@relay.test>", true),
	DOMAIN("<\"u@ext.test\"@relay.test>", true),
	TRUSTED("<u%ext.test@ext.test>"),
	TRUSTED("<@a.test:u@ext.test>"),
	LOCAL("<@a.test:u@example.test>", true),
	/* harmless quoting is not a trick */
	LOCAL("<\"john smith\"@example.test>", false),
	LOCAL("<\"joe\"@example.test>", false),
	/* address literals: listed ones are local, compared as text */
	LOCAL("<u@[192.0.2.1]>", false),
	LOCAL("<u@[192.0.2.1]>", true),
	DENIED("<u%ext.test@[192.0.2.1]>", DENY_RELAY),
	DENIED("<u@[192.0.2.9]>", DENY_RELAY),
	TRUSTED("<u@[192.0.2.9]>"),
	DENIED("<u@[IPv6:2001:db8::1]>", DENY_RELAY),
	TRUSTED("<u@[IPv6:2001:db8::1]>"),
	DENIED("<u@[IPv6:::ffff:192.0.2.1]>", DENY_RELAY),
};
/* clang-format on */

static struct relay_policy *policy(void)
{
	char err[200] = "";
	struct relay_policy *p =
	    relay_policy_new(mydest, N_MYDEST, relay_domains, 1, err, sizeof(err));

	if (!p)
		fail_msg("relay_policy_new: got \"%s\", want ok", err);
	return p;
}

static int check_row(const struct relay_policy *p, size_t i, const struct row *r)
{
	struct address a;
	char err[160] = "";
	const char *reason = "(untouched)";
	enum relay_verdict got;

	if (address_parse_path(r->rcpt, strlen(r->rcpt), ADDRESS_ALLOW_NO_DOMAIN, &a, NULL, err,
			       sizeof(err)) < 0) {
		print_error("row %zu %s: parse got \"%s\", want ok\n", i, r->rcpt, err);
		return 1;
	}
	got = relay_check(p, &a, r->trusted, &reason);
	if (got != r->want) {
		print_error("row %zu %s %s: got %s, want %s\n", i, r->rcpt,
			    r->trusted ? "trusted" : "untrusted", verdict_names[got],
			    verdict_names[r->want]);
		return 1;
	}
	if (got == RELAY_DENIED && (!reason || strcmp(reason, r->reason) != 0)) {
		print_error("row %zu %s: reason got \"%s\", want \"%s\"\n", i, r->rcpt,
			    reason ? reason : "(null)", r->reason);
		return 1;
	}
	/* reason may be NULL; the verdict must not depend on it. */
	if (relay_check(p, &a, r->trusted, NULL) != got) {
		print_error("row %zu %s: verdict changes with reason NULL\n", i, r->rcpt);
		return 1;
	}
	return 0;
}

static void test_table(void **state)
{
	struct relay_policy *p = policy();
	size_t n = sizeof(rows) / sizeof(rows[0]);
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < n; i++)
		failed += check_row(p, i, &rows[i]);
	relay_policy_free(&p);
	assert_null(p);
	if (failed)
		fail_msg("got %d failing rows of %zu, want 0", failed, n);
}

/* A trailing dot never parses in a path; a domain_lc built by hand may have one. */
static void test_trailing_dot(void **state)
{
	static const char *const dest_dot[] = {"Example.Test.", ".Sub.Example.Test."};
	static const struct {
		const char *domain_lc;
		bool trusted;
		enum relay_verdict want;
	} dots[] = {
	    {"example.test.", false, RELAY_LOCAL},	{"a.sub.example.test.", false, RELAY_LOCAL},
	    {"sub.example.test.", false, RELAY_DENIED}, {"relay.test.", false, RELAY_DOMAIN},
	    {"ext.test.", true, RELAY_TRUSTED},		{"ext.test.", false, RELAY_DENIED},
	};
	const char *relay_dot[] = {"relay.test."};
	char err[200] = "";
	struct relay_policy *p;

	(void)state;
	p = relay_policy_new(dest_dot, 2, relay_dot, 1, err, sizeof(err));
	if (!p)
		fail_msg("relay_policy_new: got \"%s\", want ok", err);
	for (size_t i = 0; i < sizeof(dots) / sizeof(dots[0]); i++) {
		struct address a;
		enum relay_verdict got;

		memset(&a, 0, sizeof(a));
		strcpy(a.local, "u");
		strcpy(a.domain, dots[i].domain_lc);
		strcpy(a.domain_lc, dots[i].domain_lc);
		got = relay_check(p, &a, dots[i].trusted, NULL);
		if (got != dots[i].want)
			fail_msg("row %zu %s: got %d, want %d", i, dots[i].domain_lc, got,
				 dots[i].want);
	}
	/* The entries lost their dot: the dotless forms match too. */
	assert_true(relay_domain_is_local(p, "example.test"));
	assert_true(relay_domain_is_local(p, "x.sub.example.test"));
	relay_policy_free(&p);
}

static void test_domain_is_local(void **state)
{
	static const struct {
		const char *domain;
		bool want;
	} dom[] = {
	    {"example.test", true},
	    {"EXAMPLE.TEST", true},
	    {"example.test.", true},
	    {"localhost", true},
	    {"a.sub.example.test", true},
	    {"A.Sub.Example.Test.", true},
	    {"sub.example.test", false},
	    {"relay.test", false},
	    {"ext.test", false},
	    {"[192.0.2.1]", true},
	    {"[192.0.2.9]", false},
	    {"", false},
	    {".", false},
	    {"example.test..", false},
	    {"x.[192.0.2.1]", false},
	    {".sub.example.test", false},
	};
	struct relay_policy *p = policy();
	char long_dom[400];

	(void)state;
	for (size_t i = 0; i < sizeof(dom) / sizeof(dom[0]); i++)
		if (relay_domain_is_local(p, dom[i].domain) != dom[i].want)
			fail_msg("row %zu \"%s\": got %d, want %d", i, dom[i].domain, !dom[i].want,
				 dom[i].want);
	/* Longer than any domain: false, no overflow. */
	memset(long_dom, 'a', sizeof(long_dom) - 1);
	long_dom[sizeof(long_dom) - 1] = '\0';
	assert_false(relay_domain_is_local(p, long_dom));
	relay_policy_free(&p);
	relay_policy_free(&p);
	relay_policy_free(NULL);
}

static void test_bad_entries(void **state)
{
	static const struct {
		const char *entry;
		bool in_relay; /* put it in relay_domains, not mydestination */
		const char *reason;
	} bad[] = {
	    {"exa mple", false, "space in domain"},
	    {"a..b", false, "consecutive dots in domain"},
	    {"[300.1.1.1]", false, "bad IPv4 address literal"},
	    {"exa mple", true, "space in domain"},
	    {"[300.1.1.1]", true, "bad IPv4 address literal"},
	    {"", false, "empty domain"},
	    {".", false, "empty domain"},
	    {"..example.test", false, "domain starts with '.'"},
	    {"example.test..", false, "domain ends with '.'"},
	    {".[192.0.2.1]", false, "address literal"},
	    {"[192.0.2.1].", false, "in domain"},
	    {"exa_mple.test", false, "invalid character '_'"},
	    {"192.0.2.1", false, "all-numeric"},
	    {"u@example.test", false, "'@'"},
	};
	char long_entry[300];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *const good[] = {"example.test"};
		const char *const one[] = {bad[i].entry};
		char err[200] = "", want[120];
		struct relay_policy *p;

		if (bad[i].in_relay)
			p = relay_policy_new(good, 1, one, 1, err, sizeof(err));
		else
			p = relay_policy_new(one, 1, good, 1, err, sizeof(err));
		snprintf(want, sizeof(want), "%s: ", bad[i].entry);
		if (p) {
			relay_policy_free(&p);
			fail_msg("row %zu \"%s\": got ok, want error", i, bad[i].entry);
		}
		if (strncmp(err, want, strlen(want)) != 0 ||
		    !strstr(err + strlen(want), bad[i].reason))
			fail_msg("row %zu \"%s\": got \"%s\", want \"%s...%s...\"", i, bad[i].entry,
				 err, want, bad[i].reason);
	}
	/* Too long for a domain: an error, no overflow, NULL err buffer fine. */
	memset(long_entry, 'a', sizeof(long_entry) - 1);
	long_entry[sizeof(long_entry) - 1] = '\0';
	{
		const char *const one[] = {long_entry};
		char err[200] = "";

		assert_null(relay_policy_new(one, 1, NULL, 0, err, sizeof(err)));
		if (!strstr(err, "longer than 255"))
			fail_msg("long entry: got \"%s\", want \"...longer than 255...\"", err);
		assert_null(relay_policy_new(one, 1, NULL, 0, NULL, 0));
	}
}

/* Empty lists: nothing is local or relayed, <postmaster> still is. */
static void test_empty_policy(void **state)
{
	static const char *const paths[] = {"<u@example.test>", "<u@[192.0.2.1]>"};
	char err[64] = "";
	struct relay_policy *p = relay_policy_new(NULL, 0, NULL, 0, err, sizeof(err));
	struct address a;

	(void)state;
	assert_non_null(p);
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		assert_int_equal(address_parse(paths[i], 0, &a, NULL, 0), 0);
		assert_int_equal(relay_check(p, &a, false, NULL), RELAY_DENIED);
		assert_int_equal(relay_check(p, &a, true, NULL), RELAY_TRUSTED);
	}
	assert_int_equal(address_parse("<Postmaster>", ADDRESS_ALLOW_NO_DOMAIN, &a, NULL, 0), 0);
	assert_int_equal(relay_check(p, &a, false, NULL), RELAY_LOCAL);
	assert_false(relay_domain_is_local(p, "localhost"));
	relay_policy_free(&p);
}

/* Many entries and duplicates: every one is found, nothing else is. */
static void test_many_entries(void **state)
{
	enum { N = 300 };
	char *names[N];
	char err[64] = "", other[32];
	struct relay_policy *p;

	(void)state;
	for (size_t i = 0; i < N; i++) {
		char buf[32];

		snprintf(buf, sizeof(buf), "%sd%zu.Test", i % 3 ? "" : ".", i % 250);
		names[i] = strdup(buf);
		assert_non_null(names[i]);
	}
	p = relay_policy_new((const char *const *)names, N, NULL, 0, err, sizeof(err));
	assert_non_null(p);
	for (size_t i = 0; i < 250; i++) {
		/* i % 3 == 0 rows are ".dI.test"; duplicates (i + 250) may add the other form. */
		bool exact = i % 3 != 0 || (i < 50 && (i + 250) % 3 != 0);
		bool parent = i % 3 == 0 || (i < 50 && (i + 250) % 3 == 0);

		snprintf(other, sizeof(other), "d%zu.test", i);
		if (relay_domain_is_local(p, other) != exact)
			fail_msg("%s: got %d, want %d", other, !exact, exact);
		snprintf(other, sizeof(other), "x.D%zu.test", i);
		if (relay_domain_is_local(p, other) != parent)
			fail_msg("%s: got %d, want %d", other, !parent, parent);
	}
	assert_false(relay_domain_is_local(p, "d250.test"));
	assert_false(relay_domain_is_local(p, "x.d250.test"));
	relay_policy_free(&p);
	for (size_t i = 0; i < N; i++)
		free(names[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),	    cmocka_unit_test(test_trailing_dot),
	    cmocka_unit_test(test_domain_is_local), cmocka_unit_test(test_bad_entries),
	    cmocka_unit_test(test_empty_policy),    cmocka_unit_test(test_many_entries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
