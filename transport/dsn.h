/*
 * dsn - build an RFC 3464 delivery status notice (a "bounce").
 *
 * Pure: no I/O but the two callbacks, no logging, no global state.  The
 * bounce transport fills a struct dsn_input from a DeliveryRequest and the
 * original's envelope, calls dsn_scan() and then dsn_write(), which
 * streams the notice into the queue:
 *
 *   Received:, Date:, From: MAILER-DAEMON@HOST, To:, Subject: (by the
 *   recipients' actions: any "failed" - non-delivery; else any "delayed" -
 *   delay; else a success report), Auto-Submitted:, Message-ID:, MIME
 *   multipart/report; report-type=delivery-status with three parts:
 *     1. text/plain: a short explanation, one "<address>: reason" per
 *        recipient;
 *     2. message/delivery-status: per-message fields, then per recipient
 *        Final-Recipient, Original-Recipient, Action, Status,
 *        Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until;
 *     3. the original: message/rfc822 (all of it) when RET is not HDRS
 *        and it is at most size_limit bytes, else text/rfc822-headers
 *        (its header block, at most DSN_HEADER_MAX bytes, whole lines).
 *
 * Invariants of the output: every line ends in CR LF (the queue's form,
 * as smtpserver stores content: CRLF, dot-unstuffed); no line of the
 * notice's own text is longer than 998 bytes; text from the input
 * (addresses, diagnostic texts, IDs) is reduced to printable ASCII, so it
 * can neither add lines nor break the MIME structure.  Lines of the
 * original are passed through as they are, with bare CR or LF made CR LF.
 * Memory is bounded: the original is read in chunks through a callback
 * and never held whole.
 *
 * Errors (a read or write callback failing) are returned as -1 with a
 * reason; the output is then incomplete and must be discarded.
 */
#ifndef ZFARM_DSN_H
#define ZFARM_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* The original's header block in a text/rfc822-headers part is cut here. */
#define DSN_HEADER_MAX (64 * 1024)
/* Diagnostic texts are cut here (bytes, after sanitising). */
#define DSN_TEXT_MAX 800
/* Addresses and other identifiers are cut here. */
#define DSN_ADDR_MAX 400

struct dsn_recipient {
	const char *address;	  /* final recipient */
	const char *orig_address; /* as the sender gave it, may be "" */
	const char *orcpt;	  /* RFC 3461 ORCPT "rfc822;addr", may be "" */
	const char *action;	  /* "failed", "delayed", "delivered", "relayed" */
	const char *status;	  /* enhanced status code, "5.1.1" */
	unsigned smtp_code;	  /* remote reply code, 0 if none */
	const char *text;	  /* remote reply text or local reason */
	time_t last_attempt;	  /* 0 if none */
};

struct dsn_input {
	const char *reporting_mta; /* myhostname */
	const char *queue_id;	   /* the original's */
	const char *new_queue_id;  /* the notice's (Message-ID, Received:), may be NULL */
	const char *sender;	   /* the original's envelope sender, "" for null */
	const char *envid;	   /* RFC 3461 ENVID, may be "" */
	const char *ret;	   /* "FULL", "HDRS" or "" */
	time_t arrival;		   /* the original's arrival, 0 if unknown */
	const char *notice_to;	   /* the notice's recipient */
	time_t retry_until;	   /* delayed recipients: the last retry, 0 if unknown */
	const struct dsn_recipient *rcpts;
	size_t n_rcpts;
	time_t now;
	const char *boundary; /* MIME boundary, must not occur in the original */
	uint64_t size_limit;  /* largest original attached whole (bounce_size_limit) */
};

/*
 * The original message, read in chunks: read returns bytes (0 at the end,
 * -1 + reason); rewind goes back to its start (0, or -1 + reason).
 */
struct dsn_original {
	ssize_t (*read)(void *arg, void *buf, size_t len, char *err, size_t errlen);
	int (*rewind)(void *arg, char *err, size_t errlen);
	void *arg;
};

/* The output: all len bytes taken, or -1 + reason. */
typedef int dsn_write_fn(void *arg, const void *data, size_t len, char *err, size_t errlen);

/* What dsn_scan() found out about the original. */
struct dsn_scan {
	bool full;	     /* attach all of it (message/rfc822) */
	bool eightbit;	     /* the attached bytes hold octets above 127 */
	size_t header_lines; /* headers only: the lines to copy */
};

/* dsn_subject - the notice's Subject: for these recipients' actions. */
const char *dsn_subject(const struct dsn_input *in);

/*
 * dsn_scan - read the original (at most max(size_limit, DSN_HEADER_MAX)
 * bytes and a chunk) to choose the third part and its encoding; rewinds
 * it.  0, or -1 + reason.
 */
int dsn_scan(const struct dsn_input *in, const struct dsn_original *orig, struct dsn_scan *scan,
	     char *err, size_t errlen);

/*
 * dsn_write - the whole notice to wr, reading the original from its
 * start (after dsn_scan) as scan says.  0, or -1 + reason.
 */
int dsn_write(const struct dsn_input *in, const struct dsn_scan *scan,
	      const struct dsn_original *orig, dsn_write_fn *wr, void *wrarg, char *err,
	      size_t errlen);

#endif
