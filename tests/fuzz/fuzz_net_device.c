// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile virtio-net driver and a hostile network (virtio/net.c) through
 * the real transport, driven by the in-process driver (virtio/driver.h) on a VM without KVM,
 * over a back end of AF_UNIX datagram socketpairs whose other ends the fuzzer holds: TX chains
 * (header and frame cut into segments, device-writable ones among them), RX buffers of any size
 * and shape for frames the network sends (with or without the vnet header, any length), and
 * control commands (any class, command and data, cut or without an ack). The features come from
 * the input: vnet header, two pairs with MQ, MRG_RXBUF, the offloads, EVENT_IDX. Each input
 * gets a fresh device in fresh RAM. Checked: every TX and control buffer comes back, the device
 * never needs a reset for what a driver may write, every RX buffer used claims no more than
 * its size, and what reaches the network is at most NET_TX_MAX bytes.
 *
 * Input: u8 features (bit 0 vnet header and offloads, 1 two pairs with MQ, 2 MRG_RXBUF, 3
 * EVENT_IDX), then records: u8 op, le16 len, then the record's bytes. op & 3: 0 a TX chain of
 * len bytes from the input (header and frame) cut into 1 + (op >> 3) % 4 readable segments, with
 * op bit 5 a writable one after; 1 an RX buffer of len % 4096 + 1 bytes, in (op >> 3) % 4 + 1
 * segments, with op bit 5 a readable one first; 2 a frame of len bytes from the input sent by
 * the network; 3 a control command of len bytes from the input and a 1-byte ack (op bit 5: no
 * ack; bit 6: the command in two segments). op bit 2 picks the queue pair.
 */
#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/virtio_net.h>
#include <linux/virtio_pci.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
#include "tests/fuzz/fuzz_device.h"

#define F(bit) (1ULL << (bit))
#define RAM_SIZE (8 * MiB)
#define RINGS_GPA 0x10000ULL
#define RING_STRIDE 0x10000ULL
#define DATA_GPA 0x100000ULL
#define QSIZE 128
#define MAX_RECORDS 24 /* at most 5 descriptors each: a queue's table never wraps onto itself */
#define MAX_QUEUES 5
#define DEADLINE_MS 3000

static int fbe_set_offloads(struct net_backend *be, uint64_t features)
{
	return 0;
}

static void fbe_destroy(struct net_backend *be)
{
	for (unsigned int p = 0; p < be->nr_pairs; p++)
		close(be->fds[p]);
	free(be);
}

static const struct net_backend_ops fbe_ops = {
	.set_offloads = fbe_set_offloads,
	.destroy = fbe_destroy,
};

/* Takes what the device sent to the network: each frame at most NET_TX_MAX bytes. */
static void drain(const int *peer, unsigned int pairs)
{
	static uint8_t frame[2 * NET_TX_MAX];

	for (unsigned int p = 0; p < pairs; p++) {
		ssize_t n;

		while ((n = recv(peer[p], frame, sizeof(frame), MSG_DONTWAIT | MSG_TRUNC)) >= 0)
			if (n > NET_TX_MAX)
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm vm;
	static struct pci_bus bus;
	static struct irq_routing irq;
	static const struct virtio_net_options opts = { .mac = { 0x52, 0x54, 0, 1, 2, 3 } };
	struct virtio_driver drv;
	struct virtio_driver_queue q[MAX_QUEUES];
	uint16_t next[MAX_QUEUES] = { 0 }, posted[MAX_QUEUES] = { 0 };
	uint32_t room[MAX_QUEUES][QSIZE]; /* RX: writable bytes of the chain at each head */
	struct net_backend *be;
	struct virtio_net *net;
	uint64_t features, gpa = DATA_GPA;
	unsigned int pairs, nq, ctrlq, records = 0;
	int peer[2] = { -1, -1 };
	char err[256];
	size_t at = 1;

	if (!size)
		return 0;
	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = vm.stop_fd = -1;
	be = calloc(1, sizeof(*be));
	if (!be || memory_init(&vm.mem, RAM_SIZE) || irq_routing_init(&irq, NULL) ||
	    pci_init(&bus, &vm))
		abort();
	pairs = data[0] & 2 ? 2 : 1;
	*be = (struct net_backend){ .ops = &fbe_ops, .name = "fuzz", .nr_pairs = pairs,
				    .vnet_hdr = data[0] & 1,
				    .offloads = data[0] & 1 ? NET_OFFLOAD_FEATURES : 0 };
	for (unsigned int p = 0; p < pairs; p++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) ||
		    fcntl(sv[0], F_SETFL, O_NONBLOCK))
			abort();
		be->fds[p] = sv[0];
		peer[p] = sv[1];
	}
	if (virtio_net_create(&net, &vm, &bus, &irq, be, &opts, err, sizeof(err)) ||
	    virtio_driver_find(&drv, &bus, &vm.mem, VIRTIO_ID_NET) ||
	    virtio_driver_begin(&drv, DEADLINE_MS))
		abort();
	features = F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) |
		   F(VIRTIO_NET_F_MTU) | F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_CTRL_RX) |
		   F(VIRTIO_RING_F_INDIRECT_DESC);
	if (pairs == 2)
		features |= F(VIRTIO_NET_F_MQ);
	if (data[0] & 4)
		features |= F(VIRTIO_NET_F_MRG_RXBUF);
	if (data[0] & 8)
		features |= F(VIRTIO_RING_F_EVENT_IDX);
	/* Whatever else the device offers (the offloads, with a vnet header), the driver takes. */
	features |= virtio_driver_device_features(&drv) & (NET_OFFLOAD_FEATURES |
							   F(VIRTIO_NET_F_CTRL_VLAN) |
							   F(VIRTIO_NET_F_GUEST_ANNOUNCE) |
							   F(VIRTIO_NET_F_CTRL_MAC_ADDR));
	nq = 2 * pairs + 1;
	ctrlq = 2 * pairs;
	if (virtio_driver_start(&drv, features, q, nq, QSIZE, RINGS_GPA, RING_STRIDE))
		abort();

	while (at + 3 <= size && records++ < MAX_RECORDS) {
		uint8_t op = data[at];
		size_t len = data[at + 1] | data[at + 2] << 8, n;
		unsigned int pair = (op >> 2) & 1 ? pairs - 1 : 0, nseg = (op >> 3) % 4 + 1, qi;
		struct virtio_driver_seg s[6];
		unsigned int k = 0;

		at += 3;
		n = size - at < len ? size - at : len;
		switch (op & 3) {
		case 0: /* TX: the bytes given, cut into nseg readable segments */
		case 3: /* control: the command, then the ack */
			if (!n)
				continue;
			memcpy(guest_ptr(&vm.mem, gpa, n), data + at, n);
			at += n;
			qi = (op & 3) ? ctrlq : 2 * pair + 1;
			if ((op & 3) == 3)
				nseg = (op & 0x40) && n > 1 ? 2 : 1;
			for (size_t off = 0, i = 0; i < nseg && off < n; i++) {
				size_t part = i + 1 == nseg ? n - off : (n - off) / (nseg - i);

				if (!part)
					continue;
				s[k++] = (struct virtio_driver_seg){ gpa + off, part, false };
				off += part;
			}
			gpa = ALIGN_UP(gpa + n, 64);
			if (op & 0x20 ? (op & 3) == 0 : (op & 3) == 3) {
				/* A writable byte: the control queue's ack, or a bad TX segment. */
				*(uint8_t *)guest_ptr(&vm.mem, gpa, 1) = 0xee;
				s[k++] = (struct virtio_driver_seg){ gpa, 1, true };
				gpa += 64;
			}
			break;
		case 1: /* RX: room for a frame, in nseg writable segments */
			qi = 2 * pair;
			len = len % 4096 + 1;
			if (op & 0x20) {
				s[k++] = (struct virtio_driver_seg){ gpa, 16, false };
				gpa += 64;
			}
			for (size_t off = 0, i = 0; i < nseg && off < len; i++) {
				size_t part = i + 1 == nseg ? len - off : (len - off) / (nseg - i);

				if (!part)
					continue;
				s[k++] = (struct virtio_driver_seg){ gpa + off, part, true };
				off += part;
			}
			gpa = ALIGN_UP(gpa + len, 64);
			break;
		default: /* the network sends a frame (a datagram may be empty) */
			if (send(peer[pair], data + at, n, MSG_DONTWAIT) < 0 && n <= 65000)
				drain(peer, pairs); /* the socket's buffer was full of TX frames */
			at += n;
			continue;
		}
		if (gpa > RAM_SIZE - 2 * 65536)
			break;
		room[qi][virtio_driver_queue_add_chain(&q[qi], &next[qi], s, k)] = len;
		posted[qi]++;
		virtio_driver_queue_publish(&q[qi]);
		virtio_driver_queue_kick(&q[qi]);
		drain(peer, pairs);
	}
	/* TX and control buffers all come back (§5.1.6.2, §5.1.6.5); RX ones wait for frames. */
	for (unsigned int i = 1; i < nq; i++) {
		uint64_t end = now_ms() + DEADLINE_MS;

		if (i < ctrlq && i % 2 == 0)
			continue;
		while (used_idx(&q[i]) != posted[i] && now_ms() < end) {
			drain(peer, pairs);
			usleep(50);
		}
		if (used_idx(&q[i]) != posted[i])
			abort();
	}
	/* An RX buffer used claims no more than its room (§5.1.6.4). */
	for (unsigned int p = 0; p < pairs; p++) {
		struct vring_used_elem e;

		while (virtio_driver_queue_get(&q[2 * p], &e))
			if (e.id >= QSIZE || e.len > room[2 * p][e.id])
				abort();
	}
	if (virtio_driver_status(&drv) & VIRTIO_CONFIG_S_NEEDS_RESET)
		abort();
	virtio_net_destroy(net);
	for (unsigned int p = 0; p < pairs; p++)
		close(peer[p]);
	memory_free(&vm.mem);
	pthread_mutex_destroy(&bus.lock);
	pthread_mutex_destroy(&irq.lock);
	return 0;
}
