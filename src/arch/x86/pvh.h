/* SPDX-License-Identifier: MIT */
/*
 * The PVH boot of an ELF vmlinux (xen docs/misc/pvh.pandoc): PT_LOAD segments at their physical
 * addresses, an hvm_start_info for the kernel, and entry in 32-bit protected mode, paging off.
 */
#ifndef NKVM_ARCH_X86_PVH_H
#define NKVM_ARCH_X86_PVH_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/boot.h"
#include "arch/x86/elf.h"
#include "vmm/memory.h"

/*
 * The page that holds the start_info, the module list and the memory map, below 1 MiB, clear of
 * the GDT (0x500) and the boot page tables (0x9000). Linux's PVH entry reads it through its
 * first identity map, which covers only the first GiB.
 */
#define PVH_INFO_ADDR 0x6000
#define PVH_INFO_SIZE 0x1000
/* x86 Linux's COMMAND_LINE_SIZE, with the NUL: PVH has no header saying how much it takes. */
#define PVH_CMDLINE_MAX 2048

/*
 * xen/include/public/arch-x86/hvm/start_info.h, version 1 (with the memory map): the structure
 * the kernel finds at EBX. All addresses are guest-physical; 0 means "none".
 */
#define XEN_HVM_START_MAGIC_VALUE 0x336ec578
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version 1 */
	uint32_t memmap_entries; /* version 1 */
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

/* Types as in the e820 (XEN_HVM_MEMMAP_TYPE_RAM 1, _RESERVED 2). */
struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/*
 * Fills the PVH_INFO_SIZE bytes at info (guest address info_gpa): the start_info, the initrd as
 * module 0 (none when its size is 0), the command line's and RSDP's addresses, and the memory map
 * that the bzImage's e820 is made of. Pure.
 */
void pvh_build_start_info(uint8_t *info, uint64_t info_gpa, const struct guest_memory *mem,
			  const struct boot_layout *layout, uint64_t cmdline_addr);

/*
 * Checks every PT_LOAD segment against guest RAM (the e820's RAM ranges), nkvm's own boot data
 * (GDT, start_info, page tables, command line, ACPI tables) and the initrd. Returns 0 or
 * -EINVAL with the segment and what it hits in err. Pure.
 */
int pvh_check_segments(const struct elf_kernel *k, const struct guest_memory *mem,
		       const struct boot_layout *layout, char *err, size_t errlen);

/*
 * Loads the kernel's segments (read from src straight into guest RAM), the command line, the
 * initrd parts (concatenated, placed at the top of RAM below the PCI hole) and the start_info.
 * Returns 0 or a negative errno with a one-line reason in err.
 */
int pvh_load(struct guest_memory *mem, const struct elf_kernel *k, const struct elf_source *src,
	     const char *cmdline, const struct boot_blob *initrd, unsigned int nr_initrd,
	     uint64_t rsdp_addr, char *err, size_t errlen);

#endif
