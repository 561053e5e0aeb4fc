/* SPDX-License-Identifier: MIT */
/*
 * A detached guest's serial console (nkvm run --detach): what the guest writes is kept in a
 * ring (the last RUN_CONSOLE_RING bytes) and served on a second unix socket beside the control
 * socket, DIR/NAME.console, to one client at a time (nkvm console). A client gets first what
 * no client has seen yet, then the output as it comes; what it sends is the guest's input.
 * The bytes are the console's own both ways: no framing, no HTTP.
 */
#ifndef NKVM_CMD_RUN_CONSOLE_H
#define NKVM_CMD_RUN_CONSOLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "vmm/console.h"
#include "vmm/loop.h"

#define RUN_CONSOLE_RING (1U << 20)
#define RUN_CONSOLE_SUFFIX ".console"
/* While the guest has not read earlier input, a client's input waits this long to retry. */
#define RUN_CONSOLE_RETRY_MS 5

struct run_console {
	struct console *console;
	struct loop *loop;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct loop_source listen_src, client_src;
	uint32_t client_events; /* what client_src waits for in the loop; 0: no client */
	struct loop_timer retry;
	bool input_held; /* the console had no room: the client's input waits for retry */
	uint8_t *ring;
	uint64_t end; /* bytes the guest wrote, ever: the ring holds the last of them */
	uint64_t seen; /* bytes some client was sent */
	uint64_t client_pos; /* the next byte for the client */
};

/*
 * DIR/NAME.console for the control socket DIR/NAME.sock in api_path. Returns 0 or a negative
 * errno (-ENAMETOOLONG).
 */
int run_console_path(char *buf, size_t len, const char *api_path);

/*
 * Listens on path (before the guest starts) and takes c's output from now on. Returns 0 or a
 * negative errno (api_sock_listen's).
 */
int run_console_open(struct run_console *rc, const char *path, struct console *c,
		     struct loop *loop);
/* Closes the client and the socket, removes it, frees the ring. Safe after a failed open. */
void run_console_close(struct run_console *rc);

/* The console's output hook (console_set_output), exposed for tests. */
void run_console_output(void *opaque, const uint8_t *buf, size_t len);

#endif
