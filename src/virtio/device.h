/* SPDX-License-Identifier: MIT */
/*
 * A virtio device as its transport (virtio-pci) sees it: data plus ops. The transport does
 * feature negotiation, status, queues, notifications and interrupts; a device only handles the
 * requests on its queues and its configuration space, and never knows about PCI.
 */
#ifndef NKVM_VIRTIO_DEVICE_H
#define NKVM_VIRTIO_DEVICE_H

#include <linux/kvm.h> /* KVM_IRQ_LINE, for VIRTIO_QUEUE_RULES */
#include <linux/virtio_config.h> /* VIRTIO_F_*, VIRTIO_CONFIG_S_*: §6, §2.1 */
#include <linux/virtio_ids.h> /* VIRTIO_ID_*: §5 */
#include <linux/virtio_ring.h> /* VIRTIO_RING_F_*: §6 */
#include <stdbool.h>
#include <stdint.h>

#include "virtio/queue.h"

/*
 * What every queue thread does (pci.c's vp_queue_thread): waits for kicks (poll, read of the
 * kick eventfd) and interrupts the driver (an irqfd write, or the INTx line). For each device's
 * queue_filter (sandbox.h), beside the thread basics and the device's own calls.
 */
#define VIRTIO_QUEUE_RULES                                                               \
	SANDBOX_ALLOW(poll), SANDBOX_ALLOW(read), SANDBOX_ALLOW(write),                  \
		SANDBOX_ALLOW_ARG(ioctl, 1, KVM_IRQ_LINE)

struct sandbox_filter;

#define VIRTIO_MAX_QUEUES 64

struct virtio_device;
struct virtio_pci;

struct virtio_device_ops {
	/* Queue q was kicked (or started): handle what is available. Runs on q's I/O thread. */
	void (*queue_kick)(struct virtio_device *vdev, unsigned int q);
	/* Device configuration space (§4.1.4.6); reads and writes inside config_size only. */
	void (*config_read)(struct virtio_device *vdev, uint64_t off, void *data, unsigned int len);
	void (*config_write)(struct virtio_device *vdev, uint64_t off, const void *data,
			     unsigned int len);
	/* DRIVER_OK: vdev->features holds what was negotiated. Returns 0 or a negative errno. */
	int (*start)(struct virtio_device *vdev);
	/* Reset: the queue threads are stopped; wait for requests in flight and forget state. */
	void (*reset)(struct virtio_device *vdev);
	/*
	 * Optional, on q's I/O thread: queue_start as the thread starts, before its first
	 * queue_kick. It may set *fd (preset to -1) to a descriptor the thread then waits on as
	 * well as on kicks, calling queue_event when it is readable (completions of I/O the device
	 * reaps on this thread). queue_stop as the thread ends: what the device started on the
	 * thread must be finished by then.
	 */
	void (*queue_start)(struct virtio_device *vdev, unsigned int q, int *fd);
	void (*queue_event)(struct virtio_device *vdev, unsigned int q);
	void (*queue_stop)(struct virtio_device *vdev, unsigned int q);
	/*
	 * Optional, on q's I/O thread: sleep in the device's own I/O wait instead of polling
	 * kick_fd and the queue_start descriptor; returns 1 when kick_fd was readable (its count
	 * read: the thread then calls queue_kick), 0 when only the device's own work was done, or
	 * -EOPNOTSUPP (on the first call only) when the device cannot wait so.
	 */
	int (*queue_wait)(struct virtio_device *vdev, unsigned int q, int kick_fd);
	/*
	 * Optional, after a successful start: whether something else (the kernel's vhost) serves
	 * queue q from now to the next reset, so that the transport runs no thread for it.
	 */
	bool (*queue_offloaded)(struct virtio_device *vdev, unsigned int q);
};

struct virtio_device {
	const struct virtio_device_ops *ops;
	const char *name; /* for messages: "virtio-blk (disk.img)" */
	uint16_t device_id;
	uint32_t pci_class; /* PCI class code (hw/pci.h); 0: PCI_CLASS_OTHERS */
	uint64_t host_features; /* offered, VERSION_1 and ring features included */
	uint64_t features; /* negotiated */
	unsigned int nr_queues;
	uint16_t queue_max_size;
	uint32_t config_size;
	struct virtio_pci *transport; /* set by virtio_pci_create */
	/* What the queue threads may call (sandbox.h), beside the device's code; NULL: generic. */
	const struct sandbox_filter *queue_filter;
};

/*
 * Services the transport gives devices. Pop and push on one queue may come from different
 * threads (the queue's I/O thread pops, I/O engine threads push completions): the transport
 * serializes them.
 */
/* As virtq_pop. A malformed ring or chain (< 0) puts the device in DEVICE_NEEDS_RESET. */
int virtio_pop(struct virtio_device *vdev, unsigned int q, struct virtq_chain *c);
/* Returns head with len bytes written, and interrupts the driver if it asked to be. */
void virtio_push(struct virtio_device *vdev, unsigned int q, uint16_t head, uint32_t len);
/*
 * As virtio_push, but without the interrupt: a virtio_notify after several of them sends at most
 * one for all (a batch of completions, one interrupt).
 */
void virtio_push_batched(struct virtio_device *vdev, unsigned int q, uint16_t head, uint32_t len);
void virtio_notify(struct virtio_device *vdev, unsigned int q);
/* Whether the driver has made buffers available that virtio_pop has not taken yet. */
bool virtio_has_avail(struct virtio_device *vdev, unsigned int q);
/* Marks the device broken (DEVICE_NEEDS_RESET) and tells the driver with a config interrupt. */
void virtio_needs_reset(struct virtio_device *vdev, const char *why);
/*
 * The device's configuration changed (a balloon's target, a console's size): bumps
 * config_generation and, once the driver runs (DRIVER_OK), sends the configuration change
 * interrupt (§2.5: MSI-X's config vector, or ISR bit 1 with INTx).
 */
void virtio_config_changed(struct virtio_device *vdev);

/*
 * What a vhost back end needs of queue q, as the driver set it up: kick_fd receives the
 * driver's notifications (the ioeventfd, or the notify register's writes), call_fd is the irqfd
 * of the queue's MSI-X vector (-1 with none: the back end then cannot interrupt the driver by
 * itself), the ring's size and guest-physical addresses, and the guest memory to map them by.
 * A write to call_fd bypasses the MSI-X mask and pending bits. Valid from DRIVER_OK to the next
 * reset. Returns 0, -EINVAL for a queue the device lacks, -ENODEV while the driver has not
 * enabled the queue or the device is not running.
 */
struct virtio_vhost_queue {
	int kick_fd, call_fd;
	uint16_t size;
	uint64_t desc, avail, used;
	bool event_idx;
	const struct guest_memory *mem;
};
int virtio_queue_vhost_view(struct virtio_device *vdev, unsigned int q,
			    struct virtio_vhost_queue *out);

/* Guest memory, for devices that read or write through chains (already checked by pop). */
const struct guest_memory *virtio_memory(struct virtio_device *vdev);

#endif
