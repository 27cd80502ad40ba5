/*
 * Tests for router/route.c: every lookup step, aliases, :include:, loops,
 * limits, dedup and errors, against tables written to a temporary
 * directory; a table reload between two calls; a timing print.
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
#include <time.h>
#include <unistd.h>

#include "router/route.h"
#include "common/table.h"

#define MAX_WANT 8

/* ---- the fixture: files, tables and configs ---- */

static char dir[64];
static struct table *t_virtual, *t_aliases, *t_local, *t_bulk, *t_partner, *t_transport;

static const char *const mydest[] = {"localhost", "example.test", ".sub.example.test"};
static struct route_channel channels[2];

enum cfg {
	C_A, /* everything, no relayhost, no commands or files */
	C_B, /* C_A with a relayhost, commands and files allowed */
	C_P, /* passwd: no aliases, no local_recipient_maps */
	C_N
};
static struct route_config cfgs[C_N];

static void write_file(const char *name, const char *text)
{
	char path[256], tmp[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
	/* rename over the old file, as an admin's postmap would */
	assert_int_equal(rename(tmp, path), 0);
}

static struct table *open_table(const char *spec)
{
	char err[512];
	struct table *t = table_open(spec, err, sizeof(err));

	if (t == NULL)
		fail_msg("table_open(%s): %s", spec, err);
	return t;
}

static char *aliases_text(void)
{
	size_t cap = 128 * 1024, n = 0;
	char *s = malloc(cap);

	assert_non_null(s);
#define ADD(...) (n += (size_t)snprintf(s + n, cap - n, __VA_ARGS__), assert_true(n < cap))
	ADD("# aliases for test_route\n"
	    "postmaster: alice\nabuse: alice\nroot: alice\n"
	    "team: alice, bob, carol@remote.test\n"
	    "bob: bob, dave@remote.test\n"
	    "a: b\nb: a\n"
	    "cmd: |/usr/bin/true\n"
	    "qcmd: \"|/usr/bin/printf a,b\"\n"
	    "file: /tmp/x\n"
	    "inc: :include:%s/inc.txt\n"
	    "incloop: :include:%s/loop.txt\n"
	    "incmissing: :include:%s/missing.txt\n"
	    "incbig: :include:%s/big.txt\n"
	    "incdir: :include:%s\n"
	    "increl: :include:inc.txt\n"
	    "dup: team, alice\n"
	    "d1011: alice, x@remote.test, y@bulk.test, z@partner.test\n"
	    "bad: foo@@x\n"
	    "mixed: alice, foo@@x, nobody\n"
	    "empty:\n"
	    "ext+tag: carol@remote.test\n"
	    "spaced: alice bob\n"
	    "cont: alice,\n"
	    "  carol@remote.test\n",
	    dir, dir, dir, dir, dir);
	/* a chain of 25: l0 -> l1 -> ... -> l24 -> alice */
	for (int i = 0; i < 24; i++)
		ADD("l%d: l%d\n", i, i + 1);
	ADD("l24: alice\n");
	/* a doubling tree: 2^18 leaves, all alice */
	for (int i = 0; i < 18; i++)
		ADD("w%d: w%d, w%d\n", i, i + 1, i + 1);
	ADD("w18: alice\n");
	/* 40 items, 20 addresses: dedup past the linear scan */
	ADD("many:");
	for (int i = 0; i < 40; i++)
		ADD(" m%d@remote.test,", i % 20);
	ADD("\n");
	/* 1,500 addresses, ten a line */
	ADD("big:");
	for (int i = 0; i < 1500; i++)
		ADD("%su%d@remote.test%s", i % 10 == 0 ? (i ? "\n " : " ") : " ", i,
		    i + 1 < 1500 ? "," : "\n");
#undef ADD
	return s;
}

static int setup(void **state)
{
	enum { BIG_LINES = 1024 * 1024 / 6 + 1 };
	char spec[256], *al, *big;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_route.XXXXXX");
	assert_non_null(mkdtemp(dir));
	write_file("virtual", "v@virt.test alice@example.test\n"
			      "@catch.test bob@example.test\n"
			      "multi@virt.test alice@example.test, bob@example.test, "
			      "carol@remote.test\n"
			      "vloop@virt.test vloop2@virt.test\n"
			      "vloop2@virt.test vloop@virt.test\n"
			      "ext+tag@virt.test carol@remote.test\n"
			      "user@virt.test alice@example.test\n"
			      "vself@virt.test vself@virt.test, alice@example.test\n"
			      "vbad@virt.test |/bin/sh\n"
			      "vinc@virt.test :include:/etc/passwd\n");
	al = aliases_text();
	write_file("aliases", al);
	free(al);
	write_file("inc.txt", "# team list\n"
			      "alice\n"
			      "carol@remote.test, dave@remote.test\n"
			      "  # indented comment, bob\n");
	/* 1 MiB + 6 bytes of "alice\n": one line too many */
	big = malloc(BIG_LINES * 6 + 1);
	assert_non_null(big);
	for (int i = 0; i < BIG_LINES; i++)
		memcpy(big + 6 * i, "alice\n", 6);
	big[BIG_LINES * 6] = '\0';
	write_file("big.txt", big);
	free(big);
	snprintf(spec, sizeof(spec), ":include:%s/loop.txt\n", dir);
	write_file("loop.txt", spec);

	snprintf(spec, sizeof(spec), "hash:%s/virtual", dir);
	t_virtual = open_table(spec);
	snprintf(spec, sizeof(spec), "aliases:%s/aliases", dir);
	t_aliases = open_table(spec);
	t_local = open_table("inline:{alice, bob, carol, dave}");
	t_bulk = open_table("inline:{bulk.test, .bulk.test}");
	t_partner = open_table("inline:{partner.test}");
	t_transport = open_table("inline:{special.test=relay:[10.0.0.1]:2525, "
				 ".trans.test=smtp:[mx.trans.test], "
				 "dead.test=error:5.1.2 No such domain, "
				 "nocode.test=error:Gone, "
				 "plain.test=partner1, chanonly.test=relay:}");
	channels[0] = (struct route_channel){"bulk", t_bulk};
	channels[1] = (struct route_channel){"partner1", t_partner};

	cfgs[C_A] = (struct route_config){
	    .mydestination = mydest,
	    .n_mydestination = 3,
	    .recipient_delimiter = "+",
	    .virtual_alias_maps = t_virtual,
	    .alias_maps = t_aliases,
	    .local_recipient_maps = t_local,
	    .transport_maps = t_transport,
	    .channels = channels,
	    .n_channels = 2,
	};
	cfgs[C_B] = cfgs[C_A];
	cfgs[C_B].relayhost = "[relay.test]:587";
	cfgs[C_B].allow_alias_commands = true;
	cfgs[C_B].allow_alias_files = true;
	cfgs[C_P] = (struct route_config){
	    .mydestination = mydest,
	    .n_mydestination = 1,
	    .recipient_delimiter = "+",
	};
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	table_free(&t_virtual);
	table_free(&t_aliases);
	table_free(&t_local);
	table_free(&t_bulk);
	table_free(&t_partner);
	table_free(&t_transport);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return 0;
}

/* ---- helpers ---- */

/* "channel|nexthop|address|user|code" (code: the first word of error). */
static char *target_str(const struct route_target *t)
{
	char *s;
	size_t code = strcspn(t->error, " ");

	if (asprintf(&s, "%s|%s|%s|%s|%.*s", t->channel, t->nexthop, t->address, t->user, (int)code,
		     t->error) < 0)
		abort();
	return s;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(char **v, size_t n)
{
	size_t len = 1;
	char *s;

	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + 3;
	s = malloc(len);
	assert_non_null(s);
	s[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strcat(s, " ; ");
		strcat(s, v[i]);
	}
	return s;
}

/* Every target is well formed whatever the row. */
static void check_invariants(const char *rcpt, const struct route_result *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct route_target *t = &r->t[i];
		bool is_err = strcmp(t->channel, "error") == 0;

		if (!t->address || !t->channel || !t->nexthop || !t->user || !t->error)
			fail_msg("%s: got a NULL field in target %zu", rcpt, i);
		if (is_err != (t->error[0] != '\0'))
			fail_msg("%s: got channel %s with error \"%s\"", rcpt, t->channel,
				 t->error);
		if (is_err && !((t->error[0] == '4' || t->error[0] == '5') && t->error[1] == '.' &&
				strchr(t->error, ' ') != NULL))
			fail_msg("%s: got error \"%s\", want \"4.x.y text\" or \"5.x.y text\"",
				 rcpt, t->error);
		if (strcmp(t->channel, "local") == 0 && t->nexthop[0] != '\0')
			fail_msg("%s: got local nexthop \"%s\", want \"\"", rcpt, t->nexthop);
		if (strcmp(t->channel, "local") != 0 && t->user[0] != '\0')
			fail_msg("%s: got user \"%s\" on channel %s", rcpt, t->user, t->channel);
		for (size_t j = 0; j < i; j++)
			if (strcmp(t->channel, r->t[j].channel) == 0 &&
			    strcmp(t->nexthop, r->t[j].nexthop) == 0 &&
			    strcmp(t->address, r->t[j].address) == 0 &&
			    strcmp(t->error, r->t[j].error) == 0)
				fail_msg("%s: got target %s twice", rcpt, t->address);
	}
}

static void resolve(const struct route_config *rc, const char *rcpt, struct route_result *r)
{
	char err[256] = "";

	if (route_resolve(rc, rcpt, r, err, sizeof(err)) != 0)
		fail_msg("%s: got -1 (%s), want 0", rcpt, err);
	check_invariants(rcpt, r);
}

/* Route rcpt and compare the sorted targets with want (n_want strings). */
static void check_route(const char *what, const struct route_config *rc, const char *rcpt,
			const char *const *want, size_t n_want)
{
	struct route_result r;
	char **got, **exp, *gs, *ws;

	resolve(rc, rcpt, &r);
	got = calloc(r.n + 1, sizeof(*got));
	exp = calloc(n_want + 1, sizeof(*exp));
	assert_true(got != NULL && exp != NULL);
	for (size_t i = 0; i < r.n; i++)
		got[i] = target_str(&r.t[i]);
	for (size_t i = 0; i < n_want; i++)
		exp[i] = (char *)want[i];
	qsort(got, r.n, sizeof(*got), cmp_str);
	qsort(exp, n_want, sizeof(*exp), cmp_str);
	gs = join(got, r.n);
	ws = join(exp, n_want);
	if (strcmp(gs, ws) != 0)
		fail_msg("%s %s: got [%s], want [%s]", what, rcpt, gs, ws);
	free(gs);
	free(ws);
	for (size_t i = 0; i < r.n; i++)
		free(got[i]);
	free(got);
	free(exp);
	route_result_free(&r);
}

/* ---- the table ---- */

/* The table and its macros are laid out by hand, one row a line. */
/* clang-format off */

struct row {
	enum cfg cfg;
	const char *rcpt;
	const char *want[MAX_WANT];
};

#define R(c, r, ...) { c, r, { __VA_ARGS__ } }

#define ALICE_LH "local||alice@localhost|alice|"
#define BOB_LH   "local||bob@localhost|bob|"
#define CAROL    "smtp|remote.test|carol@remote.test||"
#define DAVE     "smtp|remote.test|dave@remote.test||"

static const struct row rows[] = {
	/* 1: canonical form, local users */
	R(C_A, "alice@example.test", "local||alice@example.test|alice|"),
	R(C_A, "alice+foo@example.test", "local||alice+foo@example.test|alice|"),
	R(C_A, "alice+@example.test", "local||alice+@example.test|alice|"),
	R(C_A, "Alice@EXAMPLE.Test", "local||Alice@example.test|alice|"),
	R(C_A, "\"alice\"@example.test", "local||alice@example.test|alice|"),
	R(C_A, "carol@localhost", "local||carol@localhost|carol|"),
	R(C_A, "alice@a.sub.example.test", "local||alice@a.sub.example.test|alice|"),
	R(C_A, "alice@sub.example.test", "smtp|sub.example.test|alice@sub.example.test||"),
	R(C_A, "nobody@example.test", "error||nobody@example.test||5.1.1"),
	R(C_A, "nobody", "error||nobody@localhost||5.1.1"),
	R(C_A, "nobody+alice@example.test", "error||nobody+alice@example.test||5.1.1"),
	R(C_A, "not an address", "error||not an address||5.1.3"),
	R(C_A, "", "error||||5.1.3"),
	R(C_A, "alice@[192.0.2.1]", "smtp|[192.0.2.1]|alice@[192.0.2.1]||"),
	/* 3: aliases */
	R(C_A, "postmaster", ALICE_LH),
	R(C_A, "PostMaster", ALICE_LH),
	R(C_A, "root@example.test", ALICE_LH),
	R(C_A, "team@example.test", ALICE_LH, BOB_LH, CAROL, DAVE),
	R(C_A, "bob@example.test", "local||bob@example.test|bob|", DAVE),
	R(C_A, "bob+x@example.test", "local||bob+x@example.test|bob|", DAVE),
	R(C_A, "a@example.test", "error||a@localhost||5.4.6"),
	R(C_A, "ext+tag@example.test", CAROL),
	R(C_A, "spaced@example.test", ALICE_LH, BOB_LH, DAVE),
	R(C_A, "cont@example.test", ALICE_LH, CAROL),
	R(C_A, "dup@example.test", ALICE_LH, BOB_LH, CAROL, DAVE),
	R(C_A, "bad@example.test", "error||bad@example.test||5.1.3"),
	R(C_A, "mixed@example.test", ALICE_LH, "error||mixed@example.test||5.1.3",
	  "error||nobody@localhost||5.1.1"),
	R(C_A, "empty@example.test", "error||empty@example.test||5.3.0"),
	/* :include: */
	R(C_A, "inc@example.test", ALICE_LH, CAROL, DAVE),
	R(C_A, "incloop@example.test", "error||incloop@example.test||5.4.6"),
	R(C_A, "incmissing@example.test", "error||incmissing@example.test||4.3.0"),
	R(C_A, "increl@example.test", "error||increl@example.test||5.3.0"),
	/* commands and files */
	R(C_A, "cmd@example.test", "error||cmd@example.test||5.3.0"),
	R(C_B, "cmd@example.test", "local|||/usr/bin/true||"),
	R(C_A, "qcmd@example.test", "error||qcmd@example.test||5.3.0"),
	R(C_B, "qcmd@example.test", "local|||/usr/bin/printf a,b||"),
	R(C_A, "file@example.test", "error||file@example.test||5.3.0"),
	R(C_B, "file@example.test", "local||/tmp/x||"),
	/* 2: virtual aliases */
	R(C_A, "v@virt.test", "local||alice@example.test|alice|"),
	R(C_A, "Anyone@Catch.Test", "local||bob@example.test|bob|", DAVE),
	R(C_A, "multi@virt.test", "local||alice@example.test|alice|",
	  "local||bob@example.test|bob|", CAROL, DAVE),
	R(C_A, "vloop@virt.test", "error||vloop@virt.test||5.4.6"),
	R(C_A, "ext+tag@virt.test", CAROL),
	R(C_A, "ext+other@virt.test", "smtp|virt.test|ext+other@virt.test||"),
	R(C_A, "user+other@virt.test", "local||alice@example.test|alice|"),
	R(C_A, "vself@virt.test", "smtp|virt.test|vself@virt.test||",
	  "local||alice@example.test|alice|"),
	R(C_A, "vbad@virt.test", "error||vbad@virt.test||5.1.3"),
	R(C_A, "vinc@virt.test", "error||vinc@virt.test||5.1.3"),
	/* 4: channel domain sets */
	R(C_A, "x@bulk.test", "bulk|bulk.test|x@bulk.test||"),
	R(C_A, "x@a.b.BULK.test", "bulk|a.b.bulk.test|x@a.b.bulk.test||"),
	R(C_A, "x@partner.test", "partner1|partner.test|x@partner.test||"),
	R(C_A, "x@sub.partner.test", "smtp|sub.partner.test|x@sub.partner.test||"),
	/* 5: transport_maps */
	R(C_A, "x@special.test", "relay|[10.0.0.1]:2525|x@special.test||"),
	R(C_A, "x@mx.special.test", "smtp|mx.special.test|x@mx.special.test||"),
	R(C_A, "x@a.b.trans.test", "smtp|[mx.trans.test]|x@a.b.trans.test||"),
	R(C_A, "x@trans.test", "smtp|trans.test|x@trans.test||"),
	R(C_A, "x@dead.test", "error||x@dead.test||5.1.2"),
	R(C_A, "x@nocode.test", "error||x@nocode.test||5.0.0"),
	R(C_A, "x@plain.test", "partner1|plain.test|x@plain.test||"),
	R(C_A, "x@chanonly.test", "relay|chanonly.test|x@chanonly.test||"),
	/* 6, 7: relayhost, default */
	R(C_A, "x@remote.test", "smtp|remote.test|x@remote.test||"),
	R(C_B, "x@remote.test", "smtp|[relay.test]:587|x@remote.test||"),
	R(C_B, "x@special.test", "relay|[10.0.0.1]:2525|x@special.test||"),
	R(C_B, "x@bulk.test", "bulk|bulk.test|x@bulk.test||"),
	R(C_B, "alice@example.test", "local||alice@example.test|alice|"),
	R(C_B, "team@example.test", ALICE_LH, BOB_LH, "smtp|[relay.test]:587|carol@remote.test||",
	  "smtp|[relay.test]:587|dave@remote.test||"),
	/* one recipient, four channels (seed 001, D1011) */
	R(C_A, "d1011@example.test", ALICE_LH, "smtp|remote.test|x@remote.test||",
	  "bulk|bulk.test|y@bulk.test||", "partner1|partner.test|z@partner.test||"),
	/* local_recipient_maps unset: the passwd database */
	R(C_P, "root@localhost", "local||root@localhost|root|"),
	R(C_P, "Root+box", "local||Root+box@localhost|root|"),
	R(C_P, "no-such-user-zq9@localhost", "error||no-such-user-zq9@localhost||5.1.1"),
	R(C_P, "x@example.test", "smtp|example.test|x@example.test||"),
};

/* clang-format on */

static void test_rows(void **state)
{
	char what[32];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t n = 0;

		while (n < MAX_WANT && rows[i].want[n] != NULL)
			n++;
		snprintf(what, sizeof(what), "row %zu", i);
		check_route(what, &cfgs[rows[i].cfg], rows[i].rcpt, rows[i].want, n);
	}
}

/* The whole error text for a few rows: the code first, then a clear reason. */
static void test_error_texts(void **state)
{
	static const struct {
		const char *rcpt;
		const char *want; /* prefix of the error text */
		const char *also; /* and somewhere after it, if set */
	} cases[] = {
	    {"nobody@example.test", "5.1.1 User unknown in local recipient table", NULL},
	    {"x@dead.test", "5.1.2 No such domain", NULL},
	    {"x@nocode.test", "5.0.0 Gone", NULL},
	    {"a@example.test", "5.4.6 Alias expansion loop", NULL},
	    {"cmd@example.test", "5.3.0 Alias command delivery not allowed", NULL},
	    {"file@example.test", "5.3.0 Alias file delivery not allowed", NULL},
	    {"bad@example.test", "5.1.3 Bad address syntax in aliases:", NULL},
	    {"incmissing@example.test", "4.3.0 Cannot read include file /", "missing.txt: No such"},
	    {"incbig@example.test", "4.3.0 Cannot read include file /", "big.txt: larger than"},
	    {"incdir@example.test", "4.3.0 Cannot read include file /", "not a regular file"},
	    {"empty@example.test", "5.3.0 Empty alias expansion", NULL},
	    {"vbad@virt.test", "5.1.3 Bad address syntax in hash:", "not allowed here"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct route_result r;

		resolve(&cfgs[C_A], cases[i].rcpt, &r);
		if (r.n != 1 || strncmp(r.t[0].error, cases[i].want, strlen(cases[i].want)) != 0 ||
		    (cases[i].also != NULL && strstr(r.t[0].error, cases[i].also) == NULL))
			fail_msg("%s: got %zu targets, error \"%s\", want 1 with \"%s...%s\"",
				 cases[i].rcpt, r.n, r.n > 0 ? r.t[0].error : "", cases[i].want,
				 cases[i].also != NULL ? cases[i].also : "");
		route_result_free(&r);
	}
}

static void test_depth(void **state)
{
	static const char *const deep[] = {"error||l21@localhost||5.4.6"};
	static const char *const ok[] = {ALICE_LH};
	struct route_config rc = cfgs[C_A];

	(void)state;
	check_route("max_depth 0 (20)", &rc, "l0@example.test", deep, 1);
	rc.max_depth = 20;
	check_route("max_depth 20", &rc, "l0@example.test", deep, 1);
	rc.max_depth = 30;
	check_route("max_depth 30", &rc, "l0@example.test", ok, 1);
	rc.max_depth = 1000000; /* capped, still deep enough for 25 */
	check_route("max_depth 1000000", &rc, "l0@example.test", ok, 1);
	/* from l4 the chain is 20 deep: alice at depth 21 */
	rc.max_depth = 20;
	check_route("max_depth 20", &rc, "l5@example.test", ok, 1);
	check_route("max_depth 20", &rc, "l4@example.test",
		    (const char *const[]){"error||alice@localhost||5.4.6"}, 1);
}

static void test_max_targets(void **state)
{
	struct route_config rc = cfgs[C_A];
	struct route_result r;
	size_t n_err = 0, n_smtp = 0;

	(void)state;
	resolve(&rc, "big@example.test", &r);
	for (size_t i = 0; i < r.n; i++) {
		if (strcmp(r.t[i].channel, "error") == 0) {
			n_err++;
			if (strcmp(r.t[i].error, "5.3.0 Too many recipients after expansion") !=
				0 ||
			    strcmp(r.t[i].address, "big@example.test") != 0)
				fail_msg("big: got error %s \"%s\", want big@example.test "
					 "\"5.3.0 Too many recipients after expansion\"",
					 r.t[i].address, r.t[i].error);
		} else if (strcmp(r.t[i].channel, "smtp") == 0) {
			n_smtp++;
		}
	}
	if (r.n != 1001 || n_err != 1 || n_smtp != 1000)
		fail_msg("big, default max_targets: got %zu targets (%zu smtp, %zu errors), want "
			 "1001 (1000 smtp, 1 error)",
			 r.n, n_smtp, n_err);
	route_result_free(&r);

	resolve(&rc, "many@example.test", &r);
	if (r.n != 20)
		fail_msg("many: got %zu targets, want 20", r.n);
	route_result_free(&r);

	rc.max_targets = 2000;
	resolve(&rc, "big@example.test", &r);
	if (r.n != 1500 || strcmp(r.t[1499].address, "u1499@remote.test") != 0)
		fail_msg("big, max_targets 2000: got %zu targets, last %s, want 1500, last "
			 "u1499@remote.test",
			 r.n, r.n > 0 ? r.t[r.n - 1].address : "-");
	route_result_free(&r);

	/* 2^18 paths to one address: bounded work, not 2^18 steps */
	rc.max_targets = 0;
	check_route("doubling tree", &rc, "w0@example.test",
		    (const char *const[]){ALICE_LH, "error||w0@example.test||5.3.0"}, 2);
}

static void test_api(void **state)
{
	struct route_result r = {(struct route_target *)1, 5};
	char err[64] = "";

	(void)state;
	if (route_resolve(&cfgs[C_A], NULL, &r, err, sizeof(err)) != -1 || r.n != 0 ||
	    r.t != NULL || err[0] == '\0')
		fail_msg("NULL rcpt: got n %zu err \"%s\", want -1, empty result, a reason", r.n,
			 err);
	if (route_resolve(NULL, "a@b.test", &r, err, sizeof(err)) != -1)
		fail_msg("NULL config: got 0, want -1");
	route_result_free(&r);
	route_result_free(NULL);
	/* no mydestination: an address without a domain cannot be routed */
	struct route_config rc = cfgs[C_A];
	rc.n_mydestination = 0;
	check_route("no mydestination", &rc, "postmaster",
		    (const char *const[]){"error||postmaster||5.1.3"}, 1);
	check_route("no mydestination", &rc, "alice@example.test",
		    (const char *const[]){"smtp|example.test|alice@example.test||"}, 1);
	/* no delimiter: "+" is an ordinary character */
	rc = cfgs[C_A];
	rc.recipient_delimiter = NULL;
	check_route("no delimiter", &rc, "alice+x@example.test",
		    (const char *const[]){"error||alice+x@example.test||5.1.1"}, 1);
	/* two delimiters: the first of either splits */
	rc.recipient_delimiter = "-+";
	check_route("delimiters -+", &rc, "alice-x+y@example.test",
		    (const char *const[]){"local||alice-x+y@example.test|alice|"}, 1);
}

/* A table swapped under the router between two calls. */
static void test_reload(void **state)
{
	struct route_config rc = cfgs[C_A];
	char spec[256], err[512];
	struct table *t;
	int r;

	(void)state;
	write_file("reload", "r: alice\n");
	snprintf(spec, sizeof(spec), "aliases:%s/reload", dir);
	t = open_table(spec);
	rc.alias_maps = t;
	check_route("before reload", &rc, "r@example.test", (const char *const[]){ALICE_LH}, 1);

	write_file("reload", "r: carol, bob\n");
	if ((r = table_refresh(t, err, sizeof(err))) != 1)
		fail_msg("table_refresh after rewrite: got %d (%s), want 1", r, err);
	check_route("after reload", &rc, "r@example.test",
		    (const char *const[]){"local||carol@localhost|carol|", BOB_LH}, 2);

	write_file("reload", "r: dave\nr: alice\n");
	if ((r = table_refresh(t, err, sizeof(err))) != -1)
		fail_msg("table_refresh of a bad file: got %d, want -1", r);
	check_route("after bad reload", &rc, "r@example.test",
		    (const char *const[]){"local||carol@localhost|carol|", BOB_LH}, 2);
	table_free(&t);
}

/* Not an assertion: decisions per second against a 100,000-key map. */
static void test_bench(void **state)
{
	enum { N = 100000 };
	struct route_config rc = cfgs[C_A];
	struct timespec t0, t1;
	char spec[300], rcpt[64], path[256];
	struct table *t;
	size_t bad = 0;
	double s;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/bench", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < N; i++)
		fprintf(f, "k%d@bench.test u%d@r%d.test\n", i, i, i % 1000);
	assert_int_equal(fclose(f), 0);
	snprintf(spec, sizeof(spec), "hash:%s", path);
	t = open_table(spec);
	rc.virtual_alias_maps = t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < N; i++) {
		struct route_result r;

		snprintf(rcpt, sizeof(rcpt), "k%d@bench.test", (i * 7919) % N);
		if (route_resolve(&rc, rcpt, &r, NULL, 0) != 0 || r.n != 1 ||
		    strcmp(r.t[0].channel, "smtp") != 0)
			bad++;
		route_result_free(&r);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("route: %d recipients against a %zu-key virtual map in %.3f s: %.0f decisions/s\n",
	       N, table_count(t), s, N / s);
	if (bad != 0)
		fail_msg("bench: got %zu bad results, want 0", bad);
	table_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rows),  cmocka_unit_test(test_error_texts),
	    cmocka_unit_test(test_depth), cmocka_unit_test(test_max_targets),
	    cmocka_unit_test(test_api),	  cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_bench),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
