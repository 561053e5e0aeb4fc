/* SPDX-License-Identifier: MIT */
/* The debug-exit port: the guest's init writes its command's exit status; nkvm exits with it. */
#ifndef NKVM_HW_DEBUG_EXIT_H
#define NKVM_HW_DEBUG_EXIT_H

struct vm;

int debug_exit_init(struct vm *vm);

#endif
