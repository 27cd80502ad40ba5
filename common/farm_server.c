/*
 * farm_server - the child skeleton every farm daemon runs on; see
 * farm_server.h for the contract.  This file: option and environment
 * parsing, inherited or standalone listen sockets, the accept loop with
 * client_limit, status reports to the manager, and the exit rules.
 */
#include "common/farm_server.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/endpoint.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/xalloc.h"

#define FARM_SERVER_MAX_LISTENERS 64
#define FARM_SERVER_BACKLOG 511
/*
 * At most one report per this many ms for changes of busy, served or
 * sessions alone (a change of state is reported at once); see
 * farm_server_report().
 */
#define FARM_SERVER_REPORT_INTERVAL_MS 500u

struct farm_listener {
	int fd;
	char *name;
	struct event *ev;
	struct farm_server *srv;
};

struct farm_server {
	const struct farm_server_ops *ops;
	struct event_base *base;
	struct config *cfg;
	void *ctx;
	char *farm_name;

	struct farm_listener listeners[FARM_SERVER_MAX_LISTENERS];
	unsigned nlisteners;
	bool listening; /* listener events enabled */
	bool full;	/* TAKEN: at client_limit, not below the resume mark since */

	/* Limits. */
	unsigned client_limit;
	unsigned long max_requests; /* 0: unlimited */
	unsigned max_idle;	    /* seconds, 0: never */
	bool stress;
	uint64_t generation;

	/* Counters. */
	unsigned sessions;
	unsigned long accepted;
	unsigned long requests; /* begun (explicit mode) */
	unsigned long served;
	unsigned in_request; /* explicit requests under way (they may overlap) */

	/* Manager channel and what it was last told. */
	struct frame_conn *status;
	int last_state; /* last reported Zfarm__FarmStatus__State, -1 none */
	bool last_busy;
	unsigned last_sessions;
	unsigned long last_served;
	uint64_t last_report_ms;   /* clock_mono_ms() of the last report */
	bool reported_work;	   /* a report with busy or served > 0 went out */
	struct event *report_timer; /* a coalesced report is due */

	bool draining;
	bool exiting; /* the loop has been told to stop */
	int sigterms;
	struct event *idle_timer;
	struct event *sigterm_ev;
	struct event *sigint_ev;
};

static void farm_server_update(struct farm_server *srv);

static void farm_server_usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-v] [-c config] [-o name=value]... [-s [name=]endpoint]...\n"
		"       [-n client_limit] [-r max_requests] [-i max_idle] [-S] [-F farm]\n"
		"       [-L stderr|syslog]\n",
		prog);
	exit(2);
}

/* farm_server_getenv_num - a numeric ZFARM_ variable or def; fatal if bad. */
static unsigned long farm_server_getenv_num(const char *name, unsigned long def)
{
	const char *v = getenv(name);
	char *end;
	unsigned long n;

	if (v == NULL || *v == '\0')
		return def;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end != '\0' || *v == '-')
		log_fatal("bad environment %s=%s: want a number", name, v);
	return n;
}

static unsigned long farm_server_parse_num(char opt, const char *v)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end != '\0' || *v == '-' || *v == '\0')
		log_fatal("bad -%c %s: want a number", opt, v);
	return n;
}

static void farm_server_add_listener(struct farm_server *srv, int fd, const char *name)
{
	struct farm_listener *l;

	if (srv->nlisteners == FARM_SERVER_MAX_LISTENERS)
		log_fatal("more than %d listen sockets", FARM_SERVER_MAX_LISTENERS);
	l = &srv->listeners[srv->nlisteners++];
	l->fd = fd;
	l->name = xstrdup(name);
	l->srv = srv;
	if (fd_set_nonblock(fd, true) < 0 || fd_set_cloexec(fd, true) < 0)
		log_fatal("listen fd %d (%s): %s", fd, name, strerror(errno));
}

/*
 * farm_server_listen_standalone - "-s [name=]endpoint": open it ourselves.
 * The name defaults to the endpoint text.
 */
static void farm_server_listen_standalone(struct farm_server *srv, const char *arg)
{
	const char *eq = strchr(arg, '=');
	const char *spec = arg;
	char *name;
	struct endpoint ep;
	char err[256];
	int fd;

	if (eq && strncmp(arg, "unix:", 5) != 0 && strncmp(arg, "inet:", 5) != 0) {
		name = xstrndup(arg, (size_t)(eq - arg));
		spec = eq + 1;
	} else {
		name = xstrdup(arg);
	}
	if (endpoint_parse(spec, &ep, err, sizeof(err)) < 0)
		log_fatal("-s %s: %s", arg, err);
	fd = endpoint_listen(&ep, FARM_SERVER_BACKLOG, 0666, err, sizeof(err));
	if (fd < 0)
		log_fatal("-s %s: %s", arg, err);
	farm_server_add_listener(srv, fd, name);
	free(name);
}

/* farm_server_listen_inherited - the systemd socket-activation convention. */
static void farm_server_listen_inherited(struct farm_server *srv)
{
	const char *pid = getenv("LISTEN_PID");
	const char *names = getenv("LISTEN_FDNAMES");
	unsigned long count = farm_server_getenv_num("LISTEN_FDS", 0);
	char *list = xstrdup(names ? names : ""), *save = NULL, *tok;

	if (count == 0) {
		free(list);
		return;
	}
	if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
		log_fatal("LISTEN_PID=%s is not this process (%ld): sockets not meant for us",
			  pid, (long)getpid());
	if (count > FARM_SERVER_MAX_LISTENERS)
		log_fatal("LISTEN_FDS=%lu: more than %d", count, FARM_SERVER_MAX_LISTENERS);
	tok = strtok_r(list, ":", &save);
	for (unsigned long i = 0; i < count; i++) {
		char fallback[32];

		snprintf(fallback, sizeof(fallback), "fd%lu", 3 + i);
		farm_server_add_listener(srv, (int)(3 + i), tok ? tok : fallback);
		tok = tok ? strtok_r(NULL, ":", &save) : NULL;
	}
	free(list);
}

/* farm_server_apply_overrides - "$ZFARM_OVERRIDES": name=value per line. */
static void farm_server_env_overrides(struct farm_server *srv)
{
	const char *v = getenv("ZFARM_OVERRIDES");
	char *copy, *save = NULL, *line;
	char err[512];

	if (v == NULL)
		return;
	copy = xstrdup(v);
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (config_override(srv->cfg, line, err, sizeof(err)) < 0)
			log_fatal("ZFARM_OVERRIDES: %s", err);
	free(copy);
}

static void farm_server_unsetenv(void)
{
	static const char *const vars[] = {
		"LISTEN_FDS",	      "LISTEN_FDNAMES",	    "LISTEN_PID",      "ZFARM_STATUS_FD",
		"ZFARM_GENERATION",   "ZFARM_CLIENT_LIMIT", "ZFARM_MAX_REQUESTS", "ZFARM_MAX_IDLE",
		"ZFARM_STRESS",	      "ZFARM_FARM",	    "ZFARM_CONFIG",    "ZFARM_OVERRIDES",
		"ZFARM_LOG",
	};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static void farm_server_options(struct farm_server *srv, int argc, char **argv)
{
	const char *config_path = getenv("ZFARM_CONFIG");
	const char *logto = getenv("ZFARM_LOG");
	char *standalone[FARM_SERVER_MAX_LISTENERS];
	char *overrides[256];
	unsigned nstandalone = 0, noverrides = 0;
	char err[512];
	int c;

	srv->client_limit = (unsigned)farm_server_getenv_num("ZFARM_CLIENT_LIMIT", 1);
	srv->max_requests = farm_server_getenv_num("ZFARM_MAX_REQUESTS", 0);
	srv->max_idle = (unsigned)farm_server_getenv_num("ZFARM_MAX_IDLE", 0);
	srv->stress = farm_server_getenv_num("ZFARM_STRESS", 0) != 0;
	srv->generation = farm_server_getenv_num("ZFARM_GENERATION", 0);
	srv->farm_name = xstrdup(getenv("ZFARM_FARM") ? getenv("ZFARM_FARM") : srv->ops->name);

	while ((c = getopt(argc, argv, "c:o:s:n:r:i:SF:vL:")) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			if (noverrides == sizeof(overrides) / sizeof(overrides[0]))
				log_fatal("too many -o options");
			overrides[noverrides++] = optarg;
			break;
		case 's':
			if (nstandalone == FARM_SERVER_MAX_LISTENERS)
				log_fatal("too many -s options");
			standalone[nstandalone++] = optarg;
			break;
		case 'n':
			srv->client_limit = (unsigned)farm_server_parse_num('n', optarg);
			break;
		case 'r':
			srv->max_requests = farm_server_parse_num('r', optarg);
			break;
		case 'i':
			srv->max_idle = (unsigned)farm_server_parse_num('i', optarg);
			break;
		case 'S':
			srv->stress = true;
			break;
		case 'F':
			free(srv->farm_name);
			srv->farm_name = xstrdup(optarg);
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		case 'L':
			logto = optarg;
			break;
		default:
			farm_server_usage(argv[0]);
		}
	}
	if (optind != argc)
		farm_server_usage(argv[0]);
	if (logto && strcmp(logto, "syslog") == 0)
		log_open(srv->ops->name, LOG_TARGET_SYSLOG);
	else if (logto && strcmp(logto, "stderr") != 0)
		log_fatal("bad log target \"%s\": want stderr or syslog", logto);
	if (srv->client_limit == 0)
		srv->client_limit = 1;

	srv->cfg = config_new();
	paths_set_defaults(srv->cfg);
	for (unsigned i = 0; i < noverrides; i++)
		if (config_override(srv->cfg, overrides[i], err, sizeof(err)) < 0)
			log_fatal("%s (in -o %s)", err, overrides[i]);
	farm_server_env_overrides(srv);
	if (config_path && config_load(srv->cfg, config_path, err, sizeof(err)) < 0)
		log_fatal("%s", err);
	/* log_level (the farm's section first); -v wins. */
	if (log_get_level() != LOG_LEVEL_DEBUG) {
		const char *lv = srv->farm_name
					 ? config_get(srv->cfg, "farm", srv->farm_name, "log_level")
					 : NULL;
		int level;

		if (!lv)
			lv = config_get_default(srv->cfg, NULL, NULL, "log_level", "info");
		level = log_level_parse(lv);

		if (level < 0)
			log_fatal("log_level: unknown level \"%s\"", lv);
		log_set_level((enum log_level)level);
	}

	farm_server_listen_inherited(srv);
	for (unsigned i = 0; i < nstandalone; i++)
		farm_server_listen_standalone(srv, standalone[i]);
	if (srv->nlisteners == 0)
		log_fatal("no listen sockets: run under farmd (LISTEN_FDS) or give -s endpoint");
}

/* farm_server_busy - inside a request (explicit mode) or a session. */
static bool farm_server_busy(const struct farm_server *srv)
{
	if (srv->ops->flags & FARM_SERVER_EXPLICIT_REQUESTS)
		return srv->in_request > 0;
	return srv->sessions > 0;
}

/* farm_server_send_status - one FarmStatus frame with the current counters. */
static void farm_server_send_status(struct farm_server *srv, int state, bool busy)
{
	Zfarm__Frame f;
	Zfarm__FarmStatus st;
	char err[256];

	srv->last_state = state;
	srv->last_busy = busy;
	srv->last_sessions = srv->sessions;
	srv->last_served = srv->served;
	srv->last_report_ms = clock_mono_ms();
	if (busy || srv->served > 0)
		srv->reported_work = true;
	evtimer_del(srv->report_timer);
	if (srv->status == NULL)
		return;
	frame_init(&f, 0);
	zfarm__farm_status__init(&st);
	st.pid = (uint32_t)getpid();
	st.generation = srv->generation;
	st.state = (Zfarm__FarmStatus__State)state;
	st.sessions = srv->sessions;
	st.served = srv->served;
	st.busy = busy;
	f.body_case = ZFARM__FRAME__BODY_FARM_STATUS;
	f.farm_status = &st;
	if (frame_conn_send(srv->status, &f, err, sizeof(err)) < 0)
		log_warn("status report: %s", err);
}

/* farm_server_report_stale - busy, sessions or served differ from the last report. */
static bool farm_server_report_stale(const struct farm_server *srv, bool busy)
{
	return busy != srv->last_busy || srv->sessions != srv->last_sessions ||
	       srv->served != srv->last_served;
}

/*
 * farm_server_report - tell the manager what changed, cheaply under load.
 *
 * A change of state (AVAILABLE/TAKEN/EXITING) goes out at once: farmd's
 * spawning depends on it.  Changes of busy, sessions and served alone
 * (with explicit requests, twice per request) are coalesced: at most one
 * report per FARM_SERVER_REPORT_INTERVAL_MS, sent at once if the last one
 * is older than that, otherwise by report_timer at the end of the
 * interval with whatever is current then.  The first report of any work
 * goes out at once, so farmd counts a child that crashes on its first
 * request as healthy (it did start work), as before.  farmd reads "busy
 * and served unchanged" as stuck (max_processtime), so a child busy
 * without pause still reports its progress once per interval.
 */
static void farm_server_report(struct farm_server *srv, int state, bool busy)
{
	bool first_work;
	uint64_t now, due;

	if (state != srv->last_state) {
		farm_server_send_status(srv, state, busy);
		return;
	}
	if (!farm_server_report_stale(srv, busy))
		return;
	first_work = !srv->reported_work && (busy || srv->served > 0);
	if (!first_work && evtimer_pending(srv->report_timer, NULL))
		return;
	now = clock_mono_ms();
	due = srv->last_report_ms + FARM_SERVER_REPORT_INTERVAL_MS;
	if (first_work || now >= due) {
		farm_server_send_status(srv, state, busy);
	} else {
		struct timeval tv = {(time_t)((due - now) / 1000),
				     (suseconds_t)((due - now) % 1000) * 1000};

		evtimer_add(srv->report_timer, &tv);
	}
}

/* farm_server_on_report_timer - the coalesced report is due. */
static void farm_server_on_report_timer(evutil_socket_t fd, short what, void *arg)
{
	struct farm_server *srv = arg;
	bool busy = farm_server_busy(srv);

	if (farm_server_report_stale(srv, busy))
		farm_server_send_status(srv, srv->last_state, busy);
}

/* farm_server_report_flush - before exit: the last word is the current one. */
static void farm_server_report_flush(struct farm_server *srv)
{
	bool busy = farm_server_busy(srv);

	if (srv->last_state >= 0 && farm_server_report_stale(srv, busy))
		farm_server_send_status(srv, srv->last_state, busy);
}

static void farm_server_set_listening(struct farm_server *srv, bool on)
{
	if (on == srv->listening)
		return;
	for (unsigned i = 0; i < srv->nlisteners; i++) {
		if (on)
			event_add(srv->listeners[i].ev, NULL);
		else
			event_del(srv->listeners[i].ev);
	}
	srv->listening = on;
}

static bool farm_server_used_up(const struct farm_server *srv)
{
	if (srv->max_requests == 0)
		return false;
	if (srv->ops->flags & FARM_SERVER_EXPLICIT_REQUESTS)
		return srv->requests >= srv->max_requests;
	return srv->accepted >= srv->max_requests;
}

static void farm_server_exit(struct farm_server *srv)
{
	if (srv->exiting)
		return;
	srv->exiting = true;
	log_debug("exiting: accepted=%lu served=%lu", srv->accepted, srv->served);
	farm_server_report_flush(srv);
	event_base_loopbreak(srv->base);
}

/*
 * farm_server_close_listeners - a draining child accepts nothing more, so it
 * lets go of its copies of the listen sockets at once: after the manager
 * was killed, a new one can then bind the same inet ports while old
 * children still finish their sessions.
 */
static void farm_server_close_listeners(struct farm_server *srv)
{
	farm_server_set_listening(srv, false);
	for (unsigned i = 0; i < srv->nlisteners; i++) {
		event_free(srv->listeners[i].ev);
		close(srv->listeners[i].fd);
		free(srv->listeners[i].name);
	}
	srv->nlisteners = 0;
}

/* farm_server_start_drain - accept nothing more; exit when sessions end. */
static void farm_server_start_drain(struct farm_server *srv, const char *why)
{
	if (srv->draining)
		return;
	log_debug("draining: %s", why);
	srv->draining = true;
	farm_server_update(srv);
	farm_server_close_listeners(srv);
	if (srv->ops->drain)
		srv->ops->drain(srv);
	farm_server_update(srv);
}

/*
 * farm_server_update - the one place that derives listening, the reported
 * state and the idle timer from the counters, after anything changed.
 */
static void farm_server_update(struct farm_server *srv)
{
	int state;

	if (!srv->draining && farm_server_used_up(srv)) {
		farm_server_start_drain(srv, "max_requests reached");
		return;
	}
	/*
	 * Full at client_limit, and again taking clients only below the
	 * resume mark (client_limit less an eighth): a process whose load
	 * hovers at its limit would otherwise turn its listeners off and on
	 * and report to farmd at every session that starts or ends.
	 */
	if (srv->sessions >= srv->client_limit)
		srv->full = true;
	else if (srv->sessions < srv->client_limit - srv->client_limit / 8)
		srv->full = false;
	if (srv->draining)
		state = ZFARM__FARM_STATUS__STATE__EXITING;
	else if (srv->full)
		state = ZFARM__FARM_STATUS__STATE__TAKEN;
	else
		state = ZFARM__FARM_STATUS__STATE__AVAILABLE;
	farm_server_set_listening(srv, state == ZFARM__FARM_STATUS__STATE__AVAILABLE);
	farm_server_report(srv, state, farm_server_busy(srv));

	if (srv->sessions == 0 && srv->draining) {
		farm_server_exit(srv);
		return;
	}
	if (srv->sessions == 0 && srv->max_idle) {
		struct timeval tv = {(time_t)srv->max_idle, 0};

		evtimer_add(srv->idle_timer, &tv);
	} else {
		evtimer_del(srv->idle_timer);
	}
}

static void farm_server_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct farm_listener *l = arg;
	struct farm_server *srv = l->srv;

	while (!srv->draining && srv->sessions < srv->client_limit && !farm_server_used_up(srv)) {
		int fd = accept4((int)lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			/* EAGAIN: a sibling won the race; the rest are per-client. */
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED && errno != EPROTO)
				log_warn("accept on %s: %s", l->name, strerror(errno));
			if (errno == EMFILE || errno == ENFILE) {
				/* Out of fds: stop taking new work, let farmd replace us. */
				farm_server_start_drain(srv, "out of file descriptors");
			}
			break;
		}
		srv->sessions++;
		srv->accepted++;
		srv->ops->accept(srv, fd, l->name);
		/* May start draining, which frees l: the loop test stops first. */
		farm_server_update(srv);
	}
}

static void farm_server_on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct farm_server *srv = arg;

	if (srv->sessions == 0) {
		log_debug("idle for %u s", srv->max_idle);
		farm_server_start_drain(srv, "max_idle");
	}
}

static void farm_server_on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct farm_server *srv = arg;

	if (++srv->sigterms > 1) {
		log_info("second signal %d: exiting with %u session(s) open", (int)sig,
			 srv->sessions);
		farm_server_exit(srv);
		return;
	}
	farm_server_start_drain(srv, "signal");
}

static void farm_server_on_status_frame(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct farm_server *srv = arg;

	if (f->body_case == ZFARM__FRAME__BODY_FARM_WAKEUP && srv->ops->wakeup)
		srv->ops->wakeup(srv);
	else if (f->body_case != ZFARM__FRAME__BODY_FARM_WAKEUP)
		log_warn("status channel: unexpected %s frame ignored", frame_body_name(f));
	frame_free(&f);
}

static void farm_server_on_status_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct farm_server *srv = arg;

	if (*reason)
		log_warn("status channel: %s", reason);
	frame_conn_free(&srv->status);
	farm_server_start_drain(srv, "manager gone");
}

static void farm_server_open_status(struct farm_server *srv)
{
	unsigned long fd = farm_server_getenv_num("ZFARM_STATUS_FD", ULONG_MAX);

	if (fd == ULONG_MAX)
		return;
	if (fd > INT_MAX || fd_set_cloexec((int)fd, true) < 0)
		log_fatal("ZFARM_STATUS_FD=%lu: not an open descriptor", fd);
	srv->status = frame_conn_new(srv->base, (int)fd, 0, farm_server_on_status_frame,
				     farm_server_on_status_close, srv);
	if (srv->status == NULL)
		log_fatal("status channel: cannot set up event");
}

static void farm_server_setup_events(struct farm_server *srv)
{
	srv->base = event_base_new();
	if (srv->base == NULL)
		log_fatal("event_base_new failed");
	for (unsigned i = 0; i < srv->nlisteners; i++) {
		struct farm_listener *l = &srv->listeners[i];

		l->ev = event_new(srv->base, l->fd, EV_READ | EV_PERSIST, farm_server_on_accept,
				  l);
	}
	srv->idle_timer = evtimer_new(srv->base, farm_server_on_idle, srv);
	srv->report_timer = evtimer_new(srv->base, farm_server_on_report_timer, srv);
	srv->sigterm_ev = evsignal_new(srv->base, SIGTERM, farm_server_on_sigterm, srv);
	srv->sigint_ev = evsignal_new(srv->base, SIGINT, farm_server_on_sigterm, srv);
	event_add(srv->sigterm_ev, NULL);
	event_add(srv->sigint_ev, NULL);
}

static void farm_server_teardown(struct farm_server *srv)
{
	farm_server_close_listeners(srv);
	frame_conn_free(&srv->status);
	event_free(srv->idle_timer);
	event_free(srv->report_timer);
	event_free(srv->sigterm_ev);
	event_free(srv->sigint_ev);
	event_base_free(srv->base);
	config_free(&srv->cfg);
	free(srv->farm_name);
}

int farm_server_main(int argc, char **argv, const struct farm_server_ops *ops)
{
	struct farm_server srv;
	char err[512];

	memset(&srv, 0, sizeof(srv));
	srv.ops = ops;
	srv.last_state = -1;
	log_open(ops->name, LOG_TARGET_STDERR);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	farm_server_options(&srv, argc, argv);
	farm_server_setup_events(&srv);
	farm_server_open_status(&srv);
	farm_server_unsetenv();
	if (ops->init && ops->init(&srv, err, sizeof(err)) < 0)
		log_fatal("%s", err);
	log_debug("started: farm=%s listeners=%u client_limit=%u max_requests=%lu "
		  "max_idle=%u stress=%d generation=%llu",
		  srv.farm_name, srv.nlisteners, srv.client_limit, srv.max_requests,
		  srv.max_idle, srv.stress, (unsigned long long)srv.generation);
	farm_server_update(&srv);
	if (event_base_dispatch(srv.base) < 0)
		log_fatal("event loop failed");
	if (ops->fini)
		ops->fini(&srv);
	farm_server_teardown(&srv);
	return 0;
}

struct event_base *farm_server_base(struct farm_server *srv)
{
	return srv->base;
}

const struct config *farm_server_config(struct farm_server *srv)
{
	return srv->cfg;
}

const char *farm_server_farm_name(struct farm_server *srv)
{
	return srv->farm_name;
}

bool farm_server_stress(struct farm_server *srv)
{
	return srv->stress;
}

bool farm_server_draining(struct farm_server *srv)
{
	return srv->draining;
}

unsigned farm_server_sessions(struct farm_server *srv)
{
	return srv->sessions;
}

void *farm_server_ctx(struct farm_server *srv)
{
	return srv->ctx;
}

void farm_server_set_ctx(struct farm_server *srv, void *ctx)
{
	srv->ctx = ctx;
}

void farm_server_session_end(struct farm_server *srv)
{
	if (srv->sessions == 0)
		log_panic("farm_server_session_end without a session");
	srv->sessions--;
	if (!(srv->ops->flags & FARM_SERVER_EXPLICIT_REQUESTS))
		srv->served++;
	farm_server_update(srv);
}

void farm_server_request_begin(struct farm_server *srv)
{
	srv->in_request++;
	srv->requests++;
	farm_server_update(srv);
}

void farm_server_request_end(struct farm_server *srv)
{
	if (srv->in_request == 0)
		log_panic("farm_server_request_end outside a request");
	srv->in_request--;
	srv->served++;
	farm_server_update(srv);
}
