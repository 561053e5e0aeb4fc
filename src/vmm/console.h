/* SPDX-License-Identifier: MIT */
/* The host side of the guest's console: host stdin → UART receive, UART transmit → stdout. */
#ifndef NKVM_VMM_CONSOLE_H
#define NKVM_VMM_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/loop.h"
#include "vmm/term.h"

struct serial;
struct vm;

struct console {
	struct vm *vm;
	struct serial *uart;
	/* Where host input goes: the UART unless console_set_input chose another device. */
	size_t (*receive)(void *opaque, const uint8_t *buf, size_t len);
	void *receive_opaque;
	struct loop *loop;
	int out_fd;
	/* Where output goes instead of out_fd when set (a detached guest's console buffer). */
	void (*output)(void *opaque, const uint8_t *buf, size_t len);
	void *output_opaque;
	struct loop_source in_src, out_src;
	struct loop_timer retry; /* while input is held */
	struct term_escape esc;
	int in_active; /* 0: no input, 1: in the loop, 2: paused while input is held */
	uint8_t pending[256]; /* input the UART had no room for yet */
	size_t pending_len;
};

/* Hooks in_fd (may be -1 for none) and out_fd to uart through loop. */
int console_init(struct console *c, struct vm *vm, struct serial *uart, struct loop *loop,
		 int in_fd, int out_fd);
/* Sends host input to another device (virtio-console) instead of the UART. */
void console_set_input(struct console *c, size_t (*receive)(void *, const uint8_t *, size_t),
		       void *opaque);
/* Sends the guest's output to fn instead of out_fd. */
void console_set_output(struct console *c, void (*fn)(void *, const uint8_t *, size_t),
			void *opaque);
/*
 * Input from somewhere other than in_fd (a console client): takes up to len bytes, as many as
 * there is room for while earlier input waits for the guest; returns how many it took.
 */
size_t console_input(struct console *c, const uint8_t *buf, size_t len);
/* Writes whatever the guest transmitted and nobody has written yet. */
void console_flush(struct console *c);

#endif
