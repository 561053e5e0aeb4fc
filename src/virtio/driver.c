// SPDX-License-Identifier: MIT
/* A virtio-pci driver in this process instead of a guest (driver.h). */
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hw/pci.h"
#include "lib/util.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "virtio/pci.h"
#include "vmm/memory.h"

/* 48 capabilities fill config space: more means a loop. */
#define MAX_CAPS 48
#define PAGE 4096

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

/* --- registers ---------------------------------------------------------------------------- */

static uint32_t cfg_addr(struct virtio_driver *d, unsigned int off)
{
	/* A CONFIG_ADDRESS value (bus 0, function 0), as the guest writes to port 0xcf8. */
	return 0x80000000U | d->dev->slot << 11 | off;
}

uint32_t virtio_driver_cfg_read(struct virtio_driver *d, unsigned int off, unsigned int len)
{
	return pci_config_read(d->bus, cfg_addr(d, off), len);
}

void virtio_driver_cfg_write(struct virtio_driver *d, unsigned int off, uint32_t v,
			     unsigned int len)
{
	pci_config_write(d->bus, cfg_addr(d, off), v, len);
}

/*
 * BAR 0, as the bus hands a vCPU's MMIO exit to the function. Little-endian registers on a
 * little-endian host: the value's first len bytes are the register's.
 */
uint64_t virtio_driver_bar_read(struct virtio_driver *d, uint64_t off, unsigned int len)
{
	uint64_t v = 0;

	d->dev->ops->bar_read(d->dev, 0, off, &v, len);
	return v;
}

void virtio_driver_bar_write(struct virtio_driver *d, uint64_t off, uint64_t v, unsigned int len)
{
	d->dev->ops->bar_write(d->dev, 0, off, &v, len);
}

uint64_t virtio_driver_common_read(struct virtio_driver *d, unsigned int off, unsigned int len)
{
	return virtio_driver_bar_read(d, d->common + off, len);
}

void virtio_driver_common_write(struct virtio_driver *d, unsigned int off, uint64_t v,
				unsigned int len)
{
	virtio_driver_bar_write(d, d->common + off, v, len);
}

/* §4.1.4.3: 64-bit fields written as two 32-bit halves, as Linux does. */
static void common_write64(struct virtio_driver *d, unsigned int off, uint64_t v)
{
	virtio_driver_common_write(d, off, (uint32_t)v, 4);
	virtio_driver_common_write(d, off + 4, v >> 32, 4);
}

/* --- finding the function ----------------------------------------------------------------- */

/* §4.1.4: where the common, notify, ISR and device structures and the MSI-X table are. */
static int find_caps(struct virtio_driver *d)
{
	unsigned int off, found = 0;

	if (!(virtio_driver_cfg_read(d, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		return -ENODEV;
	off = virtio_driver_cfg_read(d, PCI_CAP_PTR, 1);
	for (unsigned int n = 0; off && n < MAX_CAPS; n++) {
		unsigned int id = virtio_driver_cfg_read(d, off, 1);
		unsigned int type = virtio_driver_cfg_read(d, off + VIRTIO_PCI_CAP_CFG_TYPE, 1);
		uint32_t at = virtio_driver_cfg_read(d, off + VIRTIO_PCI_CAP_OFFSET, 4);
		uint32_t table = virtio_driver_cfg_read(d, off + PCI_MSIX_TABLE, 4);

		/* Only structures in BAR 0, the one BAR this driver maps. */
		if (id == PCI_CAP_ID_VNDR &&
		    virtio_driver_cfg_read(d, off + VIRTIO_PCI_CAP_BAR, 1) == 0) {
			if (type == VIRTIO_PCI_CAP_COMMON_CFG) {
				d->common = at;
				found |= 1;
			} else if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
				d->notify = at;
				d->notify_mult = virtio_driver_cfg_read(
					d, off + VIRTIO_PCI_NOTIFY_CAP_MULT, 4);
				found |= 2;
			} else if (type == VIRTIO_PCI_CAP_ISR_CFG) {
				d->isr = at;
				found |= 4;
			} else if (type == VIRTIO_PCI_CAP_DEVICE_CFG) {
				d->device_cfg = at;
				found |= 8;
			}
		} else if (id == PCI_CAP_ID_MSIX && (table & PCI_MSIX_TABLE_BIR) == 0) {
			d->msix_cap = off;
			d->msix_table = table & PCI_MSIX_TABLE_OFFSET;
			d->msix_pba = virtio_driver_cfg_read(d, off + PCI_MSIX_PBA, 4) &
				      PCI_MSIX_PBA_OFFSET;
			found |= 16;
		}
		off = virtio_driver_cfg_read(d, off + PCI_CAP_LIST_NEXT, 1);
	}
	return found == 31 ? 0 : -ENODEV;
}

int virtio_driver_find(struct virtio_driver *d, struct pci_bus *bus, const struct guest_memory *mem,
		       unsigned int device_id)
{
	uint32_t want = (VIRTIO_PCI_DEVICE_BASE + device_id) << 16 | VIRTIO_PCI_VENDOR;

	*d = (struct virtio_driver){ .bus = bus, .mem = mem };
	for (unsigned int s = 0; s < PCI_MAX_SLOTS; s++) {
		if (!bus->slots[s])
			continue;
		d->dev = bus->slots[s];
		if (virtio_driver_cfg_read(d, PCI_VENDOR_ID, 4) != want)
			continue;
		d->vdev = virtio_pci_device(d->dev);
		if (!d->vdev)
			return -ENODEV;
		return find_caps(d);
	}
	d->dev = NULL;
	return -ENODEV;
}

/* --- status and features (§2.1, §3.1.1) --------------------------------------------------- */

uint8_t virtio_driver_status(struct virtio_driver *d)
{
	return virtio_driver_common_read(d, VIRTIO_PCI_COMMON_STATUS, 1);
}

void virtio_driver_set_status(struct virtio_driver *d, uint8_t status)
{
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_STATUS, status, 1);
}

int virtio_driver_reset(struct virtio_driver *d, unsigned int timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	virtio_driver_set_status(d, 0);
	/* §4.1.4.3.2: the reset is done when the status reads 0 (Linux polls so too). */
	while (virtio_driver_status(d)) {
		if (now_ms() > end)
			return -ETIMEDOUT;
		usleep(100);
	}
	d->features = 0;
	return 0;
}

int virtio_driver_begin(struct virtio_driver *d, unsigned int timeout_ms)
{
	int err = virtio_driver_reset(d, timeout_ms);

	if (!err)
		virtio_driver_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	return err;
}

void virtio_driver_settle(struct virtio_driver *d)
{
	virtio_pci_settle(d->vdev->transport);
}

uint64_t virtio_driver_device_features(struct virtio_driver *d)
{
	uint64_t f;

	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	f = virtio_driver_common_read(d, VIRTIO_PCI_COMMON_DF, 4);
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
	return f | virtio_driver_common_read(d, VIRTIO_PCI_COMMON_DF, 4) << 32;
}

void virtio_driver_write_features(struct virtio_driver *d, uint64_t features)
{
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_GF, (uint32_t)features, 4);
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_GF, features >> 32, 4);
}

int virtio_driver_features_ok(struct virtio_driver *d, uint64_t features)
{
	virtio_driver_write_features(d, features);
	virtio_driver_set_status(d, virtio_driver_status(d) | VIRTIO_CONFIG_S_FEATURES_OK);
	/* §3.1.1 step 6: a device that cannot work with these features leaves the bit clear. */
	if (!(virtio_driver_status(d) & VIRTIO_CONFIG_S_FEATURES_OK))
		return -ENOTSUP;
	d->features = features;
	return 0;
}

/* --- MSI-X (PCI 3.0 §6.8.2) --------------------------------------------------------------- */

static uint64_t msix_entry(struct virtio_driver *d, unsigned int vector)
{
	return d->msix_table + (uint64_t)PCI_MSIX_ENTRY_SIZE * vector;
}

int virtio_driver_msix_enable(struct virtio_driver *d, unsigned int nvec, uint16_t config_vector)
{
	unsigned int have = (virtio_driver_cfg_read(d, d->msix_cap + PCI_MSIX_FLAGS, 2) &
			     PCI_MSIX_FLAGS_QSIZE) +
			    1;

	if (nvec > have)
		return -ENOSPC;
	virtio_driver_cfg_write(d, d->msix_cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	for (unsigned int v = 0; v < nvec; v++) {
		uint64_t e = msix_entry(d, v);

		/* The local APIC's address, a vector each: what a guest would write. */
		virtio_driver_bar_write(d, e + PCI_MSIX_ENTRY_LOWER_ADDR, 0xfee00000, 4);
		virtio_driver_bar_write(d, e + PCI_MSIX_ENTRY_UPPER_ADDR, 0, 4);
		virtio_driver_bar_write(d, e + PCI_MSIX_ENTRY_DATA, 0x40 + v, 4);
		virtio_driver_bar_write(d, e + PCI_MSIX_ENTRY_VECTOR_CTRL, 0, 4);
	}
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_MSIX, config_vector, 2);
	/* §4.1.5.1.2.1: a vector the device cannot use reads back as NO_VECTOR. */
	if (virtio_driver_common_read(d, VIRTIO_PCI_COMMON_MSIX, 2) != config_vector)
		return -ENOSPC;
	return 0;
}

void virtio_driver_msix_mask(struct virtio_driver *d, unsigned int vector, bool masked)
{
	virtio_driver_bar_write(d, msix_entry(d, vector) + PCI_MSIX_ENTRY_VECTOR_CTRL,
				masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0, 4);
}

void virtio_driver_msix_mask_all(struct virtio_driver *d, bool masked)
{
	virtio_driver_cfg_write(d, d->msix_cap + PCI_MSIX_FLAGS,
				PCI_MSIX_FLAGS_ENABLE | (masked ? PCI_MSIX_FLAGS_MASKALL : 0), 2);
}

uint64_t virtio_driver_msix_pending(struct virtio_driver *d)
{
	return virtio_driver_bar_read(d, d->msix_pba, 8);
}

/* Sleeps until fd (an interrupt's eventfd) is written; adds its count to *n. */
static int wait_fd(int fd, int timeout_ms, uint64_t *n)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t count;
	int r;

	if (fd < 0)
		return -EINVAL;
	for (;;) {
		r = poll(&p, 1, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		if (read(fd, &count, sizeof(count)) == sizeof(count)) {
			*n += count;
			return 0;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
}

int virtio_driver_wait_vector(struct virtio_driver *d, unsigned int vector, int timeout_ms,
			      uint64_t *n)
{
	return wait_fd(virtio_pci_vector_fd(d->vdev->transport, vector), timeout_ms, n);
}

/* --- queues (§2.7, §4.1.5.1.3) ------------------------------------------------------------ */

static uint64_t desc_area(uint16_t size)
{
	return ALIGN_UP(sizeof(struct vring_desc) * (uint64_t)size, PAGE);
}

/* Flags, idx, the ring and used_event (§2.7.6). */
static uint64_t avail_area(uint16_t size)
{
	return ALIGN_UP(6 + 2ULL * size, PAGE);
}

/* Flags, idx, the ring and avail_event (§2.7.8). */
static uint64_t used_area(uint16_t size)
{
	return ALIGN_UP(6 + sizeof(struct vring_used_elem) * (uint64_t)size, PAGE);
}

uint64_t virtio_driver_queue_bytes(uint16_t size)
{
	return desc_area(size) + avail_area(size) + used_area(size);
}

uint16_t virtio_driver_queue_vector(struct virtio_driver *d, unsigned int index, uint16_t vector)
{
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, index, 2);
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, vector, 2);
	return virtio_driver_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2);
}

int virtio_driver_queue_setup(struct virtio_driver *d, struct virtio_driver_queue *q,
			      unsigned int index, uint16_t size, uint64_t gpa, uint16_t vector)
{
	uint16_t max;
	void *rings;

	*q = (struct virtio_driver_queue){ .d = d, .index = index, .irq_fd = -1 };
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, index, 2);
	max = virtio_driver_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2);
	if (!max)
		return -EINVAL; /* §4.1.5.1.3: no such queue */
	if (size && size != max) {
		virtio_driver_common_write(d, VIRTIO_PCI_COMMON_Q_SIZE, size, 2);
		if (virtio_driver_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2) != size)
			return -EINVAL;
	}
	q->size = size ? size : max;
	rings = guest_ptr(d->mem, gpa, virtio_driver_queue_bytes(q->size));
	if (!rings)
		return -EFAULT;
	memset(rings, 0, virtio_driver_queue_bytes(q->size));
	q->desc_gpa = gpa;
	q->avail_gpa = gpa + desc_area(q->size);
	q->used_gpa = q->avail_gpa + avail_area(q->size);
	q->desc = rings;
	q->avail = (struct vring_avail *)((uint8_t *)rings + desc_area(q->size));
	q->used = (struct vring_used *)((uint8_t *)q->avail + avail_area(q->size));
	q->used_event = &q->avail->ring[q->size];
	q->avail_event = (uint16_t *)&q->used->ring[q->size];
	q->event_idx = d->features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	common_write64(d, VIRTIO_PCI_COMMON_Q_DESCLO, q->desc_gpa);
	common_write64(d, VIRTIO_PCI_COMMON_Q_AVAILLO, q->avail_gpa);
	common_write64(d, VIRTIO_PCI_COMMON_Q_USEDLO, q->used_gpa);
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, vector, 2);
	if (virtio_driver_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2) != vector)
		return -ENOSPC;
	q->notify_off = virtio_driver_common_read(d, VIRTIO_PCI_COMMON_Q_NOFF, 2);
	virtio_driver_common_write(d, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	if (vector != VIRTIO_MSI_NO_VECTOR) {
		q->irq_fd = virtio_pci_vector_fd(d->vdev->transport, vector);
		if (q->irq_fd < 0)
			return -ENOSPC;
	}
	return 0;
}

int virtio_driver_start(struct virtio_driver *d, uint64_t features, struct virtio_driver_queue *q,
			unsigned int nq, uint16_t size, uint64_t gpa, uint64_t stride)
{
	int err = virtio_driver_features_ok(d, features);

	for (unsigned int i = 0; !err && i < nq; i++)
		err = virtio_driver_queue_setup(d, &q[i], i, size, gpa + i * stride,
						VIRTIO_MSI_NO_VECTOR);
	if (err)
		return err;
	virtio_driver_set_status(d, virtio_driver_status(d) | VIRTIO_CONFIG_S_DRIVER_OK);
	virtio_driver_settle(d);
	return 0;
}

uint16_t virtio_driver_queue_add_chain(struct virtio_driver_queue *q, uint16_t *next,
				       const struct virtio_driver_seg *segs, unsigned int n)
{
	uint16_t head = *next;

	for (unsigned int i = 0; i < n; i++) {
		uint16_t d = (head + i) % q->size;

		q->desc[d] = (struct vring_desc){
			.addr = segs[i].gpa,
			.len = segs[i].len,
			.flags = (segs[i].writable ? VRING_DESC_F_WRITE : 0) |
				 (i + 1 < n ? VRING_DESC_F_NEXT : 0),
			.next = (d + 1) % q->size,
		};
	}
	*next = (head + n) % q->size;
	virtio_driver_queue_add(q, head);
	return head;
}

void virtio_driver_queue_publish(struct virtio_driver_queue *q)
{
	/* §2.7.13.2: the ring entries before the idx that hands them over. */
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
}

bool virtio_driver_queue_kick_needed(struct virtio_driver_queue *q)
{
	uint16_t old = q->avail_idx - q->num_added;

	q->num_added = 0;
	/* §2.7.13.4.1: the new idx visible before the device's suppression state is read. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->event_idx)
		return vring_need_event(__atomic_load_n(q->avail_event, __ATOMIC_RELAXED),
					q->avail_idx, old);
	return !(__atomic_load_n(&q->used->flags, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY);
}

void virtio_driver_queue_kick(struct virtio_driver_queue *q)
{
	struct virtio_driver *d = q->d;

	/* §4.1.5.2: the queue's index, at notify + queue_notify_off * multiplier. */
	virtio_driver_bar_write(d, d->notify + (uint64_t)q->notify_off * d->notify_mult, q->index,
				2);
}

bool virtio_driver_queue_flush(struct virtio_driver_queue *q)
{
	if (!q->num_added)
		return false;
	virtio_driver_queue_publish(q);
	if (!virtio_driver_queue_kick_needed(q))
		return false;
	virtio_driver_queue_kick(q);
	return true;
}

bool virtio_driver_queue_arm(struct virtio_driver_queue *q)
{
	/* With EVENT_IDX, leaving used_event behind while taking is what disabled interrupts. */
	if (q->event_idx)
		__atomic_store_n(q->used_event, q->last_used, __ATOMIC_RELAXED);
	/* The ask visible before the device's used idx is read again (a store-load order). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	q->used_seen = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
	return q->used_seen != q->last_used;
}

int virtio_driver_queue_wait(struct virtio_driver_queue *q, int timeout_ms, uint64_t *n)
{
	return wait_fd(q->irq_fd, timeout_ms, n);
}
