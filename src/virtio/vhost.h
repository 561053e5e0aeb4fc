/* SPDX-License-Identifier: MIT */
/*
 * What every vhost back end (vhost-net, vhost-vsock) does alike to hand virtio queues to the
 * kernel (<linux/vhost.h>): the guest's memory table and one ring's size, base, addresses, kick
 * and call descriptors.
 */
#ifndef NKVM_VIRTIO_VHOST_H
#define NKVM_VIRTIO_VHOST_H

struct guest_memory;
struct virtio_device;

/* ioctl(fd, req, arg): 0 or a negative errno. */
int vhost_ioctl(int fd, unsigned long req, void *arg);

/* VHOST_SET_MEM_TABLE from guest memory's regions. 0 or a negative errno (-E2BIG). */
int vhost_set_mem_table(int fd, const struct guest_memory *mem);

/*
 * The instance's ring `ring` from virtio queue q of vdev as the driver set it up (at DRIVER_OK,
 * nothing used yet): size, base 0, addresses, the queue's ioeventfd as kick and its MSI-X
 * irqfd as call. 0 or a negative errno: -ENOTSUP when q has no MSI-X vector (the kernel could
 * not interrupt the driver), -EFAULT when a ring is not in guest RAM, or virtio_queue_vhost_view's.
 */
int vhost_set_vring(int fd, struct virtio_device *vdev, unsigned int q, unsigned int ring);

#endif
