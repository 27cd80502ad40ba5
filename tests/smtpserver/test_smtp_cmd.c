/* Tests for smtpserver/smtp_cmd.c: verbs, ESMTP parameters, replies, fuzzing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpserver/smtp_cmd.h"

/* The table and its macros are laid out by hand, one row a line. */
/* clang-format off */

/* Which struct smtp_cmd_opts a row uses. */
enum opt_set {
	O_NONE,  /* NULL: no extensions */
	O_ALL,   /* everything on, size_limit 10000000 */
	O_U8,    /* O_ALL in an SMTPUTF8 transaction */
	O_NOBIN, /* O_ALL without BINARYMIME */
	O_NOLIM, /* O_ALL without a size limit */
	O_BIG,   /* O_ALL with line_max 1024 (DSN's +500, RFC 3461) */
	O_NO8,   /* O_ALL without 8BITMIME (BINARYMIME still on) */
};

static const struct smtp_cmd_opts opt_sets[] = {
	[O_NONE] = { 0 },
	[O_ALL] = { true, true, true, true, true, true, true, false, 10000000, 512 },
	[O_U8] = { true, true, true, true, true, true, true, true, 10000000, 512 },
	[O_NOBIN] = { true, true, true, true, false, true, true, false, 10000000, 512 },
	[O_NOLIM] = { true, true, true, true, true, true, true, false, 0, 512 },
	[O_BIG] = { true, true, true, true, true, true, true, false, 10000000, 1024 },
	[O_NO8] = { true, false, true, true, true, true, true, false, 10000000, 512 },
};

/* Flags checked on success. */
#define W_NULL   0x01u /* addr.is_null */
#define W_ROUTE  0x02u /* addr.had_route */
#define W_LAST   0x04u /* BDAT LAST */
#define W_U8     0x08u /* SMTPUTF8 parameter */
#define W_SIZE   0x10u /* has_size, with num */
#define W_CHUNK  0x20u /* chunk_size == num */
#define W_AUTHN  0x40u /* AUTH=<> */
#define W_QUOTED 0x80u /* addr.quoted_local */

struct row {
	const char *line;
	size_t len;             /* 0: strlen(line) */
	enum opt_set opts;
	enum smtp_cmd_result want;
	enum smtp_cmd_verb verb;
	/* checked when set, on success only */
	const char *arg;
	const char *local;
	const char *domain;
	unsigned flags;
	uint64_t num;
	unsigned notify;
	enum smtp_cmd_body body;
	enum smtp_cmd_ret ret;
	const char *envid;
	const char *orcpt_type;
	const char *orcpt;
	const char *auth;
	const char *initial;
};

#define R(l, o, w, v, ...)  { .line = l, .opts = o, .want = w, .verb = v, __VA_ARGS__ }
/* A literal with CR, LF or NUL inside: explicit length. */
#define RL(l, o, w, v, ...) { .line = l, .len = sizeof(l) - 1, .opts = o, .want = w, .verb = v, __VA_ARGS__ }

#define OK  SMTP_CMD_OK
#define LONG SMTP_CMD_ERR_TOO_LONG
#define CHR SMTP_CMD_ERR_BAD_CHAR
#define UNK SMTP_CMD_ERR_UNKNOWN
#define SYN SMTP_CMD_ERR_SYNTAX
#define PAR SMTP_CMD_ERR_PARAM
#define ADR SMTP_CMD_ERR_ADDRESS
#define SIZ SMTP_CMD_ERR_SIZE

#define HELO SMTP_CMD_HELO
#define EHLO SMTP_CMD_EHLO
#define MAIL SMTP_CMD_MAIL
#define RCPT SMTP_CMD_RCPT
#define DATA SMTP_CMD_DATA
#define BDAT SMTP_CMD_BDAT
#define RSET SMTP_CMD_RSET
#define NOOP SMTP_CMD_NOOP
#define QUIT SMTP_CMD_QUIT
#define VRFY SMTP_CMD_VRFY
#define HELP SMTP_CMD_HELP
#define STLS SMTP_CMD_STARTTLS
#define AUTH SMTP_CMD_AUTH
#define NONE SMTP_CMD_NONE

#define X10  "abcdefghij"
#define X50  X10 X10 X10 X10 X10
#define X100 X50 X50
#define X500 X100 X100 X100 X100 X100

#define N_S SMTP_CMD_NOTIFY_SUCCESS
#define N_F SMTP_CMD_NOTIFY_FAILURE
#define N_D SMTP_CMD_NOTIFY_DELAY
#define N_N SMTP_CMD_NOTIFY_NEVER

static const struct row rows[] = {
	/* HELO / EHLO */
	R("HELO mx.example.org", O_NONE, OK, HELO, .arg = "mx.example.org"),
	R("helo mx.example.org", O_NONE, OK, HELO, .arg = "mx.example.org"),
	R("HELO", O_NONE, SYN, HELO),
	R("HELO ", O_NONE, SYN, HELO),
	R("HELO  mx.example.org", O_NONE, SYN, HELO),
	R("HELO a b", O_NONE, SYN, HELO),
	R("HELO [192.0.2.1]", O_NONE, SYN, HELO),
	R("HELO bad..domain", O_NONE, SYN, HELO),
	R("HELO 192.0.2.1", O_NONE, SYN, HELO),
	R("EHLO mx.example.org", O_NONE, OK, EHLO, .arg = "mx.example.org"),
	R("eHlO Mx.Example.Org", O_NONE, OK, EHLO, .arg = "Mx.Example.Org"),
	R("EHLO [192.0.2.1]", O_NONE, OK, EHLO, .arg = "[192.0.2.1]"),
	R("EHLO [IPv6:2001:db8::1]", O_NONE, OK, EHLO, .arg = "[IPv6:2001:db8::1]"),
	R("EHLO [192.0.2.300]", O_NONE, SYN, EHLO),
	R("EHLO", O_NONE, SYN, EHLO),
	R("EHLO mx.example.org ", O_NONE, SYN, EHLO),
	R("EHLO -bad.example", O_NONE, SYN, EHLO),
	R("EHLOmx.example.org", O_NONE, UNK, NONE),
	/* unknown verbs */
	R("", O_NONE, UNK, NONE),
	R(" ", O_NONE, UNK, NONE),
	R("XYZZY", O_NONE, UNK, NONE),
	R("MAILFROM:<a@b.example>", O_NONE, UNK, NONE),
	R(" QUIT", O_NONE, UNK, NONE),
	R("STARTTL", O_NONE, UNK, NONE),
	R("ETRN example.org", O_NONE, UNK, NONE),
	/* argument-less verbs */
	R("DATA", O_NONE, OK, DATA),
	R("data", O_NONE, OK, DATA),
	R("DATA x", O_NONE, SYN, DATA),
	R("DATA ", O_NONE, SYN, DATA),
	R("RSET", O_NONE, OK, RSET),
	R("RsEt", O_NONE, OK, RSET),
	R("RSET now", O_NONE, SYN, RSET),
	R("QUIT", O_NONE, OK, QUIT),
	R("quit ", O_NONE, SYN, QUIT),
	R("STARTTLS", O_NONE, OK, STLS),
	R("starttls", O_NONE, OK, STLS),
	R("STARTTLS x", O_NONE, SYN, STLS),
	/* NOOP, HELP, VRFY */
	R("NOOP", O_NONE, OK, NOOP),
	R("NOOP hello world", O_NONE, OK, NOOP, .arg = "hello world"),
	R("NOOP ", O_NONE, SYN, NOOP),
	R("HELP", O_NONE, OK, HELP),
	R("help MAIL", O_NONE, OK, HELP, .arg = "MAIL"),
	R("HELP ", O_NONE, SYN, HELP),
	R("VRFY postmaster", O_NONE, OK, VRFY, .arg = "postmaster"),
	R("vrfy Bob Smith <bob@example.org>", O_NONE, OK, VRFY, .arg = "Bob Smith <bob@example.org>"),
	R("VRFY", O_NONE, SYN, VRFY),
	R("VRFY ", O_NONE, SYN, VRFY),
	/* AUTH (parsed only) */
	R("AUTH PLAIN", O_NONE, OK, AUTH, .arg = "PLAIN"),
	R("auth login", O_NONE, OK, AUTH, .arg = "login"),
	R("AUTH PLAIN AGJvYgBzZWNyZXQ=", O_NONE, OK, AUTH, .arg = "PLAIN", .initial = "AGJvYgBzZWNyZXQ="),
	R("AUTH PLAIN =", O_NONE, OK, AUTH, .arg = "PLAIN", .initial = "="),
	R("AUTH SCRAM-SHA-256", O_NONE, OK, AUTH, .arg = "SCRAM-SHA-256"),
	R("AUTH", O_NONE, SYN, AUTH),
	R("AUTH ", O_NONE, SYN, AUTH),
	R("AUTH PLAIN ", O_NONE, SYN, AUTH),
	R("AUTH PLAIN AGJv*mM=", O_NONE, SYN, AUTH),
	R("AUTH PLAIN abc", O_NONE, SYN, AUTH),
	R("AUTH PLAIN ab=c", O_NONE, SYN, AUTH),
	R("AUTH PL@IN", O_NONE, SYN, AUTH),
	R("AUTH ABCDEFGHIJKLMNOPQRSTU", O_NONE, SYN, AUTH),
	/* BDAT */
	R("BDAT 0", O_NONE, OK, BDAT, .flags = W_CHUNK, .num = 0),
	R("BDAT 1000", O_NONE, OK, BDAT, .flags = W_CHUNK, .num = 1000),
	R("BDAT 0 LAST", O_NONE, OK, BDAT, .flags = W_CHUNK | W_LAST, .num = 0),
	R("bdat 42 last", O_NONE, OK, BDAT, .flags = W_CHUNK | W_LAST, .num = 42),
	R("BDAT 9223372036854775807", O_NONE, OK, BDAT, .flags = W_CHUNK, .num = 9223372036854775807ull),
	R("BDAT 009", O_NONE, OK, BDAT, .flags = W_CHUNK, .num = 9),
	R("BDAT 9223372036854775808", O_NONE, SYN, BDAT),
	R("BDAT 18446744073709551616", O_NONE, SYN, BDAT),
	R("BDAT 99999999999999999999999", O_NONE, SYN, BDAT),
	R("BDAT 12x", O_NONE, SYN, BDAT),
	R("BDAT -1", O_NONE, SYN, BDAT),
	R("BDAT +1", O_NONE, SYN, BDAT),
	R("BDAT", O_NONE, SYN, BDAT),
	R("BDAT ", O_NONE, SYN, BDAT),
	R("BDAT  12", O_NONE, SYN, BDAT),
	R("BDAT 12 ", O_NONE, SYN, BDAT),
	R("BDAT 12 LASTX", O_NONE, SYN, BDAT),
	R("BDAT 12 LAST x", O_NONE, SYN, BDAT),
	R("BDAT 12 FIRST", O_NONE, SYN, BDAT),
	/* MAIL FROM paths */
	R("MAIL FROM:<bob@example.org>", O_NONE, OK, MAIL, .local = "bob", .domain = "example.org"),
	R("mail from:<bob@example.org>", O_NONE, OK, MAIL, .local = "bob", .domain = "example.org"),
	R("MAIL FROM: <bob@example.org>", O_NONE, OK, MAIL, .local = "bob", .domain = "example.org"),
	R("MAIL FROM:  <bob@example.org>", O_NONE, SYN, MAIL),
	R("MAIL FROM:<>", O_NONE, OK, MAIL, .local = "", .domain = "", .flags = W_NULL),
	R("MAIL FROM: <>", O_NONE, OK, MAIL, .flags = W_NULL),
	R("MAIL FROM:bob@example.org", O_NONE, SYN, MAIL),
	R("MAIL FROM:", O_NONE, SYN, MAIL),
	R("MAIL FROM", O_NONE, SYN, MAIL),
	R("MAIL", O_NONE, SYN, MAIL),
	R("MAIL TO:<bob@example.org>", O_NONE, SYN, MAIL),
	R("MAIL FROM :<bob@example.org>", O_NONE, SYN, MAIL),
	R("MAIL  FROM:<bob@example.org>", O_NONE, SYN, MAIL),
	R("MAIL FROM:<bob>", O_NONE, ADR, MAIL),
	R("MAIL FROM:<bob@>", O_NONE, ADR, MAIL),
	R("MAIL FROM:<bob@example.org", O_NONE, ADR, MAIL),
	R("MAIL FROM:<b ob@example.org>", O_NONE, ADR, MAIL),
	R("MAIL FROM:<" "\xce\xb4" "@example.org>", O_ALL, ADR, MAIL),
	R("MAIL FROM:<" "\xce\xb4" "@example.org> SMTPUTF8", O_ALL, OK, MAIL, .local = "\xce\xb4", .flags = W_U8),
	R("MAIL FROM:<bob@example.org>x", O_ALL, SYN, MAIL),
	R("MAIL FROM:<bob@example.org> ", O_ALL, SYN, MAIL),
	/* relay-ish forms parse literally */
	R("MAIL FROM:<u%ext@local.example>", O_NONE, OK, MAIL, .local = "u%ext", .domain = "local.example"),
	R("RCPT TO:<u%ext@local.example>", O_NONE, OK, RCPT, .local = "u%ext", .domain = "local.example"),
	R("RCPT TO:<\"u@ext\"@local.example>", O_NONE, OK, RCPT, .local = "\"u@ext\"", .domain = "local.example", .flags = W_QUOTED),
	R("RCPT TO:<@a.example:u@ext.example>", O_NONE, OK, RCPT, .local = "u", .domain = "ext.example", .flags = W_ROUTE),
	R("RCPT TO:<@a.example,@b.example:u@ext.example>", O_NONE, OK, RCPT, .local = "u", .domain = "ext.example", .flags = W_ROUTE),
	R("RCPT TO:<u!ext@local.example>", O_NONE, OK, RCPT, .local = "u!ext", .domain = "local.example"),
	/* RCPT TO paths */
	R("RCPT TO:<bob@example.org>", O_NONE, OK, RCPT, .local = "bob", .domain = "example.org"),
	R("rcpt to:<bob@example.org>", O_NONE, OK, RCPT, .local = "bob", .domain = "example.org"),
	R("RCPT TO: <bob@example.org>", O_NONE, OK, RCPT, .local = "bob", .domain = "example.org"),
	R("RCPT TO:<>", O_NONE, ADR, RCPT),
	R("RCPT TO:<postmaster>", O_NONE, OK, RCPT, .local = "postmaster", .domain = ""),
	R("RCPT TO:<PostMaster>", O_NONE, OK, RCPT, .local = "PostMaster", .domain = ""),
	R("RCPT TO:<\"postmaster\">", O_NONE, OK, RCPT, .local = "postmaster", .domain = ""),
	R("RCPT TO:<bob>", O_NONE, ADR, RCPT),
	R("RCPT TO:<postmaster@example.org>", O_NONE, OK, RCPT, .local = "postmaster", .domain = "example.org"),
	R("RCPT TO:bob@example.org", O_NONE, SYN, RCPT),
	R("RCPT FROM:<bob@example.org>", O_NONE, SYN, RCPT),
	R("RCPT TO:", O_NONE, SYN, RCPT),
	R("RCPT TO:<bob@[192.0.2.1]>", O_NONE, OK, RCPT, .local = "bob", .domain = "[192.0.2.1]"),
	R("RCPT TO:<bob@127.0.0.1>", O_NONE, ADR, RCPT),
	R("RCPT TO:<" "\xce\xb4" "@example.org>", O_ALL, ADR, RCPT),
	R("RCPT TO:<" "\xce\xb4" "@example.org>", O_U8, OK, RCPT, .local = "\xce\xb4"),
	R("RCPT TO:<bob@example.org> SMTPUTF8", O_ALL, PAR, RCPT),
	/* SIZE */
	R("MAIL FROM:<a@b.example> SIZE=1000", O_ALL, OK, MAIL, .flags = W_SIZE, .num = 1000),
	R("MAIL FROM:<a@b.example> size=0", O_ALL, OK, MAIL, .flags = W_SIZE, .num = 0),
	R("MAIL FROM:<a@b.example> SIZE=10000000", O_ALL, OK, MAIL, .flags = W_SIZE, .num = 10000000),
	R("MAIL FROM:<a@b.example> SIZE=10000001", O_ALL, SIZ, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=18446744073709551615", O_NOLIM, OK, MAIL, .flags = W_SIZE, .num = UINT64_MAX),
	R("MAIL FROM:<a@b.example> SIZE=18446744073709551616", O_NOLIM, SIZ, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=18446744073709551616", O_ALL, SIZ, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=12x", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=-1", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SIZE", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=1 SIZE=2", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=1000", O_NONE, PAR, MAIL),
	R("RCPT TO:<a@b.example> SIZE=1000", O_ALL, PAR, RCPT),
	/* BODY */
	R("MAIL FROM:<a@b.example> BODY=7BIT", O_ALL, OK, MAIL, .body = SMTP_CMD_BODY_7BIT),
	R("MAIL FROM:<a@b.example> BODY=8BITMIME", O_ALL, OK, MAIL, .body = SMTP_CMD_BODY_8BITMIME),
	R("MAIL FROM:<a@b.example> body=8bitmime", O_ALL, OK, MAIL, .body = SMTP_CMD_BODY_8BITMIME),
	R("MAIL FROM:<a@b.example> BODY=BINARYMIME", O_ALL, OK, MAIL, .body = SMTP_CMD_BODY_BINARYMIME),
	R("MAIL FROM:<a@b.example> BODY=BINARYMIME", O_NOBIN, PAR, MAIL),
	R("MAIL FROM:<a@b.example> BODY=8BITMIME", O_NO8, PAR, MAIL),
	R("MAIL FROM:<a@b.example> BODY=8BITMIME", O_NONE, PAR, MAIL),
	R("MAIL FROM:<a@b.example> BODY=9BIT", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> BODY=", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> BODY=7BIT BODY=7BIT", O_ALL, SYN, MAIL),
	/* SMTPUTF8 */
	R("MAIL FROM:<a@b.example> SMTPUTF8", O_ALL, OK, MAIL, .flags = W_U8),
	R("MAIL FROM:<a@b.example> smtputf8", O_ALL, OK, MAIL, .flags = W_U8),
	R("MAIL FROM:<a@b.example> SMTPUTF8=yes", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SMTPUTF8 SMTPUTF8", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SMTPUTF8", O_NONE, PAR, MAIL),
	/* RET, ENVID */
	R("MAIL FROM:<a@b.example> RET=FULL", O_ALL, OK, MAIL, .ret = SMTP_CMD_RET_FULL),
	R("MAIL FROM:<a@b.example> ret=hdrs", O_ALL, OK, MAIL, .ret = SMTP_CMD_RET_HDRS),
	R("MAIL FROM:<a@b.example> RET=BODY", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> RET=FULL RET=HDRS", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> RET=FULL", O_NONE, PAR, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=QQ314159", O_ALL, OK, MAIL, .envid = "QQ314159"),
	R("MAIL FROM:<a@b.example> ENVID=a+2Bb+3Dc", O_ALL, OK, MAIL, .envid = "a+b=c"),
	R("MAIL FROM:<a@b.example> ENVID=" X100, O_ALL, OK, MAIL, .envid = X100),
	R("MAIL FROM:<a@b.example> ENVID=" X100 "k", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=a+2b", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=a+2", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=a+", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=a+0Ab", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=a+00b", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=x ENVID=y", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=x", O_NONE, PAR, MAIL),
	R("MAIL FROM:<a@b.example> ENVID=a=b", O_ALL, SYN, MAIL),
	/* AUTH= */
	R("MAIL FROM:<a@b.example> AUTH=<>", O_ALL, OK, MAIL, .flags = W_AUTHN),
	R("MAIL FROM:<a@b.example> AUTH=e+3Dmc2@example.com", O_ALL, OK, MAIL, .auth = "e=mc2@example.com"),
	R("MAIL FROM:<a@b.example> AUTH=a+zz", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> AUTH=<> AUTH=<>", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> AUTH=<>", O_NONE, PAR, MAIL),
	/* NOTIFY */
	R("RCPT TO:<a@b.example> NOTIFY=NEVER", O_ALL, OK, RCPT, .notify = N_N),
	R("RCPT TO:<a@b.example> NOTIFY=SUCCESS", O_ALL, OK, RCPT, .notify = N_S),
	R("RCPT TO:<a@b.example> notify=success,failure,delay", O_ALL, OK, RCPT, .notify = N_S | N_F | N_D),
	R("RCPT TO:<a@b.example> NOTIFY=DELAY,FAILURE", O_ALL, OK, RCPT, .notify = N_D | N_F),
	R("RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> NOTIFY=SUCCESS,NEVER", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> NOTIFY=SUCCESS,SUCCESS", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> NOTIFY=SUCCESS,", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> NOTIFY=,SUCCESS", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> NOTIFY=ALWAYS", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> NOTIFY=NEVER NOTIFY=NEVER", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> NOTIFY=NEVER", O_NONE, PAR, RCPT),
	R("MAIL FROM:<a@b.example> NOTIFY=NEVER", O_ALL, PAR, MAIL),
	/* ORCPT */
	R("RCPT TO:<a@b.example> ORCPT=rfc822;a@b.example", O_ALL, OK, RCPT, .orcpt_type = "rfc822", .orcpt = "a@b.example"),
	R("RCPT TO:<a@b.example> ORCPT=rfc822;a+2Bx@b.example", O_ALL, OK, RCPT, .orcpt_type = "rfc822", .orcpt = "a+x@b.example"),
	R("RCPT TO:<a@b.example> orcpt=RFC822;a@b.example NOTIFY=FAILURE", O_ALL, OK, RCPT, .orcpt_type = "RFC822", .orcpt = "a@b.example", .notify = N_F),
	R("RCPT TO:<a@b.example> ORCPT=rfc822;" X500, O_BIG, OK, RCPT, .orcpt = X500),
	R("RCPT TO:<a@b.example> ORCPT=rfc822;" X500 "k", O_BIG, SYN, RCPT),
	R("RCPT TO:<a@b.example> ORCPT=rfc822", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> ORCPT=;a@b.example", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> ORCPT=rfc822;", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> ORCPT=rf(c;a@b.example", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> ORCPT=rfc822;a+4", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> ORCPT=rfc822;a@b ORCPT=rfc822;a@b", O_ALL, SYN, RCPT),
	R("RCPT TO:<a@b.example> ORCPT=rfc822;a@b.example", O_NONE, PAR, RCPT),
	R("MAIL FROM:<a@b.example> ORCPT=rfc822;a@b.example", O_ALL, PAR, MAIL),
	/* parameter syntax, combinations */
	R("MAIL FROM:<a@b.example> SIZE=1 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=e1 AUTH=<>", O_ALL, OK, MAIL,
	  .flags = W_SIZE | W_U8 | W_AUTHN, .num = 1, .body = SMTP_CMD_BODY_8BITMIME, .ret = SMTP_CMD_RET_HDRS, .envid = "e1"),
	R("MAIL FROM:<a@b.example> XFOO=1", O_ALL, PAR, MAIL),
	R("MAIL FROM:<a@b.example> X-FOO", O_ALL, PAR, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=1  BODY=7BIT", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> =1", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> -X=1", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> S_IZE=1", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=1=2", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=1\t", O_ALL, SYN, MAIL),
	R("MAIL FROM:<a@b.example> SIZE=99999999 XFOO", O_ALL, SIZ, MAIL),
	R("MAIL FROM:<a@b.example> XFOO SIZE=99999999", O_ALL, PAR, MAIL),
	R("RCPT TO:<bob> NOTIFY=XX", O_ALL, SYN, RCPT),
	/* CR, LF, NUL inside the line */
	RL("NOOP a\rb", O_NONE, CHR, NONE),
	RL("NOOP a\nb", O_NONE, CHR, NONE),
	RL("NOOP a\0b", O_NONE, CHR, NONE),
	RL("QUIT\r", O_NONE, CHR, NONE),
	RL("\nQUIT", O_NONE, CHR, NONE),
	RL("\0", O_NONE, CHR, NONE),
	RL("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>", O_NONE, CHR, NONE),
	RL("MAIL FROM:<a\0@b.example>", O_NONE, CHR, NONE),
	RL("RCPT TO:<a@b.example> NOTIFY=NEVER\0", O_ALL, CHR, NONE),
	RL("DATA\0garbage", O_NONE, CHR, NONE),
	/* explicit lengths: only len bytes count */
	{ .line = "QUITTING", .len = 4, .opts = O_NONE, .want = OK, .verb = QUIT },
	{ .line = "DATA x", .len = 4, .opts = O_NONE, .want = OK, .verb = DATA },
	{ .line = "MAIL FROM:<a@b.example> SIZE=12", .len = 30, .opts = O_ALL, .want = OK, .verb = MAIL, .flags = W_SIZE, .num = 1 },
};

/* The reply each result must carry (independent of the code under test). */
static void want_reply(enum smtp_cmd_result r, enum smtp_cmd_verb verb, int *code, const char **enh)
{
	switch (r) {
	case SMTP_CMD_OK: *code = 0; *enh = ""; break;
	case SMTP_CMD_ERR_TOO_LONG: *code = 500; *enh = "5.5.2"; break;
	case SMTP_CMD_ERR_BAD_CHAR: *code = 501; *enh = "5.5.2"; break;
	case SMTP_CMD_ERR_UNKNOWN: *code = 500; *enh = "5.5.2"; break;
	case SMTP_CMD_ERR_SYNTAX: *code = 501; *enh = "5.5.4"; break;
	case SMTP_CMD_ERR_PARAM: *code = 555; *enh = "5.5.4"; break;
	case SMTP_CMD_ERR_ADDRESS: *code = 553; *enh = verb == SMTP_CMD_MAIL ? "5.1.7" : "5.1.3"; break;
	case SMTP_CMD_ERR_SIZE: *code = 552; *enh = "5.3.4"; break;
	}
}

/* clang-format on */

static const struct smtp_cmd_opts *opts_of(enum opt_set o)
{
	return o == O_NONE ? NULL : &opt_sets[o];
}

static void check_str(size_t i, const char *what, const char *got, size_t got_len, const char *want)
{
	if (want == NULL)
		return;
	if (got == NULL || got_len != strlen(want) || memcmp(got, want, got_len) != 0)
		fail_msg("row %zu (%s): %s got \"%.*s\", want \"%s\"", i, rows[i].line, what,
			 got == NULL ? 6 : (int)got_len, got == NULL ? "(null)" : got, want);
}

static void check_row(size_t i)
{
	const struct row *w = &rows[i];
	size_t len = w->len != 0 ? w->len : strlen(w->line);
	struct smtp_cmd out;
	char err[256];
	enum smtp_cmd_result r;
	const char *enh = "";
	int code = 0;

	strcpy(err, "untouched");
	r = smtp_cmd_parse(w->line, len, opts_of(w->opts), &out, err, sizeof(err));
	if (r != w->want)
		fail_msg("row %zu (%s): got result %d (%d %s: %s), want %d", i, w->line, (int)r,
			 out.reply_code, out.enhanced, err, (int)w->want);
	if (out.verb != w->verb)
		fail_msg("row %zu (%s): got verb %s, want %s", i, w->line,
			 smtp_cmd_verb_name(out.verb), smtp_cmd_verb_name(w->verb));
	want_reply(w->want, w->verb, &code, &enh);
	if (out.reply_code != code || strcmp(out.enhanced, enh) != 0)
		fail_msg("row %zu (%s): got reply %d %s, want %d %s", i, w->line, out.reply_code,
			 out.enhanced, code, enh);
	if (r != SMTP_CMD_OK) {
		if (err[0] == '\0' || strcmp(err, "untouched") == 0 || strpbrk(err, "\r\n") != NULL)
			fail_msg("row %zu (%s): got reason \"%s\", want a one-line reason", i,
				 w->line, err);
		if (out.text == NULL || out.text[0] == '\0')
			fail_msg("row %zu (%s): got no reply text", i, w->line);
		return;
	}
	check_str(i, "arg", out.arg, out.arg_len, w->arg);
	check_str(i, "initial", out.auth_initial, out.auth_initial_len, w->initial);
	check_str(i, "local", out.addr.local, strlen(out.addr.local), w->local);
	check_str(i, "domain", out.addr.domain, strlen(out.addr.domain), w->domain);
	check_str(i, "envid", out.envid, strlen(out.envid), w->envid);
	check_str(i, "orcpt_type", out.orcpt_type, strlen(out.orcpt_type), w->orcpt_type);
	check_str(i, "orcpt", out.orcpt, strlen(out.orcpt), w->orcpt);
	check_str(i, "auth", out.auth, strlen(out.auth), w->auth);
	if (out.addr.is_null != !!(w->flags & W_NULL) ||
	    out.addr.had_route != !!(w->flags & W_ROUTE) ||
	    out.addr.quoted_local != !!(w->flags & W_QUOTED) || out.last != !!(w->flags & W_LAST) ||
	    out.smtputf8 != !!(w->flags & W_U8) || out.has_size != !!(w->flags & W_SIZE) ||
	    out.auth_null != !!(w->flags & W_AUTHN))
		fail_msg("row %zu (%s): got null=%d route=%d quoted=%d last=%d utf8=%d size=%d "
			 "authnull=%d, want flags 0x%x",
			 i, w->line, out.addr.is_null, out.addr.had_route, out.addr.quoted_local,
			 out.last, out.smtputf8, out.has_size, out.auth_null, w->flags);
	if ((w->flags & W_SIZE) && out.size != w->num)
		fail_msg("row %zu (%s): got size %llu, want %llu", i, w->line,
			 (unsigned long long)out.size, (unsigned long long)w->num);
	if ((w->flags & W_CHUNK) && out.chunk_size != w->num)
		fail_msg("row %zu (%s): got chunk %llu, want %llu", i, w->line,
			 (unsigned long long)out.chunk_size, (unsigned long long)w->num);
	if (out.notify != w->notify || out.body != w->body || out.ret != w->ret)
		fail_msg("row %zu (%s): got notify 0x%x body %d ret %d, want 0x%x %d %d", i,
			 w->line, out.notify, (int)out.body, (int)out.ret, w->notify, (int)w->body,
			 (int)w->ret);
}

static void test_table(void **state)
{
	size_t i, n = sizeof(rows) / sizeof(rows[0]);

	(void)state;
	assert_true(n >= 120);
	for (i = 0; i < n; i++)
		check_row(i);
	printf("[ INFO     ] %zu table rows\n", n);
}

/* Line length against line_max (which counts the CRLF). */
static void test_line_max(void **state)
{
	static const struct {
		size_t len;
		size_t line_max; /* 0: default 512 */
		enum smtp_cmd_result want;
	} cases[] = {
	    {509, 0, SMTP_CMD_OK},
	    {510, 0, SMTP_CMD_OK},
	    {511, 0, SMTP_CMD_ERR_TOO_LONG},
	    {512, 0, SMTP_CMD_ERR_TOO_LONG},
	    {4000, 0, SMTP_CMD_ERR_TOO_LONG},
	    {1022, 1024, SMTP_CMD_OK},
	    {1023, 1024, SMTP_CMD_ERR_TOO_LONG},
	    {10, 11, SMTP_CMD_ERR_TOO_LONG},
	    {10, 12, SMTP_CMD_OK},
	    {5, 1, SMTP_CMD_ERR_TOO_LONG},
	};
	static char line[4096];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_cmd_opts o = {.line_max = cases[i].line_max};
		struct smtp_cmd out;
		char err[128] = "";
		enum smtp_cmd_result r;

		memset(line, 'x', cases[i].len);
		memcpy(line, "NOOP ", 5);
		r = smtp_cmd_parse(line, cases[i].len, &o, &out, err, sizeof(err));
		if (r != cases[i].want)
			fail_msg("case %zu (len %zu, max %zu): got %d (%s), want %d", i,
				 cases[i].len, cases[i].line_max, (int)r, err, (int)cases[i].want);
		if (r == SMTP_CMD_ERR_TOO_LONG &&
		    (out.reply_code != 500 || strcmp(out.enhanced, "5.5.2") != 0))
			fail_msg("case %zu: got %d %s, want 500 5.5.2", i, out.reply_code,
				 out.enhanced);
	}
	/* An over-long line of CRs is "too long", not "bad character". */
	memset(line, '\r', 600);
	assert_int_equal(smtp_cmd_parse(line, 600, NULL, &(struct smtp_cmd){0}, NULL, 0),
			 SMTP_CMD_ERR_TOO_LONG);
}

static void test_xtext(void **state)
{
	static const struct {
		const char *in;
		int want; /* length or -1 */
		const char *out;
	} cases[] = {
	    {"", 0, ""},
	    {"abc", 3, "abc"},
	    {"a+2Bb", 3, "a+b"},
	    {"+3D", 1, "="},
	    {"+41+42", 2, "AB"},
	    {"+2b", -1, NULL},
	    {"+2", -1, NULL},
	    {"+", -1, NULL},
	    {"a=b", -1, NULL},
	    {"a b", -1, NULL},
	    {"a\x7f", -1, NULL},
	    {"\xc3\xa9", -1, NULL},
	    {"+G0", -1, NULL},
	    {"0123456789", -1, NULL}, /* does not fit in 10 */
	    {"012345678", 9, "012345678"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[10];
		int n = xtext_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out));

		if (n != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i, cases[i].in, n,
				 cases[i].want);
		if (n >= 0 && strcmp(out, cases[i].out) != 0)
			fail_msg("case %zu (%s): got \"%s\", want \"%s\"", i, cases[i].in, out,
				 cases[i].out);
		if (n < 0 && out[0] != '\0')
			fail_msg("case %zu (%s): got \"%s\" after failure, want \"\"", i,
				 cases[i].in, out);
	}
	/* NUL decoded: the length tells. */
	{
		char out[4];

		assert_int_equal(xtext_decode("+00", 3, out, sizeof(out)), 1);
		assert_int_equal(out[0], '\0');
		assert_int_equal(xtext_decode("a", 1, out, 0), -1);
		assert_int_equal(xtext_decode("a+4", 2, out, sizeof(out)), -1);
	}
}

static void test_verb_name(void **state)
{
	(void)state;
	assert_string_equal(smtp_cmd_verb_name(SMTP_CMD_MAIL), "MAIL");
	assert_string_equal(smtp_cmd_verb_name(SMTP_CMD_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_cmd_verb_name(SMTP_CMD_AUTH), "AUTH");
	assert_string_equal(smtp_cmd_verb_name(SMTP_CMD_NONE), "?");
	assert_string_equal(smtp_cmd_verb_name((enum smtp_cmd_verb)999), "?");
}

/* err is optional and truncated. */
static void test_err_buffer(void **state)
{
	struct smtp_cmd out;
	char err[8];

	(void)state;
	assert_int_equal(smtp_cmd_parse("XYZZY", 5, NULL, &out, NULL, 0), SMTP_CMD_ERR_UNKNOWN);
	memset(err, 'z', sizeof(err));
	assert_int_equal(smtp_cmd_parse("XYZZY", 5, NULL, &out, err, sizeof(err)),
			 SMTP_CMD_ERR_UNKNOWN);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	/* A failed parse leaves no stale fields. */
	assert_int_equal(smtp_cmd_parse("MAIL FROM:<a@b.example> SIZE=5 XFOO", 35, &opt_sets[O_ALL],
					&out, err, sizeof(err)),
			 SMTP_CMD_ERR_PARAM);
	assert_false(out.has_size);
	assert_string_equal(out.addr.local, "");
}

static uint64_t fuzz_state = 0x2545F491u;

static unsigned fuzz_rand(void)
{
	fuzz_state = fuzz_state * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)(fuzz_state >> 33);
}

/* Random bytes and mutated valid lines: never crash, always a sane reply. */
static void test_fuzz(void **state)
{
	static const char *seeds[] = {
	    "MAIL FROM:<a@b.example> SIZE=1 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=e+2B1 AUTH=<>",
	    "RCPT TO:<@r.example:a@b.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b",
	    "EHLO [IPv6:2001:db8::1]",
	    "BDAT 9223372036854775807 LAST",
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=",
	    "RCPT TO:<postmaster>",
	};
	static const char alphabet[] = "<>@:;,=+ .\"\\[]AZaz09\r\n\x80\xff";
	char line[700];
	int iter;

	(void)state;
	for (iter = 0; iter < 20000; iter++) {
		const struct smtp_cmd_opts *o = opts_of((enum opt_set)(fuzz_rand() % 7));
		struct smtp_cmd out;
		char err[64];
		size_t len, k;
		enum smtp_cmd_result r;

		if (iter % 2 == 0) {
			len = fuzz_rand() % sizeof(line);
			for (k = 0; k < len; k++)
				line[k] = iter % 4 == 0
					      ? (char)(fuzz_rand() & 0xff)
					      : alphabet[fuzz_rand() % (sizeof(alphabet) - 1)];
		} else {
			const char *s = seeds[fuzz_rand() % (sizeof(seeds) / sizeof(seeds[0]))];
			unsigned m, nmut = 1 + fuzz_rand() % 4;

			len = strlen(s);
			memcpy(line, s, len);
			for (m = 0; m < nmut; m++) {
				size_t at = fuzz_rand() % (len + 1);

				if (fuzz_rand() % 3 == 0 && len > 0) /* truncate */
					len = at;
				else if (at < len)
					line[at] = alphabet[fuzz_rand() % (sizeof(alphabet) - 1)];
			}
		}
		r = smtp_cmd_parse(line, len, o, &out, err, sizeof(err));
		if ((int)r < SMTP_CMD_OK || r > SMTP_CMD_ERR_SIZE)
			fail_msg("iteration %d: got result %d, want a known one", iter, (int)r);
		if ((r == SMTP_CMD_OK) != (out.reply_code == 0))
			fail_msg("iteration %d: got result %d with reply %d", iter, (int)r,
				 out.reply_code);
		if (r != SMTP_CMD_OK &&
		    (memchr(err, '\0', sizeof(err)) == NULL || strpbrk(err, "\r\n")))
			fail_msg("iteration %d: got a bad reason", iter);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),      cmocka_unit_test(test_line_max),
	    cmocka_unit_test(test_xtext),      cmocka_unit_test(test_verb_name),
	    cmocka_unit_test(test_err_buffer), cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
