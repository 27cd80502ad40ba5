/* params - see params.h. */
#include <stdlib.h>
#include <string.h>

#include "common/params.h"

/* Sorted (strcmp order) for bsearch. */
static const char *const params_names[] = {
    "alias_maps",
    "allow_mail_to_commands",
    "allow_mail_to_files",
    "argv",
    "bounce_size_limit",
    "busy_warn_interval",
    "delay_warning_time",
    "double_bounce_recipient",
    "header_size_limit",
    "home_mailbox",
    "hopcount_limit",
    "initial_destination_concurrency",
    "local_command_time_limit",
    "local_lock_time_limit",
    "local_recipient_maps",
    "local_virtual_owner",
    "log_level",
    "mail_directory",
    "mail_spool_directory",
    "maximal_backoff_time",
    "maximal_queue_lifetime",
    "message_size_limit",
    "minimal_backoff_time",
    "mydestination",
    "myhostname",
    "mynetworks",
    "pipe_flags",
    "pipe_temporary_exit_codes",
    "pipe_time_limit",
    "pipe_user",
    "program_directory",
    "qmgr_message_active_limit",
    "queue_directory",
    "queue_minfree",
    "queue_store",
    "recipient_delimiter",
    "relay_domains",
    "relayhost",
    "router_endpoint",
    "run_directory",
    "scheduler_endpoint",
    "smtp_listen",
    "smtpd_banner",
    "smtpd_command_line_limit",
    "smtpd_commit_threads",
    "smtpd_data_line_limit",
    "smtpd_discard_ehlo_keywords",
    "smtpd_hard_error_limit",
    "smtpd_helo_required",
    "smtpd_junk_command_limit",
    "smtpd_recipient_limit",
    "smtpd_stress_error_limit",
    "smtpd_stress_timeout",
    "smtpd_timeout",
    "smtpd_verify_recipients",
    "smtpd_vrfy_command",
    "startup_timeout",
    "stop_grace",
    "stress_duration",
    "submission_listen",
    "throttle_max",
    "transport_maps",
    "transport_retry_time",
    "transport_timeout",
    "virtual_alias_maps",
};

static int params_cmp(const void *key, const void *elem)
{
	return strcmp(key, *(const char *const *)elem);
}

bool params_known(const char *name)
{
	return bsearch(name, params_names, sizeof(params_names) / sizeof(params_names[0]),
		       sizeof(params_names[0]), params_cmp) != NULL;
}
