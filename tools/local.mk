# tools/ - operator tools.
sbin_PROGRAMS += tools/zfarmctl
tools_zfarmctl_SOURCES = tools/zfarmctl.c
tools_zfarmctl_LDADD = $(ZF_LIBS)

# The queue tools: zfqueue (sbin) and the sendmail-compatible mailq (bin),
# both thin over tools/qctl_client.c (client, paging, text and JSON).
sbin_PROGRAMS += tools/zfqueue
tools_zfqueue_SOURCES = tools/zfqueue.c tools/qctl_client.c tools/qctl_client.h
tools_zfqueue_LDADD = $(ZF_LIBS)
bin_PROGRAMS += tools/mailq
tools_mailq_SOURCES = tools/mailq.c tools/qctl_client.c tools/qctl_client.h
tools_mailq_LDADD = $(ZF_LIBS)

# sendmail(1): the sendmail-compatible submission command; SMTP over the
# smtpserver farm's $run_directory/public/submit (tools/smtp_submit.c).
# Installed in sbin, where /usr/sbin/sendmail conventionally lives.
sbin_PROGRAMS += tools/sendmail
tools_sendmail_SOURCES = tools/sendmail.c tools/smtp_submit.c tools/smtp_submit.h
tools_sendmail_LDADD = $(ZF_LIBS)
dist_man_MANS += man/sendmail.1

# zfpasswd(8): users of smtpserver's password file (smtpd_sasl_type = passwd-file).
sbin_PROGRAMS += tools/zfpasswd
tools_zfpasswd_SOURCES = tools/zfpasswd.c
tools_zfpasswd_LDADD = $(ZF_LIBS) $(LIBCRYPT_LIBS)
dist_man_MANS += man/zfpasswd.8
