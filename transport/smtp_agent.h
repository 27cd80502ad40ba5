/*
 * smtp_agent - the SMTP/LMTP delivery agent behind the smtp and lmtp
 * farms: one agent, two programs, as Postfix's smtp(8) and lmtp(8) are
 * one.  smtp_agent.c's header comment describes a delivery; smtp.c and
 * lmtp.c are its two main()s.
 */
#ifndef ZFARM_TRANSPORT_SMTP_AGENT_H
#define ZFARM_TRANSPORT_SMTP_AGENT_H

#include <stdbool.h>

/*
 * smtp_agent_main - run the farm child: SMTP (EHLO, MX lookups, smtp_*
 * parameters) or, with lmtp, LMTP (LHLO, per-recipient end-of-data
 * replies, unix: and inet: nexthops, lmtp_* parameters).  The exit status.
 */
int smtp_agent_main(int argc, char **argv, bool lmtp);

#endif
