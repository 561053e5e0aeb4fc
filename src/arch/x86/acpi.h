/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables. Debian's cloud kernel ignores MP tables (CONFIG_X86_MPPARSE=n), so the MADT is
 * how it finds every vCPU. With a MADT alone, though, Linux fails to load an ACPI namespace and
 * says so on the console of every boot; so nkvm gives a complete, small one: a FADT with only
 * the PM1 event and control blocks (no PM timer, no GPEs, no SMI: always in ACPI mode), a DSDT
 * that describes the PCI host bridge (Linux then finds PCI only through it, with INTx routing
 * from its _PRT) and \_S5 for power-off through PM1a_CNT, and the MADT.
 * Not hardware-reduced ACPI on purpose: in that mode Linux drops the legacy PIC and every ISA
 * IRQ that the DSDT does not describe, and the UART's IRQ 4 would never be delivered.
 */
#ifndef NKVM_ARCH_X86_ACPI_H
#define NKVM_ARCH_X86_ACPI_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/board.h"

/* PM1a event (status, enable) and control blocks (ACPI §4.8.3), ports no PC device uses. */
#define ACPI_PM1A_EVT_PORT 0x600
#define ACPI_PM1A_CNT_PORT 0x604
#define ACPI_S5_TYPE 5 /* SLP_TYP nkvm's \_S5 asks for */

struct vm;

/*
 * Builds RSDP (at offset 0), XSDT, FADT, DSDT and MADT in buf, which the guest will see at guest address
 * gpa. Returns the bytes used, -ENOSPC when buf is too small, or -EINVAL for 0 vCPUs or more
 * than ACPI_MAX_CPUS (their xAPIC IDs and the IOAPIC's must fit one byte below 0xff).
 */
#define ACPI_MAX_CPUS 254
long acpi_build_tables(uint8_t *buf, size_t size, uint64_t gpa, unsigned int nr_cpus);

/* ACPI checksum: the byte that makes the sum of len bytes zero. */
uint8_t acpi_checksum(const uint8_t *p, size_t len);

/*
 * PM1 registers, as bytes so that any access width works: status (never an event: writes of
 * 1 to clear change nothing), enable (kept, so that ACPICA sees GBL_EN and friends stick),
 * control (SCI_EN set: always in ACPI mode; entering S5 ends the VM with status 0).
 */
struct acpi_pm {
	pthread_mutex_t lock;
	struct vm *vm;
	uint8_t regs[6]; /* PM1a_EVT (status, enable), then PM1a_CNT */
};

int acpi_pm_init(struct acpi_pm *pm, struct vm *vm);

#endif
