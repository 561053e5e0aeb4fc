// SPDX-License-Identifier: MIT
/* Boot protocol: bzImage checks and boot_params/e820 built for a real kernel. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "arch/x86/boot.h"
#include "lib/paths.h"
#include "lib/util.h"

struct kernel_file {
	uint8_t *data;
	size_t len;
};

/* The default guest's kernel (`nkvm setup`), or NKVM_TEST_KERNEL. */
static int load_real_kernel(void **state)
{
	struct kernel_file *k = calloc(1, sizeof(*k));
	char path[4096];
	const char *env = getenv("NKVM_TEST_KERNEL");

	if (env)
		snprintf(path, sizeof(path), "%s", env);
	else if (nkvm_cache_path(path, sizeof(path), NKVM_GUEST_KERNEL))
		return -1;
	if (read_file(path, &k->data, &k->len)) {
		fprintf(stderr, "test_boot: no kernel at %s: run `nkvm setup` first\n", path);
		return -1;
	}
	*state = k;
	return 0;
}

static int free_real_kernel(void **state)
{
	struct kernel_file *k = *state;

	free(k->data);
	free(k);
	return 0;
}

static void test_bzimage_real_kernel_parses(void **state)
{
	struct kernel_file *f = *state;
	struct bzimage k;
	char why[256] = "";

	assert_int_equal(bzimage_parse(f->data, f->len, f->len, &k, why, sizeof(why)), 0);
	assert_true(k.hdr.version >= 0x020c);
	assert_true(k.hdr.xloadflags & XLF_KERNEL_64);
	assert_true(k.kernel_size > 1024 * 1024);
	assert_ptr_equal(k.kernel, f->data + (k.hdr.setup_sects + 1) * 512);
	assert_true(k.initrd_max >= 0x37ffffff);
}

static void test_bzimage_rejects_non_kernel(void **state)
{
	uint8_t junk[8192];
	struct bzimage k;
	char why[256] = "";

	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(bzimage_parse(junk, sizeof(junk), sizeof(junk), &k, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "not a bzImage"));
}

static void test_bzimage_rejects_tiny_file(void **state)
{
	uint8_t tiny[100] = { 0 };
	struct bzimage k;
	char why[256] = "";

	assert_int_equal(bzimage_parse(tiny, sizeof(tiny), sizeof(tiny), &k, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "too small"));
}

static void test_bzimage_rejects_truncated_kernel(void **state)
{
	struct kernel_file *f = *state;
	struct bzimage k;
	char why[256] = "";

	assert_int_equal(bzimage_parse(f->data, f->len / 2, f->len / 2, &k, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "truncated"));
}

static void test_bzimage_rejects_old_protocol(void **state)
{
	struct kernel_file *f = *state;
	uint8_t *copy = malloc(f->len);
	struct bzimage k;
	char why[256] = "";

	memcpy(copy, f->data, f->len);
	copy[0x206] = 0x0b; /* version 2.11 */
	copy[0x207] = 0x02;
	assert_int_equal(bzimage_parse(copy, f->len, f->len, &k, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "2.12"));
	free(copy);
}

static void test_e820_small_guest_is_one_low_region(void **state)
{
	struct guest_memory mem;
	struct boot_params bp = { 0 };

	memory_layout(&mem, 256 * MiB);
	boot_build_e820(&bp, &mem);
	assert_int_equal(bp.e820_entries, 3);
	assert_int_equal(bp.e820_table[0].addr, 0);
	assert_int_equal(bp.e820_table[0].size, BOOT_EBDA_START);
	assert_int_equal(bp.e820_table[1].type, 2); /* reserved: EBDA, ACPI, BIOS area */
	assert_int_equal(bp.e820_table[2].addr, BOOT_KERNEL_ADDR);
	assert_int_equal(bp.e820_table[2].addr + bp.e820_table[2].size, 256 * MiB);
}

static void test_e820_large_guest_skips_pci_hole(void **state)
{
	struct guest_memory mem;
	struct boot_params bp = { 0 };
	uint64_t ram = 0;

	memory_layout(&mem, 6 * GiB);
	boot_build_e820(&bp, &mem);
	assert_int_equal(bp.e820_entries, 4);
	assert_int_equal(bp.e820_table[2].addr + bp.e820_table[2].size, MEM_HOLE_START);
	assert_int_equal(bp.e820_table[3].addr, 4 * GiB);
	for (unsigned int i = 0; i < bp.e820_entries; i++)
		if (bp.e820_table[i].type == 1)
			ram += bp.e820_table[i].size;
	/* All RAM but the reserved 0x9fc00..1M window is usable. */
	assert_int_equal(ram, 6 * GiB - (BOOT_KERNEL_ADDR - BOOT_EBDA_START));
}

static void test_boot_params_carry_header_cmdline_initrd(void **state)
{
	struct kernel_file *f = *state;
	struct guest_memory mem;
	struct bzimage k;
	struct boot_params bp;
	struct boot_layout layout = { .initrd_addr = 0x5000000ULL,
				      .initrd_size = 12345,
				      .rsdp_addr = BOOT_ACPI_ADDR };
	char why[256] = "";

	assert_int_equal(bzimage_parse(f->data, f->len, f->len, &k, why, sizeof(why)), 0);
	memory_layout(&mem, 512 * MiB);
	boot_build_params(&bp, &k, &mem, &layout, BOOT_CMDLINE_ADDR);
	assert_int_equal(bp.hdr.header, 0x53726448);
	assert_int_equal(bp.hdr.type_of_loader, 0xff);
	assert_int_equal(bp.hdr.cmd_line_ptr, BOOT_CMDLINE_ADDR);
	assert_int_equal(bp.hdr.ramdisk_image, 0x5000000);
	assert_int_equal(bp.hdr.ramdisk_size, 12345);
	assert_int_equal(bp.acpi_rsdp_addr, BOOT_ACPI_ADDR);
	assert_int_equal(bp.e820_entries, 3);
}

static void test_initrd_placed_high_and_clear_of_kernel(void **state)
{
	struct kernel_file *f = *state;
	struct guest_memory mem;
	struct bzimage k;
	char why[256] = "";
	uint64_t addr;

	assert_int_equal(bzimage_parse(f->data, f->len, f->len, &k, why, sizeof(why)), 0);
	memory_layout(&mem, 256 * MiB);
	assert_int_equal(boot_place_initrd(&k, &mem, 10 * MiB, &addr), 0);
	assert_int_equal(addr % 4096, 0);
	assert_true(addr + 10 * MiB <= 256 * MiB);
	assert_true(addr >= 246 * MiB - 4096);
	assert_true(addr >= k.hdr.pref_address + k.hdr.init_size);
	/* Too big for the RAM left above the kernel. */
	assert_int_equal(boot_place_initrd(&k, &mem, 250 * MiB, &addr), -ENOSPC);
	/* A big guest still gets its initrd under initrd_addr_max. */
	memory_layout(&mem, 8 * GiB);
	assert_int_equal(boot_place_initrd(&k, &mem, 10 * MiB, &addr), 0);
	assert_true(addr + 10 * MiB <= k.initrd_max + 1);
}

static void test_boot_load_writes_kernel_cmdline_initrd(void **state)
{
	struct kernel_file *f = *state;
	struct guest_memory mem;
	struct bzimage k;
	char why[256] = "";
	const uint8_t part1[] = "first", part2[] = "second";
	struct boot_blob parts[] = { { part1, 5, -1 }, { part2, 6, -1 } };
	struct boot_params *bp;

	assert_int_equal(bzimage_parse(f->data, f->len, f->len, &k, why, sizeof(why)), 0);
	assert_int_equal(memory_init(&mem, 128 * MiB), 0);
	assert_int_equal(boot_load(&mem, &k, "console=ttyS0 x=1", parts, 2, 0, why, sizeof(why)),
			 0);
	assert_memory_equal(guest_ptr(&mem, BOOT_KERNEL_ADDR, 64), k.kernel, 64);
	assert_string_equal((char *)guest_ptr(&mem, BOOT_CMDLINE_ADDR, 1), "console=ttyS0 x=1");
	bp = guest_ptr(&mem, BOOT_PARAMS_ADDR, sizeof(*bp));
	assert_int_equal(bp->hdr.ramdisk_size, 11);
	assert_memory_equal(guest_ptr(&mem, bp->hdr.ramdisk_image, 11), "firstsecond", 11);
	memory_free(&mem);
}

/* What nkvm run does: parse the setup part only, read kernel and initrd from their files. */
static void test_boot_load_reads_kernel_and_initrd_from_files(void **state)
{
	struct kernel_file *f = *state;
	char kpath[] = "/tmp/nkvm-test-kernel-XXXXXX", ipath[] = "/tmp/nkvm-test-initrd-XXXXXX";
	int kfd = mkstemp(kpath), ifd = mkstemp(ipath);
	struct guest_memory mem;
	struct bzimage k;
	struct boot_params *bp;
	char why[256] = "";

	assert_true(kfd >= 0 && ifd >= 0);
	unlink(kpath);
	unlink(ipath);
	assert_int_equal(write_all(kfd, f->data, f->len), 0);
	assert_int_equal(write_all(ifd, "initrd-bytes", 12), 0);
	struct boot_blob parts[] = { { NULL, 12, ifd }, { (const uint8_t *)"+tail", 5, -1 } };

	assert_int_equal(bzimage_parse(f->data, BZIMAGE_HEADER_MAX, f->len, &k, why, sizeof(why)),
			 0);
	assert_null(k.kernel);
	k.fd = kfd;
	assert_int_equal(memory_init(&mem, 128 * MiB), 0);
	assert_int_equal(boot_load(&mem, &k, "x", parts, 2, 0, why, sizeof(why)), 0);
	assert_memory_equal(guest_ptr(&mem, BOOT_KERNEL_ADDR, k.kernel_size),
			    f->data + k.kernel_offset, k.kernel_size);
	bp = guest_ptr(&mem, BOOT_PARAMS_ADDR, sizeof(*bp));
	assert_memory_equal(guest_ptr(&mem, bp->hdr.ramdisk_image, 17), "initrd-bytes+tail", 17);
	/* A file that shrank after the check: an error, not garbage in the guest. */
	assert_int_equal(ftruncate(kfd, f->len / 2), 0);
	assert_int_equal(boot_load(&mem, &k, "x", parts, 2, 0, why, sizeof(why)), -EIO);
	assert_non_null(strstr(why, "kernel"));
	memory_free(&mem);
	close(kfd);
	close(ifd);
}

static void test_boot_load_rejects_overlong_cmdline(void **state)
{
	struct kernel_file *f = *state;
	struct guest_memory mem;
	struct bzimage k;
	char why[256] = "";
	char *cmdline = malloc(8192);

	memset(cmdline, 'a', 8191);
	cmdline[8191] = 0;
	assert_int_equal(bzimage_parse(f->data, f->len, f->len, &k, why, sizeof(why)), 0);
	assert_int_equal(memory_init(&mem, 64 * MiB), 0);
	assert_int_equal(boot_load(&mem, &k, cmdline, NULL, 0, 0, why, sizeof(why)), -E2BIG);
	assert_non_null(strstr(why, "command line"));
	memory_free(&mem);
	free(cmdline);
}

static void test_boot_load_rejects_ram_too_small_for_kernel(void **state)
{
	struct kernel_file *f = *state;
	struct guest_memory mem;
	struct bzimage k;
	char why[256] = "";

	assert_int_equal(bzimage_parse(f->data, f->len, f->len, &k, why, sizeof(why)), 0);
	assert_int_equal(memory_init(&mem, 4 * MiB), 0);
	assert_int_equal(boot_load(&mem, &k, "", NULL, 0, 0, why, sizeof(why)), -ENOSPC);
	memory_free(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bzimage_real_kernel_parses),
		cmocka_unit_test(test_bzimage_rejects_non_kernel),
		cmocka_unit_test(test_bzimage_rejects_tiny_file),
		cmocka_unit_test(test_bzimage_rejects_truncated_kernel),
		cmocka_unit_test(test_bzimage_rejects_old_protocol),
		cmocka_unit_test(test_e820_small_guest_is_one_low_region),
		cmocka_unit_test(test_e820_large_guest_skips_pci_hole),
		cmocka_unit_test(test_boot_params_carry_header_cmdline_initrd),
		cmocka_unit_test(test_initrd_placed_high_and_clear_of_kernel),
		cmocka_unit_test(test_boot_load_writes_kernel_cmdline_initrd),
		cmocka_unit_test(test_boot_load_reads_kernel_and_initrd_from_files),
		cmocka_unit_test(test_boot_load_rejects_overlong_cmdline),
		cmocka_unit_test(test_boot_load_rejects_ram_too_small_for_kernel),
	};

	return cmocka_run_group_tests_name("boot", tests, load_real_kernel, free_real_kernel);
}
