/*
 * auth - smtpserver's password checks for SMTP AUTH: one interface, a
 * backend chosen by name (smtpd_sasl_type):
 *
 *   passwd-file  a file of crypt(3) hashes (passwd_file.h), checked in a
 *                worker thread so a slow hash never stalls the event loop;
 *                the file is read again when it changes
 *   dovecot      Dovecot's authentication server over its client socket
 *                (dovecot_auth.h), e.g. /run/dovecot/auth-client or a
 *                "service auth { unix_listener ... }" made for us
 *
 * Called by the smtpserver session once the SASL exchange (sasl.h) gave
 * a user name and a password; created by smtpd.c at start-up, where a
 * failure (unknown type, a path that cannot be a socket) is fatal.  A
 * password file that does not load is not: it is logged, AUTH gets
 * AUTH_TEMPFAIL and the file is tried again at each AUTH, so a file made
 * later (zfpasswd) or fixed needs no restart.
 *
 * Contract: auth_verify() copies what it needs; done runs later in the
 * event loop thread (never inside auth_verify), exactly once per request,
 * unless auth_cancel() for that arg came first.  A caller has at most one
 * request under way per arg.  The backends log their own trouble (a bad
 * password file after a change, an auth server that went away) and
 * answer AUTH_TEMPFAIL while it lasts.
 */
#ifndef ZFARM_AUTH_H
#define ZFARM_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct auth_backend;

enum auth_result {
	AUTH_OK,
	AUTH_FAIL,     /* wrong user or password: 535 5.7.8 */
	AUTH_TEMPFAIL, /* the backend could not tell: 454 4.7.0 */
};

struct auth_request {
	const char *user;
	const char *pass;
	const char *service;	 /* "smtp" */
	const char *local_addr;	 /* "" when unknown (unix socket) */
	const char *remote_addr; /* "" when unknown */
	bool secured;		 /* the password came over TLS */
};

/*
 * The answer.  user: the name to record for the session (the backend's
 * canonical form, e.g. Dovecot's user=), valid during the call; reason:
 * for the log, "" when there is nothing to say.
 */
typedef void auth_done_fn(void *arg, enum auth_result r, const char *user, const char *reason);

/* The backend interface (see the table in auth.c). */
struct auth_backend_ops {
	const char *name;
	void *(*open)(struct event_base *base, const char *path, char *err, size_t errlen);
	void (*verify)(void *be, const struct auth_request *req, auth_done_fn *done, void *arg);
	void (*cancel)(void *be, void *arg);
	void (*close)(void *be);
};

/* auth_backend_new - backend type ("passwd-file", "dovecot") on path; NULL + reason. */
struct auth_backend *auth_backend_new(struct event_base *base, const char *type, const char *path,
				      char *err, size_t errlen);
void auth_backend_free(struct auth_backend **b);

/* auth_backend_name - its type, for logs. */
const char *auth_backend_name(const struct auth_backend *b);

void auth_verify(struct auth_backend *b, const struct auth_request *req, auth_done_fn *done,
		 void *arg);
void auth_cancel(struct auth_backend *b, void *arg);

#endif
