// SPDX-License-Identifier: MIT
/* The steps vhost-net and vhost-vsock share (virtio/vhost.h); the reference is <linux/vhost.h>. */
#include <errno.h>
#include <linux/vhost.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/util.h"
#include "virtio/device.h"
#include "virtio/vhost.h"
#include "vmm/memory.h"

/* The memory table of struct vhost_memory, with room for every region of guest RAM. */
struct vhost_mem_table {
	struct vhost_memory hdr;
	struct vhost_memory_region regions[ARRAY_SIZE(((struct guest_memory *)0)->regions)];
};

int vhost_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

int vhost_set_mem_table(int fd, const struct guest_memory *mem)
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

/* See vhost.h. */
int vhost_set_vring(int fd, struct virtio_device *vdev, unsigned int q, unsigned int ring)
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
