/*
 * route - the routing engine (see route.h for the lookup order).
 *
 * One call walks an expansion tree: route_addr() takes a canonical
 * address through virtual aliases, local aliases/users and the remote
 * steps; expand() splits a table value into items and routes each one
 * level deeper.  The chain of addresses (and :include: files) being
 * expanded is a small stack used for loop detection.  Results are added
 * through add_target(), which drops duplicates and enforces max_targets.
 *
 * Choices the header leaves open, made here:
 *   - Chain identity is case-insensitive, and every local domain is one
 *     namespace (aliases are keyed by local part only), so "a: b, b: a"
 *     loops whatever domains the items name.
 *   - A self-reference ("bob: bob, x") routes the address being expanded
 *     (bob@its-domain) with the alias step (and the virtual step) skipped;
 *     in virtual_alias_maps it skips only the virtual step.
 *   - Items are separated by commas; plain address items are also
 *     separated by blanks (Postfix accepts "a b" in virtual maps and inline
 *     tables cannot hold commas).  A "|command", "/file" or ":include:"
 *     item runs to the next comma (or end of line) and may be written
 *     quoted ("|cmd, with comma").
 *   - An expansion without any item (an empty alias or include file) is
 *     the error 5.3.0 rather than a silently dropped recipient.
 *   - Besides max_targets, the number of addresses examined per recipient
 *     is bounded (ROUTE_WORK_FACTOR * max_targets), so duplicate-heavy
 *     trees ("x1: x2, x2" twenty levels deep) cannot cost 2^20 steps.
 *   - :include: problems are 4.3.0 (the admin can fix them, the mail
 *     waits); a transport "error:" text keeps a 4.x.y code if it has one.
 *   - Commands and files get user "": the delivery agent decides the
 *     privileges (Postfix: default_privs, or the include file's owner).
 *   - Recursion depth is at most about 3 * max_depth calls (a
 *     self-reference stays at its depth but adds a skip flag), so
 *     max_depth is capped at ROUTE_DEPTH_CAP to bound the stack.
 */
#include "router/route.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/address.h"
#include "common/xalloc.h"
#include "common/table.h"

#define ROUTE_DEFAULT_DEPTH   20
#define ROUTE_DEFAULT_TARGETS 1000
#define ROUTE_DEPTH_CAP	      100 /* recursion uses the stack: max_depth is capped */
#define ROUTE_WORK_FACTOR     20
#define ROUTE_INCLUDE_MAX     (1024 * 1024) /* bytes of one :include: file */
#define DEDUP_LINEAR	      16	    /* up to this many targets, dedup by a scan */
#define ROUTE_ITEM_SHOW	      64	    /* bytes of a bad item quoted in an error */

#define PARSE_FLAGS (ADDRESS_ALLOW_NO_BRACKETS | ADDRESS_ALLOW_NO_DOMAIN | ADDRESS_SMTPUTF8)

/* local@domain with the domain lower-cased (or the default domain). */
#define FULL_SIZE (ADDRESS_LOCAL_SIZE + ADDRESS_DOMAIN_SIZE + 1)

/* What a table value's items may be. */
enum item_kind {
	ITEMS_VIRTUAL, /* addresses only */
	ITEMS_ALIAS,   /* addresses, |command, /file, :include:path */
};

/* Steps route_addr() must not take again for this address. */
#define SKIP_VIRTUAL 0x01u
#define SKIP_ALIAS   0x02u

/* A recipient in canonical form: what every step works on. */
struct caddr {
	char local[ADDRESS_LOCAL_SIZE];	  /* canonical local part, case kept */
	char raw[ADDRESS_LOCAL_SIZE];	  /* unquoted local part */
	char domain[ADDRESS_DOMAIN_SIZE]; /* lower-cased; the default domain if none */
	char full[FULL_SIZE];		  /* local@domain */
	char key[FULL_SIZE];		  /* chain identity, lower-cased */
	size_t local_user_len;		  /* local up to the first delimiter */
	size_t raw_user_len;		  /* raw up to the first delimiter */
	bool is_local;			  /* domain is in mydestination */
};

struct route_ctx {
	const struct route_config *rc;
	struct route_result *res;
	size_t cap;
	uint32_t *index;   /* open addressing over res->t, i + 1 (0: empty) */
	size_t index_size; /* power of two, 0 until DEDUP_LINEAR targets */
	unsigned max_depth;
	unsigned max_targets;
	unsigned long work; /* addresses that may still be examined */
	bool full;	    /* max_targets reached: stop everything */
	const char *origin; /* default domain for addresses without one, or NULL */
	const char *rcpt;   /* the envelope recipient, for the overflow error */
	char **chain;	    /* keys being expanded, innermost last */
	size_t n_chain, cap_chain;
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void lower_ascii(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* Length of the user part of local: up to the first delimiter, unless that leaves "". */
static size_t user_len(const char *local, const char *delim)
{
	size_t n;

	if (delim == NULL || *delim == '\0')
		return strlen(local);
	n = strcspn(local, delim);
	return n == 0 ? strlen(local) : n;
}

/* "domain" exactly or ".parent" for a strict subdomain, case-insensitive. */
static bool domain_matches(const char *domain, const char *entry)
{
	size_t dl = strlen(domain), el = strlen(entry);

	if (entry[0] != '.')
		return strcasecmp(domain, entry) == 0;
	return dl > el && strcasecmp(domain + dl - el, entry) == 0;
}

static bool is_local_domain(const struct route_config *rc, const char *domain)
{
	for (size_t i = 0; i < rc->n_mydestination; i++)
		if (rc->mydestination[i] != NULL && domain_matches(domain, rc->mydestination[i]))
			return true;
	return false;
}

/* Copy s (len bytes) to buf for error texts: bounded, controls as '?'. */
static void show_item(char *buf, size_t buflen, const char *s, size_t len)
{
	size_t n = len < ROUTE_ITEM_SHOW ? len : ROUTE_ITEM_SHOW, i;

	if (n >= buflen)
		n = buflen - 1;
	for (i = 0; i < n; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	if (n < len && n >= 3)
		memcpy(buf + n - 3, "...", 3);
	buf[n] = '\0';
}

/*
 * caddr_parse - canonicalise s into *a.  Returns 0, or -1 with a reason
 * (bad syntax, or no domain and no default domain).
 */
static int caddr_parse(const struct route_ctx *c, const char *s, struct caddr *a, char *why,
		       size_t whylen)
{
	struct address ad;
	const char *delim = c->rc->recipient_delimiter;

	memset(a, 0, sizeof(*a));
	if (address_parse(s, PARSE_FLAGS, &ad, why, whylen) < 0)
		return -1;
	if (ad.domain_lc[0] == '\0') {
		if (c->origin == NULL) {
			snprintf(why, whylen, "no domain, and mydestination names none");
			return -1;
		}
		snprintf(a->domain, sizeof(a->domain), "%s", c->origin);
		lower_ascii(a->domain);
	} else {
		memcpy(a->domain, ad.domain_lc, sizeof(a->domain));
	}
	memcpy(a->local, ad.local, sizeof(a->local));
	if (address_local_unquote(ad.local, a->raw, sizeof(a->raw)) < 0) {
		snprintf(why, whylen, "bad local part");
		return -1;
	}
	snprintf(a->full, sizeof(a->full), "%s@%s", a->local, a->domain);
	a->is_local = is_local_domain(c->rc, a->domain);
	a->local_user_len = user_len(a->local, delim);
	a->raw_user_len = user_len(a->raw, delim);
	/* All local domains share one namespace, so their key has no domain. */
	if (a->is_local)
		snprintf(a->key, sizeof(a->key), "%s@", a->local);
	else
		memcpy(a->key, a->full, sizeof(a->key));
	lower_ascii(a->key);
	return 0;
}

/* ---- results ---- */

static bool same_target(const struct route_target *t, const char *address, const char *channel,
			const char *nexthop, const char *error)
{
	return strcmp(t->address, address) == 0 && strcmp(t->channel, channel) == 0 &&
	       strcmp(t->nexthop, nexthop) == 0 && strcmp(t->error, error) == 0;
}

static void push_target(struct route_ctx *c, const char *address, const char *channel,
			const char *nexthop, const char *user, const char *error)
{
	struct route_result *r = c->res;

	if (r->n == c->cap) {
		c->cap = c->cap == 0 ? 4 : 2 * c->cap;
		r->t = xreallocarray(r->t, c->cap, sizeof(*r->t));
	}
	r->t[r->n++] = (struct route_target){
	    .address = xstrdup(address),
	    .channel = xstrdup(channel),
	    .nexthop = xstrdup(nexthop),
	    .user = xstrdup(user),
	    .error = xstrdup(error),
	};
}

/* The one error that ends an over-large expansion; stops all work. */
static void overflow(struct route_ctx *c)
{
	if (c->full)
		return;
	c->full = true;
	push_target(c, c->rcpt, "error", "", "", "5.3.0 Too many recipients after expansion");
}

/* FNV-1a over the fields that make a target unique. */
static uint32_t target_hash(const char *address, const char *channel, const char *nexthop,
			    const char *error)
{
	const char *f[4] = {address, channel, nexthop, error};
	uint32_t h = 2166136261u;

	for (int i = 0; i < 4; i++) {
		for (const unsigned char *p = (const unsigned char *)f[i]; *p != '\0'; p++)
			h = (h ^ *p) * 16777619u;
		h = (h ^ 0xffu) * 16777619u; /* field separator */
	}
	return h;
}

static void index_put(struct route_ctx *c, size_t i)
{
	const struct route_target *t = &c->res->t[i];
	size_t m = c->index_size - 1,
	       k = target_hash(t->address, t->channel, t->nexthop, t->error) & m;

	while (c->index[k] != 0)
		k = (k + 1) & m;
	c->index[k] = (uint32_t)(i + 1);
}

/* Keep the index at most half full once there are more than DEDUP_LINEAR targets. */
static void index_grow(struct route_ctx *c)
{
	size_t n = c->res->n;

	if (n < DEDUP_LINEAR || 2 * (n + 1) <= c->index_size)
		return;
	c->index_size = c->index_size == 0 ? 4 * DEDUP_LINEAR : 2 * c->index_size;
	free(c->index);
	c->index = xcalloc(c->index_size, sizeof(*c->index));
	for (size_t i = 0; i < n; i++)
		index_put(c, i);
}

static bool have_target(const struct route_ctx *c, const char *address, const char *channel,
			const char *nexthop, const char *error)
{
	const struct route_target *t = c->res->t;

	if (c->index_size == 0) {
		for (size_t i = 0; i < c->res->n; i++)
			if (same_target(&t[i], address, channel, nexthop, error))
				return true;
		return false;
	}
	size_t m = c->index_size - 1, k = target_hash(address, channel, nexthop, error) & m;

	for (; c->index[k] != 0; k = (k + 1) & m)
		if (same_target(&t[c->index[k] - 1], address, channel, nexthop, error))
			return true;
	return false;
}

/*
 * add_target - record a result unless an equal one exists (the error text
 * counts too, so two different problems with one address both show).
 */
static void add_target(struct route_ctx *c, const char *address, const char *channel,
		       const char *nexthop, const char *user, const char *error)
{
	if (c->full || have_target(c, address, channel, nexthop, error))
		return;
	if (c->res->n >= c->max_targets) {
		overflow(c);
		return;
	}
	index_grow(c);
	push_target(c, address, channel, nexthop, user, error);
	if (c->index_size != 0)
		index_put(c, c->res->n - 1);
}

static void add_error(struct route_ctx *c, const char *address, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_error(struct route_ctx *c, const char *address, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	add_target(c, address, "error", "", "", text);
}

/* ---- the expansion chain ---- */

static bool chain_has(const struct route_ctx *c, const char *key)
{
	for (size_t i = 0; i < c->n_chain; i++)
		if (strcmp(c->chain[i], key) == 0)
			return true;
	return false;
}

static void chain_push(struct route_ctx *c, const char *key)
{
	if (c->n_chain == c->cap_chain) {
		c->cap_chain = c->cap_chain == 0 ? 8 : 2 * c->cap_chain;
		c->chain = xreallocarray(c->chain, c->cap_chain, sizeof(*c->chain));
	}
	c->chain[c->n_chain++] = xstrdup(key);
}

static void chain_pop(struct route_ctx *c)
{
	free(c->chain[--c->n_chain]);
}

/* ---- lookups ---- */

/* A table hit for domain or, for a name, one of its ".parent" entries. */
static const char *lookup_domain(const struct table *t, const char *domain)
{
	const char *v = table_lookup(t, domain);

	if (v != NULL || domain[0] == '[')
		return v;
	for (const char *p = strchr(domain, '.'); p != NULL; p = strchr(p + 1, '.'))
		if ((v = table_lookup(t, p)) != NULL)
			return v;
	return NULL;
}

/* The chain key of a's user part (a->key without "+ext"). */
static void user_key(const struct caddr *a, char *key, size_t keylen)
{
	snprintf(key, keylen, "%.*s@%s", (int)a->local_user_len, a->local,
		 a->is_local ? "" : a->domain);
	lower_ascii(key);
}

/*
 * virtual_alias_maps: "user+ext@domain", "user@domain", "@domain".  On a
 * hit, self_key gets the chain key of the address form that matched ("" for
 * the catch-all), which an item may name to mean "this address itself".
 */
static const char *lookup_virtual(const struct table *t, const struct caddr *a, char *self_key,
				  size_t keylen)
{
	char key[FULL_SIZE];
	const char *v;

	snprintf(self_key, keylen, "%s", a->key);
	if ((v = table_lookup(t, a->full)) != NULL)
		return v;
	if (a->local[a->local_user_len] != '\0') {
		snprintf(key, sizeof(key), "%.*s@%s", (int)a->local_user_len, a->local, a->domain);
		user_key(a, self_key, keylen);
		if ((v = table_lookup(t, key)) != NULL)
			return v;
	}
	self_key[0] = '\0';
	snprintf(key, sizeof(key), "@%s", a->domain);
	return table_lookup(t, key);
}

/* Whether user (lower-cased) may receive local mail. */
static bool local_user_exists(const struct route_config *rc, const char *user)
{
	struct passwd pw, *pwp = NULL;
	size_t len = 4096;
	char *buf;
	int e;

	if (rc->local_recipient_maps != NULL)
		return table_lookup(rc->local_recipient_maps, user) != NULL;
	for (;;) {
		buf = xmalloc(len);
		e = getpwnam_r(user, &pw, buf, len, &pwp);
		free(buf);
		if (e != ERANGE || len >= 1024 * 1024)
			break;
		len *= 4;
	}
	return e == 0 && pwp != NULL;
}

/* ---- expansion ---- */

/* One expansion in progress: the items of a table value found for a. */
struct frame {
	const struct caddr *a; /* the address being expanded */
	const char *self_key;  /* chain key an item may use to mean a itself, or "" */
	unsigned depth;	       /* a's depth; its address items are one deeper */
	enum item_kind kind;
	const char *source; /* table spec or include path, for error texts */
	unsigned skip;	    /* steps a self-reference skips */
};

static void route_addr(struct route_ctx *c, const struct caddr *a, unsigned depth, unsigned skip);
static void expand(struct route_ctx *c, const struct frame *f, const char *value, size_t len);

static bool has_prefix_ci(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && strncasecmp(s, prefix, n) == 0;
}

static bool is_special(const char *s, size_t len)
{
	return len > 0 && (s[0] == '|' || s[0] == '/' || has_prefix_ci(s, len, ":include:"));
}

/* Text of a quoted item "..." without quotes and backslashes (allocated). */
static char *unquote(const char *s, size_t len)
{
	char *out = xmalloc(len + 1), *o = out;

	for (size_t i = 1; i + 1 < len; i++) {
		if (s[i] == '\\' && i + 2 < len)
			i++;
		*o++ = s[i];
	}
	*o = '\0';
	return out;
}

/*
 * read_include - the items of an include file, comment lines blanked, in
 * *text (allocated).  Returns 0, or -1 with a reason.
 */
static int read_include(const char *path, char **text, size_t *lenp, char *why, size_t whylen)
{
	struct stat st;
	size_t len = 0, cap;
	char *buf;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file");
		close(fd);
		return -1;
	}
	/* st_size is a hint: the file may change while it is read. */
	cap = st.st_size < ROUTE_INCLUDE_MAX ? (size_t)st.st_size + 2 : ROUTE_INCLUDE_MAX + 1;
	buf = xmalloc(cap);
	while (len <= ROUTE_INCLUDE_MAX) {
		if (len == cap) {
			cap = 2 * cap < ROUTE_INCLUDE_MAX + 1 ? 2 * cap : ROUTE_INCLUDE_MAX + 1;
			buf = xrealloc(buf, cap);
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, whylen, "%s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > ROUTE_INCLUDE_MAX) {
		snprintf(why, whylen, "larger than %d bytes", ROUTE_INCLUDE_MAX);
		goto fail;
	}
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(why, whylen, "contains NUL");
		goto fail;
	}
	close(fd);
	/* Blank out comment lines: items never span lines. */
	for (size_t i = 0; i < len;) {
		size_t j = i, e;

		while (j < len && (buf[j] == ' ' || buf[j] == '\t'))
			j++;
		e = j;
		while (e < len && buf[e] != '\n')
			e++;
		if (j < len && buf[j] == '#')
			memset(buf + j, ' ', e - j);
		i = e + 1;
	}
	buf[len] = '\0';
	*text = buf;
	*lenp = len;
	return 0;
fail:
	close(fd);
	free(buf);
	return -1;
}

/* One ":include:path" item: its items count as one level deeper than f's. */
static void do_include(struct route_ctx *c, const struct frame *f, const char *item)
{
	const struct caddr *a = f->a;
	struct frame sub = *f;
	const char *path = item + strlen(":include:");
	char why[256], key[PATH_MAX + 16];
	char *text;
	size_t len;

	while (*path == ' ' || *path == '\t')
		path++;
	if (path[0] != '/') {
		add_error(c, a->full, "5.3.0 Include file name is not absolute");
		return;
	}
	snprintf(key, sizeof(key), ":include:%s", path);
	if (chain_has(c, key)) {
		add_error(c, a->full, "5.4.6 Alias expansion loop");
		return;
	}
	if (f->depth + 1 > c->max_depth) {
		add_error(c, a->full, "5.4.6 Alias expansion too deep");
		return;
	}
	if (read_include(path, &text, &len, why, sizeof(why)) < 0) {
		show_item(key, sizeof(key), path, strlen(path));
		add_error(c, a->full, "4.3.0 Cannot read include file %s: %s", key, why);
		return;
	}
	sub.depth = f->depth + 1;
	sub.source = path;
	chain_push(c, key);
	expand(c, &sub, text, len);
	chain_pop(c);
	free(text);
}

/* do_item - one item (NUL-terminated) of the expansion f. */
static void do_item(struct route_ctx *c, const struct frame *f, const char *item)
{
	const struct caddr *a = f->a;
	enum item_kind kind = f->kind;
	char why[256], shown[ROUTE_ITEM_SHOW + 1];
	struct caddr b;

	if (kind == ITEMS_ALIAS && item[0] == '|') {
		if (c->rc->allow_alias_commands)
			add_target(c, item, "local", "", "", "");
		else
			add_error(c, a->full, "5.3.0 Alias command delivery not allowed");
		return;
	}
	if (kind == ITEMS_ALIAS && item[0] == '/') {
		if (c->rc->allow_alias_files)
			add_target(c, item, "local", "", "", "");
		else
			add_error(c, a->full, "5.3.0 Alias file delivery not allowed");
		return;
	}
	if (kind == ITEMS_ALIAS && has_prefix_ci(item, strlen(item), ":include:")) {
		do_include(c, f, item);
		return;
	}
	/*
	 * "|cmd" and "/file" are valid local parts, but in a virtual map they
	 * are an admin's mistake, not a user named "|cmd": say so.
	 */
	if (kind == ITEMS_VIRTUAL && is_special(item, strlen(item))) {
		show_item(shown, sizeof(shown), item, strlen(item));
		add_error(c, a->full,
			  "5.1.3 Bad address syntax in %s: \"%s\": command, file or include "
			  "not allowed here",
			  f->source, shown);
		return;
	}
	if (caddr_parse(c, item, &b, why, sizeof(why)) < 0) {
		show_item(shown, sizeof(shown), item, strlen(item));
		add_error(c, a->full, "5.1.3 Bad address syntax in %s: \"%s\": %s", f->source,
			  shown, why);
		return;
	}
	if (strcmp(b.key, a->key) == 0 || strcmp(b.key, f->self_key) == 0) {
		/* "bob: bob, x": bob itself, without this expansion step again */
		route_addr(c, a, f->depth, f->skip);
		return;
	}
	if (chain_has(c, b.key)) {
		add_error(c, b.full, "5.4.6 Alias expansion loop");
		return;
	}
	if (f->depth + 1 > c->max_depth) {
		add_error(c, b.full, "5.4.6 Alias expansion too deep");
		return;
	}
	route_addr(c, &b, f->depth + 1, 0);
}

/*
 * expand - route the items of value (len bytes) found for f->a.
 * Separators: commas and newlines; blanks too between address items.
 */
static void expand(struct route_ctx *c, const struct frame *f, const char *value, size_t len)
{
	enum item_kind kind = f->kind;
	const char *p = value, *end = value + len;
	size_t items = 0;

	while (!c->full) {
		const char *s, *e;
		bool in_quote = false, special;
		char *item;

		while (p < end && (*p == ',' || is_blank(*p)))
			p++;
		if (p == end)
			break;
		s = p;
		/* A special item may contain blanks, so only a comma or newline ends it. */
		special = kind == ITEMS_ALIAS && is_special(s, (size_t)(end - s));
		for (; p < end; p++) {
			if (in_quote && *p == '\\' && p + 1 < end && p[1] != '\n') {
				p++;
				continue;
			}
			if (*p == '"')
				in_quote = !in_quote;
			else if (!in_quote &&
				 (*p == ',' || *p == '\n' || (!special && is_blank(*p))))
				break;
		}
		e = p;
		while (e > s && is_blank(e[-1]))
			e--;
		items++;
		/* "|cmd, arg" written quoted: the item is the text inside. */
		if (kind == ITEMS_ALIAS && e - s >= 2 && *s == '"' && e[-1] == '"' &&
		    is_special(s + 1, (size_t)(e - s - 2)))
			item = unquote(s, (size_t)(e - s));
		else
			item = xstrndup(s, (size_t)(e - s));
		do_item(c, f, item);
		free(item);
	}
	if (items == 0)
		add_error(c, f->a->full, "5.3.0 Empty alias expansion in %s", f->source);
}

/* expand() with a (and the form of it that matched) on the chain. */
static void expand_pushed(struct route_ctx *c, const struct frame *f, const char *value)
{
	bool two = f->self_key[0] != '\0' && strcmp(f->self_key, f->a->key) != 0;

	chain_push(c, f->a->key);
	if (two)
		chain_push(c, f->self_key);
	expand(c, f, value, strlen(value));
	if (two)
		chain_pop(c);
	chain_pop(c);
}

/* Steps 4-7 for an address outside mydestination. */
static void route_remote(struct route_ctx *c, const struct caddr *a)
{
	const struct route_config *rc = c->rc;
	const char *v;

	for (size_t i = 0; i < rc->n_channels; i++) {
		const struct route_channel *ch = &rc->channels[i];

		if (ch->domains != NULL && lookup_domain(ch->domains, a->domain) != NULL) {
			add_target(c, a->full, ch->name, a->domain, "", "");
			return;
		}
	}
	if (rc->transport_maps != NULL && (v = lookup_domain(rc->transport_maps, a->domain)) &&
	    *v != '\0') {
		const char *colon = strchr(v, ':');
		size_t clen = colon != NULL ? (size_t)(colon - v) : strlen(v);
		const char *nexthop = colon != NULL && colon[1] != '\0' ? colon + 1 : a->domain;
		char channel[128];

		if (clen == 0) /* ":nexthop": the default channel */
			snprintf(channel, sizeof(channel), "smtp");
		else
			snprintf(channel, sizeof(channel), "%.*s", (int)clen, v);
		if (strcmp(channel, "error") == 0) {
			const char *text = colon != NULL ? colon + 1 : "";
			char code[8] = "";
			int n = 0;

			while (*text == ' ')
				text++;
			/* keep a 4.x.y or 5.x.y code; otherwise the text gets 5.0.0 */
			if (sscanf(text, "%1[45].%*3[0-9].%*3[0-9]%n", code, &n) >= 1 && n > 0 &&
			    (text[n] == '\0' || text[n] == ' '))
				add_error(c, a->full, "%s", text);
			else
				add_error(c, a->full, "5.0.0 %s",
					  *text != '\0' ? text : "Delivery not possible");
			return;
		}
		add_target(c, a->full, channel, nexthop, "", "");
		return;
	}
	if (rc->relayhost != NULL && rc->relayhost[0] != '\0')
		add_target(c, a->full, "smtp", rc->relayhost, "", "");
	else
		add_target(c, a->full, "smtp", a->domain, "", "");
}

/* Step 3 for an address in mydestination. */
static void route_local(struct route_ctx *c, const struct caddr *a, unsigned depth, unsigned skip)
{
	const struct table *aliases = c->rc->alias_maps;
	char user[ADDRESS_LOCAL_SIZE], self_key[FULL_SIZE];
	const char *v = NULL;

	if (!(skip & SKIP_ALIAS) && aliases != NULL) {
		snprintf(self_key, sizeof(self_key), "%s", a->key);
		v = table_lookup(aliases, a->raw);
		if (v == NULL && a->raw[a->raw_user_len] != '\0') {
			user_key(a, self_key, sizeof(self_key));
			v = table_lookup_n(aliases, a->raw, a->raw_user_len);
		}
		if (v != NULL) {
			struct frame f = {a,
					  self_key,
					  depth,
					  ITEMS_ALIAS,
					  table_spec(aliases),
					  skip | SKIP_VIRTUAL | SKIP_ALIAS};

			expand_pushed(c, &f, v);
			return;
		}
	}
	snprintf(user, sizeof(user), "%.*s", (int)a->raw_user_len, a->raw);
	lower_ascii(user);
	if (!local_user_exists(c->rc, user))
		add_error(c, a->full, "5.1.1 User unknown in local recipient table");
	else
		add_target(c, a->full, "local", "", user, "");
}

/* Route one canonical address found at depth through steps 2-7. */
static void route_addr(struct route_ctx *c, const struct caddr *a, unsigned depth, unsigned skip)
{
	const struct table *virt = c->rc->virtual_alias_maps;
	char self_key[FULL_SIZE];
	const char *v;

	if (c->full)
		return;
	if (c->work == 0) {
		overflow(c);
		return;
	}
	c->work--;
	if (!(skip & SKIP_VIRTUAL) && virt != NULL &&
	    (v = lookup_virtual(virt, a, self_key, sizeof(self_key))) != NULL) {
		struct frame f = {
		    a, self_key, depth, ITEMS_VIRTUAL, table_spec(virt), skip | SKIP_VIRTUAL};

		expand_pushed(c, &f, v);
		return;
	}
	if (a->is_local)
		route_local(c, a, depth, skip);
	else
		route_remote(c, a);
}

int route_resolve(const struct route_config *rc, const char *rcpt, struct route_result *res,
		  char *err, size_t errlen)
{
	struct route_ctx c = {.rc = rc, .res = res, .rcpt = rcpt};
	struct caddr a;
	char why[256];

	if (res != NULL)
		*res = (struct route_result){0};
	if (rc == NULL || rcpt == NULL || res == NULL) {
		if (errlen > 0)
			snprintf(err, errlen, "route_resolve: missing argument");
		return -1;
	}
	c.max_depth = rc->max_depth != 0 ? rc->max_depth : ROUTE_DEFAULT_DEPTH;
	if (c.max_depth > ROUTE_DEPTH_CAP)
		c.max_depth = ROUTE_DEPTH_CAP;
	c.max_targets = rc->max_targets != 0 ? rc->max_targets : ROUTE_DEFAULT_TARGETS;
	c.work = (unsigned long)c.max_targets * ROUTE_WORK_FACTOR;
	for (size_t i = 0; i < rc->n_mydestination && c.origin == NULL; i++)
		if (rc->mydestination[i] != NULL && rc->mydestination[i][0] != '.' &&
		    rc->mydestination[i][0] != '\0')
			c.origin = rc->mydestination[i];

	if (caddr_parse(&c, rcpt, &a, why, sizeof(why)) < 0) {
		add_error(&c, rcpt, "5.1.3 Bad recipient address syntax: %s", why);
		return 0;
	}
	c.rcpt = a.full;
	route_addr(&c, &a, 0, 0);
	free(c.chain);
	free(c.index);
	return 0;
}

void route_result_free(struct route_result *res)
{
	if (res == NULL)
		return;
	for (size_t i = 0; i < res->n; i++) {
		free(res->t[i].address);
		free(res->t[i].channel);
		free(res->t[i].nexthop);
		free(res->t[i].user);
		free(res->t[i].error);
	}
	free(res->t);
	res->t = NULL;
	res->n = 0;
}
