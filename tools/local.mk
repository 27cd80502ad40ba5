# tools/ - operator tools.
sbin_PROGRAMS += tools/zfarmctl
tools_zfarmctl_SOURCES = tools/zfarmctl.c
tools_zfarmctl_LDADD = $(ZF_LIBS)
