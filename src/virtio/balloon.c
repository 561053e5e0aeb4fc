// SPDX-License-Identifier: MIT
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "virtio/balloon.h"
#include "virtio/device.h"
#include "virtio/pci.h"
#include "vmm/memory.h"
#include "vmm/vm.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

#define BALLOON_QUEUE_SIZE 128
#define BALLOON_PAGE (1ULL << VIRTIO_BALLOON_PFN_SHIFT)
/*
 * Page numbers taken from one chain; the rest are ignored. Linux sends 256 a buffer; the bound
 * keeps a hostile chain from holding the queue thread in a walk of gigabytes.
 */
#define BALLOON_MAX_PFNS 65536
/* inflateq, deflateq, statsq, reporting_vq: free_page_vq (FREE_PAGE_HINT) is not offered. */
#define BALLOON_QUEUES 4

enum balloon_role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORTING };

struct virtio_balloon {
	struct virtio_device vdev;
	struct virtio_pci *transport;
	const struct guest_memory *mem;
	bool can_discard; /* host pages are the balloon's 4 KiB pages */
	pthread_mutex_t lock; /* everything below */
	pthread_cond_t stats_cond;
	uint32_t num_pages, actual;
	enum balloon_role role[BALLOON_QUEUES];
	bool driver_ok;
	bool stats_held; /* the driver's statistics buffer, kept until the next request */
	uint16_t stats_head;
	unsigned int stats_queue;
	uint64_t stats[VIRTIO_BALLOON_S_NR];
	uint32_t have;
	uint64_t stats_updates;
	/* Counted by the queue threads. */
	uint64_t inflated, deflated, returned, reported, bad_pfns;
	struct virtq_chain chain[BALLOON_QUEUES]; /* one per queue thread */
};

/* Reads guest bytes in order across a chain's readable segments. */
struct seg_reader {
	const struct virtq_chain *c;
	unsigned int i;
	size_t off;
};

/* virtio-balloon's queue threads: an inflated page goes back to the host with madvise (one of the thread basics). */
static const struct sandbox_rule balloon_queue_rules[] = {
	VIRTIO_QUEUE_RULES,

	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter balloon_queue_filter = {
	.thread = "balloon-queue",
	.rules = balloon_queue_rules,
	.nr_rules = ARRAY_SIZE(balloon_queue_rules),
};

static bool seg_read(struct seg_reader *r, void *dst, size_t len)
{
	uint8_t *d = dst;

	while (len) {
		const struct iovec *v;
		size_t take;

		if (r->i >= r->c->nr_out)
			return false;
		v = &r->c->iov[r->i];
		take = v->iov_len - r->off < len ? v->iov_len - r->off : len;
		memcpy(d, (uint8_t *)v->iov_base + r->off, take);
		d += take;
		len -= take;
		r->off += take;
		if (r->off == v->iov_len) {
			r->i++;
			r->off = 0;
		}
	}
	return true;
}

static void add(uint64_t *counter, uint64_t n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

/* Returns the bytes given back. */
static size_t discard(struct virtio_balloon *b, uint8_t *start, size_t len)
{
	/* Guest RAM is private anonymous memory: the pages are freed and read back as zeroes. */
	if (!len || !b->can_discard || madvise(start, len, MADV_DONTNEED) < 0)
		return 0;
	add(&b->returned, len);
	return len;
}

/*
 * §5.5.6.1: an inflateq or deflateq buffer is an array of 32-bit page frame numbers
 * (VIRTIO_BALLOON_PFN_SHIFT). Inflated pages are given back, runs of adjacent pages with one
 * madvise; a deflated page needs nothing, the guest's next touch faults in a zeroed page
 * (MUST_TELL_HOST is not offered, §5.5.6.2).
 */
static void balloon_pages(struct virtio_balloon *b, const struct virtq_chain *c, bool inflate)
{
	struct seg_reader r = { .c = c };
	uint8_t *run = NULL;
	size_t run_len = 0;
	uint32_t pfn;

	for (unsigned int n = 0; n < BALLOON_MAX_PFNS && seg_read(&r, &pfn, sizeof(pfn)); n++) {
		uint8_t *host = guest_ptr(
			b->mem, (uint64_t)le32toh(pfn) << VIRTIO_BALLOON_PFN_SHIFT, BALLOON_PAGE);

		if (!host) {
			add(&b->bad_pfns, 1);
			continue;
		}
		add(inflate ? &b->inflated : &b->deflated, BALLOON_PAGE);
		if (!inflate)
			continue;
		if (run && host == run + run_len) {
			run_len += BALLOON_PAGE;
			continue;
		}
		discard(b, run, run_len);
		run = host;
		run_len = BALLOON_PAGE;
	}
	if (inflate)
		discard(b, run, run_len);
}

/*
 * §5.5.6.5 (free page reporting): each device-writable segment is a range of free guest pages,
 * already checked to be in guest RAM by the pop; only the whole host pages inside it go back.
 */
static void balloon_report(struct virtio_balloon *b, const struct virtq_chain *c)
{
	for (unsigned int i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
		uintptr_t start = (uintptr_t)c->iov[i].iov_base, end = start + c->iov[i].iov_len;

		start = (start + BALLOON_PAGE - 1) & ~(BALLOON_PAGE - 1);
		end &= ~(BALLOON_PAGE - 1);
		if (end > start)
			add(&b->reported, discard(b, (uint8_t *)start, end - start));
	}
}

/*
 * §5.5.6.3: the statistics buffer is an array of { le16 tag; le64 val } (10 bytes, packed);
 * the device keeps it until it wants new figures, then uses it and the driver refills it.
 */
static void balloon_stats(struct virtio_balloon *b, unsigned int q, const struct virtq_chain *c)
{
	struct seg_reader r = { .c = c };
	struct virtio_balloon_stat s;

	pthread_mutex_lock(&b->lock);
	/* A driver that adds a second buffer gets the first back: only the newest is kept. */
	if (b->stats_held)
		virtio_push(&b->vdev, b->stats_queue, b->stats_head, 0);
	b->have = 0;
	for (unsigned int n = 0; n < VIRTIO_BALLOON_S_NR * 4 && seg_read(&r, &s, sizeof(s)); n++) {
		uint16_t tag = le16toh(s.tag);

		if (tag < VIRTIO_BALLOON_S_NR) {
			b->stats[tag] = le64toh(s.val);
			b->have |= 1U << tag;
		}
	}
	b->stats_held = true;
	b->stats_head = c->head;
	b->stats_queue = q;
	b->stats_updates++;
	pthread_cond_broadcast(&b->stats_cond);
	pthread_mutex_unlock(&b->lock);
}

static void balloon_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_balloon *b = (struct virtio_balloon *)vdev;
	struct virtq_chain *c = &b->chain[q];
	enum balloon_role role;
	int r;

	pthread_mutex_lock(&b->lock);
	role = b->role[q];
	pthread_mutex_unlock(&b->lock);
	while ((r = virtio_pop(vdev, q, c)) > 0) {
		switch (role) {
		case ROLE_INFLATE:
		case ROLE_DEFLATE:
			balloon_pages(b, c, role == ROLE_INFLATE);
			break;
		case ROLE_STATS:
			balloon_stats(b, q, c);
			continue; /* held, not used */
		case ROLE_REPORTING:
			balloon_report(b, c);
			break;
		case ROLE_NONE:
			break;
		}
		virtio_push(vdev, q, c->head, 0);
	}
}

/*
 * §5.5.2 numbers the queues 0-4, but a queue whose feature is not negotiated does not exist,
 * and Linux (vp_find_vqs) gives the next one its index: with STATS_VQ and REPORTING but not
 * FREE_PAGE_HINT, reporting_vq is queue 3; without STATS_VQ, 2.
 */
static int balloon_start(struct virtio_device *vdev)
{
	struct virtio_balloon *b = (struct virtio_balloon *)vdev;
	unsigned int n = 0;

	pthread_mutex_lock(&b->lock);
	memset(b->role, 0, sizeof(b->role));
	b->role[n++] = ROLE_INFLATE;
	b->role[n++] = ROLE_DEFLATE;
	if (vdev->features & (1ULL << VIRTIO_BALLOON_F_STATS_VQ))
		b->role[n++] = ROLE_STATS;
	if (vdev->features & (1ULL << VIRTIO_BALLOON_F_REPORTING))
		b->role[n++] = ROLE_REPORTING;
	b->driver_ok = true;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static void balloon_reset(struct virtio_device *vdev)
{
	struct virtio_balloon *b = (struct virtio_balloon *)vdev;

	pthread_mutex_lock(&b->lock);
	/* The driver forgot its buffers, and what it held in the balloon is its own again. */
	b->stats_held = false;
	b->driver_ok = false;
	b->actual = 0;
	memset(b->role, 0, sizeof(b->role));
	pthread_cond_broadcast(&b->stats_cond);
	pthread_mutex_unlock(&b->lock);
}

/* §5.5.4: num_pages is the host's, actual the driver's; both little-endian. */
static void balloon_config_read(struct virtio_device *vdev, uint64_t off, void *data,
				unsigned int len)
{
	struct virtio_balloon *b = (struct virtio_balloon *)vdev;
	struct virtio_balloon_config cfg = { 0 };

	pthread_mutex_lock(&b->lock);
	cfg.num_pages = htole32(b->num_pages);
	cfg.actual = htole32(b->actual);
	pthread_mutex_unlock(&b->lock);
	memcpy(data, (uint8_t *)&cfg + off, len);
}

static void balloon_config_write(struct virtio_device *vdev, uint64_t off, const void *data,
				 unsigned int len)
{
	struct virtio_balloon *b = (struct virtio_balloon *)vdev;
	struct virtio_balloon_config cfg;

	pthread_mutex_lock(&b->lock);
	cfg = (struct virtio_balloon_config){ .actual = htole32(b->actual) };
	memcpy((uint8_t *)&cfg + off, data, len);
	/* Only actual is the driver's to write (§5.5.6); the rest is dropped. */
	b->actual = le32toh(cfg.actual);
	pthread_mutex_unlock(&b->lock);
}

static const struct virtio_device_ops balloon_ops = {
	.queue_kick = balloon_queue_kick,
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.start = balloon_start,
	.reset = balloon_reset,
};

int virtio_balloon_create(struct virtio_balloon **out, struct vm *vm, struct pci_bus *bus,
			  struct irq_routing *irq)
{
	struct virtio_balloon *b = calloc(1, sizeof(*b));
	pthread_condattr_t ca;

	*out = NULL;
	if (!b)
		return -ENOMEM;
	b->vdev = (struct virtio_device){
		.ops = &balloon_ops,
		.queue_filter = &balloon_queue_filter,
		.name = "virtio-balloon",
		.device_id = VIRTIO_ID_BALLOON,
		.host_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX) |
				 (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
				 (1ULL << VIRTIO_BALLOON_F_STATS_VQ) |
				 (1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |
				 (1ULL << VIRTIO_BALLOON_F_REPORTING),
		.nr_queues = BALLOON_QUEUES,
		.queue_max_size = BALLOON_QUEUE_SIZE,
		.config_size = sizeof(struct virtio_balloon_config),
	};
	b->mem = vm_memory(vm);
	b->can_discard = sysconf(_SC_PAGESIZE) == (long)BALLOON_PAGE;
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->stats_cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = b;
	return virtio_pci_create(&b->transport, vm, bus, irq, &b->vdev);
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
	if (!b)
		return;
	virtio_pci_free(b->transport);
	pthread_cond_destroy(&b->stats_cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t bytes)
{
	uint32_t pages;
	bool changed;

	if (bytes > b->mem->ram_size)
		return -ERANGE;
	pages = bytes >> VIRTIO_BALLOON_PFN_SHIFT;
	pthread_mutex_lock(&b->lock);
	changed = b->num_pages != pages;
	b->num_pages = pages;
	pthread_mutex_unlock(&b->lock);
	if (changed)
		virtio_config_changed(&b->vdev);
	return 0;
}

static uint64_t load(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

void virtio_balloon_info(struct virtio_balloon *b, struct virtio_balloon_info *info, int wait_ms)
{
	pthread_mutex_lock(&b->lock);
	if (wait_ms > 0 && b->stats_held) {
		uint64_t seen = b->stats_updates;
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
		until.tv_sec += wait_ms / 1000 + until.tv_nsec / 1000000000;
		until.tv_nsec %= 1000000000;
		/* Under the lock, so that a reset cannot come between the check and the push. */
		b->stats_held = false;
		virtio_push(&b->vdev, b->stats_queue, b->stats_head, 0);
		while (b->stats_updates == seen && b->driver_ok &&
		       pthread_cond_timedwait(&b->stats_cond, &b->lock, &until) != ETIMEDOUT)
			;
	}
	*info = (struct virtio_balloon_info){
		.target = (uint64_t)b->num_pages << VIRTIO_BALLOON_PFN_SHIFT,
		.actual = (uint64_t)b->actual << VIRTIO_BALLOON_PFN_SHIFT,
		.have = b->have,
		.stats_updates = b->stats_updates,
		.driver_ok = b->driver_ok,
	};
	memcpy(info->stats, b->stats, sizeof(info->stats));
	pthread_mutex_unlock(&b->lock);
	info->inflated = load(&b->inflated);
	info->deflated = load(&b->deflated);
	info->returned = load(&b->returned);
	info->reported = load(&b->reported);
	info->bad_pfns = load(&b->bad_pfns);
}

const char *virtio_balloon_stat_name(unsigned int tag)
{
	/* Cloud Hypervisor's BalloonStats field names, in VIRTIO_BALLOON_S_* order. */
	static const char *const names[VIRTIO_BALLOON_S_NR] = {
		"swap_in",	    "swap_out",	   "major_faults",
		"minor_faults",	    "free_memory", "total_memory",
		"available_memory", "disk_caches", "hugetlb_allocations",
		"hugetlb_failures",
	};

	return tag < VIRTIO_BALLOON_S_NR ? names[tag] : NULL;
}
