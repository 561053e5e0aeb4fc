/* SPDX-License-Identifier: MIT */
/* The main thread's epoll loop: file descriptors with callbacks, until the VM stops. */
#ifndef NKVM_VMM_LOOP_H
#define NKVM_VMM_LOOP_H

#include <stdatomic.h>
#include <stdint.h>

struct loop_source {
	int fd;
	void (*fn)(struct loop_source *src, uint32_t events);
	void *opaque;
};

struct loop {
	int epfd;
	int timeout_ms;		/* -1: sleep until an event; callbacks may lower it to poll */
	void (*on_timeout)(void *opaque);
	void *timeout_opaque;
};

int loop_init(struct loop *l);
void loop_free(struct loop *l);
int loop_add(struct loop *l, struct loop_source *src, uint32_t events);
int loop_del(struct loop *l, struct loop_source *src);
/* Dispatches events until *stop becomes non-zero. Returns 0 or a negative errno. */
int loop_run(struct loop *l, atomic_int *stop);

#endif
