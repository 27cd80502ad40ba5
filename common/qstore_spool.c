/*
 * qstore_spool - the spool-directory queue store backend ("spool").
 *
 * Layout and durability as in qstore.h.  All names are opened relative to
 * a descriptor of the queue directory (openat and friends), so the spool
 * keeps working if its path is renamed and paths never need building from
 * untrusted parts: every name here is a fixed word, a valid queue ID, a
 * name this module made up (tmp/PID.MS.SEQ) or one read back from free/.
 *
 * One file, one inode per message: msg/XX/ID holds a 16-byte spool header
 * ("ZSP1", a 4-byte tag of the queue ID, the message length M as 8 bytes
 * big endian), the M message bytes qstore.c wrote, then the control records,
 * appended.  M is 0 while the message is received and set by commit.
 *
 * Why inodes are recycled through free/: on ext4 without a journal,
 * creating a file near many recently deleted inodes costs ~1 ms of system
 * CPU (the allocator skips them one by one).  An MTA deletes one file per
 * message, so instead remove() parks the file in free/ and create() takes
 * it back with a rename: the steady state allocates and frees no inodes.
 * Processes sharing free/ claim names of their own slice of it first and
 * read it afresh when names they hold turn out taken (spool_pool_refill).
 * A small file is parked with its bytes and blocks (create overwrites
 * them and cuts the rest at commit: freeing blocks costs a device discard
 * on file systems mounted with it, ~30% of the scheduler's time); a file
 * over SPOOL_KEEP_BYTES is emptied first, so big messages give their
 * space back at once; free/ is trimmed to SPOOL_FREE_MAX files by the
 * sweep at start and by qstore_trim (the reinjector's rerun, every few
 * minutes), so a burst's files do not keep their space for long.  Every
 * pooled inode has exactly one name and is only ever truncated by
 * whoever holds it under a private name (tmp/...):
 * a truncate after it is back in free/ could hit another process that has
 * claimed it already.  The spool header carries a tag of the queue ID, so
 * a reader that outlives a removal notices the inode became another
 * message (the end of the content is only reported after that check).
 *
 * Slots (the default for new messages): slot/RRR/NN, a file whose name
 * is the last five characters of the queue ID (qid.h: QID_SLOT_FLAG, the
 * range RRR, the slot NN), so a message needs no directory change at all:
 * create claims a free slot and overwrites it in place, commit writes the
 * slot header ("ZSL1", the ID's time as 8 bytes and M as 4, big endian)
 * and fdatasyncs (no new name, and no new size when the file was as big
 * already: what an older message left past the new one stays, see
 * "Control records in a slot"; so the data only, where the file system
 * does not write the inode for its times: two or three device writes less
 * than the link into msg/XX, bench/commit_cost; on ext4 a message inside
 * what an earlier fdatasync of the file made durable is written out and
 * the device's cache flushed instead, which skips the inode write ext4
 * without a journal makes whenever the times moved: spool_slot_sync),
 * remove writes a free header ("ZSL0"; a big one is emptied instead).  Slots are looked up from the ID,
 * and the header's time must be the ID's: a slot free, being received or
 * holding a later message is ENOENT for the old ID.  A range (slot/RRR,
 * SPOOL_SLOTS slots) belongs to one process at a time, by flock of its
 * directory, released however the process ends; only the holder creates
 * in it, so a slot it finds free stays free, and its own writers' slots
 * are marked busy in memory.  A claim looks at SPOOL_PROBES slots from
 * the range's cursor, which goes round a window that doubles when they
 * were all taken (so a process reuses few files, each kept with its
 * blocks), then at the next range held, then holds one more (at most
 * SPOOL_RANGES_MAX); with none to be had, create takes the tmp/ way
 * below.  A process killed while receiving leaves a free header: nothing
 * to sweep.  A burst's files stay while their range is held; qstore_trim
 * (and the sweep) unlinks the free slots past the first window of the
 * ranges nobody holds.  Messages of the tmp/ way (older versions, or made with
 * ZFARM_SPOOL_SLOTS=0) are read, appended to and removed as before.
 *
 * Slot files stay open: the holder of a range keeps the descriptors of
 * the slots it writes (nobody else unlinks or renames a file of a range
 * that is held: a slot's quarantine copies the file, then frees the
 * slot), and every process keeps those of the slots it read, remove
 * included (spool_kept_take); up to SPOOL_KEPT_MAX of each, at most an
 * eighth of the open file limit, so a message costs no open and close in
 * the smtpserver, the router, the scheduler and the transports.  A kept
 * descriptor is used only while its header still shows the ID looked up
 * (the file may have been unlinked by qstore_trim and made again for a
 * new message since): checked at the take, or by the caller that reads
 * the header anyway (read, remove), which then tries once more.
 * An append through a reader checks the header under the file's flock,
 * which a remove takes too, so it never lands in a slot freed since.
 *
 * Reading: a reader opens msg/XX/ID (or the slot) once and reads SPOOL_READ_AHEAD bytes
 * from the start with one pread.  For a small message that is the whole
 * file (the short read says where it ends, no fstat needed): header,
 * envelope, content and control records are served from that buffer, and
 * the records are appended through the same descriptor (QSTORE_APPEND).
 * A bigger file costs an fstat and reads of what lies past the buffer.
 *
 * Order of operations, and what a crash at each point leaves:
 *   commit:  tmp/N written, the rest of a recycled file cut, tag and M
 *            set; linked to msg/XX/ID; tmp/N unlinked; fsync'ed (and
 *            msg/XX fsync'ed where that fsync does not cover the name,
 *            see spool_fs_syncs_names).  Before the link: a tmp/ leftover,
 *            swept at start.  After: the message (and maybe a tmp/ twin,
 *            which sweep recognises by its link count and unlinks); a
 *            process killed before the fsync leaves a complete message
 *            the client got no 250 for (delivered, maybe twice).
 *   remove:  msg/XX/ID renamed to free/ID (a big one through tmp/N,
 *            truncated there); no fsync.  A crash that loses it brings the
 *            message back with its control records, so every recipient is
 *            final and the scheduler removes it again: nothing is
 *            delivered twice.  A crash in the middle leaves a tmp/
 *            leftover: swept into free/.
 *   ctl:     O_APPEND write + fdatasync (unless lazy); a failed append
 *            is cut back (ftruncate); a torn or zero-filled tail a crash
 *            left is ignored by qstore_ctl_load() and cut off by the
 *            reinjector at start (qstore_ctl_repair), before anything
 *            appends after it.  In a slot: frames with a check written
 *            after the last one that checks, under an flock; a torn one
 *            does not check, the next append goes over it.
 *            (An OS crash during a slot's commit, which gave no 250, may
 *            leave its header durable and its content not: the message
 *            then holds an older one's bytes; its records never, they
 *            check against the ID's time.)
 *
 * Threads: create, remove, sweep and scan use the pool below and the tmp
 * name counter without locks, so they belong to one thread per qstore;
 * commit and abort (of different writers) may run in other threads
 * (smtpserver commits in a thread pool, and group commits in one more
 * thread: spool_commit_begin runs in the creating thread and does no
 * I/O): they share only the msg/XX bitmap, the slots' busy bits and the
 * overwrite counter, which are atomic.
 */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include "common/clock.h"
#include "common/qstore.h"
#include "common/xalloc.h"

/* Defined here, declared where the backend table is (qstore.c). */
extern const struct qstore_ops qstore_spool_ops;

#define SPOOL_NAME    64 /* a name in tmp/ or free/: "PID.MS.SEQ" or an ID */
#define SPOOL_PATH    (8 + SPOOL_NAME)
#define SPOOL_MAX_CTL (256 * 1024 * 1024)
#define SPOOL_MAGIC   "ZSP1"
#define SPOOL_HDR     16
/*
 * A reader's first read: the spool header, the envelope and, for a
 * message this small, the content and the control records too, so the
 * router and the scheduler read a message with one system call.
 */
#define SPOOL_READ_AHEAD (16 * 1024)
/* remove empties files bigger than this; smaller ones keep their blocks. */
#define SPOOL_KEEP_BYTES (64 * 1024)
/* sweep trims free/ to this many inodes. */
#define SPOOL_FREE_MAX 4096
/* Names of free/ held in memory; a refill reads at most this many. */
#define SPOOL_POOL_MAX 256
/*
 * free/ names fall into this many slices (FNV-1a of the name); a process
 * claims names of its own slice (its pid modulo SPOOL_SLICES) first, so
 * processes that share free/ rarely race for the same name.
 */
#define SPOOL_SLICES 16
/*
 * Slots (see "Slots" above): a range is slot/RRR with SPOOL_SLOTS files;
 * a process holds at most SPOOL_RANGES_MAX ranges and looks at most
 * SPOOL_PROBES slots of one range per create before it tries the next.
 */
#define SPOOL_SLOTS	 1024
#define SPOOL_RANGES	 16384 /* ranges there can be: 14 bits */
#define SPOOL_RANGES_MAX 16
#define SPOOL_PROBES	 8
#define SPOOL_WINDOW	 32 /* a range's first window (see struct spool_range) */
/*
 * Slot files kept open: a writer keeps the descriptors of the slots it
 * writes, every process those of the slots it read (spool_kept_take); up
 * to SPOOL_KEPT_MAX of each, at most an eighth of the open file limit.
 */
#define SPOOL_KEPT_MAX 1024
#define SPOOL_SLOT_MAGIC "ZSL1" /* a committed slot */
#define SPOOL_SLOT_FREE	 "ZSL0" /* being received or removed */
/* After a refill that found nothing, wait this long or this many creates. */
#define SPOOL_REFILL_MS	     1000
#define SPOOL_REFILL_CREATES 256

/* A range of slots this process holds (flock of its directory). */
struct spool_range {
	int fd;	    /* slot/RRR */
	unsigned r; /* 0..SPOOL_RANGES-1 */
	char name[SPOOL_PATH]; /* "slot/RRR" */
	unsigned cursor; /* the next slot to look at */
	/*
	 * Slots in use: the cursor goes round the first `window` ones,
	 * doubled (up to SPOOL_SLOTS) when SPOOL_PROBES in a row were taken,
	 * so a process reuses few files (a new one costs an inode) and still
	 * finds a free slot in O(1) when many messages wait in its range.
	 */
	unsigned window;
	/* Slots of writers of ours not committed yet (look free on disk). */
	_Atomic uint32_t busy[SPOOL_SLOTS / 32];
	/*
	 * The open files of its slots (-1: not kept), used by the slot's
	 * writer only (its busy bit): nobody else unlinks a file of a range
	 * this process holds (spool_slot_trim).
	 */
	int kept[SPOOL_SLOTS];
	/*
	 * Bytes from the start of each kept slot file whose blocks and size
	 * are durable (the file's size when its last full fdatasync began;
	 * 0: not known): a commit that ends there is an overwrite in place
	 * (spool_slot_sync).  Reset when the file is found empty (a big
	 * message's remove, a failed write cut it) or this process cut it.
	 */
	uint32_t durable[SPOOL_SLOTS];
};

struct spool {
	int dfd; /* the queue directory */
	bool slots;		/* create in slots (else tmp/ + link into msg/) */
	struct spool_range ranges[SPOOL_RANGES_MAX];
	size_t nranges;
	size_t cur;		/* the range of the last claim */
	unsigned range_next;	/* where to look for a range to adopt */
	char *dir;
	unsigned long tmp_seq;
	/* Names in free/ to claim, from the end: this process's slice last (claimed first). */
	char pool[SPOOL_POOL_MAX][SPOOL_NAME];
	size_t npool;
	char other[SPOOL_POOL_MAX][SPOOL_NAME]; /* a refill's names of other slices */
	unsigned seed;				/* shuffles them, per process */
	bool refill_wait; /* the last refill found nothing */
	uint64_t refill_at_ms;
	unsigned refill_creates;
	/* msg/XX known to exist (and be durable), one bit per XX. */
	_Atomic uint32_t xx_seen[32];
	/*
	 * Group commit of msg/XX fsyncs: a committer counts its link in
	 * `linked`, and whoever fsyncs the directory next (started after the
	 * link) makes it durable too, so concurrent commits into one msg/XX
	 * (all of one process: XX comes from the pid in the ID) share one
	 * fsync.  `xx` is the directory the counters are about; commits into
	 * another one fsync on their own.
	 */
	pthread_mutex_t ds_lock;
	pthread_cond_t ds_done;
	char ds_xx[SPOOL_PATH];
	uint64_t ds_linked, ds_synced;
	unsigned long ds_gen; /* bumped when ds_xx changes */
	bool ds_busy;
	/* fsync of a file makes its new names durable too (spool_fs_syncs_names). */
	bool fsync_names;
	/* A slot's overwrite in place is made durable by its data and a flush (spool_fs_overwrites). */
	bool overwrites;
	_Atomic unsigned long long overwrite_commits; /* commits made so */
	/*
	 * Slot files this process read, kept open (spool_kept_take): the
	 * slot number + 1 (0: empty) and the descriptor, at the place
	 * spool_kept_place gives.  A descriptor here is nobody's; a reader
	 * takes it out and puts it back when done.
	 */
	pthread_mutex_t kept_lock;
	unsigned kept_bits; /* 1 << kept_bits places (0: none kept) */
	unsigned writer_kept; /* descriptors in ranges[].kept (at most 1 << kept_bits) */
	uint32_t *kept_slot;
	int *kept_fd;
	/*
	 * Size of each msg/XX when this process last made it durable.  On
	 * ext4 without a journal the fsync of a file writes the directory
	 * block its new name went into, not the directory's inode: a
	 * directory that grew (a new block, an index) is fsync'ed as well.
	 */
	_Atomic int64_t xx_size[32 * 32];
};

struct spool_writer {
	struct spool *sp;
	int fd;
	char tmp[SPOOL_PATH];	  /* tmp/NAME, or a slot's slot/RRR/NN */
	struct spool_range *range; /* a slot's range, else NULL */
	unsigned slot;		  /* within the range */
	bool created;		  /* the slot's file is new */
	bool failed_enospc;	  /* a write failed for want of space */
	uint64_t len; /* message bytes after the spool header */
	bool failed;
	bool begun; /* for a group commit (spool_commit_begin) */
};

struct spool_reader {
	struct spool *sp;
	int fd;
	bool keep;    /* fd goes back to sp's kept ones (spool_msg_done) */
	bool append;  /* opened for appending control records (QSTORE_APPEND) */
	uint64_t len; /* M: the message ends at SPOOL_HDR + len */
	/* The file's size at open, plus what this reader appended since. */
	uint64_t size;
	uint8_t *head; /* the first nhead bytes of the file, read at open */
	size_t nhead;
	bool slot;	 /* a slot: checked frames, positional appends */
	bool appended;	 /* a slot reader appended: head is old */
	uint64_t idtime; /* a slot's: the ID's time (qid_time_us) */
	char qid[QID_SIZE];
};

static const char *const spool_subdirs[] = {"tmp", "msg", "free", "corrupt", "slot"};
static const char spool_digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void spool_errnum(int *errnum, int e)
{
	if (errnum)
		*errnum = e;
}

/*
 * spool_tag - the 32-bit tag of qid written into the spool header at
 * commit (FNV-1a, never 0: 0 is "no tag", files of older versions).  A
 * pooled inode keeps its old bytes until it is reused, so whoever opens a
 * message by ID checks the tag: a file that has become another message
 * since is not this one.
 */
static uint32_t spool_tag(const char *qid)
{
	uint32_t h = 2166136261u;

	for (const char *p = qid; *p; p++) {
		h ^= (uint8_t)*p;
		h *= 16777619u;
	}
	return h ? h : 1;
}

static void spool_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t spool_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void spool_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t spool_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* spool_path - "top/XX/ID" for a valid queue ID. */
static void spool_path(char out[SPOOL_PATH], const char *top, const char *qid)
{
	snprintf(out, SPOOL_PATH, "%s/%s/%s", top, qid + QID_LEN - 2, qid);
}

/*
 * spool_msg_path - where a committed message lives: slot/RRR/NN for an ID
 * of a slot (qid.h: its last five characters), msg/XX/ID for the others.
 */
static void spool_msg_path(char out[SPOOL_PATH], const char *qid)
{
	if (qid_is_slot(qid))
		snprintf(out, SPOOL_PATH, "slot/%.3s/%.2s", qid + QID_LEN - 5, qid + QID_LEN - 2);
	else
		spool_path(out, "msg", qid);
}

/*
 * spool_name_err - the reason a call on qid's file (path) failed with e:
 * "no such message" for ENOENT; errno is e again after.
 */
static void spool_name_err(const struct spool *sp, const char *qid, const char *path,
			   const char *what, int e, char *err, size_t errlen)
{
	if (e == ENOENT)
		snprintf(err, errlen, "%s: no such message", qid);
	else
		snprintf(err, errlen, "%s/%s: %s%s%s", sp->dir, path, what ? what : "",
			 what ? ": " : "", strerror(e));
	errno = e;
}

/* spool_msg_open - qid's file (msg/XX/ID or its slot) opened with flags; -1 + reason. */
static int spool_msg_open(const struct spool *sp, const char *qid, int flags, char *err,
			  size_t errlen)
{
	char path[SPOOL_PATH];
	int fd;

	spool_msg_path(path, qid);
	fd = openat(sp->dfd, path, flags | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		spool_name_err(sp, qid, path, NULL, errno, err, errlen);
	return fd;
}

/* spool_slot_committed - hdr (SPOOL_HDR bytes) is a committed slot's: its M, else 0. */
static uint64_t spool_slot_committed(const uint8_t *hdr)
{
	return memcmp(hdr, SPOOL_SLOT_MAGIC, 4) == 0 ? spool_get_be32(hdr + 12) : 0;
}

/*
 * spool_slot_shows - the first n bytes of a slot hold the committed
 * message of that ID time: its M, else 0 (free, being received, another
 * message, too short).
 */
static uint64_t spool_slot_shows(const uint8_t *hdr, size_t n, uint64_t idtime)
{
	if (n < SPOOL_HDR || spool_get_be64(hdr + 4) != idtime)
		return 0;
	return spool_slot_committed(hdr);
}

/*
 * spool_kept_place - where the slot of qid is kept, and its key (the slot
 * number + 1).  Slots are used from the start of their range, so the
 * range's number goes in bit-reversed: the first slots of ranges 0, 1,
 * 2, 3 go to places 0, half, a quarter, three quarters.
 */
static size_t spool_kept_place(const struct spool *sp, const char *qid, uint32_t *key)
{
	uint32_t slot = qid_tail(qid) & ~QID_SLOT_FLAG, r = slot >> 10, rev = 0;

	*key = slot + 1;
	for (unsigned b = 0; b < sp->kept_bits; b++)
		rev |= (r >> b & 1u) << (sp->kept_bits - 1 - b);
	return (slot ^ rev) & ((1u << sp->kept_bits) - 1);
}

/*
 * spool_kept_take - a descriptor of the slot of qid that this process
 * kept (spool_kept_put), if its header still shows qid (with check; else
 * the caller checks): a file can be unlinked while kept (qstore_trim, in
 * a range no process held) and its name given to a new file since.  -1:
 * none (the caller opens the name).
 */
static int spool_kept_take(struct spool *sp, const char *qid, bool check)
{
	uint32_t key;
	size_t i = spool_kept_place(sp, qid, &key);
	uint8_t hdr[SPOOL_HDR];
	ssize_t n;
	int fd = -1;

	pthread_mutex_lock(&sp->kept_lock);
	if (sp->kept_slot[i] == key) {
		fd = sp->kept_fd[i];
		sp->kept_slot[i] = 0;
		sp->kept_fd[i] = -1;
	}
	pthread_mutex_unlock(&sp->kept_lock);
	if (fd < 0 || !check)
		return fd;
	do
		n = pread(fd, hdr, sizeof(hdr), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 || !spool_slot_shows(hdr, (size_t)n, qid_time_us(qid))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* spool_kept_put - keep fd, qid's slot file opened read-write, for the next user of the slot. */
static void spool_kept_put(struct spool *sp, const char *qid, int fd)
{
	uint32_t key;
	size_t i = spool_kept_place(sp, qid, &key);
	int old;

	pthread_mutex_lock(&sp->kept_lock);
	if (sp->kept_slot[i] == key) {
		old = fd; /* one is enough */
	} else {
		old = sp->kept_fd[i];
		sp->kept_slot[i] = key;
		sp->kept_fd[i] = fd;
	}
	pthread_mutex_unlock(&sp->kept_lock);
	if (old >= 0)
		close(old);
}

/*
 * spool_msg_get - qid's file open for flags, the way spool_msg_open does,
 * except that a slot's file comes from (and *keep says: goes back to,
 * spool_msg_done) the descriptors this process keeps: router, scheduler
 * and transports open the same few slot files over and over.  A kept
 * one is read-write whatever flags ask (a slot is never O_APPEND).  A
 * caller that reads the header itself passes unchecked: it gets a kept
 * descriptor as it is (*unchecked true) and, when the header does not
 * show qid (ENOENT), asks again without (spool_msg_retry).
 */
static int spool_msg_get(struct spool *sp, const char *qid, int flags, bool *keep,
			 bool *unchecked, char *err, size_t errlen)
{
	int fd;

	*keep = false;
	if (unchecked)
		*unchecked = false;
	if (!qid_is_slot(qid) || !sp->kept_bits)
		return spool_msg_open(sp, qid, flags, err, errlen);
	if ((fd = spool_kept_take(sp, qid, !unchecked)) >= 0) {
		*keep = true;
		if (unchecked)
			*unchecked = true;
		return fd;
	}
	fd = spool_msg_open(sp, qid, O_RDWR, err, errlen);
	if (fd >= 0) {
		*keep = true;
		return fd;
	}
	/* Allowed to read only (a tool of another user): not kept. */
	if ((flags & O_ACCMODE) == O_RDONLY && (errno == EACCES || errno == EROFS))
		return spool_msg_open(sp, qid, flags, err, errlen);
	return -1;
}

/*
 * spool_msg_retry - whether a call that failed (errno) on a descriptor
 * spool_msg_get gave unchecked should be made once more, checked: the
 * kept file no longer holds qid, the slot's file by name may.
 */
static bool spool_msg_retry(bool unchecked)
{
	return unchecked && errno == ENOENT;
}

/* spool_msg_done - the end of a use of spool_msg_get's fd. */
static void spool_msg_done(struct spool *sp, const char *qid, int fd, bool keep)
{
	int e = errno;

	if (keep)
		spool_kept_put(sp, qid, fd);
	else
		close(fd);
	errno = e;
}

/* spool_slot_name - "slot/RRR" of range r, "slot/RRR/NN" of its slot n (n < 0: the range). */
static void spool_slot_name(char out[SPOOL_PATH], unsigned r, int n)
{
	char tail[QID_SIZE];

	/* The slot's ID tail, QID_SLOT_FLAG | r << 10 | n, as qid.c writes it. */
	qid_format(tail, 0, QID_SLOT_FLAG | r << 10 | (n < 0 ? 0u : (unsigned)n));
	if (n < 0)
		snprintf(out, SPOOL_PATH, "slot/%.3s", tail + QID_LEN - 5);
	else
		snprintf(out, SPOOL_PATH, "slot/%.3s/%.2s", tail + QID_LEN - 5, tail + QID_LEN - 2);
}

/* spool_tmp_name - a fresh name under tmp/: unique per process and call. */
static void spool_tmp_name(struct spool *sp, char out[SPOOL_PATH])
{
	snprintf(out, SPOOL_PATH, "tmp/%ld.%llu.%lu", (long)getpid(),
		 (unsigned long long)clock_mono_ms(), ++sp->tmp_seq);
}

/* spool_fsync_dir - fsync a directory relative to the queue directory. */
static int spool_fsync_dir(struct spool *sp, const char *name)
{
	int fd = openat(sp->dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, e;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

/*
 * spool_sync_linked - make a link just made in directory xx durable,
 * sharing the fsync with concurrent committers (see struct spool).  Each
 * waiter needs an fsync that started after its link: the one running may
 * have started before, so it waits for it and the next.  A failed fsync
 * proves nothing for anyone: each waiter then tries its own.
 */
static int spool_sync_linked(struct spool *sp, const char *xx)
{
	uint64_t mine, target;
	unsigned long gen;
	int rc = 0, e = 0;

	pthread_mutex_lock(&sp->ds_lock);
	if (strcmp(sp->ds_xx, xx) != 0) {
		if (sp->ds_busy) {
			/* Another directory's round is running: no sharing. */
			pthread_mutex_unlock(&sp->ds_lock);
			return spool_fsync_dir(sp, xx);
		}
		snprintf(sp->ds_xx, sizeof(sp->ds_xx), "%s", xx);
		sp->ds_linked = sp->ds_synced = 0;
		sp->ds_gen++;
	}
	mine = ++sp->ds_linked;
	gen = sp->ds_gen;
	while (sp->ds_synced < mine) {
		if (sp->ds_busy) {
			pthread_cond_wait(&sp->ds_done, &sp->ds_lock);
			if (sp->ds_gen != gen) {
				/* The counters are another directory's now. */
				pthread_mutex_unlock(&sp->ds_lock);
				return spool_fsync_dir(sp, xx);
			}
			continue;
		}
		sp->ds_busy = true;
		target = sp->ds_linked;
		pthread_mutex_unlock(&sp->ds_lock);
		rc = spool_fsync_dir(sp, xx);
		e = errno;
		pthread_mutex_lock(&sp->ds_lock);
		sp->ds_busy = false;
		if (rc == 0 && target > sp->ds_synced)
			sp->ds_synced = target;
		pthread_cond_broadcast(&sp->ds_done);
		if (rc < 0)
			break;
	}
	pthread_mutex_unlock(&sp->ds_lock);
	errno = e;
	return rc;
}

/* spool_xx_bit - qid's msg/XX as (word, bit) of the bitmap. */
static void spool_xx_bit(const char *qid, int *word, uint32_t *bit)
{
	const char *a = strchr(spool_digits, qid[QID_LEN - 2]);
	const char *b = strchr(spool_digits, qid[QID_LEN - 1]);

	/* qstore.c passes valid IDs only; a stray one shares bit 0. */
	*word = a ? (int)(a - spool_digits) : 0;
	*bit = (uint32_t)1 << (b ? (int)(b - spool_digits) : 0);
}

/*
 * spool_mkdir_xx - msg/XX for qid exists and is durable.  The bit is set
 * only after msg/ was fsync'ed, also when the mkdir found the directory
 * there (another thread or process may have made it a moment ago): at most
 * one fsync per XX and process, then no system call at all.
 */
static int spool_mkdir_xx(struct spool *sp, const char *qid)
{
	char name[SPOOL_PATH];
	uint32_t bit;
	int word;

	spool_xx_bit(qid, &word, &bit);
	if (atomic_load_explicit(&sp->xx_seen[word], memory_order_relaxed) & bit)
		return 0;
	snprintf(name, sizeof(name), "msg/%s", qid + QID_LEN - 2);
	if (mkdirat(sp->dfd, name, 0700) < 0 && errno != EEXIST)
		return -1;
	if (spool_fsync_dir(sp, "msg") < 0)
		return -1;
	atomic_fetch_or_explicit(&sp->xx_seen[word], bit, memory_order_relaxed);
	return 0;
}

/* spool_xx_forget - msg/XX vanished under us (an operator): ask again. */
static void spool_xx_forget(struct spool *sp, const char *qid)
{
	uint32_t bit;
	int word;

	spool_xx_bit(qid, &word, &bit);
	atomic_fetch_and_explicit(&sp->xx_seen[word], ~bit, memory_order_relaxed);
}

/*
 * spool_header_check - the verdict on the spool header of qid's file: hdr
 * holds the first n bytes of the file, size is its size.  M in *len, or
 * -1 + reason with errno EBADMSG for a file commit cannot have made (too
 * short, bad magic, M 0 or past the end) or ENOENT for a file that holds
 * another message now.
 */
static int spool_header_check(const uint8_t *hdr, size_t n, uint64_t size, const char *qid,
			      uint64_t *len, char *err, size_t errlen)
{
	if (qid_is_slot(qid)) {
		/* A slot free, being received or holding another message: not this one. */
		if (!(*len = spool_slot_shows(hdr, n, qid_time_us(qid)))) {
			snprintf(err, errlen, "%s: no such message (its slot holds another or none)",
				 qid);
			errno = ENOENT;
			return -1;
		}
		if (*len > size - SPOOL_HDR) {
			snprintf(err, errlen, "%s: message length %llu does not fit file size %llu",
				 qid, (unsigned long long)*len, (unsigned long long)size);
			goto bad;
		}
		return 0;
	}
	if (n < SPOOL_HDR || size < SPOOL_HDR) {
		snprintf(err, errlen, "%s: shorter than its spool header (%zu bytes)", qid,
			 n < size ? n : (size_t)size);
		goto bad;
	}
	if (memcmp(hdr, SPOOL_MAGIC, 4) != 0) {
		snprintf(err, errlen, "%s: bad spool magic, not a spool file", qid);
		goto bad;
	}
	*len = spool_get_be64(hdr + 8);
	if (spool_get_be32(hdr + 4) != 0 && spool_get_be32(hdr + 4) != spool_tag(qid)) {
		snprintf(err, errlen, "%s: no such message (its file holds another now)", qid);
		errno = ENOENT;
		return -1;
	}
	if (*len == 0 || *len > size - SPOOL_HDR) {
		snprintf(err, errlen, "%s: message length %llu does not fit file size %llu", qid,
			 (unsigned long long)*len, (unsigned long long)size);
		goto bad;
	}
	return 0;
bad:
	errno = EBADMSG;
	return -1;
}

/*
 * spool_header - check the spool header of an open message: its length M
 * in *len and the file size in *size; -1 + reason as spool_header_check,
 * or with the errno of a failed fstat or read.
 */
static int spool_header(int fd, const char *qid, uint64_t *len, uint64_t *size, char *err,
			size_t errlen)
{
	uint8_t hdr[SPOOL_HDR];
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: fstat: %s", qid, strerror(errno));
		return -1;
	}
	*size = (uint64_t)st.st_size;
	do
		n = pread(fd, hdr, sizeof(hdr), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		snprintf(err, errlen, "%s: read: %s", qid, strerror(errno));
		return -1;
	}
	return spool_header_check(hdr, (size_t)n, *size, qid, len, err, errlen);
}

/*
 * spool_mount - the type and super block options of the file system
 * holding dfd, from /proc/self/mountinfo by device number (the last line
 * of the device wins: mounted over, the newest counts).  false: not found.
 */
static bool spool_mount(int dfd, char type[32], char opts[1024])
{
	struct stat st;
	char line[4096];
	bool found = false;
	FILE *f;

	if (fstat(dfd, &st) < 0 || !(f = fopen("/proc/self/mountinfo", "re")))
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		char *dash;

		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - TYPE SOURCE SUPEROPTIONS" */
		if (sscanf(line, "%*u %*u %u:%u", &maj, &min) != 2 ||
		    makedev(maj, min) != st.st_dev || !(dash = strstr(line, " - ")))
			continue;
		opts[0] = '\0';
		found = sscanf(dash + 3, "%31s %*s %1023s", type, opts) >= 1;
	}
	fclose(f);
	return found;
}

/*
 * spool_fs_syncs_names - whether a file system of this type makes a
 * file's new directory entries durable when the file is fsync'ed: ext4
 * (with a journal the fsync commits the transaction that holds the link;
 * without one it syncs the directory of a newly added name,
 * ext4_sync_parent), xfs (the link is logged with the inode's change) and
 * tmpfs (nothing is durable anyway).  Anything else, or no answer, gets
 * the directory fsync.
 */
static bool spool_fs_syncs_names(const char *type)
{
	static const char *const types[] = {"ext4", "xfs", "tmpfs"};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(type, types[i]) == 0)
			return true;
	return false;
}

/*
 * spool_fs_overwrites - whether an overwrite in place of a file's durable
 * blocks, inside its durable size, is made durable by writing the data
 * (sync_file_range, waiting) and flushing the device's cache: ext4 writes
 * such data where it was, and the overwrite changes no metadata but the
 * times, which fdatasync need not keep.  fdatasync itself would do the
 * same plus, on ext4 without a journal, a write of the inode's block
 * whenever the time moved (every commit of a slot: a third device round
 * trip).  The flush is an fdatasync of the queue directory, which is
 * never written while the MTA runs: ext4's fsync of a clean file issues
 * the flush alone.  Not with data=journal (data goes through the
 * journal), nor dax; a file's own flags are checked too (spool_slot_sync).
 * Not xfs (a shared or unwritten extent is written elsewhere), btrfs,
 * anything else.
 */
static bool spool_fs_overwrites(const char *type, const char *opts)
{
	return strcmp(type, "ext4") == 0 && !strstr(opts, "data=journal") && !strstr(opts, "dax");
}

static void *spool_open(const char *dir, char *err, size_t errlen)
{
	char type[32], opts[1024];
	struct spool *sp;
	struct rlimit rl;
	int dfd;

	if (!dir || !*dir) {
		snprintf(err, errlen, "spool: no queue directory given");
		return NULL;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: mkdir: %s", dir, strerror(errno));
		return NULL;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	for (size_t i = 0; i < sizeof(spool_subdirs) / sizeof(spool_subdirs[0]); i++) {
		struct stat st;

		if (mkdirat(dfd, spool_subdirs[i], 0700) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s/%s: mkdir: %s", dir, spool_subdirs[i],
				 strerror(errno));
			close(dfd);
			return NULL;
		}
		if (fstatat(dfd, spool_subdirs[i], &st, 0) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "%s/%s: not a directory", dir, spool_subdirs[i]);
			close(dfd);
			return NULL;
		}
	}
	sp = xcalloc(1, sizeof(*sp));
	sp->dfd = dfd;
	sp->dir = xstrdup(dir);
	pthread_mutex_init(&sp->ds_lock, NULL);
	pthread_cond_init(&sp->ds_done, NULL);
	pthread_mutex_init(&sp->kept_lock, NULL);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		while (sp->kept_bits < 16 && (1u << (sp->kept_bits + 1)) <= SPOOL_KEPT_MAX &&
		       (rl.rlim_cur == RLIM_INFINITY ||
			(rlim_t)1 << (sp->kept_bits + 4) <= rl.rlim_cur))
			sp->kept_bits++;
	sp->kept_slot = xcalloc((size_t)1 << sp->kept_bits, sizeof(*sp->kept_slot));
	sp->kept_fd = xmalloc(((size_t)1 << sp->kept_bits) * sizeof(*sp->kept_fd));
	for (size_t i = 0; i < (size_t)1 << sp->kept_bits; i++)
		sp->kept_fd[i] = -1;
	/* ZFARM_SPOOL_DIRSYNC=1: the directory fsync per link everywhere. */
	/* ZFARM_SPOOL_SLOTS=0: new messages the tmp/ way (tests of it). */
	sp->slots = !(getenv("ZFARM_SPOOL_SLOTS") && strcmp(getenv("ZFARM_SPOOL_SLOTS"), "0") == 0);
	if (spool_mount(dfd, type, opts)) {
		sp->fsync_names = !(getenv("ZFARM_SPOOL_DIRSYNC") &&
				    strcmp(getenv("ZFARM_SPOOL_DIRSYNC"), "1") == 0) &&
				  spool_fs_syncs_names(type);
		/* ZFARM_SPOOL_OVERWRITE=0: every commit by fdatasync of its file. */
		sp->overwrites = !(getenv("ZFARM_SPOOL_OVERWRITE") &&
				   strcmp(getenv("ZFARM_SPOOL_OVERWRITE"), "0") == 0) &&
				 spool_fs_overwrites(type, opts);
	}
	return sp;
}

static void spool_close(void *be)
{
	struct spool *sp = be;

	for (size_t i = 0; i < sp->nranges; i++) {
		close(sp->ranges[i].fd); /* and its flock: another process may take it */
		for (size_t k = 0; k < SPOOL_SLOTS; k++)
			if (sp->ranges[i].kept[k] >= 0)
				close(sp->ranges[i].kept[k]);
	}
	for (size_t i = 0; i < (size_t)1 << sp->kept_bits; i++)
		if (sp->kept_fd[i] >= 0)
			close(sp->kept_fd[i]);
	free(sp->kept_slot);
	free(sp->kept_fd);
	close(sp->dfd);
	pthread_mutex_destroy(&sp->kept_lock);
	pthread_mutex_destroy(&sp->ds_lock);
	pthread_cond_destroy(&sp->ds_done);
	free(sp->dir);
	free(sp);
}

static const char *spool_commit_mode(void *be)
{
	const struct spool *sp = be;

	if (sp->slots && sp->overwrites)
		return sp->fsync_names ? "slot overwrite: data write and device flush, else slot "
					 "fdatasync (tmp/ way: file fsync)"
				       : "slot overwrite: data write and device flush, else slot "
					 "fdatasync, range fsync for a new slot (tmp/ way: file and "
					 "directory fsync)";
	if (sp->slots)
		return sp->fsync_names ? "slot fdatasync (tmp/ way: file fsync)"
				       : "slot fdatasync, range fsync for a new slot "
					 "(tmp/ way: file and directory fsync)";
	return sp->fsync_names ? "file fsync" : "file and directory fsync";
}

static unsigned long long spool_overwrite_commits(void *be)
{
	struct spool *sp = be;

	return atomic_load_explicit(&sp->overwrite_commits, memory_order_relaxed);
}

static long long spool_free_bytes(void *be)
{
	struct spool *sp = be;
	struct statvfs vfs;

	if (fstatvfs(sp->dfd, &vfs) < 0)
		return -1;
	return (long long)vfs.f_bavail * (long long)vfs.f_frsize;
}

/* ---- the pool of free inodes ---- */

static void spool_pool_push(struct spool *sp, const char *name)
{
	if (sp->npool < SPOOL_POOL_MAX && strlen(name) < SPOOL_NAME)
		memcpy(sp->pool[sp->npool++], name, strlen(name) + 1);
}

/* spool_slice - the slice of a free/ name (see SPOOL_SLICES). */
static unsigned spool_slice(const char *name)
{
	uint32_t h = 2166136261u;

	for (; *name; name++) {
		h ^= (unsigned char)*name;
		h *= 16777619u;
	}
	return h % SPOOL_SLICES;
}

/*
 * spool_pool_refill - read names from free/ into the empty list: this
 * process's slice up to SPOOL_POOL_MAX names, claimed first; room left is
 * filled with names of other slices in an order of this process's own,
 * claimed last.  Every process reads free/ in the same order: without
 * slices and the shuffle all of them would try the same names, and all but
 * one would fail each rename (measured: one failed rename per message with
 * 2 smtpserver processes, ten with 6; see also spool_pool_claim).  After a
 * refill that found nothing, free/ is not read again before
 * SPOOL_REFILL_MS or SPOOL_REFILL_CREATES creates: no directory scan per
 * message while the pool is dry.
 */
static void spool_pool_refill(struct spool *sp)
{
	unsigned mine = (unsigned)getpid() % SPOOL_SLICES;
	size_t nother = 0, take;
	struct dirent *de;
	DIR *d;
	int fd;

	if (sp->refill_wait && sp->refill_creates < SPOOL_REFILL_CREATES &&
	    clock_mono_ms() < sp->refill_at_ms)
		return;
	fd = openat(sp->dfd, "free", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && (d = fdopendir(fd))) {
		while (sp->npool < SPOOL_POOL_MAX && (de = readdir(d))) {
			size_t len = strlen(de->d_name);

			if (de->d_name[0] == '.' || len >= SPOOL_NAME)
				continue;
			if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
				continue;
			if (spool_slice(de->d_name) == mine)
				spool_pool_push(sp, de->d_name);
			else if (nother < SPOOL_POOL_MAX)
				memcpy(sp->other[nother++], de->d_name, len + 1);
		}
		closedir(d);
	} else if (fd >= 0) {
		close(fd);
	}
	/* Other slices' names below ours, shuffled: tried only when ours are used up. */
	if (sp->seed == 0)
		sp->seed = ((unsigned)getpid() * 2654435761u ^ (unsigned)clock_mono_ms()) | 1u;
	for (size_t i = nother; i > 1; i--) {
		size_t j = (size_t)rand_r(&sp->seed) % i;
		char t[SPOOL_NAME];

		memcpy(t, sp->other[i - 1], SPOOL_NAME);
		memcpy(sp->other[i - 1], sp->other[j], SPOOL_NAME);
		memcpy(sp->other[j], t, SPOOL_NAME);
	}
	take = SPOOL_POOL_MAX - sp->npool < nother ? SPOOL_POOL_MAX - sp->npool : nother;
	if (take > 0) {
		memmove(sp->pool[take], sp->pool[0], sp->npool * sizeof(sp->pool[0]));
		memcpy(sp->pool[0], sp->other[0], take * sizeof(sp->pool[0]));
		sp->npool += take;
	}
	sp->refill_wait = sp->npool == 0;
	sp->refill_at_ms = clock_mono_ms() + SPOOL_REFILL_MS;
	sp->refill_creates = 0;
}

/*
 * spool_pool_claim - move a pooled inode to the fresh name w->tmp, empty
 * and open for writing; -1 if the pool has none (create one then).  A
 * rename is atomic: ENOENT means another process took that one first.
 * Two such misses in a row mean the pool is stale (other processes have
 * used free/ since the refill): it is read afresh instead of trying every
 * name.  At most one refill per call, so names that keep failing cannot
 * loop.
 */
static int spool_pool_claim(struct spool *sp, struct spool_writer *w)
{
	bool refilled = false;
	unsigned misses = 0;

	sp->refill_creates++;
	for (;;) {
		char from[SPOOL_PATH];
		struct stat st;
		int fd;

		if (!sp->npool) {
			if (refilled)
				return -1;
			spool_pool_refill(sp);
			refilled = true;
			if (!sp->npool)
				return -1;
		}
		snprintf(from, sizeof(from), "free/%s", sp->pool[--sp->npool]);
		spool_tmp_name(sp, w->tmp);
		if (renameat(sp->dfd, from, sp->dfd, w->tmp) < 0) {
			if (errno == ENOENT && ++misses >= 2 && !refilled)
				sp->npool = 0; /* stale: refill */
			continue;
		}
		/*
		 * No O_TRUNC: the removed message's bytes are overwritten and
		 * the rest cut at commit, so its blocks are reused instead of
		 * freed (a truncate to 0 frees them, which with the discard mount
		 * option waits for the device).
		 */
		fd = openat(sp->dfd, w->tmp, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			renameat(sp->dfd, w->tmp, sp->dfd, from); /* a foreign thing: leave it */
			continue;
		}
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
			close(fd);
			unlinkat(sp->dfd, w->tmp, 0);
			continue;
		}
		w->fd = fd;
		return 0;
	}
}

/* spool_report_bad - hand "dir/top/sub/name" (no sub: "dir/top/name") to bad_fn. */
static void spool_report_bad(struct spool *sp, void (*bad_fn)(const char *, void *), void *arg,
			     const char *top, const char *sub, const char *name)
{
	char *path;

	if (!bad_fn)
		return;
	if (sub)
		path = xasprintf("%s/%s/%s/%s", sp->dir, top, sub, name);
	else
		path = xasprintf("%s/%s/%s", sp->dir, top, name);
	bad_fn(path, arg);
	free(path);
}

/* ---- slots ---- */

/*
 * spool_range_adopt - hold one more range: the lowest-numbered slot/RRR no
 * other process holds (flock, released when the holder exits however it
 * exits), made if missing.  NULL when this process holds SPOOL_RANGES_MAX
 * already or none can be had: creates then take the tmp/ way.
 */
static struct spool_range *spool_range_adopt(struct spool *sp)
{
	if (sp->nranges == SPOOL_RANGES_MAX)
		return NULL;
	for (; sp->range_next < SPOOL_RANGES; sp->range_next++) {
		struct spool_range *rg = &sp->ranges[sp->nranges];
		char name[SPOOL_PATH];
		bool made;
		int fd;

		spool_slot_name(name, sp->range_next, -1);
		made = mkdirat(sp->dfd, name, 0700) == 0;
		if (!made && errno != EEXIST)
			return NULL;
		/* A new range is durable before any message goes into it. */
		if (made && spool_fsync_dir(sp, "slot") < 0)
			return NULL;
		fd = openat(sp->dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd);
			continue;
		}
		memset(rg, 0, sizeof(*rg));
		for (size_t k = 0; k < SPOOL_SLOTS; k++)
			rg->kept[k] = -1;
		rg->fd = fd;
		rg->r = sp->range_next++;
		rg->window = SPOOL_WINDOW;
		snprintf(rg->name, sizeof(rg->name), "%s", name);
		return &sp->ranges[sp->nranges++];
	}
	return NULL;
}

static bool spool_slot_busy(struct spool_range *rg, unsigned n)
{
	return atomic_load_explicit(&rg->busy[n / 32], memory_order_acquire) & (1u << (n % 32));
}

static void spool_slot_set_busy(struct spool_range *rg, unsigned n, bool busy)
{
	if (busy)
		atomic_fetch_or_explicit(&rg->busy[n / 32], 1u << (n % 32), memory_order_acq_rel);
	else
		atomic_fetch_and_explicit(&rg->busy[n / 32], ~(1u << (n % 32)),
					  memory_order_acq_rel);
}

/*
 * spool_slot_try - slot n of rg for a new message, open for writing at
 * offset 0, or -1 if it holds a committed message (or cannot be opened).
 * Only this process creates in rg (it holds the range), so a slot found
 * free stays free; its own writers' slots are marked busy.
 */
static int spool_slot_try(struct spool *sp, struct spool_range *rg, unsigned n,
			  struct spool_writer *w)
{
	uint8_t hdr[SPOOL_HDR];
	bool created = false;
	ssize_t got;
	int fd;

	if (spool_slot_busy(rg, n))
		return -1;
	spool_slot_name(w->tmp, rg->r, (int)n);
	fd = rg->kept[n];
	if (fd < 0) {
		fd = openat(sp->dfd, w->tmp, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT) {
			fd = openat(sp->dfd, w->tmp,
				    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			created = fd >= 0;
		}
		if (fd < 0)
			return -1;
		if (sp->writer_kept < (1u << sp->kept_bits)) {
			rg->kept[n] = fd;
			sp->writer_kept++;
		}
	}
	do
		got = pread(fd, hdr, sizeof(hdr), 0);
	while (got < 0 && errno == EINTR);
	if (got < 0 || (got == (ssize_t)sizeof(hdr) && spool_slot_committed(hdr))) {
		if (rg->kept[n] != fd)
			close(fd);
		return -1;
	}
	if (got < (ssize_t)sizeof(hdr))
		rg->durable[n] = 0; /* emptied since: its blocks are gone */
	spool_slot_set_busy(rg, n, true);
	w->fd = fd;
	w->range = rg;
	w->slot = n;
	w->created = created;
	return 0;
}

/*
 * spool_slot_claim - a free slot for a new message and its ID (qid.h):
 * SPOOL_PROBES slots of each range held, from where the last claim in it
 * stopped (mail mostly leaves in the order it came, so the next slot is
 * the oldest), then one more range.  -1: no slot (the caller takes the
 * tmp/ way).  O(1): at most SPOOL_PROBES * (SPOOL_RANGES_MAX + 1) looks.
 */
static int spool_slot_claim(struct spool *sp, struct spool_writer *w, char qid[QID_SIZE])
{
	if (!sp->slots)
		return -1;
	for (size_t i = 0;;) {
		struct spool_range *rg;

		if (i < sp->nranges)
			rg = &sp->ranges[(sp->cur + i) % sp->nranges];
		else if (!(rg = spool_range_adopt(sp)))
			return -1;
		for (unsigned p = 0; p < SPOOL_PROBES; p++) {
			unsigned n = rg->cursor;

			rg->cursor = (rg->cursor + 1) % rg->window;
			if (spool_slot_try(sp, rg, n, w) == 0) {
				sp->cur = (size_t)(rg - sp->ranges);
				qid_generate_slot(qid, rg->r << 10 | n);
				return 0;
			}
		}
		if (rg->window < SPOOL_SLOTS) {
			/* Taken all round: this range grows before the next is tried. */
			rg->cursor = rg->window;
			rg->window *= 2;
		} else {
			i++;
		}
	}
}

/* spool_slot_release - a slot writer is done: close (unless kept), no longer busy. */
static void spool_slot_release(struct spool_writer *w)
{
	if (w->fd >= 0 && w->range->kept[w->slot] != w->fd)
		close(w->fd);
	w->fd = -1;
	spool_slot_set_busy(w->range, w->slot, false);
}

/* spool_slot_header - a committed slot's header: ID time and M. */
static void spool_slot_header(uint8_t hdr[SPOOL_HDR], const char *qid, uint64_t len)
{
	memcpy(hdr, SPOOL_SLOT_MAGIC, 4);
	spool_put_be64(hdr + 4, qid_time_us(qid));
	spool_put_be32(hdr + 12, (uint32_t)len);
}

/*
 * spool_slot_overwrites - whether the slot's first end bytes are an
 * overwrite of durable blocks that writing them out and flushing the
 * device's cache makes durable (spool_fs_overwrites; the file is the one
 * kept, not new, and an earlier fdatasync made at least end bytes durable).
 */
static bool spool_slot_overwrites(const struct spool_writer *w, uint64_t end)
{
	const struct spool_range *rg = w->range;

	return w->sp->overwrites && rg->kept[w->slot] == w->fd && !w->created &&
	       end <= rg->durable[w->slot];
}

/*
 * spool_slot_sync - make the slot's message durable: its first end bytes
 * are an overwrite of durable blocks (struct spool_range's durable) on a
 * file system where that is safe (spool_fs_overwrites): write them out
 * and flush the device's cache; else fdatasync, and remember how much of
 * the file that made durable.  -1 with errno.
 */
static int spool_slot_sync(struct spool_writer *w, uint64_t end)
{
	struct spool *sp = w->sp;
	struct spool_range *rg = w->range;
	bool kept = rg->kept[w->slot] == w->fd;
	struct stat st;
	int flags;

	if (spool_slot_overwrites(w, end)) {
		if (sync_file_range(w->fd, 0, (off_t)end,
				    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					SYNC_FILE_RANGE_WAIT_AFTER) < 0 ||
		    fdatasync(sp->dfd) < 0)
			return -1;
		atomic_fetch_add_explicit(&sp->overwrite_commits, 1, memory_order_relaxed);
		return 0;
	}
	/* Its size before the fdatasync: all of that is durable after it. */
	if (!sp->overwrites || !kept || fstat(w->fd, &st) < 0 || st.st_size > UINT32_MAX ||
	    st.st_blocks == 0 || ioctl(w->fd, FS_IOC_GETFLAGS, &flags) < 0 ||
	    (flags & (FS_JOURNAL_DATA_FL | FS_INLINE_DATA_FL | FS_DAX_FL)))
		st.st_size = 0;
	rg->durable[w->slot] = 0;
	if (fdatasync(w->fd) < 0)
		return -1;
	rg->durable[w->slot] = (uint32_t)st.st_size;
	return 0;
}

/*
 * spool_slot_fail - w's commit failed at what with e: its header says free
 * again (a crash may still show it committed: no 250 was given), what the
 * file's fdatasync made durable is forgotten; w freed.  -1.
 */
static int spool_slot_fail(struct spool_writer *w, const char *what, int e, int *errnum,
			   char *err, size_t errlen)
{
	uint8_t hdr[SPOOL_HDR];

	snprintf(err, errlen, "%s/%s: %s: %s", w->sp->dir, w->tmp, what, strerror(e));
	spool_errnum(errnum, e);
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, SPOOL_SLOT_FREE, 4);
	if (pwrite(w->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) || e == ENOSPC)
		(void)!ftruncate(w->fd, 0);
	w->range->durable[w->slot] = 0; /* a failed write-out: know nothing */
	spool_slot_release(w);
	free(w);
	return -1;
}

/* spool_slot_mark - the slot's header says committed (not yet durable); -1: w failed, freed. */
static int spool_slot_mark(struct spool_writer *w, const char *qid, int *errnum, char *err,
			   size_t errlen)
{
	uint8_t hdr[SPOOL_HDR];
	ssize_t n;

	spool_slot_header(hdr, qid, w->len);
	do
		n = pwrite(w->fd, hdr, sizeof(hdr), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(hdr))
		return spool_slot_fail(w, "write", n < 0 ? errno : EIO, errnum, err, errlen);
	return 0;
}

/*
 * spool_slot_commit - the slot's header says the message is there;
 * durable (spool_slot_sync; a new slot file: the name too, see
 * spool_fs_syncs_names; elsewhere its range is fsync'ed).  No directory
 * changes: the slot's name is the ID's; no size change when the file was
 * as big already.
 */
static int spool_slot_commit(struct spool_writer *w, const char *qid, int *errnum, char *err,
			     size_t errlen)
{
	struct spool *sp = w->sp;

	if (w->len > UINT32_MAX)
		return spool_slot_fail(w, "write", EFBIG, errnum, err, errlen);
	if (spool_slot_mark(w, qid, errnum, err, errlen) < 0)
		return -1;
	/*
	 * What an older message left past the new one stays: cutting it
	 * would change the size, and fdatasync would write the inode too.
	 * Its control records do not check for this ID (spool_frames_walk).
	 */
	if (spool_slot_sync(w, SPOOL_HDR + w->len) < 0)
		return spool_slot_fail(w, "fdatasync", errno, errnum, err, errlen);
	if (w->created && !sp->fsync_names && spool_fsync_dir(sp, w->range->name) < 0)
		return spool_slot_fail(w, "fsync of its range", errno, errnum, err, errlen);
	spool_slot_release(w);
	free(w);
	return 0;
}

/*
 * Group commit (qstore.h: qstore_commit_group): a slot overwritten
 * inside its durable blocks (spool_slot_overwrites) is committed by its
 * header, its write-out (started for every message of the group before
 * any is waited for) and one device flush for the group (spool_flush: an
 * fdatasync of the queue directory, see spool_fs_overwrites).
 */
static int spool_commit_begin(void *wr, const char *qid)
{
	struct spool_writer *w = wr;

	if (w->failed || !w->range || w->len > UINT32_MAX ||
	    !spool_slot_overwrites(w, SPOOL_HDR + w->len) || !qid_is_slot(qid) ||
	    qid_tail(qid) != (QID_SLOT_FLAG | w->range->r << 10 | w->slot))
		return 0;
	w->begun = true;
	return 1;
}

static int spool_commit_write(void *wr, const char *qid, int *errnum, char *err, size_t errlen)
{
	struct spool_writer *w = wr;

	if (!w->begun)
		return spool_slot_fail(w, "group commit", EINVAL, errnum, err, errlen);
	if (spool_slot_mark(w, qid, errnum, err, errlen) < 0)
		return -1;
	/* Starts the device write only; an error shows in spool_commit_wait. */
	(void)sync_file_range(w->fd, 0, (off_t)(SPOOL_HDR + w->len), SYNC_FILE_RANGE_WRITE);
	return 0;
}

static int spool_commit_wait(void *wr, int *errnum, char *err, size_t errlen)
{
	struct spool_writer *w = wr;

	if (sync_file_range(w->fd, 0, (off_t)(SPOOL_HDR + w->len),
			    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				SYNC_FILE_RANGE_WAIT_AFTER) < 0)
		return spool_slot_fail(w, "write-out", errno, errnum, err, errlen);
	return 0;
}

static int spool_flush(void *be, int *errnum, char *err, size_t errlen)
{
	struct spool *sp = be;

	if (fdatasync(sp->dfd) == 0)
		return 0;
	spool_errnum(errnum, errno);
	snprintf(err, errlen, "%s: device flush (fdatasync): %s", sp->dir, strerror(errno));
	return -1;
}

static int spool_commit_end(void *wr, int flush_errnum, int *errnum, char *err, size_t errlen)
{
	struct spool_writer *w = wr;

	if (flush_errnum)
		return spool_slot_fail(w, "device flush", flush_errnum, errnum, err, errlen);
	atomic_fetch_add_explicit(&w->sp->overwrite_commits, 1, memory_order_relaxed);
	spool_slot_release(w);
	free(w);
	return 0;
}

/* spool_flock - flock(fd, op), again after a signal. */
static int spool_flock(int fd, int op)
{
	int rc;

	do
		rc = flock(fd, op);
	while (rc < 0 && errno == EINTR);
	return rc;
}

/*
 * spool_slot_free - the slot of qid (its file open as fd) is free again:
 * its header says so (a message over SPOOL_KEEP_BYTES is cut instead,
 * giving its space back: an empty file is a free slot).  No fsync, as for
 * the other files.  ENOENT: the slot does not hold qid.
 */
static int spool_slot_free(struct spool *sp, const char *qid, int fd, char *err, size_t errlen)
{
	uint8_t hdr[SPOOL_HDR] = SPOOL_SLOT_FREE, cur[SPOOL_HDR];
	char path[SPOOL_PATH];
	uint64_t len;
	ssize_t got;
	int rc = 0, e;

	spool_msg_path(path, qid);
	/* Not while an append is under way (spool_slot_append). */
	if (spool_flock(fd, LOCK_EX) < 0) {
		snprintf(err, errlen, "%s/%s: flock: %s", sp->dir, path, strerror(errno));
		return -1;
	}
	/* The header alone (no fstat): a message over SPOOL_KEEP_BYTES is emptied. */
	do
		got = pread(fd, cur, sizeof(cur), 0);
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		snprintf(err, errlen, "%s/%s: read: %s", sp->dir, path, strerror(errno));
		rc = -1;
	} else if (spool_header_check(cur, (size_t)got, UINT64_MAX, qid, &len, err, errlen) < 0 &&
		   errno != EBADMSG) {
		rc = -1;
	} else if (got == (ssize_t)sizeof(cur) &&
			   SPOOL_HDR + spool_slot_committed(cur) > SPOOL_KEEP_BYTES
		       ? ftruncate(fd, 0) < 0
		       : pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		snprintf(err, errlen, "%s/%s: %s", sp->dir, path, strerror(errno));
		rc = -1;
	}
	e = errno;
	spool_flock(fd, LOCK_UN);
	errno = e;
	return rc;
}

static int spool_slot_remove(struct spool *sp, const char *qid, char *err, size_t errlen)
{
	bool keep, unchecked = true;
	int fd, rc = -1;

	/* spool_slot_free checks the header: a kept descriptor unchecked first. */
	for (int pass = 0; pass < 2 && unchecked; pass++) {
		fd = spool_msg_get(sp, qid, O_RDWR, &keep, pass ? NULL : &unchecked, err, errlen);
		if (fd < 0)
			return -1;
		rc = spool_slot_free(sp, qid, fd, err, errlen);
		if (rc == 0 || !spool_msg_retry(unchecked))
			unchecked = false;
		spool_msg_done(sp, qid, fd, keep);
	}
	return rc;
}

/* spool_slot_scan - the committed slots' IDs appended to *ids. */
static void spool_slot_scan(struct spool *sp, char (**ids)[QID_SIZE], size_t *n, size_t *cap,
			    void (*bad_fn)(const char *, void *), void *arg)
{
	struct dirent *de;
	DIR *top;
	int fd = openat(sp->dfd, "slot", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || !(top = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(top))) {
		char probe[QID_SIZE], rr[4];
		DIR *sub;
		int sfd = -1;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		/* slot/RRR: the first three of a slot ID's last five characters. */
		memcpy(probe, "0000000000000000", QID_SIZE);
		if (strlen(de->d_name) == 3) {
			memcpy(probe + QID_LEN - 5, de->d_name, 3);
			if (qid_valid(probe) && qid_is_slot(probe))
				sfd = openat(dirfd(top), de->d_name,
					     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (sfd < 0 || !(sub = fdopendir(sfd))) {
			if (sfd >= 0)
				close(sfd);
			spool_report_bad(sp, bad_fn, arg, "slot", NULL, de->d_name);
			continue;
		}
		memcpy(rr, de->d_name, sizeof(rr));
		while ((de = readdir(sub))) {
			uint8_t hdr[SPOOL_HDR];
			ssize_t got = -1;
			int mfd;

			if (de->d_name[0] == '.' || strlen(de->d_name) != 2)
				continue;
			memcpy(probe + QID_LEN - 5, rr, 3);
			memcpy(probe + QID_LEN - 2, de->d_name, 3);
			if (!qid_valid(probe))
				continue;
			mfd = openat(dirfd(sub), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (mfd >= 0) {
				got = pread(mfd, hdr, sizeof(hdr), 0);
				close(mfd);
			}
			if (got != (ssize_t)sizeof(hdr) || !spool_slot_committed(hdr))
				continue; /* free, or being received */
			if (*n == *cap) {
				*cap = *cap ? 2 * *cap : 64;
				*ids = xreallocarray(*ids, *cap, sizeof(**ids));
			}
			qid_format((*ids)[(*n)++], spool_get_be64(hdr + 4), qid_tail(probe));
		}
		closedir(sub);
	}
	closedir(top);
}

/* ---- receiving ---- */

/*
 * spool_fail - drop the tmp file at once, giving its space back (a failure
 * is often ENOSPC): emptied while it still has its private name, then
 * parked in free/.  An inode with another name (linked into msg/ already)
 * is only unlinked.
 */
static void spool_fail(struct spool_writer *w)
{
	struct stat st;

	if (w->range) {
		/*
		 * A slot: its header says free already; emptied (space back at
		 * once) when big or when the failure was a full disk.
		 */
		if (w->fd >= 0 && (w->failed_enospc || w->len > SPOOL_KEEP_BYTES)) {
			(void)!ftruncate(w->fd, 0);
			w->range->durable[w->slot] = 0;
		}
		if (w->fd >= 0)
			spool_slot_release(w);
		w->failed = true;
		return;
	}
	if (w->fd >= 0) {
		if (fstat(w->fd, &st) == 0 && st.st_nlink == 1 && ftruncate(w->fd, 0) == 0) {
			char to[SPOOL_PATH];

			snprintf(to, sizeof(to), "free/%s", w->tmp + 4);
			if (renameat(w->sp->dfd, w->tmp, w->sp->dfd, to) < 0)
				unlinkat(w->sp->dfd, w->tmp, 0);
		} else {
			unlinkat(w->sp->dfd, w->tmp, 0);
		}
		close(w->fd);
		w->fd = -1;
	}
	w->failed = true;
}

static void *spool_create(void *be, char qid[QID_SIZE], int *errnum, char *err, size_t errlen)
{
	struct spool *sp = be;
	struct spool_writer *w = xcalloc(1, sizeof(*w));
	uint8_t hdr[SPOOL_HDR] = SPOOL_MAGIC;
	ssize_t n;

	w->sp = sp;
	w->fd = -1;
	if (spool_slot_claim(sp, w, qid) == 0) {
		/*
		 * The slot's header says free already (or the file is new:
		 * a short header is free too); spool_write writes the content
		 * behind it, commit the header.
		 */
		return w;
	} else if (spool_pool_claim(sp, w) < 0) {
		/* Unique per process and open; O_EXCL catches the rest. */
		for (int tries = 0; tries < 100; tries++) {
			spool_tmp_name(sp, w->tmp);
			w->fd =
			    openat(sp->dfd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (w->fd >= 0 || errno != EEXIST)
				break;
		}
		if (w->fd < 0) {
			spool_errnum(errnum, errno);
			snprintf(err, errlen, "%s/%s: %s", sp->dir, w->tmp, strerror(errno));
			free(w);
			return NULL;
		}
	}
	/* M stays 0 until commit: a torn file never looks complete. */
	do
		n = write(w->fd, hdr, sizeof(hdr));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(hdr)) {
		int e = n < 0 ? errno : ENOSPC;

		spool_errnum(errnum, e);
		snprintf(err, errlen, "%s/%s: write: %s", sp->dir, w->tmp, strerror(e));
		w->failed_enospc = e == ENOSPC || e == EDQUOT;
		spool_fail(w);
		free(w);
		return NULL;
	}
	return w;
}

static int spool_write(void *wr, const void *data, size_t len, int *errnum, char *err,
		       size_t errlen)
{
	struct spool_writer *w = wr;
	const uint8_t *p = data;

	if (w->failed) {
		spool_errnum(errnum, EIO);
		snprintf(err, errlen, "message already failed");
		return -1;
	}
	while (len > 0) {
		ssize_t n = w->range ? pwrite(w->fd, p, len, (off_t)(SPOOL_HDR + w->len))
				     : write(w->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : ENOSPC;

			spool_errnum(errnum, e);
			snprintf(err, errlen, "%s/%s: write: %s", w->sp->dir, w->tmp, strerror(e));
			w->failed_enospc = e == ENOSPC || e == EDQUOT;
			spool_fail(w);
			return -1;
		}
		p += n;
		len -= (size_t)n;
		w->len += (uint64_t)n;
	}
	return 0;
}

static void spool_abort(void *wr)
{
	struct spool_writer *w = wr;

	spool_fail(w);
	free(w);
}

/* spool_xx_index - qid's msg/XX as 0..1023. */
static size_t spool_xx_index(const char *qid)
{
	uint32_t bit;
	int word;

	spool_xx_bit(qid, &word, &bit);
	return (size_t)word * 32 + (size_t)__builtin_ctz(bit);
}

/*
 * spool_sync_dir_if_needed - make a link just made into msg/XX durable
 * where the file's fsync did not: always where a file's fsync does not
 * cover its names, elsewhere only when the directory's size differs from
 * the one this process last synced (it grew, by our link or another
 * process's).  The size is recorded only after a good fsync.
 */
static int spool_sync_dir_if_needed(struct spool *sp, const char *qid, const char *xx)
{
	size_t i = spool_xx_index(qid);
	struct stat st;

	if (!sp->fsync_names)
		return spool_sync_linked(sp, xx);
	if (fstatat(sp->dfd, xx, &st, 0) < 0)
		return -1;
	if (atomic_load_explicit(&sp->xx_size[i], memory_order_relaxed) == (int64_t)st.st_size)
		return 0;
	if (spool_sync_linked(sp, xx) < 0)
		return -1;
	atomic_store_explicit(&sp->xx_size[i], (int64_t)st.st_size, memory_order_relaxed);
	return 0;
}

/* spool_link - tmp name to msg/XX/ID, making msg/XX first if needed. */
static int spool_link(struct spool *sp, struct spool_writer *w, const char *qid, const char *msg)
{
	for (int tries = 0;; tries++) {
		if (spool_mkdir_xx(sp, qid) < 0)
			return -1;
		if (linkat(sp->dfd, w->tmp, sp->dfd, msg, 0) == 0)
			return 0;
		if (errno != ENOENT || tries > 0)
			return -1;
		/* msg/XX went away after we saw it: make it again, once. */
		spool_xx_forget(sp, qid);
	}
}

static int spool_commit(void *wr, const char *qid, int *errnum, char *err, size_t errlen)
{
	struct spool_writer *w = wr;
	struct spool *sp = w->sp;
	char msg[SPOOL_PATH], xx[SPOOL_PATH];
	uint8_t len[12];
	struct stat st;
	ssize_t n;
	int e;

	if (w->failed) {
		spool_errnum(errnum, EIO);
		snprintf(err, errlen, "message failed while being received");
		spool_abort(w);
		return -1;
	}
	if (w->range) {
		if (!qid_is_slot(qid) || qid_tail(qid) != (QID_SLOT_FLAG | w->range->r << 10 | w->slot)) {
			/* Only the ID create chose names this slot (qstore.c never retries one). */
			spool_errnum(errnum, EINVAL);
			snprintf(err, errlen, "%s: not the ID of slot %s", qid, w->tmp);
			spool_abort(w);
			return -1;
		}
		return spool_slot_commit(w, qid, errnum, err, errlen);
	}
	spool_path(msg, "msg", qid);
	snprintf(xx, sizeof(xx), "msg/%s", qid + QID_LEN - 2);
	spool_put_be32(len, spool_tag(qid));
	spool_put_be64(len + 4, w->len);
	do
		n = pwrite(w->fd, len, sizeof(len), 4);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(len)) {
		e = n < 0 ? errno : EIO;
		snprintf(err, errlen, "%s/%s: write: %s", sp->dir, w->tmp, strerror(e));
		goto fail;
	}
	/* A recycled inode: the removed message's bytes past ours go. */
	if (fstat(w->fd, &st) < 0 ||
	    ((uint64_t)st.st_size > SPOOL_HDR + w->len &&
	     ftruncate(w->fd, (off_t)(SPOOL_HDR + w->len)) < 0)) {
		e = errno;
		snprintf(err, errlen, "%s/%s: truncate: %s", sp->dir, w->tmp, strerror(e));
		goto fail;
	}
	/*
	 * Linked before the fsync: on file systems whose fsync of a file
	 * also makes its new name durable (sp->fsync_names), one fsync (one
	 * device flush) covers content and name; elsewhere msg/XX is fsync'ed
	 * after it.  The tmp name goes first, so the new name is the file's
	 * only one (ext4 without a journal syncs the directory of "any" name).
	 */
	if (spool_link(sp, w, qid, msg) < 0) {
		e = errno;
		snprintf(err, errlen, "%s/%s: link: %s", sp->dir, msg, strerror(e));
		if (e == EEXIST) {
			/* A collision: the writer stays for a retry with a new ID. */
			spool_errnum(errnum, e);
			return -1;
		}
		goto fail;
	}
	unlinkat(sp->dfd, w->tmp, 0);
	if (fsync(w->fd) < 0) {
		e = errno;
		snprintf(err, errlen, "%s/%s: fsync: %s", sp->dir, msg, strerror(e));
		goto unlink;
	}
	if (spool_sync_dir_if_needed(sp, qid, xx) < 0) {
		e = errno;
		snprintf(err, errlen, "%s/%s: fsync: %s", sp->dir, xx, strerror(e));
		goto unlink;
	}
	close(w->fd);
	free(w);
	return 0;
unlink:
	/* Back to a private name, so the failure path parks the inode. */
	if (renameat(sp->dfd, msg, sp->dfd, w->tmp) < 0)
		unlinkat(sp->dfd, msg, 0);
fail:
	spool_errnum(errnum, e);
	spool_abort(w);
	return -1;
}

/* ---- reading ---- */

static void spool_read_close(void *rd)
{
	struct spool_reader *r = rd;

	spool_msg_done(r->sp, r->qid, r->fd, r->keep);
	free(r->head);
	free(r);
}

/*
 * spool_read_once - open msg/XX/ID (or the slot) and read its first
 * SPOOL_READ_AHEAD bytes at once.  A read that comes back short has reached the end of the file
 * (a regular file's pread returns less than asked only there), so the
 * size is known without an fstat; only a file longer than the read needs
 * one, to check M against the size.
 */
static struct spool_reader *spool_read_once(struct spool *sp, const char *qid, unsigned flags,
					    bool *unchecked, int *errnum, char *err, size_t errlen)
{
	struct spool_reader *r;
	struct stat st;
	ssize_t n;
	bool keep;
	int fd, e;

	/* A slot's records are written where they belong, not at the end. */
	fd = spool_msg_get(sp, qid,
			   !(flags & QSTORE_APPEND) ? O_RDONLY
			   : qid_is_slot(qid)	    ? O_RDWR
						    : O_RDWR | O_APPEND,
			   &keep, unchecked, err, errlen);
	if (fd < 0) {
		spool_errnum(errnum, errno);
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	r->sp = sp;
	r->fd = fd;
	r->keep = keep;
	r->append = (flags & QSTORE_APPEND) != 0;
	r->slot = qid_is_slot(qid);
	r->idtime = r->slot ? qid_time_us(qid) : 0;
	memcpy(r->qid, qid, QID_SIZE);
	r->head = xmalloc(SPOOL_READ_AHEAD);
	do
		n = pread(fd, r->head, SPOOL_READ_AHEAD, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		spool_errnum(errnum, errno);
		snprintf(err, errlen, "%s: read: %s", qid, strerror(errno));
		goto fail;
	}
	r->nhead = (size_t)n;
	r->size = r->nhead;
	if (r->nhead == SPOOL_READ_AHEAD) {
		if (fstat(fd, &st) < 0) {
			spool_errnum(errnum, errno);
			snprintf(err, errlen, "%s: fstat: %s", qid, strerror(errno));
			goto fail;
		}
		r->size = (uint64_t)st.st_size;
	}
	if (spool_header_check(r->head, r->nhead, r->size, qid, &r->len, err, errlen) < 0) {
		spool_errnum(errnum, errno);
		goto fail;
	}
	return r;
fail:
	e = errno;
	spool_read_close(r);
	errno = e;
	return NULL;
}

static void *spool_read(void *be, const char *qid, unsigned flags, int *errnum, char *err,
			size_t errlen)
{
	bool unchecked = false;
	struct spool_reader *r = spool_read_once(be, qid, flags, &unchecked, errnum, err, errlen);

	/* Its header check is the kept descriptor's check too (spool_msg_get). */
	if (!r && spool_msg_retry(unchecked))
		r = spool_read_once(be, qid, flags, NULL, errnum, err, errlen);
	return r;
}

/* spool_pread - message bytes only: EOF where the control records start. */
static ssize_t spool_pread(void *rd, void *buf, size_t len, uint64_t off, char *err, size_t errlen)
{
	struct spool_reader *r = rd;
	uint8_t hdr[SPOOL_HDR];
	ssize_t n;

	if (off >= r->len) {
		/*
		 * The end: before saying so, make sure the file is still this
		 * message.  A reader that outlived the message's removal (a
		 * transport the scheduler gave up on) would otherwise pass on
		 * another message's bytes once the inode is reused.
		 */
		uint64_t mlen;
		char why[128];

		do
			n = pread(r->fd, hdr, sizeof(hdr), 0);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof(hdr) ||
		    spool_header_check(hdr, sizeof(hdr), UINT64_MAX, r->qid, &mlen, why,
				       sizeof(why)) < 0 ||
		    mlen != r->len) {
			snprintf(err, errlen, "%s: the message was removed while being read", r->qid);
			errno = ESTALE;
			return -1;
		}
		return 0;
	}
	if (len > r->len - off)
		len = (size_t)(r->len - off);
	if (SPOOL_HDR + off < r->nhead) {
		/* Read at open already. */
		if (len > r->nhead - (SPOOL_HDR + off))
			len = r->nhead - (size_t)(SPOOL_HDR + off);
		memcpy(buf, r->head + SPOOL_HDR + off, len);
		return (ssize_t)len;
	}
	do
		n = pread(r->fd, buf, len, (off_t)(SPOOL_HDR + off));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		snprintf(err, errlen, "%s: read: %s", r->qid, strerror(errno));
	} else if (n == 0 && len > 0) {
		/* Shorter than M says: cut (a big removed file is emptied). */
		snprintf(err, errlen, "%s: the message was removed while being read", r->qid);
		errno = ESTALE;
		return -1;
	}
	return n;
}

/* ---- control records ---- */

/*
 * spool_ctl_slurp - the control area of an open message (from byte off to
 * the end) into a malloc'ed buffer; NULL/0 when empty.
 */
static int spool_ctl_slurp(int fd, uint64_t off, uint8_t **data, size_t *len)
{
	size_t got = 0, cap = 0;
	uint8_t *buf = NULL;

	for (;;) {
		ssize_t n;

		if (got == cap) {
			if (cap >= SPOOL_MAX_CTL) {
				free(buf);
				errno = EFBIG;
				return -1;
			}
			cap = cap ? cap * 2 : 4096;
			buf = xrealloc(buf, cap);
		}
		n = pread(fd, buf + got, cap - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (!got) {
		free(buf);
		buf = NULL;
	}
	*data = buf;
	*len = got;
	return 0;
}

/*
 * spool_append_fd - append len bytes to the file open for appending at fd,
 * size bytes long before, and fdatasync it if sync.  -1 with errno; a
 * failed append is cut off again (no torn record left behind while we
 * can help it).
 */
static int spool_append_fd(int fd, uint64_t size, const void *data, size_t len, bool sync)
{
	const uint8_t *p = data;
	int e;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = ENOSPC;
			goto fail;
		}
		p += n;
		len -= (size_t)n;
	}
	if (sync && fdatasync(fd) < 0)
		goto fail;
	return 0;
fail:
	e = errno;
	if (ftruncate(fd, (off_t)size) == 0 && sync)
		fdatasync(fd);
	errno = e;
	return -1;
}

/*
 * Control records in a slot.  A slot file keeps its size from one message
 * to the next (a size change makes fdatasync write the inode as well: one
 * device write more per message), so past the records of its message lie
 * an older message's bytes.  A record in a slot is framed with a check:
 * its length (4 bytes, big endian), a CRC-32 (zlib's) of the ID's time
 * (8 bytes), that length and the record (4 bytes), then the record.  The
 * records end at the first frame that does not check: an older message's,
 * a torn append's, zeros.  So nothing is ever cut (qstore_ctl_repair finds
 * nothing to do), and appends go right after the last record that checks,
 * under an flock of the file, so two appenders never write over each other.
 */
#define SPOOL_FRAME 8

static uint32_t spool_frame_crc(uint64_t idtime, const uint8_t *len4, const uint8_t *rec,
				uint32_t n)
{
	uint8_t t[8];
	uLong crc;

	spool_put_be64(t, idtime);
	crc = crc32(0L, t, sizeof(t));
	crc = crc32(crc, len4, 4);
	return (uint32_t)crc32(crc, rec, n);
}

/*
 * spool_frames_walk - the frames that check at the start of area (n
 * bytes): the bytes they take.  Their records in qstore.c's framing
 * (length, record) are copied to out (room for n bytes) when it is not
 * NULL, their total in *outlen.  *more: the walk stopped because area
 * ended inside a frame that may still check when more is read.
 */
static size_t spool_frames_walk(const uint8_t *area, size_t n, uint64_t idtime, uint8_t *out,
				size_t *outlen, bool *more)
{
	size_t off = 0, o = 0;

	*more = false;
	for (;;) {
		uint32_t rlen;

		if (n - off < SPOOL_FRAME) {
			*more = true;
			break;
		}
		rlen = spool_get_be32(area + off);
		if (rlen == 0 || rlen > QSTORE_MAX_RECORD)
			break;
		if (n - off - SPOOL_FRAME < rlen) {
			*more = true;
			break;
		}
		if (spool_get_be32(area + off + 4) !=
		    spool_frame_crc(idtime, area + off, area + off + SPOOL_FRAME, rlen))
			break;
		if (out) {
			memcpy(out + o, area + off, 4);
			memcpy(out + o + 4, area + off + SPOOL_FRAME, rlen);
		}
		o += 4 + rlen;
		off += SPOOL_FRAME + rlen;
	}
	if (outlen)
		*outlen = o;
	return off;
}

/*
 * spool_frames_out - the records of the frames that check in area (n
 * bytes): a malloc'ed copy in qstore.c's framing, NULL/0 for none.
 */
static void spool_frames_out(const uint8_t *area, size_t n, uint64_t idtime, uint8_t **data,
			     size_t *len)
{
	uint8_t *buf;
	bool more;

	*data = NULL;
	*len = 0;
	if (!n)
		return;
	buf = xmalloc(n); /* a record takes less than its frame */
	spool_frames_walk(area, n, idtime, buf, len, &more);
	if (*len)
		*data = buf;
	else
		free(buf);
}

/*
 * spool_frames_make - records in qstore.c's framing (data, len) framed for
 * a slot into a malloc'ed buffer.  -1 with errno EINVAL when data is not
 * whole records.
 */
static int spool_frames_make(const uint8_t *data, size_t len, uint64_t idtime, uint8_t **out,
			     size_t *outlen)
{
	size_t off, o = 0, count = 0;
	uint8_t *buf;

	for (off = 0; off < len; count++) {
		uint32_t rlen;

		if (len - off < 4 || (rlen = spool_get_be32(data + off)) == 0 ||
		    rlen > QSTORE_MAX_RECORD || len - off - 4 < rlen) {
			errno = EINVAL;
			return -1;
		}
		off += 4 + rlen;
	}
	buf = xmalloc(len + 4 * count);
	for (off = 0; off < len;) {
		uint32_t rlen = spool_get_be32(data + off);

		memcpy(buf + o, data + off, 4);
		spool_put_be32(buf + o + 4,
			       spool_frame_crc(idtime, data + off, data + off + 4, rlen));
		memcpy(buf + o + SPOOL_FRAME, data + off + 4, rlen);
		off += 4 + rlen;
		o += SPOOL_FRAME + rlen;
	}
	*out = buf;
	*outlen = o;
	return 0;
}

/*
 * spool_slot_ctl - the control area of the slot message open at fd (its
 * records start at base): read as far as its frames check, with what an
 * older message left past them read only as far as needed to see that.
 * The records in qstore.c's framing (malloc'ed, NULL/0 for none) when
 * data is not NULL; *end: the file offset after the last frame that
 * checks.  -1 with errno (EFBIG: over SPOOL_MAX_CTL).
 */
static int spool_slot_ctl(int fd, uint64_t base, uint64_t idtime, uint8_t **data, size_t *len,
			  uint64_t *end)
{
	size_t cap = 4096, got = 0, off, olen = 0;
	uint8_t *buf = xmalloc(cap), *out = data ? xmalloc(cap) : NULL;
	bool more;

	for (;;) {
		ssize_t n = pread(fd, buf + got, cap - got, (off_t)(base + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		got += (size_t)n;
		/* Records copied out as they check (room: a record takes less than its frame). */
		off = spool_frames_walk(buf, got, idtime, out, &olen, &more);
		if (!more || n == 0)
			break;
		if (got == cap) {
			if (cap >= SPOOL_MAX_CTL) {
				errno = EFBIG;
				goto fail;
			}
			cap *= 2;
			buf = xrealloc(buf, cap);
			if (out)
				out = xrealloc(out, cap);
		}
	}
	*end = base + off;
	free(buf);
	if (data) {
		*data = olen ? out : NULL;
		*len = olen;
		if (!olen)
			free(out);
	}
	return 0;
fail:
	free(buf);
	free(out);
	return -1;
}

/* spool_pwrite_all - all of len bytes at off; -1 with errno (ENOSPC for none). */
static int spool_pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = ENOSPC;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * spool_slot_append - records (qstore.c's framing) appended to the slot
 * message open at fd (M mlen, ID time idtime) after its last frame that
 * checks, under an flock of the file; fdatasync if sync.  A failed append
 * has its first frame spoiled again.  -1 with errno.
 */
/*
 * spool_slot_holds - the slot file fd still holds the message of that
 * time and length (a reader's append comes after a remove or quarantine
 * in another process: freed, maybe a new message's already).  false with
 * errno 0 when it does not, else that of the read.
 */
static bool spool_slot_holds(int fd, uint64_t mlen, uint64_t idtime)
{
	uint8_t hdr[SPOOL_HDR];
	ssize_t n;

	do
		n = pread(fd, hdr, sizeof(hdr), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return false;
	errno = 0;
	return spool_slot_shows(hdr, (size_t)n, idtime) == mlen;
}

/*
 * spool_slot_append - frames for data after the slot message's last
 * frame that checks, under the file's flock, which spool_slot_free takes
 * too: an append never lands in a slot freed (and maybe used again) since
 * the caller opened it.
 */
static int spool_slot_append(int fd, uint64_t mlen, uint64_t idtime, const void *data, size_t len,
			     bool sync)
{
	static const uint8_t spoil[SPOOL_FRAME];
	uint8_t *frames;
	size_t flen;
	uint64_t at;
	int e = 0;

	if (spool_frames_make(data, len, idtime, &frames, &flen) < 0)
		return -1;
	if (spool_flock(fd, LOCK_EX) < 0) {
		e = errno;
		free(frames);
		errno = e;
		return -1;
	}
	if (!spool_slot_holds(fd, mlen, idtime)) {
		e = errno ? errno : ENOENT;
	} else if (spool_slot_ctl(fd, SPOOL_HDR + mlen, idtime, NULL, NULL, &at) < 0) {
		e = errno;
	} else if (spool_pwrite_all(fd, frames, flen, at) < 0 || (sync && fdatasync(fd) < 0)) {
		e = errno;
		if (pwrite(fd, spoil, sizeof(spoil), (off_t)at) == (ssize_t)sizeof(spoil) && sync)
			(void)!fdatasync(fd);
	}
	spool_flock(fd, LOCK_UN);
	free(frames);
	errno = e;
	return e ? -1 : 0;
}

/*
 * spool_slot_ctl_cut - keep the first ctl_len bytes (qstore.c's framing)
 * of the slot message's records: the frame after them is spoiled.
 */
static int spool_slot_ctl_cut(int fd, uint64_t mlen, uint64_t idtime, size_t ctl_len)
{
	static const uint8_t spoil[SPOOL_FRAME];
	uint8_t *data = NULL;
	size_t len = 0, off = 0, frames = 0;
	uint64_t end;
	int e = 0;

	if (spool_flock(fd, LOCK_EX) < 0)
		return -1;
	if (spool_slot_ctl(fd, SPOOL_HDR + mlen, idtime, &data, &len, &end) < 0) {
		e = errno;
	} else {
		while (off < len && off < ctl_len) {
			off += 4 + spool_get_be32(data + off);
			frames++;
		}
		if (off < len &&
		    (pwrite(fd, spoil, sizeof(spoil), (off_t)(SPOOL_HDR + mlen + off + 4 * frames)) !=
			 (ssize_t)sizeof(spoil) ||
		     fdatasync(fd) < 0))
			e = errno;
	}
	spool_flock(fd, LOCK_UN);
	free(data);
	errno = e;
	return e ? -1 : 0;
}

static int spool_ctl_append(void *be, const char *qid, const void *data, size_t len, bool sync,
			    char *err, size_t errlen)
{
	struct spool *sp = be;
	char msg[SPOOL_PATH];
	uint64_t mlen, size;
	bool keep;
	int fd;

	spool_msg_path(msg, qid);
	fd = spool_msg_get(sp, qid, qid_is_slot(qid) ? O_RDWR : O_RDWR | O_APPEND, &keep, NULL,
			   err, errlen);
	if (fd < 0)
		return -1;
	/* Also refuses (most of) an append racing a remove: M is 0 again. */
	if (spool_header(fd, qid, &mlen, &size, err, errlen) < 0)
		goto fail;
	if (qid_is_slot(qid) ? spool_slot_append(fd, mlen, qid_time_us(qid), data, len, sync) < 0
			     : spool_append_fd(fd, size, data, len, sync) < 0) {
		snprintf(err, errlen, "%s/%s: %s", sp->dir, msg, strerror(errno));
		goto fail;
	}
	spool_msg_done(sp, qid, fd, keep);
	return 0;
fail:
	spool_msg_done(sp, qid, fd, keep);
	return -1;
}

/*
 * spool_rd_ctl_append - spool_ctl_append through a reader opened with
 * QSTORE_APPEND: its header was checked at open, its size is known.
 */
static int spool_rd_ctl_append(void *rd, const void *data, size_t len, bool sync, char *err,
			       size_t errlen)
{
	struct spool_reader *r = rd;

	if (!r->append) {
		snprintf(err, errlen, "%s: not opened for appending", r->qid);
		errno = EBADF;
		return -1;
	}
	if (r->slot ? spool_slot_append(r->fd, r->len, r->idtime, data, len, sync) < 0
		    : spool_append_fd(r->fd, r->size, data, len, sync) < 0) {
		snprintf(err, errlen, "%s: append: %s", r->qid, strerror(errno));
		return -1;
	}
	r->size += len;
	r->appended = true;
	return 0;
}

/*
 * spool_rd_ctl_read - the control area of a reader's message as of its
 * open, plus what it appended since: from the bytes read at open as far
 * as they go (for a small message all of them), the rest from the file.
 */
static int spool_rd_ctl_read(void *rd, uint8_t **data, size_t *len, char *err, size_t errlen)
{
	struct spool_reader *r = rd;
	uint64_t off = SPOOL_HDR + r->len;
	size_t want, got = 0;
	uint8_t *buf;

	*data = NULL;
	*len = 0;
	if (r->slot) {
		uint64_t end;
		bool whole = r->nhead < SPOOL_READ_AHEAD; /* the head is the whole file */

		if (whole && !r->appended) {
			if (off < r->nhead)
				spool_frames_out(r->head + off, r->nhead - (size_t)off, r->idtime,
						 data, len);
			return 0;
		}
		/* Read again: what it appended, and what others did since. */
		if (spool_slot_ctl(r->fd, off, r->idtime, data, len, &end) < 0) {
			snprintf(err, errlen, "%s: read: %s", r->qid, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (r->size <= off)
		return 0;
	if (r->size - off > SPOOL_MAX_CTL) {
		snprintf(err, errlen, "%s: control record over %d bytes", r->qid, SPOOL_MAX_CTL);
		return -1;
	}
	want = (size_t)(r->size - off);
	buf = xmalloc(want);
	if (off < r->nhead) {
		got = r->nhead - (size_t)off < want ? r->nhead - (size_t)off : want;
		memcpy(buf, r->head + off, got);
	}
	while (got < want) {
		ssize_t n = pread(r->fd, buf + got, want - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: read: %s", r->qid, strerror(errno));
			free(buf);
			return -1;
		}
		if (n == 0)
			break; /* cut since: what is there */
		got += (size_t)n;
	}
	if (!got) {
		free(buf);
		return 0;
	}
	*data = buf;
	*len = got;
	return 0;
}

/*
 * spool_ctl_truncate - cut the control area to its first ctl_len bytes
 * (the whole records before a crash's tail); the reinjector does it at
 * start, before anything appends.
 */
static int spool_ctl_truncate(void *be, const char *qid, size_t ctl_len, char *err, size_t errlen)
{
	struct spool *sp = be;
	char msg[SPOOL_PATH];
	uint64_t mlen, size;
	int fd, rc = 0;

	spool_msg_path(msg, qid);
	if ((fd = spool_msg_open(sp, qid, O_RDWR, err, errlen)) < 0)
		return -1;
	if (spool_header(fd, qid, &mlen, &size, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	if (qid_is_slot(qid)) {
		if (spool_slot_ctl_cut(fd, mlen, qid_time_us(qid), ctl_len) < 0) {
			snprintf(err, errlen, "%s/%s: cut: %s", sp->dir, msg, strerror(errno));
			rc = -1;
		}
	} else if (size > SPOOL_HDR + mlen + ctl_len &&
	    (ftruncate(fd, (off_t)(SPOOL_HDR + mlen + ctl_len)) < 0 || fdatasync(fd) < 0)) {
		snprintf(err, errlen, "%s/%s: truncate: %s", sp->dir, msg, strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}

static int spool_ctl_read(void *be, const char *qid, uint8_t **data, size_t *len, char *err,
			  size_t errlen)
{
	struct spool *sp = be;
	char msg[SPOOL_PATH];
	uint64_t mlen, size, end;
	bool keep;
	int fd;

	*data = NULL;
	*len = 0;
	spool_msg_path(msg, qid);
	fd = spool_msg_get(sp, qid, O_RDONLY, &keep, NULL, err, errlen);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (spool_header(fd, qid, &mlen, &size, err, errlen) < 0) {
		int e = errno;

		spool_msg_done(sp, qid, fd, keep);
		/* Its file or slot holds another message now: this one is gone. */
		return e == ENOENT ? 0 : -1;
	}
	if (qid_is_slot(qid)
		? spool_slot_ctl(fd, SPOOL_HDR + mlen, qid_time_us(qid), data, len, &end) < 0
		: spool_ctl_slurp(fd, SPOOL_HDR + mlen, data, len) < 0) {
		if (errno == EFBIG)
			snprintf(err, errlen, "%s/%s: control record over %d bytes", sp->dir, msg,
				 SPOOL_MAX_CTL);
		else
			snprintf(err, errlen, "%s/%s: read: %s", sp->dir, msg, strerror(errno));
		spool_msg_done(sp, qid, fd, keep);
		return -1;
	}
	spool_msg_done(sp, qid, fd, keep);
	return 0;
}

/* ---- queue management ---- */

/*
 * spool_park - empty the file at the private name tmp (nobody else uses
 * it) and move it to free/name; an inode that has another name too (a
 * commit twin) is only unlinked.  Errors just cost the inode: false.
 */
static bool spool_park(struct spool *sp, const char *tmp, const char *name)
{
	char to[SPOOL_PATH];
	struct stat st;
	int fd;

	fd = openat(sp->dfd, tmp, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
	    (st.st_size == 0 || ftruncate(fd, 0) == 0)) {
		close(fd);
		snprintf(to, sizeof(to), "free/%s", name);
		if (renameat(sp->dfd, tmp, sp->dfd, to) == 0)
			return true;
	} else if (fd >= 0) {
		close(fd);
	}
	unlinkat(sp->dfd, tmp, 0);
	return false;
}

static int spool_remove(void *be, const char *qid, char *err, size_t errlen)
{
	struct spool *sp = be;
	char msg[SPOOL_PATH], to[SPOOL_PATH];
	struct stat st;
	bool big;

	if (qid_is_slot(qid))
		return spool_slot_remove(sp, qid, err, errlen);
	spool_path(msg, "msg", qid);
	/*
	 * A small file goes straight to free/, bytes and all: the next create
	 * overwrites them in the blocks they have (freeing blocks costs a
	 * device discard on file systems mounted so), and a late reader by ID
	 * sees the tag of another message or an unfinished header.  A big one
	 * gives its space back now, emptied under a private name (once in
	 * free/ another process may claim and fill it).  No fsync: see the top
	 * of this file.
	 */
	big = fstatat(sp->dfd, msg, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_size > SPOOL_KEEP_BYTES;
	if (big)
		spool_tmp_name(sp, to);
	else
		snprintf(to, sizeof(to), "free/%s", qid);
	if (renameat(sp->dfd, msg, sp->dfd, to) < 0) {
		spool_name_err(sp, qid, msg, "rename", errno, err, errlen);
		return -1;
	}
	/* Ours to reuse at the next create, no directory read needed. */
	if (!big || spool_park(sp, to, qid))
		spool_pool_push(sp, qid);
	return 0;
}

/*
 * spool_slot_quarantine - a copy of the slot's file into corrupt/ID (made
 * durable), then the slot is freed.  The file itself stays where it is:
 * the range's holder and readers keep it open (spool_kept_take).
 */
static int spool_slot_quarantine(struct spool *sp, const char *qid, const char *to, char *err,
				 size_t errlen)
{
	uint8_t buf[16384];
	char from[SPOOL_PATH];
	uint64_t mlen, size, off = 0;
	bool keep;
	int fd, out = -1, rc = -1;

	spool_msg_path(from, qid);
	if ((fd = spool_msg_get(sp, qid, O_RDWR, &keep, NULL, err, errlen)) < 0)
		return -1;
	if (spool_header(fd, qid, &mlen, &size, err, errlen) < 0)
		goto done;
	/* A copy a crash left before the slot was freed is made again. */
	out = openat(sp->dfd, to, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		snprintf(err, errlen, "%s/%s: %s", sp->dir, to, strerror(errno));
		goto done;
	}
	while (off < size) {
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* cut meanwhile: what there was */
		if (spool_pwrite_all(out, buf, (size_t)n, off) < 0) {
			snprintf(err, errlen, "%s/%s: write: %s", sp->dir, to, strerror(errno));
			goto fail;
		}
		off += (uint64_t)n;
	}
	if (fsync(out) < 0 || spool_fsync_dir(sp, "corrupt") < 0) {
		snprintf(err, errlen, "%s/%s: fsync: %s", sp->dir, to, strerror(errno));
		goto fail;
	}
	if (spool_slot_free(sp, qid, fd, err, errlen) < 0)
		goto fail;
	rc = 0;
	goto done;
fail:
	unlinkat(sp->dfd, to, 0);
done:
	if (out >= 0)
		close(out);
	spool_msg_done(sp, qid, fd, keep);
	return rc;
}

static int spool_quarantine(void *be, const char *qid, char *err, size_t errlen)
{
	struct spool *sp = be;
	char from[SPOOL_PATH], to[SPOOL_PATH];

	spool_msg_path(from, qid);
	snprintf(to, sizeof(to), "corrupt/%s", qid);
	if (qid_is_slot(qid))
		return spool_slot_quarantine(sp, qid, to, err, errlen);
	if (renameat(sp->dfd, from, sp->dfd, to) < 0) {
		spool_name_err(sp, qid, from, "rename", errno, err, errlen);
		return -1;
	}
	if (spool_fsync_dir(sp, "corrupt") < 0) {
		snprintf(err, errlen, "%s/corrupt: fsync: %s", sp->dir, strerror(errno));
		return -1;
	}
	return 0;
}

static int spool_qid_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool spool_is_xx(const char *name)
{
	char probe[QID_SIZE];

	if (strlen(name) != 2)
		return false;
	/* A valid two-character tail of a queue ID. */
	memcpy(probe, "00000000000000", QID_LEN - 2);
	memcpy(probe + QID_LEN - 2, name, 3);
	return qid_valid(probe);
}

static int spool_scan(void *be, int (*fn)(const char *qid, void *arg),
		      void (*bad_fn)(const char *name, void *arg), void *arg, char *err,
		      size_t errlen)
{
	struct spool *sp = be;
	char(*ids)[QID_SIZE] = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *top;
	int fd, rc = 0;

	fd = openat(sp->dfd, "msg", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(top = fdopendir(fd))) {
		snprintf(err, errlen, "%s/msg: %s", sp->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((de = readdir(top))) {
		char xx[3];
		DIR *sub;
		int sfd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		sfd = spool_is_xx(de->d_name)
			  ? openat(dirfd(top), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
			  : -1;
		if (sfd < 0 || !(sub = fdopendir(sfd))) {
			if (sfd >= 0)
				close(sfd);
			spool_report_bad(sp, bad_fn, arg, "msg", NULL, de->d_name);
			continue;
		}
		memcpy(xx, de->d_name, sizeof(xx));
		while ((de = readdir(sub))) {
			const char *name = de->d_name;

			if (!strcmp(name, ".") || !strcmp(name, ".."))
				continue;
			/* An ID outside its own XX directory is not ours either. */
			if (!qid_valid(name) || strcmp(name + QID_LEN - 2, xx) != 0) {
				spool_report_bad(sp, bad_fn, arg, "msg", xx, name);
				continue;
			}
			if (n == cap) {
				cap = cap ? 2 * cap : 64;
				ids = xreallocarray(ids, cap, sizeof(*ids));
			}
			memcpy(ids[n++], name, QID_SIZE);
		}
		closedir(sub);
	}
	closedir(top);
	spool_slot_scan(sp, &ids, &n, &cap, bad_fn, arg);
	if (n)
		qsort(ids, n, sizeof(*ids), spool_qid_cmp);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = fn(ids[i], arg);
	free(ids);
	return rc;
}

/* spool_opendir - a top-level directory for readdir, or NULL + reason. */
static DIR *spool_opendir(struct spool *sp, const char *name, char *err, size_t errlen)
{
	int fd = openat(sp->dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		snprintf(err, errlen, "%s/%s: %s", sp->dir, name, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	return d;
}

/*
 * spool_trim - free/ down to SPOOL_FREE_MAX files: the rest are unlinked,
 * giving their blocks back (a removed small file keeps them for the next
 * create).  Safe beside creates: a claim's rename of a name unlinked here
 * fails with ENOENT and takes the next one.
 */
/*
 * spool_slot_trim - give back the files of a burst: in every range no
 * process holds (its flock, taken here meanwhile), the free slots past the
 * first window (SPOOL_WINDOW) are unlinked; the first window's files stay
 * for the next holder.  A holder makes a slot's file again when it needs
 * it (spool_slot_try).  Files removed.
 */
static int spool_slot_trim(struct spool *sp)
{
	int top = openat(sp->dfd, "slot", O_RDONLY | O_DIRECTORY | O_CLOEXEC), gone = 0;
	struct dirent *de;
	DIR *d;

	if (top < 0 || !(d = fdopendir(top))) {
		if (top >= 0)
			close(top);
		return 0;
	}
	while ((de = readdir(d))) {
		char probe[QID_SIZE];
		struct dirent *se;
		DIR *rd;
		int rfd;

		if (strlen(de->d_name) != 3)
			continue;
		memcpy(probe, "0000000000000000", QID_SIZE);
		memcpy(probe + QID_LEN - 5, de->d_name, 3);
		if (!qid_valid(probe) || !qid_is_slot(probe))
			continue;
		rfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (rfd < 0)
			continue;
		/* Held (by another process, or by this one through another descriptor). */
		if (flock(rfd, LOCK_EX | LOCK_NB) < 0 || !(rd = fdopendir(rfd))) {
			close(rfd);
			continue;
		}
		while ((se = readdir(rd))) {
			uint8_t hdr[SPOOL_HDR];
			ssize_t got;
			int fd;

			if (strlen(se->d_name) != 2)
				continue;
			memcpy(probe + QID_LEN - 2, se->d_name, 3);
			if (!qid_valid(probe) || (qid_tail(probe) & (SPOOL_SLOTS - 1)) < SPOOL_WINDOW)
				continue;
			fd = openat(dirfd(rd), se->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				continue;
			got = pread(fd, hdr, sizeof(hdr), 0);
			close(fd);
			if (got < 0 || (got == (ssize_t)sizeof(hdr) && spool_slot_committed(hdr)))
				continue; /* a message waits in it */
			if (unlinkat(dirfd(rd), se->d_name, 0) == 0)
				gone++;
		}
		closedir(rd); /* and the lock */
	}
	closedir(d);
	return gone;
}

static int spool_trim(void *be, char *err, size_t errlen)
{
	struct spool *sp = be;
	struct dirent *de;
	int kept = 0, gone = 0;
	DIR *d;

	if (!(d = spool_opendir(sp, "free", err, errlen)))
		return -1;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (kept < SPOOL_FREE_MAX)
			kept++;
		else if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			gone++;
	}
	closedir(d);
	/* The names held may be gone now: read free/ again at the next create. */
	sp->npool = 0;
	sp->refill_wait = false;
	return gone + spool_slot_trim(sp);
}

/*
 * spool_sweep - tmp/ leftovers (a message cut off by a crash or a remove
 * interrupted halfway) go to free/, emptied; a twin of a committed message
 * (two links) is only unlinked.  Then free/ is trimmed to SPOOL_FREE_MAX.
 */
static int spool_sweep(void *be, char *err, size_t errlen)
{
	struct spool *sp = be;
	struct dirent *de;
	int count = 0;
	DIR *d;

	if (!(d = spool_opendir(sp, "tmp", err, errlen)))
		return -1;
	while ((de = readdir(d))) {
		char tmp[SPOOL_PATH];
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (strlen(de->d_name) < SPOOL_NAME &&
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && st.st_nlink == 1) {
			snprintf(tmp, sizeof(tmp), "tmp/%.*s", SPOOL_NAME - 1, de->d_name);
			spool_park(sp, tmp, de->d_name);
		} else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "%s/tmp/%s: unlink: %s", sp->dir, de->d_name,
				 strerror(errno));
			closedir(d);
			return -1;
		}
		count++;
	}
	closedir(d);
	if (spool_trim(sp, err, errlen) < 0)
		return -1;
	return count;
}

const struct qstore_ops qstore_spool_ops = {
    .name = "spool",
    .open = spool_open,
    .close = spool_close,
    .free_bytes = spool_free_bytes,
    .commit_mode = spool_commit_mode,
    .overwrite_commits = spool_overwrite_commits,
    .create = spool_create,
    .write = spool_write,
    .commit = spool_commit,
    .abort = spool_abort,
    .commit_begin = spool_commit_begin,
    .commit_write = spool_commit_write,
    .commit_wait = spool_commit_wait,
    .flush = spool_flush,
    .commit_end = spool_commit_end,
    .read = spool_read,
    .pread = spool_pread,
    .read_close = spool_read_close,
    .rd_ctl_read = spool_rd_ctl_read,
    .rd_ctl_append = spool_rd_ctl_append,
    .ctl_append = spool_ctl_append,
    .ctl_truncate = spool_ctl_truncate,
    .ctl_read = spool_ctl_read,
    .remove = spool_remove,
    .quarantine = spool_quarantine,
    .scan = spool_scan,
    .sweep = spool_sweep,
    .trim = spool_trim,
};
