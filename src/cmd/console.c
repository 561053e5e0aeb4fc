// SPDX-License-Identifier: MIT
/*
 * `nkvm console NAME`: attaches the terminal to a detached guest's serial console
 * (DIR/NAME.console, run_console.h). Output kept while nobody was attached comes first. Ctrl-A d
 * detaches (the guest runs on), Ctrl-A Ctrl-A sends one Ctrl-A; everything else is the guest's.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/socket.h"
#include "cmd/cmd.h"
#include "cmd/ctl.h"
#include "cmd/run_options.h"
#include "cmd/run_console.h"
#include "lib/log.h"
#include "lib/util.h"
#include "vmm/term.h"

struct escape {
	int armed; /* the previous input byte was Ctrl-A */
};

/* Strips the escapes from buf in place; returns 1 when the user asked to detach (Ctrl-A d). */
static int filter_input(struct escape *e, uint8_t *buf, size_t *len)
{
	size_t out = 0;

	for (size_t i = 0; i < *len; i++) {
		uint8_t b = buf[i];

		if (e->armed) {
			e->armed = 0;
			if (b == 'd') {
				*len = out;
				return 1;
			}
			if (b == TERM_ESCAPE)
				buf[out++] = b;
			continue; /* Ctrl-A and anything else: dropped */
		}
		if (b == TERM_ESCAPE)
			e->armed = 1;
		else
			buf[out++] = b;
	}
	*len = out;
	return 0;
}

/* Connects to NAME's console socket; says why not (exit status in *status) when it cannot. */
static int connect_console(const char *name, int *status)
{
	char dir[108], api[128], path[128];
	int fd, alive;

	*status = CTL_NO_GUEST;
	if (!run_valid_name(name) || api_sock_dir(dir, sizeof(dir)) ||
	    api_sock_path(api, sizeof(api), dir, name) ||
	    run_console_path(path, sizeof(path), api)) {
		nkvm_err("%s: no such guest", name);
		return -1;
	}
	fd = api_sock_connect(path);
	if (fd >= 0)
		return fd;
	alive = api_sock_connect(api);
	if (alive >= 0) {
		close(alive);
		nkvm_err("%s: not a detached guest: its console is its own terminal's", name);
		*status = CTL_REFUSED;
	} else if (alive == -ECONNREFUSED) {
		ctl_remove_stale(name, api);
	} else {
		nkvm_err("%s: no such guest (see nkvm list)", name);
	}
	return -1;
}

int cmd_console(int argc, char **argv)
{
	struct escape esc = { 0 };
	int fd, status, in_open = 1;
	uint8_t buf[4096];

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: nkvm console NAME\nAttaches to a detached guest's serial console; "
		       "Ctrl-A d detaches, Ctrl-A Ctrl-A sends Ctrl-A.\n");
		return CTL_OK;
	}
	if (argc != 2 || argv[1][0] == '-') {
		nkvm_err("usage: nkvm console NAME");
		return CTL_USAGE;
	}
	fd = connect_console(argv[1], &status);
	if (fd < 0)
		return status;
	/* A guest that ends while we type: its socket's end is a read of 0, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	term_raw(STDIN_FILENO);
	for (;;) {
		struct pollfd p[2] = { { fd, POLLIN, 0 },
				       { STDIN_FILENO, in_open ? POLLIN : 0, 0 } };
		ssize_t n;
		size_t len;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			/* The guest ended (or another console took over, and said so). */
			if (n <= 0 || write_all(STDOUT_FILENO, buf, n) < 0)
				break;
		}
		if (p[1].revents) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				in_open = 0; /* no more input; the output still comes */
				continue;
			}
			len = n;
			if (filter_input(&esc, buf, &len)) {
				if (len)
					write_all(fd, buf, len);
				break;
			}
			if (len && write_all(fd, buf, len) < 0)
				break;
		}
	}
	close(fd);
	term_restore();
	return CTL_OK;
}
