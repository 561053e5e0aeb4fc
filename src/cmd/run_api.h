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
#include "sandbox/privs.h"

struct vm;
struct virtio_balloon;
struct i8042;
struct device_list;

/* nkvm run's status when vm.shutdown ended the guest: as after SIGTERM, nkvm's own stop. */
#define RUN_STATUS_SHUTDOWN (128 + 15)

struct run_api {
	char name[80];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char link[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* --user: root's symlink to path */
	int listen_fd; /* until the server takes it */
	struct api_server *server;
	struct api_hooks hooks;
	struct vm *vm;
	struct i8042 *i8042; /* the keyboard nkvm types Ctrl-Alt-Del and SysRq on */
	/*
	 * The devices the hooks reach: every one for its counters (vm.counters), the balloon
	 * (NULL when absent) for vm.info and vm.resize. NULL once run_api_forget_devices ran;
	 * devices_lock keeps them alive while a hook uses them.
	 */
	pthread_mutex_t devices_lock;
	const struct device_list *devices;
	struct virtio_balloon *balloon;
	const char *kernel, *initrd, *cmdline;
	uint64_t start_ns;
	int clock_saved;
};

/*
 * Before the guest is built: names it (name, or nkvm-PID) and binds its socket, so that a
 * second guest of a live name stops here. Prints why it failed; returns 0 or -1.
 */
int run_api_open(struct run_api *a, const char *name);

/*
 * run_api_open for a guest that will drop to u (--user; NULL: none): the socket in u's own
 * directory (api_sock_dir_for), owned by u, and a symlink to it in root's.
 */
int run_api_open_as(struct run_api *a, const char *name, const struct privs_user *u);

/* Once the vCPUs exist (and signals are blocked): serves the socket on its own thread. */
int run_api_start(struct run_api *a, struct vm *vm);

/*
 * Before the devices are destroyed: the API stops reading them, and waits for a reader. The
 * socket still answers, so that `nkvm stop` sees the guest until its disks are closed.
 */
void run_api_forget_devices(struct run_api *a);

/* Stops serving and removes the socket. Safe after a failed or no open. */
/* After sandbox_release: makes the server's thread confine itself now (one connection). */
void run_api_confine(struct run_api *a);

void run_api_close(struct run_api *a);

#endif
