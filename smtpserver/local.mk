# smtpserver/ - the ESMTP server farm.  Everything but main() is in
# libsmtpd.a so the unit tests link the modules they test.
noinst_LIBRARIES += smtpserver/libsmtpd.a
smtpserver_libsmtpd_a_SOURCES = \
	smtpserver/auth.c smtpserver/auth.h \
	smtpserver/committer.c smtpserver/committer.h \
	smtpserver/dovecot_auth.c smtpserver/dovecot_auth.h \
	smtpserver/handoff.c smtpserver/handoff.h \
	smtpserver/header_fixup.c smtpserver/header_fixup.h \
	smtpserver/passwd_file.c smtpserver/passwd_file.h \
	smtpserver/relay.c smtpserver/relay.h \
	smtpserver/sasl.c smtpserver/sasl.h \
	smtpserver/session.c smtpserver/session.h \
	smtpserver/smtp_body.c smtpserver/smtp_body.h \
	smtpserver/smtp_cmd.c smtpserver/smtp_cmd.h \
	smtpserver/smtpd_config.c smtpserver/smtpd_config.h \
	smtpserver/tls_server.c smtpserver/tls_server.h
# What links libsmtpd.a needs besides ZF_LIBS: crypt_r for password files.
ZF_SMTPD_LIBS = smtpserver/libsmtpd.a $(ZF_LIBS) $(LIBCRYPT_LIBS)

zfarmlibexecdir = $(libexecdir)/zfarm
zfarmlibexec_PROGRAMS = smtpserver/smtpserver
smtpserver_smtpserver_SOURCES = smtpserver/smtpd.c
smtpserver_smtpserver_LDADD = $(ZF_SMTPD_LIBS)
