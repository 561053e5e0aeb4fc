/* SPDX-License-Identifier: MIT */
/*
 * Just enough of the PC keyboard controller for Linux to probe it and to reboot through it
 * (reboot=k writes 0xfe to port 0x64), and a keyboard behind it that only the monitor types on:
 * Ctrl-Alt-Del for a graceful stop (as Firecracker's SendCtrlAltDel) and Alt-SysRq. Booted with
 * i8042.noaux/nomux/dumbkbd/nopnp, Linux asks nothing more.
 */
#ifndef NKVM_ARCH_X86_I8042_H
#define NKVM_ARCH_X86_I8042_H

#include <pthread.h>
#include <stdint.h>

struct vm;

#define I8042_KEYS_MAX 64
#define I8042_IRQ 1

struct i8042 {
	pthread_mutex_t lock;
	struct vm *vm;
	uint8_t ctr; /* controller configuration ("command byte") */
	uint8_t out; /* output buffer */
	int out_full;
	uint8_t pending_cmd; /* a command waiting for its data byte on port 0x60 */
	uint8_t keys[I8042_KEYS_MAX]; /* scan codes typed by the monitor, not yet read */
	unsigned int keys_head, keys_len;
};

int i8042_init(struct i8042 *k, struct vm *vm);
uint8_t i8042_read(struct i8042 *k, uint16_t port);
void i8042_write(struct i8042 *k, uint16_t port, uint8_t val);

/*
 * Types Ctrl-Alt-Del: Linux's keyboard driver sends SIGINT to init (once init disabled the
 * immediate reboot with reboot(RB_DISABLE_CAD)). Any thread. Returns 0, -ENOBUFS when the
 * guest has not read what was typed before, or -EOPNOTSUPP when the guest turned off
 * translation (nkvm's keyboard speaks only scan code set 1, as the controller translates it).
 */
int i8042_ctrl_alt_del(struct i8042 *k);

/* Types Alt-SysRq-key, a magic SysRq; key is a lower-case letter or a digit (else -EINVAL). */
int i8042_sysrq(struct i8042 *k, char key);

#endif
