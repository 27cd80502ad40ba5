/*
 * sendmail - the sendmail-compatible submission command: read a message on
 * standard input and hand it to the smtpserver farm, over SMTP on
 * $run_directory/public/submit (a trusted local socket).
 *
 *   sendmail [-C config] [-o name=value]... [-t] [-i] [-f sender]
 *            [-F name] [-N dsn] [-R ret] [-V envid] [-B type] [-v]
 *            [-bm | -bv | -bs] [--] [recipient...]
 *
 * Submission is synchronous: when sendmail exits 0 the message is in the
 * queue.  Flow of -bm (the default): the header block is read and kept
 * (at most SM_HEADER_MAX octets: -t needs the recipients before RCPT),
 * recipients come from the arguments and with -t from To/Cc/Bcc, then
 * EHLO, MAIL, RCPT, DATA; the header goes out without Bcc: and with
 * From:, Date: and Message-ID: added where missing, and the body is
 * streamed from stdin through the encoder of tools/smtp_submit.c (CR LF
 * line ends, dot-stuffing, long lines broken), so any size takes bounded
 * memory.  -bv asks RCPT for each recipient and sends nothing; -bs relays
 * an SMTP session between stdin/stdout and the socket.
 *
 * Option clashes: zfarm tools take -c CONFIG and -o name=value, sendmail
 * has its own -C (config file) and -oX (legacy options).  Here -C names the
 * config file ($ZFARM_CONFIG when absent), "-o name=value" (an argument
 * holding '=') is a zfarm override, and -oX without '=' keeps sendmail's
 * meaning: -oi is -i, any other is ignored.
 *
 * Exit statuses (sysexits.h; sendmail(1) has the table): 0 queued;
 * EX_USAGE bad options or no recipients; EX_DATAERR bad input (header over
 * SM_HEADER_MAX, a NUL octet); EX_NOUSER some recipients refused with 5xx
 * (the others got the message); EX_UNAVAILABLE a 5xx to the connection,
 * MAIL, DATA or the message, or -bv found an undeliverable recipient;
 * EX_TEMPFAIL a 4xx anywhere, or the mail system is not running (nothing
 * was queued); EX_SOFTWARE the server broke the protocol; EX_IOERR reading
 * stdin or writing stdout failed; EX_OSERR no login name; EX_CONFIG a bad
 * configuration.
 */
#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "tools/smtp_submit.h"

/* The header block is kept in memory for -t: at most this many octets. */
#define SM_HEADER_MAX (1024 * 1024)
/* The smtpserver farm's socket for local submission, under run_directory. */
#define SM_SOCKET "public/submit"
#define SM_IN_BUF 65536
/* RFC 3461 4.4: ENVID at most 100 characters (xtext-encoded). */
#define SM_ENVID_MAX 100

enum sm_mode {
	SM_MODE_DELIVER, /* -bm */
	SM_MODE_VERIFY,	 /* -bv */
	SM_MODE_SMTP,	 /* -bs */
};

struct sm_opts {
	enum sm_mode mode;
	bool extract;	       /* -t */
	bool ignore_dots;      /* -i, -oi */
	bool verbose;	       /* -v */
	const char *sender;    /* -f / -r; NULL: the invoking user */
	const char *full_name; /* -F; NULL: $NAME */
	char notify[64];       /* -N as NOTIFY= value, "" when absent */
	const char *ret;       /* -R as RET= value */
	const char *body;      /* -B as BODY= value */
	char *envid;	       /* -V, xtext-encoded */
	const char *config_path;
	char **overrides;
	size_t n_overrides;
	char **rcpt_args;
	size_t n_rcpt_args;
};

/* ---- messages and exits ---- */

static void __attribute__((format(printf, 1, 2))) sm_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", log_progname());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	putc('\n', stderr);
}

static void __attribute__((noreturn)) usage(const char *why)
{
	if (why)
		sm_error("%s", why);
	fprintf(stderr,
		"usage: sendmail [-C config] [-o name=value]... [-t] [-i] [-f sender] [-F name]\n"
		"                [-N never|success,failure,delay] [-R full|hdrs] [-V envid]\n"
		"                [-B 7bit|8bitmime] [-v] [-bm|-bv|-bs] [--] [recipient...]\n");
	exit(EX_USAGE);
}

/* sm_status_of_code - the exit status a reply code stands for (0 for 2xx). */
static int sm_status_of_code(int code)
{
	switch (code / 100) {
	case 2:
		return 0;
	case 4:
		return EX_TEMPFAIL;
	case 5:
		return EX_UNAVAILABLE;
	default:
		return EX_SOFTWARE;
	}
}

static int sm_status_of_io(enum smtp_submit_status st)
{
	return st == SMTP_SUBMIT_PROTOCOL ? EX_SOFTWARE : EX_TEMPFAIL;
}

/* ---- options ---- */

/* sm_optarg - an option's value: the rest of this argument or the next one. */
static char *sm_optarg(char opt, char *rest, int argc, char **argv, int *i)
{
	char why[64];

	if (*rest)
		return rest;
	if (*i + 1 >= argc) {
		snprintf(why, sizeof(why), "option -%c needs a value", opt);
		usage(why);
	}
	return argv[++*i];
}

/* sm_opt_notify - "-N never" or "-N success,failure,delay" as NOTIFY=. */
static void sm_opt_notify(struct sm_opts *o, const char *v)
{
	static const char *const words[] = {"success", "failure", "delay"};
	char *copy = xstrdup(v), *save = NULL;
	bool never = false, any = false;

	o->notify[0] = '\0';
	for (char *w = strtok_r(copy, ", \t", &save); w; w = strtok_r(NULL, ", \t", &save)) {
		size_t k;

		if (strcasecmp(w, "never") == 0) {
			never = true;
			continue;
		}
		for (k = 0; k < sizeof(words) / sizeof(words[0]); k++)
			if (strcasecmp(w, words[k]) == 0)
				break;
		if (k == sizeof(words) / sizeof(words[0])) {
			free(copy);
			usage("-N takes never, or success, failure and delay separated by commas");
		}
		if (strcasestr(o->notify, words[k]))
			continue;
		if (any)
			strcat(o->notify, ",");
		for (const char *p = words[k]; *p; p++) {
			size_t n = strlen(o->notify);

			o->notify[n] = (char)(*p - 'a' + 'A');
			o->notify[n + 1] = '\0';
		}
		any = true;
	}
	free(copy);
	if (never && any)
		usage("-N never cannot be combined with other values");
	if (!never && !any)
		usage("-N needs a value");
	if (never)
		snprintf(o->notify, sizeof(o->notify), "NEVER");
}

/* sm_xtext - s as RFC 3461 xtext; NULL if s holds a control character. */
static char *sm_xtext(const char *s)
{
	struct strbuf sb = STRBUF_INIT;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x21 && *p != ' ') {
			strbuf_release(&sb);
			return NULL;
		}
		if (*p < 0x21 || *p > 0x7e || *p == '+' || *p == '=')
			strbuf_printf(&sb, "+%02X", *p);
		else
			strbuf_append_char(&sb, (char)*p);
	}
	strbuf_append(&sb, "", 0);
	return strbuf_steal(&sb);
}

/* sm_opt_mode - -bX. */
static void sm_opt_mode(struct sm_opts *o, const char *v)
{
	if (strcmp(v, "m") == 0)
		o->mode = SM_MODE_DELIVER;
	else if (strcmp(v, "v") == 0)
		o->mode = SM_MODE_VERIFY;
	else if (strcmp(v, "s") == 0)
		o->mode = SM_MODE_SMTP;
	else if (strcmp(v, "p") == 0)
		usage("-bp is not supported: use mailq(1)");
	else if (strcmp(v, "i") == 0)
		usage("-bi is not supported: zfarm has no alias database to rebuild");
	else if (strcmp(v, "d") == 0 || strcmp(v, "D") == 0)
		usage("-bd is not supported: the smtpserver farm of farmd(8) receives mail");
	else
		usage("unknown mode: -b takes m, v or s");
}

static void sm_parse_options(struct sm_opts *o, int argc, char **argv)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->overrides = xcalloc((size_t)argc, sizeof(*o->overrides));
	for (i = 1; i < argc; i++) {
		char *a = argv[i];
		bool took_value = false;

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		for (char *p = a + 1; *p && !took_value; p++) {
			char opt = *p, *v = NULL;
			char why[128];

			/* Options with a value take the rest of the argument or the next one. */
			if (strchr("CfrFNRVBbohALO", opt)) {
				v = sm_optarg(opt, p + 1, argc, argv, &i);
				took_value = true;
			}
			switch (opt) {
			case 't':
				o->extract = true;
				break;
			case 'i':
				o->ignore_dots = true;
				break;
			case 'v':
				o->verbose = true;
				break;
			case 'm': /* also send to me: always so */
			case 'n': /* no aliasing */
			case 'U': /* initial user submission */
			case 'G': /* gateway submission */
				break;
			case 'h': /* hop count */
			case 'A': /* -Ac, -Am: which sendmail config */
			case 'L': /* syslog label */
			case 'O': /* -O LongOption=value */
				break;
			case 'C':
				o->config_path = v;
				break;
			case 'f':
			case 'r':
				o->sender = v;
				break;
			case 'F':
				o->full_name = v;
				break;
			case 'N':
				sm_opt_notify(o, v);
				break;
			case 'R':
				if (strcasecmp(v, "full") == 0)
					o->ret = "FULL";
				else if (strcasecmp(v, "hdrs") == 0)
					o->ret = "HDRS";
				else
					usage("-R takes full or hdrs");
				break;
			case 'V':
				free(o->envid);
				o->envid = sm_xtext(v);
				if (!o->envid || strlen(o->envid) > SM_ENVID_MAX)
					usage("-V: the envelope ID must be at most 100 characters "
					      "as xtext, without control characters");
				break;
			case 'B':
				if (strcasecmp(v, "7bit") == 0)
					o->body = "7BIT";
				else if (strcasecmp(v, "8bitmime") == 0)
					o->body = "8BITMIME";
				else
					usage("-B takes 7bit or 8bitmime");
				break;
			case 'b':
				sm_opt_mode(o, v);
				break;
			case 'o':
				/* "name=value" is a zfarm override, -oi is -i, other -oX are
				 * ignored. */
				if (strchr(v, '='))
					o->overrides[o->n_overrides++] = v;
				else if (strcmp(v, "i") == 0)
					o->ignore_dots = true;
				break;
			case 'q':
				usage("-q is not supported: use \"zfqueue flush\" to retry the "
				      "queue");
			case 'c':
				usage("unknown option -c: the configuration file is given with -C");
			default:
				snprintf(why, sizeof(why), "unknown option -%c", opt);
				usage(why);
			}
		}
	}
	o->rcpt_args = argv + i;
	o->n_rcpt_args = (size_t)(argc - i);
}

/* ---- configuration ---- */

struct sm_site {
	struct config *cfg;
	const char *myhostname; /* owned by cfg */
	const char *origin;	/* $myorigin, else $myhostname: appended to bare names */
	char socket_path[4200];
};

static int sm_site_load(struct sm_site *s, const struct sm_opts *o)
{
	const char *path = o->config_path ? o->config_path : paths_config_file();
	char err[1024], dir[4096];

	memset(s, 0, sizeof(*s));
	s->cfg = config_new();
	paths_set_defaults(s->cfg);
	for (size_t i = 0; i < o->n_overrides; i++) {
		if (config_override(s->cfg, o->overrides[i], err, sizeof(err)) < 0)
			goto fail;
	}
	if (path && *path && config_load(s->cfg, path, err, sizeof(err)) < 0)
		goto fail;
	if (config_get_string(s->cfg, NULL, NULL, "myhostname", "localhost", &s->myhostname, err,
			      sizeof(err)) < 0 ||
	    config_get_string(s->cfg, NULL, NULL, "myorigin", NULL, &s->origin, err, sizeof(err)) <
		0)
		goto fail;
	if (!s->origin || !*s->origin)
		s->origin = s->myhostname;
	if (farmd_run_directory(s->cfg, dir, sizeof(dir), err, sizeof(err)) < 0)
		goto fail;
	if ((size_t)snprintf(s->socket_path, sizeof(s->socket_path), "%s/%s", dir, SM_SOCKET) >=
	    sizeof(s->socket_path)) {
		snprintf(err, sizeof(err), "run directory too long: %.900s", dir);
		goto fail;
	}
	return 0;
fail:
	sm_error("%s", err);
	config_free(&s->cfg);
	return -1;
}

/* ---- addresses ---- */

typedef void sm_addr_fn(void *arg, const char *addr);

/*
 * sm_addr_list - call fn for every address of an RFC 5322 address list
 * (also a plain "a@b, c@d" argument): comments and white space go,
 * quoted strings and domain literals stay as written, "Name <addr>" gives
 * addr, a group "name: a, b;" gives its members, a source route
 * "<@r1,@r2:u@d>" gives u@d, empty entries give nothing.  Garbage gives
 * garbage addresses, for the server to refuse; never more than the input.
 */
static void sm_addr_list(const char *s, size_t n, sm_addr_fn *fn, void *arg)
{
	struct strbuf cur = STRBUF_INIT, angle = STRBUF_INIT;
	bool in_angle = false, have_angle = false;
	size_t i = 0;

	/* One more round with a ',' at the end flushes the last address. */
	while (i <= n) {
		struct strbuf *dst = in_angle ? &angle : &cur;
		char ch = i < n ? s[i] : ',';

		if (i == n)
			in_angle = false; /* an unclosed '<' */

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			i++;
		} else if (ch == '(') {
			/* A comment, nested, with quoted pairs. */
			int depth = 0;

			for (; i < n; i++) {
				if (s[i] == '\\' && i + 1 < n)
					i++;
				else if (s[i] == '(')
					depth++;
				else if (s[i] == ')' && --depth == 0)
					break;
			}
			i = i < n ? i + 1 : n; /* past ')', or unclosed: to the end */
		} else if (ch == '"' || ch == '[') {
			/* A quoted string or domain literal, kept as written. */
			char close = ch == '"' ? '"' : ']';

			strbuf_append_char(dst, ch);
			for (i++; i < n && s[i] != close; i++) {
				if (s[i] == '\\' && i + 1 < n)
					strbuf_append_char(dst, s[i++]);
				strbuf_append_char(dst, s[i]);
			}
			strbuf_append_char(dst, close);
			i = i < n ? i + 1 : n;
		} else if (!in_angle && (ch == ',' || ch == ';')) {
			/* End of an address (';' ends a group). */
			struct strbuf *a = have_angle ? &angle : &cur;

			if (a->len)
				fn(arg, a->data);
			strbuf_reset(&cur);
			strbuf_reset(&angle);
			have_angle = false;
			i++;
		} else if (!in_angle && ch == ':') {
			/* What came before was a group's name. */
			strbuf_reset(&cur);
			have_angle = false;
			i++;
		} else if (!in_angle && ch == '<') {
			in_angle = have_angle = true;
			strbuf_reset(&angle);
			i++;
		} else if (in_angle && ch == '>') {
			in_angle = false;
			i++;
		} else if (in_angle && ch == ':') {
			/* The end of a source route: only what follows is the address. */
			strbuf_reset(&angle);
			i++;
		} else if (ch == '<' || ch == '>') {
			i++; /* stray */
		} else {
			strbuf_append_char(dst, ch);
			i++;
		}
	}
	strbuf_release(&cur);
	strbuf_release(&angle);
}

/* sm_has_domain - an '@' outside quoted strings. */
static bool sm_has_domain(const char *a)
{
	bool quoted = false;

	for (; *a; a++) {
		if (*a == '\\' && a[1])
			a++;
		else if (*a == '"')
			quoted = !quoted;
		else if (*a == '@' && !quoted)
			return true;
	}
	return false;
}

/* sm_address_ok - fit for an SMTP command line: printable, not too long. */
static bool sm_address_ok(const char *a)
{
	size_t n = strlen(a);

	if (n == 0 || n > 254)
		return false;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* sm_qualify - a with "@origin" appended when it has no domain (new string). */
static char *sm_qualify(const char *a, const char *origin)
{
	return sm_has_domain(a) ? xstrdup(a) : xasprintf("%s@%s", a, origin);
}

/* The recipients, in order, without duplicates (exact match). */
struct sm_rcpts {
	char **v;
	size_t n, cap;
	size_t *slots; /* hash set of indexes + 1, 0: free */
	size_t nslots;
	const char *origin;
};

static size_t sm_hash(const char *s)
{
	size_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void sm_rcpts_add(void *arg, const char *addr)
{
	struct sm_rcpts *r = arg;
	char *a = sm_qualify(addr, r->origin);
	size_t h;

	if (r->n * 2 >= r->nslots) {
		size_t nslots = r->nslots ? r->nslots * 2 : 64;
		size_t *slots = xcalloc(nslots, sizeof(*slots));

		for (size_t i = 0; i < r->n; i++) {
			for (h = sm_hash(r->v[i]) & (nslots - 1); slots[h];
			     h = (h + 1) & (nslots - 1))
				;
			slots[h] = i + 1;
		}
		free(r->slots);
		r->slots = slots;
		r->nslots = nslots;
	}
	for (h = sm_hash(a) & (r->nslots - 1); r->slots[h]; h = (h + 1) & (r->nslots - 1)) {
		if (strcmp(r->v[r->slots[h] - 1], a) == 0) {
			free(a);
			return;
		}
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->v = xreallocarray(r->v, r->cap, sizeof(*r->v));
	}
	r->v[r->n++] = a;
	r->slots[h] = r->n;
}

static void sm_rcpts_free(struct sm_rcpts *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	free(r->slots);
	memset(r, 0, sizeof(*r));
}

/* sm_first_addr - keeps the first address of a list and counts them. */
struct sm_first {
	char *addr;
	size_t count;
};

static void sm_first_add(void *arg, const char *addr)
{
	struct sm_first *f = arg;

	if (f->count++ == 0)
		f->addr = xstrdup(addr);
}

/*
 * sm_sender - the envelope sender: -f (strip <>, "" or "<>" is the null
 * sender), else the invoking user's login name; qualified with @origin.
 * NULL after a message, with *status set.
 */
static char *sm_sender(const struct sm_opts *o, const struct sm_site *site, int *status)
{
	struct sm_first f = {NULL, 0};
	char *sender;

	if (o->sender) {
		const char *s = o->sender;

		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || strcmp(s, "<>") == 0)
			return xstrdup("");
		sm_addr_list(s, strlen(s), sm_first_add, &f);
		if (f.count != 1) {
			sm_error("bad sender address \"%s\"", o->sender);
			free(f.addr);
			*status = EX_USAGE;
			return NULL;
		}
		sender = sm_qualify(f.addr, site->origin);
		free(f.addr);
	} else {
		struct passwd *pw = getpwuid(getuid());
		const char *login = pw ? pw->pw_name : getenv("LOGNAME");

		if (!login || !*login)
			login = getenv("USER");
		if (!login || !*login) {
			sm_error("no login name for user ID %lu: give the sender with -f",
				 (unsigned long)getuid());
			*status = EX_OSERR;
			return NULL;
		}
		sender = xasprintf("%s@%s", login, site->origin);
	}
	if (!sm_address_ok(sender)) {
		sm_error("bad sender address \"%s\"", sender);
		free(sender);
		*status = EX_USAGE;
		return NULL;
	}
	return sender;
}

/* ---- standard input ---- */

struct sm_input {
	int fd;
	bool eof;
	size_t pos, len; /* unread: buf[pos..len) */
	char buf[SM_IN_BUF];
};

/* sm_input_fill - more input when all is read: 1 got some, 0 end, -1 error. */
static int sm_input_fill(struct sm_input *in)
{
	ssize_t n;

	if (in->pos < in->len)
		return 1;
	if (in->eof)
		return 0;
	do
		n = read(in->fd, in->buf, sizeof(in->buf));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		sm_error("error reading the message: %s", strerror(errno));
		return -1;
	}
	in->pos = 0;
	in->len = (size_t)n;
	if (n == 0)
		in->eof = true;
	return n > 0;
}

enum sm_line {
	SM_LINE_ERROR = -1,
	SM_LINE_EOF,	 /* nothing more */
	SM_LINE_FULL,	 /* a line with its LF, or the last one without */
	SM_LINE_PARTIAL, /* max octets and no LF yet: the line goes on */
};

/* sm_read_line - raw octets of the next line (LF included) appended to line. */
static enum sm_line sm_read_line(struct sm_input *in, struct strbuf *line, size_t max)
{
	for (;;) {
		int rc = sm_input_fill(in);

		if (rc < 0)
			return SM_LINE_ERROR;
		if (rc == 0)
			return line->len ? SM_LINE_FULL : SM_LINE_EOF;
		char *p = in->buf + in->pos;
		char *nl = memchr(p, '\n', in->len - in->pos);
		size_t k = nl ? (size_t)(nl - p) + 1 : in->len - in->pos;

		if (line->len + k > max) {
			k = max - line->len;
			strbuf_append(line, p, k);
			in->pos += k;
			return SM_LINE_PARTIAL;
		}
		strbuf_append(line, p, k);
		in->pos += k;
		if (nl)
			return SM_LINE_FULL;
	}
}

/* ---- the header ---- */

enum sm_header_end {
	SM_END_BLANK, /* an empty line */
	SM_END_BODY,  /* a line that is no header line: the body's first */
	SM_END_INPUT, /* end of input, or a lone "." line */
};

struct sm_field {
	size_t off, len; /* in text: "Name: value\n\tcontinued\n" */
	size_t name_len; /* "Name" */
	bool drop;
};

struct sm_header {
	struct strbuf text; /* the fields, CRs dropped, lines ending in LF */
	struct sm_field *f;
	size_t n, cap;
	enum sm_header_end end;
	struct strbuf first_body; /* SM_END_BODY: that line's raw octets (maybe partial) */
};

/*
 * sm_field_kind - is the line (no LF) a field "Name:" ("Name :" too)?
 * 1 yes (*name_len set), 0 no, -1 cannot tell yet: all of it could still
 * be the start of a name.
 */
static int sm_field_kind(const char *s, size_t n, size_t *name_len)
{
	size_t i = 0, j;

	while (i < n && (unsigned char)s[i] > 32 && (unsigned char)s[i] < 127 && s[i] != ':')
		i++;
	if (i == 0)
		return n == 0 ? -1 : 0;
	for (j = i; j < n && (s[j] == ' ' || s[j] == '\t');)
		j++;
	if (j == n)
		return -1;
	*name_len = i;
	return s[j] == ':' ? 1 : 0;
}

/* sm_norm - the raw line without CRs and its LF, into norm. */
static void sm_norm(const struct strbuf *raw, struct strbuf *norm)
{
	strbuf_reset(norm);
	for (size_t i = 0; i < raw->len; i++)
		if (raw->data[i] != '\r' && raw->data[i] != '\n')
			strbuf_append_char(norm, raw->data[i]);
	strbuf_append(norm, "", 0);
}

static bool sm_field_is(const struct sm_header *h, const struct sm_field *f, const char *name)
{
	return f->name_len == strlen(name) &&
	       strncasecmp(h->text.data + f->off, name, f->name_len) == 0;
}

static bool sm_header_has(const struct sm_header *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (sm_field_is(h, &h->f[i], name))
			return true;
	return false;
}

/*
 * sm_header_read - read the header block: every field with its
 * continuation lines, up to an empty line, a line that is not part of a
 * header (kept raw in first_body), or the end of input (EOF, or "." alone
 * without -i).  A first line "From " (an mbox separator) is dropped.
 * 0, or an exit status after a message.
 */
static int sm_header_read(struct sm_header *h, struct sm_input *in, bool ignore_dots)
{
	struct strbuf raw = STRBUF_INIT, norm = STRBUF_INIT;
	size_t used = 0, name_len = 0;
	bool first = true;
	int status = 0;

	for (;;) {
		enum sm_line r;
		int kind;

		strbuf_reset(&raw);
		r = sm_read_line(in, &raw, SM_HEADER_MAX - used);
		if (r == SM_LINE_ERROR) {
			status = EX_IOERR;
			break;
		}
		if (r == SM_LINE_EOF) {
			h->end = SM_END_INPUT;
			break;
		}
		sm_norm(&raw, &norm);
		kind = sm_field_kind(norm.data, norm.len, &name_len);
		bool cont = h->n > 0 && (norm.data[0] == ' ' || norm.data[0] == '\t');

		if (r == SM_LINE_PARTIAL) {
			if (kind != 0 || cont) {
				sm_error("message header longer than %d octets", SM_HEADER_MAX);
				status = EX_DATAERR;
				break;
			}
			/* A body line that does not fit: the body starts within it. */
			h->end = SM_END_BODY;
			strbuf_append(&h->first_body, raw.data, raw.len);
			break;
		}
		if (!ignore_dots && strcmp(norm.data, ".") == 0) {
			h->end = SM_END_INPUT;
			break;
		}
		used += raw.len;
		if (first && strncmp(norm.data, "From ", 5) == 0) {
			first = false;
			continue;
		}
		first = false;
		if (norm.len == 0) {
			h->end = SM_END_BLANK;
			break;
		}
		if (cont) {
			strbuf_append(&h->text, norm.data, norm.len);
			strbuf_append_char(&h->text, '\n');
			h->f[h->n - 1].len += norm.len + 1;
			continue;
		}
		if (kind != 1) {
			h->end = SM_END_BODY;
			strbuf_append(&h->first_body, raw.data, raw.len);
			break;
		}
		if (h->n == h->cap) {
			h->cap = h->cap ? h->cap * 2 : 32;
			h->f = xreallocarray(h->f, h->cap, sizeof(*h->f));
		}
		h->f[h->n++] = (struct sm_field){h->text.len, norm.len + 1, name_len, false};
		strbuf_append(&h->text, norm.data, norm.len);
		strbuf_append_char(&h->text, '\n');
	}
	strbuf_release(&raw);
	strbuf_release(&norm);
	return status;
}

/*
 * sm_header_extract - -t: the recipients of To:, Cc: and Bcc:, or of
 * Resent-To:, Resent-Cc: and Resent-Bcc: when the message has any of
 * those (it is being resent: the original recipients are done).
 */
static void sm_header_extract(const struct sm_header *h, struct sm_rcpts *r)
{
	static const char *const plain[] = {"to", "cc", "bcc"};
	static const char *const resent[] = {"resent-to", "resent-cc", "resent-bcc"};
	const char *const *names = plain;

	for (size_t k = 0; k < 3; k++)
		if (sm_header_has(h, resent[k]))
			names = resent;
	for (size_t i = 0; i < h->n; i++) {
		const struct sm_field *f = &h->f[i];

		for (size_t k = 0; k < 3; k++) {
			if (!sm_field_is(h, f, names[k]))
				continue;
			const char *v = memchr(h->text.data + f->off, ':', f->len);

			v++;
			sm_addr_list(v, (size_t)(h->text.data + f->off + f->len - v), sm_rcpts_add,
				     r);
		}
	}
}

static void sm_header_free(struct sm_header *h)
{
	strbuf_release(&h->text);
	strbuf_release(&h->first_body);
	free(h->f);
	memset(h, 0, sizeof(*h));
}

/* sm_quote_name - a display name as a quoted string, controls dropped. */
static void sm_quote_name(struct strbuf *out, const char *name)
{
	strbuf_append_char(out, '"');
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			continue;
		if (*p == '"' || *p == '\\')
			strbuf_append_char(out, '\\');
		strbuf_append_char(out, (char)*p);
	}
	strbuf_append_char(out, '"');
}

/*
 * sm_header_added - the fields the message lacks, as text lines: From:
 * (the sender, with -F or $NAME as display name), Date:, Message-ID:.
 */
static void sm_header_added(const struct sm_header *h, const struct sm_opts *o,
			    const struct sm_site *site, const char *sender, struct strbuf *out)
{
	if (!sm_header_has(h, "from")) {
		const char *name = o->full_name ? o->full_name : getenv("NAME");
		char *addr =
		    *sender ? xstrdup(sender) : xasprintf("MAILER-DAEMON@%s", site->origin);

		strbuf_append_str(out, "From: ");
		if (name && *name) {
			sm_quote_name(out, name);
			strbuf_printf(out, " <%s>\n", addr);
		} else {
			strbuf_printf(out, "%s\n", addr);
		}
		free(addr);
	}
	if (!sm_header_has(h, "date")) {
		char date[64];

		clock_format_rfc5322(time(NULL), date, sizeof(date));
		strbuf_printf(out, "Date: %s\n", date);
	}
	if (!sm_header_has(h, "message-id")) {
		unsigned int rnd[2];

		if (getentropy(rnd, sizeof(rnd)) < 0) {
			rnd[0] = (unsigned int)clock_now_us();
			rnd[1] = (unsigned int)getpid() * 2654435761u;
		}
		strbuf_printf(out, "Message-ID: <%lld.%ld.%08x%08x@%s>\n", (long long)time(NULL),
			      (long)getpid(), rnd[0], rnd[1], site->myhostname);
	}
}

/* ---- SMTP ---- */

/* sm_session - a connection after the greeting and EHLO. */
static struct smtp_submit *sm_session(const struct sm_site *site, bool verbose, int *status)
{
	struct smtp_submit *c;
	struct smtp_reply r;
	enum smtp_submit_status st;
	char err[512];

	c = smtp_submit_open(site->socket_path, verbose ? stderr : NULL, err, sizeof(err));
	if (!c) {
		sm_error("mail system is not running (%s)", err);
		*status = EX_TEMPFAIL;
		return NULL;
	}
	st = smtp_submit_reply(c, &r, err, sizeof(err));
	if (st == SMTP_SUBMIT_OK && r.code / 100 == 2)
		st = smtp_submit_ehlo(c, "localhost", &r, err, sizeof(err));
	else if (st == SMTP_SUBMIT_OK) {
		sm_error("the mail system refused the connection: %s", r.text);
		*status = sm_status_of_code(r.code);
		smtp_submit_free(&c);
		return NULL;
	}
	if (st != SMTP_SUBMIT_OK) {
		sm_error("mail system: %s", err);
		*status = sm_status_of_io(st);
		smtp_submit_free(&c);
		return NULL;
	}
	if (r.code / 100 != 2) {
		sm_error("the mail system refused EHLO: %s", r.text);
		*status = sm_status_of_code(r.code);
		smtp_submit_free(&c);
		return NULL;
	}
	return c;
}

/* sm_quit - QUIT, its answer ignored: the work is done or abandoned. */
static void sm_quit(struct smtp_submit **c)
{
	struct smtp_reply r;
	char err[256];

	smtp_submit_command(*c, &r, err, sizeof(err), "QUIT");
	smtp_submit_free(c);
}

/* sm_utf8 - any octet >= 0x80 (an SMTPUTF8 address)? */
static bool sm_utf8(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* sm_send_buf - write out the encoder's output and empty it. */
static enum smtp_submit_status sm_send_buf(struct smtp_submit *c, struct strbuf *out, char *err,
					   size_t errlen)
{
	enum smtp_submit_status st = smtp_submit_write(c, out->data, out->len, err, errlen);

	strbuf_reset(out);
	return st;
}

/*
 * sm_send_content - the message after DATA's 354: the header (changed),
 * then the rest of stdin streamed, then the final dot; flushed.  0, or an
 * exit status after a message (the caller drops the connection, so the
 * server discards the unfinished message).
 */
static int sm_send_content(struct smtp_submit *c, const struct sm_header *h,
			   const struct strbuf *added, struct sm_input *in, bool ignore_dots)
{
	struct strbuf out = STRBUF_INIT;
	struct smtp_data d;
	enum smtp_submit_status st = SMTP_SUBMIT_OK;
	char err[512];
	int status = 0;

	smtp_data_init(&d);
	for (size_t i = 0; i < h->n; i++)
		if (!h->f[i].drop)
			smtp_data_feed(&d, h->text.data + h->f[i].off, h->f[i].len, false, &out);
	smtp_data_feed(&d, added->data ? added->data : "", added->len, false, &out);
	if (h->end != SM_END_INPUT) {
		/* An empty line between header and body, also if the input had none. */
		smtp_data_feed(&d, "\n", 1, false, &out);
		smtp_data_feed(&d, h->first_body.data ? h->first_body.data : "", h->first_body.len,
			       !ignore_dots, &out);
		while (!d.ended && !d.error && st == SMTP_SUBMIT_OK) {
			int rc;

			if (out.len >= SM_IN_BUF)
				st = sm_send_buf(c, &out, err, sizeof(err));
			rc = sm_input_fill(in);
			if (rc < 0) {
				status = EX_IOERR;
				break;
			}
			if (rc == 0)
				break;
			in->pos += smtp_data_feed(&d, in->buf + in->pos, in->len - in->pos,
						  !ignore_dots, &out);
		}
	}
	if (d.error == SMTP_DATA_NUL) {
		sm_error("the message holds a NUL octet: not sent");
		status = EX_DATAERR;
	}
	if (!status && st == SMTP_SUBMIT_OK) {
		smtp_data_finish(&d, !ignore_dots, &out);
		st = sm_send_buf(c, &out, err, sizeof(err));
		if (st == SMTP_SUBMIT_OK)
			st = smtp_submit_flush(c, err, sizeof(err));
	}
	if (!status && st != SMTP_SUBMIT_OK) {
		sm_error("mail system: %s", err);
		status = sm_status_of_io(st);
	}
	strbuf_release(&out);
	return status;
}

/* sm_mail_params - the MAIL FROM parameters the options and the server allow. */
static void sm_mail_params(const struct sm_opts *o, unsigned ext, bool utf8, struct strbuf *p)
{
	if (o->body && (ext & SMTP_EXT_8BITMIME))
		strbuf_printf(p, " BODY=%s", o->body);
	if (o->ret && (ext & SMTP_EXT_DSN))
		strbuf_printf(p, " RET=%s", o->ret);
	if (o->envid && (ext & SMTP_EXT_DSN))
		strbuf_printf(p, " ENVID=%s", o->envid);
	if (utf8 && (ext & SMTP_EXT_SMTPUTF8))
		strbuf_append_str(p, " SMTPUTF8");
	strbuf_append(p, "", 0);
}

/*
 * sm_deliver - submit the message.  Recipients refused with 5xx are
 * reported and the others get the message (EX_NOUSER); a 4xx for any
 * recipient sends nothing (EX_TEMPFAIL), so a retry cannot duplicate it.
 */
static int sm_deliver(const struct sm_opts *o, const struct sm_site *site, const char *sender,
		      const struct sm_rcpts *rc, const struct sm_header *h, struct sm_input *in)
{
	struct strbuf params = STRBUF_INIT, added = STRBUF_INIT;
	struct smtp_submit *c;
	struct smtp_reply r;
	enum smtp_submit_status st;
	size_t accepted = 0, refused = 0, deferred = 0;
	bool utf8 = sm_utf8(sender);
	char err[512];
	int status = 0;

	for (size_t i = 0; i < rc->n; i++)
		utf8 = utf8 || sm_utf8(rc->v[i]);
	c = sm_session(site, o->verbose, &status);
	if (!c)
		return status;
	sm_mail_params(o, smtp_submit_ext(c), utf8, &params);
	st = smtp_submit_command(c, &r, err, sizeof(err), "MAIL FROM:<%s>%s", sender, params.data);
	if (st == SMTP_SUBMIT_OK && r.code / 100 != 2) {
		sm_error("sender <%s> refused: %s", sender, r.text);
		status = sm_status_of_code(r.code);
		goto quit;
	}
	for (size_t i = 0; i < rc->n && st == SMTP_SUBMIT_OK; i++) {
		const char *a = rc->v[i];

		if (!sm_address_ok(a)) {
			sm_error("<%s>: invalid recipient address: not sent to it", a);
			refused++;
			continue;
		}
		st = smtp_submit_command(
		    c, &r, err, sizeof(err), "RCPT TO:<%s>%s%s", a,
		    o->notify[0] && (smtp_submit_ext(c) & SMTP_EXT_DSN) ? " NOTIFY=" : "",
		    o->notify[0] && (smtp_submit_ext(c) & SMTP_EXT_DSN) ? o->notify : "");
		if (st != SMTP_SUBMIT_OK)
			break;
		switch (r.code / 100) {
		case 2:
			accepted++;
			break;
		case 4:
			sm_error("<%s>: temporarily refused: %s", a, r.text);
			deferred++;
			break;
		case 5:
			sm_error("<%s>: refused: %s: not sent to it", a, r.text);
			refused++;
			break;
		default:
			sm_error("unexpected reply to RCPT: %s", r.text);
			status = EX_SOFTWARE;
			goto quit;
		}
	}
	if (st != SMTP_SUBMIT_OK)
		goto io;
	if (deferred) {
		sm_error("message not sent: try again later");
		status = EX_TEMPFAIL;
		goto quit;
	}
	if (accepted == 0) {
		sm_error("message not sent: no recipient was accepted");
		status = EX_NOUSER;
		goto quit;
	}
	st = smtp_submit_command(c, &r, err, sizeof(err), "DATA");
	if (st != SMTP_SUBMIT_OK)
		goto io;
	if (r.code != 354) {
		sm_error("DATA refused: %s", r.text);
		status = r.code / 100 == 2 || r.code / 100 == 3 ? EX_SOFTWARE
								: sm_status_of_code(r.code);
		goto quit;
	}
	sm_header_added(h, o, site, sender, &added);
	status = sm_send_content(c, h, &added, in, o->ignore_dots);
	if (status) {
		/* Without the final dot the server drops the message. */
		smtp_submit_free(&c);
		goto out;
	}
	st = smtp_submit_reply(c, &r, err, sizeof(err));
	if (st != SMTP_SUBMIT_OK)
		goto io;
	if (r.code / 100 != 2) {
		sm_error("message refused: %s", r.text);
		status = sm_status_of_code(r.code);
		goto quit;
	}
	status = refused ? EX_NOUSER : 0;
	goto quit;
io:
	sm_error("mail system: %s", err);
	status = sm_status_of_io(st);
	smtp_submit_free(&c);
	goto out;
quit:
	sm_quit(&c);
out:
	strbuf_release(&params);
	strbuf_release(&added);
	return status;
}

/*
 * sm_verify - -bv: RCPT for each recipient under MAIL FROM:<>, one line
 * on stdout each, nothing sent.  0 all deliverable; EX_UNAVAILABLE some
 * undeliverable (5xx, or not an address); else EX_TEMPFAIL some deferred.
 */
static int sm_verify(const struct sm_opts *o, const struct sm_site *site, const struct sm_rcpts *rc)
{
	struct smtp_submit *c;
	struct smtp_reply r;
	enum smtp_submit_status st;
	size_t bad = 0, deferred = 0;
	char err[512];
	int status = 0;

	c = sm_session(site, o->verbose, &status);
	if (!c)
		return status;
	st = smtp_submit_command(c, &r, err, sizeof(err), "MAIL FROM:<>");
	if (st == SMTP_SUBMIT_OK && r.code / 100 != 2) {
		sm_error("MAIL FROM:<> refused: %s", r.text);
		status = sm_status_of_code(r.code);
		sm_quit(&c);
		return status;
	}
	for (size_t i = 0; i < rc->n && st == SMTP_SUBMIT_OK; i++) {
		const char *a = rc->v[i];

		if (!sm_address_ok(a)) {
			printf("%s... undeliverable: invalid address\n", a);
			bad++;
			continue;
		}
		st = smtp_submit_command(c, &r, err, sizeof(err), "RCPT TO:<%s>", a);
		if (st != SMTP_SUBMIT_OK)
			break;
		if (r.code / 100 == 2) {
			printf("%s... deliverable\n", a);
		} else if (r.code / 100 == 4) {
			printf("%s... deferred: %s\n", a, r.text);
			deferred++;
		} else {
			printf("%s... undeliverable: %s\n", a, r.text);
			bad++;
		}
	}
	if (st != SMTP_SUBMIT_OK) {
		sm_error("mail system: %s", err);
		smtp_submit_free(&c);
		return sm_status_of_io(st);
	}
	smtp_submit_command(c, &r, err, sizeof(err), "RSET");
	sm_quit(&c);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		sm_error("error writing to standard output: %s", strerror(errno));
		return EX_IOERR;
	}
	return bad ? EX_UNAVAILABLE : deferred ? EX_TEMPFAIL : 0;
}

/* sm_write_all - all of buf to fd; -1 on error. */
static int sm_write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, buf, n, MSG_NOSIGNAL);

		if (k < 0 && errno == ENOTSOCK)
			k = write(fd, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		buf += k;
		n -= (size_t)k;
	}
	return 0;
}

/*
 * sm_smtp - -bs: relay bytes between stdin/stdout and the socket until the
 * server closes.  End of stdin half-closes the socket (the server then
 * ends the session).  The client speaks SMTP itself; nothing is changed.
 */
static int sm_smtp(const struct sm_site *site)
{
	char err[512], *buf = xmalloc(SM_IN_BUF);
	bool in_open = true;
	int status = 0, fd = smtp_submit_socket(site->socket_path, err, sizeof(err));

	if (fd < 0) {
		sm_error("mail system is not running (%s)", err);
		free(buf);
		return EX_TEMPFAIL;
	}
	for (;;) {
		struct pollfd p[2] = {{in_open ? STDIN_FILENO : -1, POLLIN, 0}, {fd, POLLIN, 0}};
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			sm_error("poll: %s", strerror(errno));
			status = EX_OSERR;
			break;
		}
		if (p[1].revents) {
			n = read(fd, buf, SM_IN_BUF);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break; /* the server is done */
			if (sm_write_all(STDOUT_FILENO, buf, (size_t)n) < 0) {
				sm_error("error writing to standard output: %s", strerror(errno));
				status = EX_IOERR;
				break;
			}
			continue;
		}
		if (p[0].revents) {
			n = read(STDIN_FILENO, buf, SM_IN_BUF);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				sm_error("error reading standard input: %s", strerror(errno));
				status = EX_IOERR;
				break;
			}
			if (n == 0 || sm_write_all(fd, buf, (size_t)n) < 0) {
				/* Either way nothing more goes to the server; read its answers. */
				shutdown(fd, SHUT_WR);
				in_open = false;
			}
		}
	}
	close(fd);
	free(buf);
	return status;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	struct sm_rcpts rcpts = {0};
	struct sm_header hdr = {0};
	struct sm_input *in = NULL;
	struct sm_opts o;
	struct sm_site site;
	char *sender = NULL;
	int status = 0;

	log_open("sendmail", LOG_TARGET_STDERR);
	/* A reader that went away is an error we report, not a signal that kills. */
	signal(SIGPIPE, SIG_IGN);
	sm_parse_options(&o, argc, argv);
	if (sm_site_load(&site, &o) < 0) {
		free(o.overrides);
		free(o.envid);
		return EX_CONFIG;
	}
	if (o.mode == SM_MODE_SMTP) {
		status = sm_smtp(&site);
		goto out;
	}
	if (o.n_rcpt_args == 0 && !o.extract)
		usage("no recipients specified");

	rcpts.origin = site.origin;
	for (size_t i = 0; i < o.n_rcpt_args; i++)
		sm_addr_list(o.rcpt_args[i], strlen(o.rcpt_args[i]), sm_rcpts_add, &rcpts);
	if (o.mode == SM_MODE_DELIVER || o.extract) {
		in = xcalloc(1, sizeof(*in));
		in->fd = STDIN_FILENO;
		status = sm_header_read(&hdr, in, o.ignore_dots);
		if (status)
			goto out;
	}
	if (o.extract)
		sm_header_extract(&hdr, &rcpts);
	/* Bcc: is never passed on: the recipients must not see each other. */
	for (size_t i = 0; i < hdr.n; i++)
		if (sm_field_is(&hdr, &hdr.f[i], "bcc") ||
		    sm_field_is(&hdr, &hdr.f[i], "resent-bcc"))
			hdr.f[i].drop = true;
	if (rcpts.n == 0) {
		sm_error("no recipients specified");
		status = EX_USAGE;
		goto out;
	}
	if (o.mode == SM_MODE_VERIFY) {
		status = sm_verify(&o, &site, &rcpts);
		goto out;
	}
	sender = sm_sender(&o, &site, &status);
	if (!sender)
		goto out;
	status = sm_deliver(&o, &site, sender, &rcpts, &hdr, in);
out:
	free(sender);
	free(in);
	sm_header_free(&hdr);
	sm_rcpts_free(&rcpts);
	config_free(&site.cfg);
	free(o.overrides);
	free(o.envid);
	return status;
}
