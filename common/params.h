/*
 * params - the names of every global parameter some zfarm program reads.
 *
 * One table, so a farm section ([farm NAME]) may override any of them for
 * that farm's children while a typo still stops farmd at start-up (farmd
 * knows no service's parameters otherwise).  Each program that reads a new
 * global parameter adds its name here; zfarm.conf(5) and the programs'
 * man pages document them.  Called by farmd's farm table check.
 */
#ifndef ZFARM_PARAMS_H
#define ZFARM_PARAMS_H

#include <stdbool.h>

/* params_known - is name a global parameter of some zfarm program? */
bool params_known(const char *name);

#endif
