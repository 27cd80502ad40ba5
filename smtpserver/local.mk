# smtpserver/ - the ESMTP server farm; for now its command line parser.
noinst_LIBRARIES += smtpserver/libsmtpcmd.a
smtpserver_libsmtpcmd_a_SOURCES = smtpserver/smtp_cmd.c smtpserver/smtp_cmd.h
