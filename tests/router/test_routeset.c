/*
 * Tests for router/routeset.c: is a routing set due, and after a requeue
 * which envelope recipients are routed again and which addresses are kept;
 * table-driven over control record lists (tests/scheduler/ctl_list.h, the
 * same round trip the scheduler's tests use).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "router/routeset.h"

#include "tests/scheduler/ctl_list.h"

static void add_route(struct list *l, uint32_t i, uint32_t total, uint32_t orig, const char *addr)
{
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;
	Zfarm__RouteRecord r = ZFARM__ROUTE_RECORD__INIT;

	r.index = i;
	r.total = total;
	r.orig_index = orig;
	r.address = (char *)addr;
	r.channel = "smtp";
	c.body_case = ZFARM__CTL_RECORD__BODY_ROUTE;
	c.route = &r;
	list_push_packed(l, &c);
}

static void add_requeue(struct list *l, const char *idx)
{
	Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;
	Zfarm__RequeueRecord rq = ZFARM__REQUEUE_RECORD__INIT;
	uint32_t v[16];
	char *copy = xstrdup(idx), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t && rq.n_index < 16;
	     t = strtok_r(NULL, ",", &save))
		v[rq.n_index++] = (uint32_t)strtoul(t, NULL, 10);
	free(copy);
	rq.index = v;
	c.body_case = ZFARM__CTL_RECORD__BODY_REQUEUE;
	c.requeue = &rq;
	list_push_packed(l, &c);
}

/*
 * build - records from a spec, tokens separated by spaces:
 *   R<i>/<t>=<orig>:<address>  route i of t from envelope recipient orig
 *   M m        routed marker true / false
 *   Q<i,j>     RequeueRecord superseding i, j ("Q": none)
 *   r          a ResultRecord (ignored by the router)
 */
static void build(struct list *l, const char *spec)
{
	char *copy = xstrdup(spec), *save = NULL;

	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		unsigned i, total, orig;
		char addr[64];
		Zfarm__CtlRecord c = ZFARM__CTL_RECORD__INIT;
		Zfarm__ResultRecord res = ZFARM__RESULT_RECORD__INIT;

		if (sscanf(t, "R%u/%u=%u:%63s", &i, &total, &orig, addr) == 4) {
			add_route(l, i, total, orig, addr);
		} else if (strcmp(t, "M") == 0 || strcmp(t, "m") == 0) {
			c.body_case = ZFARM__CTL_RECORD__BODY_ROUTED;
			c.routed = t[0] == 'M';
			list_push_packed(l, &c);
		} else if (t[0] == 'Q') {
			add_requeue(l, t + 1);
		} else if (strcmp(t, "r") == 0) {
			res.status = 1;
			c.body_case = ZFARM__CTL_RECORD__BODY_RESULT;
			c.result = &res;
			list_push_packed(l, &c);
		} else {
			fail_msg("bad spec token %s", t);
		}
	}
	free(copy);
}

/* clang-format off */
struct row {
	const char *spec;
	size_t n_env;
	int rc;
	bool due, requeue;
	size_t routes, last;
	const char *reroute; /* one 0/1 per envelope recipient (requeue) */
	const char *keep;    /* kept addresses, sorted, comma-separated */
};

static const struct row rows[] = {
	/* first routing */
	{"", 2, 0, true, false, 0, 0, "", ""},
	{"R0/2=0:a R1/2=1:b", 2, 0, true, false, 0, 0, "", ""},
	{"R0/2=0:a R1/2=1:b m", 2, 0, true, false, 0, 0, "", ""},
	{"R0/2=0:a R1/2=1:b M", 2, 0, false, false, 2, 2, "", ""},
	{"R0/2=0:a R0/1=0:a M", 1, 0, false, false, 1, 1, "", ""},      /* torn attempt */
	{"M", 1, 0, false, false, 0, 0, "", ""},
	{"Q0", 1, 0, true, false, 0, 0, "", ""},                        /* nothing to requeue */
	/* requeue due */
	{"R0/2=0:a R1/2=1:b M r r Q1", 2, 0, true, true, 2, 2, "01", "a"},
	{"R0/2=0:a R1/2=0:b M Q1", 2, 0, true, true, 2, 2, "10", "a"},  /* an alias's other target */
	{"R0/2=0:a R1/2=1:b M Q0,1", 2, 0, true, true, 2, 2, "11", ""},
	{"R0/2=0:a R1/2=1:b M Q", 2, 0, true, true, 2, 2, "00", "a,b"},
	{"R0/1=0:a M Q0 Q0", 1, 0, true, true, 1, 1, "1", ""},          /* a requeue while due */
	{"R0/1=5:a M Q0", 1, 0, true, true, 1, 1, "0", ""},             /* origin out of range */
	{"R0/1=0:a M Q7", 1, 0, true, true, 1, 1, "0", "a"},            /* index out of range */
	{"R0/1=0:a M Q0 R0/2=0:b", 1, 0, true, true, 1, 1, "1", ""},    /* a torn new set */
	/* requeue routed */
	{"R0/2=0:a R1/2=1:b M Q1 R0/1=1:c M", 2, 0, false, false, 3, 1, "", ""},
	{"R0/2=0:a R1/2=1:b M Q1 M", 2, 0, false, false, 2, 0, "", ""},
	{"R0/1=0:a M Q0 R0/2=0:b R0/1=0:c M", 1, 0, false, false, 2, 1, "", ""},
	/* requeued twice */
	{"R0/1=0:a M Q0 R0/1=0:b M Q1", 1, 0, true, true, 2, 1, "1", ""},
	{"R0/2=0:a R1/2=1:b M Q0 R0/1=0:c M Q2", 2, 0, true, true, 3, 1, "10", "b"},
	{"R0/2=1:a R1/2=0:b M Q1 R0/1=0:c M r Q", 2, 0, true, true, 3, 1, "00", "a,c"},
	/* a duplicate routing after a requeue: its set is not counted */
	{"R0/1=0:a M Q0 R0/1=0:b M R0/1=0:z M Q1", 1, 0, true, true, 2, 1, "1", ""},
	/* damaged */
	{"R0/2=0:a M", 1, -1, true, false, 0, 0, "", ""},
	{"R0/1=0:a M Q0 R0/2=0:b M", 1, -1, true, false, 0, 0, "", ""},
	{"R0/1=0:a M Q0 R1/1=0:b M", 1, -1, true, false, 0, 0, "", ""},
	{"R0/2=0:a R0/2=0:b M", 1, -1, true, false, 0, 0, "", ""},
};
/* clang-format on */

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		struct list l = {0};
		struct routeset rs;
		char err[256] = "", reroute[16] = "", keep[128] = "";
		int rc;

		build(&l, w->spec);
		rc = routeset_scan(l.v, l.n, w->n_env, &rs, err, sizeof(err));
		if (rc != w->rc)
			fail_msg("\"%s\": got %d (%s), want %d", w->spec, rc, err, w->rc);
		if (rc < 0) {
			if (!err[0])
				fail_msg("\"%s\": no reason", w->spec);
			list_free(&l);
			continue;
		}
		if (rs.due != w->due || rs.requeue != w->requeue || rs.routes != w->routes ||
		    (!rs.due && rs.last != w->last))
			fail_msg(
			    "\"%s\": got due %d requeue %d routes %zu last %zu, want %d %d %zu "
			    "%zu",
			    w->spec, rs.due, rs.requeue, rs.routes, rs.last, w->due, w->requeue,
			    w->routes, w->last);
		if (rs.requeue) {
			for (size_t k = 0; k < w->n_env && k + 1 < sizeof(reroute); k++)
				reroute[k] = routeset_routes_rcpt(&rs, k) ? '1' : '0';
			for (size_t k = 0; k < rs.nkeep; k++)
				snprintf(keep + strlen(keep), sizeof(keep) - strlen(keep), "%s%s",
					 k ? "," : "", rs.keep[k]);
		} else {
			for (size_t k = 0; k < w->n_env; k++)
				if (!routeset_routes_rcpt(&rs, k))
					fail_msg("\"%s\": recipient %zu not routed", w->spec, k);
		}
		if (strcmp(reroute, w->reroute) != 0 || strcmp(keep, w->keep) != 0)
			fail_msg("\"%s\": got reroute \"%s\" keep \"%s\", want \"%s\" \"%s\"",
				 w->spec, reroute, keep, w->reroute, w->keep);
		routeset_release(&rs);
		list_free(&l);
	}
}

/* routeset_kept and routeset_rerouted over a larger set. */
static void test_kept(void **state)
{
	struct list l = {0};
	struct routeset rs;
	char err[128], addr[32];
	Zfarm__CtlRecord mark = ZFARM__CTL_RECORD__INIT;

	(void)state;
	for (uint32_t i = 0; i < 100; i++) {
		snprintf(addr, sizeof(addr), "u%u@example.org", 99 - i);
		add_route(&l, i, 100, i / 2, addr);
	}
	mark.body_case = ZFARM__CTL_RECORD__BODY_ROUTED;
	mark.routed = true;
	list_push_packed(&l, &mark);
	add_requeue(&l, "1,3,5");
	assert_int_equal(routeset_scan(l.v, l.n, 50, &rs, err, sizeof(err)), 0);
	assert_true(rs.requeue);
	assert_int_equal(rs.nkeep, 97);
	assert_int_equal(routeset_rerouted(&rs), 3);
	assert_true(routeset_routes_rcpt(&rs, 0) && routeset_routes_rcpt(&rs, 1) &&
		    routeset_routes_rcpt(&rs, 2));
	assert_false(routeset_routes_rcpt(&rs, 3) || routeset_routes_rcpt(&rs, 50));
	assert_true(routeset_kept(&rs, "u99@example.org"));  /* route 0 */
	assert_false(routeset_kept(&rs, "u98@example.org")); /* route 1: superseded */
	assert_true(routeset_kept(&rs, "u0@example.org"));
	assert_false(routeset_kept(&rs, "u100@example.org"));
	routeset_release(&rs);
	routeset_release(&rs); /* twice: harmless */
	list_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
