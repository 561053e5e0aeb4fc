// SPDX-License-Identifier: MIT
/*
 * What one MMIO exit costs nkvm after KVM hands it over: the vCPU thread's path from the MMIO
 * bus through the PCI hole to a device's BAR handler (a trivial one here), timed in a loop on
 * 1 and on 2 threads at once, as vCPUs would. No KVM needed. Built by bench/mmio.sh against
 * two trees, so that the same loop times the dispatch before and after a change.
 * Prints: "threads=N ns_per_access=X" per run.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw/pci.h"
#include "vmm/bus.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define DEVICES 6	/* a typical machine: rng, console, four disks */
#define ACCESSES 4000000

static void dev_read(struct pci_device *dev, unsigned int bar, uint64_t off, void *data,
		     unsigned int len)
{
	memset(data, (int)off, len);
}

static const struct pci_device_ops dev_ops = { .bar_read = dev_read };

struct worker {
	struct vm *vm;
	uint64_t addr;
	double ns;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	volatile uint8_t sink = 0;
	double t0 = now();

	for (unsigned int i = 0; i < ACCESSES; i++) {
		uint8_t v;

		bus_read(&w->vm->mmio, w->addr + 0x14, &v, 1);	/* a device-status read */
		sink += v;
	}
	w->ns = (now() - t0) / ACCESSES;
	return NULL;
}

int main(void)
{
	static struct vm vm;
	static struct pci_bus bus;
	static struct pci_device devs[DEVICES];
	struct worker w[2];
	pthread_t t[2];
	uint64_t addr = 0;

	vm.kvm_fd = vm.vm_fd = -1;
	if (pci_init(&bus, &vm))
		return 1;
	for (unsigned int i = 0; i < DEVICES; i++) {
		int slot;

		pci_device_init(&devs[i], 0x1af4, 0x1042, 0x018000, 0x1af4, 0x40, &dev_ops);
		if (pci_device_add_bar(&devs[i], 0, 0x8000))
			return 1;
		slot = pci_register_device(&bus, &devs[i]);
		if (slot < 0)
			return 1;
		/* Memory decoding on, as the guest's PCI scan does. */
		pci_config_write(&bus, 0x80000000u | slot << 11 | PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
		addr = devs[i].bar_addr[0];	/* the last device: the longest search */
	}
	if (!addr)
		return 1;
	for (unsigned int n = 1; n <= 2; n++) {
		double sum = 0;

		for (unsigned int i = 0; i < n; i++) {
			w[i] = (struct worker){ .vm = &vm, .addr = addr };
			pthread_create(&t[i], NULL, work, &w[i]);
		}
		for (unsigned int i = 0; i < n; i++) {
			pthread_join(t[i], NULL);
			sum += w[i].ns;
		}
		printf("threads=%u ns_per_access=%.1f\n", n, sum / n);
	}
	return 0;
}
