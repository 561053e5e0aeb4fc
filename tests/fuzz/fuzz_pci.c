// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile guest's PCI configuration space accesses (hw/pci.c) through ports
 * 0xCF8/0xCFC as a vCPU's exits reach them, in every width and at every offset, with BAR sizing
 * as Linux does it (all ones, read back, restore), the command register's decoding bits, the
 * MSI-X capability of a virtio-pci function (virtio-rng, its real transport), and MMIO accesses
 * to wherever the BARs answer at that moment. The bus: the host bridge, a bare function with
 * three 64-bit BARs of 4 KiB, 1 MiB and 16 MiB and a vendor capability, and the virtio-rng.
 * Each input gets a fresh bus on a VM without KVM. Checked after every access: read-only bits
 * never change; a BAR answers only aligned to its size, with decoding on and not while sized;
 * a BAR access reaches a device only inside that BAR; sizing reads back the size.
 *
 * Input: records of 7 bytes: u8 op, u8 off, u8 dev, le32 v. op & 3 is the kind, width
 * 1 << ((op >> 2) % 3): 0 a config write of v at config offset off of slot dev % 4 (dev's top
 * bits: bit 7 clears CONFIG_ADDRESS's enable bit, bit 6 asks for function 1, bit 5 for bus 1),
 * or with op bit 4 a write of v to port 0xCF8 + off % 8; 1 a config read there; 2 Linux's
 * sizing of BAR off % 6 of slot dev % 4; 3 an MMIO access (op bit 4: a write) at BAR
 * off % 6 of slot dev % 4 plus v, or at MEM_HOLE_START + v * 4 when that BAR does not answer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hw/pci.h"
#include "virtio/rng.h"
#include "vmm/board.h"
#include "vmm/irq.h"
#include "vmm/vm.h"
#include "tests/fuzz/fuzz_device.h"

#define RECORD 7
#define SLOTS 4

static struct pci_device bare;
static const uint64_t bare_bars[PCI_MAX_BARS] = { 4096, 0, 1 << 20, 0, 16 << 20, 0 };

/* The bare function's BARs: any access must lie inside the BAR it names. */
static void bare_access(unsigned int bar, uint64_t off, unsigned int len)
{
	if (bar >= PCI_MAX_BARS || !bare_bars[bar] || off >= bare_bars[bar] ||
	    len > bare_bars[bar] - off || !len || len > 8 || (len & (len - 1)))
		abort();
}

static void bare_read(struct pci_device *dev, unsigned int bar, uint64_t off, void *data,
		      unsigned int len)
{
	bare_access(bar, off, len);
	memset(data, 0x5a, len);
}

static void bare_write(struct pci_device *dev, unsigned int bar, uint64_t off, const void *data,
		       unsigned int len)
{
	bare_access(bar, off, len);
}

static void bare_moved(struct pci_device *dev, unsigned int bar, uint64_t addr)
{
	if (bar >= PCI_MAX_BARS || !bare_bars[bar] || addr != dev->bar_addr[bar] ||
	    addr % bare_bars[bar])
		abort();
}

static const struct pci_device_ops bare_ops = {
	.bar_read = bare_read,
	.bar_write = bare_write,
	.bar_moved = bare_moved,
};

static void check(struct pci_bus *bus, uint8_t ro[SLOTS][PCI_CFG_SIZE])
{
	for (unsigned int s = 0; s < SLOTS; s++) {
		const struct pci_device *d = bus->slots[s];
		bool decode;

		if (!d)
			continue;
		decode = d->cfg[PCI_COMMAND] & PCI_COMMAND_MEMORY;
		for (unsigned int i = 0; i < PCI_CFG_SIZE; i++)
			if ((d->cfg[i] & ~d->wmask[i]) != ro[s][i])
				abort();
		for (unsigned int b = 0; b < PCI_MAX_BARS; b++)
			if (d->bar_addr[b] && (!decode || !d->bar_size[b] ||
					       d->bar_addr[b] % d->bar_size[b]))
				abort();
	}
	if (bus->map_nr > PCI_MAX_SLOTS * PCI_MAX_BARS)
		abort();
}

static uint32_t config_addr(unsigned int dev, unsigned int off)
{
	return (dev & 0x80 ? 0 : 0x80000000U) | (dev & 0x20 ? 1U << 16 : 0) |
	       (dev & 0x40 ? 1U << 8 : 0) | (dev % SLOTS) << 11 | (off & 0xfc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm vm;
	static struct pci_bus bus;
	static struct irq_routing irq;
	static uint8_t ro[SLOTS][PCI_CFG_SIZE];
	struct virtio_rng *rng;

	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = vm.stop_fd = -1;
	if (irq_routing_init(&irq, NULL) || pci_init(&bus, &vm))
		abort();
	pci_device_init(&bare, 0x1af4, 0x10ff, PCI_CLASS_OTHERS, 0x1af4, 1, &bare_ops);
	for (unsigned int b = 0; b < PCI_MAX_BARS; b++)
		if (bare_bars[b] && pci_device_add_bar(&bare, b, bare_bars[b]))
			abort();
	if (pci_device_add_cap(&bare, PCI_CAP_ID_VNDR, 8) < 0 || pci_register_device(&bus, &bare) < 0 ||
	    virtio_rng_create(&rng, &vm, &bus, &irq))
		abort();
	for (unsigned int s = 0; s < SLOTS; s++)
		for (unsigned int i = 0; bus.slots[s] && i < PCI_CFG_SIZE; i++)
			ro[s][i] = bus.slots[s]->cfg[i] & ~bus.slots[s]->wmask[i];

	for (size_t at = 0; at + RECORD <= size; at += RECORD) {
		uint8_t op = data[at], off = data[at + 1], dev = data[at + 2];
		uint32_t v = data[at + 3] | data[at + 4] << 8 | data[at + 5] << 16 |
			     (uint32_t)data[at + 6] << 24;
		unsigned int len = 1U << ((op >> 2) % 3), bar = off % PCI_MAX_BARS;
		struct pci_device *d = bus.slots[dev % SLOTS];
		uint32_t addr = config_addr(dev, off), r, saved;
		uint64_t buf = v;

		switch (op & 3) {
		case 0:
			if (op & 0x10) {
				bus_write(&vm.pio, 0xcf8 + off % 8, &buf, len);
				break;
			}
			bus_write(&vm.pio, 0xcf8, &addr, 4);
			bus_write(&vm.pio, 0xcfc + (off & 3), &buf, len);
			break;
		case 1:
			bus_write(&vm.pio, 0xcf8, &addr, 4);
			buf = 0;
			bus_read(&vm.pio, 0xcfc + (off & 3), &buf, len);
			/* Nothing there, or past the register: all ones (PCI 3.0 §6.1). */
			if ((!d || addr != config_addr(dev % SLOTS, off)) &&
			    buf != (len == 4 ? 0xffffffffU : (1ULL << (8 * len)) - 1))
				abort();
			break;
		case 2:
			/* PCI 3.0 §6.2.5.1: all ones, read back the size, put the address back. */
			addr = config_addr(dev % SLOTS, PCI_BAR0 + 4 * bar);
			bus_write(&vm.pio, 0xcf8, &addr, 4);
			bus_read(&vm.pio, 0xcfc, &saved, 4);
			r = 0xffffffff;
			bus_write(&vm.pio, 0xcfc, &r, 4);
			bus_read(&vm.pio, 0xcfc, &r, 4);
			if (d && d->bar_size[bar] && (r & ~0xfU) != ((uint32_t)~(d->bar_size[bar] - 1) & ~0xfU))
				abort();
			bus_write(&vm.pio, 0xcfc, &saved, 4);
			break;
		default:
			if (d && d->bar_addr[bar])
				pci_mmio_access(&bus, d->bar_addr[bar] + v % d->bar_size[bar], &buf,
						len << (op >> 7), op & 0x10);
			else
				bus_read(&vm.mmio, MEM_HOLE_START + v * 4ULL, &buf, len);
			break;
		}
		check(&bus, ro);
	}
	virtio_rng_destroy(rng);
	pci_unregister_device(&bus, &bare);
	pthread_mutex_destroy(&bus.lock);
	pthread_mutex_destroy(&irq.lock);
	return 0;
}
