// SPDX-License-Identifier: MIT
/* `nkvm list [--json]`: every guest with a control socket, one a line, from its vm.info. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/socket.h"
#include "cmd/cmd.h"
#include "cmd/ctl.h"
#include "cmd/run_options.h"
#include "lib/log.h"

struct guest_row {
	char name[80];
	int64_t pid, cpus, mem, uptime_ms;
	char state[16];
};

static int64_t get_int(struct json_object *o, const char *a, const char *b, const char *c)
{
	struct json_object *x = o;

	if (!json_object_object_get_ex(x, a, &x) || (b && !json_object_object_get_ex(x, b, &x)) ||
	    (c && !json_object_object_get_ex(x, c, &x)))
		return -1;
	return json_object_get_int64(x);
}

static void fill_row(struct guest_row *g, struct json_object *info)
{
	struct json_object *s;

	g->pid = get_int(info, "nkvm", "pid", NULL);
	g->cpus = get_int(info, "config", "cpus", "boot_vcpus");
	g->mem = get_int(info, "config", "memory", "size");
	g->uptime_ms = get_int(info, "nkvm", "uptime_ms", NULL);
	snprintf(g->state, sizeof(g->state), "%s",
		 json_object_object_get_ex(info, "state", &s) ? json_object_get_string(s) : "?");
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct guest_row *)a)->name, ((const struct guest_row *)b)->name);
}

/* The live guests, sorted by name; stale sockets are removed (and said so) on the way. */
static int collect(struct guest_row **rows, size_t *n)
{
	char dir[108], path[128], err[512];
	struct dirent *e;
	DIR *d;

	*rows = NULL;
	*n = 0;
	if (api_sock_dir(dir, sizeof(dir)))
		return 0;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name), sl = strlen(API_SOCK_SUFFIX);
		struct guest_row g = { 0 }, *nr;
		struct api_reply r;
		int ret;

		if (len <= sl || strcmp(e->d_name + len - sl, API_SOCK_SUFFIX) ||
		    len - sl >= sizeof(g.name))
			continue;
		memcpy(g.name, e->d_name, len - sl);
		if (!run_valid_name(g.name) || api_sock_path(path, sizeof(path), dir, g.name))
			continue;
		ret = api_call(path, "GET", "vm.info", &r, err, sizeof(err));
		if (ret == -ECONNREFUSED || (ret == -ENOENT && ctl_is_link(path))) {
			ctl_remove_stale(g.name, path);
			continue;
		}
		if (ret || r.status != 200 || !r.json) {
			nkvm_err("%s: no answer: %s", g.name, ret ? err : api_reply_error(&r));
			api_reply_free(&r);
			continue;
		}
		fill_row(&g, r.json);
		api_reply_free(&r);
		nr = realloc(*rows, (*n + 1) * sizeof(**rows));
		if (!nr)
			break;
		*rows = nr;
		(*rows)[(*n)++] = g;
	}
	closedir(d);
	qsort(*rows, *n, sizeof(**rows), by_name);
	return 0;
}

static void print_json(const struct guest_row *rows, size_t n)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(rows[i].name));
		json_object_object_add(o, "pid", json_object_new_int64(rows[i].pid));
		json_object_object_add(o, "state", json_object_new_string(rows[i].state));
		json_object_object_add(o, "cpus", json_object_new_int64(rows[i].cpus));
		json_object_object_add(o, "memory", json_object_new_int64(rows[i].mem));
		json_object_object_add(o, "uptime_s",
				       json_object_new_int64(rows[i].uptime_ms / 1000));
		json_object_array_add(a, o);
	}
	printf("%s\n", json_object_to_json_string_ext(a, JSON_C_TO_STRING_PRETTY |
								 JSON_C_TO_STRING_SPACED));
	json_object_put(a);
}

static void print_table(const struct guest_row *rows, size_t n)
{
	printf("%-20s %8s %-8s %4s %8s %10s\n", "NAME", "PID", "STATE", "CPUS", "MEMORY", "UPTIME");
	for (size_t i = 0; i < n; i++) {
		int64_t s = rows[i].uptime_ms / 1000;
		char mem[32], up[32];

		snprintf(mem, sizeof(mem), "%lldM", (long long)(rows[i].mem >> 20));
		snprintf(up, sizeof(up), "%lld:%02lld:%02lld", (long long)(s / 3600),
			 (long long)(s / 60 % 60), (long long)(s % 60));
		printf("%-20s %8lld %-8s %4lld %8s %10s\n", rows[i].name, (long long)rows[i].pid,
		       rows[i].state, (long long)rows[i].cpus, mem, up);
	}
}

int cmd_list(int argc, char **argv)
{
	struct guest_row *rows;
	int json = 0, err;
	size_t n;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: nkvm list [--json]\nThe running guests: NAME PID STATE CPUS "
			       "MEMORY UPTIME, one a line.\n");
			return CTL_OK;
		} else {
			nkvm_err("%s: unknown argument (usage: nkvm list [--json])", argv[i]);
			return CTL_USAGE;
		}
	}
	err = collect(&rows, &n);
	if (err) {
		nkvm_err("cannot read the guests' sockets: %s", strerror(-err));
		return CTL_REFUSED;
	}
	if (json)
		print_json(rows, n);
	else
		print_table(rows, n);
	free(rows);
	return CTL_OK;
}
