// SPDX-License-Identifier: MIT
/* virtio-net's checks of what the guest wrote (net_hdr.h). */
#include <endian.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <string.h>

#include "virtio/net_hdr.h"

#define F(bit) (1ULL << (bit))

uint64_t net_offloads_consistent(uint64_t o)
{
	o &= NET_OFFLOAD_FEATURES;
	/* §5.1.3.1: HOST_TSO4/6 require CSUM, HOST_ECN requires a HOST_TSO; so on the guest side. */
	if (!(o & F(VIRTIO_NET_F_CSUM)))
		o &= ~(F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6));
	if (!(o & (F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6))))
		o &= ~F(VIRTIO_NET_F_HOST_ECN);
	if (!(o & F(VIRTIO_NET_F_GUEST_CSUM)))
		o &= ~(F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6));
	if (!(o & (F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6))))
		o &= ~F(VIRTIO_NET_F_GUEST_ECN);
	return o;
}

size_t net_iov_to_buf(const struct iovec *iov, unsigned int n, size_t off, void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned int i = 0; i < n && done < len; i++) {
		size_t take;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - off;
		if (take > len - done)
			take = len - done;
		memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + off, take);
		done += take;
		off = 0;
	}
	return done;
}

size_t net_iov_from_buf(const struct iovec *iov, unsigned int n, size_t off, const void *buf,
			size_t len)
{
	size_t done = 0;

	for (unsigned int i = 0; i < n && done < len; i++) {
		size_t take;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - off;
		if (take > len - done)
			take = len - done;
		memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)buf + done, take);
		done += take;
		off = 0;
	}
	return done;
}

/* §5.1.6.2.1: what the header may ask of the device, given what was negotiated. */
static int net_tx_check_hdr(const struct virtio_net_hdr_v1 *h, uint64_t features, uint32_t len)
{
	uint8_t gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	uint16_t hdr_len = le16toh(h->hdr_len);

	/* DATA_VALID and RSC_INFO are the device's to set, on receive only. */
	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return -EINVAL;
	if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !(features & F(VIRTIO_NET_F_CSUM)))
		return -EINVAL;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		if (h->gso_type & VIRTIO_NET_HDR_GSO_ECN)
			return -EINVAL;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!(features & F(VIRTIO_NET_F_HOST_TSO4)))
			return -EINVAL;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!(features & F(VIRTIO_NET_F_HOST_TSO6)))
			return -EINVAL;
		break;
	default:
		return -EINVAL; /* UDP (UFO) is never offered; other values are not types */
	}
	if (gso != VIRTIO_NET_HDR_GSO_NONE) {
		/* A segmented frame comes with a partial checksum and a segment size. */
		if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || !h->gso_size)
			return -EINVAL;
		if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) &&
		    !(features & F(VIRTIO_NET_F_HOST_ECN)))
			return -EINVAL;
	}
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		/* The 16-bit checksum field itself lies inside the frame. */
		if ((uint32_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2 > len)
			return -ERANGE;
	}
	if (hdr_len > len)
		return -ERANGE;
	return 0;
}

int net_tx_parse(const struct virtq_chain *c, uint64_t features, struct net_tx_frame *f,
		 struct iovec *iov)
{
	size_t skip = NET_HDR_LEN;
	unsigned int n = 0;

	memset(f, 0, sizeof(*f));
	/* §5.1.6.2: a transmit buffer is the header and the frame, all device-readable. */
	if (c->nr_in)
		return -EINVAL;
	if (c->out_len < NET_HDR_LEN + ETH_HLEN)
		return -ENODATA;
	if (c->out_len > NET_TX_MAX)
		return -EMSGSIZE;
	if (net_iov_to_buf(c->iov, c->nr_out, 0, &f->hdr, NET_HDR_LEN) != NET_HDR_LEN)
		return -ENODATA;
	f->len = c->out_len - NET_HDR_LEN;
	for (unsigned int i = 0; i < c->nr_out; i++) {
		size_t seg = c->iov[i].iov_len;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		iov[n++] = (struct iovec){ (uint8_t *)c->iov[i].iov_base + skip, seg - skip };
		skip = 0;
	}
	f->iovcnt = n;
	return net_tx_check_hdr(&f->hdr, features, f->len);
}

/* §5.1.6.5.2: two tables of 6-byte addresses, each after its le32 count, exactly filling data. */
static bool net_ctrl_mac_table_ok(const struct iovec *iov, unsigned int n, size_t off, uint64_t len)
{
	uint64_t at = 0;

	for (int t = 0; t < 2; t++) {
		uint32_t entries;

		if (len - at < 4 || net_iov_to_buf(iov, n, off + at, &entries, 4) != 4)
			return false;
		at += 4 + (uint64_t)le32toh(entries) * ETH_ALEN;
		if (at > len)
			return false;
	}
	return at == len;
}

uint8_t net_ctrl_decide(const struct virtq_chain *c, uint64_t features, unsigned int max_pairs,
			struct net_ctrl_action *a, uint8_t **ack)
{
	const struct iovec *out = c->iov;
	struct virtio_net_ctrl_hdr h;
	uint64_t len;
	uint16_t pairs;
	uint8_t on;

	memset(a, 0, sizeof(*a));
	*ack = NULL;
	/* §5.1.6.5: the ack is the device-writable byte after the readable command. */
	for (unsigned int i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
		if (c->iov[i].iov_len) {
			*ack = c->iov[i].iov_base;
			break;
		}
	}
	if (c->out_len < sizeof(h) || net_iov_to_buf(out, c->nr_out, 0, &h, sizeof(h)) != sizeof(h))
		return VIRTIO_NET_ERR;
	len = c->out_len - sizeof(h);
	switch (h.class) {
	case VIRTIO_NET_CTRL_RX:
		/* §5.1.6.5.1: PROMISC and ALLMULTI with CTRL_RX, one byte on/off; accepted. */
		if (!(features & F(VIRTIO_NET_F_CTRL_RX)) || len != 1 ||
		    (h.cmd != VIRTIO_NET_CTRL_RX_PROMISC && h.cmd != VIRTIO_NET_CTRL_RX_ALLMULTI))
			return VIRTIO_NET_ERR;
		net_iov_to_buf(out, c->nr_out, sizeof(h), &on, 1);
		return on <= 1 ? VIRTIO_NET_OK : VIRTIO_NET_ERR;
	case VIRTIO_NET_CTRL_MAC:
		/* §5.1.6.5.2: the filter is accepted; nkvm passes every frame (as promiscuous). */
		if (!(features & F(VIRTIO_NET_F_CTRL_RX)) || h.cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET)
			return VIRTIO_NET_ERR;
		return net_ctrl_mac_table_ok(out, c->nr_out, sizeof(h), len) ? VIRTIO_NET_OK :
									       VIRTIO_NET_ERR;
	case VIRTIO_NET_CTRL_ANNOUNCE:
		if (h.cmd != VIRTIO_NET_CTRL_ANNOUNCE_ACK || len)
			return VIRTIO_NET_ERR;
		a->announce_ack = true;
		return VIRTIO_NET_OK;
	case VIRTIO_NET_CTRL_MQ:
		/* §5.1.6.5.5: virtqueue_pairs in 1..max_virtqueue_pairs, with MQ negotiated. */
		if (!(features & F(VIRTIO_NET_F_MQ)) || h.cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET ||
		    len != sizeof(pairs))
			return VIRTIO_NET_ERR;
		net_iov_to_buf(out, c->nr_out, sizeof(h), &pairs, sizeof(pairs));
		pairs = le16toh(pairs);
		if (pairs < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN || pairs > max_pairs)
			return VIRTIO_NET_ERR;
		a->pairs = pairs;
		return VIRTIO_NET_OK;
	default:
		return VIRTIO_NET_ERR;
	}
}
