/*
 * zfpasswd - add, change or remove a user of smtpserver's password file
 * (smtpd_sasl_type = passwd-file; the format is in smtpserver/passwd_file.h).
 *
 *   zfpasswd [-c config] [-o name=value]... [-f file] [-s scheme] user
 *   zfpasswd [-c config] [-o name=value]... [-f file] -D user
 *
 * The file is -f, else smtpd_sasl_path of the configuration (-c, else
 * $ZFARM_CONFIG or the installed zfarm.conf, as for every tool).  The
 * password is read from the terminal (asked twice, not echoed) or, when
 * standard input is not a terminal, its first line.  It is hashed with
 * crypt(3): scheme yescrypt (the default, like Debian's passwd), sha512crypt,
 * sha256crypt or bcrypt, each at libcrypt's default cost.
 *
 * The file is replaced atomically: written to a temporary file in the same
 * directory (same mode and owner as the old file; 0640 for a new one),
 * fsync'ed, renamed over the old one, the directory fsync'ed; concurrent
 * zfpasswd runs take turns on FILE.lock.  Every other line is kept as it
 * was, comments included.  The running smtpserver processes see the
 * change at their next AUTH.
 *
 * Exit status: 0 done; 1 failed (reason on stderr); 2 usage or config.
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "common/config.h"
#include "common/paths.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

/* octets: libcrypt hashes no longer passphrases (smtpserver takes up to 1024) */
#define PASSWORD_MAX (CRYPT_MAX_PASSPHRASE_SIZE - 1)
#define FILE_MAX     (64 * 1024 * 1024)

enum { EXIT_FAILED = 1, EXIT_USAGE = 2 };

static const struct {
	const char *name, *prefix;
} schemes[] = {
    {"yescrypt", "$y$"},
    {"sha512crypt", "$6$"},
    {"sha256crypt", "$5$"},
    {"bcrypt", "$2b$"},
};

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: zfpasswd [-c config] [-o name=value]... [-f file] "
			"[-s yescrypt|sha512crypt|sha256crypt|bcrypt] user\n"
			"       zfpasswd [-c config] [-o name=value]... [-f file] -D user\n");
	exit(EXIT_USAGE);
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fputs("zfpasswd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_FAILED);
}

/* A user name smtpserver takes: 1-255 octets, no blanks, controls or ':', no '#' first. */
static bool user_ok(const char *u)
{
	size_t n = strlen(u);

	if (n == 0 || n > 255 || u[0] == '#')
		return false;
	for (; *u; u++)
		if ((unsigned char)*u <= 0x20 || *u == 0x7f || *u == ':')
			return false;
	return true;
}

/* ---- the password ---- */

/* One line from fp into buf (cap octets), newline dropped; -1 at EOF or when too long. */
static int read_line(FILE *fp, char *buf, size_t cap)
{
	size_t n;

	if (!fgets(buf, (int)cap, fp))
		return -1;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (!feof(fp))
		return -1; /* longer than the buffer */
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return 0;
}

/* Ask on the terminal with echo off. */
static int ask(FILE *tty, const char *prompt, char *buf, size_t cap)
{
	struct termios old, quiet;
	int fd = fileno(tty), rc;

	if (tcgetattr(fd, &old) < 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	/* Echo off first (typed-ahead text is dropped), then the prompt. */
	tcsetattr(fd, TCSAFLUSH, &quiet);
	fputs(prompt, stderr);
	fflush(stderr);
	rc = read_line(tty, buf, cap);
	tcsetattr(fd, TCSANOW, &old);
	fputc('\n', stderr);
	return rc;
}

static void get_password(char *pw, size_t cap)
{
	char again[PASSWORD_MAX + 2];

	if (isatty(STDIN_FILENO)) {
		FILE *tty = fopen("/dev/tty", "r+e");

		if (!tty)
			die("/dev/tty: %s", strerror(errno));
		if (ask(tty, "Password: ", pw, cap) < 0 || ask(tty, "Again: ", again, sizeof(again)) < 0)
			die("no password read (at most %d octets)", PASSWORD_MAX);
		fclose(tty);
		if (strcmp(pw, again) != 0) {
			explicit_bzero(again, sizeof(again));
			die("the passwords differ");
		}
		explicit_bzero(again, sizeof(again));
	} else if (read_line(stdin, pw, cap) < 0) {
		die("no password on standard input (one line, at most %d octets)", PASSWORD_MAX);
	}
	if (pw[0] == '\0')
		die("empty password");
	if (strlen(pw) > PASSWORD_MAX)
		die("password longer than %d octets", PASSWORD_MAX);
	for (const char *p = pw; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			die("control characters in the password (SMTP AUTH cannot send them)");
}

static char *hash_password(const char *prefix, const char *pw)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h;
	char *out;

	if (!crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof(salt)))
		die("crypt_gensalt(%s): %s", prefix, strerror(errno));
	h = crypt_r(pw, salt, cd);
	if (!h || h[0] != '$')
		die("crypt(%s) failed", prefix);
	out = xstrdup(h);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return out;
}

/* ---- the file ---- */

/* The old file's text ("" when there is none) and its mode and owner. */
static char *read_old(const char *path, struct stat *st, bool *exists)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct strbuf sb;
	char buf[8192];
	ssize_t n;

	*exists = false;
	if (fd < 0) {
		if (errno != ENOENT)
			die("%s: %s", path, strerror(errno));
		return xstrdup("");
	}
	if (fstat(fd, st) < 0)
		die("%s: %s", path, strerror(errno));
	if (!S_ISREG(st->st_mode))
		die("%s: not a regular file", path);
	*exists = true;
	strbuf_init(&sb, FILE_MAX);
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("%s: read: %s", path, strerror(errno));
		if (strbuf_append(&sb, buf, (size_t)n) < 0)
			die("%s: larger than %d octets", path, FILE_MAX);
	}
	close(fd);
	return strbuf_steal(&sb);
}

/* Is this line the entry of user? ("user:..." with optional leading blanks) */
static bool line_is_user(const char *line, size_t len, const char *user)
{
	size_t ul = strlen(user);

	while (len > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	return len > ul && memcmp(line, user, ul) == 0 && line[ul] == ':';
}

/*
 * new_text - old with user's line replaced by entry (NULL: removed), or
 * entry appended.  *found tells whether user had a line.
 */
static char *new_text(const char *old, const char *user, const char *entry, bool *found)
{
	struct strbuf sb;
	const char *p = old;

	*found = false;
	strbuf_init(&sb, FILE_MAX + 4096);
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (line_is_user(p, len, user)) {
			if (entry && !*found)
				strbuf_printf(&sb, "%s\n", entry);
			*found = true;
		} else {
			strbuf_append(&sb, p, len);
			strbuf_append_char(&sb, '\n');
		}
		p += len + (nl ? 1 : 0);
	}
	if (entry && !*found)
		strbuf_printf(&sb, "%s\n", entry);
	return strbuf_steal(&sb);
}

static void write_all(int fd, const char *p, size_t n, const char *path)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			die("%s: write: %s", path, strerror(errno));
		p += k;
		n -= (size_t)k;
	}
}

static void replace_file(const char *path, const char *text, const struct stat *old, bool exists)
{
	char *tmp = xasprintf("%s.XXXXXX", path), *dcopy = xstrdup(path), *dir;
	int fd = mkostemp(tmp, O_CLOEXEC), dfd;

	if (fd < 0)
		die("%s: %s", tmp, strerror(errno));
	if (fchmod(fd, exists ? old->st_mode & 07777 : 0640) < 0)
		die("%s: chmod: %s", tmp, strerror(errno));
	if (exists && geteuid() == 0 && fchown(fd, old->st_uid, old->st_gid) < 0)
		die("%s: chown: %s", tmp, strerror(errno));
	write_all(fd, text, strlen(text), tmp);
	if (fsync(fd) < 0 || close(fd) < 0) {
		unlink(tmp);
		die("%s: %s", tmp, strerror(errno));
	}
	if (rename(tmp, path) < 0) {
		int e = errno;

		unlink(tmp);
		die("rename %s to %s: %s", tmp, path, strerror(e));
	}
	dir = dirname(dcopy);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		die("%s: fsync: %s", dir, strerror(errno));
	close(dfd);
	free(tmp);
	free(dcopy);
}

/* The file named by the configuration (smtpd_sasl_path of a passwd-file backend). */
static char *file_from_config(const char *config_path, char **over, size_t nover)
{
	char err[1024];
	struct config *cfg = paths_load_config(config_path, over, nover, err, sizeof(err));
	const char *type, *path;
	char *out;

	if (!cfg) {
		fprintf(stderr, "zfpasswd: %s\n", err);
		exit(EXIT_USAGE);
	}
	type = config_get_default(cfg, NULL, NULL, "smtpd_sasl_type", "passwd-file");
	path = config_get(cfg, NULL, NULL, "smtpd_sasl_path");
	if (strcmp(type, "passwd-file") != 0 || !path || !path[0]) {
		fprintf(stderr, "zfpasswd: the configuration names no password file "
				"(smtpd_sasl_type = passwd-file, smtpd_sasl_path); use -f\n");
		exit(EXIT_USAGE);
	}
	out = xstrdup(path);
	config_free(&cfg);
	return out;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL, *file = NULL, *prefix = "$y$";
	char **over = NULL, *path, *lock, *old, *text, *entry = NULL;
	size_t nover = 0;
	bool delete = false, exists, found;
	struct stat st;
	int c, lfd;

	while ((c = getopt(argc, argv, "c:o:f:s:D")) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			over = xreallocarray(over, nover + 2, sizeof(*over));
			over[nover++] = optarg;
			over[nover] = NULL;
			break;
		case 'f':
			file = optarg;
			break;
		case 's':
			prefix = NULL;
			for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
				if (strcmp(optarg, schemes[i].name) == 0)
					prefix = schemes[i].prefix;
			if (!prefix)
				usage();
			break;
		case 'D':
			delete = true;
			break;
		default:
			usage();
		}
	}
	if (!file && !config_path)
		config_path = paths_config_file();
	if (optind != argc - 1 || (!file && !config_path))
		usage();
	if (!user_ok(argv[optind])) {
		fprintf(stderr, "zfpasswd: bad user name \"%s\" (1-255 octets, no blanks, control "
				"characters or \":\")\n",
			argv[optind]);
		exit(EXIT_USAGE);
	}
	path = file ? xstrdup(file) : file_from_config(config_path, over, nover);

	if (!delete) {
		char pw[PASSWORD_MAX + 2];
		char *h;

		get_password(pw, sizeof(pw));
		h = hash_password(prefix, pw);
		explicit_bzero(pw, sizeof(pw));
		entry = xasprintf("%s:%s", argv[optind], h);
		free(h);
	}

	/* One zfpasswd at a time: the lock file stays (removing it would race). */
	lock = xasprintf("%s.lock", path);
	lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0)
		die("%s: %s", lock, strerror(errno));
	if (flock(lfd, LOCK_EX) < 0)
		die("%s: flock: %s", lock, strerror(errno));
	memset(&st, 0, sizeof(st));
	old = read_old(path, &st, &exists);
	text = new_text(old, argv[optind], entry, &found);
	if (delete && !found)
		die("%s: no user %s", path, argv[optind]);
	replace_file(path, text, &st, exists);
	close(lfd);
	printf("%s user %s in %s\n", delete ? "removed" : found ? "changed" : "added", argv[optind],
	       path);
	free(text);
	free(old);
	free(entry);
	free(lock);
	free(path);
	free(over);
	return 0;
}
