/* SPDX-License-Identifier: MIT */
/*
 * PCI bus 0 with configuration mechanism #1 (ports 0xCF8/0xCFC) and a host bridge at 00:00.0,
 * so that Linux finds a sane PCI bus without ACPI or firmware.
 */
#ifndef NKVM_HW_PCI_H
#define NKVM_HW_PCI_H

#include <pthread.h>
#include <stdint.h>

struct vm;

#define PCI_MAX_SLOTS 32
#define PCI_CFG_SIZE 256

struct pci_device {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];	/* bits the guest may change */
};

struct pci_bus {
	pthread_mutex_t lock;
	uint32_t addr;			/* the CONFIG_ADDRESS latch at 0xCF8 */
	struct pci_device *slots[PCI_MAX_SLOTS];
	struct pci_device host_bridge;
};

int pci_init(struct pci_bus *bus, struct vm *vm);
/* Puts dev in the first free slot; returns the slot number or -ENOSPC. */
int pci_register_device(struct pci_bus *bus, struct pci_device *dev);

/* Config space access for (bus 0) slot/function, as the guest sees it. */
uint32_t pci_config_read(struct pci_bus *bus, uint32_t addr, unsigned int len);
void pci_config_write(struct pci_bus *bus, uint32_t addr, uint32_t val, unsigned int len);

#endif
