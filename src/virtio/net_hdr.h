/* SPDX-License-Identifier: MIT */
/*
 * virtio-net's checks of what the guest wrote (virtio 1.2 §5.1.6): a transmitted frame's
 * virtio_net_hdr and chain, and a control-queue command. Pure, so that unit tests and a fuzz
 * target reach them without a device; copies between a chain's segments and a flat buffer.
 */
#ifndef NKVM_VIRTIO_NET_HDR_H
#define NKVM_VIRTIO_NET_HDR_H

#include <linux/virtio_net.h> /* VIRTIO_NET_F_*, struct virtio_net_hdr_v1, CTRL_*: §5.1 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/queue.h"

/* §5.1.6: with VERSION_1 the header is always 12 bytes, num_buffers included. */
#define NET_HDR_LEN sizeof(struct virtio_net_hdr_v1)
/* The largest transmitted frame nkvm takes, its header included: a 64 KiB GSO frame. */
#define NET_TX_MAX 65550
/* The offloads the device can offer, when the back end takes them (§5.1.3). */
#define NET_OFFLOAD_FEATURES                                                   \
	((1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM) |     \
	 (1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO6) | \
	 (1ULL << VIRTIO_NET_F_HOST_ECN) | (1ULL << VIRTIO_NET_F_GUEST_TSO4) | \
	 (1ULL << VIRTIO_NET_F_GUEST_TSO6) | (1ULL << VIRTIO_NET_F_GUEST_ECN))

/*
 * offloads without the bits whose §5.1.3.1 dependencies are missing (HOST_TSO4 needs CSUM,
 * HOST_ECN a HOST_TSO, and the same on the guest side), and without any bit outside
 * NET_OFFLOAD_FEATURES.
 */
uint64_t net_offloads_consistent(uint64_t offloads);

/* A frame the guest transmits, checked: its header copied out, its bytes where they lie. */
struct net_tx_frame {
	struct virtio_net_hdr_v1 hdr; /* the guest's, read once: what was checked is what goes */
	uint32_t len; /* the frame's bytes after the header */
	unsigned int iovcnt; /* iov[0..iovcnt): those bytes, in guest memory */
};

/*
 * Checks a transmit chain against the negotiated features (§5.1.6.2) and fills f, iov (room
 * for c->nr_out entries) with the frame after the header. Returns 0, or: -ENODATA (no readable
 * byte, or fewer than the 12 header bytes, or a frame shorter than an Ethernet header),
 * -EINVAL (a device-writable segment, flags other than NEEDS_CSUM or without CSUM negotiated,
 * an unknown gso_type or one whose HOST_ feature was not negotiated, GSO without NEEDS_CSUM
 * or with gso_size 0, ECN without HOST_ECN), -ERANGE (csum_start + csum_offset + 2 or hdr_len
 * past the frame), -EMSGSIZE (more than NET_TX_MAX bytes).
 */
int net_tx_parse(const struct virtq_chain *c, uint64_t features, struct net_tx_frame *f,
		 struct iovec *iov);

/* What a control command asks of the device once acknowledged with VIRTIO_NET_OK. */
struct net_ctrl_action {
	unsigned int pairs; /* VQ_PAIRS_SET: the pairs to use from now on; 0: no change */
	bool announce_ack; /* ANNOUNCE_ACK: clear VIRTIO_NET_S_ANNOUNCE */
};

/*
 * Decides a control command (§5.1.6.5): class and command in the chain's first two readable
 * bytes, their data after, the ack in its first writable byte (*ack; NULL when it has none).
 * Returns VIRTIO_NET_OK with *a filled, or VIRTIO_NET_ERR for a malformed chain, an unknown
 * class or command, one whose feature was not negotiated, or bad data (VQ_PAIRS_SET outside
 * 1..max_pairs, a MAC table whose counts do not match its length).
 */
uint8_t net_ctrl_decide(const struct virtq_chain *c, uint64_t features, unsigned int max_pairs,
			struct net_ctrl_action *a, uint8_t **ack);

/*
 * Copies between a flat buffer and the bytes [off, off + len) of the segments iov[0..n).
 * Return the bytes copied: fewer when the segments end first.
 */
size_t net_iov_to_buf(const struct iovec *iov, unsigned int n, size_t off, void *buf, size_t len);
size_t net_iov_from_buf(const struct iovec *iov, unsigned int n, size_t off, const void *buf,
			size_t len);

#endif
