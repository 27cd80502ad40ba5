/* cidr - lists of IPv4/IPv6 networks and matching addresses against them; see cidr.h. */
#include "common/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/xalloc.h"

/*
 * One network.  addr holds the network address in network byte order: 4
 * bytes for AF_INET (the rest zero), 16 for AF_INET6.
 *
 * IPv4-mapped IPv6 (::ffff:0:0/96) is folded into IPv4 on both sides: a
 * client ::ffff:a.b.c.d is matched as a.b.c.d, and an entry
 * [::ffff:a.b.c.d]/n with n >= 96 is stored as a.b.c.d/(n - 96).  Without
 * the second half such an entry could never match anything.  An IPv6
 * entry shorter than /96 ("[::]/0") covers native IPv6 clients only.
 */
struct cidr_entry {
	int family;
	unsigned prefix;
	unsigned char addr[16];
};

struct cidr_list {
	size_t n;
	struct cidr_entry e[];
};

/* Longest text of a numeric address we pass to inet_pton, with room to spare. */
#define CIDR_ADDR_TEXT_MAX 64

static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int fail(char *err, size_t errlen, const char *entry, const char *why)
{
	if (errlen > 0)
		snprintf(err, errlen, "%s: %s", entry, why);
	return -1;
}

/* Parse the decimal prefix length at s (NUL-terminated); -1 if malformed or > max. */
static int parse_prefix(const char *s, unsigned max)
{
	unsigned v = 0;
	size_t n = 0;

	/* Digits only: strtoul would take "+8", " 8" and "-0". */
	for (; s[n] >= '0' && s[n] <= '9'; n++) {
		if (n >= 3)
			return -1;
		v = v * 10 + (unsigned)(s[n] - '0');
	}
	if (n == 0 || s[n] != '\0' || v > max)
		return -1;
	return (int)v;
}

/* Do the first prefix bits of a and b agree? */
static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	return ((a[bytes] ^ b[bytes]) & (unsigned char)(0xff00u >> bits)) == 0;
}

/* Are all bits of addr (len bytes) from bit prefix on zero? */
static bool host_bits_zero(const unsigned char *addr, size_t len, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;

	if (bits != 0 && (addr[bytes] & (unsigned char)(0xffu >> bits)) != 0)
		return false;
	for (size_t i = bytes + (bits != 0); i < len; i++)
		if (addr[i] != 0)
			return false;
	return true;
}

/*
 * Turn the numeric text into e's family and address; 0 or -1.  Text with
 * a ':' is IPv6, anything else IPv4 (inet_pton takes only a.b.c.d then).
 */
static int parse_addr(const char *text, size_t len, struct cidr_entry *e)
{
	char buf[CIDR_ADDR_TEXT_MAX];

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	memset(e->addr, 0, sizeof(e->addr));
	e->family = memchr(buf, ':', len) ? AF_INET6 : AF_INET;
	return inet_pton(e->family, buf, e->addr) == 1 ? 0 : -1;
}

/* Parse one entry into e; 0, or -1 with "ENTRY: reason" in err. */
static int parse_entry(const char *entry, struct cidr_entry *e, char *err, size_t errlen)
{
	const char *addr = entry, *slash, *end; /* *slash: '/' or NUL */
	int prefix;
	unsigned max;

	if (*entry == '\0')
		return fail(err, errlen, "\"\"", "empty network entry");
	if (*entry == '!')
		return fail(err, errlen, entry, "negation is not supported");
	if (*entry == '/')
		return fail(err, errlen, entry, "file names are not supported");
	if (*entry == '[') {
		addr = entry + 1;
		end = strchr(addr, ']');
		if (!end)
			return fail(err, errlen, entry, "missing ']'");
		slash = end + 1;
		if (*slash != '\0' && *slash != '/')
			return fail(err, errlen, entry, "unexpected text after ']'");
	} else {
		end = strchrnul(entry, '/');
		slash = end;
	}
	if (parse_addr(addr, (size_t)(end - addr), e) < 0)
		return fail(err, errlen, entry,
			    "not a numeric IPv4 or IPv6 address (hostnames are not supported)");
	max = e->family == AF_INET ? 32 : 128;
	if (*slash == '/') {
		prefix = parse_prefix(slash + 1, max);
		if (prefix < 0)
			return fail(err, errlen, entry,
				    e->family == AF_INET ? "bad prefix length (want 0-32)"
							 : "bad prefix length (want 0-128)");
	} else {
		prefix = (int)max;
	}
	e->prefix = (unsigned)prefix;
	if (!host_bits_zero(e->addr, max / 8, e->prefix))
		return fail(err, errlen, entry, "non-null host address bits");
	if (e->family == AF_INET6 && e->prefix >= 96 &&
	    memcmp(e->addr, mapped_prefix, sizeof(mapped_prefix)) == 0) {
		e->family = AF_INET;
		e->prefix -= 96;
		memmove(e->addr, e->addr + 12, 4);
		memset(e->addr + 4, 0, sizeof(e->addr) - 4);
	}
	return 0;
}

struct cidr_list *cidr_list_parse(const char *const *items, size_t n, char *err, size_t errlen)
{
	struct cidr_list *l;

	if (n > (SIZE_MAX - sizeof(*l)) / sizeof(l->e[0])) {
		fail(err, errlen, "mynetworks", "too many entries");
		return NULL;
	}
	l = xcalloc(1, sizeof(*l) + n * sizeof(l->e[0]));
	for (size_t i = 0; i < n; i++) {
		if (parse_entry(items[i], &l->e[i], err, errlen) < 0) {
			cidr_list_free(&l);
			return NULL;
		}
		l->n++;
	}
	return l;
}

/* Match family/address (addr in network order) against every entry. */
static bool match_addr(const struct cidr_list *l, int family, const unsigned char *addr)
{
	if (!l)
		return false;
	if (family == AF_INET6 && memcmp(addr, mapped_prefix, sizeof(mapped_prefix)) == 0) {
		family = AF_INET;
		addr += 12;
	}
	for (size_t i = 0; i < l->n; i++)
		if (l->e[i].family == family && prefix_equal(l->e[i].addr, addr, l->e[i].prefix))
			return true;
	return false;
}

bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

		return match_addr(l, AF_INET, (const unsigned char *)&sin->sin_addr);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

		return match_addr(l, AF_INET6, sin6->sin6_addr.s6_addr);
	}
	return false;
}

bool cidr_list_match_string(const struct cidr_list *l, const char *addr)
{
	struct cidr_entry e;

	if (!addr || parse_addr(addr, strlen(addr), &e) < 0)
		return false;
	return match_addr(l, e.family, e.addr);
}

size_t cidr_list_count(const struct cidr_list *l)
{
	return l ? l->n : 0;
}

void cidr_list_free(struct cidr_list **l)
{
	if (!l || !*l)
		return;
	free(*l);
	*l = NULL;
}
