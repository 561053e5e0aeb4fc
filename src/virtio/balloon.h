/* SPDX-License-Identifier: MIT */
/*
 * virtio-balloon (virtio 1.2 §5.5): the host sets a target (num_pages) and the guest's driver
 * inflates to it, giving pages back; nkvm drops them from the RAM mapping (MADV_DONTNEED) so
 * the monitor's RSS falls. Also the guest's memory statistics (STATS_VQ), DEFLATE_ON_OOM, and
 * free page reporting (VIRTIO_BALLOON_F_REPORTING): free pages the guest reports go back too.
 * Every page number the guest sends is checked against guest RAM; others are counted, not used.
 */
#ifndef NKVM_VIRTIO_BALLOON_H
#define NKVM_VIRTIO_BALLOON_H

#include <linux/virtio_balloon.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct pci_bus;
struct irq_routing;
struct virtio_balloon;

/* What the balloon knows, for vm.counters and nkvm stat. Sizes in bytes. */
struct virtio_balloon_info {
	uint64_t target; /* what the host asked for (num_pages) */
	uint64_t actual; /* what the driver says it holds (actual) */
	uint64_t inflated, deflated; /* pages through the inflate and deflate queues, in bytes */
	uint64_t returned; /* given back to the host: inflated and reported, MADV_DONTNEED done */
	uint64_t reported; /* free page reporting's share of returned */
	uint64_t bad_pfns; /* page numbers outside guest RAM, ignored */
	/* The guest's last statistics (§5.5.6.3), by VIRTIO_BALLOON_S_* tag, valid bits in have. */
	uint64_t stats[VIRTIO_BALLOON_S_NR];
	uint32_t have;
	uint64_t stats_updates; /* statistics buffers received */
	bool driver_ok; /* the guest's driver runs (its queues are set up) */
};

int virtio_balloon_create(struct virtio_balloon **b, struct vm *vm, struct pci_bus *bus,
			  struct irq_routing *irq);
/* Takes the device off the bus, stops its queue threads and frees it. */
void virtio_balloon_destroy(struct virtio_balloon *b);

/*
 * Sets the balloon's size (bytes, rounded down to 4 KiB pages) and tells the driver (a
 * configuration change). 0, or -ERANGE above guest RAM.
 */
int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t bytes);

/*
 * Fills *info. With wait_ms > 0 and the guest's statistics buffer held, first asks the guest
 * for fresh statistics (§5.5.6.3: the device uses the buffer; the driver refills it) and waits
 * up to wait_ms for them; the last ones known otherwise.
 */
void virtio_balloon_info(struct virtio_balloon *b, struct virtio_balloon_info *info, int wait_ms);

/* CH's BalloonStats names of the VIRTIO_BALLOON_S_* tags ("free_memory"), NULL past them. */
const char *virtio_balloon_stat_name(unsigned int tag);

#endif
