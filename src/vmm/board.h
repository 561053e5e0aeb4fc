/* SPDX-License-Identifier: MIT */
/*
 * The machine's fixed layout above RAM, which generic code (the PCI bus) needs and the x86 ACPI
 * tables describe to the guest: one place, so that the two cannot disagree.
 */
#ifndef NKVM_VMM_BOARD_H
#define NKVM_VMM_BOARD_H

#include "vmm/memory.h"

/* PCI BARs go in [MEM_HOLE_START, IOAPIC_ADDR); the interrupt controllers sit above. */
#define IOAPIC_ADDR 0xfec00000
#define LAPIC_ADDR 0xfee00000

/* PCI INTx: slot s, pin p (0 = INTA) is wired to IOAPIC pin 16 + ((s + p) % 8). */
#define PCI_INTX_GSI_BASE 16
#define PCI_INTX_GSI_COUNT 8

#endif
