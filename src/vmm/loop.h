/* SPDX-License-Identifier: MIT */
/* The main thread's epoll loop: file descriptors with callbacks and timers, until the VM stops. */
#ifndef NKVM_VMM_LOOP_H
#define NKVM_VMM_LOOP_H

#include <stdatomic.h>
#include <stdint.h>

struct loop_source {
	int fd;
	void (*fn)(struct loop_source *src, uint32_t events);
	void *opaque;
};

/*
 * A one-shot timer on the loop's thread: armed, it fires once (fn runs in the loop, after the
 * events of that round) and is disarmed before fn runs, so fn may arm it again. Timers that are
 * due together fire in deadline order, and in arming order for equal deadlines. Arm and cancel
 * only from the loop's thread (or before loop_run).
 */
struct loop_timer {
	void (*fn)(struct loop_timer *t);
	void *opaque;
	uint64_t deadline_ns; /* CLOCK_MONOTONIC; meaningful while armed */
	struct loop_timer *next; /* the armed list, soonest first */
	uint64_t round; /* the loop's round when it was armed */
	int armed;
};

struct loop {
	int epfd;
	struct loop_timer *timers; /* armed, soonest first */
	uint64_t round; /* counts the rounds that fired timers */
};

int loop_init(struct loop *l);
void loop_free(struct loop *l);
int loop_add(struct loop *l, struct loop_source *src, uint32_t events);
int loop_del(struct loop *l, struct loop_source *src);
/* (Re)arms t to fire ms milliseconds from now; an armed t moves to its new deadline. */
void loop_timer_arm(struct loop *l, struct loop_timer *t, unsigned int ms);
/* Disarms t; nothing happens if it is not armed. */
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
/* Dispatches events and timers until *stop becomes non-zero. Returns 0 or a negative errno. */
int loop_run(struct loop *l, atomic_int *stop);

#endif
