// SPDX-License-Identifier: MIT
/*
 * FUSE operations on directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR. Entries
 * are packed as <linux/fuse.h> lays them out: each record FUSE_DIRENT_ALIGN'ed to 8 bytes, the
 * offset in each the cookie of the entry after it (the kernel's d_off), so that a READDIR at any
 * offset the guest was given continues there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_internal.h"

int fs_op_opendir(struct fs_req *r, struct fs_inode *ino)
{
	struct fuse_open_out *out;
	DIR *dir;
	int fd;

	if (ino->type != S_IFDIR)
		return -ENOTDIR;
	out = fs_req_out(r, sizeof(*out));
	if (!out)
		return -EINVAL;
	fd = fs_inode_reopen(r->srv, ino, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return fd;
	dir = fdopendir(fd);
	if (!dir) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fs_handle_new(r->srv, fd, dir, &out->fh) ?: (int)sizeof(*out);
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

static int readdir_common(struct fs_req *r, struct fs_inode *ino, bool plus)
{
	struct fuse_read_in in;
	struct fs_handle *h;
	size_t cap, pos = 0;
	uint8_t *buf;
	off_t cur;
	int err = 0;

	memcpy(&in, r->arg, sizeof(in));
	h = fs_handle_get(r->srv, in.fh);
	if (!h)
		return -EBADF;
	if (!h->dir) {
		fs_handle_put(r->srv, h);
		return -ENOTDIR;
	}
	cap = in.size < r->reply_room ? in.size : r->reply_room;
	if (cap > FS_MAX_WRITE)
		cap = FS_MAX_WRITE;
	buf = fs_req_out(r, cap);
	if (!buf) {
		fs_handle_put(r->srv, h);
		return -ENOMEM;
	}
	pthread_mutex_lock(&h->lock);
	cur = h->dir_off;
	if (cur != (off_t)in.offset) {
		free(h->held);
		h->held = NULL;
		if (in.offset)
			seekdir(h->dir, (long)in.offset);
		else
			rewinddir(h->dir);
		cur = (off_t)in.offset;
	}
	for (;;) {
		struct fuse_dirent *d;
		struct fs_held_dirent e, *de = &e;
		struct dirent *rd;
		size_t namelen, size, at;

		if (h->held) {
			de = h->held;
		} else {
			errno = 0;
			rd = readdir(h->dir);
			if (!rd) {
				err = errno ? -errno : 0;
				break;
			}
			e.ino = rd->d_ino;
			e.off = rd->d_off;
			e.type = rd->d_type;
			memcpy(e.name, rd->d_name, strlen(rd->d_name) + 1);
		}
		namelen = strlen(de->name);
		at = plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET;
		size = FUSE_DIRENT_ALIGN(at + namelen);
		if (size > cap - pos) {
			/* The entry that did not fit comes first in the next READDIR. */
			if (!h->held) {
				h->held = malloc(sizeof(*h->held));
				if (h->held)
					*h->held = e;
				else
					seekdir(h->dir,
						cur); /* the old way: right on most file systems */
			}
			break;
		}
		if (plus) {
			struct fuse_direntplus *dp = (struct fuse_direntplus *)(buf + pos);

			/*
			 * A zero nodeid tells the guest "no attributes for this one" (fuse
			 * dir.c): so for "." and "..", never looked up (".." of the root is
			 * outside), and for a name gone since readdir saw it.
			 */
			if (!is_dot(de->name) &&
			    fs_inode_lookup(r->srv, ino, de->name, &dp->entry_out))
				memset(&dp->entry_out, 0, sizeof(dp->entry_out));
			d = &dp->dirent;
		} else {
			d = (struct fuse_dirent *)(buf + pos);
		}
		d->ino = de->ino;
		d->off = (uint64_t)de->off;
		d->namelen = (uint32_t)namelen;
		d->type = de->type;
		memcpy(d->name, de->name, namelen);
		pos += size;
		cur = de->off;
		if (de == h->held) {
			free(h->held);
			h->held = NULL;
		}
	}
	h->dir_off = cur;
	pthread_mutex_unlock(&h->lock);
	fs_handle_put(r->srv, h);
	if (err && !pos)
		return err;
	return (int)pos;
}

int fs_op_readdir(struct fs_req *r, struct fs_inode *ino)
{
	return readdir_common(r, ino, false);
}

int fs_op_readdirplus(struct fs_req *r, struct fs_inode *ino)
{
	return readdir_common(r, ino, true);
}

int fs_op_releasedir(struct fs_req *r, struct fs_inode *unused)
{
	return fs_op_release(r, unused);
}

int fs_op_fsyncdir(struct fs_req *r, struct fs_inode *unused)
{
	return fs_op_fsync(r, unused);
}
