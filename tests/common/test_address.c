/* Tests for common/address.c: the RFC 5321 grammar, limits, canonical form, fuzzing. */
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

/* The table and its macros are laid out by hand, one row a line. */
/* clang-format off */

/* Flag shorthands for the table. */
#define NUL_OK ADDRESS_ALLOW_NULL
#define U8     ADDRESS_SMTPUTF8
#define NB     ADDRESS_ALLOW_NO_BRACKETS
#define ND     ADDRESS_ALLOW_NO_DOMAIN

/* Expected boolean fields of struct address, as a bit mask. */
#define W_NULL    0x01u
#define W_ROUTE   0x02u
#define W_QUOTED  0x04u
#define W_LITERAL 0x08u
#define W_UTF8    0x10u

/* Long local parts (a), labels (b) and domains built from them. */
#define A10  "aaaaaaaaaa"
#define A60  A10 A10 A10 A10 A10 A10
#define A61  A60 "a"
#define A62  A60 "aa"
#define A64  A60 "aaaa"
#define L10  "bbbbbbbbbb"
#define L60  L10 L10 L10 L10 L10 L10
#define L61  L60 "b"
#define L62  L60 "bb"
#define L63  L60 "bbb"
#define L64  L60 "bbbb"
#define D189 L63 "." L63 "." L61
#define D190 L63 "." L63 "." L62
#define D191 L63 "." L63 "." L63
#define D252 L63 "." L63 "." L63 "." L60
#define D253 L63 "." L63 "." L63 "." L61
#define D255 L63 "." L63 "." L63 "." L63
#define D256 L63 "." L63 "." L63 "." L62 ".a"

/* Greek "test" and "example" (RFC 6530 examples), UTF-8. */
#define GR_LOCAL  "\xce\xb4\xce\xbf\xce\xba\xce\xb9\xce\xbc\xce\xae"
#define GR_DOMAIN "\xcf\x80\xce\xb1\xcf\x81\xce\xac\xce\xb4" \
		  "\xce\xb5\xce\xb9\xce\xb3\xce\xbc\xce\xb1." GR_LOCAL

/* Which function a row goes through. */
enum api {
	API_PATH,   /* address_parse_path, consumed checked */
	API_WHOLE,  /* address_parse */
	API_DOMAIN, /* address_domain_valid */
};

struct row {
	const char *in;
	size_t len; /* 0: strlen(in); set for inputs holding NUL bytes */
	unsigned flags;
	enum api api;
	bool ok;
	const char *local;     /* ok rows: want */
	const char *domain;    /* ok rows: want */
	const char *domain_lc; /* ok rows: want, NULL to skip */
	unsigned want;         /* ok rows: W_* */
	size_t consumed;       /* ok path rows: want, 0 for the whole input */
	const char *reason;    /* failing rows: substring of the reason */
};

#define OK(in_, fl_, lo_, do_, w_)                                                                 \
	{.in = in_, .flags = fl_, .ok = true, .local = lo_, .domain = do_, .want = w_}
#define OK_LC(in_, fl_, lo_, do_, lc_, w_)                                                         \
	{.in = in_, .flags = fl_, .ok = true, .local = lo_, .domain = do_, .domain_lc = lc_,      \
	 .want = w_}
#define OK_USED(in_, len_, fl_, lo_, do_, w_, used_)                                               \
	{.in = in_, .len = len_, .flags = fl_, .ok = true, .local = lo_, .domain = do_,          \
	 .want = w_, .consumed = used_}
#define BAD(in_, fl_, why_) {.in = in_, .flags = fl_, .reason = why_}
#define BAD_LEN(in_, len_, fl_, why_) {.in = in_, .len = len_, .flags = fl_, .reason = why_}
#define WHOLE_OK(in_, fl_, lo_, do_, w_)                                                           \
	{.in = in_, .flags = fl_, .api = API_WHOLE, .ok = true, .local = lo_, .domain = do_,     \
	 .want = w_}
#define WHOLE_BAD(in_, fl_, why_) {.in = in_, .flags = fl_, .api = API_WHOLE, .reason = why_}
#define DOM_OK(in_, fl_)          {.in = in_, .flags = fl_, .api = API_DOMAIN, .ok = true}
#define DOM_BAD(in_, fl_, why_)   {.in = in_, .flags = fl_, .api = API_DOMAIN, .reason = why_}

static const struct row rows[] = {
	/* plain */
	OK("<user@example.org>", 0, "user", "example.org", 0),
	OK_LC("<User@Example.ORG>", 0, "User", "Example.ORG", "example.org", 0),
	OK("<first.last@example.org>", 0, "first.last", "example.org", 0),
	OK("<a.b.c.d@x.y.z>", 0, "a.b.c.d", "x.y.z", 0),
	OK("<!#$%&'*+-/=?^_`{|}~@example.org>", 0, "!#$%&'*+-/=?^_`{|}~", "example.org", 0),
	OK("<a@b>", 0, "a", "b", 0),
	OK("<user+tag@sub.example.co.uk>", 0, "user+tag", "sub.example.co.uk", 0),
	OK("<0@3com.example>", 0, "0", "3com.example", 0),
	OK("<a@b>", NB, "a", "b", 0),

	/* quoted local parts: canonical form */
	OK("<\"john smith\"@example.org>", 0, "\"john smith\"", "example.org", W_QUOTED),
	OK("<\"a\\\"b\"@x>", 0, "\"a\\\"b\"", "x", W_QUOTED),
	OK("<\"a\\\\b\"@x>", 0, "\"a\\\\b\"", "x", W_QUOTED),
	OK("<\"a\\ b\"@x>", 0, "\"a b\"", "x", W_QUOTED),
	OK("<\"a(b)\"@x>", 0, "\"a(b)\"", "x", W_QUOTED),
	OK("<\"joe\"@x>", 0, "joe", "x", 0),
	OK("<\"\\j\\o\\e\"@x>", 0, "joe", "x", 0),
	OK("<\"first.last\"@x>", 0, "first.last", "x", 0),
	OK("<\"a..b\"@x>", 0, "\"a..b\"", "x", W_QUOTED),
	OK("<\".a\"@x>", 0, "\".a\"", "x", W_QUOTED),
	OK("<\"a.\"@x>", 0, "\"a.\"", "x", W_QUOTED),
	OK("<\"\"@x>", 0, "\"\"", "x", W_QUOTED),
	OK("<\"a>b\"@x>", 0, "\"a>b\"", "x", W_QUOTED),
	OK_USED("<\"a b\"@x> SIZE=1", 0, 0, "\"a b\"", "x", W_QUOTED, 9),
	BAD("<\"a\"b@x>", 0, "invalid character 'b' in local part"),
	BAD("<\"abc@x>", 0, "unterminated quoted local part"),
	BAD("<a.\"b\"@x>", 0, "invalid character '\"' in local part"),

	/* null path */
	OK("<>", NUL_OK, "", "", W_NULL),
	BAD("<>", 0, "null path <> not allowed"),
	BAD("<>", NB, "null path <> not allowed"),
	OK_USED("<> SIZE=10", 0, NUL_OK, "", "", W_NULL, 2),

	/* source routes: checked, then dropped */
	OK("<@a.example:user@c.example>", 0, "user", "c.example", W_ROUTE),
	OK("<@a.example,@b.example:user@c.example>", 0, "user", "c.example", W_ROUTE),
	OK("<@a,@b,@c:u@d>", 0, "u", "d", W_ROUTE),
	OK("<@a:postmaster>", ND, "postmaster", "", W_ROUTE),
	BAD("<@a.example>", 0, "missing local part"),
	BAD("<@a:>", 0, "missing local part"),
	BAD("<@a.example,b.example:u@c>", 0, "missing '@' after ',' in source route"),
	BAD("<@-a.example:u@c>", 0, "label starting with '-' in route domain"),
	BAD("<@[192.0.2.1]:u@c>", 0, "invalid character '[' in route domain"),
	BAD("<@a..b:u@c>", 0, "consecutive dots in route domain"),
	BAD("<@:u@c>", 0, "empty route domain"),
	BAD("<@a;u@c>", 0, "invalid character ';' in source route"),
	BAD("<@" L63 ",@" L63 ",@" L63 ",@" L63 ":u@x.org>", 0, "path longer than 256 octets"),

	/* address literals */
	OK("<u@[192.0.2.1]>", 0, "u", "[192.0.2.1]", W_LITERAL),
	OK("<u@[127.0.0.1]>", 0, "u", "[127.0.0.1]", W_LITERAL),
	BAD("<u@[300.1.1.1]>", 0, "bad IPv4 address literal [300.1.1.1]"),
	BAD("<u@[1.2.3]>", 0, "bad IPv4 address literal"),
	BAD("<u@[01.2.3.4]>", 0, "bad IPv4 address literal"),
	BAD("<u@[192.0.2.1>", 0, "missing ']' at end of address literal"),
	BAD("<u@[]>", 0, "empty address literal"),
	BAD("<u@[192.0.2.1]x>", 0, "invalid character 'x' in domain"),
	BAD("<u@[192.0.2.1 ]>", 0, "space in address literal"),
	BAD("<u@[192.0.2.1\r]>", 0, "CR in address literal"),
	OK("<u@[IPv6:2001:db8::1]>", 0, "u", "[IPv6:2001:db8::1]", W_LITERAL),
	OK_LC("<u@[ipv6:2001:DB8::1]>", 0, "u", "[ipv6:2001:DB8::1]", "[ipv6:2001:db8::1]",
	      W_LITERAL),
	OK("<u@[IPv6:::1]>", 0, "u", "[IPv6:::1]", W_LITERAL),
	OK("<u@[IPv6:::ffff:192.0.2.1]>", 0, "u", "[IPv6:::ffff:192.0.2.1]", W_LITERAL),
	BAD("<u@[IPv6:2001:db8::g]>", 0, "bad IPv6 address literal"),
	BAD("<u@[IPv6:1:2:3:4:5:6:7:8:9]>", 0, "bad IPv6 address literal"),
	BAD("<u@[IPv6:fe80::1%eth0]>", 0, "bad IPv6 address literal"),
	BAD("<u@[IPv6:192.0.2.1]>", 0, "bad IPv6 address literal"),
	BAD("<u@[2001:db8::1]>", 0, "not supported"),
	BAD("<u@[x-tag:content]>", 0, "general address literal [x-tag:content] not supported"),

	/* length limits */
	OK("<" A64 "@x.org>", 0, A64, "x.org", 0),
	BAD("<" A64 "a@x.org>", 0, "local part longer than 64 octets"),
	OK("<\"" A61 " \"@x>", 0, "\"" A61 " \"", "x", W_QUOTED),
	BAD("<\"" A62 " \"@x>", 0, "local part longer than 64 octets"),
	OK("<\"" A64 "\"@x>", 0, A64, "x", 0), /* 66 given, 64 canonical */
	OK("<u@" L63 ".org>", 0, "u", L63 ".org", 0),
	BAD("<u@" L64 ".org>", 0, "label longer than 63 octets in domain"),
	OK("<" A64 "@" D189 ">", 0, A64, D189, 0),
	BAD("<" A64 "@" D190 ">", 0, "path longer than 256 octets"),
	BAD("<" A64 "@" D191 ">", 0, "path longer than 256 octets"),
	OK("<a@" D252 ">", 0, "a", D252, 0),
	BAD("<a@" D253 ">", 0, "path longer than 256 octets"),
	OK("a@" D252, NB, "a", D252, 0),
	BAD("ab@" D252, NB, "address longer than 254 octets"),
	DOM_OK(D255, 0),
	DOM_BAD(D256, 0, "domain longer than 255 octets"),

	/* dots, hyphens, numbers */
	BAD("<.a@x>", 0, "local part starts with '.'"),
	BAD("<a.@x>", 0, "local part ends with '.'"),
	BAD("<a..b@x>", 0, "consecutive dots in local part"),
	BAD("<a@.x>", 0, "domain starts with '.'"),
	BAD("<a@x..y>", 0, "consecutive dots in domain"),
	BAD("<a@x.>", 0, "domain ends with '.'"),
	BAD("<a@-x.org>", 0, "label starting with '-' in domain"),
	BAD("<a@x-.org>", 0, "label ending with '-' in domain"),
	BAD("<a@x.-org>", 0, "label starting with '-' in domain"),
	OK("<a-b@x-y.org>", 0, "a-b", "x-y.org", 0),
	OK("<a@xn--bcher-kva.example>", 0, "a", "xn--bcher-kva.example", 0),
	BAD("<a@192.0.2.1>", 0, "all-numeric top-level label in domain"),
	BAD("<a@x.123>", 0, "all-numeric top-level label in domain"),
	BAD("<a@exa_mple.org>", 0, "invalid character '_' in domain"),
	BAD("<a@>", 0, "empty domain"),

	/* control characters, inside quotes too */
	BAD("<a\rb@x>", 0, "CR in local part"),
	BAD("<a@x\r>", 0, "CR in domain"),
	BAD("<a\nb@x>", 0, "LF in local part"),
	BAD("<a@x\n>", 0, "LF in domain"),
	BAD_LEN("<a\0b@x>", 7, 0, "NUL byte in local part"),
	BAD_LEN("<a@x\0y>", 7, 0, "NUL byte in domain"),
	BAD_LEN("<\"a\0b\"@x>", 9, 0, "NUL byte in quoted local part"),
	BAD("<a\tb@x>", 0, "TAB in local part"),
	BAD("<\"a\tb\"@x>", 0, "TAB in quoted local part"),
	BAD("<a\x7f@x>", 0, "DEL in local part"),
	BAD("<\"a\x7f\"@x>", 0, "DEL in quoted local part"),
	BAD("<\"a\\\rb\"@x>", 0, "CR in quoted local part"),
	BAD("<\"a\r\"@x>", U8, "CR in quoted local part"),
	BAD("<a\x01@x>", 0, "control character 0x01 in local part"),
	BAD("<a@x\x1b>", 0, "control character 0x1B in domain"),

	/* UTF-8 */
	OK("<" GR_LOCAL "@" GR_DOMAIN ">", U8, GR_LOCAL, GR_DOMAIN, W_UTF8),
	BAD("<" GR_LOCAL "@" GR_DOMAIN ">", 0,
	    "non-ASCII byte 0xCE in local part without SMTPUTF8"),
	OK("<\"j\xc3\xbc" "rgen m\xc3\xbc" "ller\"@x>", U8, "\"j\xc3\xbc" "rgen m\xc3\xbc" "ller\"",
	   "x", W_QUOTED | W_UTF8),
	OK("<\"j\xc3\xbc" "rgen\"@x>", U8, "j\xc3\xbc" "rgen", "x", W_UTF8),
	BAD("<\"j\xc3\xbc" "rgen\"@x>", 0,
	    "non-ASCII byte 0xC3 in quoted local part without SMTPUTF8"),
	OK("<a@b\xc3\xbc" "cher.example>", U8, "a", "b\xc3\xbc" "cher.example", W_UTF8),
	BAD("<a@b\xc3\xbc" "cher.example>", 0, "non-ASCII byte 0xC3 in domain without SMTPUTF8"),
	OK_LC("<a@\xc3\x9c" "ber.Example>", U8, "a", "\xc3\x9c" "ber.Example",
	      "\xc3\x9c" "ber.example", W_UTF8),
	OK("<\xf0\x9f\x98\x80@x>", U8, "\xf0\x9f\x98\x80", "x", W_UTF8),
	BAD("<\xc0\xaf" "a@x>", U8, "malformed UTF-8 in local part"),
	BAD("<\xe0\x80\xaf" "a@x>", U8, "malformed UTF-8 in local part"),
	BAD("<a\x80@x>", U8, "malformed UTF-8 in local part"),
	BAD("<a@x\xbf>", U8, "malformed UTF-8 in domain"),
	BAD("<\xed\xa0\x80@x>", U8, "malformed UTF-8 in local part"),
	BAD("<a\xc3@x>", U8, "malformed UTF-8 in local part"),
	BAD("<\xf4\x90\x80\x80@x>", U8, "malformed UTF-8 in local part"),
	BAD("<\xf5\x80\x80\x80@x>", U8, "malformed UTF-8 in local part"),
	BAD("<\"a\x80\"@x>", U8, "malformed UTF-8 in quoted local part"),
	BAD("<\xc2\x85@x>", U8, "control character U+0085 in local part"),
	BAD("<a@[\xc3\xbc]>", U8, "non-ASCII character in address literal"),
	BAD("<\"\\\xc3\xbc\"@x>", U8, "non-ASCII character after '\\' in local part"),

	/* brackets */
	BAD("<a@b", 0, "missing '>' at end of path"),
	BAD("<a@b SIZE=1", 0, "missing '>' at end of path"),
	BAD("<", 0, "missing '>' at end of path"),
	BAD("<a b@c>", 0, "space in local part"),
	BAD("<<a@b>>", 0, "invalid character '<' in local part"),
	BAD("a@b", 0, "address must be enclosed in '<' and '>'"),
	OK("a@b", NB, "a", "b", 0),
	OK_USED("a@b SIZE=1", 0, NB, "a", "b", 0, 3),
	BAD("a@b>", NB, "invalid character '>' in domain"),
	BAD("", NB, "empty address"),
	BAD("", 0, "empty address"),

	/* postmaster and other local parts alone */
	BAD("<postmaster>", 0, "address has no domain"),
	OK("<postmaster>", ND, "postmaster", "", 0),
	OK("<Postmaster>", ND, "Postmaster", "", 0),
	OK("postmaster", NB | ND, "postmaster", "", 0),
	BAD("postmaster", NB, "address has no domain"),
	OK("<\"u@ext\">", ND, "\"u@ext\"", "", W_QUOTED),

	/* bytes after the path */
	OK_USED("<a@b> SIZE=100", 0, 0, "a", "b", 0, 5),
	OK_USED("<a@b>x", 0, 0, "a", "b", 0, 5),
	OK_USED("<a@b>\0", 6, 0, "a", "b", 0, 5),
	WHOLE_OK("<a@b>", 0, "a", "b", 0),
	WHOLE_OK("a@b", NB, "a", "b", 0),
	WHOLE_OK("<>", NUL_OK, "", "", W_NULL),
	WHOLE_BAD("<a@b> SIZE=100", 0, "unexpected text after address"),
	WHOLE_BAD("a@b c", NB, "unexpected text after address"),
	WHOLE_BAD("<> ", NUL_OK, "unexpected text after address"),

	/* relay tricks parse literally, for the relay check to see */
	OK("<u%ext@local>", 0, "u%ext", "local", 0),
	OK("<ext!u@local>", 0, "ext!u", "local", 0),
	OK("<\"u@ext\"@local>", 0, "\"u@ext\"", "local", W_QUOTED),
	OK("<\"u%ext\"@local>", 0, "u%ext", "local", 0),
	OK("<@a:u@ext>", 0, "u", "ext", W_ROUTE),
	BAD("<u@ext@local>", 0, "invalid character '@' in domain"),

	/* address_domain_valid */
	DOM_OK("example.org", 0),
	DOM_OK("localhost", 0),
	DOM_OK("a--b.example", 0),
	DOM_OK("[192.0.2.1]", 0),
	DOM_OK("[IPv6:::1]", 0),
	DOM_OK("b\xc3\xbc" "cher.example", U8),
	DOM_BAD("b\xc3\xbc" "cher.example", 0, "non-ASCII byte 0xC3 in domain without SMTPUTF8"),
	DOM_BAD("", 0, "empty domain"),
	DOM_BAD("exa_mple.org", 0, "invalid character '_' in domain"),
	DOM_BAD("exa mple.org", 0, "space in domain"),
	DOM_BAD("-a.org", 0, "label starting with '-' in domain"),
	DOM_BAD("a..b", 0, "consecutive dots in domain"),
	DOM_BAD("a.org.", 0, "domain ends with '.'"),
	DOM_BAD("1.2.3.4", 0, "all-numeric top-level label in domain"),
	DOM_BAD(L64 ".org", 0, "label longer than 63 octets in domain"),
	DOM_BAD("[300.1.1.1]", 0, "bad IPv4 address literal"),
	DOM_BAD("[192.0.2.1]x", 0, "invalid character 'x' in domain"),
};
/* clang-format on */

/* Printable rendering of len bytes of s for messages: \xNN for the rest. */
static const char *show(const char *s, size_t len, char *buf, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 5 < size; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch < 0x7F && ch != '\\')
			buf[n++] = (char)ch;
		else
			n += (size_t)snprintf(buf + n, size - n, "\\x%02X", ch);
	}
	buf[n] = '\0';
	return buf;
}

/* A reason must be fit for an SMTP reply: non-empty printable ASCII. */
static bool reason_ok(const char *err)
{
	if (*err == '\0')
		return false;
	for (; *err; err++)
		if (*err < 0x20 || *err > 0x7E)
			return false;
	return true;
}

static unsigned got_bits(const struct address *a)
{
	return (a->is_null ? W_NULL : 0) | (a->had_route ? W_ROUTE : 0) |
	       (a->quoted_local ? W_QUOTED : 0) | (a->literal_domain ? W_LITERAL : 0) |
	       (a->utf8 ? W_UTF8 : 0);
}

/* Run one row; the input is copied to an exact-size heap buffer for ASan. */
static int run_row(const struct row *r, size_t len, struct address *a, size_t *used, char *err,
		   size_t errlen)
{
	char *copy = malloc(len + 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, r->in, len);
	copy[len] = '\0';
	*used = len;
	if (r->api == API_DOMAIN)
		rc = address_domain_valid(copy, r->flags, err, errlen);
	else if (r->api == API_WHOLE)
		rc = address_parse(copy, r->flags, a, err, errlen);
	else
		rc = address_parse_path(copy, len, r->flags, a, used, err, errlen);
	free(copy);
	return rc;
}

/* Compare a successful row's fields; returns the number of mismatches. */
static int check_fields(size_t i, const char *in, const struct row *r, const struct address *a,
			size_t used, size_t len)
{
	size_t want_used = r->consumed ? r->consumed : len;
	int bad = 0;

	if (strcmp(a->local, r->local) != 0 && ++bad)
		print_error("row %zu %s: local got \"%s\", want \"%s\"\n", i, in, a->local,
			    r->local);
	if (strcmp(a->domain, r->domain) != 0 && ++bad)
		print_error("row %zu %s: domain got \"%s\", want \"%s\"\n", i, in, a->domain,
			    r->domain);
	if (r->domain_lc && strcmp(a->domain_lc, r->domain_lc) != 0 && ++bad)
		print_error("row %zu %s: domain_lc got \"%s\", want \"%s\"\n", i, in, a->domain_lc,
			    r->domain_lc);
	if (got_bits(a) != r->want && ++bad)
		print_error("row %zu %s: flags got 0x%02X, want 0x%02X\n", i, in, got_bits(a),
			    r->want);
	if (used != want_used && ++bad)
		print_error("row %zu %s: consumed got %zu, want %zu\n", i, in, used, want_used);
	return bad;
}

static int check_row(size_t i, const struct row *r)
{
	struct address a;
	char err[160] = "", in[1200];
	size_t len = r->len ? r->len : strlen(r->in), used;
	int rc = run_row(r, len, &a, &used, err, sizeof(err));

	show(r->in, len, in, sizeof(in));
	if ((rc == 0) != r->ok) {
		print_error("row %zu %s: got %s (%s), want %s\n", i, in, rc == 0 ? "ok" : "error",
			    err, r->ok ? "ok" : r->reason);
		return 1;
	}
	if (!r->ok && (!strstr(err, r->reason) || !reason_ok(err))) {
		print_error("row %zu %s: reason got \"%s\", want \"...%s...\"\n", i, in, err,
			    r->reason);
		return 1;
	}
	if (!r->ok || r->api == API_DOMAIN)
		return 0;
	return check_fields(i, in, r, &a, used, len) > 0;
}

static void test_table(void **state)
{
	size_t n = sizeof(rows) / sizeof(rows[0]);
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < n; i++)
		failed += check_row(i, &rows[i]);
	if (failed)
		fail_msg("got %d failing rows of %zu, want 0", failed, n);
}

static void test_failure_clears(void **state)
{
	struct address a;
	size_t used = 99;
	char err[64];

	(void)state;
	memset(&a, 0x55, sizeof(a));
	assert_int_equal(address_parse_path("<a@b", 4, 0, &a, &used, err, sizeof(err)), -1);
	if (used != 0 || a.local[0] || a.domain[0] || a.domain_lc[0] || a.is_null || a.had_route ||
	    a.quoted_local || a.literal_domain || a.utf8)
		fail_msg("after a failure: got consumed %zu and fields set, want all cleared",
			 used);
	/* No err buffer at all, and one too small: NUL-terminated, no crash. */
	assert_int_equal(address_parse("<>", 0, &a, NULL, 0), -1);
	assert_int_equal(address_parse("<a@b", 0, &a, err, 8), -1);
	if (strlen(err) != 7)
		fail_msg("truncated reason: got length %zu, want 7", strlen(err));
	assert_int_equal(address_parse_path("<a@b>", 5, 0, &a, NULL, NULL, 0), 0);
}

static void test_format(void **state)
{
	static const struct {
		const char *in;
		unsigned flags;
		size_t buflen;
		int want_rc;
		const char *want;
	} fmt[] = {
	    {"<User@Example.ORG>", 0, ADDRESS_MAILBOX_SIZE, 16, "User@Example.ORG"},
	    {"<@r:\"a b\"@x>", 0, ADDRESS_MAILBOX_SIZE, 7, "\"a b\"@x"},
	    {"<\"joe\"@x>", 0, ADDRESS_MAILBOX_SIZE, 5, "joe@x"},
	    {"<>", NUL_OK, ADDRESS_MAILBOX_SIZE, 0, ""},
	    {"<>", NUL_OK, 1, 0, ""},
	    {"<postmaster>", ND, ADDRESS_MAILBOX_SIZE, 10, "postmaster"},
	    {"<a@b>", 0, 4, 3, "a@b"},
	    {"<a@bc>", 0, 4, -1, ""},
	    {"<a@" D252 ">", 0, ADDRESS_MAILBOX_SIZE, 254, "a@" D252},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
		struct address a;
		char buf[ADDRESS_MAILBOX_SIZE];
		int rc;

		assert_int_equal(address_parse(fmt[i].in, fmt[i].flags, &a, NULL, 0), 0);
		rc = address_format(&a, buf, fmt[i].buflen);
		if (rc != fmt[i].want_rc || strcmp(buf, fmt[i].want) != 0)
			fail_msg("row %zu %s: got %d \"%s\", want %d \"%s\"", i, fmt[i].in, rc, buf,
				 fmt[i].want_rc, fmt[i].want);
	}
}

static void test_needs_quoting(void **state)
{
	static const struct {
		const char *raw;
		bool want;
	} q[] = {
	    {"joe", false}, {"a.b", false}, {"u%ext", false}, {"j\xc3\xbc", false},
	    {"", true},	    {".a", true},   {"a.", true},     {"a..b", true},
	    {"a b", true},  {"a@b", true},  {"a\"b", true},   {"a\\b", true},
	    {"a(b)", true}, {"a,b", true},  {"[a]", true},    {"a:b", true},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++)
		if (address_local_needs_quoting(q[i].raw, strlen(q[i].raw)) != q[i].want)
			fail_msg("row %zu \"%s\": got %d, want %d", i, q[i].raw, !q[i].want,
				 q[i].want);
}

static void test_unquote(void **state)
{
	static const struct {
		const char *local;
		size_t buflen;
		int want_rc;
		const char *want;
	} u[] = {
	    {"joe", 16, 3, "joe"},
	    {"\"a b\"", 16, 3, "a b"},
	    {"\"a\\\"b\"", 16, 3, "a\"b"},
	    {"\"a\\\\b\"", 16, 3, "a\\b"},
	    {"\"\"", 16, 0, ""},
	    {"joe", 4, 3, "joe"},
	    {"joe", 3, -1, ""},
	    {"\"a b\"", 3, -1, ""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
		char buf[16];
		int rc = address_local_unquote(u[i].local, buf, u[i].buflen);

		if (rc != u[i].want_rc || strcmp(buf, u[i].want) != 0)
			fail_msg("row %zu %s: got %d \"%s\", want %d \"%s\"", i, u[i].local, rc,
				 buf, u[i].want_rc, u[i].want);
	}
	assert_int_equal(address_local_unquote("a", NULL, 0), -1);
}

/* --- randomized: never crash; success means sane, canonical fields --- */

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint32_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static const char *const tokens[] = {
    "<",
    ">",
    "@",
    ".",
    ",",
    ":",
    "\"",
    "\\",
    "[",
    "]",
    " ",
    "-",
    "a",
    "Z",
    "0",
    "9",
    "%",
    "!",
    "postmaster",
    "example",
    "org",
    "IPv6:",
    "::1",
    "192.0.2.1",
    "\xc3\xbc",
    "\xe2\x82\xac",
    "\xf0\x9f\x98\x80",
    "\xc0\xaf",
    "\x80",
    "\xed\xa0\x80",
    "\xc2\x85",
    "\r",
    "\n",
    "\t",
    "\x7f",
    "\x01",
    L60,
    A60,
};

static size_t put_token(char *buf, size_t n, size_t cap)
{
	const char *t = tokens[rng() % (sizeof(tokens) / sizeof(tokens[0]))];
	size_t tl = strlen(t);

	if (rng() % 8 == 0) { /* a raw byte, NUL included */
		if (n < cap)
			buf[n++] = (char)(rng() & 0xFF);
		return n;
	}
	if (tl > cap - n)
		tl = cap - n;
	memcpy(buf + n, t, tl);
	return n + tl;
}

static size_t put_str(char *buf, size_t n, size_t cap, const char *s)
{
	size_t sl = strlen(s);

	if (sl > cap - n)
		sl = cap - n;
	memcpy(buf + n, s, sl);
	return n + sl;
}

/* A mostly valid address, then a few random bytes changed. */
static size_t gen_structured(char *buf, size_t cap)
{
	static const char *const locals[] = {"user",	   "a.b",	"\"a b\"", "\"x\\\"y\"",
					     "\"joe\"",	   "j\xc3\xbc", "u%ext",   A60,
					     "postmaster", ""};
	static const char *const domains[] = {
	    "example.org", "[192.0.2.1]",	"[IPv6:::1]", L63 "." L60,
	    D252,	   "b\xc3\xbc.example", "x-y.z",      ""};
	size_t n = 0, mutations = rng() % 4;

	if (rng() % 4)
		n = put_str(buf, n, cap, "<");
	if (rng() % 4 == 0)
		n = put_str(buf, n, cap, "@r.example,@s.example:");
	n = put_str(buf, n, cap, locals[rng() % (sizeof(locals) / sizeof(locals[0]))]);
	if (rng() % 6)
		n = put_str(buf, n, cap, "@");
	n = put_str(buf, n, cap, domains[rng() % (sizeof(domains) / sizeof(domains[0]))]);
	if (rng() % 4)
		n = put_str(buf, n, cap, ">");
	if (rng() % 4 == 0)
		n = put_str(buf, n, cap, " SIZE=1");
	for (size_t m = 0; m < mutations && n > 0; m++) {
		const char *t = tokens[rng() % (sizeof(tokens) / sizeof(tokens[0]))];

		buf[rng() % n] = rng() % 4 ? t[0] : (char)(rng() & 0xFF);
	}
	return n;
}

static size_t gen_input(char *buf, size_t cap)
{
	size_t n = 0, target = rng() % cap;

	if (rng() % 2)
		return gen_structured(buf, cap);
	if (rng() % 4 && target > 0)
		buf[n++] = '<';
	while (n < target)
		n = put_token(buf, n, target);
	return n;
}

/* Fields NUL-terminated, within limits, no controls, 8-bit only with SMTPUTF8. */
static bool field_ok(const char *f, size_t size, size_t max, unsigned flags)
{
	size_t len = strnlen(f, size);

	if (len >= size || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)f[i];

		if (ch < 0x20 || ch == 0x7F || (ch >= 0x80 && !(flags & U8)))
			return false;
	}
	return true;
}

/* The canonical form, bracketed, parses again to the same fields. */
static void check_round_trip(const struct address *a, unsigned flags, const char *in)
{
	char buf[ADDRESS_MAILBOX_SIZE], path[ADDRESS_PATH_MAX + 1], err[160];
	struct address b;
	int n = address_format(a, buf, sizeof(buf));

	if (n < 0)
		fail_msg("input %s: format got -1, want the mailbox", in);
	snprintf(path, sizeof(path), "<%s>", buf);
	if (address_parse(path, flags, &b, err, sizeof(err)) < 0)
		fail_msg("input %s: reparse of %s got \"%s\", want ok", in, path, err);
	if (strcmp(a->local, b.local) || strcmp(a->domain, b.domain) ||
	    a->quoted_local != b.quoted_local || a->literal_domain != b.literal_domain ||
	    a->utf8 != b.utf8)
		fail_msg("input %s: reparse of %s got %s@%s, want %s@%s", in, path, b.local,
			 b.domain, a->local, a->domain);
}

static void check_success(const struct address *a, unsigned flags, size_t used, size_t len,
			  const char *in)
{
	bool has8 = false;

	if (used == 0 || used > len || used > ADDRESS_PATH_MAX)
		fail_msg("input %s: consumed got %zu, want 1..%zu", in, used, len);
	if (!field_ok(a->local, sizeof(a->local), ADDRESS_LOCAL_MAX, flags) ||
	    !field_ok(a->domain, sizeof(a->domain), ADDRESS_DOMAIN_MAX, flags) ||
	    strlen(a->domain_lc) != strlen(a->domain))
		fail_msg("input %s: got bad fields, want terminated, bounded, no controls", in);
	for (const char *p = a->local; *p; p++)
		has8 |= (unsigned char)*p >= 0x80;
	for (const char *p = a->domain; *p; p++)
		has8 |= (unsigned char)*p >= 0x80;
	if (has8 != a->utf8)
		fail_msg("input %s: utf8 got %d, want %d", in, a->utf8, has8);
	if (a->is_null) {
		if (a->local[0] || a->domain[0] || !(flags & NUL_OK))
			fail_msg("input %s: null path got fields set or no ALLOW_NULL", in);
		return;
	}
	if (!a->local[0] || (!a->domain[0] && !(flags & ND)))
		fail_msg("input %s: got local \"%s\" domain \"%s\", want both", in, a->local,
			 a->domain);
	check_round_trip(a, flags, in);
}

static void test_random(void **state)
{
	enum { ROUNDS = 20000, MAXLEN = 320 };
	char gen[MAXLEN], in[MAXLEN * 4 + 8];
	int ok = 0;

	(void)state;
	for (int round = 0; round < ROUNDS; round++) {
		size_t len = gen_input(gen, MAXLEN), used = 12345;
		unsigned flags = rng() % 16;
		char *copy = malloc(len ? len : 1), err[160] = "";
		struct address a;
		int rc;

		assert_non_null(copy);
		memcpy(copy, gen, len);
		rc = address_parse_path(copy, len, flags, &a, &used, err, sizeof(err));
		free(copy);
		show(gen, len, in, sizeof(in));
		if (rc == 0) {
			ok++;
			check_success(&a, flags, used, len, in);
		} else if (!reason_ok(err) || used != 0 || a.local[0] || a.domain[0]) {
			fail_msg(
			    "input %s: got reason \"%s\" consumed %zu, want a reason, 0, cleared",
			    in, err, used);
		}
	}
	/* The generator must reach the success paths, or this tests little. */
	if (ok < ROUNDS / 20)
		fail_msg("got %d successful parses, want at least %d", ok, ROUNDS / 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),   cmocka_unit_test(test_failure_clears),
	    cmocka_unit_test(test_format),  cmocka_unit_test(test_needs_quoting),
	    cmocka_unit_test(test_unquote), cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
