/*
 * config - zfarm's one configuration file: parse, override, look up.
 *
 * Every zfarm program reads the same file (etc/zfarm.conf, zfarm.conf(5)):
 * farmd for its farm and channel tables, every daemon through the farm
 * skeleton (common/farm_server.c) for its own parameters, and the tools.
 * This module knows nothing of mail or farms: it stores strings in scopes
 * and hands them out expanded and validated.
 *
 * File format (Postfix main.cf style, plus sections):
 *
 *   # a comment: '#' is the first non-blank character of the line
 *   run_directory = /var/spool/zfarm
 *   queue_directory = $run_directory/queue   # <- part of the value!
 *   mydestination = localhost, ${myhostname}
 *   long_value = first part
 *       continued here
 *
 *   [farm smtpserver]
 *   listen = inet:127.0.0.1:2525
 *   process_limit = 100
 *
 *   [channel smtp]
 *   concurrency = 20
 *
 * - Lines are split on LF; a trailing CR and trailing blanks are dropped.
 *   A physical line may hold at most CONFIG_MAX_LINE bytes and the whole
 *   file at most CONFIG_MAX_FILE bytes.  NUL bytes are an error.
 * - Blank lines and comment lines (first non-blank character '#') are
 *   ignored wherever they are, even between a value and its continuation.
 *   '#' anywhere else is an ordinary character, so there are no trailing
 *   comments (not even after a section header).
 * - "name = value": the name is [A-Za-z0-9_]+ (no '-' or '.', so "$a-b"
 *   and "-o kind.name.param" are unambiguous); blanks around '=' and at
 *   both ends of the value are dropped; the value may be empty.
 * - A line starting with a blank (space or tab) continues the value of the
 *   parameter on the logical line before it: its text, trimmed, is joined
 *   with one space.  A continuation at the start of the file or right after
 *   a section header is an error.  A continuation cannot start with '#'.
 * - "[KIND NAME]" starts a section (blanks allowed inside the brackets);
 *   KIND and NAME are [A-Za-z0-9_.-]+.  Parameters before the first
 *   section are global.  zfarm uses kinds "farm" and "channel".
 * - A section given twice, or a parameter given twice in one scope, is an
 *   error naming both lines.
 * - Values are expanded when read: $name and ${name} become the value of
 *   the global parameter name (itself expanded), "$$" is one '$'.  Section
 *   parameters cannot be referenced.  A reference to an unset parameter, a
 *   reference loop, references nested deeper than CONFIG_EXPAND_DEPTH
 *   levels, a malformed reference ("$-", "${a", "${a b}") or a result
 *   longer than CONFIG_MAX_FILE are errors: config_expand_check() reports
 *   them, config_get() expands the bad reference to "" (after a loop or
 *   depth error the rest of that value is dropped too).
 * - There is no inheritance: a section parameter never falls back to the
 *   global of the same name.  Callers do that explicitly if they want it.
 *
 * Layers.  Each parameter is looked up in three layers, first hit wins:
 *   1. overrides: config_override(), from "-o name=value" and
 *      "-o kind.name.param=value" on every command line; their location is
 *      "-o" (no line);
 *   2. the file: config_load() or config_load_string(), once per config;
 *   3. defaults: config_set_default(), globals computed by the program
 *      (e.g. myhostname from gethostname()) so the file can say $myhostname;
 *      their location is "default".
 * Overrides and defaults are stored apart from the file, so applying them
 * before or after the load gives the same result.
 *
 * Errors.  Every failure is returned (0/-1) with a reason written to the
 * caller's err buffer (NUL-terminated, truncated to errlen; err may be
 * NULL when errlen is 0).  Reasons start with where the problem is:
 * "FILE:LINE: reason" for a line, "FILE: reason" for the whole file (cannot
 * open/read, too big), "-o: reason" for an override, and typed getters say
 * "FILE:LINE: parameter NAME: reason", where NAME is "param" for a global
 * and "kind.name.param" (the -o spelling) for a section parameter.  The
 * library never logs and never exits; allocation failure aborts (xalloc).
 *
 * Reload.  A failed load applies nothing: the config keeps its overrides
 * and defaults and can be loaded again.  To reload, build a new config
 * (config_new, re-apply the -o list and defaults, config_load) and swap it
 * in only on success; the running one stays untouched.
 *
 * Ownership.  Strings returned by config_get() and friends are owned by the
 * config and stay valid until config_free(), or the next config_override(),
 * config_set_default() or config_load*() on it, whichever comes first.
 * Lookups are hash tables: loading and reading N parameters is O(N).
 * Not thread-safe; even lookups update an internal expansion cache.
 */
#ifndef ZFARM_COMMON_CONFIG_H
#define ZFARM_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_MAX_LINE	    65536	       /* bytes in one physical line */
#define CONFIG_MAX_FILE	    (16 * 1024 * 1024) /* bytes in the file, and in one expanded value */
#define CONFIG_EXPAND_DEPTH 10		       /* nested $references: a=$b is one level */

struct config;

/* config_new - an empty config: no parameters, no sections. */
struct config *config_new(void);

/* config_free - free *cfgp and everything it handed out; *cfgp = NULL.  NULL ok. */
void config_free(struct config **cfgp);

/*
 * config_load - parse the file at path into cfg.
 * Returns 0, or -1 with "PATH:LINE: reason" / "PATH: reason" (open and read
 * errors carry strerror).  On failure nothing of the file is kept.  A
 * config takes one file: a second load is an error (build a new config).
 */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);

/*
 * config_load_string - as config_load() for text held in memory (tests,
 * the embedded default config); label stands for the file name in errors
 * and locations (copied).
 */
int config_load_string(struct config *cfg, const char *text, const char *label, char *err,
		       size_t errlen);

/*
 * config_override - apply one "-o" setting: "name=value" sets a global,
 * "kind.name.param=value" a section parameter (the section is created if
 * the file has none).  KIND is the text up to the first '.', PARAM after
 * the last '.', NAME what is between (names may contain dots, kinds that
 * contain dots cannot be overridden).  Blanks around name and value are
 * dropped.  A later override of the same parameter replaces an earlier one.
 * Returns 0, or -1 with "-o: reason" (no '=', bad or empty names).
 */
int config_override(struct config *cfg, const char *setting, char *err, size_t errlen);

/*
 * config_set_default - give global param a value used only when neither the
 * file nor an override sets it.  value is expanded like any other (copied).
 * Returns 0, or -1 with "default: reason" for a bad name.
 */
int config_set_default(struct config *cfg, const char *param, const char *value, char *err,
		       size_t errlen);

/*
 * config_get - the expanded value of param: a global when kind is NULL
 * (name is then ignored), else of section [kind name].  NULL when unset
 * (or when the section does not exist).  Bad references expand to "";
 * use config_get_string() or config_expand_check() to see such errors.
 */
const char *config_get(const struct config *cfg, const char *kind, const char *name,
		       const char *param);

/* config_get_default - config_get(), or def (returned as is, unexpanded) when unset. */
const char *config_get_default(const struct config *cfg, const char *kind, const char *name,
			       const char *param, const char *def);

/*
 * config_get_string - checked config_get(): *out = the expanded value, or
 * def when unset.  Returns 0, or -1 with the expansion error.
 */
int config_get_string(const struct config *cfg, const char *kind, const char *name,
		      const char *param, const char *def, const char **out, char *err,
		      size_t errlen);

/*
 * config_expand_check - expand every parameter in effect (globals, then
 * sections in order; override, file and default layers).  Returns 0, or
 * -1 with the first error, "FILE:LINE: parameter NAME: reason" naming the
 * parameter whose value holds the bad reference.  Daemons call it once
 * after loading so a typo in an unused value still stops the start.
 */
int config_expand_check(const struct config *cfg, char *err, size_t errlen);

/*
 * Typed getters.  Each looks up and expands param like config_get() and
 * validates it.  When the parameter is unset *out = def (not range
 * checked) and 0 is returned; when set and valid *out = the value and 0;
 * otherwise -1 with "FILE:LINE: parameter NAME: reason" and *out untouched.
 * Blanks around the expanded value are ignored.
 */

/* config_get_int - decimal integer with optional sign, within [min, max]. */
int config_get_int(const struct config *cfg, const char *kind, const char *name, const char *param,
		   long long def, long long min, long long max, long long *out, char *err,
		   size_t errlen);

/* config_get_bool - yes/no, true/false, on/off, 1/0, any letter case. */
int config_get_bool(const struct config *cfg, const char *kind, const char *name, const char *param,
		    bool def, bool *out, char *err, size_t errlen);

/*
 * config_get_time - seconds: digits and an optional unit s (seconds, the
 * default), m, h, d or w ("90", "5m", "2d"); no sign, no mixing ("1h30m").
 * The result must fit and lie within [min, max].
 */
int config_get_time(const struct config *cfg, const char *kind, const char *name, const char *param,
		    long long def, long long min, long long max, long long *out, char *err,
		    size_t errlen);

/*
 * config_get_size - bytes: digits and an optional unit k/K, m/M or g/G,
 * powers of 1024 ("512", "10m", "1G"); no sign.  Within [min, max].
 */
int config_get_size(const struct config *cfg, const char *kind, const char *name, const char *param,
		    long long def, long long min, long long max, long long *out, char *err,
		    size_t errlen);

/*
 * config_get_list - split the value on commas and/or blanks, dropping empty
 * items ("a, b,,c d" -> a b c d).  When unset, def is split instead (NULL:
 * empty list).  *out is a new NULL-terminated array of new strings, owned
 * by the caller: free it with config_list_free().  *count (if count is not
 * NULL) gets the number of items.  Returns 0, or -1 on an expansion error
 * (then *out is untouched).
 */
int config_get_list(const struct config *cfg, const char *kind, const char *name, const char *param,
		    const char *def, char ***out, size_t *count, char *err, size_t errlen);

/* config_list_free - free a config_get_list() array; *listp = NULL.  NULL ok. */
void config_list_free(char ***listp);

/*
 * Sections.  Sections of one kind are numbered 0..count-1 in the order they
 * first appeared (sections created by an override applied before the load
 * come first).  A section created by an override counts like one from the
 * file.
 */

/* config_section_count - number of sections of this kind (0 if none). */
size_t config_section_count(const struct config *cfg, const char *kind);

/* config_section_name - NAME of the index'th [kind NAME]; NULL if out of range. */
const char *config_section_name(const struct config *cfg, const char *kind, size_t index);

/*
 * config_foreach - call fn for every parameter set in the file or by an
 * override in one scope (kind NULL: the globals), so a program can reject
 * names it does not know.  Defaults are not visited.  Order: the file's
 * order (a parameter the file sets and -o overrides is visited once, with
 * the override's value and location), then override-only parameters.
 * value is expanded as config_get() would; file is the file label, "-o";
 * line is 0 for overrides.  fn must not change cfg (no override/load).
 * A non-zero return from fn stops the walk and is returned; otherwise 0
 * (also when the section does not exist).
 */
int config_foreach(const struct config *cfg, const char *kind, const char *name,
		   int (*fn)(const char *param, const char *value, const char *file, unsigned line,
			     void *arg),
		   void *arg);

/*
 * config_location - where the value of param in effect was set (param
 * NULL: where section [kind name] was opened).  *file is the file label,
 * "-o" or "default"; *line is 0 when there is no line.  Returns 0, or -1 if
 * there is no such parameter or section.  For a program's own messages,
 * e.g. "farm smtpserver has no program" at the section's line.
 */
int config_location(const struct config *cfg, const char *kind, const char *name, const char *param,
		    const char **file, unsigned *line);

#endif
