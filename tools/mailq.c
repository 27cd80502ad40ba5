/*
 * mailq - the sendmail-compatible queue listing: `zfqueue list` under the
 * name every MTA has.
 *
 *   mailq [-c config] [-o name=value]... [--json] [-v]
 *
 * Asks the scheduler over $run_directory/public/showq (tools/qctl_client.c
 * does the paging and the Postfix-style layout) and prints each message
 * with its recipients not yet delivered or failed (-v: all, with their
 * status).  Exit status as zfqueue's: 0 done; 1 the scheduler refused;
 * 2 usage or bad config; 3 the scheduler is not running or did not answer.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "tools/qctl_client.h"

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: mailq [-c config] [-o name=value]... [--json] [-v]\n");
	exit(QCTL_USAGE);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"verbose", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	char **overrides = xcalloc((size_t)argc, sizeof(*overrides));
	Zfarm__QueueControlRequest filter;
	struct qctl_list_printer p;
	struct qctl_client *qc;
	struct config *cfg;
	enum qctl_status st;
	size_t n_overrides = 0;
	bool json = false, verbose = false;
	char err[1024];
	int c;

	log_open("mailq", LOG_TARGET_STDERR);
	while ((c = getopt_long(argc, argv, "+c:o:v", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			overrides[n_overrides++] = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'v':
			verbose = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	cfg = qctl_load_config(config_path, overrides, n_overrides, err, sizeof(err));
	free(overrides);
	if (!cfg) {
		fprintf(stderr, "mailq: %s\n", err);
		return QCTL_USAGE;
	}
	qc = qctl_client_open(cfg, false, &st, err, sizeof(err));
	config_free(&cfg);
	if (!qc) {
		fprintf(stderr, "mailq: %s\n", err);
		return st;
	}
	zfarm__queue_control_request__init(&filter);
	qctl_list_begin(&p, stdout, json, verbose, false);
	st = qctl_client_list(qc, &filter, qctl_list_print_entry, &p, err, sizeof(err));
	qctl_client_free(&qc);
	if (st != QCTL_OK) {
		fflush(stdout);
		fputs("mailq: ", stderr);
		qctl_text(stderr, err);
		putc('\n', stderr);
		return st;
	}
	qctl_list_end(&p);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "mailq: write error on standard output: %s\n", strerror(errno));
		return QCTL_REFUSED;
	}
	return QCTL_OK;
}
