/*
 * Tests for smtpserver/passwd_file.c: the file format, lookups, password
 * checks with every supported hash kind (made here with crypt_gensalt,
 * so no fixed hash can rot), locked entries, refresh after a change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtpserver/passwd_file.h"

static char *hash_of(const char *prefix, const char *password)
{
	struct crypt_data cd;
	const char *salt = crypt_gensalt(prefix, 0, NULL, 0);
	const char *h;

	assert_non_null(salt);
	memset(&cd, 0, sizeof(cd));
	h = crypt_r(password, salt, &cd);
	assert_non_null(h);
	assert_true(h[0] == '$');
	return strdup(h);
}

static struct passwd_file *parse(const char *text, char *err, size_t errlen)
{
	return passwd_file_parse(text, strlen(text), "test", err, errlen);
}

/* ---- format ---- */

struct bad_row {
	const char *text;
	const char *want; /* error prefix */
};

/* clang-format off */
static const struct bad_row bad_rows[] = {
	{"alice\n", "test:1: no \":\""},
	{"# c\n\nalice $6$ab$cd\n", "test:3: no \":\""},
	{":$6$ab$cd\n", "test:1: bad user name"},
	{"al ice:$6$ab$cd\n", "test:1: bad user name"},
	{"al\tice:$6$ab$cd\n", "test:1: bad user name"},
	{"alice:secret\n", "test:1: user alice: not a yescrypt"},
	{"alice:\n", "test:1: user alice: not a yescrypt"},
	{"alice:$1$abc$def\n", "test:1: user alice: not a yescrypt"},      /* MD5 crypt */
	{"alice:abJnggxhB/yWI\n", "test:1: user alice: not a yescrypt"},   /* DES */
	{"alice:{PLAIN}secret\n", "test:1: user alice: not a yescrypt"},
	{"alice:$6$\n", "test:1: user alice: not a yescrypt"},
	{"alice:$6$ab$cd\nbob:$6$ab$cd\nalice:$5$ab$cd\n", "test:3: user alice given twice (also line 1)"},
};
/* clang-format on */

static void test_bad_files(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
		char err[256] = "";
		struct passwd_file *pf = parse(bad_rows[i].text, err, sizeof(err));

		if (pf)
			fail_msg("%s: parsed, want \"%s\"", bad_rows[i].text, bad_rows[i].want);
		if (strncmp(err, bad_rows[i].want, strlen(bad_rows[i].want)) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", bad_rows[i].text, err,
				 bad_rows[i].want);
	}
}

static void test_good_file(void **state)
{
	char err[256];
	struct passwd_file *pf;

	(void)state;
	pf = parse("# users\n"
		   "\n"
		   "   # indented comment\n"
		   "alice:$6$ab$cd:1000:1000::/home/alice::\r\n"
		   "bob:{SHA512-CRYPT}$6$xy$zz\n"
		   "carol:!$y$j9T$aa$bb\n"
		   "dave:{CRYPT}$2b$05$abcdefghijklmnopqrstuv\n"
		   "erin:$5$ss$tt",
		   err, sizeof(err));
	if (!pf)
		fail_msg("parse: %s", err);
	assert_int_equal(passwd_file_count(pf), 5);
	assert_string_equal(passwd_file_lookup(pf, "alice"), "$6$ab$cd");
	assert_string_equal(passwd_file_lookup(pf, "bob"), "$6$xy$zz");
	assert_string_equal(passwd_file_lookup(pf, "carol"), "!$y$j9T$aa$bb");
	assert_string_equal(passwd_file_lookup(pf, "dave"), "$2b$05$abcdefghijklmnopqrstuv");
	assert_string_equal(passwd_file_lookup(pf, "erin"), "$5$ss$tt");
	assert_null(passwd_file_lookup(pf, "Alice")); /* user names are exact */
	assert_null(passwd_file_lookup(pf, "mallory"));
	passwd_file_free(&pf);
	assert_null(pf);
	passwd_file_free(&pf);

	pf = parse("", err, sizeof(err));
	assert_non_null(pf);
	assert_int_equal(passwd_file_count(pf), 0);
	assert_false(passwd_file_verify(pf, "alice", "x"));
	passwd_file_free(&pf);
}

/* ---- checks ---- */

static void test_verify_kinds(void **state)
{
	static const char *const kinds[] = {"$y$", "$6$", "$5$", "$2b$"};

	(void)state;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		char *h = hash_of(kinds[i], "correct horse");
		char text[512], err[256];
		struct passwd_file *pf;

		assert_true(passwd_hash_supported(h));
		assert_true(passwd_check(h, "correct horse"));
		assert_false(passwd_check(h, "correct horsE"));
		assert_false(passwd_check(h, ""));
		snprintf(text, sizeof(text), "alice:%s\nlocked:!%s\n", h, h);
		pf = parse(text, err, sizeof(err));
		if (!pf)
			fail_msg("%s: %s", kinds[i], err);
		if (!passwd_file_verify(pf, "alice", "correct horse"))
			fail_msg("%s: the right password was refused", kinds[i]);
		assert_false(passwd_file_verify(pf, "alice", "wrong"));
		assert_false(passwd_file_verify(pf, "locked", "correct horse"));
		assert_false(passwd_file_verify(pf, "nobody", "correct horse"));
		passwd_file_free(&pf);
		free(h);
	}
}

/* Garbage settings never match, whatever crypt_r makes of them. */
static void test_verify_garbage(void **state)
{
	(void)state;
	assert_false(passwd_check("$6$", ""));
	assert_false(passwd_check("*", "*"));
	assert_false(passwd_check("", ""));
	assert_false(passwd_check("$6$ab$", "x"));
	assert_false(passwd_hash_supported("$6$"));
	assert_false(passwd_hash_supported("$1$ab$cd"));
	assert_false(passwd_hash_supported("plain"));
}

/* ---- files ---- */

static void write_file(const char *path, const char *text)
{
	char tmp[300];
	FILE *fp;

	/* replaced by rename, as zfpasswd does */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void test_load_refresh(void **state)
{
	char dir[] = "/tmp/zfarm-passwd-XXXXXX", path[300], text[512], err[256];
	char *h1, *h2;
	struct passwd_file *pf;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/passwd", dir);
	pf = passwd_file_load(path, err, sizeof(err));
	assert_null(pf);
	assert_non_null(strstr(err, "No such file"));

	h1 = hash_of("$6$", "one");
	h2 = hash_of("$6$", "two");
	snprintf(text, sizeof(text), "alice:%s\n", h1);
	write_file(path, text);
	pf = passwd_file_load(path, err, sizeof(err));
	if (!pf)
		fail_msg("load: %s", err);
	assert_true(passwd_file_verify(pf, "alice", "one"));
	assert_int_equal(passwd_file_refresh(&pf, err, sizeof(err)), 0);

	/* a new password and a new user */
	snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", h2, h1);
	write_file(path, text);
	assert_int_equal(passwd_file_refresh(&pf, err, sizeof(err)), 1);
	assert_false(passwd_file_verify(pf, "alice", "one"));
	assert_true(passwd_file_verify(pf, "alice", "two"));
	assert_true(passwd_file_verify(pf, "bob", "one"));

	/* a broken file: the old one stays, said once */
	write_file(path, "alice\n");
	assert_int_equal(passwd_file_refresh(&pf, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":1: no \":\""));
	assert_int_equal(passwd_file_refresh(&pf, err, sizeof(err)), 0);
	assert_true(passwd_file_verify(pf, "alice", "two"));

	/* gone: the same */
	unlink(path);
	assert_int_equal(passwd_file_refresh(&pf, err, sizeof(err)), -1);
	assert_true(passwd_file_verify(pf, "bob", "one"));

	/* fixed again */
	snprintf(text, sizeof(text), "carol:%s\n", h1);
	write_file(path, text);
	assert_int_equal(passwd_file_refresh(&pf, err, sizeof(err)), 1);
	assert_true(passwd_file_verify(pf, "carol", "one"));
	assert_false(passwd_file_verify(pf, "alice", "two"));

	/* not a regular file */
	assert_null(passwd_file_load(dir, err, sizeof(err)));

	passwd_file_free(&pf);
	unlink(path);
	rmdir(dir);
	free(h1);
	free(h2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_files),	  cmocka_unit_test(test_good_file),
	    cmocka_unit_test(test_verify_kinds),  cmocka_unit_test(test_verify_garbage),
	    cmocka_unit_test(test_load_refresh),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
