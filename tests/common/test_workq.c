/* Tests for common/workq.c: items run in workers, done in the loop, each, free, batches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
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
	int entered;			   /* run_batch calls begun */
	int batches, batch_len[8];	   /* run_batch calls, their lengths */
	int batch_first[8];		   /* n of each batch's first item */
	int done_order[32], ndone_order; /* n of each done item */
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
	if (c->ndone_order < 32)
		c->done_order[c->ndone_order++] = ((struct item *)it)->n;
}

/* run_batch - records the batch, waits at the gate, then runs each item. */
static void run_batch(struct workq_item *first, void *arg)
{
	struct ctx *c = arg;
	int len = 0;

	pthread_mutex_lock(&c->lock);
	c->entered++;
	pthread_cond_broadcast(&c->cond);
	while (!c->gate_open)
		pthread_cond_wait(&c->cond, &c->lock);
	for (struct workq_item *it = first; it; it = it->next)
		len++;
	if (c->batches < 8) {
		c->batch_len[c->batches] = len;
		c->batch_first[c->batches] = ((struct item *)first)->n;
	}
	c->batches++;
	pthread_mutex_unlock(&c->lock);
	for (struct workq_item *it = first; it; it = it->next) {
		((struct item *)it)->ran_in = pthread_self();
		((struct item *)it)->n *= 2;
	}
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

/* wait_entered - until run_batch was entered want times; fail after 10 s. */
static void wait_entered(struct ctx *c, int want)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&c->lock);
	while (c->entered < want && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0)
		;
	pthread_mutex_unlock(&c->lock);
	assert_int_equal(c->entered, want);
}

/*
 * A batch queue's worker takes everything queued when it gets to work:
 * what is submitted while it runs a batch is the next batch, in the order
 * submitted; each also seen by workq_each; done for each, in that order,
 * in the loop.
 */
static void test_batch(void **state)
{
	struct event_base *base = event_base_new();
	struct item items[10];
	struct ctx c;
	char err[256];
	struct workq *q;

	(void)state;
	ctx_init(&c, 0);
	q = workq_new_batch(base, run_batch, done, &c, err, sizeof(err));
	assert_non_null(q);
	items[0] = (struct item){.n = 1};
	workq_submit(q, &items[0].it);
	wait_entered(&c, 1); /* the worker holds a batch of item 0 at the gate */
	for (int i = 1; i < 10; i++) {
		items[i] = (struct item){.n = i + 1};
		workq_submit(q, &items[i].it);
	}
	workq_each(q, mark, NULL);
	for (int i = 0; i < 10; i++)
		assert_int_equal(items[i].marked, 1); /* running (0) and queued (1-9) */
	assert_int_equal(c.done, 0);
	open_gate(&c);
	loop_until(base, &c, 10);
	assert_int_equal(c.batches, 2);
	assert_int_equal(c.batch_len[0], 1);
	assert_int_equal(c.batch_first[0], 1);
	assert_int_equal(c.batch_len[1], 9);
	assert_int_equal(c.batch_first[1], 2);
	assert_int_equal(c.done_outside_loop, 0);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(items[i].n, 2 * (i + 1));
		assert_int_equal(c.done_order[i], 2 * (i + 1));
		assert_false(pthread_equal(items[i].ran_in, c.loop_thread));
		assert_true(pthread_equal(items[i].ran_in, items[0].ran_in));
	}
	/* free with finish: what is queued runs as a batch and goes to drop. */
	for (int i = 0; i < 10; i++) {
		items[i] = (struct item){.n = i};
		workq_submit(q, &items[i].it);
	}
	workq_free(&q, true, drop);
	assert_int_equal(c.dropped, 10);
	assert_int_equal(c.done, 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(items[i].n, 2 * i);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_each_and_free),
	    cmocka_unit_test(test_free_finishes),
	    cmocka_unit_test(test_batch),
	};

	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
