/*
 * paths - where an instance keeps its files, derived from the config.
 *
 * Shared by farmd, the daemons and the tools so both find the same run directory,
 * control socket and pid file from the same -c/-o options.  A relative
 * run_directory is taken relative to the current directory.
 */
#ifndef ZFARM_PATHS_H
#define ZFARM_PATHS_H

#include <stddef.h>

struct config;

#define PATHS_DEFAULT_RUN_DIRECTORY "./var"

/*
 * paths_config_file - the configuration file when -c gave none:
 * $ZFARM_CONFIG if set (empty: none), else the installed
 * $(sysconfdir)/zfarm/zfarm.conf if it exists, else NULL (no file: the
 * built-in defaults).
 */
const char *paths_config_file(void);

/* farmd_run_directory - absolute run directory into buf; -1 + reason. */
int farmd_run_directory(const struct config *cfg, char *buf, size_t buflen, char *err,
			size_t errlen);
/* farmd_control_path - the control socket ($run_directory/private/control). */
int farmd_control_path(const struct config *cfg, char *buf, size_t buflen, char *err,
		       size_t errlen);
/* farmd_pid_path - the pid file ($run_directory/farmd.pid). */
int farmd_pid_path(const struct config *cfg, char *buf, size_t buflen, char *err,
		   size_t errlen);

/*
 * paths_set_defaults - the computed defaults every program sets on a new
 * config before loading it, so the file can say $myhostname: myhostname
 * (gethostname(), "localhost" if that fails).
 */
void paths_set_defaults(struct config *cfg);

/*
 * paths_load_config - a program's config as farm children get theirs:
 * computed defaults, the -o overrides, the "name=value" lines of
 * $ZFARM_OVERRIDES, then the file (path, or $ZFARM_CONFIG when path is
 * NULL; neither: no file).  For programs farmd runs without the farm child
 * skeleton (once jobs).  NULL with a reason.
 */
struct config *paths_load_config(const char *path, char *const *overrides, size_t n, char *err,
				 size_t errlen);

#endif
