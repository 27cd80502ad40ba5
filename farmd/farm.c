/*
 * farm - one running farm: sockets, children, the process-creation policy.
 * See farm.h for the policy; this file implements it top to bottom:
 * sockets, spawning, status reports, reaping, the policy, the tick.
 */
#include "farmd/farm.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/endpoint.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

#define FARM_BACKLOG 511
#define FARM_SPAWN_RATE_MAX 32u
#define FARM_HEALTHY_AGE_MS 10000u

struct farm_sock {
	int fd;
	struct event *ev;
};

struct child {
	struct child *next;
	struct farm *farm;
	pid_t pid;
	uint64_t generation;
	struct frame_conn *status;
	uint64_t born_ms;
	/*
	 * Busy with no request finished since (0: not busy): set by a report
	 * that is busy when the one before was not or served has moved.  A
	 * child busy without a pause on many short or overlapping requests
	 * keeps moving it; one stuck on a request does not (max_processtime).
	 */
	uint64_t busy_since_ms;
	uint64_t idle_since_ms; /* 0: not idle */
	bool counted_avail;	/* in farm->avail */
	bool reported;		/* sent at least one valid report */
	bool healthy;		/* served or was busy */
	bool term_sent;		/* we asked it to go */
	int state;		/* last reported Zfarm__FarmStatus__State */
	uint64_t served;
};

struct farm {
	struct event_base *base;
	const struct farmd_settings *set;
	struct farm_def *def;
	char *overrides;
	uint64_t generation;
	struct farm_sock *socks; /* one per def->listen */
	/*
	 * farm_start() was called.  Before it the listen sockets are open (a
	 * client waits in the backlog) but nothing is spawned, preforked or
	 * watched: farmd holds farms with start_after back this way.
	 */
	bool started;
	bool listening;
	bool retiring;

	struct child *children;
	unsigned total; /* children not told to go */
	unsigned avail;
	unsigned limit; /* def->process_limit, maybe clamped */

	uint64_t throttled_until_ms;
	unsigned throttle_ms; /* next throttle length */
	struct event *throttle_timer;
	unsigned spawn_rate;
	time_t busy_warn_time;
	time_t stress_until;
	uint64_t next_wakeup_ms;
	bool once_running;
	/*
	 * The first run of this once job has ended (well or not); inherited
	 * over reloads, so farms with start_after wait for the job's first
	 * run only, never for its reruns or `wakeup` runs.
	 */
	bool first_done;
	/*
	 * Runs of a once job started by this farm and its predecessors over
	 * reloads: after the first, the child gets ZFARM_RERUN=1 (the
	 * reinjector then rescans live instead of recovering at start).
	 */
	unsigned once_runs;
	bool held; /* single: wait until the previous generation is gone */

	uint64_t spawned, crashed, served;
};

static void farm_update(struct farm *f);

static uint64_t farm_now_ms(void)
{
	return clock_mono_ms();
}

static bool farm_throttled(const struct farm *f)
{
	return f->throttled_until_ms > farm_now_ms();
}

/* ---- sockets ---- */

static void farm_on_listen(evutil_socket_t fd, short what, void *arg);

/*
 * farm_listen_retry - endpoint_listen(), waiting up to FARM_LISTEN_WAIT_MS
 * while the address is in use: after a kill -9 of farmd its orphaned
 * children hold the old listen socket until they notice and close it (a
 * restarted farmd must not die of that).  Start-up and reload only.
 */
#define FARM_LISTEN_WAIT_MS 5000
static int farm_listen_retry(const struct endpoint *ep, char *err, size_t errlen)
{
	struct timespec pause = {0, 50 * 1000 * 1000};
	int fd;

	for (unsigned waited = 0;; waited += 50) {
		fd = endpoint_listen(ep, FARM_BACKLOG, 0666, err, errlen);
		if (fd >= 0 || errno != EADDRINUSE || waited >= FARM_LISTEN_WAIT_MS)
			return fd;
		nanosleep(&pause, NULL);
	}
}

static int farm_open_sock(struct farm *f, unsigned i, struct farm *old, char *err,
			  size_t errlen)
{
	const struct farm_listen *l = &f->def->listen[i];
	struct endpoint ep;

	f->socks[i].fd = -1;
	for (unsigned j = 0; old && j < old->def->nlisten; j++) {
		if (old->socks[j].fd >= 0 && strcmp(old->def->listen[j].spec, l->spec) == 0) {
			/*
			 * Same endpoint: the socket and its backlog live on, so a
			 * client connecting during a reload is never refused.  A
			 * duplicate, so a failed reload leaves the old farm whole.
			 */
			f->socks[i].fd = fcntl(old->socks[j].fd, F_DUPFD_CLOEXEC, 3);
			if (f->socks[i].fd < 0) {
				snprintf(err, errlen, "dup listen socket: %s", strerror(errno));
				return -1;
			}
			break;
		}
	}
	if (f->socks[i].fd < 0) {
		if (endpoint_parse(l->spec, &ep, err, errlen) < 0)
			return -1;
		f->socks[i].fd = farm_listen_retry(&ep, err, errlen);
		if (f->socks[i].fd < 0)
			return -1;
	}
	f->socks[i].ev = event_new(f->base, f->socks[i].fd, EV_READ | EV_PERSIST, farm_on_listen, f);
	return 0;
}

static void farm_close_socks(struct farm *f, bool unlink_unix)
{
	for (unsigned i = 0; i < f->def->nlisten; i++) {
		struct farm_sock *s = &f->socks[i];

		if (s->ev)
			event_free(s->ev);
		s->ev = NULL;
		if (s->fd >= 0) {
			close(s->fd);
			if (unlink_unix && strncmp(f->def->listen[i].spec, "unix:", 5) == 0)
				unlink(f->def->listen[i].spec + 5);
		}
		s->fd = -1;
	}
	f->listening = false;
}

static void farm_set_listening(struct farm *f, bool on)
{
	if (on == f->listening)
		return;
	for (unsigned i = 0; i < f->def->nlisten; i++) {
		if (f->socks[i].ev == NULL)
			continue;
		if (on)
			event_add(f->socks[i].ev, NULL);
		else
			event_del(f->socks[i].ev);
	}
	f->listening = on;
	log_debug("farm %s: %s listen sockets (avail %u total %u limit %u)", f->def->name,
		  on ? "watching" : "not watching", f->avail, f->total, f->limit);
}

/* ---- throttle ---- */

static void farm_on_throttle_end(evutil_socket_t fd, short what, void *arg)
{
	struct farm *f = arg;

	log_info("farm %s: throttle ended, spawning resumes", f->def->name);
	farm_update(f);
}

static void farm_throttle(struct farm *f, const char *why)
{
	struct timeval tv;
	unsigned ms = f->throttle_ms;

	f->throttled_until_ms = farm_now_ms() + ms;
	f->throttle_ms = ms * 2 > f->set->throttle_max * 1000u ? f->set->throttle_max * 1000u
							       : ms * 2;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(f->throttle_timer, &tv);
	log_warn("farm %s: %s: throttling for %u.%03u s", f->def->name, why, ms / 1000,
		 ms % 1000);
	farm_set_listening(f, false);
}

void farm_throttle_reset(struct farm *f)
{
	f->throttled_until_ms = 0;
	f->throttle_ms = (f->def->throttle_delay ? f->def->throttle_delay : 1) * 1000u;
	evtimer_del(f->throttle_timer);
	farm_update(f);
}

/* ---- children ---- */

static void child_set_avail(struct child *c, bool avail)
{
	if (avail == c->counted_avail)
		return;
	c->counted_avail = avail;
	if (avail)
		c->farm->avail++;
	else
		c->farm->avail--;
}

/* child_dismiss - the child no longer counts: told to go or gone quiet. */
static void child_dismiss(struct child *c)
{
	child_set_avail(c, false);
	if (!c->term_sent) {
		c->term_sent = true;
		c->farm->total--;
	}
}

static void child_signal(struct child *c, int sig)
{
	if (kill(c->pid, sig) < 0 && errno != ESRCH)
		log_warn("farm %s: kill %ld: %s", c->farm->def->name, (long)c->pid,
			 strerror(errno));
}

static void child_handle_status(struct child *c, const Zfarm__FarmStatus *st)
{
	struct farm *f = c->farm;
	uint64_t now = farm_now_ms();

	if (st->pid != (uint32_t)c->pid || st->generation != c->generation) {
		log_warn("farm %s: status report for pid %u generation %llu on the channel of "
			 "pid %ld generation %llu: ignored",
			 f->def->name, st->pid, (unsigned long long)st->generation, (long)c->pid,
			 (unsigned long long)c->generation);
		return;
	}
	if (st->state < ZFARM__FARM_STATUS__STATE__AVAILABLE ||
	    st->state > ZFARM__FARM_STATUS__STATE__EXITING) {
		log_warn("farm %s: pid %ld: status with unknown state %d: ignored", f->def->name,
			 (long)c->pid, (int)st->state);
		return;
	}
	c->reported = true;
	c->state = st->state;
	if (!st->busy)
		c->busy_since_ms = 0;
	else if (c->busy_since_ms == 0 || st->served != c->served)
		c->busy_since_ms = now;
	c->served = st->served;
	if (st->state == ZFARM__FARM_STATUS__STATE__AVAILABLE && st->sessions == 0 && !st->busy) {
		if (c->idle_since_ms == 0)
			c->idle_since_ms = now;
	} else {
		c->idle_since_ms = 0;
	}
	if (!c->healthy && (st->busy || st->served > 0)) {
		c->healthy = true;
		/* A child that works ends any throttle back-off (Dovecot). */
		f->throttle_ms = (f->def->throttle_delay ? f->def->throttle_delay : 1) * 1000u;
	}
	if (c->term_sent)
		return;
	if (st->state == ZFARM__FARM_STATUS__STATE__EXITING)
		child_dismiss(c);
	else
		child_set_avail(c, st->state == ZFARM__FARM_STATUS__STATE__AVAILABLE);
	farm_update(f);
}

static void child_on_frame(struct frame_conn *conn, Zfarm__Frame *fr, void *arg)
{
	struct child *c = arg;

	if (fr->body_case == ZFARM__FRAME__BODY_FARM_STATUS)
		child_handle_status(c, fr->farm_status);
	else
		log_warn("farm %s: pid %ld: unexpected %s frame on status channel: ignored",
			 c->farm->def->name, (long)c->pid, frame_body_name(fr));
	frame_free(&fr);
}

static void child_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct child *c = arg;

	if (*reason)
		log_warn("farm %s: pid %ld: status channel: %s", c->farm->def->name, (long)c->pid,
			 reason);
	frame_conn_free(&c->status);
	/*
	 * Without reports we cannot know it is available.  No farm_update()
	 * here: the channel usually closes because the child is dying, and
	 * watching the sockets now would fork a replacement before SIGCHLD
	 * tells us whether to throttle.  The reap or the next tick decides.
	 */
	child_set_avail(c, false);
}

/* child_move_fds - put fds[0..n-1] at 3..3+n-1 without clobbering. */
static void child_move_fds(int *fds, unsigned n)
{
	int base = 3 + (int)n + 64;

	for (unsigned i = 0; i < n; i++) {
		/* Close-on-exec: only the dup2 targets below survive exec. */
		int tmp = fcntl(fds[i], F_DUPFD_CLOEXEC, base);

		if (tmp < 0)
			_exit(126);
		fds[i] = tmp;
	}
	for (unsigned i = 0; i < n; i++)
		if (dup2(fds[i], 3 + (int)i) < 0)
			_exit(126);
}

static void child_set_env_num(const char *name, unsigned long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lu", v);
	setenv(name, buf, 1);
}

static void child_drop_privileges(const char *user)
{
	struct passwd *pw;

	if (user == NULL || geteuid() != 0)
		return;
	pw = getpwnam(user);
	if (pw == NULL) {
		fprintf(stderr, "farmd: unknown user %s\n", user);
		_exit(126);
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		fprintf(stderr, "farmd: cannot become %s: %s\n", user, strerror(errno));
		_exit(126);
	}
}

/* child_exec - in the forked child: sockets, environment, identity, exec. */
static void __attribute__((noreturn)) child_exec(struct farm *f, int status_fd, bool stress)
{
	const struct farm_def *d = f->def;
	unsigned n = d->nlisten;
	int fds[n + 1];
	struct strbuf names;
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);

	strbuf_init(&names, 0);
	for (unsigned i = 0; i < n; i++) {
		fds[i] = f->socks[i].fd;
		strbuf_printf(&names, "%s%s", i ? ":" : "", d->listen[i].name);
	}
	fds[n] = status_fd;
	child_move_fds(fds, n + 1);
	if (n) {
		child_set_env_num("LISTEN_FDS", n);
		setenv("LISTEN_FDNAMES", strbuf_cstr(&names), 1);
		child_set_env_num("LISTEN_PID", (unsigned long)getpid());
	} else {
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
		unsetenv("LISTEN_PID");
	}
	child_set_env_num("ZFARM_STATUS_FD", 3 + n);
	child_set_env_num("ZFARM_GENERATION", f->generation);
	setenv("ZFARM_FARM", d->name, 1);
	if (d->kind == FARM_KIND_ONCE && f->once_runs > 1)
		setenv("ZFARM_RERUN", "1", 1);
	else
		unsetenv("ZFARM_RERUN");
	child_set_env_num("ZFARM_CLIENT_LIMIT", d->client_limit);
	child_set_env_num("ZFARM_MAX_REQUESTS", d->max_requests);
	/* Idle surplus is retired by farmd (it knows min_avail); not by children. */
	child_set_env_num("ZFARM_MAX_IDLE", 0);
	child_set_env_num("ZFARM_STRESS", stress ? 1 : 0);
	if (f->set->config_path)
		setenv("ZFARM_CONFIG", f->set->config_path, 1);
	if (f->overrides)
		setenv("ZFARM_OVERRIDES", f->overrides, 1);
	child_drop_privileges(d->user);
	execv(d->argv[0], d->argv);
	fprintf(stderr, "farmd: farm %s: exec %s: %s\n", d->name, d->argv[0], strerror(errno));
	_exit(127);
}

static struct child *farm_spawn(struct farm *f)
{
	bool stress = f->def->stress && time(NULL) < f->stress_until;
	struct child *c;
	int sp[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		farm_throttle(f, strerror(errno));
		return NULL;
	}
	pid = fork();
	if (pid < 0) {
		char why[128];

		snprintf(why, sizeof(why), "fork: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		farm_throttle(f, why);
		return NULL;
	}
	if (pid == 0) {
		close(sp[0]);
		child_exec(f, sp[1], stress);
	}
	close(sp[1]);
	c = xcalloc(1, sizeof(*c));
	c->farm = f;
	c->pid = pid;
	c->generation = f->generation;
	c->born_ms = farm_now_ms();
	c->state = -1;
	c->status = frame_conn_new(f->base, sp[0], 0, child_on_frame, child_on_close, c);
	c->next = f->children;
	f->children = c;
	f->total++;
	f->spawned++;
	/* Available from birth: it will accept what woke us (master_spawn). */
	if (f->def->kind == FARM_KIND_FARM)
		child_set_avail(c, true);
	log_debug("farm %s: spawned pid %ld%s", f->def->name, (long)pid,
		  stress ? " (stress)" : "");
	return c;
}

static void farm_log_exit(struct farm *f, struct child *c, int status)
{
	if (WIFSIGNALED(status))
		log_warn("farm %s: pid %ld killed by signal %d%s", f->def->name, (long)c->pid,
			 WTERMSIG(status), c->term_sent ? "" : " (crash)");
	else if (WEXITSTATUS(status) != 0)
		log_warn("farm %s: pid %ld exit status %d", f->def->name, (long)c->pid,
			 WEXITSTATUS(status));
	else
		log_debug("farm %s: pid %ld exited", f->def->name, (long)c->pid);
}

static void child_free(struct child *c)
{
	frame_conn_free(&c->status);
	free(c);
}

bool farm_reap(struct farm *f, pid_t pid, int status)
{
	struct child **pp, *c;
	bool failed = WIFSIGNALED(status) || WEXITSTATUS(status) != 0;

	for (pp = &f->children; *pp && (*pp)->pid != pid; pp = &(*pp)->next)
		;
	if ((c = *pp) == NULL)
		return false;
	*pp = c->next;
	farm_log_exit(f, c, status);
	if (c->counted_avail)
		child_set_avail(c, false);
	if (!c->term_sent)
		f->total--;
	f->served += c->served;
	if (failed && !c->term_sent)
		f->crashed++;
	if (f->def->kind == FARM_KIND_ONCE) {
		f->once_running = false;
		f->first_done = true;
		if (failed)
			log_error("farm %s: once job failed", f->def->name);
	} else if (failed && !c->term_sent && !f->retiring && !c->healthy &&
		   farm_now_ms() - c->born_ms < FARM_HEALTHY_AGE_MS) {
		char why[96];

		snprintf(why, sizeof(why), "pid %ld died before serving a request", (long)c->pid);
		farm_throttle(f, why);
	}
	child_free(c);
	farm_update(f);
	return true;
}

/* ---- policy ---- */

static void farm_limit_reached(struct farm *f)
{
	time_t now = time(NULL);

	if (f->def->stress) {
		if (now >= f->stress_until)
			log_warn("farm %s: entering stress mode for %u s", f->def->name,
				 f->set->stress_duration);
		f->stress_until = now + (time_t)f->set->stress_duration;
	}
	if (f->busy_warn_time == 0 || now - f->busy_warn_time >= (time_t)f->set->busy_warn_interval) {
		f->busy_warn_time = now;
		log_warn("farm %s has reached its process limit %u: new clients may experience "
			 "noticeable delays",
			 f->def->name, f->limit);
	}
}

static void farm_update(struct farm *f)
{
	if (!f->started || f->retiring || f->def->kind == FARM_KIND_ONCE) {
		farm_set_listening(f, false);
		return;
	}
	if (f->def->kind == FARM_KIND_SINGLE) {
		/* Exactly one: not even a draining predecessor beside it. */
		if (f->children == NULL && !f->held && !farm_throttled(f))
			farm_spawn(f);
		farm_set_listening(f, false);
		return;
	}
	if (f->avail >= 1 || farm_throttled(f) || f->def->nlisten == 0) {
		farm_set_listening(f, false);
	} else if (f->total < f->limit) {
		farm_set_listening(f, true);
	} else {
		farm_set_listening(f, false);
		farm_limit_reached(f);
	}
}

static void farm_on_listen(evutil_socket_t fd, short what, void *arg)
{
	struct farm *f = arg;

	/* One connection (or more) waits: one child, which will accept. */
	if (f->started && f->avail < 1 && f->total < f->limit && !farm_throttled(f) && !f->retiring)
		farm_spawn(f);
	farm_update(f);
}

static void farm_run_once(struct farm *f)
{
	if (f->once_running || farm_throttled(f))
		return;
	f->once_runs++;
	if (farm_spawn(f)) {
		f->once_running = true;
	} else {
		f->once_runs--;
	}
}

void farm_start(struct farm *f)
{
	if (f->started || f->retiring)
		return;
	f->started = true;
	if (f->def->kind == FARM_KIND_ONCE) {
		farm_run_once(f);
		return;
	}
	if (f->def->kind == FARM_KIND_FARM)
		while (f->avail < f->def->process_min_avail && f->total < f->limit &&
		       !farm_throttled(f))
			if (farm_spawn(f) == NULL)
				break;
	farm_update(f);
}

static void farm_prefork(struct farm *f)
{
	unsigned spawned = 0;

	if (f->avail >= f->def->process_min_avail) {
		f->spawn_rate = 1;
		return;
	}
	while (f->avail < f->def->process_min_avail && f->total < f->limit && !farm_throttled(f) &&
	       spawned < f->spawn_rate)
		if (farm_spawn(f))
			spawned++;
	/* Still short: grow faster next round (Apache's 1, 2, 4, ... 32). */
	if (f->avail < f->def->process_min_avail && f->spawn_rate < FARM_SPAWN_RATE_MAX)
		f->spawn_rate *= 2;
}

static void farm_retire_idle(struct farm *f, uint64_t now)
{
	if (f->def->max_idle == 0)
		return;
	for (struct child *c = f->children; c && f->avail > f->def->process_min_avail;
	     c = c->next) {
		if (c->term_sent || !c->counted_avail || c->idle_since_ms == 0 ||
		    now - c->idle_since_ms < f->def->max_idle * 1000ull)
			continue;
		log_debug("farm %s: retiring idle pid %ld", f->def->name, (long)c->pid);
		child_dismiss(c);
		child_signal(c, SIGTERM);
	}
}

static void farm_check_child(struct farm *f, struct child *c, uint64_t now)
{
	const struct farm_def *d = f->def;

	if (d->max_processtime && c->busy_since_ms &&
	    now - c->busy_since_ms > d->max_processtime * 1000ull) {
		log_warn("farm %s: pid %ld busy on one request for more than %u s "
			 "(max_processtime): killed",
			 d->name, (long)c->pid, d->max_processtime);
		child_dismiss(c);
		child_signal(c, SIGKILL);
		c->busy_since_ms = 0;
		return;
	}
	if (c->term_sent)
		return;
	if (d->max_lifetime && now - c->born_ms > d->max_lifetime * 1000ull) {
		log_info("farm %s: pid %ld reached max_lifetime %u s: draining", d->name,
			 (long)c->pid, d->max_lifetime);
		child_dismiss(c);
		child_signal(c, SIGTERM);
		return;
	}
	if (!c->reported && d->kind != FARM_KIND_ONCE && f->set->startup_timeout &&
	    now - c->born_ms > f->set->startup_timeout * 1000ull) {
		log_warn("farm %s: pid %ld sent no status within %u s: not counted, killed",
			 d->name, (long)c->pid, f->set->startup_timeout);
		child_dismiss(c);
		child_signal(c, SIGKILL);
	}
}

static void farm_wakeup(struct farm *f, uint64_t now)
{
	Zfarm__Frame fr;
	Zfarm__FarmWakeup w;
	char err[128];

	if (f->def->wakeup == 0 || now < f->next_wakeup_ms)
		return;
	f->next_wakeup_ms = now + f->def->wakeup * 1000ull;
	if (f->def->kind == FARM_KIND_ONCE) {
		farm_run_once(f);
		return;
	}
	for (struct child *c = f->children; c; c = c->next) {
		if (c->term_sent || c->status == NULL || !c->reported)
			continue;
		frame_init(&fr, 0);
		zfarm__farm_wakeup__init(&w);
		fr.body_case = ZFARM__FRAME__BODY_FARM_WAKEUP;
		fr.farm_wakeup = &w;
		if (frame_conn_send(c->status, &fr, err, sizeof(err)) < 0)
			log_warn("farm %s: wakeup pid %ld: %s", f->def->name, (long)c->pid, err);
		return;
	}
}

void farm_tick(struct farm *f)
{
	uint64_t now = farm_now_ms();
	struct child *c, *next;

	for (c = f->children; c; c = next) {
		next = c->next;
		farm_check_child(f, c, now);
	}
	if (f->retiring || !f->started)
		return;
	if (f->def->kind == FARM_KIND_FARM) {
		farm_prefork(f);
		farm_retire_idle(f, now);
	}
	/*
	 * A first run that could not be spawned (fork failed, throttled):
	 * again, or the farms waiting for it would wait forever.
	 */
	if (f->def->kind == FARM_KIND_ONCE && !f->first_done && !f->once_running)
		farm_run_once(f);
	farm_wakeup(f, now);
	farm_update(f);
}

/* ---- life cycle ---- */

struct farm *farm_new(struct event_base *base, const struct farmd_settings *set,
		      struct farm_def *def, struct farm *old, uint64_t generation,
		      const char *overrides, char *err, size_t errlen)
{
	struct farm *f = xcalloc(1, sizeof(*f));

	f->base = base;
	f->set = set;
	f->def = def;
	f->overrides = overrides ? xstrdup(overrides) : NULL;
	f->generation = generation;
	f->limit = def->kind == FARM_KIND_FARM ? def->process_limit : 1;
	f->throttle_ms = (def->throttle_delay ? def->throttle_delay : 1) * 1000u;
	f->spawn_rate = 1;
	f->throttle_timer = evtimer_new(base, farm_on_throttle_end, f);
	f->next_wakeup_ms = farm_now_ms() + def->wakeup * 1000ull;
	if (old) {
		f->once_runs = old->once_runs;
		f->first_done = old->def->kind == FARM_KIND_ONCE && old->first_done;
	}
	f->socks = xcalloc(def->nlisten ? def->nlisten : 1, sizeof(*f->socks));
	for (unsigned i = 0; i < def->nlisten; i++)
		f->socks[i].fd = -1;
	for (unsigned i = 0; i < def->nlisten; i++) {
		if (farm_open_sock(f, i, old, err, errlen) < 0) {
			/* The caller keeps def on failure. */
			farm_close_socks(f, false);
			f->def = NULL;
			farm_free(&f);
			return NULL;
		}
	}
	return f;
}

static void farm_signal_all(struct farm *f, int sig)
{
	for (struct child *c = f->children; c; c = c->next) {
		child_dismiss(c);
		child_signal(c, sig);
	}
}

void farm_retire(struct farm *f)
{
	f->retiring = true;
	farm_set_listening(f, false);
	evtimer_del(f->throttle_timer);
	/* The new generation holds its own duplicates of shared sockets. */
	farm_close_socks(f, false);
	farm_signal_all(f, SIGTERM);
}

void farm_stop(struct farm *f)
{
	f->retiring = true;
	evtimer_del(f->throttle_timer);
	farm_close_socks(f, true);
	farm_signal_all(f, SIGTERM);
}

void farm_kill(struct farm *f)
{
	for (struct child *c = f->children; c; c = c->next) {
		log_warn("farm %s: pid %ld still running after the grace period: killed",
			 f->def->name, (long)c->pid);
		child_dismiss(c);
		child_signal(c, SIGKILL);
	}
}

void farm_hold(struct farm *f, bool held)
{
	f->held = held;
	if (!held)
		farm_update(f);
}

void farm_clamp_limit(struct farm *f, unsigned limit)
{
	if (limit < f->limit)
		f->limit = limit;
}

const struct farm_def *farm_def(const struct farm *f)
{
	return f->def;
}

const char *farm_name(const struct farm *f)
{
	return f->def->name;
}

unsigned farm_children(const struct farm *f)
{
	unsigned n = 0;

	for (const struct child *c = f->children; c; c = c->next)
		n++;
	return n;
}

bool farm_retiring(const struct farm *f)
{
	return f->retiring;
}

bool farm_started(const struct farm *f)
{
	return f->started;
}

bool farm_first_run_done(const struct farm *f)
{
	return f->def->kind != FARM_KIND_ONCE || f->first_done;
}

void farm_info(const struct farm *f, Zfarm__FarmInfo *info, char **endpoints)
{
	unsigned busy = 0;
	uint64_t now = farm_now_ms();
	uint64_t served = f->served;

	for (const struct child *c = f->children; c; c = c->next) {
		if (c->busy_since_ms)
			busy++;
		served += c->served;
	}
	zfarm__farm_info__init(info);
	info->name = f->def->name;
	info->kind = (char *)farm_kind_name(f->def->kind);
	info->total = f->total;
	info->available = f->avail;
	info->busy = busy;
	info->process_limit = f->limit;
	info->throttled_until = f->throttled_until_ms > now
					? (int64_t)time(NULL) +
						  (int64_t)((f->throttled_until_ms - now + 999) / 1000)
					: 0;
	info->stress = time(NULL) < f->stress_until;
	info->spawned = f->spawned;
	info->crashed = f->crashed;
	info->served = served;
	for (unsigned i = 0; i < f->def->nlisten; i++)
		endpoints[i] = f->def->listen[i].spec;
	info->n_endpoints = f->def->nlisten;
	info->endpoints = endpoints;
}

void farm_free(struct farm **fp)
{
	struct farm *f = *fp;
	struct child *c, *next;

	if (f == NULL)
		return;
	if (f->def)
		farm_close_socks(f, false);
	for (c = f->children; c; c = next) {
		next = c->next;
		child_free(c);
	}
	event_free(f->throttle_timer);
	free(f->socks);
	farm_def_free(&f->def);
	free(f->overrides);
	free(f);
	*fp = NULL;
}
