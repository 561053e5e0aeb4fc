/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz targets that drive a device or the buses share: the stubs of the monitor's
 * calls that need KVM or would flood the output, and the driver side's clock and used index.
 * Each target is one translation unit, so the two stubs below replace the monitor's own.
 */
#ifndef NKVM_FUZZ_DEVICE_H
#define NKVM_FUZZ_DEVICE_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "virtio/driver.h"
#include "vmm/vm.h"

/* Without KVM there is no irqchip: the INTx line goes nowhere. */
int vm_irq_line(struct vm *vm, unsigned int gsi, int level)
{
	return 0;
}

/* Messages are formatted (a bad format would show) but not printed: they would flood. */
void nkvm_err(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
}

static inline uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static inline uint16_t used_idx(const struct virtio_driver_queue *q)
{
	return __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
}

#endif
