// SPDX-License-Identifier: MIT
/*
 * `nkvm balloon NAME SIZE`: sets the guest's memory target. SIZE is what the guest keeps; the
 * balloon takes the rest of its memory (PUT vm.resize {"desired_balloon": memory - SIZE}), and
 * a larger SIZE deflates it. The guest's driver then inflates or deflates in its own time.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/ctl.h"
#include "lib/log.h"
#include "lib/util.h"

#define USAGE "usage: nkvm balloon NAME SIZE   (SIZE: the guest's memory target, e.g. 128M)"

/* config.memory.size of vm.info, or 0 when the answer lacks it. */
static uint64_t guest_memory(struct json_object *info)
{
	struct json_object *x;

	if (json_object_object_get_ex(info, "config", &x) &&
	    json_object_object_get_ex(x, "memory", &x) &&
	    json_object_object_get_ex(x, "size", &x) && json_object_is_type(x, json_type_int) &&
	    json_object_get_int64(x) > 0)
		return json_object_get_int64(x);
	return 0;
}

int cmd_balloon(int argc, char **argv)
{
	struct api_reply r;
	uint64_t target, mem;
	char body[64];
	int status;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("%s\n", USAGE);
		return CTL_OK;
	}
	if (argc != 3 || argv[1][0] == '-') {
		nkvm_err(USAGE);
		return CTL_USAGE;
	}
	if (parse_size(argv[2], MiB, &target)) {
		nkvm_err("%s: not a size (try 512M or 2G)", argv[2]);
		return CTL_USAGE;
	}
	status = ctl_call(argv[1], "GET", "vm.info", &r);
	if (status)
		return status;
	mem = r.status == 200 ? guest_memory(r.json) : 0;
	if (!mem)
		nkvm_err("%s: balloon: %s", argv[1],
			 r.status == 200 ? "vm.info gives no memory size" : api_reply_error(&r));
	api_reply_free(&r);
	if (!mem)
		return CTL_REFUSED;
	if (target > mem) {
		nkvm_err("%s: balloon %s: more than the guest's memory (%" PRIu64 "M)", argv[1],
			 argv[2], mem >> 20);
		return CTL_REFUSED;
	}
	snprintf(body, sizeof(body), "{\"desired_balloon\": %" PRIu64 "}", mem - target);
	status = ctl_call_body(argv[1], "PUT", "vm.resize", body, &r);
	if (status)
		return status;
	if (r.status != 204) {
		nkvm_err("%s: balloon: %s", argv[1], api_reply_error(&r));
		status = CTL_REFUSED;
	}
	api_reply_free(&r);
	return status;
}
