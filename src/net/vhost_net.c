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

/* The memory table of struct vhost_memory, with room for every region of guest RAM. */
struct vhost_mem_table {
	struct vhost_memory hdr;
	struct vhost_memory_region regions[ARRAY_SIZE(((struct guest_memory *)0)->regions)];
};

static int vhost_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

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

static int vhost_set_mem_table(int fd, const struct guest_memory *mem)
{
	struct vhost_mem_table t;
	unsigned int i;

	memset(&t, 0, sizeof(t));
	if (mem->nr_regions > ARRAY_SIZE(t.regions))
		return -E2BIG;
	t.hdr.nregions = mem->nr_regions;
	for (i = 0; i < mem->nr_regions; i++) {
		t.regions[i].guest_phys_addr = mem->regions[i].gpa;
		t.regions[i].memory_size = mem->regions[i].size;
		t.regions[i].userspace_addr = (uintptr_t)mem->regions[i].host;
	}
	return vhost_ioctl(fd, VHOST_SET_MEM_TABLE, &t);
}

/* One ring of the instance (ring: VHOST_RING_RX/_TX) from virtio queue q of vdev. */
static int vhost_set_ring(int fd, struct virtio_device *vdev, unsigned int q, unsigned int ring)
{
	struct virtio_vhost_queue v;
	struct vhost_vring_state num, base;
	struct vhost_vring_addr addr;
	struct vhost_vring_file kick, call;
	void *desc, *avail, *used;
	int r;

	r = virtio_queue_vhost_view(vdev, q, &v);
	if (r < 0)
		return r;
	/* Without an MSI-X vector there is no irqfd: the kernel could not interrupt the driver. */
	if (v.call_fd < 0)
		return -ENOTSUP;
	/*
	 * virtio 1.2 §2.7: descriptor table 16 bytes each; driver area flags, idx, ring and
	 * used_event (6 + 2 * size); device area flags, idx, ring of 8-byte elements and
	 * avail_event (6 + 8 * size). The kernel gets host addresses, so each must be RAM.
	 */
	desc = guest_ptr(v.mem, v.desc, 16ULL * v.size);
	avail = guest_ptr(v.mem, v.avail, 6 + 2ULL * v.size);
	used = guest_ptr(v.mem, v.used, 6 + 8ULL * v.size);
	if (!desc || !avail || !used)
		return -EFAULT;

	num = (struct vhost_vring_state){ .index = ring, .num = v.size };
	r = vhost_ioctl(fd, VHOST_SET_VRING_NUM, &num);
	if (r < 0)
		return r;
	/* At DRIVER_OK the driver has made nothing available yet that the device has seen. */
	base = (struct vhost_vring_state){ .index = ring, .num = 0 };
	r = vhost_ioctl(fd, VHOST_SET_VRING_BASE, &base);
	if (r < 0)
		return r;
	addr = (struct vhost_vring_addr){
		.index = ring,
		.desc_user_addr = (uintptr_t)desc,
		.avail_user_addr = (uintptr_t)avail,
		.used_user_addr = (uintptr_t)used,
	};
	r = vhost_ioctl(fd, VHOST_SET_VRING_ADDR, &addr);
	if (r < 0)
		return r;
	kick = (struct vhost_vring_file){ .index = ring, .fd = v.kick_fd };
	r = vhost_ioctl(fd, VHOST_SET_VRING_KICK, &kick);
	if (r < 0)
		return r;
	call = (struct vhost_vring_file){ .index = ring, .fd = v.call_fd };
	return vhost_ioctl(fd, VHOST_SET_VRING_CALL, &call);
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
		r = vhost_set_ring(fd, vdev, 2 * pair + ring, ring);
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
