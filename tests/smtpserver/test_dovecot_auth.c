/*
 * Tests for smtpserver/dovecot_auth.c: parsing the server's lines and
 * formatting AUTH requests (table-driven), then the client against a
 * stand-in Dovecot on a socketpair-like unix socket in this process:
 * handshake, OK/FAIL/temp, ids, cancel, a server that goes away.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Rows leave trailing fields out on purpose (zero). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/clock.h"
#include "common/log.h"
#include "smtpserver/auth.h"
#include "smtpserver/dovecot_auth.h"

/* ---- parsing ---- */

struct parse_row {
	const char *line;
	int rc;
	enum dovecot_auth_type type;
	unsigned long id;
	const char *user, *reason;
	bool temp;
};

/* clang-format off */
static const struct parse_row parse_rows[] = {
	{"VERSION\t1\t2", 0, DOVECOT_VERSION},
	{"VERSION\t1", -1, DOVECOT_VERSION},
	{"VERSION\tx\t2", -1, DOVECOT_VERSION},
	{"MECH\tPLAIN\tplaintext", 0, DOVECOT_MECH},
	{"MECH", -1, DOVECOT_MECH},
	{"SPID\t123", 0, DOVECOT_SPID},
	{"CUID\t4", 0, DOVECOT_CUID},
	{"COOKIE\tabcdef", 0, DOVECOT_COOKIE},
	{"DONE", 0, DOVECOT_DONE},
	{"DONE\r", 0, DOVECOT_DONE},
	{"SOMETHINGNEW\tx", 0, DOVECOT_UNKNOWN},
	{"", 0, DOVECOT_UNKNOWN},
	{"OK\t7\tuser=alice", 0, DOVECOT_OK, 7, "alice", ""},
	{"OK\t7", 0, DOVECOT_OK, 7, "", ""},
	{"OK\t7\tuser=al\001tice\001n\0011", 0, DOVECOT_OK, 7, "al\tice\n\001", ""},
	{"OK\t7\tuser=a\001x", 0, DOVECOT_OK, 7, "ax", ""},       /* unknown escapes: the letter */
	{"OK\t7\tuser=a\001lb", 0, DOVECOT_OK, 7, "a\nb", ""},
	{"OK\t7\tuser=a\0010b", 0, DOVECOT_OK, 7, "a", ""},
	{"FAIL\t3\tuser=u\tcode=temp_fail", 0, DOVECOT_FAIL, 3, "u", "", true},
	{"FAIL\t3\tcode=authz_fail", 0, DOVECOT_FAIL, 3, "", ""},
	{"OK\t7\tuser=a\001", -1, DOVECOT_OK},
	{"OK", -1, DOVECOT_OK},
	{"OK\t-1", -1, DOVECOT_OK},
	{"OK\t1234567890", -1, DOVECOT_OK},
	{"FAIL\t3\tuser=bob\treason=Password mismatch", 0, DOVECOT_FAIL, 3, "bob", "Password mismatch"},
	{"FAIL\t3\ttemp\treason=db down", 0, DOVECOT_FAIL, 3, "", "db down", true},
	{"FAIL\t3\tauthz", 0, DOVECOT_FAIL, 3, "", ""},
	{"CONT\t9\tVXNlcm5hbWU6", 0, DOVECOT_CONT, 9},
	{"CONT", -1, DOVECOT_CONT},
};
/* clang-format on */

static void test_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(parse_rows) / sizeof(parse_rows[0]); i++) {
		const struct parse_row *w = &parse_rows[i];
		struct dovecot_auth_reply r;
		char err[128] = "";
		int rc = dovecot_auth_parse(w->line, strlen(w->line), &r, err, sizeof(err));

		if (rc != w->rc)
			fail_msg("\"%s\": got %d (%s), want %d", w->line, rc, err, w->rc);
		if (r.type != w->type)
			fail_msg("\"%s\": type %d, want %d", w->line, r.type, w->type);
		if (rc < 0)
			continue;
		if (w->type == DOVECOT_OK || w->type == DOVECOT_FAIL || w->type == DOVECOT_CONT) {
			if (r.id != w->id)
				fail_msg("\"%s\": id %lu, want %lu", w->line, r.id, w->id);
		}
		if (w->user && strcmp(r.user, w->user) != 0)
			fail_msg("\"%s\": user \"%s\", want \"%s\"", w->line, r.user, w->user);
		if (w->reason && strcmp(r.reason, w->reason) != 0)
			fail_msg("\"%s\": reason \"%s\", want \"%s\"", w->line, r.reason, w->reason);
		if (r.temp != w->temp)
			fail_msg("\"%s\": temp %d, want %d", w->line, r.temp, w->temp);
	}
}

/* dovecot_auth_parse of a whole C string. */
static int parse_str(const char *line, struct dovecot_auth_reply *r)
{
	char err[128];

	return dovecot_auth_parse(line, strlen(line), r, err, sizeof(err));
}

static void test_parse_details(void **state)
{
	struct dovecot_auth_reply r;
	char err[128];

	(void)state;
	assert_int_equal(parse_str("VERSION\t1\t2", &r), 0);
	assert_int_equal(r.major, 1);
	assert_int_equal(r.minor, 2);
	assert_int_equal(parse_str("MECH\tplain\tplaintext\tanonymous", &r),
			 0);
	assert_string_equal(r.mech, "PLAIN");
	assert_true(r.plaintext);
	assert_int_equal(parse_str("MECH\tCRAM-MD5\tdictionary", &r),
			 0);
	assert_false(r.plaintext);
	/* OK that does not let in */
	assert_int_equal(parse_str("OK\t1\tuser=a\tnologin", &r), 0);
	assert_true(r.nologin);
	assert_int_equal(parse_str("OK\t1\tnologin=Y", &r), 0);
	assert_true(r.nologin);
	assert_int_equal(parse_str("OK\t1\tproxy\thost=x", &r), 0);
	assert_true(r.nologin);
	assert_int_equal(parse_str("OK\t1\tnologinx", &r), 0);
	assert_false(r.nologin);
	/* a long user name is cut, not overflowed */
	{
		char line[600];

		snprintf(line, sizeof(line), "OK\t1\tuser=%0500d", 0);
		assert_int_equal(dovecot_auth_parse(line, strlen(line), &r, err, sizeof(err)), 0);
		assert_int_equal(strlen(r.user), sizeof(r.user) - 1);
	}
}

/* ---- formatting ---- */

static void test_format(void **state)
{
	struct auth_request req = {
	    .user = "alice",
	    .pass = "secret",
	    .service = "smtp",
	    .local_addr = "127.0.0.1",
	    .remote_addr = "192.0.2.7",
	    .secured = true,
	};
	char buf[512];
	long n;

	(void)state;
	n = dovecot_auth_format(buf, sizeof(buf), 42, &req);
	assert_true(n > 0);
	assert_string_equal(buf, "AUTH\t42\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\t"
				 "rip=192.0.2.7\tsecured\tresp=AGFsaWNlAHNlY3JldA==\n");
	assert_int_equal(n, (long)strlen(buf));
	/* no addresses, not secured, a service with a tab */
	req.local_addr = "";
	req.remote_addr = NULL;
	req.secured = false;
	req.service = "s\tmtp";
	n = dovecot_auth_format(buf, sizeof(buf), 1, &req);
	assert_string_equal(buf, "AUTH\t1\tPLAIN\tservice=s\001tmtp\tnologin\t"
				 "resp=AGFsaWNlAHNlY3JldA==\n");
	/* too small */
	assert_int_equal(dovecot_auth_format(buf, 20, 1, &req), -1);
	/* a password with a tab and a NUL-free binary octet is base64: no escaping needed */
	req.pass = "a\tb\001";
	n = dovecot_auth_format(buf, sizeof(buf), 2, &req);
	assert_true(n > 0);
	assert_null(strchr(strstr(buf, "resp="), '\t'));
}

/* ---- the client against a stand-in server ---- */

struct fake {
	int lfd, cfd;	 /* listening socket, accepted connection */
	char in[8192];	 /* what the client sent */
	size_t in_len;
};

struct answer {
	int calls;
	enum auth_result r;
	char user[64], reason[64];
};

static void on_done(void *arg, enum auth_result r, const char *user, const char *reason)
{
	struct answer *a = arg;

	a->calls++;
	a->r = r;
	snprintf(a->user, sizeof(a->user), "%s", user);
	snprintf(a->reason, sizeof(a->reason), "%s", reason);
}

static void fake_listen(struct fake *f, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	assert_true(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	unlink(path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	fcntl(f->lfd, F_SETFL, O_NONBLOCK);
	f->cfd = -1;
	f->in_len = 0;
}

/* Run the loop until pred holds (or 5 s pass); the fake reads what comes meanwhile. */
static bool run_until(struct event_base *base, struct fake *f, bool (*pred)(void *), void *arg)
{
	uint64_t deadline = clock_mono_ms() + 5000;

	while (clock_mono_ms() < deadline) {
		ssize_t k;

		event_base_loop(base, EVLOOP_NONBLOCK);
		if (f->cfd < 0) {
			f->cfd = accept(f->lfd, NULL, NULL);
			if (f->cfd >= 0)
				fcntl(f->cfd, F_SETFL, O_NONBLOCK);
		}
		if (f->cfd >= 0) {
			while ((k = read(f->cfd, f->in + f->in_len, sizeof(f->in) - 1 - f->in_len)) >
			       0)
				f->in_len += (size_t)k;
			f->in[f->in_len] = '\0';
		}
		if (pred(arg))
			return true;
		poll(NULL, 0, 1);
	}
	return false;
}

static bool has_text(void *arg)
{
	void **a = arg;

	return strstr(((struct fake *)a[0])->in, a[1]) != NULL;
}

static bool answered(void *arg)
{
	return ((struct answer *)arg)->calls > 0;
}

static void fake_say(struct fake *f, const char *text)
{
	assert_int_equal(write(f->cfd, text, strlen(text)), (ssize_t)strlen(text));
}

/* The server side closes its connection and forgets what it read. */
static void fake_drop(struct fake *f)
{
	close(f->cfd);
	f->cfd = -1;
	f->in_len = 0;
	f->in[0] = '\0';
}

static void wait_text(struct event_base *base, struct fake *f, const char *text)
{
	void *a[2] = {f, (void *)text};

	if (!run_until(base, f, has_text, a))
		fail_msg("the client never sent \"%s\"; it sent \"%s\" (fd %d)", text, f->in, f->cfd);
}

static void test_client(void **state)
{
	char dir[] = "/tmp/zfarm-dovecot-XXXXXX", path[200], err[256];
	struct event_base *base = event_base_new();
	struct auth_request req = {"alice", "secret", "smtp", "127.0.0.1", "192.0.2.1", true};
	struct answer a1 = {0}, a2 = {0}, a3 = {0};
	struct auth_backend *b;
	struct fake f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/auth-client", dir);
	fake_listen(&f, path);
	b = auth_backend_new(base, "dovecot", path, err, sizeof(err));
	if (!b)
		fail_msg("auth_backend_new: %s", err);

	/* first request: the handshake, then the AUTH after DONE */
	auth_verify(b, &req, on_done, &a1);
	assert_int_equal(a1.calls, 0); /* never inside auth_verify */
	wait_text(base, &f, "VERSION\t1\t2\nCPID\t");
	assert_null(strstr(f.in, "AUTH"));
	fake_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
		     "SPID\t1\nCUID\t1\nCOOKIE\t00\nDONE\n");
	wait_text(base, &f, "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\t"
			    "rip=192.0.2.1\tsecured\tresp=AGFsaWNlAHNlY3JldA==\n");
	fake_say(&f, "OK\t1\tuser=alice@example.test\n");
	assert_true(run_until(base, &f, answered, &a1));
	assert_int_equal(a1.r, AUTH_OK);
	assert_string_equal(a1.user, "alice@example.test");

	/* two at once, answered out of order; a FAIL and a temporary FAIL */
	auth_verify(b, &req, on_done, &a2);
	auth_verify(b, &req, on_done, &a3);
	wait_text(base, &f, "AUTH\t3\t");
	fake_say(&f, "FAIL\t3\tuser=alice\ttemp\treason=backend down\nFAIL\t2\tuser=alice\n");
	assert_true(run_until(base, &f, answered, &a2));
	assert_int_equal(a2.r, AUTH_FAIL);
	assert_int_equal(a3.calls, 1);
	assert_int_equal(a3.r, AUTH_TEMPFAIL);
	assert_string_equal(a3.reason, "backend down");

	/* OK with nologin is no success; a user= with a blank is not taken */
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	wait_text(base, &f, "AUTH\t4\t");
	fake_say(&f, "OK\t4\tuser=alice\tnologin\n");
	assert_true(run_until(base, &f, answered, &a1));
	assert_int_equal(a1.r, AUTH_FAIL);
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	wait_text(base, &f, "AUTH\t5\t");
	fake_say(&f, "OK\t5\tuser=evil user\001nX\n");
	assert_true(run_until(base, &f, answered, &a1));
	assert_int_equal(a1.r, AUTH_OK);
	assert_string_equal(a1.user, "alice");

	/* a cancelled request's answer is dropped */
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	wait_text(base, &f, "AUTH\t6\t");
	auth_cancel(b, &a1);
	fake_say(&f, "OK\t6\tuser=alice\n");
	memset(&a2, 0, sizeof(a2));
	auth_verify(b, &req, on_done, &a2);
	wait_text(base, &f, "AUTH\t7\t");
	fake_say(&f, "OK\t7\n");
	assert_true(run_until(base, &f, answered, &a2));
	assert_int_equal(a2.r, AUTH_OK);
	assert_string_equal(a2.user, "alice"); /* no user=: the name asked about */
	assert_int_equal(a1.calls, 0);

	/* the server goes away with a request open: asked again once on a new connection */
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	wait_text(base, &f, "AUTH\t8\t");
	fake_drop(&f);
	wait_text(base, &f, "CPID\t");
	fake_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nDONE\n");
	wait_text(base, &f, "AUTH\t8\t");
	assert_int_equal(a1.calls, 0);
	/* ... and when that breaks too: TEMPFAIL */
	fake_drop(&f);
	assert_true(run_until(base, &f, answered, &a1));
	assert_int_equal(a1.r, AUTH_TEMPFAIL);
	/* the next one connects again */
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	wait_text(base, &f, "CPID\t");
	fake_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nDONE\n");
	wait_text(base, &f, "AUTH\t9\t"); /* ids go on: unique per process */
	fake_say(&f, "OK\t9\tuser=alice\n");
	assert_true(run_until(base, &f, answered, &a1));
	assert_int_equal(a1.r, AUTH_OK);
	/* restarted while idle (not noticed yet): the request is not lost */
	fake_drop(&f);
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	wait_text(base, &f, "CPID\t");
	fake_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nDONE\n");
	wait_text(base, &f, "AUTH\t10\t");
	fake_say(&f, "OK\t10\tuser=alice\n");
	assert_true(run_until(base, &f, answered, &a1));
	assert_int_equal(a1.r, AUTH_OK);

	/* a server of another major version, or without PLAIN: TEMPFAIL */
	fake_drop(&f);
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	wait_text(base, &f, "CPID\t");
	fake_say(&f, "VERSION\t2\t0\n");
	assert_true(run_until(base, &f, answered, &a1));
	assert_int_equal(a1.r, AUTH_TEMPFAIL);
	fake_drop(&f);
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	wait_text(base, &f, "CPID\t");
	fake_say(&f, "VERSION\t1\t2\nMECH\tCRAM-MD5\nDONE\n");
	assert_true(run_until(base, &f, answered, &a1));
	assert_int_equal(a1.r, AUTH_TEMPFAIL);
	fake_drop(&f);

	/* nobody listening: TEMPFAIL from the loop, not inside auth_verify */
	close(f.lfd);
	unlink(path);
	memset(&a1, 0, sizeof(a1));
	auth_verify(b, &req, on_done, &a1);
	assert_int_equal(a1.calls, 0);
	{
		uint64_t deadline = clock_mono_ms() + 5000;

		while (a1.calls == 0 && clock_mono_ms() < deadline)
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	assert_int_equal(a1.calls, 1);
	assert_int_equal(a1.r, AUTH_TEMPFAIL);

	auth_backend_free(&b);
	assert_null(b);
	rmdir(dir);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_parse_details),
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_client),
	};

	signal(SIGPIPE, SIG_IGN); /* as the daemons do (farm_server.c) */
	log_open("test_dovecot_auth", LOG_TARGET_STDERR);
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
