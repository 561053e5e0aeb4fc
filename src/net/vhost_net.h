/* SPDX-License-Identifier: MIT */
/*
 * vhost-net: the kernel serves a virtio-net queue pair itself, between the guest's rings and a
 * TAP file descriptor, with no exit to nkvm and no copy through nkvm's threads. One vhost
 * instance (/dev/vhost-net open) per queue pair, so multi-queue works too.
 */
#ifndef NKVM_NET_VHOST_NET_H
#define NKVM_NET_VHOST_NET_H

#include <stddef.h>
#include <stdint.h>

struct vhost_net;
struct virtio_device;

/*
 * Opens nr_pairs instances and makes nkvm their owner (VHOST_SET_OWNER). Returns 0, or a
 * negative errno with one line in err (-ENOENT/-EACCES: /dev/vhost-net missing or not ours).
 */
int vhost_net_open(struct vhost_net **vn, unsigned int nr_pairs, char *err, size_t errlen);

/* What the kernel's vhost-net offers (VHOST_GET_FEATURES): VIRTIO_NET_F_, VIRTIO_F_, ring bits. */
uint64_t vhost_net_features(const struct vhost_net *vn);

/*
 * Hands queue pair `pair` (RX queue 2 * pair, TX 2 * pair + 1 of vdev, as virtio-net numbers
 * them, §5.1.2) to the kernel with tap_fd as its back end: the negotiated features, the memory
 * table from guest memory, each ring's size, base index and addresses, its kick (the queue's
 * ioeventfd) and call (the irqfd of its MSI-X vector), VHOST_NET_SET_BACKEND last. Called at
 * DRIVER_OK, with both queues' rings unused by nkvm. Returns 0 or a negative errno (-ENOTSUP: a
 * queue has no MSI-X vector, so the kernel could not interrupt the guest).
 */
int vhost_net_start(struct vhost_net *vn, struct virtio_device *vdev, unsigned int pair,
		    int tap_fd);

/* Takes the pair back from the kernel (backend detached); for a reset. Idempotent. */
void vhost_net_stop(struct vhost_net *vn, unsigned int pair);

/* Stops every pair and closes the instances. NULL is fine. */
void vhost_net_close(struct vhost_net *vn);

#endif
