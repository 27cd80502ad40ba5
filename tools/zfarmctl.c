/*
 * zfarmctl - farm control: ask a running farmd for status, reload, stop.
 *
 *   zfarmctl [-c config] [-o name=value]... status [--json]
 *   zfarmctl [-c config] [-o name=value]... reload | stop
 *   zfarmctl [-c config] [-o name=value]... throttle-reset FARM
 *
 * It finds farmd's control socket ($run_directory/private/control) through
 * the same configuration and -o options as farmd.  Exit status, for scripts:
 * 0 done; 1 farmd refused (reason on stderr, e.g. a bad config on reload);
 * 2 usage error or bad config; 3 farmd is not running or did not answer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/endpoint.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/paths.h"

#define ZFARMCTL_TIMEOUT_MS 30000

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: zfarmctl [-c config] [-o name=value]... "
			"status [--json] | reload | stop | throttle-reset FARM\n");
	exit(EXIT_USAGE);
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_json(const Zfarm__FarmControlReply *r)
{
	printf("{\"pid\":%u,\"generation\":%llu,\"farms\":[", r->pid,
	       (unsigned long long)r->generation);
	for (size_t i = 0; i < r->n_farms; i++) {
		const Zfarm__FarmInfo *f = r->farms[i];

		printf("%s{\"name\":", i ? "," : "");
		json_string(f->name);
		printf(",\"kind\":");
		json_string(f->kind);
		printf(",\"total\":%u,\"available\":%u,\"busy\":%u,\"limit\":%u,"
		       "\"throttled_until\":%lld,\"stress\":%s,\"spawned\":%llu,"
		       "\"crashed\":%llu,\"served\":%llu,\"endpoints\":[",
		       f->total, f->available, f->busy, f->process_limit,
		       (long long)f->throttled_until, f->stress ? "true" : "false",
		       (unsigned long long)f->spawned, (unsigned long long)f->crashed,
		       (unsigned long long)f->served);
		for (size_t j = 0; j < f->n_endpoints; j++) {
			if (j)
				putchar(',');
			json_string(f->endpoints[j]);
		}
		printf("],\"waiting_for\":[");
		for (size_t j = 0; j < f->n_waiting_for; j++) {
			if (j)
				putchar(',');
			json_string(f->waiting_for[j]);
		}
		printf("]}");
	}
	printf("]}\n");
}

static void print_table(const Zfarm__FarmControlReply *r)
{
	time_t now = time(NULL);

	printf("%-16s %-6s %5s %5s %5s %5s %9s %6s %8s %7s %8s\n", "farm", "kind", "total",
	       "avail", "busy", "limit", "throttled", "stress", "spawned", "crashed", "served");
	for (size_t i = 0; i < r->n_farms; i++) {
		const Zfarm__FarmInfo *f = r->farms[i];
		char thr[32] = "-";

		if (f->throttled_until > now)
			snprintf(thr, sizeof(thr), "%llds", (long long)(f->throttled_until - now));
		printf("%-16s %-6s %5u %5u %5u %5u %9s %6s %8llu %7llu %8llu\n", f->name, f->kind,
		       f->total, f->available, f->busy, f->process_limit, thr,
		       f->stress ? "yes" : "no", (unsigned long long)f->spawned,
		       (unsigned long long)f->crashed, (unsigned long long)f->served);
	}
	for (size_t i = 0; i < r->n_farms; i++) {
		const Zfarm__FarmInfo *f = r->farms[i];

		if (!f->n_waiting_for)
			continue;
		printf("%s: not started, waits for the first run of", f->name);
		for (size_t j = 0; j < f->n_waiting_for; j++)
			printf("%s %s", j ? "," : "", f->waiting_for[j]);
		putchar('\n');
	}
}

/* zfarmctl_finish - free what main holds and return the exit status. */
static int zfarmctl_finish(struct config **cfg, int status)
{
	config_free(cfg);
	return status;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	struct config *cfg = config_new();
	Zfarm__FarmControlRequest req;
	Zfarm__Frame f, *reply;
	struct endpoint ep;
	char path[512], spec[600], err[1024];
	bool json = false;
	int c, fd, rc;

	paths_set_defaults(cfg);
	log_open("zfarmctl", LOG_TARGET_STDERR);
	while ((c = getopt(argc, argv, "+c:o:")) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			if (config_override(cfg, optarg, err, sizeof(err)) < 0) {
				fprintf(stderr, "zfarmctl: %s (in -o %s)\n", err, optarg);
				return zfarmctl_finish(&cfg, EXIT_USAGE);
			}
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	if (!config_path)
		config_path = paths_config_file();
	if (config_path && config_load(cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "zfarmctl: %s\n", err);
		return zfarmctl_finish(&cfg, EXIT_USAGE);
	}
	zfarm__farm_control_request__init(&req);
	if (strcmp(argv[optind], "status") == 0) {
		req.op = ZFARM__FARM_CONTROL_REQUEST__OP__STATUS;
		json = optind + 1 < argc && strcmp(argv[optind + 1], "--json") == 0;
		if (optind + 1 + json != argc)
			usage();
	} else if (strcmp(argv[optind], "reload") == 0 && optind + 1 == argc) {
		req.op = ZFARM__FARM_CONTROL_REQUEST__OP__RELOAD;
	} else if (strcmp(argv[optind], "stop") == 0 && optind + 1 == argc) {
		req.op = ZFARM__FARM_CONTROL_REQUEST__OP__STOP;
	} else if (strcmp(argv[optind], "throttle-reset") == 0 && optind + 2 == argc) {
		req.op = ZFARM__FARM_CONTROL_REQUEST__OP__THROTTLE_RESET;
		req.farm = argv[optind + 1];
	} else {
		usage();
	}

	if (farmd_control_path(cfg, path, sizeof(path), err, sizeof(err)) < 0) {
		fprintf(stderr, "zfarmctl: %s\n", err);
		return zfarmctl_finish(&cfg, EXIT_USAGE);
	}
	snprintf(spec, sizeof(spec), "unix:%s", path);
	if (endpoint_parse(spec, &ep, err, sizeof(err)) < 0) {
		fprintf(stderr, "zfarmctl: %s\n", err);
		return zfarmctl_finish(&cfg, EXIT_USAGE);
	}
	fd = endpoint_connect(&ep, false, err, sizeof(err));
	if (fd < 0) {
		fprintf(stderr, "zfarmctl: farmd is not running: %s\n", err);
		return zfarmctl_finish(&cfg, EXIT_UNREACHABLE);
	}
	frame_init(&f, 1);
	f.body_case = ZFARM__FRAME__BODY_FARM_CONTROL;
	f.farm_control = &req;
	if (frame_write_fd(fd, &f, err, sizeof(err)) < 0) {
		fprintf(stderr, "zfarmctl: send: %s\n", err);
		return zfarmctl_finish(&cfg, EXIT_UNREACHABLE);
	}
	reply = frame_read_fd(fd, FRAME_MAX_DEFAULT, ZFARMCTL_TIMEOUT_MS, err, sizeof(err));
	close(fd);
	if (reply == NULL || reply->body_case != ZFARM__FRAME__BODY_FARM_CONTROL_REPLY) {
		fprintf(stderr, "zfarmctl: no answer from farmd: %s\n",
			reply ? "unexpected reply" : (*err ? err : "connection closed"));
		frame_free(&reply);
		return zfarmctl_finish(&cfg, EXIT_UNREACHABLE);
	}
	rc = 0;
	if (!reply->farm_control_reply->ok) {
		fprintf(stderr, "zfarmctl: %s\n", reply->farm_control_reply->error);
		rc = EXIT_REFUSED;
	} else if (req.op == ZFARM__FARM_CONTROL_REQUEST__OP__STATUS) {
		if (json)
			print_json(reply->farm_control_reply);
		else
			print_table(reply->farm_control_reply);
	}
	frame_free(&reply);
	return zfarmctl_finish(&cfg, rc);
}
