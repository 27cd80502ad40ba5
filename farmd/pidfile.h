/*
 * pidfile - the locked pid file that keeps two farmds off one run directory.
 *
 * pidfile_acquire() opens (creating) the file, takes an exclusive flock()
 * without waiting and writes our pid.  The lock lives as long as the open
 * file, which is close-on-exec, so it dies with farmd (even kill -9) and a
 * new farmd can start at once over a stale file.  Called by farmd only.
 */
#ifndef ZFARM_PIDFILE_H
#define ZFARM_PIDFILE_H

#include <stddef.h>
#include <sys/types.h>

struct pidfile;

/*
 * pidfile_acquire - NULL with a reason if the file cannot be opened or is
 * locked by a running farmd (whose pid the reason names).
 */
struct pidfile *pidfile_acquire(const char *path, char *err, size_t errlen);
/* pidfile_release - remove the file and drop the lock; accepts NULL. */
void pidfile_release(struct pidfile **pf);
/* pidfile_read - the pid recorded in path, or -1. */
pid_t pidfile_read(const char *path);

#endif
