/* SPDX-License-Identifier: MIT */
/* The ELF kernel (vmlinux) a PVH boot loads: its PT_LOAD segments and its PVH entry note. */
#ifndef NKVM_ARCH_X86_ELF_H
#define NKVM_ARCH_X86_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Bounds on what a kernel's headers may ask of the parser, far above any real kernel (Linux's
 * vmlinux has 5 program headers and well under 1 KiB of notes).
 */
#define ELF_MAX_PHNUM 64
#define ELF_MAX_NOTES_SIZE (64 * 1024)

/* Where the bytes come from: a buffer (tests, the fuzzer) or a file read with pread. */
struct elf_source {
	const uint8_t *data; /* the whole file, or NULL to read fd */
	int fd;
	uint64_t size;
};

struct elf_segment {
	uint64_t offset, paddr, filesz, memsz;
};

struct elf_kernel {
	struct elf_segment load[ELF_MAX_PHNUM];
	unsigned int nr_load;
	uint32_t pvh_entry; /* XEN_ELFNOTE_PHYS32_ENTRY: 32-bit entry, paging off */
	uint64_t end; /* the highest paddr + memsz of any PT_LOAD */
};

/* Starts with the ELF magic: what `nkvm run -k` boots through PVH instead of as a bzImage. */
bool elf_is_elf(const uint8_t *data, size_t len);

/*
 * Checks a 64-bit x86 ELF kernel (header, program headers, notes; every count and offset
 * bounded by the file) and finds its PT_LOAD segments and PVH entry point. Returns 0, or
 * -EINVAL (-EIO when a read failed) with a one-line reason in err.
 */
int elf_parse_kernel(const struct elf_source *src, struct elf_kernel *k, char *err, size_t errlen);

/* Reads len bytes at off of the source into buf. Returns 0, -EIO past the end, or -errno. */
int elf_read(const struct elf_source *src, void *buf, size_t len, uint64_t off);

#endif
