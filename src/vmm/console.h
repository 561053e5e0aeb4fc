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
	struct loop *loop;
	int out_fd;
	struct loop_source in_src, out_src;
	struct term_escape esc;
	int in_active;		/* 0: no input, 1: in the loop, 2: paused while input is held */
	uint8_t pending[256];	/* input the UART had no room for yet */
	size_t pending_len;
};

/* Hooks in_fd (may be -1 for none) and out_fd to uart through loop. */
int console_init(struct console *c, struct vm *vm, struct serial *uart, struct loop *loop,
		 int in_fd, int out_fd);
/* Writes whatever the guest transmitted and nobody has written yet. */
void console_flush(struct console *c);

#endif
