/*
 * pipe - the pipe transport farm: deliver a message by running a command
 * with the message on its stdin (Postfix pipe(8)); execve() of an argv
 * from the config, never a shell.
 *
 * Runs on the transport skeleton (transport.h), synchronously: deliver()
 * runs the command(s) to the end (transport/command.h) and finishes the
 * job before it returns, so one process does one delivery at a time (the
 * farm should run with client_limit 1; more processes give concurrency).
 *
 * For each DeliveryRequest:
 *   1. open the message (gone or damaged: PERMFAIL 5.3.0; other: TEMPFAIL);
 *   2. one run of the command per recipient when argv uses a recipient
 *      macro (${recipient}, ${original_recipient}, ${user}, ${extension},
 *      ${mailbox}, ${domain}) or pipe_flags has D or O (headers that name
 *      one recipient); otherwise one run for all the recipients, whose
 *      result is every recipient's result;
 *   3. argv: each blank-separated word of the argv parameter with its
 *      macros replaced; a value never splits a word and nothing is
 *      interpreted by a shell;
 *   4. stdin: the pipe_flags header lines, then the content in LF form
 *      (body.h BODY_LF), streamed from the queue in chunks;
 *   5. the result from how the command ended (pipe_exit_result(), the
 *      table is Postfix's sys_exits.c), one log line per recipient
 *      "QID: to=<...>, relay=FARM, dsn=X.Y.Z, status=sent|deferred|
 *      bounced (text)", the reply with relay = the farm name.
 *
 * Parameters, each looked up in the farm's own section first, then among
 * the globals (pipe(8)): argv (required), pipe_user (nobody), pipe_flags
 * (RD), pipe_time_limit (1000s), pipe_temporary_exit_codes (71 75),
 * recipient_delimiter (+), queue_store, queue_directory.  zfarm.conf
 * expands $name itself, so the file says $${recipient} for the pipe's
 * ${recipient} (config.h).  Every error in them stops the start.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/address.h"
#include "common/config.h"
#include "common/farm_server.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/qstore.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "transport/body.h"
#include "transport/command.h"
#include "transport/transport.h"

/* Content bytes read from the queue per feed call. */
#define PIPE_FEED_CHUNK 65536

/* ---- macros ---- */

enum pipe_macro {
	M_SENDER,
	M_RECIPIENT,
	M_ORIGINAL_RECIPIENT,
	M_USER,
	M_EXTENSION,
	M_MAILBOX,
	M_DOMAIN,
	M_NEXTHOP,
	M_QUEUE_ID,
	M_CLIENT_ADDRESS,
	M_CLIENT_HOSTNAME,
	M_SIZE,
	M_COUNT
};

static const struct {
	const char *name;
	bool per_recipient;
} pipe_macros[M_COUNT] = {
    [M_SENDER] = {"sender", false},
    [M_RECIPIENT] = {"recipient", true},
    [M_ORIGINAL_RECIPIENT] = {"original_recipient", true},
    [M_USER] = {"user", true},
    [M_EXTENSION] = {"extension", true},
    [M_MAILBOX] = {"mailbox", true},
    [M_DOMAIN] = {"domain", true},
    [M_NEXTHOP] = {"nexthop", false},
    [M_QUEUE_ID] = {"queue_id", false},
    [M_CLIENT_ADDRESS] = {"client_address", false},
    [M_CLIENT_HOSTNAME] = {"client_hostname", false},
    [M_SIZE] = {"size", false},
};

/* A word of the argv template: literal text and macros. */
struct piece {
	int macro; /* enum pipe_macro, or -1: text */
	char *text;
};

struct word {
	struct piece *pieces;
	size_t n;
};

/* pipe_flags letters */
#define FLAG_FROM	   0x1u /* F: "From sender date" line */
#define FLAG_RETURN_PATH   0x2u /* R: Return-Path: <sender> */
#define FLAG_ORIGINAL_TO   0x4u /* O: X-Original-To: original recipient */
#define FLAG_DELIVERED_TO  0x8u /* D: Delivered-To: recipient */

struct pipe {
	struct qstore *qs;
	char *farm;	   /* the farm name: relay, log, "via ... service" */
	struct word *words;
	size_t nwords;
	bool per_recipient; /* one run per recipient */
	unsigned flags;
	unsigned time_limit_ms;
	uid_t uid; /* (uid_t)-1: not root, run as ourselves */
	gid_t gid;
	bool temporary[256]; /* exit codes that mean "try again later" */
	char *delimiter;
};

static struct pipe pp;

/* ---- the exit status table ---- */

/*
 * Postfix's sys_exits.c (sysexits.h codes 64..78): the detail of the
 * enhanced status code and a description.  Whether a code is temporary is
 * pipe_temporary_exit_codes' business (default 71 and 75, Postfix's soft
 * ones); the class digit follows from it.
 */
static const struct {
	int code;
	const char *detail; /* the code without its class digit */
	const char *text;
} pipe_sysexits[] = {
    {64, ".3.0", "command line usage error"},
    {65, ".6.0", "data format error"},
    {66, ".3.0", "cannot open input"},
    {67, ".1.1", "user unknown"},
    {68, ".1.2", "host name unknown"},
    {69, ".3.0", "service unavailable"},
    {70, ".3.0", "internal software error"},
    {71, ".3.0", "system resource problem"},
    {72, ".3.0", "critical OS file missing"},
    {73, ".2.0", "can't create user output file"},
    {74, ".3.0", "input/output error"},
    {75, ".3.0", "temporary failure"},
    {76, ".5.0", "remote error in protocol"},
    {77, ".7.0", "permission denied"},
    {78, ".3.5", "local configuration error"},
};

struct pipe_result {
	Zfarm__Status status;
	char enhanced[16];
	char text[TRANSPORT_TEXT_MAX + 256]; /* cut to TRANSPORT_TEXT_MAX by the skeleton */
};

/* pipe_output_text - the command's output on one line: line ends become "; ". */
static void pipe_output_text(const struct command_result *cr, char *buf, size_t buflen)
{
	size_t n = cr->output_len, o = 0;
	const char *s = cr->output;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
			 s[n - 1] == '\t'))
		n--;
	for (size_t i = 0; i < n && o + 3 < buflen; i++) {
		if (s[i] == '\r' || s[i] == '\n') {
			while (i + 1 < n && (s[i + 1] == '\r' || s[i + 1] == '\n'))
				i++;
			buf[o++] = ';';
			buf[o++] = ' ';
		} else {
			buf[o++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
		}
	}
	buf[o < buflen ? o : buflen - 1] = '\0';
}

/* pipe_exit_result - how the command ended, as a delivery result. */
static void pipe_exit_result(const struct command_result *cr, struct pipe_result *pr)
{
	char out[TRANSPORT_TEXT_MAX + 1];
	const char *sep;

	pipe_output_text(cr, out, sizeof(out));
	sep = out[0] ? ": " : "";
	if (cr->timed_out) {
		pr->status = ZFARM__STATUS__TEMPFAIL;
		snprintf(pr->enhanced, sizeof(pr->enhanced), "4.3.0");
		snprintf(pr->text, sizeof(pr->text), "command time limit exceeded%s%s", sep, out);
	} else if (cr->exec_errno) {
		/* A missing or unusable program is the configuration's fault: defer. */
		pr->status = ZFARM__STATUS__TEMPFAIL;
		snprintf(pr->enhanced, sizeof(pr->enhanced), "4.3.5");
		snprintf(pr->text, sizeof(pr->text), "%s", out[0] ? out : "cannot execute command");
	} else if (!cr->exited) {
		pr->status = ZFARM__STATUS__TEMPFAIL;
		snprintf(pr->enhanced, sizeof(pr->enhanced), "4.3.0");
		snprintf(pr->text, sizeof(pr->text), "command killed by signal %d%s%s", cr->signal,
			 sep, out);
	} else if (cr->exit_status == 0) {
		pr->status = ZFARM__STATUS__OK;
		snprintf(pr->enhanced, sizeof(pr->enhanced), "2.0.0");
		if (out[0])
			snprintf(pr->text, sizeof(pr->text), "delivered via %s service (%s)", pp.farm,
				 out);
		else
			snprintf(pr->text, sizeof(pr->text), "delivered via %s service", pp.farm);
	} else {
		bool temp = pp.temporary[cr->exit_status & 0xff];
		const char *detail = ".3.0", *what = NULL;

		for (size_t i = 0; i < sizeof(pipe_sysexits) / sizeof(pipe_sysexits[0]); i++)
			if (pipe_sysexits[i].code == cr->exit_status) {
				detail = pipe_sysexits[i].detail;
				what = pipe_sysexits[i].text;
			}
		pr->status = temp ? ZFARM__STATUS__TEMPFAIL : ZFARM__STATUS__PERMFAIL;
		snprintf(pr->enhanced, sizeof(pr->enhanced), "%c%s", temp ? '4' : '5', detail);
		snprintf(pr->text, sizeof(pr->text), "command exited with status %d%s%s%s%s%s",
			 cr->exit_status, what ? " (" : "", what ? what : "", what ? ")" : "", sep,
			 out);
	}
}

/* ---- per-recipient values ---- */

struct rcpt_parts {
	char *mailbox; /* the local part, unquoted */
	const char *domain;
	char *user;
	const char *extension;
};

static void rcpt_parts_split(const char *address, struct rcpt_parts *p)
{
	const char *at = strrchr(address, '@');
	size_t llen = at ? (size_t)(at - address) : strlen(address);
	char *local = xstrndup(address, llen);
	size_t ulen;

	p->domain = at ? at + 1 : "";
	p->mailbox = xmalloc(llen + 1);
	if (address_local_unquote(local, p->mailbox, llen + 1) < 0)
		memcpy(p->mailbox, local, llen + 1);
	free(local);
	/* The user part ends at the first delimiter, unless that leaves "" (the router's rule). */
	ulen = pp.delimiter[0] ? strcspn(p->mailbox, pp.delimiter) : strlen(p->mailbox);
	if (ulen == 0 || p->mailbox[ulen] == '\0') {
		p->user = xstrdup(p->mailbox);
		p->extension = "";
	} else {
		p->user = xstrndup(p->mailbox, ulen);
		p->extension = p->mailbox + ulen + 1;
	}
}

static void rcpt_parts_free(struct rcpt_parts *p)
{
	free(p->mailbox);
	free(p->user);
}

/* One run's values. */
struct run_ctx {
	const Zfarm__DeliveryRequest *rq;
	const Zfarm__Envelope *env;
	const Zfarm__DeliveryRecipient *r; /* NULL: a run for all recipients */
	struct rcpt_parts parts;
	char size[24];
};

static const char *run_value(const struct run_ctx *c, enum pipe_macro m)
{
	const Zfarm__DeliveryRecipient *r = c->r;

	switch (m) {
	case M_SENDER:
		return c->rq->sender && c->rq->sender[0] ? c->rq->sender : "MAILER-DAEMON";
	case M_RECIPIENT:
		return r->address;
	case M_ORIGINAL_RECIPIENT:
		return r->orig_address && r->orig_address[0] ? r->orig_address : r->address;
	case M_USER:
		return c->parts.user;
	case M_EXTENSION:
		return c->parts.extension;
	case M_MAILBOX:
		return c->parts.mailbox;
	case M_DOMAIN:
		return c->parts.domain;
	case M_NEXTHOP:
		return c->rq->nexthop ? c->rq->nexthop : "";
	case M_QUEUE_ID:
		return c->rq->ref->queue_id;
	case M_CLIENT_ADDRESS:
		return c->env->client_addr ? c->env->client_addr : "";
	case M_CLIENT_HOSTNAME:
		return c->env->client_name ? c->env->client_name : "";
	case M_SIZE:
		return c->size;
	default:
		return "";
	}
}

/* run_argv - the argv of one run (free with run_argv_free). */
static char **run_argv(const struct run_ctx *c)
{
	char **argv = xcalloc(pp.nwords + 1, sizeof(*argv));

	for (size_t i = 0; i < pp.nwords; i++) {
		struct strbuf sb;

		strbuf_init(&sb, 0);
		for (size_t j = 0; j < pp.words[i].n; j++) {
			const struct piece *pc = &pp.words[i].pieces[j];

			strbuf_append_str(&sb, pc->macro < 0 ? pc->text : run_value(c, pc->macro));
		}
		argv[i] = strbuf_steal(&sb);
	}
	return argv;
}

static void run_argv_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/* ---- stdin ---- */

struct feed {
	struct qstore_reader *rd;
	const struct run_ctx *c;
	struct body_enc enc;
	bool started;
};

/* feed_headers - the pipe_flags lines before the content. */
static int feed_headers(struct feed *f, struct evbuffer *out)
{
	const char *sender = f->c->rq->sender ? f->c->rq->sender : "";
	const Zfarm__DeliveryRecipient *r = f->c->r;
	int rc = 0;

	if (pp.flags & FLAG_FROM) {
		time_t t = (time_t)(f->c->env->arrival_us / 1000000);
		struct tm tm;
		char date[64];

		localtime_r(&t, &tm);
		strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
		rc |= evbuffer_add_printf(out, "From %s  %s\n", sender[0] ? sender : "MAILER-DAEMON",
					  date) < 0;
	}
	if (pp.flags & FLAG_RETURN_PATH)
		rc |= evbuffer_add_printf(out, "Return-Path: <%s>\n", sender) < 0;
	if ((pp.flags & FLAG_ORIGINAL_TO) && r)
		rc |= evbuffer_add_printf(out, "X-Original-To: %s\n",
					  r->orig_address && r->orig_address[0] ? r->orig_address
										: r->address) < 0;
	if ((pp.flags & FLAG_DELIVERED_TO) && r)
		rc |= evbuffer_add_printf(out, "Delivered-To: %s\n", r->address) < 0;
	return rc ? -1 : 0;
}

static int feed_message(void *arg, struct evbuffer *out, char *err, size_t errlen)
{
	struct feed *f = arg;
	int rc;

	if (!f->started) {
		f->started = true;
		if (feed_headers(f, out) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	rc = body_pump(f->rd, &f->enc, out, PIPE_FEED_CHUNK, err, errlen);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		if (body_enc_finish(&f->enc, out) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	return 1;
}

/* ---- one delivery ---- */

static void pipe_answer(struct transport_job *job, const Zfarm__DeliveryRecipient *r,
			const struct pipe_result *pr)
{
	log_info("%s: to=<%s>, relay=%s, dsn=%s, status=%s (%s)", transport_job_qid(job),
		 r->address ? r->address : "", pp.farm, pr->enhanced,
		 pr->status == ZFARM__STATUS__OK	 ? "sent"
		 : pr->status == ZFARM__STATUS__PERMFAIL ? "bounced"
							 : "deferred",
		 pr->text);
	transport_job_result(job, r->index, pr->status, 0, pr->enhanced, pr->text);
}

/* pipe_run - one run of the command (r NULL: for all recipients). */
static void pipe_run(const Zfarm__DeliveryRequest *rq, const Zfarm__Envelope *env,
		     struct qstore_reader *rd, const Zfarm__DeliveryRecipient *r,
		     struct pipe_result *pr)
{
	struct run_ctx c = {.rq = rq, .env = env, .r = r};
	struct feed f = {.rd = rd, .c = &c};
	struct command_result *cr = xmalloc(sizeof(*cr));
	struct command_spec spec = {0};
	char **argv;
	char err[512];
	static char *const env_clean[] = {"PATH=/usr/bin:/bin", "SHELL=/bin/sh", NULL};

	if (r)
		rcpt_parts_split(r->address ? r->address : "", &c.parts);
	snprintf(c.size, sizeof(c.size), "%" PRIu64, rq->ref->size);
	argv = run_argv(&c);
	body_enc_init(&f.enc, BODY_LF);
	spec.argv = argv;
	spec.env = env_clean;
	spec.cwd = NULL;
	spec.uid = pp.uid;
	spec.gid = pp.gid;
	spec.timeout_ms = pp.time_limit_ms;
	spec.feed = feed_message;
	spec.feed_arg = &f;

	if (qstore_rewind(rd) < 0) {
		pr->status = ZFARM__STATUS__TEMPFAIL;
		snprintf(pr->enhanced, sizeof(pr->enhanced), "4.3.0");
		snprintf(pr->text, sizeof(pr->text), "cannot rewind the message");
	} else if (command_run(&spec, cr, err, sizeof(err)) < 0) {
		pr->status = ZFARM__STATUS__TEMPFAIL;
		snprintf(pr->enhanced, sizeof(pr->enhanced), "4.3.0");
		snprintf(pr->text, sizeof(pr->text), "cannot run %s: %s", argv[0], err);
	} else {
		pipe_exit_result(cr, pr);
	}
	run_argv_free(argv);
	if (r)
		rcpt_parts_free(&c.parts);
	free(cr);
}

static void pipe_deliver(struct transport_job *job, const Zfarm__DeliveryRequest *rq)
{
	struct qstore_reader *rd;
	struct pipe_result pr;
	char err[512];
	int errnum = 0;

	rd = qstore_read(pp.qs, rq->ref->queue_id, &errnum, err, sizeof(err));
	if (!rd) {
		bool perm = errnum == ENOENT || errnum == EBADMSG;

		pr.status = perm ? ZFARM__STATUS__PERMFAIL : ZFARM__STATUS__TEMPFAIL;
		snprintf(pr.enhanced, sizeof(pr.enhanced), perm ? "5.3.0" : "4.3.0");
		snprintf(pr.text, sizeof(pr.text), "cannot read the message: %s", err);
		for (size_t i = 0; i < rq->n_recipients; i++)
			pipe_answer(job, rq->recipients[i], &pr);
		transport_job_done(job, pp.farm, false);
		return;
	}
	if (pp.per_recipient) {
		for (size_t i = 0; i < rq->n_recipients; i++) {
			pipe_run(rq, qstore_envelope(rd), rd, rq->recipients[i], &pr);
			pipe_answer(job, rq->recipients[i], &pr);
		}
	} else if (rq->n_recipients > 0) {
		pipe_run(rq, qstore_envelope(rd), rd, NULL, &pr);
		for (size_t i = 0; i < rq->n_recipients; i++)
			pipe_answer(job, rq->recipients[i], &pr);
	}
	qstore_reader_free(&rd);
	transport_job_done(job, pp.farm, false);
}

static void pipe_cancel(struct transport_job *job)
{
	/* Synchronous: a job is always done before the loop sees the scheduler leave. */
	(void)job;
}

/* ---- configuration ---- */

/* The scope of a parameter: the farm's own section if it sets it, else the globals. */
static const char *pipe_kind(const struct config *cfg, const char *param)
{
	return config_get(cfg, "farm", pp.farm, param) ? "farm" : NULL;
}

/* pipe_where - "FILE:LINE: parameter NAME" for our own messages about param. */
static void pipe_where(const struct config *cfg, const char *param, char *buf, size_t buflen)
{
	const char *kind = pipe_kind(cfg, param), *file = "?";
	unsigned line = 0;

	config_location(cfg, kind, pp.farm, param, &file, &line);
	if (kind)
		snprintf(buf, buflen, "%s:%u: parameter farm.%s.%s", file, line, pp.farm, param);
	else
		snprintf(buf, buflen, "%s:%u: parameter %s", file, line, param);
}

static void pipe_word_add(struct word *w, int macro, const char *text, size_t len)
{
	w->pieces = xreallocarray(w->pieces, w->n + 1, sizeof(*w->pieces));
	w->pieces[w->n].macro = macro;
	w->pieces[w->n].text = macro < 0 ? xstrndup(text, len) : NULL;
	w->n++;
}

static bool pipe_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* pipe_parse_word - one argv word (s, len) into w; -1 + reason. */
static int pipe_parse_word(const char *s, size_t len, struct word *w, const char *where,
			   char *err, size_t errlen)
{
	size_t i = 0, lit = 0;

	while (i < len) {
		const char *name;
		size_t nlen, next;
		int m = -1;

		if (s[i] != '$') {
			i++;
			continue;
		}
		if (i > lit)
			pipe_word_add(w, -1, s + lit, i - lit);
		if (i + 1 < len && s[i + 1] == '$') {
			pipe_word_add(w, -1, "$", 1);
			lit = i = i + 2;
			continue;
		}
		if (i + 1 < len && s[i + 1] == '{') {
			const char *e = memchr(s + i + 2, '}', len - i - 2);

			if (!e) {
				snprintf(err, errlen, "%s: unterminated ${ in argv", where);
				return -1;
			}
			name = s + i + 2;
			nlen = (size_t)(e - name);
			next = (size_t)(e - s) + 1;
		} else {
			name = s + i + 1;
			for (nlen = 0; i + 1 + nlen < len && pipe_name_char(name[nlen]); nlen++)
				;
			next = i + 1 + nlen;
			if (nlen == 0) {
				snprintf(err, errlen,
					 "%s: '$' in argv not followed by {name}, name or '$'",
					 where);
				return -1;
			}
		}
		for (int k = 0; k < M_COUNT; k++)
			if (strlen(pipe_macros[k].name) == nlen &&
			    memcmp(pipe_macros[k].name, name, nlen) == 0)
				m = k;
		if (m < 0) {
			snprintf(err, errlen, "%s: unknown macro ${%.*s} in argv", where, (int)nlen,
				 name);
			return -1;
		}
		pipe_word_add(w, m, NULL, 0);
		if (pipe_macros[m].per_recipient)
			pp.per_recipient = true;
		lit = i = next;
	}
	if (len > lit || w->n == 0)
		pipe_word_add(w, -1, s + lit, len - lit);
	return 0;
}

static int pipe_parse_argv(const struct config *cfg, char *err, size_t errlen)
{
	const char *v, *p;
	char where[600];

	pipe_where(cfg, "argv", where, sizeof(where));
	if (config_get_string(cfg, pipe_kind(cfg, "argv"), pp.farm, "argv", NULL, &v, err,
			      errlen) < 0)
		return -1;
	if (!v || !v[strspn(v, " \t")]) {
		snprintf(err, errlen, "farm %s: no argv (the command to run) in [farm %s] or the "
				      "globals",
			 pp.farm, pp.farm);
		return -1;
	}
	for (p = v;;) {
		size_t n;

		p += strspn(p, " \t");
		if (!*p)
			break;
		n = strcspn(p, " \t");
		pp.words = xreallocarray(pp.words, pp.nwords + 1, sizeof(*pp.words));
		memset(&pp.words[pp.nwords], 0, sizeof(*pp.words));
		pp.nwords++;
		if (pipe_parse_word(p, n, &pp.words[pp.nwords - 1], where, err, errlen) < 0)
			return -1;
		p += n;
	}
	if (pp.words[0].n != 1 || pp.words[0].pieces[0].macro >= 0 ||
	    pp.words[0].pieces[0].text[0] != '/') {
		snprintf(err, errlen, "%s: the command must be an absolute path without macros",
			 where);
		return -1;
	}
	return 0;
}

static int pipe_parse_flags(const struct config *cfg, char *err, size_t errlen)
{
	const char *v;
	char where[600];

	if (config_get_string(cfg, pipe_kind(cfg, "pipe_flags"), pp.farm, "pipe_flags", "RD", &v,
			      err, errlen) < 0)
		return -1;
	for (; *v; v++) {
		switch (*v) {
		case 'F':
			pp.flags |= FLAG_FROM;
			break;
		case 'R':
			pp.flags |= FLAG_RETURN_PATH;
			break;
		case 'O':
			pp.flags |= FLAG_ORIGINAL_TO;
			break;
		case 'D':
			pp.flags |= FLAG_DELIVERED_TO;
			break;
		case ' ':
		case '\t':
			break;
		default:
			pipe_where(cfg, "pipe_flags", where, sizeof(where));
			snprintf(err, errlen, "%s: unknown flag '%c' (F, R, O, D)", where, *v);
			return -1;
		}
	}
	if (pp.flags & (FLAG_ORIGINAL_TO | FLAG_DELIVERED_TO))
		pp.per_recipient = true; /* those headers name one recipient */
	return 0;
}

static int pipe_parse_codes(const struct config *cfg, char *err, size_t errlen)
{
	char **list = NULL, where[600];
	int rc = 0;

	if (config_get_list(cfg, pipe_kind(cfg, "pipe_temporary_exit_codes"), pp.farm,
			    "pipe_temporary_exit_codes", "71 75", &list, NULL, err, errlen) < 0)
		return -1;
	for (size_t i = 0; list[i]; i++) {
		char *end;
		long v = strtol(list[i], &end, 10);

		if (*end || end == list[i] || v < 1 || v > 255) {
			pipe_where(cfg, "pipe_temporary_exit_codes", where, sizeof(where));
			snprintf(err, errlen, "%s: \"%s\" is not an exit status (1..255)", where,
				 list[i]);
			rc = -1;
			break;
		}
		pp.temporary[v] = true;
	}
	config_list_free(&list);
	return rc;
}

static int pipe_parse_user(const struct config *cfg, char *err, size_t errlen)
{
	const char *user;
	struct passwd *pw;
	char where[600];

	pp.uid = (uid_t)-1;
	pp.gid = (gid_t)-1;
	if (config_get_string(cfg, pipe_kind(cfg, "pipe_user"), pp.farm, "pipe_user", "nobody",
			      &user, err, errlen) < 0)
		return -1;
	if (geteuid() != 0)
		return 0; /* not root: commands run as we do */
	pipe_where(cfg, "pipe_user", where, sizeof(where));
	errno = 0;
	pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "%s: unknown user \"%s\"%s%s", where, user,
			 errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "%s: commands must not run as root (\"%s\")", where, user);
		return -1;
	}
	pp.uid = pw->pw_uid;
	pp.gid = pw->pw_gid;
	return 0;
}

static int pipe_init(struct farm_server *srv, char *err, size_t errlen)
{
	const struct config *cfg = farm_server_config(srv);
	const char *store, *qdir, *delim;
	char rundir[4096], defq[4200];
	long long limit;

	pp.farm = xstrdup(farm_server_farm_name(srv));
	if (pipe_parse_argv(cfg, err, errlen) < 0 || pipe_parse_flags(cfg, err, errlen) < 0 ||
	    pipe_parse_codes(cfg, err, errlen) < 0 || pipe_parse_user(cfg, err, errlen) < 0)
		return -1;
	if (config_get_time(cfg, pipe_kind(cfg, "pipe_time_limit"), pp.farm, "pipe_time_limit",
			    1000, 1, 86400, &limit, err, errlen) < 0)
		return -1;
	pp.time_limit_ms = (unsigned)limit * 1000;
	if (config_get_string(cfg, pipe_kind(cfg, "recipient_delimiter"), pp.farm,
			      "recipient_delimiter", "+", &delim, err, errlen) < 0)
		return -1;
	pp.delimiter = xstrdup(delim);

	if (farmd_run_directory(cfg, rundir, sizeof(rundir), err, errlen) < 0)
		return -1;
	snprintf(defq, sizeof(defq), "%s/queue", rundir);
	if (config_get_string(cfg, NULL, NULL, "queue_store", "spool", &store, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "queue_directory", defq, &qdir, err, errlen) < 0)
		return -1;
	pp.qs = qstore_open(store, qdir, err, errlen);
	if (!pp.qs)
		return -1;
	log_info("farm %s: %s, %s run%s, time limit %llds, %s", pp.farm, pp.words[0].pieces[0].text,
		 pp.per_recipient ? "one" : "a single", pp.per_recipient ? " per recipient" : "",
		 limit, pp.uid == (uid_t)-1 ? "as ourselves" : "privileges dropped");
	return 0;
}

static void pipe_fini(struct farm_server *srv)
{
	(void)srv;
	qstore_close(&pp.qs);
	for (size_t i = 0; i < pp.nwords; i++) {
		for (size_t j = 0; j < pp.words[i].n; j++)
			free(pp.words[i].pieces[j].text);
		free(pp.words[i].pieces);
	}
	free(pp.words);
	free(pp.farm);
	free(pp.delimiter);
	memset(&pp, 0, sizeof(pp));
}

static const struct transport_ops pipe_ops = {
    .name = "pipe",
    .init = pipe_init,
    .deliver = pipe_deliver,
    .cancel = pipe_cancel,
    .fini = pipe_fini,
};

int main(int argc, char **argv)
{
	return transport_main(argc, argv, &pipe_ops);
}
