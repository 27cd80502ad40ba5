/*
 * local - the local transport farm: DeliveryRequests of channel "local"
 * in, messages in mailboxes (Maildir or mbox), files and commands out.
 *
 * Runs on the transport skeleton (transport.h) and is synchronous: each
 * delivery is finished, results and all, before deliver() returns.  The
 * farm runs with client_limit 1 and several processes, like Postfix
 * local(8); blocking on a disk or a lock costs one process, not the farm.
 *
 * What the router gives (router/route.h): per recipient either a local
 * user (user = "alice", address = "alice+ext@domain") or, from an alias,
 * "|command" or "/file" as the address with user "" (the router only
 * makes those when allow_mail_to_commands / allow_mail_to_files say so,
 * so they are trusted here).  Every recipient gets its own copy, with its
 * own Delivered-To (user+a and user+b: two copies), and its own result.
 *
 * Per recipient, in order:
 *   1. Delivered-To loop: the header the copy would get (the address,
 *      lower-cased; for files and commands the original recipient) is
 *      already in the message's header → 5.4.6 "mail forwarding loop".
 *   2. Whose mail it is (local users):
 *        - in passwd: uid 0 → 5.7.1 "mail for root is not delivered;
 *          alias root to a user"; else delivered as that user (when root);
 *        - else in local_recipient_maps: a virtual user, no home;
 *        - else 5.1.1 "unknown user".
 *   3. Where: mail_directory set (default $run_directory/mail):
 *      mail_directory/USER/home_mailbox (home_mailbox "": the file
 *      mail_directory/USER is an mbox); mail_directory empty: the passwd
 *      home + "/" + home_mailbox, or with home_mailbox empty the mbox
 *      mail_spool_directory/USER.  A trailing "/" means Maildir
 *      (maildir.h), anything else an mbox file (mbox.h).
 *   4. Missing directories are made: mail_directory itself by the
 *      transport's own identity (mode 0711 when root, else 0700),
 *      mail_directory/USER by it too and, when root, given to the
 *      delivering identity before it is renamed into place (0700; no
 *      concurrent delivery sees it owned by root), everything below (Maildir/, tmp new cur, the
 *      parents of an mbox) by the delivering identity (0700).  The spool
 *      directory is not made; mbox files created there are given to the
 *      user (the spool is written as root, like Postfix, since /var/mail
 *      is usually writable only by root or group mail).
 *   5. The copy: "Return-Path: <sender>" and "Delivered-To: ADDRESS"
 *      on top, LF line ends; mbox adds the From_ line and mboxrd quoting.
 *      Streamed from the queue in 64 KB steps, never held whole.
 *
 * Identity (decision).  The transport's own identity is its effective
 * uid/gid at start ("self").
 *   - Not root: everything is delivered as self (nothing else is
 *     possible); local_virtual_owner is ignored.  Permissions decide.
 *   - Root: a passwd user's mail is written with that user's identity:
 *     seteuid/setegid/setgroups (the user's groups) around the delivery
 *     and back to root afterwards, in this process (no fork: the local
 *     farm runs one delivery per process, Postfix local does the same);
 *     failing to get root back ends the process (log_fatal).
 *     Virtual users' mail is written as local_virtual_owner (a passwd
 *     user, not root) or, when that is empty (the default), as self.
 *     Writing virtual mailboxes as root is safe enough: they live under
 *     mail_directory, a tree the transport made and no user can write,
 *     and it lets a default config with virtual users (alice, bob) work
 *     the same as root and not.  A local_virtual_owner that does not exist
 *     or is root is 4.3.5 (a config problem, retried).
 *   - "/file" and "|command" targets are written/run as
 *     local_virtual_owner (Postfix uses default_privs, the same idea);
 *     never as root: when root and local_virtual_owner is empty they are
 *     refused with 4.3.5 "local_virtual_owner is not set".  Not root:
 *     as self.
 *   - Root as a target user (passwd uid 0) is always refused, root or not.
 *
 * Files ("/path"): appended in mbox form with the same locks; the file
 * must exist or its directory be writable; "/dev/null" is accepted and
 * nothing written.  Commands ("|cmd"): /bin/sh -c cmd through
 * transport/command.h, stdin the copy (LF, no From_ line), environment
 * SENDER RECIPIENT USER EXTENSION HOME LOGNAME SHELL PATH, time limit
 * local_command_time_limit; exit 0 delivered, 75 (EX_TEMPFAIL) and
 * death by a signal deferred 4.3.0, any other status, an exec failure or
 * the time limit 5.3.0 (the pipe transport maps the whole sysexits list).
 *
 * Results: delivered 2.0.0 ("delivered to maildir" / "mailbox" / "file" /
 * "command: ..."); ENOSPC, EDQUOT, EFBIG 4.2.2 "mailbox full"; a lock
 * not had within local_lock_time_limit 4.2.0 "mailbox is locked"; an
 * mbox that is a symbolic link, not a regular file or hard-linked 5.2.0
 * (as Postfix's mbox_open: the default 5.2.0); other errors 4.3.0 with
 * the reason.  One log line per recipient:
 *   "QID: to=<a>, orig_to=<b>, relay=local, delay=1.2, dsn=2.0.0,
 *    status=sent (delivered to maildir)"
 *
 * Parameters: queue_directory, queue_store, myhostname, mail_directory,
 * home_mailbox, mail_spool_directory, local_recipient_maps,
 * local_virtual_owner, local_command_time_limit (1000s),
 * local_lock_time_limit (20s).  See local(8).
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/farm_server.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/qstore.h"
#include "common/table.h"
#include "common/xalloc.h"
#include "transport/body.h"
#include "transport/command.h"
#include "transport/maildir.h"
#include "transport/mbox.h"
#include "transport/transport.h"

/* Bytes read from the queue per fill step. */
#define FEED_STEP (64 * 1024)
/* Longest user name taken into a path. */
#define USER_MAX 255

struct local {
	struct qstore *qs;
	struct table *rcpt_maps; /* NULL: no virtual users */
	char *myhostname;
	char *mail_directory; /* "" : home directories */
	char *home_mailbox;   /* "" : spool mbox */
	char *mail_spool_directory;
	char *virtual_owner; /* "" : self */
	unsigned command_ms;
	unsigned lock_ms;
	bool root;
	uid_t self_uid;
	gid_t self_gid;
	gid_t *self_groups;
	int n_self_groups;
};

static struct local lc;

/* Who a copy is written as. */
struct ident {
	bool other; /* not self: switch (root only) */
	uid_t uid;
	gid_t gid;
	char name[USER_MAX + 1];
	char home[4096]; /* "" : none */
};

/* What became of one recipient. */
struct verdict {
	Zfarm__Status st;
	char code[16];
	char text[800];
};

static void verdict(struct verdict *v, Zfarm__Status st, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void verdict(struct verdict *v, Zfarm__Status st, const char *code, const char *fmt, ...)
{
	va_list ap;

	v->st = st;
	snprintf(v->code, sizeof(v->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(v->text, sizeof(v->text), fmt, ap);
	va_end(ap);
}

/* verdict_errno - a failed mailbox/file write, by its errno (mbox: EPERM is the file's fault). */
static void verdict_errno(struct verdict *v, int errnum, bool mbox, const char *reason)
{
	if (errnum == ENOSPC || errnum == EDQUOT || errnum == EFBIG)
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.2.2", "mailbox full: %s", reason);
	else if (mbox && errnum == EAGAIN)
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.2.0", "%s", reason);
	else if (mbox && errnum == EPERM)
		verdict(v, ZFARM__STATUS__PERMFAIL, "5.2.0", "%s", reason);
	else
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "%s", reason);
}

/* ---- identity ---- */

/* pw_find - 1 found (into id), 0 no such user, -1 lookup error. */
static int pw_find(const char *name, struct ident *id, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[16384];
	int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);

	if (rc == 0 && !res)
		return 0;
	if (rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM)
		return 0;
	if (rc != 0) {
		snprintf(err, errlen, "cannot look up user \"%s\": %s", name, strerror(rc));
		return -1;
	}
	id->uid = pw.pw_uid;
	id->gid = pw.pw_gid;
	snprintf(id->name, sizeof(id->name), "%s", pw.pw_name);
	snprintf(id->home, sizeof(id->home), "%s", pw.pw_dir ? pw.pw_dir : "");
	return 1;
}

static void ident_self(struct ident *id)
{
	struct passwd pw, *res = NULL;
	char buf[16384];

	memset(id, 0, sizeof(*id));
	id->uid = lc.self_uid;
	id->gid = lc.self_gid;
	if (getpwuid_r(lc.self_uid, &pw, buf, sizeof(buf), &res) == 0 && res) {
		snprintf(id->name, sizeof(id->name), "%s", pw.pw_name);
		snprintf(id->home, sizeof(id->home), "%s", pw.pw_dir ? pw.pw_dir : "");
	}
}

/*
 * owner_ident - whom virtual mail, files and commands belong to (see the
 * header).  for_exec: files and commands, never as root.  0, or -1 with
 * *v set.
 */
static int owner_ident(struct ident *id, bool for_exec, struct verdict *v)
{
	char err[300];
	int rc;

	if (!lc.root || !lc.virtual_owner[0]) {
		if (lc.root && for_exec) {
			verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.5",
				"local_virtual_owner is not set; files and commands are not "
				"delivered as root");
			return -1;
		}
		ident_self(id);
		return 0;
	}
	memset(id, 0, sizeof(*id));
	rc = pw_find(lc.virtual_owner, id, err, sizeof(err));
	if (rc < 0) {
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "%s", err);
		return -1;
	}
	if (rc == 0) {
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.5", "local_virtual_owner %s: no such user",
			lc.virtual_owner);
		return -1;
	}
	if (id->uid == 0) {
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.5",
			"local_virtual_owner must not be root");
		return -1;
	}
	id->other = id->uid != lc.self_uid;
	return 0;
}

/* ident_leave - back to root with our own groups; not possible: the process ends. */
static void ident_leave(void)
{
	if (seteuid(0) < 0 || setegid(lc.self_gid) < 0 ||
	    setgroups((size_t)lc.n_self_groups, lc.self_groups) < 0)
		log_fatal("cannot get the transport's own identity back: %s", strerror(errno));
}

/*
 * ident_enter - become id (effective ids and groups): 1 switched (call
 * ident_leave after), 0 nothing to do (not root, or id is self), -1 +
 * reason (still self).
 */
static int ident_enter(const struct ident *id, char *err, size_t errlen)
{
	gid_t *groups;
	int n = 32, e = 0;

	if (!lc.root || !id->other)
		return 0;
	groups = xcalloc((size_t)n, sizeof(*groups));
	if (getgrouplist(id->name, id->gid, groups, &n) < 0) {
		groups = xreallocarray(groups, (size_t)n, sizeof(*groups));
		if (getgrouplist(id->name, id->gid, groups, &n) < 0) {
			groups[0] = id->gid;
			n = 1;
		}
	}
	if (setgroups((size_t)n, groups) < 0 || setegid(id->gid) < 0 || seteuid(id->uid) < 0)
		e = errno;
	free(groups);
	if (e) {
		ident_leave();
		snprintf(err, errlen, "cannot become uid %lu: %s", (unsigned long)id->uid,
			 strerror(e));
		return -1;
	}
	return 1;
}

/* ---- the copy ---- */

/* One copy being written: headers on top, then the content in steps. */
struct feed {
	struct qstore_reader *rd;
	struct body_enc enc;
	const char *head;
	int stage; /* 0 head, 1 content, 2 done */
};

static int feed_fill(void *arg, struct evbuffer *out, char *err, size_t errlen)
{
	struct feed *f = arg;
	int rc;

	if (f->stage == 0) {
		if (evbuffer_add(out, f->head, strlen(f->head)) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		f->stage = 1;
		return 1;
	}
	if (f->stage == 2)
		return 0;
	rc = body_pump(f->rd, &f->enc, out, FEED_STEP, err, errlen);
	if (rc < 0)
		return -1;
	if (rc > 0)
		return 1;
	if (body_enc_finish(&f->enc, out) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	f->stage = 2;
	return 0;
}

/* feed_start - rewind and prepare a copy in this form with this head. */
static int feed_start(struct feed *f, struct qstore_reader *rd, enum body_form form,
		      const char *head, struct verdict *v)
{
	memset(f, 0, sizeof(*f));
	if (qstore_rewind(rd) < 0) {
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "cannot rewind the queue file");
		return -1;
	}
	f->rd = rd;
	body_enc_init(&f->enc, form);
	f->head = head;
	return 0;
}

static int feed_command(void *arg, struct evbuffer *out, char *err, size_t errlen)
{
	return feed_fill(arg, out, err, errlen);
}

/* clean - s with control characters as '?' (header and log safe), lower-cased if lower. */
static char *clean(const char *s, bool lower)
{
	char *o = xstrdup(s ? s : "");

	for (char *p = o; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
		else if (lower)
			*p = (char)tolower((unsigned char)*p);
	}
	return o;
}

/* head_text - "[From_ line]Return-Path: <s>\nDelivered-To: d\n" (d may be ""). */
static char *head_text(const char *sender, const char *dt, bool from_line)
{
	char from[1200] = "";
	char *s = clean(sender, false), *h;

	if (from_line)
		mbox_from_line(from, sizeof(from), sender, clock_now());
	if (dt[0])
		h = xasprintf("%sReturn-Path: <%s>\nDelivered-To: %s\n", from, s, dt);
	else
		h = xasprintf("%sReturn-Path: <%s>\n", from, s);
	free(s);
	return h;
}

/* ---- targets ---- */

/* user_ok - a name that can be a path component. */
static bool user_ok(const char *u)
{
	size_t n = strlen(u);

	if (n == 0 || n > USER_MAX || strcmp(u, ".") == 0 || strcmp(u, "..") == 0)
		return false;
	for (const char *p = u; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* mbox_write - lock, append, unlock (as the current identity). */
static void mbox_write(const char *path, uid_t uid, gid_t gid, struct feed *f, const char *done,
		       struct verdict *v)
{
	char err[700];
	int errnum = 0;
	uint64_t size = 0;
	struct mbox *m = mbox_open(path, uid, gid, lc.lock_ms, &errnum, err, sizeof(err));

	if (!m) {
		verdict_errno(v, errnum, true, err);
		return;
	}
	if (mbox_append(m, feed_fill, f, &size, &errnum, err, sizeof(err)) < 0)
		verdict_errno(v, errnum, true, err);
	else
		verdict(v, ZFARM__STATUS__OK, "2.0.0", "%s", done);
	mbox_close(&m);
}

/* dir_of - the directory part of path (new string). */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash || slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

/*
 * user_base - mail_directory/USER made (by self) and, when root, given to
 * id; 0 or -1 with *v.  As root the directory is made under a temporary
 * name, given away, then renamed into place, so a concurrent delivery
 * never sees it still owned by root (it would then fail as the user).
 */
static int user_base(const char *base, const struct ident *id, struct verdict *v)
{
	char err[600], *tmp;
	int errnum;
	struct stat st;

	if (maildir_mkpath(lc.mail_directory, lc.root ? 0711 : 0700, &errnum, err, sizeof(err)) <
	    0) {
		verdict_errno(v, errnum, false, err);
		return -1;
	}
	if (lstat(base, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "%s is not a directory", base);
			return -1;
		}
		return 0;
	}
	if (!lc.root || !id->other) {
		if (mkdir(base, 0700) < 0 && errno != EEXIST) {
			verdict_errno(v, errno, false, "");
			snprintf(v->text, sizeof(v->text), "cannot create %s: %s", base,
				 strerror(errno));
			return -1;
		}
		return 0;
	}
	tmp = xasprintf("%s.new.%ld", base, (long)getpid());
	rmdir(tmp); /* a leftover of an earlier process with this pid */
	if (mkdir(tmp, 0700) < 0 || lchown(tmp, id->uid, id->gid) < 0) {
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "cannot create %s for uid %lu: %s",
			base, (unsigned long)id->uid, strerror(errno));
		rmdir(tmp);
		free(tmp);
		return -1;
	}
	/* Another delivery may have won: its directory (with content) stays. */
	if (rename(tmp, base) < 0) {
		int e = errno;

		rmdir(tmp);
		if (e != EEXIST && e != ENOTEMPTY) {
			verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "cannot create %s: %s", base,
				strerror(e));
			free(tmp);
			return -1;
		}
	}
	free(tmp);
	return 0;
}

/* strip_slash - path without trailing '/' (new string; "/" stays). */
static char *strip_slash(const char *path)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	return xstrndup(path, n);
}

static void deliver_mailbox(const Zfarm__DeliveryRecipient *r, struct qstore_reader *rd,
			    const char *sender, const char *dt, struct verdict *v)
{
	struct ident id;
	struct feed f;
	char err[700], *path = NULL, *base = NULL, *head = NULL;
	bool maildir, as_user;
	int rc, errnum = 0, switched = 0;

	memset(&id, 0, sizeof(id));
	if (!user_ok(r->user)) {
		verdict(v, ZFARM__STATUS__PERMFAIL, "5.1.3", "bad local user name");
		return;
	}
	rc = pw_find(r->user, &id, err, sizeof(err));
	if (rc < 0) {
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "%s", err);
		return;
	}
	if (rc > 0) {
		if (id.uid == 0) {
			verdict(v, ZFARM__STATUS__PERMFAIL, "5.7.1",
				"mail for root is not delivered; alias root to a user");
			return;
		}
		if (lc.root) {
			id.other = id.uid != lc.self_uid;
		} else {
			char home[sizeof(id.home)];

			/* Not root: written as self, the mailbox is still the user's. */
			memcpy(home, id.home, sizeof(home));
			ident_self(&id);
			memcpy(id.home, home, sizeof(home));
		}
	} else if (lc.rcpt_maps && table_lookup(lc.rcpt_maps, r->user)) {
		if (owner_ident(&id, false, v) < 0)
			return;
		id.home[0] = '\0'; /* a virtual user has no home */
	} else {
		verdict(v, ZFARM__STATUS__PERMFAIL, "5.1.1", "unknown user: \"%s\"", r->user);
		return;
	}

	/* Where, and whether the copy is written as the user or as self (then given). */
	if (lc.mail_directory[0]) {
		base = xasprintf("%s/%s", lc.mail_directory, r->user);
		path =
		    lc.home_mailbox[0] ? xasprintf("%s/%s", base, lc.home_mailbox) : xstrdup(base);
		as_user = lc.home_mailbox[0] != '\0';
	} else if (lc.home_mailbox[0]) {
		if (!id.home[0]) {
			verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.5",
				"no home directory for \"%s\" and mail_directory is empty",
				r->user);
			return;
		}
		path = xasprintf("%s/%s", id.home, lc.home_mailbox);
		as_user = true;
	} else {
		path = xasprintf("%s/%s", lc.mail_spool_directory, r->user);
		as_user = false;
	}
	maildir = path[strlen(path) - 1] == '/';

	if (base && as_user && user_base(base, &id, v) < 0)
		goto out;
	if (base && !as_user &&
	    maildir_mkpath(lc.mail_directory, lc.root ? 0711 : 0700, &errnum, err, sizeof(err)) <
		0) {
		verdict_errno(v, errnum, false, err);
		goto out;
	}
	head = head_text(sender, dt, !maildir);
	if (feed_start(&f, rd, maildir ? BODY_LF : BODY_MBOX, head, v) < 0)
		goto out;
	if (as_user) {
		switched = ident_enter(&id, err, sizeof(err));
		if (switched < 0) {
			verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "%s", err);
			goto out;
		}
	}
	if (maildir) {
		char *dir = strip_slash(path);

		if (maildir_deliver(dir, lc.myhostname, feed_fill, &f, NULL, 0, NULL, &errnum, err,
				    sizeof(err)) < 0)
			verdict_errno(v, errnum, false, err);
		else
			verdict(v, ZFARM__STATUS__OK, "2.0.0", "delivered to maildir");
		free(dir);
	} else {
		char *dir = dir_of(path);
		bool give = lc.root && id.other && !as_user;

		if (as_user && maildir_mkpath(dir, 0700, &errnum, err, sizeof(err)) < 0)
			verdict_errno(v, errnum, false, err);
		else
			mbox_write(path, give ? id.uid : (uid_t)-1, give ? id.gid : (gid_t)-1, &f,
				   "delivered to mailbox", v);
		free(dir);
	}
	if (switched > 0)
		ident_leave();
out:
	free(head);
	free(path);
	free(base);
}

static void deliver_file(const Zfarm__DeliveryRecipient *r, struct qstore_reader *rd,
			 const char *sender, const char *dt, struct verdict *v)
{
	struct ident id;
	struct feed f;
	char err[300], *head;
	int switched;

	if (strcmp(r->address, "/dev/null") == 0) {
		verdict(v, ZFARM__STATUS__OK, "2.0.0", "delivered to file: /dev/null");
		return;
	}
	if (owner_ident(&id, true, v) < 0)
		return;
	head = head_text(sender, dt, true);
	if (feed_start(&f, rd, BODY_MBOX, head, v) < 0) {
		free(head);
		return;
	}
	switched = ident_enter(&id, err, sizeof(err));
	if (switched < 0) {
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "%s", err);
		free(head);
		return;
	}
	mbox_write(r->address, (uid_t)-1, (gid_t)-1, &f, "delivered to file", v);
	if (v->st == ZFARM__STATUS__OK)
		snprintf(v->text, sizeof(v->text), "delivered to file: %.700s", r->address);
	if (switched > 0)
		ident_leave();
	free(head);
}

/* first_line - the command's output for a reason: first line, sanitised, cut. */
static void first_line(char *out, size_t outlen, const char *s, size_t n)
{
	size_t k = 0;

	while (k < n && s[k] != '\n' && k < 300)
		k++;
	log_sanitize(out, outlen, s, k);
}

static void deliver_command(const Zfarm__DeliveryRecipient *r, struct qstore_reader *rd,
			    const char *sender, const char *dt, struct verdict *v)
{
	struct ident id;
	struct feed f;
	struct command_spec spec;
	struct command_result *res;
	const char *cmd = r->address + 1;
	char err[300], out[320], *head, *rcpt, *user, *ext = NULL, *at, *plus;
	char *env[9], *argv[4];

	while (*cmd == ' ' || *cmd == '\t')
		cmd++;
	if (!*cmd) {
		verdict(v, ZFARM__STATUS__PERMFAIL, "5.3.0", "empty command");
		return;
	}
	if (owner_ident(&id, true, v) < 0)
		return;
	/* RECIPIENT: the address the alias was for; USER and EXTENSION from it. */
	rcpt = clean(r->orig_address, false);
	user = xstrdup(rcpt);
	at = strrchr(user, '@');
	if (at)
		*at = '\0';
	plus = strchr(user, '+');
	if (plus) {
		*plus = '\0';
		ext = plus + 1;
	}
	{
		char *s = clean(sender, false);

		env[0] = xasprintf("SENDER=%s", s);
		free(s);
	}
	env[1] = xasprintf("RECIPIENT=%s", rcpt);
	env[2] = xasprintf("USER=%s", user);
	env[3] = xasprintf("EXTENSION=%s", ext ? ext : "");
	env[4] = xasprintf("HOME=%s", id.home[0] ? id.home : "/");
	env[5] = xasprintf("LOGNAME=%s", user);
	env[6] = xstrdup("SHELL=/bin/sh");
	env[7] = xstrdup("PATH=/usr/bin:/bin");
	env[8] = NULL;
	argv[0] = (char *)"/bin/sh";
	argv[1] = (char *)"-c";
	argv[2] = (char *)cmd;
	argv[3] = NULL;

	head = head_text(sender, dt, false);
	res = xcalloc(1, sizeof(*res));
	if (feed_start(&f, rd, BODY_LF, head, v) < 0)
		goto out;
	memset(&spec, 0, sizeof(spec));
	spec.argv = argv;
	spec.env = env;
	spec.cwd = NULL;
	spec.uid = lc.root && id.other ? id.uid : (uid_t)-1;
	spec.gid = lc.root && id.other ? id.gid : (gid_t)-1;
	spec.timeout_ms = lc.command_ms;
	spec.feed = feed_command;
	spec.feed_arg = &f;
	if (command_run(&spec, res, err, sizeof(err)) < 0) {
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "cannot run the command: %s", err);
		goto out;
	}
	first_line(out, sizeof(out), res->output, res->output_len);
	if (res->timed_out)
		verdict(v, ZFARM__STATUS__PERMFAIL, "5.3.0", "command time limit exceeded: %.300s",
			cmd);
	else if (!res->exited)
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "command died with signal %d%s%s",
			res->signal, out[0] ? ": " : "", out);
	else if (res->exit_status == 0)
		verdict(v, ZFARM__STATUS__OK, "2.0.0", "delivered to command: %.300s", cmd);
	else if (res->exit_status == 75)
		verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "command exited with status 75%s%s",
			out[0] ? ": " : "", out);
	else
		verdict(v, ZFARM__STATUS__PERMFAIL, "5.3.0", "command exited with status %d%s%s",
			res->exit_status, out[0] ? ": " : "", out);
out:
	free(res);
	free(head);
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(user);
	free(rcpt);
}

/* ---- one delivery ---- */

static const char *status_word(Zfarm__Status st)
{
	return st == ZFARM__STATUS__OK	       ? "sent"
	       : st == ZFARM__STATUS__PERMFAIL ? "bounced"
					       : "deferred";
}

static void deliver_one(const Zfarm__DeliveryRecipient *r, struct qstore_reader *rd,
			const char *sender, struct verdict *v)
{
	const char *addr = r->address ? r->address : "";
	const char *user = r->user ? r->user : "";
	bool special = !user[0] && (addr[0] == '|' || addr[0] == '/');
	char err[300], *dt;
	int rc;

	if (!user[0] && !special) {
		verdict(v, ZFARM__STATUS__PERMFAIL, "5.1.1", "no local user for this recipient");
		return;
	}
	/* Files and commands carry the address the alias was for. */
	dt = clean(special ? r->orig_address : addr, true);
	if (dt[0]) {
		rc = body_header_scan(rd, "Delivered-To", dt, 0, err, sizeof(err));
		if (rc < 0) {
			verdict(v, ZFARM__STATUS__TEMPFAIL, "4.3.0", "cannot read the message: %s",
				err);
			free(dt);
			return;
		}
		if (rc > 0) {
			verdict(v, ZFARM__STATUS__PERMFAIL, "5.4.6", "mail forwarding loop for %s",
				dt);
			free(dt);
			return;
		}
	}
	if (!special)
		deliver_mailbox(r, rd, sender, dt, v);
	else if (addr[0] == '/')
		deliver_file(r, rd, sender, dt, v);
	else
		deliver_command(r, rd, sender, dt, v);
	free(dt);
}

static void local_deliver(struct transport_job *job, const Zfarm__DeliveryRequest *rq)
{
	const char *qid = rq->ref->queue_id;
	const Zfarm__Envelope *env;
	struct qstore_reader *rd;
	struct verdict v;
	char err[512];
	int errnum = 0;
	double delay;

	rd = qstore_read(lc.qs, qid, &errnum, err, sizeof(err));
	if (!rd) {
		bool gone = errnum == ENOENT || errnum == EBADMSG;

		if (gone)
			verdict(&v, ZFARM__STATUS__PERMFAIL, "5.3.0", "%s",
				errnum == ENOENT ? "message is gone from the queue"
						 : "queue file is damaged");
		else
			verdict(&v, ZFARM__STATUS__TEMPFAIL, "4.3.0",
				"cannot read the queue file: %s", err);
		log_warn("%s: cannot deliver: %s", qid, v.text);
		for (size_t i = 0; i < rq->n_recipients; i++)
			transport_job_result(job, rq->recipients[i]->index, v.st, 0, v.code,
					     v.text);
		transport_job_done(job, "local", false);
		return;
	}
	env = qstore_envelope(rd);
	for (size_t i = 0; i < rq->n_recipients; i++) {
		const Zfarm__DeliveryRecipient *r = rq->recipients[i];
		const char *orig = r->orig_address ? r->orig_address : "";
		const char *addr = r->address ? r->address : "";

		memset(&v, 0, sizeof(v));
		deliver_one(r, rd, env->sender ? env->sender : "", &v);
		transport_job_result(job, r->index, v.st, 0, v.code, v.text);
		delay = (double)(clock_now_us() - env->arrival_us) / 1e6;
		if (delay < 0)
			delay = 0;
		if (orig[0] && strcmp(orig, addr) != 0)
			log_info("%s: to=<%s>, orig_to=<%s>, relay=local, delay=%.1f, dsn=%s, "
				 "status=%s (%s)",
				 qid, addr, orig, delay, v.code, status_word(v.st), v.text);
		else
			log_info("%s: to=<%s>, relay=local, delay=%.1f, dsn=%s, status=%s (%s)",
				 qid, addr, delay, v.code, status_word(v.st), v.text);
	}
	qstore_reader_free(&rd);
	transport_job_done(job, "local", false);
}

/* Deliveries finish inside deliver(): there is never a job to cancel. */
static void local_cancel(struct transport_job *job)
{
	(void)job;
}

/* ---- start and end ---- */

/* absolute - path made absolute against the current directory (new string). */
static char *absolute(const char *path)
{
	char cwd[4096];

	if (!path[0] || path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	return xasprintf("%s/%s", cwd, path);
}

static int local_init(struct farm_server *srv, char *err, size_t errlen)
{
	const struct config *cfg = farm_server_config(srv);
	const char *store, *qdir, *host, *mdir, *home, *spool, *maps, *owner;
	char rundir[4096], defq[4200], defm[4200];
	long long t;
	int n;

	if (farmd_run_directory(cfg, rundir, sizeof(rundir), err, errlen) < 0)
		return -1;
	snprintf(defq, sizeof(defq), "%s/queue", rundir);
	snprintf(defm, sizeof(defm), "%s/mail", rundir);
	if (config_get_string(cfg, NULL, NULL, "queue_store", "spool", &store, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "queue_directory", defq, &qdir, err, errlen) < 0)
		return -1;
	lc.qs = qstore_open(store, qdir, err, errlen);
	if (!lc.qs)
		return -1;
	if (config_get_string(cfg, NULL, NULL, "myhostname", "localhost", &host, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "mail_directory", defm, &mdir, err, errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "home_mailbox", "Maildir/", &home, err, errlen) <
		0 ||
	    config_get_string(cfg, NULL, NULL, "mail_spool_directory", "/var/mail", &spool, err,
			      errlen) < 0 ||
	    config_get_string(cfg, NULL, NULL, "local_recipient_maps", "", &maps, err, errlen) <
		0 ||
	    config_get_string(cfg, NULL, NULL, "local_virtual_owner", "", &owner, err, errlen) < 0)
		return -1;
	while (*home == '/')
		home++; /* relative to the mail directory or home */
	lc.myhostname = xstrdup(host[0] ? host : "localhost");
	lc.mail_directory = absolute(mdir);
	while (strlen(lc.mail_directory) > 1 &&
	       lc.mail_directory[strlen(lc.mail_directory) - 1] == '/')
		lc.mail_directory[strlen(lc.mail_directory) - 1] = '\0';
	lc.home_mailbox = xstrdup(home);
	lc.mail_spool_directory = absolute(spool);
	lc.virtual_owner = xstrdup(owner);
	while (*maps == ' ' || *maps == '\t')
		maps++;
	if (maps[0]) {
		lc.rcpt_maps = table_open(maps, err, errlen);
		if (!lc.rcpt_maps)
			return -1;
	}
	if (config_get_time(cfg, NULL, NULL, "local_command_time_limit", 1000, 1, 86400, &t, err,
			    errlen) < 0)
		return -1;
	lc.command_ms = (unsigned)t * 1000u;
	if (config_get_time(cfg, NULL, NULL, "local_lock_time_limit", 20, 0, 3600, &t, err,
			    errlen) < 0)
		return -1;
	lc.lock_ms = (unsigned)t * 1000u;

	lc.self_uid = geteuid();
	lc.self_gid = getegid();
	lc.root = lc.self_uid == 0;
	n = getgroups(0, NULL);
	if (n < 0) {
		snprintf(err, errlen, "getgroups: %s", strerror(errno));
		return -1;
	}
	lc.self_groups = xcalloc((size_t)n + 1, sizeof(gid_t));
	lc.n_self_groups = getgroups(n, lc.self_groups);
	if (lc.n_self_groups < 0) {
		snprintf(err, errlen, "getgroups: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void local_fini(struct farm_server *srv)
{
	(void)srv;
	qstore_close(&lc.qs);
	table_free(&lc.rcpt_maps);
	free(lc.myhostname);
	free(lc.mail_directory);
	free(lc.home_mailbox);
	free(lc.mail_spool_directory);
	free(lc.virtual_owner);
	free(lc.self_groups);
	memset(&lc, 0, sizeof(lc));
}

static const struct transport_ops local_ops = {
    .name = "local",
    .init = local_init,
    .deliver = local_deliver,
    .cancel = local_cancel,
    .fini = local_fini,
};

int main(int argc, char **argv)
{
	return transport_main(argc, argv, &local_ops);
}
