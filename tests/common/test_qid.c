/* Tests for common/qid.c: format, validity, order, uniqueness across processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/qid.h"

/* Round trip: the time comes back out of every ID, which is 16 valid chars. */
static void test_format_table(void **state)
{
	static const struct {
		uint64_t us;
		uint32_t pid;
	} rows[] = {
		{0, 0}, {1, 1}, {31, 31}, {32, 32},
		{UINT64_C(1795000000000000), 4194303}, /* pid_max on Linux */
		{(UINT64_C(1) << 55) - 1, 1},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char got[QID_SIZE];

		qid_format(got, rows[i].us, rows[i].pid);
		if (strlen(got) != QID_LEN || !qid_valid(got))
			fail_msg("row %zu: got \"%s\", want 16 base32 chars", i, got);
		if (qid_time_us(got) != rows[i].us)
			fail_msg("row %zu: time got %llu, want %llu", i,
				 (unsigned long long)qid_time_us(got),
				 (unsigned long long)rows[i].us);
	}
}

static void test_known_values(void **state)
{
	char got[QID_SIZE];

	(void)state;
	qid_format(got, 0, 0);
	assert_string_equal(got, "0000000000000000");
	qid_format(got, 31, 31);
	assert_string_equal(got, "0000000000Z0000Z");
	qid_format(got, 32, 1);
	assert_string_equal(got, "0000000001000001");
	qid_format(got, UINT64_C(1795000000000000), 4194303);
	assert_string_equal(got, "1K0HC0NYC003ZZZZ");
}

static void test_valid_table(void **state)
{
	static const struct {
		const char *s;
		bool want;
	} rows[] = {
		{"0000000000000000", true},  {"ZZZZZZZZZZZZZZZZ", true},
		{"000000000000000", false},  {"00000000000000000", false},
		{"000000000000000I", false}, {"000000000000000L", false},
		{"000000000000000O", false}, {"000000000000000U", false},
		{"000000000000000a", false}, {"00000000/0000000", false},
		{"", false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (qid_valid(rows[i].s) != rows[i].want)
			fail_msg("row %zu \"%s\": got %d, want %d", i, rows[i].s, !rows[i].want,
				 rows[i].want);
}

static void test_sorted_by_time(void **state)
{
	char a[QID_SIZE], b[QID_SIZE];

	(void)state;
	/* Later time sorts later whatever the pid. */
	qid_format(a, 1000000, 4000000);
	qid_format(b, 1000001, 1);
	assert_true(strcmp(a, b) < 0);
	qid_format(a, UINT64_C(1700000000000000), 99);
	qid_format(b, UINT64_C(1800000000000000), 2);
	assert_true(strcmp(a, b) < 0);
}

static void test_same_microsecond_steps_forward(void **state)
{
	char prev[QID_SIZE], cur[QID_SIZE];

	(void)state;
	clock_set_fake(UINT64_C(1790000000000000), 1);
	qid_generate(prev);
	for (int i = 0; i < 1000; i++) {
		qid_generate(cur);
		if (strcmp(prev, cur) >= 0)
			fail_msg("id %d: got %s after %s, want strictly greater", i, cur, prev);
		memcpy(prev, cur, sizeof(prev));
	}
	clock_set_fake(0, 0);
}

static int cmp_ids(const void *a, const void *b)
{
	return memcmp(a, b, QID_LEN);
}

/*
 * The pid in an ID is asked once per process (qid.c): a child forked
 * after its parent made IDs makes them with its own pid.
 */
static void test_fork_child_own_pid(void **state)
{
	char parent[QID_SIZE], child[QID_SIZE];
	int fds[2], status;
	pid_t pid;

	(void)state;
	qid_generate(parent);
	assert_int_equal(qid_tail(parent), (uint32_t)getpid());
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		qid_generate(child);
		_exit(write(fds[1], child, QID_SIZE) == QID_SIZE ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], child, QID_SIZE), QID_SIZE);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(qid_valid(child));
	if (qid_tail(child) != (uint32_t)pid)
		fail_msg("the child's ID %s has pid %u, want %d", child, qid_tail(child), (int)pid);
}

/* Many processes at once, each as fast as it can: no ID twice. */
static void test_unique_across_processes(void **state)
{
	enum { NPROC = 16, PER = 5000 };
	char *all = malloc((size_t)NPROC * PER * QID_LEN);
	int fds[NPROC];
	pid_t pids[NPROC];
	size_t n = 0;

	(void)state;
	assert_non_null(all);
	for (int p = 0; p < NPROC; p++) {
		int pipefd[2];

		assert_int_equal(pipe(pipefd), 0);
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			char buf[PER * QID_LEN];

			close(pipefd[0]);
			for (int i = 0; i < PER; i++) {
				char id[QID_SIZE];

				qid_generate(id);
				memcpy(buf + (size_t)i * QID_LEN, id, QID_LEN);
			}
			for (size_t off = 0; off < sizeof(buf);) {
				ssize_t w = write(pipefd[1], buf + off, sizeof(buf) - off);

				if (w <= 0)
					_exit(1);
				off += (size_t)w;
			}
			_exit(0);
		}
		close(pipefd[1]);
		fds[p] = pipefd[0];
	}
	for (int p = 0; p < NPROC; p++) {
		ssize_t r;
		int status;

		while ((r = read(fds[p], all + n, (size_t)NPROC * PER * QID_LEN - n)) > 0)
			n += (size_t)r;
		close(fds[p]);
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	if (n != (size_t)NPROC * PER * QID_LEN)
		fail_msg("got %zu bytes of IDs, want %zu", n, (size_t)NPROC * PER * QID_LEN);
	qsort(all, (size_t)NPROC * PER, QID_LEN, cmp_ids);
	for (size_t i = 1; i < (size_t)NPROC * PER; i++)
		if (memcmp(all + (i - 1) * QID_LEN, all + i * QID_LEN, QID_LEN) == 0)
			fail_msg("duplicate ID %.16s", all + i * QID_LEN);
	free(all);
}

/*
 * Slot IDs (the spool's): the tail holds QID_SLOT_FLAG | slot, so its
 * first character is G or later, never a pid's; qid_tail gives it back,
 * and the time is this process's clock like qid_generate's, never repeated.
 */
static void test_slot_ids(void **state)
{
	char a[QID_SIZE], b[QID_SIZE], p[QID_SIZE];

	(void)state;
	qid_generate_slot(a, 0);
	qid_generate_slot(b, (16383u << 10) | 1023u);
	qid_generate(p);
	assert_true(qid_valid(a) && qid_valid(b));
	assert_string_equal(a + QID_LEN - 5, "G0000");
	assert_string_equal(b + QID_LEN - 5, "ZZZZZ");
	assert_true(qid_is_slot(a) && qid_is_slot(b));
	assert_false(qid_is_slot(p));
	assert_int_equal(qid_tail(a), QID_SLOT_FLAG);
	assert_int_equal(qid_tail(b), QID_SLOT_FLAG | (16383u << 10) | 1023u);
	assert_int_equal(qid_tail(p), (uint32_t)getpid());
	/* One clock for both kinds: strictly increasing. */
	assert_true(qid_time_us(a) < qid_time_us(b));
	assert_true(qid_time_us(b) < qid_time_us(p));
	/* The largest pid Linux allows (2^22) is no slot. */
	qid_format(p, 1, 1u << 22);
	assert_false(qid_is_slot(p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_table),
		cmocka_unit_test(test_known_values),
		cmocka_unit_test(test_valid_table),
		cmocka_unit_test(test_sorted_by_time),
		cmocka_unit_test(test_same_microsecond_steps_forward),
		cmocka_unit_test(test_fork_child_own_pid),
		cmocka_unit_test(test_unique_across_processes),
		cmocka_unit_test(test_slot_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
