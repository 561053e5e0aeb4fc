// SPDX-License-Identifier: MIT
/*
 * `nkvm debug NAME [--regs] [--sysrq KEY]`: each vCPU's registers (GET nkvm.debug, read with
 * the vCPUs parked) and a magic SysRq typed on the guest's keyboard (PUT nkvm.sysrq). With
 * neither option, --regs.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/ctl.h"
#include "lib/log.h"

#define DEBUG_USAGE "usage: nkvm debug NAME [--regs] [--sysrq KEY]"

/* The registers in the order a person reads them: where it is, then the rest. */
static const char *const reg_lines[][6] = {
	{ "rip", "rsp", "rbp", "rflags", "cs", "ss" },
	{ "rax", "rbx", "rcx", "rdx", "rsi", "rdi" },
	{ "r8", "r9", "r10", "r11", "r12", "r13" },
	{ "r14", "r15", "cr0", "cr2", "cr3", "cr4" },
	{ "efer", NULL },
};

static void print_vcpu(struct json_object *c)
{
	struct json_object *id, *v;

	json_object_object_get_ex(c, "id", &id);
	printf("vcpu%lld:\n", (long long)json_object_get_int64(id));
	for (size_t l = 0; l < sizeof(reg_lines) / sizeof(reg_lines[0]); l++) {
		printf(" ");
		for (size_t i = 0; i < 6 && reg_lines[l][i]; i++)
			if (json_object_object_get_ex(c, reg_lines[l][i], &v))
				printf(" %s=%s", reg_lines[l][i], json_object_get_string(v));
		printf("\n");
	}
}

static int print_regs(const char *name)
{
	struct json_object *list;
	struct api_reply r;
	int status = ctl_call(name, "GET", "nkvm.debug", &r);

	if (status)
		return status;
	if (r.status != 200 || !json_object_object_get_ex(r.json, "vcpus", &list) ||
	    !json_object_is_type(list, json_type_array)) {
		nkvm_err("%s: debug: %s", name, api_reply_error(&r));
		api_reply_free(&r);
		return CTL_REFUSED;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++)
		print_vcpu(json_object_array_get_idx(list, i));
	api_reply_free(&r);
	return CTL_OK;
}

static int send_sysrq(const char *name, const char *key)
{
	struct json_object *o = json_object_new_object();
	struct api_reply r;
	int status;

	json_object_object_add(o, "key", json_object_new_string(key));
	status = ctl_call_body(name, "PUT", "nkvm.sysrq", json_object_to_json_string(o), &r);
	json_object_put(o);
	if (status)
		return status;
	if (r.status != 204) {
		nkvm_err("%s: sysrq %s: %s", name, key, api_reply_error(&r));
		status = r.status == 400 ? CTL_USAGE : CTL_REFUSED;
	}
	api_reply_free(&r);
	return status;
}

int cmd_debug(int argc, char **argv)
{
	const char *name = NULL, *key = NULL;
	int regs = 0, status = CTL_OK;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s\nPrints each vCPU's registers (the default) and/or sends a magic "
			       "SysRq (KEY: a letter or digit, e.g. t, w, h).\n",
			       DEBUG_USAGE);
			return CTL_OK;
		} else if (!strcmp(argv[i], "--regs")) {
			regs = 1;
		} else if (!strcmp(argv[i], "--sysrq") && i + 1 < argc) {
			key = argv[++i];
		} else if (argv[i][0] != '-' && !name) {
			name = argv[i];
		} else {
			name = NULL;
			break;
		}
	}
	if (!name) {
		nkvm_err(DEBUG_USAGE);
		return CTL_USAGE;
	}
	if (key)
		status = send_sysrq(name, key);
	if (!status && (regs || !key))
		status = print_regs(name);
	return status;
}
