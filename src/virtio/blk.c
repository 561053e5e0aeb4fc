// SPDX-License-Identifier: MIT
/* virtio 1.2 §5.2: the block device. Requests go to the block layer and complete there. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "block/disk.h"
#include "virtio/blk.h"
#include "virtio/device.h"
#include "virtio/pci.h"

/* Feature bits (§5.2.3). */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status (§5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define SECTOR_SHIFT 9
#define BLK_QUEUE_SIZE 256
/* Data segments per request; the header and the status byte come on top. */
#define BLK_SEG_MAX 254
#define BLK_CONFIG_SIZE 60
/* One discard/write-zeroes range per request: what the guest asks for, nkvm does in one go. */
#define BLK_MAX_DISCARD_SECTORS (UINT32_MAX >> SECTOR_SHIFT)

struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_range {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
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
	struct virtq_chain *chains;	/* one per queue, used by that queue's thread only */
};

struct blk_request {
	struct disk_request dreq;
	struct virtio_blk *blk;
	unsigned int queue;
	uint16_t head;
	uint8_t *status;		/* the last byte the driver gave us to write */
	uint32_t in_len;		/* bytes written to the driver, status included */
	unsigned int iovcnt;
	struct iovec iov[];
};

static void put_le(uint8_t *p, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		p[i] = v >> (8 * i);
}

/* Copies len bytes from the start of the readable segments; false when there are fewer. */
static bool chain_read(const struct virtq_chain *c, unsigned int *seg, size_t *off, void *dst,
		       size_t len)
{
	uint8_t *d = dst;

	while (len) {
		size_t n;

		if (*seg >= c->nr_out)
			return false;
		n = c->iov[*seg].iov_len - *off;
		if (n > len)
			n = len;
		memcpy(d, (uint8_t *)c->iov[*seg].iov_base + *off, n);
		d += n;
		len -= n;
		*off += n;
		if (*off == c->iov[*seg].iov_len) {
			(*seg)++;
			*off = 0;
		}
	}
	return true;
}

static void blk_finish(struct virtio_blk *blk, unsigned int q, uint16_t head, uint32_t len)
{
	virtio_push(&blk->vdev, q, head, len);
	pthread_mutex_lock(&blk->lock);
	if (--blk->inflight == 0)
		pthread_cond_broadcast(&blk->idle);
	pthread_mutex_unlock(&blk->lock);
}

static void blk_done(struct disk_request *dreq, int status)
{
	struct blk_request *r = (struct blk_request *)dreq;
	struct virtio_blk *blk = r->blk;

	*r->status = status == 0 ? VIRTIO_BLK_S_OK
				 : status == -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
	if (status)
		r->in_len = 1;	/* §5.2.6.1: nothing but the status counts as written */
	blk_finish(blk, r->queue, r->head, r->in_len);
	free(r);
}

/* Answers a request without the block layer: its status byte, and len bytes written. */
static void blk_complete_now(struct virtio_blk *blk, unsigned int q, uint16_t head, uint8_t *status,
			     uint8_t value, uint32_t len)
{
	if (status)
		*status = value;
	blk_finish(blk, q, head, status ? len : 0);
}

/* Data segments: the readable ones after the header, or the writable ones before the status. */
static struct blk_request *blk_build(struct virtio_blk *blk, const struct virtq_chain *c,
				     unsigned int seg, size_t off, bool to_guest)
{
	unsigned int first = to_guest ? c->nr_out : seg;
	unsigned int last = to_guest ? c->nr_out + c->nr_in : c->nr_out;	/* exclusive */
	struct blk_request *r;

	r = calloc(1, sizeof(*r) + (last - first + 1) * sizeof(struct iovec));
	if (!r)
		return NULL;
	for (unsigned int i = first; i < last; i++) {
		struct iovec v = c->iov[i];

		if (!to_guest && i == seg) {
			v.iov_base = (uint8_t *)v.iov_base + off;
			v.iov_len -= off;
		}
		if (to_guest && i == last - 1)
			v.iov_len--;	/* the status byte is not data */
		if (v.iov_len)
			r->iov[r->iovcnt++] = v;
	}
	return r;
}

static uint64_t iov_bytes(const struct iovec *iov, unsigned int n)
{
	uint64_t total = 0;

	for (unsigned int i = 0; i < n; i++)
		total += iov[i].iov_len;
	return total;
}

/* DISCARD and WRITE_ZEROES carry one range (we advertise max_*_seg = 1). */
static int blk_range(const struct virtq_chain *c, unsigned int *seg, size_t *off, uint64_t *offset,
		     uint64_t *len)
{
	struct blk_range range;

	if (!chain_read(c, seg, off, &range, sizeof(range)))
		return -EINVAL;
	if (range.num_sectors > BLK_MAX_DISCARD_SECTORS ||
	    range.sector > (UINT64_MAX >> SECTOR_SHIFT) - range.num_sectors)
		return -EINVAL;
	*offset = range.sector << SECTOR_SHIFT;
	*len = (uint64_t)range.num_sectors << SECTOR_SHIFT;
	return 0;
}

static void blk_handle(struct virtio_blk *blk, unsigned int q, const struct virtq_chain *c)
{
	unsigned int seg = 0;
	size_t off = 0;
	struct blk_hdr hdr;
	struct blk_request *r;
	uint8_t *status = NULL;
	const struct iovec *last;

	pthread_mutex_lock(&blk->lock);
	blk->inflight++;
	pthread_mutex_unlock(&blk->lock);

	/* §5.2.6: the status byte is the last writable byte of the chain. */
	if (c->nr_in) {
		last = &c->iov[c->nr_out + c->nr_in - 1];
		status = (uint8_t *)last->iov_base + last->iov_len - 1;
	}
	if (!status || !chain_read(c, &seg, &off, &hdr, sizeof(hdr))) {
		blk_complete_now(blk, q, c->head, status, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	switch (hdr.type) {
	case VIRTIO_BLK_T_GET_ID: {
		r = blk_build(blk, c, seg, off, true);
		if (!r) {
			blk_complete_now(blk, q, c->head, status, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		/* Up to 20 bytes, not NUL-terminated when it fills them. */
		size_t done = 0;

		for (unsigned int i = 0; i < r->iovcnt && done < VIRTIO_BLK_ID_BYTES; i++) {
			size_t n = r->iov[i].iov_len;

			if (n > VIRTIO_BLK_ID_BYTES - done)
				n = VIRTIO_BLK_ID_BYTES - done;
			memcpy(r->iov[i].iov_base, blk->id + done, n);
			done += n;
		}
		free(r);
		blk_complete_now(blk, q, c->head, status, VIRTIO_BLK_S_OK, done + 1);
		return;
	}
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
	case VIRTIO_BLK_T_FLUSH:
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		break;
	default:
		blk_complete_now(blk, q, c->head, status, VIRTIO_BLK_S_UNSUPP, 1);
		return;
	}

	r = blk_build(blk, c, seg, off, hdr.type == VIRTIO_BLK_T_IN);
	if (!r) {
		blk_complete_now(blk, q, c->head, status, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	r->blk = blk;
	r->queue = q;
	r->head = c->head;
	r->status = status;
	r->in_len = 1;
	r->dreq.done = blk_done;
	r->dreq.iov = r->iov;
	r->dreq.iovcnt = r->iovcnt;
	if (hdr.sector > (UINT64_MAX >> SECTOR_SHIFT)) {
		free(r);
		blk_complete_now(blk, q, c->head, status, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	r->dreq.offset = hdr.sector << SECTOR_SHIFT;
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
		r->dreq.op = DISK_READ;
		/* The used length is 32 bits (§2.7.8): a bigger read is not a request we serve. */
		if (iov_bytes(r->iov, r->iovcnt) >= UINT32_MAX) {
			free(r);
			blk_complete_now(blk, q, c->head, status, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		r->in_len = iov_bytes(r->iov, r->iovcnt) + 1;
		break;
	case VIRTIO_BLK_T_OUT:
		r->dreq.op = DISK_WRITE;
		break;
	case VIRTIO_BLK_T_FLUSH:
		r->dreq.op = DISK_FLUSH;
		break;
	default:
		r->dreq.op = hdr.type == VIRTIO_BLK_T_DISCARD ? DISK_DISCARD : DISK_WRITE_ZEROES;
		if (blk_range(c, &seg, &off, &r->dreq.offset, &r->dreq.len)) {
			free(r);
			blk_complete_now(blk, q, c->head, status, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		break;
	}
	/* The block layer checks bounds, alignment and read-only, and completes through done. */
	disk_submit(blk->disk, &r->dreq);
}

static void blk_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_blk *blk = (struct virtio_blk *)vdev;
	struct virtq_chain *c = &blk->chains[q];

	while (virtio_pop(vdev, q, c) > 0)
		blk_handle(blk, q, c);
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
	.config_read = blk_config_read,
	.reset = blk_reset,
};

static void blk_fill_config(struct virtio_blk *blk, unsigned int queues)
{
	uint8_t *c = blk->config;

	put_le(c + 0, disk_size(blk->disk) >> SECTOR_SHIFT, 8);	/* capacity */
	put_le(c + 12, BLK_SEG_MAX, 4);					/* seg_max */
	put_le(c + 20, disk_block_size(blk->disk), 4);			/* blk_size */
	put_le(c + 34, queues, 2);					/* num_queues */
	put_le(c + 36, BLK_MAX_DISCARD_SECTORS, 4);			/* max_discard_sectors */
	put_le(c + 40, 1, 4);						/* max_discard_seg */
	put_le(c + 44, disk_block_size(blk->disk) >> SECTOR_SHIFT, 4);	/* alignment */
	put_le(c + 48, BLK_MAX_DISCARD_SECTORS, 4);			/* max_write_zeroes_sectors */
	put_le(c + 52, 1, 4);						/* max_write_zeroes_seg */
	c[56] = 1;	/* write_zeroes_may_unmap */
}

int virtio_blk_create(struct vm *vm, struct pci_bus *bus, struct irq_routing *irq,
		      struct disk *disk, const struct virtio_blk_options *o)
{
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	unsigned int queues = o->queues ? o->queues : 1;
	uint64_t features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX) |
			    (1ULL << VIRTIO_F_INDIRECT_DESC) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
			    (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH) |
			    (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);

	if (!blk)
		return -ENOMEM;
	if (queues > VIRTIO_MAX_QUEUES - 1)
		queues = VIRTIO_MAX_QUEUES - 1;
	blk->chains = calloc(queues, sizeof(*blk->chains));
	if (!blk->chains)
		return -ENOMEM;
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
		.name = "virtio-blk",
		.device_id = VIRTIO_ID_BLOCK,
		.host_features = features,
		.nr_queues = queues,
		.queue_max_size = BLK_QUEUE_SIZE,
		.config_size = BLK_CONFIG_SIZE,
	};
	return virtio_pci_create(&blk->transport, vm, bus, irq, &blk->vdev);
}
