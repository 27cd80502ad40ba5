/* smtp - the smtp transport farm (channels smtp and relay): smtp_agent.h. */
#include "transport/smtp_agent.h"

int main(int argc, char **argv)
{
	return smtp_agent_main(argc, argv, false);
}
