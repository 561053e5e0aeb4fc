/* SPDX-License-Identifier: MIT */
/* Where nkvm keeps the default guest: ${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/. */
#ifndef NKVM_LIB_PATHS_H
#define NKVM_LIB_PATHS_H

#include <stddef.h>

/* Files of the default guest, relative to the cache directory. */
#define NKVM_GUEST_KERNEL "vmlinuz"
#define NKVM_GUEST_INITRD "initrd.cpio"
/* The ELF kernel inside NKVM_GUEST_KERNEL, extracted by `nkvm setup` for the PVH boot. */
#define NKVM_GUEST_VMLINUX "vmlinux"

/*
 * Writes "<cache dir>/<name>" (name may be "" for the directory itself) into buf.
 * Returns 0, -ENAMETOOLONG, or -ENOENT when neither XDG_CACHE_HOME nor HOME is set.
 */
int nkvm_cache_path(char *buf, size_t len, const char *name);

#endif
