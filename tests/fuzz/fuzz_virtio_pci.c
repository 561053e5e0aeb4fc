// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile driver at the virtio-pci transport's registers (status, features,
 * queue set-up, MSI-X, notify) and in guest RAM (the rings), on a VM without KVM as nkvm img
 * bench runs one: accesses go through pci_config_write and pci_mmio_access as a vCPU's exits
 * would, kicks reach the queue threads through the notify register, interrupts are eventfd
 * writes nobody reads. The device is the target's own: queue 0 uses and pushes every chain,
 * queue 1 holds them (as a disk whose requests never complete), so the in-flight bound is
 * reached too. Each input gets a fresh transport, freed at its end (a reset: threads joined).
 *
 * Input: records of 11 bytes: u8 op, le16 a, le64 v. op & 3 is the kind: 0 a BAR write of v at
 * offset a % 32 KiB, 1 a BAR read there, 2 a config space write of v at a % 256 (with op bit
 * 4 a read there instead, twice: the two must agree, reads have no side effects), 3 eight bytes
 * v into guest RAM at (8 * a) % RAM_SIZE; (op >> 2) & 3 gives the length, 1 << n bytes (at
 * most 4 for config space). Kind 3 with length code 0 is a pause of 50 us instead, which lets
 * the queue threads take what the kicks before it announced (a guest's vCPU waits so too).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/pci.h"
#include "lib/log.h"
#include "virtio/device.h"
#include "virtio/pci.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"
#include "tests/fuzz/fuzz_device.h"

#define RAM_SIZE 0x10000
#define BAR_SIZE 0x8000
#define RECORD 11
#define QSIZE 16
#define CONFIG_SIZE 8

struct fdev {
	struct virtio_device vdev;
	struct virtq_chain chain[2]; /* one per queue: each queue's thread pops into its own */
	uint8_t config[CONFIG_SIZE];
};

static void fdev_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct fdev *fd = (struct fdev *)vdev;
	struct virtq_chain *c = &fd->chain[q];
	static volatile uint8_t sink;

	while (virtio_pop(vdev, q, c) > 0) {
		/* The first and last byte of each segment, as a device reads and writes them. */
		for (unsigned int i = 0; i < c->nr_out + c->nr_in; i++) {
			uint8_t *p = c->iov[i].iov_base;

			if (i < c->nr_out) {
				sink = p[0];
				sink = p[c->iov[i].iov_len - 1];
			} else {
				p[0] = 0xa5;
				p[c->iov[i].iov_len - 1] = 0x5a;
			}
		}
		if (q == 0)
			virtio_push(vdev, q, c->head, (uint32_t)c->in_len);
	}
}

static void fdev_config_read(struct virtio_device *vdev, uint64_t off, void *data, unsigned int len)
{
	memcpy(data, ((struct fdev *)vdev)->config + off, len);
}

static void fdev_config_write(struct virtio_device *vdev, uint64_t off, const void *data,
			      unsigned int len)
{
	memcpy(((struct fdev *)vdev)->config + off, data, len);
}

static const struct virtio_device_ops fdev_ops = {
	.queue_kick = fdev_queue_kick,
	.config_read = fdev_config_read,
	.config_write = fdev_config_write,
};

static uint64_t get_le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = (v << 8) | p[n];
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_memory mem;
	static struct fdev dev;
	static struct vm vm;
	static struct pci_bus bus;
	static struct irq_routing irq;
	struct virtio_pci *vp;
	struct pci_device *pdev = NULL;
	uint32_t cfg_addr;

	if (!mem.base) {
		/* A heap block, not memory_init's mapping, so that ASan sees accesses past it. */
		memory_layout(&mem, RAM_SIZE);
		mem.base = aligned_alloc(4096, RAM_SIZE);
		if (!mem.base)
			abort();
		mem.regions[0].host = mem.base;
	}
	memset(mem.base, 0, RAM_SIZE);
	memset(&vm, 0, sizeof(vm));
	vm.mem = mem;
	vm.kvm_fd = vm.vm_fd = vm.stop_fd = -1;
	memset(&dev, 0, sizeof(dev));
	dev.vdev = (struct virtio_device){
		.ops = &fdev_ops,
		.name = "virtio-fuzz",
		.device_id = VIRTIO_ID_RNG,
		.host_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX) |
				 (1ULL << VIRTIO_RING_F_INDIRECT_DESC),
		.nr_queues = 2,
		.queue_max_size = QSIZE,
		.config_size = CONFIG_SIZE,
	};
	if (irq_routing_init(&irq, NULL) || pci_init(&bus, &vm) ||
	    virtio_pci_create(&vp, &vm, &bus, &irq, &dev.vdev))
		abort();
	for (unsigned int s = 0; s < PCI_MAX_SLOTS && !pdev; s++)
		if (bus.slots[s] && virtio_pci_device(bus.slots[s]) == &dev.vdev)
			pdev = bus.slots[s];
	if (!pdev)
		abort();
	/* Memory decoding on, as firmware leaves it: BAR 0 answers where pci_register_device put it. */
	cfg_addr = 0x80000000U | pdev->slot << 11;
	pci_config_write(&bus, cfg_addr | PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);

	for (size_t at = 0; at + RECORD <= size; at += RECORD) {
		uint8_t op = data[at], kind = op & 3;
		unsigned int a = get_le(data + at + 1, 2), len = 1U << ((op >> 2) & 3);
		uint64_t v = get_le(data + at + 3, 8), buf = v;

		switch (kind) {
		case 0:
		case 1:
			/* Through the bus, which checks the access lies inside the BAR it finds. */
			pci_mmio_access(&bus, pdev->bar_addr[0] + a % BAR_SIZE, &buf, len,
					kind == 0);
			break;
		case 2:
			if (op & 0x10) {
				uint32_t r1 = pci_config_read(&bus, cfg_addr | (a % PCI_CFG_SIZE),
							      len > 4 ? 4 : len);

				if (pci_config_read(&bus, cfg_addr | (a % PCI_CFG_SIZE),
						    len > 4 ? 4 : len) != r1)
					abort(); /* config space has no read side effects */
				break;
			}
			pci_config_write(&bus, cfg_addr | (a % PCI_CFG_SIZE), (uint32_t)v,
					 len > 4 ? 4 : len);
			break;
		default:
			if (len == 1)
				usleep(50);
			else
				memcpy(mem.base + (8ULL * a) % RAM_SIZE, &v, 8);
			break;
		}
	}

	virtio_pci_free(vp); /* it leaves the bus too */
	pthread_mutex_destroy(&bus.lock);
	pthread_mutex_destroy(&irq.lock);
	return 0;
}
