/*
 * mailbox_src - helpers shared by the unit tests of the mailbox writers
 * (test_maildir, test_mbox): a message source of repeated chunks that can
 * fail on purpose, and a scratch directory.
 */
#ifndef ZFARM_TESTS_MAILBOX_SRC_H
#define ZFARM_TESTS_MAILBOX_SRC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

/* A message made of n chunks of one repeated line; fails at chunk fail_at (0: never). */
struct src {
	const char *line;
	unsigned chunks, done, fail_at;
};

/* src_fill - the writers' fill callback: "read error" at chunk fail_at. */
static inline int src_fill(void *arg, struct evbuffer *out, char *err, size_t errlen)
{
	struct src *s = arg;

	if (s->fail_at && s->done + 1 == s->fail_at) {
		snprintf(err, errlen, "read error");
		return -1;
	}
	evbuffer_add(out, s->line, strlen(s->line));
	s->done++;
	return s->done < s->chunks ? 1 : 0;
}

/* tmpdir - a fresh directory under /tmp (free the name, rm_rf the tree). */
static inline char *tmpdir(void)
{
	char tmpl[] = "/tmp/zf-mailbox-XXXXXX";
	char *d = mkdtemp(tmpl);

	assert_non_null(d);
	return strdup(d);
}

static inline void rm_rf(const char *path)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

#endif
