/* SPDX-License-Identifier: MIT */
/*
 * A NIC's host side as virtio-net's userspace data path sees it: per queue pair one non-blocking
 * file descriptor that carries whole Ethernet frames, one frame per read and per write (a TAP
 * queue, or the datagram socket that leads to the user-mode network stack). The device reads
 * RX frames from it and writes TX frames to it on its queue threads; a back end that has its own
 * work (the user-mode stack) does it on a thread of its own, behind the other end.
 */
#ifndef NKVM_NET_BACKEND_H
#define NKVM_NET_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

/* At most this many RX/TX pairs per NIC: 2 * 16 + 1 (control) queues fit VIRTIO_MAX_QUEUES. */
#define NET_MAX_QUEUE_PAIRS 16

struct net_backend;

struct net_backend_ops {
	/*
	 * Optional: at DRIVER_OK, the offloads the driver accepted (its negotiated VIRTIO_NET_F_
	 * GUEST_* bits), so that the back end only hands over frames the guest can take
	 * (TUNSETOFFLOAD). Returns 0 or a negative errno.
	 */
	int (*set_offloads)(struct net_backend *be, uint64_t features);
	/* Closes the descriptors, stops the back end's own thread, frees it. */
	void (*destroy)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
	char name[64]; /* for messages and stats: "tap nkvm0", "user" */
	unsigned int nr_pairs; /* fds[0..nr_pairs) are valid */
	int fds[NET_MAX_QUEUE_PAIRS];
	/*
	 * Every frame on fds begins with a struct virtio_net_hdr_v1 (12 bytes: the header of a
	 * VERSION_1 device, num_buffers included), in both directions; false: bare frames, with
	 * complete checksums both ways.
	 */
	bool vnet_hdr;
	/*
	 * The VIRTIO_NET_F_ offload bits the back end can take (CSUM, GUEST_CSUM, HOST_TSO4/6,
	 * GUEST_TSO4/6, HOST_ECN, GUEST_ECN...): the device offers no other offload.
	 */
	uint64_t offloads;
	/*
	 * The queues may be served in the kernel by vhost-net (a TAP asked for vhost=on|auto);
	 * vhost_required: vhost=on, so a failure to set it up fails the device instead of falling
	 * back to the userspace data path.
	 */
	bool vhost, vhost_required;
	/* Statistics (issue 17's stat): updated by the device, read without locks. */
};

static inline void net_backend_destroy(struct net_backend *be)
{
	if (be)
		be->ops->destroy(be);
}

#endif
