// SPDX-License-Identifier: MIT
/* virtio 1.2 §5.2: the block device. Requests go to the block layer and complete there. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "block/disk.h"
#include "hw/pci.h"
#include "lib/log.h"
#include "lib/util.h"
#include "virtio/blk.h"
#include "virtio/blk_request.h"
#include "virtio/device.h"
#include "virtio/pci.h"
#include "sandbox/sandbox.h"

#define BLK_QUEUE_SIZE 256
_Static_assert(VIRTIO_BLK_MAX_QUEUES == VIRTIO_MAX_QUEUES - 1, "blk.h's queue limit");
/* Data segments per request; the header and the status byte come on top. */
#define BLK_SEG_MAX 254
#define BLK_CONFIG_SIZE 60
/* One discard/write-zeroes range per request: what the guest asks for, nkvm does in one go. */
#define BLK_MAX_DISCARD_SECTORS (UINT32_MAX >> VIRTIO_BLK_SECTOR_SHIFT)

/* A virtqueue's side of the device, used by that queue's I/O thread only. */
struct blk_queue {
	struct virtq_chain chain;
	/*
	 * The disk's context for this queue: with an engine that has them (io_uring, aio), requests
	 * start and complete on this thread; otherwise it passes them to disk_submit.
	 */
	struct disk_queue *dq;
	bool pushed; /* a batched completion waits for virtio_notify */
	bool waits; /* the thread sleeps in disk_queue_wait */
	atomic_uint inflight; /* this queue's requests not yet pushed */
	unsigned int alone; /* requests in a row that came alone (blk_may_wait) */
	bool shared; /* no per-queue path: requests go to the engine's threads */
};

struct virtio_blk {
	struct virtio_device vdev;
	struct virtio_pci *transport;
	struct disk *disk;
	char id[VIRTIO_BLK_ID_BYTES];
	uint8_t config[BLK_CONFIG_SIZE];
	/* Requests in flight, so that a reset can wait for them (§2.4: no used buffer after). */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned int inflight;
	struct blk_queue *queues;
	/* virtio_blk_get_stats; updated by whichever thread completes a request. */
	atomic_uint_fast64_t requests, read_bytes, write_bytes, errors;
};

struct blk_request {
	struct disk_request dreq;
	struct virtio_blk *blk;
	unsigned int queue;
	uint16_t head;
	uint8_t *status; /* the last byte the driver gave us to write */
	uint32_t in_len; /* bytes written to the driver, status included */
	uint64_t data_len; /* bytes to read or write, for the stats */
	unsigned int iovcnt;
	struct iovec iov[];
};

/*
 * The queue whose batch the calling thread is in, if any: completions that a queue's thread
 * reaps while it handles a kick or an event are pushed as they come and notified once at the
 * end (blk_batch_end); completions on other threads (engine threads) are notified at once.
 * Per thread, since done runs on whichever thread the engine completes on.
 */
static _Thread_local struct blk_queue *blk_batch;

/* virtio-blk's queue threads: requests go to the disk's engine (engine.h), whose per-queue context (aio, io_uring) lives on this thread. */
static const struct sandbox_rule blk_queue_rules[] = {
	VIRTIO_QUEUE_RULES,
	DISK_QUEUE_RULES,
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter blk_queue_filter = {
	.thread = "blk-queue",
	.rules = blk_queue_rules,
	.nr_rules = ARRAY_SIZE(blk_queue_rules),
};

static void blk_batch_begin(struct virtio_blk *blk, unsigned int q)
{
	blk_batch = &blk->queues[q];
}

static void blk_batch_end(struct virtio_blk *blk, unsigned int q)
{
	struct blk_queue *bq = &blk->queues[q];

	blk_batch = NULL;
	if (bq->pushed) {
		bq->pushed = false;
		virtio_notify(&blk->vdev, q);
	}
}

static void blk_count(struct virtio_blk *blk, bool ok, enum disk_op op, uint64_t bytes)
{
	atomic_fetch_add_explicit(&blk->requests, 1, memory_order_relaxed);
	if (!ok)
		atomic_fetch_add_explicit(&blk->errors, 1, memory_order_relaxed);
	else if (op == DISK_READ)
		atomic_fetch_add_explicit(&blk->read_bytes, bytes, memory_order_relaxed);
	else if (op == DISK_WRITE)
		atomic_fetch_add_explicit(&blk->write_bytes, bytes, memory_order_relaxed);
}

static void blk_finish(struct virtio_blk *blk, unsigned int q, uint16_t head, uint32_t len)
{
	struct blk_queue *bq = &blk->queues[q];

	if (blk_batch == bq) {
		virtio_push_batched(&blk->vdev, q, head, len);
		bq->pushed = true;
	} else {
		virtio_push(&blk->vdev, q, head, len);
	}
	atomic_fetch_sub_explicit(&bq->inflight, 1, memory_order_release);
	pthread_mutex_lock(&blk->lock);
	if (--blk->inflight == 0)
		pthread_cond_broadcast(&blk->idle);
	pthread_mutex_unlock(&blk->lock);
}

static void blk_done(struct disk_request *dreq, int status)
{
	struct blk_request *r = (struct blk_request *)dreq;
	struct virtio_blk *blk = r->blk;

	*r->status = status == 0	   ? VIRTIO_BLK_S_OK :
		     status == -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP :
					     VIRTIO_BLK_S_IOERR;
	if (status)
		r->in_len = 1; /* §5.2.6.1: nothing but the status counts as written */
	blk_count(blk, !status, r->dreq.op, r->data_len);
	blk_finish(blk, r->queue, r->head, r->in_len);
	free(r);
}

/* Answers a request without the block layer: its status byte, and len bytes written. */
static void blk_complete_now(struct virtio_blk *blk, unsigned int q, uint16_t head, uint8_t *status,
			     uint8_t value, uint32_t len)
{
	if (status)
		*status = value;
	blk_count(blk, status && value == VIRTIO_BLK_S_OK, DISK_FLUSH, 0);
	blk_finish(blk, q, head, status ? len : 0);
}

/* may_wait: the disk may perform the request on this thread (blk_may_wait). */
static void blk_handle(struct virtio_blk *blk, unsigned int q, const struct virtq_chain *c,
		       bool may_wait)
{
	struct blk_request_parsed p;
	struct blk_request *r;
	int status;

	pthread_mutex_lock(&blk->lock);
	blk->inflight++;
	pthread_mutex_unlock(&blk->lock);
	atomic_fetch_add_explicit(&blk->queues[q].inflight, 1, memory_order_relaxed);

	r = calloc(1, sizeof(*r) + (c->nr_out + c->nr_in) * sizeof(struct iovec));
	if (!r) {
		/* Out of memory: IOERR in the status byte, the chain's last writable byte. */
		const struct iovec *last = &c->iov[c->nr_out + c->nr_in - 1];

		blk_complete_now(blk, q, c->head,
				 c->nr_in ? (uint8_t *)last->iov_base + last->iov_len - 1 : NULL,
				 VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	status = blk_request_parse(c, &p, r->iov);
	if (status == VIRTIO_BLK_S_OK && p.type == VIRTIO_BLK_T_GET_ID) {
		/* Up to 20 bytes, not NUL-terminated when it fills them. */
		uint32_t done = 0;

		for (unsigned int i = 0; i < p.iovcnt && done < VIRTIO_BLK_ID_BYTES; i++) {
			size_t n = p.iov[i].iov_len;

			if (n > VIRTIO_BLK_ID_BYTES - done)
				n = VIRTIO_BLK_ID_BYTES - done;
			memcpy(p.iov[i].iov_base, blk->id + done, n);
			done += n;
		}
		free(r);
		blk_complete_now(blk, q, c->head, p.status, VIRTIO_BLK_S_OK, done + 1);
		return;
	}
	if (status != VIRTIO_BLK_S_OK) {
		free(r);
		blk_complete_now(blk, q, c->head, p.status, status, 1);
		return;
	}
	r->blk = blk;
	r->queue = q;
	r->head = c->head;
	r->status = p.status;
	r->in_len = 1;
	r->iovcnt = p.iovcnt;
	r->data_len = p.data_len;
	r->dreq.done = blk_done;
	r->dreq.iov = r->iov;
	r->dreq.iovcnt = p.iovcnt;
	r->dreq.offset = p.offset;
	r->dreq.len = p.len;
	r->dreq.may_wait = may_wait;
	switch (p.type) {
	case VIRTIO_BLK_T_IN:
		r->dreq.op = DISK_READ;
		r->in_len = p.data_len + 1;
		break;
	case VIRTIO_BLK_T_OUT:
		r->dreq.op = DISK_WRITE;
		break;
	case VIRTIO_BLK_T_FLUSH:
		r->dreq.op = DISK_FLUSH;
		break;
	case VIRTIO_BLK_T_DISCARD:
		r->dreq.op = DISK_DISCARD;
		break;
	default:
		r->dreq.op = DISK_WRITE_ZEROES;
		break;
	}
	/* The block layer checks bounds, alignment and read-only, and completes through done. */
	if (blk->queues[q].dq)
		disk_queue_submit(blk->queues[q].dq, &r->dreq);
	else
		disk_submit(blk->disk, &r->dreq);
}

/*
 * Whether the request just popped may run on this queue thread (disk_request.may_wait): when
 * the guest plainly waits for it alone, as a program doing one read at a time makes it. With
 * the threads engine and O_DIRECT a request otherwise costs a hand-off to a worker and a wakeup
 * there, on the path of every request at queue depth 1: running them here made 4k reads at QD1
 * about 1.5x as fast (docs/performance.md; the engine decides, see threads_create). Engines
 * with a context per queue submit from this thread anyway and are not asked.
 *
 * Alone means nothing else of the queue in flight and nothing more in the ring. Requests that
 * arrive while one runs here wait behind it, and a guest that keeps a few in flight still
 * finds the pool idle now and then: running every such request here made QD4 0.6x as fast.
 * So it takes a streak of lone requests (blk_alone_step), and one that arrives during such a
 * request ends the streak (blk_queue_kick).
 */
static bool blk_may_wait(struct virtio_blk *blk, unsigned int q)
{
	struct blk_queue *bq = &blk->queues[q];
	bool alone;

	if (!bq->shared)
		return false;
	alone = !atomic_load_explicit(&bq->inflight, memory_order_acquire) &&
		!virtio_has_avail(&blk->vdev, q);
	return blk_alone_step(&bq->alone, alone);
}

static void blk_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;
	struct blk_queue *bq = &blk->queues[q];
	bool may_wait;

	blk_batch_begin(blk, q);
	while (virtio_pop(vdev, q, &bq->chain) > 0) {
		may_wait = blk_may_wait(blk, q);
		blk_handle(blk, q, &bq->chain, may_wait);
		/* The guest did not wait for that one: it may send more while one runs here. */
		if (may_wait && virtio_has_avail(vdev, q))
			bq->alone = 0;
	}
	/*
	 * Starts what may still wait, and reaps what already finished; no system call if neither.
	 * A thread that sleeps in disk_queue_wait does both there next, in the same system call.
	 */
	if (bq->dq && !bq->waits && disk_queue_ready(bq->dq))
		disk_queue_poll(bq->dq);
	blk_batch_end(blk, q);
}

/* The disk's per-queue descriptor is readable: completions to reap on this thread. */
static void blk_queue_event(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;

	blk_batch_begin(blk, q);
	disk_queue_poll(blk->queues[q].dq);
	blk_batch_end(blk, q);
}

/* One system call per wakeup where the disk's engine can wait so (io_uring, aio); see disk.h. */
static int blk_queue_wait(struct virtio_device *vdev, unsigned int q, int kick_fd)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;
	int ret;

	if (!blk->queues[q].dq)
		return -EOPNOTSUPP;
	blk_batch_begin(blk, q);
	ret = disk_queue_wait(blk->queues[q].dq, kick_fd);
	blk_batch_end(blk, q);
	if (ret >= 0)
		blk->queues[q].waits = true;
	return ret;
}

static void blk_queue_start(struct virtio_device *vdev, unsigned int q, int *fd)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;
	char reason[128];
	int err;

	err = disk_queue_open(blk->disk, &blk->queues[q].dq, fd, reason, sizeof(reason));
	if (err) {
		/* Still a working device: its requests go through the disk's shared path. */
		nkvm_err("%s: queue %u: %s: %s; using the disk's shared path", vdev->name, q,
			 reason, strerror(-err));
		blk->queues[q].dq = NULL;
		*fd = -1;
	}
	blk->queues[q].shared = *fd < 0;
	blk->queues[q].alone = 0;
}

/* The queue's thread ends: its requests in flight on the disk context complete first. */
static void blk_queue_stop(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;

	blk_batch_begin(blk, q);
	disk_queue_close(blk->queues[q].dq);
	blk->queues[q].dq = NULL;
	blk->queues[q].waits = false;
	blk_batch_end(blk, q);
}

static void blk_config_read(struct virtio_device *vdev, uint64_t off, void *data, unsigned int len)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;

	memcpy(data, blk->config + off, len);
}

static void blk_reset(struct virtio_device *vdev)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;

	pthread_mutex_lock(&blk->lock);
	while (blk->inflight)
		pthread_cond_wait(&blk->idle, &blk->lock);
	pthread_mutex_unlock(&blk->lock);
}

static const struct virtio_device_ops blk_ops = {
	.queue_kick = blk_queue_kick,
	.queue_start = blk_queue_start,
	.queue_event = blk_queue_event,
	.queue_stop = blk_queue_stop,
	.queue_wait = blk_queue_wait,
	.config_read = blk_config_read,
	.reset = blk_reset,
};

static void blk_fill_config(struct virtio_blk *blk, unsigned int queues)
{
	uint8_t *c = blk->config;

	put_le(c + 0, disk_size(blk->disk) >> VIRTIO_BLK_SECTOR_SHIFT, 8); /* capacity */
	put_le(c + 12, BLK_SEG_MAX, 4); /* seg_max */
	put_le(c + 20, disk_block_size(blk->disk), 4); /* blk_size */
	put_le(c + 34, queues, 2); /* num_queues */
	put_le(c + 36, BLK_MAX_DISCARD_SECTORS, 4); /* max_discard_sectors */
	put_le(c + 40, 1, 4); /* max_discard_seg */
	put_le(c + 44, disk_block_size(blk->disk) >> VIRTIO_BLK_SECTOR_SHIFT, 4); /* alignment */
	put_le(c + 48, BLK_MAX_DISCARD_SECTORS, 4); /* max_write_zeroes_sectors */
	put_le(c + 52, 1, 4); /* max_write_zeroes_seg */
	c[56] = 1; /* write_zeroes_may_unmap */
}

int virtio_blk_create(struct virtio_device **vdev, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq, struct disk *disk,
		      const struct virtio_blk_options *o)
{
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	unsigned int queues = o->queues ? o->queues : 1;
	uint64_t features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX) |
			    (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
			    (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH) |
			    (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);

	int err;

	if (!blk)
		return -ENOMEM;
	if (queues > VIRTIO_BLK_MAX_QUEUES)
		queues = VIRTIO_BLK_MAX_QUEUES;
	blk->queues = calloc(queues, sizeof(*blk->queues));
	if (!blk->queues) {
		free(blk);
		return -ENOMEM;
	}
	blk->disk = disk;
	pthread_mutex_init(&blk->lock, NULL);
	pthread_cond_init(&blk->idle, NULL);
	/* The ID is up to 20 bytes, NUL-padded but not necessarily NUL-terminated. */
	if (o->serial)
		memcpy(blk->id, o->serial, strnlen(o->serial, sizeof(blk->id)));
	if (disk_readonly(disk))
		features |= 1ULL << VIRTIO_BLK_F_RO;
	if (queues > 1)
		features |= 1ULL << VIRTIO_BLK_F_MQ;
	blk_fill_config(blk, queues);
	blk->vdev = (struct virtio_device){
		.ops = &blk_ops,
		.queue_filter = &blk_queue_filter,
		.name = "virtio-blk",
		.device_id = VIRTIO_ID_BLOCK,
		.pci_class = PCI_CLASS_STORAGE_OTHER,
		.host_features = features,
		.nr_queues = queues,
		.queue_max_size = BLK_QUEUE_SIZE,
		.config_size = BLK_CONFIG_SIZE,
	};
	err = virtio_pci_create(&blk->transport, vm, bus, irq, &blk->vdev);
	if (err) {
		/* The disk stays the caller's, to close. */
		pthread_cond_destroy(&blk->idle);
		pthread_mutex_destroy(&blk->lock);
		free(blk->queues);
		free(blk);
		return err;
	}
	if (vdev)
		*vdev = &blk->vdev;
	return 0;
}

/* --- teardown, for a caller that outlives its device (nkvm img bench) ------------------------ */

void virtio_blk_destroy(struct virtio_device *vdev)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;

	if (!blk)
		return;
	/* Stops the queue threads and waits for requests in flight (blk_reset). */
	virtio_pci_free(blk->transport);
	disk_close(blk->disk);
	pthread_cond_destroy(&blk->idle);
	pthread_mutex_destroy(&blk->lock);
	free(blk->queues);
	free(blk);
}

void virtio_blk_get_stats(struct virtio_device *vdev, struct virtio_blk_stats *out)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;

	out->requests = atomic_load_explicit(&blk->requests, memory_order_relaxed);
	out->read_bytes = atomic_load_explicit(&blk->read_bytes, memory_order_relaxed);
	out->write_bytes = atomic_load_explicit(&blk->write_bytes, memory_order_relaxed);
	out->errors = atomic_load_explicit(&blk->errors, memory_order_relaxed);
	pthread_mutex_lock(&blk->lock);
	out->in_flight = blk->inflight;
	pthread_mutex_unlock(&blk->lock);
}
