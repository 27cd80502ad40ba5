# etc/ - example configuration, installed under $(sysconfdir)/zfarm.
dist_zfarmconf_DATA += etc/zfarm.conf
