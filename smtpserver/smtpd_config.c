/*
 * smtpd_config - see smtpd_config.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cidr.h"
#include "common/config.h"
#include "common/paths.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "smtpserver/relay.h"
#include "smtpserver/smtpd_config.h"
#include "smtpserver/tls_server.h"

/* Where a parameter is looked up: the farm's section first, else the global. */
struct scope {
	const struct config *cfg;
	const char *farm;
};

static const char *scope_kind(const struct scope *s, const char *param)
{
	if (s->farm && config_get(s->cfg, "farm", s->farm, param))
		return "farm";
	return NULL;
}

static int get_uint(const struct scope *s, const char *param, long long def, long long max,
		    uint64_t *out, char *err, size_t errlen)
{
	long long v;
	const char *k = scope_kind(s, param);

	if (config_get_int(s->cfg, k, s->farm, param, def, 0, max, &v, err, errlen) < 0)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static int get_size(const struct scope *s, const char *param, long long def, uint64_t *out,
		    char *err, size_t errlen)
{
	long long v;
	const char *k = scope_kind(s, param);

	if (config_get_size(s->cfg, k, s->farm, param, def, 0, (long long)1 << 50, &v, err,
			    errlen) < 0)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static int get_time(const struct scope *s, const char *param, long long def, unsigned *out,
		    char *err, size_t errlen)
{
	long long v;
	const char *k = scope_kind(s, param);

	if (config_get_time(s->cfg, k, s->farm, param, def, 1, 86400, &v, err, errlen) < 0)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int get_bool(const struct scope *s, const char *param, bool def, bool *out, char *err,
		    size_t errlen)
{
	return config_get_bool(s->cfg, scope_kind(s, param), s->farm, param, def, out, err, errlen);
}

static int get_str(const struct scope *s, const char *param, const char *def, char **out, char *err,
		   size_t errlen)
{
	const char *v;

	if (config_get_string(s->cfg, scope_kind(s, param), s->farm, param, def, &v, err, errlen) <
	    0)
		return -1;
	*out = xstrdup(v);
	str_trim(*out);
	return 0;
}

static int get_list(const struct scope *s, const char *param, const char *def, char ***out,
		    size_t *n, char *err, size_t errlen)
{
	return config_get_list(s->cfg, scope_kind(s, param), s->farm, param, def, out, n, err,
			       errlen);
}

/* ehlo_discarded - is keyword in smtpd_discard_ehlo_keywords? */
static bool ehlo_discarded(char **list, const char *keyword)
{
	for (size_t i = 0; list && list[i]; i++)
		if (strcasecmp(list[i], keyword) == 0)
			return true;
	return false;
}

static int load_tables(struct smtpd_config *sc, const struct scope *s, char *err, size_t errlen)
{
	char **nets = NULL, **dest = NULL, **relay = NULL;
	size_t nn = 0, nd = 0, nr = 0;
	char why[512];
	int rc = -1;

	char def[600];

	snprintf(def, sizeof(def), "localhost %s", sc->myhostname);
	if (get_list(s, "mynetworks", "127.0.0.0/8 [::1]/128", &nets, &nn, err, errlen) < 0 ||
	    get_list(s, "mydestination", def, &dest, &nd, err, errlen) < 0 ||
	    get_list(s, "relay_domains", "", &relay, &nr, err, errlen) < 0)
		goto out;
	sc->mynetworks = cidr_list_parse((const char *const *)nets, nn, why, sizeof(why));
	if (!sc->mynetworks) {
		snprintf(err, errlen, "parameter mynetworks: %s", why);
		goto out;
	}
	sc->relay = relay_policy_new((const char *const *)dest, nd, (const char *const *)relay, nr,
				     why, sizeof(why));
	if (!sc->relay) {
		snprintf(err, errlen, "parameter mydestination or relay_domains: %s", why);
		goto out;
	}
	rc = 0;
out:
	config_list_free(&nets);
	config_list_free(&dest);
	config_list_free(&relay);
	return rc;
}

bool smtpd_listener_in(char *const *list, const char *listener)
{
	for (size_t i = 0; list && list[i]; i++)
		if (listener && strcmp(list[i], listener) == 0)
			return true;
	return false;
}

/* The TLS and AUTH parameters (smtpserver(8) has the rules they make). */
static int load_tls_auth(struct smtpd_config *sc, const struct scope *s, char *err, size_t errlen)
{
	char *level = NULL, *cert = NULL, *path = NULL;
	int min, max, rc = -1;
	uint64_t u;

	if (get_str(s, "smtpd_tls_cert_file", "", &cert, err, errlen) < 0 ||
	    get_str(s, "smtpd_tls_key_file", "", &sc->tls_key_file, err, errlen) < 0 ||
	    get_str(s, "smtpd_tls_security_level", "may", &level, err, errlen) < 0 ||
	    get_str(s, "smtpd_tls_protocols", TLS_SERVER_DEFAULT_PROTOCOLS, &sc->tls_protocols, err,
		    errlen) < 0 ||
	    get_str(s, "smtpd_tls_cipherlist", TLS_SERVER_DEFAULT_CIPHERLIST, &sc->tls_cipherlist,
		    err, errlen) < 0 ||
	    get_str(s, "smtpd_tls_ciphersuites", TLS_SERVER_DEFAULT_CIPHERSUITES,
		    &sc->tls_ciphersuites, err, errlen) < 0 ||
	    get_list(s, "smtpd_tls_wrappermode_listeners", "submissions smtps",
		     &sc->tls_wrappermode_listeners, NULL, err, errlen) < 0 ||
	    get_bool(s, "smtpd_tls_auth_only", true, &sc->tls_auth_only, err, errlen) < 0 ||
	    get_bool(s, "smtpd_sasl_auth_enable", false, &sc->sasl_auth_enable, err, errlen) < 0 ||
	    get_str(s, "smtpd_sasl_type", "passwd-file", &sc->sasl_type, err, errlen) < 0 ||
	    get_str(s, "smtpd_sasl_path", "", &path, err, errlen) < 0 ||
	    get_list(s, "smtpd_submission_listeners", "submission submissions",
		     &sc->submission_listeners, NULL, err, errlen) < 0)
		goto out;
	if (strcmp(level, "none") == 0) {
		sc->tls_level = SMTPD_TLS_NONE;
	} else if (strcmp(level, "may") == 0) {
		sc->tls_level = SMTPD_TLS_MAY;
	} else if (strcmp(level, "encrypt") == 0) {
		sc->tls_level = SMTPD_TLS_ENCRYPT;
	} else {
		snprintf(err, errlen, "parameter smtpd_tls_security_level: \"%s\" is not none, may "
				      "or encrypt", level);
		goto out;
	}
	if (cert[0]) {
		sc->tls_cert_file = cert;
		cert = NULL;
	} else if (sc->tls_level == SMTPD_TLS_ENCRYPT) {
		snprintf(err, errlen, "parameter smtpd_tls_security_level: encrypt needs "
				      "smtpd_tls_cert_file");
		goto out;
	} else {
		sc->tls_level = SMTPD_TLS_NONE;
	}
	if (tls_server_protocols(sc->tls_protocols, &min, &max, err, errlen) < 0) {
		char why[512];

		snprintf(why, sizeof(why), "parameter smtpd_tls_protocols: %s", err);
		snprintf(err, errlen, "%s", why);
		goto out;
	}
	if (strcmp(sc->sasl_type, "passwd-file") != 0 && strcmp(sc->sasl_type, "dovecot") != 0) {
		snprintf(err, errlen, "parameter smtpd_sasl_type: \"%s\" is not passwd-file or "
				      "dovecot", sc->sasl_type);
		goto out;
	}
	if (path[0] == '\0') {
		/* no backend: AUTH is not offered */
	} else if (path[0] != '/' && strcmp(sc->sasl_type, "dovecot") == 0) {
		/* Like Postfix's private/auth: relative to the run directory. */
		sc->sasl_path = xasprintf("%s/%s", sc->run_directory, path);
	} else {
		sc->sasl_path = path;
		path = NULL;
	}
	if (get_uint(s, "smtpd_sasl_failure_limit", 3, 1000, &u, err, errlen) < 0)
		goto out;
	sc->sasl_failure_limit = u ? (unsigned)u : 1;
	{
		long long v;

		if (config_get_time(s->cfg, scope_kind(s, "smtpd_sasl_failure_delay"), s->farm,
				    "smtpd_sasl_failure_delay", 1, 0, 60, &v, err, errlen) < 0)
			goto out;
		sc->sasl_failure_delay = (unsigned)v;
	}
	rc = 0;
out:
	free(level);
	free(cert);
	free(path);
	return rc;
}

int smtpd_config_load(struct smtpd_config *sc, const struct config *cfg, const char *farm,
		      char *err, size_t errlen)
{
	struct scope s = {cfg, farm};
	char **discard = NULL;
	char rundir[4096], def[4200];
	uint64_t u;
	char *router = NULL;

	memset(sc, 0, sizeof(*sc));
	if (farmd_run_directory(cfg, rundir, sizeof(rundir), err, errlen) < 0)
		return -1;
	sc->run_directory = xstrdup(rundir);
	/* Defaults are not expanded: those naming other parameters are built here. */
	if (get_str(&s, "myhostname", "localhost", &sc->myhostname, err, errlen) < 0)
		goto fail;
	snprintf(def, sizeof(def), "%s ESMTP zfarm", sc->myhostname);
	if (get_str(&s, "smtpd_banner", def, &sc->banner, err, errlen) < 0 ||
	    get_size(&s, "message_size_limit", 10240000, &sc->message_size_limit, err, errlen) < 0)
		goto fail;
	if (get_uint(&s, "smtpd_recipient_limit", 1000, 1000000, &u, err, errlen) < 0)
		goto fail;
	sc->recipient_limit = (unsigned)u;
	if (get_uint(&s, "smtpd_command_line_limit", 2048, 65536, &u, err, errlen) < 0)
		goto fail;
	if (u < 512) {
		snprintf(err, errlen,
			 "parameter smtpd_command_line_limit: at least 512 (RFC 5321)");
		goto fail;
	}
	sc->command_line_limit = (size_t)u;
	if (get_uint(&s, "smtpd_data_line_limit", 998, 1 << 30, &u, err, errlen) < 0)
		goto fail;
	sc->data_line_limit = (size_t)u;
	if (get_size(&s, "header_size_limit", 102400, &u, err, errlen) < 0)
		goto fail;
	sc->header_size_limit = (size_t)u;
	if (get_uint(&s, "hopcount_limit", 50, 10000, &u, err, errlen) < 0)
		goto fail;
	sc->hopcount_limit = (unsigned)u;
	if (get_time(&s, "smtpd_timeout", 300, &sc->timeout, err, errlen) < 0 ||
	    get_time(&s, "smtpd_stress_timeout", 10, &sc->stress_timeout, err, errlen) < 0)
		goto fail;
	if (get_uint(&s, "smtpd_hard_error_limit", 20, 100000, &u, err, errlen) < 0)
		goto fail;
	sc->hard_error_limit = (unsigned)u;
	if (get_uint(&s, "smtpd_stress_error_limit", 1, 100000, &u, err, errlen) < 0)
		goto fail;
	sc->stress_error_limit = (unsigned)u;
	if (get_uint(&s, "smtpd_junk_command_limit", 100, 1000000, &u, err, errlen) < 0)
		goto fail;
	sc->junk_command_limit = (unsigned)u;
	if (get_bool(&s, "smtpd_verify_recipients", true, &sc->verify_recipients, err, errlen) <
		0 ||
	    get_bool(&s, "smtpd_helo_required", false, &sc->helo_required, err, errlen) < 0 ||
	    get_bool(&s, "smtpd_vrfy_command", false, &sc->vrfy_command, err, errlen) < 0)
		goto fail;
	if (get_list(&s, "smtpd_discard_ehlo_keywords", "", &discard, NULL, err, errlen) < 0)
		goto fail;
	sc->pipelining = !ehlo_discarded(discard, "pipelining");
	sc->size = !ehlo_discarded(discard, "size");
	sc->eightbitmime = !ehlo_discarded(discard, "8bitmime");
	sc->enhancedstatuscodes = !ehlo_discarded(discard, "enhancedstatuscodes");
	sc->smtputf8 = !ehlo_discarded(discard, "smtputf8");
	sc->chunking = !ehlo_discarded(discard, "chunking");
	sc->dsn = !ehlo_discarded(discard, "dsn");
	config_list_free(&discard);
	if (get_size(&s, "queue_minfree", 20480000, &sc->queue_minfree, err, errlen) < 0)
		goto fail;
	snprintf(def, sizeof(def), "%s/queue", sc->run_directory);
	if (get_str(&s, "queue_directory", def, &sc->queue_directory, err, errlen) < 0 ||
	    get_str(&s, "queue_store", "spool", &sc->queue_store, err, errlen) < 0 ||
	    get_str(&s, "router_endpoint", "unix:private/router", &router, err, errlen) < 0)
		goto fail;
	if (strcmp(router, "none") == 0 || router[0] == '\0')
		free(router);
	else
		sc->router_endpoint = router;
	if (get_uint(&s, "smtpd_commit_threads", 16, 64, &u, err, errlen) < 0)
		goto fail;
	sc->commit_threads = (unsigned)u;
	if (load_tables(sc, &s, err, errlen) < 0 || load_tls_auth(sc, &s, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	smtpd_config_release(sc);
	return -1;
}

void smtpd_config_release(struct smtpd_config *sc)
{
	free(sc->myhostname);
	free(sc->banner);
	free(sc->queue_directory);
	free(sc->queue_store);
	free(sc->router_endpoint);
	free(sc->run_directory);
	cidr_list_free(&sc->mynetworks);
	relay_policy_free(&sc->relay);
	free(sc->tls_cert_file);
	free(sc->tls_key_file);
	free(sc->tls_protocols);
	free(sc->tls_cipherlist);
	free(sc->tls_ciphersuites);
	config_list_free(&sc->tls_wrappermode_listeners);
	free(sc->sasl_type);
	free(sc->sasl_path);
	config_list_free(&sc->submission_listeners);
	memset(sc, 0, sizeof(*sc));
}
