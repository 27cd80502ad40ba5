# tests/ - cmocka unit tests per module and integration tests, all run by
# "make check".
ZF_TEST_LIBS = $(ZF_LIBS) $(CMOCKA_LIBS)
ZF_TEST_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)

ZF_UNIT_TESTS = \
	tests/common/test_address \
	tests/common/test_channel \
	tests/common/test_cidr \
	tests/common/test_clock \
	tests/common/test_config \
	tests/common/test_endpoint \
	tests/common/test_farm_server \
	tests/common/test_frame \
	tests/common/test_frame_client \
	tests/common/test_log \
	tests/common/test_params \
	tests/common/test_qid \
	tests/common/test_qstore \
	tests/common/test_sockstream \
	tests/common/test_strbuf \
	tests/router/test_route \
	tests/router/test_routeset \
	tests/common/test_table \
	tests/common/test_workq \
	tests/scheduler/test_backoff \
	tests/scheduler/test_dest \
	tests/scheduler/test_msgstate \
	tests/scheduler/test_sched \
	tests/smtpserver/test_dovecot_auth \
	tests/smtpserver/test_header_fixup \
	tests/smtpserver/test_passwd_file \
	tests/smtpserver/test_relay \
	tests/smtpserver/test_sasl \
	tests/smtpserver/test_session \
	tests/smtpserver/test_committer \
	tests/smtpserver/test_smtp_body \
	tests/smtpserver/test_smtp_cmd \
	tests/smtpserver/test_tls_server \
	tests/transport/test_body \
	tests/transport/test_dsn

check_PROGRAMS += $(ZF_UNIT_TESTS)
TESTS += $(ZF_UNIT_TESTS)
check_PROGRAMS += tests/farm/echo_farm

tests_common_test_address_SOURCES = tests/common/test_address.c
tests_common_test_address_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_address_LDADD = $(ZF_TEST_LIBS)
tests_common_test_channel_SOURCES = tests/common/test_channel.c
tests_common_test_channel_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_channel_LDADD = $(ZF_TEST_LIBS)
tests_common_test_cidr_SOURCES = tests/common/test_cidr.c
tests_common_test_cidr_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_cidr_LDADD = $(ZF_TEST_LIBS)
tests_common_test_clock_SOURCES = tests/common/test_clock.c
tests_common_test_clock_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_clock_LDADD = $(ZF_TEST_LIBS)
tests_common_test_config_SOURCES = tests/common/test_config.c
tests_common_test_config_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_config_LDADD = $(ZF_TEST_LIBS)
tests_common_test_endpoint_SOURCES = tests/common/test_endpoint.c
tests_common_test_endpoint_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_endpoint_LDADD = $(ZF_TEST_LIBS)
tests_common_test_farm_server_SOURCES = tests/common/test_farm_server.c
tests_common_test_farm_server_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_farm_server_LDADD = $(ZF_TEST_LIBS)
tests_common_test_frame_SOURCES = tests/common/test_frame.c tests/common/evtest.h
tests_common_test_frame_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_frame_LDADD = $(ZF_TEST_LIBS)
tests_common_test_sockstream_SOURCES = tests/common/test_sockstream.c tests/common/evtest.h
tests_common_test_sockstream_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_sockstream_LDADD = $(ZF_TEST_LIBS)
tests_common_test_frame_client_SOURCES = tests/common/test_frame_client.c
tests_common_test_frame_client_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_frame_client_LDADD = $(ZF_TEST_LIBS)
tests_common_test_log_SOURCES = tests/common/test_log.c
tests_common_test_log_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_log_LDADD = $(ZF_TEST_LIBS)
tests_common_test_params_SOURCES = tests/common/test_params.c
tests_common_test_params_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_params_LDADD = $(ZF_TEST_LIBS)
tests_common_test_qid_SOURCES = tests/common/test_qid.c
tests_common_test_qid_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_qid_LDADD = $(ZF_TEST_LIBS)
tests_common_test_qstore_SOURCES = tests/common/test_qstore.c
tests_common_test_qstore_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_qstore_LDADD = $(ZF_TEST_LIBS)
tests_common_test_qstore_LDFLAGS = -Wl,--wrap=renameat -Wl,--wrap=fdatasync \
	-Wl,--wrap=sync_file_range
tests_common_test_strbuf_SOURCES = tests/common/test_strbuf.c
tests_common_test_strbuf_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_strbuf_LDADD = $(ZF_TEST_LIBS)
tests_router_test_route_SOURCES = tests/router/test_route.c
tests_router_test_route_CFLAGS = $(ZF_TEST_CFLAGS)
tests_router_test_route_LDADD = router/librouter.a $(ZF_TEST_LIBS)
tests_router_test_routeset_SOURCES = tests/router/test_routeset.c tests/scheduler/ctl_list.h
tests_router_test_routeset_CFLAGS = $(ZF_TEST_CFLAGS)
tests_router_test_routeset_LDADD = router/librouter.a $(ZF_TEST_LIBS)
tests_common_test_workq_SOURCES = tests/common/test_workq.c
tests_common_test_workq_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_workq_LDADD = $(ZF_TEST_LIBS)
tests_common_test_table_SOURCES = tests/common/test_table.c
tests_common_test_table_CFLAGS = $(ZF_TEST_CFLAGS)
tests_common_test_table_LDADD = $(ZF_TEST_LIBS)
tests_scheduler_test_backoff_SOURCES = tests/scheduler/test_backoff.c
tests_scheduler_test_backoff_CFLAGS = $(ZF_TEST_CFLAGS)
tests_scheduler_test_backoff_LDADD = scheduler/libsched.a $(ZF_TEST_LIBS)
tests_scheduler_test_dest_SOURCES = tests/scheduler/test_dest.c
tests_scheduler_test_dest_CFLAGS = $(ZF_TEST_CFLAGS)
tests_scheduler_test_dest_LDADD = scheduler/libsched.a $(ZF_TEST_LIBS)
tests_scheduler_test_msgstate_SOURCES = tests/scheduler/test_msgstate.c tests/scheduler/ctl_list.h
tests_scheduler_test_msgstate_CFLAGS = $(ZF_TEST_CFLAGS)
tests_scheduler_test_msgstate_LDADD = scheduler/libsched.a $(ZF_TEST_LIBS)
tests_scheduler_test_sched_SOURCES = tests/scheduler/test_sched.c tests/scheduler/ctl_list.h
tests_scheduler_test_sched_CFLAGS = $(ZF_TEST_CFLAGS)
tests_scheduler_test_sched_LDADD = scheduler/libsched.a $(ZF_TEST_LIBS)
tests_smtpserver_test_dovecot_auth_SOURCES = tests/smtpserver/test_dovecot_auth.c
tests_smtpserver_test_dovecot_auth_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_dovecot_auth_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_header_fixup_SOURCES = tests/smtpserver/test_header_fixup.c
tests_smtpserver_test_header_fixup_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_header_fixup_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_passwd_file_SOURCES = tests/smtpserver/test_passwd_file.c
tests_smtpserver_test_passwd_file_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_passwd_file_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_sasl_SOURCES = tests/smtpserver/test_sasl.c
tests_smtpserver_test_sasl_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_sasl_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_tls_server_SOURCES = tests/smtpserver/test_tls_server.c
tests_smtpserver_test_tls_server_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_tls_server_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_relay_SOURCES = tests/smtpserver/test_relay.c
tests_smtpserver_test_relay_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_relay_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_committer_SOURCES = tests/smtpserver/test_committer.c
tests_smtpserver_test_committer_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_committer_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_committer_LDFLAGS = -Wl,--wrap=fdatasync
tests_smtpserver_test_session_SOURCES = tests/smtpserver/test_session.c tests/common/evtest.h
tests_smtpserver_test_session_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_session_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_smtp_body_SOURCES = tests/smtpserver/test_smtp_body.c
tests_smtpserver_test_smtp_body_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_smtp_body_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)
tests_smtpserver_test_smtp_cmd_SOURCES = tests/smtpserver/test_smtp_cmd.c
tests_smtpserver_test_smtp_cmd_CFLAGS = $(ZF_TEST_CFLAGS)
tests_smtpserver_test_smtp_cmd_LDADD = smtpserver/libsmtpd.a $(ZF_TEST_LIBS) $(LIBCRYPT_LIBS)

# A tiny farm (echo service) on the child skeleton, for the skeleton's and
# farmd's integration tests.
tests_farm_echo_farm_SOURCES = tests/farm/echo_farm.c
tests_farm_echo_farm_LDADD = $(ZF_LIBS)

# Integration tests in Python (stdlib only) drive the real daemons.
TEST_EXTENSIONS = .py
PY_LOG_COMPILER = $(PYTHON3)
AM_PY_LOG_FLAGS = -B
tests_transport_test_body_SOURCES = tests/transport/test_body.c tests/transport/ram_message.h
tests_transport_test_body_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_body_LDADD = transport/libtransport.a $(ZF_TEST_LIBS)
tests_transport_test_dsn_SOURCES = tests/transport/test_dsn.c
tests_transport_test_dsn_CFLAGS = $(ZF_TEST_CFLAGS)
tests_transport_test_dsn_LDADD = transport/libtransport.a $(ZF_TEST_LIBS)

ZF_PY_TESTS = tests/farmd/test_farmd.py tests/smtpserver/test_smtpserver.py \
	tests/router/test_router.py tests/scheduler/test_reinject.py \
	tests/scheduler/test_scheduler.py tests/transport/test_bounce.py \
	tests/tools/test_tools_fake.py tests/scheduler/test_sched_load.py \
	tests/tools/test_sendmail.py tests/smtpserver/test_tls_auth.py \
	tests/tools/test_zfpasswd.py
TESTS += $(ZF_PY_TESTS)
EXTRA_DIST += $(ZF_PY_TESTS) tests/farmd/farmlib.py tests/farmd/zfproto.py tests/farmd/qspool.py \
	tests/smtpserver/smtplib_helpers.py \
	bench/farm_echo.py bench/smtp_accept.py bench/sched_bench.py
