/*
 * qstore - the queue store: where accepted messages live until delivered.
 *
 * One interface, backends chosen by name (struct qstore_ops): "spool" (a
 * directory, the default) and "ram" (tests).  Callers: smtpserver (create,
 * append, commit), router (read, append route records), scheduler (read,
 * append results, remove), reinject (scan), tools (read, hold).  Business
 * logic never sees files, so a database backend can replace the spool
 * (seed 003).
 *
 * A message is immutable once committed: envelope (proto/qfile.proto
 * Envelope) plus RFC 5322 content.  Routing and delivery state goes into
 * the message's control record, an append-only list of CtlRecords.
 *
 * Spool layout under the queue directory (one file, one inode per message):
 *   slot/RRR/NN       new messages: a slot file named by the last five
 *                     characters of the ID (qid.h), overwritten in place
 *                     for every message it holds; header "ZSL1", the ID's
 *                     time (8 bytes) and M (4 bytes), or "ZSL0" when free
 *                     (qstore_spool.c, "Slots"); the M message bytes; the
 *                     control records, each framed with a CRC that covers
 *                     the ID's time, written after the last one that
 *                     checks: the file keeps its size, an older message's
 *                     bytes past the records are never read as records
 *   tmp/NAME          being received (or a crash leftover); moved to free/
 *                     at start by qstore_sweep()
 *   msg/XX/ID         committed messages; XX = last two characters of ID.
 *                     A 16-byte spool header ("ZSP1", a tag of ID, the
 *                     message length M, 8 bytes big endian; 0 while being
 *                     received), the M message bytes, then the control
 *                     records, appended (fdatasync'ed unless lazy)
 *   free/NAME         files of removed messages (emptied if big), reused
 *                     by the next create: on ext4 without a journal a new inode near
 *                     many freed ones is expensive, a recycled one is not
 *   corrupt/ID        quarantined, never read again automatically
 * A ctl/ directory left by older versions is ignored.
 *
 * Durability (spool, slot): qstore_commit() sets the slot header and
 * fdatasyncs the slot file (a new one: also its range where the file
 * system's fsync does not cover a new name); only then does it return 0.
 * On ext4 (not data=journal, not dax), when the message lies inside the
 * part of its slot file an earlier fdatasync made durable (blocks and
 * size: an overwrite in place that changes no metadata but the times),
 * the commit writes the data out and waits (sync_file_range) and flushes
 * the device's cache (fdatasync of the clean queue directory) instead:
 * the same data on disk, without the inode write ext4 without a journal
 * adds for the times (ZFARM_SPOOL_OVERWRITE=0 in the environment: always
 * the fdatasync).  Such a message may instead be group committed
 * (qstore_commit_begin, qstore_commit_group): the same write-out and
 * wait for each message of the group, then one flush after all of them.
 * Durability (spool, tmp/ way: no slot to be had, or ZFARM_SPOOL_SLOTS=0
 * in the environment): qstore_commit() writes the envelope and content to
 * tmp/, sets M, links it into msg/XX/ (exclusively: an existing ID is a
 * collision, the message gets a new ID), removes the tmp name and fsyncs
 * the file.  On ext4, xfs and tmpfs that fsync also makes the new name
 * durable (ext4 with a journal and xfs commit the link with the inode;
 * ext4 without one writes the directory block of a new name), so msg/XX/
 * is fsync'ed only when it grew since this process last synced it; on
 * other file systems (or with ZFARM_SPOOL_DIRSYNC=1 in the environment)
 * msg/XX/ is fsync'ed after every link.  Only then does it return 0: a
 * 250 may be given.
 * Any failure (ENOSPC, EIO) leaves nothing visible under msg/ and returns
 * -1 with a reason and the errno in *errnum so smtpserver can answer 452.
 * qstore_ctl_append() returns only after its record is fdatasync'ed;
 * qstore_ctl_append_lazy() leaves that to the next durable append to the
 * same message (fdatasync covers the whole file) or loses the records in
 * an OS crash, for records that can be written again (the router's
 * routes: a message without them is routed again).  An OS crash can
 * leave a torn or zero-filled tail after the last whole record (a lost
 * lazy append, a torn one): qstore_ctl_load() stops there, and the
 * reinjector cuts it off at start (qstore_ctl_repair) before anything
 * appends, so no record is ever appended behind such a tail and hidden.
 * qstore_remove() does not sync: a crash may bring a removed message back,
 * with its control records, so it is removed again, never redelivered.
 *
 * Threads: qstore_create, qstore_remove, qstore_sweep and qstore_scan of
 * one qstore must be called from one thread (the spool keeps its pool of
 * free files without locks); qstore_commit and qstore_abort of different
 * writers may run in parallel threads (smtpserver commits in workers).
 *
 * Library code: errors are returned with a reason, never logged.
 */
#ifndef ZFARM_QSTORE_H
#define ZFARM_QSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/qid.h"
#include "proto/qfile.pb-c.h"

struct qstore;
struct qstore_writer;
struct qstore_reader;

/*
 * qstore_open - open backend "spool" (dir: the queue directory, created
 * with its subdirectories if missing) or "ram" (dir ignored).  NULL with a
 * reason for an unknown backend or an unusable directory.
 */
struct qstore *qstore_open(const char *backend, const char *dir, char *err, size_t errlen);
void qstore_close(struct qstore **qs);
const char *qstore_backend(const struct qstore *qs);

/* qstore_free_bytes - free space for queue_minfree checks; -1 unknown. */
long long qstore_free_bytes(struct qstore *qs);

/* ---- receiving ---- */

/*
 * qstore_create - start a message with this envelope (queue_id and
 * arrival are filled in by commit).  NULL + reason (and *errnum).
 */
struct qstore_writer *qstore_create(struct qstore *qs, const Zfarm__Envelope *env,
				    int *errnum, char *err, size_t errlen);
/* qstore_append - content bytes; -1 + reason (disk full: *errnum ENOSPC). */
int qstore_append(struct qstore_writer *w, const void *data, size_t len, int *errnum,
		  char *err, size_t errlen);
/* qstore_writer_qid - the ID chosen at create (commit may change it on a collision). */
const char *qstore_writer_qid(const struct qstore_writer *w);
/* qstore_size - content bytes appended so far. */
uint64_t qstore_size(const struct qstore_writer *w);
/*
 * qstore_commit - make the message durable; qid gets its ID.  The writer
 * is freed whatever the result.  0, or -1 + reason with nothing visible.
 */
int qstore_commit(struct qstore_writer **w, char qid[QID_SIZE], int *errnum, char *err,
		  size_t errlen);
/*
 * Group commit: messages made durable together, sharing one flush of
 * the device's cache (the smtpserver's committer: its event loop begins,
 * one worker commits whatever was begun meanwhile as a group).
 *
 * qstore_commit_begin - after w's last byte, in the thread that wrote
 * it, no I/O: 1 if w can be committed by qstore_commit_group (the spool:
 * a slot overwritten inside what an earlier fdatasync of its file made
 * durable, on ext4), 0 if it needs qstore_commit.
 */
int qstore_commit_begin(struct qstore_writer *w);

/* One message of a group commit. */
struct qstore_commit {
	struct qstore_writer *w; /* begun; freed by qstore_commit_group */
	struct qstore_commit *next;
	int rc;			 /* 0: committed as qid; -1: errnum, reason */
	int errnum;
	char qid[QID_SIZE];
	char reason[256];
};

/*
 * qstore_commit_group - commit the list (begun writers of one store):
 * each message's write-out is started, then each is waited for, then
 * one flush, as qstore_commit would for each alone.  Every writer is
 * freed; each item's rc says what became of it.
 */
void qstore_commit_group(struct qstore_commit *list);
/* qstore_abort - drop a message being received; accepts NULL. */
void qstore_abort(struct qstore_writer **w);

/* ---- reading ---- */

/*
 * qstore_read - open a committed message.  NULL + reason (ENOENT: gone;
 * EBADMSG: damaged, quarantine it).  The stored envelope must be this
 * message's (its queue ID, or after a commit collision the ID first tried
 * by the same process): a file reused for another message is refused.
 * The spool opens the file once and reads its first 16 KiB with one read:
 * header and envelope, and for a small message also the content and the
 * control records that qstore_content and qstore_reader_ctl_load then
 * take from memory.
 */
struct qstore_reader *qstore_read(struct qstore *qs, const char *qid, int *errnum, char *err,
				  size_t errlen);
/*
 * qstore_read_flags - qstore_read() with flags.  QSTORE_APPEND: the reader
 * may append control records too (qstore_reader_ctl_append_lazy), so a
 * caller that reads a message, its records and then appends (the router)
 * opens it once.
 */
#define QSTORE_APPEND 0x1u /* the reader may append control records */
/* The largest control record (packed); a longer one is refused, or damage. */
#define QSTORE_MAX_RECORD (1024 * 1024)
struct qstore_reader *qstore_read_flags(struct qstore *qs, const char *qid, unsigned flags,
					int *errnum, char *err, size_t errlen);
const Zfarm__Envelope *qstore_envelope(const struct qstore_reader *r);
/* qstore_content - read up to len content bytes; 0 at end, -1 + reason. */
ssize_t qstore_content(struct qstore_reader *r, void *buf, size_t len, char *err,
		       size_t errlen);
/* qstore_rewind - back to the start of the content. */
int qstore_rewind(struct qstore_reader *r);
void qstore_reader_free(struct qstore_reader **r);

/* ---- control records ---- */

/* qstore_ctl_append - append records durably (one fsync for all n). */
int qstore_ctl_append(struct qstore *qs, const char *qid, Zfarm__CtlRecord *const *recs,
		      size_t n, char *err, size_t errlen);
/*
 * qstore_ctl_append_lazy - append records without waiting for the disk:
 * durable with the message's next durable append, else lost in an OS
 * crash (never torn into the records after them).  For records a crash
 * may lose because they are made again (routes).
 */
int qstore_ctl_append_lazy(struct qstore *qs, const char *qid, Zfarm__CtlRecord *const *recs,
			   size_t n, char *err, size_t errlen);
/*
 * qstore_ctl_valid_len - how many leading bytes of a control area are
 * whole records; the rest is a torn or zero-filled tail (for backends:
 * qstore_ctl_load() stops there, appends cut it off).
 */
size_t qstore_ctl_valid_len(const uint8_t *data, size_t len);
/*
 * qstore_ctl_repair - cut a crash's tail off qid's control record: 1 if
 * one was cut, 0 if there was none, -1 + reason.  Only while nothing else
 * appends to the message (the reinjector at start).
 */
int qstore_ctl_repair(struct qstore *qs, const char *qid, char *err, size_t errlen);
/*
 * qstore_ctl_pack - the bytes qstore_ctl_append would add for recs (a
 * malloc'ed buffer, NULL/0 for none), and qstore_ctl_append_packed -
 * append such bytes durably later: for a caller that collects records
 * and may drop them (the scheduler: results of a message it removes
 * right after are never written).
 */
int qstore_ctl_pack(Zfarm__CtlRecord *const *recs, size_t n, uint8_t **data, size_t *len,
		    char *err, size_t errlen);
int qstore_ctl_append_packed(struct qstore *qs, const char *qid, const uint8_t *data, size_t len,
			     char *err, size_t errlen);
/*
 * qstore_ctl_load - every record of qid's control record, in order, into a
 * malloc'ed array the caller frees with qstore_ctl_free().  No control
 * record yet: 0 with *n = 0.  A torn last record is ignored; a record
 * that does not decode in the middle is an error (quarantine it).
 */
int qstore_ctl_load(struct qstore *qs, const char *qid, Zfarm__CtlRecord ***recs, size_t *n,
		    char *err, size_t errlen);
void qstore_ctl_free(Zfarm__CtlRecord ***recs, size_t n);
/*
 * qstore_reader_ctl_load - qstore_ctl_load() of the reader's message
 * through the reader: no second open, and a small message's records come
 * from the read that opened it.  The records are those there at the open
 * plus the ones appended through this reader; some may also show what
 * others appended since: the ram backend (its readers do not hold files)
 * and a slot's reader that appended or whose file is bigger than its
 * first read (it reads the records again).
 */
int qstore_reader_ctl_load(struct qstore_reader *r, Zfarm__CtlRecord ***recs, size_t *n,
			   char *err, size_t errlen);
/*
 * qstore_reader_ctl_append_lazy - qstore_ctl_append_lazy() through a
 * reader opened with QSTORE_APPEND (-1 + reason without it).  The reader
 * holds the file open since qstore_read_flags checked it was this
 * message, so the safety rule of qstore_remove applies for the whole time
 * in between, not just during the append.
 */
int qstore_reader_ctl_append_lazy(struct qstore_reader *r, Zfarm__CtlRecord *const *recs,
				  size_t n, char *err, size_t errlen);

/* ---- queue management ---- */

/*
 * qstore_remove - the message and its control record go.  -1 with errno
 * ENOENT if there is no such message.
 *
 * Safety rule: the spool recycles a removed message's file (inode) for a
 * later message, so a reader or ctl appender still holding the removed
 * message open could see (or write into) another message's bytes; it does
 * not keep its old content the way an unlinked file would.  Therefore the
 * scheduler, the one owner of queue state, removes a message only when no
 * delivery is reading it and no other process appends to it.  Readers
 * check the envelope's queue ID against the name (qstore_read), which
 * catches a reuse before the envelope was read, not one after.
 */
int qstore_remove(struct qstore *qs, const char *qid, char *err, size_t errlen);
/*
 * qstore_quarantine - move message and control record (one file) to
 * corrupt/ (a slot's file is copied there and the slot freed: an append
 * through a reader opened before then fails with ENOENT).
 */
int qstore_quarantine(struct qstore *qs, const char *qid, char *err, size_t errlen);
/*
 * qstore_scan - call fn for every committed queue ID, oldest first (IDs
 * sort by time); a non-zero return stops.  For the reinjector and tools,
 * never on the per-message path.  Entries that are not queue IDs are
 * passed to bad_fn (may be NULL) with their path for quarantine/logging.
 */
int qstore_scan(struct qstore *qs, int (*fn)(const char *qid, void *arg),
		void (*bad_fn)(const char *name, void *arg), void *arg, char *err,
		size_t errlen);
/*
 * qstore_sweep - clear leftovers in tmp/ (start-up only, no writer may be
 * live); count handled.  Spool: they are emptied into free/ (a twin of a
 * committed message is only unlinked), then free/ is trimmed to 4096.
 */
int qstore_sweep(struct qstore *qs, char *err, size_t errlen);
/*
 * qstore_trim - give back the space of files kept for reuse beyond what
 * the next creates need (spool: free/ trimmed to 4096 files, removed
 * small files keep their blocks there; in the slot ranges no process
 * holds, the free slots past a range's first 32 are unlinked).  Safe
 * while the MTA runs (the reinjector's rerun); files removed, or -1 +
 * reason.
 */
int qstore_trim(struct qstore *qs, char *err, size_t errlen);
/*
 * qstore_commit_mode - how commit makes a message durable, for a log line
 * at start: "file fsync" (its name included, see Durability) or "file and
 * directory fsync"; the ram backend says "none".
 */
const char *qstore_commit_mode(struct qstore *qs);
/*
 * qstore_overwrite_commits - commits this process made durable as an
 * overwrite in place (the data written out and the device's cache
 * flushed, see Durability) instead of the file's fdatasync; for tests.
 */
unsigned long long qstore_overwrite_commits(struct qstore *qs);

/* ---- backends ---- */

struct qstore_ops {
	const char *name;
	void *(*open)(const char *dir, char *err, size_t errlen);
	void (*close)(void *be);
	long long (*free_bytes)(void *be);
	/* create: qid is empty; the backend may set the ID, else qstore makes one (qid_generate). */
	void *(*create)(void *be, char qid[QID_SIZE], int *errnum, char *err, size_t errlen);
	int (*write)(void *wr, const void *data, size_t len, int *errnum, char *err,
		     size_t errlen);
	int (*commit)(void *wr, const char *qid, int *errnum, char *err, size_t errlen);
	void (*abort)(void *wr);
	/*
	 * Group commit (qstore_commit_group); NULL: none.  begin: 1 if wr
	 * can be group committed (no I/O); write, wait and end free the
	 * writer when they fail.
	 */
	int (*commit_begin)(void *wr, const char *qid);
	int (*commit_write)(void *wr, const char *qid, int *errnum, char *err, size_t errlen);
	int (*commit_wait)(void *wr, int *errnum, char *err, size_t errlen);
	int (*flush)(void *be, int *errnum, char *err, size_t errlen);
	int (*commit_end)(void *wr, int flush_errnum, int *errnum, char *err, size_t errlen);
	/* read: flags as for qstore_read_flags (QSTORE_APPEND: rd_ctl_append may follow). */
	void *(*read)(void *be, const char *qid, unsigned flags, int *errnum, char *err,
		      size_t errlen);
	ssize_t (*pread)(void *rd, void *buf, size_t len, uint64_t off, char *err, size_t errlen);
	void (*read_close)(void *rd);
	/*
	 * rd_ctl_read, rd_ctl_append: ctl_read and ctl_append of the reader's
	 * message, through the reader.  NULL: the generic layer calls
	 * ctl_read / ctl_append with the reader's ID instead.
	 */
	int (*rd_ctl_read)(void *rd, uint8_t **data, size_t *len, char *err, size_t errlen);
	int (*rd_ctl_append)(void *rd, const void *data, size_t len, bool sync, char *err,
			     size_t errlen);
	int (*ctl_append)(void *be, const char *qid, const void *data, size_t len, bool sync,
			  char *err, size_t errlen);
	/* ctl_append: ENOENT (errno) if the message does not exist; !sync: no fdatasync. */
	/* ctl_truncate: keep the first ctl_len bytes of the control record. */
	int (*ctl_truncate)(void *be, const char *qid, size_t ctl_len, char *err, size_t errlen);
	/* ctl_read: the whole control record, malloc'ed; ENOENT-free (0 bytes). */
	int (*ctl_read)(void *be, const char *qid, uint8_t **data, size_t *len, char *err,
			size_t errlen);
	int (*remove)(void *be, const char *qid, char *err, size_t errlen);
	int (*quarantine)(void *be, const char *qid, char *err, size_t errlen);
	int (*scan)(void *be, int (*fn)(const char *qid, void *arg),
		    void (*bad_fn)(const char *name, void *arg), void *arg, char *err,
		    size_t errlen);
	int (*sweep)(void *be, char *err, size_t errlen);
	int (*trim)(void *be, char *err, size_t errlen); /* NULL: nothing kept */
	const char *(*commit_mode)(void *be);		 /* NULL: "none" */
	unsigned long long (*overwrite_commits)(void *be); /* NULL: 0 */
};

#endif
