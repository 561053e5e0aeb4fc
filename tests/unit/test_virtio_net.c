// SPDX-License-Identifier: MIT
/*
 * virtio-net through the virtio-pci transport, driven by the in-process driver (virtio/driver.h)
 * as a guest would, over a real back end: a socketpair(AF_UNIX, SOCK_DGRAM) per queue pair,
 * one frame per datagram, whose other end the test holds. Frames both ways, mergeable buffers,
 * a guest that posts no buffers, multi-queue commands, and hostile headers and buffers.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_net.h>
#include <linux/virtio_pci.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "cmd/run_devices.h"
#include "hw/pci.h"
#include "lib/util.h"
#include "net/backend.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "virtio/net.h"
#include "virtio/net_hdr.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define F(bit) (1ULL << (bit))
#define RAM_SIZE (8 * MiB)
#define RINGS_GPA 0x10000ULL /* queue q's rings at RINGS_GPA + q * RING_STRIDE */
#define RING_STRIDE 0x10000ULL
#define DATA_GPA 0x200000ULL
#define QSIZE 64
#define DEADLINE_MS 5000
#define MAX_QUEUES (2 * 2 + 1)

#define BASE_FEATURES                                                                          \
	(F(VIRTIO_F_VERSION_1) | F(VIRTIO_RING_F_EVENT_IDX) | F(VIRTIO_RING_F_INDIRECT_DESC) | \
	 F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_MTU) |                  \
	 F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_CTRL_RX))
#define MRG F(VIRTIO_NET_F_MRG_RXBUF)
#define TSO4 (F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4))

/* The test's back end: the device's ends of the socketpairs. */
struct tbe {
	struct net_backend be;
	uint64_t offloads_set;
};

static int tbe_set_offloads(struct net_backend *be, uint64_t features)
{
	((struct tbe *)be)->offloads_set = features;
	return 0;
}

static void tbe_destroy(struct net_backend *be)
{
	for (unsigned int p = 0; p < be->nr_pairs; p++)
		close(be->fds[p]);
	free(be);
}

static const struct net_backend_ops tbe_ops = {
	.set_offloads = tbe_set_offloads,
	.destroy = tbe_destroy,
};

struct fx {
	struct vm *vm;
	struct pci_bus *bus;
	struct irq_routing *irq;
	struct virtio_driver drv;
	struct virtio_driver_queue q[MAX_QUEUES];
	uint16_t next_desc[MAX_QUEUES];
	unsigned int nq;
	struct virtio_net *net;
	struct tbe *tbe; /* the device's back end, while the device lives */
	bool vhost, vhost_required; /* net_up's back end asks for vhost-net */
	int peer[2]; /* the test's ends, one per pair */
	uint64_t data_next;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static uint64_t cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->vm = calloc(1, sizeof(*fx->vm));
	fx->bus = calloc(1, sizeof(*fx->bus));
	fx->irq = calloc(1, sizeof(*fx->irq));
	if (!fx->vm || !fx->bus || !fx->irq || memory_init(&fx->vm->mem, RAM_SIZE))
		return -1;
	/* No KVM: no irqfd or ioeventfd is bound; kicks come through the notify register. */
	fx->vm->kvm_fd = fx->vm->vm_fd = fx->vm->stop_fd = -1;
	irq_routing_init(fx->irq, NULL);
	if (pci_init(fx->bus, fx->vm))
		return -1;
	fx->peer[0] = fx->peer[1] = -1;
	fx->data_next = DATA_GPA;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	virtio_net_destroy(fx->net);
	for (int p = 0; p < 2; p++)
		if (fx->peer[p] >= 0)
			close(fx->peer[p]);
	memory_free(&fx->vm->mem);
	free(fx->irq);
	free(fx->bus);
	free(fx->vm);
	free(fx);
	return 0;
}

/* The device over pairs socketpairs, driven up to DRIVER_OK with features (those offered). */
static void net_up(struct fx *fx, unsigned int pairs, bool vnet_hdr, uint64_t features)
{
	struct tbe *t = calloc(1, sizeof(*t));
	struct virtio_net_options o = { .mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 } };
	char err[256] = "";
	uint64_t offered;

	assert_non_null(t);
	fx->tbe = t;
	t->be.ops = &tbe_ops;
	snprintf(t->be.name, sizeof(t->be.name), "test");
	t->be.nr_pairs = pairs;
	t->be.vnet_hdr = vnet_hdr;
	t->be.offloads = vnet_hdr ? NET_OFFLOAD_FEATURES : 0;
	t->be.vhost = fx->vhost;
	t->be.vhost_required = fx->vhost_required;
	for (unsigned int p = 0; p < pairs; p++) {
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
		t->be.fds[p] = sv[0];
		fx->peer[p] = sv[1];
		assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	}
	assert_int_equal(virtio_net_create(&fx->net, fx->vm, fx->bus, fx->irq, &t->be, &o, err,
					   sizeof(err)),
			 0);
	assert_int_equal(virtio_driver_find(&fx->drv, fx->bus, &fx->vm->mem, VIRTIO_ID_NET), 0);
	assert_int_equal(virtio_driver_reset(&fx->drv, DEADLINE_MS), 0);
	virtio_driver_set_status(&fx->drv, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	virtio_driver_set_status(&fx->drv, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	offered = virtio_driver_device_features(&fx->drv);
	assert_int_equal(offered & features, features);
	assert_int_equal(virtio_driver_features_ok(&fx->drv, features), 0);
	fx->nq = features & F(VIRTIO_NET_F_MQ) ? 2 * pairs + 1 : 3;
	for (unsigned int q = 0; q < fx->nq; q++)
		assert_int_equal(virtio_driver_queue_setup(&fx->drv, &fx->q[q], q, QSIZE,
							   RINGS_GPA + q * RING_STRIDE,
							   VIRTIO_MSI_NO_VECTOR),
				 0);
	virtio_driver_set_status(&fx->drv,
				 virtio_driver_status(&fx->drv) | VIRTIO_CONFIG_S_DRIVER_OK);
	virtio_driver_settle(&fx->drv);
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* Guest memory for buffers: a bump allocator; its host view. */
static uint64_t galloc(struct fx *fx, uint64_t len)
{
	uint64_t gpa = fx->data_next;

	fx->data_next = ALIGN_UP(gpa + len, 64);
	assert_true(fx->data_next < RAM_SIZE);
	return gpa;
}

static uint8_t *gp(struct fx *fx, uint64_t gpa)
{
	return guest_ptr(&fx->vm->mem, gpa, 1);
}

/* Segments read { gpa, len } or, device-writable, { gpa, len, true }. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
/* Makes a chain of the segments available on queue qi, and kicks if the device asks. */
static uint16_t post(struct fx *fx, unsigned int qi, const struct virtio_driver_seg *s,
		     unsigned int n)
{
	struct virtio_driver_queue *q = &fx->q[qi];
	uint16_t head = virtio_driver_queue_add_chain(q, &fx->next_desc[qi], s, n);

	virtio_driver_queue_flush(q);
	return head;
}

static uint16_t used_idx(struct fx *fx, unsigned int qi)
{
	return __atomic_load_n(&fx->q[qi].used->idx, __ATOMIC_ACQUIRE);
}

/* Waits until queue qi's used idx reaches n; whether it did within the deadline. */
static bool wait_used(struct fx *fx, unsigned int qi, uint16_t n)
{
	for (uint64_t end = now_ms() + DEADLINE_MS; used_idx(fx, qi) < n && now_ms() < end;)
		usleep(200);
	return used_idx(fx, qi) >= n;
}

static struct vring_used_elem used(struct fx *fx, unsigned int qi, unsigned int i)
{
	return fx->q[qi].used->ring[i % fx->q[qi].size];
}

/* A datagram from the device's side of pair p within ms, or -1 with none. */
static ssize_t peer_recv(struct fx *fx, unsigned int p, void *buf, size_t len, int ms)
{
	struct pollfd pfd = { .fd = fx->peer[p], .events = POLLIN };

	if (poll(&pfd, 1, ms) != 1)
		return -1;
	return recv(fx->peer[p], buf, len, MSG_DONTWAIT);
}

static void peer_send(struct fx *fx, unsigned int p, const void *buf, size_t len)
{
	assert_int_equal(send(fx->peer[p], buf, len, 0), (ssize_t)len);
}

static struct virtio_net_stats stats(struct fx *fx)
{
	struct virtio_net_stats s;

	virtio_net_get_stats(fx->net, &s);
	return s;
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

/* A TX chain: header then frame, cut as the test says; returns its gpa. */
static uint64_t tx_frame(struct fx *fx, const struct virtio_net_hdr_v1 *h, uint32_t frame_len,
			 uint8_t seed)
{
	uint64_t gpa = galloc(fx, NET_HDR_LEN + frame_len);

	memcpy(gp(fx, gpa), h, NET_HDR_LEN);
	fill(gp(fx, gpa + NET_HDR_LEN), frame_len, seed);
	return gpa;
}

/* --- transmit -------------------------------------------------------------------------------- */

/* The header split over two descriptors, and the frame over two more: one datagram, intact. */
static void test_tx_frame_reaches_backend_with_its_vnet_header(void **state)
{
	struct fx *fx = *state;
	struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				       .csum_start = htole16(34),
				       .csum_offset = htole16(16) };
	uint8_t got[512];
	uint64_t gpa;
	ssize_t n;

	net_up(fx, 1, true, BASE_FEATURES | MRG | TSO4);
	gpa = tx_frame(fx, &h, 100, 1);
	post(fx, 1,
	     (struct virtio_driver_seg[]){
		     { gpa, 5 }, { gpa + 5, 7 }, { gpa + 12, 50 }, { gpa + 62, 50 } },
	     4);
	assert_true(wait_used(fx, 1, 1));
	assert_int_equal(used(fx, 1, 0).len, 0);
	n = peer_recv(fx, 0, got, sizeof(got), DEADLINE_MS);
	assert_int_equal(n, NET_HDR_LEN + 100);
	assert_memory_equal(got, gp(fx, gpa), NET_HDR_LEN + 100);
	assert_int_equal(stats(fx).tx_packets, 1);
	assert_int_equal(stats(fx).tx_bytes, 100);
	assert_int_equal(stats(fx).tx_errors, 0);
}

struct emitted {
	char names[8][16];
	uint64_t values[8];
	unsigned int n;
};

static void record(void *ctx, const char *name, uint64_t value)
{
	struct emitted *e = ctx;

	assert_true(e->n < 8);
	snprintf(e->names[e->n], sizeof(e->names[0]), "%s", name);
	e->values[e->n++] = value;
}

/*
 * vm.counters' net group: the NIC type's counters hook (what run_api calls for each device)
 * emits the device's counters under their names, after one frame sent.
 */
static void test_nic_type_counters_emit_the_device_stats(void **state)
{
	struct fx *fx = *state;
	struct virtio_net_hdr_v1 h = { 0 };
	struct emitted e = { 0 };
	uint64_t gpa;

	net_up(fx, 1, true, BASE_FEATURES | MRG);
	gpa = tx_frame(fx, &h, 100, 1);
	post(fx, 1, (struct virtio_driver_seg[]){ { gpa, NET_HDR_LEN + 100 } }, 1);
	assert_true(wait_used(fx, 1, 1));
	assert_non_null(net_device_type.counters);
	net_device_type.counters(fx->net, record, &e);
	assert_int_equal(e.n, 7);
	assert_string_equal(e.names[3], "tx_packets");
	assert_int_equal(e.values[3], 1);
	assert_string_equal(e.names[4], "tx_bytes");
	assert_int_equal(e.values[4], 100);
	assert_string_equal(e.names[0], "rx_packets");
	assert_int_equal(e.values[0], 0);
}

/* A back end without the vnet header gets the bare frame, and the device offers no offload. */
static void test_tx_frame_to_bare_backend_loses_only_the_header(void **state)
{
	struct fx *fx = *state;
	struct virtio_net_hdr_v1 h = { 0 };
	uint8_t got[512];
	uint64_t gpa;

	net_up(fx, 1, false, BASE_FEATURES | MRG);
	assert_false(virtio_driver_device_features(&fx->drv) & NET_OFFLOAD_FEATURES);
	gpa = tx_frame(fx, &h, 100, 2);
	post(fx, 1, (struct virtio_driver_seg[]){ { gpa, NET_HDR_LEN + 100 } }, 1);
	assert_int_equal(peer_recv(fx, 0, got, sizeof(got), DEADLINE_MS), 100);
	assert_memory_equal(got, gp(fx, gpa + NET_HDR_LEN), 100);
}

/*
 * §5.1.6.2.1: each hostile header or chain is dropped and counted, its chain given back with
 * nothing written, and nothing of it reaches the back end; the good frame after them does.
 */
static void test_bogus_tx_headers_are_dropped_counted_and_never_sent(void **state)
{
	struct fx *fx = *state;
	struct virtio_net_hdr_v1 gso0 = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					  .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
					  .hdr_len = htole16(54),
					  .csum_start = htole16(34),
					  .csum_offset = htole16(16) };
	struct virtio_net_hdr_v1 hdrlen = { .hdr_len = htole16(101) };
	struct virtio_net_hdr_v1 tso6 = gso0, csum = { 0 }, good = { 0 };
	uint64_t g[8], w;
	uint8_t got[512];
	unsigned int bad = 0;

	net_up(fx, 1, true, BASE_FEATURES | TSO4);
	tso6.gso_type = VIRTIO_NET_HDR_GSO_TCPV6; /* HOST_TSO6 not negotiated */
	tso6.gso_size = htole16(1448);
	csum.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	csum.csum_start = htole16(90);
	csum.csum_offset = htole16(9); /* the field's 2 bytes end at 101 */
	g[0] = tx_frame(fx, &gso0, 100, 3); /* GSO with gso_size 0 */
	post(fx, 1, (struct virtio_driver_seg[]){ { g[0], NET_HDR_LEN + 100 } }, 1), bad++;
	g[1] = tx_frame(fx, &hdrlen, 100, 4); /* hdr_len beyond the chain */
	post(fx, 1, (struct virtio_driver_seg[]){ { g[1], NET_HDR_LEN + 100 } }, 1), bad++;
	g[2] = tx_frame(fx, &good, NET_TX_MAX + 1 - NET_HDR_LEN, 5); /* past 64 KiB */
	post(fx, 1,
	     (struct virtio_driver_seg[]){
		     { g[2], NET_TX_MAX / 2 },
		     { g[2] + NET_TX_MAX / 2, NET_TX_MAX + 1 - NET_TX_MAX / 2 } },
	     2),
		bad++;
	w = galloc(fx, 64); /* an empty chain: nothing readable */
	post(fx, 1, (struct virtio_driver_seg[]){ { w, 64, true } }, 1), bad++;
	g[3] = tx_frame(fx, &good, 0, 6); /* a header split short: 4 + 4 bytes */
	post(fx, 1, (struct virtio_driver_seg[]){ { g[3], 4 }, { g[3] + 4, 4 } }, 2), bad++;
	g[4] = tx_frame(fx, &tso6, 100, 7);
	post(fx, 1, (struct virtio_driver_seg[]){ { g[4], NET_HDR_LEN + 100 } }, 1), bad++;
	g[5] = tx_frame(fx, &csum, 100, 8); /* checksum field past the frame */
	post(fx, 1, (struct virtio_driver_seg[]){ { g[5], NET_HDR_LEN + 100 } }, 1), bad++;
	g[6] = tx_frame(fx, &good, 60, 9);
	post(fx, 1, (struct virtio_driver_seg[]){ { g[6], NET_HDR_LEN + 60 } }, 1);
	assert_true(wait_used(fx, 1, bad + 1));
	for (unsigned int i = 0; i < bad + 1; i++)
		assert_int_equal(used(fx, 1, i).len, 0);
	assert_int_equal(peer_recv(fx, 0, got, sizeof(got), DEADLINE_MS), NET_HDR_LEN + 60);
	assert_memory_equal(got, gp(fx, g[6]), NET_HDR_LEN + 60);
	assert_int_equal(peer_recv(fx, 0, got, sizeof(got), 100), -1);
	assert_int_equal(stats(fx).tx_errors, bad);
	assert_int_equal(stats(fx).tx_packets, 1);
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/*
 * A back end that cannot take more (EAGAIN: the datagram queue is full) makes the TX thread
 * wait for room, without spinning and without dropping: every frame arrives once the test reads.
 */
static void test_tx_waits_for_a_full_backend_instead_of_dropping(void **state)
{
	struct fx *fx = *state;
	struct virtio_net_hdr_v1 h = { 0 };
	const unsigned int n = 40;
	uint8_t got[2048];
	uint64_t cpu0, gpa;

	net_up(fx, 1, true, BASE_FEATURES);
	/* A socketpair's datagrams are limited by the sender's buffer: a few frames fill it. */
	assert_int_equal(setsockopt(fx->tbe->be.fds[0], SOL_SOCKET, SO_SNDBUF, &(int){ 16384 },
				    sizeof(int)),
			 0);
	for (unsigned int i = 0; i < n; i++) {
		gpa = tx_frame(fx, &h, 1000, (uint8_t)i);
		post(fx, 1, (struct virtio_driver_seg[]){ { gpa, NET_HDR_LEN + 1000 } }, 1);
	}
	usleep(100 * 1000);
	cpu0 = cpu_ms();
	usleep(300 * 1000);
	/* Sleeping in poll: well under a tenth of the time on the CPU. */
	assert_in_range(cpu_ms() - cpu0, 0, 30);
	assert_true(used_idx(fx, 1) < n);
	for (unsigned int i = 0; i < n; i++) {
		assert_int_equal(peer_recv(fx, 0, got, sizeof(got), DEADLINE_MS),
				 NET_HDR_LEN + 1000);
		assert_int_equal(got[NET_HDR_LEN], (uint8_t)i);
	}
	assert_true(wait_used(fx, 1, n));
	assert_int_equal(stats(fx).tx_packets, n);
	assert_int_equal(stats(fx).tx_dropped, 0);
}

/* --- receive --------------------------------------------------------------------------------- */

/* One frame, one buffer: header as the back end gave it, num_buffers 1, the bytes. */
static void test_rx_frame_lands_with_num_buffers(void **state)
{
	struct fx *fx = *state;
	uint8_t frame[NET_HDR_LEN + 200];
	struct virtio_net_hdr_v1 *h;
	uint64_t buf;

	net_up(fx, 1, true, BASE_FEATURES | MRG | F(VIRTIO_NET_F_GUEST_CSUM));
	buf = galloc(fx, 2048);
	post(fx, 0, (struct virtio_driver_seg[]){ { buf, 2048, true } }, 1);
	fill(frame, sizeof(frame), 11);
	memset(frame, 0, NET_HDR_LEN);
	frame[0] = VIRTIO_NET_HDR_F_DATA_VALID;
	peer_send(fx, 0, frame, sizeof(frame));
	assert_true(wait_used(fx, 0, 1));
	assert_int_equal(used(fx, 0, 0).len, sizeof(frame));
	h = (struct virtio_net_hdr_v1 *)gp(fx, buf);
	assert_int_equal(h->flags, VIRTIO_NET_HDR_F_DATA_VALID);
	assert_int_equal(le16toh(h->num_buffers), 1);
	assert_memory_equal(gp(fx, buf + NET_HDR_LEN), frame + NET_HDR_LEN, 200);
	assert_int_equal(stats(fx).rx_packets, 1);
	assert_int_equal(stats(fx).rx_bytes, 200);
}

/* A bare back end: the device writes a zero header, num_buffers 1, also without MRG_RXBUF. */
static void test_rx_bare_frame_gets_a_zero_header(void **state)
{
	struct fx *fx = *state;
	uint8_t frame[150];
	struct virtio_net_hdr_v1 want = { .num_buffers = htole16(1) };
	uint64_t buf;

	net_up(fx, 1, false, BASE_FEATURES);
	buf = galloc(fx, 2048);
	memset(gp(fx, buf), 0xee, 2048);
	post(fx, 0, (struct virtio_driver_seg[]){ { buf, 2048, true } }, 1);
	fill(frame, sizeof(frame), 12);
	peer_send(fx, 0, frame, sizeof(frame));
	assert_true(wait_used(fx, 0, 1));
	assert_int_equal(used(fx, 0, 0).len, NET_HDR_LEN + sizeof(frame));
	assert_memory_equal(gp(fx, buf), &want, NET_HDR_LEN);
	assert_memory_equal(gp(fx, buf + NET_HDR_LEN), frame, sizeof(frame));
}

/* §5.1.6.4: with MRG_RXBUF a frame takes as many buffers as it needs, num_buffers says how many. */
static void test_rx_frame_spreads_over_several_mergeable_buffers(void **state)
{
	struct fx *fx = *state;
	uint8_t frame[NET_HDR_LEN + 1000], got[sizeof(frame)];
	uint64_t buf[5];
	size_t at = 0;

	net_up(fx, 1, true, BASE_FEATURES | MRG);
	for (int i = 0; i < 5; i++) {
		buf[i] = galloc(fx, 256);
		post(fx, 0, (struct virtio_driver_seg[]){ { buf[i], 256, true } }, 1);
	}
	fill(frame, sizeof(frame), 13);
	memset(frame, 0, NET_HDR_LEN);
	peer_send(fx, 0, frame, sizeof(frame));
	assert_true(wait_used(fx, 0, 4));
	usleep(50 * 1000);
	assert_int_equal(used_idx(fx, 0), 4); /* the fifth stays the guest's */
	for (int i = 0; i < 4; i++) {
		struct vring_used_elem e = used(fx, 0, i);

		assert_int_equal(e.id, i);
		assert_int_equal(e.len, i < 3 ? 256 : sizeof(frame) - 3 * 256);
		memcpy(got + at, gp(fx, buf[i]), e.len);
		at += e.len;
	}
	assert_int_equal(le16toh(((struct virtio_net_hdr_v1 *)got)->num_buffers), 4);
	assert_memory_equal(got + NET_HDR_LEN, frame + NET_HDR_LEN, 1000);
	assert_int_equal(stats(fx).rx_packets, 1);
}

/*
 * No buffer posted: the device does not read the back end (the frame stays there, nothing
 * dropped) and sleeps instead of polling a readable descriptor; a buffer and a kick bring it.
 */
static void test_rx_without_buffers_leaves_the_frame_in_the_backend(void **state)
{
	struct fx *fx = *state;
	uint8_t frame[NET_HDR_LEN + 80], peek[256];
	uint64_t cpu0, buf;

	net_up(fx, 1, true, BASE_FEATURES | MRG);
	fill(frame, sizeof(frame), 14);
	memset(frame, 0, NET_HDR_LEN);
	peer_send(fx, 0, frame, sizeof(frame));
	usleep(100 * 1000);
	cpu0 = cpu_ms();
	usleep(300 * 1000);
	assert_in_range(cpu_ms() - cpu0, 0, 30);
	/* The device's end still holds the datagram. */
	assert_int_equal(recv(fx->tbe->be.fds[0], peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT),
			 sizeof(frame));
	assert_int_equal(used_idx(fx, 0), 0);
	assert_int_equal(stats(fx).rx_dropped, 0);
	buf = galloc(fx, 2048);
	post(fx, 0, (struct virtio_driver_seg[]){ { buf, 2048, true } }, 1);
	assert_true(wait_used(fx, 0, 1));
	assert_int_equal(used(fx, 0, 0).len, sizeof(frame));
	assert_memory_equal(gp(fx, buf + NET_HDR_LEN), frame + NET_HDR_LEN, 80);
	assert_int_equal(stats(fx).rx_packets, 1);
}

/*
 * §5.1.6.3.1: a receive buffer shorter than the header is given back unused and nothing is
 * written to it or around it; the frame goes to the next buffer.
 */
static void test_rx_buffer_shorter_than_the_header_is_returned_unwritten(void **state)
{
	struct fx *fx = *state;
	uint8_t frame[NET_HDR_LEN + 60], canary[256];
	uint64_t area, good;

	net_up(fx, 1, true, BASE_FEATURES | MRG);
	area = galloc(fx, sizeof(canary));
	memset(gp(fx, area), 0xaa, sizeof(canary));
	memcpy(canary, gp(fx, area), sizeof(canary));
	good = galloc(fx, 2048);
	post(fx, 0,
	     (struct virtio_driver_seg[]){ { area + 100, 4, true }, { area + 120, 4, true } }, 2);
	post(fx, 0, (struct virtio_driver_seg[]){ { good, 2048, true } }, 1);
	fill(frame, sizeof(frame), 15);
	memset(frame, 0, NET_HDR_LEN);
	peer_send(fx, 0, frame, sizeof(frame));
	assert_true(wait_used(fx, 0, 2));
	assert_int_equal(used(fx, 0, 0).len, 0);
	assert_int_equal(used(fx, 0, 1).len, sizeof(frame));
	assert_memory_equal(gp(fx, area), canary, sizeof(canary));
	assert_memory_equal(gp(fx, good + NET_HDR_LEN), frame + NET_HDR_LEN, 60);
	assert_int_equal(stats(fx).rx_packets, 1);
	assert_int_equal(stats(fx).rx_dropped, 1);
}

/*
 * A frame over several mergeable buffers goes into each one's own writable segments, whatever
 * readable segments the one before had (found by fuzz_net_device: the device took the next
 * buffer's segments at the last one's count of readable ones, wrote into a readable segment or
 * the last buffer again, and with none to reuse wrote num_buffers through a NULL pointer).
 */
static void test_rx_frame_goes_to_each_buffers_own_writable_segments(void **state)
{
	struct fx *fx = *state;
	uint8_t frame[NET_HDR_LEN + 600], canary[16];
	uint64_t a, ro, b, c;

	net_up(fx, 1, true, BASE_FEATURES | MRG);
	a = galloc(fx, 256);
	ro = galloc(fx, sizeof(canary));
	b = galloc(fx, 256);
	c = galloc(fx, 256);
	memset(gp(fx, ro), 0xaa, sizeof(canary));
	memcpy(canary, gp(fx, ro), sizeof(canary));
	post(fx, 0, (struct virtio_driver_seg[]){ { a, 256, true } }, 1);
	post(fx, 0, (struct virtio_driver_seg[]){ { ro, sizeof(canary) }, { b, 256, true } }, 2);
	post(fx, 0, (struct virtio_driver_seg[]){ { c, 256, true } }, 1);
	fill(frame, sizeof(frame), 16);
	memset(frame, 0, NET_HDR_LEN);
	peer_send(fx, 0, frame, sizeof(frame));
	assert_true(wait_used(fx, 0, 3));
	assert_int_equal(used(fx, 0, 0).len, 256);
	assert_int_equal(used(fx, 0, 1).len, 256);
	assert_int_equal(used(fx, 0, 2).len, sizeof(frame) - 512);
	assert_int_equal(le16toh(((struct virtio_net_hdr_v1 *)gp(fx, a))->num_buffers), 3);
	assert_memory_equal(gp(fx, a + NET_HDR_LEN), frame + NET_HDR_LEN, 256 - NET_HDR_LEN);
	assert_memory_equal(gp(fx, b), frame + 256, 256);
	assert_memory_equal(gp(fx, c), frame + 512, sizeof(frame) - 512);
	assert_memory_equal(gp(fx, ro), canary, sizeof(canary));
	assert_int_equal(stats(fx).rx_packets, 1);
}

/*
 * Without MRG_RXBUF a frame larger than the buffer is dropped and counted, nothing written
 * past the buffer, and the buffer takes the next frame that fits.
 */
static void test_rx_frame_larger_than_the_buffer_without_mrg_is_dropped(void **state)
{
	struct fx *fx = *state;
	uint8_t big[NET_HDR_LEN + 100] = { 0 }, small[NET_HDR_LEN + 30] = { 0 }, canary[256];
	uint64_t area;

	net_up(fx, 1, true, BASE_FEATURES);
	area = galloc(fx, sizeof(canary));
	memset(gp(fx, area), 0xaa, sizeof(canary));
	memcpy(canary, gp(fx, area), sizeof(canary));
	post(fx, 0, (struct virtio_driver_seg[]){ { area + 64, 50, true } }, 1);
	fill(big + NET_HDR_LEN, 100, 16);
	fill(small + NET_HDR_LEN, 30, 17);
	peer_send(fx, 0, big, sizeof(big));
	peer_send(fx, 0, small, sizeof(small));
	assert_true(wait_used(fx, 0, 1));
	assert_int_equal(used(fx, 0, 0).len, sizeof(small));
	assert_memory_equal(gp(fx, area + 64 + NET_HDR_LEN), small + NET_HDR_LEN, 30);
	assert_memory_equal(gp(fx, area), canary, 64);
	assert_memory_equal(gp(fx, area + 64 + 50), canary, sizeof(canary) - 64 - 50);
	assert_int_equal(stats(fx).rx_dropped, 1);
	assert_int_equal(stats(fx).rx_packets, 1);
}

/* --- control queue --------------------------------------------------------------------------- */

/* Sends a command on control queue qi; returns the ack byte the device wrote. */
static uint8_t ctrl(struct fx *fx, unsigned int qi, const void *cmd, uint32_t len)
{
	uint64_t c = galloc(fx, len), ack = galloc(fx, 1);
	uint16_t n = used_idx(fx, qi);

	memcpy(gp(fx, c), cmd, len);
	*gp(fx, ack) = 0xee;
	post(fx, qi, (struct virtio_driver_seg[]){ { c, len }, { ack, 1, true } }, 2);
	assert_true(wait_used(fx, qi, n + 1));
	return *gp(fx, ack);
}

static uint8_t vq_pairs_set(struct fx *fx, unsigned int qi, uint16_t pairs)
{
	uint8_t cmd[4] = { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, pairs, pairs >> 8 };

	return ctrl(fx, qi, cmd, sizeof(cmd));
}

/*
 * §5.1.6.5.5: VQ_PAIRS_SET takes 1..max_virtqueue_pairs and nothing else; until it, only the
 * first pair carries traffic: pair 1's frame waits in its back end until the command enables it.
 */
static void test_mq_vq_pairs_set_accepts_1_to_max_and_refuses_the_rest(void **state)
{
	struct fx *fx = *state;
	uint8_t frame[NET_HDR_LEN + 64] = { 0 }, bad[] = { 77, 0 }, rx[3] = { 0, 0, 1 };
	uint64_t buf;

	net_up(fx, 2, true, BASE_FEATURES | MRG | F(VIRTIO_NET_F_MQ));
	assert_int_equal(le16toh(virtio_driver_bar_read(&fx->drv,
							fx->drv.device_cfg +
								offsetof(struct virtio_net_config,
									 max_virtqueue_pairs),
							2)),
			 2);
	buf = galloc(fx, 2048);
	post(fx, 2, (struct virtio_driver_seg[]){ { buf, 2048, true } }, 1);
	fill(frame + NET_HDR_LEN, 64, 18);
	peer_send(fx, 1, frame, sizeof(frame));
	usleep(100 * 1000);
	assert_int_equal(used_idx(fx, 2), 0);
	assert_int_equal(vq_pairs_set(fx, 4, 0), VIRTIO_NET_ERR);
	assert_int_equal(vq_pairs_set(fx, 4, 3), VIRTIO_NET_ERR);
	assert_int_equal(vq_pairs_set(fx, 4, 2), VIRTIO_NET_OK);
	assert_true(wait_used(fx, 2, 1));
	assert_int_equal(used(fx, 2, 0).len, sizeof(frame));
	assert_memory_equal(gp(fx, buf + NET_HDR_LEN), frame + NET_HDR_LEN, 64);
	assert_int_equal(vq_pairs_set(fx, 4, 1), VIRTIO_NET_OK);
	/* Unknown class, a command cut short, and RX mode (accepted). */
	assert_int_equal(ctrl(fx, 4, bad, sizeof(bad)), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(fx, 4, bad, 1), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(fx, 4, rx, sizeof(rx)), VIRTIO_NET_OK);
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* Without MQ the control queue is queue 2 (§5.1.2), and VQ_PAIRS_SET is refused. */
static void test_without_mq_the_control_queue_is_queue_2(void **state)
{
	struct fx *fx = *state;

	net_up(fx, 2, true, BASE_FEATURES);
	assert_int_equal(vq_pairs_set(fx, 2, 1), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(fx, 2, (uint8_t[]){ VIRTIO_NET_CTRL_RX, 0, 1 }, 3), VIRTIO_NET_OK);
}

/* The set_offloads op sees what was negotiated, at DRIVER_OK. */
static void test_start_hands_the_negotiated_features_to_the_backend(void **state)
{
	struct fx *fx = *state;
	uint64_t want = BASE_FEATURES | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4);
	net_up(fx, 1, true, want);
	assert_int_equal(fx->tbe->offloads_set, want);
}

/* --- vhost-net, on a /dev of the test's own without vhost-net ------------------------------ */

static const char *isolation_failed;

/* A private mount namespace, made while the process has one thread (CLONE_NEWNS needs it). */
static void isolate(void)
{
	if (geteuid() != 0)
		isolation_failed = "not root";
	else if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		isolation_failed = "cannot make a private mount namespace";
}

static void mount_empty_dev(void)
{
	if (isolation_failed) {
		print_message("(%s: skipped)\n", isolation_failed);
		skip();
	}
	assert_int_equal(mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755"), 0);
}

/* vhost=on: no vhost-net fails the device's creation, with the reason, and frees the back end. */
static void test_vhost_required_without_vhost_net_fails_create_with_its_reason(void **state)
{
	struct fx *fx = *state;
	struct tbe *t = calloc(1, sizeof(*t));
	struct virtio_net_options o = { .mac = { 0x52, 0x54, 0, 0, 0, 1 } };
	char err[256] = "";
	int sv[2];

	mount_empty_dev();
	assert_non_null(t);
	t->be = (struct net_backend){ .ops = &tbe_ops,
				      .name = "test",
				      .nr_pairs = 1,
				      .vnet_hdr = true,
				      .vhost = true,
				      .vhost_required = true };
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	t->be.fds[0] = sv[0];
	fx->peer[0] = sv[1];
	assert_int_equal(virtio_net_create(&fx->net, fx->vm, fx->bus, fx->irq, &t->be, &o, err,
					   sizeof(err)),
			 -ENOENT);
	assert_null(fx->net);
	assert_string_equal(err, "vhost-net: /dev/vhost-net: No such file or directory (is the "
				 "vhost_net module loaded?)");
	assert_int_equal(umount("/dev"), 0);
}

/* vhost=auto: one notice line, then the userspace data path carries the frames. */
static void test_vhost_auto_without_vhost_net_says_so_and_uses_userspace(void **state)
{
	struct fx *fx = *state;
	struct virtio_net_hdr_v1 h = { 0 };
	char out[512] = "";
	uint8_t got[256];
	FILE *tmp = tmpfile();
	int saved = dup(2);
	uint64_t gpa;

	mount_empty_dev();
	assert_non_null(tmp);
	fflush(stderr);
	dup2(fileno(tmp), 2);
	fx->vhost = true;
	net_up(fx, 1, true, BASE_FEATURES | MRG);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_int_equal(umount("/dev"), 0);
	rewind(tmp);
	assert_non_null(fgets(out, sizeof(out), tmp));
	fclose(tmp);
	assert_string_equal(out, "nkvm: test: vhost-net unavailable (/dev/vhost-net: No such file "
				 "or directory (is the vhost_net module loaded?)); using the "
				 "userspace data path\n");
	gpa = tx_frame(fx, &h, 100, 19);
	post(fx, 1, (struct virtio_driver_seg[]){ { gpa, NET_HDR_LEN + 100 } }, 1);
	assert_int_equal(peer_recv(fx, 0, got, sizeof(got), DEADLINE_MS), NET_HDR_LEN + 100);
}

#define NTEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		NTEST(test_tx_frame_reaches_backend_with_its_vnet_header),
		NTEST(test_nic_type_counters_emit_the_device_stats),
		NTEST(test_tx_frame_to_bare_backend_loses_only_the_header),
		NTEST(test_bogus_tx_headers_are_dropped_counted_and_never_sent),
		NTEST(test_tx_waits_for_a_full_backend_instead_of_dropping),
		NTEST(test_rx_frame_lands_with_num_buffers),
		NTEST(test_rx_bare_frame_gets_a_zero_header),
		NTEST(test_rx_frame_spreads_over_several_mergeable_buffers),
		NTEST(test_rx_without_buffers_leaves_the_frame_in_the_backend),
		NTEST(test_rx_buffer_shorter_than_the_header_is_returned_unwritten),
		NTEST(test_rx_frame_larger_than_the_buffer_without_mrg_is_dropped),
		NTEST(test_rx_frame_goes_to_each_buffers_own_writable_segments),
		NTEST(test_mq_vq_pairs_set_accepts_1_to_max_and_refuses_the_rest),
		NTEST(test_without_mq_the_control_queue_is_queue_2),
		NTEST(test_start_hands_the_negotiated_features_to_the_backend),
		NTEST(test_vhost_required_without_vhost_net_fails_create_with_its_reason),
		NTEST(test_vhost_auto_without_vhost_net_says_so_and_uses_userspace),
	};

	signal(SIGPIPE, SIG_IGN);
	isolate();
	return cmocka_run_group_tests_name("virtio_net", tests, NULL, NULL);
}
