/* SPDX-License-Identifier: MIT */
/*
 * PCI bus 0: configuration mechanism #1 (ports 0xCF8/0xCFC), a host bridge at 00:00.0, and
 * devices with 64-bit memory BARs that nkvm places in the 32-bit MMIO hole and capabilities
 * (MSI-X). The bus owns the whole hole on the MMIO bus and routes each access to the BAR that
 * holds it at that moment, so a guest that moves a BAR needs nothing re-registered.
 */
#ifndef NKVM_HW_PCI_H
#define NKVM_HW_PCI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <linux/pci_regs.h>
#include <stdint.h>

struct vm;
struct pci_device;

#define PCI_MAX_SLOTS 32
#define PCI_CFG_SIZE 256
#define PCI_MAX_BARS 6

/* Class codes (PCI Code and ID Assignment §1): base class, subclass, programming interface. */
#define PCI_CLASS_STORAGE_OTHER 0x018000
#define PCI_CLASS_NETWORK_ETHERNET 0x020000
#define PCI_CLASS_OTHERS 0xff0000 /* a device that fits no defined class */

/* Configuration registers: <linux/pci_regs.h>, and shorter names for two of them. */
#define PCI_BAR0 PCI_BASE_ADDRESS_0
#define PCI_CAP_PTR PCI_CAPABILITY_LIST

struct pci_device_ops {
	/* An access at offset off of BAR bar (len 1, 2, 4 or 8). */
	void (*bar_read)(struct pci_device *dev, unsigned int bar, uint64_t off, void *data,
			 unsigned int len);
	void (*bar_write)(struct pci_device *dev, unsigned int bar, uint64_t off, const void *data,
			  unsigned int len);
	/*
	 * The guest moved a BAR or turned memory decoding on or off: addr is where the BAR now
	 * answers, 0 when it does not (for fast paths registered at an address, like ioeventfds).
	 */
	void (*bar_moved)(struct pci_device *dev, unsigned int bar, uint64_t addr);
	/* After a guest write to config space [off, off + len) (capability registers). */
	void (*config_written)(struct pci_device *dev, unsigned int off, unsigned int len);
};

struct pci_device {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE]; /* bits the guest may change */
	const struct pci_device_ops *ops;
	uint64_t bar_size[PCI_MAX_BARS]; /* 0: unused (or the upper half of a 64-bit BAR) */
	uint64_t bar_addr[PCI_MAX_BARS]; /* where it answers now, 0 when it does not */
	unsigned int slot;
	uint8_t last_cap; /* offset of the last capability, for chaining */
	uint8_t next_cap_off; /* where the next capability will go */
};

/* Where one BAR answers now: an entry of the bus's MMIO map. */
struct pci_bar_map_entry {
	_Atomic uint64_t base, size;
	_Atomic(struct pci_device *) dev;
	_Atomic unsigned int bar;
};

struct pci_bus {
	pthread_mutex_t lock; /* config space, slots, the map's writers */
	uint32_t addr; /* the CONFIG_ADDRESS latch at 0xCF8 */
	/*
	 * The BARs that answer, for the vCPUs' MMIO exits to find without a lock: rebuilt under
	 * lock when a BAR moves, read under a sequence count (odd while a rebuild is under way;
	 * a reader that saw it change looks again).
	 */
	atomic_uint map_seq;
	atomic_uint map_nr;
	struct pci_bar_map_entry map[PCI_MAX_SLOTS * PCI_MAX_BARS];
	struct pci_device *slots[PCI_MAX_SLOTS];
	struct pci_device host_bridge;
	uint64_t mmio_next; /* BAR allocator: next free address in the hole */
	uint64_t mmio_end;
};

int pci_init(struct pci_bus *bus, struct vm *vm);

/* Fills vendor/device/class/subsystem fields of a device's header (type 0). */
void pci_device_init(struct pci_device *dev, uint16_t vendor, uint16_t device, uint32_t class_code,
		     uint16_t subsys_vendor, uint16_t subsys_id, const struct pci_device_ops *ops);
/* Declares a 64-bit memory BAR of size bytes (a power of 2, at least 4 KiB) at bar (0, 2, 4). */
int pci_device_add_bar(struct pci_device *dev, unsigned int bar, uint64_t size);
/* Appends a capability of len bytes (header included); returns its config offset or -ENOSPC. */
int pci_device_add_cap(struct pci_device *dev, uint8_t id, unsigned int len);

/*
 * Puts dev in the first free slot and gives its BARs addresses in the MMIO hole (memory
 * decoding left off until the guest turns it on). Returns the slot number or -ENOSPC.
 */
int pci_register_device(struct pci_bus *bus, struct pci_device *dev);

/*
 * Takes dev off the bus, if it is on it: the guest finds its slot empty and its BARs answer no
 * more (bar_moved to 0). Its BAR space is not given out again. pci_mmio_access calls a device
 * without the bus lock, so the caller makes sure no vCPU can be inside dev's callbacks (nkvm
 * run: the vCPUs have stopped).
 */
void pci_unregister_device(struct pci_bus *bus, struct pci_device *dev);

/* The legacy INTx line of a slot: the GSI the DSDT's _PRT gives its INTA. */
unsigned int pci_slot_gsi(unsigned int slot);

/* Config space access for (bus 0) slot/function, as the guest sees it. */
uint32_t pci_config_read(struct pci_bus *bus, uint32_t addr, unsigned int len);
void pci_config_write(struct pci_bus *bus, uint32_t addr, uint32_t val, unsigned int len);

/* MMIO access inside the hole, routed to the BAR that holds addr. False when none does. */
bool pci_mmio_access(struct pci_bus *bus, uint64_t addr, void *data, unsigned int len, bool write);

#endif
