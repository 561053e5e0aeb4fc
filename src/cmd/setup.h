/* SPDX-License-Identifier: MIT */
/* The parts of `nkvm setup` shared by setup.c (the kernel) and setup_initrd.c (the initramfs). */
#ifndef NKVM_CMD_SETUP_H
#define NKVM_CMD_SETUP_H

#include <stddef.h>

/* Cache files beside NKVM_GUEST_KERNEL and NKVM_GUEST_INITRD (lib/paths.h). */
#define SETUP_KERNEL_TREE "kernel"		/* the unpacked kernel package */
#define SETUP_KERNEL_VERSION "kernel-version"	/* its release, "6.1.0-56-cloud-amd64\n" */
#define SETUP_INITRD_STAMP "initrd.stamp"	/* what the initrd was built from */

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

#endif
