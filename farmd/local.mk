# farmd/ - the farm manager.
sbin_PROGRAMS += farmd/farmd
farmd_farmd_SOURCES = \
	farmd/control.c farmd/control.h \
	farmd/farm.c farmd/farm.h \
	farmd/farm_def.c farmd/farm_def.h \
	farmd/farmd.c \
	farmd/pidfile.c farmd/pidfile.h
farmd_farmd_LDADD = $(ZF_LIBS)
