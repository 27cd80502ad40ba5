/* Tests for common/config.c: parsing, errors, overrides, expansion, getters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/xalloc.h"

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))

/* check_str - equal strings, or both NULL; names the table and row. */
static void check_str(const char *what, size_t row, const char *got, const char *want)
{
	if ((got == NULL) != (want == NULL) || (got && strcmp(got, want) != 0))
		fail_msg("%s row %zu: got %s%s%s, want %s%s%s", what, row, got ? "\"" : "",
			 got ? got : "NULL", got ? "\"" : "", want ? "\"" : "",
			 want ? want : "NULL", want ? "\"" : "");
}

static struct config *load_ok(const char *text)
{
	struct config *cfg = config_new();
	char err[1024];

	if (config_load_string(cfg, text, "t.conf", err, sizeof(err)) < 0)
		fail_msg("load: got error \"%s\", want success", err);
	return cfg;
}

/* load_err - loading text must fail with exactly want. */
static void load_err(const char *what, size_t row, const char *text, const char *want)
{
	struct config *cfg = config_new();
	char err[1024] = "";

	if (config_load_string(cfg, text, "t.conf", err, sizeof(err)) == 0)
		fail_msg("%s row %zu: got success, want \"%s\"", what, row, want);
	check_str(what, row, err, want);
	config_free(&cfg);
}

static void override_ok(struct config *cfg, const char *setting)
{
	char err[512];

	if (config_override(cfg, setting, err, sizeof(err)) < 0)
		fail_msg("override %s: got error \"%s\", want success", setting, err);
}

static const char good_text[] = "# comment\n"
				"  # indented comment\n"
				"\n"
				"run_directory = /var/spool/zfarm\n"
				"queue_directory = $run_directory/queue        # NOT a comment\n"
				"mydestination = localhost, example.org\n"
				"empty =\n"
				"spaced   =    padded value   \n"
				"tabbed\t=\tx\r\n"
				"long_value = first part\n"
				"    continued here\n"
				"# a comment does not end the value\n"
				"\tand here   \n"
				"\n"
				"[farm smtpserver]\n"
				"listen = inet:127.0.0.1:2525\n"
				"process_limit = 100\n"
				"\n"
				"[ channel   smtp ]\n"
				"concurrency = 20\n"
				"run_directory = section-own\n"
				"[farm router.v-2]\n"
				"x=1";

static void test_parse_good(void **state)
{
	static const struct {
		const char *kind, *name, *param, *want;
	} rows[] = {
	    {NULL, NULL, "run_directory", "/var/spool/zfarm"},
	    {NULL, NULL, "queue_directory", "/var/spool/zfarm/queue        # NOT a comment"},
	    {NULL, NULL, "mydestination", "localhost, example.org"},
	    {NULL, NULL, "empty", ""},
	    {NULL, NULL, "spaced", "padded value"},
	    {NULL, NULL, "tabbed", "x"},
	    {NULL, NULL, "long_value", "first part continued here and here"},
	    {NULL, NULL, "listen", NULL},
	    {NULL, NULL, "comment", NULL},
	    {"farm", "smtpserver", "listen", "inet:127.0.0.1:2525"},
	    {"farm", "smtpserver", "process_limit", "100"},
	    {"farm", "smtpserver", "concurrency", NULL},
	    {"farm", "smtpserver", "run_directory", NULL}, /* no inheritance */
	    {"channel", "smtp", "concurrency", "20"},
	    {"channel", "smtp", "run_directory", "section-own"},
	    {"farm", "router.v-2", "x", "1"},
	    {"farm", "nosuch", "listen", NULL},
	    {"nosuch", "smtp", "concurrency", NULL},
	    {"farm", NULL, "listen", NULL},
	};
	struct config *cfg;

	(void)state;
	cfg = load_ok(good_text);
	for (size_t i = 0; i < NROWS(rows); i++)
		check_str("parse", i, config_get(cfg, rows[i].kind, rows[i].name, rows[i].param),
			  rows[i].want);
	config_free(&cfg);
	assert_null(cfg);
	config_free(&cfg); /* NULL is fine */
	config_free(NULL);
}

static void test_continuation(void **state)
{
	static const struct {
		const char *text, *want;
	} rows[] = {
	    {"a = x\n y", "x y"},	{"a = x\n\t y  \n   z", "x y z"}, {"a =\n y", "y"},
	    {"a = x\n\n y", "x y"},	{"a = x\n # c\n y", "x y"},	  {"a = x\nb = 1\n y", "x"},
	    {"a = x\r\n y\r\n", "x y"}, {"a = x\n y=z", "x y=z"},
	};

	(void)state;
	for (size_t i = 0; i < NROWS(rows); i++) {
		struct config *cfg = load_ok(rows[i].text);

		check_str("continuation", i, config_get(cfg, NULL, NULL, "a"), rows[i].want);
		config_free(&cfg);
	}
}

static void test_parse_errors(void **state)
{
	static const struct {
		const char *text, *want;
	} rows[] = {
	    {"a b\n", "t.conf:1: missing '=' (want name = value)"},
	    {"# c\n\n# d\nbad", "t.conf:4: missing '=' (want name = value)"},
	    {"x = 1\n= 2", "t.conf:2: empty parameter name before '='"},
	    {"a-b = 1", "t.conf:1: bad parameter name \"a-b\": use letters, digits and '_'"},
	    {"a.b = 1", "t.conf:1: bad parameter name \"a.b\": use letters, digits and '_'"},
	    {"a b = 1", "t.conf:1: bad parameter name \"a b\": use letters, digits and '_'"},
	    {"[farm x", "t.conf:1: malformed section header: missing ']'"},
	    {"[farm]", "t.conf:1: malformed section header: want [KIND NAME]"},
	    {"[]", "t.conf:1: malformed section header: want [KIND NAME]"},
	    {"[farm x y]", "t.conf:1: malformed section header: want [KIND NAME]"},
	    {"[farm x] # c", "t.conf:1: text after ']' in section header (a comment must start "
			     "its own line)"},
	    {"[farm x/y]", "t.conf:1: malformed section header: KIND and NAME may only hold "
			   "letters, digits, '_', '.' and '-'"},
	    {"  a = 1", "t.conf:1: continuation line (it starts with a blank) but no parameter "
			"before it to continue"},
	    {"a = 1\n[farm x]\n  b", "t.conf:3: continuation line (it starts with a blank) but "
				     "no parameter before it to continue"},
	    {"[farm x]\n[farm x]", "t.conf:2: duplicate section [farm x] (first at t.conf:1)"},
	    {"[farm x]\n[channel x]\n\n[farm x]",
	     "t.conf:4: duplicate section [farm x] (first at t.conf:1)"},
	    {"a = 1\n\nb=2\na = 3", "t.conf:4: duplicate parameter a (first at t.conf:1)"},
	    {"[farm x]\np = 1\n[farm y]\np = 1\n[farm z]\np=1\np=2",
	     "t.conf:7: duplicate parameter p (first at t.conf:6)"},
	};

	(void)state;
	for (size_t i = 0; i < NROWS(rows); i++)
		load_err("parse error", i, rows[i].text, rows[i].want);
}

static void test_line_and_file_limits(void **state)
{
	size_t n = 4 + CONFIG_MAX_LINE + 1;
	char *text = xmalloc(CONFIG_MAX_FILE + 2);
	struct config *cfg;

	(void)state;
	/* Exactly CONFIG_MAX_LINE bytes is fine, one more is not. */
	memcpy(text, "a = ", 4);
	memset(text + 4, 'x', CONFIG_MAX_LINE - 4);
	text[CONFIG_MAX_LINE] = '\0';
	cfg = load_ok(text);
	assert_int_equal(strlen(config_get(cfg, NULL, NULL, "a")), CONFIG_MAX_LINE - 4);
	config_free(&cfg);

	memcpy(text, "b = 1\na = ", 10);
	memset(text + 10, 'x', n - 4);
	text[6 + n] = '\0';
	load_err("long line", 0, text, "t.conf:2: line longer than 65536 bytes");

	memset(text, '#', CONFIG_MAX_FILE + 1);
	for (size_t i = 100; i < CONFIG_MAX_FILE; i += 100)
		text[i] = '\n';
	text[CONFIG_MAX_FILE + 1] = '\0';
	load_err("big text", 0, text, "t.conf: file is bigger than 16777216 bytes");
	free(text);
}

static void test_failed_load_applies_nothing(void **state)
{
	struct config *cfg = config_new();
	char err[256];

	(void)state;
	override_ok(cfg, "o=1");
	assert_int_equal(
	    config_load_string(cfg, "a = 1\n[farm x]\np=1\nbad", "t.conf", err, sizeof(err)), -1);
	check_str("failed load", 0, err, "t.conf:4: missing '=' (want name = value)");
	check_str("failed load", 1, config_get(cfg, NULL, NULL, "a"), NULL);
	assert_int_equal(config_section_count(cfg, "farm"), 0);
	check_str("failed load", 2, config_get(cfg, NULL, NULL, "o"), "1");

	/* The same config can then take a good file; a second one is refused. */
	assert_int_equal(config_load_string(cfg, "a = 2\no = 3", "t.conf", err, sizeof(err)), 0);
	check_str("failed load", 3, config_get(cfg, NULL, NULL, "a"), "2");
	check_str("failed load", 4, config_get(cfg, NULL, NULL, "o"), "1");
	assert_int_equal(config_load_string(cfg, "b = 1", "u.conf", err, sizeof(err)), -1);
	check_str("failed load", 5, err,
		  "u.conf: this config already holds a file; load into a new one");
	check_str("failed load", 6, config_get(cfg, NULL, NULL, "b"), NULL);
	config_free(&cfg);
}

/* write_temp - a temp file holding len bytes of text; returns its path (free it). */
static char *write_temp(const char *text, size_t len)
{
	char *path = xstrdup("/tmp/test_config.XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_load_file(void **state)
{
	static const char bad[] = "a = 1\nbad line\n";
	static const char nul[] = "a = 1\nb = x\0y\n";
	static const char good[] = "a = 1\n[farm f]\np = $a$a\n";
	char err[1024], want[1024];
	struct config *cfg;
	const char *file;
	unsigned line;
	char *path;
	int fd;

	(void)state;
	path = write_temp(bad, sizeof(bad) - 1);
	cfg = config_new();
	assert_int_equal(config_load(cfg, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: missing '=' (want name = value)", path);
	check_str("file", 0, err, want);
	config_free(&cfg);
	unlink(path);
	free(path);

	path = write_temp(nul, sizeof(nul) - 1);
	cfg = config_new();
	assert_int_equal(config_load(cfg, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: NUL character in line", path);
	check_str("file", 1, err, want);
	config_free(&cfg);
	unlink(path);
	free(path);

	path = write_temp(good, sizeof(good) - 1);
	cfg = config_new();
	assert_int_equal(config_load(cfg, path, err, sizeof(err)), 0);
	check_str("file", 2, config_get(cfg, "farm", "f", "p"), "11");
	assert_int_equal(config_location(cfg, "farm", "f", "p", &file, &line), 0);
	check_str("file", 3, file, path);
	assert_int_equal(line, 3);
	assert_int_equal(config_load(cfg, path, err, sizeof(err)), -1);
	config_free(&cfg);

	/* One byte over the limit; the content does not matter. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, CONFIG_MAX_FILE + 1), 0);
	close(fd);
	cfg = config_new();
	assert_int_equal(config_load(cfg, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: file is bigger than 16777216 bytes", path);
	check_str("file", 4, err, want);
	config_free(&cfg);
	unlink(path);
	free(path);

	cfg = config_new();
	assert_int_equal(config_load(cfg, "/nonexistent-zfarm/x.conf", err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "/nonexistent-zfarm/x.conf: cannot open: %s",
		 strerror(ENOENT));
	check_str("file", 5, err, want);
	assert_int_equal(config_load(cfg, "/tmp", err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "/tmp: cannot read: %s", strerror(EISDIR));
	check_str("file", 6, err, want);
	config_free(&cfg);
}

static void test_overrides(void **state)
{
	struct config *cfg = config_new();
	const char *file;
	unsigned line;
	char err[256];

	(void)state;
	/* Before the load: still wins, and expansions see it. */
	override_ok(cfg, "a=from-o");
	override_ok(cfg, "farm.s.p = 5 ");
	assert_int_equal(config_load_string(cfg, "a = file\nb = <$a>\n[farm s]\np = 1\nq = 2\n",
					    "t.conf", err, sizeof(err)),
			 0);
	check_str("override", 0, config_get(cfg, NULL, NULL, "a"), "from-o");
	check_str("override", 1, config_get(cfg, NULL, NULL, "b"), "<from-o>");
	check_str("override", 2, config_get(cfg, "farm", "s", "p"), "5");
	check_str("override", 3, config_get(cfg, "farm", "s", "q"), "2");
	assert_int_equal(config_location(cfg, NULL, NULL, "a", &file, &line), 0);
	check_str("override", 4, file, "-o");
	assert_int_equal(line, 0);
	/* The file's [farm s] took the section over from the override. */
	assert_int_equal(config_location(cfg, "farm", "s", NULL, &file, &line), 0);
	check_str("override", 5, file, "t.conf");
	assert_int_equal(line, 3);

	/* After the load: wins, replaces an earlier override, invalidates expansions. */
	override_ok(cfg, "a=second");
	check_str("override", 6, config_get(cfg, NULL, NULL, "b"), "<second>");
	override_ok(cfg, "farm.s.q=x y");
	check_str("override", 7, config_get(cfg, "farm", "s", "q"), "x y");
	override_ok(cfg, "empty=");
	check_str("override", 8, config_get(cfg, NULL, NULL, "empty"), "");

	/* A new section, and a section name with dots. */
	override_ok(cfg, "farm.new.process_limit=7");
	assert_int_equal(config_section_count(cfg, "farm"), 2);
	check_str("override", 9, config_section_name(cfg, "farm", 1), "new");
	check_str("override", 10, config_get(cfg, "farm", "new", "process_limit"), "7");
	assert_int_equal(config_location(cfg, "farm", "new", NULL, &file, &line), 0);
	check_str("override", 11, file, "-o");
	override_ok(cfg, "channel.smtp.relay.example.concurrency=3");
	check_str("override", 12, config_get(cfg, "channel", "smtp.relay.example", "concurrency"),
		  "3");
	config_free(&cfg);
}

static void test_bad_overrides(void **state)
{
	static const struct {
		const char *setting, *want;
	} rows[] = {
	    {"novalue", "-o: missing '=' in \"novalue\" (want name=value or "
			"kind.name.param=value)"},
	    {"farm.x=1", "-o: bad name \"farm.x\": want name or kind.name.param"},
	    {"=1", "-o: bad name \"\": want name or kind.name.param"},
	    {"a-b=1", "-o: bad name \"a-b\": want name or kind.name.param"},
	    {"farm..p=1", "-o: bad name \"farm..p\": want name or kind.name.param"},
	    {"farm.x.=1", "-o: bad name \"farm.x.\": want name or kind.name.param"},
	    {".x.p=1", "-o: bad name \".x.p\": want name or kind.name.param"},
	    {"farm.x.p-q=1", "-o: bad name \"farm.x.p-q\": want name or kind.name.param"},
	    {"fa/rm.x.p=1", "-o: bad name \"fa/rm.x.p\": want name or kind.name.param"},
	};
	struct config *cfg = config_new();
	char err[256];

	(void)state;
	for (size_t i = 0; i < NROWS(rows); i++) {
		if (config_override(cfg, rows[i].setting, err, sizeof(err)) == 0)
			fail_msg("bad override row %zu: got success, want \"%s\"", i, rows[i].want);
		check_str("bad override", i, err, rows[i].want);
	}
	/* Nothing was half-applied. */
	assert_int_equal(config_section_count(cfg, "farm"), 0);
	check_str("bad override", 100, config_get(cfg, NULL, NULL, "a"), NULL);
	config_free(&cfg);
}

static const char expand_text[] = "run = /var/run/z\n"
				  "queue = $run/queue\n"
				  "braces = ${run}x\n"
				  "dollar = cost $$5 and $$$run $$$$\n"
				  "nested = <$queue>\n"
				  "chain = $nested!\n"
				  "unknown = a $nosuch b\n"
				  "empty =\n"
				  "edge = [$empty]\n"
				  "adjacent = $run$run${run}\n"
				  "hash = $run#x\n"
				  "[farm s]\n"
				  "dir = $queue/s\n"
				  "notsection = $dir\n";

static void test_expansion(void **state)
{
	static const struct {
		const char *kind, *name, *param, *want;
	} rows[] = {
	    {NULL, NULL, "queue", "/var/run/z/queue"},
	    {NULL, NULL, "braces", "/var/run/zx"},
	    {NULL, NULL, "dollar", "cost $5 and $/var/run/z $$"},
	    {NULL, NULL, "nested", "</var/run/z/queue>"},
	    {NULL, NULL, "chain", "</var/run/z/queue>!"},
	    {NULL, NULL, "unknown", "a  b"},
	    {NULL, NULL, "edge", "[]"},
	    {NULL, NULL, "adjacent", "/var/run/z/var/run/z/var/run/z"},
	    {NULL, NULL, "hash", "/var/run/z#x"},
	    {"farm", "s", "dir", "/var/run/z/queue/s"},
	    {"farm", "s", "notsection", ""}, /* $dir is a global, and unset */
	};
	struct config *cfg = load_ok(expand_text);
	char err[256];

	(void)state;
	for (size_t i = 0; i < NROWS(rows); i++)
		check_str("expand", i, config_get(cfg, rows[i].kind, rows[i].name, rows[i].param),
			  rows[i].want);
	assert_int_equal(config_expand_check(cfg, err, sizeof(err)), -1);
	check_str("expand", 100, err, "t.conf:7: parameter unknown: unknown parameter $nosuch");
	/* A later change of a global shows in what depends on it. */
	override_ok(cfg, "run=/other");
	check_str("expand", 101, config_get(cfg, "farm", "s", "dir"), "/other/queue/s");
	override_ok(cfg, "nosuch=X");
	check_str("expand", 102, config_get(cfg, NULL, NULL, "unknown"), "a X b");
	override_ok(cfg, "dir=D");
	assert_int_equal(config_expand_check(cfg, err, sizeof(err)), 0);
	check_str("expand", 103, config_get(cfg, "farm", "s", "notsection"), "D");
	config_free(&cfg);
}

static void test_expand_errors(void **state)
{
	static const struct {
		const char *text, *param, *want_value, *want_err;
	} rows[] = {
	    {"a = $b\nb = $a", "a", "", "t.conf:2: parameter b: expansion loop $a -> $b -> $a"},
	    {"a = x$a", "a", "x", "t.conf:1: parameter a: expansion loop $a -> $a"},
	    {"a = $b\nb = $c\nc = <$a>", "a", "<",
	     "t.conf:3: parameter c: expansion loop $a -> $b -> $c -> $a"},
	    {"x = $a!\na = $b\nb = $a", "x", "",
	     "t.conf:3: parameter b: expansion loop $a -> $b -> $a"},
	    {"a = <$nope>", "a", "<>", "t.conf:1: parameter a: unknown parameter $nope"},
	    {"a = <$b>\nb = $c", "a", "<>", "t.conf:2: parameter b: unknown parameter $c"},
	    {"a = x${b", "a", "x", "t.conf:1: parameter a: unterminated ${"},
	    {"b = 1\na = x${b c}y", "a", "xy", "t.conf:2: parameter a: bad reference \"${b c}\""},
	    {"a = x${}y", "a", "xy", "t.conf:1: parameter a: bad reference \"${}\""},
	    {"a = $-x", "a", "-x",
	     "t.conf:1: parameter a: '$' not followed by a name, {name} or '$' (write $$ for "
	     "a '$')"},
	    {"a = 5$", "a", "5",
	     "t.conf:1: parameter a: '$' not followed by a name, {name} or '$' (write $$ for "
	     "a '$')"},
	    {"ok = 1\n[farm s]\np = $ok$zz", "ok", "1",
	     "t.conf:3: parameter farm.s.p: unknown parameter $zz"},
	};
	char err[512];

	(void)state;
	for (size_t i = 0; i < NROWS(rows); i++) {
		struct config *cfg = load_ok(rows[i].text);

		check_str("expand error value", i, config_get(cfg, NULL, NULL, rows[i].param),
			  rows[i].want_value);
		err[0] = '\0';
		if (config_expand_check(cfg, err, sizeof(err)) == 0)
			fail_msg("expand error row %zu: got success, want \"%s\"", i,
				 rows[i].want_err);
		check_str("expand error", i, err, rows[i].want_err);
		config_free(&cfg);
	}
}

/* chain_text - "v0 = $v1" ... "v<n-1> = $v<n>", "v<n> = end": n nested levels. */
static char *chain_text(int n, bool reverse)
{
	size_t cap = 32 * (size_t)(n + 1) + 1, len = 0;
	char *text = xmalloc(cap);

	for (int k = 0; k <= n; k++) {
		int i = reverse ? n - k : k;

		if (i < n)
			len += (size_t)snprintf(text + len, cap - len, "v%d = $v%d\n", i, i + 1);
		else
			len += (size_t)snprintf(text + len, cap - len, "v%d = end\n", i);
	}
	return text;
}

static void test_expand_depth(void **state)
{
	char err[512];
	struct config *cfg;
	char *text;

	(void)state;
	for (int reverse = 0; reverse < 2; reverse++) {
		text = chain_text(CONFIG_EXPAND_DEPTH, reverse);
		cfg = load_ok(text);
		check_str("depth ok", (size_t)reverse, config_get(cfg, NULL, NULL, "v0"), "end");
		assert_int_equal(config_expand_check(cfg, err, sizeof(err)), 0);
		config_free(&cfg);
		free(text);
	}

	text = chain_text(CONFIG_EXPAND_DEPTH + 1, false);
	cfg = load_ok(text);
	check_str("depth", 0, config_get(cfg, NULL, NULL, "v0"), "");
	assert_int_equal(config_expand_check(cfg, err, sizeof(err)), -1);
	check_str("depth", 1, err,
		  "t.conf:11: parameter v10: $references nested deeper than 10 levels ($v0 -> $v1 "
		  "-> $v2 -> $v3 -> $v4 -> $v5 -> $v6 -> $v7 -> $v8 -> $v9 -> $v10 -> $v11 ...)");
	/* Shorter chains inside the long one are fine on their own. */
	check_str("depth", 2, config_get(cfg, NULL, NULL, "v1"), "end");
	check_str("depth", 3, config_get(cfg, NULL, NULL, "v5"), "end");
	config_free(&cfg);

	/* Same, with the inner values expanded (and memoized) first. */
	cfg = load_ok(text);
	check_str("depth", 4, config_get(cfg, NULL, NULL, "v5"), "end");
	check_str("depth", 5, config_get(cfg, NULL, NULL, "v0"), "");
	assert_int_equal(config_expand_check(cfg, err, sizeof(err)), -1);
	if (strstr(err, "nested deeper than 10 levels") == NULL)
		fail_msg("depth: got \"%s\", want a nesting error", err);
	config_free(&cfg);
	free(text);
}

/* Nine references per level over eight levels: 9^8 bytes unless memoized and capped. */
static void test_expand_blowup(void **state)
{
	char text[1024], err[512];
	size_t len = 0;
	struct config *cfg;

	(void)state;
	len += (size_t)snprintf(text, sizeof(text), "a0 = x\n");
	for (int i = 1; i <= 8; i++) {
		len += (size_t)snprintf(text + len, sizeof(text) - len, "a%d = ", i);
		for (int j = 0; j < 9; j++)
			len += (size_t)snprintf(text + len, sizeof(text) - len, "$a%d", i - 1);
		len += (size_t)snprintf(text + len, sizeof(text) - len, "\n");
	}
	cfg = load_ok(text);
	assert_int_equal(strlen(config_get(cfg, NULL, NULL, "a7")), 4782969);
	assert_int_equal(config_expand_check(cfg, err, sizeof(err)), -1);
	check_str("blowup", 0, err,
		  "t.conf:9: parameter a8: expanded value longer than 16777216 "
		  "bytes");
	config_free(&cfg);
}

/* One getter call: the value is set by -o unless NULL (unset). */
struct typed_row {
	const char *value;
	long long min, max;
	int want_rc;
	long long want;
	const char *want_err;
};

enum typed_kind { TYPED_INT, TYPED_TIME, TYPED_SIZE };

static void run_typed(const char *what, enum typed_kind kind, const struct typed_row *rows,
		      size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct config *cfg = config_new();
		char setting[128], err[256] = "";
		long long got = -12345;
		int rc;

		if (rows[i].value) {
			snprintf(setting, sizeof(setting), "v=%s", rows[i].value);
			override_ok(cfg, setting);
		}
		if (kind == TYPED_INT)
			rc = config_get_int(cfg, NULL, NULL, "v", 33, rows[i].min, rows[i].max,
					    &got, err, sizeof(err));
		else if (kind == TYPED_TIME)
			rc = config_get_time(cfg, NULL, NULL, "v", 33, rows[i].min, rows[i].max,
					     &got, err, sizeof(err));
		else
			rc = config_get_size(cfg, NULL, NULL, "v", 33, rows[i].min, rows[i].max,
					     &got, err, sizeof(err));
		if (rc != rows[i].want_rc)
			fail_msg("%s row %zu (%s): got rc %d (%s), want %d", what, i,
				 rows[i].value ? rows[i].value : "unset", rc, err, rows[i].want_rc);
		if (rc == 0 && got != rows[i].want)
			fail_msg("%s row %zu (%s): got %lld, want %lld", what, i, rows[i].value,
				 got, rows[i].want);
		if (rc < 0) {
			if (got != -12345)
				fail_msg("%s row %zu: *out changed on error", what, i);
			check_str(what, i, err, rows[i].want_err);
		}
		config_free(&cfg);
	}
}

static void test_get_int(void **state)
{
	static const struct typed_row rows[] = {
	    {"42", 0, 100, 0, 42, NULL},
	    {"-5", -10, 10, 0, -5, NULL},
	    {"+7", 0, 10, 0, 7, NULL},
	    {" 8 ", 0, 10, 0, 8, NULL},
	    {"007", 0, 10, 0, 7, NULL},
	    {NULL, 0, 10, 0, 33, NULL}, /* default, not range checked */
	    {"9223372036854775807", 0, LLONG_MAX, 0, LLONG_MAX, NULL},
	    {"-9223372036854775808", LLONG_MIN, 0, 0, LLONG_MIN, NULL},
	    {"-1", 0, 100, -1, 0, "-o: parameter v: -1 is out of range 0..100"},
	    {"101", 0, 100, -1, 0, "-o: parameter v: 101 is out of range 0..100"},
	    {"99999999999999999999", LLONG_MIN, LLONG_MAX, -1, 0,
	     "-o: parameter v: 99999999999999999999 is out of range "
	     "-9223372036854775808..9223372036854775807"},
	    {"-99999999999999999999", 0, 10, -1, 0,
	     "-o: parameter v: -99999999999999999999 is out of range 0..10"},
	    {"12abc", 0, 100, -1, 0, "-o: parameter v: \"12abc\" is not a whole number"},
	    {"", 0, 100, -1, 0, "-o: parameter v: \"\" is not a whole number"},
	    {"0x10", 0, 100, -1, 0, "-o: parameter v: \"0x10\" is not a whole number"},
	    {"1.5", 0, 100, -1, 0, "-o: parameter v: \"1.5\" is not a whole number"},
	    {"- 5", -10, 100, -1, 0, "-o: parameter v: \"- 5\" is not a whole number"},
	    {"1 2", 0, 100, -1, 0, "-o: parameter v: \"1 2\" is not a whole number"},
	    {"$nope", 0, 100, -1, 0, "-o: parameter v: unknown parameter $nope"},
	};

	(void)state;
	run_typed("int", TYPED_INT, rows, NROWS(rows));
}

static void test_get_time(void **state)
{
	static const struct typed_row rows[] = {
	    {"30", 0, LLONG_MAX, 0, 30, NULL},
	    {"30s", 0, LLONG_MAX, 0, 30, NULL},
	    {"5m", 0, LLONG_MAX, 0, 300, NULL},
	    {"2h", 0, LLONG_MAX, 0, 7200, NULL},
	    {"1d", 0, LLONG_MAX, 0, 86400, NULL},
	    {"1w", 0, LLONG_MAX, 0, 604800, NULL},
	    {"0", 0, LLONG_MAX, 0, 0, NULL},
	    {NULL, 0, LLONG_MAX, 0, 33, NULL},
	    {"2h", 0, 3600, -1, 0, "-o: parameter v: 2h is out of range 0..3600"},
	    {"0", 1, 10, -1, 0, "-o: parameter v: 0 is out of range 1..10"},
	    {"99999999999999999999s", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: 99999999999999999999s is out of range 0..9223372036854775807"},
	    {"9999999999999999w", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: 9999999999999999w is out of range 0..9223372036854775807"},
	    {"5M", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"5M\" is not a time (digits and an optional unit s, m, h, d or "
	     "w)"},
	    {"5x", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"5x\" is not a time (digits and an optional unit s, m, h, d or "
	     "w)"},
	    {"m", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"m\" is not a time (digits and an optional unit s, m, h, d or "
	     "w)"},
	    {"-5", -10, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"-5\" is not a time (digits and an optional unit s, m, h, d or "
	     "w)"},
	    {"5mm", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"5mm\" is not a time (digits and an optional unit s, m, h, d "
	     "or w)"},
	    {"1h30m", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"1h30m\" is not a time (digits and an optional unit s, m, h, d "
	     "or w)"},
	    {"", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"\" is not a time (digits and an optional unit s, m, h, d or "
	     "w)"},
	};

	(void)state;
	run_typed("time", TYPED_TIME, rows, NROWS(rows));
}

static void test_get_size(void **state)
{
	static const struct typed_row rows[] = {
	    {"512", 0, LLONG_MAX, 0, 512, NULL},
	    {"1k", 0, LLONG_MAX, 0, 1024, NULL},
	    {"1K", 0, LLONG_MAX, 0, 1024, NULL},
	    {"10m", 0, LLONG_MAX, 0, 10485760, NULL},
	    {"2M", 0, LLONG_MAX, 0, 2097152, NULL},
	    {"1g", 0, LLONG_MAX, 0, 1073741824, NULL},
	    {"3G", 0, LLONG_MAX, 0, 3221225472LL, NULL},
	    {NULL, 0, LLONG_MAX, 0, 33, NULL},
	    {"0", 1, LLONG_MAX, -1, 0, "-o: parameter v: 0 is out of range 1..9223372036854775807"},
	    {"9999999999G", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: 9999999999G is out of range 0..9223372036854775807"},
	    {"99999999999999999999", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: 99999999999999999999 is out of range 0..9223372036854775807"},
	    {"1t", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"1t\" is not a size (digits and an optional unit k, m or g)"},
	    {"1kb", 0, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"1kb\" is not a size (digits and an optional unit k, m or g)"},
	    {"-1", -10, LLONG_MAX, -1, 0,
	     "-o: parameter v: \"-1\" is not a size (digits and an optional unit k, m or g)"},
	};

	(void)state;
	run_typed("size", TYPED_SIZE, rows, NROWS(rows));
}

static void test_get_bool(void **state)
{
	static const struct {
		const char *value;
		int want_rc;
		bool want;
	} rows[] = {
	    {"yes", 0, true}, {"Yes", 0, true},	   {"TRUE", 0, true},	 {"on", 0, true},
	    {"1", 0, true},   {"no", 0, false},	   {"False", 0, false},	 {"OFF", 0, false},
	    {"0", 0, false},  {NULL, 0, true},	   {"maybe", -1, false}, {"", -1, false},
	    {"2", -1, false}, {"yess", -1, false}, {"y", -1, false},
	};

	(void)state;
	for (size_t i = 0; i < NROWS(rows); i++) {
		struct config *cfg = config_new();
		char setting[64], err[256] = "", want[256];
		bool got = false;
		int rc;

		if (rows[i].value) {
			snprintf(setting, sizeof(setting), "v=%s", rows[i].value);
			override_ok(cfg, setting);
		}
		rc = config_get_bool(cfg, NULL, NULL, "v", true, &got, err, sizeof(err));
		if (rc != rows[i].want_rc || (rc == 0 && got != rows[i].want))
			fail_msg("bool row %zu (%s): got rc %d value %d, want rc %d value %d", i,
				 rows[i].value ? rows[i].value : "unset", rc, got, rows[i].want_rc,
				 rows[i].want);
		if (rc < 0) {
			snprintf(want, sizeof(want),
				 "-o: parameter v: \"%s\" is not yes/no, "
				 "true/false, on/off or 1/0",
				 rows[i].value);
			check_str("bool", i, err, want);
		}
		config_free(&cfg);
	}
}

static void test_getter_location(void **state)
{
	struct config *cfg = load_ok("a = 1\n[farm s]\n\nn = many\nt = 5m\n");
	long long v = 0;
	char err[256];

	(void)state;
	assert_int_equal(config_get_int(cfg, "farm", "s", "n", 1, 0, 10, &v, err, sizeof(err)), -1);
	check_str("location", 0, err,
		  "t.conf:4: parameter farm.s.n: \"many\" is not a whole "
		  "number");
	assert_int_equal(config_get_time(cfg, "farm", "s", "t", 1, 0, 1000, &v, err, sizeof(err)),
			 0);
	assert_int_equal(v, 300);
	assert_int_equal(config_get_int(cfg, "farm", "other", "n", 4, 0, 10, &v, err, sizeof(err)),
			 0);
	assert_int_equal(v, 4);
	config_free(&cfg);
}

static void test_get_list(void **state)
{
	static const struct {
		const char *value, *def;
		int want_rc;
		const char *want; /* items joined with '|' */
		size_t want_n;
	} rows[] = {
	    {"a, b,,c d", NULL, 0, "a|b|c|d", 4},
	    {"one", NULL, 0, "one", 1},
	    {"", NULL, 0, "", 0},
	    {" , ,,", NULL, 0, "", 0},
	    {"a\tb ,c,", NULL, 0, "a|b|c", 3},
	    {"$l1, z", NULL, 0, "p|q|z", 3},
	    {NULL, "x y", 0, "x|y", 2},
	    {NULL, NULL, 0, "", 0},
	    {"$nope", "x", -1, NULL, 0},
	};

	(void)state;
	for (size_t i = 0; i < NROWS(rows); i++) {
		struct config *cfg = config_new();
		char setting[64], err[256], joined[256] = "";
		char **list = NULL;
		size_t n = 99;
		int rc;

		override_ok(cfg, "l1 = p  q");
		if (rows[i].value) {
			snprintf(setting, sizeof(setting), "v=%s", rows[i].value);
			override_ok(cfg, setting);
		}
		rc =
		    config_get_list(cfg, NULL, NULL, "v", rows[i].def, &list, &n, err, sizeof(err));
		if (rc != rows[i].want_rc)
			fail_msg("list row %zu: got rc %d, want %d", i, rc, rows[i].want_rc);
		if (rc == 0) {
			for (size_t j = 0; list[j]; j++) {
				if (j)
					strcat(joined, "|");
				strcat(joined, list[j]);
			}
			check_str("list", i, joined, rows[i].want);
			if (n != rows[i].want_n)
				fail_msg("list row %zu: got %zu items, want %zu", i, n,
					 rows[i].want_n);
		} else {
			assert_null(list);
			check_str("list error", i, err, "-o: parameter v: unknown parameter $nope");
		}
		config_list_free(&list);
		assert_null(list);
		config_free(&cfg);
	}
	config_list_free(NULL);
}

static void test_get_string_and_default(void **state)
{
	struct config *cfg = load_ok("a = x\nbad = $nope\n");
	const char *got = NULL;
	char err[256];

	(void)state;
	check_str("default", 0, config_get_default(cfg, NULL, NULL, "a", "d"), "x");
	check_str("default", 1, config_get_default(cfg, NULL, NULL, "b", "d"), "d");
	check_str("default", 2, config_get_default(cfg, "farm", "s", "b", "$d"), "$d");
	check_str("default", 3, config_get_default(cfg, NULL, NULL, "b", NULL), NULL);
	assert_int_equal(config_get_string(cfg, NULL, NULL, "a", "d", &got, err, sizeof(err)), 0);
	check_str("string", 0, got, "x");
	assert_int_equal(config_get_string(cfg, NULL, NULL, "b", "d", &got, err, sizeof(err)), 0);
	check_str("string", 1, got, "d");
	assert_int_equal(config_get_string(cfg, NULL, NULL, "bad", "d", &got, err, sizeof(err)),
			 -1);
	check_str("string", 2, err, "t.conf:2: parameter bad: unknown parameter $nope");
	config_free(&cfg);
}

static void test_set_default(void **state)
{
	struct config *cfg = config_new();
	const char *file;
	unsigned line;
	char err[256];

	(void)state;
	assert_int_equal(config_set_default(cfg, "myhostname", "host.example", err, sizeof(err)),
			 0);
	assert_int_equal(config_set_default(cfg, "mydomain", "$nope", err, sizeof(err)), 0);
	assert_int_equal(config_load_string(cfg, "mydestination = localhost, $myhostname\n",
					    "t.conf", err, sizeof(err)),
			 0);
	check_str("set default", 0, config_get(cfg, NULL, NULL, "mydestination"),
		  "localhost, host.example");
	assert_int_equal(config_location(cfg, NULL, NULL, "myhostname", &file, &line), 0);
	check_str("set default", 1, file, "default");
	assert_int_equal(config_expand_check(cfg, err, sizeof(err)), -1);
	check_str("set default", 2, err, "default: parameter mydomain: unknown parameter $nope");
	override_ok(cfg, "myhostname=o.example");
	check_str("set default", 3, config_get(cfg, NULL, NULL, "mydestination"),
		  "localhost, o.example");
	assert_int_equal(config_set_default(cfg, "a b", "x", err, sizeof(err)), -1);
	check_str("set default", 4, err, "default: bad parameter name \"a b\"");
	config_free(&cfg);

	/* The file beats a default. */
	cfg = config_new();
	assert_int_equal(config_set_default(cfg, "myhostname", "host.example", err, sizeof(err)),
			 0);
	assert_int_equal(
	    config_load_string(cfg, "myhostname = file.example\n", "t.conf", err, sizeof(err)), 0);
	check_str("set default", 5, config_get(cfg, NULL, NULL, "myhostname"), "file.example");
	config_free(&cfg);
}

struct seen {
	char text[1024];
	int calls, stop_after;
};

static int collect(const char *param, const char *value, const char *file, unsigned line, void *arg)
{
	struct seen *s = arg;
	size_t len = strlen(s->text);

	snprintf(s->text + len, sizeof(s->text) - len, "%s=%s@%s:%u;", param, value, file, line);
	s->calls++;
	return s->calls == s->stop_after ? 7 : 0;
}

static void test_sections_and_foreach(void **state)
{
	static const struct {
		const char *kind, *name, *want;
	} rows[] = {
	    {"farm", "a", "p1=over@-o:0;p2=1@t.conf:6;"},
	    {NULL, NULL, "g1=1@t.conf:1;g2=2@t.conf:2;g3=3@-o:0;"},
	    {"farm", "b", "extra=9@-o:0;"},
	    {"farm", "c", "q=1@t.conf:11;"},
	    {"channel", "smtp", "c=1@t.conf:8;"},
	    {"farm", "nosuch", ""},
	    {"farm", NULL, ""},
	};
	static const char *const farms[] = {"z", "a", "b", "c"};
	struct config *cfg = config_new();
	const char *file;
	unsigned line;
	char err[256];

	(void)state;
	override_ok(cfg, "farm.z.p=1"); /* before the load: comes first */
	assert_int_equal(config_load_string(cfg,
					    "g1 = 1\ng2 = 2\n\n[farm a]\np1 = x\np2 = $g1\n"
					    "[channel smtp]\nc = 1\n[farm b]\n[farm c]\nq = 1\n",
					    "t.conf", err, sizeof(err)),
			 0);
	override_ok(cfg, "farm.b.extra=9");
	override_ok(cfg, "farm.a.p1=over");
	override_ok(cfg, "g3=3");
	assert_int_equal(config_set_default(cfg, "hidden", "1", err, sizeof(err)), 0);

	assert_int_equal(config_section_count(cfg, "farm"), NROWS(farms));
	for (size_t i = 0; i < NROWS(farms); i++)
		check_str("section name", i, config_section_name(cfg, "farm", i), farms[i]);
	check_str("section name", 99, config_section_name(cfg, "farm", NROWS(farms)), NULL);
	assert_int_equal(config_section_count(cfg, "channel"), 1);
	check_str("section name", 100, config_section_name(cfg, "channel", 0), "smtp");
	assert_int_equal(config_section_count(cfg, "nosuch"), 0);
	check_str("section name", 101, config_section_name(cfg, "nosuch", 0), NULL);

	for (size_t i = 0; i < NROWS(rows); i++) {
		struct seen s = {"", 0, 0};

		assert_int_equal(config_foreach(cfg, rows[i].kind, rows[i].name, collect, &s), 0);
		check_str("foreach", i, s.text, rows[i].want);
	}
	{
		struct seen s = {"", 0, 1};

		assert_int_equal(config_foreach(cfg, NULL, NULL, collect, &s), 7);
		assert_int_equal(s.calls, 1);
	}

	assert_int_equal(config_location(cfg, "farm", "a", NULL, &file, &line), 0);
	check_str("location", 0, file, "t.conf");
	assert_int_equal(line, 4);
	assert_int_equal(config_location(cfg, "farm", "z", NULL, &file, &line), 0);
	check_str("location", 1, file, "-o");
	assert_int_equal(line, 0);
	assert_int_equal(config_location(cfg, "farm", "a", "p2", &file, &line), 0);
	assert_int_equal(line, 6);
	assert_int_equal(config_location(cfg, "farm", "a", "nope", &file, &line), -1);
	assert_int_equal(config_location(cfg, "farm", "nope", NULL, &file, &line), -1);
	assert_int_equal(config_location(cfg, NULL, NULL, NULL, &file, &line), -1);
	config_free(&cfg);
}

/* 10,000 globals and 2,000 sections of 5: must be quick (no quadratic lookups). */
static void test_scale(void **state)
{
	size_t cap = 1 << 20, len = 0;
	char *text = xmalloc(cap), err[256], name[32];
	struct config *cfg;

	(void)state;
	len += (size_t)snprintf(text + len, cap - len, "p0 = /base\n");
	for (int i = 1; i < 10000; i++)
		len += (size_t)snprintf(text + len, cap - len, "p%d = $p0/%d\n", i, i);
	for (int i = 0; i < 2000; i++) {
		len += (size_t)snprintf(text + len, cap - len, "[farm f%d]\n", i);
		for (int j = 0; j < 5; j++)
			len +=
			    (size_t)snprintf(text + len, cap - len, "q%d = ${p%d}\n", j, i * 5 + j);
	}
	cfg = load_ok(text);
	free(text);
	assert_int_equal(config_expand_check(cfg, err, sizeof(err)), 0);
	check_str("scale", 0, config_get(cfg, NULL, NULL, "p9999"), "/base/9999");
	check_str("scale", 1, config_get(cfg, "farm", "f1999", "q4"), "/base/9999");
	assert_int_equal(config_section_count(cfg, "farm"), 2000);
	for (size_t i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "f%zu", i);
		check_str("scale name", i, config_section_name(cfg, "farm", i), name);
	}
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_good),
	    cmocka_unit_test(test_continuation),
	    cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_line_and_file_limits),
	    cmocka_unit_test(test_failed_load_applies_nothing),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_overrides),
	    cmocka_unit_test(test_bad_overrides),
	    cmocka_unit_test(test_expansion),
	    cmocka_unit_test(test_expand_errors),
	    cmocka_unit_test(test_expand_depth),
	    cmocka_unit_test(test_expand_blowup),
	    cmocka_unit_test(test_get_int),
	    cmocka_unit_test(test_get_time),
	    cmocka_unit_test(test_get_size),
	    cmocka_unit_test(test_get_bool),
	    cmocka_unit_test(test_getter_location),
	    cmocka_unit_test(test_get_list),
	    cmocka_unit_test(test_get_string_and_default),
	    cmocka_unit_test(test_set_default),
	    cmocka_unit_test(test_sections_and_foreach),
	    cmocka_unit_test(test_scale),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
