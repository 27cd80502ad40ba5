/*
 * lmtp - the lmtp transport farm: the smtp agent in LMTP mode (RFC 2033:
 * LHLO, one end-of-data reply per accepted recipient), lmtp_* parameters,
 * nexthops "unix:/abs/path", "inet:host:port", "[host]:port" or
 * "host:port" (no MX lookups).  See smtp_agent.h.
 */
#include "transport/smtp_agent.h"

int main(int argc, char **argv)
{
	return smtp_agent_main(argc, argv, true);
}
