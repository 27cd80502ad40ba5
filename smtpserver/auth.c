/*
 * auth - see auth.h.  The backend table, and the passwd-file backend:
 *
 * Checks run in one worker thread of a common/workq; the answer comes
 * back in the loop.  The worker owns the parsed file (it reads it again
 * when it changed) and never touches libevent; what it has to say (a bad
 * file) travels back with the job and is logged by the loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/workq.h"
#include "common/xalloc.h"
#include "smtpserver/auth.h"
#include "smtpserver/dovecot_auth.h"
#include "smtpserver/passwd_file.h"

struct auth_backend {
	const struct auth_backend_ops *ops;
	void *be;
};

/* ---- passwd-file ---- */

struct pw_job {
	struct workq_item item; /* first: a job is its item */
	char *user, *pass;
	auth_done_fn *done;
	void *arg; /* NULL: cancelled (only under the queue's lock, or in the loop) */
	enum auth_result result;
	char warning[512];
};

struct pw_backend {
	struct workq *q;
	char *path;
	struct passwd_file *pf; /* the worker's; NULL while the file does not load */
	char last_error[400];	/* the worker's: said once */
};

static void pw_job_free(struct pw_job *j)
{
	if (!j)
		return;
	free(j->user);
	if (j->pass) {
		explicit_bzero(j->pass, strlen(j->pass));
		free(j->pass);
	}
	free(j);
}

/* pw_job_run - in the worker thread: the file (loaded or refreshed), the hash. */
static void pw_job_run(struct workq_item *it, void *ctx)
{
	struct pw_backend *p = ctx;
	struct pw_job *j = (struct pw_job *)it;
	char why[400];

	j->warning[0] = '\0';
	if (!p->pf) {
		/* Not loaded yet (missing, broken): tried at each AUTH, said once. */
		p->pf = passwd_file_load(p->path, why, sizeof(why));
		if (!p->pf) {
			if (strcmp(why, p->last_error) != 0)
				snprintf(j->warning, sizeof(j->warning),
					 "%s; AUTH answers 454 until it loads", why);
			snprintf(p->last_error, sizeof(p->last_error), "%s", why);
			j->result = AUTH_TEMPFAIL;
			explicit_bzero(j->pass, strlen(j->pass));
			return;
		}
		p->last_error[0] = '\0';
	} else if (passwd_file_refresh(&p->pf, why, sizeof(why)) < 0) {
		snprintf(j->warning, sizeof(j->warning),
			 "%s; the password file read before stays in use", why);
	}
	j->result = passwd_file_verify(p->pf, j->user, j->pass) ? AUTH_OK : AUTH_FAIL;
	explicit_bzero(j->pass, strlen(j->pass));
}

/* pw_job_done - in the loop: the warning logged, the session answered. */
static void pw_job_done(struct workq_item *it, void *ctx)
{
	struct pw_job *j = (struct pw_job *)it;

	(void)ctx;
	if (j->warning[0])
		log_warn("%s", j->warning);
	if (j->arg)
		j->done(j->arg, j->result, j->user,
			j->result == AUTH_TEMPFAIL ? "the password file does not load" : "");
	pw_job_free(j);
}

static void pw_job_drop(struct workq_item *it, void *ctx)
{
	(void)ctx;
	pw_job_free((struct pw_job *)it);
}

static void pw_close(void *be)
{
	struct pw_backend *p = be;

	if (!p)
		return;
	workq_free(&p->q, false, pw_job_drop);
	passwd_file_free(&p->pf);
	free(p->path);
	free(p);
}

/*
 * One worker thread: checks of one process run one at a time, so a client
 * that tries many passwords slows the others of its process by a hash
 * each, not the event loop.
 */
static void *pw_open(struct event_base *base, const char *path, char *err, size_t errlen)
{
	struct pw_backend *p = xcalloc(1, sizeof(*p));

	if (!path || !path[0]) {
		snprintf(err, errlen, "no password file (smtpd_sasl_path)");
		goto fail;
	}
	p->path = xstrdup(path);
	p->pf = passwd_file_load(path, p->last_error, sizeof(p->last_error));
	if (!p->pf)
		log_error("%s; AUTH answers 454 until it loads", p->last_error);
	p->q = workq_new(base, 1, pw_job_run, pw_job_done, p, err, errlen);
	if (!p->q)
		goto fail;
	return p;
fail:
	pw_close(p);
	return NULL;
}

static void pw_verify(void *be, const struct auth_request *req, auth_done_fn *done, void *arg)
{
	struct pw_backend *p = be;
	struct pw_job *j = xcalloc(1, sizeof(*j));

	j->user = xstrdup(req->user);
	j->pass = xstrdup(req->pass);
	j->done = done;
	j->arg = arg;
	workq_submit(p->q, &j->item);
}

static void pw_cancel_one(struct workq_item *it, void *arg)
{
	struct pw_job *j = (struct pw_job *)it;

	if (j->arg == arg)
		j->arg = NULL;
}

static void pw_cancel(void *be, void *arg)
{
	struct pw_backend *p = be;

	workq_each(p->q, pw_cancel_one, arg);
}

static const struct auth_backend_ops passwd_file_backend = {
    .name = "passwd-file",
    .open = pw_open,
    .verify = pw_verify,
    .cancel = pw_cancel,
    .close = pw_close,
};

/* ---- the table ---- */

static const struct auth_backend_ops *const backends[] = {
    &passwd_file_backend,
    &dovecot_auth_backend,
};

struct auth_backend *auth_backend_new(struct event_base *base, const char *type, const char *path,
				      char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		struct auth_backend *b;
		void *be;

		if (strcmp(type, backends[i]->name) != 0)
			continue;
		be = backends[i]->open(base, path, err, errlen);
		if (!be)
			return NULL;
		b = xcalloc(1, sizeof(*b));
		b->ops = backends[i];
		b->be = be;
		return b;
	}
	snprintf(err, errlen, "unknown SASL type \"%s\" (passwd-file or dovecot)", type);
	return NULL;
}

void auth_backend_free(struct auth_backend **bp)
{
	struct auth_backend *b = *bp;

	if (!b)
		return;
	*bp = NULL;
	b->ops->close(b->be);
	free(b);
}

const char *auth_backend_name(const struct auth_backend *b)
{
	return b->ops->name;
}

void auth_verify(struct auth_backend *b, const struct auth_request *req, auth_done_fn *done,
		 void *arg)
{
	b->ops->verify(b->be, req, done, arg);
}

void auth_cancel(struct auth_backend *b, void *arg)
{
	b->ops->cancel(b->be, arg);
}
