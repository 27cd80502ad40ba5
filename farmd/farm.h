/*
 * farm - one running farm in farmd: its listen sockets, its children and
 * the process-creation policy (after Postfix's master_avail.c and the
 * Dovecot/Apache worker limits).
 *
 * Policy, re-derived by farm_update() after every change:
 *   - while no child is available, the farm is under process_limit and not
 *     throttled, farmd watches the listen sockets; a connection forks
 *     exactly one child (counted available from birth, so one connection
 *     never forks two), which accepts it;
 *   - at process_limit connections wait in the kernel backlog; one warning
 *     per busy_warn_interval names the farm and the limit; a stress-eligible
 *     farm enters stress for stress_duration: children born then get
 *     ZFARM_STRESS=1;
 *   - process_min_avail children are kept ready; the 1 s tick spawns when
 *     short, doubling per round up to 32 (Apache), and retires surplus
 *     children idle for max_idle;
 *   - a child that dies unhealthy (non-zero exit or signal before it ever
 *     served or was busy, and younger than 10 s) throttles the farm for
 *     throttle_delay, doubling up to throttle_max; a healthy child resets
 *     it; a fork failure throttles too; spawning resumes by a timer;
 *   - status reports with a pid or generation other than the child's, or
 *     that do not decode, are logged and ignored; a child that has not
 *     reported within startup_timeout, or whose channel closed, is not
 *     counted available;
 *   - max_processtime kills a child busy on one request too long: busy
 *     in its reports and no request finished (served unchanged) for that
 *     long, so a child busy without a pause on many short or overlapping
 *     requests lives on; children report busy and served at most twice
 *     a second (farm_server.h), so the kill may come up to that much
 *     later; max_lifetime drains an old one.
 *
 * Kinds: "farm" as above; "single" keeps exactly one process (respawned,
 * throttled the same way); "once" runs one process to completion, again
 * every `wakeup` seconds if set.
 *
 * A farm is "started" by farm_start(); before that its listen sockets are
 * open (clients wait in the backlog) but nothing is spawned, preforked or
 * watched, whatever the tick, a throttle's end or a reap: farmd starts a
 * farm with start_after only when the first runs of the once farms it
 * names have ended (farm_first_run_done()).
 *
 * farmd owns farms; a farm owns its children and sockets.  A farm being
 * replaced or removed on reload is "retiring": its children got SIGTERM,
 * it spawns nothing and is freed when its last child is reaped.
 */
#ifndef ZFARM_FARM_H
#define ZFARM_FARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "farmd/farm_def.h"
#include "proto/farm.pb-c.h"

struct event_base;
struct farm;

/*
 * farm_new - a farm for def (ownership of def passes).  Listen sockets
 * are taken over from `old` (a previous generation, may be NULL) when the
 * endpoint is the same, else opened.  NULL with a reason if a socket
 * cannot be opened.  Nothing is spawned until farm_start().
 */
struct farm *farm_new(struct event_base *base, const struct farmd_settings *set,
		      struct farm_def *def, struct farm *old, uint64_t generation,
		      const char *overrides, char *err, size_t errlen);
/* farm_start - prefork / start the single or once process; from now on the
 * policy runs.  Again, or on a retiring farm: nothing. */
void farm_start(struct farm *f);
/* farm_retire - SIGTERM every child; spawn nothing more; close sockets
 * that were not taken over. */
void farm_retire(struct farm *f);
/* farm_stop - shutdown: close (and unlink) sockets, SIGTERM children. */
void farm_stop(struct farm *f);
/* farm_kill - SIGKILL every child (end of the stop grace period). */
void farm_kill(struct farm *f);
/* farm_reap - a child of this farm exited; false if pid is not ours. */
bool farm_reap(struct farm *f, pid_t pid, int status);
/* farm_tick - once a second: prefork, retire, time limits, wakeups. */
void farm_tick(struct farm *f);
/* farm_throttle_reset - end a throttle now (zfarmctl throttle-reset). */
void farm_throttle_reset(struct farm *f);
/* farm_hold - a single farm spawns nothing while held (its predecessor
 * from the previous generation is still draining). */
void farm_hold(struct farm *f, bool held);
/* farm_clamp_limit - lower process_limit (RLIMIT_NOFILE too small). */
void farm_clamp_limit(struct farm *f, unsigned limit);

const struct farm_def *farm_def(const struct farm *f);
const char *farm_name(const struct farm *f);
unsigned farm_children(const struct farm *f);
bool farm_retiring(const struct farm *f);
/* farm_started - farm_start() was called. */
bool farm_started(const struct farm *f);
/*
 * farm_first_run_done - a "once" farm's first run has ended, successfully
 * or not, in this generation or a previous one (always true for others).
 */
bool farm_first_run_done(const struct farm *f);
/* farm_info - fill a FarmInfo (strings point into f; valid until next change). */
void farm_info(const struct farm *f, Zfarm__FarmInfo *info, char **endpoint_buf);
/* farm_free - close everything; children must be gone.  Accepts NULL. */
void farm_free(struct farm **f);

#endif
