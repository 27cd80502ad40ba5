/*
 * lmtp - the lmtp transport farm: smtp.c's delivery agent in LMTP mode
 * (RFC 2033: LHLO, one end-of-data reply per accepted recipient), with
 * lmtp_* parameters and nexthops "unix:/abs/path", "inet:host:port",
 * "[host]:port" or "host:port" (no MX lookups).  One agent, two programs,
 * as Postfix's smtp(8) and lmtp(8) are one: this file builds smtp.c with
 * SMTP_AGENT_LMTP, which leaves out smtp's main().
 */
#define SMTP_AGENT_LMTP 1
#include "transport/smtp.c"

int main(int argc, char **argv)
{
	return agent_main(argc, argv, true);
}
