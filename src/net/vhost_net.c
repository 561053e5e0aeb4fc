// SPDX-License-Identifier: MIT
/*
 * vhost-net: one /dev/vhost-net instance per queue pair, each serving the pair's RX and TX
 * rings in the kernel against one TAP queue. The reference is <linux/vhost.h> and the kernel's
 * drivers/vhost/net.c: vhost-net's own ring 0 is RX and ring 1 is TX (VHOST_NET_VQ_RX/_TX).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/util.h"
#include "net/backend.h"
#include "net/vhost_net.h"
#include "virtio/vhost.h"
#include "virtio/device.h"
#include "vmm/memory.h"

#define VHOST_NET_PATH "/dev/vhost-net"

/* vhost-net's rings within one instance (drivers/vhost/net.c: VHOST_NET_VQ_RX, VHOST_NET_VQ_TX). */
enum { VHOST_RING_RX, VHOST_RING_TX, VHOST_RINGS };

struct vhost_net {
	unsigned int nr_pairs;
	uint64_t features; /* VHOST_GET_FEATURES of the first instance; all are alike */
	int fds[NET_MAX_QUEUE_PAIRS];
};

/* Bits that shape the rings or the frames' header (virtio 1.2 §6, §5.1.6). */
#define VHOST_RING_FEATURES                                                   \
	(1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_RING_F_EVENT_IDX |       \
	 1ULL << VIRTIO_RING_F_INDIRECT_DESC | 1ULL << VIRTIO_F_RING_PACKED | \
	 1ULL << VIRTIO_F_IN_ORDER | 1ULL << VIRTIO_F_ACCESS_PLATFORM |       \
	 1ULL << VIRTIO_NET_F_MRG_RXBUF)

int vhost_net_open(struct vhost_net **out, unsigned int nr_pairs, char *err, size_t errlen)
{
	struct vhost_net *vn;
	unsigned int i;
	int r;

	*out = NULL;
	if (nr_pairs == 0 || nr_pairs > NET_MAX_QUEUE_PAIRS)
		return err_set(err, errlen, -EINVAL, "vhost-net: %u queue pairs (1 to %u)",
			       nr_pairs, NET_MAX_QUEUE_PAIRS);
	vn = calloc(1, sizeof(*vn));
	if (!vn)
		return err_set(err, errlen, -ENOMEM, "vhost-net: out of memory");
	for (i = 0; i < NET_MAX_QUEUE_PAIRS; i++)
		vn->fds[i] = -1;
	vn->nr_pairs = nr_pairs;
	for (i = 0; i < nr_pairs; i++) {
		vn->fds[i] = open(VHOST_NET_PATH, O_RDWR | O_CLOEXEC);
		if (vn->fds[i] < 0) {
			r = -errno;
			if (r == -ENOENT)
				err_set(err, errlen, r,
					VHOST_NET_PATH ": %s (is the vhost_net module loaded?)",
					strerror(-r));
			else
				err_set(err, errlen, r, VHOST_NET_PATH ": %s", strerror(-r));
			goto fail;
		}
		/* The instance's rings and memory table belong to this process from now on. */
		r = vhost_ioctl(vn->fds[i], VHOST_SET_OWNER, NULL);
		if (r < 0) {
			err_set(err, errlen, r, VHOST_NET_PATH ": VHOST_SET_OWNER: %s",
				strerror(-r));
			goto fail;
		}
		if (i == 0) {
			r = vhost_ioctl(vn->fds[i], VHOST_GET_FEATURES, &vn->features);
			if (r < 0) {
				err_set(err, errlen, r, VHOST_NET_PATH ": VHOST_GET_FEATURES: %s",
					strerror(-r));
				goto fail;
			}
		}
	}
	*out = vn;
	return 0;
fail:
	vhost_net_close(vn);
	return r;
}

uint64_t vhost_net_features(const struct vhost_net *vn)
{
	return vn->features;
}

static void vhost_set_backend(int fd, unsigned int ring, int tap_fd)
{
	struct vhost_vring_file be = { .index = ring, .fd = tap_fd };

	/* Detaching a ring that was never attached fails harmlessly. */
	(void)vhost_ioctl(fd, VHOST_NET_SET_BACKEND, &be);
}

int vhost_net_start(struct vhost_net *vn, struct virtio_device *vdev, unsigned int pair, int tap_fd)
{
	struct vhost_vring_file be;
	uint64_t features;
	unsigned int ring;
	int fd, r;

	if (!vn || pair >= vn->nr_pairs || 2 * pair + 1 >= vdev->nr_queues)
		return -EINVAL;
	fd = vn->fds[pair];
	/*
	 * A negotiated bit that changes the rings' layout or the header vhost must not be missing
	 * from vhost's own: it would read the rings otherwise than the driver writes them.
	 */
	if (vdev->features & VHOST_RING_FEATURES & ~vn->features)
		return -ENOTSUP;
	/*
	 * What the driver and device agreed on, as far as vhost knows the bits. Not
	 * VHOST_NET_F_VIRTIO_NET_HDR: the TAP takes and gives the vnet header itself
	 * (TUNSETVNETHDRSZ 12), so vhost passes it through (drivers/vhost/net.c: sock_hlen).
	 */
	features = vdev->features & vn->features & ~(1ULL << VHOST_NET_F_VIRTIO_NET_HDR);
	r = vhost_ioctl(fd, VHOST_SET_FEATURES, &features);
	if (r < 0)
		return r;
	r = vhost_set_mem_table(fd, virtio_memory(vdev));
	if (r < 0)
		return r;
	for (ring = 0; ring < VHOST_RINGS; ring++) {
		r = vhost_set_vring(fd, vdev, 2 * pair + ring, ring);
		if (r < 0)
			return r;
	}
	/* The back end last: vhost starts serving a ring as soon as it has one. */
	for (ring = 0; ring < VHOST_RINGS; ring++) {
		be = (struct vhost_vring_file){ .index = ring, .fd = tap_fd };
		r = vhost_ioctl(fd, VHOST_NET_SET_BACKEND, &be);
		if (r < 0) {
			vhost_net_stop(vn, pair);
			return r;
		}
	}
	return 0;
}

void vhost_net_stop(struct vhost_net *vn, unsigned int pair)
{
	unsigned int ring;

	if (!vn || pair >= vn->nr_pairs || vn->fds[pair] < 0)
		return;
	for (ring = 0; ring < VHOST_RINGS; ring++)
		vhost_set_backend(vn->fds[pair], ring, -1);
}

void vhost_net_close(struct vhost_net *vn)
{
	unsigned int i;

	if (!vn)
		return;
	for (i = 0; i < vn->nr_pairs; i++) {
		if (vn->fds[i] < 0)
			continue;
		vhost_net_stop(vn, i);
		close(vn->fds[i]);
	}
	free(vn);
}
