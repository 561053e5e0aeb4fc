/* SPDX-License-Identifier: MIT */
/* The parts of `nkvm setup` shared by setup.c (the kernel) and setup_initrd.c (the initramfs). */
#ifndef NKVM_CMD_SETUP_H
#define NKVM_CMD_SETUP_H

#include <stddef.h>

/* Cache files beside NKVM_GUEST_KERNEL and NKVM_GUEST_INITRD (lib/paths.h). */
#define SETUP_KERNEL_TREE "kernel" /* the unpacked kernel package */
#define SETUP_KERNEL_VERSION "kernel-version" /* its release, "6.1.0-56-cloud-amd64\n" */
#define SETUP_INITRD_STAMP "initrd.stamp" /* what the initrd was built from */
/* The default initramfs plus tools too big for it (fio), when the host has them. */
#define SETUP_INITRD_FULL "initrd-full.cpio"

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
