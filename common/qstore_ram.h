/*
 * qstore_ram - the in-memory queue store backend ("ram"), for tests.
 *
 * Same semantics as the spool (qstore.h) without durability: committed
 * messages are immutable blobs in a sorted array, control records an
 * append-only byte string per ID.  Readers keep their message alive after
 * a remove, as an open file would.  The hooks below let tests provoke what
 * only a disk or a crash does to the spool: a full disk and a torn or
 * damaged control record.  They act on the most recently opened ram store
 * of the process.
 */
#ifndef ZFARM_QSTORE_RAM_H
#define ZFARM_QSTORE_RAM_H

#include <stddef.h>

#include "common/qstore.h"

extern const struct qstore_ops qstore_ram_ops;

/*
 * qstore_ram_set_capacity - bytes each ram store of this process may hold
 * (messages, messages being received, control records); beyond it writes
 * fail with ENOSPC.  0 = unlimited (the default).
 */
void qstore_ram_set_capacity(size_t bytes);
/* qstore_ram_ctl_truncate - cut the last cut bytes of qid's control record. */
int qstore_ram_ctl_truncate(const char *qid, size_t cut);
/* qstore_ram_ctl_raw - append raw bytes to qid's control record. */
int qstore_ram_ctl_raw(const char *qid, const void *data, size_t len);

#endif
