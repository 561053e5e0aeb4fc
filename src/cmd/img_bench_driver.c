// SPDX-License-Identifier: MIT
/*
 * nkvm img bench's driver: a guest's virtio-blk driver in this process (img_bench.h), on the
 * in-process virtio-pci driver (virtio/driver.h), which finds the function, negotiates and sets
 * up MSI-X and the queues. Here: the block requests, and one thread per virtqueue, as a guest
 * with one vCPU per queue: it keeps depth requests in flight, sleeps on its queue's interrupt
 * eventfd, takes what the device used, and submits the next requests in one batch with at most
 * one kick.
 */
#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_pci.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cmd/img.h"
#include "cmd/img_bench.h"
#include "hw/pci.h"
#include "lib/util.h"
#include "virtio/blk.h"
#include "virtio/blk_request.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define BLK_CFG_NUM_QUEUES offsetof(struct virtio_blk_config, num_queues)

/* Per request slot: the header at 0, the status byte at 16, the 3-entry indirect table at 64. */
#define SLOT_META 128
#define SLOT_STATUS 16
#define SLOT_TABLE 64
/* Where the driver's memory starts, and what the device's queues hold (BLK_QUEUE_SIZE). */
#define BENCH_GPA_BASE (1ULL << 20)
#define BENCH_QUEUE_MAX 256
/* A device that stops answering fails the run instead of hanging it. */
#define BENCH_IRQ_TIMEOUT_MS 30000

/*
 * Latencies in a log-linear histogram (HdrHistogram's idea): exact below 128 ns, then 128
 * buckets per power of two, so any percentile is within 1% of the true value.
 */
#define HIST_SUB_BITS 7
#define HIST_SUB (1U << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct bench_slot {
	uint64_t t_submit; /* ns */
	uint64_t meta_gpa, data_gpa;
	uint8_t *meta;
	bool flush;
};

struct bench;

/* One virtqueue and the thread that drives it: a vCPU of the guest this process plays. */
struct bench_queue {
	struct bench *b;
	unsigned int index;
	struct virtio_driver_queue vq;
	unsigned int nslots, inflight, nfree;
	struct bench_slot *slots; /* depth data slots, then the flush slot if any */
	unsigned int *free;
	uint64_t rng;
	uint64_t writes_done;
	bool flush_due, flush_busy;
	/* Results. */
	uint64_t ops, bytes, flushes, interrupts, kicks, t_last;
	double cpu_us;
	uint64_t *hist;
	pthread_t thread;
	bool started;
};

struct bench {
	const struct img_bench_options *o;
	uint64_t size; /* the disk's bytes */
	const struct guest_memory *mem; /* the driver's memory: b->vm's RAM */
	struct vm *vm;
	struct pci_bus *bus;
	struct irq_routing *irq;
	struct virtio_device *vdev;
	struct virtio_driver drv;
	uint64_t limit; /* requests to issue */
	uint64_t deadline; /* ns; 0: count mode */
	atomic_uint_fast64_t issued;
	atomic_bool stop; /* a request failed: every queue drains and ends */
	pthread_mutex_t err_lock;
	char why[160];
	int err;
	/* The driver threads wait for go, so that setting them up is not timed. */
	pthread_mutex_t go_lock;
	pthread_cond_t go_cond;
	bool go;
	struct bench_queue *queues;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static double rusage_us(const struct rusage *ru)
{
	return ru->ru_utime.tv_sec * 1e6 + ru->ru_utime.tv_usec + ru->ru_stime.tv_sec * 1e6 +
	       ru->ru_stime.tv_usec;
}

/* The first failure wins; every queue then stops submitting. */
static void bench_fail(struct bench *b, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void bench_fail(struct bench *b, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&b->err_lock);
	if (!b->err) {
		b->err = err;
		va_start(ap, fmt);
		vsnprintf(b->why, sizeof(b->why), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&b->err_lock);
	atomic_store(&b->stop, true);
}

/* --- the histogram ----------------------------------------------------------------------- */

static unsigned int hist_index(uint64_t v)
{
	unsigned int m;

	if (v < HIST_SUB)
		return v;
	m = 63 - __builtin_clzll(v);
	/* The power of two, then the HIST_SUB_BITS bits below the leading one. */
	return (m - HIST_SUB_BITS + 1) * HIST_SUB +
	       (unsigned int)((v >> (m - HIST_SUB_BITS)) - HIST_SUB);
}

/* The middle of bucket i. */
static double hist_value(unsigned int i)
{
	unsigned int g = i / HIST_SUB, s = i % HIST_SUB;
	double lower, width;

	if (g == 0)
		return i;
	lower = (double)((uint64_t)(HIST_SUB + s) << (g - 1));
	width = (double)(1ULL << (g - 1));
	return lower + (width - 1) / 2;
}

/* The value below which p percent of the n samples lie (nearest rank). */
static double hist_percentile(const uint64_t *h, uint64_t n, double p)
{
	double want = p / 100 * n;
	uint64_t rank = (uint64_t)want, seen = 0;

	if (!n)
		return 0;
	if (rank < want || rank < 1)
		rank++;
	for (unsigned int i = 0; i < HIST_BUCKETS; i++) {
		seen += h[i];
		if (seen >= rank)
			return hist_value(i);
	}
	return hist_value(HIST_BUCKETS - 1);
}

/* --- the device, as a guest's driver reaches it ------------------------------------------ */

/* Bytes of driver memory a queue needs: rings, then per slot its metadata and its buffer. */
static uint64_t bench_queue_bytes(const struct img_bench_options *o, unsigned int nslots)
{
	return virtio_driver_queue_bytes(BENCH_QUEUE_MAX) +
	       ALIGN_UP((uint64_t)nslots * SLOT_META, 4096) +
	       (uint64_t)nslots * ALIGN_UP(o->bufsize, 4096);
}

static int bench_queue_init(struct bench *b, struct bench_queue *bq, unsigned int i, uint64_t gpa,
			    unsigned int nslots)
{
	const struct img_bench_options *o = b->o;
	uint64_t meta = gpa + virtio_driver_queue_bytes(BENCH_QUEUE_MAX);
	uint64_t data = meta + ALIGN_UP((uint64_t)nslots * SLOT_META, 4096);
	int err;

	bq->b = b;
	bq->index = i;
	bq->nslots = nslots;
	bq->rng = 0x9e3779b97f4a7c15ULL * (i + 1);
	bq->slots = calloc(nslots, sizeof(*bq->slots));
	bq->free = calloc(nslots, sizeof(*bq->free));
	bq->hist = calloc(HIST_BUCKETS, sizeof(*bq->hist));
	if (!bq->slots || !bq->free || !bq->hist)
		return -ENOMEM;

	/* The device's size; vector 0 for configuration changes, i + 1 for queue i, as Linux. */
	err = virtio_driver_queue_setup(&b->drv, &bq->vq, i, 0, gpa, i + 1);
	if (err)
		return err;
	if (bq->vq.size > BENCH_QUEUE_MAX || nslots > bq->vq.size)
		return -EINVAL;

	for (unsigned int s = 0; s < nslots; s++) {
		struct bench_slot *sl = &bq->slots[s];

		sl->meta_gpa = meta + (uint64_t)s * SLOT_META;
		sl->data_gpa = data + (uint64_t)s * ALIGN_UP(o->bufsize, 4096);
		sl->meta = guest_ptr(b->mem, sl->meta_gpa, SLOT_META);
		if (!sl->meta || !guest_ptr(b->mem, sl->data_gpa, o->bufsize))
			return -EFAULT;
		/* Written before the run, so that no page fault is timed: the pattern or zeroes. */
		memset(guest_ptr(b->mem, sl->data_gpa, o->bufsize), o->write ? o->pattern : 0,
		       o->bufsize);
	}
	/* The data slots are free; the flush slot (the last, if any) is only for flushes. */
	for (unsigned int s = 0; s < o->depth; s++)
		bq->free[bq->nfree++] = o->depth - 1 - s;
	return 0;
}

/* §3.1.1: reset, acknowledge, negotiate, set up MSI-X and the queues, DRIVER_OK. */
static int bench_driver_init(struct bench *b, char *err, size_t errlen)
{
	const struct img_bench_options *o = b->o;
	struct virtio_driver *d = &b->drv;
	uint64_t offered, want, gpa = BENCH_GPA_BASE;
	unsigned int nslots = o->depth + (o->flush_interval ? 1 : 0);
	int ret;

	if (virtio_driver_find(d, b->bus, b->mem, VIRTIO_ID_BLOCK)) {
		snprintf(err, errlen, "the virtio-blk function (virtio-pci) is not on the bus");
		return -ENODEV;
	}
	if (virtio_driver_reset(d, 10000)) {
		snprintf(err, errlen, "the device did not reset within 10 s");
		return -ETIMEDOUT;
	}
	virtio_driver_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	virtio_driver_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	offered = virtio_driver_device_features(d);
	want = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
	       (1ULL << VIRTIO_RING_F_EVENT_IDX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
	       (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH) |
	       (1ULL << VIRTIO_BLK_F_RO) | (o->queues > 1 ? 1ULL << VIRTIO_BLK_F_MQ : 0);
	want &= offered;
	/* Requests go as Linux sends them when it can: one indirect table each. */
	if (!(want & (1ULL << VIRTIO_F_VERSION_1)) ||
	    !(want & (1ULL << VIRTIO_RING_F_INDIRECT_DESC))) {
		snprintf(err, errlen, "the device offers no VERSION_1 or INDIRECT_DESC");
		return -ENOTSUP;
	}
	if (o->write && (want & (1ULL << VIRTIO_BLK_F_RO))) {
		snprintf(err, errlen, "the device is read-only");
		return -EROFS;
	}
	if (o->flush_interval && !(want & (1ULL << VIRTIO_BLK_F_FLUSH))) {
		snprintf(err, errlen, "the device offers no flush");
		return -ENOTSUP;
	}
	if (virtio_driver_features_ok(d, want)) {
		snprintf(err, errlen, "the device refused the features");
		return -ENOTSUP;
	}
	if (o->queues > 1 &&
	    (!(want & (1ULL << VIRTIO_BLK_F_MQ)) ||
	     virtio_driver_bar_read(d, d->device_cfg + BLK_CFG_NUM_QUEUES, 2) < o->queues)) {
		snprintf(err, errlen, "the device has fewer than %u queues", o->queues);
		return -EINVAL;
	}
	/* MSI-X on, a vector for configuration changes and one per queue, all unmasked. */
	ret = virtio_driver_msix_enable(d, o->queues + 1, 0);
	if (ret) {
		snprintf(err, errlen, "the device has fewer than %u MSI-X vectors", o->queues + 1);
		return ret;
	}
	for (unsigned int i = 0; i < o->queues; i++) {
		ret = bench_queue_init(b, &b->queues[i], i, gpa, nslots);
		if (ret) {
			snprintf(err, errlen, "queue %u: %s", i,
				 ret == -EINVAL ? "the device's queue is smaller than the depth" :
						  strerror(-ret));
			return ret;
		}
		gpa += bench_queue_bytes(o, nslots);
	}
	virtio_driver_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					    VIRTIO_CONFIG_S_FEATURES_OK |
					    VIRTIO_CONFIG_S_DRIVER_OK);
	return 0;
}

/* --- one queue's requests ---------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: cheap, and good enough to spread offsets. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* Request number ticket's offset: qemu-img bench's sequence, or a random aligned one. */
static uint64_t bench_offset(struct bench_queue *bq, uint64_t ticket)
{
	const struct img_bench_options *o = bq->b->o;
	uint64_t size = bq->b->size;

	if (o->random)
		return rng_next(&bq->rng) % (size / o->bufsize) * o->bufsize;
	/* The first at -o as given, then wrapped to stay inside the image (qemu-img's rule). */
	if (ticket == 0)
		return o->offset;
	if (size <= o->bufsize)
		return 0;
	return (o->offset + ticket * o->step) % (size - o->bufsize);
}

/* May another request start? Count mode: a ticket below the count. Time mode: the clock. */
static bool bench_take(struct bench *b, uint64_t now, uint64_t *ticket)
{
	if (atomic_load_explicit(&b->stop, memory_order_relaxed))
		return false;
	if (b->deadline && now >= b->deadline)
		return false;
	*ticket = atomic_fetch_add_explicit(&b->issued, 1, memory_order_relaxed);
	return *ticket < b->limit;
}

/* Builds slot s's request as Linux's virtio-blk does: header, data, status in a table. */
static void bq_add(struct bench_queue *bq, unsigned int s, uint32_t type, uint64_t offset,
		   uint64_t now)
{
	struct bench_slot *sl = &bq->slots[s];
	struct virtio_blk_outhdr *h = (struct virtio_blk_outhdr *)sl->meta;
	struct vring_desc *t = (struct vring_desc *)(sl->meta + SLOT_TABLE);
	unsigned int n = 0;

	h->type = type;
	h->ioprio = 0;
	h->sector = offset >> VIRTIO_BLK_SECTOR_SHIFT;
	sl->meta[SLOT_STATUS] = 0xff; /* so that a status the device never wrote shows */
	sl->flush = type == VIRTIO_BLK_T_FLUSH;
	t[n] = (struct vring_desc){ sl->meta_gpa, sizeof(*h), VRING_DESC_F_NEXT, n + 1 };
	n++;
	if (!sl->flush) {
		uint16_t flags = VRING_DESC_F_NEXT;

		/* A read's data is the device's to write. */
		if (type == VIRTIO_BLK_T_IN)
			flags |= VRING_DESC_F_WRITE;
		t[n] = (struct vring_desc){ sl->data_gpa, bq->b->o->bufsize, flags, n + 1 };
		n++;
	}
	t[n] = (struct vring_desc){ sl->meta_gpa + SLOT_STATUS, 1, VRING_DESC_F_WRITE, 0 };
	n++;
	/* One ring descriptor per request, its index the slot's: the id the device gives back. */
	bq->vq.desc[s] = (struct vring_desc){ sl->meta_gpa + SLOT_TABLE, n * sizeof(*t),
					      VRING_DESC_F_INDIRECT, 0 };
	virtio_driver_queue_add(&bq->vq, s);
	bq->inflight++;
	sl->t_submit = now;
}

/* Starts what may start: a flush that is due, else requests in every free slot. */
static void bq_refill(struct bench_queue *bq)
{
	const struct img_bench_options *o = bq->b->o;
	uint64_t now = now_ns(), ticket;
	unsigned int s;

	if (bq->flush_due && !bq->flush_busy && (!o->drain || bq->inflight == 0) &&
	    !atomic_load(&bq->b->stop)) {
		bq->flush_due = false;
		bq->flush_busy = true;
		bq_add(bq, o->depth, VIRTIO_BLK_T_FLUSH, 0, now);
	}
	/* Draining for a flush: nothing new until it is done. */
	while (bq->nfree && !(o->drain && (bq->flush_due || bq->flush_busy))) {
		if (!bench_take(bq->b, now, &ticket))
			break;
		s = bq->free[--bq->nfree];
		bq_add(bq, s, o->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
		       bench_offset(bq, ticket), now);
	}
	/* Publishes what bq_add queued and kicks when the device wants it (§2.7.13.3-4). */
	if (virtio_driver_queue_flush(&bq->vq))
		bq->kicks++;
}

static void bq_complete(struct bench_queue *bq, uint32_t id, uint32_t len, uint64_t now)
{
	struct bench *b = bq->b;
	const struct img_bench_options *o = b->o;
	struct bench_slot *sl;
	uint8_t status;

	if (id >= bq->nslots) {
		bench_fail(b, -EIO, "queue %u: the device used id %u, never made available",
			   bq->index, id);
		return;
	}
	sl = &bq->slots[id];
	status = sl->meta[SLOT_STATUS];
	bq->inflight--;
	bq->t_last = now;
	if (status != VIRTIO_BLK_S_OK) {
		const struct virtio_blk_outhdr *h = (const struct virtio_blk_outhdr *)sl->meta;

		bench_fail(b, -EIO, "%s at offset %llu failed: status %u%s",
			   sl->flush ? "flush" :
			   o->write  ? "write" :
				       "read",
			   (unsigned long long)h->sector << VIRTIO_BLK_SECTOR_SHIFT, status,
			   status == VIRTIO_BLK_S_IOERR ? " (IOERR)" : "");
	}
	if (sl->flush) {
		bq->flush_busy = false;
		bq->flushes++;
		return;
	}
	bq->free[bq->nfree++] = id;
	if (status != VIRTIO_BLK_S_OK)
		return;
	/* §5.2.6.1: a read's used length counts its data and the status byte. */
	if (!o->write && len != o->bufsize + 1)
		bench_fail(b, -EIO, "queue %u: a read of %llu bytes came back with used length %u",
			   bq->index, (unsigned long long)o->bufsize, len);
	bq->ops++;
	bq->bytes += o->bufsize;
	bq->hist[hist_index(now - sl->t_submit)]++;
	if (o->write && o->flush_interval && ++bq->writes_done % o->flush_interval == 0)
		bq->flush_due = true;
}

/*
 * Takes what the device used, then asks for an interrupt at the next entry and looks once
 * more, since the device may have used one before it could see the request: the pattern of
 * Linux's virtblk_done (virtqueue_disable_cb / get_buf / enable_cb).
 */
static void bq_reap(struct bench_queue *bq)
{
	struct vring_used_elem e;

	do {
		uint64_t now = now_ns();

		while (virtio_driver_queue_get(&bq->vq, &e))
			bq_complete(bq, e.id, e.len, now);
	} while (virtio_driver_queue_arm(&bq->vq));
}

/* Sleeps until the queue's vector fires; counts the interrupts the eventfd accumulated. */
static int bq_wait(struct bench_queue *bq)
{
	int err = virtio_driver_queue_wait(&bq->vq, BENCH_IRQ_TIMEOUT_MS, &bq->interrupts);

	if (err == -ETIMEDOUT)
		bench_fail(bq->b, err, "queue %u: no interrupt in %d s with %u requests in flight",
			   bq->index, BENCH_IRQ_TIMEOUT_MS / 1000, bq->inflight);
	else if (err)
		bench_fail(bq->b, err, "queue %u: interrupt eventfd: %s", bq->index,
			   strerror(-err));
	return err;
}

static void *bq_thread(void *arg)
{
	struct bench_queue *bq = arg;
	struct rusage ru0, ru1;

	struct bench *b = bq->b;

	pthread_mutex_lock(&b->go_lock);
	while (!b->go)
		pthread_cond_wait(&b->go_cond, &b->go_lock);
	pthread_mutex_unlock(&b->go_lock);
	getrusage(RUSAGE_THREAD, &ru0);
	bq_refill(bq);
	while (bq->inflight) {
		/* A timeout leaves requests in the device: the run is over, reset frees them. */
		if (bq_wait(bq))
			break;
		bq_reap(bq);
		bq_refill(bq);
	}
	getrusage(RUSAGE_THREAD, &ru1);
	bq->cpu_us = rusage_us(&ru1) - rusage_us(&ru0);
	return NULL;
}

/* --- a run ------------------------------------------------------------------------------- */

void img_bench_defaults(struct img_bench_options *o)
{
	*o = (struct img_bench_options){
		.count = 75000,
		.depth = 64,
		.queues = 1,
		.bufsize = 4096,
		.step = 4096,
		.drain = true,
	};
}

static int bench_check(const struct img_bench_options *o, char *err, size_t errlen)
{
	const char *bad = NULL;

	if (!o->count && o->seconds <= 0)
		bad = "the count must be at least 1";
	else if (!o->depth || o->depth > BENCH_QUEUE_MAX)
		bad = "the depth must be between 1 and 256 (the device's queue size)";
	else if (o->flush_interval && o->depth >= BENCH_QUEUE_MAX)
		bad = "the depth must be below 256 with --flush-interval (a flush needs a slot)";
	else if (!o->queues || o->queues > VIRTIO_MAX_QUEUES - 1)
		bad = "the number of queues must be between 1 and 63";
	else if (!o->bufsize || o->bufsize % 512 || o->bufsize > UINT32_MAX - 1)
		bad = "the buffer size must be a non-zero multiple of 512 (virtio-blk sectors)";
	else if (o->offset % 512 || o->step % 512)
		bad = "the offset and the step must be multiples of 512 (virtio-blk sectors)";
	else if (o->flush_interval && !o->write)
		bad = "--flush-interval is only for write benchmarks (-w)";
	else if (o->flush_interval && o->flush_interval < o->depth)
		bad = "the flush interval must not be smaller than the depth";
	if (!bad)
		return 0;
	snprintf(err, errlen, "%s", bad);
	return -EINVAL;
}

static void bench_result(struct bench *b, struct img_bench_result *r, uint64_t t0, double cpu_us)
{
	const struct img_bench_options *o = b->o;
	uint64_t *hist = calloc(HIST_BUCKETS, sizeof(*hist)), t_last = t0;

	r->cpu_us = cpu_us;
	for (unsigned int i = 0; i < o->queues; i++) {
		struct bench_queue *bq = &b->queues[i];

		r->ops += bq->ops;
		r->bytes += bq->bytes;
		r->flushes += bq->flushes;
		r->interrupts += bq->interrupts;
		r->kicks += bq->kicks;
		r->driver_cpu_us += bq->cpu_us;
		if (bq->t_last > t_last)
			t_last = bq->t_last;
		for (unsigned int h = 0; hist && h < HIST_BUCKETS; h++)
			hist[h] += bq->hist[h];
	}
	r->seconds = (t_last - t0) / 1e9;
	if (hist) {
		r->p50_us = hist_percentile(hist, r->ops, 50) / 1000;
		r->p99_us = hist_percentile(hist, r->ops, 99) / 1000;
		r->p999_us = hist_percentile(hist, r->ops, 99.9) / 1000;
		r->max_us = hist_percentile(hist, r->ops, 100) / 1000;
	}
	free(hist);
}

static int bench_go(struct bench *b, struct img_bench_result *r, char *err, size_t errlen)
{
	const struct img_bench_options *o = b->o;
	struct rusage ru0, ru1;
	uint64_t t0;
	int ret = 0;

	for (unsigned int i = 0; i < o->queues && !ret; i++) {
		ret = -pthread_create(&b->queues[i].thread, NULL, bq_thread, &b->queues[i]);
		if (ret)
			/* Those started see stop at go: they submit nothing and end. */
			bench_fail(b, ret, "cannot start a driver thread: %s", strerror(-ret));
		else
			b->queues[i].started = true;
	}
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_ns();
	if (o->seconds > 0)
		b->deadline = t0 + (uint64_t)(o->seconds * 1e9);
	pthread_mutex_lock(&b->go_lock);
	b->go = true;
	pthread_cond_broadcast(&b->go_cond);
	pthread_mutex_unlock(&b->go_lock);
	for (unsigned int i = 0; i < o->queues; i++)
		if (b->queues[i].started)
			pthread_join(b->queues[i].thread, NULL);
	getrusage(RUSAGE_SELF, &ru1);
	bench_result(b, r, t0, rusage_us(&ru1) - rusage_us(&ru0));
	if (b->err) {
		snprintf(err, errlen, "%s", b->why);
		return b->err;
	}
	return 0;
}

/* Everything the run set up, in reverse: the device (its threads stop first), then the rest. */
static void bench_teardown(struct bench *b, struct disk *disk)
{
	if (b->vdev) {
		/* The driver resets the device, as Linux on unbind: threads end, requests finish. */
		if (b->drv.dev)
			virtio_driver_set_status(&b->drv, 0);
		virtio_blk_destroy(b->vdev);
	} else if (disk) {
		disk_close(disk);
	}
	for (unsigned int i = 0; b->queues && i < b->o->queues; i++) {
		free(b->queues[i].slots);
		free(b->queues[i].free);
		free(b->queues[i].hist);
	}
	free(b->queues);
	if (b->vm)
		memory_free(&b->vm->mem);
	free(b->irq);
	free(b->bus);
	free(b->vm);
	pthread_cond_destroy(&b->go_cond);
	pthread_mutex_destroy(&b->go_lock);
	pthread_mutex_destroy(&b->err_lock);
}

static int bench_open_disk(const struct img_bench_options *o, struct disk **disk,
			   struct img_bench_result *r, char *err, size_t errlen)
{
	struct disk_options dopt = {
		.path = o->path,
		.readonly = !o->write,
		.direct = o->direct,
		.format = o->format,
		.engine = o->engine,
		.threads = o->engine_threads,
	};
	char dreason[DISK_ERR_MAX];
	struct img img;
	char iwhy[120];
	int ret;

	/* The format named, else probed here, so that the result can say which ran. */
	if (dopt.format == DISK_FORMAT_PROBE) {
		ret = img_open(&img, o->path, DISK_FORMAT_PROBE,
			       IMG_OPEN_SHARE | IMG_OPEN_PROBE_ONLY, iwhy, sizeof(iwhy));
		if (ret) {
			snprintf(err, errlen, "%s", iwhy);
			return ret;
		}
		dopt.format = img.format;
		img_close(&img);
	}
	snprintf(r->format, sizeof(r->format), "%s",
		 dopt.format == DISK_FORMAT_QCOW2 ? "qcow2" : "raw");
	ret = disk_open(disk, &dopt, dreason, sizeof(dreason));
	if (ret) {
		snprintf(err, errlen, "%s: %s", dreason, strerror(-ret));
		return ret;
	}
	snprintf(r->engine, sizeof(r->engine), "%s", disk_engine_name(*disk));
	if (disk_notice(*disk))
		fprintf(stderr, "nkvm: %s: %s\n", o->path, disk_notice(*disk));
	return 0;
}

int img_bench_run(const struct img_bench_options *o, struct img_bench_result *r, char *err,
		  size_t errlen)
{
	struct virtio_blk_options bopt = { .queues = o->queues };
	struct bench b = { .o = o };
	struct disk *disk = NULL;
	uint64_t ram;
	int ret;

	memset(r, 0, sizeof(*r));
	ret = bench_check(o, err, errlen);
	if (ret)
		return ret;
	pthread_mutex_init(&b.err_lock, NULL);
	pthread_mutex_init(&b.go_lock, NULL);
	pthread_cond_init(&b.go_cond, NULL);
	ret = bench_open_disk(o, &disk, r, err, errlen);
	if (ret) {
		bench_teardown(&b, NULL);
		return ret;
	}
	b.size = disk_size(disk);
	if (o->random && b.size < o->bufsize) {
		snprintf(err, errlen, "the image is smaller than one buffer");
		ret = -EINVAL;
		goto out;
	}
	b.limit = o->seconds > 0 ? UINT64_MAX : o->count;

	/* Driver memory in one region below the PCI hole, as a small guest's RAM. */
	ram = ALIGN_UP(BENCH_GPA_BASE +
			       o->queues *
				       bench_queue_bytes(o, o->depth + (o->flush_interval ? 1 : 0)),
		       2 * MiB);
	b.vm = calloc(1, sizeof(*b.vm));
	b.bus = calloc(1, sizeof(*b.bus));
	b.irq = calloc(1, sizeof(*b.irq));
	b.queues = calloc(o->queues, sizeof(*b.queues));
	if (!b.vm || !b.bus || !b.irq || !b.queues) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	if (ram > MEM_HOLE_START) {
		snprintf(err, errlen, "queues x depth x buffer size is more than 3 GiB");
		ret = -E2BIG;
		goto out;
	}
	ret = memory_init(&b.vm->mem, ram);
	if (ret) {
		snprintf(err, errlen, "cannot map %llu MiB of driver memory: %s",
			 (unsigned long long)(ram / MiB), strerror(-ret));
		goto out;
	}
	/* A VM without KVM: its memory, its PCI bus, MSI routes that go nowhere. */
	b.vm->kvm_fd = b.vm->vm_fd = b.vm->stop_fd = -1;
	b.mem = &b.vm->mem;
	irq_routing_init(b.irq, NULL);
	ret = pci_init(b.bus, b.vm);
	if (!ret)
		ret = virtio_blk_create(&b.vdev, b.vm, b.bus, b.irq, disk, &bopt);
	if (ret) {
		snprintf(err, errlen, "cannot create the virtio-blk device: %s", strerror(-ret));
		goto out;
	}
	/* The device owns the disk from here on; teardown frees both. */
	disk = NULL;
	ret = bench_driver_init(&b, err, errlen);
	if (!ret)
		ret = bench_go(&b, r, err, errlen);
out:
	bench_teardown(&b, disk);
	return ret;
}
