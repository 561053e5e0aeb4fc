// SPDX-License-Identifier: MIT
/*
 * FUSE extended-attribute operations: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR. They go
 * through /proc/self/fd/N, which names the O_PATH descriptor's own object (a symlink or fifo
 * included) without opening it or following anything further.
 */
#include <errno.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "fs/fs_internal.h"

static const char *proc_path(char *buf, size_t len, const struct fs_inode *ino)
{
	snprintf(buf, len, "/proc/self/fd/%d", ino->fd);
	return buf;
}

int fs_op_setxattr(struct fs_req *r, struct fs_inode *ino)
{
	struct fuse_getxattr_in in; /* size, flags: the compat fuse_setxattr_in */
	const char *name;
	size_t pos = FUSE_COMPAT_SETXATTR_IN_SIZE;
	char p[32];
	int err;

	memcpy(&in, r->arg, sizeof(in));
	err = fs_arg_string(r, &pos, &name);
	if (err)
		return err;
	if (in.size > r->arglen - pos || in.size > XATTR_SIZE_MAX)
		return -EINVAL;
	return setxattr(proc_path(p, sizeof(p), ino), name, r->arg + pos, in.size,
			(int)in.padding) ?
		       -errno :
		       0;
}

/* GETXATTR and LISTXATTR: size 0 asks for the length, else the value if it fits in size. */
static int xattr_reply(struct fs_req *r, struct fs_inode *ino, const char *name)
{
	struct fuse_getxattr_in in;
	struct fuse_getxattr_out *o;
	size_t cap;
	ssize_t n;
	char p[32];
	void *buf;

	memcpy(&in, r->arg, sizeof(in));
	proc_path(p, sizeof(p), ino);
	if (!in.size) {
		n = name ? getxattr(p, name, NULL, 0) : listxattr(p, NULL, 0);
		if (n < 0)
			return -errno;
		o = fs_req_out(r, sizeof(*o));
		if (!o)
			return -EINVAL;
		o->size = (uint32_t)n;
		return sizeof(*o);
	}
	cap = in.size < XATTR_SIZE_MAX ? in.size : XATTR_SIZE_MAX;
	if (cap > r->reply_room)
		cap = r->reply_room;
	buf = fs_req_out(r, cap);
	if (!buf)
		return -ENOMEM;
	n = name ? getxattr(p, name, buf, cap) : listxattr(p, buf, cap);
	return n < 0 ? -errno : (int)n;
}

int fs_op_getxattr(struct fs_req *r, struct fs_inode *ino)
{
	size_t pos = sizeof(struct fuse_getxattr_in);
	const char *name;
	int err = fs_arg_string(r, &pos, &name);

	return err ? err : xattr_reply(r, ino, name);
}

int fs_op_listxattr(struct fs_req *r, struct fs_inode *ino)
{
	return xattr_reply(r, ino, NULL);
}

int fs_op_removexattr(struct fs_req *r, struct fs_inode *ino)
{
	const char *name;
	size_t pos = 0;
	char p[32];
	int err = fs_arg_string(r, &pos, &name);

	if (err)
		return err;
	return removexattr(proc_path(p, sizeof(p), ino), name) ? -errno : 0;
}
