// SPDX-License-Identifier: MIT
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "virtio/vsock_pkt.h"

/* Copies len bytes starting at byte off of segments iov[0..n) into dst; false when short. */
static bool iov_read(const struct iovec *iov, unsigned int n, uint64_t off, void *dst, size_t len)
{
	uint8_t *d = dst;

	for (unsigned int i = 0; i < n && len; i++) {
		size_t take;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - off;
		if (take > len)
			take = len;
		memcpy(d, (uint8_t *)iov[i].iov_base + off, take);
		d += take;
		len -= take;
		off = 0;
	}
	return len == 0;
}

int vsock_pkt_parse(const struct virtq_chain *c, uint64_t guest_cid, struct vsock_pkt *p)
{
	struct virtio_vsock_hdr h;

	memset(p, 0, sizeof(*p));
	/* §5.10.6.6: the header leads the driver's buffer; it may be split over descriptors. */
	if (c->out_len < VSOCK_HDR_LEN || !iov_read(c->iov, c->nr_out, 0, &h, sizeof(h)))
		return -EBADMSG;
	/* Each field read once, from the copy: the guest may change its buffer meanwhile. */
	p->src_cid = le64toh(h.src_cid);
	p->dst_cid = le64toh(h.dst_cid);
	p->src_port = le32toh(h.src_port);
	p->dst_port = le32toh(h.dst_port);
	p->len = le32toh(h.len);
	p->type = le16toh(h.type);
	p->op = le16toh(h.op);
	p->flags = le32toh(h.flags);
	p->buf_alloc = le32toh(h.buf_alloc);
	p->fwd_cnt = le32toh(h.fwd_cnt);
	/* §5.10.6.1: the device may not let a driver use another CID than its own. */
	if (p->src_cid != guest_cid || p->dst_cid != VMADDR_CID_HOST)
		return -EPERM;
	if (p->len > VSOCK_MAX_PAYLOAD || p->len > c->out_len - VSOCK_HDR_LEN)
		return -EMSGSIZE;
	if (p->type != VIRTIO_VSOCK_TYPE_STREAM)
		return -EPROTONOSUPPORT;
	if (p->op < VIRTIO_VSOCK_OP_REQUEST || p->op > VIRTIO_VSOCK_OP_CREDIT_REQUEST)
		return -EOPNOTSUPP;
	return 0;
}

void vsock_pkt_copy_payload(const struct virtq_chain *c, const struct vsock_pkt *p, void *dst)
{
	iov_read(c->iov, c->nr_out, VSOCK_HDR_LEN, dst, p->len);
}

unsigned int vsock_rx_payload_iov(const struct virtq_chain *c, size_t max, struct iovec *iov,
				  unsigned int nr)
{
	const struct iovec *in = c->iov + c->nr_out;
	uint64_t skip = VSOCK_HDR_LEN;
	unsigned int n = 0;

	for (unsigned int i = 0; i < c->nr_in && n < nr && max; i++) {
		size_t len = in[i].iov_len;
		uint8_t *base = in[i].iov_base;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		base += skip;
		len -= skip;
		skip = 0;
		if (len > max)
			len = max;
		iov[n++] = (struct iovec){ base, len };
		max -= len;
	}
	return n;
}

int vsock_rx_put_hdr(const struct virtq_chain *c, const struct vsock_pkt *p)
{
	struct virtio_vsock_hdr h = {
		.src_cid = htole64(p->src_cid),
		.dst_cid = htole64(p->dst_cid),
		.src_port = htole32(p->src_port),
		.dst_port = htole32(p->dst_port),
		.len = htole32(p->len),
		.type = htole16(p->type),
		.op = htole16(p->op),
		.flags = htole32(p->flags),
		.buf_alloc = htole32(p->buf_alloc),
		.fwd_cnt = htole32(p->fwd_cnt),
	};
	const uint8_t *s = (const uint8_t *)&h;
	size_t left = sizeof(h);

	if (c->in_len < sizeof(h))
		return -EMSGSIZE;
	for (unsigned int i = c->nr_out; i < c->nr_out + c->nr_in && left; i++) {
		size_t take = c->iov[i].iov_len < left ? c->iov[i].iov_len : left;

		memcpy(c->iov[i].iov_base, s, take);
		s += take;
		left -= take;
	}
	return 0;
}
