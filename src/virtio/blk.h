/* SPDX-License-Identifier: MIT */
/* virtio-blk (virtio 1.2 §5.2) over a disk of the block layer. */
#ifndef NKVM_VIRTIO_BLK_H
#define NKVM_VIRTIO_BLK_H

#include <stdbool.h>

struct vm;
struct pci_bus;
struct irq_routing;
struct disk;

#define VIRTIO_BLK_ID_BYTES 20

struct virtio_blk_options {
	const char *serial;		/* GET_ID answer, at most 20 bytes; NULL: none */
	unsigned int queues;		/* request queues (F_MQ when > 1) */
};

/* Plugs a virtio-blk device serving disk into bus; the device owns the disk from then on. */
int virtio_blk_create(struct vm *vm, struct pci_bus *bus, struct irq_routing *irq,
		      struct disk *disk, const struct virtio_blk_options *o);

/*
 * Takes a device that virtio_blk_create made (found with virtio_pci_device) off the bus and
 * frees it, its transport and its disk: nkvm run at exit, so that each disk is closed (qcow2
 * writes back its metadata), and nkvm img bench between runs.
 */
struct virtio_device;
void virtio_blk_destroy(struct virtio_device *vdev);

#endif
