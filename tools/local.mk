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
