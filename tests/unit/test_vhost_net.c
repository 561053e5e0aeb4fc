// SPDX-License-Identifier: MIT
/*
 * vhost_net_open's errors, on a /dev of the test's own (a tmpfs in a private mount namespace), so
 * they do not depend on whether this machine has /dev/vhost-net; and the calls vhost_net_start
 * and _stop make, against a recording stand-in for /dev/vhost-net (open and ioctl wrapped, see
 * the Makefile) and for the transport's view of the queues. The data path itself needs the
 * module and a guest: the integration tests prove it in the nested test host.
 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/vhost.h>
#include <linux/virtio_ring.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <linux/virtio_net.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/backend.h"
#include "net/tap.h"
#include "net/vhost_net.h"
#include "virtio/device.h"
#include "vmm/memory.h"

#define VHOST_NET_MAJOR 10 /* misc */
#define VHOST_NET_MINOR 238 /* include/linux/miscdevice.h: VHOST_NET_MINOR */

static const char *isolation_failed;

/* --- a recording /dev/vhost-net ------------------------------------------------------------ */

#define BIT(b) (1ULL << (b))
#define FAKE_FEATURES                                                     \
	(BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_EVENT_IDX) |         \
	 BIT(VIRTIO_RING_F_INDIRECT_DESC) | BIT(VIRTIO_NET_F_MRG_RXBUF) | \
	 BIT(VHOST_NET_F_VIRTIO_NET_HDR) | BIT(VHOST_F_LOG_ALL))
#define MAX_CALLS 64

struct call {
	int inst; /* which open of /dev/vhost-net, from 0 */
	unsigned long req;
	unsigned int index; /* ring, for the per-ring requests */
	uint64_t value; /* features, ring size, base */
	int fd; /* kick, call, backend */
	struct vhost_vring_addr addr;
	unsigned int nregions;
	struct vhost_memory_region regions[2];
};

static struct {
	bool on;
	int fds[4], nr_open;
	struct call calls[MAX_CALLS];
	unsigned int nr_calls;
	unsigned long fail_req; /* this request fails with EIO (the fail_nth'th time) */
	unsigned int fail_nth;
	/* What the transport says of the device's queues, and guest memory. */
	struct virtio_vhost_queue views[4];
	struct guest_memory mem;
} fake;

int __real_open(const char *path, int flags, ...);
int __real_ioctl(int fd, unsigned long req, ...);

int __wrap_open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	if (fake.on && !strcmp(path, "/dev/vhost-net")) {
		assert_true(fake.nr_open < 4);
		assert_int_equal(flags, O_RDWR | O_CLOEXEC);
		fake.fds[fake.nr_open] = eventfd(0, EFD_CLOEXEC);
		return fake.fds[fake.nr_open++];
	}
	va_start(ap, flags);
	mode = va_arg(ap, mode_t);
	va_end(ap);
	return __real_open(path, flags, mode);
}

static int fake_inst(int fd)
{
	for (int i = 0; i < fake.nr_open; i++)
		if (fake.fds[i] == fd)
			return i;
	return -1;
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	struct call *c;
	va_list ap;
	void *arg;
	int inst;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	inst = fake.on ? fake_inst(fd) : -1;
	if (inst < 0)
		return __real_ioctl(fd, req, arg);
	assert_true(fake.nr_calls < MAX_CALLS);
	c = &fake.calls[fake.nr_calls++];
	*c = (struct call){ .inst = inst, .req = req, .fd = -2 };
	switch (req) {
	case VHOST_GET_FEATURES:
		*(uint64_t *)arg = FAKE_FEATURES;
		break;
	case VHOST_SET_FEATURES:
		c->value = *(uint64_t *)arg;
		break;
	case VHOST_SET_MEM_TABLE:
		c->nregions = ((struct vhost_memory *)arg)->nregions;
		assert_true(c->nregions <= 2);
		memcpy(c->regions, ((struct vhost_memory *)arg)->regions,
		       c->nregions * sizeof(c->regions[0]));
		break;
	case VHOST_SET_VRING_NUM:
	case VHOST_SET_VRING_BASE:
		c->index = ((struct vhost_vring_state *)arg)->index;
		c->value = ((struct vhost_vring_state *)arg)->num;
		break;
	case VHOST_SET_VRING_ADDR:
		c->addr = *(struct vhost_vring_addr *)arg;
		c->index = c->addr.index;
		break;
	case VHOST_SET_VRING_KICK:
	case VHOST_SET_VRING_CALL:
	case VHOST_NET_SET_BACKEND:
		c->index = ((struct vhost_vring_file *)arg)->index;
		c->fd = ((struct vhost_vring_file *)arg)->fd;
		break;
	}
	if (req == fake.fail_req && --fake.fail_nth == 0) {
		errno = EIO;
		return -1;
	}
	return 0;
}

int __wrap_virtio_queue_vhost_view(struct virtio_device *vdev, unsigned int q,
				   struct virtio_vhost_queue *out)
{
	if (q >= 4)
		return -EINVAL;
	*out = fake.views[q];
	return 0;
}

const struct guest_memory *__wrap_virtio_memory(struct virtio_device *vdev)
{
	return &fake.mem;
}

#define RAM 0x10000

/* Two pairs' queues in guest RAM below and above the hole; kick 100 + q, call 200 + q. */
static int fake_setup(void **state)
{
	memset(&fake, 0, sizeof(fake));
	fake.on = true;
	fake.mem.nr_regions = 2;
	fake.mem.regions[0] =
		(struct guest_region){ .gpa = 0, .size = RAM, .host = aligned_alloc(4096, RAM) };
	fake.mem.regions[1] = (struct guest_region){ .gpa = MEM_HOLE_END,
						     .size = RAM,
						     .host = aligned_alloc(4096, RAM) };
	memset(fake.mem.regions[0].host, 0, RAM);
	memset(fake.mem.regions[1].host, 0, RAM);
	for (unsigned int q = 0; q < 4; q++) {
		uint64_t at = (q & 1 ? MEM_HOLE_END : 0) + 0x4000 * (q / 2);

		fake.views[q] = (struct virtio_vhost_queue){
			.kick_fd = 100 + q,
			.call_fd = 200 + q,
			.size = 256,
			.desc = at,
			.avail = at + 0x1000,
			.used = at + 0x2000,
			.mem = &fake.mem,
		};
	}
	return 0;
}

static int fake_teardown(void **state)
{
	free(fake.mem.regions[0].host);
	free(fake.mem.regions[1].host);
	fake.on = false;
	return 0;
}

static struct virtio_device negotiated(uint64_t features)
{
	return (struct virtio_device){ .nr_queues = 5, .features = features };
}

static struct vhost_net *open_fake(unsigned int pairs)
{
	struct vhost_net *vn = NULL;
	char err[128] = "";

	assert_int_equal(vhost_net_open(&vn, pairs, err, sizeof(err)), 0);
	assert_non_null(vn);
	assert_int_equal(fake.nr_open, (int)pairs);
	fake.nr_calls = 0;
	return vn;
}

static const struct call *next_call(unsigned int *i, int inst, unsigned long req)
{
	const struct call *c;

	assert_true(*i < fake.nr_calls);
	c = &fake.calls[(*i)++];
	assert_int_equal(c->inst, inst);
	assert_int_equal(c->req, req);
	return c;
}

/* Asserts the calls from *i are a whole start of instance inst: queues 2 * pair and + 1. */
static void assert_start_sequence(unsigned int *i, int inst, unsigned int pair, uint64_t features,
				  int tap_fd)
{
	const struct call *c;

	c = next_call(i, inst, VHOST_SET_FEATURES);
	assert_int_equal(c->value, features);
	c = next_call(i, inst, VHOST_SET_MEM_TABLE);
	assert_int_equal(c->nregions, 2);
	for (unsigned int r = 0; r < 2; r++) {
		assert_int_equal(c->regions[r].guest_phys_addr, fake.mem.regions[r].gpa);
		assert_int_equal(c->regions[r].memory_size, RAM);
		assert_int_equal(c->regions[r].userspace_addr, (uintptr_t)fake.mem.regions[r].host);
	}
	for (unsigned int ring = 0; ring < 2; ring++) {
		const struct virtio_vhost_queue *v = &fake.views[2 * pair + ring];

		c = next_call(i, inst, VHOST_SET_VRING_NUM);
		assert_int_equal(c->index, ring);
		assert_int_equal(c->value, 256);
		c = next_call(i, inst, VHOST_SET_VRING_BASE);
		assert_int_equal(c->index, ring);
		assert_int_equal(c->value, 0);
		c = next_call(i, inst, VHOST_SET_VRING_ADDR);
		assert_int_equal(c->index, ring);
		assert_int_equal(c->addr.desc_user_addr,
				 (uintptr_t)guest_ptr(&fake.mem, v->desc, 1));
		assert_int_equal(c->addr.avail_user_addr,
				 (uintptr_t)guest_ptr(&fake.mem, v->avail, 1));
		assert_int_equal(c->addr.used_user_addr,
				 (uintptr_t)guest_ptr(&fake.mem, v->used, 1));
		assert_int_equal(c->addr.flags, 0); /* no dirty log */
		c = next_call(i, inst, VHOST_SET_VRING_KICK);
		assert_int_equal(c->index, ring);
		assert_int_equal(c->fd, v->kick_fd);
		c = next_call(i, inst, VHOST_SET_VRING_CALL);
		assert_int_equal(c->index, ring);
		assert_int_equal(c->fd, v->call_fd);
	}
	for (unsigned int ring = 0; ring < 2; ring++) {
		c = next_call(i, inst, VHOST_NET_SET_BACKEND);
		assert_int_equal(c->index, ring);
		assert_int_equal(c->fd, tap_fd);
	}
}

static void assert_stop_sequence(unsigned int *i, int inst)
{
	for (unsigned int ring = 0; ring < 2; ring++) {
		const struct call *c = next_call(i, inst, VHOST_NET_SET_BACKEND);

		assert_int_equal(c->index, ring);
		assert_int_equal(c->fd, -1);
	}
}

static void test_open_owns_each_instance_and_reads_the_features(void **state)
{
	struct vhost_net *vn = NULL;
	char err[128] = "";

	assert_int_equal(vhost_net_open(&vn, 2, err, sizeof(err)), 0);
	assert_int_equal(fake.nr_open, 2);
	assert_int_equal(fake.calls[0].req, VHOST_SET_OWNER);
	assert_int_equal(fake.calls[0].inst, 0);
	assert_int_equal(fake.calls[1].req, VHOST_GET_FEATURES);
	assert_int_equal(fake.calls[2].req, VHOST_SET_OWNER);
	assert_int_equal(fake.calls[2].inst, 1);
	assert_int_equal(vhost_net_features(vn), FAKE_FEATURES);
	vhost_net_close(vn);
}

static void test_start_sets_features_memory_and_rings_then_the_backend_last(void **state)
{
	/*
	 * MAC and CTRL_VQ are the device's own business: vhost is not told of them. Bit 27 is
	 * legacy ANY_LAYOUT to a driver but VHOST_NET_F_VIRTIO_NET_HDR to vhost ("you add the
	 * header"), which the TAP already does: never passed on.
	 */
	uint64_t features = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_EVENT_IDX) |
			    BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_NET_F_MAC) |
			    BIT(VIRTIO_NET_F_CTRL_VQ) | BIT(VIRTIO_F_ANY_LAYOUT);
	struct virtio_device vdev = negotiated(features);
	struct vhost_net *vn = open_fake(2);
	unsigned int i = 0;

	assert_int_equal(vhost_net_start(vn, &vdev, 1, 42), 0);
	/* Pair 1 is instance 1, queues 2 and 3; the TAP gives the header: no VIRTIO_NET_HDR. */
	assert_start_sequence(&i, 1, 1,
			      BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_EVENT_IDX) |
				      BIT(VIRTIO_NET_F_MRG_RXBUF),
			      42);
	assert_int_equal(i, fake.nr_calls);
	vhost_net_close(vn);
}

static void test_stop_detaches_both_rings_and_a_new_start_sets_everything_again(void **state)
{
	struct virtio_device vdev = negotiated(BIT(VIRTIO_F_VERSION_1));
	struct vhost_net *vn = open_fake(1);
	unsigned int i = 0;

	assert_int_equal(vhost_net_start(vn, &vdev, 0, 7), 0);
	vhost_net_stop(vn, 0);
	vhost_net_stop(vn, 0); /* idempotent */
	assert_int_equal(vhost_net_start(vn, &vdev, 0, 7), 0);
	assert_start_sequence(&i, 0, 0, BIT(VIRTIO_F_VERSION_1), 7);
	assert_stop_sequence(&i, 0);
	assert_stop_sequence(&i, 0);
	assert_start_sequence(&i, 0, 0, BIT(VIRTIO_F_VERSION_1), 7);
	assert_int_equal(i, fake.nr_calls);
	/* Close takes the rings back before closing. */
	vhost_net_close(vn);
	assert_stop_sequence(&i, 0);
	assert_int_equal(i, fake.nr_calls);
}

static void test_start_without_an_msix_vector_is_enotsup_and_attaches_nothing(void **state)
{
	struct virtio_device vdev = negotiated(BIT(VIRTIO_F_VERSION_1));
	struct vhost_net *vn = open_fake(1);

	fake.views[1].call_fd = -1;
	assert_int_equal(vhost_net_start(vn, &vdev, 0, 7), -ENOTSUP);
	for (unsigned int i = 0; i < fake.nr_calls; i++)
		assert_int_not_equal(fake.calls[i].req, VHOST_NET_SET_BACKEND);
	vhost_net_close(vn);
}

static void test_start_refuses_rings_outside_guest_memory(void **state)
{
	struct virtio_device vdev = negotiated(BIT(VIRTIO_F_VERSION_1));
	struct vhost_net *vn = open_fake(1);

	/* The used ring's last bytes run past the end of RAM. */
	fake.views[0].used = RAM - 8;
	assert_int_equal(vhost_net_start(vn, &vdev, 0, 7), -EFAULT);
	for (unsigned int i = 0; i < fake.nr_calls; i++)
		assert_int_not_equal(fake.calls[i].req, VHOST_NET_SET_BACKEND);
	vhost_net_close(vn);
}

static void test_start_refuses_a_ring_layout_vhost_does_not_know(void **state)
{
	struct virtio_device vdev = negotiated(BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_RING_PACKED));
	struct vhost_net *vn = open_fake(1);

	assert_int_equal(vhost_net_start(vn, &vdev, 0, 7), -ENOTSUP);
	assert_int_equal(fake.nr_calls, 0);
	vhost_net_close(vn);
}

static void test_a_failed_backend_attach_detaches_the_other_ring(void **state)
{
	struct virtio_device vdev = negotiated(BIT(VIRTIO_F_VERSION_1));
	struct vhost_net *vn = open_fake(1);
	const struct call *last;

	fake.fail_req = VHOST_NET_SET_BACKEND;
	fake.fail_nth = 2; /* RX attached, TX fails */
	assert_int_equal(vhost_net_start(vn, &vdev, 0, 7), -EIO);
	last = &fake.calls[fake.nr_calls - 1];
	assert_int_equal(last->req, VHOST_NET_SET_BACKEND);
	assert_int_equal(last->fd, -1);
	assert_int_equal(fake.calls[fake.nr_calls - 2].fd, -1);
	vhost_net_close(vn);
}

static void test_start_refuses_a_pair_it_did_not_open(void **state)
{
	struct virtio_device vdev = negotiated(BIT(VIRTIO_F_VERSION_1));
	struct vhost_net *vn = open_fake(1);

	assert_int_equal(vhost_net_start(vn, &vdev, 1, 7), -EINVAL);
	vhost_net_stop(vn, 5); /* nothing to stop */
	assert_int_equal(fake.nr_calls, 0);
	vhost_net_close(vn);
}

/* --- the real vhost-net, where there is one (the nested test host loads it) ------------------- */

#define ETH_P_TEST 0x88b5
#define FRAME_LEN 60
#define HDR_LEN 12
#define RX_BUFS 8

static int real_setup(void **state)
{
	fake_setup(state);
	fake.on = false; /* open and ioctl go to the kernel; the queues' view stays the test's */
	for (unsigned int q = 0; q < 2; q++) {
		fake.views[q].kick_fd = eventfd(0, EFD_CLOEXEC);
		fake.views[q].call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	return 0;
}

static int real_teardown(void **state)
{
	for (unsigned int q = 0; q < 2; q++) {
		close(fake.views[q].kick_fd);
		close(fake.views[q].call_fd);
	}
	return fake_teardown(state);
}

static void *gp(uint64_t gpa, uint64_t len)
{
	void *p = guest_ptr(&fake.mem, gpa, len);

	assert_non_null(p);
	return p;
}

/* Makes chains [head, head + n) of one descriptor each available on queue q. */
static void post(unsigned int q, uint16_t head, unsigned int n, uint64_t buf, uint32_t len,
		 uint16_t flags)
{
	const struct virtio_vhost_queue *v = &fake.views[q];
	struct vring_desc *d = gp(v->desc, 16ULL * v->size);
	struct vring_avail *a = gp(v->avail, 6 + 2ULL * v->size);

	for (unsigned int i = 0; i < n; i++) {
		d[head + i] =
			(struct vring_desc){ .addr = buf + i * len, .len = len, .flags = flags };
		a->ring[(a->idx + i) % v->size] = head + i;
	}
	__atomic_store_n(&a->idx, a->idx + n, __ATOMIC_RELEASE); /* §2.7.13.3: ring, then idx */
	assert_int_equal(eventfd_write(v->kick_fd, 1), 0);
}

/* Waits for the call eventfd of queue q and for used->idx to reach idx. */
static struct vring_used *wait_used(unsigned int q, uint16_t idx)
{
	const struct virtio_vhost_queue *v = &fake.views[q];
	struct vring_used *u = gp(v->used, 6 + 8ULL * v->size);
	struct pollfd p = { .fd = v->call_fd, .events = POLLIN };

	for (int tries = 0; __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) != idx; tries++) {
		assert_true(tries < 50);
		poll(&p, 1, 100);
	}
	return u;
}

static void make_frame(uint8_t *f, uint8_t tag)
{
	memset(f, 0xff, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x01", 6);
	f[12] = ETH_P_TEST >> 8;
	f[13] = ETH_P_TEST & 0xff;
	memset(f + 14, tag, FRAME_LEN - 14);
}

static void test_real_vhost_moves_frames_between_the_rings_and_the_tap(void **state)
{
	struct tap_config cfg = { .queues = 1 };
	struct virtio_device vdev = negotiated(BIT(VIRTIO_F_VERSION_1));
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_TEST) };
	uint64_t txbuf = MEM_HOLE_END + 0x8000, rxbuf = 0x8000;
	uint8_t frame[FRAME_LEN], in[2048];
	struct pollfd p;
	struct net_backend *be = NULL;
	struct vhost_net *vn = NULL;
	struct vring_used *u;
	char err[256] = "", path[128];
	unsigned int i;
	int ps, fd;

	if (isolation_failed || access("/dev/vhost-net", R_OK | W_OK) != 0 ||
	    access("/dev/net/tun", R_OK | W_OK) != 0) {
		print_message("skipped: no /dev/vhost-net or /dev/net/tun here (or not root)\n");
		skip();
	}
	assert_int_equal(tap_open(&be, &cfg, err, sizeof(err)), 0);
	/* No IPv6 autoconfiguration frames in the RX ring (best effort: RX_BUFS cover the rest). */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", tap_ifname(be));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "1", 1);
		close(fd);
	}
	assert_int_equal(vhost_net_open(&vn, 1, err, sizeof(err)), 0);
	assert_true(vhost_net_features(vn) & BIT(VIRTIO_F_VERSION_1));
	ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_TEST));
	assert_true(ps >= 0);
	sll.sll_ifindex = (int)if_nametoindex(tap_ifname(be));
	assert_int_equal(bind(ps, (struct sockaddr *)&sll, sizeof(sll)), 0);
	assert_int_equal(vhost_net_start(vn, &vdev, 0, be->fds[0]), 0);

	/* TX: a chain with a zero header and a frame leaves through the TAP. */
	memset(gp(txbuf, HDR_LEN), 0, HDR_LEN);
	make_frame(gp(txbuf + HDR_LEN, FRAME_LEN), 0x3c);
	post(1, 0, 1, txbuf, HDR_LEN + FRAME_LEN, 0);
	p = (struct pollfd){ .fd = ps, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(recv(ps, in, sizeof(in), 0), FRAME_LEN);
	assert_memory_equal(in, gp(txbuf + HDR_LEN, FRAME_LEN), FRAME_LEN);
	u = wait_used(1, 1);
	assert_int_equal(u->ring[0].id, 0);

	/* RX: a frame sent on the interface lands in a posted buffer behind a 12-byte header. */
	post(0, 0, RX_BUFS, rxbuf, 2048, VRING_DESC_F_WRITE);
	make_frame(frame, 0x4d);
	sll.sll_halen = 6;
	memset(sll.sll_addr, 0xff, 6);
	assert_int_equal(sendto(ps, frame, sizeof(frame), 0, (struct sockaddr *)&sll, sizeof(sll)),
			 sizeof(frame));
	for (i = 0;; i++) {
		uint8_t *b;

		u = wait_used(0, i + 1);
		assert_true(i < RX_BUFS);
		b = gp(rxbuf + 2048ULL * u->ring[i].id, 2048);
		if (b[HDR_LEN + 12] != ETH_P_TEST >> 8 || b[HDR_LEN + 13] != (ETH_P_TEST & 0xff))
			continue;
		assert_int_equal(u->ring[i].len, HDR_LEN + FRAME_LEN);
		assert_memory_equal(b + HDR_LEN, frame, FRAME_LEN);
		break;
	}

	vhost_net_close(vn);
	close(ps);
	net_backend_destroy(be);
}

/* --- the real /dev -------------------------------------------------------------------------- */

static void isolate(void)
{
	if (geteuid() != 0)
		isolation_failed = "not root";
	else if (unshare(CLONE_NEWNS | CLONE_NEWNET) != 0 ||
		 mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		isolation_failed = "cannot make private mount and network namespaces";
}

/* A fresh, empty /dev (nodev: device nodes in it cannot be opened). */
static void mount_empty_dev(unsigned long flags)
{
	if (isolation_failed) {
		print_message("skipped: %s\n", isolation_failed);
		skip();
	}
	assert_int_equal(mount("tmpfs", "/dev", "tmpfs", flags, "mode=0755"), 0);
}

static void test_missing_dev_vhost_net_says_to_load_the_module(void **state)
{
	struct vhost_net *vn = (struct vhost_net *)state; /* anything but NULL */
	char err[256] = "";

	mount_empty_dev(0);
	assert_int_equal(vhost_net_open(&vn, 1, err, sizeof(err)), -ENOENT);
	assert_null(vn);
	assert_string_equal(
		err, "/dev/vhost-net: No such file or directory (is the vhost_net module loaded?)");
	assert_int_equal(umount("/dev"), 0);
}

static void test_unopenable_dev_vhost_net_says_permission_denied(void **state)
{
	struct vhost_net *vn = NULL;
	char err[256] = "";

	mount_empty_dev(MS_NODEV);
	assert_int_equal(mknod("/dev/vhost-net", S_IFCHR | 0600,
			       makedev(VHOST_NET_MAJOR, VHOST_NET_MINOR)),
			 0);
	assert_int_equal(vhost_net_open(&vn, 2, err, sizeof(err)), -EACCES);
	assert_null(vn);
	assert_string_equal(err, "/dev/vhost-net: Permission denied");
	assert_int_equal(umount("/dev"), 0);
}

static void test_queue_pair_counts_outside_the_limit_are_refused(void **state)
{
	struct vhost_net *vn = NULL;
	char err[256] = "";

	assert_int_equal(vhost_net_open(&vn, 0, err, sizeof(err)), -EINVAL);
	assert_null(vn);
	assert_int_equal(vhost_net_open(&vn, NET_MAX_QUEUE_PAIRS + 1, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vhost-net: 17 queue pairs (1 to 16)");
	vhost_net_close(NULL); /* documented as fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define FAKE_TEST(t) cmocka_unit_test_setup_teardown(t, fake_setup, fake_teardown)
		FAKE_TEST(test_open_owns_each_instance_and_reads_the_features),
		FAKE_TEST(test_start_sets_features_memory_and_rings_then_the_backend_last),
		FAKE_TEST(test_stop_detaches_both_rings_and_a_new_start_sets_everything_again),
		FAKE_TEST(test_start_without_an_msix_vector_is_enotsup_and_attaches_nothing),
		FAKE_TEST(test_start_refuses_rings_outside_guest_memory),
		FAKE_TEST(test_start_refuses_a_ring_layout_vhost_does_not_know),
		FAKE_TEST(test_a_failed_backend_attach_detaches_the_other_ring),
		FAKE_TEST(test_start_refuses_a_pair_it_did_not_open),
		cmocka_unit_test_setup_teardown(
			test_real_vhost_moves_frames_between_the_rings_and_the_tap, real_setup,
			real_teardown),
		cmocka_unit_test(test_missing_dev_vhost_net_says_to_load_the_module),
		cmocka_unit_test(test_unopenable_dev_vhost_net_says_permission_denied),
		cmocka_unit_test(test_queue_pair_counts_outside_the_limit_are_refused),
	};

	isolate();
	return cmocka_run_group_tests_name("vhost_net", tests, NULL, NULL);
}
