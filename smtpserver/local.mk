# smtpserver/ - the ESMTP server farm.  Everything but main() is in
# libsmtpd.a so the unit tests link the modules they test.
noinst_LIBRARIES += smtpserver/libsmtpd.a
smtpserver_libsmtpd_a_SOURCES = \
	smtpserver/committer.c smtpserver/committer.h \
	smtpserver/handoff.c smtpserver/handoff.h \
	smtpserver/relay.c smtpserver/relay.h \
	smtpserver/session.c smtpserver/session.h \
	smtpserver/smtp_body.c smtpserver/smtp_body.h \
	smtpserver/smtp_cmd.c smtpserver/smtp_cmd.h \
	smtpserver/smtpd_config.c smtpserver/smtpd_config.h

zfarmlibexecdir = $(libexecdir)/zfarm
zfarmlibexec_PROGRAMS = smtpserver/smtpserver
smtpserver_smtpserver_SOURCES = smtpserver/smtpd.c
smtpserver_smtpserver_LDADD = smtpserver/libsmtpd.a $(ZF_LIBS)
