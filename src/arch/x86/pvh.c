// SPDX-License-Identifier: MIT
/*
 * PVH boot (xen docs/misc/pvh.pandoc, "x86/HVM direct boot ABI"): the kernel's PT_LOAD segments
 * go to their physical addresses, the loader describes the command line, modules, ACPI RSDP and
 * memory map in an hvm_start_info, and the kernel starts at its XEN_ELFNOTE_PHYS32_ENTRY.
 */
#include <errno.h>
#include <string.h>

#include "arch/x86/pvh.h"
#include "lib/util.h"

_Static_assert(sizeof(struct hvm_start_info) == 56, "start_info.h: version 1 is 56 bytes");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "start_info.h: a module entry is 32 bytes");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "start_info.h: memmap entry size");

/* Where in the PVH page each table goes. */
#define INFO_MODLIST_OFF 0x40
#define INFO_MEMMAP_OFF 0x80
#define INFO_MEMMAP_MAX ((PVH_INFO_SIZE - INFO_MEMMAP_OFF) / sizeof(struct hvm_memmap_table_entry))
_Static_assert(INFO_MEMMAP_MAX >= E820_MAX_ENTRIES_ZEROPAGE, "room for the whole e820");

/* What nkvm itself writes into low memory, which no kernel segment may cover. */
static const struct {
	uint64_t addr, size;
	const char *what;
} boot_data[] = {
	{ BOOT_GDT_ADDR, BOOT_GDT_SIZE, "GDT" },
	{ PVH_INFO_ADDR, PVH_INFO_SIZE, "start_info" },
	{ BOOT_PML4_ADDR, BOOT_PAGE_TABLES_SIZE, "page tables" },
	{ BOOT_CMDLINE_ADDR, BOOT_CMDLINE_MAX, "command line" },
	{ BOOT_ACPI_ADDR, BOOT_ACPI_SIZE, "ACPI tables" },
};

void pvh_build_start_info(uint8_t *info, uint64_t info_gpa, const struct guest_memory *mem,
			  const struct boot_layout *layout, uint64_t cmdline_addr)
{
	struct boot_e820_entry e820[E820_MAX_ENTRIES_ZEROPAGE];
	struct hvm_start_info si = {
		.magic = XEN_HVM_START_MAGIC_VALUE,
		.version = 1,
		.cmdline_paddr = cmdline_addr,
		.rsdp_paddr = layout->rsdp_addr,
		.memmap_paddr = info_gpa + INFO_MEMMAP_OFF,
	};
	unsigned int n = boot_e820_layout(e820, ARRAY_SIZE(e820), mem);

	memset(info, 0, PVH_INFO_SIZE);
	/* Linux takes module 0 as the initrd (arch/x86/platform/pvh/enlighten.c). */
	if (layout->initrd_size) {
		struct hvm_modlist_entry mod = { .paddr = layout->initrd_addr,
						 .size = layout->initrd_size };

		memcpy(info + INFO_MODLIST_OFF, &mod, sizeof(mod));
		si.nr_modules = 1;
		si.modlist_paddr = info_gpa + INFO_MODLIST_OFF;
	}
	for (unsigned int i = 0; i < n; i++) {
		struct hvm_memmap_table_entry m = { e820[i].addr, e820[i].size, e820[i].type, 0 };

		memcpy(info + INFO_MEMMAP_OFF + i * sizeof(m), &m, sizeof(m));
	}
	si.memmap_entries = n;
	memcpy(info, &si, sizeof(si));
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* [addr, addr + size) lies inside one RAM range of the memory map the guest is given. */
static bool in_ram(const struct guest_memory *mem, uint64_t addr, uint64_t size)
{
	struct boot_e820_entry e820[E820_MAX_ENTRIES_ZEROPAGE];
	unsigned int n = boot_e820_layout(e820, ARRAY_SIZE(e820), mem);

	for (unsigned int i = 0; i < n; i++) {
		if (e820[i].type == BOOT_E820_TYPE_RAM && addr >= e820[i].addr &&
		    addr - e820[i].addr <= e820[i].size &&
		    size <= e820[i].size - (addr - e820[i].addr) && guest_ptr(mem, addr, size))
			return true;
	}
	return false;
}

int pvh_check_segments(const struct elf_kernel *k, const struct guest_memory *mem,
		       const struct boot_layout *layout, char *err, size_t errlen)
{
	for (unsigned int i = 0; i < k->nr_load; i++) {
		const struct elf_segment *s = &k->load[i];
		unsigned long long a = s->paddr, b = s->paddr + s->memsz;

		if (!s->memsz)
			continue;
		for (unsigned int j = 0; j < ARRAY_SIZE(boot_data); j++) {
			if (overlaps(s->paddr, s->memsz, boot_data[j].addr, boot_data[j].size))
				return err_set(err, errlen, -EINVAL,
					       "PT_LOAD segment [%#llx, %#llx) overlaps nkvm's %s "
					       "at %#llx",
					       a, b, boot_data[j].what,
					       (unsigned long long)boot_data[j].addr);
		}
		if (!in_ram(mem, s->paddr, s->memsz))
			return err_set(err, errlen, -EINVAL,
				       "PT_LOAD segment [%#llx, %#llx) is outside guest RAM", a, b);
		if (layout->initrd_size &&
		    overlaps(s->paddr, s->memsz, layout->initrd_addr, layout->initrd_size))
			return err_set(
				err, errlen, -EINVAL,
				"PT_LOAD segment [%#llx, %#llx) overlaps the initrd at "
				"[%#llx, %#llx)",
				a, b, (unsigned long long)layout->initrd_addr,
				(unsigned long long)(layout->initrd_addr + layout->initrd_size));
	}
	return 0;
}

static int copy_blob(uint8_t *dst, const struct boot_blob *b)
{
	if (b->data) {
		memcpy(dst, b->data, b->len);
		return 0;
	}
	return pread_full(b->fd, dst, b->len, 0);
}

int pvh_load(struct guest_memory *mem, const struct elf_kernel *k, const struct elf_source *src,
	     const char *cmdline, const struct boot_blob *initrd, unsigned int nr_initrd,
	     uint64_t rsdp_addr, char *err, size_t errlen)
{
	struct boot_layout layout = { .rsdp_addr = rsdp_addr };
	size_t cmdline_len = strlen(cmdline) + 1;
	uint64_t top = memory_low_end(mem);
	uint8_t *p;
	int ret;

	if (cmdline_len > PVH_CMDLINE_MAX)
		return err_set(err, errlen, -E2BIG,
			       "kernel command line longer than the kernel accepts (%d bytes)",
			       PVH_CMDLINE_MAX);
	for (unsigned int i = 0; i < nr_initrd; i++)
		layout.initrd_size += initrd[i].len;
	/* As high as RAM below the PCI hole goes (the start_info's addresses are 64-bit). */
	if (layout.initrd_size) {
		if (top <= BOOT_KERNEL_ADDR || layout.initrd_size > top - BOOT_KERNEL_ADDR)
			return err_set(err, errlen, -ENOSPC, "initrd does not fit in RAM");
		layout.initrd_addr = ALIGN_DOWN(top - layout.initrd_size, 4096);
	}
	ret = pvh_check_segments(k, mem, &layout, err, errlen);
	if (ret)
		return ret;

	for (unsigned int i = 0; i < k->nr_load; i++) {
		const struct elf_segment *s = &k->load[i];

		if (!s->memsz)
			continue;
		p = guest_ptr(mem, s->paddr, s->memsz);
		if (elf_read(src, p, s->filesz, s->offset))
			return err_set(err, errlen, -EIO, "cannot read the kernel");
		/* The rest of the segment (.bss) is zero (gABI, "Program Header"). */
		memset(p + s->filesz, 0, s->memsz - s->filesz);
	}
	memcpy(guest_ptr(mem, BOOT_CMDLINE_ADDR, cmdline_len), cmdline, cmdline_len);
	p = layout.initrd_size ? guest_ptr(mem, layout.initrd_addr, layout.initrd_size) : NULL;
	for (unsigned int i = 0; p && i < nr_initrd; i++) {
		if (copy_blob(p, &initrd[i]))
			return err_set(err, errlen, -EIO, "cannot read the initrd");
		p += initrd[i].len;
	}
	pvh_build_start_info(guest_ptr(mem, PVH_INFO_ADDR, PVH_INFO_SIZE), PVH_INFO_ADDR, mem,
			     &layout, BOOT_CMDLINE_ADDR);
	return 0;
}
