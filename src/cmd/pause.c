// SPDX-License-Identifier: MIT
/* `nkvm pause NAME` and `nkvm resume NAME`: PUT vm.pause / vm.resume on the guest's socket. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/ctl.h"
#include "lib/log.h"

static int pause_or_resume(int argc, char **argv, const char *endpoint)
{
	struct api_reply r;
	int status;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: nkvm %s NAME\n", argv[0]);
		return CTL_OK;
	}
	if (argc != 2 || argv[1][0] == '-') {
		nkvm_err("usage: nkvm %s NAME", argv[0]);
		return CTL_USAGE;
	}
	status = ctl_call(argv[1], "PUT", endpoint, &r);
	if (status)
		return status;
	if (r.status != 204) {
		nkvm_err("%s: %s: %s", argv[1], argv[0], api_reply_error(&r));
		status = CTL_REFUSED;
	}
	api_reply_free(&r);
	return status;
}

int cmd_pause(int argc, char **argv)
{
	return pause_or_resume(argc, argv, "vm.pause");
}

int cmd_resume(int argc, char **argv)
{
	return pause_or_resume(argc, argv, "vm.resume");
}
