/*
 * ctl_list - test fixture shared by the scheduler's tests: a list of
 * control records, each packed and unpacked again so the module under test
 * sees exactly what qstore_ctl_load() would give it.  Include after
 * <cmocka.h>.
 */
#ifndef ZFARM_TESTS_CTL_LIST_H
#define ZFARM_TESTS_CTL_LIST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "proto/qfile.pb-c.h"

struct list {
	Zfarm__CtlRecord **v;
	size_t n, cap;
};

static inline void list_push_packed(struct list *l, const Zfarm__CtlRecord *c)
{
	size_t len = zfarm__ctl_record__get_packed_size(c);
	uint8_t *buf = xmalloc(len);
	Zfarm__CtlRecord *u;

	assert_int_equal(zfarm__ctl_record__pack(c, buf), len);
	u = zfarm__ctl_record__unpack(NULL, len, buf);
	assert_non_null(u);
	free(buf);
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 8;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n++] = u;
}

static inline void list_free(struct list *l)
{
	for (size_t i = 0; i < l->n; i++)
		zfarm__ctl_record__free_unpacked(l->v[i], NULL);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

#endif
