/*
 * evtest - libevent helpers shared by the unit tests of the modules that
 * drive sockets (test_sockstream, test_frame, test_session).
 */
#ifndef ZFARM_TESTS_EVTEST_H
#define ZFARM_TESTS_EVTEST_H

#include <event2/event.h>

/* evtest_registered - events registered with base (added, not merely made active). */
static inline int evtest_registered(struct event_base *base)
{
	return event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED) -
	       event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE);
}

#endif
