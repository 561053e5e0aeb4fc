/* SPDX-License-Identifier: MIT */
/*
 * `nkvm run`'s control socket: the guest's name, its socket (src/api/socket.h), and the hooks
 * through which the API (src/api/handler.h) reads and pauses this VM.
 */
#ifndef NKVM_CMD_RUN_API_H
#define NKVM_CMD_RUN_API_H

#include <pthread.h>
#include <stdint.h>
#include <sys/un.h>

#include "api/handler.h"
#include "api/server.h"

struct vm;
struct virtio_balloon;

struct run_api {
	char name[80];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd; /* until the server takes it */
	struct api_server *server;
	struct api_hooks hooks;
	struct vm *vm;
	const char *kernel, *initrd, *cmdline;
	uint64_t start_ns;
	int clock_saved;
	/* Devices the hooks reach, NULL when absent; dev_lock keeps them until detached. */
	pthread_mutex_t dev_lock;
	struct virtio_balloon *balloon;
};

/*
 * Before the guest is built: names it (name, or nkvm-PID) and binds its socket, so that a
 * second guest of a live name stops here. Prints why it failed; returns 0 or -1.
 */
int run_api_open(struct run_api *a, const char *name);

/* Once the vCPUs exist (and signals are blocked): serves the socket on its own thread. */
int run_api_start(struct run_api *a, struct vm *vm);

/* Before the devices are destroyed: the hooks stop using them (and wait for one that is). */
void run_api_detach_devices(struct run_api *a);

/* Stops serving and removes the socket. Safe after a failed or no open. */
void run_api_close(struct run_api *a);

#endif
