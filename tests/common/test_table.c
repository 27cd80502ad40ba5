/* Tests for common/table.c: file formats, errors, lookups, refresh, a large table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* From <sanitizer/allocator_interface.h>, not always installed. */
size_t __sanitizer_get_current_allocated_bytes(void);
#elif defined(__GLIBC__)
#include <malloc.h>
#endif

#include "common/table.h"

static char tmpdir[] = "/tmp/test_table.XXXXXX";

/* tmpdir/name, in a static buffer (one at a time is enough here). */
static const char *tmp_path(const char *name)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		fail_msg("fopen %s: %s", path, strerror(errno));
	if (len > 0 && fwrite(data, 1, len, f) != len)
		fail_msg("fwrite %s: %s", path, strerror(errno));
	if (fclose(f) != 0)
		fail_msg("fclose %s: %s", path, strerror(errno));
}

/* Replace path atomically: write path.new, then rename over path. */
static void replace_file(const char *path, const char *data)
{
	char tmp[300];

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	write_file(tmp, data, strlen(data));
	if (rename(tmp, path) != 0)
		fail_msg("rename %s: %s", tmp, strerror(errno));
}

/* The table and its macros are laid out by hand, one row a line. */
/* clang-format off */

#define MAXW 16

struct row {
	const char *type;    /* "hash", "aliases", "set": content goes to a file; NULL: content is the spec */
	const char *content;
	size_t len;          /* 0: strlen(content) */
	const char *err;     /* NULL: must load; files: the message after PATH; specs: the whole message */
	size_t count;
	const char *want[MAXW]; /* key, value, key, value, ..., NULL (keys as looked up) */
};

#define OK(t, c, n, ...)  { .type = t, .content = c, .count = n, .want = { __VA_ARGS__ } }
#define ERR(t, c, e)      { .type = t, .content = c, .err = e }
/* A literal with NUL inside: explicit length. */
#define ERRL(t, c, e)     { .type = t, .content = c, .len = sizeof(c) - 1, .err = e }

static const struct row rows[] = {
	/* hash */
	OK("hash", "", 0, NULL),
	OK("hash", "a 1\nb 2\n", 2, "a", "1", "b", "2"),
	OK("hash", "a 1\nb 2", 2, "a", "1", "b", "2"),
	OK("hash", "# comment\n\n   \n\t\n  # indented comment\nkey value\n", 1, "key", "value"),
	OK("hash", "Key Value With  Two Spaces  \t\n", 1, "key", "Value With  Two Spaces"),
	OK("hash", "a\tb c\n", 1, "a", "b c"),
	OK("hash", "k\n", 1, "k", ""),
	OK("hash", "k   \n", 1, "k", ""),
	OK("hash", "k v1\n  v2\n\tv3  \n", 1, "k", "v1 v2 v3"),
	OK("hash", "k\n  v\nj w\n", 2, "k", "v", "j", "w"),
	OK("hash", "k v\n# c\n\n  more\n", 1, "k", "v more"),
	OK("hash", "k v\r\nj w \r\n  x\r\n", 2, "k", "v", "j", "w x"),
	OK("hash", "MiXeD VaLuE\n", 1, "mixed", "VaLuE"),
	ERR("hash", "x 1\nX 2\n", ":2: duplicate key \"X\" (first at line 1)"),
	ERR("hash", "a 1\n# c\n\nb 2\n  more\nB 3\n", ":6: duplicate key \"B\" (first at line 4)"),
	ERR("hash", "  cont\na 1\n", ":1: continuation line without a preceding entry"),
	ERR("hash", "# c\n\tcont\n", ":2: continuation line without a preceding entry"),
	ERRL("hash", "a 1\nb \0 2\n", ":2: NUL byte"),
	ERRL("hash", "a 1\n\0", ":2: NUL byte"),
	/* aliases */
	OK("aliases", "postmaster: root\nroot: bob, alice\n", 2, "postmaster", "root", "root", "bob, alice"),
	OK("aliases", "list: a,\n  b,\n\tc\n", 1, "list", "a, b, c"),
	OK("aliases", "list:\n  a, b\n", 1, "list", "a, b"),
	OK("aliases", "\"a b\": x\n", 1, "a b", "x"),
	OK("aliases", "\"A:B\" : y:z\n", 1, "a:b", "y:z"),
	OK("aliases", "a b: c\n", 1, "a b", "c"),
	OK("aliases", "a:\n", 1, "a", ""),
	OK("aliases", "a : b \r\n", 1, "a", "b"),
	OK("aliases", "# x\n\nOwner-List: Bob\n", 1, "owner-list", "Bob"),
	ERR("aliases", "Bob: bob@example.org\nbob: x\n", ":2: duplicate key \"bob\" (first at line 1)"),
	ERR("aliases", "a: 1\n# c\n\nb: 2\nA: 3\n", ":5: duplicate key \"A\" (first at line 1)"),
	ERR("aliases", "\"A B\": 1\na b: 2\n", ":2: duplicate key \"a b\" (first at line 1)"),
	ERR("aliases", "a: 1\nname x\n", ":2: missing ':'"),
	ERR("aliases", "\"ab: x\n", ":1: unterminated quoted name"),
	ERR("aliases", "\"ab\" x: y\n", ":1: missing ':'"),
	ERR("aliases", ": x\n", ":1: empty name"),
	ERR("aliases", "\"\": x\n", ":1: empty name"),
	ERR("aliases", "  a, b\n", ":1: continuation line without a preceding entry"),
	/* set */
	OK("set", "example.org\nExample.NET\n", 2, "example.org", "", "EXAMPLE.net", ""),
	OK("set", "a  \r\n# b c\n\n", 1, "a", ""),
	ERR("set", "a\nb c\n", ":2: more than one word"),
	OK("file", "bulk.test\n.bulk.test\n", 2, "bulk.test", "", ".BULK.test", ""),
	ERR("file", "a b\n", ":1: more than one word"),
	ERR("set", "a\n  b\n", ":2: continuation line (leading blank) in a set"),
	ERR("set", "x\nX\n", ":2: duplicate key \"X\" (first at line 1)"),
	ERRL("set", "a\r\nb\0\r\n", ":2: NUL byte"),
	/* inline */
	OK(NULL, "inline:{a=1, b=2, c}", 3, "a", "1", "b", "2", "c", ""),
	OK(NULL, "inline:{ a = 1 ,  B=Two words , c }", 3, "a", "1", "b", "Two words", "c", ""),
	OK(NULL, "inline:{a=x=y,b=}", 2, "a", "x=y", "b", ""),
	OK(NULL, "inline:{}", 0, NULL),
	OK(NULL, "inline: { } ", 0, NULL),
	ERR(NULL, "inline:{a=1, A=2}", "inline:{a=1, A=2}: item 2: duplicate key \"A\" (first at item 1)"),
	ERR(NULL, "inline:{a=1", "inline:{a=1: missing '}'"),
	ERR(NULL, "inline:{", "inline:{: missing '}'"),
	ERR(NULL, "inline:a=1}", "inline:a=1}: missing '{'"),
	ERR(NULL, "inline:", "inline:: missing '{'"),
	ERR(NULL, "inline:{a=1}x", "inline:{a=1}x: missing '}'"),
	ERR(NULL, "inline:{a=1,,b}", "inline:{a=1,,b}: item 2: empty item"),
	ERR(NULL, "inline:{a=1,}", "inline:{a=1,}: item 2: empty item"),
	ERR(NULL, "inline:{=v}", "inline:{=v}: item 1: empty key"),
	ERR(NULL, "inline:{a b=v}", "inline:{a b=v}: item 1: blank inside key"),
	ERR(NULL, "inline:{a={b}}", "inline:{a={b}}: unexpected brace inside {...}"),
	/* specs */
	ERR(NULL, "bogus:/etc/x", "bogus:/etc/x: unknown table type"),
	ERR(NULL, "HASH:/etc/x", "HASH:/etc/x: unknown table type"),
	ERR(NULL, ":x", ":x: unknown table type"),
	ERR(NULL, "nocolon", "nocolon: missing ':' (want TYPE:ARG)"),
	ERR(NULL, "", ": missing ':' (want TYPE:ARG)"),
	ERR(NULL, "hash:", "hash:: empty path"),
	ERR(NULL, "hash:/nonexistent.zfarm/x", "/nonexistent.zfarm/x: open: No such file or directory"),
	ERR(NULL, "set:/", "/: read: Is a directory"),
};

/* clang-format on */

/* Check t holds exactly the row's pairs, by count and lookup. */
static void check_pairs(size_t i, const struct table *t, const struct row *w)
{
	size_t n = 0;

	if (table_count(t) != w->count)
		fail_msg("row %zu (%s): got %zu keys, want %zu", i, w->content, table_count(t),
			 w->count);
	for (const char *const *p = w->want; *p != NULL; p += 2) {
		const char *got = table_lookup(t, p[0]);

		n++;
		if (got == NULL || strcmp(got, p[1]) != 0)
			fail_msg("row %zu (%s): key \"%s\" got \"%s\", want \"%s\"", i, w->content,
				 p[0], got == NULL ? "(null)" : got, p[1]);
	}
	if (n != w->count)
		fail_msg("row %zu: the row lists %zu pairs for %zu keys", i, n, w->count);
}

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		char spec[512], want_err[512], err[512] = "";
		struct table *t;

		if (w->type != NULL) {
			const char *path = tmp_path("row");

			write_file(path, w->content, w->len != 0 ? w->len : strlen(w->content));
			snprintf(spec, sizeof(spec), "%s:%s", w->type, path);
			snprintf(want_err, sizeof(want_err), "%s%s", path, w->err ? w->err : "");
		} else {
			snprintf(spec, sizeof(spec), "%s", w->content);
			snprintf(want_err, sizeof(want_err), "%s", w->err ? w->err : "");
		}
		t = table_open(spec, err, sizeof(err));
		if (w->err != NULL) {
			if (t != NULL)
				fail_msg("row %zu (%s): got a table of %zu keys, want error \"%s\"",
					 i, w->content, table_count(t), want_err);
			if (strcmp(err, want_err) != 0)
				fail_msg("row %zu (%s): got error \"%s\", want \"%s\"", i,
					 w->content, err, want_err);
			continue;
		}
		if (t == NULL)
			fail_msg("row %zu (%s): got error \"%s\", want a table", i, w->content,
				 err);
		if (strcmp(table_spec(t), spec) != 0)
			fail_msg("row %zu: got spec \"%s\", want \"%s\"", i, table_spec(t), spec);
		check_pairs(i, t, w);
		table_free(&t);
		assert_null(t);
	}
}

static char *long_line_file(size_t value_len, const char *eol, size_t *lenp)
{
	size_t len = 4 + 2 + value_len + strlen(eol);
	char *s = malloc(len + 1);

	assert_non_null(s);
	memcpy(s, "a 1\nk ", 6);
	memset(s + 6, 'x', value_len);
	memcpy(s + 6 + value_len, eol, strlen(eol));
	*lenp = len;
	return s;
}

/* A line of exactly TABLE_MAX_LINE bytes (without its end) loads; one more does not. */
static void test_line_max(void **state)
{
	static const struct {
		size_t line_len;
		const char *eol;
		bool ok;
	} cases[] = {
	    {TABLE_MAX_LINE, "\n", true},    {TABLE_MAX_LINE, "\r\n", true},
	    {TABLE_MAX_LINE, "", true},	     {TABLE_MAX_LINE + 1, "\n", false},
	    {TABLE_MAX_LINE + 1, "", false}, {3 * TABLE_MAX_LINE, "\n", false},
	};
	const char *path = tmp_path("long");
	char spec[300], err[512], want[512];

	(void)state;
	snprintf(spec, sizeof(spec), "hash:%s", path);
	snprintf(want, sizeof(want), "%s:2: line too long (over %d bytes)", path, TABLE_MAX_LINE);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *data = long_line_file(cases[i].line_len - 2, cases[i].eol, &len);
		struct table *t;

		write_file(path, data, len);
		err[0] = '\0';
		t = table_open(spec, err, sizeof(err));
		if (cases[i].ok) {
			const char *v;

			if (t == NULL)
				fail_msg("case %zu (line %zu): got error \"%s\", want a table", i,
					 cases[i].line_len, err);
			v = table_lookup(t, "k");
			if (v == NULL || strlen(v) != cases[i].line_len - 2)
				fail_msg("case %zu: got value of %zu bytes, want %zu", i,
					 v ? strlen(v) : 0, cases[i].line_len - 2);
		} else if (t != NULL || strcmp(err, want) != 0) {
			fail_msg("case %zu (line %zu): got %s \"%s\", want error \"%s\"", i,
				 cases[i].line_len, t ? "a table" : "error", err, want);
		}
		table_free(&t);
		free(data);
	}
}

/* A file over TABLE_MAX_FILE is refused before reading (sparse, so it costs nothing). */
static void test_file_max(void **state)
{
	const char *path = tmp_path("huge");
	char spec[300], err[512], want[512];
	struct table *t;
	int fd;

	(void)state;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	if (ftruncate(fd, TABLE_MAX_FILE + 1) != 0)
		fail_msg("ftruncate: %s", strerror(errno));
	close(fd);
	snprintf(spec, sizeof(spec), "hash:%s", path);
	snprintf(want, sizeof(want), "%s: file too large (%ld bytes, max %ld)", path,
		 TABLE_MAX_FILE + 1, TABLE_MAX_FILE);
	t = table_open(spec, err, sizeof(err));
	if (t != NULL || strcmp(err, want) != 0)
		fail_msg("got %s \"%s\", want error \"%s\"", t ? "a table" : "error", err, want);
	unlink(path);
}

static void test_lookup(void **state)
{
	static const struct {
		const char *key;
		size_t len; /* 0: strlen(key) */
		const char *want;
	} cases[] = {
	    {"bob", 0, "Bob@Example.ORG"},
	    {"BOB", 0, "Bob@Example.ORG"},
	    {"bOb", 0, "Bob@Example.ORG"},
	    {"alice", 0, "alice@example.org"},
	    {"ALICE", 0, "alice@example.org"},
	    {"bobby", 3, "Bob@Example.ORG"}, /* not terminated after the key */
	    {"ALICE:x", 5, "alice@example.org"},
	    {"bo", 0, NULL},
	    {"bobb", 0, NULL},
	    {"bob", 2, NULL},
	    {"bob\0", 4, NULL}, /* NUL is never part of a key */
	    {"", 0, NULL},
	    {"carol", 0, NULL},
	    {"empty", 0, ""},
	    {"EMPTY", 0, ""},
	    {"\xc3\x89t\xc3\xa9", 0, "utf8"}, /* bytes >= 0x80 are kept as they are */
	    {"\xc3\xa9t\xc3\xa9", 0, NULL},
	    /*
	     * FNV-1a("44pvb") == FNV-1a("44pvb\""): a key and a longer one
	     * with the same hash, so the comparison itself must tell them apart.
	     */
	    {"44pvb", 0, "collides"},
	    {"44PVB\"", 0, NULL},
	    {"44pvb\"x", 6, NULL},
	    {"44pv", 0, NULL},
	    /*
	     * FNV-1a("n7kkre") == FNV-1a("n7kkre\0x"), and the arena holds
	     * "n7kkre\0x\0": a NUL in the caller's key must not let the
	     * comparison run on into the value.
	     */
	    {"n7kkre", 0, "x"},
	    {"n7kkre\0x", 8, NULL},
	};
	const char *path = tmp_path("lookup");
	const char *data = "# users\nBob Bob@Example.ORG\nalice alice@example.org\nempty\n"
			   "\xc3\x89t\xc3\xa9 utf8\n44pvb collides\nn7kkre x\n";
	char spec[300], err[512] = "";
	struct table *tabs[2];

	(void)state;
	write_file(path, data, strlen(data));
	snprintf(spec, sizeof(spec), "hash:%s", path);
	tabs[0] = table_open(spec, err, sizeof(err));
	if (tabs[0] == NULL)
		fail_msg("hash: %s", err);
	tabs[1] = table_open("inline:{Bob=Bob@Example.ORG, alice=alice@example.org, EMPTY, "
			     "\xc3\x89t\xc3\xa9=utf8, 44pvb=collides, n7kkre=x}",
			     err, sizeof(err));
	if (tabs[1] == NULL)
		fail_msg("inline: %s", err);
	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			size_t len = cases[i].len ? cases[i].len : strlen(cases[i].key);
			const char *got = table_lookup_n(tabs[k], cases[i].key, len);
			const char *want = cases[i].want;

			if ((got == NULL) != (want == NULL) ||
			    (got != NULL && strcmp(got, want) != 0))
				fail_msg("table %zu, case %zu (\"%.*s\"): got \"%s\", want \"%s\"",
					 k, i, (int)len, cases[i].key, got ? got : "(null)",
					 want ? want : "(null)");
			if (cases[i].len == 0 && table_lookup(tabs[k], cases[i].key) != got)
				fail_msg("table %zu, case %zu: table_lookup and table_lookup_n "
					 "disagree",
					 k, i);
		}
		table_free(&tabs[k]);
	}
	/* The other way round: the longer key stored, the shorter one looked up. */
	tabs[0] = table_open("inline:{44pvb\"=long}", err, sizeof(err));
	assert_non_null(tabs[0]);
	if (table_lookup(tabs[0], "44pvb") != NULL)
		fail_msg("44pvb: got a value, want absent (only 44pvb\" is stored)");
	assert_string_equal(table_lookup(tabs[0], "44PVB\""), "long");
	table_free(&tabs[0]);
	table_free(&tabs[0]); /* NULL is fine */
	table_free(NULL);
}

/* Expect refresh to return want (and err == want_err when -1). */
static void refresh_expect(const char *step, struct table *t, int want, const char *want_err)
{
	char err[512] = "";
	int r = table_refresh(t, err, sizeof(err));

	if (r != want)
		fail_msg("%s: got refresh %d (%s), want %d", step, r, err, want);
	if (want_err != NULL && strcmp(err, want_err) != 0)
		fail_msg("%s: got error \"%s\", want \"%s\"", step, err, want_err);
}

/* keys "k=v,k=v" must be present with those values, absent "k,k" must not. */
static void lookup_expect(const char *step, const struct table *t, const char *const *present,
			  const char *const *absent)
{
	for (; present != NULL && *present != NULL; present += 2) {
		const char *got = table_lookup(t, present[0]);

		if (got == NULL || strcmp(got, present[1]) != 0)
			fail_msg("%s: key %s got \"%s\", want \"%s\"", step, present[0],
				 got ? got : "(null)", present[1]);
	}
	for (; absent != NULL && *absent != NULL; absent++) {
		const char *got = table_lookup(t, *absent);

		if (got != NULL)
			fail_msg("%s: key %s got \"%s\", want absent", step, *absent, got);
	}
}

static void test_refresh(void **state)
{
	const char *p = tmp_path("refresh");
	char path[256], spec[300], err[512] = "", want[600];
	struct table *t;
	struct timespec ts[2];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s", p);
	snprintf(spec, sizeof(spec), "aliases:%s", path);
	write_file(path, "a: 1\n", 5);
	t = table_open(spec, err, sizeof(err));
	if (t == NULL)
		fail_msg("open: %s", err);

	refresh_expect("unchanged", t, 0, NULL);
	refresh_expect("unchanged again", t, 0, NULL);
	lookup_expect("unchanged", t, (const char *[]){"a", "1", NULL}, NULL);

	replace_file(path, "b: 2\n");
	refresh_expect("renamed over", t, 1, NULL);
	lookup_expect("renamed over", t, (const char *[]){"b", "2", NULL},
		      (const char *[]){"a", NULL});
	refresh_expect("after reload", t, 0, NULL);
	if (strcmp(table_spec(t), spec) != 0)
		fail_msg("got spec \"%s\", want \"%s\"", table_spec(t), spec);

	write_file(path, "C: three\nd: 4\n", 14); /* in place, new size */
	refresh_expect("in place", t, 1, NULL);
	lookup_expect("in place", t, (const char *[]){"c", "three", "d", "4", NULL},
		      (const char *[]){"b", NULL});
	assert_int_equal(table_count(t), 2);

	/* In place with a new size but the old mtime: only the size tells. */
	ts[0].tv_sec = ts[1].tv_sec = 1700000000;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	if (utimensat(AT_FDCWD, path, ts, 0) != 0)
		fail_msg("utimensat: %s", strerror(errno));
	refresh_expect("old mtime", t, 1, NULL);
	write_file(path, "C: three\nd: 44\n", 15);
	if (utimensat(AT_FDCWD, path, ts, 0) != 0)
		fail_msg("utimensat: %s", strerror(errno));
	refresh_expect("size only", t, 1, NULL);
	lookup_expect("size only", t, (const char *[]){"c", "three", "d", "44", NULL}, NULL);

	/* Then the same size twice: only the mtime (down to the ns) tells. */
	write_file(path, "C: THREE\nd: 5\n", 14);
	ts[0].tv_sec = ts[1].tv_sec = 1700000000;
	ts[0].tv_nsec = ts[1].tv_nsec = 1;
	if (utimensat(AT_FDCWD, path, ts, 0) != 0)
		fail_msg("utimensat: %s", strerror(errno));
	refresh_expect("same size", t, 1, NULL);
	lookup_expect("same size", t, (const char *[]){"c", "THREE", "d", "5", NULL}, NULL);
	write_file(path, "C: THREE\nd: 6\n", 14);
	ts[0].tv_nsec = ts[1].tv_nsec = 2;
	if (utimensat(AT_FDCWD, path, ts, 0) != 0)
		fail_msg("utimensat: %s", strerror(errno));
	refresh_expect("mtime ns", t, 1, NULL);
	lookup_expect("mtime ns", t, (const char *[]){"d", "6", NULL}, NULL);

	/* Renamed over by a file of the same size and mtime: only the inode tells. */
	{
		char tmp[300];

		snprintf(tmp, sizeof(tmp), "%s.new", path);
		write_file(tmp, "C: THREE\nd: 7\n", 14);
		if (utimensat(AT_FDCWD, tmp, ts, 0) != 0)
			fail_msg("utimensat: %s", strerror(errno));
		if (rename(tmp, path) != 0)
			fail_msg("rename: %s", strerror(errno));
	}
	refresh_expect("inode only", t, 1, NULL);
	lookup_expect("inode only", t, (const char *[]){"d", "7", NULL}, NULL);

	/* A bad new file is refused; the old table keeps answering. */
	replace_file(path, "e: 5\nE: 6\n");
	snprintf(want, sizeof(want), "%s:2: duplicate key \"E\" (first at line 1)", path);
	refresh_expect("bad file", t, -1, want);
	lookup_expect("bad file", t, (const char *[]){"c", "THREE", "d", "7", NULL},
		      (const char *[]){"e", NULL});
	refresh_expect("still bad", t, -1, want);
	assert_int_equal(table_count(t), 2);
	/*
	 * An unchanged bad file is not parsed again: made good in place with
	 * the same size and mtime it still gets the remembered reason (an
	 * unchanged file is never re-read, good or bad).
	 */
	{
		struct stat st;

		assert_int_equal(stat(path, &st), 0);
		write_file(path, "e: 5\nF: 6\n", 10);
		ts[0] = ts[1] = st.st_mtim;
		if (utimensat(AT_FDCWD, path, ts, 0) != 0)
			fail_msg("utimensat: %s", strerror(errno));
		refresh_expect("bad, not re-read", t, -1, want);
	}

	replace_file(path, "e: 5\nf 6\n");
	snprintf(want, sizeof(want), "%s:2: missing ':'", path);
	refresh_expect("bad file 2", t, -1, want);
	lookup_expect("bad file 2", t, (const char *[]){"d", "7", NULL}, NULL);

	replace_file(path, "e: 5\n");
	refresh_expect("fixed", t, 1, NULL);
	lookup_expect("fixed", t, (const char *[]){"e", "5", NULL}, (const char *[]){"d", NULL});

	/* Gone: an error, old values kept; back: reloaded. */
	unlink(path);
	snprintf(want, sizeof(want), "%s: stat: No such file or directory", path);
	refresh_expect("removed", t, -1, want);
	lookup_expect("removed", t, (const char *[]){"e", "5", NULL}, NULL);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0000); /* unreadable (unless root) */
	assert_true(fd >= 0);
	close(fd);
	if (geteuid() != 0) {
		snprintf(want, sizeof(want), "%s: open: Permission denied", path);
		refresh_expect("unreadable", t, -1, want);
	}
	unlink(path);
	replace_file(path, "");
	refresh_expect("empty", t, 1, NULL);
	assert_int_equal(table_count(t), 0);
	lookup_expect("empty", t, NULL, (const char *[]){"e", "", NULL});
	table_free(&t);
	unlink(path);

	t = table_open("inline:{a=1}", err, sizeof(err));
	assert_non_null(t);
	refresh_expect("inline", t, 0, NULL);
	lookup_expect("inline", t, (const char *[]){"a", "1", NULL}, NULL);
	table_free(&t);
}

/* A NULL or tiny error buffer is safe; the reason is truncated, not overrun. */
static void test_err_buffer(void **state)
{
	char err[8], big[2048], data[1300], want[300];
	const char *path = tmp_path("row");

	(void)state;
	/* A long duplicate key is cut in the message so the line numbers stay. */
	memset(data, 'k', 600);
	data[600] = '\n';
	memset(data + 601, 'K', 600);
	data[1201] = '\n';
	write_file(path, data, 1202);
	snprintf(big, sizeof(big), "set:%s", path);
	assert_null(table_open(big, big, sizeof(big)));
	memset(want, 'K', 200);
	snprintf(want + 200, sizeof(want) - 200, "\" (first at line 1)");
	if (strstr(big, ":2: duplicate key \"KKKK") == NULL || strlen(big) < strlen(want) ||
	    strcmp(big + strlen(big) - strlen(want), want) != 0)
		fail_msg("got \"%s\", want \"%s:2: duplicate key \"%s\"", big, path, want);

	assert_null(table_open("bogus:x", NULL, 0));
	memset(err, 'z', sizeof(err));
	assert_null(table_open("bogus:x", err, 5));
	assert_string_equal(err, "bogu");
	assert_int_equal(err[5], 'z');
	assert_null(table_open("inline:{a,a}", err, 1));
	assert_string_equal(err, "");
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t heap_bytes(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return __sanitizer_get_current_allocated_bytes();
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
	return mallinfo2().uordblks;
#else
	return 0;
#endif
}

/* 100,000 keys: all found (in another case), 1,000 absent ones not; time and memory. */
static void test_large(void **state)
{
	enum { NKEYS = 100000, NABSENT = 1000 };
	const char *path = tmp_path("large");
	char spec[300], err[512] = "", key[64], want[64];
	size_t cap = (size_t)NKEYS * 64, len = 0, before, mem;
	char *data = malloc(cap);
	struct table *t;
	double t0, t1, t2;

	(void)state;
	assert_non_null(data);
	len += (size_t)snprintf(data + len, cap - len, "# %d users\n", NKEYS);
	for (int i = 0; i < NKEYS; i++)
		len += (size_t)snprintf(data + len, cap - len, "User%d@Example.ORG\tlocal:u%d\n", i,
					i);
	write_file(path, data, len);
	free(data);
	snprintf(spec, sizeof(spec), "hash:%s", path);

	before = heap_bytes();
	t0 = now();
	t = table_open(spec, err, sizeof(err));
	t1 = now();
	mem = heap_bytes() - before;
	if (t == NULL)
		fail_msg("open: %s", err);
	assert_int_equal(table_count(t), NKEYS);
	for (int i = 0; i < NKEYS; i++) {
		const char *got;

		snprintf(key, sizeof(key), "user%d@EXAMPLE.org", i);
		snprintf(want, sizeof(want), "local:u%d", i);
		got = table_lookup(t, key);
		if (got == NULL || strcmp(got, want) != 0)
			fail_msg("key %s: got \"%s\", want \"%s\"", key, got ? got : "(null)",
				 want);
	}
	for (int i = NKEYS; i < NKEYS + NABSENT; i++) {
		snprintf(key, sizeof(key), "user%d@example.org", i);
		if (table_lookup(t, key) != NULL)
			fail_msg("key %s: got a value, want absent", key);
	}
	t2 = now();
	printf("# %d keys, %zu bytes of file: load %.1f ms, %d lookups %.1f ms, "
	       "table memory %zu bytes (%.1f per key)\n",
	       NKEYS, len, (t1 - t0) * 1e3, NKEYS + NABSENT, (t2 - t1) * 1e3, mem,
	       (double)mem / NKEYS);
	table_free(&t);
	unlink(path);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	static const char *const names[] = {"row",     "long",	      "huge", "lookup",
					    "refresh", "refresh.new", "large"};

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(tmp_path(names[i]));
	return rmdir(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rows),     cmocka_unit_test(test_line_max),
	    cmocka_unit_test(test_file_max), cmocka_unit_test(test_lookup),
	    cmocka_unit_test(test_refresh),  cmocka_unit_test(test_err_buffer),
	    cmocka_unit_test(test_large),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
