/*
 * Tests for smtpserver/session.c: the SMTP state machine, table-driven.
 *
 * Each row is one real TCP session on 127.0.0.1 against session_start()
 * in this process: the test writes the row's client bytes (all at once, so
 * everything is pipelined, which is the hardest case for ordering), runs
 * the event loop until the server closed or the expected replies are in,
 * and compares the final reply lines (the last line of each reply) with
 * the row's list, then counts the messages in the ram queue store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Rows leave trailing fields out on purpose (zero). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/qstore.h"
#include "common/qstore_ram.h"
#include <crypt.h>

#include "smtpserver/auth.h"
#include "smtpserver/committer.h"
#include "smtpserver/session.h"
#include "smtpserver/smtpd_config.h"
#include "tests/common/evtest.h"

/* clang-format off */

struct row {
	const char *name;
	const char *conf;   /* extra config lines */
	const char *input;  /* what the client sends, all at once */
	size_t len;         /* 0: strlen(input) */
	const char *want;   /* final reply lines, "|"-separated prefixes */
	int msgs;           /* messages committed */
	size_t capacity;    /* ram store bytes (a small disk); 0: unlimited */
	bool auth;          /* a password file with alice:secret (smtpd_sasl_path) */
	const char *listener; /* NULL: "smtp" */
};

#define HELLO "EHLO client.test\r\n"
#define ENV "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@localhost>\r\n"
#define OKMSG "220|250|250 2.1.0|250 2.1.5|354|250 2.0.0 Ok: queued as"

static const struct row rows[] = {
	/* the basic transaction and the sequence rules */
	{ "one message", "", HELLO ENV "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n", 0,
	  OKMSG "|221 2.0.0", 1 },
	{ "HELO then MAIL", "", "HELO client.test\r\n" ENV "DATA\r\nhi\r\n.\r\nQUIT\r\n", 0,
	  OKMSG "|221", 1 },
	{ "MAIL without HELO allowed", "", ENV "DATA\r\nhi\r\n.\r\nQUIT\r\n", 0,
	  "220|250 2.1.0|250 2.1.5|354|250 2.0.0|221", 1 },
	{ "helo required", "smtpd_helo_required = yes\n", ENV "QUIT\r\n", 0,
	  "220|503 5.5.1 Error: send HELO/EHLO first|503 5.5.1 Error: need MAIL|221", 0 },
	{ "RCPT before MAIL", "", HELLO "RCPT TO:<b@localhost>\r\nQUIT\r\n", 0,
	  "220|250|503 5.5.1 Error: need MAIL command|221", 0 },
	{ "DATA before RCPT", "", HELLO "MAIL FROM:<a@example.test>\r\nDATA\r\nQUIT\r\n", 0,
	  "220|250|250|503 5.5.1 Error: need RCPT command|221", 0 },
	{ "nested MAIL", "", HELLO ENV "MAIL FROM:<c@example.test>\r\nQUIT\r\n", 0,
	  "220|250|250|250|503 5.5.1 Error: nested MAIL command|221", 0 },
	{ "RSET clears the transaction", "", HELLO ENV "RSET\r\nDATA\r\nQUIT\r\n", 0,
	  "220|250|250|250|250 2.0.0|503 5.5.1 Error: need MAIL|221", 0 },
	{ "EHLO clears the transaction", "", HELLO ENV HELLO "DATA\r\nQUIT\r\n", 0,
	  "220|250|250|250|250|503 5.5.1|221", 0 },
	{ "null sender", "", HELLO "MAIL FROM:<>\r\nRCPT TO:<b@localhost>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n", 0,
	  OKMSG "|221", 1 },
	{ "two messages pipelined", "",
	  HELLO ENV "DATA\r\none\r\n.\r\n" ENV "DATA\r\ntwo\r\n.\r\nQUIT\r\n", 0,
	  OKMSG "|250 2.1.0|250 2.1.5|354|250 2.0.0 Ok: queued as|221", 2 },
	{ "NOOP HELP VRFY", "", HELLO "NOOP\r\nHELP\r\nVRFY bob\r\nQUIT\r\n", 0,
	  "220|250|250 2.0.0 Ok|214 2.0.0|252 2.0.0|221", 0 },
	{ "no certificate, no auth backend", "", HELLO "STARTTLS\r\nAUTH PLAIN\r\nQUIT\r\n", 0,
	  "220|250|502 5.5.1|503 5.5.1 Error: authentication not enabled|221", 0 },
	{ "unknown command", "", "FOO bar\r\nQUIT\r\n", 0,
	  "220|500 5.5.2 Error: command not recognized|221", 0 },
	{ "enhanced codes off", "smtpd_discard_ehlo_keywords = enhancedstatuscodes\n",
	  "FOO\r\nQUIT\r\n", 0, "220|500 Error: command not recognized|221 Bye", 0 },

	/* command line hygiene */
	{ "bare LF ends no command", "", "NOOP\nQUIT\r\n", 0,
	  "220|501 5.5.2 Error: bare <LF>|221", 0 },
	{ "CR inside a command", "", "NOOP a\rb\r\nQUIT\r\n", 0, "220|501 5.5.2|221", 0 },
	{ "NUL inside a command", "", "NOOP a\0b\r\nQUIT\r\n", sizeof("NOOP a\0b\r\nQUIT\r\n") - 1,
	  "220|501 5.5.2|221", 0 },
	{ "line at the limit", "smtpd_command_line_limit = 512\n",
	  "NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nQUIT\r\n",
	  0, "220|250 2.0.0|221", 0 },
	{ "line over the limit", "smtpd_command_line_limit = 512\n",
	  "NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nQUIT\r\n",
	  0, "220|500 5.5.2 Error: line too long|221", 0 },

	/* error and junk limits */
	{ "hard error limit", "smtpd_hard_error_limit = 3\n", "FOO\r\nBAR\r\nBAZ\r\nQUIT\r\n", 0,
	  "220|500|500|500|421 4.7.0", 0 },
	{ "junk limit", "smtpd_junk_command_limit = 2\nsmtpd_hard_error_limit = 2\n",
	  "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nQUIT\r\n", 0, "220|250|250|250|250|421 4.7.0", 0 },

	/* limits */
	{ "SIZE over the limit", "message_size_limit = 1000\n",
	  HELLO "MAIL FROM:<a@example.test> SIZE=1001\r\nQUIT\r\n", 0, "220|250|552 5.3.4|221", 0 },
	{ "SIZE at the limit", "message_size_limit = 1000\n",
	  HELLO "MAIL FROM:<a@example.test> SIZE=1000\r\nQUIT\r\n", 0, "220|250|250 2.1.0|221", 0 },
	{ "body over the limit", "message_size_limit = 10\n",
	  HELLO ENV "DATA\r\n0123456789\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|354|552 5.3.4 Message size exceeds fixed limit|221", 0 },
	{ "body at the limit", "message_size_limit = 12\n",
	  HELLO ENV "DATA\r\n0123456789\r\n.\r\nQUIT\r\n", 0, OKMSG "|221", 1 },
	{ "recipient limit", "smtpd_recipient_limit = 2\n",
	  HELLO "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@localhost>\r\nRCPT TO:<c@localhost>\r\n"
	  "RCPT TO:<d@localhost>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|250|452 4.5.3 Error: too many recipients|354|250 2.0.0|221", 1 },
	{ "data line limit", "smtpd_data_line_limit = 5\n",
	  HELLO ENV "DATA\r\n123456\r\n.\r\nQUIT\r\n", 0, "220|250|250|250|354|550 5.6.0|221", 0 },
	{ "header size limit", "header_size_limit = 20\n",
	  HELLO ENV "DATA\r\nSubject: 0123456789abc\r\n\r\nx\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|354|552 5.3.4 Message header|221", 0 },
	{ "hop count", "hopcount_limit = 2\n",
	  HELLO ENV "DATA\r\nReceived: a\r\nReceived: b\r\nReceived: c\r\n\r\nx\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|354|554 5.4.0 Too many hops|221", 0 },

	/* smuggling: only CR LF . CR LF ends DATA; no smuggled command is answered */
	{ "smuggle LF.LF", "",
	  HELLO ENV "DATA\r\nx\n.\nMAIL FROM:<e@x.test>\r\nRCPT TO:<v@localhost>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|354|550 5.6.0 Message contains a bare LF|221", 0 },
	{ "smuggle LF.CRLF", "",
	  HELLO ENV "DATA\r\nx\n.\r\nMAIL FROM:<e@x.test>\r\nRCPT TO:<v@localhost>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|354|550 5.6.0|221", 0 },
	{ "smuggle CR.CRLF", "",
	  HELLO ENV "DATA\r\nx\r.\r\nMAIL FROM:<e@x.test>\r\nRCPT TO:<v@localhost>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|354|550 5.6.0 Message contains a bare CR|221", 0 },
	{ "smuggle CRLF.LF", "",
	  HELLO ENV "DATA\r\nx\r\n.\nMAIL FROM:<e@x.test>\r\nRCPT TO:<v@localhost>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|354|550 5.6.0|221", 0 },
	{ "smuggle NUL", "",
	  HELLO ENV "DATA\r\nx\r\n.\0\r\nMAIL FROM:<e@x.test>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n",
	  sizeof(HELLO ENV "DATA\r\nx\r\n.\0\r\nMAIL FROM:<e@x.test>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n") - 1,
	  "220|250|250|250|354|550 5.6.0 Message contains a NUL|221", 0 },
	{ "dot-stuffed line is content", "",
	  HELLO ENV "DATA\r\n..\r\n.x\r\n.\r\nQUIT\r\n", 0, OKMSG "|221", 1 },

	/* BDAT */
	{ "BDAT two chunks", "",
	  HELLO ENV "BDAT 4\r\nab\r\nBDAT 4 LAST\r\ncd\r\nQUIT\r\n", 0,
	  "220|250|250|250|250 2.0.0 Ok: 4 octets|250 2.0.0 Ok: queued as|221", 1 },
	{ "BDAT chunks split CR LF", "",
	  HELLO ENV "BDAT 3\r\nab\rBDAT 1\r\n\nBDAT 0 LAST\r\nQUIT\r\n", 0,
	  "220|250|250|250|250 2.0.0 Ok: 3 octets|250 2.0.0 Ok: 4 octets|250 2.0.0 Ok: queued as|221", 1 },
	{ "BDAT without MAIL eats its chunk", "",
	  HELLO "BDAT 23\r\nQUIT\r\nMAIL FROM:<x@y>\r\nNOOP\r\nQUIT\r\n", 0,
	  "220|250|503 5.5.1 Error: need MAIL command|250 2.0.0|221", 0 },
	{ "BDAT then DATA", "",
	  HELLO ENV "BDAT 4\r\nab\r\nDATA\r\nRSET\r\nQUIT\r\n", 0,
	  "220|250|250|250|250 2.0.0 Ok: 4 octets|503 5.5.1 Error: DATA after BDAT|250|221", 0 },
	{ "BDAT over the size limit", "message_size_limit = 5\n",
	  HELLO ENV "BDAT 6\r\n123456BDAT 2 LAST\r\nabRSET\r\nQUIT\r\n", 0,
	  "220|250|250|250|552 5.3.4|503 5.5.1|250|221", 0 },
	{ "BDAT LAST adds the final CR LF", "", HELLO ENV "BDAT 3 LAST\r\nabcQUIT\r\n", 0,
	  "220|250|250|250|250 2.0.0 Ok: queued as|221", 1 },

	/* relay control (127.0.0.1 untrusted unless in mynetworks) */
	{ "relay denied", "mynetworks = 10.0.0.0/8\n",
	  HELLO "MAIL FROM:<a@example.test>\r\nRCPT TO:<u@ext.test>\r\nRCPT TO:<u%ext.test@localhost>\r\n"
	  "RCPT TO:<ext.test!u@localhost>\r\nRCPT TO:<\"u@ext.test\"@localhost>\r\n"
	  "RCPT TO:<@localhost:u@ext.test>\r\nRCPT TO:<u@[192.0.2.1]>\r\nRCPT TO:<u@localhost>\r\n"
	  "RCPT TO:<postmaster>\r\nQUIT\r\n", 0,
	  "220|250|250|554 5.7.1 <u@ext.test>: Relay access denied|554 5.7.1|554 5.7.1|554 5.7.1|"
	  "554 5.7.1|554 5.7.1|250 2.1.5|250 2.1.5|221", 0 },
	{ "relay for mynetworks", "mynetworks = 127.0.0.0/8\n",
	  HELLO "MAIL FROM:<a@example.test>\r\nRCPT TO:<u@ext.test>\r\nRCPT TO:<u%ext.test@localhost>\r\nQUIT\r\n", 0,
	  "220|250|250|250 2.1.5|250 2.1.5|221", 0 },
	{ "relay_domains", "mynetworks = 10.0.0.0/8\nrelay_domains = ext.test\n",
	  HELLO "MAIL FROM:<a@example.test>\r\nRCPT TO:<u@ext.test>\r\nQUIT\r\n", 0,
	  "220|250|250|250 2.1.5|221", 0 },

	/* ESMTP parameters */
	{ "DSN parameters", "",
	  HELLO "MAIL FROM:<a@example.test> RET=HDRS ENVID=abc+2Bd\r\n"
	  "RCPT TO:<b@localhost> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@localhost\r\nDATA\r\nx\r\n.\r\nQUIT\r\n", 0,
	  OKMSG "|221", 1 },
	{ "bad NOTIFY", "", HELLO "MAIL FROM:<a@example.test>\r\nRCPT TO:<b@localhost> NOTIFY=BOGUS\r\nQUIT\r\n", 0,
	  "220|250|250|501 5.5.4|221", 0 },
	{ "ESMTP parameter after HELO", "", "HELO c.test\r\nMAIL FROM:<a@example.test> SIZE=10\r\nQUIT\r\n", 0,
	  "220|250|555 5.5.4|221", 0 },
	{ "DSN discarded", "smtpd_discard_ehlo_keywords = dsn\n",
	  HELLO "MAIL FROM:<a@example.test> RET=HDRS\r\nQUIT\r\n", 0, "220|250|555 5.5.4|221", 0 },
	{ "queue_minfree", "queue_minfree = 2m\n", HELLO "MAIL FROM:<a@example.test>\r\nQUIT\r\n", 0,
	  "220|250|452 4.3.1 Insufficient system storage|221", 0, 1024 * 1024 },
	{ "queue_minfree room", "queue_minfree = 1m\n", HELLO "MAIL FROM:<a@example.test>\r\nQUIT\r\n", 0,
	  "220|250|250 2.1.0|221", 0, 3 * 1024 * 1024 },
	{ "SIZE does not fit 1.5 times", "queue_minfree = 1m\n",
	  HELLO "MAIL FROM:<a@example.test> SIZE=1500000\r\nQUIT\r\n", 0,
	  "220|250|452 4.3.1|221", 0, 3 * 1024 * 1024 },
	{ "disk full in DATA", "queue_minfree = 0\n",
	  HELLO ENV "DATA\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890\r\n"
	  ".\r\n" ENV "DATA\r\nx\r\n.\r\nQUIT\r\n", 0,
	  "220|250|250|250|354|452 4.3.1 Insufficient system storage|250|250|354|250 2.0.0 Ok: queued|221", 1,
	  400 },

	/* AUTH (RFC 4954) in clear (smtpd_tls_auth_only = no; there is no TLS here) */
#define AUTHCONF "smtpd_tls_auth_only = no\nsmtpd_sasl_auth_enable = yes\n" \
	"smtpd_sasl_failure_delay = 0\nmynetworks = 10.0.0.0/8\n"
#define PLAIN_OK "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"   /* \0alice\0secret */
#define PLAIN_BAD "AUTH PLAIN AGFsaWNlAHdyb25n\r\n"      /* \0alice\0wrong */
#define REMOTE "MAIL FROM:<a@example.test>\r\nRCPT TO:<u@ext.test>\r\n"
	{ "AUTH PLAIN permits relaying", AUTHCONF,
	  HELLO PLAIN_OK REMOTE "DATA\r\nx\r\n.\r\nQUIT\r\n", 0,
	  "220|250|235 2.7.0 Authentication successful|250 2.1.0|250 2.1.5|354|250 2.0.0|221", 1, 0,
	  true },
	{ "relay refused without AUTH", AUTHCONF, HELLO REMOTE "QUIT\r\n", 0,
	  "220|250|250 2.1.0|554 5.7.1 <u@ext.test>: Relay access denied|221", 0, 0, true },
	{ "AUTH PLAIN wrong password", AUTHCONF, HELLO PLAIN_BAD REMOTE "QUIT\r\n", 0,
	  "220|250|535 5.7.8 Authentication credentials invalid|250 2.1.0|554 5.7.1|221", 0, 0, true },
	{ "AUTH PLAIN unknown user", AUTHCONF, HELLO "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\nQUIT\r\n", 0,
	  "220|250|535 5.7.8 Authentication credentials invalid|221", 0, 0, true },
	{ "AUTH PLAIN with a 334 round", AUTHCONF,
	  HELLO "AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nQUIT\r\n", 0, "220|250|334 |235 2.7.0|221", 0, 0,
	  true },
	{ "AUTH PLAIN authzid = user", AUTHCONF,
	  HELLO "AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\nQUIT\r\n", 0, "220|250|235 2.7.0|221", 0, 0,
	  true },
	{ "AUTH PLAIN for someone else", AUTHCONF,
	  HELLO "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\nQUIT\r\n", 0, "220|250|535 5.7.8|221", 0, 0,
	  true },
	{ "AUTH LOGIN", AUTHCONF, HELLO "AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nQUIT\r\n", 0,
	  "220|250|334 VXNlcm5hbWU6|334 UGFzc3dvcmQ6|235 2.7.0|221", 0, 0, true },
	{ "AUTH LOGIN initial response", AUTHCONF, HELLO "AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nQUIT\r\n",
	  0, "220|250|334 UGFzc3dvcmQ6|235 2.7.0|221", 0, 0, true },
	{ "AUTH cancelled", AUTHCONF, HELLO "AUTH LOGIN\r\n*\r\nNOOP\r\nQUIT\r\n", 0,
	  "220|250|334 VXNlcm5hbWU6|501 5.7.0 Authentication aborted|250 2.0.0|221", 0, 0, true },
	{ "AUTH garbage base64", AUTHCONF, HELLO "AUTH PLAIN\r\n!!!!\r\nAUTH PLAIN a=b=\r\nNOOP\r\nQUIT\r\n",
	  0, "220|250|334 |501 5.5.2 Cannot decode response|501 5.5.4|250 2.0.0|221", 0, 0, true },
	{ "AUTH empty response", AUTHCONF, HELLO "AUTH PLAIN\r\n\r\nAUTH PLAIN =\r\nQUIT\r\n", 0,
	  "220|250|334 |535 5.7.8|535 5.7.8|221", 0, 0, true },
	{ "AUTH unknown mechanism", AUTHCONF, HELLO "AUTH CRAM-MD5\r\nQUIT\r\n", 0,
	  "220|250|504 5.5.4 Unsupported authentication mechanism|221", 0, 0, true },
	{ "AUTH before EHLO", AUTHCONF, PLAIN_OK "HELO c.test\r\n" PLAIN_OK "QUIT\r\n", 0,
	  "220|503 5.5.1 Error: send EHLO first|250|503 5.5.1 Error: send EHLO first|221", 0, 0, true },
	{ "AUTH twice", AUTHCONF, HELLO PLAIN_OK PLAIN_OK "QUIT\r\n", 0,
	  "220|250|235|503 5.5.1 Error: already authenticated|221", 0, 0, true },
	{ "AUTH inside a transaction", AUTHCONF, HELLO "MAIL FROM:<a@example.test>\r\n" PLAIN_OK "QUIT\r\n",
	  0, "220|250|250|503 5.5.1 Error: MAIL transaction in progress|221", 0, 0, true },
	{ "AUTH failures: 421 at the limit", AUTHCONF "smtpd_sasl_failure_limit = 2\n",
	  HELLO PLAIN_BAD PLAIN_BAD PLAIN_OK "QUIT\r\n", 0,
	  "220|250|535 5.7.8|535 5.7.8|421 4.7.0 mx.test Error: too many authentication failures", 0,
	  0, true },
	{ "AUTH failures count as errors", AUTHCONF "smtpd_hard_error_limit = 2\n",
	  HELLO PLAIN_BAD PLAIN_BAD "QUIT\r\n", 0, "220|250|535 5.7.8|535 5.7.8|421 4.7.0 mx.test Error: too many errors",
	  0, 0, true },
	{ "AUTH not offered in clear by default", "smtpd_sasl_auth_enable = yes\n",
	  HELLO PLAIN_OK "QUIT\r\n", 0, "220|250|503 5.5.1 Error: authentication not enabled|221", 0, 0,
	  true },
	{ "AUTH not enabled on port 25", "smtpd_tls_auth_only = no\n", HELLO PLAIN_OK "QUIT\r\n", 0,
	  "220|250|503 5.5.1 Error: authentication not enabled|221", 0, 0, true },
	{ "AUTH= kept or dropped, parsed strictly", AUTHCONF,
	  HELLO "MAIL FROM:<a@example.test> AUTH=<>\r\nRSET\r\nMAIL FROM:<a@example.test> AUTH=a+zz\r\n"
	  PLAIN_OK "MAIL FROM:<a@example.test> AUTH=a+2Bb@example.test\r\nQUIT\r\n", 0,
	  "220|250|250 2.1.0|250|501 5.5.4|235|250 2.1.0|221", 0, 0, true },
	{ "AUTH= unknown without AUTH", "", HELLO "MAIL FROM:<a@example.test> AUTH=<>\r\nQUIT\r\n", 0,
	  "220|250|555 5.5.4|221", 0 },
	{ "submission: AUTH before MAIL", "smtpd_tls_auth_only = no\nsmtpd_sasl_failure_delay = 0\n",
	  HELLO "MAIL FROM:<a@example.test>\r\n" PLAIN_OK ENV "DATA\r\nx\r\n.\r\nQUIT\r\n", 0,
	  "220|250|530 5.7.0 Authentication required|235|250 2.1.0|250 2.1.5|354|250 2.0.0|221", 1, 0,
	  true, "submission" },
	{ "submission without a backend", "", HELLO "MAIL FROM:<a@example.test>\r\nQUIT\r\n", 0,
	  "220|250|530 5.7.0 Authentication required|221", 0, 0, false, "submission" },
	{ "implicit TLS listener without a certificate", "", "", 0, "", 0, 0, false, "submissions" },
};

/* clang-format on */

/* ---- harness ---- */

struct harness {
	char passwd[64];
	struct event_base *base;
	struct config *cfg;
	struct smtpd_config sc;
	struct session_env env;
	int ended;
	int sfd; /* the server's end, the session's */
};

static void on_end(void *arg)
{
	((struct harness *)arg)->ended++;
}

static int count_fn(const char *qid, void *arg)
{
	(void)qid;
	(*(int *)arg)++;
	return 0;
}

static int tcp_pair(int *client, int *server)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
	*client = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(*client, (struct sockaddr *)&sa, sizeof(sa)), 0);
	*server = accept(l, NULL, NULL);
	close(l);
	assert_true(*server >= 0);
	fcntl(*server, F_SETFL, O_NONBLOCK);
	fcntl(*client, F_SETFL, O_NONBLOCK);
	return 0;
}

/* The final lines of the replies in buf (lines "NNN text", not "NNN-"). */
static size_t final_lines(const char *buf, char lines[][256], size_t max)
{
	size_t n = 0;
	const char *p = buf, *e;

	while ((e = strstr(p, "\r\n")) && n < max) {
		if (e - p >= 4 && p[3] == ' ')
			snprintf(lines[n++], 256, "%.*s", (int)(e - p), p);
		p = e + 2;
	}
	return n;
}

/*
 * harness_open - a session of r's config on a fresh TCP pair (or, with
 * local, a unix socket pair); the client end in *c.
 */
static void harness_open(struct harness *hp, const struct row *r, int *c, bool local)
{
	struct harness h = {0};
	char err[512], conf[1024];
	int s;

	h.base = event_base_new();
	h.cfg = config_new();
	if (r->auth) {
		/* alice:secret, SHA-512 crypt with a fixed salt */
		struct crypt_data cd = {0};
		int fd;

		snprintf(h.passwd, sizeof(h.passwd), "/tmp/zfarm-test-passwd-XXXXXX");
		fd = mkstemp(h.passwd);
		assert_true(fd >= 0);
		dprintf(fd, "# test users\nalice:%s\n", crypt_r("secret", "$6$testsalt$", &cd));
		close(fd);
	}
	snprintf(conf, sizeof(conf),
		 "myhostname = mx.test\nmydestination = localhost\nqueue_store = ram\n"
		 "router_endpoint = none\nrun_directory = /nonexistent\n%s%s%s%s",
		 r->conf, r->auth ? "smtpd_sasl_path = " : "", r->auth ? h.passwd : "",
		 r->auth ? "\n" : "");
	assert_int_equal(config_load_string(h.cfg, conf, r->name, err, sizeof(err)), 0);
	if (smtpd_config_load(&h.sc, h.cfg, NULL, err, sizeof(err)) < 0)
		fail_msg("%s: config: %s", r->name, err);
	if (r->auth) {
		h.env.auth = auth_backend_new(h.base, "passwd-file", h.passwd, err, sizeof(err));
		if (!h.env.auth)
			fail_msg("%s: auth: %s", r->name, err);
	}
	h.env.base = h.base;
	h.env.cfg = &h.sc;
	qstore_ram_set_capacity(r->capacity);
	h.env.qs = qstore_open("ram", NULL, err, sizeof(err));
	assert_non_null(h.env.qs);
	h.env.committer = committer_new(h.base, 0, err, sizeof(err));
	assert_non_null(h.env.committer);
	*hp = h;
	hp->env.session_end = on_end;
	hp->env.arg = hp;
	if (local) {
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
		*c = sv[0];
		s = sv[1];
	} else {
		tcp_pair(c, &s);
	}
	hp->sfd = s;
	session_start(&hp->env, s, r->listener ? r->listener : "smtp");
}

/* harness_close - close the client end c, wait for the session to end, free all. */
static void harness_close(struct harness *h, const struct row *r, int c)
{
	uint64_t deadline = clock_mono_ms() + 2000;

	close(c);
	/* the session notices the close and ends */
	while (h->ended == 0 && clock_mono_ms() < deadline)
		event_base_loop(h->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(h->ended, 1);
	committer_free(&h->env.committer);
	auth_backend_free(&h->env.auth);
	if (r->auth)
		unlink(h->passwd);
	qstore_close(&h->env.qs);
	qstore_ram_set_capacity(0);
	smtpd_config_release(&h->sc);
	config_free(&h->cfg);
	event_base_free(h->base);
}

static void run_row(const struct row *r)
{
	struct harness h;
	char err[512], buf[65536], lines[64][256], want[2048];
	size_t len = r->len ? r->len : strlen(r->input), sent = 0, got = 0, nl, nw = 0;
	int c, msgs = 0;
	uint64_t deadline = clock_mono_ms() + 5000;
	bool eof = false;
	char *tok, *save;

	harness_open(&h, r, &c, false);

	snprintf(want, sizeof(want), "%s", r->want);
	while (!eof && clock_mono_ms() < deadline) {
		ssize_t k;

		if (sent < len) {
			k = write(c, r->input + sent, len - sent);
			if (k > 0)
				sent += (size_t)k;
		}
		event_base_loop(h.base, EVLOOP_NONBLOCK);
		while ((k = read(c, buf + got, sizeof(buf) - 1 - got)) > 0)
			got += (size_t)k;
		if (k == 0)
			eof = true;
		buf[got] = '\0';
		if (!eof) {
			struct pollfd p = {c, POLLIN, 0};

			poll(&p, 1, 1);
		}
	}
	nl = final_lines(buf, lines, 64);
	for (tok = strtok_r(want, "|", &save); tok; tok = strtok_r(NULL, "|", &save), nw++) {
		if (nw >= nl)
			fail_msg("%s: reply %zu: got nothing, want \"%s\"\nall:\n%s", r->name, nw + 1,
				 tok, buf);
		if (strncmp(lines[nw], tok, strlen(tok)) != 0)
			fail_msg("%s: reply %zu: got \"%s\", want \"%s\"\nall:\n%s", r->name, nw + 1,
				 lines[nw], tok, buf);
	}
	if (r->want[0] && nw != nl)
		fail_msg("%s: got %zu replies, want %zu\nall:\n%s", r->name, nl, nw, buf);
	if (r->want[0] && !eof)
		fail_msg("%s: the server did not close\n%s", r->name, buf);
	assert_int_equal(qstore_scan(h.env.qs, count_fn, NULL, &msgs, err, sizeof(err)), 0);
	if (r->want[0] && msgs != r->msgs)
		fail_msg("%s: %d messages queued, want %d", r->name, msgs, r->msgs);
	harness_close(&h, r, c);
}

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		run_row(&rows[i]);
}

/* An AUTH response line over SASL_LINE_MAX (12288) ends the exchange; the session goes on. */
static void test_auth_long_line(void **state)
{
	static const char head[] = HELLO "AUTH PLAIN\r\n";
	static const char tail[] = "\r\nNOOP\r\n" PLAIN_OK "QUIT\r\n";
	size_t n = 20000, len = strlen(head) + n + strlen(tail);
	char *in = malloc(len + 1);
	struct row r = {"overlong AUTH response", AUTHCONF, in, len,
			"220|250|334 |500 5.5.6 Authentication Exchange line is too long|250 2.0.0|"
			"235 2.7.0|221",
			0, 0, true, NULL};

	(void)state;
	memcpy(in, head, strlen(head));
	memset(in + strlen(head), 'A', n);
	memcpy(in + strlen(head) + n, tail, strlen(tail) + 1);
	run_row(&r);
	/* just under the limit: decoded, not credentials (no NULs) */
	n = 12284;
	len = strlen(head) + n + strlen(tail);
	memset(in + strlen(head), 'A', n);
	memcpy(in + strlen(head) + n, tail, strlen(tail) + 1);
	r.len = len;
	r.want = "220|250|334 |535 5.7.8|250 2.0.0|235 2.7.0|221";
	run_row(&r);
	free(in);
}

/*
 * A reply leaves in the loop turn that made it, and a client that reads
 * costs the session no registration for writability: one read event is
 * all it holds with the base.
 */
static void test_replies_in_the_turn(void **state)
{
	static const char in[] = HELLO "NOOP\r\n";
	struct row r = {"replies in the turn", "", in};
	struct harness h;
	struct pollfd p;
	char buf[4096];
	ssize_t k;
	size_t got = 0;
	int c, base_events;

	(void)state;
	harness_open(&h, &r, &c, false);
	/* What the base holds besides the session (the committer's wakeup, if any). */
	base_events = evtest_registered(h.base) - 1;
	assert_int_equal(write(c, in, strlen(in)), (ssize_t)strlen(in));
	/* The client's bytes are on the server's socket before the turn starts. */
	p = (struct pollfd){h.sfd, POLLIN, 0};
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(event_base_loop(h.base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
	/* The session's read event only: no write event waits. */
	assert_int_equal(evtest_registered(h.base), base_events + 1);
	while ((k = read(c, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)k;
	buf[got] = '\0';
	if (!strstr(buf, "220 ") || !strstr(buf, "250 HELP\r\n") || !strstr(buf, "250 2.0.0 Ok\r\n"))
		fail_msg("after one turn got \"%s\", want the greeting, EHLO and NOOP replies", buf);
	harness_close(&h, &r, c);
}

/*
 * A client that sends without reading: the session stops reading once its
 * replies back up, keeps them (bounded), and sends every one, in order,
 * once the client reads.
 */
static void test_client_not_reading(void **state)
{
	enum { N = 100000 };
	static const char cmd[] = "NOOP\r\n", reply[] = "250 2.0.0 Ok\r\n";
	struct row r = {"client not reading", "smtpd_junk_command_limit = 1000000\n", ""};
	struct harness h;
	size_t len = N * strlen(cmd) + 6, sent = 0, got = 0, want;
	char *in = malloc(len + 1), *out, *p;
	uint64_t deadline;
	int c;

	(void)state;
	for (size_t i = 0; i < N; i++)
		memcpy(in + i * strlen(cmd), cmd, strlen(cmd));
	memcpy(in + N * strlen(cmd), "QUIT\r\n", 7);
	/*
	 * A unix socket pair with small buffers, so that backing up takes
	 * kilobytes, not the megabytes of loopback TCP (whose 64 KB segments
	 * also make small TCP windows crawl).
	 */
	harness_open(&h, &r, &c, true);
	for (int i = 0, small = 4096; i < 2; i++)
		assert_int_equal(setsockopt(i ? h.sfd : c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	/* Write until the server stops taking: it must stop reading, not buffer all. */
	deadline = clock_mono_ms() + 5000;
	for (int idle = 0; idle < 50 && sent < len && clock_mono_ms() < deadline;) {
		ssize_t k = write(c, in + sent, len - sent);

		if (k > 0) {
			sent += (size_t)k;
			idle = 0;
		} else {
			idle++;
		}
		event_base_loop(h.base, EVLOOP_NONBLOCK);
	}
	if (sent == len)
		fail_msg("the server took all %zu octets without the client reading a reply", len);
	/* Now read everything; the rest of the input goes as the server takes it. */
	want = strlen("220 ") + N * strlen(reply);
	out = malloc(want + 65536);
	deadline = clock_mono_ms() + 20000;
	while (clock_mono_ms() < deadline) {
		ssize_t k;

		if (sent < len && (k = write(c, in + sent, len - sent)) > 0)
			sent += (size_t)k;
		event_base_loop(h.base, EVLOOP_NONBLOCK);
		k = read(c, out + got, want + 65535 - got);
		if (k == 0)
			break;
		if (k > 0)
			got += (size_t)k;
		else {
			struct pollfd pf = {c, POLLIN, 0};

			(void)poll(&pf, 1, 1);
		}
	}
	out[got] = '\0';
	p = strstr(out, "\r\n");
	assert_non_null(p);
	p += 2;
	for (size_t i = 0; i < N; i++, p += strlen(reply))
		if (strncmp(p, reply, strlen(reply)) != 0)
			fail_msg("reply %zu of %d: got \"%.20s\"", i + 1, N, p);
	assert_string_equal(p, "221 2.0.0 Bye\r\n");
	free(out);
	free(in);
	harness_close(&h, &r, c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rows),
	    cmocka_unit_test(test_auth_long_line),
	    cmocka_unit_test(test_replies_in_the_turn),
	    cmocka_unit_test(test_client_not_reading),
	};

	log_open("test_session", LOG_TARGET_STDERR);
	log_set_level(LOG_LEVEL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
