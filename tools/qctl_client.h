/*
 * qctl_client - the client side of the scheduler's queue control sockets,
 * and the printing of what they answer (Postfix-style text and JSON).
 *
 * Callers: zfqueue(8) (tools/zfqueue.c) and mailq(1) (tools/mailq.c); both
 * stay thin and do their command lines only (zfqueue also streams a
 * message's content from the queue store itself).
 *
 * The contract (server: the scheduler's qctl module):
 *   - $run_directory/private/qctl accepts every QueueControlRequest op;
 *     $run_directory/public/showq only LIST, SHOW, SUMMARY and COUNTERS.
 *   - One connection carries requests one after another; every reply is a
 *     Frame queue_control_reply carrying the request's request_id.
 *   - LIST replies hold at most `limit` entries sorted by queue ID and say
 *     `truncated` when more follow: qctl_client_list() asks again with
 *     after = the last ID until a reply is not truncated, handing entries
 *     to a callback page by page, so memory stays bounded by one reply
 *     (at most QCTL_REPLY_MAX bytes) whatever the queue holds.
 *
 * Results are enum qctl_status, whose values are the tools' exit statuses
 * (documented in zfqueue(8)): 0 done; 1 the scheduler refused (ok=false,
 * its reason in err); 2 usage or configuration error; 3 the scheduler is
 * not running, did not answer within QCTL_TIMEOUT_MS, or answered with
 * something that is not the reply (connection then unusable).
 *
 * Text written for a terminal passes through qctl_text(): control
 * characters and invalid UTF-8 from the queue (addresses, reasons come from
 * remote peers) become '?'.  JSON strings are escaped completely (quotes,
 * backslash, every control character as \uXXXX); valid UTF-8 passes
 * through, invalid bytes become U+FFFD, so the output always parses.
 *
 * Library code in the sense of STYLE.md: reasons go into the caller's
 * buffer; nothing here exits or logs.  One exception, documented at
 * qctl_client_open(): a SIGALRM guard against a scheduler that stops
 * reading while we send.
 */
#ifndef ZFARM_TOOLS_QCTL_CLIENT_H
#define ZFARM_TOOLS_QCTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/frame.pb-c.h"
#include "proto/qfile.pb-c.h"

struct config;
struct qctl_client;

enum qctl_status {
	QCTL_OK = 0,
	QCTL_REFUSED = 1,
	QCTL_USAGE = 2,
	QCTL_UNREACHABLE = 3,
};

/* One reply's wait (and one request's send) at most this long. */
#define QCTL_TIMEOUT_MS 30000
/* Largest reply frame accepted: one LIST page, one SHOW entry. */
#define QCTL_REPLY_MAX (16u * 1024u * 1024u)
/* Queue IDs per HOLD/DELETE/... request: ~18 KB, well under any limit. */
#define QCTL_BATCH_IDS 1000

#define QCTL_SOCKET_PUBLIC  "public/showq"
#define QCTL_SOCKET_PRIVATE "private/qctl"

/* ---- configuration ---- */

/*
 * qctl_load_config - the tools' configuration: computed defaults, the -o
 * settings (overrides[0..n-1], "name=value"), then the file path, or
 * $ZFARM_CONFIG when path is NULL (neither: no file, defaults only).
 * NULL with a reason (a QCTL_USAGE error).
 */
struct config *qctl_load_config(const char *path, char *const *overrides, size_t n, char *err,
				size_t errlen);

/* ---- connection ---- */

/*
 * qctl_client_open - connect to $run_directory/public/showq, or to
 * private/qctl when privileged.  NULL with a reason and *status
 * QCTL_USAGE (bad run directory) or QCTL_UNREACHABLE (nothing listens).
 * Installs a SIGALRM handler: a send that blocks longer than
 * QCTL_TIMEOUT_MS ends the process with status 3 and a message on stderr
 * (frame_write_fd has no timeout of its own).
 */
struct qctl_client *qctl_client_open(const struct config *cfg, bool privileged,
				     enum qctl_status *status, char *err, size_t errlen);
/* qctl_client_free - close; accepts NULL, clears the pointer. */
void qctl_client_free(struct qctl_client **c);

/*
 * qctl_client_call - send req, wait for its reply.  QCTL_OK: *reply is
 * the reply frame (reply->queue_control_reply), to be released with
 * frame_free().  QCTL_REFUSED (ok=false): the scheduler's reason in err,
 * *reply as for QCTL_OK (its `affected` counts what was still done), or
 * NULL if the scheduler answered with an Error frame.  QCTL_UNREACHABLE
 * with a reason: *reply is NULL and the connection is closed.
 */
enum qctl_status qctl_client_call(struct qctl_client *c, const Zfarm__QueueControlRequest *req,
				  Zfarm__Frame **reply, char *err, size_t errlen);

/* A LIST entry, valid during the call only.  Non-zero stops the listing. */
typedef int qctl_entry_fn(const Zfarm__QueueEntry *e, void *arg);

/*
 * qctl_client_list - LIST with the filters of filter (queue_ids, channel,
 * destination, status, limit; op and after are set here), page after
 * page, fn for every entry in queue ID order.  QCTL_OK, QCTL_REFUSED or
 * QCTL_UNREACHABLE with a reason (also for a truncated page that does not
 * advance); when fn stops the walk, QCTL_OK.
 */
enum qctl_status qctl_client_list(struct qctl_client *c, const Zfarm__QueueControlRequest *filter,
				  qctl_entry_fn *fn, void *arg, char *err, size_t errlen);

/* ---- text and JSON ---- */

/* qctl_text - s for a terminal: control characters and bad UTF-8 as '?'. */
void qctl_text(FILE *out, const char *s);
/* qctl_json_string - s as a JSON string, quotes included. */
void qctl_json_string(FILE *out, const char *s);

/*
 * struct qctl_json_stream - one JSON string written in pieces (message
 * content): a UTF-8 sequence split between two pieces is kept back (at
 * most 3 bytes) and completed by the next.  begin writes the opening
 * quote, end whatever is kept back (as U+FFFD) and the closing quote.
 */
struct qctl_json_stream {
	FILE *out;
	unsigned char carry[4];
	size_t ncarry;
};
void qctl_json_stream_begin(struct qctl_json_stream *js, FILE *out);
void qctl_json_stream_write(struct qctl_json_stream *js, const void *data, size_t len);
void qctl_json_stream_end(struct qctl_json_stream *js);

/* qctl_time - "Mon Nov 23 10:00:00" (with_year: " 2026"), local time. */
void qctl_time(char *buf, size_t buflen, int64_t t, bool with_year);

/*
 * struct qctl_list_printer - prints LIST entries as they come (pass
 * qctl_list_print_entry as the qctl_entry_fn and the printer as its arg).
 * Text: mailq's layout: a header before the first entry, per entry the ID
 * with '!' (held) or '*' (a recipient active), size, arrival, sender
 * (MAILER-DAEMON for the null sender) and the recipients not yet final,
 * deferred ones grouped under their reason in parentheses; verbose lists
 * every recipient with its status.  qctl_list_end() prints the total
 * ("-- 4 Kbytes in 1 Request.") or "Mail queue is empty" (with filters:
 * "No messages match").  JSON: {"entries":[...]} with every recipient.
 */
struct qctl_list_printer {
	FILE *out;
	bool json;
	bool verbose;
	bool filtered;
	uint64_t count;
	uint64_t bytes;
};
void qctl_list_begin(struct qctl_list_printer *p, FILE *out, bool json, bool verbose,
		     bool filtered);
int qctl_list_print_entry(const Zfarm__QueueEntry *e, void *arg);
void qctl_list_end(struct qctl_list_printer *p);

/* qctl_entry_json - one entry as a JSON object (no newline). */
void qctl_entry_json(FILE *out, const Zfarm__QueueEntry *e);
/* qctl_entry_detail - one entry in full, a line per field (zfqueue show). */
void qctl_entry_detail(FILE *out, const Zfarm__QueueEntry *e);

/*
 * qctl_envelope_text / qctl_envelope_json - a stored envelope (from the
 * queue store, zfqueue show): client, HELO, protocol, sender, recipients
 * with ORCPT and NOTIFY, ENVID, RET, body type...  Text starts with a
 * "*** ENVELOPE ***" line; JSON is one object (no newline).
 */
void qctl_envelope_text(FILE *out, const Zfarm__Envelope *env);
void qctl_envelope_json(FILE *out, const Zfarm__Envelope *env);

/* qctl_print_summary - SUMMARY's destinations as a table or {"destinations":[...]}. */
void qctl_print_summary(FILE *out, const Zfarm__QueueControlReply *r, bool json);
/* qctl_print_counters - COUNTERS as a table or {"counters":[...]}. */
void qctl_print_counters(FILE *out, const Zfarm__QueueControlReply *r, bool json);

#endif
