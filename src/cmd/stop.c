// SPDX-License-Identifier: MIT
/*
 * `nkvm stop NAME [--force] [--timeout SEC]`: PUT vm.power-button (Ctrl-Alt-Del, which the
 * guest's init turns into an orderly power-off), then wait for the guest to end; after SEC
 * seconds, or at once with --force, PUT vm.shutdown. Either way nkvm closes the disks as at any
 * exit, and its socket goes last: when it is gone, so is the guest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/socket.h"
#include "cmd/cmd.h"
#include "cmd/ctl.h"
#include "cmd/run_options.h"
#include "lib/log.h"

#define STOP_DEFAULT_TIMEOUT_S 30
#define STOP_POLL_MS 50
/* After vm.shutdown: the vCPUs stop at once; closing the disks may take a moment. */
#define STOP_FORCE_WAIT_S 60

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits until nothing answers on the guest's socket: removed (nkvm exited) or refusing (its
 * server stopped, the file about to go). Returns 1 when gone, 0 at the deadline.
 */
static int wait_gone(const char *path, long deadline_ms)
{
	for (;;) {
		int fd = api_sock_connect(path);

		if (fd < 0) {
			/* Root's link to a --user guest's socket, which that guest could not remove. */
			if (ctl_is_link(path))
				unlink(path);
			return 1;
		}
		close(fd);
		if (now_ms() >= deadline_ms)
			return 0;
		usleep(STOP_POLL_MS * 1000);
	}
}

/* PUT endpoint, expecting 204. Returns CTL_OK or the status to exit with (said why). */
static int put(const char *name, const char *endpoint, const char *what)
{
	struct api_reply r;
	int status = ctl_call(name, "PUT", endpoint, &r);

	if (status)
		return status;
	if (r.status != 204) {
		nkvm_err("%s: %s: %s", name, what, api_reply_error(&r));
		status = CTL_REFUSED;
	}
	api_reply_free(&r);
	return status;
}

static int usage_error(void)
{
	nkvm_err("usage: nkvm stop NAME [--force] [--timeout SEC]");
	return CTL_USAGE;
}

int cmd_stop(int argc, char **argv)
{
	long timeout_s = STOP_DEFAULT_TIMEOUT_S;
	char dir[108], path[128], *end;
	const char *name = NULL;
	int force = 0, status;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: nkvm stop NAME [--force] [--timeout SEC]\n"
			       "Powers the guest off gracefully (Ctrl-Alt-Del to its init); after SEC "
			       "seconds (default %d), or at once with --force, ends it.\n",
			       STOP_DEFAULT_TIMEOUT_S);
			return CTL_OK;
		} else if (!strcmp(argv[i], "--force")) {
			force = 1;
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			errno = 0;
			timeout_s = strtol(argv[++i], &end, 10);
			if (errno || end == argv[i] || *end || timeout_s < 0 || timeout_s > 86400) {
				nkvm_err("--timeout %s: want whole seconds, 0 to 86400", argv[i]);
				return CTL_USAGE;
			}
		} else if (argv[i][0] != '-' && !name) {
			name = argv[i];
		} else {
			return usage_error();
		}
	}
	if (!name)
		return usage_error();
	if (!run_valid_name(name) || api_sock_dir(dir, sizeof(dir)) ||
	    api_sock_path(path, sizeof(path), dir, name)) {
		nkvm_err("%s: no such guest", name);
		return CTL_NO_GUEST;
	}
	if (!force) {
		status = put(name, "vm.power-button", "power button");
		if (status)
			return status;
		if (wait_gone(path, now_ms() + timeout_s * 1000))
			return CTL_OK;
		nkvm_err("%s: not powered off after %ld s; ending it", name, timeout_s);
	}
	status = put(name, "vm.shutdown", "shutdown");
	/* It may have gone between the two requests: then it is stopped all the same. */
	if (status == CTL_NO_GUEST && !force)
		return CTL_OK;
	if (status)
		return status;
	if (!wait_gone(path, now_ms() + STOP_FORCE_WAIT_S * 1000)) {
		nkvm_err("%s: still running %d s after shutdown", name, STOP_FORCE_WAIT_S);
		return CTL_REFUSED;
	}
	return CTL_OK;
}
