/* relay - smtpserver's relay control (reject_unauth_destination); see relay.h. */
#include "smtpserver/relay.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xalloc.h"

/*
 * A set of lower-cased domains without a trailing dot: open addressing
 * with linear probing, built once and never resized afterwards, at most
 * half full so every probe sequence ends at an empty slot.  Lookups take
 * a (pointer, length) pair so that relay_check can look up the parent
 * domains of a recipient in place, without copying.
 */
struct domain_set {
	char **slot; /* cap entries, NULL = empty */
	size_t cap;  /* a power of two, or 0 for an empty set */
};

/* A domain list: "example.com" entries and ".example.com" entries (stored without the dot). */
struct domain_list {
	struct domain_set exact;
	struct domain_set parent;
};

struct relay_policy {
	struct domain_list mydest;
	struct domain_list relay;
};

/* FNV-1a: short keys, no adversary gets to choose the table contents. */
static size_t hash(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037u;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211u;
	}
	return (size_t)h;
}

/* Room for up to n keys. */
static void set_init(struct domain_set *set, size_t n)
{
	set->cap = 0;
	set->slot = NULL;
	if (n == 0)
		return;
	set->cap = 4;
	while (set->cap < 2 * n)
		set->cap *= 2;
	set->slot = xcalloc(set->cap, sizeof(set->slot[0]));
}

static void set_free(struct domain_set *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->slot[i]);
	free(set->slot);
	set->slot = NULL;
	set->cap = 0;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t set_find(const struct domain_set *set, const char *key, size_t len)
{
	size_t mask = set->cap - 1, i = hash(key, len) & mask;

	while (set->slot[i] && (strncmp(set->slot[i], key, len) != 0 || set->slot[i][len] != '\0'))
		i = (i + 1) & mask;
	return i;
}

static bool set_has(const struct domain_set *set, const char *key, size_t len)
{
	return set->cap > 0 && set->slot[set_find(set, key, len)] != NULL;
}

/* Add key (taking ownership); a duplicate is freed. */
static void set_add(struct domain_set *set, char *key)
{
	size_t i = set_find(set, key, strlen(key));

	if (set->slot[i])
		free(key);
	else
		set->slot[i] = key;
}

/* ASCII lower-case copy of s into buf (size bytes); length, or -1 if it does not fit. */
static int lower_copy(const char *s, char *buf, size_t size)
{
	size_t n = strlen(s);

	if (n >= size)
		return -1;
	for (size_t i = 0; i <= n; i++)
		buf[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
	return (int)n;
}

/*
 * Check one entry and add it to list: "domain", ".domain" or "[literal]",
 * with an optional trailing dot after a domain.  0, or -1 with
 * "ENTRY: reason" in err.  UTF-8 domains are allowed: they compare as
 * bytes, like the recipient's domain_lc.
 */
static int add_entry(struct domain_list *list, const char *entry, char *err, size_t errlen)
{
	char buf[ADDRESS_DOMAIN_SIZE + 2], why[128];
	char *d = buf;
	bool parent = false;
	int len = lower_copy(entry, buf, sizeof(buf));

	if (len < 0) {
		snprintf(err, errlen, "%.64s...: domain longer than %d octets", entry,
			 ADDRESS_DOMAIN_MAX);
		return -1;
	}
	if (buf[0] == '.') {
		parent = true;
		d++;
		len--;
	}
	if (d[0] != '[' && len > 0 && d[len - 1] == '.')
		d[len - 1] = '\0';
	if (parent && d[0] == '[') {
		snprintf(err, errlen, "%s: \".\" before an address literal", entry);
		return -1;
	}
	if (address_domain_valid(d, ADDRESS_SMTPUTF8, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", entry, why);
		return -1;
	}
	set_add(parent ? &list->parent : &list->exact, xstrdup(d));
	return 0;
}

static int list_init(struct domain_list *list, const char *const *items, size_t n, char *err,
		     size_t errlen)
{
	/* Sized for n keys in each set: a few wasted slots, no resizing. */
	set_init(&list->exact, n);
	set_init(&list->parent, n);
	for (size_t i = 0; i < n; i++)
		if (add_entry(list, items[i], err, errlen) < 0)
			return -1;
	return 0;
}

static void list_free(struct domain_list *list)
{
	set_free(&list->exact);
	set_free(&list->parent);
}

/*
 * Is the lower-cased domain d (len bytes, no trailing dot) in list?  The
 * parent set is tried with each proper suffix after a dot, so
 * ".example.com" covers a.example.com and b.a.example.com, not
 * example.com.  A literal is never a subdomain of anything.
 */
static bool list_has(const struct domain_list *list, const char *d, size_t len)
{
	if (d[0] == '.') /* an empty first label: not a domain (".x" is no subdomain of x) */
		return false;
	if (set_has(&list->exact, d, len))
		return true;
	if (d[0] == '[' || list->parent.cap == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (d[i] == '.' && set_has(&list->parent, d + i + 1, len - i - 1))
			return true;
	return false;
}

/* Trim one trailing dot (not from a literal); the length that remains. */
static size_t trim_dot(const char *d)
{
	size_t len = strlen(d);

	if (len > 0 && d[0] != '[' && d[len - 1] == '.')
		len--;
	return len;
}

struct relay_policy *relay_policy_new(const char *const *mydestination, size_t n_mydest,
				      const char *const *relay_domains, size_t n_relay, char *err,
				      size_t errlen)
{
	struct relay_policy *p = xcalloc(1, sizeof(*p));

	if (list_init(&p->mydest, mydestination, n_mydest, err, errlen) < 0 ||
	    list_init(&p->relay, relay_domains, n_relay, err, errlen) < 0) {
		relay_policy_free(&p);
		return NULL;
	}
	return p;
}

void relay_policy_free(struct relay_policy **p)
{
	if (!p || !*p)
		return;
	list_free(&(*p)->mydest);
	list_free(&(*p)->relay);
	free(*p);
	*p = NULL;
}

bool relay_domain_is_local(const struct relay_policy *p, const char *domain)
{
	char buf[ADDRESS_DOMAIN_SIZE + 1];
	size_t len;

	if (!p || !domain || lower_copy(domain, buf, sizeof(buf)) < 0)
		return false;
	len = trim_dot(buf);
	return len > 0 && list_has(&p->mydest, buf, len);
}

static enum relay_verdict deny(const char **reason, const char *why)
{
	if (reason)
		*reason = why;
	return RELAY_DENIED;
}

enum relay_verdict relay_check(const struct relay_policy *p, const struct address *rcpt,
			       bool trusted, const char **reason)
{
	size_t len = trim_dot(rcpt->domain_lc);
	enum relay_verdict v;

	if (reason)
		*reason = NULL;
	if (len == 0) {
		/* RFC 5321 4.5.1: <postmaster> alone must be accepted, nothing else. */
		if (!rcpt->is_null && strcasecmp(rcpt->local, "postmaster") == 0)
			return RELAY_LOCAL;
		return deny(reason, "Recipient address needs a domain");
	}
	if (list_has(&p->mydest, rcpt->domain_lc, len))
		v = RELAY_LOCAL;
	else if (list_has(&p->relay, rcpt->domain_lc, len))
		v = RELAY_DOMAIN;
	else
		return trusted ? RELAY_TRUSTED : deny(reason, "Relay access denied");
	/*
	 * A local part that routes onward (u%ext, ext!u, "u@ext") would let
	 * an untrusted client relay through a next hop that honours it.  In
	 * the canonical form '@' can only be inside a quoted local part.
	 */
	if (!trusted && strpbrk(rcpt->local, "%!@"))
		return deny(reason, "Relay access denied");
	return v;
}
