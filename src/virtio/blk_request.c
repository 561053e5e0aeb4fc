// SPDX-License-Identifier: MIT
#include <stdbool.h>
#include <string.h>

#include "virtio/blk_request.h"

/* Copies len bytes from the readable segments at (*seg, *off); false when they run out. */
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

/* The data segments, as blk_request_parsed describes them. */
static void collect_data(const struct virtq_chain *c, unsigned int seg, size_t off, bool to_guest,
			 struct blk_request_parsed *p)
{
	unsigned int first = to_guest ? c->nr_out : seg;
	unsigned int end = to_guest ? c->nr_out + c->nr_in : c->nr_out;

	p->iovcnt = 0;
	p->data_len = 0;
	for (unsigned int i = first; i < end; i++) {
		struct iovec v = c->iov[i];

		if (!to_guest && i == seg) {
			v.iov_base = (uint8_t *)v.iov_base + off;
			v.iov_len -= off;
		}
		if (to_guest && i == end - 1)
			v.iov_len--; /* the status byte is not data */
		if (!v.iov_len)
			continue;
		p->iov[p->iovcnt++] = v;
		p->data_len += v.iov_len;
	}
}

int blk_request_parse(const struct virtq_chain *c, struct blk_request_parsed *p, struct iovec *iov)
{
	unsigned int seg = 0;
	size_t off = 0;
	struct virtio_blk_outhdr hdr;
	/* One range per DISCARD/WRITE_ZEROES request: the device advertises max_*_seg = 1. */
	struct virtio_blk_discard_write_zeroes range;

	memset(p, 0, sizeof(*p));
	p->iov = iov;
	/* §5.2.6: the status byte is the last writable byte of the chain. */
	if (c->nr_in) {
		const struct iovec *last = &c->iov[c->nr_out + c->nr_in - 1];

		p->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	}
	/* Copied out once: the guest may change its memory while we look (no double fetch). */
	if (!p->status || !chain_read(c, &seg, &off, &hdr, sizeof(hdr)))
		return VIRTIO_BLK_S_IOERR;
	p->type = hdr.type;
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_GET_ID:
		collect_data(c, seg, off, true, p);
		/* The used length is 32 bits (§2.7.8) and counts the status byte. */
		if (p->data_len >= UINT32_MAX)
			return VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_OUT:
	case VIRTIO_BLK_T_FLUSH:
		collect_data(c, seg, off, false, p);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (!chain_read(c, &seg, &off, &range, sizeof(range)) ||
		    range.sector > (UINT64_MAX >> VIRTIO_BLK_SECTOR_SHIFT) - range.num_sectors)
			return VIRTIO_BLK_S_IOERR;
		p->offset = range.sector << VIRTIO_BLK_SECTOR_SHIFT;
		p->len = (uint64_t)range.num_sectors << VIRTIO_BLK_SECTOR_SHIFT;
		return VIRTIO_BLK_S_OK;
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	if (hdr.sector > (UINT64_MAX >> VIRTIO_BLK_SECTOR_SHIFT))
		return VIRTIO_BLK_S_IOERR;
	p->offset = hdr.sector << VIRTIO_BLK_SECTOR_SHIFT;
	return VIRTIO_BLK_S_OK;
}

bool blk_alone_step(unsigned int *streak, bool alone)
{
	if (!alone) {
		*streak = 0;
		return false;
	}
	if (*streak < BLK_ALONE_STREAK) {
		++*streak;
		return false;
	}
	return true;
}
