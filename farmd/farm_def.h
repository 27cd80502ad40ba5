/*
 * farm_def - the farm table: what farmd runs, read from the config file.
 *
 * Each "[farm NAME]" section of zfarm.conf becomes one struct farm_def:
 *
 *   [farm smtpserver]
 *   kind = farm                 # farm (default) | single | once
 *   listen = smtp=inet:127.0.0.1:2525, submission=inet:[::1]:2587
 *   program = smtpserver        # relative: under program_directory
 *   args = -v                   # extra arguments, split on whitespace
 *   user = zfarm                # only when farmd runs as root
 *   process_limit = 100         # children at most
 *   process_min_avail = 2       # kept ready (prefork)
 *   client_limit = 1            # connections per child
 *   max_requests = 1000         # connections (requests) per child, 0: no limit
 *   max_idle = 100s             # idle surplus above min_avail retired after this
 *   max_processtime = 0         # a child busy on one request longer is killed
 *   max_lifetime = 0            # a child older than this drains and exits
 *   throttle_delay = 1s         # first back-off after a child dies at once
 *   stress = no                 # stress-eligible (children get ZFARM_STRESS=1)
 *   wakeup = 0                  # farmd pokes one child every N seconds
 *   start_after = reinject      # start when these once farms' first runs ended
 *
 * Kinds: a "once" farm runs its program to completion at start (and again
 * every `wakeup`); farms naming it in start_after (those that write new
 * mail into the queue: smtpserver, bounce) are started only when its first
 * run has finished, successfully or not; every other farm starts with the
 * once jobs.
 * start_after must name once farms of the same table and is not allowed on
 * a once farm itself (farm_defs_load checks both).
 *
 * A listen entry is [NAME=]unix:PATH or [NAME=]inet:HOST:PORT; a relative
 * unix path is under the run directory (private/ is mode 0700, public/
 * 0755).  The name (default: the farm's name) reaches the child in
 * LISTEN_FDNAMES.  Every error names file:line.  Called by farmd at start
 * and on reload; nothing here touches a process or socket.
 */
#ifndef ZFARM_FARM_DEF_H
#define ZFARM_FARM_DEF_H

#include <stdbool.h>
#include <stddef.h>

struct config;

enum farm_kind {
	FARM_KIND_FARM = 0,
	FARM_KIND_SINGLE,
	FARM_KIND_ONCE,
};

struct farm_listen {
	char *name; /* LISTEN_FDNAMES entry */
	char *spec; /* canonical endpoint, unix paths absolute */
};

struct farm_def {
	char *name;
	enum farm_kind kind;
	struct farm_listen *listen;
	unsigned nlisten;
	char **argv; /* NULL-terminated; argv[0] is the program's path */
	char *user;  /* NULL: farmd's own user */
	unsigned process_limit;
	unsigned process_min_avail;
	unsigned client_limit;
	unsigned long max_requests;
	unsigned max_idle;
	unsigned max_processtime;
	unsigned max_lifetime;
	unsigned throttle_delay;
	unsigned wakeup;
	bool stress;
	char **start_after; /* once farms to wait for; NULL-terminated, never NULL */
	unsigned nstart_after;
	char *where; /* "file:line" of the section, for log lines */
	/*
	 * Every "name=value" of its [farm NAME] section, service parameters
	 * (smtpserver's TLS files, say) included: farm_def_equal compares it,
	 * so a reload restarts a farm whose section changed.
	 */
	char *params;
	/*
	 * Global parameters set in the section that its program does not look
	 * for there ("a, b"; NULL: none): only smtpserver and pipe read their
	 * service parameters from their [farm] section, every farm child
	 * log_level; farmd warns, the setting does nothing.
	 */
	char *ignored;
};

/* Settings of farmd itself (global parameters). */
struct farmd_settings {
	char *run_directory;	 /* absolute */
	char *program_directory; /* absolute */
	char *config_path;	 /* absolute, given to children */
	unsigned stop_grace;	 /* seconds between SIGTERM and SIGKILL */
	unsigned throttle_max;	 /* seconds */
	unsigned busy_warn_interval;
	unsigned stress_duration;
	unsigned startup_timeout; /* a child must report within this */
};

/* farm_kind_name - "farm", "single", "once". */
const char *farm_kind_name(enum farm_kind kind);

/*
 * farm_defs_load - every farm section of cfg, in file order, plus farmd's
 * settings.  0, or -1 with "file:line: reason" (nothing allocated then);
 * also when start_after names a farm that is missing or not kind once.
 */
int farm_defs_load(const struct config *cfg, struct farmd_settings *set,
		   struct farm_def ***defs, size_t *ndefs, char *err, size_t errlen);
/* farm_def_equal - same program, endpoints and limits (reload test). */
bool farm_def_equal(const struct farm_def *a, const struct farm_def *b);
/* farm_def_has_listen - the def has an endpoint with this spec. */
bool farm_def_has_listen(const struct farm_def *def, const char *spec);
void farm_def_free(struct farm_def **def);
void farm_defs_free(struct farm_def ***defs, size_t *ndefs);
void farmd_settings_clear(struct farmd_settings *set);

#endif
