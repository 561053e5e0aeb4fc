/* SPDX-License-Identifier: MIT */
/* virtio-blk (virtio 1.2 §5.2) over a disk of the block layer. */
#ifndef NKVM_VIRTIO_BLK_H
#define NKVM_VIRTIO_BLK_H

#include <linux/virtio_blk.h> /* VIRTIO_BLK_ID_BYTES */
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct pci_bus;
struct irq_routing;
struct disk;

/* Request queues: the transport's VIRTIO_MAX_QUEUES less one (virtio_blk_create clamps). */
#define VIRTIO_BLK_MAX_QUEUES 63

struct virtio_blk_options {
	const char *serial; /* GET_ID answer, at most 20 bytes; NULL: none */
	unsigned int queues; /* request queues (F_MQ when > 1) */
};

struct virtio_device;

/*
 * Plugs a virtio-blk device serving disk into bus; the device owns the disk from then on. The
 * device in *vdev when vdev is not NULL (a caller may also find it with virtio_pci_device). On
 * failure nothing is left allocated and the disk is still the caller's.
 */
int virtio_blk_create(struct virtio_device **vdev, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq, struct disk *disk,
		      const struct virtio_blk_options *o);

/*
 * Takes a device that virtio_blk_create made off the bus and frees it, its transport and its
 * disk: nkvm run at exit, so that each disk is closed (qcow2 writes back its metadata), and nkvm
 * img bench between runs.
 */
void virtio_blk_destroy(struct virtio_device *vdev);

/*
 * What the guest asked of the disk since it was created: requests completed (any type), bytes
 * read and written by those that succeeded, those that did not (any status but OK), and
 * requests taken from the rings and not yet completed. Any thread, without stopping the device.
 */
struct virtio_blk_stats {
	uint64_t requests, read_bytes, write_bytes, errors, in_flight;
};

void virtio_blk_get_stats(struct virtio_device *vdev, struct virtio_blk_stats *out);

#endif
