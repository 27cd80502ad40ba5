/*
 * Tests for the pure parts of transport/dns.c (dns_private.h): the
 * dns_servers list into c-ares' form, inet_protocols, the MX order
 * (preference, shuffled ties, duplicates, the DNS_MAX_HOSTS cap), the
 * bounded random numbers and address literals.  The lookups themselves
 * are tested against a DNS server on loopback: test_dns.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/dns.h"
#include "transport/dns_private.h"

/* ---- dns_servers ---- */

static void test_servers_csv(void **state)
{
	static const struct {
		const char *in, *want;
	} ok[] = {
		{"127.0.0.1", "127.0.0.1:53"},
		{"127.0.0.1:5353", "127.0.0.1:5353"},
		{"127.0.0.1:5353, [::1]:5354", "127.0.0.1:5353,[::1]:5354"},
		{" [::1] ,192.0.2.1:1,", "[::1]:53,192.0.2.1:1"},
		{"2001:db8::1", "[2001:db8::1]:53"},
		{"192.0.2.1\t192.0.2.2:65535", "192.0.2.1:53,192.0.2.2:65535"},
	};
	static const char *bad[] = {
		"", " , ", "localhost", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x",
		"127.0.0.1:", "[::1", "[::1]x", "[::1]:", "[127.0.0.1]:53", "::1:53x", "1.2.3",
		"[::1]:-5",
	};
	char out[256], err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		err[0] = 0;
		if (dns_servers_csv(ok[i].in, out, sizeof(out), err, sizeof(err)) != 0)
			fail_msg("\"%s\": got error %s, want %s", ok[i].in, err, ok[i].want);
		if (strcmp(out, ok[i].want) != 0)
			fail_msg("\"%s\": got \"%s\", want \"%s\"", ok[i].in, out, ok[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (dns_servers_csv(bad[i], out, sizeof(out), err, sizeof(err)) != -1)
			fail_msg("\"%s\": got \"%s\", want an error", bad[i], out);
		if (strncmp(err, "dns_servers: ", 13) != 0)
			fail_msg("\"%s\": reason \"%s\"", bad[i], err);
	}
	/* the output buffer too small: an error, never an overflow */
	assert_int_equal(dns_servers_csv("127.0.0.1, 127.0.0.2", out, 16, err, sizeof(err)), -1);
}

/* ---- inet_protocols ---- */

static void test_family_parse(void **state)
{
	static const struct {
		const char *in;
		enum dns_family want;
	} ok[] = {
		{"all", DNS_ANY},	   {"ALL", DNS_ANY},	     {"ipv4", DNS_IPV4},
		{"ipv6", DNS_IPV6},	   {"ipv4, ipv6", DNS_ANY}, {"ipv6 ipv4", DNS_ANY},
		{" ipv4 ,", DNS_IPV4},
	};
	static const char *bad[] = {"", " ", "ipv5", "all,ipx", "inet"};
	enum dns_family f;
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		f = (enum dns_family)-1;
		if (dns_family_parse(ok[i].in, &f, err, sizeof(err)) != 0 || f != ok[i].want)
			fail_msg("\"%s\": got %d, want %d", ok[i].in, (int)f, (int)ok[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (dns_family_parse(bad[i], &f, err, sizeof(err)) != -1)
			fail_msg("\"%s\": accepted", bad[i]);
		if (strncmp(err, "inet_protocols: ", 16) != 0)
			fail_msg("\"%s\": reason \"%s\"", bad[i], err);
	}
}

/* ---- random numbers ---- */

static void test_rand_below(void **state)
{
	uint64_t rng = 42;
	unsigned count[7] = {0};

	(void)state;
	assert_int_equal(dns_rand_below(&rng, 0), 0);
	assert_int_equal(dns_rand_below(&rng, 1), 0);
	for (int i = 0; i < 70000; i++) {
		size_t r = dns_rand_below(&rng, 7);

		assert_true(r < 7);
		count[r]++;
	}
	/* 10000 expected each; 5 sigma is about 470 */
	for (int i = 0; i < 7; i++)
		if (count[i] < 9400 || count[i] > 10600)
			fail_msg("value %d: got %u times in 70000, want about 10000", i, count[i]);
	/* two seeds differ (getrandom) */
	assert_true(dns_rand_seed() != dns_rand_seed());
}

/* ---- MX order ---- */

static void test_mx_order_sorted(void **state)
{
	struct dns_mx mx[] = {{30, "c"}, {10, "a"}, {20, "b"}, {65535, "z"}, {0, "zero"}};
	const char *want[] = {"zero", "a", "b", "c", "z"};
	uint64_t rng = 1;
	size_t n = dns_mx_order(mx, 5, &rng);

	(void)state;
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		if (strcmp(mx[i].name, want[i]) != 0)
			fail_msg("position %zu: got %s, want %s", i, mx[i].name, want[i]);
}

static void test_mx_order_ties_shuffled(void **state)
{
	/* three equal preferences between two others: every one of the 6
	 * orders comes up equally often (a naive shuffle's 27 paths would give
	 * 8889 or 11111 of 60000); the others stay put */
	static const char *names[] = {"x", "y", "z"};
	unsigned seen[6] = {0};
	uint64_t rng = 7;

	(void)state;
	for (int round = 0; round < 60000; round++) {
		struct dns_mx mx[] = {{20, "last"}, {10, "x"}, {10, "y"}, {5, "first"}, {10, "z"}};
		int idx[3], code;

		assert_int_equal(dns_mx_order(mx, 5, &rng), 5);
		assert_string_equal(mx[0].name, "first");
		assert_string_equal(mx[4].name, "last");
		for (int i = 0; i < 3; i++)
			for (int k = 0; k < 3; k++)
				if (strcmp(mx[1 + i].name, names[k]) == 0)
					idx[i] = k;
		assert_true(idx[0] != idx[1] && idx[1] != idx[2] && idx[0] != idx[2]);
		code = idx[0] * 2 + (idx[1] > idx[2]); /* a permutation's number 0..5 */
		seen[code]++;
	}
	for (int i = 0; i < 6; i++)
		if (seen[i] < 9600 || seen[i] > 10400) /* sigma is 91 */
			fail_msg("order %d: got %u times in 60000, want about 10000", i, seen[i]);
}

static void test_mx_order_cap_and_duplicates(void **state)
{
	struct dns_mx mx[100];
	char names[100][16];
	uint64_t rng = 3;
	size_t n;

	(void)state;
	for (int i = 0; i < 100; i++) {
		snprintf(names[i], sizeof(names[i]), "h%d.test", 99 - i);
		mx[i].pref = (unsigned)(99 - i);
		mx[i].name = names[i];
	}
	n = dns_mx_order(mx, 100, &rng);
	assert_int_equal(n, DNS_MAX_HOSTS);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(mx[i].pref, i);

	{
		struct dns_mx d[] = {{10, "a.test"}, {20, "A.TEST."}, {5, "."}, {15, "b.test"},
				     {1, ""}, {30, "b.test"}};

		n = dns_mx_order(d, 6, &rng);
		assert_int_equal(n, 2);
		assert_string_equal(d[0].name, "a.test");
		assert_int_equal(d[0].pref, 10);
		assert_string_equal(d[1].name, "b.test");
		assert_int_equal(d[1].pref, 15);
	}
	assert_int_equal(dns_mx_order(mx, 0, &rng), 0);
}

/* ---- literals ---- */

static void test_literal_parse(void **state)
{
	static const struct {
		const char *in;
		int bare_ok, want;
		int family;
		const char *text;
	} cases[] = {
		{"[127.0.0.1]", 0, 1, AF_INET, "127.0.0.1"},
		{"[::1]", 0, 1, AF_INET6, "::1"},
		{"[IPv6:2001:DB8:0::1]", 0, 1, AF_INET6, "2001:db8::1"},
		{"[ipv6:::1]", 0, 1, AF_INET6, "::1"},
		{"127.0.0.1", 0, 0, 0, NULL},
		{"127.0.0.1", 1, 1, AF_INET, "127.0.0.1"},
		{"::1", 1, 1, AF_INET6, "::1"},
		{"[mx.example.test]", 1, 0, 0, NULL},
		{"mx.example.test", 1, 0, 0, NULL},
		{"[127.0.0.1", 1, 0, 0, NULL},
		{"[]", 1, 0, 0, NULL},
		{"[IPv6:127.0.0.1]", 0, 0, 0, NULL},
		{"127.1", 1, 0, 0, NULL},
	};
	struct dns_addr a;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = dns_literal_parse(cases[i].in, cases[i].bare_ok, &a);

		if (got != cases[i].want)
			fail_msg("\"%s\" (bare %d): got %d, want %d", cases[i].in, cases[i].bare_ok,
				 got, cases[i].want);
		if (!got)
			continue;
		assert_int_equal(a.ss.ss_family, cases[i].family);
		assert_string_equal(a.text, cases[i].text);
		if (cases[i].family == AF_INET) {
			assert_int_equal(a.len, sizeof(struct sockaddr_in));
			assert_int_equal(((struct sockaddr_in *)&a.ss)->sin_port, 0);
		} else {
			assert_int_equal(a.len, sizeof(struct sockaddr_in6));
			assert_int_equal(((struct sockaddr_in6 *)&a.ss)->sin6_port, 0);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_servers_csv),
		cmocka_unit_test(test_family_parse),
		cmocka_unit_test(test_rand_below),
		cmocka_unit_test(test_mx_order_sorted),
		cmocka_unit_test(test_mx_order_ties_shuffled),
		cmocka_unit_test(test_mx_order_cap_and_duplicates),
		cmocka_unit_test(test_literal_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
