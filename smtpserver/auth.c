/*
 * auth - see auth.h.  The backend table, and the passwd-file backend:
 *
 * Checks go from the loop to one worker thread through `todo` (mutex +
 * condition variable) and back through `done` (mutex + eventfd that wakes
 * the loop), as in committer.c.  The worker owns the parsed file (it
 * reads it again when it changed) and never touches libevent; what it
 * has to say (a bad file) travels back with the job and is logged by the
 * loop.  One thread: checks of one process run one at a time, so a
 * client that tries many passwords slows the others of its process by a
 * hash each, not the event loop.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
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
	struct pw_job *next;
	char *user, *pass;
	auth_done_fn *done;
	void *arg; /* NULL: cancelled */
	enum auth_result result;
	char warning[512];
};

struct pw_jobq {
	struct pw_job *head, *tail;
};

struct pw_backend {
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pw_jobq todo, done; /* under lock */
	struct pw_job *running;	   /* under lock */
	bool stopping;		   /* under lock */
	char *path;
	struct passwd_file *pf;	   /* the worker's; NULL while the file does not load */
	char last_error[400];	   /* the worker's: said once */
	int efd;
	struct event *ev;
};

static void pw_jobq_push(struct pw_jobq *q, struct pw_job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

static struct pw_job *pw_jobq_pop(struct pw_jobq *q)
{
	struct pw_job *j = q->head;

	if (j) {
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
	}
	return j;
}

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

static void pw_job_run(struct pw_backend *p, struct pw_job *j)
{
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

static void *pw_worker(void *arg)
{
	struct pw_backend *p = arg;
	struct pw_job *j;
	uint64_t one = 1;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->todo.head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stopping)
			break;
		j = pw_jobq_pop(&p->todo);
		p->running = j;
		pthread_mutex_unlock(&p->lock);
		pw_job_run(p, j);
		pthread_mutex_lock(&p->lock);
		p->running = NULL;
		pw_jobq_push(&p->done, j);
		if (write(p->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			abort();
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void pw_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct pw_backend *p = arg;
	struct pw_jobq q;
	struct pw_job *j;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		abort();
	pthread_mutex_lock(&p->lock);
	q = p->done;
	p->done.head = p->done.tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while ((j = pw_jobq_pop(&q))) {
		if (j->warning[0])
			log_warn("%s", j->warning);
		if (j->arg)
			j->done(j->arg, j->result, j->user,
				j->result == AUTH_TEMPFAIL ? "the password file does not load" : "");
		pw_job_free(j);
	}
}

static void pw_close(void *be)
{
	struct pw_backend *p = be;
	struct pw_job *j;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->started)
		pthread_join(p->thread, NULL);
	while ((j = pw_jobq_pop(&p->todo)))
		pw_job_free(j);
	while ((j = pw_jobq_pop(&p->done)))
		pw_job_free(j);
	if (p->ev)
		event_free(p->ev);
	if (p->efd >= 0)
		close(p->efd);
	passwd_file_free(&p->pf);
	free(p->path);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static void *pw_open(struct event_base *base, const char *path, char *err, size_t errlen)
{
	struct pw_backend *p = xcalloc(1, sizeof(*p));
	int e;

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->efd = -1;
	if (!path || !path[0]) {
		snprintf(err, errlen, "no password file (smtpd_sasl_path)");
		goto fail;
	}
	p->path = xstrdup(path);
	p->pf = passwd_file_load(path, p->last_error, sizeof(p->last_error));
	if (!p->pf)
		log_error("%s; AUTH answers 454 until it loads", p->last_error);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, pw_on_done, p);
	if (!p->ev || event_add(p->ev, NULL) < 0) {
		snprintf(err, errlen, "cannot add the password checker's event");
		goto fail;
	}
	e = pthread_create(&p->thread, NULL, pw_worker, p);
	if (e != 0) {
		snprintf(err, errlen, "pthread_create: %s", strerror(e));
		goto fail;
	}
	p->started = true;
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
	pthread_mutex_lock(&p->lock);
	pw_jobq_push(&p->todo, j);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void pw_cancel(void *be, void *arg)
{
	struct pw_backend *p = be;

	pthread_mutex_lock(&p->lock);
	for (struct pw_job *j = p->todo.head; j; j = j->next)
		if (j->arg == arg)
			j->arg = NULL;
	if (p->running && p->running->arg == arg)
		p->running->arg = NULL;
	for (struct pw_job *j = p->done.head; j; j = j->next)
		if (j->arg == arg)
			j->arg = NULL;
	pthread_mutex_unlock(&p->lock);
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
