/* Tests for common/workq.c: items run in workers, done in the loop, each, free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/workq.h"

struct item {
	struct workq_item it; /* first */
	int n;
	pthread_t ran_in;
	int marked;
};

struct ctx {
	int done, dropped, gate_open;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t loop_thread;
	int done_outside_loop;
};

static void run(struct workq_item *it, void *arg)
{
	struct ctx *c = arg;
	struct item *i = (struct item *)it;

	pthread_mutex_lock(&c->lock);
	while (!c->gate_open)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	i->ran_in = pthread_self();
	i->n *= 2;
}

static void done(struct workq_item *it, void *arg)
{
	struct ctx *c = arg;

	if (!pthread_equal(pthread_self(), c->loop_thread))
		c->done_outside_loop++;
	c->done++;
	(void)it;
}

static void drop(struct workq_item *it, void *arg)
{
	struct ctx *c = arg;

	(void)it;
	c->dropped++;
}

static void mark(struct workq_item *it, void *arg)
{
	(void)arg;
	((struct item *)it)->marked++;
}

static void ctx_init(struct ctx *c, int open)
{
	*c = (struct ctx){0};
	c->gate_open = open;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->loop_thread = pthread_self();
}

static void open_gate(struct ctx *c)
{
	pthread_mutex_lock(&c->lock);
	c->gate_open = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Loop until want done callbacks ran; fail after 10 s. */
static void loop_until(struct event_base *base, struct ctx *c, int want)
{
	for (int i = 0; i < 10000 && c->done < want; i++) {
		struct timeval tv = {0, 1000};

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	if (c->done != want)
		fail_msg("done callbacks: got %d, want %d", c->done, want);
}

static void test_threads(void **state)
{
	const unsigned threads[] = {0, 1, 4};

	(void)state;
	for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
		struct event_base *base = event_base_new();
		struct item items[100];
		struct ctx c;
		char err[256];
		struct workq *q;

		ctx_init(&c, 1);
		q = workq_new(base, threads[t], run, done, &c, err, sizeof(err));
		assert_non_null(q);
		for (int i = 0; i < 100; i++) {
			items[i] = (struct item){.n = i};
			workq_submit(q, &items[i].it);
		}
		/* done never runs inside submit, also with 0 threads */
		assert_int_equal(c.done, 0);
		loop_until(base, &c, 100);
		assert_int_equal(c.done_outside_loop, 0);
		for (int i = 0; i < 100; i++) {
			assert_int_equal(items[i].n, 2 * i);
			if (threads[t] == 0)
				assert_true(pthread_equal(items[i].ran_in, c.loop_thread));
			else
				assert_false(pthread_equal(items[i].ran_in, c.loop_thread));
		}
		workq_free(&q, true, drop);
		assert_null(q);
		assert_int_equal(c.dropped, 0);
		event_base_free(base);
	}
}

/* each sees queued and running items; free without finish drops the queued. */
static void test_each_and_free(void **state)
{
	struct event_base *base = event_base_new();
	struct item items[5];
	struct ctx c;
	char err[256];
	struct workq *q;

	(void)state;
	ctx_init(&c, 0); /* workers wait at the gate */
	q = workq_new(base, 1, run, done, &c, err, sizeof(err));
	assert_non_null(q);
	for (int i = 0; i < 5; i++) {
		items[i] = (struct item){.n = i};
		workq_submit(q, &items[i].it);
	}
	workq_each(q, mark, NULL);
	for (int i = 0; i < 5; i++)
		assert_int_equal(items[i].marked, 1);
	/* at most one running (held at the gate), the rest queued: none runs done */
	open_gate(&c);
	workq_free(&q, false, drop);
	assert_int_equal(c.dropped, 5); /* the running one finishes, then goes to drop too */
	assert_int_equal(c.done, 0); /* no callbacks after free */
	event_base_free(base);
}

/* free with finish runs what is queued; its done callbacks never run. */
static void test_free_finishes(void **state)
{
	struct event_base *base = event_base_new();
	struct item items[20];
	struct ctx c;
	char err[256];
	struct workq *q;

	(void)state;
	ctx_init(&c, 1);
	q = workq_new(base, 2, run, done, &c, err, sizeof(err));
	assert_non_null(q);
	for (int i = 0; i < 20; i++) {
		items[i] = (struct item){.n = i + 1};
		workq_submit(q, &items[i].it);
	}
	workq_free(&q, true, drop);
	for (int i = 0; i < 20; i++)
		assert_int_equal(items[i].n, 2 * (i + 1));
	assert_int_equal(c.dropped, 20); /* finished, handed to drop instead of done */
	assert_int_equal(c.done, 0);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_each_and_free),
	    cmocka_unit_test(test_free_finishes),
	};

	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
