// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile balloon driver (virtio/balloon.c) through its real virtio-pci
 * transport, driven by the in-process driver (virtio/driver.h) on a VM without KVM: page frame
 * number arrays on the inflate and deflate queues (numbers inside and outside RAM, on the rings'
 * own pages, odd lengths, writable buffers), statistics buffers (any tags, odd sizes), free page
 * reports (any address and length), and the host's side meanwhile (a new target, statistics
 * asked for). Each input gets a fresh device, negotiated with the features it names, in fresh
 * RAM. Checked: unless the driver ballooned its own rings' pages (they then read as zeros, and
 * the device rightly gives up on the queue: §2.1.2 NEEDS_RESET), each queue uses every buffer
 * it was given (the statistics queue once asked) and the device never needs a reset; and what
 * it reports stays sane.
 *
 * Input: u8 features (bit 0 STATS_VQ, 1 DEFLATE_ON_OOM, 2 REPORTING), then records: u8 op,
 * le16 len, then len bytes (at most 4 KiB). op & 3 is the queue (inflate, deflate, stats,
 * reporting, as Linux numbers those negotiated; past them, the host's side: len is a new target
 * in 4 KiB pages, or with op bit 2 statistics are asked for); op bit 3 makes the buffer
 * device-writable, bit 4 cuts it in two descriptors. Bytes past the input are zeros.
 */
#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_pci.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hw/pci.h"
#include "lib/util.h"
#include "virtio/balloon.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"
#include "tests/fuzz/fuzz_device.h"

#define F(bit) (1ULL << (bit))
#define RAM_SIZE (4 * MiB)
#define RINGS_GPA 0x10000ULL
#define RING_STRIDE 0x8000ULL
#define DATA_GPA 0x100000ULL
#define QSIZE 64
#define MAX_RECORDS 32 /* two descriptors each at most: a queue's table never wraps onto itself */
#define MAX_LEN 4096
#define DEADLINE_MS 3000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm vm;
	static struct pci_bus bus;
	static struct irq_routing irq;
	struct virtio_driver drv;
	struct virtio_driver_queue q[4];
	uint16_t next[4] = { 0 }, posted[4] = { 0 };
	struct virtio_balloon_info info;
	struct virtio_balloon *b;
	uint64_t features = F(VIRTIO_F_VERSION_1), gpa = DATA_GPA;
	unsigned int nq = 2, stats_q = 99, records = 0;
	bool rings_hit = false;
	size_t at = 1;

	if (!size)
		return 0;
	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = vm.stop_fd = -1;
	if (memory_init(&vm.mem, RAM_SIZE) || irq_routing_init(&irq, NULL) || pci_init(&bus, &vm) ||
	    virtio_balloon_create(&b, &vm, &bus, &irq))
		abort();
	/* Linux numbers the queues it negotiated in order: stats and reporting only if there. */
	if (data[0] & 1) {
		features |= F(VIRTIO_BALLOON_F_STATS_VQ);
		stats_q = nq++;
	}
	if (data[0] & 2)
		features |= F(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	if (data[0] & 4) {
		features |= F(VIRTIO_BALLOON_F_REPORTING);
		nq++;
	}
	if (virtio_driver_find(&drv, &bus, &vm.mem, VIRTIO_ID_BALLOON) ||
	    virtio_driver_begin(&drv, DEADLINE_MS))
		abort();
	if (virtio_driver_start(&drv, features, q, nq, QSIZE, RINGS_GPA, RING_STRIDE))
		abort();

	while (at + 3 <= size && records++ < MAX_RECORDS) {
		uint8_t op = data[at];
		size_t len = (data[at + 1] | data[at + 2] << 8) % (MAX_LEN + 1), n;
		unsigned int qi = op & 3;

		at += 3;
		n = size - at < len ? size - at : len;
		if (qi >= nq) {
			if (op & 4)
				virtio_balloon_info(b, &info, 1);
			else
				virtio_balloon_set_target(b, (uint64_t)len << 12);
			at += n;
			continue;
		}
		if (!len)
			continue; /* the driver API lays out no empty descriptor */
		memset(guest_ptr(&vm.mem, gpa, len), 0, len);
		memcpy(guest_ptr(&vm.mem, gpa, len), data + at, n);
		for (size_t i = 0; qi == 0 && i + 4 <= len; i += 4) {
			uint32_t pfn = le32toh(*(uint32_t *)guest_ptr(&vm.mem, gpa + i, 4));

			rings_hit |= pfn >= RINGS_GPA >> 12 && pfn < (RINGS_GPA + 4 * RING_STRIDE) >> 12;
		}
		at += n;
		if ((op & 0x10) && len > 1) {
			struct virtio_driver_seg s[2] = { { gpa, len / 2, op & 8 },
							  { gpa + len / 2, len - len / 2, op & 8 } };

			virtio_driver_queue_add_chain(&q[qi], &next[qi], s, 2);
		} else {
			struct virtio_driver_seg s = { gpa, len, op & 8 };

			virtio_driver_queue_add_chain(&q[qi], &next[qi], &s, 1);
		}
		posted[qi]++;
		virtio_driver_queue_publish(&q[qi]);
		virtio_driver_queue_kick(&q[qi]);
		gpa = ALIGN_UP(gpa + len, 64);
	}
	/* Every buffer comes back; the statistics one once the host asks (§5.5.6.3). */
	for (unsigned int i = 0; i < nq; i++) {
		uint64_t end = now_ms() + DEADLINE_MS;

		while (used_idx(&q[i]) != posted[i] && now_ms() < end) {
			if (i == stats_q)
				virtio_balloon_info(b, &info, 1);
			else
				usleep(50);
		}
		/* The statistics queue keeps its last buffer: the next ask uses it. */
		if (!rings_hit && (uint16_t)(posted[i] - used_idx(&q[i])) > (i == stats_q))
			abort();
	}
	virtio_balloon_info(b, &info, 0);
	if (info.have >> VIRTIO_BALLOON_S_NR || info.target > RAM_SIZE ||
	    (!rings_hit && (virtio_driver_status(&drv) & VIRTIO_CONFIG_S_NEEDS_RESET)))
		abort();
	virtio_balloon_destroy(b);
	memory_free(&vm.mem);
	pthread_mutex_destroy(&bus.lock);
	pthread_mutex_destroy(&irq.lock);
	return 0;
}
