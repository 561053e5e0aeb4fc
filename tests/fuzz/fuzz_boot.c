// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: what nkvm builds for the guest from sizes a user or a kernel image chooses:
 * the ACPI tables (acpi_build_tables) for any vCPU count in a buffer of any size, the e820 map
 * and the initrd's place for any RAM size (memory_layout, boot_build_e820, boot_place_initrd),
 * and boot_load's whole layout for a kernel whose setup header fields (init_size, pref_address,
 * cmdline_size, initrd_addr_max, version) are fuzzed, with command lines and initrd parts of
 * fuzzed lengths, into guest RAM of a fuzzed size (ending at an inaccessible page, so that any
 * write past it faults). Checked as a guest would read them: every table's checksum and
 * length, one LAPIC per vCPU and an IOAPIC ID apart from theirs; e820 sorted, disjoint, outside
 * the PCI hole and inside RAM; the initrd inside RAM, below its limit, above the kernel.
 *
 * Input: le16 vCPUs, le32 ACPI buffer size (mod 128 KiB), le64 RAM size for the layout, u8 RAM
 * size for boot_load (MiB, 1 to 64), le32 init_size, le32 pref_address (x 4 KiB), le32
 * cmdline_size, le32 initrd_addr_max, le16 version, le32 command line length (mod 72 KiB),
 * u8 initrd parts (mod 4), le32 each part's length (mod 1 MiB), then the kernel's bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "lib/util.h"
#include "vmm/board.h"

#define MAX_PART (1U << 20)
#define MAX_KERNEL (64U << 10)
#define MAX_RAM (64ULL << 20)

struct input {
	const uint8_t *p;
	size_t left;
};

/* The next n bytes as a little-endian number; zeros once the input runs out. */
static uint64_t take(struct input *in, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n && in->left; i++, in->p++, in->left--)
		v |= (uint64_t)*in->p << (8 * i);
	return v;
}

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* A table at gpa in buf (built for guest address base): inside it, its checksum zero. */
static const uint8_t *table_at(const uint8_t *buf, size_t len, uint64_t base, uint64_t gpa)
{
	const uint8_t *t;
	uint64_t tlen;

	if (gpa < base || gpa - base > len || len - (gpa - base) < 36)
		abort();
	t = buf + (gpa - base);
	tlen = le(t + 4, 4);
	if (tlen < 36 || tlen > len - (gpa - base) || acpi_checksum(t, tlen))
		abort();
	return t;
}

static void check_acpi(unsigned int cpus, size_t size)
{
	const uint64_t base = BOOT_ACPI_ADDR;
	uint8_t *buf = malloc(size ? size : 1), seen[256] = { 0 };
	const uint8_t *xsdt, *madt = NULL;
	unsigned int lapics = 0;
	long len;

	if (!buf)
		abort();
	len = acpi_build_tables(buf, size, base, cpus);
	if (len < 0) {
		free(buf);
		return;
	}
	/* ACPI §5.2.5.3: the RSDP's two checksums, then the XSDT it names. */
	if ((size_t)len > size || len < 36 || memcmp(buf, "RSD PTR ", 8) || acpi_checksum(buf, 20) ||
	    acpi_checksum(buf, 36))
		abort();
	xsdt = table_at(buf, len, base, le(buf + 24, 8));
	for (uint64_t off = 36; off + 8 <= le(xsdt + 4, 4); off += 8) {
		const uint8_t *t = table_at(buf, len, base, le(xsdt + off, 8));

		if (!memcmp(t, "APIC", 4))
			madt = t;
		if (!memcmp(t, "FACP", 4))
			table_at(buf, len, base, le(t + 140, 8)); /* X_DSDT */
	}
	if (!madt)
		abort();
	/* §5.2.12: each entry's length inside the table; one enabled LAPIC per vCPU. */
	for (uint64_t off = 44, mlen = le(madt + 4, 4); off < mlen; off += madt[off + 1]) {
		if (off + 2 > mlen || madt[off + 1] < 2 || off + madt[off + 1] > mlen)
			abort();
		if (madt[off] == 0) {
			if (seen[madt[off + 3]]++)
				abort(); /* two vCPUs with one APIC ID */
			lapics++;
		} else if (madt[off] == 1 && cpus < 256 && seen[madt[off + 2]]) {
			abort(); /* the IOAPIC's ID is a vCPU's */
		}
	}
	if (lapics != cpus)
		abort();
	free(buf);
}

static void check_e820(const struct boot_params *bp, const struct guest_memory *mem)
{
	uint64_t end = 0;

	if (bp->e820_entries > E820_MAX_ENTRIES_ZEROPAGE)
		abort();
	for (unsigned int i = 0; i < bp->e820_entries; i++) {
		const struct boot_e820_entry *e = &bp->e820_table[i];

		if (!e->size || e->addr < end || e->addr + e->size < e->addr)
			abort();
		end = e->addr + e->size;
		if (e->addr < MEM_HOLE_END && end > MEM_HOLE_START)
			abort();
		if (e->type == 1 && !guest_ptr(mem, e->addr, e->size) && mem->base)
			abort();
	}
}

static void check_initrd(const struct bzimage *k, const struct guest_memory *mem, uint64_t size)
{
	uint64_t addr, kbase = k->hdr.pref_address > BOOT_KERNEL_ADDR ? k->hdr.pref_address :
									BOOT_KERNEL_ADDR;

	if (boot_place_initrd(k, mem, size, &addr))
		return;
	if (addr % 4096 || addr + size > memory_low_end(mem) || addr + size > k->initrd_max + 1 ||
	    addr < kbase + k->hdr.init_size)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t part_bytes[MAX_PART], *ram_end;
	struct input in = { data, size };
	struct guest_memory layout, mem;
	struct boot_blob parts[3];
	struct boot_params bp;
	struct bzimage k;
	unsigned int cpus, nparts;
	size_t acpi_size, cmdline_len, initrd_len = 0;
	uint64_t ram;
	char *cmdline, why[256];
	uint8_t *kernel;

	/*
	 * One mapping for every input (a heap block of up to 64 MiB each time costs ASan more than
	 * the rest): RAM of each size ends where the guard page starts.
	 */
	if (!ram_end) {
		uint8_t *p = mmap(NULL, MAX_RAM + 4096, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p == MAP_FAILED || mprotect(p + MAX_RAM, 4096, PROT_NONE))
			abort();
		ram_end = p + MAX_RAM;
	}
	cpus = take(&in, 2);
	acpi_size = take(&in, 4) % (BOOT_ACPI_SIZE + 1);
	check_acpi(cpus % 1024, acpi_size);

	/* Any RAM size up to 1 TiB: the layout only, no memory behind it. */
	memory_layout(&layout, take(&in, 8) % (1ULL << 40));
	ram = (take(&in, 1) % 64 + 1) << 20;
	memset(&k, 0, sizeof(k));
	k.fd = -1;
	k.hdr.init_size = take(&in, 4);
	k.hdr.pref_address = take(&in, 4) << 12;
	k.hdr.cmdline_size = take(&in, 4);
	k.hdr.initrd_addr_max = take(&in, 4);
	k.hdr.version = take(&in, 2);
	k.initrd_max = k.hdr.initrd_addr_max ? k.hdr.initrd_addr_max : 0x37ffffff;
	cmdline_len = take(&in, 4) % (BOOT_CMDLINE_MAX + 8192);
	nparts = take(&in, 1) % 4;
	for (unsigned int i = 0; i < nparts; i++) {
		parts[i] = (struct boot_blob){ part_bytes, take(&in, 4) % (MAX_PART + 1), -1 };
		initrd_len += parts[i].len;
	}
	memset(&bp, 0, sizeof(bp));
	boot_build_e820(&bp, &layout);
	check_e820(&bp, &layout);
	check_initrd(&k, &layout, initrd_len);

	/* The kernel is the rest of the input, copied so that ASan sees reads past it. */
	k.kernel_size = in.left < MAX_KERNEL ? in.left : MAX_KERNEL;
	kernel = malloc(k.kernel_size ? k.kernel_size : 1);
	cmdline = malloc(cmdline_len + 1);
	memory_layout(&mem, ram);
	mem.base = ram_end - ram;
	if (!kernel || !cmdline)
		abort();
	mem.regions[0].host = mem.base;
	memcpy(kernel, in.p, k.kernel_size);
	k.kernel = kernel;
	memset(cmdline, 'x', cmdline_len);
	cmdline[cmdline_len] = 0;
	if (boot_load(&mem, &k, cmdline, parts, nparts, BOOT_ACPI_ADDR, why, sizeof(why)) == 0) {
		const struct boot_params *g = guest_ptr(&mem, BOOT_PARAMS_ADDR, sizeof(*g));
		uint64_t rd = g->hdr.ramdisk_image | (uint64_t)g->ext_ramdisk_image << 32;
		const char *cl = guest_ptr(&mem, BOOT_CMDLINE_ADDR, cmdline_len + 1);

		if (g->hdr.cmd_line_ptr != BOOT_CMDLINE_ADDR || !cl || cl[cmdline_len] ||
		    (cmdline_len && cl[cmdline_len - 1] != 'x'))
			abort();
		if (g->hdr.ramdisk_size != initrd_len ||
		    (initrd_len && (!guest_ptr(&mem, rd, initrd_len) || rd < BOOT_KERNEL_ADDR)))
			abort();
		check_e820(g, &mem);
		check_initrd(&k, &mem, initrd_len);
	} else if (!why[0]) {
		abort(); /* a failure says why */
	}
	free(cmdline);
	free(kernel);
	return 0;
}
