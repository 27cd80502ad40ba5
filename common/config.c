/* config - zfarm's configuration file reader; see config.h. */
#include "common/config.h"
#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/strbuf.h"
#include "common/xalloc.h"

/* Layers of one scope, in lookup order: the first that has a name wins. */
enum config_layer {
	CONFIG_OVERRIDE = 0,
	CONFIG_FILE,
	CONFIG_DEFAULT,
	CONFIG_NLAYERS,
};

enum config_exp_state {
	CONFIG_EXP_IDLE = 0, /* nothing cached for this generation */
	CONFIG_EXP_BUSY,     /* being expanded: meeting it again is a loop */
	CONFIG_EXP_DONE,     /* exp/exp_err/height hold the result */
};

static const char config_loc_override[] = "-o";
static const char config_loc_default[] = "default";

/* Open-addressing hash map from a borrowed string key to an index. */
struct config_slot {
	const char *key; /* NULL: empty slot; points into the owner's string */
	size_t val;
};

struct config_map {
	struct config_slot *slots;
	size_t cap; /* 0 or a power of two */
	size_t n;
};

struct config_section;

struct config_param {
	char *name;
	char *value;	  /* raw text as written */
	const char *file; /* a label owned by struct config, "-o" or "default" */
	unsigned line;	  /* 0: no line (override, default) */
	struct config_section *sec;
	/*
	 * Memoized expansion, valid while exp_gen == config.gen.  Memoizing
	 * keeps "a = $b$b$b...", "b = $c$c$c..." linear instead of exponential.
	 */
	char *exp;
	char *exp_err; /* first expansion error, NULL if none */
	unsigned long exp_gen;
	unsigned char exp_state;
	unsigned char height; /* longest $reference chain below; DEPTH+1: too deep */
};

struct config_scope {
	struct config_param *params; /* in order of appearance */
	size_t n, cap;
	struct config_map map; /* name -> index in params */
};

struct config_section {
	char *kind, *name; /* both NULL for the globals */
	const char *file;  /* where the header is; "-o" if only overrides made it */
	unsigned line;
	struct config_scope scope[CONFIG_NLAYERS];
};

/* All sections of one kind, so count/name(index) are O(1). */
struct config_kind {
	char *kind;
	size_t *secs; /* indexes into config.secs */
	size_t n, cap;
	struct config_map names; /* section name -> index in config.secs */
};

struct config {
	struct config_section *global;
	struct config_section **secs;
	size_t nsecs, secs_cap;
	struct config_kind *kinds;
	size_t nkinds, kinds_cap;
	struct config_map kind_map; /* kind -> index in kinds */
	char **labels;		    /* file labels that params point to */
	size_t nlabels;
	bool loaded;
	unsigned long gen; /* bumped by every change: invalidates expansions */
};

/* A growable string for values and expansions. */

static char *config_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *config_vasprintf(const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	char *s;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return xstrdup("(bad format)");
	s = xmalloc((size_t)n + 1);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

static bool config_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static bool config_is_param_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static bool config_is_section_char(char c)
{
	return config_is_param_char(c) || c == '.' || c == '-';
}

static bool config_is_param_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!config_is_param_char(s[i]))
			return false;
	return true;
}

static bool config_is_section_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!config_is_section_char(s[i]))
			return false;
	return true;
}

/* config_trim - the [*b, *e) span of s..s+n without blanks at either end. */
static void config_trim(const char *s, size_t n, const char **b, const char **e)
{
	const char *end = s + n;

	while (s < end && config_is_space(*s))
		s++;
	while (end > s && config_is_space(end[-1]))
		end--;
	*b = s;
	*e = end;
}

/* ---- hash map ---- */

static size_t config_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

static bool config_map_get(const struct config_map *m, const char *key, size_t *val)
{
	size_t mask = m->cap - 1;

	if (m->cap == 0)
		return false;
	for (size_t i = config_hash(key) & mask; m->slots[i].key; i = (i + 1) & mask) {
		if (strcmp(m->slots[i].key, key) == 0) {
			*val = m->slots[i].val;
			return true;
		}
	}
	return false;
}

static void config_map_insert(struct config_map *m, const char *key, size_t val)
{
	size_t mask = m->cap - 1, i;

	for (i = config_hash(key) & mask; m->slots[i].key; i = (i + 1) & mask)
		;
	m->slots[i].key = key;
	m->slots[i].val = val;
	m->n++;
}

/* config_map_put - add a key that is not in the map yet. */
static void config_map_put(struct config_map *m, const char *key, size_t val)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct config_map bigger = {NULL, m->cap ? m->cap * 2 : 16, 0};

		bigger.slots = xcalloc(bigger.cap, sizeof(*bigger.slots));
		for (size_t i = 0; i < m->cap; i++)
			if (m->slots[i].key)
				config_map_insert(&bigger, m->slots[i].key, m->slots[i].val);
		free(m->slots);
		*m = bigger;
	}
	config_map_insert(m, key, val);
}

static void config_map_free(struct config_map *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

/* ---- scopes and sections ---- */

static struct config_param *config_scope_find(const struct config_scope *sc, const char *name)
{
	size_t i;

	if (!config_map_get(&sc->map, name, &i))
		return NULL;
	return &sc->params[i];
}

/* config_scope_add - new parameter; takes ownership of name and value. */
static struct config_param *config_scope_add(struct config_scope *sc, struct config_section *sec,
					     char *name, char *value, const char *file,
					     unsigned line)
{
	struct config_param *p;

	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 8;
		sc->params = xreallocarray(sc->params, sc->cap, sizeof(*sc->params));
	}
	p = &sc->params[sc->n];
	memset(p, 0, sizeof(*p));
	p->name = name;
	p->value = value;
	p->file = file;
	p->line = line;
	p->sec = sec;
	config_map_put(&sc->map, p->name, sc->n);
	sc->n++;
	return p;
}

static void config_param_forget(struct config_param *p)
{
	free(p->exp);
	free(p->exp_err);
	p->exp = NULL;
	p->exp_err = NULL;
	p->exp_state = CONFIG_EXP_IDLE;
}

static void config_scope_free(struct config_scope *sc)
{
	for (size_t i = 0; i < sc->n; i++) {
		config_param_forget(&sc->params[i]);
		free(sc->params[i].name);
		free(sc->params[i].value);
	}
	free(sc->params);
	config_map_free(&sc->map);
	memset(sc, 0, sizeof(*sc));
}

/* config_scope_set - set or replace name in one layer (overrides, defaults). */
static void config_scope_set(struct config_scope *sc, struct config_section *sec, const char *name,
			     const char *value, const char *file)
{
	struct config_param *p = config_scope_find(sc, name);

	if (p == NULL) {
		config_scope_add(sc, sec, xstrdup(name), xstrdup(value), file, 0);
		return;
	}
	config_param_forget(p);
	free(p->value);
	p->value = xstrdup(value);
}

static struct config_section *config_section_new(const char *kind, const char *name)
{
	struct config_section *sec = xcalloc(1, sizeof(*sec));

	if (kind) {
		sec->kind = xstrdup(kind);
		sec->name = xstrdup(name);
	}
	sec->file = config_loc_override;
	return sec;
}

static void config_section_free(struct config_section *sec)
{
	for (int l = 0; l < CONFIG_NLAYERS; l++)
		config_scope_free(&sec->scope[l]);
	free(sec->kind);
	free(sec->name);
	free(sec);
}

static struct config_kind *config_kind_find(const struct config *cfg, const char *kind)
{
	size_t i;

	if (!config_map_get(&cfg->kind_map, kind, &i))
		return NULL;
	return &cfg->kinds[i];
}

/* config_section_find - kind NULL: the globals; NULL if there is no such section. */
static struct config_section *config_section_find(const struct config *cfg, const char *kind,
						  const char *name)
{
	const struct config_kind *k;
	size_t i;

	if (kind == NULL)
		return cfg->global;
	if (name == NULL || (k = config_kind_find(cfg, kind)) == NULL)
		return NULL;
	if (!config_map_get(&k->names, name, &i))
		return NULL;
	return cfg->secs[i];
}

static struct config_kind *config_kind_get(struct config *cfg, const char *kind)
{
	struct config_kind *k = config_kind_find(cfg, kind);

	if (k)
		return k;
	if (cfg->nkinds == cfg->kinds_cap) {
		cfg->kinds_cap = cfg->kinds_cap ? cfg->kinds_cap * 2 : 4;
		cfg->kinds = xreallocarray(cfg->kinds, cfg->kinds_cap, sizeof(*cfg->kinds));
	}
	k = &cfg->kinds[cfg->nkinds];
	memset(k, 0, sizeof(*k));
	k->kind = xstrdup(kind);
	config_map_put(&cfg->kind_map, k->kind, cfg->nkinds);
	cfg->nkinds++;
	return k;
}

/* config_section_get - find [kind name], creating it (at location "-o") if missing. */
static struct config_section *config_section_get(struct config *cfg, const char *kind,
						 const char *name)
{
	struct config_section *sec = config_section_find(cfg, kind, name);
	struct config_kind *k;

	if (sec)
		return sec;
	k = config_kind_get(cfg, kind);
	sec = config_section_new(kind, name);
	if (cfg->nsecs == cfg->secs_cap) {
		cfg->secs_cap = cfg->secs_cap ? cfg->secs_cap * 2 : 8;
		cfg->secs = xreallocarray(cfg->secs, cfg->secs_cap, sizeof(*cfg->secs));
	}
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 8;
		k->secs = xreallocarray(k->secs, k->cap, sizeof(*k->secs));
	}
	k->secs[k->n++] = cfg->nsecs;
	config_map_put(&k->names, sec->name, cfg->nsecs);
	cfg->secs[cfg->nsecs++] = sec;
	return sec;
}

/* config_section_param - the parameter in effect: override, file, default. */
static struct config_param *config_section_param(const struct config_section *sec,
						 const char *param)
{
	struct config_param *p;

	for (int l = 0; l < CONFIG_NLAYERS; l++)
		if ((p = config_scope_find(&sec->scope[l], param)) != NULL)
			return p;
	return NULL;
}

static struct config_param *config_param_find(const struct config *cfg, const char *kind,
					      const char *name, const char *param)
{
	const struct config_section *sec = config_section_find(cfg, kind, name);

	if (sec == NULL || param == NULL)
		return NULL;
	return config_section_param(sec, param);
}

/* ---- lifecycle ---- */

struct config *config_new(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

	cfg->global = config_section_new(NULL, NULL);
	cfg->gen = 1;
	return cfg;
}

void config_free(struct config **cfgp)
{
	struct config *cfg;

	if (cfgp == NULL || *cfgp == NULL)
		return;
	cfg = *cfgp;
	config_section_free(cfg->global);
	for (size_t i = 0; i < cfg->nsecs; i++)
		config_section_free(cfg->secs[i]);
	free(cfg->secs);
	for (size_t i = 0; i < cfg->nkinds; i++) {
		free(cfg->kinds[i].kind);
		free(cfg->kinds[i].secs);
		config_map_free(&cfg->kinds[i].names);
	}
	free(cfg->kinds);
	config_map_free(&cfg->kind_map);
	for (size_t i = 0; i < cfg->nlabels; i++)
		free(cfg->labels[i]);
	free(cfg->labels);
	free(cfg);
	*cfgp = NULL;
}

static const char *config_label(struct config *cfg, const char *label)
{
	cfg->labels = xreallocarray(cfg->labels, cfg->nlabels + 1, sizeof(*cfg->labels));
	cfg->labels[cfg->nlabels] = xstrdup(label);
	return cfg->labels[cfg->nlabels++];
}

/* ---- parser ---- */

struct config_parser {
	struct config *cfg; /* a staging config, merged only on success */
	const char *label;
	unsigned line;
	struct config_section *sec; /* current scope */
	struct config_param *cur;   /* parameter whose value is being collected */
	struct strbuf val;	    /* its value so far (continuations append) */
	char *err;
	size_t errlen;
};

static int config_parse_fail(struct config_parser *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int config_parse_fail(struct config_parser *ps, const char *fmt, ...)
{
	va_list ap;
	char *reason;

	va_start(ap, fmt);
	reason = config_vasprintf(fmt, ap);
	va_end(ap);
	err_printf(ps->err, ps->errlen, "%s:%u: %s", ps->label, ps->line, reason);
	free(reason);
	return -1;
}

/*
 * config_parse_finish - store the collected value.  Values are collected in
 * a buffer rather than realloc'ed per continuation so that many
 * continuation lines stay linear.
 */
static void config_parse_finish(struct config_parser *ps)
{
	if (ps->cur == NULL)
		return;
	ps->cur->value = strbuf_steal(&ps->val);
	ps->cur = NULL;
}

static int config_parse_continuation(struct config_parser *ps, const char *s, size_t n)
{
	if (ps->cur == NULL)
		return config_parse_fail(ps, "continuation line (it starts with a blank) but no "
					     "parameter before it to continue");
	if (ps->val.len > 0)
		strbuf_append(&ps->val, " ", 1);
	strbuf_append(&ps->val, s, n);
	return 0;
}

/* config_word - skip blanks from p, then take a word: [*w, *w + *wlen); returns the end. */
static const char *config_word(const char *p, const char *end, const char **w, size_t *wlen)
{
	while (p < end && config_is_space(*p))
		p++;
	for (*w = p; p < end && !config_is_space(*p); p++)
		;
	*wlen = (size_t)(p - *w);
	return p;
}

/* config_parse_section - "[KIND NAME]"; s..s+n has no blanks at either end. */
static int config_parse_section(struct config_parser *ps, const char *s, size_t n)
{
	const char *close = memchr(s, ']', n), *p, *kind, *name, *extra;
	size_t kindlen, namelen, extralen;
	struct config_section *sec;
	char *k, *nm;
	int rc = 0;

	if (close == NULL)
		return config_parse_fail(ps, "malformed section header: missing ']'");
	if (close != s + n - 1)
		return config_parse_fail(ps, "text after ']' in section header (a comment must "
					     "start its own line)");
	p = config_word(s + 1, close, &kind, &kindlen);
	p = config_word(p, close, &name, &namelen);
	config_word(p, close, &extra, &extralen);
	if (kindlen == 0 || namelen == 0 || extralen != 0)
		return config_parse_fail(ps, "malformed section header: want [KIND NAME]");
	if (!config_is_section_name(kind, kindlen) || !config_is_section_name(name, namelen))
		return config_parse_fail(ps, "malformed section header: KIND and NAME may only "
					     "hold letters, digits, '_', '.' and '-'");
	k = xstrndup(kind, kindlen);
	nm = xstrndup(name, namelen);
	if ((sec = config_section_find(ps->cfg, k, nm)) != NULL) {
		rc = config_parse_fail(ps, "duplicate section [%s %s] (first at %s:%u)", k, nm,
				       sec->file, sec->line);
	} else {
		sec = config_section_get(ps->cfg, k, nm);
		sec->file = ps->label;
		sec->line = ps->line;
		ps->sec = sec;
	}
	free(k);
	free(nm);
	return rc;
}

/* config_parse_param - "name = value"; s..s+n starts non-blank, ends non-blank. */
static int config_parse_param(struct config_parser *ps, const char *s, size_t n)
{
	const char *eq = memchr(s, '=', n), *b, *e;
	struct config_scope *sc = &ps->sec->scope[CONFIG_FILE];
	struct config_param *first;
	char *name;

	if (eq == NULL)
		return config_parse_fail(ps, "missing '=' (want name = value)");
	config_trim(s, (size_t)(eq - s), &b, &e);
	if (b == e)
		return config_parse_fail(ps, "empty parameter name before '='");
	if (!config_is_param_name(b, (size_t)(e - b)))
		return config_parse_fail(ps,
					 "bad parameter name \"%.*s\": use letters, "
					 "digits and '_'",
					 (int)(e - b), b);
	name = xstrndup(b, (size_t)(e - b));
	first = config_scope_find(sc, name);
	if (first) {
		config_parse_fail(ps, "duplicate parameter %s (first at %s:%u)", name, first->file,
				  first->line);
		free(name);
		return -1;
	}
	ps->cur = config_scope_add(sc, ps->sec, name, NULL, ps->label, ps->line);
	config_trim(eq + 1, (size_t)(s + n - eq - 1), &b, &e);
	strbuf_append(&ps->val, b, (size_t)(e - b));
	return 0;
}

static int config_parse_line(struct config_parser *ps, const char *s, size_t n)
{
	size_t i = 0;

	if (n > CONFIG_MAX_LINE)
		return config_parse_fail(ps, "line longer than %d bytes", CONFIG_MAX_LINE);
	if (memchr(s, '\0', n))
		return config_parse_fail(ps, "NUL character in line");
	while (n > 0 && config_is_space(s[n - 1]))
		n--;
	while (i < n && config_is_space(s[i]))
		i++;
	/* Blank and comment lines do not end a value: Postfix does the same. */
	if (i == n || s[i] == '#')
		return 0;
	if (i > 0)
		return config_parse_continuation(ps, s + i, n - i);
	config_parse_finish(ps);
	if (s[0] == '[')
		return config_parse_section(ps, s, n);
	return config_parse_param(ps, s, n);
}

static int config_parse(struct config_parser *ps, const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		ps->line++;
		if (config_parse_line(ps, p, (size_t)(eol - p)) < 0)
			return -1;
		p = nl ? nl + 1 : end;
	}
	config_parse_finish(ps);
	return 0;
}

/* config_merge_scope - move the file layer of src into dst (whose file layer is empty). */
static void config_merge_scope(struct config_section *dst, struct config_section *src)
{
	struct config_scope *sc = &dst->scope[CONFIG_FILE];

	*sc = src->scope[CONFIG_FILE];
	memset(&src->scope[CONFIG_FILE], 0, sizeof(src->scope[CONFIG_FILE]));
	for (size_t i = 0; i < sc->n; i++)
		sc->params[i].sec = dst;
	/* The map's keys point at param names, which did not move. */
}

/* config_merge - take over everything stage parsed; stage keeps only shells. */
static void config_merge(struct config *cfg, struct config *stage)
{
	cfg->labels =
	    xreallocarray(cfg->labels, cfg->nlabels + stage->nlabels, sizeof(*cfg->labels));
	memcpy(cfg->labels + cfg->nlabels, stage->labels, stage->nlabels * sizeof(*cfg->labels));
	cfg->nlabels += stage->nlabels;
	stage->nlabels = 0;

	config_merge_scope(cfg->global, stage->global);
	for (size_t i = 0; i < stage->nsecs; i++) {
		struct config_section *src = stage->secs[i];
		struct config_section *dst = config_section_get(cfg, src->kind, src->name);

		dst->file = src->file;
		dst->line = src->line;
		config_merge_scope(dst, src);
	}
	cfg->loaded = true;
	cfg->gen++;
}

/*
 * config_load_text - parse into a staging config and merge only on success,
 * so a failed load leaves cfg exactly as it was.
 */
static int config_load_text(struct config *cfg, const char *text, size_t len, const char *label,
			    char *err, size_t errlen)
{
	struct config_parser ps;
	struct config *stage;
	int rc;

	if (cfg->loaded) {
		err_printf(err, errlen, "%s: this config already holds a file; load into a new one",
			   label);
		return -1;
	}
	if (len > CONFIG_MAX_FILE) {
		err_printf(err, errlen, "%s: file is bigger than %d bytes", label, CONFIG_MAX_FILE);
		return -1;
	}
	stage = config_new();
	memset(&ps, 0, sizeof(ps));
	ps.cfg = stage;
	ps.label = config_label(stage, label);
	ps.sec = stage->global;
	ps.err = err;
	ps.errlen = errlen;
	rc = config_parse(&ps, text, len);
	free(ps.val.data);
	if (rc == 0)
		config_merge(cfg, stage);
	config_free(&stage);
	return rc;
}

int config_load_string(struct config *cfg, const char *text, const char *label, char *err,
		       size_t errlen)
{
	return config_load_text(cfg, text, strlen(text), label, err, errlen);
}

/* config_read_file - whole file into memory, refusing more than CONFIG_MAX_FILE. */
static int config_read_file(const char *path, struct strbuf *b, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char chunk[65536];
	ssize_t r;

	if (fd < 0) {
		err_printf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		r = read(fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (b->len + (size_t)r > CONFIG_MAX_FILE) {
			err_printf(err, errlen, "%s: file is bigger than %d bytes", path,
				   CONFIG_MAX_FILE);
			close(fd);
			return -1;
		}
		strbuf_append(b, chunk, (size_t)r);
	}
	if (r < 0) {
		err_printf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	struct strbuf b = STRBUF_INIT;
	int rc;

	if (cfg->loaded) {
		err_printf(err, errlen, "%s: this config already holds a file; load into a new one",
			   path);
		return -1;
	}
	if (config_read_file(path, &b, err, errlen) < 0) {
		free(b.data);
		return -1;
	}
	rc = config_load_text(cfg, b.data ? b.data : "", b.len, path, err, errlen);
	free(b.data);
	return rc;
}

/* ---- overrides and defaults ---- */

/* config_override_name_ok - b..e is "param" (no dot) or "kind.name.param" (dots at dot1, dot2). */
static bool config_override_name_ok(const char *b, const char *e, const char *dot1,
				    const char *dot2)
{
	if (dot1 == NULL)
		return config_is_param_name(b, (size_t)(e - b));
	return dot1 != dot2 && config_is_section_name(b, (size_t)(dot1 - b)) &&
	       config_is_section_name(dot1 + 1, (size_t)(dot2 - dot1 - 1)) &&
	       config_is_param_name(dot2 + 1, (size_t)(e - dot2 - 1));
}

int config_override(struct config *cfg, const char *setting, char *err, size_t errlen)
{
	const char *eq = strchr(setting, '='), *b, *e, *vb, *ve, *dot1, *dot2;
	char *kind = NULL, *name = NULL, *param, *value;
	struct config_section *sec;

	if (eq == NULL) {
		err_printf(err, errlen,
			   "-o: missing '=' in \"%s\" (want name=value or "
			   "kind.name.param=value)",
			   setting);
		return -1;
	}
	config_trim(setting, (size_t)(eq - setting), &b, &e);
	config_trim(eq + 1, strlen(eq + 1), &vb, &ve);
	dot1 = memchr(b, '.', (size_t)(e - b));
	for (dot2 = dot1 ? e - 1 : NULL; dot2 && *dot2 != '.'; dot2--)
		;
	if (!config_override_name_ok(b, e, dot1, dot2)) {
		err_printf(err, errlen, "-o: bad name \"%.*s\": want name or kind.name.param",
			   (int)(e - b), b);
		return -1;
	}
	if (dot1) {
		kind = xstrndup(b, (size_t)(dot1 - b));
		name = xstrndup(dot1 + 1, (size_t)(dot2 - dot1 - 1));
		param = xstrndup(dot2 + 1, (size_t)(e - dot2 - 1));
		sec = config_section_get(cfg, kind, name);
	} else {
		param = xstrndup(b, (size_t)(e - b));
		sec = cfg->global;
	}
	value = xstrndup(vb, (size_t)(ve - vb));
	config_scope_set(&sec->scope[CONFIG_OVERRIDE], sec, param, value, config_loc_override);
	cfg->gen++;
	free(kind);
	free(name);
	free(param);
	free(value);
	return 0;
}

int config_set_default(struct config *cfg, const char *param, const char *value, char *err,
		       size_t errlen)
{
	if (!config_is_param_name(param, strlen(param))) {
		err_printf(err, errlen, "default: bad parameter name \"%s\"", param);
		return -1;
	}
	config_scope_set(&cfg->global->scope[CONFIG_DEFAULT], cfg->global, param, value,
			 config_loc_default);
	cfg->gen++;
	return 0;
}

/* ---- expansion ---- */

/*
 * Expansion is memoized per parameter and generation.  A result is cached
 * only when it does not depend on the path it was reached by: when it was
 * expanded as the root of a lookup, or when nothing below it hit the depth
 * limit or a loop ("cut").  A cut result reached from elsewhere is used
 * once and thrown away.
 */
struct config_expander {
	struct config *cfg;
	struct config_param *stack[CONFIG_EXPAND_DEPTH + 1];
	size_t depth; /* entries on stack; stack[0] is the root */
};

struct config_result {
	char *text;
	char *err;
	unsigned height;
	bool cut;
	bool stop;  /* drop the rest of the value: cut, or too long */
	bool owned; /* text/err belong to the result, not to a param's memo */
};

static char *config_param_msg(const struct config_param *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* config_param_msg - "FILE:LINE: parameter NAME: reason" about p. */
static char *config_param_msg(const struct config_param *p, const char *fmt, ...)
{
	char line[24] = "";
	char *reason, *msg;
	va_list ap;

	va_start(ap, fmt);
	reason = config_vasprintf(fmt, ap);
	va_end(ap);
	if (p->line)
		snprintf(line, sizeof(line), ":%u", p->line);
	if (p->sec->kind)
		msg = xasprintf("%s%s: parameter %s.%s.%s: %s", p->file, line, p->sec->kind,
				p->sec->name, p->name, reason);
	else
		msg = xasprintf("%s%s: parameter %s: %s", p->file, line, p->name, reason);
	free(reason);
	return msg;
}

/* config_memo_check - drop a memo from an older generation. */
static void config_memo_check(const struct config *cfg, struct config_param *p)
{
	if (p->exp_gen == cfg->gen)
		return;
	config_param_forget(p);
	p->exp_gen = cfg->gen;
}

/* config_chain - "$a -> $b -> $q" from stack[from] on, then q. */
static char *config_chain(const struct config_expander *ex, size_t from, const char *q)
{
	struct strbuf b = STRBUF_INIT;

	for (size_t i = from; i < ex->depth; i++) {
		strbuf_append(&b, "$", 1);
		strbuf_append(&b, ex->stack[i]->name, strlen(ex->stack[i]->name));
		strbuf_append(&b, " -> ", 4);
	}
	strbuf_append(&b, "$", 1);
	strbuf_append(&b, q, strlen(q));
	return strbuf_steal(&b);
}

static void config_result_fail(struct config_result *res, char *msg, bool cut)
{
	if (res->err == NULL)
		res->err = msg;
	else
		free(msg);
	res->cut |= cut;
	res->stop |= cut;
	if (cut)
		res->height = CONFIG_EXPAND_DEPTH + 1;
}

static void config_expand_param(struct config_expander *ex, struct config_param *p,
				struct config_result *res);

/*
 * config_expand_blocked - true (and res failed) when p may not expand q now:
 * q is already being expanded (a loop), or q would sit deeper than the
 * limit.  Both depend on the path, so they cut res (see above).
 */
static bool config_expand_blocked(struct config_expander *ex, struct config_param *p,
				  struct config_param *q, struct config_result *res)
{
	size_t below = q->exp_state == CONFIG_EXP_DONE && !q->exp_err ? q->height : 0;
	size_t i = 0;
	char *chain;

	if (q->exp_state == CONFIG_EXP_BUSY) {
		while (ex->stack[i] != q)
			i++;
		chain = config_chain(ex, i, q->name);
		config_result_fail(res, config_param_msg(p, "expansion loop %s", chain), true);
		free(chain);
		return true;
	}
	/* q would sit at level ex->depth, and its own references go further. */
	if (ex->depth + below <= CONFIG_EXPAND_DEPTH)
		return false;
	chain = config_chain(ex, 0, q->name);
	config_result_fail(res,
			   config_param_msg(p, "$references nested deeper than %d levels (%s ...)",
					    CONFIG_EXPAND_DEPTH, chain),
			   true);
	free(chain);
	return true;
}

/* config_expand_ref - append the value of global qname to out on behalf of p. */
static void config_expand_ref(struct config_expander *ex, struct config_param *p, const char *qname,
			      struct strbuf *out, struct config_result *res)
{
	struct config_param *q = config_section_param(ex->cfg->global, qname);
	struct config_result sub;
	size_t len;

	if (q == NULL) {
		config_result_fail(res, config_param_msg(p, "unknown parameter $%s", qname), false);
		return;
	}
	config_memo_check(ex->cfg, q);
	if (config_expand_blocked(ex, p, q, res))
		return;
	config_expand_param(ex, q, &sub);
	len = strlen(sub.text);
	if (out->len + len <= CONFIG_MAX_FILE) {
		strbuf_append(out, sub.text, len);
	} else {
		char *msg =
		    config_param_msg(p, "expanded value longer than %d bytes", CONFIG_MAX_FILE);

		config_result_fail(res, msg, false);
		res->stop = true;
	}
	if (sub.err)
		config_result_fail(res, xstrdup(sub.err), sub.cut);
	if (sub.height + 1 > res->height)
		res->height =
		    sub.height < CONFIG_EXPAND_DEPTH ? sub.height + 1 : CONFIG_EXPAND_DEPTH + 1;
	if (sub.owned) {
		free(sub.text);
		free(sub.err);
	}
}

static const char config_msg_lone_dollar[] =
    "'$' not followed by a name, {name} or '$' (write $$ for a '$')";

/*
 * config_ref_parse - the reference at d (a '$').  Returns the length of
 * the name it refers to (starting at *name), or 0 when there is nothing to
 * look up: "$$" (a '$' is appended to out) or a malformed reference (res
 * failed).  *next is where the text resumes.
 */
static size_t config_ref_parse(const struct config_param *p, const char *d, const char **name,
			       const char **next, struct strbuf *out, struct config_result *res)
{
	const char *e;

	if (d[1] == '$') {
		strbuf_append(out, "$", 1);
		*next = d + 2;
		return 0;
	}
	if (d[1] == '{') {
		*name = d + 2;
		if ((e = strchr(*name, '}')) == NULL) {
			config_result_fail(res, config_param_msg(p, "unterminated ${"), false);
			*next = *name + strlen(*name);
			return 0;
		}
		*next = e + 1;
		if (config_is_param_name(*name, (size_t)(e - *name)))
			return (size_t)(e - *name);
		config_result_fail(
		    res, config_param_msg(p, "bad reference \"${%.*s}\"", (int)(e - *name), *name),
		    false);
		return 0;
	}
	for (e = *name = d + 1; config_is_param_char(*e); e++)
		;
	*next = e;
	if (e > *name)
		return (size_t)(e - *name);
	config_result_fail(res, config_param_msg(p, "%s", config_msg_lone_dollar), false);
	return 0;
}

/*
 * config_expand_text - expand p->value into res.  Bad references become "";
 * after a cut (loop, depth) the rest is dropped, because carrying on could
 * redo the same unmemoizable work for every further reference, and after
 * an overlong result too, as the rest could not be kept anyway.
 */
static void config_expand_text(struct config_expander *ex, struct config_param *p,
			       struct config_result *res)
{
	struct strbuf out = STRBUF_INIT;
	const char *s = p->value, *d, *name;
	char *qname;
	size_t n;

	memset(res, 0, sizeof(*res));
	res->owned = true;
	while (*s && !res->stop) {
		if ((d = strchr(s, '$')) == NULL) {
			strbuf_append(&out, s, strlen(s));
			break;
		}
		strbuf_append(&out, s, (size_t)(d - s));
		if ((n = config_ref_parse(p, d, &name, &s, &out, res)) == 0)
			continue;
		qname = xstrndup(name, n);
		config_expand_ref(ex, p, qname, &out, res);
		free(qname);
	}
	res->text = strbuf_steal(&out);
}

/* config_expand_param - p's expansion, from its memo or computed now. */
static void config_expand_param(struct config_expander *ex, struct config_param *p,
				struct config_result *res)
{
	bool root = ex->depth == 0;

	config_memo_check(ex->cfg, p);
	if (p->exp_state != CONFIG_EXP_DONE) {
		p->exp_state = CONFIG_EXP_BUSY;
		ex->stack[ex->depth++] = p;
		config_expand_text(ex, p, res);
		ex->depth--;
		if (!root && res->cut) {
			p->exp_state = CONFIG_EXP_IDLE;
			return;
		}
		p->exp = res->text;
		p->exp_err = res->err;
		p->height = (unsigned char)res->height;
		p->exp_state = CONFIG_EXP_DONE;
	}
	res->text = p->exp;
	res->err = p->exp_err;
	res->height = p->height;
	res->cut = false;
	res->stop = false;
	res->owned = false;
}

/*
 * config_expand - make p->exp (and p->exp_err) current.  cfg is const for
 * callers but the memo lives in it: casting is fine, the object itself was
 * never defined const.
 */
static void config_expand(const struct config *cfg, struct config_param *p)
{
	struct config_expander ex;
	struct config_result res;

	ex.cfg = (struct config *)cfg;
	ex.depth = 0;
	config_expand_param(&ex, p, &res);
}

/* ---- lookups ---- */

const char *config_get(const struct config *cfg, const char *kind, const char *name,
		       const char *param)
{
	struct config_param *p = config_param_find(cfg, kind, name, param);

	if (p == NULL)
		return NULL;
	config_expand(cfg, p);
	return p->exp;
}

const char *config_get_default(const struct config *cfg, const char *kind, const char *name,
			       const char *param, const char *def)
{
	const char *v = config_get(cfg, kind, name, param);

	return v ? v : def;
}

/* config_value - look up and expand: 1 unset, 0 ok (*pp set), -1 expansion error. */
static int config_value(const struct config *cfg, const char *kind, const char *name,
			const char *param, struct config_param **pp, char *err, size_t errlen)
{
	struct config_param *p = config_param_find(cfg, kind, name, param);

	if (p == NULL)
		return 1;
	config_expand(cfg, p);
	if (p->exp_err) {
		err_printf(err, errlen, "%s", p->exp_err);
		return -1;
	}
	*pp = p;
	return 0;
}

int config_get_string(const struct config *cfg, const char *kind, const char *name,
		      const char *param, const char *def, const char **out, char *err,
		      size_t errlen)
{
	struct config_param *p;
	int rc = config_value(cfg, kind, name, param, &p, err, errlen);

	if (rc < 0)
		return -1;
	*out = rc > 0 ? def : p->exp;
	return 0;
}

int config_expand_check(const struct config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i <= cfg->nsecs; i++) {
		const struct config_section *sec = i == 0 ? cfg->global : cfg->secs[i - 1];

		for (int l = 0; l < CONFIG_NLAYERS; l++) {
			for (size_t j = 0; j < sec->scope[l].n; j++) {
				struct config_param *p = &sec->scope[l].params[j];

				if (config_section_param(sec, p->name) != p)
					continue; /* shadowed by a higher layer */
				config_expand(cfg, p);
				if (p->exp_err) {
					err_printf(err, errlen, "%s", p->exp_err);
					return -1;
				}
			}
		}
	}
	return 0;
}

/* ---- typed getters ---- */

static int config_bad(const struct config_param *p, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int config_bad(const struct config_param *p, char *err, size_t errlen, const char *fmt, ...)
{
	char *reason, *msg;
	va_list ap;

	va_start(ap, fmt);
	reason = config_vasprintf(fmt, ap);
	va_end(ap);
	msg = config_param_msg(p, "%s", reason);
	err_printf(err, errlen, "%s", msg);
	free(msg);
	free(reason);
	return -1;
}

/* config_trimmed - the expanded value without blanks at either end (new string). */
static char *config_trimmed(const struct config_param *p)
{
	const char *b, *e;

	config_trim(p->exp, strlen(p->exp), &b, &e);
	return xstrndup(b, (size_t)(e - b));
}

int config_get_int(const struct config *cfg, const char *kind, const char *name, const char *param,
		   long long def, long long min, long long max, long long *out, char *err,
		   size_t errlen)
{
	struct config_param *p;
	int rc = config_value(cfg, kind, name, param, &p, err, errlen);
	char *s, *end;
	long long v;
	int saved;

	if (rc != 0) {
		if (rc > 0)
			*out = def;
		return rc > 0 ? 0 : -1;
	}
	s = config_trimmed(p);
	/* strtoll alone would take blanks, "" and "0x"-less junk at the end. */
	if (!(s[0] >= '0' && s[0] <= '9') &&
	    !((s[0] == '-' || s[0] == '+') && s[1] >= '0' && s[1] <= '9')) {
		rc = config_bad(p, err, errlen, "\"%s\" is not a whole number", s);
		free(s);
		return rc;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	saved = errno;
	if (*end != '\0')
		rc = config_bad(p, err, errlen, "\"%s\" is not a whole number", s);
	else if (saved == ERANGE || v < min || v > max)
		rc = config_bad(p, err, errlen, "%s is out of range %lld..%lld", s, min, max);
	else
		*out = v;
	free(s);
	return rc;
}

int config_get_bool(const struct config *cfg, const char *kind, const char *name, const char *param,
		    bool def, bool *out, char *err, size_t errlen)
{
	static const struct {
		const char *word;
		bool val;
	} words[] = {
	    {"yes", true}, {"true", true},   {"on", true},   {"1", true},
	    {"no", false}, {"false", false}, {"off", false}, {"0", false},
	};
	struct config_param *p;
	int rc = config_value(cfg, kind, name, param, &p, err, errlen);
	char *s;

	if (rc != 0) {
		if (rc > 0)
			*out = def;
		return rc > 0 ? 0 : -1;
	}
	s = config_trimmed(p);
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcasecmp(s, words[i].word) == 0) {
			*out = words[i].val;
			free(s);
			return 0;
		}
	}
	rc = config_bad(p, err, errlen, "\"%s\" is not yes/no, true/false, on/off or 1/0", s);
	free(s);
	return rc;
}

/*
 * config_scaled - "digits[unit]" with unit from units[] (multiplier in
 * mults[]); 0 ok, -1 malformed, -2 too big for long long.
 */
static int config_scaled(const char *s, const char *units, const long long *mults, long long *out)
{
	long long v = 0, mult = 1;
	const char *u;

	if (!(*s >= '0' && *s <= '9'))
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (LLONG_MAX - (*s - '0')) / 10)
			return -2;
		v = v * 10 + (*s - '0');
	}
	if (*s != '\0') {
		if (s[1] != '\0' || (u = strchr(units, *s)) == NULL)
			return -1;
		mult = mults[u - units];
	}
	if (v > LLONG_MAX / mult)
		return -2;
	*out = v * mult;
	return 0;
}

static int config_get_scaled(const struct config *cfg, const char *kind, const char *name,
			     const char *param, long long def, long long min, long long max,
			     long long *out, char *err, size_t errlen, const char *units,
			     const long long *mults, const char *want)
{
	struct config_param *p;
	int rc = config_value(cfg, kind, name, param, &p, err, errlen);
	long long v;
	char *s;

	if (rc != 0) {
		if (rc > 0)
			*out = def;
		return rc > 0 ? 0 : -1;
	}
	s = config_trimmed(p);
	rc = config_scaled(s, units, mults, &v);
	if (rc == -1)
		rc = config_bad(p, err, errlen, "\"%s\" is not %s", s, want);
	else if (rc == -2 || v < min || v > max)
		rc = config_bad(p, err, errlen, "%s is out of range %lld..%lld", s, min, max);
	else
		*out = v;
	free(s);
	return rc;
}

int config_get_time(const struct config *cfg, const char *kind, const char *name, const char *param,
		    long long def, long long min, long long max, long long *out, char *err,
		    size_t errlen)
{
	static const long long mults[] = {1, 60, 3600, 86400, 604800};

	return config_get_scaled(cfg, kind, name, param, def, min, max, out, err, errlen, "smhdw",
				 mults, "a time (digits and an optional unit s, m, h, d or w)");
}

int config_get_size(const struct config *cfg, const char *kind, const char *name, const char *param,
		    long long def, long long min, long long max, long long *out, char *err,
		    size_t errlen)
{
	static const long long mults[] = {1LL << 10, 1LL << 10, 1LL << 20,
					  1LL << 20, 1LL << 30, 1LL << 30};

	return config_get_scaled(cfg, kind, name, param, def, min, max, out, err, errlen, "kKmMgG",
				 mults, "a size (digits and an optional unit k, m or g)");
}

static bool config_is_list_sep(char c)
{
	return c == ',' || config_is_space(c) || c == '\n';
}

/* config_split - items of s separated by commas and blanks, empty ones dropped. */
static char **config_split(const char *s, size_t *count)
{
	size_t n = 0, i = 0;
	const char *p, *b;
	char **list;

	for (p = s; *p;) {
		while (*p && config_is_list_sep(*p))
			p++;
		if (*p)
			n++;
		while (*p && !config_is_list_sep(*p))
			p++;
	}
	list = xcalloc(n + 1, sizeof(*list));
	for (p = s; *p;) {
		while (*p && config_is_list_sep(*p))
			p++;
		for (b = p; *p && !config_is_list_sep(*p); p++)
			;
		if (p > b)
			list[i++] = xstrndup(b, (size_t)(p - b));
	}
	if (count)
		*count = n;
	return list;
}

int config_get_list(const struct config *cfg, const char *kind, const char *name, const char *param,
		    const char *def, char ***out, size_t *count, char *err, size_t errlen)
{
	struct config_param *p;
	int rc = config_value(cfg, kind, name, param, &p, err, errlen);

	if (rc < 0)
		return -1;
	*out = config_split(rc > 0 ? (def ? def : "") : p->exp, count);
	return 0;
}

void config_list_free(char ***listp)
{
	if (listp == NULL || *listp == NULL)
		return;
	for (char **p = *listp; *p; p++)
		free(*p);
	free(*listp);
	*listp = NULL;
}

/* ---- sections and iteration ---- */

size_t config_section_count(const struct config *cfg, const char *kind)
{
	const struct config_kind *k = kind ? config_kind_find(cfg, kind) : NULL;

	return k ? k->n : 0;
}

const char *config_section_name(const struct config *cfg, const char *kind, size_t index)
{
	const struct config_kind *k = kind ? config_kind_find(cfg, kind) : NULL;

	if (k == NULL || index >= k->n)
		return NULL;
	return cfg->secs[k->secs[index]]->name;
}

int config_foreach(const struct config *cfg, const char *kind, const char *name,
		   int (*fn)(const char *param, const char *value, const char *file, unsigned line,
			     void *arg),
		   void *arg)
{
	const struct config_section *sec = config_section_find(cfg, kind, name);
	const struct config_scope *file, *ovr;
	struct config_param *p, *q;
	int rc;

	if (sec == NULL)
		return 0;
	file = &sec->scope[CONFIG_FILE];
	ovr = &sec->scope[CONFIG_OVERRIDE];
	for (size_t i = 0; i < file->n; i++) {
		p = &file->params[i];
		if ((q = config_scope_find(ovr, p->name)) != NULL)
			p = q;
		config_expand(cfg, p);
		if ((rc = fn(p->name, p->exp, p->file, p->line, arg)) != 0)
			return rc;
	}
	for (size_t i = 0; i < ovr->n; i++) {
		p = &ovr->params[i];
		if (config_scope_find(file, p->name))
			continue;
		config_expand(cfg, p);
		if ((rc = fn(p->name, p->exp, p->file, p->line, arg)) != 0)
			return rc;
	}
	return 0;
}

int config_location(const struct config *cfg, const char *kind, const char *name, const char *param,
		    const char **file, unsigned *line)
{
	const struct config_section *sec = config_section_find(cfg, kind, name);
	const struct config_param *p;

	if (sec == NULL)
		return -1;
	if (param == NULL) {
		if (sec->kind == NULL)
			return -1; /* the globals have no header */
		*file = sec->file;
		*line = sec->line;
		return 0;
	}
	if ((p = config_section_param(sec, param)) == NULL)
		return -1;
	*file = p->file;
	*line = p->line;
	return 0;
}
