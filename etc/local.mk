# etc/ - the example configuration.  In the source tree it runs an
# instance under ./var; the installed copy ($(sysconfdir)/zfarm/zfarm.conf)
# keeps everything under $(localstatedir)/spool/zfarm and finds the farm
# programs in $(libexecdir)/zfarm.  make install never overwrites an
# existing zfarm.conf (an operator's): it always writes zfarm.conf.dist,
# the installed defaults to compare with.
EXTRA_DIST += etc/zfarm.conf

zfarm_spooldir = $(localstatedir)/spool/zfarm

etc/zfarm.conf.installed: etc/zfarm.conf Makefile
	@$(MKDIR_P) etc
	$(AM_V_GEN)sed -e 's|^run_directory = \./var$$|run_directory = $(zfarm_spooldir)|' \
	    -e 's|^#program_directory = .*|program_directory = $(libexecdir)/zfarm|' \
	    $(srcdir)/etc/zfarm.conf > $@.tmp && \
	grep -q '^run_directory = $(zfarm_spooldir)$$' $@.tmp && mv $@.tmp $@
CLEANFILES += etc/zfarm.conf.installed

install-data-local: etc/zfarm.conf.installed
	$(MKDIR_P) $(DESTDIR)$(zfarmconfdir) $(DESTDIR)$(zfarm_spooldir)
	$(INSTALL_DATA) etc/zfarm.conf.installed $(DESTDIR)$(zfarmconfdir)/zfarm.conf.dist
	test -f $(DESTDIR)$(zfarmconfdir)/zfarm.conf || \
	    $(INSTALL_DATA) etc/zfarm.conf.installed $(DESTDIR)$(zfarmconfdir)/zfarm.conf

uninstall-local:
	rm -f $(DESTDIR)$(zfarmconfdir)/zfarm.conf.dist
	cmp -s $(DESTDIR)$(zfarmconfdir)/zfarm.conf etc/zfarm.conf.installed && \
	    rm -f $(DESTDIR)$(zfarmconfdir)/zfarm.conf || true
