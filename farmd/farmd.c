/*
 * farmd - the farm manager: opens every socket, preforks and supervises
 * every farm, knows nothing about mail.
 *
 *   farmd -c FILE [-o name=value]... [-f] [-v]
 *
 * Reads top to bottom: options and config, run directory and pid file,
 * file-descriptor limit, sockets, farms, event loop.  "once" jobs and the
 * farms without start_after start together; a farm with start_after (the
 * smtpserver, which accepts new mail) starts when the first runs of the
 * once jobs it names have ended (the reinjector's queue recovery).  SIGHUP
 * (or "zfarmctl reload") re-reads the config and keeps the running one if
 * the new one is bad; SIGTERM (or "zfarmctl stop") stops: sockets closed,
 * children asked to finish, killed after stop_grace, pid file removed.
 * Process policy per farm lives in farm.c; the farm table in farm_def.c.
 */
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "farmd/control.h"
#include "farmd/farm.h"
#include "farmd/farm_def.h"
#include "farmd/pidfile.h"

#define FARMD_FD_RESERVE 64u

struct farmd {
	struct event_base *base;
	char *config_path;	 /* absolute, or NULL */
	char **overrides;	 /* -o arguments */
	size_t noverrides;
	char *overrides_env;	 /* the same, one per line, for children */
	struct config *cfg;
	char *globals;		 /* global parameters as text: reload compares */
	char *pending_text;	 /* config text being applied */
	struct farmd_settings set;

	struct farm **farms; /* current generation, config order */
	size_t nfarms;
	struct farm **retiring;
	size_t nretiring;
	uint64_t generation;

	struct pidfile *pidfile;
	struct control *control;
	struct event *sig_chld, *sig_hup, *sig_term, *sig_int, *tick, *grace, *finish;
	bool stopping;
	bool verbose; /* -v: debug, whatever log_level says */
};

static void farmd_usage(void)
{
	fprintf(stderr, "usage: farmd [-f] [-v] [-c config] [-o name=value]...\n");
	exit(2);
}

/* ---- config ---- */

static int farmd_globals_cb(const char *name, const char *value, const char *file, unsigned line,
			    void *arg)
{
	strbuf_printf(arg, "%s=%s\n", name, value);
	return 0;
}

/* farmd_slurp - the whole file (bounded), NUL-terminated; NULL + reason. */
static char *farmd_slurp(const char *path, char *err, size_t errlen)
{
	struct strbuf sb;
	char buf[8192];
	FILE *fp = fopen(path, "re");
	size_t n;

	if (fp == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	strbuf_init(&sb, CONFIG_MAX_FILE);
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0) {
		if (strbuf_append(&sb, buf, n) < 0) {
			snprintf(err, errlen, "%s: larger than %d bytes", path, CONFIG_MAX_FILE);
			break;
		}
	}
	if (ferror(fp) && sb.len <= CONFIG_MAX_FILE)
		snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
	if (ferror(fp) || n > 0) {
		fclose(fp);
		strbuf_release(&sb);
		return NULL;
	}
	fclose(fp);
	return strbuf_steal(&sb);
}

/*
 * farmd_config_read - a fresh config with our overrides; NULL + reason.
 * The file's text is kept in *text: once the config is applied it becomes
 * the snapshot children read, so a file edited (or broken) after a reload
 * never reaches children of the running generation.
 */
static struct config *farmd_config_read(struct farmd *fd, char **text, char *err,
					size_t errlen)
{
	struct config *cfg = config_new();

	paths_set_defaults(cfg);
	*text = NULL;
	for (size_t i = 0; i < fd->noverrides; i++) {
		if (config_override(cfg, fd->overrides[i], err, errlen) < 0) {
			config_free(&cfg);
			return NULL;
		}
	}
	if (fd->config_path) {
		*text = farmd_slurp(fd->config_path, err, errlen);
		if (*text == NULL ||
		    config_load_string(cfg, *text, fd->config_path, err, errlen) < 0) {
			free(*text);
			*text = NULL;
			config_free(&cfg);
			return NULL;
		}
	}
	return cfg;
}

/* farmd_snapshot - write the applied config text where children read it. */
static int farmd_snapshot(struct farmd *fd, const char *text, char *err, size_t errlen)
{
	char *path = xasprintf("%s/zfarm.conf.running", fd->set.run_directory);
	char *tmp = xasprintf("%s.tmp", path);
	FILE *fp = fopen(tmp, "we");
	int rc = 0;

	if (fp != NULL && fputs(text, fp) < 0) {
		fclose(fp);
		fp = NULL;
	}
	if (fp == NULL || fclose(fp) != 0 || rename(tmp, path) < 0) {
		snprintf(err, errlen, "config snapshot: %s", strerror(errno));
		rc = -1;
	}
	free(tmp);
	free(path);
	return rc;
}

static char *farmd_globals_text(const struct config *cfg)
{
	struct strbuf sb;

	strbuf_init(&sb, 0);
	config_foreach(cfg, NULL, NULL, farmd_globals_cb, &sb);
	/*
	 * The channel sections too: the router, the scheduler and the
	 * transports read them, so a changed channel restarts the farms (all
	 * of them: simpler than knowing who reads which).
	 */
	for (size_t i = 0; i < config_section_count(cfg, "channel"); i++) {
		const char *name = config_section_name(cfg, "channel", i);

		strbuf_printf(&sb, "[channel %s]\n", name);
		config_foreach(cfg, "channel", name, farmd_globals_cb, &sb);
	}
	return strbuf_steal(&sb);
}

/* ---- run directory and limits ---- */

static void farmd_mkdir(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) < 0 && errno != EEXIST)
		log_fatal("mkdir %s: %s", path, strerror(errno));
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		log_fatal("%s: not a directory", path);
	/* The mode is the access control of the sockets inside (seed 003). */
	if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0)
		log_fatal("chmod %s: %s", path, strerror(errno));
}

static void farmd_make_dirs(struct farmd *fd)
{
	char path[PATH_MAX];

	farmd_mkdir(fd->set.run_directory, 0755);
	snprintf(path, sizeof(path), "%s/private", fd->set.run_directory);
	farmd_mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/public", fd->set.run_directory);
	farmd_mkdir(path, 0755);
}

/*
 * farmd_check_fd_limit - every child costs farmd one status socket (and a
 * transient one while forking), every endpoint one listen socket.  Raise
 * the soft limit to what the farms could use; if the hard limit is lower,
 * clamp process limits (seed 001) instead of failing later.
 */
static void farmd_check_fd_limit(struct farmd *fd, struct farm_def **defs, size_t ndefs,
				 unsigned *limits)
{
	struct rlimit rl;
	unsigned long need = FARMD_FD_RESERVE, have, spare;

	for (size_t i = 0; i < ndefs; i++) {
		limits[i] = defs[i]->kind == FARM_KIND_FARM ? defs[i]->process_limit : 1;
		need += defs[i]->nlisten + limits[i];
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_fatal("getrlimit: %s", strerror(errno));
	if (rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		getrlimit(RLIMIT_NOFILE, &rl);
	have = rl.rlim_cur;
	if (have >= need) {
		log_info("raised the open file limit to %lu", have);
		return;
	}
	spare = have > FARMD_FD_RESERVE ? have - FARMD_FD_RESERVE : 0;
	for (size_t i = 0; i < ndefs; i++)
		spare = spare > defs[i]->nlisten ? spare - defs[i]->nlisten : 0;
	/* Share what is left in proportion to the configured limits. */
	for (size_t i = 0; i < ndefs; i++) {
		unsigned long share = (unsigned long)limits[i] * spare / (need - FARMD_FD_RESERVE);

		if (share < 1)
			share = 1;
		if (share < limits[i]) {
			log_warn("farm %s: process_limit %u clamped to %lu: open file limit is "
				 "%lu, the farms could need %lu",
				 defs[i]->name, limits[i], share, have, need);
			limits[i] = (unsigned)share;
		}
	}
}

/* ---- farms ---- */

static struct farm *farmd_find(struct farm **farms, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (farms[i] && strcmp(farm_name(farms[i]), name) == 0)
			return farms[i];
	return NULL;
}

static void farmd_retire(struct farmd *fd, struct farm *f)
{
	farm_retire(f);
	if (farm_children(f) == 0) {
		farm_free(&f);
		return;
	}
	fd->retiring = xreallocarray(fd->retiring, fd->nretiring + 1, sizeof(*fd->retiring));
	fd->retiring[fd->nretiring++] = f;
}

/* farmd_unlink_unused - remove socket files of old that no new farm uses. */
static void farmd_unlink_unused(struct farm *old, struct farm **farms, size_t n)
{
	const struct farm_def *d = farm_def(old);

	for (unsigned i = 0; i < d->nlisten; i++) {
		bool used = false;

		if (strncmp(d->listen[i].spec, "unix:", 5) != 0)
			continue;
		for (size_t j = 0; j < n && !used; j++)
			used = farm_def_has_listen(farm_def(farms[j]), d->listen[i].spec);
		if (!used)
			unlink(d->listen[i].spec + 5);
	}
}

/*
 * farmd_waits_for - how many once farms f names in start_after have not
 * finished their first run yet; their names go to names (if not NULL,
 * room for nstart_after).  A farm is ready to start at 0.
 */
static size_t farmd_waits_for(const struct farmd *fd, const struct farm *f, char **names)
{
	const struct farm_def *d = farm_def(f);
	size_t n = 0;

	for (unsigned i = 0; i < d->nstart_after; i++) {
		/* farm_defs_load made sure it is a once farm of this table. */
		const struct farm *o = farmd_find(fd->farms, fd->nfarms, d->start_after[i]);

		if (o && !farm_first_run_done(o)) {
			if (names)
				names[n] = d->start_after[i];
			n++;
		}
	}
	return n;
}

/* farmd_list_waiter - ", NAME (after ONCE, ...)" to sb. */
static void farmd_list_waiter(struct strbuf *sb, const struct farm *f)
{
	const struct farm_def *d = farm_def(f);

	strbuf_printf(sb, "%s%s (after ", sb->len ? ", " : "", d->name);
	for (unsigned i = 0; i < d->nstart_after; i++)
		strbuf_printf(sb, "%s%s", i ? ", " : "", d->start_after[i]);
	strbuf_printf(sb, ")");
}

/*
 * farmd_start_farms - farm_start() every farm not started yet whose
 * start_after once farms have finished their first runs: after a load
 * (once jobs, farms without start_after, new and changed farms) and when
 * a once job ends.  One line names the farms with start_after started now
 * ("farms started: smtpserver (after reinject)"); after a load, one line
 * names those that wait.
 */
static void farmd_start_farms(struct farmd *fd, bool loaded)
{
	struct strbuf started, waiting;

	if (fd->stopping)
		return;
	strbuf_init(&started, 0);
	strbuf_init(&waiting, 0);
	for (size_t i = 0; i < fd->nfarms; i++) {
		struct farm *f = fd->farms[i];

		if (farm_started(f))
			continue;
		if (farmd_waits_for(fd, f, NULL)) {
			farmd_list_waiter(&waiting, f);
			continue;
		}
		farm_start(f);
		if (farm_def(f)->nstart_after)
			farmd_list_waiter(&started, f);
	}
	if (started.len)
		log_info("farms started: %s; generation %llu", strbuf_cstr(&started),
			 (unsigned long long)fd->generation);
	if (loaded && waiting.len)
		log_info("farms waiting for the first run of a once job: %s",
			 strbuf_cstr(&waiting));
	strbuf_release(&started);
	strbuf_release(&waiting);
}

/*
 * farmd_apply - build the farms of a new config.  Unchanged farms (same
 * definition and same global parameters) keep running; changed ones get a
 * new generation that takes over their sockets; the old one retires.
 * Returns -1 (nothing changed) if a socket cannot be opened.
 */
static int farmd_apply(struct farmd *fd, struct config *cfg, struct farmd_settings *set,
		       struct farm_def **defs, size_t ndefs, char *err, size_t errlen)
{
	char *globals = farmd_globals_text(cfg);
	bool globals_changed = fd->globals == NULL || strcmp(globals, fd->globals) != 0;
	struct farm **farms = xcalloc(ndefs ? ndefs : 1, sizeof(*farms));
	bool *kept = xcalloc(ndefs ? ndefs : 1, sizeof(*kept));
	unsigned *limits = xcalloc(ndefs ? ndefs : 1, sizeof(*limits));
	uint64_t generation = fd->generation + 1;

	farmd_check_fd_limit(fd, defs, ndefs, limits);
	for (size_t i = 0; i < ndefs; i++) {
		struct farm *old = farmd_find(fd->farms, fd->nfarms, defs[i]->name);

		if (old && !globals_changed && farm_def_equal(farm_def(old), defs[i])) {
			farms[i] = old;
			kept[i] = true;
			farm_def_free(&defs[i]);
			continue;
		}
		farms[i] = farm_new(fd->base, &fd->set, defs[i], old, generation,
				    fd->overrides_env, err, errlen);
		if (farms[i] && old && defs[i]->kind == FARM_KIND_SINGLE && farm_children(old))
			farm_hold(farms[i], true);
		if (farms[i] == NULL) {
			/* Undo: the new farms go; old farms still hold their sockets. */
			for (size_t j = 0; j < i; j++)
				if (!kept[j])
					farm_free(&farms[j]);
			for (size_t j = i; j < ndefs; j++)
				farm_def_free(&defs[j]);
			free(defs);
			free(farms);
			free(kept);
			free(limits);
			free(globals);
			return -1;
		}
		defs[i] = NULL;
		farm_clamp_limit(farms[i], limits[i]);
	}
	free(defs);
	/* Old farms that are not kept retire. */
	for (size_t i = 0; i < fd->nfarms; i++) {
		bool still = false;

		for (size_t j = 0; j < ndefs; j++)
			still = still || (kept[j] && farms[j] == fd->farms[i]);
		if (!still) {
			farmd_unlink_unused(fd->farms[i], farms, ndefs);
			farmd_retire(fd, fd->farms[i]);
		}
	}
	free(fd->farms);
	fd->farms = farms;
	fd->nfarms = ndefs;
	fd->generation = generation;
	free(fd->globals);
	fd->globals = globals;
	config_free(&fd->cfg);
	fd->cfg = cfg;
	/* Settings that name places cannot move under running farms. */
	free(set->run_directory);
	set->run_directory = fd->set.run_directory;
	fd->set.run_directory = NULL;
	farmd_settings_clear(&fd->set);
	fd->set = *set;
	/* Nothing fails from here on: children now read this config. */
	if (fd->pending_text && farmd_snapshot(fd, fd->pending_text, err, errlen) < 0)
		log_error("%s: children read a stale configuration", err);
	free(fd->pending_text);
	fd->pending_text = NULL;
	/*
	 * New and changed farms start now (once jobs too, on a reload), those
	 * with start_after when their once jobs' first runs are over (after
	 * start-up they are: a rerun of a changed once job holds nothing).
	 */
	farmd_start_farms(fd, true);
	free(kept);
	free(limits);
	return 0;
}

/*
 * farmd_log_level - farmd's own lines follow log_level like every daemon's
 * (-v keeps debug); a bad value was refused by the children's config
 * check already, so it is only warned about here.
 */
static void farmd_log_level(struct farmd *fd)
{
	const char *v;
	int level;

	if (fd->verbose || !fd->cfg)
		return;
	v = config_get(fd->cfg, NULL, NULL, "log_level");
	if (!v || !*v)
		return;
	level = log_level_parse(v);
	if (level < 0)
		log_warn("log_level = %s: not debug, info, warn or error", v);
	else
		log_set_level((enum log_level)level);
}

static int farmd_load(struct farmd *fd, char *err, size_t errlen)
{
	struct farmd_settings set;
	struct farm_def **defs;
	size_t ndefs;
	char *text;
	struct config *cfg = farmd_config_read(fd, &text, err, errlen);

	if (cfg == NULL)
		return -1;
	memset(&set, 0, sizeof(set));
	if (farm_defs_load(cfg, &set, &defs, &ndefs, err, errlen) < 0) {
		free(text);
		config_free(&cfg);
		return -1;
	}
	for (size_t i = 0; i < ndefs; i++)
		if (defs[i]->ignored)
			log_warn("%s: [farm %s] sets %s, which its program reads from the "
				 "global settings only: no effect here",
				 defs[i]->where, defs[i]->name, defs[i]->ignored);
	if (text)
		set.config_path = xasprintf("%s/zfarm.conf.running",
					    fd->set.run_directory ? fd->set.run_directory
								  : set.run_directory);
	free(fd->pending_text);
	fd->pending_text = text;
	if (fd->set.run_directory && strcmp(set.run_directory, fd->set.run_directory) != 0)
		log_warn("reload: run_directory cannot change while running: keeping %s",
			 fd->set.run_directory);
	if (farmd_apply(fd, cfg, &set, defs, ndefs, err, errlen) < 0) {
		farmd_settings_clear(&set);
		config_free(&cfg);
		return -1;
	}
	farmd_log_level(fd);
	return 0;
}

static int farmd_reload(struct farmd *fd, char *err, size_t errlen)
{
	if (fd->stopping) {
		snprintf(err, errlen, "farmd is stopping");
		return -1;
	}
	if (farmd_load(fd, err, errlen) < 0) {
		log_error("reload failed, keeping the running configuration: %s", err);
		return -1;
	}
	log_info("reloaded: generation %llu", (unsigned long long)fd->generation);
	return 0;
}

/* ---- stop ---- */

static unsigned farmd_children(struct farmd *fd)
{
	unsigned n = 0;

	for (size_t i = 0; i < fd->nfarms; i++)
		n += farm_children(fd->farms[i]);
	for (size_t i = 0; i < fd->nretiring; i++)
		n += farm_children(fd->retiring[i]);
	return n;
}

static void farmd_check_finished(struct farmd *fd)
{
	if (fd->stopping && farmd_children(fd) == 0)
		event_active(fd->finish, EV_TIMEOUT, 0);
}

static void farmd_on_finish(evutil_socket_t s, short what, void *arg)
{
	struct farmd *fd = arg;

	log_info("stopped");
	event_base_loopbreak(fd->base);
}

static void farmd_on_grace(evutil_socket_t s, short what, void *arg)
{
	struct farmd *fd = arg;

	for (size_t i = 0; i < fd->nfarms; i++)
		farm_kill(fd->farms[i]);
	for (size_t i = 0; i < fd->nretiring; i++)
		farm_kill(fd->retiring[i]);
}

static void farmd_stop(struct farmd *fd)
{
	struct timeval tv = {(time_t)fd->set.stop_grace, 0};

	if (fd->stopping)
		return;
	fd->stopping = true;
	log_info("stopping: %u child process(es) to finish, grace %u s", farmd_children(fd),
		 fd->set.stop_grace);
	for (size_t i = 0; i < fd->nfarms; i++)
		farm_stop(fd->farms[i]);
	for (size_t i = 0; i < fd->nretiring; i++)
		farm_stop(fd->retiring[i]);
	evtimer_add(fd->grace, &tv);
	farmd_check_finished(fd);
}

/* ---- events ---- */

static void farmd_reap(struct farmd *fd, pid_t pid, int status)
{
	for (size_t i = 0; i < fd->nfarms; i++)
		if (farm_reap(fd->farms[i], pid, status)) {
			/* A once job ended: farms waiting for its first run may start. */
			if (farm_def(fd->farms[i])->kind == FARM_KIND_ONCE)
				farmd_start_farms(fd, false);
			return;
		}
	for (size_t i = 0; i < fd->nretiring; i++) {
		if (farm_reap(fd->retiring[i], pid, status)) {
			if (farm_children(fd->retiring[i]) == 0) {
				struct farm *next = farmd_find(fd->farms, fd->nfarms,
							       farm_name(fd->retiring[i]));

				/* A single farm's successor may start now. */
				if (next && !fd->stopping)
					farm_hold(next, false);
				farm_free(&fd->retiring[i]);
				fd->retiring[i] = fd->retiring[--fd->nretiring];
			}
			return;
		}
	}
	log_warn("reaped unknown pid %ld", (long)pid);
}

static void farmd_on_sigchld(evutil_socket_t s, short what, void *arg)
{
	struct farmd *fd = arg;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		farmd_reap(fd, pid, status);
	farmd_check_finished(fd);
}

static void farmd_on_sighup(evutil_socket_t s, short what, void *arg)
{
	char err[1024];

	log_info("SIGHUP: reloading");
	farmd_reload(arg, err, sizeof(err));
}

static void farmd_on_sigterm(evutil_socket_t s, short what, void *arg)
{
	farmd_stop(arg);
}

static void farmd_on_tick(evutil_socket_t s, short what, void *arg)
{
	struct farmd *fd = arg;

	if (fd->stopping)
		return;
	for (size_t i = 0; i < fd->nfarms; i++)
		farm_tick(fd->farms[i]);
	for (size_t i = 0; i < fd->nretiring; i++)
		farm_tick(fd->retiring[i]);
}

/* ---- control ---- */

static void farmd_on_control(const Zfarm__FarmControlRequest *req,
			     Zfarm__FarmControlReply *reply, void *arg)
{
	/* Reply memory must outlive this call until the next one (control.h). */
	static Zfarm__FarmInfo *infos;
	static Zfarm__FarmInfo **ptrs;
	static char **endpoints, **waits;
	static char err[1024];
	struct farmd *fd = arg;
	size_t nendpoints = 0, used = 0, nwaits = 0, wused = 0;

	reply->ok = true;
	reply->pid = (uint32_t)getpid();
	switch (req->op) {
	case ZFARM__FARM_CONTROL_REQUEST__OP__STATUS:
		for (size_t i = 0; i < fd->nfarms; i++) {
			nendpoints += farm_def(fd->farms[i])->nlisten;
			nwaits += farm_def(fd->farms[i])->nstart_after;
		}
		infos = xreallocarray(infos, fd->nfarms + 1, sizeof(*infos));
		ptrs = xreallocarray(ptrs, fd->nfarms + 1, sizeof(*ptrs));
		endpoints = xreallocarray(endpoints, nendpoints + 1, sizeof(*endpoints));
		waits = xreallocarray(waits, nwaits + 1, sizeof(*waits));
		for (size_t i = 0; i < fd->nfarms; i++) {
			const struct farm_def *d = farm_def(fd->farms[i]);

			farm_info(fd->farms[i], &infos[i], endpoints + used);
			used += d->nlisten;
			/* Held back: the once jobs whose first run it still waits for. */
			infos[i].waiting_for = waits + wused;
			if (!farm_started(fd->farms[i]))
				infos[i].n_waiting_for = farmd_waits_for(fd, fd->farms[i], waits + wused);
			wused += infos[i].n_waiting_for;
			ptrs[i] = &infos[i];
		}
		reply->n_farms = fd->nfarms;
		reply->farms = ptrs;
		break;
	case ZFARM__FARM_CONTROL_REQUEST__OP__RELOAD:
		if (farmd_reload(fd, err, sizeof(err)) < 0) {
			reply->ok = false;
			reply->error = err;
		}
		break;
	case ZFARM__FARM_CONTROL_REQUEST__OP__STOP:
		log_info("stop requested over the control socket");
		farmd_stop(fd);
		break;
	case ZFARM__FARM_CONTROL_REQUEST__OP__THROTTLE_RESET: {
		struct farm *f = farmd_find(fd->farms, fd->nfarms, req->farm);

		if (*req->farm == '\0') {
			log_info("throttle reset of every farm by operator");
			for (size_t i = 0; i < fd->nfarms; i++)
				farm_throttle_reset(fd->farms[i]);
		} else if (f == NULL) {
			snprintf(err, sizeof(err), "no farm named \"%s\"", req->farm);
			reply->ok = false;
			reply->error = err;
		} else {
			log_info("farm %s: throttle reset by operator", req->farm);
			farm_throttle_reset(f);
		}
		break;
	}
	default:
		snprintf(err, sizeof(err), "unknown control operation %d", (int)req->op);
		reply->ok = false;
		reply->error = err;
	}
	reply->generation = fd->generation;
}

/* ---- start ---- */

static void farmd_options(struct farmd *fd, int argc, char **argv, bool *foreground)
{
	struct strbuf env;
	int c;

	strbuf_init(&env, 0);
	while ((c = getopt(argc, argv, "c:o:fv")) != -1) {
		switch (c) {
		case 'c':
			free(fd->config_path);
			fd->config_path = realpath(optarg, NULL);
			if (fd->config_path == NULL)
				log_fatal("config file %s: %s", optarg, strerror(errno));
			break;
		case 'o':
			if (strchr(optarg, '\n'))
				log_fatal("-o %s: newline in value", optarg);
			fd->overrides = xreallocarray(fd->overrides, fd->noverrides + 1,
						      sizeof(*fd->overrides));
			fd->overrides[fd->noverrides++] = optarg;
			strbuf_printf(&env, "%s\n", optarg);
			break;
		case 'f':
			*foreground = true;
			break;
		case 'v':
			fd->verbose = true;
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		default:
			farmd_usage();
		}
	}
	if (optind != argc)
		farmd_usage();
	if (!fd->config_path && paths_config_file()) {
		/* No -c: $ZFARM_CONFIG or the installed zfarm.conf. */
		fd->config_path = realpath(paths_config_file(), NULL);
		if (fd->config_path == NULL)
			log_fatal("config file %s: %s", paths_config_file(), strerror(errno));
	}
	fd->overrides_env = env.len ? strbuf_steal(&env) : NULL;
	strbuf_release(&env);
}

static void farmd_daemonize(void)
{
	pid_t pid = fork();

	if (pid < 0)
		log_fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		log_fatal("setsid: %s", strerror(errno));
	if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout))
		log_fatal("/dev/null: %s", strerror(errno));
}

static void farmd_events(struct farmd *fd)
{
	struct timeval one = {1, 0};

	fd->base = event_base_new();
	if (fd->base == NULL)
		log_fatal("event_base_new failed");
	fd->sig_chld = evsignal_new(fd->base, SIGCHLD, farmd_on_sigchld, fd);
	fd->sig_hup = evsignal_new(fd->base, SIGHUP, farmd_on_sighup, fd);
	fd->sig_term = evsignal_new(fd->base, SIGTERM, farmd_on_sigterm, fd);
	fd->sig_int = evsignal_new(fd->base, SIGINT, farmd_on_sigterm, fd);
	fd->tick = event_new(fd->base, -1, EV_PERSIST, farmd_on_tick, fd);
	fd->grace = evtimer_new(fd->base, farmd_on_grace, fd);
	fd->finish = evtimer_new(fd->base, farmd_on_finish, fd);
	event_add(fd->sig_chld, NULL);
	event_add(fd->sig_hup, NULL);
	event_add(fd->sig_term, NULL);
	event_add(fd->sig_int, NULL);
	event_add(fd->tick, &one);
}

static void farmd_cleanup(struct farmd *fd)
{
	control_free(&fd->control);
	for (size_t i = 0; i < fd->nfarms; i++)
		farm_free(&fd->farms[i]);
	for (size_t i = 0; i < fd->nretiring; i++)
		farm_free(&fd->retiring[i]);
	free(fd->farms);
	free(fd->retiring);
	pidfile_release(&fd->pidfile);
	event_free(fd->sig_chld);
	event_free(fd->sig_hup);
	event_free(fd->sig_term);
	event_free(fd->sig_int);
	event_free(fd->tick);
	event_free(fd->grace);
	event_free(fd->finish);
	event_base_free(fd->base);
	config_free(&fd->cfg);
	farmd_settings_clear(&fd->set);
	free(fd->globals);
	free(fd->pending_text);
	free(fd->overrides);
	free(fd->overrides_env);
	free(fd->config_path);
}

int main(int argc, char **argv)
{
	struct farmd fd;
	bool foreground = false;
	char err[1024], path[PATH_MAX];

	memset(&fd, 0, sizeof(fd));
	log_open("farmd", LOG_TARGET_STDERR);
	farmd_options(&fd, argc, argv, &foreground);
	signal(SIGPIPE, SIG_IGN);

	/* Check the whole config before touching anything. */
	{
		char *text;

		fd.cfg = farmd_config_read(&fd, &text, err, sizeof(err));
		if (fd.cfg == NULL)
			log_fatal("%s", err);
		free(text);
	}
	{
		struct farmd_settings set;
		struct farm_def **defs;
		size_t ndefs;

		memset(&set, 0, sizeof(set));
		if (farm_defs_load(fd.cfg, &set, &defs, &ndefs, err, sizeof(err)) < 0)
			log_fatal("%s", err);
		farm_defs_free(&defs, &ndefs);
		fd.set.run_directory = set.run_directory;
		set.run_directory = NULL;
		farmd_settings_clear(&set);
	}
	config_free(&fd.cfg);
	if (!foreground) {
		log_open("farmd", LOG_TARGET_SYSLOG);
		farmd_daemonize();
	}

	farmd_make_dirs(&fd);
	snprintf(path, sizeof(path), "%s/farmd.pid", fd.set.run_directory);
	fd.pidfile = pidfile_acquire(path, err, sizeof(err));
	if (fd.pidfile == NULL)
		log_fatal("%s", err);
	farmd_events(&fd);
	if (farmd_load(&fd, err, sizeof(err)) < 0)
		log_fatal("%s", err);
	snprintf(path, sizeof(path), "%s/private/control", fd.set.run_directory);
	fd.control = control_new(fd.base, path, farmd_on_control, &fd, err, sizeof(err));
	if (fd.control == NULL)
		log_fatal("control socket: %s", err);

	log_info("started: pid %ld, %zu farm(s), run directory %s", (long)getpid(), fd.nfarms,
		 fd.set.run_directory);
	if (event_base_dispatch(fd.base) < 0)
		log_fatal("event loop failed");
	farmd_cleanup(&fd);
	return 0;
}
