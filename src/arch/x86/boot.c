// SPDX-License-Identifier: MIT
/* Linux x86 boot protocol (Documentation/arch/x86/boot.rst): load a bzImage without a BIOS. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "lib/util.h"

#define SETUP_HDR_OFFSET 0x1f1
#define HDRS_MAGIC 0x53726448 /* "HdrS" */
#define BOOT_FLAG 0xaa55
#define MIN_BOOT_VERSION 0x020c /* 2.12: xloadflags, so XLF_KERNEL_64 can be checked */
#define LOADER_UNDEFINED 0xff

int bzimage_parse(const uint8_t *data, size_t len, uint64_t file_size, struct bzimage *k, char *err,
		  size_t errlen)
{
	size_t hdr_end, setup_size;
	unsigned int setup_sects;

	memset(k, 0, sizeof(*k));
	k->fd = -1;
	if (len > file_size || len < SETUP_HDR_OFFSET + sizeof(k->hdr))
		return err_set(err, errlen, -EINVAL, "file too small to hold a setup header");
	memcpy(&k->hdr, data + SETUP_HDR_OFFSET, sizeof(k->hdr));
	if (k->hdr.boot_flag != BOOT_FLAG || k->hdr.header != HDRS_MAGIC)
		return err_set(err, errlen, -EINVAL, "no Linux boot signature (not a bzImage)");
	if (k->hdr.version < MIN_BOOT_VERSION)
		return err_set(err, errlen, -EINVAL,
			       "boot protocol older than 2.12 (kernel too old for 64-bit entry)");
	if (!(k->hdr.xloadflags & XLF_KERNEL_64) || !(k->hdr.loadflags & LOADED_HIGH))
		return err_set(err, errlen, -EINVAL,
			       "kernel has no 64-bit entry point (XLF_KERNEL_64)");
	/* The header's own length: the jump at 0x200 skips it, its offset byte is at 0x201. */
	hdr_end = 0x202 + data[0x201];
	if (hdr_end > SETUP_HDR_OFFSET + sizeof(k->hdr) || hdr_end < 0x264)
		return err_set(err, errlen, -EINVAL, "setup header length out of range");
	/* Fields past the header's own length are not the kernel's: zero them. */
	memset((uint8_t *)&k->hdr + (hdr_end - SETUP_HDR_OFFSET), 0,
	       sizeof(k->hdr) - (hdr_end - SETUP_HDR_OFFSET));
	setup_sects = k->hdr.setup_sects ? k->hdr.setup_sects : 4;
	setup_size = (size_t)(setup_sects + 1) * 512;
	if (setup_size >= file_size || (uint64_t)k->hdr.syssize * 16 > file_size - setup_size)
		return err_set(err, errlen, -EINVAL,
			       "truncated: file shorter than its setup and kernel sizes");
	k->kernel = len == file_size ? data + setup_size : NULL;
	k->kernel_offset = setup_size;
	k->kernel_size = file_size - setup_size;
	k->initrd_max = k->hdr.initrd_addr_max ? k->hdr.initrd_addr_max : 0x37ffffff;
	return 0;
}

static void e820_add(struct boot_e820_entry *e, unsigned int *n, unsigned int max, uint64_t addr,
		     uint64_t size, uint32_t type)
{
	if (!size || *n >= max)
		return;
	e[(*n)++] = (struct boot_e820_entry){ .addr = addr, .size = size, .type = type };
}

unsigned int boot_e820_layout(struct boot_e820_entry *e, unsigned int max,
			      const struct guest_memory *mem)
{
	uint64_t low = memory_low_end(mem);
	unsigned int n = 0;

	e820_add(e, &n, max, 0, BOOT_EBDA_START, BOOT_E820_TYPE_RAM);
	e820_add(e, &n, max, BOOT_EBDA_START, BOOT_KERNEL_ADDR - BOOT_EBDA_START,
		 BOOT_E820_TYPE_RESERVED);
	if (low > BOOT_KERNEL_ADDR)
		e820_add(e, &n, max, BOOT_KERNEL_ADDR, low - BOOT_KERNEL_ADDR, BOOT_E820_TYPE_RAM);
	for (unsigned int i = 1; i < mem->nr_regions; i++)
		e820_add(e, &n, max, mem->regions[i].gpa, mem->regions[i].size,
			 BOOT_E820_TYPE_RAM);
	return n;
}

void boot_build_e820(struct boot_params *bp, const struct guest_memory *mem)
{
	bp->e820_entries = boot_e820_layout(bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE, mem);
}

void boot_build_params(struct boot_params *bp, const struct bzimage *k,
		       const struct guest_memory *mem, const struct boot_layout *layout,
		       uint64_t cmdline_addr)
{
	memset(bp, 0, sizeof(*bp));
	bp->hdr = k->hdr;
	bp->hdr.type_of_loader = LOADER_UNDEFINED;
	bp->hdr.cmd_line_ptr = (uint32_t)cmdline_addr;
	bp->ext_cmd_line_ptr = (uint32_t)(cmdline_addr >> 32);
	bp->hdr.ramdisk_image = (uint32_t)layout->initrd_addr;
	bp->hdr.ramdisk_size = (uint32_t)layout->initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(layout->initrd_addr >> 32);
	bp->ext_ramdisk_size = (uint32_t)(layout->initrd_size >> 32);
	/* 2.14+: saves the kernel the scan of the BIOS area for the RSDP. */
	if (k->hdr.version >= 0x020e)
		bp->acpi_rsdp_addr = layout->rsdp_addr;
	boot_build_e820(bp, mem);
}

int boot_place_initrd(const struct bzimage *k, const struct guest_memory *mem, uint64_t size,
		      uint64_t *addr)
{
	/* The kernel decompresses in place up to pref_address + init_size (or 1 MiB + ...). */
	uint64_t base = k->hdr.pref_address > BOOT_KERNEL_ADDR ? k->hdr.pref_address :
								 BOOT_KERNEL_ADDR;
	uint64_t kernel_end = base + k->hdr.init_size;
	uint64_t top = memory_low_end(mem);

	if (top > k->initrd_max + 1)
		top = k->initrd_max + 1;
	if (size > top || ALIGN_DOWN(top - size, 4096) < kernel_end)
		return -ENOSPC;
	*addr = ALIGN_DOWN(top - size, 4096);
	return 0;
}

/* Copies len bytes from src, or from fd at off when src is NULL, to dst. */
static int copy_in(uint8_t *dst, const uint8_t *src, int fd, uint64_t off, size_t len)
{
	if (src) {
		memcpy(dst, src, len);
		return 0;
	}
	return pread_full(fd, dst, len, off);
}

int boot_load(struct guest_memory *mem, const struct bzimage *k, const char *cmdline,
	      const struct boot_blob *initrd, unsigned int nr_initrd, uint64_t rsdp_addr, char *err,
	      size_t errlen)
{
	struct boot_layout layout = { .rsdp_addr = rsdp_addr };
	size_t cmdline_len = strlen(cmdline) + 1;
	uint64_t cmdline_max = k->hdr.cmdline_size ? k->hdr.cmdline_size + 1ULL : 256;
	uint64_t kernel_need = k->kernel_size > k->hdr.init_size ? k->kernel_size :
								   k->hdr.init_size;
	struct boot_params *bp;
	uint8_t *p;

	if (memory_low_end(mem) < BOOT_KERNEL_ADDR + kernel_need)
		return err_set(err, errlen, -ENOSPC, "RAM too small for the kernel");
	p = guest_ptr(mem, BOOT_KERNEL_ADDR, k->kernel_size);
	if (!p)
		return err_set(err, errlen, -ENOSPC, "RAM too small for the kernel");
	if (copy_in(p, k->kernel, k->fd, k->kernel_offset, k->kernel_size))
		return err_set(err, errlen, -EIO, "cannot read the kernel");

	if (cmdline_len > cmdline_max || cmdline_len > BOOT_CMDLINE_MAX)
		return err_set(err, errlen, -E2BIG,
			       "kernel command line longer than the kernel accepts");
	memcpy(guest_ptr(mem, BOOT_CMDLINE_ADDR, cmdline_len), cmdline, cmdline_len);

	for (unsigned int i = 0; i < nr_initrd; i++)
		layout.initrd_size += initrd[i].len;
	if (layout.initrd_size) {
		if (boot_place_initrd(k, mem, layout.initrd_size, &layout.initrd_addr))
			return err_set(err, errlen, -ENOSPC,
				       "initrd does not fit in RAM below the kernel's "
				       "initrd limit");
		p = guest_ptr(mem, layout.initrd_addr, layout.initrd_size);
		for (unsigned int i = 0; i < nr_initrd; i++) {
			if (copy_in(p, initrd[i].data, initrd[i].fd, 0, initrd[i].len))
				return err_set(err, errlen, -EIO, "cannot read the initrd");
			p += initrd[i].len;
		}
	}

	bp = guest_ptr(mem, BOOT_PARAMS_ADDR, sizeof(*bp));
	boot_build_params(bp, k, mem, &layout, BOOT_CMDLINE_ADDR);
	return 0;
}
