/*
 * ram_message - a queue holding one message, for the unit tests of the
 * code that reads queued messages (test_body, test_smtp_client).
 */
#ifndef ZFARM_TESTS_RAM_MESSAGE_H
#define ZFARM_TESTS_RAM_MESSAGE_H

#include "common/qid.h"
#include "common/qstore.h"

/* ram_message - a "ram" queue with one message of this content; its ID in qid. */
static inline struct qstore *ram_message(const void *content, size_t len, char qid[QID_SIZE])
{
	char err[256];
	int errnum = 0;
	struct qstore *qs = qstore_open("ram", NULL, err, sizeof(err));
	Zfarm__Envelope env = ZFARM__ENVELOPE__INIT;
	struct qstore_writer *w;

	assert_non_null(qs);
	env.sender = "s@example.test";
	w = qstore_create(qs, &env, &errnum, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(qstore_append(w, content, len, &errnum, err, sizeof(err)), 0);
	assert_int_equal(qstore_commit(&w, qid, &errnum, err, sizeof(err)), 0);
	return qs;
}

#endif
