/* SPDX-License-Identifier: MIT */
/*
 * What the FUSE server's files share (not for other modules): the server's state, the inode and
 * handle tables (fs_inode.c), one request as the operations see it (fuse_server.c), and the
 * operations themselves (fs_ops_*.c).
 */
#ifndef NKVM_FS_INTERNAL_H
#define NKVM_FS_INTERNAL_H

#include <dirent.h>
#include <limits.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fs/fuse_server.h"

#define FS_DEFAULT_MAX_INODES FUSE_SERVER_MAX_INODES
#define FS_DEFAULT_MAX_HANDLES FUSE_SERVER_MAX_HANDLES
/* The largest READ/WRITE and READDIR the guest is offered: FUSE_MAX_PAGES pages of 4 KiB. */
#define FS_MAX_PAGES 256
#define FS_MAX_WRITE (FS_MAX_PAGES * 4096u)
/* Arguments other than WRITE's data: the largest is SETXATTR's name and 64 KiB value. */
#define FS_MAX_ARGS (64 * 1024 + 4096)

/*
 * One host object the guest holds: an O_PATH descriptor, never a path. A slot is free when
 * fd < 0. nodeid = gen << 32 | slot, so that a stale or made-up nodeid names nothing.
 */
struct fs_inode {
	int fd;
	mode_t type; /* S_IFMT bits, fixed for the object */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup; /* lookups the guest was told of, counted by nkvm */
	unsigned int refs; /* requests using fd right now */
	uint32_t gen;
	uint32_t hnext; /* next slot in the (dev, ino) hash chain, 0 ends it */
};

/* An open file or directory; fh = gen << 32 | slot. */
struct fs_held_dirent {
	ino_t ino;
	off_t off;
	unsigned char type;
	char name[NAME_MAX + 1];
};

struct fs_handle {
	int fd; /* -1: slot free */
	bool released; /* RELEASE seen: closed when the last user puts it */
	unsigned int refs;
	uint32_t gen;
	DIR *dir; /* directories: the stream READDIR continues */
	off_t dir_off; /* the offset the stream stands at */
	/*
	 * The entry the last READDIR read but had no room for: the next READDIR at dir_off starts
	 * with it. Holding it, rather than seeking the stream back to it, matters where the
	 * directory's cookies are positions (tmpfs before Linux 6.6): after the guest unlinked the
	 * entries it was given (rm -rf), a seek back would land past entries and skip them.
	 */
	struct fs_held_dirent *held;
	pthread_mutex_t lock; /* serialises READDIR on dir */
};

struct fuse_server {
	int proc_fd; /* /proc/self/fd: re-opens an O_PATH descriptor as virtiofsd does */
	bool readonly;
	bool as_root; /* euid 0: new files get the guest's uid/gid */
	int have_openat2; /* 1, or 0 after it answered ENOSYS */

	pthread_mutex_t ilock;
	struct fs_inode *inodes; /* [0] unused; [1] is the root (FUSE_ROOT_ID) */
	unsigned int max_inodes, nfree_inodes;
	uint32_t *free_inodes;
	uint32_t *hash;
	unsigned int hash_mask;

	pthread_mutex_t hlock;
	struct fs_handle *handles;
	unsigned int max_handles, nfree_handles;
	uint32_t *free_handles;
};

/* One request: its header and arguments (copied), and where its data and reply go. */
struct fs_req {
	struct fuse_server *srv;
	struct fuse_in_header in;
	const uint8_t *arg; /* the arguments after the header */
	size_t arglen;
	const struct iovec *req; /* WRITE's data is at data_off in these */
	unsigned int nreq;
	size_t data_off;
	const struct iovec *reply;
	unsigned int nreply;
	size_t reply_room; /* bytes the reply buffers hold after the fuse_out_header */
	uint8_t *out; /* the reply's arguments (the operation returns their length) */
	size_t out_cap;
	uint8_t *out_heap; /* out when fs_req_out grew it */
	size_t direct; /* bytes READ put straight into the reply buffers */
};

/* fuse_server.c */
void *fs_req_out(struct fs_req *r, size_t len);
int fs_arg_name(struct fs_req *r, size_t *pos, const char **name);
int fs_arg_string(struct fs_req *r, size_t *pos, const char **s);
/* The iovec slice [off, off + len) of iov into out (at most max entries); returns the count. */
unsigned int fs_iov_slice(const struct iovec *iov, unsigned int n, size_t off, size_t len,
			  struct iovec *out, unsigned int max);

/* fs_inode.c */
int fs_tables_init(struct fuse_server *srv, int root_fd, unsigned int max_inodes,
		   unsigned int max_handles);
void fs_tables_free(struct fuse_server *srv, bool keep_root);
struct fs_inode *fs_inode_get(struct fuse_server *srv, uint64_t nodeid);
void fs_inode_put(struct fuse_server *srv, struct fs_inode *ino);
uint64_t fs_inode_nodeid(struct fuse_server *srv, const struct fs_inode *ino);
int fs_inode_lookup(struct fuse_server *srv, struct fs_inode *parent, const char *name,
		    struct fuse_entry_out *e);
int fs_inode_add(struct fuse_server *srv, int fd, struct fuse_entry_out *e);
void fs_inode_forget(struct fuse_server *srv, uint64_t nodeid, uint64_t n);
int fs_openat_beneath(struct fuse_server *srv, int dirfd, const char *name, int flags, mode_t mode);
int fs_inode_reopen(struct fuse_server *srv, const struct fs_inode *ino, int flags);
int fs_stat_fd(int fd, struct stat *st);
void fs_attr_fill(struct fuse_attr *a, const struct stat *st);
int fs_handle_new(struct fuse_server *srv, int fd, DIR *dir, uint64_t *fh);
struct fs_handle *fs_handle_get(struct fuse_server *srv, uint64_t fh);
void fs_handle_put(struct fuse_server *srv, struct fs_handle *h);
int fs_handle_release(struct fuse_server *srv, uint64_t fh);

/* The operations: each returns the reply's argument bytes (in r->out) or a negative errno. */
typedef int fs_op_fn(struct fs_req *r, struct fs_inode *ino);
fs_op_fn fs_op_lookup, fs_op_getattr, fs_op_setattr, fs_op_readlink, fs_op_symlink, fs_op_mknod,
	fs_op_mkdir, fs_op_unlink, fs_op_rmdir, fs_op_rename, fs_op_rename2, fs_op_link,
	fs_op_statfs, fs_op_access;
fs_op_fn fs_op_open, fs_op_create, fs_op_read, fs_op_write, fs_op_release, fs_op_flush, fs_op_fsync,
	fs_op_fallocate, fs_op_lseek, fs_op_copy_file_range;
fs_op_fn fs_op_opendir, fs_op_readdir, fs_op_readdirplus, fs_op_releasedir, fs_op_fsyncdir;
fs_op_fn fs_op_setxattr, fs_op_getxattr, fs_op_listxattr, fs_op_removexattr;

/* After creating name in dir: give it the guest's ids (as root) and exactly mode. */
int fs_new_entry(struct fs_req *r, struct fs_inode *dir, const char *name, mode_t mode,
		 struct fuse_entry_out *e);
void fs_owner_fixup(struct fs_req *r, int fd, bool symlink, mode_t mode, const struct stat *dir);

#endif
