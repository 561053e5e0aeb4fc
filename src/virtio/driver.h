/* SPDX-License-Identifier: MIT */
/*
 * A virtio-pci driver in this process instead of a guest, for nkvm img bench and the transport's
 * unit tests. It reaches a function on a struct pci_bus as a vCPU's exits would
 * (pci_config_read/write, the function's bar_read/bar_write), on a struct vm without KVM: a kick
 * is the notify register's write, an interrupt of MSI-X vector v is a write to the eventfd
 * virtio_pci_vector_fd gives. It does what Linux's virtio_pci_modern and virtio_ring do for a
 * split ring (virtio 1.2 §3.1.1, §4.1.4, §4.1.5, §2.7): find the capabilities, reset, negotiate,
 * set up queues in the guest memory given and MSI-X, add buffers, kick when the device asks,
 * take used buffers and ask for the next interrupt. What goes in the buffers is the caller's.
 *
 * Not thread-safe: the caller serializes calls on one driver; each queue may be driven by its own
 * thread (the bench's driver threads, one per queue) once set up.
 */
#ifndef NKVM_VIRTIO_DRIVER_H
#define NKVM_VIRTIO_DRIVER_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>

struct guest_memory;
struct pci_bus;
struct pci_device;
struct virtio_device;

struct virtio_driver {
	struct pci_bus *bus;
	struct pci_device *dev;
	struct virtio_device *vdev; /* the device behind the function (virtio_pci_device) */
	const struct guest_memory *mem; /* where the rings go */
	/* Offsets in BAR 0 of the structures (§4.1.4), and config-space offset of MSI-X. */
	uint32_t common, notify, notify_mult, isr, device_cfg;
	uint32_t msix_cap, msix_table, msix_pba;
	uint64_t features; /* what FEATURES_OK accepted */
};

/* One split virtqueue, the driver's side (§2.7). */
struct virtio_driver_queue {
	struct virtio_driver *d;
	unsigned int index;
	uint16_t size, notify_off;
	bool event_idx; /* VIRTIO_RING_F_EVENT_IDX negotiated */
	int irq_fd; /* its vector's eventfd; -1 without one */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t *used_event, *avail_event; /* §2.7.10: after the rings */
	uint16_t avail_idx; /* the next avail->idx */
	uint16_t num_added; /* added since the last publish */
	uint16_t last_used; /* the next used entry to take */
	uint16_t used_seen; /* used->idx as last read */
};

/*
 * Finds the function of virtio device id device_id on bus (PCI ID 0x1040 + id, §4.1.2) and
 * its common, notify, ISR and device capabilities and MSI-X. 0, or -ENODEV.
 */
int virtio_driver_find(struct virtio_driver *d, struct pci_bus *bus, const struct guest_memory *mem,
		       unsigned int device_id);

/* Config space and BAR 0 of the function, little-endian registers of len bytes. */
uint32_t virtio_driver_cfg_read(struct virtio_driver *d, unsigned int off, unsigned int len);
void virtio_driver_cfg_write(struct virtio_driver *d, unsigned int off, uint32_t v,
			     unsigned int len);
uint64_t virtio_driver_bar_read(struct virtio_driver *d, uint64_t off, unsigned int len);
void virtio_driver_bar_write(struct virtio_driver *d, uint64_t off, uint64_t v, unsigned int len);
/* The common configuration's register at off (VIRTIO_PCI_COMMON_*, <linux/virtio_pci.h>). */
uint64_t virtio_driver_common_read(struct virtio_driver *d, unsigned int off, unsigned int len);
void virtio_driver_common_write(struct virtio_driver *d, unsigned int off, uint64_t v,
				unsigned int len);

uint8_t virtio_driver_status(struct virtio_driver *d);
void virtio_driver_set_status(struct virtio_driver *d, uint8_t status);
/*
 * §4.1.4.3.2: writes 0 to the status and waits until it reads 0 (the transport resets on its
 * worker thread, after requests in flight finished). 0, or -ETIMEDOUT after timeout_ms.
 */
int virtio_driver_reset(struct virtio_driver *d, unsigned int timeout_ms);
/* §3.1.1 steps 1-3: virtio_driver_reset, then ACKNOWLEDGE and DRIVER. 0, or -ETIMEDOUT. */
int virtio_driver_begin(struct virtio_driver *d, unsigned int timeout_ms);
/* Waits until the transport's worker did what the register writes so far asked. */
void virtio_driver_settle(struct virtio_driver *d);

/* §3.1.1 steps 4-6: the features offered; the driver's written as they are. */
uint64_t virtio_driver_device_features(struct virtio_driver *d);
void virtio_driver_write_features(struct virtio_driver *d, uint64_t features);
/*
 * Writes features, adds FEATURES_OK to the status and reads it back: 0 with d->features set, or
 * -ENOTSUP when the device refused them.
 */
int virtio_driver_features_ok(struct virtio_driver *d, uint64_t features);

/*
 * MSI-X enabled with vectors 0 .. nvec-1 programmed and unmasked (the address and data matter
 * only to KVM), and the configuration vector set to config_vector (VIRTIO_MSI_NO_VECTOR: none).
 * 0, or -ENOSPC when the device has fewer vectors or refused the configuration vector.
 */
int virtio_driver_msix_enable(struct virtio_driver *d, unsigned int nvec, uint16_t config_vector);
/* PCI 3.0 §6.8.2: one vector's mask bit, the function mask, and the pending bits (PBA). */
void virtio_driver_msix_mask(struct virtio_driver *d, unsigned int vector, bool masked);
void virtio_driver_msix_mask_all(struct virtio_driver *d, bool masked);
uint64_t virtio_driver_msix_pending(struct virtio_driver *d);
/*
 * Waits up to timeout_ms for vector's interrupt and adds the interrupts its eventfd counted to
 * *n. 0, -ETIMEDOUT, or a negative errno.
 */
int virtio_driver_wait_vector(struct virtio_driver *d, unsigned int vector, int timeout_ms,
			      uint64_t *n);

/*
 * The bytes of guest memory a queue of size entries takes, page-aligned: the descriptor table,
 * the available ring, the used ring, one after the other, each page-aligned.
 */
uint64_t virtio_driver_queue_bytes(uint16_t size);
/*
 * §4.1.5.1.3: sets queue index up with its rings at gpa (virtio_driver_queue_bytes, zeroed here),
 * size entries (0: the device's maximum), MSI-X vector (VIRTIO_MSI_NO_VECTOR: none), and enables
 * it. 0, -EINVAL (no such queue, or size refused), -EFAULT (rings outside guest memory), or
 * -ENOSPC (the vector refused).
 */
int virtio_driver_queue_setup(struct virtio_driver *d, struct virtio_driver_queue *q,
			      unsigned int index, uint16_t size, uint64_t gpa, uint16_t vector);
/*
 * §3.1.1 steps 5-8 for a driver that polls its queues: virtio_driver_features_ok, queues
 * 0 .. nq-1 of size entries into q[], their rings from gpa on, stride bytes apart, without an
 * MSI-X vector; then DRIVER_OK, settled. 0, or the failed step's negative errno.
 */
int virtio_driver_start(struct virtio_driver *d, uint64_t features, struct virtio_driver_queue *q,
			unsigned int nq, uint16_t size, uint64_t gpa, uint64_t stride);
/* Sets queue index's MSI-X vector; returns the vector the device then reports. */
uint16_t virtio_driver_queue_vector(struct virtio_driver *d, unsigned int index, uint16_t vector);

/*
 * Puts head (a chain the caller wrote in q->desc) in the available ring; the device sees it
 * at the next publish.
 */
static inline void virtio_driver_queue_add(struct virtio_driver_queue *q, uint16_t head)
{
	q->avail->ring[q->avail_idx & (q->size - 1)] = head;
	q->avail_idx++;
	q->num_added++;
}

/* §2.7.13.2: makes what was added visible (avail->idx). */
/* One buffer of a chain a driver builds by hand: where, how long, and whether device-writable. */
struct virtio_driver_seg {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

/*
 * Writes segs[0..n) as one chain into the descriptors from *next on (wrapping at the queue's
 * size), moves *next past them and makes the chain available (virtio_driver_queue_add): the
 * caller publishes and kicks. Returns the chain's head. For tests that lay out chains themselves.
 */
uint16_t virtio_driver_queue_add_chain(struct virtio_driver_queue *q, uint16_t *next,
				       const struct virtio_driver_seg *segs, unsigned int n);

void virtio_driver_queue_publish(struct virtio_driver_queue *q);
/* §2.7.13.3-4: whether the device wants a kick for what the last publish added. */
bool virtio_driver_queue_kick_needed(struct virtio_driver_queue *q);
/* §4.1.5.2: the queue's notify register. */
void virtio_driver_queue_kick(struct virtio_driver_queue *q);
/* Publish, then kick if the device wants it. Returns whether it kicked. */
bool virtio_driver_queue_flush(struct virtio_driver_queue *q);

/* Takes the next used element into *e; false when the device has used nothing more. */
static inline bool virtio_driver_queue_get(struct virtio_driver_queue *q, struct vring_used_elem *e)
{
	if (q->last_used == q->used_seen) {
		q->used_seen = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
		if (q->last_used == q->used_seen)
			return false;
	}
	*e = q->used->ring[q->last_used & (q->size - 1)];
	q->last_used++;
	return true;
}

/*
 * §2.7.10: asks for an interrupt at the next used entry (with EVENT_IDX, used_event; without,
 * the device interrupts anyway) and looks once more: true when the device used more meanwhile,
 * which the caller must take, since it may have decided not to interrupt before it saw the ask
 * (Linux's virtqueue_enable_cb).
 */
bool virtio_driver_queue_arm(struct virtio_driver_queue *q);
/* Waits up to timeout_ms for the queue's interrupt, as virtio_driver_wait_vector. */
int virtio_driver_queue_wait(struct virtio_driver_queue *q, int timeout_ms, uint64_t *n);

#endif
