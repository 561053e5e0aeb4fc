/* SPDX-License-Identifier: MIT */
/* Guest RAM: one anonymous mapping, laid out around the 32-bit PCI hole. */
#ifndef NKVM_VMM_MEMORY_H
#define NKVM_VMM_MEMORY_H

#include <stdint.h>

/* Guest-physical [MEM_HOLE_START, 4 GiB) is left for MMIO (PCI BARs, IOAPIC, LAPIC). */
#define MEM_HOLE_START 0xc0000000ULL
#define MEM_HOLE_END 0x100000000ULL

struct guest_region {
	uint64_t gpa, size;
	uint8_t *host;
};

struct guest_memory {
	uint8_t *base; /* the one host mapping, ram_size bytes */
	uint64_t ram_size;
	unsigned int nr_regions;
	struct guest_region regions[2];
};

/* Splits ram_size into regions (below the hole, above 4 GiB). Pure: no allocation. */
void memory_layout(struct guest_memory *mem, uint64_t ram_size);
/* memory_layout, then maps the RAM. Returns 0 or a negative errno. */
int memory_init(struct guest_memory *mem, uint64_t ram_size);
void memory_free(struct guest_memory *mem);

/*
 * The one checked door into guest memory: the host address of [gpa, gpa + len), or NULL when
 * any part of the range is outside guest RAM or it crosses from one region into another.
 */
void *guest_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* End of RAM below the hole: where boot data that must stay under 4 GiB can go. */
uint64_t memory_low_end(const struct guest_memory *mem);

#endif
