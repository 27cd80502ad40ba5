/*
 * smtpd_config - the smtpserver's parameters, read once at start-up.
 *
 * Called by smtpd.c (main) after the skeleton loaded the config; the
 * sessions then read the struct.  Every parameter is a global (Postfix
 * names where Postfix has one) that a [farm NAME] section of the
 * smtpserver farm may override, so a second smtpserver farm (e.g. a
 * submission farm) can differ.  See zfarm.conf(5) for each parameter.
 *
 * Errors (a bad value) are returned as "FILE:LINE: parameter NAME: reason";
 * smtpd.c makes them fatal at start-up.
 */
#ifndef ZFARM_SMTPD_CONFIG_H
#define ZFARM_SMTPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct cidr_list;
struct relay_policy;

/* smtpd_tls_security_level (Postfix's names) */
enum smtpd_tls_level {
	SMTPD_TLS_NONE,	   /* no STARTTLS */
	SMTPD_TLS_MAY,	   /* STARTTLS offered when a certificate is configured */
	SMTPD_TLS_ENCRYPT, /* ... and required before MAIL (530 5.7.0) */
};

struct smtpd_config {
	char *myhostname;
	char *banner;		     /* after "220 " */
	uint64_t message_size_limit; /* content octets; 0: none */
	unsigned recipient_limit;    /* RCPT per transaction */
	size_t command_line_limit;   /* octets with CR LF */
	size_t data_line_limit;	     /* octets without CR LF; 0: none */
	size_t header_size_limit;    /* 0: none */
	unsigned hopcount_limit;     /* Received: fields; 0: none */
	unsigned timeout;	     /* seconds, per read or write */
	unsigned stress_timeout;     /* the same under stress */
	unsigned hard_error_limit;   /* errors before 421 */
	unsigned stress_error_limit; /* the same under stress */
	unsigned junk_command_limit; /* NOOP/RSET/VRFY/HELP before they count as errors */
	bool helo_required;
	bool vrfy_command; /* no: VRFY gets 252 */
	/* EHLO keywords offered */
	bool pipelining, size, eightbitmime, enhancedstatuscodes, smtputf8, chunking, dsn;
	uint64_t queue_minfree; /* bytes; 0: no check */
	char *queue_directory;
	char *queue_store;	/* qstore backend name */
	char *router_endpoint;	/* NULL: no router ("none") */
	bool verify_recipients; /* ask the router about local RCPTs */
	char *run_directory;
	unsigned commit_threads; /* 0: commit in the event loop */
	struct cidr_list *mynetworks;
	struct relay_policy *relay;

	/* TLS: STARTTLS and implicit TLS (tls_server.h) */
	enum smtpd_tls_level tls_level; /* NONE when no certificate is configured */
	char *tls_cert_file;		/* NULL: none */
	char *tls_key_file;		/* "" : in the certificate file */
	char *tls_protocols, *tls_cipherlist, *tls_ciphersuites;
	char **tls_wrappermode_listeners; /* listener names with implicit TLS */
	/* AUTH (auth.h) */
	bool sasl_auth_enable;		  /* on the port-25 style listeners */
	bool tls_auth_only;		  /* AUTH only over TLS */
	char *sasl_type;		  /* auth backend: passwd-file, dovecot */
	char *sasl_path;		  /* its file or socket; NULL: no backend */
	unsigned sasl_failure_limit;	  /* failed AUTHs before 421 */
	unsigned sasl_failure_delay;	  /* seconds before each 535 */
	char **submission_listeners;	  /* listener names with submission rules */
};

/* smtpd_listener_in - is listener (a name) in list (a config list)? */
bool smtpd_listener_in(char *const *list, const char *listener);

/* smtpd_config_load - fill *sc from cfg for farm `farm` (may be NULL). */
int smtpd_config_load(struct smtpd_config *sc, const struct config *cfg, const char *farm,
		      char *err, size_t errlen);
void smtpd_config_release(struct smtpd_config *sc);

#endif
