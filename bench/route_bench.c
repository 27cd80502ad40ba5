/*
 * route_bench - routing decisions per second with big tables.
 *
 * Not a test.  Writes, in a temporary directory, a virtual_alias_maps
 * file, an alias_maps file and a channel domain set of N entries each
 * (default 100,000), loads them as the router would (router/table),
 * then routes M recipients (default 300,000) drawn from every lookup step:
 * virtual hits, alias hits, local users, channel domains, and misses that
 * fall through to the default smtp channel.  Prints load time, the memory
 * the tables took (RSS growth), and decisions/s.
 *
 *     bench/route_bench [N [M]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "router/route.h"
#include "common/table.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* write_file - n lines of kind 0 (virtual), 1 (aliases) or 2 (users/domains set). */
static void write_file(const char *path, long n, int kind, const char *prefix)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		perror(path);
		exit(1);
	}
	for (long i = 0; i < n; i++) {
		if (kind == 0)
			fprintf(f, "v%ld@virt%ld.test user%ld@example.test\n", i, i, i);
		else if (kind == 1)
			fprintf(f, "alias%ld: user%ld, list%ld@remote.test\n", i, i, i);
		else
			fprintf(f, "%s%ld%s\n", prefix, i, kind == 3 ? ".test" : "");
	}
	fclose(f);
}

static struct table *open_or_die(const char *spec)
{
	char err[512];
	struct table *t = table_open(spec, err, sizeof(err));

	if (!t) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return t;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000, m = argc > 2 ? atol(argv[2]) : 300000;
	char dir[] = "/tmp/route_bench.XXXXXX", path[4][512], spec[4][600], rcpt[256], err[512];
	const char *mydest[] = {"localhost", "example.test"};
	struct table *virt, *alias, *users, *bulk;
	struct route_channel chans[2];
	struct route_config rc = {0};
	struct route_result res;
	long before, after, targets = 0, errors = 0;
	double t0, t1, t2;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path[0], sizeof(path[0]), "%s/virtual", dir);
	snprintf(path[1], sizeof(path[1]), "%s/aliases", dir);
	snprintf(path[2], sizeof(path[2]), "%s/users", dir);
	snprintf(path[3], sizeof(path[3]), "%s/bulk", dir);
	write_file(path[0], n, 0, "");
	write_file(path[1], n, 1, "");
	write_file(path[2], n, 2, "user");
	write_file(path[3], n, 3, "bulk");

	before = rss_kb();
	t0 = now();
	snprintf(spec[0], sizeof(spec[0]), "hash:%s", path[0]);
	snprintf(spec[1], sizeof(spec[1]), "aliases:%s", path[1]);
	snprintf(spec[2], sizeof(spec[2]), "set:%s", path[2]);
	snprintf(spec[3], sizeof(spec[3]), "set:%s", path[3]);
	virt = open_or_die(spec[0]);
	alias = open_or_die(spec[1]);
	users = open_or_die(spec[2]);
	bulk = open_or_die(spec[3]);
	t1 = now();
	after = rss_kb();

	chans[0] = (struct route_channel){"bulk", bulk};
	chans[1] = (struct route_channel){"local", NULL};
	rc.mydestination = mydest;
	rc.n_mydestination = 2;
	rc.recipient_delimiter = "+";
	rc.virtual_alias_maps = virt;
	rc.alias_maps = alias;
	rc.local_recipient_maps = users;
	rc.channels = chans;
	rc.n_channels = 2;

	for (long i = 0; i < m; i++) {
		long k = (i * 7919) % n;

		switch (i % 5) {
		case 0:
			snprintf(rcpt, sizeof(rcpt), "v%ld@virt%ld.test", k, k);
			break;
		case 1:
			snprintf(rcpt, sizeof(rcpt), "alias%ld@localhost", k);
			break;
		case 2:
			snprintf(rcpt, sizeof(rcpt), "user%ld+tag@example.test", k);
			break;
		case 3:
			snprintf(rcpt, sizeof(rcpt), "x@bulk%ld.test", k);
			break;
		default:
			snprintf(rcpt, sizeof(rcpt), "someone%ld@elsewhere.test", k);
			break;
		}
		if (route_resolve(&rc, rcpt, &res, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s: %s\n", rcpt, err);
			return 1;
		}
		targets += (long)res.n;
		for (size_t j = 0; j < res.n; j++)
			errors += res.t[j].error[0] != '\0';
		route_result_free(&res);
	}
	t2 = now();

	printf("tables: 4 x %ld entries loaded in %.3f s, RSS +%ld kB (%.0f bytes per entry)\n",
	       n, t1 - t0, after - before, (after - before) * 1024.0 / (4.0 * n));
	printf("routing: %ld recipients -> %ld targets (%ld errors) in %.3f s: %.0f decisions/s\n",
	       m, targets, errors, t2 - t1, m / (t2 - t1));
	table_free(&virt);
	table_free(&alias);
	table_free(&users);
	table_free(&bulk);
	for (int i = 0; i < 4; i++)
		unlink(path[i]);
	rmdir(dir);
	return errors ? 1 : 0;
}
