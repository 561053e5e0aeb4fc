/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock packets (virtio 1.2 §5.10.6): the header every packet starts with, read from a
 * guest's transmit chain (hostile: read once, its length checked against the chain) and written
 * to a receive chain. No state: the connections are vsock.c's.
 */
#ifndef NKVM_VIRTIO_VSOCK_PKT_H
#define NKVM_VIRTIO_VSOCK_PKT_H

#include <linux/virtio_vsock.h>
#include <linux/vm_sockets.h> /* VMADDR_CID_HOST */
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/queue.h"

#define VSOCK_HDR_LEN sizeof(struct virtio_vsock_hdr) /* 44 */
/* The largest payload nkvm takes in one packet: Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE. */
#define VSOCK_MAX_PAYLOAD (64 * 1024)

/* A header in host byte order. */
struct vsock_pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

/*
 * Reads the header of a transmit chain from the guest of CID guest_cid into *p. Returns 0 for a
 * packet to act on, or:
 *   -EBADMSG  the readable part is shorter than the header (nothing can be answered: drop);
 *   -EPERM    src_cid is not the guest's or dst_cid is not the host's (spoofed: drop);
 *   -EMSGSIZE len runs past the chain's readable bytes or above VSOCK_MAX_PAYLOAD (answer RST);
 *   -EPROTONOSUPPORT  type is not VIRTIO_VSOCK_TYPE_STREAM (answer RST);
 *   -EOPNOTSUPP  op is not one of §5.10.6's (answer RST).
 * *p holds the fields read whenever the header was whole (every error but -EBADMSG).
 */
int vsock_pkt_parse(const struct virtq_chain *c, uint64_t guest_cid, struct vsock_pkt *p);

/* Copies the payload (p->len bytes after the header, already checked) into dst. */
void vsock_pkt_copy_payload(const struct virtq_chain *c, const struct vsock_pkt *p, void *dst);

/*
 * The writable segments of a receive chain after the header, cut to max bytes, as at most nr
 * iovecs in iov (for a readv straight into guest memory). Returns how many; 0 when the chain has
 * no room past the header.
 */
unsigned int vsock_rx_payload_iov(const struct virtq_chain *c, size_t max, struct iovec *iov,
				  unsigned int nr);

/* Writes p's header (little-endian) at the start of a receive chain. -EMSGSIZE: under 44 bytes. */
int vsock_rx_put_hdr(const struct virtq_chain *c, const struct vsock_pkt *p);

#endif
