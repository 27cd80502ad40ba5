/*
 * zfqueue - the queue tool: look at and act on the messages a running
 * scheduler holds, through its queue control sockets.
 *
 *   zfqueue [-c config] [-o name=value]... COMMAND [args]
 *
 *   list [--json] [-v] [--channel C] [--destination D] [--status S]
 *   show QID [--json] [--no-body]      summary [--json]    counters [--json]
 *   flush [QID...|-] [--channel C --destination D]
 *   hold|release|delete QID...|-|ALL   bounce QID...|-     requeue QID...|-|ALL
 *
 * Read-only commands use $run_directory/public/showq, the others
 * private/qctl; `show` also reads the message itself from the queue store.
 * The client, paging and printing live in tools/qctl_client.c (shared with
 * mailq); this file is the command line: a table of commands, their
 * arguments, and queue IDs given as arguments or on stdin ("-"), sent in
 * batches of QCTL_BATCH_IDS so any number of them takes bounded memory.
 * Exit status (enum qctl_status): 0 done; 1 the scheduler refused or some
 * IDs were unknown or malformed on stdin (reasons on stderr); 2 usage or
 * bad config; 3 the scheduler is not running or did not answer.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/qid.h"
#include "common/qstore.h"
#include "common/xalloc.h"
#include "tools/qctl_client.h"

/* Options a command accepts. */
enum {
	ZFQ_OPT_JSON = 1 << 0,
	ZFQ_OPT_VERBOSE = 1 << 1,
	ZFQ_OPT_CHANNEL = 1 << 2,
	ZFQ_OPT_DESTINATION = 1 << 3,
	ZFQ_OPT_STATUS = 1 << 4,
	ZFQ_OPT_NO_BODY = 1 << 5,
};

/* Queue IDs a command takes. */
enum zfq_ids {
	ZFQ_IDS_NONE,
	ZFQ_IDS_ONE,	  /* exactly one, as an argument */
	ZFQ_IDS_OPTIONAL, /* none (= everything) or some, args and/or stdin */
	ZFQ_IDS_REQUIRED, /* at least one argument (possibly "-") */
};

struct zfq_args {
	bool json, verbose, no_body, from_stdin;
	const char *channel, *destination, *status;
	char **ids; /* the ID arguments (in argv) */
	size_t n_ids;
};

struct zfq_cmd;
typedef int zfq_run_fn(const struct zfq_cmd *cmd, const struct zfq_args *a,
		       const struct config *cfg);

struct zfq_cmd {
	const char *name;
	Zfarm__QueueControlRequest__Op op;
	zfq_run_fn *run;
	unsigned opts;
	enum zfq_ids ids;
	bool allow_all;	  /* the single argument ALL means every message */
	const char *done; /* what changed messages became, for the report */
};

static zfq_run_fn zfq_list, zfq_show, zfq_report, zfq_change;

#define OP(x) ZFARM__QUEUE_CONTROL_REQUEST__OP__##x

static const struct zfq_cmd zfq_cmds[] = {
    {"list", OP(LIST), zfq_list,
     ZFQ_OPT_JSON | ZFQ_OPT_VERBOSE | ZFQ_OPT_CHANNEL | ZFQ_OPT_DESTINATION | ZFQ_OPT_STATUS,
     ZFQ_IDS_NONE, false, NULL},
    {"show", OP(SHOW), zfq_show, ZFQ_OPT_JSON | ZFQ_OPT_NO_BODY, ZFQ_IDS_ONE, false, NULL},
    {"summary", OP(SUMMARY), zfq_report, ZFQ_OPT_JSON, ZFQ_IDS_NONE, false, NULL},
    {"counters", OP(COUNTERS), zfq_report, ZFQ_OPT_JSON, ZFQ_IDS_NONE, false, NULL},
    {"flush", OP(FLUSH), zfq_change, ZFQ_OPT_CHANNEL | ZFQ_OPT_DESTINATION, ZFQ_IDS_OPTIONAL, false,
     "flushed"},
    {"hold", OP(HOLD), zfq_change, 0, ZFQ_IDS_REQUIRED, true, "held"},
    {"release", OP(RELEASE), zfq_change, 0, ZFQ_IDS_REQUIRED, true, "released"},
    {"delete", OP(DELETE), zfq_change, 0, ZFQ_IDS_REQUIRED, true, "deleted"},
    /* Bouncing the whole queue mails every sender: name the messages. */
    {"bounce", OP(BOUNCE), zfq_change, 0, ZFQ_IDS_REQUIRED, false, "bounced"},
    {"requeue", OP(REQUEUE), zfq_change, 0, ZFQ_IDS_REQUIRED, true, "requeued"},
};

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: zfqueue [-c config] [-o name=value]... COMMAND [args]\n"
			"  list [--json] [-v] [--channel C] [--destination D] "
			"[--status active|deferred|hold]\n"
			"  show QID [--json] [--no-body]\n"
			"  summary [--json]\n"
			"  counters [--json]\n"
			"  flush [QID...|-] [--destination D [--channel C]]\n"
			"  hold|release|delete|requeue QID...|-|ALL\n"
			"  bounce QID...|-\n");
	exit(QCTL_USAGE);
}

static void __attribute__((format(printf, 1, 2))) zfq_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", log_progname());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	putc('\n', stderr);
}

/* zfq_fail - a failure's reason on stderr; it may hold the scheduler's text: sanitised. */
static void zfq_fail(const char *reason)
{
	fprintf(stderr, "%s: ", log_progname());
	qctl_text(stderr, reason);
	putc('\n', stderr);
}

/* zfq_option_value - the value of --name V or --name=V at argv[*i]; NULL: not this option. */
static const char *zfq_option_value(const char *name, int argc, char **argv, int *i)
{
	size_t n = strlen(name);

	if (strncmp(argv[*i], name, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		zfq_error("%s needs a value", name);
		usage();
	}
	return argv[++*i];
}

/* zfq_parse - the command's arguments (argv[0] is the command); exits on a usage error. */
static void zfq_parse(const struct zfq_cmd *cmd, int argc, char **argv, struct zfq_args *a)
{
	bool options = true;
	const char *v;

	memset(a, 0, sizeof(*a));
	a->ids = xcalloc((size_t)argc, sizeof(*a->ids));
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		unsigned opt = 0;

		if (options && strcmp(arg, "--") == 0) {
			options = false;
			continue;
		}
		if (!options || arg[0] != '-' || strcmp(arg, "-") == 0) {
			if (strcmp(arg, "-") == 0) {
				if (a->from_stdin || cmd->ids == ZFQ_IDS_NONE ||
				    cmd->ids == ZFQ_IDS_ONE)
					usage();
				a->from_stdin = true;
				continue;
			}
			a->ids[a->n_ids++] = argv[i];
			continue;
		}
		if (strcmp(arg, "--json") == 0) {
			opt = ZFQ_OPT_JSON, a->json = true;
		} else if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
			opt = ZFQ_OPT_VERBOSE, a->verbose = true;
		} else if (strcmp(arg, "--no-body") == 0) {
			opt = ZFQ_OPT_NO_BODY, a->no_body = true;
		} else if ((v = zfq_option_value("--channel", argc, argv, &i))) {
			opt = ZFQ_OPT_CHANNEL, a->channel = v;
		} else if ((v = zfq_option_value("--destination", argc, argv, &i))) {
			opt = ZFQ_OPT_DESTINATION, a->destination = v;
		} else if ((v = zfq_option_value("--status", argc, argv, &i))) {
			opt = ZFQ_OPT_STATUS, a->status = v;
		}
		if (!(cmd->opts & opt)) {
			zfq_error("%s: unknown option %s", cmd->name, arg);
			usage();
		}
	}

	if (a->status && strcmp(a->status, "active") != 0 && strcmp(a->status, "deferred") != 0 &&
	    strcmp(a->status, "hold") != 0) {
		zfq_error("--status must be active, deferred or hold, not \"%s\"", a->status);
		usage();
	}
	if (cmd->ids == ZFQ_IDS_NONE && a->n_ids > 0)
		usage();
	if (cmd->ids == ZFQ_IDS_ONE && a->n_ids != 1)
		usage();
	if (cmd->ids == ZFQ_IDS_REQUIRED && a->n_ids == 0 && !a->from_stdin)
		usage();
	if (a->channel && !a->destination && cmd->op == OP(FLUSH)) {
		zfq_error("flush: --channel needs --destination");
		usage();
	}
	if ((a->n_ids > 0 || a->from_stdin) && (a->channel || a->destination)) {
		zfq_error("%s: give queue IDs or a destination, not both", cmd->name);
		usage();
	}
	for (size_t i = 0; i < a->n_ids; i++) {
		if (strcmp(a->ids[i], "ALL") == 0) {
			if (!cmd->allow_all) {
				zfq_error("%s does not take ALL: name the messages", cmd->name);
				usage();
			}
			if (a->n_ids != 1 || a->from_stdin) {
				zfq_error("%s: ALL must be the only queue ID", cmd->name);
				usage();
			}
		} else if (!qid_valid(a->ids[i])) {
			zfq_error("not a queue ID: \"%s\"", a->ids[i]);
			usage();
		}
	}
}

/* zfq_connect - the socket for cmd; NULL after reporting (status in *rc). */
static struct qctl_client *zfq_connect(const struct zfq_cmd *cmd, const struct config *cfg, int *rc)
{
	/* Whatever changes the queue goes to the private socket; reading to public/showq. */
	bool privileged = cmd->run == zfq_change;
	enum qctl_status st;
	struct qctl_client *c;
	char err[1024];

	c = qctl_client_open(cfg, privileged, &st, err, sizeof(err));
	if (!c) {
		zfq_error("%s", err);
		*rc = st;
	}
	return c;
}

/* ---- list, summary, counters ---- */

static int zfq_list(const struct zfq_cmd *cmd, const struct zfq_args *a, const struct config *cfg)
{
	Zfarm__QueueControlRequest req;
	struct qctl_list_printer p;
	struct qctl_client *c;
	enum qctl_status st;
	char err[1024];
	int rc = 0;

	if (!(c = zfq_connect(cmd, cfg, &rc)))
		return rc;
	zfarm__queue_control_request__init(&req);
	req.channel = (char *)(a->channel ? a->channel : "");
	req.destination = (char *)(a->destination ? a->destination : "");
	req.status = (char *)(a->status ? a->status : "");
	qctl_list_begin(&p, stdout, a->json, a->verbose, a->channel || a->destination || a->status);
	st = qctl_client_list(c, &req, qctl_list_print_entry, &p, err, sizeof(err));
	qctl_client_free(&c);
	if (st != QCTL_OK) {
		fflush(stdout);
		zfq_fail(err);
		return st;
	}
	qctl_list_end(&p);
	return QCTL_OK;
}

static int zfq_report(const struct zfq_cmd *cmd, const struct zfq_args *a, const struct config *cfg)
{
	Zfarm__QueueControlRequest req;
	Zfarm__Frame *reply;
	struct qctl_client *c;
	enum qctl_status st;
	char err[1024];
	int rc = 0;

	if (!(c = zfq_connect(cmd, cfg, &rc)))
		return rc;
	zfarm__queue_control_request__init(&req);
	req.op = cmd->op;
	st = qctl_client_call(c, &req, &reply, err, sizeof(err));
	qctl_client_free(&c);
	if (st == QCTL_OK && cmd->op == OP(SUMMARY))
		qctl_print_summary(stdout, reply->queue_control_reply, a->json);
	else if (st == QCTL_OK)
		qctl_print_counters(stdout, reply->queue_control_reply, a->json);
	else
		zfq_fail(err);
	frame_free(&reply);
	return st;
}

/* ---- show ---- */

/* zfq_store_open - the queue store as the scheduler opens it; never creates a spool. */
static struct qstore *zfq_store_open(const struct config *cfg, char *err, size_t errlen)
{
	const char *backend, *dir;
	char rundir[4096], def[4200];
	struct stat st;

	if (farmd_run_directory(cfg, rundir, sizeof(rundir), err, errlen) < 0)
		return NULL;
	snprintf(def, sizeof(def), "%s/queue", rundir);
	if (config_get_string(cfg, NULL, NULL, "queue_store", "spool", &backend, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "queue_directory", def, &dir, err, errlen) < 0)
		return NULL;
	if (strcmp(backend, "spool") != 0) {
		snprintf(
		    err, errlen,
		    "queue_store %s: the message lives inside the scheduler, not readable here",
		    backend);
		return NULL;
	}
	/* A read-only tool must not create a queue where a typo points. */
	if (stat(dir, &st) < 0) {
		snprintf(err, errlen, "queue directory %s: %s", dir, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "queue directory %s: not a directory", dir);
		return NULL;
	}
	return qstore_open(backend, dir, err, errlen);
}

/*
 * zfq_content - copy the content to stdout (JSON: as one string), a
 * buffer at a time.  0, or -1 with the reason in err.
 */
static int zfq_content(struct qstore_reader *r, bool json, char *err, size_t errlen)
{
	static char buf[64 * 1024];
	struct qctl_json_stream js;
	char last = '\n';
	ssize_t n;

	if (json)
		qctl_json_stream_begin(&js, stdout);
	else
		puts("\n*** MESSAGE CONTENT ***");
	while ((n = qstore_content(r, buf, sizeof(buf), err, errlen)) > 0) {
		if (json)
			qctl_json_stream_write(&js, buf, (size_t)n);
		else
			fwrite(buf, 1, (size_t)n, stdout);
		last = buf[n - 1];
	}
	if (json)
		qctl_json_stream_end(&js);
	else
		printf("%s*** END OF MESSAGE ***\n", last == '\n' ? "" : "\n");
	return n < 0 ? -1 : 0;
}

static int zfq_show(const struct zfq_cmd *cmd, const struct zfq_args *a, const struct config *cfg)
{
	Zfarm__QueueControlRequest req;
	const Zfarm__QueueEntry *e;
	struct qstore_reader *r = NULL;
	struct qstore *qs = NULL;
	Zfarm__Frame *reply;
	struct qctl_client *c;
	enum qctl_status st;
	char err[1024], why[1024] = "";
	int rc = 0, errnum;

	if (!(c = zfq_connect(cmd, cfg, &rc)))
		return rc;
	zfarm__queue_control_request__init(&req);
	req.op = cmd->op;
	req.queue_ids = a->ids;
	req.n_queue_ids = 1;
	st = qctl_client_call(c, &req, &reply, err, sizeof(err));
	qctl_client_free(&c);
	if (st == QCTL_OK && reply->queue_control_reply->n_entries != 1) {
		snprintf(err, sizeof(err), "%s: no such message in the queue", a->ids[0]);
		st = QCTL_REFUSED;
	}
	if (st != QCTL_OK) {
		zfq_fail(err);
		frame_free(&reply);
		return st;
	}
	e = reply->queue_control_reply->entries[0];

	/* The message itself, straight from the store (the scheduler holds only state). */
	if ((qs = zfq_store_open(cfg, why, sizeof(why))) != NULL)
		r = qstore_read(qs, a->ids[0], &errnum, why, sizeof(why));
	if (a->json) {
		fputs("{\"entry\":", stdout);
		qctl_entry_json(stdout, e);
		fputs(",\"envelope\":", stdout);
		if (r)
			qctl_envelope_json(stdout, qstore_envelope(r));
		else
			fputs("null", stdout);
		if (!a->no_body) {
			fputs(",\"content\":", stdout);
			if (r)
				zfq_content(r, true, why, sizeof(why));
			else
				fputs("null", stdout);
		}
		fputs("}\n", stdout);
	} else {
		qctl_entry_detail(stdout, e);
		if (r)
			qctl_envelope_text(stdout, qstore_envelope(r));
		if (r && !a->no_body)
			zfq_content(r, false, why, sizeof(why));
	}
	if (*why) {
		fflush(stdout);
		zfq_error("%s: cannot read the message: %s", a->ids[0], why);
		rc = QCTL_REFUSED;
	}
	qstore_reader_free(&r);
	qstore_close(&qs);
	frame_free(&reply);
	return rc;
}

/* ---- flush, hold, release, delete, bounce, requeue ---- */

/*
 * struct zfq_idsrc - queue IDs from the arguments, then from stdin ("-"):
 * whitespace-separated words, a trailing '*' or '!' (copied from mailq)
 * dropped.  Malformed words are reported and skipped (bad is set).
 */
struct zfq_idsrc {
	const struct zfq_args *a;
	size_t next;  /* next ID argument */
	bool in_line; /* words of line remain */
	bool in_done; /* stdin is at its end */
	char *line, *save;
	size_t cap;
	bool bad;
};

static const char *zfq_next_id(struct zfq_idsrc *s)
{
	if (s->next < s->a->n_ids)
		return s->a->ids[s->next++];
	while (s->a->from_stdin && !s->in_done) {
		char *w = s->in_line ? strtok_r(NULL, " \t\r\n", &s->save) : NULL;
		size_t n;

		if (!w) {
			s->in_line = false;
			if (getline(&s->line, &s->cap, stdin) < 0) {
				s->in_done = true;
				break;
			}
			if ((w = strtok_r(s->line, " \t\r\n", &s->save)) == NULL)
				continue;
			s->in_line = true;
		}
		n = strlen(w);
		if (n > 0 && (w[n - 1] == '*' || w[n - 1] == '!'))
			w[n - 1] = '\0';
		if (qid_valid(w))
			return w;
		zfq_error("not a queue ID: \"%s\" (skipped)", w);
		s->bad = true;
	}
	return NULL;
}

static int zfq_change(const struct zfq_cmd *cmd, const struct zfq_args *a, const struct config *cfg)
{
	Zfarm__QueueControlRequest req;
	struct zfq_idsrc src = {.a = a};
	struct qctl_client *c;
	Zfarm__Frame *reply;
	enum qctl_status st;
	char **batch = xcalloc(QCTL_BATCH_IDS, sizeof(*batch));
	char err[4096];
	uint64_t affected = 0;
	bool by_id = a->n_ids > 0 || a->from_stdin, more = true, answered = false;
	int rc = 0;

	if (!(c = zfq_connect(cmd, cfg, &rc))) {
		free(batch);
		return rc;
	}
	zfarm__queue_control_request__init(&req);
	req.op = cmd->op;
	req.channel = (char *)(a->channel ? a->channel : "");
	req.destination = (char *)(a->destination ? a->destination : "");
	req.queue_ids = batch;
	while (more) {
		const char *id;

		req.n_queue_ids = 0;
		while (req.n_queue_ids < QCTL_BATCH_IDS && (id = zfq_next_id(&src)) != NULL)
			batch[req.n_queue_ids++] = xstrdup(id);
		more = req.n_queue_ids == QCTL_BATCH_IDS;
		/* IDs were asked for but none came: an empty FLUSH would flush everything. */
		if (by_id && req.n_queue_ids == 0)
			break;
		st = qctl_client_call(c, &req, &reply, err, sizeof(err));
		for (size_t i = 0; i < req.n_queue_ids; i++)
			free(batch[i]);
		if (reply) {
			affected += reply->queue_control_reply->affected;
			answered = true;
		}
		frame_free(&reply);
		if (st == QCTL_UNREACHABLE) {
			zfq_fail(err);
			rc = QCTL_UNREACHABLE;
			break;
		}
		if (st == QCTL_REFUSED) {
			zfq_fail(err);
			rc = QCTL_REFUSED;
		}
		more = more && by_id;
	}
	/* Also after a failure half-way: say what the earlier batches did. */
	if (rc != QCTL_UNREACHABLE || answered)
		printf("%s: %llu\n", cmd->done, (unsigned long long)affected);
	if (src.bad && rc == QCTL_OK)
		rc = QCTL_REFUSED;
	qctl_client_free(&c);
	free(src.line);
	free(batch);
	return rc;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	const struct zfq_cmd *cmd = NULL;
	char **overrides = xcalloc((size_t)argc, sizeof(*overrides));
	struct config *cfg;
	struct zfq_args a;
	size_t n_overrides = 0;
	char err[1024];
	int c, rc;

	log_open("zfqueue", LOG_TARGET_STDERR);
	while ((c = getopt(argc, argv, "+c:o:")) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			overrides[n_overrides++] = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	for (size_t i = 0; i < sizeof(zfq_cmds) / sizeof(zfq_cmds[0]); i++)
		if (strcmp(argv[optind], zfq_cmds[i].name) == 0)
			cmd = &zfq_cmds[i];
	if (!cmd) {
		zfq_error("unknown command \"%s\"", argv[optind]);
		usage();
	}
	zfq_parse(cmd, argc - optind, argv + optind, &a);
	cfg = qctl_load_config(config_path, overrides, n_overrides, err, sizeof(err));
	free(overrides);
	if (!cfg) {
		zfq_error("%s", err);
		free(a.ids);
		return QCTL_USAGE;
	}
	rc = cmd->run(cmd, &a, cfg);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		zfq_error("write error on standard output: %s", strerror(errno));
		rc = rc ? rc : QCTL_REFUSED;
	}
	config_free(&cfg);
	free(a.ids);
	return rc;
}
