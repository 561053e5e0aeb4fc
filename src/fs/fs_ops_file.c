// SPDX-License-Identifier: MIT
/*
 * FUSE operations on open files: OPEN, CREATE, READ, WRITE, RELEASE, FLUSH, FSYNC, FALLOCATE,
 * LSEEK, COPY_FILE_RANGE. READ and WRITE move data straight between the file and the guest's
 * buffers (preadv/pwritev on slices of the request's iovecs), with no copy in between.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_internal.h"

/* The open flags a guest may pass on: the rest (O_CREAT, O_NOFOLLOW, O_DIRECT...) are nkvm's. */
#define FS_OPEN_FLAGS (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC | O_NONBLOCK)

static int open_flags(struct fs_req *r, uint32_t flags)
{
	if (r->srv->readonly && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
		return -EROFS;
	if ((flags & O_ACCMODE) == O_ACCMODE)
		return -EINVAL;
	return (int)(flags & FS_OPEN_FLAGS);
}

int fs_op_open(struct fs_req *r, struct fs_inode *ino)
{
	struct fuse_open_out *out;
	struct fuse_open_in in;
	int flags, fd, err;

	memcpy(&in, r->arg, sizeof(in));
	flags = open_flags(r, in.flags);
	if (flags < 0)
		return flags;
	if (ino->type == S_IFDIR)
		return -EISDIR;
	out = fs_req_out(r, sizeof(*out));
	if (!out)
		return -EINVAL;
	fd = fs_inode_reopen(r->srv, ino, flags);
	if (fd < 0)
		return fd;
	err = fs_handle_new(r->srv, fd, NULL, &out->fh);
	return err ? err : (int)sizeof(*out);
}

/*
 * An existing name in CREATE without O_EXCL: opened as OPEN would, so a fifo or device node
 * planted under that name is never opened (CVE-2023-2861).
 */
static int create_existing(struct fs_req *r, struct fs_inode *dir, const char *name, int flags,
			   int *opath)
{
	struct fs_inode tmp = { 0 };
	struct stat st;
	int fd, err;

	*opath = fs_openat_beneath(r->srv, dir->fd, name, O_PATH, 0);
	if (*opath < 0)
		return *opath;
	err = fs_stat_fd(*opath, &st);
	if (!err && S_ISDIR(st.st_mode))
		err = -EISDIR;
	if (err) {
		close(*opath);
		return err;
	}
	tmp.fd = *opath;
	tmp.type = st.st_mode & S_IFMT;
	fd = fs_inode_reopen(r->srv, &tmp, flags);
	if (fd < 0)
		close(*opath);
	return fd;
}

int fs_op_create(struct fs_req *r, struct fs_inode *dir)
{
	struct fuse_create_in in;
	struct fuse_entry_out e;
	struct stat dst;
	const char *name;
	size_t pos = sizeof(in);
	struct fuse_open_out *o;
	int flags, fd, opath, err;
	uint8_t *out;
	char n[16];

	memcpy(&in, r->arg, sizeof(in));
	err = fs_arg_name(r, &pos, &name);
	if (err)
		return err;
	flags = open_flags(r, in.flags);
	if (flags < 0)
		return flags;
	if (dir->type != S_IFDIR)
		return -ENOTDIR;
	out = fs_req_out(r, sizeof(e) + sizeof(*o));
	if (!out)
		return -EINVAL;
	o = (struct fuse_open_out *)(out + sizeof(e));
	fd = fs_openat_beneath(r->srv, dir->fd, name, flags | O_CREAT | O_EXCL, in.mode & 07777);
	if (fd >= 0) {
		snprintf(n, sizeof(n), "%d", fd);
		opath = openat(r->srv->proc_fd, n, O_PATH | O_CLOEXEC);
		if (opath < 0) {
			err = -errno;
			close(fd);
			return err;
		}
		if (!fs_stat_fd(dir->fd, &dst))
			fs_owner_fixup(r, opath, false, in.mode, &dst);
	} else if (fd == -EEXIST && !(in.flags & O_EXCL)) {
		fd = create_existing(r, dir, name, flags, &opath);
		if (fd < 0)
			return fd;
	} else {
		return fd;
	}
	err = fs_inode_add(r->srv, opath, &e);
	if (err) {
		close(fd);
		return err;
	}
	err = fs_handle_new(r->srv, fd, NULL, &o->fh);
	if (err) {
		fs_inode_forget(r->srv, e.nodeid, 1);
		return err;
	}
	memcpy(out, &e, sizeof(e));
	return (int)(sizeof(e) + sizeof(*o));
}

/* A handle of an open file (not a directory) named by fh, or NULL with *err. */
static struct fs_handle *file_handle(struct fs_req *r, uint64_t fh, int *err)
{
	struct fs_handle *h = fs_handle_get(r->srv, fh);

	*err = -EBADF;
	if (h && h->dir) {
		fs_handle_put(r->srv, h);
		*err = -EISDIR;
		h = NULL;
	}
	return h;
}

int fs_op_read(struct fs_req *r, struct fs_inode *unused)
{
	struct iovec iov[IOV_MAX];
	struct fuse_read_in in;
	struct fs_handle *h;
	size_t size, done = 0;
	int err;

	memcpy(&in, r->arg, sizeof(in));
	if (in.offset > (uint64_t)INT64_MAX)
		return -EINVAL;
	h = file_handle(r, in.fh, &err);
	if (!h)
		return err;
	err = 0;
	/* A READ larger than the buffers the guest gave reads what they hold. */
	size = in.size < r->reply_room ? in.size : r->reply_room;
	while (done < size) {
		unsigned int n = fs_iov_slice(r->reply, r->nreply,
					      sizeof(struct fuse_out_header) + done, size - done,
					      iov, IOV_MAX);
		ssize_t got = preadv(h->fd, iov, (int)n, (off_t)(in.offset + done));

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			err = -errno;
			break;
		}
		if (!got)
			break;
		done += (size_t)got;
	}
	fs_handle_put(r->srv, h);
	if (err && !done)
		return err;
	r->direct = done;
	return 0;
}

int fs_op_write(struct fs_req *r, struct fs_inode *unused)
{
	struct iovec iov[IOV_MAX];
	struct fuse_write_in in;
	struct fuse_write_out *out;
	struct fs_handle *h;
	size_t done = 0;
	int err = 0;

	memcpy(&in, r->arg, sizeof(in));
	/* The data must all be in the buffers the guest sent. */
	if (in.size > r->arglen - sizeof(in) || in.offset > (uint64_t)INT64_MAX)
		return -EINVAL;
	h = file_handle(r, in.fh, &err);
	if (!h)
		return err;
	err = 0;
	while (done < in.size) {
		unsigned int n = fs_iov_slice(r->req, r->nreq, r->data_off + done, in.size - done,
					      iov, IOV_MAX);
		ssize_t put = pwritev(h->fd, iov, (int)n, (off_t)(in.offset + done));

		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0) {
			err = put < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)put;
	}
	fs_handle_put(r->srv, h);
	if (err && !done)
		return err;
	out = fs_req_out(r, sizeof(*out));
	if (!out)
		return -EINVAL;
	out->size = (uint32_t)done;
	return sizeof(*out);
}

int fs_op_release(struct fs_req *r, struct fs_inode *unused)
{
	struct fuse_release_in in;

	memcpy(&in, r->arg, sizeof(in));
	return fs_handle_release(r->srv, in.fh);
}

int fs_op_flush(struct fs_req *r, struct fs_inode *unused)
{
	struct fuse_flush_in in;
	struct fs_handle *h;

	memcpy(&in, r->arg, sizeof(in));
	/* Nothing is buffered in nkvm: a flush only checks the handle. */
	h = fs_handle_get(r->srv, in.fh);
	if (!h)
		return -EBADF;
	fs_handle_put(r->srv, h);
	return 0;
}

int fs_op_fsync(struct fs_req *r, struct fs_inode *unused)
{
	struct fuse_fsync_in in;
	struct fs_handle *h;
	int err = 0, fd;

	memcpy(&in, r->arg, sizeof(in));
	h = fs_handle_get(r->srv, in.fh);
	if (!h)
		return -EBADF;
	fd = h->dir ? dirfd(h->dir) : h->fd;
	if (in.fsync_flags & FUSE_FSYNC_FDATASYNC ? fdatasync(fd) : fsync(fd))
		err = -errno;
	fs_handle_put(r->srv, h);
	return err;
}

int fs_op_fallocate(struct fs_req *r, struct fs_inode *unused)
{
	struct fuse_fallocate_in in;
	struct fs_handle *h;
	int err = 0;

	memcpy(&in, r->arg, sizeof(in));
	if (in.offset > (uint64_t)INT64_MAX || in.length > (uint64_t)INT64_MAX)
		return -EINVAL;
	h = file_handle(r, in.fh, &err);
	if (!h)
		return err;
	err = fallocate(h->fd, (int)in.mode, (off_t)in.offset, (off_t)in.length) ? -errno : 0;
	fs_handle_put(r->srv, h);
	return err;
}

int fs_op_lseek(struct fs_req *r, struct fs_inode *unused)
{
	struct fuse_lseek_out *out;
	struct fuse_lseek_in in;
	struct fs_handle *h;
	off_t at;
	int err;

	memcpy(&in, r->arg, sizeof(in));
	if (in.offset > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (in.whence != SEEK_SET && in.whence != SEEK_CUR && in.whence != SEEK_END &&
	    in.whence != SEEK_DATA && in.whence != SEEK_HOLE)
		return -EINVAL;
	h = file_handle(r, in.fh, &err);
	if (!h)
		return err;
	at = lseek(h->fd, (off_t)in.offset, (int)in.whence);
	err = at < 0 ? -errno : 0;
	fs_handle_put(r->srv, h);
	if (err)
		return err;
	out = fs_req_out(r, sizeof(*out));
	if (!out)
		return -EINVAL;
	out->offset = (uint64_t)at;
	return sizeof(*out);
}

int fs_op_copy_file_range(struct fs_req *r, struct fs_inode *unused)
{
	struct fuse_copy_file_range_in in;
	struct fuse_write_out *out;
	struct fs_handle *hi, *ho = NULL;
	loff_t off_in, off_out;
	ssize_t n = -1;
	int err;

	memcpy(&in, r->arg, sizeof(in));
	if (in.flags || in.off_in > (uint64_t)INT64_MAX || in.off_out > (uint64_t)INT64_MAX)
		return -EINVAL;
	hi = file_handle(r, in.fh_in, &err);
	if (hi)
		ho = file_handle(r, in.fh_out, &err);
	if (ho) {
		off_in = (loff_t)in.off_in;
		off_out = (loff_t)in.off_out;
		/* The reply's size is 32 bits: the guest copies the rest in another request. */
		n = copy_file_range(hi->fd, &off_in, ho->fd, &off_out,
				    in.len < (1u << 30) ? in.len : (1u << 30), 0);
		err = n < 0 ? -errno : 0;
	}
	fs_handle_put(r->srv, hi);
	fs_handle_put(r->srv, ho);
	if (err)
		return err;
	out = fs_req_out(r, sizeof(*out));
	if (!out)
		return -EINVAL;
	out->size = (uint32_t)n;
	return sizeof(*out);
}
