/* farm_def - the farm table read from the config; see farm_def.h. */
#include "farmd/farm_def.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/endpoint.h"
#include "common/params.h"
#include "common/paths.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

#ifndef ZF_LIBEXECDIR
#define ZF_LIBEXECDIR "/usr/local/libexec/zfarm"
#endif

static const char *const farm_def_params[] = {
	"kind",		 "listen",	    "program",	       "args",
	"user",		 "process_limit",   "process_min_avail", "client_limit",
	"max_requests",	 "max_idle",	    "max_processtime", "max_lifetime",
	"throttle_delay", "stress",	    "wakeup",	       "start_after",
};

const char *farm_kind_name(enum farm_kind kind)
{
	switch (kind) {
	case FARM_KIND_SINGLE:
		return "single";
	case FARM_KIND_ONCE:
		return "once";
	default:
		return "farm";
	}
}

/* farm_def_where - "file:line" of a parameter (or the section). */
static void farm_def_where(const struct config *cfg, const char *name, const char *param,
			   char *buf, size_t buflen)
{
	const char *file = "?";
	unsigned line = 0;

	if (config_location(cfg, "farm", name, param, &file, &line) < 0)
		config_location(cfg, "farm", name, NULL, &file, &line);
	if (line)
		snprintf(buf, buflen, "%s:%u", file, line);
	else
		snprintf(buf, buflen, "%s", file);
}

static int farm_def_check_param(const char *param, const char *value, const char *file,
				unsigned line, void *arg)
{
	char *bad = arg;

	for (size_t i = 0; i < sizeof(farm_def_params) / sizeof(farm_def_params[0]); i++)
		if (strcmp(param, farm_def_params[i]) == 0)
			return 0;
	/* A global of some service, overridden for this farm's children. */
	if (params_known(param))
		return 0;
	snprintf(bad, 512, "%s:%u: unknown farm parameter \"%s\"", file, line, param);
	return 1;
}

static int farm_def_uint(const struct config *cfg, const char *name, const char *param,
			 bool time, long long def, long long min, long long max, unsigned long *out,
			 char *err, size_t errlen)
{
	long long v;
	int rc = time ? config_get_time(cfg, "farm", name, param, def, min, max, &v, err, errlen)
		      : config_get_int(cfg, "farm", name, param, def, min, max, &v, err, errlen);

	if (rc == 0)
		*out = (unsigned long)v;
	return rc;
}

/* farm_def_listen - "[name=]unix:path" / "[name=]inet:host:port" items. */
static int farm_def_listen(const struct config *cfg, struct farm_def *d, const char *rundir,
			   char *err, size_t errlen)
{
	char **items = NULL;
	size_t n = 0;
	char where[512];

	if (config_get_list(cfg, "farm", d->name, "listen", NULL, &items, &n, err, errlen) < 0)
		return -1;
	farm_def_where(cfg, d->name, "listen", where, sizeof(where));
	d->listen = xcalloc(n ? n : 1, sizeof(*d->listen));
	for (size_t i = 0; i < n; i++) {
		char *item = items[i], *eq = strchr(item, '=');
		const char *spec = item, *name = d->name;
		struct endpoint ep;
		char canon[4200], reason[256];

		if (eq && strncmp(item, "unix:", 5) != 0 && strncmp(item, "inet:", 5) != 0) {
			*eq = '\0';
			name = item;
			spec = eq + 1;
			if (*name == '\0' || strchr(name, ':')) {
				snprintf(err, errlen, "%s: farm %s: bad listener name in \"%s\"",
					 where, d->name, items[i]);
				config_list_free(&items);
				return -1;
			}
		}
		if (strncmp(spec, "unix:", 5) == 0 && spec[5] != '/') {
			snprintf(canon, sizeof(canon), "unix:%s/%s", rundir, spec + 5);
			spec = canon;
		}
		if (endpoint_parse(spec, &ep, reason, sizeof(reason)) < 0) {
			snprintf(err, errlen, "%s: farm %s: %s", where, d->name, reason);
			config_list_free(&items);
			return -1;
		}
		d->listen[d->nlisten].name = xstrdup(name);
		d->listen[d->nlisten].spec = xstrdup(endpoint_format(&ep, canon, sizeof(canon)));
		d->nlisten++;
	}
	config_list_free(&items);
	return 0;
}

/* farm_def_start_after - the list; farm_defs_start_after checks the names. */
static int farm_def_start_after(const struct config *cfg, struct farm_def *d, char *err,
				size_t errlen)
{
	size_t n = 0;

	if (config_get_list(cfg, "farm", d->name, "start_after", NULL, &d->start_after, &n, err,
			    errlen) < 0)
		return -1;
	d->nstart_after = (unsigned)n;
	return 0;
}

static int farm_def_program(const struct config *cfg, struct farm_def *d, const char *progdir,
			    char *err, size_t errlen)
{
	const char *program = config_get(cfg, "farm", d->name, "program");
	const char *args = config_get_default(cfg, "farm", d->name, "args", "");
	char where[512], *copy, *save = NULL, *tok;
	size_t n = 1;

	if (program == NULL || *program == '\0') {
		farm_def_where(cfg, d->name, NULL, where, sizeof(where));
		snprintf(err, errlen, "%s: farm %s has no program", where, d->name);
		return -1;
	}
	d->argv = xcalloc(strlen(args) / 2 + 3, sizeof(*d->argv));
	d->argv[0] = program[0] == '/' ? xstrdup(program) : xasprintf("%s/%s", progdir, program);
	copy = xstrdup(args);
	for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
		d->argv[n++] = xstrdup(tok);
	d->argv[n] = NULL;
	free(copy);
	return 0;
}

static int farm_def_kind(const struct config *cfg, struct farm_def *d, char *err, size_t errlen)
{
	const char *kind = config_get_default(cfg, "farm", d->name, "kind", "farm");
	char where[512];

	if (strcmp(kind, "farm") == 0)
		d->kind = FARM_KIND_FARM;
	else if (strcmp(kind, "single") == 0)
		d->kind = FARM_KIND_SINGLE;
	else if (strcmp(kind, "once") == 0)
		d->kind = FARM_KIND_ONCE;
	else {
		farm_def_where(cfg, d->name, "kind", where, sizeof(where));
		snprintf(err, errlen, "%s: farm %s: kind \"%s\": want farm, single or once", where,
			 d->name, kind);
		return -1;
	}
	return 0;
}

static int farm_def_limits(const struct config *cfg, struct farm_def *d, char *err,
			   size_t errlen)
{
	const char *n = d->name;
	unsigned long v[10];
	char where[512];
	bool stress;

	if (farm_def_uint(cfg, n, "process_limit", false, 100, 1, 100000, &v[0], err, errlen) ||
	    farm_def_uint(cfg, n, "process_min_avail", false, 0, 0, 100000, &v[1], err, errlen) ||
	    farm_def_uint(cfg, n, "client_limit", false, 1, 1, 1000000, &v[2], err, errlen) ||
	    farm_def_uint(cfg, n, "max_requests", false, 0, 0, 1000000000, &v[3], err, errlen) ||
	    farm_def_uint(cfg, n, "max_idle", true, 100, 0, 86400 * 365, &v[4], err, errlen) ||
	    farm_def_uint(cfg, n, "max_processtime", true, 0, 0, 86400 * 365, &v[5], err, errlen) ||
	    farm_def_uint(cfg, n, "max_lifetime", true, 0, 0, 86400 * 365, &v[6], err, errlen) ||
	    farm_def_uint(cfg, n, "throttle_delay", true, 1, 1, 3600, &v[7], err, errlen) ||
	    farm_def_uint(cfg, n, "wakeup", true, 0, 0, 86400 * 365, &v[8], err, errlen) ||
	    config_get_bool(cfg, "farm", n, "stress", false, &stress, err, errlen))
		return -1;
	d->process_limit = (unsigned)v[0];
	d->process_min_avail = (unsigned)v[1];
	d->client_limit = (unsigned)v[2];
	d->max_requests = v[3];
	d->max_idle = (unsigned)v[4];
	d->max_processtime = (unsigned)v[5];
	d->max_lifetime = (unsigned)v[6];
	d->throttle_delay = (unsigned)v[7];
	d->wakeup = (unsigned)v[8];
	d->stress = stress;
	if (d->kind != FARM_KIND_FARM) {
		d->process_limit = 1;
		d->process_min_avail = 0;
	}
	if (d->process_min_avail > d->process_limit) {
		farm_def_where(cfg, n, "process_min_avail", where, sizeof(where));
		snprintf(err, errlen, "%s: farm %s: process_min_avail %u above process_limit %u",
			 where, n, d->process_min_avail, d->process_limit);
		return -1;
	}
	return 0;
}

static int farm_def_params_cb(const char *name, const char *value, const char *file,
			      unsigned line, void *arg)
{
	(void)file;
	(void)line;
	strbuf_printf(arg, "%s=%s\n", name, value);
	return 0;
}

struct farm_def_ignored {
	bool reads_section; /* the program reads its globals from its section */
	struct strbuf sb;
};

static int farm_def_ignored_cb(const char *name, const char *value, const char *file,
			       unsigned line, void *arg)
{
	struct farm_def_ignored *ig = arg;

	(void)value;
	(void)file;
	(void)line;
	for (size_t i = 0; i < sizeof(farm_def_params) / sizeof(farm_def_params[0]); i++)
		if (strcmp(name, farm_def_params[i]) == 0)
			return 0;
	if (ig->reads_section || strcmp(name, "log_level") == 0)
		return 0;
	strbuf_printf(&ig->sb, "%s%s", ig->sb.len ? ", " : "", name);
	return 0;
}

static struct farm_def *farm_def_load(const struct config *cfg, const char *name,
				      const struct farmd_settings *set, char *err, size_t errlen)
{
	struct farm_def *d = xcalloc(1, sizeof(*d));
	const char *user = config_get(cfg, "farm", name, "user");
	char where[512], bad[512];

	d->name = xstrdup(name);
	farm_def_where(cfg, name, NULL, where, sizeof(where));
	d->where = xstrdup(where);
	if (config_foreach(cfg, "farm", name, farm_def_check_param, bad)) {
		snprintf(err, errlen, "%s", bad);
		goto fail;
	}
	if (farm_def_kind(cfg, d, err, errlen) < 0 || farm_def_limits(cfg, d, err, errlen) < 0 ||
	    farm_def_program(cfg, d, set->program_directory, err, errlen) < 0 ||
	    farm_def_listen(cfg, d, set->run_directory, err, errlen) < 0 ||
	    farm_def_start_after(cfg, d, err, errlen) < 0)
		goto fail;
	if (d->kind == FARM_KIND_FARM && d->nlisten == 0) {
		snprintf(err, errlen, "%s: farm %s has no listen endpoint", where, name);
		goto fail;
	}
	if (user && *user)
		d->user = xstrdup(user);
	{
		struct strbuf sb;

		strbuf_init(&sb, 0);
		config_foreach(cfg, "farm", name, farm_def_params_cb, &sb);
		d->params = strbuf_steal(&sb);
	}
	if (d->argv && d->argv[0]) {
		const char *base = strrchr(d->argv[0], '/');
		struct farm_def_ignored ig;

		base = base ? base + 1 : d->argv[0];
		ig.reads_section = strcmp(base, "smtpserver") == 0 || strcmp(base, "pipe") == 0;
		strbuf_init(&ig.sb, 0);
		config_foreach(cfg, "farm", name, farm_def_ignored_cb, &ig);
		d->ignored = ig.sb.len ? strbuf_steal(&ig.sb) : NULL;
		strbuf_release(&ig.sb);
	}
	return d;
fail:
	farm_def_free(&d);
	return NULL;
}

static int farm_defs_settings(const struct config *cfg, struct farmd_settings *set, char *err,
			      size_t errlen)
{
	char dir[4096];
	const char *progdir;
	long long v[5];

	if (config_expand_check(cfg, err, errlen) < 0 ||
	    farmd_run_directory(cfg, dir, sizeof(dir), err, errlen) < 0)
		return -1;
	set->run_directory = xstrdup(dir);
	progdir = config_get_default(cfg, NULL, NULL, "program_directory", ZF_LIBEXECDIR);
	set->program_directory = xstrdup(progdir);
	if (config_get_time(cfg, NULL, NULL, "stop_grace", 10, 0, 3600, &v[0], err, errlen) ||
	    config_get_time(cfg, NULL, NULL, "throttle_max", 60, 1, 86400, &v[1], err, errlen) ||
	    config_get_time(cfg, NULL, NULL, "busy_warn_interval", 300, 0, 86400, &v[2], err,
			    errlen) ||
	    config_get_time(cfg, NULL, NULL, "stress_duration", 1000, 1, 86400, &v[3], err,
			    errlen) ||
	    config_get_time(cfg, NULL, NULL, "startup_timeout", 30, 0, 3600, &v[4], err, errlen))
		return -1;
	set->stop_grace = (unsigned)v[0];
	set->throttle_max = (unsigned)v[1];
	set->busy_warn_interval = (unsigned)v[2];
	set->stress_duration = (unsigned)v[3];
	set->startup_timeout = (unsigned)v[4];
	return 0;
}

/* farm_defs_unique - no endpoint served by two farms. */
static int farm_defs_unique(struct farm_def **defs, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		for (unsigned a = 0; a < defs[i]->nlisten; a++)
			for (size_t j = i + 1; j < n; j++)
				if (farm_def_has_listen(defs[j], defs[i]->listen[a].spec)) {
					snprintf(err, errlen,
						 "%s: farm %s: endpoint %s is already farm %s's",
						 defs[j]->where, defs[j]->name,
						 defs[i]->listen[a].spec, defs[i]->name);
					return -1;
				}
	return 0;
}

static const struct farm_def *farm_defs_find(struct farm_def **defs, size_t n,
					     const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(defs[i]->name, name) == 0)
			return defs[i];
	return NULL;
}

/*
 * farm_defs_start_after - start_after names once farms of this table, and
 * a once farm waits for nobody (it runs at start; a once farm waiting for
 * another would be an order among recovery jobs, which nothing needs).
 */
static int farm_defs_start_after(const struct config *cfg, struct farm_def **defs, size_t n,
				 char *err, size_t errlen)
{
	char where[512];

	for (size_t i = 0; i < n; i++) {
		const struct farm_def *d = defs[i];

		if (d->nstart_after == 0)
			continue;
		farm_def_where(cfg, d->name, "start_after", where, sizeof(where));
		if (d->kind == FARM_KIND_ONCE) {
			snprintf(err, errlen,
				 "%s: farm %s: start_after on a farm of kind once: once farms run "
				 "at start and wait for nothing",
				 where, d->name);
			return -1;
		}
		for (unsigned j = 0; j < d->nstart_after; j++) {
			const struct farm_def *o = farm_defs_find(defs, n, d->start_after[j]);

			if (o == NULL) {
				snprintf(err, errlen, "%s: farm %s: start_after: no farm named \"%s\"",
					 where, d->name, d->start_after[j]);
				return -1;
			}
			if (o->kind != FARM_KIND_ONCE) {
				snprintf(err, errlen,
					 "%s: farm %s: start_after: farm %s is of kind %s, not once",
					 where, d->name, o->name, farm_kind_name(o->kind));
				return -1;
			}
		}
	}
	return 0;
}

int farm_defs_load(const struct config *cfg, struct farmd_settings *set,
		   struct farm_def ***defsp, size_t *ndefsp, char *err, size_t errlen)
{
	size_t n = config_section_count(cfg, "farm");
	struct farm_def **defs = xcalloc(n ? n : 1, sizeof(*defs));

	if (farm_defs_settings(cfg, set, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		defs[i] = farm_def_load(cfg, config_section_name(cfg, "farm", i), set, err, errlen);
		if (defs[i] == NULL)
			goto fail;
	}
	if (farm_defs_unique(defs, n, err, errlen) < 0 ||
	    farm_defs_start_after(cfg, defs, n, err, errlen) < 0)
		goto fail;
	*defsp = defs;
	*ndefsp = n;
	return 0;
fail:
	farm_defs_free(&defs, &n);
	farmd_settings_clear(set);
	return -1;
}

static bool farm_str_equal(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

bool farm_def_equal(const struct farm_def *a, const struct farm_def *b)
{
	size_t i;

	if (strcmp(a->name, b->name) || a->kind != b->kind || a->nlisten != b->nlisten ||
	    !farm_str_equal(a->user, b->user) || a->process_limit != b->process_limit ||
	    a->process_min_avail != b->process_min_avail || a->client_limit != b->client_limit ||
	    a->max_requests != b->max_requests || a->max_idle != b->max_idle ||
	    a->max_processtime != b->max_processtime || a->max_lifetime != b->max_lifetime ||
	    a->throttle_delay != b->throttle_delay || a->wakeup != b->wakeup ||
	    a->stress != b->stress || a->nstart_after != b->nstart_after ||
	    !farm_str_equal(a->params, b->params))
		return false;
	for (i = 0; i < a->nstart_after; i++)
		if (strcmp(a->start_after[i], b->start_after[i]))
			return false;
	for (i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i].spec, b->listen[i].spec) ||
		    strcmp(a->listen[i].name, b->listen[i].name))
			return false;
	for (i = 0; a->argv[i] && b->argv[i]; i++)
		if (strcmp(a->argv[i], b->argv[i]))
			return false;
	return a->argv[i] == NULL && b->argv[i] == NULL;
}

bool farm_def_has_listen(const struct farm_def *def, const char *spec)
{
	for (unsigned i = 0; i < def->nlisten; i++)
		if (strcmp(def->listen[i].spec, spec) == 0)
			return true;
	return false;
}

void farm_def_free(struct farm_def **dp)
{
	struct farm_def *d = *dp;

	if (d == NULL)
		return;
	for (unsigned i = 0; i < d->nlisten; i++) {
		free(d->listen[i].name);
		free(d->listen[i].spec);
	}
	config_list_free(&d->start_after);
	free(d->ignored);
	free(d->params);
	free(d->listen);
	for (size_t i = 0; d->argv && d->argv[i]; i++)
		free(d->argv[i]);
	free(d->argv);
	free(d->user);
	free(d->where);
	free(d->name);
	free(d);
	*dp = NULL;
}

void farm_defs_free(struct farm_def ***defsp, size_t *ndefsp)
{
	struct farm_def **defs = *defsp;

	if (defs == NULL)
		return;
	for (size_t i = 0; i < *ndefsp; i++)
		farm_def_free(&defs[i]);
	free(defs);
	*defsp = NULL;
	*ndefsp = 0;
}

void farmd_settings_clear(struct farmd_settings *set)
{
	free(set->run_directory);
	free(set->program_directory);
	free(set->config_path);
	memset(set, 0, sizeof(*set));
}
