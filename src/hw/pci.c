// SPDX-License-Identifier: MIT
/* PCI Local Bus 3.0 §3.2.2.3.2: configuration mechanism #1. */
#include <errno.h>
#include <string.h>

#include "hw/pci.h"
#include "vmm/bus.h"
#include "vmm/vm.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_ENABLE 0x80000000u

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

/* The device at a CONFIG_ADDRESS value, or NULL (only bus 0, function 0 exist). */
static struct pci_device *pci_lookup(struct pci_bus *bus, uint32_t addr)
{
	unsigned int busnr = (addr >> 16) & 0xff, slot = (addr >> 11) & 0x1f, fn = (addr >> 8) & 7;

	if (!(addr & PCI_ENABLE) || busnr || fn)
		return NULL;
	return bus->slots[slot];
}

uint32_t pci_config_read(struct pci_bus *bus, uint32_t addr, unsigned int len)
{
	struct pci_device *dev;
	unsigned int off = addr & 0xff;
	uint32_t v = 0;

	pthread_mutex_lock(&bus->lock);
	dev = pci_lookup(bus, addr);
	if (!dev || off + len > PCI_CFG_SIZE)
		v = 0xffffffff;
	else
		for (unsigned int i = 0; i < len; i++)
			v |= (uint32_t)dev->cfg[off + i] << (8 * i);
	pthread_mutex_unlock(&bus->lock);
	return v;
}

void pci_config_write(struct pci_bus *bus, uint32_t addr, uint32_t val, unsigned int len)
{
	struct pci_device *dev;
	unsigned int off = addr & 0xff;

	pthread_mutex_lock(&bus->lock);
	dev = pci_lookup(bus, addr);
	if (dev && off + len <= PCI_CFG_SIZE)
		for (unsigned int i = 0; i < len; i++) {
			uint8_t m = dev->wmask[off + i];

			dev->cfg[off + i] = (dev->cfg[off + i] & ~m) | ((val >> (8 * i)) & m);
		}
	pthread_mutex_unlock(&bus->lock);
}

static uint32_t pci_latched_addr(struct pci_bus *bus)
{
	uint32_t addr;

	pthread_mutex_lock(&bus->lock);
	addr = bus->addr;
	pthread_mutex_unlock(&bus->lock);
	return addr;
}

static void pci_addr_read(void *opaque, uint64_t off, void *data, unsigned int len)
{
	uint32_t v = pci_latched_addr(opaque);

	if (len == 4 && off == 0)
		memcpy(data, &v, 4);
	else
		memset(data, 0xff, len);
}

static void pci_addr_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	struct pci_bus *bus = opaque;

	/* Only a 32-bit write is a CONFIG_ADDRESS; byte writes to 0xCFB etc. are other things. */
	if (len != 4 || off)
		return;
	pthread_mutex_lock(&bus->lock);
	memcpy(&bus->addr, data, 4);
	bus->addr &= ~3u;
	pthread_mutex_unlock(&bus->lock);
}


static void pci_data_read(void *opaque, uint64_t off, void *data, unsigned int len)
{
	struct pci_bus *bus = opaque;
	uint32_t v = pci_config_read(bus, pci_latched_addr(bus) + off, len);

	memcpy(data, &v, len);
}

static void pci_data_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	struct pci_bus *bus = opaque;
	uint32_t v = 0;

	memcpy(&v, data, len);
	pci_config_write(bus, pci_latched_addr(bus) + off, v, len);
}

static const struct bus_ops pci_addr_ops = { .read = pci_addr_read, .write = pci_addr_write };
static const struct bus_ops pci_data_ops = { .read = pci_data_read, .write = pci_data_write };

int pci_register_device(struct pci_bus *bus, struct pci_device *dev)
{
	for (int slot = 0; slot < PCI_MAX_SLOTS; slot++) {
		if (!bus->slots[slot]) {
			bus->slots[slot] = dev;
			return slot;
		}
	}
	return -ENOSPC;
}

int pci_init(struct pci_bus *bus, struct vm *vm)
{
	struct pci_device *hb = &bus->host_bridge;
	int err;

	memset(bus, 0, sizeof(*bus));
	pthread_mutex_init(&bus->lock, NULL);
	put16(hb->cfg + 0x00, 0x1b36);	/* vendor: Red Hat, Inc. (QEMU's device IDs) */
	put16(hb->cfg + 0x02, 0x0008);	/* device: PCIe host bridge */
	hb->cfg[0x0b] = 0x06;		/* class: bridge */
	hb->cfg[0x0a] = 0x00;		/* subclass: host bridge */
	hb->wmask[0x04] = 0x06;		/* command: memory and bus-master enable */
	pci_register_device(bus, hb);
	err = bus_register(&vm->pio, PCI_CONFIG_ADDRESS, 4, &pci_addr_ops, bus);
	if (err)
		return err;
	return bus_register(&vm->pio, PCI_CONFIG_DATA, 4, &pci_data_ops, bus);
}
