/* Tests for common/cidr.c: entry syntax, prefix boundaries, IPv4-mapped clients, sockaddrs. */
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
#include <sys/socket.h>
#include <sys/un.h>

#include "common/cidr.h"

/* Up to this many entries per list in a table row. */
#define MAX_ITEMS 4

struct match_row {
	const char *items[MAX_ITEMS]; /* NULL-terminated */
	const char *addr;
	bool want;
};

/* The table is laid out by hand, one row a line. */
/* clang-format off */
static const struct match_row match_rows[] = {
	/* IPv4 */
	{{"192.0.2.0/24"}, "192.0.2.0", true},
	{{"192.0.2.0/24"}, "192.0.2.255", true},
	{{"192.0.2.0/24"}, "192.0.3.0", false},
	{{"192.0.2.0/24"}, "192.0.1.255", false},
	{{"10.0.0.0/8", "192.0.2.0/24"}, "10.255.255.255", true},
	{{"10.0.0.0/8", "192.0.2.0/24"}, "11.0.0.0", false},
	/* /32 and a bare address */
	{{"192.0.2.7/32"}, "192.0.2.7", true},
	{{"192.0.2.7/32"}, "192.0.2.6", false},
	{{"192.0.2.7"}, "192.0.2.7", true},
	{{"192.0.2.7"}, "192.0.2.8", false},
	/* /0 of each family covers that family only */
	{{"0.0.0.0/0"}, "203.0.113.9", true},
	{{"0.0.0.0/0"}, "255.255.255.255", true},
	{{"0.0.0.0/0"}, "2001:db8::1", false},
	{{"[::]/0"}, "2001:db8::1", true},
	{{"[::]/0"}, "::", true},
	{{"[::]/0"}, "192.0.2.1", false},
	/* /23: 198.51.100.0 - 198.51.101.255 */
	{{"198.51.100.0/23"}, "198.51.99.255", false},
	{{"198.51.100.0/23"}, "198.51.100.0", true},
	{{"198.51.100.0/23"}, "198.51.101.255", true},
	{{"198.51.100.0/23"}, "198.51.102.0", false},
	/* IPv6, brackets optional */
	{{"[2001:db8::]/32"}, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true},
	{{"[2001:db8::]/32"}, "2001:db9::", false},
	{{"2001:db8::/32"}, "2001:db8::1", true},
	{{"2001:db8::/32"}, "2001:db7:ffff::1", false},
	{{"[::1]/128"}, "::1", true},
	{{"[::1]/128"}, "::2", false},
	{{"::1/128"}, "::1", true},
	{{"[::1]"}, "::1", true},
	{{"[::1]"}, "::", false},
	/* /127: 2001:db8::4 and ::5 only */
	{{"[2001:db8::4]/127"}, "2001:db8::3", false},
	{{"[2001:db8::4]/127"}, "2001:db8::4", true},
	{{"[2001:db8::4]/127"}, "2001:db8::5", true},
	{{"[2001:db8::4]/127"}, "2001:db8::6", false},
	/* IPv4-mapped IPv6 clients match IPv4 entries */
	{{"192.0.2.0/24"}, "::ffff:192.0.2.9", true},
	{{"192.0.2.0/24"}, "::ffff:192.0.3.9", false},
	{{"127.0.0.0/8", "[::1]/128"}, "::ffff:127.0.0.1", true},
	{{"0.0.0.0/0"}, "::ffff:8.8.8.8", true},
	/* ... but not an IPv4-compatible or NAT64 address with the same low bits */
	{{"192.0.2.0/24"}, "::192.0.2.9", false},
	{{"192.0.2.0/24"}, "64:ff9b::192.0.2.9", false},
	/* and mapped entries are IPv4 entries */
	{{"[::ffff:192.0.2.0]/120"}, "192.0.2.200", true},
	{{"[::ffff:192.0.2.0]/120"}, "::ffff:192.0.2.200", true},
	{{"[::ffff:192.0.2.0]/120"}, "192.0.3.200", false},
	/* families never cross */
	{{"192.0.2.0/24"}, "2001:db8::c000:209", false},
	{{"[2001:db8::]/32"}, "32.1.13.184", false},
	/* not numeric addresses */
	{{"0.0.0.0/0", "[::]/0"}, "localhost", false},
	{{"0.0.0.0/0", "[::]/0"}, "", false},
	{{"0.0.0.0/0", "[::]/0"}, "[::1]", false},
	{{"0.0.0.0/0", "[::]/0"}, "192.0.2.1/32", false},
	/* an empty list */
	{{NULL}, "192.0.2.1", false},
	{{NULL}, "::1", false},
};

/* Entries that must be refused; the error must start with the entry itself. */
static const struct {
	const char *entry;
	const char *reason; /* substring */
} bad_rows[] = {
	{"", "empty"},
	{"10.0.0.0/33", "prefix"},
	{"[::]/129", "prefix"},
	{"10.0.0.0/", "prefix"},
	{"10.0.0.0/+8", "prefix"},
	{"10.0.0.0/-0", "prefix"},
	{"10.0.0.0/ 8", "prefix"},
	{"10.0.0.0/8x", "prefix"},
	{"10.0.0.0/0008", "prefix"},
	{"10.0.0.0/4294967304", "prefix"},
	{"10.0.0.0/8/8", "prefix"},
	{"/", "file"},
	{"/etc/postfix/networks", "file"},
	{"10.0.0.1/8", "host address bits"},
	{"192.0.2.1/31", "host address bits"},
	{"[2001:db8::1]/64", "host address bits"},
	{"[2001:db8::1]/127", "host address bits"},
	{"::1/0", "host address bits"},
	{"localhost", "numeric"},
	{"mail.example.com/32", "numeric"},
	{"!192.0.2.0/24", "negation"},
	{"!x", "negation"},
	{"[::1", "']'"},
	{"[::1]x", "after ']'"},
	{"[::1]/", "prefix"},
	{"[]", "numeric"},
	{"/24", "file"},
	{"1.2.3", "numeric"},
	{"256.0.0.0/8", "numeric"},
	{"010.0.0.0/8", "numeric"},
	{" 10.0.0.0/8", "numeric"},
	{"fe80::1%eth0", "numeric"},
	{"1:2:3:4:5:6:7:8:9", "numeric"},
	{"2001:db8:" "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000", "numeric"},
};
/* clang-format on */

static struct cidr_list *parse_row(const char *const *items, char *err, size_t errlen)
{
	size_t n = 0;

	while (n < MAX_ITEMS && items[n])
		n++;
	return cidr_list_parse(items, n, err, errlen);
}

static void test_match_table(void **state)
{
	size_t rows = sizeof(match_rows) / sizeof(match_rows[0]);
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < rows; i++) {
		const struct match_row *r = &match_rows[i];
		char err[200] = "";
		struct cidr_list *l = parse_row(r->items, err, sizeof(err));
		bool got;

		if (!l) {
			print_error("row %zu %s: parse got error \"%s\", want ok\n", i, r->items[0],
				    err);
			failed++;
			continue;
		}
		got = cidr_list_match_string(l, r->addr);
		if (got != r->want) {
			print_error("row %zu %s vs %s: got %d, want %d\n", i,
				    r->items[0] ? r->items[0] : "(empty list)", r->addr, got,
				    r->want);
			failed++;
		}
		cidr_list_free(&l);
		if (l)
			fail_msg("cidr_list_free: got pointer not cleared, want NULL");
	}
	if (failed)
		fail_msg("got %d failing rows of %zu, want 0", failed, rows);
}

static void test_bad_entries(void **state)
{
	size_t rows = sizeof(bad_rows) / sizeof(bad_rows[0]);
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < rows; i++) {
		/* A good entry first: the error must name the bad one. */
		const char *items[2] = {"127.0.0.0/8", bad_rows[i].entry};
		char err[200] = "", want[120];
		struct cidr_list *l = cidr_list_parse(items, 2, err, sizeof(err));

		snprintf(want, sizeof(want),
			 "%s: ", bad_rows[i].entry[0] ? bad_rows[i].entry : "\"\"");
		if (l) {
			print_error("row %zu \"%s\": got ok with %zu entries, want error\n", i,
				    bad_rows[i].entry, cidr_list_count(l));
			cidr_list_free(&l);
			failed++;
		} else if (strncmp(err, want, strlen(want)) != 0 ||
			   !strstr(err + strlen(want), bad_rows[i].reason)) {
			print_error("row %zu \"%s\": got error \"%s\", want \"%s...%s...\"\n", i,
				    bad_rows[i].entry, err, want, bad_rows[i].reason);
			failed++;
		}
	}
	if (failed)
		fail_msg("got %d failing rows of %zu, want 0", failed, rows);
}

static void test_err_buffer(void **state)
{
	const char *items[] = {"10.0.0.1/8"};
	char err[8];

	(void)state;
	/* No buffer at all, and one too small: no crash, NUL-terminated. */
	assert_null(cidr_list_parse(items, 1, NULL, 0));
	memset(err, 'x', sizeof(err));
	assert_null(cidr_list_parse(items, 1, err, sizeof(err)));
	if (strcmp(err, "10.0.0.") != 0)
		fail_msg("truncated error: got \"%.8s\", want \"10.0.0.\"", err);
}

static struct sockaddr_in sin_of(const char *s)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(25);
	assert_int_equal(inet_pton(AF_INET, s, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6 sin6_of(const char *s)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(25);
	assert_int_equal(inet_pton(AF_INET6, s, &sin6.sin6_addr), 1);
	return sin6;
}

static void test_sockaddr(void **state)
{
	const char *items[] = {"127.0.0.0/8", "[::1]/128", "192.0.2.0/25", "[2001:db8:1::]/48"};
	static const struct {
		const char *addr;
		bool v6;
		bool want;
	} rows[] = {
	    {"127.0.0.1", false, true},
	    {"128.0.0.1", false, false},
	    {"192.0.2.127", false, true},
	    {"192.0.2.128", false, false},
	    {"::1", true, true},
	    {"::2", true, false},
	    {"2001:db8:1:ffff::1", true, true},
	    {"2001:db8:2::1", true, false},
	    {"::ffff:127.0.0.1", true, true},
	    {"::ffff:192.0.2.128", true, false},
	};
	struct cidr_list *l;
	struct sockaddr_un sa_un;
	char err[200] = "";

	(void)state;
	l = cidr_list_parse(items, 4, err, sizeof(err));
	if (!l)
		fail_msg("parse: got \"%s\", want ok", err);
	assert_int_equal(cidr_list_count(l), 4);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
		bool got;

		if (rows[i].v6) {
			sin6 = sin6_of(rows[i].addr);
			got = cidr_list_match(l, (const struct sockaddr *)&sin6);
		} else {
			sin = sin_of(rows[i].addr);
			got = cidr_list_match(l, (const struct sockaddr *)&sin);
		}
		if (got != rows[i].want)
			fail_msg("row %zu %s: got %d, want %d", i, rows[i].addr, got, rows[i].want);
		if (cidr_list_match_string(l, rows[i].addr) != rows[i].want)
			fail_msg("row %zu %s: string match disagrees with sockaddr match", i,
				 rows[i].addr);
	}
	/* Other families never match. */
	memset(&sa_un, 0, sizeof(sa_un));
	sa_un.sun_family = AF_UNIX;
	strcpy(sa_un.sun_path, "/tmp/x");
	assert_false(cidr_list_match(l, (const struct sockaddr *)&sa_un));
	assert_false(cidr_list_match(l, NULL));
	cidr_list_free(&l);
	assert_null(l);
	cidr_list_free(&l);
	cidr_list_free(NULL);
}

static void test_empty_list(void **state)
{
	struct cidr_list *l;
	struct sockaddr_in sin = sin_of("127.0.0.1");
	struct sockaddr_in6 sin6 = sin6_of("::1");
	char err[64] = "";

	(void)state;
	l = cidr_list_parse(NULL, 0, err, sizeof(err));
	assert_non_null(l);
	assert_int_equal(cidr_list_count(l), 0);
	assert_false(cidr_list_match(l, (const struct sockaddr *)&sin));
	assert_false(cidr_list_match(l, (const struct sockaddr *)&sin6));
	assert_false(cidr_list_match_string(l, "127.0.0.1"));
	assert_false(cidr_list_match_string(l, "::1"));
	cidr_list_free(&l);
	assert_int_equal(cidr_list_count(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match_table), cmocka_unit_test(test_bad_entries),
	    cmocka_unit_test(test_err_buffer),	cmocka_unit_test(test_sockaddr),
	    cmocka_unit_test(test_empty_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
