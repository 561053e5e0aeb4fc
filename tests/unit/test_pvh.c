// SPDX-License-Identifier: MIT
/* PVH boot: the ELF and note checks, segment placement, the start_info, the entry registers. */
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

#include "arch/x86/cpu.h"
#include "arch/x86/elf.h"
#include "arch/x86/pvh.h"
#include "lib/paths.h"
#include "lib/util.h"
#include "tests/unit/elf_fixture.h"

static struct elf_source ef_source(const struct ef *e, uint64_t size)
{
	return (struct elf_source){ .data = e->buf, .fd = -1, .size = size };
}

/* Parses e's first `size` bytes; returns the error code, the reason in why. */
static int parse(const struct ef *e, uint64_t size, struct elf_kernel *k, char *why, size_t len)
{
	struct elf_source src = ef_source(e, size);

	why[0] = '\0';
	return elf_parse_kernel(&src, k, why, len);
}

/* The fixture with one change fails to parse with exactly this reason. */
static void expect_parse_error(const struct ef *e, uint64_t size, const char *want)
{
	struct elf_kernel k;
	char why[256];

	assert_int_equal(parse(e, size, &k, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, want);
}

static void test_elf_fixture_parses_entry_and_segments(void **state)
{
	struct elf_kernel k;
	struct ef e;
	char why[256];

	ef_build(&e);
	assert_int_equal(parse(&e, EF_SIZE, &k, why, sizeof(why)), 0);
	assert_int_equal(k.pvh_entry, EF_ENTRY);
	assert_int_equal(k.nr_load, 1);
	assert_int_equal(k.load[0].paddr, EF_TEXT_PADDR);
	assert_int_equal(k.load[0].offset, EF_TEXT_OFF);
	assert_int_equal(k.load[0].filesz, EF_TEXT_FILESZ);
	assert_int_equal(k.load[0].memsz, EF_TEXT_MEMSZ);
	assert_int_equal(k.end, EF_TEXT_PADDR + EF_TEXT_MEMSZ);
}

static void test_elf_entry_note_of_8_bytes_is_read(void **state)
{
	struct elf_kernel k;
	struct ef e;
	char why[256];
	Elf64_Nhdr *n;
	uint64_t entry = EF_ENTRY + 8;

	/* Linux's own note is 8 bytes (ELFNOTE with _ASM_PTR): rebuild the note segment so. */
	ef_build(&e);
	n = (Elf64_Nhdr *)(e.entry_desc - 4 - sizeof(*n));
	n->n_descsz = 8;
	memcpy(e.entry_desc, &entry, 8);
	e.note->p_filesz += 4;
	assert_int_equal(parse(&e, EF_SIZE, &k, why, sizeof(why)), 0);
	assert_int_equal(k.pvh_entry, EF_ENTRY + 8);
}

static void test_elf_is_elf_only_on_the_magic(void **state)
{
	struct ef e;

	ef_build(&e);
	assert_true(elf_is_elf(e.buf, EF_SIZE));
	assert_false(elf_is_elf(e.buf, 3));
	e.buf[1] = 'e';
	assert_false(elf_is_elf(e.buf, EF_SIZE));
}

static void test_elf_rejects_kernel_without_pvh_note(void **state)
{
	struct ef e;

	ef_build(&e);
	e.entry_desc[-4 - 4] = 17; /* the note's type: XEN_ELFNOTE_SUPPORTED_FEATURES */
	expect_parse_error(&e, EF_SIZE,
			   "no XEN_ELFNOTE_PHYS32_ENTRY note: the kernel has no PVH entry point");
	ef_build(&e);
	e.eh->e_phnum = 1; /* no PT_NOTE at all */
	expect_parse_error(&e, EF_SIZE,
			   "no XEN_ELFNOTE_PHYS32_ENTRY note: the kernel has no PVH entry point");
}

static void test_elf_rejects_truncated_header(void **state)
{
	struct ef e;

	ef_build(&e);
	expect_parse_error(&e, sizeof(Elf64_Ehdr) - 1,
			   "truncated: file shorter than an ELF header");
	expect_parse_error(&e, 0, "truncated: file shorter than an ELF header");
}

static void test_elf_rejects_truncated_program_headers(void **state)
{
	struct ef e;

	ef_build(&e);
	expect_parse_error(&e, sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) + 8,
			   "truncated: ELF program headers past the end of the file");
	ef_build(&e);
	e.eh->e_phoff = UINT64_MAX - 8; /* offset + size would wrap */
	expect_parse_error(&e, EF_SIZE, "truncated: ELF program headers past the end of the file");
}

static void test_elf_rejects_absurd_program_header_counts(void **state)
{
	struct ef e;

	ef_build(&e);
	e.eh->e_phnum = 65535;
	expect_parse_error(&e, EF_SIZE, "ELF header counts 65535 program headers (want 1 to 64)");
	e.eh->e_phnum = 0;
	expect_parse_error(&e, EF_SIZE, "ELF header counts 0 program headers (want 1 to 64)");
	ef_build(&e);
	e.eh->e_phentsize = 32;
	expect_parse_error(&e, EF_SIZE, "ELF program header size 32, not 56");
}

static void test_elf_rejects_other_than_x86_64_executables(void **state)
{
	static const char want[] = "not a 64-bit little-endian x86 ELF executable";
	struct ef e;

	ef_build(&e);
	e.eh->e_ident[EI_CLASS] = ELFCLASS32;
	expect_parse_error(&e, EF_SIZE, want);
	ef_build(&e);
	e.eh->e_machine = EM_AARCH64;
	expect_parse_error(&e, EF_SIZE, want);
	ef_build(&e);
	e.eh->e_type = ET_DYN;
	expect_parse_error(&e, EF_SIZE, want);
}

static void test_elf_rejects_note_sizes_past_their_segment(void **state)
{
	struct ef e;

	ef_build(&e);
	/* The GNU note's descsz, first note of the segment. */
	((Elf64_Nhdr *)(e.buf + EF_NOTE_OFF))->n_descsz = 0xfffffffc;
	expect_parse_error(&e, EF_SIZE,
			   "malformed ELF note: its sizes run past its PT_NOTE segment");
	ef_build(&e);
	((Elf64_Nhdr *)(e.buf + EF_NOTE_OFF))->n_namesz = 0xffffffff;
	expect_parse_error(&e, EF_SIZE,
			   "malformed ELF note: its sizes run past its PT_NOTE segment");
}

static void test_elf_rejects_absurd_note_segments(void **state)
{
	struct ef e;

	ef_build(&e);
	e.note->p_filesz = ELF_MAX_NOTES_SIZE + 1;
	expect_parse_error(&e, EF_SIZE, "ELF notes larger than 64 KiB in all");
	ef_build(&e);
	e.note->p_offset = EF_SIZE - 8;
	expect_parse_error(&e, EF_SIZE,
			   "truncated: PT_NOTE segment 1 runs past the end of the file");
}

static void test_elf_rejects_bad_entry_notes(void **state)
{
	struct ef e;
	Elf64_Nhdr *n;

	ef_build(&e);
	n = (Elf64_Nhdr *)(e.entry_desc - 4 - sizeof(*n));
	n->n_descsz = 2;
	expect_parse_error(&e, EF_SIZE, "XEN_ELFNOTE_PHYS32_ENTRY note of 2 bytes (want 4 or 8)");
	ef_build(&e);
	put_le(e.entry_desc, 0x100, 4); /* below the kernel */
	expect_parse_error(&e, EF_SIZE,
			   "PVH entry point 0x100 is outside the kernel's PT_LOAD segments");
	ef_build(&e);
	put_le(e.entry_desc, EF_TEXT_PADDR + EF_TEXT_FILESZ, 4); /* in .bss: nothing there */
	expect_parse_error(&e, EF_SIZE,
			   "PVH entry point 0x1002000 is outside the kernel's PT_LOAD segments");
}

static void test_elf_rejects_bad_load_segments(void **state)
{
	struct ef e;

	ef_build(&e);
	e.load->p_filesz = EF_SIZE;
	e.load->p_memsz = EF_SIZE;
	expect_parse_error(&e, EF_SIZE,
			   "truncated: PT_LOAD segment 0 runs past the end of the file");
	expect_parse_error(&e, EF_SIZE - 1,
			   "truncated: PT_LOAD segment 0 runs past the end of the file");
	ef_build(&e);
	e.load->p_memsz = EF_TEXT_FILESZ - 1;
	expect_parse_error(&e, EF_SIZE,
			   "PT_LOAD segment 0: file size 0x2000 larger than memory size 0x1fff");
	ef_build(&e);
	e.load->p_paddr = UINT64_MAX - 0x1000;
	expect_parse_error(&e, EF_SIZE, "PT_LOAD segment 0 wraps around the address space");
	ef_build(&e);
	e.load->p_type = PT_DYNAMIC;
	expect_parse_error(&e, EF_SIZE, "no PT_LOAD segment");
}

static void test_elf_parses_from_a_file(void **state)
{
	char path[] = "/tmp/nkvm-test-pvh-XXXXXX";
	int fd = mkstemp(path);
	struct elf_source src;
	struct elf_kernel k;
	struct ef e;
	char why[256] = "";

	assert_true(fd >= 0);
	unlink(path);
	ef_build(&e);
	assert_int_equal(pwrite(fd, e.buf, EF_SIZE, 0), EF_SIZE);
	src = (struct elf_source){ .fd = fd, .size = EF_SIZE };
	assert_int_equal(elf_parse_kernel(&src, &k, why, sizeof(why)), 0);
	assert_int_equal(k.pvh_entry, EF_ENTRY);
	/* A size larger than the file: the note read fails, never reads junk. */
	assert_int_equal(ftruncate(fd, EF_NOTE_OFF + 8), 0);
	assert_int_not_equal(elf_parse_kernel(&src, &k, why, sizeof(why)), 0);
	close(fd);
}

/* `nkvm setup`'s vmlinux of the default guest, when there is one. */
static void test_elf_real_vmlinux_has_pvh_entry_in_text(void **state)
{
	char path[4096];
	struct elf_source src = { .fd = -1 };
	struct elf_kernel k;
	uint8_t *data;
	size_t len;
	char why[256] = "";

	if (nkvm_cache_path(path, sizeof(path), NKVM_GUEST_VMLINUX) ||
	    read_file(path, &data, &len)) {
		fprintf(stderr, "test_pvh: no %s (nkvm setup makes it): skipped\n", path);
		skip();
	}
	src.data = data;
	src.size = len;
	assert_int_equal(elf_parse_kernel(&src, &k, why, sizeof(why)), 0);
	assert_true(k.nr_load >= 2);
	/* Linux links itself at LOAD_PHYSICAL_ADDR, 16 MiB; the entry is in its text. */
	assert_int_equal(k.load[0].paddr, 16 * MiB);
	assert_true(k.pvh_entry > k.load[0].paddr &&
		    k.pvh_entry < k.load[0].paddr + k.load[0].filesz);
	free(data);
}

struct loaded {
	struct guest_memory mem;
	struct elf_kernel k;
	struct ef e;
};

static int loaded_setup(void **state)
{
	struct loaded *l = calloc(1, sizeof(*l));
	char why[256];

	if (!l || memory_init(&l->mem, 256 * MiB))
		return -1;
	ef_build(&l->e);
	if (parse(&l->e, EF_SIZE, &l->k, why, sizeof(why)))
		return -1;
	*state = l;
	return 0;
}

static int loaded_teardown(void **state)
{
	struct loaded *l = *state;

	memory_free(&l->mem);
	free(l);
	return 0;
}

static int load(struct loaded *l, const char *cmdline, const struct boot_blob *initrd,
		unsigned int n, char *why, size_t len)
{
	struct elf_source src = ef_source(&l->e, EF_SIZE);

	why[0] = '\0';
	return pvh_load(&l->mem, &l->k, &src, cmdline, initrd, n, BOOT_ACPI_ADDR, why, len);
}

static void test_pvh_load_writes_segments_cmdline_initrd_and_start_info(void **state)
{
	struct loaded *l = *state;
	static const uint8_t part1[5000] = { 0xaa }, part2[100] = { 0xbb };
	struct boot_blob parts[] = { { part1, sizeof(part1), -1 }, { part2, sizeof(part2), -1 } };
	uint8_t *text = guest_ptr(&l->mem, EF_TEXT_PADDR, EF_TEXT_MEMSZ);
	struct boot_e820_entry e820[8];
	struct hvm_start_info si;
	struct hvm_modlist_entry mod;
	struct hvm_memmap_table_entry mm;
	uint64_t initrd = ALIGN_DOWN(256 * MiB - sizeof(part1) - sizeof(part2), 4096);
	unsigned int n;
	char why[256];

	memset(text, 0xff, EF_TEXT_MEMSZ);
	assert_int_equal(load(l, "console=ttyS0 quiet", parts, 2, why, sizeof(why)), 0);
	assert_memory_equal(text, l->e.buf + EF_TEXT_OFF, EF_TEXT_FILESZ);
	for (unsigned int i = EF_TEXT_FILESZ; i < EF_TEXT_MEMSZ; i++)
		assert_int_equal(text[i], 0); /* .bss */
	assert_string_equal(guest_ptr(&l->mem, BOOT_CMDLINE_ADDR, 1), "console=ttyS0 quiet");
	assert_memory_equal(guest_ptr(&l->mem, initrd, sizeof(part1)), part1, sizeof(part1));
	assert_memory_equal(guest_ptr(&l->mem, initrd + sizeof(part1), sizeof(part2)), part2,
			    sizeof(part2));

	memcpy(&si, guest_ptr(&l->mem, PVH_INFO_ADDR, sizeof(si)), sizeof(si));
	assert_int_equal(si.magic, XEN_HVM_START_MAGIC_VALUE);
	assert_int_equal(si.version, 1);
	assert_int_equal(si.cmdline_paddr, BOOT_CMDLINE_ADDR);
	assert_int_equal(si.rsdp_paddr, BOOT_ACPI_ADDR);
	assert_int_equal(si.nr_modules, 1);
	memcpy(&mod, guest_ptr(&l->mem, si.modlist_paddr, sizeof(mod)), sizeof(mod));
	assert_int_equal(mod.paddr, initrd);
	assert_int_equal(mod.size, sizeof(part1) + sizeof(part2));
	/* The memory map is the bzImage path's e820, entry for entry. */
	n = boot_e820_layout(e820, ARRAY_SIZE(e820), &l->mem);
	assert_int_equal(si.memmap_entries, n);
	for (unsigned int i = 0; i < n; i++) {
		memcpy(&mm, guest_ptr(&l->mem, si.memmap_paddr + i * sizeof(mm), sizeof(mm)),
		       sizeof(mm));
		assert_int_equal(mm.addr, e820[i].addr);
		assert_int_equal(mm.size, e820[i].size);
		assert_int_equal(mm.type, e820[i].type);
	}
	/* Linux's PVH entry reads these through its first 1 GiB identity map. */
	assert_true(si.memmap_paddr + n * sizeof(mm) <= PVH_INFO_ADDR + PVH_INFO_SIZE);
}

static void test_pvh_start_info_without_initrd_has_no_module(void **state)
{
	struct loaded *l = *state;
	struct hvm_start_info si;
	char why[256];

	assert_int_equal(load(l, "", NULL, 0, why, sizeof(why)), 0);
	memcpy(&si, guest_ptr(&l->mem, PVH_INFO_ADDR, sizeof(si)), sizeof(si));
	assert_int_equal(si.nr_modules, 0);
	assert_int_equal(si.modlist_paddr, 0);
}

static void test_pvh_memmap_skips_the_pci_hole(void **state)
{
	struct guest_memory mem;
	struct boot_layout layout = { 0 };
	uint8_t info[PVH_INFO_SIZE];
	struct hvm_start_info si;
	struct hvm_memmap_table_entry mm[4];

	memory_layout(&mem, 6 * GiB);
	pvh_build_start_info(info, PVH_INFO_ADDR, &mem, &layout, BOOT_CMDLINE_ADDR);
	memcpy(&si, info, sizeof(si));
	assert_int_equal(si.memmap_entries, 4);
	memcpy(mm, info + (si.memmap_paddr - PVH_INFO_ADDR), sizeof(mm));
	assert_int_equal(mm[1].type, BOOT_E820_TYPE_RESERVED);
	assert_int_equal(mm[2].addr + mm[2].size, MEM_HOLE_START);
	assert_int_equal(mm[3].addr, 4 * GiB);
	assert_int_equal(mm[3].size, 6 * GiB - MEM_HOLE_START);
}

static void test_pvh_rejects_segment_outside_ram(void **state)
{
	struct loaded *l = *state;
	char why[256];

	l->k.load[0].paddr = 300 * MiB;
	assert_int_equal(load(l, "", NULL, 0, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "PT_LOAD segment [0x12c00000, 0x12c05000) is outside guest RAM");
	/* Straddling the end of RAM. */
	l->k.load[0].paddr = 256 * MiB - 0x1000;
	assert_int_equal(load(l, "", NULL, 0, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "PT_LOAD segment [0xffff000, 0x10004000) is outside guest RAM");
	/* In the BIOS area the e820 reserves. */
	l->k.load[0].paddr = 0xa0000;
	assert_int_equal(load(l, "", NULL, 0, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "PT_LOAD segment [0xa0000, 0xa5000) is outside guest RAM");
}

static void test_pvh_rejects_segment_over_the_initrd(void **state)
{
	struct loaded *l = *state;
	static const uint8_t initrd[8192];
	struct boot_blob part = { initrd, sizeof(initrd), -1 };
	char why[256];

	/* The initrd goes to the top of RAM: [256 MiB - 8 KiB, 256 MiB). */
	l->k.load[0].paddr = 256 * MiB - 0x6000;
	assert_int_equal(load(l, "", &part, 1, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "PT_LOAD segment [0xfffa000, 0xffff000) overlaps the initrd at "
				 "[0xfffe000, 0x10000000)");
}

static void test_pvh_rejects_segment_over_nkvm_boot_data(void **state)
{
	static const struct {
		uint64_t paddr;
		const char *want;
	} cases[] = {
		{ 0xe0000,
		  "PT_LOAD segment [0xe0000, 0xe5000) overlaps nkvm's ACPI tables at 0xe0000" },
		{ 0x5000, "PT_LOAD segment [0x5000, 0xa000) overlaps nkvm's start_info at 0x6000" },
		{ 0x1c000,
		  "PT_LOAD segment [0x1c000, 0x21000) overlaps nkvm's command line at 0x20000" },
		{ 0, "PT_LOAD segment [0, 0x5000) overlaps nkvm's GDT at 0x500" },
		{ 0xe000,
		  "PT_LOAD segment [0xe000, 0x13000) overlaps nkvm's page tables at 0x9000" },
	};
	struct loaded *l = *state;
	char why[256];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		l->k.load[0].paddr = cases[i].paddr;
		assert_int_equal(load(l, "", NULL, 0, why, sizeof(why)), -EINVAL);
		assert_string_equal(why, cases[i].want);
	}
}

static void test_pvh_rejects_overlong_cmdline_and_huge_initrd(void **state)
{
	struct loaded *l = *state;
	struct boot_blob big = { NULL, 512 * MiB, -1 };
	char cmdline[PVH_CMDLINE_MAX + 1];
	char why[256];

	memset(cmdline, 'x', sizeof(cmdline) - 1);
	cmdline[sizeof(cmdline) - 1] = '\0';
	assert_int_equal(load(l, cmdline, NULL, 0, why, sizeof(why)), -E2BIG);
	assert_string_equal(why, "kernel command line longer than the kernel accepts (2048 bytes)");
	cmdline[PVH_CMDLINE_MAX - 1] = '\0';
	assert_int_equal(load(l, cmdline, NULL, 0, why, sizeof(why)), 0);
	assert_int_equal(load(l, "", &big, 1, why, sizeof(why)), -ENOSPC);
	assert_string_equal(why, "initrd does not fit in RAM");
}

static void test_pvh_entry_registers_are_protected_mode_paging_off(void **state)
{
	struct kvm_sregs s;

	memset(&s, 0xff, sizeof(s));
	cpu_pvh_sregs(&s);
	assert_int_equal(s.cr0, 0x11); /* PE, and ET which is fixed */
	assert_int_equal(s.cr4, 0);
	assert_int_equal(s.efer, 0);
	assert_int_equal(s.cs.base, 0);
	assert_int_equal(s.cs.limit, 0xffffffff);
	assert_int_equal(s.cs.db, 1); /* 32-bit */
	assert_int_equal(s.cs.l, 0);
	assert_int_equal(s.cs.type, 0xb); /* execute/read, accessed */
	assert_int_equal(s.ds.db, 1);
	assert_int_equal(s.ds.limit, 0xffffffff);
	assert_int_equal(s.ds.type, 0x3); /* read/write, accessed */
	assert_int_equal(s.es.base, 0);
	assert_int_equal(s.tr.base, 0);
	assert_int_equal(s.tr.limit, 0x67);
	assert_int_equal(s.tr.type, 0xb); /* busy 32-bit TSS */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elf_fixture_parses_entry_and_segments),
		cmocka_unit_test(test_elf_entry_note_of_8_bytes_is_read),
		cmocka_unit_test(test_elf_is_elf_only_on_the_magic),
		cmocka_unit_test(test_elf_rejects_kernel_without_pvh_note),
		cmocka_unit_test(test_elf_rejects_truncated_header),
		cmocka_unit_test(test_elf_rejects_truncated_program_headers),
		cmocka_unit_test(test_elf_rejects_absurd_program_header_counts),
		cmocka_unit_test(test_elf_rejects_other_than_x86_64_executables),
		cmocka_unit_test(test_elf_rejects_note_sizes_past_their_segment),
		cmocka_unit_test(test_elf_rejects_absurd_note_segments),
		cmocka_unit_test(test_elf_rejects_bad_entry_notes),
		cmocka_unit_test(test_elf_rejects_bad_load_segments),
		cmocka_unit_test(test_elf_parses_from_a_file),
		cmocka_unit_test(test_elf_real_vmlinux_has_pvh_entry_in_text),
		cmocka_unit_test_setup_teardown(
			test_pvh_load_writes_segments_cmdline_initrd_and_start_info, loaded_setup,
			loaded_teardown),
		cmocka_unit_test_setup_teardown(test_pvh_start_info_without_initrd_has_no_module,
						loaded_setup, loaded_teardown),
		cmocka_unit_test(test_pvh_memmap_skips_the_pci_hole),
		cmocka_unit_test_setup_teardown(test_pvh_rejects_segment_outside_ram, loaded_setup,
						loaded_teardown),
		cmocka_unit_test_setup_teardown(test_pvh_rejects_segment_over_the_initrd,
						loaded_setup, loaded_teardown),
		cmocka_unit_test_setup_teardown(test_pvh_rejects_segment_over_nkvm_boot_data,
						loaded_setup, loaded_teardown),
		cmocka_unit_test_setup_teardown(test_pvh_rejects_overlong_cmdline_and_huge_initrd,
						loaded_setup, loaded_teardown),
		cmocka_unit_test(test_pvh_entry_registers_are_protected_mode_paging_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
