/* SPDX-License-Identifier: MIT */
/*
 * An address space of device regions (one for port I/O, one for MMIO). Regions are registered
 * during setup, before any vCPU runs, so lookups need no lock.
 */
#ifndef NKVM_VMM_BUS_H
#define NKVM_VMM_BUS_H

#include <stdbool.h>
#include <stdint.h>

struct bus_ops {
	/* off is relative to the region's base; len is 1, 2, 4 or 8. */
	void (*read)(void *opaque, uint64_t off, void *data, unsigned int len);
	void (*write)(void *opaque, uint64_t off, const void *data, unsigned int len);
};

struct bus_region {
	uint64_t base, len;
	const struct bus_ops *ops;
	void *opaque;
};

#define BUS_MAX_REGIONS 64

struct bus {
	unsigned int nr;
	struct bus_region regions[BUS_MAX_REGIONS];
};

/* Returns 0, -EINVAL for an empty or wrapping range, -EEXIST on overlap, -ENOSPC when full. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque);
/*
 * Dispatch an access. Return false when no region covers [addr, addr + len): reads of nothing
 * then see all ones, as on a PC, and writes vanish.
 */
bool bus_read(const struct bus *bus, uint64_t addr, void *data, unsigned int len);
bool bus_write(const struct bus *bus, uint64_t addr, const void *data, unsigned int len);

#endif
