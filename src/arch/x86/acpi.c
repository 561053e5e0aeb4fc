// SPDX-License-Identifier: MIT
/* ACPI 6.x §5.2: RSDP, XSDT and MADT, built byte by byte into a buffer. */
#include <errno.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "lib/util.h"
#include "vmm/bus.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define ACPI_HDR_SIZE 36
#define RSDP_SIZE 36
#define MADT_PCAT_COMPAT 1
#define FADT_SIZE 276 /* ACPI 6.x FADT, revision 6 */
#define FADT_PWR_BUTTON (1U << 4) /* no fixed-feature power button */
#define FADT_SLP_BUTTON (1U << 5) /* no fixed-feature sleep button */
#define FADT_BOOT_NO_CMOS_RTC (1U << 5) /* IAPC_BOOT_ARCH: no RTC to probe */
#define GAS_SYSTEM_IO 1
#define SCI_IRQ 9
#define PM1_EVT_LEN 4 /* 16-bit status, 16-bit enable */
#define PM1_CNT_LEN 2
#define PM1_CNT_SCI_EN 0x0001 /* reads back set: the machine is in ACPI mode */
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_TYP_MASK 0x1c00
#define PM1_CNT_SLP_EN 0x2000

enum madt_type {
	MADT_LOCAL_APIC = 0,
	MADT_IO_APIC = 1,
	MADT_INT_OVERRIDE = 2,
	MADT_LOCAL_APIC_NMI = 4,
};

struct acpi_buf {
	uint8_t *p;
	size_t size, len;
	int overflow;
};

static uint8_t *acpi_put(struct acpi_buf *b, size_t n)
{
	uint8_t *p;

	if (b->overflow || n > b->size - b->len) {
		b->overflow = 1;
		return NULL;
	}
	p = b->p + b->len;
	memset(p, 0, n);
	b->len += n;
	return p;
}

uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return (uint8_t)-sum;
}

/* Starts a table with the common header; the length and checksum are set by acpi_end. */
static size_t acpi_begin(struct acpi_buf *b, const char sig[4], uint8_t revision)
{
	size_t start = b->len;
	uint8_t *h = acpi_put(b, ACPI_HDR_SIZE);

	if (!h)
		return start;
	memcpy(h, sig, 4);
	h[8] = revision;
	memcpy(h + 10, "NKVM  ", 6); /* OEM ID */
	memcpy(h + 16, "NKVMTBL ", 8); /* OEM table ID */
	put_le(h + 24, 1, 4); /* OEM revision */
	memcpy(h + 28, "NKVM", 4); /* creator ID */
	put_le(h + 32, 1, 4); /* creator revision */
	return start;
}

static void acpi_end(struct acpi_buf *b, size_t start)
{
	uint8_t *h = b->p + start;

	if (b->overflow)
		return;
	put_le(h + 4, b->len - start, 4);
	h[9] = 0;
	h[9] = acpi_checksum(h, b->len - start);
}

static void madt_add(struct acpi_buf *b, uint8_t type, const uint8_t *body, uint8_t body_len)
{
	uint8_t *e = acpi_put(b, 2 + body_len);

	if (!e)
		return;
	e[0] = type;
	e[1] = 2 + body_len;
	memcpy(e + 2, body, body_len);
}

static void acpi_build_madt(struct acpi_buf *b, unsigned int nr_cpus)
{
	size_t start = acpi_begin(b, "APIC", 5);
	uint8_t *fixed = acpi_put(b, 8);
	uint8_t ioapic[10] = { 0 }, iso[8] = { 0 }, nmi[4];

	if (!fixed)
		return;
	put_le(fixed, LAPIC_ADDR, 4);
	put_le(fixed + 4, MADT_PCAT_COMPAT, 4);
	for (unsigned int i = 0; i < nr_cpus; i++) {
		/* ACPI processor UID, APIC ID, flags: enabled. */
		uint8_t lapic[6] = { (uint8_t)i, (uint8_t)i, 1, 0, 0, 0 };

		madt_add(b, MADT_LOCAL_APIC, lapic, sizeof(lapic));
	}
	/* The IOAPIC's ID must not collide with a CPU's APIC ID. */
	ioapic[0] = (uint8_t)nr_cpus;
	put_le(ioapic + 2, IOAPIC_ADDR, 4);
	put_le(ioapic + 6, 0, 4); /* GSI base */
	madt_add(b, MADT_IO_APIC, ioapic, sizeof(ioapic));
	/*
	 * No override for IRQ 0: KVM's default routing sends the PIT (GSI 0) to IOAPIC pin 0,
	 * not to pin 2 as on a PC chipset, so the identity mapping is the true one here.
	 */
	iso[0] = 0; /* bus: ISA */
	/* The SCI, as on a PC: IRQ 9, level-triggered, active high (never raised). */
	iso[1] = SCI_IRQ;
	put_le(iso + 2, SCI_IRQ, 4);
	put_le(iso + 6, 0x000d, 2);
	madt_add(b, MADT_INT_OVERRIDE, iso, sizeof(iso));
	/* LINT1 of every processor is the NMI, active high, edge. */
	nmi[0] = 0xff;
	put_le(nmi + 1, 0, 2);
	nmi[3] = 1;
	madt_add(b, MADT_LOCAL_APIC_NMI, nmi, sizeof(nmi));
	acpi_end(b, start);
}

/* A Generic Address Structure (ACPI §5.2.3.2) for an I/O port block of `bytes` bytes. */
static void put_gas_io(uint8_t *p, uint16_t port, unsigned int bytes)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = 8 * bytes; /* register bit width */
	p[2] = 0; /* bit offset */
	p[3] = 0; /* access size: legacy reason, undefined */
	put_le(p + 4, port, 8);
}

static void acpi_build_fadt(struct acpi_buf *b, uint64_t dsdt_gpa)
{
	size_t start = acpi_begin(b, "FACP", 6);
	uint8_t *f = acpi_put(b, FADT_SIZE - ACPI_HDR_SIZE);

	if (!f)
		return;
	f -= ACPI_HDR_SIZE; /* offsets below are the spec's, from the table's start */
	put_le(f + 40, dsdt_gpa, 4);
	put_le(f + 46, SCI_IRQ, 2);
	/* SMI_CMD (48) stays 0: there is no legacy mode to leave, ACPI is always on. */
	put_le(f + 56, ACPI_PM1A_EVT_PORT, 4);
	put_le(f + 64, ACPI_PM1A_CNT_PORT, 4);
	f[88] = PM1_EVT_LEN;
	f[89] = PM1_CNT_LEN;
	/* 8042 flag clear: Linux skips probing a keyboard controller (reset still works). */
	put_le(f + 109, FADT_BOOT_NO_CMOS_RTC, 2);
	put_le(f + 112, FADT_PWR_BUTTON | FADT_SLP_BUTTON, 4);
	f[131] = 0; /* FADT minor version: 6.0 */
	put_le(f + 140, dsdt_gpa, 8);
	put_gas_io(f + 148, ACPI_PM1A_EVT_PORT, PM1_EVT_LEN);
	put_gas_io(f + 172, ACPI_PM1A_CNT_PORT, PM1_CNT_LEN);
	memcpy(f + 268, "NKVM    ", 8); /* hypervisor vendor identity */
	acpi_end(b, start);
}

/* Host bridge _CRS: bus 0, the config ports, all other I/O, and the 32-bit MMIO hole. */
static void dsdt_pci_crs(struct aml *a)
{
	size_t buf;

	aml_name(a, "_CRS");
	buf = aml_buffer_open(a);
	aml_res_word_bus(a, 0, 0);
	aml_res_io(a, 0xcf8, 8);
	aml_res_word_io(a, 0x0000, 0x0cf7);
	aml_res_word_io(a, 0x0d00, 0xffff);
	aml_res_dword_mem(a, MEM_HOLE_START, IOAPIC_ADDR - 1);
	aml_res_end(a);
	aml_buffer_close(a, buf);
}

/* _PRT (ACPI §6.2.13): each slot's INTA..INTD straight to an IOAPIC pin (GSI). */
static void dsdt_pci_prt(struct aml *a)
{
	size_t prt;

	aml_name(a, "_PRT");
	prt = aml_package_open(a, 31 * 4);
	for (unsigned int slot = 1; slot < 32; slot++) {
		for (unsigned int pin = 0; pin < 4; pin++) {
			size_t entry = aml_package_open(a, 4);

			aml_integer(a, ((uint64_t)slot << 16) | 0xffff);
			aml_integer(a, pin);
			aml_integer(a, 0); /* no link device: the last field is a GSI */
			aml_integer(a, PCI_INTX_GSI_BASE + (slot + pin) % PCI_INTX_GSI_COUNT);
			aml_close(a, entry);
		}
	}
	aml_close(a, prt);
}

static void acpi_build_dsdt(struct acpi_buf *b)
{
	size_t start = acpi_begin(b, "DSDT", 2);
	struct aml a = { .p = b->p + b->len, .size = b->size - b->len };
	size_t sb, dev, pkg;

	sb = aml_scope_open(&a, "\\_SB_");
	dev = aml_device_open(&a, "PCI0");
	aml_name(&a, "_HID");
	aml_byte(&a, 0x0c); /* DWordPrefix: an EISA ID is always 4 bytes */
	{
		uint32_t id = aml_eisa_id("PNP0A03");

		aml_bytes(&a, &id, 4);
	}
	aml_name(&a, "_UID");
	aml_integer(&a, 0);
	aml_name(&a, "_SEG");
	aml_integer(&a, 0);
	aml_name(&a, "_BBN");
	aml_integer(&a, 0);
	dsdt_pci_crs(&a);
	dsdt_pci_prt(&a);
	aml_close(&a, dev);
	aml_close(&a, sb);

	/* \_S5: SLP_TYP for power-off, written to the sleep control register. */
	aml_name(&a, "\\_S5_");
	pkg = aml_package_open(&a, 4);
	aml_integer(&a, ACPI_S5_TYPE);
	aml_integer(&a, ACPI_S5_TYPE);
	aml_integer(&a, 0);
	aml_integer(&a, 0);
	aml_close(&a, pkg);

	if (a.overflow) {
		b->overflow = 1;
		return;
	}
	b->len += a.len;
	acpi_end(b, start);
}

static void acpi_align(struct acpi_buf *b)
{
	acpi_put(b, ALIGN_UP(b->len, 16) - b->len);
}

long acpi_build_tables(uint8_t *buf, size_t size, uint64_t gpa, unsigned int nr_cpus)
{
	struct acpi_buf b = { .p = buf, .size = size };
	uint8_t *rsdp = acpi_put(&b, RSDP_SIZE);
	size_t xsdt, madt, fadt, dsdt;
	uint8_t *entry;

	/*
	 * ACPI §5.2.12.2: an xAPIC ID is one byte, and 0xff is the broadcast ID; the IOAPIC takes
	 * the ID after the last vCPU's. More vCPUs would share IDs.
	 */
	if (!nr_cpus || nr_cpus > ACPI_MAX_CPUS)
		return -EINVAL;
	if (!rsdp)
		return -ENOSPC;
	acpi_align(&b);
	dsdt = b.len;
	acpi_build_dsdt(&b);
	acpi_align(&b);
	fadt = b.len;
	acpi_build_fadt(&b, gpa + dsdt);
	acpi_align(&b);
	madt = b.len;
	acpi_build_madt(&b, nr_cpus);
	acpi_align(&b);
	xsdt = acpi_begin(&b, "XSDT", 1);
	entry = acpi_put(&b, 16);
	if (entry) {
		put_le(entry, gpa + fadt, 8);
		put_le(entry + 8, gpa + madt, 8);
	}
	acpi_end(&b, xsdt);
	if (b.overflow)
		return -ENOSPC;

	/* ACPI §5.2.5.3: revision 2 RSDP pointing at the XSDT, two checksums. */
	memcpy(rsdp, "RSD PTR ", 8);
	memcpy(rsdp + 9, "NKVM  ", 6);
	rsdp[15] = 2;
	put_le(rsdp + 20, RSDP_SIZE, 4);
	put_le(rsdp + 24, gpa + xsdt, 8);
	rsdp[8] = acpi_checksum(rsdp, 20);
	rsdp[32] = acpi_checksum(rsdp, RSDP_SIZE);
	return b.len;
}

_Static_assert(sizeof(((struct acpi_pm *)0)->regs) == PM1_EVT_LEN + PM1_CNT_LEN,
	       "PM1 register block size");

static void acpi_pm_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	struct acpi_pm *pm = opaque;
	uint16_t cnt;

	if (off + len > sizeof(pm->regs))
		return;
	pthread_mutex_lock(&pm->lock);
	for (unsigned int i = 0; i < len; i++)
		if (off + i >= 2) /* the status bytes stay 0 */
			pm->regs[off + i] = ((const uint8_t *)data)[i];
	pm->regs[PM1_EVT_LEN] |= PM1_CNT_SCI_EN;
	memcpy(&cnt, pm->regs + PM1_EVT_LEN, 2);
	pthread_mutex_unlock(&pm->lock);
	/* §4.8.3.2.1: SLP_EN with the \_S5 type is the guest's power-off. */
	if ((cnt & PM1_CNT_SLP_EN) &&
	    ((cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT) == ACPI_S5_TYPE)
		vm_request_stop(pm->vm, 0);
}

static void acpi_pm_read(void *opaque, uint64_t off, void *data, unsigned int len)
{
	struct acpi_pm *pm = opaque;

	memset(data, 0, len);
	if (off + len > sizeof(pm->regs))
		return;
	pthread_mutex_lock(&pm->lock);
	memcpy(data, pm->regs + off, len);
	/* SLP_EN is write-only: it always reads as 0. */
	if (off <= PM1_EVT_LEN + 1 && off + len > PM1_EVT_LEN + 1)
		((uint8_t *)data)[PM1_EVT_LEN + 1 - off] &= ~(PM1_CNT_SLP_EN >> 8);
	pthread_mutex_unlock(&pm->lock);
}

static const struct bus_ops acpi_pm_ops = {
	.read = acpi_pm_read,
	.write = acpi_pm_write,
};

int acpi_pm_init(struct acpi_pm *pm, struct vm *vm)
{
	memset(pm, 0, sizeof(*pm));
	pm->vm = vm;
	pthread_mutex_init(&pm->lock, NULL);
	pm->regs[PM1_EVT_LEN] = PM1_CNT_SCI_EN;
	return bus_register(&vm->pio, ACPI_PM1A_EVT_PORT, PM1_EVT_LEN + PM1_CNT_LEN, &acpi_pm_ops,
			    pm);
}
