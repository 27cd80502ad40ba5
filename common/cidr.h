/*
 * cidr - lists of IPv4/IPv6 networks ("mynetworks") and matching a client
 * address against them.
 *
 * Callers: smtpserver (relay control: is the client in mynetworks?), later
 * the router and policy code.  Parsing happens once at start-up or reload;
 * matching is on the per-connection path and costs O(entries) with no
 * allocation.
 *
 * Syntax of one entry (Postfix mynetworks style, numeric only):
 *   192.0.2.0/24   198.51.100.7 (= /32)
 *   [2001:db8::]/32   [::1]/128   [::1] (= /128)   2001:db8::/32 (brackets optional)
 * Host bits set below the prefix ("10.0.0.1/8") are an error, as in
 * Postfix ("non-null host address bits"), so a typo cannot widen a
 * network silently.  Hostnames, /file/names and !negation are not
 * supported and are errors.  An IPv4-mapped IPv6 client (::ffff:a.b.c.d)
 * matches the IPv4 entries.
 *
 * Library code: errors are returned with a reason naming the entry, never
 * logged.
 */
#ifndef ZFARM_CIDR_H
#define ZFARM_CIDR_H

#include <stdbool.h>
#include <stddef.h>

struct sockaddr;
struct cidr_list;

/*
 * cidr_list_parse - parse n entries (each one NUL-terminated entry as
 * above, e.g. from config_get_list()).  n == 0 gives an empty list that
 * matches nothing.  NULL with "ENTRY: reason" in err on the first bad one.
 */
struct cidr_list *cidr_list_parse(const char *const *items, size_t n, char *err, size_t errlen);

/* cidr_list_match - is sa (AF_INET or AF_INET6; others: false) in the list? */
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);

/* cidr_list_match_string - the same for a numeric address string; false if not one. */
bool cidr_list_match_string(const struct cidr_list *l, const char *addr);

/* cidr_list_count - number of entries. */
size_t cidr_list_count(const struct cidr_list *l);

/* cidr_list_free - free the list; *l = NULL.  NULL ok. */
void cidr_list_free(struct cidr_list **l);

#endif
