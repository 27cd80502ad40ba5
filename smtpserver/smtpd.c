/*
 * smtpd - the smtpserver farm's main(): config, queue store, committer and
 * router hand-off, then one session per accepted connection.
 *
 * Runs under farmd (or alone with -s for tests); see farm_server.h for the
 * options and smtpd_config.h for the parameters.  Everything that can be
 * wrong with the config or the queue is found here, at start-up, and is
 * fatal with a line that says what; after that nothing ends the process
 * but the skeleton's rules.
 */
#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "common/farm_server.h"
#include "common/frame_client.h"
#include "common/log.h"
#include "common/qstore.h"
#include "smtpserver/auth.h"
#include "smtpserver/committer.h"
#include "smtpserver/handoff.h"
#include "smtpserver/session.h"
#include "smtpserver/smtpd_config.h"
#include "smtpserver/tls_server.h"

/* The router must answer a RCPT check this fast, or the client gets 451. */
#define SMTPD_VERIFY_TIMEOUT_MS 10000

static struct smtpd_config smtpd_cfg;
static struct session_env smtpd_env;

static bool smtpd_stress(void *arg)
{
	return farm_server_stress(arg);
}

static void smtpd_session_end(void *arg)
{
	farm_server_session_end(arg);
}

/*
 * smtpd_tls_auth_init - the TLS context (when a certificate is set) and
 * the AUTH backend (when smtpd_sasl_path is set).  A bad TLS policy or
 * SASL type is fatal; certificate and password files that do not load
 * are logged and tried again when they change (tls_server.h, auth.h).
 */
static int smtpd_tls_auth_init(struct smtpd_config *sc, struct event_base *base, char *err,
			       size_t errlen)
{
	char why[1024];

	if (sc->tls_cert_file) {
		struct tls_server_params tp = {
		    .cert_file = sc->tls_cert_file,
		    .key_file = sc->tls_key_file,
		    .protocols = sc->tls_protocols,
		    .cipherlist = sc->tls_cipherlist,
		    .ciphersuites = sc->tls_ciphersuites,
		};

		char warn[1024];

		smtpd_env.tls = tls_server_new(&tp, warn, sizeof(warn), why, sizeof(why));
		if (!smtpd_env.tls) {
			snprintf(err, errlen, "smtpd_tls_*: %s", why);
			return -1;
		}
		/*
		 * Like Postfix: a certificate that does not load is loud but not
		 * fatal, so a reload with a bad path leaves port 25 taking mail
		 * (in clear); the files are tried again when they change.
		 */
		if (warn[0])
			log_error("TLS certificate: %s", warn);
	}
	if (sc->sasl_path) {
		smtpd_env.auth = auth_backend_new(base, sc->sasl_type, sc->sasl_path, why,
						  sizeof(why));
		if (!smtpd_env.auth) {
			snprintf(err, errlen, "smtpd_sasl_path: %s", why);
			return -1;
		}
	}
	return 0;
}

static int smtpd_init(struct farm_server *srv, char *err, size_t errlen)
{
	struct smtpd_config *sc = &smtpd_cfg;
	unsigned threads;

	if (smtpd_config_load(sc, farm_server_config(srv), farm_server_farm_name(srv), err,
			      errlen) < 0)
		return -1;
	smtpd_env.base = farm_server_base(srv);
	smtpd_env.stress = smtpd_stress;
	smtpd_env.session_end = smtpd_session_end;
	smtpd_env.arg = srv;
	smtpd_env.cfg = sc;
	smtpd_env.qs = qstore_open(sc->queue_store, sc->queue_directory, err, errlen);
	if (!smtpd_env.qs)
		return -1;
	log_debug("queue %s: commit by %s", sc->queue_directory, qstore_commit_mode(smtpd_env.qs));
	/* The ram backend is for tests and not thread-safe: commit inline. */
	threads = strcmp(qstore_backend(smtpd_env.qs), "spool") == 0 ? sc->commit_threads : 0;
	smtpd_env.committer = committer_new(farm_server_base(srv), threads, err, errlen);
	if (!smtpd_env.committer)
		return -1;
	if (sc->router_endpoint) {
		smtpd_env.handoff = handoff_new(farm_server_base(srv), sc->router_endpoint,
						sc->run_directory, err, errlen);
		if (!smtpd_env.handoff)
			return -1;
		if (sc->verify_recipients) {
			smtpd_env.verify = frame_client_new(farm_server_base(srv),
							    sc->router_endpoint, sc->run_directory,
							    SMTPD_VERIFY_TIMEOUT_MS, err, errlen);
			if (!smtpd_env.verify)
				return -1;
		}
	}
	if (smtpd_tls_auth_init(sc, farm_server_base(srv), err, errlen) < 0)
		return -1;
	log_debug("smtpserver ready: queue %s (%s), %u commit threads, router %s, TLS %s, "
		  "AUTH %s",
		  sc->queue_directory, qstore_backend(smtpd_env.qs), threads,
		  sc->router_endpoint ? sc->router_endpoint : "none",
		  smtpd_env.tls ? sc->tls_cert_file : "off",
		  smtpd_env.auth ? auth_backend_name(smtpd_env.auth) : "off");
	return 0;
}

static void smtpd_accept(struct farm_server *srv, int fd, const char *listener)
{
	(void)srv;
	session_start(&smtpd_env, fd, listener);
}

static void smtpd_fini(struct farm_server *srv)
{
	(void)srv;
	committer_free(&smtpd_env.committer);
	auth_backend_free(&smtpd_env.auth);
	tls_server_free(&smtpd_env.tls);
	handoff_free(&smtpd_env.handoff);
	frame_client_free(&smtpd_env.verify);
	qstore_close(&smtpd_env.qs);
	smtpd_config_release(&smtpd_cfg);
}

static const struct farm_server_ops smtpd_ops = {
    .name = "smtpserver",
    .init = smtpd_init,
    .accept = smtpd_accept,
    .fini = smtpd_fini,
};

int main(int argc, char **argv)
{
	return farm_server_main(argc, argv, &smtpd_ops);
}
