/* SPDX-License-Identifier: MIT */
/*
 * The host terminal while a guest runs: raw mode (restored on every way out, signals
 * included), and the Ctrl-A escape: Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A.
 */
#ifndef NKVM_VMM_TERM_H
#define NKVM_VMM_TERM_H

#include <stddef.h>
#include <stdint.h>

#define TERM_ESCAPE 0x01 /* Ctrl-A */

/* Puts fd's terminal in raw mode if it is one; the old mode comes back at term_restore. */
int term_raw(int fd);
void term_restore(void);

struct term_escape {
	int armed; /* the previous byte was Ctrl-A */
};

/*
 * Filters host input in place: strips escape sequences, returns the bytes left for the guest
 * in *len, and 1 when the user asked to quit (Ctrl-A x), else 0.
 */
int term_filter_input(struct term_escape *esc, uint8_t *buf, size_t *len);

#endif
