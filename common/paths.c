/* paths - where an instance keeps its files; see paths.h. */
#include "common/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/xalloc.h"

const char *paths_config_file(void)
{
	const char *env = getenv("ZFARM_CONFIG");

	if (env)
		return *env ? env : NULL;
	return access(ZF_SYSCONFDIR "/zfarm.conf", F_OK) == 0 ? ZF_SYSCONFDIR "/zfarm.conf" : NULL;
}

int farmd_run_directory(const struct config *cfg, char *buf, size_t buflen, char *err,
			size_t errlen)
{
	const char *dir = config_get(cfg, NULL, NULL, "run_directory");
	char cwd[4096];
	int n;

	if (dir == NULL || *dir == '\0')
		dir = PATHS_DEFAULT_RUN_DIRECTORY;
	if (dir[0] == '/') {
		n = snprintf(buf, buflen, "%s", dir);
	} else {
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			snprintf(err, errlen, "getcwd: %s", strerror(errno));
			return -1;
		}
		if (dir[0] == '.' && dir[1] == '/')
			dir += 2;
		n = snprintf(buf, buflen, "%s/%s", strcmp(cwd, "/") ? cwd : "", dir);
	}
	if (n < 0 || (size_t)n >= buflen) {
		snprintf(err, errlen, "run_directory too long");
		return -1;
	}
	/* No trailing slash, so paths join with one. */
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	return 0;
}

static int paths_join(const struct config *cfg, const char *rel, char *buf, size_t buflen,
		      char *err, size_t errlen)
{
	char dir[4096];

	if (farmd_run_directory(cfg, dir, sizeof(dir), err, errlen) < 0)
		return -1;
	if ((size_t)snprintf(buf, buflen, "%s/%s", dir, rel) >= buflen) {
		snprintf(err, errlen, "path %s/%s too long", dir, rel);
		return -1;
	}
	return 0;
}

int farmd_control_path(const struct config *cfg, char *buf, size_t buflen, char *err,
		       size_t errlen)
{
	return paths_join(cfg, "private/control", buf, buflen, err, errlen);
}

int farmd_pid_path(const struct config *cfg, char *buf, size_t buflen, char *err,
		   size_t errlen)
{
	return paths_join(cfg, "farmd.pid", buf, buflen, err, errlen);
}

void paths_set_defaults(struct config *cfg)
{
	char host[256];

	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	config_set_default(cfg, "myhostname", host, NULL, 0);
}

struct config *paths_load_config(const char *path, char *const *overrides, size_t n, char *err,
				 size_t errlen)
{
	struct config *cfg = config_new();
	const char *env = getenv("ZFARM_OVERRIDES");
	char *copy, *save = NULL, *line;

	paths_set_defaults(cfg);
	for (size_t i = 0; i < n; i++)
		if (config_override(cfg, overrides[i], err, errlen) < 0)
			goto fail;
	if (env) {
		copy = xstrdup(env);
		for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			if (config_override(cfg, line, err, errlen) < 0) {
				free(copy);
				goto fail;
			}
		free(copy);
	}
	if (!path)
		path = getenv("ZFARM_CONFIG");
	if (path && config_load(cfg, path, err, errlen) < 0)
		goto fail;
	return cfg;
fail:
	config_free(&cfg);
	return NULL;
}
