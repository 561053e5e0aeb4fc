/* SPDX-License-Identifier: MIT */
/* Linux x86 boot protocol: bzImage checks, boot_params, e820, and loading into guest RAM. */
#ifndef NKVM_ARCH_X86_BOOT_H
#define NKVM_ARCH_X86_BOOT_H

#include <asm/bootparam.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

/* Where boot data goes in guest memory (all below 1 MiB, clear of the kernel). */
#define BOOT_GDT_ADDR 0x500
#define BOOT_GDT_SIZE (8 * 8)
#define BOOT_PARAMS_ADDR 0x7000
#define BOOT_PML4_ADDR 0x9000 /* then PDPT at +0x1000 and 4 PDs: identity map of 4 GiB */
#define BOOT_PAGE_TABLES_SIZE (6 * 4096)
#define BOOT_CMDLINE_ADDR 0x20000
#define BOOT_CMDLINE_MAX 0x10000
#define BOOT_EBDA_START 0x9fc00 /* reserved from here to 1 MiB: EBDA, ACPI tables, "BIOS" */
#define BOOT_ACPI_ADDR 0xe0000
#define BOOT_ACPI_SIZE 0x20000
#define BOOT_KERNEL_ADDR 0x100000
/* The 64-bit entry point sits 0x200 into the protected-mode kernel (boot protocol 2.12+). */
#define BOOT_KERNEL_ENTRY64 (BOOT_KERNEL_ADDR + 0x200)

struct bzimage {
	struct setup_header hdr; /* copied out of the file */
	/* The protected-mode part, loaded at 1 MiB: in memory, or else in file fd at offset. */
	const uint8_t *kernel;
	int fd;
	uint64_t kernel_offset;
	size_t kernel_size;
	uint64_t initrd_max; /* highest address the initrd may end at, inclusive */
};

/*
 * Validates a bzImage of file_size bytes whose first len bytes are in data (the whole file, or
 * at least its setup part: BZIMAGE_HEADER_MAX covers any). Returns 0, or -EINVAL with err
 * naming the failed check. k->kernel points into data when the whole file is there; otherwise
 * the caller sets k->fd for boot_load to read the kernel from.
 */
#define BZIMAGE_HEADER_MAX ((255 + 1) * 512)
int bzimage_parse(const uint8_t *data, size_t len, uint64_t file_size, struct bzimage *k, char *err,
		  size_t errlen);

/*
 * The guest's memory map (RAM, and the BIOS area from the EBDA to 1 MiB reserved) into e, at
 * most max entries. Returns how many it wrote. The bzImage's e820 and PVH's memmap both are it.
 */
unsigned int boot_e820_layout(struct boot_e820_entry *e, unsigned int max,
			      const struct guest_memory *mem);
#define BOOT_E820_TYPE_RAM 1
#define BOOT_E820_TYPE_RESERVED 2

/* Fills the e820 map of bp from the memory layout. */
void boot_build_e820(struct boot_params *bp, const struct guest_memory *mem);

struct boot_layout {
	uint64_t initrd_addr, initrd_size;
	uint64_t rsdp_addr;
};

/* Builds boot_params for k: header, loader id, command line pointer, initrd, e820, RSDP. */
void boot_build_params(struct boot_params *bp, const struct bzimage *k,
		       const struct guest_memory *mem, const struct boot_layout *layout,
		       uint64_t cmdline_addr);

/*
 * Chooses where an initrd of `size` bytes goes: as high as allowed below 4 GiB, page aligned,
 * above the kernel's decompression area. Returns 0 or -ENOSPC.
 */
int boot_place_initrd(const struct bzimage *k, const struct guest_memory *mem, uint64_t size,
		      uint64_t *addr);

/*
 * Loads kernel, command line, initrd parts (concatenated in order) and boot_params into guest
 * RAM. Parts from files are read straight into guest RAM, with no copy in the monitor.
 * Returns 0 or a negative errno with a reason in err.
 */
struct boot_blob {
	const uint8_t *data; /* the bytes, or NULL to read len bytes of fd from offset 0 */
	size_t len;
	int fd;
};
int boot_load(struct guest_memory *mem, const struct bzimage *k, const char *cmdline,
	      const struct boot_blob *initrd, unsigned int nr_initrd, uint64_t rsdp_addr, char *err,
	      size_t errlen);

#endif
