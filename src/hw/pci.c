// SPDX-License-Identifier: MIT
/* PCI Local Bus 3.0: configuration mechanism #1 (§3.2.2.3.2), BARs (§6.2.5), capabilities. */
#include <errno.h>
#include <string.h>

#include "hw/pci.h"
#include "lib/util.h"
#include "vmm/board.h"
#include "vmm/bus.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_ENABLE 0x80000000u
#define PCI_BAR_MEM_64 0x04
#define PCI_CFG_CAPS_START 0x40

void pci_device_init(struct pci_device *dev, uint16_t vendor, uint16_t device, uint32_t class_code,
		     uint16_t subsys_vendor, uint16_t subsys_id, const struct pci_device_ops *ops)
{
	memset(dev, 0, sizeof(*dev));
	dev->ops = ops;
	put_le(dev->cfg + 0x00, vendor, 2);
	put_le(dev->cfg + 0x02, device, 2);
	dev->cfg[0x09] = class_code;
	dev->cfg[0x0a] = class_code >> 8;
	dev->cfg[0x0b] = class_code >> 16;
	put_le(dev->cfg + 0x2c, subsys_vendor, 2);
	put_le(dev->cfg + 0x2e, subsys_id, 2);
	put_le(dev->wmask + PCI_COMMAND,
	       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE, 2);
	dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
	dev->next_cap_off = PCI_CFG_CAPS_START;
}

int pci_device_add_bar(struct pci_device *dev, unsigned int bar, uint64_t size)
{
	uint64_t mask = ~(size - 1);

	if (bar + 1 >= PCI_MAX_BARS || (bar & 1) || size < 4096 || (size & (size - 1)))
		return -EINVAL;
	dev->bar_size[bar] = size;
	/* Low dword: address bits above the size are writable, the type bits read-only. */
	dev->cfg[PCI_BAR0 + 4 * bar] = PCI_BAR_MEM_64;
	put_le(dev->wmask + PCI_BAR0 + 4 * bar, (uint32_t)mask & ~0xfu, 4);
	put_le(dev->wmask + PCI_BAR0 + 4 * bar + 4, (uint32_t)(mask >> 32), 4);
	return 0;
}

int pci_device_add_cap(struct pci_device *dev, uint8_t id, unsigned int len)
{
	unsigned int off = dev->next_cap_off;

	if (len < 2 || off + len > PCI_CFG_SIZE)
		return -ENOSPC;
	dev->cfg[off] = id;
	dev->cfg[off + 1] = 0;
	if (dev->last_cap)
		dev->cfg[dev->last_cap + 1] = off;
	else
		dev->cfg[PCI_CAP_PTR] = off;
	dev->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	dev->last_cap = off;
	dev->next_cap_off = (off + len + 3) & ~3u;
	return off;
}

unsigned int pci_slot_gsi(unsigned int slot)
{
	return PCI_INTX_GSI_BASE + slot % PCI_INTX_GSI_COUNT;
}

static uint64_t bar_value(const struct pci_device *dev, unsigned int bar)
{
	uint64_t lo = get_le(dev->cfg + PCI_BAR0 + 4 * bar, 4);
	uint64_t hi = get_le(dev->cfg + PCI_BAR0 + 4 * bar + 4, 4);

	return (hi << 32 | lo) & ~0xfULL;
}

/*
 * Recomputes where each BAR answers after a config write; returns a bit per BAR that moved.
 * A BAR answers only with memory decoding on and while it is not being sized (all ones).
 */
static unsigned int pci_update_bars(struct pci_device *dev)
{
	bool decode = dev->cfg[PCI_COMMAND] & PCI_COMMAND_MEMORY;
	unsigned int moved = 0;

	for (unsigned int bar = 0; bar < PCI_MAX_BARS; bar++) {
		uint64_t size = dev->bar_size[bar], addr = 0;

		if (!size)
			continue;
		addr = bar_value(dev, bar);
		if (!decode || addr == ~(size - 1) || addr + size < addr)
			addr = 0;
		if (addr != dev->bar_addr[bar]) {
			dev->bar_addr[bar] = addr;
			moved |= 1u << bar;
		}
	}
	return moved;
}

/*
 * Rebuilds the MMIO map from every slot's BARs. Called with bus->lock held; readers that run
 * meanwhile see an odd sequence count, or a changed one afterwards, and look again.
 */
static void pci_map_rebuild_locked(struct pci_bus *bus)
{
	unsigned int seq = atomic_load_explicit(&bus->map_seq, memory_order_relaxed), nr = 0;

	atomic_store_explicit(&bus->map_seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	for (unsigned int s = 0; s < PCI_MAX_SLOTS; s++) {
		struct pci_device *d = bus->slots[s];

		for (unsigned int b = 0; d && b < PCI_MAX_BARS; b++) {
			struct pci_bar_map_entry *e = &bus->map[nr];

			if (!d->bar_addr[b])
				continue;
			atomic_store_explicit(&e->base, d->bar_addr[b], memory_order_relaxed);
			atomic_store_explicit(&e->size, d->bar_size[b], memory_order_relaxed);
			atomic_store_explicit(&e->dev, d, memory_order_relaxed);
			atomic_store_explicit(&e->bar, b, memory_order_relaxed);
			nr++;
		}
	}
	atomic_store_explicit(&bus->map_nr, nr, memory_order_relaxed);
	atomic_store_explicit(&bus->map_seq, seq + 2, memory_order_release);
}

/* The BAR holding [addr, addr + len) as the map says now: its device, BAR and offset. */
static struct pci_device *pci_map_find(struct pci_bus *bus, uint64_t addr, unsigned int len,
				       unsigned int *bar, uint64_t *off)
{
	struct pci_device *dev;
	unsigned int seq;

	do {
		seq = atomic_load_explicit(&bus->map_seq, memory_order_acquire);
		if (seq & 1)
			continue; /* a rebuild is under way: a few stores, look again */
		dev = NULL;
		for (unsigned int i = 0;
		     i < atomic_load_explicit(&bus->map_nr, memory_order_relaxed); i++) {
			struct pci_bar_map_entry *e = &bus->map[i];
			uint64_t base = atomic_load_explicit(&e->base, memory_order_relaxed);
			uint64_t size = atomic_load_explicit(&e->size, memory_order_relaxed);

			if (addr >= base && addr - base < size && len <= size - (addr - base)) {
				dev = atomic_load_explicit(&e->dev, memory_order_relaxed);
				*bar = atomic_load_explicit(&e->bar, memory_order_relaxed);
				*off = addr - base;
				break;
			}
		}
		atomic_thread_fence(memory_order_acquire);
	} while ((seq & 1) || seq != atomic_load_explicit(&bus->map_seq, memory_order_relaxed));
	return dev;
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
	unsigned int off = addr & 0xff, moved = 0;

	pthread_mutex_lock(&bus->lock);
	dev = pci_lookup(bus, addr);
	if (!dev || off + len > PCI_CFG_SIZE) {
		pthread_mutex_unlock(&bus->lock);
		return;
	}
	for (unsigned int i = 0; i < len; i++) {
		uint8_t m = dev->wmask[off + i];

		dev->cfg[off + i] = (dev->cfg[off + i] & ~m) | ((val >> (8 * i)) & m);
	}
	moved = pci_update_bars(dev);
	if (moved)
		pci_map_rebuild_locked(bus);
	pthread_mutex_unlock(&bus->lock);
	/* Callbacks run without the bus lock: they take the device's own. */
	for (unsigned int bar = 0; bar < PCI_MAX_BARS; bar++)
		if ((moved & (1u << bar)) && dev->ops && dev->ops->bar_moved)
			dev->ops->bar_moved(dev, bar, dev->bar_addr[bar]);
	if (dev->ops && dev->ops->config_written)
		dev->ops->config_written(dev, off, len);
}

/*
 * A vCPU's MMIO exit in the hole: no lock on the way to the device (the map is read under its
 * sequence count), so vCPUs never wait for each other or for a config write here. Devices leave
 * the bus only once the vCPUs are stopped, so a device found is still there.
 */
bool pci_mmio_access(struct pci_bus *bus, uint64_t addr, void *data, unsigned int len, bool write)
{
	unsigned int bar = 0;
	uint64_t off = 0;
	struct pci_device *dev = pci_map_find(bus, addr, len, &bar, &off);

	if (!dev || !dev->ops) {
		if (!write)
			memset(data, 0xff, len);
		return false;
	}
	if (write && dev->ops->bar_write)
		dev->ops->bar_write(dev, bar, off, data, len);
	else if (!write && dev->ops->bar_read)
		dev->ops->bar_read(dev, bar, off, data, len);
	else if (!write)
		memset(data, 0xff, len);
	return true;
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

static void pci_hole_read(void *opaque, uint64_t off, void *data, unsigned int len)
{
	pci_mmio_access(opaque, MEM_HOLE_START + off, data, len, false);
}

static void pci_hole_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	pci_mmio_access(opaque, MEM_HOLE_START + off, (void *)data, len, true);
}

static const struct bus_ops pci_addr_ops = { .read = pci_addr_read, .write = pci_addr_write };
static const struct bus_ops pci_data_ops = { .read = pci_data_read, .write = pci_data_write };
static const struct bus_ops pci_hole_ops = { .read = pci_hole_read, .write = pci_hole_write };

int pci_register_device(struct pci_bus *bus, struct pci_device *dev)
{
	int slot = -ENOSPC;

	pthread_mutex_lock(&bus->lock);
	for (int s = 0; s < PCI_MAX_SLOTS; s++) {
		if (!bus->slots[s]) {
			slot = s;
			break;
		}
	}
	for (unsigned int bar = 0; slot >= 0 && bar < PCI_MAX_BARS; bar++) {
		uint64_t size = dev->bar_size[bar], addr;

		if (!size)
			continue;
		/* Naturally aligned, as the BAR's read-only low bits force anyway. */
		addr = (bus->mmio_next + size - 1) & ~(size - 1);
		if (addr + size > bus->mmio_end) {
			slot = -ENOSPC;
			break;
		}
		bus->mmio_next = addr + size;
		put_le(dev->cfg + PCI_BAR0 + 4 * bar, (uint32_t)addr | PCI_BAR_MEM_64, 4);
		put_le(dev->cfg + PCI_BAR0 + 4 * bar + 4, (uint32_t)(addr >> 32), 4);
	}
	if (slot >= 0) {
		dev->slot = slot;
		if (dev->cfg[PCI_INTERRUPT_PIN])
			dev->cfg[PCI_INTERRUPT_LINE] = pci_slot_gsi(slot);
		bus->slots[slot] = dev;
		pci_update_bars(dev); /* nothing answers until the guest turns decoding on */
		pci_map_rebuild_locked(bus);
	}
	pthread_mutex_unlock(&bus->lock);
	return slot;
}

void pci_unregister_device(struct pci_bus *bus, struct pci_device *dev)
{
	unsigned int moved = 0;

	pthread_mutex_lock(&bus->lock);
	if (dev->slot >= PCI_MAX_SLOTS || bus->slots[dev->slot] != dev) {
		pthread_mutex_unlock(&bus->lock);
		return;
	}
	bus->slots[dev->slot] = NULL;
	for (unsigned int bar = 0; bar < PCI_MAX_BARS; bar++) {
		if (dev->bar_addr[bar]) {
			dev->bar_addr[bar] = 0;
			moved |= 1u << bar;
		}
	}
	pci_map_rebuild_locked(bus);
	pthread_mutex_unlock(&bus->lock);
	/* As when the guest turns decoding off: fast paths bound to the BAR's address go. */
	for (unsigned int bar = 0; bar < PCI_MAX_BARS; bar++)
		if ((moved & (1u << bar)) && dev->ops && dev->ops->bar_moved)
			dev->ops->bar_moved(dev, bar, 0);
}

int pci_init(struct pci_bus *bus, struct vm *vm)
{
	struct pci_device *hb = &bus->host_bridge;
	int err;

	memset(bus, 0, sizeof(*bus));
	pthread_mutex_init(&bus->lock, NULL);
	bus->mmio_next = MEM_HOLE_START;
	bus->mmio_end = IOAPIC_ADDR;
	/* Red Hat's (QEMU's) PCIe host bridge IDs: Linux has no driver to bind to it. */
	pci_device_init(hb, 0x1b36, 0x0008, 0x060000, 0, 0, NULL);
	put_le(hb->wmask + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	hb->wmask[PCI_INTERRUPT_LINE] = 0;
	pci_register_device(bus, hb);
	err = bus_register(&vm->pio, PCI_CONFIG_ADDRESS, 4, &pci_addr_ops, bus);
	/*
	 * Half of a configuration access is the CONFIG_ADDRESS write, and only the next access to
	 * CONFIG_DATA (or a read of CONFIG_ADDRESS) sees it, both of which exit and replay it
	 * first: KVM may queue those writes instead of exiting (about 420 exits fewer per boot).
	 * Where it cannot, each write exits as before.
	 */
	if (!err)
		vm_coalesce_pio(vm, PCI_CONFIG_ADDRESS, 4);
	if (!err)
		err = bus_register(&vm->pio, PCI_CONFIG_DATA, 4, &pci_data_ops, bus);
	if (!err)
		err = bus_register(&vm->mmio, MEM_HOLE_START, IOAPIC_ADDR - MEM_HOLE_START,
				   &pci_hole_ops, bus);
	return err;
}
