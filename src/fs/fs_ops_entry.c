// SPDX-License-Identifier: MIT
/*
 * FUSE operations on names and attributes: LOOKUP, GETATTR, SETATTR, READLINK, the creating
 * ones (SYMLINK, MKNOD, MKDIR, LINK), UNLINK, RMDIR, RENAME(2), STATFS, ACCESS. Every one works
 * on an inode's O_PATH descriptor through the *at() calls, never on a host path string.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "fs/fs_internal.h"
#include "sandbox/sandbox.h"

static const char *fd_name(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "%d", fd);
	return buf;
}

/*
 * Issue 18 item 4: running as root, a new file belongs to the guest's uid and gid (the
 * directory's gid when it is set-group-ID, as the host kernel gave it), and its mode is exactly
 * the guest's (the guest applied its umask; nkvm's own must not apply again). As a user, files
 * are that user's and only the mode is made exact.
 */
void fs_owner_fixup(struct fs_req *r, int fd, bool symlink, mode_t mode, const struct stat *dir)
{
	struct stat st;
	char n[16];

	if (r->srv->as_root)
		(void)!fchownat(fd, "", r->in.uid, dir->st_mode & S_ISGID ? (gid_t)-1 : r->in.gid,
				AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	if (symlink || fs_stat_fd(fd, &st))
		return;
	if (S_ISDIR(st.st_mode) && (dir->st_mode & S_ISGID))
		mode |= S_ISGID;
	if ((st.st_mode & 07777) != (mode & 07777))
		(void)!fchmodat(r->srv->proc_fd, fd_name(n, sizeof(n), fd), mode & 07777, 0);
}

int fs_new_entry(struct fs_req *r, struct fs_inode *dir, const char *name, mode_t mode,
		 struct fuse_entry_out *e)
{
	struct stat dst;
	int fd, err;

	fd = fs_openat_beneath(r->srv, dir->fd, name, O_PATH, 0);
	if (fd < 0)
		return fd;
	err = fs_stat_fd(dir->fd, &dst);
	if (!err)
		fs_owner_fixup(r, fd, S_ISLNK(mode), mode, &dst);
	return fs_inode_add(r->srv, fd, e);
}

static int reply_entry(struct fs_req *r, const struct fuse_entry_out *e)
{
	void *out = fs_req_out(r, sizeof(*e));

	if (!out)
		return -EINVAL;
	memcpy(out, e, sizeof(*e));
	return sizeof(*e);
}

/* Creating calls: the entry goes to the guest, or the lookup it would have cost is undone. */
static int entry_or_forget(struct fs_req *r, const struct fuse_entry_out *e)
{
	int ret = reply_entry(r, e);

	if (ret < 0)
		fs_inode_forget(r->srv, e->nodeid, 1);
	return ret;
}

int fs_op_lookup(struct fs_req *r, struct fs_inode *dir)
{
	struct fuse_entry_out e;
	const char *name;
	size_t pos = 0;
	int err;

	err = fs_arg_name(r, &pos, &name);
#ifdef NKVM_TEST_HOOKS
	/*
	 * The test build: a LOOKUP of "open-outside" first opens "/", outside every Landlock rule,
	 * and fails with what open said (EACCES once the thread is confined; without Landlock the
	 * open works and the lookup goes on: ENOENT).
	 */
	if (!err && !strcmp(name, "open-outside") &&
	    sandbox_test_hook("fs-queue", "open-outside")) {
		int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			return -errno;
		close(fd);
	}
#endif
	if (!err)
		err = fs_inode_lookup(r->srv, dir, name, &e);
	return err ? err : entry_or_forget(r, &e);
}

static int reply_attr(struct fs_req *r, int fd)
{
	struct fuse_attr_out *out;
	struct stat st;
	int err = fs_stat_fd(fd, &st);

	if (err)
		return err;
	out = fs_req_out(r, sizeof(*out));
	if (!out)
		return -EINVAL;
	out->attr_valid = 1;
	fs_attr_fill(&out->attr, &st);
	return sizeof(*out);
}

int fs_op_getattr(struct fs_req *r, struct fs_inode *ino)
{
	return reply_attr(r, ino->fd);
}

static int setattr_size(struct fs_req *r, struct fs_inode *ino, const struct fuse_setattr_in *in)
{
	struct fs_handle *h = NULL;
	int fd, err = 0;

	if (in->size > (uint64_t)INT64_MAX)
		return -EFBIG;
	if (in->valid & FATTR_FH)
		h = fs_handle_get(r->srv, in->fh);
	if (h && !h->dir) {
		fd = h->fd;
	} else {
		fs_handle_put(r->srv, h);
		h = NULL;
		if (ino->type == S_IFDIR)
			return -EISDIR;
		fd = fs_inode_reopen(r->srv, ino, O_WRONLY);
		if (fd < 0)
			return fd;
	}
	if (ftruncate(fd, (off_t)in->size))
		err = -errno;
	if (h)
		fs_handle_put(r->srv, h);
	else
		close(fd);
	return err;
}

static void setattr_time(struct timespec *ts, uint32_t valid, uint32_t set, uint32_t now,
			 uint64_t sec, uint32_t nsec)
{
	if (valid & now)
		ts->tv_nsec = UTIME_NOW;
	else if (valid & set)
		*ts = (struct timespec){ (time_t)sec, nsec < 1000000000 ? nsec : 999999999 };
	else
		ts->tv_nsec = UTIME_OMIT;
}

int fs_op_setattr(struct fs_req *r, struct fs_inode *ino)
{
	struct fuse_setattr_in in;
	char n[16];
	int err;

	memcpy(&in, r->arg, sizeof(in));
	if (in.valid & FATTR_MODE) {
		/* chmod through /proc would follow a symlink's target: Linux has no symlink modes. */
		if (ino->type == S_IFLNK)
			return -EOPNOTSUPP;
		if (fchmodat(r->srv->proc_fd, fd_name(n, sizeof(n), ino->fd), in.mode & 07777, 0))
			return -errno;
	}
	if (in.valid & (FATTR_UID | FATTR_GID)) {
		uid_t uid = in.valid & FATTR_UID ? in.uid : (uid_t)-1;
		gid_t gid = in.valid & FATTR_GID ? in.gid : (gid_t)-1;

		if (fchownat(ino->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
			return -errno;
	}
	if (in.valid & FATTR_SIZE) {
		err = setattr_size(r, ino, &in);
		if (err)
			return err;
	}
	if (in.valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
		struct timespec ts[2];

		setattr_time(&ts[0], in.valid, FATTR_ATIME, FATTR_ATIME_NOW, in.atime,
			     in.atimensec);
		setattr_time(&ts[1], in.valid, FATTR_MTIME, FATTR_MTIME_NOW, in.mtime,
			     in.mtimensec);
		if (utimensat(ino->fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
			return -errno;
	}
	return reply_attr(r, ino->fd);
}

int fs_op_readlink(struct fs_req *r, struct fs_inode *ino)
{
	char buf[PATH_MAX];
	ssize_t n;
	void *out;

	if (ino->type != S_IFLNK)
		return -EINVAL;
	n = readlinkat(ino->fd, "", buf, sizeof(buf));
	if (n < 0)
		return -errno;
	out = fs_req_out(r, (size_t)n);
	if (!out)
		return -ERANGE;
	memcpy(out, buf, (size_t)n);
	return (int)n;
}

int fs_op_symlink(struct fs_req *r, struct fs_inode *dir)
{
	struct fuse_entry_out e;
	const char *name, *target;
	size_t pos = 0;
	int err;

	err = fs_arg_name(r, &pos, &name);
	if (!err)
		err = fs_arg_string(r, &pos, &target);
	if (err)
		return err;
	if (strlen(target) >= PATH_MAX)
		return -ENAMETOOLONG;
	if (dir->type != S_IFDIR)
		return -ENOTDIR;
	/* The target is only stored: nkvm never follows a symlink on the guest's behalf. */
	if (symlinkat(target, dir->fd, name))
		return -errno;
	err = fs_new_entry(r, dir, name, S_IFLNK | 0777, &e);
	return err ? err : entry_or_forget(r, &e);
}

int fs_op_mknod(struct fs_req *r, struct fs_inode *dir)
{
	struct fuse_mknod_in in;
	struct fuse_entry_out e;
	const char *name;
	size_t pos = sizeof(in);
	int err;

	memcpy(&in, r->arg, sizeof(in));
	err = fs_arg_name(r, &pos, &name);
	if (err)
		return err;
	/* No device node is made for the guest: it would reach the host's devices. */
	switch (in.mode & S_IFMT) {
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
		break;
	default:
		return -EPERM;
	}
	if (dir->type != S_IFDIR)
		return -ENOTDIR;
	if (mknodat(dir->fd, name, in.mode & (S_IFMT | 07777), 0))
		return -errno;
	err = fs_new_entry(r, dir, name, in.mode, &e);
	return err ? err : entry_or_forget(r, &e);
}

int fs_op_mkdir(struct fs_req *r, struct fs_inode *dir)
{
	struct fuse_mkdir_in in;
	struct fuse_entry_out e;
	const char *name;
	size_t pos = sizeof(in);
	int err;

	memcpy(&in, r->arg, sizeof(in));
	err = fs_arg_name(r, &pos, &name);
	if (err)
		return err;
	if (dir->type != S_IFDIR)
		return -ENOTDIR;
	if (mkdirat(dir->fd, name, in.mode & 07777))
		return -errno;
	err = fs_new_entry(r, dir, name, S_IFDIR | (in.mode & 07777), &e);
	return err ? err : entry_or_forget(r, &e);
}

static int remove_name(struct fs_req *r, struct fs_inode *dir, int flags)
{
	const char *name;
	size_t pos = 0;
	int err = fs_arg_name(r, &pos, &name);

	if (err)
		return err;
	if (dir->type != S_IFDIR)
		return -ENOTDIR;
	return unlinkat(dir->fd, name, flags) ? -errno : 0;
}

int fs_op_unlink(struct fs_req *r, struct fs_inode *dir)
{
	return remove_name(r, dir, 0);
}

int fs_op_rmdir(struct fs_req *r, struct fs_inode *dir)
{
	return remove_name(r, dir, AT_REMOVEDIR);
}

static int do_rename(struct fs_req *r, struct fs_inode *dir, uint64_t newdir, size_t pos,
		     unsigned int flags)
{
	const char *oldname, *newname;
	struct fs_inode *nd;
	int err;

	/* RENAME_WHITEOUT would make a character device: refused like MKNOD's. */
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	err = fs_arg_name(r, &pos, &oldname);
	if (!err)
		err = fs_arg_name(r, &pos, &newname);
	if (err)
		return err;
	nd = fs_inode_get(r->srv, newdir);
	if (!nd)
		return -ENOENT;
	if (dir->type != S_IFDIR || nd->type != S_IFDIR)
		err = -ENOTDIR;
	else if (renameat2(dir->fd, oldname, nd->fd, newname, flags))
		err = -errno;
	fs_inode_put(r->srv, nd);
	return err;
}

int fs_op_rename(struct fs_req *r, struct fs_inode *dir)
{
	struct fuse_rename_in in;

	memcpy(&in, r->arg, sizeof(in));
	return do_rename(r, dir, in.newdir, sizeof(in), 0);
}

int fs_op_rename2(struct fs_req *r, struct fs_inode *dir)
{
	struct fuse_rename2_in in;

	memcpy(&in, r->arg, sizeof(in));
	return do_rename(r, dir, in.newdir, sizeof(in), in.flags);
}

int fs_op_link(struct fs_req *r, struct fs_inode *dir)
{
	struct fuse_link_in in;
	struct fuse_entry_out e;
	struct fs_inode *old;
	const char *name;
	size_t pos = sizeof(in);
	char n[16];
	int err;

	memcpy(&in, r->arg, sizeof(in));
	err = fs_arg_name(r, &pos, &name);
	if (err)
		return err;
	if (dir->type != S_IFDIR)
		return -ENOTDIR;
	old = fs_inode_get(r->srv, in.oldnodeid);
	if (!old)
		return -ENOENT;
	if (old->type == S_IFDIR) {
		err = -EPERM;
	} else if (!linkat(old->fd, "", dir->fd, name, AT_EMPTY_PATH)) {
		err = 0;
	} else if ((errno == ENOENT || errno == EPERM) && old->type != S_IFLNK) {
		/* Without CAP_DAC_READ_SEARCH AT_EMPTY_PATH fails: link the /proc name. */
		err = linkat(r->srv->proc_fd, fd_name(n, sizeof(n), old->fd), dir->fd, name,
			     AT_SYMLINK_FOLLOW) ?
			      -errno :
			      0;
	} else {
		err = -errno;
	}
	fs_inode_put(r->srv, old);
	if (!err)
		err = fs_inode_lookup(r->srv, dir, name, &e);
	return err ? err : entry_or_forget(r, &e);
}

int fs_op_statfs(struct fs_req *r, struct fs_inode *ino)
{
	struct fuse_statfs_out *out;
	struct statfs s;

	if (fstatfs(ino->fd, &s))
		return -errno;
	out = fs_req_out(r, sizeof(*out));
	if (!out)
		return -EINVAL;
	out->st = (struct fuse_kstatfs){
		.blocks = s.f_blocks,
		.bfree = s.f_bfree,
		.bavail = s.f_bavail,
		.files = s.f_files,
		.ffree = s.f_ffree,
		.bsize = (uint32_t)s.f_bsize,
		.namelen = (uint32_t)s.f_namelen,
		.frsize = (uint32_t)s.f_frsize,
	};
	return sizeof(*out);
}

int fs_op_access(struct fs_req *r, struct fs_inode *ino)
{
	struct fuse_access_in in;

	memcpy(&in, r->arg, sizeof(in));
	if ((in.mask & W_OK) && r->srv->readonly)
		return -EROFS;
	return faccessat(ino->fd, "", in.mask & (R_OK | W_OK | X_OK),
			 AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) ?
		       -errno :
		       0;
}
