/* channel - the channel table; see channel.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/channel.h"
#include "common/config.h"
#include "common/xalloc.h"

struct channel_table {
	struct channel_def *defs;
	size_t n;
};

/* Built-ins: name and whether a transport farm delivers for it. */
static const struct {
	const char *name;
	bool farm;
} channel_builtins[] = {
    {"local", true},	{"smtp", true},	 {"relay", true},  {"error", false},
    {"discard", false}, {"hold", false}, {"bounce", true},
};

static const char *const channel_params[] = {
    "endpoint",	       "domains",    "concurrency", "destination_concurrency",
    "recipient_limit", "rate_delay",
};

struct check {
	char *bad;
	size_t badlen;
};

static int channel_check_param(const char *param, const char *value, const char *file,
			       unsigned line, void *arg)
{
	struct check *c = arg;

	(void)value;
	for (size_t i = 0; i < sizeof(channel_params) / sizeof(channel_params[0]); i++)
		if (strcmp(param, channel_params[i]) == 0)
			return 0;
	snprintf(c->bad, c->badlen, "%s:%u: unknown channel parameter \"%s\"", file, line, param);
	return 1;
}

static bool channel_builtin_farm(const char *name, bool *is_builtin)
{
	for (size_t i = 0; i < sizeof(channel_builtins) / sizeof(channel_builtins[0]); i++)
		if (strcmp(name, channel_builtins[i].name) == 0) {
			*is_builtin = true;
			return channel_builtins[i].farm;
		}
	*is_builtin = false;
	return true;
}

static int channel_uint(const struct config *cfg, const char *name, const char *param,
			long long def, long long max, bool time, unsigned *out, char *err,
			size_t errlen)
{
	long long v;
	int rc = time ? config_get_time(cfg, "channel", name, param, def, 0, max, &v, err, errlen)
		      : config_get_int(cfg, "channel", name, param, def, 1, max, &v, err, errlen);

	if (rc == 0)
		*out = (unsigned)v;
	return rc;
}

/* channel_fill - d for name; section says whether [channel name] exists. */
static int channel_fill(struct channel_def *d, const struct config *cfg, const char *name,
			bool section, char *err, size_t errlen)
{
	bool builtin, farm = channel_builtin_farm(name, &builtin);
	char spec[512];
	const char *v;

	d->name = xstrdup(name);
	d->builtin = builtin;
	if (!section) {
		d->concurrency = 20;
		d->destination_concurrency = 20;
		d->recipient_limit = 50;
		if (farm) {
			snprintf(spec, sizeof(spec), "unix:private/%s", name);
			d->endpoint = xstrdup(spec);
		}
		return 0;
	}
	v = config_get(cfg, "channel", name, "endpoint");
	if (v && strcmp(v, "none") != 0 && v[0]) {
		d->endpoint = xstrdup(v);
	} else if (!v && farm) {
		snprintf(spec, sizeof(spec), "unix:private/%s", name);
		d->endpoint = xstrdup(spec);
	}
	v = config_get(cfg, "channel", name, "domains");
	if (v && v[0])
		d->domains = xstrdup(v);
	if (channel_uint(cfg, name, "concurrency", 20, 100000, false, &d->concurrency, err,
			 errlen) < 0 ||
	    channel_uint(cfg, name, "destination_concurrency", 20, 100000, false,
			 &d->destination_concurrency, err, errlen) < 0 ||
	    channel_uint(cfg, name, "recipient_limit", 50, 100000, false, &d->recipient_limit, err,
			 errlen) < 0 ||
	    channel_uint(cfg, name, "rate_delay", 0, 86400, true, &d->rate_delay, err, errlen) < 0)
		return -1;
	return 0;
}

struct channel_table *channel_table_load(const struct config *cfg, char *err, size_t errlen)
{
	struct channel_table *ct = xcalloc(1, sizeof(*ct));
	size_t nsec = config_section_count(cfg, "channel");
	size_t nb = sizeof(channel_builtins) / sizeof(channel_builtins[0]);
	char bad[512];
	struct check chk = {bad, sizeof(bad)};

	ct->defs = xcalloc(nsec + nb, sizeof(*ct->defs));
	for (size_t i = 0; i < nsec; i++) {
		const char *name = config_section_name(cfg, "channel", i);

		if (config_foreach(cfg, "channel", name, channel_check_param, &chk)) {
			snprintf(err, errlen, "%s", bad);
			goto fail;
		}
		if (channel_fill(&ct->defs[ct->n++], cfg, name, true, err, errlen) < 0)
			goto fail;
	}
	for (size_t i = 0; i < nb; i++)
		if (!channel_table_find(ct, channel_builtins[i].name))
			channel_fill(&ct->defs[ct->n++], cfg, channel_builtins[i].name, false, err,
				     errlen);
	return ct;
fail:
	channel_table_free(&ct);
	return NULL;
}

size_t channel_table_count(const struct channel_table *ct)
{
	return ct->n;
}

const struct channel_def *channel_table_get(const struct channel_table *ct, size_t i)
{
	return i < ct->n ? &ct->defs[i] : NULL;
}

const struct channel_def *channel_table_find(const struct channel_table *ct, const char *name)
{
	for (size_t i = 0; i < ct->n; i++)
		if (strcmp(ct->defs[i].name, name) == 0)
			return &ct->defs[i];
	return NULL;
}

void channel_table_free(struct channel_table **ctp)
{
	struct channel_table *ct = *ctp;

	if (!ct)
		return;
	*ctp = NULL;
	for (size_t i = 0; i < ct->n; i++) {
		free(ct->defs[i].name);
		free(ct->defs[i].endpoint);
		free(ct->defs[i].domains);
	}
	free(ct->defs);
	free(ct);
}
