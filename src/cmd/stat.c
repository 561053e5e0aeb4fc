// SPDX-License-Identifier: MIT
/* `nkvm stat NAME [--json]`: a guest's state, memory and per-vCPU exits (vm.info, vm.counters). */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/ctl.h"
#include "lib/log.h"

static struct json_object *get(struct json_object *o, const char *a, const char *b)
{
	struct json_object *x = NULL;

	if (o && json_object_object_get_ex(o, a, &x) && b)
		json_object_object_get_ex(x, b, &x);
	return x;
}

static void print_mib(const char *label, struct json_object *o, const char *key)
{
	struct json_object *x;

	if (json_object_object_get_ex(o, key, &x))
		printf(" %s=%lldM", label, (long long)(json_object_get_int64(x) >> 20));
}

/* The balloon's figures and the guest's own (its statistics queue), under memory. */
static void print_memory(struct json_object *ctr)
{
	struct json_object *b = get(ctr, "balloon", NULL), *g = get(ctr, "guest_memory", NULL), *x;

	if (b) {
		printf("balloon:");
		print_mib("target", b, "target");
		print_mib("actual", b, "actual");
		print_mib("returned", b, "returned");
		print_mib("reported", b, "reported");
		printf("\n");
	}
	if (g) {
		printf("guest:  ");
		print_mib("total", g, "total_memory");
		print_mib("free", g, "free_memory");
		print_mib("available", g, "available_memory");
		print_mib("caches", g, "disk_caches");
		print_mib("swap_in", g, "swap_in");
		print_mib("swap_out", g, "swap_out");
		if (json_object_object_get_ex(g, "major_faults", &x))
			printf(" major_faults=%lld", (long long)json_object_get_int64(x));
		if (json_object_object_get_ex(g, "minor_faults", &x))
			printf(" minor_faults=%lld", (long long)json_object_get_int64(x));
		printf("\n");
	}
}

static void print_human(const char *name, struct json_object *info, struct json_object *ctr)
{
	int64_t mem = json_object_get_int64(get(get(info, "config", "memory"), "size", NULL));
	int64_t up = json_object_get_int64(get(info, "nkvm", "uptime_ms")) / 1000;

	printf("name:    %s\n", name);
	printf("state:   %s\n", json_object_get_string(get(info, "state", NULL)));
	printf("pid:     %lld\n", (long long)json_object_get_int64(get(info, "nkvm", "pid")));
	printf("cpus:    %lld\n", (long long)json_object_get_int64(
					  get(get(info, "config", "cpus"), "boot_vcpus", NULL)));
	printf("memory:  %lldM\n", (long long)(mem >> 20));
	print_memory(ctr);
	printf("uptime:  %lld:%02lld:%02lld\n", (long long)(up / 3600), (long long)(up / 60 % 60),
	       (long long)(up % 60));
	json_object_object_foreach(ctr, group, counters)
	{
		if (!strcmp(group, "balloon") || !strcmp(group, "guest_memory"))
			continue; /* under memory */
		printf("%s:", group);
		json_object_object_foreach(counters, key, value)
			printf(" %s=%lld", key, (long long)json_object_get_int64(value));
		printf("\n");
	}
}

int cmd_stat(int argc, char **argv)
{
	struct api_reply info, ctr;
	const char *name = NULL;
	int json = 0, status;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: nkvm stat NAME [--json]\n");
			return CTL_OK;
		} else if (argv[i][0] != '-' && !name) {
			name = argv[i];
		} else {
			name = NULL;
			break;
		}
	}
	if (!name) {
		nkvm_err("usage: nkvm stat NAME [--json]");
		return CTL_USAGE;
	}
	status = ctl_call(name, "GET", "vm.info", &info);
	if (status)
		return status;
	status = ctl_call(name, "GET", "vm.counters", &ctr);
	if (status) {
		api_reply_free(&info);
		return status;
	}
	if (info.status != 200 || ctr.status != 200 ||
	    !json_object_is_type(info.json, json_type_object) ||
	    !json_object_is_type(ctr.json, json_type_object)) {
		nkvm_err("%s: stat: %s", name, api_reply_error(info.status != 200 ? &info : &ctr));
		status = CTL_REFUSED;
	} else if (json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(name));
		json_object_object_add(o, "info", json_object_get(info.json));
		json_object_object_add(o, "counters", json_object_get(ctr.json));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
									 JSON_C_TO_STRING_SPACED));
		json_object_put(o);
	} else {
		print_human(name, info.json, ctr.json);
	}
	api_reply_free(&info);
	api_reply_free(&ctr);
	return status;
}
