/* SPDX-License-Identifier: MIT */
/*
 * Just enough of the PC keyboard controller for Linux to probe it and to reboot through it
 * (reboot=k writes 0xfe to port 0x64): no keyboard behind it. Booted with
 * i8042.noaux/nomux/dumbkbd, Linux asks nothing more.
 */
#ifndef NKVM_ARCH_X86_I8042_H
#define NKVM_ARCH_X86_I8042_H

#include <pthread.h>
#include <stdint.h>

struct vm;

struct i8042 {
	pthread_mutex_t lock;
	struct vm *vm;
	uint8_t ctr; /* controller configuration ("command byte") */
	uint8_t out; /* output buffer */
	int out_full;
	uint8_t pending_cmd; /* a command waiting for its data byte on port 0x60 */
};

int i8042_init(struct i8042 *k, struct vm *vm);
uint8_t i8042_read(struct i8042 *k, uint16_t port);
void i8042_write(struct i8042 *k, uint16_t port, uint8_t val);

#endif
