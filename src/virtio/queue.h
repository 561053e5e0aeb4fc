/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.2 §2.7), device side: pop a descriptor chain from the available
 * ring into a bounds-checked iovec array, push used entries, decide whether to notify the
 * driver. Everything the guest wrote is hostile: a malformed ring or chain is reported as an
 * error (the device then sets DEVICE_NEEDS_RESET or fails the request); it never makes nkvm
 * read or write outside guest RAM, loop, or crash.
 *
 * Not thread-safe: one thread (the queue's I/O thread) owns a queue.
 */
#ifndef NKVM_VIRTIO_QUEUE_H
#define NKVM_VIRTIO_QUEUE_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/memory.h"

#define VIRTQ_MAX_SIZE 32768
/* Upper bound on the segments of one chain (direct or indirect) that nkvm accepts. */
#define VIRTQ_MAX_SEGS 1024

struct virtq {
	const struct guest_memory *mem;
	uint16_t size; /* number of descriptors, a power of 2 */
	bool event_idx; /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect; /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* Host views of the three areas, resolved and checked once by virtq_init. */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t last_avail; /* next available-ring entry to take */
	uint16_t used_idx; /* our copy of used->idx */
	uint16_t signalled_used; /* used_idx when the driver was last notified */
	bool signalled_valid;
	uint16_t inflight; /* chains taken by virtq_pop, not yet given to virtq_push */
};

/* One descriptor chain: device-readable segments first, then device-writable ones. */
struct virtq_chain {
	uint16_t head; /* the id to give back to virtq_push */
	unsigned int nr_out, nr_in;
	struct iovec iov[VIRTQ_MAX_SEGS]; /* iov[0..nr_out) readable, then nr_in writable */
	uint64_t out_len, in_len; /* total bytes of each kind */
};

/*
 * Checks and maps a queue the driver set up: size a power of 2 in [1, VIRTQ_MAX_SIZE], the three
 * areas aligned as §2.7 requires and wholly inside guest RAM. Returns 0 or -EINVAL.
 */
int virtq_init(struct virtq *q, const struct guest_memory *mem, uint16_t size, uint64_t desc_gpa,
	       uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect);

/*
 * Takes the next available chain. Returns 1 with *c filled, 0 when the ring is empty, or a
 * negative errno when the ring or the chain is malformed: -EINVAL (avail idx ran more than the
 * queue size ahead, descriptor index out of range, a readable descriptor after a writable one,
 * an indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC or with NEXT, nested indirect table,
 * indirect table of bad length, a zero-length indirect), -EFAULT (a buffer or table outside guest
 * RAM, or a length that overflows), -ELOOP (a chain longer than the queue, i.e. a loop), -E2BIG
 * (more than VIRTQ_MAX_SEGS segments, or an indirect table of more than VIRTQ_MAX_SIZE entries),
 * -ENOSPC (the device already holds q->size chains that it has not pushed: the driver made
 * available descriptors it had not been given back).
 * After an error the head is consumed, except when avail idx itself is bad or for -ENOSPC, and
 * c->head is valid when it could be read: a c->head < q->size may be pushed back (UINT16_MAX
 * when no entry was taken), so the device may fail just that request; a device may also treat
 * any error as fatal and set DEVICE_NEEDS_RESET. After an error the chain holds no segments.
 * A chain taken (even a malformed one) counts as in flight until virtq_push returns it.
 */
int virtq_pop(struct virtq *q, struct virtq_chain *c);

/*
 * Returns chain `head` to the driver with `len` bytes written (release ordering on the index),
 * and one chain fewer is in flight.
 */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);

/*
 * After one or more pushes: whether to interrupt the driver (§2.7.7 / §2.7.10: the driver's
 * VRING_AVAIL_F_NO_INTERRUPT flag, or used_event with EVENT_IDX). Updates the signalled state.
 */
bool virtq_need_notify(struct virtq *q);

/*
 * Device-side notification suppression: tell the driver not to kick while the device is
 * processing (enable == false), or to kick again (true). With EVENT_IDX this writes avail_event.
 * After enabling, callers must check for buffers again (virtq_has_avail) to close the race.
 */
void virtq_set_notify(struct virtq *q, bool enable);
bool virtq_has_avail(struct virtq *q);

#endif
