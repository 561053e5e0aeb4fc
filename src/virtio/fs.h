/* SPDX-License-Identifier: MIT */
/*
 * virtio-fs (virtio 1.2 §5.11) over the in-process FUSE server (fs/fuse_server.h): queue 0 is
 * the high-priority queue, queues 1..N the request queues, each served on its own I/O thread;
 * the configuration space holds the tag the guest mounts by.
 */
#ifndef NKVM_VIRTIO_FS_H
#define NKVM_VIRTIO_FS_H

#include <linux/virtio_fs.h>

struct vm;
struct pci_bus;
struct irq_routing;
struct fuse_server;
struct virtio_fs;

/* §5.11.4: the tag is at most this many bytes, NUL-padded, not NUL-terminated when full. */
#define VIRTIO_FS_TAG_MAX ((unsigned int)sizeof(((struct virtio_fs_config *)0)->tag))
/* Request queues: the transport's VIRTIO_MAX_QUEUES less the high-priority queue. */
#define VIRTIO_FS_MAX_REQUEST_QUEUES 63

struct virtio_fs_options {
	const char *tag; /* 1 to VIRTIO_FS_TAG_MAX bytes */
	unsigned int queues; /* request queues; 0: one (clamped to VIRTIO_FS_MAX_REQUEST_QUEUES) */
};

/*
 * Plugs a virtio-fs device serving srv into bus; the device owns srv from then on. On failure
 * (-EINVAL for a tag empty or too long, -ENOMEM, or the transport's error) nothing is left
 * allocated and srv is still the caller's.
 */
int virtio_fs_create(struct virtio_fs **fs, struct vm *vm, struct pci_bus *bus,
		     struct irq_routing *irq, struct fuse_server *srv,
		     const struct virtio_fs_options *o);
/* Takes the device off the bus, stops its queue threads, destroys its server, frees it. */
void virtio_fs_destroy(struct virtio_fs *fs);

#endif
