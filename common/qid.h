/*
 * qid - queue IDs: unique across processes and restarts, sortable by time.
 *
 * A queue ID is 16 characters of Crockford base32 (0-9 A-Z without I L O U,
 * which sort in ASCII order): 11 characters of the arrival time in
 * microseconds since the epoch, then 5 of the generating process's pid,
 * or of a slot of the queue store (qstore_spool.c): a slot's 5 characters
 * hold QID_SLOT_FLAG | slot, so the first of them is G or later, which no
 * pid reaches (Linux's pid_max is at most 2^22).
 *
 *   2F4K7Q1Z9VA   0Y3KC          2F4K7Q1Z9VA   G0003
 *   time (us)     pid            time (us)     slot 3
 *
 * Uniqueness: one process never issues the same microsecond twice (it
 * steps its own clock forward when asked faster than 1 per us), and no two
 * live processes share a pid; a slot belongs to one process at a time.  A pid reused after a restart starts at a
 * later time.  The one remaining hole, the wall clock stepped backwards
 * while a pid is reused, is closed by the queue store, which creates queue
 * files exclusively and asks for a new ID on a collision.
 *
 * Lexical order is arrival order (to the microsecond), so "ls" and sorted
 * scans of the queue see oldest first.  Callers: smtpserver (commit), the
 * bounce transport, tools that validate IDs given by an operator.
 */
#ifndef ZFARM_QID_H
#define ZFARM_QID_H

#include <stdbool.h>
#include <stdint.h>

#define QID_LEN 16
#define QID_SIZE (QID_LEN + 1)

/* qid_generate - a new ID for this process, NUL-terminated in out. */
void qid_generate(char out[QID_SIZE]);
/* The tail of a slot's IDs: bit 24 set (see above), the slot in bits 0-23. */
#define QID_SLOT_FLAG (1u << 24)

/* qid_generate_slot - a new ID of this process's clock for slot (< 2^24). */
void qid_generate_slot(char out[QID_SIZE], uint32_t slot);
/* qid_is_slot - a valid ID made by qid_generate_slot. */
bool qid_is_slot(const char *qid);
/* qid_tail - the value of a valid ID's last 5 characters (pid or flagged slot). */
uint32_t qid_tail(const char *qid);
/* qid_format - the ID for a given time and pid (pure; used by tests). */
void qid_format(char out[QID_SIZE], uint64_t time_us, uint32_t pid);
/* qid_valid - true if s is exactly a well-formed queue ID. */
bool qid_valid(const char *s);
/* qid_time_us - the arrival time encoded in a valid ID. */
uint64_t qid_time_us(const char *qid);

#endif
