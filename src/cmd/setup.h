/* SPDX-License-Identifier: MIT */
/* The parts of `nkvm setup` shared by setup.c (the kernel) and setup_initrd.c (the initramfs). */
#ifndef NKVM_CMD_SETUP_H
#define NKVM_CMD_SETUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Cache files beside NKVM_GUEST_KERNEL and NKVM_GUEST_INITRD (lib/paths.h). */
#define SETUP_KERNEL_TREE "kernel" /* the unpacked kernel package */
#define SETUP_KERNEL_VERSION "kernel-version" /* its release, "6.1.0-56-cloud-amd64\n" */
#define SETUP_INITRD_STAMP "initrd.stamp" /* what the initrd was built from */
/* The default initramfs plus tools too big for it (fio), when the host has them. */
#define SETUP_INITRD_FULL "initrd-full.cpio"

/* What the cached vmlinux (NKVM_GUEST_VMLINUX) was extracted from: the bzImage's checksum. */
#define SETUP_VMLINUX_STAMP "vmlinux.stamp"

/* The compressions of a bzImage payload that setup decompresses, by magic. */
enum setup_payload {
	SETUP_PAYLOAD_GZIP,
	SETUP_PAYLOAD_XZ,
	SETUP_PAYLOAD_ZSTD,
	SETUP_PAYLOAD_LZ4,
};

/* The payload's compression from its first len bytes: an enum setup_payload, or -1. */
int setup_payload_kind(const uint8_t *p, size_t len);

/*
 * Decompresses the vmlinux ELF out of the bzImage bz (len bytes) into *out (malloc'ed, *out_len
 * bytes). Returns 0; -ENOTSUP for a compression setup does not handle; -EINVAL for a bzImage or
 * payload that is not well-formed, truncated or corrupt; -ENOMEM. A one-line reason goes in err.
 */
int setup_extract_vmlinux(const uint8_t *bz, size_t len, uint8_t **out, size_t *out_len,
			  char *err, size_t errlen);

/* The stamp line of a vmlinux extracted from bz: its CRC-32 and size. 0 or -ENAMETOOLONG. */
int setup_vmlinux_stamp(const uint8_t *bz, size_t len, char *buf, size_t buflen);

/*
 * Makes <dir>/vmlinux from <dir>/vmlinuz unless its stamp says it was made from this very
 * vmlinuz (then *reused). A kernel whose payload setup cannot unpack, or without a PVH entry,
 * gets no vmlinux (a line says so; the default guest boots the bzImage) and returns 0. Any stale
 * vmlinux is removed first. Prints one line on failure. Returns 0 or a negative errno.
 */
int setup_vmlinux(const char *dir, bool *reused);

/*
 * spawn_run() that explains itself: when the program is missing or fails, prints one line
 * naming it and the Debian package it comes from. Returns 0 or a negative errno.
 */
int setup_run_tool(char *const argv[], const char *cwd, char **out, size_t *out_len);

/*
 * Builds <dir>/initrd.cpio for the kernel tree in <dir>/kernel, release version, and writes
 * its stamp. Prints one line on failure. Returns 0 or a negative errno.
 */
int setup_build_initrd(const char *dir, const char *version);

/*
 * The stamp of an initrd built by this nkvm for this kernel release: a stale one (an older
 * init, another kernel) is rebuilt. Returns 0 or -ENAMETOOLONG.
 */
int setup_initrd_stamp(const char *version, char *buf, size_t len);

/*
 * The directory `nkvm setup` prepares a guest in: base (the cache directory) for the default
 * kernel (package NULL), "<base>/<package>" for --kernel-package. Returns 0, -EINVAL when package
 * is not a Debian package name (Policy §5.6.1; so "..", "a/b" or "" never leave base), or
 * -ENAMETOOLONG.
 */
int setup_guest_dir(const char *base, const char *package, char *buf, size_t len);

/* The files a dynamically linked program loads. */
struct setup_libs {
	char **paths; /* absolute, as the loader opens them; the loader included */
	size_t n;
};

/*
 * Reads the output of `ldd PROGRAM` into *libs, each path once. Returns 0, -ENOMEM, -ENOENT
 * when ldd found no file for a library, or -EINVAL for a path the initramfs cannot hold (not
 * absolute, or with "." or ".." components); both write the library's name into err (errlen
 * bytes). On error *libs is empty.
 */
int setup_ldd_parse(const char *text, struct setup_libs *libs, char *err, size_t errlen);
void setup_libs_free(struct setup_libs *libs);

#endif
