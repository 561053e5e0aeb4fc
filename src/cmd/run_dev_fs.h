/* SPDX-License-Identifier: MIT */
/*
 * `--share HOSTDIR[,tag=TAG][,at=GUESTPATH][,ro]` and `--root HOSTDIR`: host directories served
 * to the guest by virtio-fs, as the device table (run_devices.h) adds them, and the file that
 * tells the guest's init what to mount (NKVM_SHARES_FILE, guest/abi.h).
 */
#ifndef NKVM_CMD_RUN_DEV_FS_H
#define NKVM_CMD_RUN_DEV_FS_H

#include <stdbool.h>
#include <stddef.h>

#include "virtio/fs.h"

#define RUN_MAX_SHARES 8
/* --root's tag: a share's tag may not be this one. */
#define RUN_ROOT_TAG "nkvm-root"

struct run_options;

struct run_share {
	const char *path; /* the host directory */
	const char *tag; /* tag=, else (run_fs_check) tag_buf: the host directory's base name */
	const char *at; /* at=, else (run_fs_check) at_buf: /mnt/TAG; "/" for --root */
	bool readonly;
	char tag_buf[VIRTIO_FS_TAG_MAX + 1];
	char at_buf[sizeof("/mnt/") + VIRTIO_FS_TAG_MAX];
};

/*
 * After parsing: fills each share's default tag and guest path, and checks what one option
 * alone cannot: each directory exists and is one, each tag is 1 to 36 bytes of no space and
 * used once, each guest path is absolute. Returns 0 or -EINVAL with one line in err
 * ("--share /srv/x: not a directory").
 */
int run_fs_check(struct run_options *o, char *err, size_t errlen);

/*
 * The text of NKVM_SHARES_FILE for the shares and root of o, in *text (the caller frees it);
 * NULL when there are none. Returns 0 or -ENOMEM.
 */
int run_fs_guest_file(const struct run_options *o, char **text, size_t *len);

#endif
