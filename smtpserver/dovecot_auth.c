/*
 * dovecot_auth - see dovecot_auth.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "smtpserver/dovecot_auth.h"
#include "smtpserver/sasl.h"

/* ---- parsing and formatting ---- */

/*
 * Unescape the n octets of src into dst (cap octets with the NUL); -1 for
 * a lone \001 at the end.  As Dovecot's str_tabunescape: an escape
 * letter it does not know stands for itself.  An escaped NUL ("\0010")
 * becomes the NUL that ends dst early.
 */
static int tab_unescape(const char *src, size_t n, char *dst, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = src[i];

		if (c == '\001') {
			if (++i == n)
				return -1;
			switch (src[i]) {
			case '0':
				c = '\0';
				break;
			case '1':
				c = '\001';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case 'n':
			case 'l':
				c = '\n';
				break;
			default:
				c = src[i];
				break;
			}
		}
		if (o + 1 < cap)
			dst[o++] = c;
	}
	if (cap > 0)
		dst[o] = '\0';
	return 0;
}

/* Append src tab-escaped to buf at *n; false when it does not fit. */
static bool tab_escape(char *buf, size_t cap, size_t *n, const char *src)
{
	for (; *src; src++) {
		const char *rep = NULL;
		char one[2] = {*src, '\0'};

		switch (*src) {
		case '\001':
			rep = "\0011";
			break;
		case '\t':
			rep = "\001t";
			break;
		case '\r':
			rep = "\001r";
			break;
		case '\n':
			rep = "\001n";
			break;
		default:
			rep = one;
			break;
		}
		for (; *rep; rep++) {
			if (*n + 1 >= cap)
				return false;
			buf[(*n)++] = *rep;
		}
	}
	buf[*n] = '\0';
	return true;
}

static bool field_is(const char *f, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(f, word, n) == 0;
}

static bool parse_ulong(const char *f, size_t n, unsigned long *out)
{
	unsigned long v = 0;

	if (n == 0 || n > 9)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (f[i] < '0' || f[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(f[i] - '0');
	}
	*out = v;
	return true;
}

int dovecot_auth_parse(const char *line, size_t len, struct dovecot_auth_reply *r, char *err,
		       size_t errlen)
{
	static const struct {
		const char *word;
		enum dovecot_auth_type type;
	} types[] = {
	    {"VERSION", DOVECOT_VERSION}, {"MECH", DOVECOT_MECH}, {"SPID", DOVECOT_SPID},
	    {"CUID", DOVECOT_CUID},	  {"COOKIE", DOVECOT_COOKIE}, {"DONE", DOVECOT_DONE},
	    {"OK", DOVECOT_OK},		  {"CONT", DOVECOT_CONT},   {"FAIL", DOVECOT_FAIL},
	};
	const char *f[16];
	size_t fl[16], nf = 0;
	const char *p = line, *end = line + len;

	memset(r, 0, sizeof(*r));
	if (len > 0 && line[len - 1] == '\r')
		end--;
	while (nf < 16) {
		const char *tab = memchr(p, '\t', (size_t)(end - p));

		f[nf] = p;
		fl[nf] = (size_t)((tab ? tab : end) - p);
		nf++;
		if (!tab)
			break;
		p = tab + 1;
	}
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (field_is(f[0], fl[0], types[i].word))
			r->type = types[i].type;
	switch (r->type) {
	case DOVECOT_UNKNOWN:
	case DOVECOT_SPID:
	case DOVECOT_CUID:
	case DOVECOT_COOKIE:
	case DOVECOT_DONE:
		return 0;
	case DOVECOT_VERSION: {
		unsigned long a, b;

		if (nf < 3 || !parse_ulong(f[1], fl[1], &a) || !parse_ulong(f[2], fl[2], &b)) {
			snprintf(err, errlen, "VERSION without a major and minor number");
			return -1;
		}
		r->major = (unsigned)a;
		r->minor = (unsigned)b;
		return 0;
	}
	case DOVECOT_MECH:
		if (nf < 2 || fl[1] == 0 || fl[1] >= sizeof(r->mech)) {
			snprintf(err, errlen, "MECH without a mechanism name");
			return -1;
		}
		for (size_t i = 0; i < fl[1]; i++) {
			char c = f[1][i];

			r->mech[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
		}
		for (size_t i = 2; i < nf; i++)
			if (field_is(f[i], fl[i], "plaintext"))
				r->plaintext = true;
		return 0;
	default:
		break;
	}
	/* OK, CONT, FAIL: an id, then parameters (CONT: the data) */
	if (nf < 2 || !parse_ulong(f[1], fl[1], &r->id)) {
		snprintf(err, errlen, "%.*s without a request id", (int)fl[0], f[0]);
		return -1;
	}
	if (r->type == DOVECOT_CONT)
		return 0;
	for (size_t i = 2; i < nf; i++) {
		if (fl[i] >= 5 && memcmp(f[i], "user=", 5) == 0) {
			if (tab_unescape(f[i] + 5, fl[i] - 5, r->user, sizeof(r->user)) < 0)
				goto bad;
		} else if (fl[i] >= 7 && memcmp(f[i], "reason=", 7) == 0) {
			if (tab_unescape(f[i] + 7, fl[i] - 7, r->reason, sizeof(r->reason)) < 0)
				goto bad;
		} else if (field_is(f[i], fl[i], "temp") ||
			   field_is(f[i], fl[i], "code=temp_fail")) {
			/* "temp" before Dovecot 2.3, "code=temp_fail" since */
			r->temp = true;
		} else if ((fl[i] >= 7 && memcmp(f[i], "nologin", 7) == 0 &&
			    (fl[i] == 7 || f[i][7] == '=')) ||
			   field_is(f[i], fl[i], "proxy")) {
			r->nologin = true;
		}
	}
	return 0;
bad:
	snprintf(err, errlen, "bad escape in a parameter of %.*s", (int)fl[0], f[0]);
	return -1;
}

/* Append src to buf at *n as is (raw) or tab-escaped; false when it does not fit. */
static bool app(char *buf, size_t cap, size_t *n, const char *src, bool raw)
{
	if (raw) {
		size_t k = strlen(src);

		if (*n + k + 1 > cap)
			return false;
		memcpy(buf + *n, src, k + 1);
		*n += k;
		return true;
	}
	return tab_escape(buf, cap, n, src);
}

long dovecot_auth_format(char *buf, size_t cap, unsigned long id, const struct auth_request *req)
{
	size_t ul = strlen(req->user), pl = strlen(req->pass), n = 0;
	unsigned char plain[1 + SASL_USER_MAX + 1 + SASL_PASS_MAX];
	char b64[sizeof(plain) / 3 * 4 + 8], head[64];
	bool ok;

	if (ul > SASL_USER_MAX || pl > SASL_PASS_MAX || cap == 0)
		return -1;
	plain[0] = '\0';
	memcpy(plain + 1, req->user, ul);
	plain[1 + ul] = '\0';
	memcpy(plain + 2 + ul, req->pass, pl);
	ok = base64_encode(plain, 2 + ul + pl, b64, sizeof(b64)) >= 0;
	explicit_bzero(plain, sizeof(plain));
	snprintf(head, sizeof(head), "AUTH\t%lu\tPLAIN\tservice=", id);
	buf[0] = '\0';
	ok = ok && app(buf, cap, &n, head, true) &&
	     app(buf, cap, &n, req->service && req->service[0] ? req->service : "smtp", false) &&
	     app(buf, cap, &n, "\tnologin", true);
	if (ok && req->local_addr && req->local_addr[0])
		ok = app(buf, cap, &n, "\tlip=", true) && app(buf, cap, &n, req->local_addr, false);
	if (ok && req->remote_addr && req->remote_addr[0])
		ok = app(buf, cap, &n, "\trip=", true) && app(buf, cap, &n, req->remote_addr, false);
	if (ok && req->secured)
		ok = app(buf, cap, &n, "\tsecured", true);
	ok = ok && app(buf, cap, &n, "\tresp=", true) && app(buf, cap, &n, b64, true) &&
	     app(buf, cap, &n, "\n", true);
	explicit_bzero(b64, sizeof(b64));
	if (!ok) {
		explicit_bzero(buf, cap);
		return -1;
	}
	return (long)n;
}

/* ---- the client ---- */

struct da_req {
	struct da_req *next;
	unsigned long id;
	char *line; /* the AUTH line, password inside: wiped when answered */
	size_t len;
	auth_done_fn *done;
	void *arg;    /* NULL: cancelled */
	bool retried; /* sent again once after a broken connection */
	char user[SASL_USER_MAX + 1];
};

enum da_state {
	DA_DOWN,      /* no connection */
	DA_HANDSHAKE, /* connected (or connecting), waiting for DONE */
	DA_READY,
};

struct dovecot_auth {
	struct event_base *base;
	char *path;
	struct bufferevent *bev;
	enum da_state state;
	bool has_plain;
	unsigned long next_id;
	struct da_req *waiting; /* not sent yet, in order (tail appended) */
	struct da_req *sent;	/* sent, waiting for OK/FAIL */
	struct event *fail_ev;	/* answers the requests of a failed connect, from the loop */
	char fail_reason[300];
};

static void da_req_free(struct da_req *r)
{
	if (r->line) {
		explicit_bzero(r->line, r->len);
		free(r->line);
	}
	free(r);
}

static void da_append(struct da_req **list, struct da_req *r)
{
	r->next = NULL;
	while (*list)
		list = &(*list)->next;
	*list = r;
}

static void da_connect(struct dovecot_auth *d);

/*
 * da_fail_all - the connection is gone; every request gets TEMPFAIL.
 * With retry (the connection broke, e.g. Dovecot restarted while it was
 * idle), requests not retried before go out once more on a new one: a
 * password check can be asked twice.
 */
static void da_fail(struct dovecot_auth *d, const char *why, bool retry)
{
	struct da_req *lists[2] = {d->sent, d->waiting};

	if (d->bev) {
		bufferevent_free(d->bev);
		d->bev = NULL;
	}
	d->state = DA_DOWN;
	d->sent = d->waiting = NULL;
	if (retry) {
		struct da_req *keep = NULL, **tail = &keep;

		for (int i = 0; i < 2; i++) {
			struct da_req **pp = &lists[i];

			while (*pp) {
				struct da_req *r = *pp;

				if (r->arg && !r->retried) {
					*pp = r->next;
					r->retried = true;
					r->next = NULL;
					*tail = r;
					tail = &r->next;
				} else {
					pp = &r->next;
				}
			}
		}
		if (keep) {
			log_info("dovecot auth server %s: %s; asking again", d->path, why);
			d->waiting = keep;
			da_connect(d);
		}
	}
	if (lists[0] || lists[1])
		log_warn("dovecot auth server %s: %s", d->path, why);
	/* Callbacks may cancel or start requests: the lists are detached first. */
	for (int i = 0; i < 2; i++) {
		struct da_req *r = lists[i], *next;

		for (; r; r = next) {
			next = r->next;
			if (r->arg)
				r->done(r->arg, AUTH_TEMPFAIL, r->user, why);
			da_req_free(r);
		}
	}
}

static void da_fail_all(struct dovecot_auth *d, const char *why)
{
	da_fail(d, why, false);
}

static void da_on_fail(evutil_socket_t fd, short what, void *arg)
{
	struct dovecot_auth *d = arg;

	(void)fd;
	(void)what;
	da_fail_all(d, d->fail_reason);
}

/* da_fail_later - as da_fail_all, from the loop (never inside dovecot_auth_verify). */
static void da_fail_later(struct dovecot_auth *d, const char *why)
{
	struct timeval now = {0, 0};

	if (d->bev) {
		bufferevent_free(d->bev);
		d->bev = NULL;
	}
	d->state = DA_DOWN;
	snprintf(d->fail_reason, sizeof(d->fail_reason), "%s", why);
	event_add(d->fail_ev, &now);
}

static void da_set_timeout(struct dovecot_auth *d)
{
	struct timeval tv = {DOVECOT_AUTH_TIMEOUT_MS / 1000, DOVECOT_AUTH_TIMEOUT_MS % 1000 * 1000};

	/* The server must say something while anything is asked. */
	if (d->bev)
		bufferevent_set_timeouts(d->bev, d->sent || d->state != DA_READY ? &tv : NULL, &tv);
}

static void da_send_waiting(struct dovecot_auth *d)
{
	struct evbuffer *out = bufferevent_get_output(d->bev);
	struct da_req *r;

	while ((r = d->waiting)) {
		d->waiting = r->next;
		if (!r->arg) {
			da_req_free(r);
			continue;
		}
		evbuffer_add(out, r->line, r->len);
		da_append(&d->sent, r);
	}
	da_set_timeout(d);
}

static struct da_req *da_take_sent(struct dovecot_auth *d, unsigned long id)
{
	for (struct da_req **pp = &d->sent; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			struct da_req *r = *pp;

			*pp = r->next;
			return r;
		}
	}
	return NULL;
}

/* da_line - one server line; false when the connection was dropped. */
static bool da_line(struct dovecot_auth *d, const char *line, size_t len)
{
	struct dovecot_auth_reply rep;
	char why[300];
	struct da_req *r;

	if (dovecot_auth_parse(line, len, &rep, why, sizeof(why)) < 0) {
		char msg[400];

		snprintf(msg, sizeof(msg), "protocol error: %s", why);
		da_fail_all(d, msg);
		return false;
	}
	switch (rep.type) {
	case DOVECOT_VERSION:
		if (rep.major != 1) {
			snprintf(why, sizeof(why), "speaks protocol version %u.%u, not 1.x",
				 rep.major, rep.minor);
			da_fail_all(d, why);
			return false;
		}
		return true;
	case DOVECOT_MECH:
		if (strcmp(rep.mech, "PLAIN") == 0)
			d->has_plain = true;
		return true;
	case DOVECOT_DONE:
		if (d->state != DA_HANDSHAKE)
			return true;
		if (!d->has_plain) {
			da_fail_all(d, "it does not offer the PLAIN mechanism");
			return false;
		}
		d->state = DA_READY;
		da_send_waiting(d);
		return true;
	case DOVECOT_OK:
	case DOVECOT_FAIL:
		r = da_take_sent(d, rep.id);
		if (!r)
			return true; /* a cancelled request's answer, or garbage: ignored */
		if (r->arg) {
			enum auth_result res = rep.type == DOVECOT_FAIL ? (rep.temp ? AUTH_TEMPFAIL
										    : AUTH_FAIL)
					       : rep.nologin		 ? AUTH_FAIL
									 : AUTH_OK;
			const char *user = r->user;

			/* "OK ... nologin" (or proxy): verified, but not to be let in */
			if (rep.type == DOVECOT_OK && rep.nologin && !rep.reason[0])
				snprintf(rep.reason, sizeof(rep.reason), "login disabled (nologin)");
			/* Dovecot's name for the user, when it is one we can log and store */
			if (rep.user[0] && strcspn(rep.user, "\001\t\r\n \177") == strlen(rep.user))
				user = rep.user;
			r->done(r->arg, res, user, rep.reason);
		}
		da_req_free(r);
		da_set_timeout(d);
		return d->bev != NULL;
	case DOVECOT_CONT:
		/* PLAIN with its response needs no round: a server that asks is broken. */
		da_fail_all(d, "protocol error: CONT for a PLAIN request with a response");
		return false;
	default:
		return true;
	}
}

static void da_on_read(struct bufferevent *bev, void *arg)
{
	struct dovecot_auth *d = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		struct evbuffer_ptr p = evbuffer_search(in, "\n", 1, NULL);
		size_t len;
		char *line;

		if (p.pos < 0) {
			if (evbuffer_get_length(in) > DOVECOT_AUTH_LINE_MAX)
				da_fail_all(d, "protocol error: a line too long");
			return;
		}
		len = (size_t)p.pos;
		if (len > DOVECOT_AUTH_LINE_MAX) {
			da_fail_all(d, "protocol error: a line too long");
			return;
		}
		line = (char *)evbuffer_pullup(in, (ssize_t)len + 1);
		if (!da_line(d, line, len))
			return; /* bev is gone */
		evbuffer_drain(in, len + 1);
	}
}

static void da_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct dovecot_auth *d = arg;
	char why[300];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT) {
		snprintf(why, sizeof(why), "no answer within %d s", DOVECOT_AUTH_TIMEOUT_MS / 1000);
		da_fail_all(d, why);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		snprintf(why, sizeof(why), "%s", strerror(EVUTIL_SOCKET_ERROR()));
	else
		snprintf(why, sizeof(why), "closed the connection");
	da_fail(d, why, true);
}

static void da_connect(struct dovecot_auth *d)
{
	struct sockaddr_un sun;
	char hello[64], why[300];

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", d->path);
	d->bev = bufferevent_socket_new(d->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!d->bev) {
		da_fail_later(d, "cannot make a bufferevent");
		return;
	}
	d->state = DA_HANDSHAKE;
	d->has_plain = false;
	bufferevent_setcb(d->bev, da_on_read, NULL, da_on_event, d);
	bufferevent_setwatermark(d->bev, EV_READ, 0, 2 * DOVECOT_AUTH_LINE_MAX);
	if (bufferevent_socket_connect(d->bev, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(why, sizeof(why), "cannot connect: %s", strerror(errno));
		da_fail_later(d, why);
		return;
	}
	snprintf(hello, sizeof(hello), "VERSION\t1\t2\nCPID\t%ld\n", (long)getpid());
	bufferevent_write(d->bev, hello, strlen(hello));
	bufferevent_enable(d->bev, EV_READ | EV_WRITE);
	da_set_timeout(d);
}

static void *da_open(struct event_base *base, const char *path, char *err, size_t errlen)
{
	struct dovecot_auth *d;

	if (!path || !path[0]) {
		snprintf(err, errlen, "no Dovecot auth socket (smtpd_sasl_path)");
		return NULL;
	}
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "%s: socket path too long", path);
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->path = xstrdup(path);
	d->fail_ev = event_new(base, -1, 0, da_on_fail, d);
	if (!d->fail_ev) {
		snprintf(err, errlen, "cannot make an event");
		free(d->path);
		free(d);
		return NULL;
	}
	return d;
}

static void da_verify(void *be, const struct auth_request *req, auth_done_fn *done, void *arg)
{
	struct dovecot_auth *d = be;
	struct da_req *r = xcalloc(1, sizeof(*r));
	long n;

	r->done = done;
	r->arg = arg;
	snprintf(r->user, sizeof(r->user), "%s", req->user);
	r->id = ++d->next_id;
	r->line = xmalloc(DOVECOT_AUTH_LINE_MAX);
	n = dovecot_auth_format(r->line, DOVECOT_AUTH_LINE_MAX, r->id, req);
	r->len = n > 0 ? (size_t)n : 0;
	da_append(&d->waiting, r);
	if (n < 0) {
		/* Cannot happen: the session bounds user and password (sasl.h). */
		da_fail_later(d, "a request too long");
		return;
	}
	if (d->state == DA_DOWN && !event_pending(d->fail_ev, EV_TIMEOUT, NULL))
		da_connect(d);
	else if (d->state == DA_READY)
		da_send_waiting(d);
}

static void da_cancel(void *be, void *arg)
{
	struct dovecot_auth *d = be;
	struct da_req *lists[2] = {d->waiting, d->sent};

	for (int i = 0; i < 2; i++)
		for (struct da_req *r = lists[i]; r; r = r->next)
			if (r->arg == arg)
				r->arg = NULL;
}

static void da_close(void *be)
{
	struct dovecot_auth *d = be;
	struct da_req *r, *next;

	if (!d)
		return;
	if (d->bev)
		bufferevent_free(d->bev);
	for (r = d->waiting; r; r = next) {
		next = r->next;
		da_req_free(r);
	}
	for (r = d->sent; r; r = next) {
		next = r->next;
		da_req_free(r);
	}
	event_free(d->fail_ev);
	free(d->path);
	free(d);
}

const struct auth_backend_ops dovecot_auth_backend = {
    .name = "dovecot",
    .open = da_open,
    .verify = da_verify,
    .cancel = da_cancel,
    .close = da_close,
};
