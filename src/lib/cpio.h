/* SPDX-License-Identifier: MIT */
/* An in-memory writer for "newc" cpio archives: the format the Linux kernel unpacks as initramfs. */
#ifndef NKVM_LIB_CPIO_H
#define NKVM_LIB_CPIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cpio {
	uint8_t *buf;
	size_t len, cap;
	uint32_t next_ino;
};

/* Each returns 0 or a negative errno (-ENOMEM, -EINVAL for an empty or overlong name). */
int cpio_add_dir(struct cpio *c, const char *name, mode_t perm);
int cpio_add_file(struct cpio *c, const char *name, mode_t perm, const void *data, size_t len);
int cpio_add_symlink(struct cpio *c, const char *name, const char *target);
/* A character or block device node: mode carries S_IFCHR/S_IFBLK and the permission bits. */
int cpio_add_node(struct cpio *c, const char *name, mode_t mode, unsigned int major,
		  unsigned int minor);
/* Appends the TRAILER!!! entry; the archive is then complete in c->buf[0..c->len). */
int cpio_finish(struct cpio *c);
void cpio_free(struct cpio *c);

#endif
