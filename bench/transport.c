// SPDX-License-Identifier: MIT
/*
 * What the virtio-pci transport costs the vCPU that exits to it: the time, as the writing thread
 * sees it, of a guest's register writes that change the device's state, on a VM without KVM
 * (as nkvm img bench drives one). Built by bench/transport.sh against two trees.
 *   reset:  the status write of 0 on a running device with one queue thread
 *   start:  the status write of DRIVER_OK (rings mapped, device and queue thread started)
 *   route:  an MSI-X table write of a new message data (a route to commit)
 *   unmask: an MSI-X vector's unmask with a message pending (the message is sent)
 *   qreg:   a queue register write (queue_desc) while the device is being set up
 * Without KVM the ioctls are not made (KVM_SET_GSI_ROUTING, KVM_IOEVENTFD): in a guest each adds
 * its own cost to route and to a BAR move, on the vCPU before, on the worker after.
 * Prints: "op=NAME ns=X" (the median of ROUNDS writes) per operation.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hw/pci.h"
#include "virtio/device.h"
#include "virtio/pci.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define ROUNDS 301
#define RAM_SIZE (1 << 20)
#define QSIZE 256

int vm_irq_line(struct vm *vm, unsigned int gsi, int level)
{
	return 0;
}

void nkvm_err(const char *fmt, ...)
{
}

static atomic_uint queue_threads;

static void bdev_kick(struct virtio_device *vdev, unsigned int q)
{
}

static void bdev_queue_start(struct virtio_device *vdev, unsigned int q, int *fd)
{
	atomic_fetch_add(&queue_threads, 1);
}

static void bdev_queue_stop(struct virtio_device *vdev, unsigned int q)
{
	atomic_fetch_sub(&queue_threads, 1);
}

static const struct virtio_device_ops bdev_ops = {
	.queue_kick = bdev_kick,
	.queue_start = bdev_queue_start,
	.queue_stop = bdev_queue_stop,
};

static struct pci_device *dev;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void w(uint64_t off, uint64_t v, unsigned int len)
{
	dev->ops->bar_write(dev, 0, off, &v, len);
}

static uint64_t r(uint64_t off, unsigned int len)
{
	uint64_t v = 0;

	dev->ops->bar_read(dev, 0, off, &v, len);
	return v;
}

/* Times one write (ns). */
static double timed_w(uint64_t off, uint64_t v, unsigned int len)
{
	double t0 = now();

	w(off, v, len);
	return now() - t0;
}

static void wait_until(bool (*done)(void))
{
	while (!done())
		usleep(20);
}

static bool status_is_0(void)
{
	return r(0x14, 1) == 0;
}

static bool thread_running(void)
{
	return atomic_load(&queue_threads) == 1;
}

/* Up to FEATURES_OK with queue 0's rings; offsets of src/virtio/pci.c's BAR 0. */
static void setup(void)
{
	w(0x14, 0, 1);
	wait_until(status_is_0);
	w(0x14, 3, 1);
	w(0x08, 1, 4);
	w(0x0c, 1, 4);	/* VERSION_1 */
	w(0x14, 11, 1);
	w(0x16, 0, 2);
	w(0x20, 0x10000, 8);
	w(0x28, 0x20000, 8);
	w(0x30, 0x30000, 8);
	w(0x1c, 1, 2);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *op, double *t)
{
	qsort(t, ROUNDS, sizeof(*t), cmp);
	printf("op=%s ns=%.0f\n", op, t[ROUNDS / 2]);
}

int main(void)
{
	static struct vm vm;
	static struct pci_bus bus;
	static struct irq_routing irq;
	static struct virtio_device vdev = {
		.ops = &bdev_ops, .name = "bench", .device_id = VIRTIO_ID_RNG,
		.host_features = 1ULL << VIRTIO_F_VERSION_1, .nr_queues = 1, .queue_max_size = QSIZE,
	};
	static double reset[ROUNDS], start[ROUNDS], route[ROUNDS], unmask[ROUNDS], qreg[ROUNDS];
	struct virtio_pci *vp;
	uint64_t msix = 0x4000, pba = 0x6000, one;

	vm.kvm_fd = vm.vm_fd = vm.stop_fd = -1;
	if (memory_init(&vm.mem, RAM_SIZE) || irq_routing_init(&irq, NULL) || pci_init(&bus, &vm) ||
	    virtio_pci_create(&vp, &vm, &bus, &irq, &vdev))
		return 1;
	for (unsigned int s = 0; s < PCI_MAX_SLOTS && !dev; s++)
		if (bus.slots[s] && virtio_pci_device(bus.slots[s]) == &vdev)
			dev = bus.slots[s];
	if (!dev)
		return 1;
	/* MSI-X on (capability at the function's first MSI-X cap), vector 0 for config changes. */
	for (unsigned int off = dev->cfg[PCI_CAP_PTR]; off; off = dev->cfg[off + 1]) {
		if (dev->cfg[off] == 0x11) {
			pci_config_write(&bus, 0x80000000U | dev->slot << 11 | (off + 2), 0x8000, 2);
			break;
		}
	}
	w(msix, 0xfee00000, 4);
	w(msix + 8, 0x40, 4);
	w(msix + 12, 0, 4);
	for (unsigned int i = 0; i < ROUNDS; i++) {
		setup();
		qreg[i] = timed_w(0x20, 0x10000, 8);
		start[i] = timed_w(0x14, 15, 1);
		wait_until(thread_running);
		w(0x10, 0, 2);	/* config changes on vector 0 */
		route[i] = timed_w(msix + 8, 0x41 + (i & 1), 4);
		/* A pending message on masked vector 0, then its unmask. */
		w(msix + 12, 1, 4);
		usleep(1000);	/* the route commit, where it is asynchronous */
		virtio_needs_reset(&vdev, "bench");	/* a config interrupt, in both trees */
		unmask[i] = timed_w(msix + 12, 0, 4);
		while (r(pba, 8))
			usleep(20);
		if (read(virtio_pci_vector_fd(vp, 0), &one, sizeof(one)) < 0)
			return 1;
		reset[i] = timed_w(0x14, 0, 1);
		wait_until(status_is_0);
	}
	report("reset", reset);
	report("start", start);
	report("route", route);
	report("unmask", unmask);
	report("qreg", qreg);
	bus.slots[dev->slot] = NULL;
	virtio_pci_free(vp);
	return 0;
}
