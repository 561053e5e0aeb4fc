// SPDX-License-Identifier: MIT
/*
 * Split virtqueues, device side (virtio 1.2 §2.7). The rings live in guest RAM and the guest may
 * rewrite them at any moment, so every value is read from guest memory exactly once into a local,
 * checked, and only the local is used afterwards.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "virtio/queue.h"

/*
 * Ring layouts of §2.7.5, §2.7.6 and §2.7.8: <linux/virtio_ring.h> (via queue.h). The fields are
 * little-endian (le64/le32/le16 in the spec); nkvm runs x86 guests on x86 hosts only, so
 * host-order integers are the same bytes.
 */
_Static_assert(sizeof(struct vring_desc) == 16, "§2.7.5: a descriptor is 16 bytes");
_Static_assert(sizeof(struct vring_used_elem) == 8, "§2.7.8: a used element is 8 bytes");

/* The spec's sizes, event fields included whether EVENT_IDX is negotiated or not (§2.7). */
static uint64_t desc_bytes(uint16_t size)
{
	return 16ULL * size;
}

static uint64_t avail_bytes(uint16_t size)
{
	return 6ULL + 2ULL * size;
}

static uint64_t used_bytes(uint16_t size)
{
	return 6ULL + 8ULL * size;
}

int virtq_init(struct virtq *q, const struct guest_memory *mem, uint16_t size, uint64_t desc_gpa,
	       uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect)
{
	void *desc, *avail, *used;

	/* §2.7: Queue Size is a power of 2, at most 32768. */
	if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)))
		return -EINVAL;
	/* §2.7 table "Virtqueue Part / Alignment / Size". */
	if (desc_gpa % VRING_DESC_ALIGN_SIZE || avail_gpa % VRING_AVAIL_ALIGN_SIZE ||
	    used_gpa % VRING_USED_ALIGN_SIZE)
		return -EINVAL;
	/*
	 * Guest RAM regions start at 2 MiB-aligned host addresses (memory_init), so an aligned
	 * guest address is an aligned host address and the ring fields can be accessed directly.
	 */
	desc = guest_ptr(mem, desc_gpa, desc_bytes(size));
	avail = guest_ptr(mem, avail_gpa, avail_bytes(size));
	used = guest_ptr(mem, used_gpa, used_bytes(size));
	if (!desc || !avail || !used)
		return -EINVAL;

	*q = (struct virtq){
		.mem = mem,
		.size = size,
		.event_idx = event_idx,
		.indirect = indirect,
		.desc_gpa = desc_gpa,
		.avail_gpa = avail_gpa,
		.used_gpa = used_gpa,
		.desc = desc,
		.avail = avail,
		.used = used,
	};
	return 0;
}

/*
 * One read of descriptor i of a table (the queue's, or an indirect one, which §2.7.5.3 does not
 * require to be aligned: hence memcpy). The compiler barrier stops the compiler from re-loading a
 * field from guest memory in place of the copy, which would reopen the check-then-use race.
 */
static void desc_read(const void *table, unsigned int i, struct vring_desc *d)
{
	memcpy(d, (const uint8_t *)table + (size_t)i * sizeof(*d), sizeof(*d));
	__asm__ __volatile__("" ::: "memory");
}

struct chain_walk {
	const struct guest_memory *mem;
	struct virtq_chain *c;
	bool seen_write;
};

/* Adds one buffer descriptor (never an indirect one) to the chain. */
static int chain_add(struct chain_walk *w, const struct vring_desc *d)
{
	struct virtq_chain *c = w->c;
	bool write = d->flags & VRING_DESC_F_WRITE;
	void *p;

	/* §2.7.4.2: device-writable descriptors come after all device-readable ones. */
	if (write)
		w->seen_write = true;
	else if (w->seen_write)
		return -EINVAL;
	/* An empty buffer carries nothing; its address is meaningless, so it is not checked. */
	if (d->len == 0)
		return 0;
	p = guest_ptr(w->mem, d->addr, d->len);
	if (!p)
		return -EFAULT;
	if (c->nr_out + c->nr_in >= VIRTQ_MAX_SEGS)
		return -E2BIG;
	c->iov[c->nr_out + c->nr_in] = (struct iovec){ .iov_base = p, .iov_len = d->len };
	/* At most VIRTQ_MAX_SEGS lengths below 2^32 each: the uint64 sums cannot wrap. */
	if (write) {
		c->nr_in++;
		c->in_len += d->len;
	} else {
		c->nr_out++;
		c->out_len += d->len;
	}
	return 0;
}

/*
 * Walks an indirect table (§2.7.5.3), the last descriptor of a chain. Its own WRITE flag is
 * ignored (§2.7.5.3.2); each entry carries its own.
 */
static int chain_walk_indirect(struct chain_walk *w, const struct vring_desc *ind)
{
	struct vring_desc d;
	unsigned int n, i = 0, count = 0;
	const void *table;
	int ret;

	/* §2.7.5.3.1: INDIRECT and NEXT are exclusive: the table ends the chain. */
	if (ind->flags & VRING_DESC_F_NEXT)
		return -EINVAL;
	if (ind->len == 0 || ind->len % sizeof(struct vring_desc))
		return -EINVAL;
	n = ind->len / sizeof(struct vring_desc);
	/*
	 * §2.7.5.3.1: no chain is longer than the queue, and no queue longer than VIRTQ_MAX_SIZE.
	 * Without this bound, a table of zero-length entries (which add no segment) could make
	 * one pop walk 2^28 descriptors.
	 */
	if (n > VIRTQ_MAX_SIZE)
		return -E2BIG;
	table = guest_ptr(w->mem, ind->addr, ind->len);
	if (!table)
		return -EFAULT;
	for (;;) {
		/* Visiting more entries than the table has means the chain loops. */
		if (++count > n)
			return -ELOOP;
		desc_read(table, i, &d);
		/* §2.7.5.3.1: no table inside a table. */
		if (d.flags & VRING_DESC_F_INDIRECT)
			return -EINVAL;
		ret = chain_add(w, &d);
		if (ret < 0)
			return ret;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return -EINVAL;
		i = d.next;
	}
}

/*
 * Walks the chain starting at head (< q->size). §2.7.5.3.2: zero or more direct descriptors,
 * possibly ended by one that points to an indirect table.
 */
static int chain_walk(struct virtq *q, struct virtq_chain *c, uint16_t head)
{
	struct chain_walk w = { .mem = q->mem, .c = c };
	struct vring_desc d;
	unsigned int i = head, count = 0;
	int ret;

	for (;;) {
		/* §2.7.5.3.1: no chain is longer than the queue; a longer one must revisit one. */
		if (++count > q->size)
			return -ELOOP;
		desc_read(q->desc, i, &d);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (!q->indirect)
				return -EINVAL;
			return chain_walk_indirect(&w, &d);
		}
		ret = chain_add(&w, &d);
		if (ret < 0)
			return ret;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= q->size)
			return -EINVAL;
		i = d.next;
	}
}

int virtq_pop(struct virtq *q, struct virtq_chain *c)
{
	uint16_t avail_idx, head;
	int ret;

	/* No queue has UINT16_MAX descriptors: a head this big is never pushed back by mistake. */
	c->head = UINT16_MAX;
	c->nr_out = c->nr_in = 0;
	c->out_len = c->in_len = 0;
	/*
	 * Acquire pairs with the driver's write barrier before it bumps idx (§2.7.13.3): the ring
	 * entries and descriptors it published are visible once the new idx is.
	 */
	avail_idx = __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE);
	if (avail_idx == q->last_avail)
		return 0;
	/* The ring holds size entries (§2.7.6): an idx further ahead than that is garbage. */
	if ((uint16_t)(avail_idx - q->last_avail) > q->size)
		return -EINVAL;
	/*
	 * §2.7: a chain made available is the device's until it is in the used ring, and each
	 * holds at least its head of the size descriptors, so a driver cannot have more than size
	 * chains in flight. One more means it re-published descriptors the device still holds:
	 * without this bound, a guest re-publishing head 0 makes the device take requests without
	 * end (CVE-2016-5403's pattern).
	 */
	if (q->inflight >= q->size)
		return -ENOSPC;
	head = __atomic_load_n(&q->avail->ring[q->last_avail & (q->size - 1)], __ATOMIC_RELAXED);
	/* Consume the entry even if it is bad, so the device can fail just this request. */
	q->last_avail++;
	q->inflight++;
	c->head = head;
	if (head >= q->size)
		return -EINVAL;
	ret = chain_walk(q, c, head);
	if (ret < 0) {
		/* Leave no half-built chain for a device that ignores the error. */
		c->nr_out = c->nr_in = 0;
		c->out_len = c->in_len = 0;
		return ret;
	}
	return 1;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e = &q->used->ring[q->used_idx & (q->size - 1)];

	e->id = head;
	e->len = len;
	/* §2.7.8.2: the element (and the data written to the buffers) before the new idx. */
	__atomic_store_n(&q->used->idx, ++q->used_idx, __ATOMIC_RELEASE);
	/* A device that pushes what it never popped is a bug of ours: not below zero, though. */
	if (q->inflight)
		q->inflight--;
	/*
	 * After 2^16 pushes without a notification check, signalled_used is ambiguous: the
	 * used_event comparison would look at the wrong lap, so notify unconditionally next time.
	 */
	if (q->used_idx == q->signalled_used)
		q->signalled_valid = false;
}

bool virtq_need_notify(struct virtq *q)
{
	uint16_t event;
	bool notify;

	/*
	 * Full barrier: the used idx store must be visible before flags / used_event are read,
	 * or a driver that just re-enabled interrupts and saw no new entries is never woken.
	 * This is the device-side twin of the driver's rule in §2.7.13.4.1.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->event_idx) {
		event = __atomic_load_n(&q->avail->ring[q->size], __ATOMIC_RELAXED);
		notify = !q->signalled_valid ||
			 vring_need_event(event, q->used_idx, q->signalled_used);
	} else {
		notify = !(__atomic_load_n(&q->avail->flags, __ATOMIC_RELAXED) &
			   VRING_AVAIL_F_NO_INTERRUPT);
	}
	q->signalled_used = q->used_idx;
	q->signalled_valid = true;
	return notify;
}

void virtq_set_notify(struct virtq *q, bool enable)
{
	uint16_t *avail_event = (uint16_t *)&q->used->ring[q->size];
	uint16_t flags;

	if (q->event_idx) {
		/*
		 * §2.7.10: the driver kicks when its idx passes avail_event. Disabling needs no
		 * write: the old avail_event is already behind, so the driver stays quiet.
		 */
		if (enable)
			__atomic_store_n(avail_event, q->last_avail, __ATOMIC_RELAXED);
	} else {
		/* The device owns used->flags (§2.7.8); a guest that writes it only loses kicks. */
		flags = q->used->flags;
		if (enable)
			flags &= ~VRING_USED_F_NO_NOTIFY;
		else
			flags |= VRING_USED_F_NO_NOTIFY;
		__atomic_store_n(&q->used->flags, flags, __ATOMIC_RELAXED);
	}
	/*
	 * The store must be visible before the caller re-reads avail idx (virtq_has_avail), else
	 * a buffer added in between is seen by neither side. A store-load order: full barrier.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool virtq_has_avail(struct virtq *q)
{
	return __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE) != q->last_avail;
}
