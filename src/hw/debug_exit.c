// SPDX-License-Identifier: MIT
#include <stdint.h>

#include "guest/abi.h"
#include "hw/debug_exit.h"
#include "vmm/bus.h"
#include "vmm/vm.h"

static void debug_exit_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	vm_request_stop(opaque, *(const uint8_t *)data);
}

static const struct bus_ops debug_exit_ops = { .write = debug_exit_write };

int debug_exit_init(struct vm *vm)
{
	return bus_register(&vm->pio, NKVM_EXIT_PORT, 1, &debug_exit_ops, vm);
}
