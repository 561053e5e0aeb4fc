// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/socket.h"
#include "cmd/ctl.h"
#include "cmd/run_options.h"
#include "lib/log.h"

int ctl_is_link(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

void ctl_remove_stale(const char *name, const char *path)
{
	/* Connection refused on a socket file: its guest died without removing it. */
	if (unlink(path) == 0)
		nkvm_err("%s: the guest has died; removed its stale socket %s", name, path);
}

int ctl_call(const char *name, const char *method, const char *endpoint, struct api_reply *r)
{
	return ctl_call_body(name, method, endpoint, NULL, r);
}

int ctl_call_body(const char *name, const char *method, const char *endpoint, const char *body,
		  struct api_reply *r)
{
	char dir[108], path[128], err[512];
	int ret;

	memset(r, 0, sizeof(*r));
	if (!run_valid_name(name) || api_sock_dir(dir, sizeof(dir)) ||
	    api_sock_path(path, sizeof(path), dir, name)) {
		nkvm_err("%s: no such guest", name);
		return CTL_NO_GUEST;
	}
	ret = api_call_body(path, method, endpoint, body, r, err, sizeof(err));
	if (ret == -ENOENT && ctl_is_link(path)) {
		ctl_remove_stale(name, path);
		return CTL_NO_GUEST;
	}
	if (ret == -ENOENT) {
		nkvm_err("%s: no such guest (see nkvm list)", name);
		return CTL_NO_GUEST;
	}
	if (ret == -ECONNREFUSED) {
		ctl_remove_stale(name, path);
		return CTL_NO_GUEST;
	}
	if (ret) {
		nkvm_err("%s: %s", name, err);
		return CTL_REFUSED;
	}
	return CTL_OK;
}
