// SPDX-License-Identifier: MIT
/*
 * modules.dep has one line per module: "PATH: DEP DEP ...", paths relative to
 * /lib/modules/VERSION. depmod already lists the whole closure on each line, but we follow
 * dependencies recursively anyway so that a hand-written or partial file also works.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/moddep.h"

enum mod_state { MOD_UNSEEN, MOD_VISITING, MOD_DONE };

struct mod {
	char *path; /* points into moddep_db.text */
	char name[MODDEP_NAME_MAX];
	char **deps;
	size_t n_deps;
	enum mod_state state;
};

struct moddep_db {
	char *text; /* a writable copy of modules.dep, cut into strings in place */
	struct mod *mods;
	size_t n;
};

static const char *const mod_suffixes[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };

/* Module names treat '-' and '_' as the same character (kernel/params.c, parameqn()). */
static int name_normalize(const char *s, size_t n, char *buf, size_t len)
{
	size_t i;

	if (!n || n >= len)
		return -EINVAL;
	for (i = 0; i < n; i++)
		buf[i] = s[i] == '-' ? '_' : s[i];
	buf[n] = '\0';
	return 0;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && !memcmp(s + n - k, suffix, k);
}

int moddep_name(const char *path, char *buf, size_t len)
{
	const char *base = strrchr(path, '/');
	size_t n, i;

	base = base ? base + 1 : path;
	n = strlen(base);
	for (i = 0; i < sizeof(mod_suffixes) / sizeof(mod_suffixes[0]); i++) {
		if (ends_with(base, n, mod_suffixes[i]))
			return name_normalize(base, n - strlen(mod_suffixes[i]), buf, len);
	}
	return -EINVAL;
}

static int strv_push(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strdup(s);
	if (!nv[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

static void strv_free(char **v, size_t n)
{
	while (n)
		free(v[--n]);
	free(v);
}

/* Cuts the blank-separated words of s in place into mod->deps. */
static int mod_parse_deps(struct mod *mod, char *s)
{
	char *save = NULL, *tok;
	char **nv;

	for (tok = strtok_r(s, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
		nv = realloc(mod->deps, (mod->n_deps + 1) * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		mod->deps = nv;
		mod->deps[mod->n_deps++] = tok;
	}
	return 0;
}

static int db_parse_line(struct moddep_db *db, char *line)
{
	char *colon = strchr(line, ':');
	struct mod *mods, *mod;

	if (!colon)
		return -EINVAL;
	*colon = '\0';
	mods = realloc(db->mods, (db->n + 1) * sizeof(*mods));
	if (!mods)
		return -ENOMEM;
	db->mods = mods;
	mod = &mods[db->n++];
	memset(mod, 0, sizeof(*mod));
	mod->path = line;
	if (moddep_name(line, mod->name, sizeof(mod->name)))
		return -EINVAL;
	return mod_parse_deps(mod, colon + 1);
}

static void db_free(struct moddep_db *db)
{
	size_t i;

	for (i = 0; i < db->n; i++)
		free(db->mods[i].deps);
	free(db->mods);
	free(db->text);
}

static int db_parse(struct moddep_db *db, const char *text)
{
	char *line, *next;
	int ret;

	db->text = strdup(text);
	if (!db->text)
		return -ENOMEM;
	for (line = db->text; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (!line[strspn(line, " \t\r")] || line[0] == '#')
			continue;
		ret = db_parse_line(db, line);
		if (ret)
			return ret;
	}
	return 0;
}

static struct mod *db_find_path(struct moddep_db *db, const char *path)
{
	size_t i;

	for (i = 0; i < db->n; i++) {
		if (!strcmp(db->mods[i].path, path))
			return &db->mods[i];
	}
	return NULL;
}

static struct mod *db_find_name(struct moddep_db *db, const char *name)
{
	size_t i;

	for (i = 0; i < db->n; i++) {
		if (!strcmp(db->mods[i].name, name))
			return &db->mods[i];
	}
	return NULL;
}

/* Depth-first: a module is appended only after all of its dependencies have been. */
static int db_visit(struct moddep_db *db, struct mod *mod, struct moddep_result *out)
{
	struct mod *dep;
	size_t i;
	int ret;

	if (mod->state == MOD_DONE)
		return 0;
	if (mod->state == MOD_VISITING)
		return -ELOOP;
	mod->state = MOD_VISITING;
	/* modprobe loads a line's dependencies right to left; keep that order where free to. */
	for (i = mod->n_deps; i--;) {
		dep = db_find_path(db, mod->deps[i]);
		if (!dep)
			return -EINVAL;
		ret = db_visit(db, dep, out);
		if (ret)
			return ret;
	}
	mod->state = MOD_DONE;
	return strv_push(&out->paths, &out->n_paths, mod->path);
}

static bool is_builtin(const char *builtin_text, const char *name)
{
	char path[4096], mod[MODDEP_NAME_MAX];
	const char *line, *end;
	size_t n;

	for (line = builtin_text; line && *line; line = end ? end + 1 : NULL) {
		end = strchr(line, '\n');
		n = end ? (size_t)(end - line) : strlen(line);
		if (!n || n >= sizeof(path))
			continue;
		memcpy(path, line, n);
		path[n] = '\0';
		if (!moddep_name(path, mod, sizeof(mod)) && !strcmp(mod, name))
			return true;
	}
	return false;
}

static int resolve_one(struct moddep_db *db, const char *builtin_text, const char *wanted,
		       struct moddep_result *out)
{
	char name[MODDEP_NAME_MAX];
	struct mod *mod;

	if (name_normalize(wanted, strlen(wanted), name, sizeof(name)))
		return -EINVAL;
	mod = db_find_name(db, name);
	if (mod)
		return db_visit(db, mod, out);
	if (is_builtin(builtin_text, name))
		return 0;
	return strv_push(&out->missing, &out->n_missing, wanted);
}

int moddep_resolve(const char *dep_text, const char *builtin_text, const char *const *wanted,
		   size_t n_wanted, struct moddep_result *out)
{
	struct moddep_db db = { 0 };
	size_t i;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = db_parse(&db, dep_text);
	for (i = 0; !ret && i < n_wanted; i++)
		ret = resolve_one(&db, builtin_text, wanted[i], out);
	db_free(&db);
	if (ret)
		moddep_result_free(out);
	return ret;
}

void moddep_result_free(struct moddep_result *r)
{
	strv_free(r->paths, r->n_paths);
	strv_free(r->missing, r->n_missing);
	memset(r, 0, sizeof(*r));
}
