/*
 * qctl_client - queue control client and its printing, for zfqueue and
 * mailq; see qctl_client.h for the contract with the scheduler.
 */
#include "tools/qctl_client.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/endpoint.h"
#include "common/err.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/xalloc.h"
#include "proto/queue.pb-c.h"

struct qctl_client {
	int fd;
	uint64_t next_id;
	char path[4200];
};

/* ---- configuration ---- */

struct config *qctl_load_config(const char *path, char *const *overrides, size_t n, char *err,
				size_t errlen)
{
	struct config *cfg = config_new();

	paths_set_defaults(cfg);
	for (size_t i = 0; i < n; i++) {
		if (config_override(cfg, overrides[i], err, errlen) < 0)
			goto fail;
	}
	if (!path)
		path = paths_config_file();
	if (path && *path && config_load(cfg, path, err, errlen) < 0)
		goto fail;
	return cfg;
fail:
	config_free(&cfg);
	return NULL;
}

/* ---- connection ---- */

/* Written by the SIGALRM handler: prepared beforehand, async-signal-safe. */
static char qctl_alarm_msg[256];

static void qctl_alarm(int sig)
{
	(void)sig;
	(void)!write(STDERR_FILENO, qctl_alarm_msg, strlen(qctl_alarm_msg));
	_exit(QCTL_UNREACHABLE);
}

struct qctl_client *qctl_client_open(const struct config *cfg, bool privileged,
				     enum qctl_status *status, char *err, size_t errlen)
{
	struct qctl_client *c;
	struct sigaction sa;
	struct endpoint ep;
	char dir[4096], spec[4300], why[512];

	if (farmd_run_directory(cfg, dir, sizeof(dir), err, errlen) < 0) {
		*status = QCTL_USAGE;
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->fd = -1;
	snprintf(c->path, sizeof(c->path), "%s/%s", dir,
		 privileged ? QCTL_SOCKET_PRIVATE : QCTL_SOCKET_PUBLIC);
	snprintf(spec, sizeof(spec), "unix:%s", c->path);
	if (endpoint_parse(spec, &ep, why, sizeof(why)) < 0) {
		err_printf(err, errlen, "%s: %s", c->path, why);
		*status = QCTL_USAGE;
		qctl_client_free(&c);
		return NULL;
	}
	c->fd = endpoint_connect(&ep, false, why, sizeof(why));
	if (c->fd < 0) {
		err_printf(err, errlen, "the scheduler is not running (%s: %s)", c->path, why);
		*status = QCTL_UNREACHABLE;
		qctl_client_free(&c);
		return NULL;
	}
	err_printf(qctl_alarm_msg, sizeof(qctl_alarm_msg),
		   "%s: timed out sending to the scheduler at %s\n", log_progname(), c->path);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = qctl_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	*status = QCTL_OK;
	return c;
}

void qctl_client_free(struct qctl_client **c)
{
	if (!c || !*c)
		return;
	if ((*c)->fd >= 0)
		close((*c)->fd);
	free(*c);
	*c = NULL;
}

/* qctl_client_broken - a failure that leaves the stream unusable. */
static enum qctl_status qctl_client_broken(struct qctl_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	return QCTL_UNREACHABLE;
}

enum qctl_status qctl_client_call(struct qctl_client *c, const Zfarm__QueueControlRequest *req,
				  Zfarm__Frame **reply, char *err, size_t errlen)
{
	Zfarm__Frame f, *r;
	char why[512] = "";
	uint64_t id;
	int rc;

	*reply = NULL;
	if (c->fd < 0) {
		err_printf(err, errlen, "connection to the scheduler already failed");
		return QCTL_UNREACHABLE;
	}
	id = ++c->next_id;
	frame_init(&f, id);
	f.body_case = ZFARM__FRAME__BODY_QUEUE_CONTROL;
	/* The frame only borrows the request for packing. */
	f.queue_control = (Zfarm__QueueControlRequest *)req;
	alarm(QCTL_TIMEOUT_MS / 1000);
	rc = frame_write_fd(c->fd, &f, why, sizeof(why));
	alarm(0);
	if (rc < 0) {
		err_printf(err, errlen, "cannot send to the scheduler at %s: %s", c->path, why);
		return qctl_client_broken(c);
	}
	r = frame_read_fd(c->fd, QCTL_REPLY_MAX, QCTL_TIMEOUT_MS, why, sizeof(why));
	if (!r) {
		err_printf(err, errlen, "no answer from the scheduler at %s: %s", c->path,
			   *why ? why : "connection closed");
		return qctl_client_broken(c);
	}
	if (r->request_id != id) {
		err_printf(err, errlen, "the scheduler answered request %llu, expected %llu",
			   (unsigned long long)r->request_id, (unsigned long long)id);
		frame_free(&r);
		return qctl_client_broken(c);
	}
	if (r->body_case == ZFARM__FRAME__BODY_ERROR) {
		err_printf(err, errlen, "%s",
			   r->error && *r->error->text ? r->error->text : "request refused");
		frame_free(&r);
		return QCTL_REFUSED;
	}
	if (r->body_case != ZFARM__FRAME__BODY_QUEUE_CONTROL_REPLY) {
		err_printf(err, errlen, "the scheduler answered with an unexpected %s frame",
			   frame_body_name(r));
		frame_free(&r);
		return qctl_client_broken(c);
	}
	*reply = r;
	if (!r->queue_control_reply->ok) {
		err_printf(err, errlen, "%s",
			   *r->queue_control_reply->error ? r->queue_control_reply->error
							  : "request refused");
		return QCTL_REFUSED;
	}
	return QCTL_OK;
}

enum qctl_status qctl_client_list(struct qctl_client *c, const Zfarm__QueueControlRequest *filter,
				  qctl_entry_fn *fn, void *arg, char *err, size_t errlen)
{
	Zfarm__QueueControlRequest req = *filter;
	/* Queue IDs are QID_LEN characters; room for a longer one to fail cleanly. */
	char after[64] = "";
	Zfarm__Frame *reply;
	enum qctl_status st;

	req.op = ZFARM__QUEUE_CONTROL_REQUEST__OP__LIST;
	req.after = after;
	for (;;) {
		const Zfarm__QueueControlReply *r;
		const char *last;

		st = qctl_client_call(c, &req, &reply, err, errlen);
		if (st != QCTL_OK) {
			frame_free(&reply);
			return st;
		}
		r = reply->queue_control_reply;
		for (size_t i = 0; i < r->n_entries; i++) {
			if (fn(r->entries[i], arg) != 0) {
				frame_free(&reply);
				return QCTL_OK;
			}
		}
		if (!r->truncated) {
			frame_free(&reply);
			return QCTL_OK;
		}
		/* A truncated page must move on, or we would ask forever. */
		last = r->n_entries ? r->entries[r->n_entries - 1]->queue_id : "";
		if (strlen(last) >= sizeof(after) || strcmp(last, after) <= 0) {
			err_printf(err, errlen,
				   "the scheduler's LIST paging does not advance (after \"%s\")",
				   after);
			frame_free(&reply);
			return qctl_client_broken(c);
		}
		snprintf(after, sizeof(after), "%s", last);
		frame_free(&reply);
	}
}

/* ---- UTF-8 ---- */

/*
 * utf8_decode - the UTF-8 sequence at p (n > 0 bytes available): its
 * length with *cp set; 0 if p[0] does not start a valid sequence
 * (overlong, surrogate, beyond U+10FFFF, bad continuation); -1 if n ends
 * before the sequence does.
 */
static int utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char c = p[0];
	uint32_t v, min;
	int len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return -1;
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* C0, DEL and C1 controls: what a terminal might act on. */
static bool utf8_is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

void qctl_text(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	uint32_t cp;

	while (n > 0) {
		int len = utf8_decode(p, n, &cp);

		if (len <= 0 || utf8_is_control(cp)) {
			putc('?', out);
			len = len <= 0 ? 1 : len;
		} else {
			fwrite(p, 1, (size_t)len, out);
		}
		p += len;
		n -= (size_t)len;
	}
}

/* json_put - n bytes of UTF-8 text; a sequence cut at the end is returned (>0) for the caller. */
static size_t json_put(FILE *out, const unsigned char *p, size_t n, bool final)
{
	uint32_t cp;

	while (n > 0) {
		int len = utf8_decode(p, n, &cp);

		if (len < 0 && !final)
			return n;
		if (len <= 0) {
			fputs("\\ufffd", out);
			len = 1;
		} else if (cp == '"' || cp == '\\') {
			fprintf(out, "\\%c", (char)cp);
		} else if (cp == '\n') {
			fputs("\\n", out);
		} else if (cp == '\r') {
			fputs("\\r", out);
		} else if (cp == '\t') {
			fputs("\\t", out);
		} else if (utf8_is_control(cp)) {
			fprintf(out, "\\u%04x", (unsigned)cp);
		} else {
			fwrite(p, 1, (size_t)len, out);
		}
		p += len;
		n -= (size_t)len;
	}
	return 0;
}

void qctl_json_string(FILE *out, const char *s)
{
	putc('"', out);
	json_put(out, (const unsigned char *)s, strlen(s), true);
	putc('"', out);
}

void qctl_json_stream_begin(struct qctl_json_stream *js, FILE *out)
{
	js->out = out;
	js->ncarry = 0;
	putc('"', out);
}

void qctl_json_stream_write(struct qctl_json_stream *js, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t left;

	/* Complete a sequence the previous piece cut: one byte at a time. */
	while (js->ncarry > 0 && len > 0) {
		unsigned char tmp[4];
		size_t n;

		js->carry[js->ncarry++] = *p++;
		len--;
		memcpy(tmp, js->carry, js->ncarry);
		n = js->ncarry;
		js->ncarry = 0;
		left = json_put(js->out, tmp, n, false);
		memcpy(js->carry, tmp + n - left, left);
		js->ncarry = left;
	}
	left = json_put(js->out, p, len, false);
	if (left) {
		memcpy(js->carry, p + len - left, left);
		js->ncarry = left;
	}
}

void qctl_json_stream_end(struct qctl_json_stream *js)
{
	json_put(js->out, js->carry, js->ncarry, true);
	js->ncarry = 0;
	putc('"', js->out);
}

/* ---- time ---- */

void qctl_time(char *buf, size_t buflen, int64_t t, bool with_year)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!localtime_r(&tt, &tm) ||
	    strftime(buf, buflen, with_year ? "%a %b %e %H:%M:%S %Y" : "%a %b %e %H:%M:%S", &tm) ==
		0)
		snprintf(buf, buflen, "%lld", (long long)t);
}

/* ---- entries ---- */

static bool rcpt_is(const Zfarm__RecipientState *r, const char *status)
{
	return strcmp(r->status, status) == 0;
}

static bool rcpt_final(const Zfarm__RecipientState *r)
{
	return rcpt_is(r, "delivered") || rcpt_is(r, "failed");
}

/* Indent of continuation lines: under the sender column and one more. */
#define QCTL_INDENT 48

/* One recipient to print, with the reason it is grouped under ("" none). */
struct qctl_shown {
	const Zfarm__RecipientState *r;
	const char *group;
	size_t index;
};

/* Groups by reason ("" first), arrival order inside a group. */
static int qctl_shown_cmp(const void *a, const void *b)
{
	const struct qctl_shown *x = a, *y = b;
	int c = strcmp(x->group, y->group);

	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

static void qctl_rcpt_details(FILE *out, const Zfarm__RecipientState *r, bool with_year)
{
	char when[64];

	qctl_text(out, r->status);
	if (*r->channel || *r->nexthop) {
		fputs(", ", out);
		qctl_text(out, r->channel);
		if (*r->nexthop) {
			putc(' ', out);
			qctl_text(out, r->nexthop);
		}
	}
	if (r->attempts)
		fprintf(out, ", %u attempt%s", r->attempts, r->attempts == 1 ? "" : "s");
	if (r->next_attempt > 0 && !rcpt_final(r)) {
		qctl_time(when, sizeof(when), r->next_attempt, with_year);
		fprintf(out, ", next %s", when);
	}
}

static void qctl_entry_text(FILE *out, const Zfarm__QueueEntry *e, bool verbose)
{
	struct qctl_shown *shown = xcalloc(e->n_recipients ? e->n_recipients : 1, sizeof(*shown));
	char id[QCTL_INDENT], when[64];
	const char *last_group = "";
	bool active = false;
	size_t n = 0;
	char mark;

	for (size_t i = 0; i < e->n_recipients; i++) {
		const Zfarm__RecipientState *r = e->recipients[i];
		bool grouped = rcpt_is(r, "deferred") || (verbose && rcpt_final(r));

		active = active || rcpt_is(r, "active");
		if (!verbose && rcpt_final(r))
			continue;
		shown[n].r = r;
		shown[n].group = grouped ? r->reason : "";
		shown[n].index = i;
		n++;
	}
	qsort(shown, n, sizeof(*shown), qctl_shown_cmp);

	log_sanitize(id, sizeof(id), e->queue_id, strlen(e->queue_id));
	qctl_time(when, sizeof(when), e->arrival, false);
	mark = active ? '*' : ' ';
	if (e->held)
		mark = '!';
	fprintf(out, "%-16s%c%8llu %s  ", id, mark, (unsigned long long)e->size, when);
	qctl_text(out, *e->sender ? e->sender : "MAILER-DAEMON");
	putc('\n', out);
	for (size_t i = 0; i < n; i++) {
		if (*shown[i].group && (i == 0 || strcmp(shown[i].group, last_group) != 0)) {
			fprintf(out, "%*s(", QCTL_INDENT, "");
			qctl_text(out, shown[i].group);
			fputs(")\n", out);
		}
		last_group = shown[i].group;
		fprintf(out, "%*s", QCTL_INDENT, "");
		qctl_text(out, shown[i].r->address);
		if (verbose) {
			fputs(" (", out);
			qctl_rcpt_details(out, shown[i].r, false);
			putc(')', out);
		}
		putc('\n', out);
	}
	putc('\n', out);
	free(shown);
}

void qctl_entry_json(FILE *out, const Zfarm__QueueEntry *e)
{
	fputs("{\"queue_id\":", out);
	qctl_json_string(out, e->queue_id);
	fprintf(out, ",\"arrival\":%lld,\"size\":%llu,\"sender\":", (long long)e->arrival,
		(unsigned long long)e->size);
	qctl_json_string(out, e->sender);
	fprintf(out, ",\"held\":%s,\"recipients\":[", e->held ? "true" : "false");
	for (size_t i = 0; i < e->n_recipients; i++) {
		const Zfarm__RecipientState *r = e->recipients[i];

		fputs(i ? ",{\"address\":" : "{\"address\":", out);
		qctl_json_string(out, r->address);
		fputs(",\"channel\":", out);
		qctl_json_string(out, r->channel);
		fputs(",\"nexthop\":", out);
		qctl_json_string(out, r->nexthop);
		fputs(",\"status\":", out);
		qctl_json_string(out, r->status);
		fputs(",\"reason\":", out);
		qctl_json_string(out, r->reason);
		fprintf(out, ",\"next_attempt\":%lld,\"attempts\":%u}", (long long)r->next_attempt,
			r->attempts);
	}
	fputs("]}", out);
}

void qctl_entry_detail(FILE *out, const Zfarm__QueueEntry *e)
{
	char when[64];

	fputs("Queue ID:    ", out);
	qctl_text(out, e->queue_id);
	fputs(e->held ? " (on hold)\n" : "\n", out);
	qctl_time(when, sizeof(when), e->arrival, true);
	fprintf(out, "Arrival:     %s\nSize:        %llu\nSender:      ", when,
		(unsigned long long)e->size);
	qctl_text(out, *e->sender ? e->sender : "MAILER-DAEMON (null sender)");
	putc('\n', out);
	for (size_t i = 0; i < e->n_recipients; i++) {
		const Zfarm__RecipientState *r = e->recipients[i];

		fputs("Recipient:   ", out);
		qctl_text(out, r->address);
		fputs("\n  status:    ", out);
		qctl_rcpt_details(out, r, true);
		putc('\n', out);
		if (*r->reason) {
			fputs("  reason:    ", out);
			qctl_text(out, r->reason);
			putc('\n', out);
		}
	}
}

/* ---- envelopes (zfqueue show) ---- */

static const char *qctl_notify(uint32_t bits, char *buf, size_t buflen)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {{ZFARM__NOTIFY__NOTIFY_NEVER, "NEVER"},
		     {ZFARM__NOTIFY__NOTIFY_SUCCESS, "SUCCESS"},
		     {ZFARM__NOTIFY__NOTIFY_FAILURE, "FAILURE"},
		     {ZFARM__NOTIFY__NOTIFY_DELAY, "DELAY"}};
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (bits & names[i].bit)
			n += (size_t)snprintf(buf + n, n < buflen ? buflen - n : 0, "%s%s",
					      n ? "," : "", names[i].name);
	return buf;
}

/* One "Label:  value" line of the envelope, only when value is set. */
static void qctl_env_line(FILE *out, const char *label, const char *value)
{
	if (!*value)
		return;
	fprintf(out, "%-13s", label);
	qctl_text(out, value);
	putc('\n', out);
}

void qctl_envelope_text(FILE *out, const Zfarm__Envelope *env)
{
	char buf[128];

	fputs("\n*** ENVELOPE ***\n", out);
	if (*env->client_addr || *env->client_name) {
		fprintf(out, "%-13s", "Client:");
		qctl_text(out, *env->client_name ? env->client_name : "unknown");
		putc('[', out);
		qctl_text(out, env->client_addr);
		fputs("]\n", out);
	}
	qctl_env_line(out, "HELO:", env->helo);
	qctl_env_line(out, "Protocol:", env->protocol);
	qctl_env_line(out, "Auth user:", env->auth_user);
	fprintf(out, "%-13s<", "Sender:");
	qctl_text(out, env->sender);
	fputs(">\n", out);
	for (size_t i = 0; i < env->n_recipients; i++) {
		const Zfarm__EnvRecipient *r = env->recipients[i];

		fprintf(out, "%-13s<", "Recipient:");
		qctl_text(out, r->address);
		putc('>', out);
		if (*r->orcpt) {
			fputs(" ORCPT=", out);
			qctl_text(out, r->orcpt);
		}
		if (r->notify)
			fprintf(out, " NOTIFY=%s", qctl_notify(r->notify, buf, sizeof(buf)));
		putc('\n', out);
	}
	qctl_env_line(out, "ENVID:", env->envid);
	qctl_env_line(out, "RET:", env->ret);
	qctl_env_line(out, "Body:", env->body);
	if (env->smtputf8)
		qctl_env_line(out, "SMTPUTF8:", "yes");
	if (env->size_declared)
		fprintf(out, "%-13s%llu\n", "SIZE:", (unsigned long long)env->size_declared);
	qctl_env_line(out, "Notice:", env->notice);
}

void qctl_envelope_json(FILE *out, const Zfarm__Envelope *env)
{
	char buf[128];

	fputs("{\"queue_id\":", out);
	qctl_json_string(out, env->queue_id);
	fprintf(out, ",\"arrival_us\":%lld,\"client_addr\":", (long long)env->arrival_us);
	qctl_json_string(out, env->client_addr);
	fputs(",\"client_name\":", out);
	qctl_json_string(out, env->client_name);
	fputs(",\"helo\":", out);
	qctl_json_string(out, env->helo);
	fputs(",\"protocol\":", out);
	qctl_json_string(out, env->protocol);
	fputs(",\"auth_user\":", out);
	qctl_json_string(out, env->auth_user);
	fputs(",\"sender\":", out);
	qctl_json_string(out, env->sender);
	fputs(",\"recipients\":[", out);
	for (size_t i = 0; i < env->n_recipients; i++) {
		const Zfarm__EnvRecipient *r = env->recipients[i];

		fputs(i ? ",{\"address\":" : "{\"address\":", out);
		qctl_json_string(out, r->address);
		fputs(",\"orcpt\":", out);
		qctl_json_string(out, r->orcpt);
		fputs(",\"notify\":", out);
		qctl_json_string(out, qctl_notify(r->notify, buf, sizeof(buf)));
		putc('}', out);
	}
	fputs("],\"envid\":", out);
	qctl_json_string(out, env->envid);
	fputs(",\"ret\":", out);
	qctl_json_string(out, env->ret);
	fputs(",\"body\":", out);
	qctl_json_string(out, env->body);
	fprintf(out, ",\"smtputf8\":%s,\"size_declared\":%llu,\"notice\":",
		env->smtputf8 ? "true" : "false", (unsigned long long)env->size_declared);
	qctl_json_string(out, env->notice);
	putc('}', out);
}

/* ---- LIST printing ---- */

void qctl_list_begin(struct qctl_list_printer *p, FILE *out, bool json, bool verbose, bool filtered)
{
	p->out = out;
	p->json = json;
	p->verbose = verbose;
	p->filtered = filtered;
	p->count = 0;
	p->bytes = 0;
	if (json)
		fputs("{\"entries\":[", out);
}

int qctl_list_print_entry(const Zfarm__QueueEntry *e, void *arg)
{
	struct qctl_list_printer *p = arg;

	if (p->json) {
		if (p->count)
			putc(',', p->out);
		qctl_entry_json(p->out, e);
	} else {
		if (p->count == 0)
			fprintf(p->out, "%-17s%-8s %-20s %s\n", "-Queue ID-", "--Size--",
				"----Arrival Time----", "-Sender/Recipient-------");
		qctl_entry_text(p->out, e, p->verbose);
	}
	p->count++;
	p->bytes += e->size;
	return 0;
}

void qctl_list_end(struct qctl_list_printer *p)
{
	if (p->json) {
		fputs("]}\n", p->out);
	} else if (p->count == 0) {
		fputs(p->filtered ? "No messages match\n" : "Mail queue is empty\n", p->out);
	} else {
		fprintf(p->out, "-- %llu Kbytes in %llu Request%s.\n",
			(unsigned long long)((p->bytes + 1023) / 1024),
			(unsigned long long)p->count, p->count == 1 ? "" : "s");
	}
}

/* ---- SUMMARY and COUNTERS ---- */

void qctl_print_summary(FILE *out, const Zfarm__QueueControlReply *r, bool json)
{
	if (json) {
		fputs("{\"destinations\":[", out);
		for (size_t i = 0; i < r->n_destinations; i++) {
			const Zfarm__DestinationSummary *d = r->destinations[i];

			fputs(i ? ",{\"channel\":" : "{\"channel\":", out);
			qctl_json_string(out, d->channel);
			fputs(",\"nexthop\":", out);
			qctl_json_string(out, d->nexthop);
			fprintf(out,
				",\"messages\":%u,\"recipients\":%u,\"dead\":%s,\"window\":%u,"
				"\"active\":%u}",
				d->messages, d->recipients, d->dead ? "true" : "false", d->window,
				d->active);
		}
		fputs("]}\n", out);
		return;
	}
	if (r->n_destinations == 0) {
		fputs("No destinations with queued mail\n", out);
		return;
	}
	fprintf(out, "%-12s %-32s %8s %10s %6s %6s %s\n", "channel", "nexthop", "messages",
		"recipients", "active", "window", "state");
	for (size_t i = 0; i < r->n_destinations; i++) {
		const Zfarm__DestinationSummary *d = r->destinations[i];
		char ch[64], nh[256];

		log_sanitize(ch, sizeof(ch), d->channel, strlen(d->channel));
		log_sanitize(nh, sizeof(nh), d->nexthop, strlen(d->nexthop));
		fprintf(out, "%-12s %-32s %8u %10u %6u %6u %s\n", ch, *nh ? nh : "-", d->messages,
			d->recipients, d->active, d->window, d->dead ? "dead" : "-");
	}
}

void qctl_print_counters(FILE *out, const Zfarm__QueueControlReply *r, bool json)
{
	if (json) {
		fputs("{\"counters\":[", out);
		for (size_t i = 0; i < r->n_counters; i++) {
			const Zfarm__QueueCounter *q = r->counters[i];

			fputs(i ? ",{\"name\":" : "{\"name\":", out);
			qctl_json_string(out, q->name);
			fputs(",\"channel\":", out);
			qctl_json_string(out, q->channel);
			fprintf(out, ",\"value\":%llu}", (unsigned long long)q->value);
		}
		fputs("]}\n", out);
		return;
	}
	fprintf(out, "%-20s %-12s %14s\n", "counter", "channel", "value");
	for (size_t i = 0; i < r->n_counters; i++) {
		const Zfarm__QueueCounter *q = r->counters[i];
		char name[64], ch[64];

		log_sanitize(name, sizeof(name), q->name, strlen(q->name));
		log_sanitize(ch, sizeof(ch), q->channel, strlen(q->channel));
		fprintf(out, "%-20s %-12s %14llu\n", name, *ch ? ch : "-",
			(unsigned long long)q->value);
	}
}
