/* SPDX-License-Identifier: MIT */
/*
 * Landlock for the monitor: during set-up each part of nkvm names the paths it will still need
 * once the guest runs (a disk image it may reopen, a shared directory the FUSE server works in,
 * the directory where vsock's socket=PATH listeners live); landlock_prepare builds one ruleset
 * from them, with every file-system access the running kernel's ABI handles denied elsewhere.
 * sandbox_enter applies it to each thread (landlock_restrict_self confines only the calling
 * thread and the threads it starts afterwards). File descriptors already open stay usable.
 */
#ifndef NKVM_SANDBOX_LANDLOCK_H
#define NKVM_SANDBOX_LANDLOCK_H

#include <stdbool.h>

enum landlock_access {
	LANDLOCK_READ, /* read files (and list directories) beneath the path */
	LANDLOCK_READ_WRITE, /* read and write files beneath the path */
	LANDLOCK_TREE, /* everything beneath a directory: create, remove, rename, link (a share) */
	/*
	 * Only make and remove UNIX sockets in a directory (a listener bound later, a socket
	 * unlinked at exit), without the right to read, write or create any other file there.
	 */
	LANDLOCK_SOCKETS,
};

/* Set-up only: allow access beneath path. Returns 0 or a negative errno (no such path, ...). */
int landlock_allow(const char *path, enum landlock_access access);

/*
 * After the last landlock_allow: builds the ruleset. Returns 0, or -EOPNOTSUPP when the kernel
 * has no Landlock (the caller says so once and carries on without it), or another negative
 * errno.
 */
int landlock_prepare(void);

/* The ABI version the running kernel offers (0: none). */
int landlock_abi(void);

/* On the calling thread: applies the prepared ruleset; 0 when none was prepared. */
int landlock_enter(void);

#endif
