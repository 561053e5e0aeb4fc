// SPDX-License-Identifier: MIT
/*
 * The FUSE server's inode and handle tables: fixed-size arrays allocated once (the bounds the
 * guest cannot pass), free lists, and a (dev, ino) hash so that two names of one host object
 * are one guest inode. Lookup counts are nkvm's own: FORGET never drops more than was counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs/fs_internal.h"

/* Entries and attributes may change on the host behind the guest's back: cache them briefly. */
#define FS_ENTRY_TIMEOUT 1

int fs_stat_fd(int fd, struct stat *st)
{
	return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

void fs_attr_fill(struct fuse_attr *a, const struct stat *st)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->size = st->st_size;
	a->blocks = st->st_blocks;
	a->atime = st->st_atim.tv_sec;
	a->mtime = st->st_mtim.tv_sec;
	a->ctime = st->st_ctim.tv_sec;
	a->atimensec = st->st_atim.tv_nsec;
	a->mtimensec = st->st_mtim.tv_nsec;
	a->ctimensec = st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = st->st_rdev;
	a->blksize = st->st_blksize;
}

static unsigned int hash_of(const struct fuse_server *srv, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;

	return (unsigned int)(h >> 32) & srv->hash_mask;
}

int fs_tables_init(struct fuse_server *srv, int root_fd, unsigned int max_inodes,
		   unsigned int max_handles)
{
	struct stat st;
	unsigned int n;
	int err;

	srv->max_inodes = max_inodes ? max_inodes : FS_DEFAULT_MAX_INODES;
	srv->max_handles = max_handles ? max_handles : FS_DEFAULT_MAX_HANDLES;
	for (n = 1; n < srv->max_inodes; n <<= 1)
		;
	srv->hash_mask = n - 1;
	srv->inodes = calloc(srv->max_inodes + 1, sizeof(*srv->inodes));
	srv->free_inodes = calloc(srv->max_inodes, sizeof(*srv->free_inodes));
	srv->hash = calloc(n, sizeof(*srv->hash));
	srv->handles = calloc(srv->max_handles, sizeof(*srv->handles));
	srv->free_handles = calloc(srv->max_handles, sizeof(*srv->free_handles));
	err = fs_stat_fd(root_fd, &st);
	if (!err && (!srv->inodes || !srv->free_inodes || !srv->hash || !srv->handles ||
		     !srv->free_handles))
		err = -ENOMEM;
	if (err) {
		free(srv->inodes);
		free(srv->free_inodes);
		free(srv->hash);
		free(srv->handles);
		free(srv->free_handles);
		srv->inodes = NULL;
		srv->handles = NULL;
		return err;
	}
	for (unsigned int i = 0; i <= srv->max_inodes; i++)
		srv->inodes[i].fd = -1;
	/* Slot 1 is the root: FUSE_ROOT_ID with generation 0. Free slots pop from the end. */
	srv->nfree_inodes = 0;
	for (unsigned int i = srv->max_inodes; i >= 2; i--)
		srv->free_inodes[srv->nfree_inodes++] = i;
	srv->inodes[1] = (struct fs_inode){ .fd = root_fd,
					    .type = st.st_mode & S_IFMT,
					    .dev = st.st_dev,
					    .ino = st.st_ino,
					    .nlookup = 1 };
	srv->hash[hash_of(srv, st.st_dev, st.st_ino)] = 1;
	srv->nfree_handles = 0;
	for (unsigned int i = srv->max_handles; i-- > 0;) {
		srv->handles[i].fd = -1;
		pthread_mutex_init(&srv->handles[i].lock, NULL);
		srv->free_handles[srv->nfree_handles++] = i;
	}
	return 0;
}

static void inode_maybe_free(struct fuse_server *srv, struct fs_inode *ino);
static void handle_maybe_free(struct fuse_server *srv, struct fs_handle *h);

static void handle_close(struct fs_handle *h)
{
	if (h->dir)
		closedir(h->dir); /* closes fd too */
	else if (h->fd >= 0)
		close(h->fd);
	free(h->held);
	h->held = NULL;
	h->dir = NULL;
	h->fd = -1;
	h->released = false;
	h->gen++;
}

/* DESTROY (keep_root) and fuse_server_destroy: every handle and inode the guest held. */
void fs_tables_free(struct fuse_server *srv, bool keep_root)
{
	if (srv->handles) {
		pthread_mutex_lock(&srv->hlock);
		for (unsigned int i = 0; i < srv->max_handles; i++) {
			struct fs_handle *h = &srv->handles[i];

			/* One a request still uses is closed by its fs_handle_put. */
			if (h->fd >= 0 && !h->released) {
				h->released = true;
				handle_maybe_free(srv, h);
			}
		}
		pthread_mutex_unlock(&srv->hlock);
	}
	if (srv->inodes) {
		pthread_mutex_lock(&srv->ilock);
		for (unsigned int i = 2; i <= srv->max_inodes; i++) {
			srv->inodes[i].nlookup = 0;
			inode_maybe_free(srv, &srv->inodes[i]); /* one in use: at its last put */
		}
		pthread_mutex_unlock(&srv->ilock);
	}
	if (!keep_root) {
		for (unsigned int i = 0; srv->handles && i < srv->max_handles; i++)
			pthread_mutex_destroy(&srv->handles[i].lock);
		free(srv->inodes);
		free(srv->free_inodes);
		free(srv->hash);
		free(srv->handles);
		free(srv->free_handles);
	}
}

uint64_t fs_inode_nodeid(struct fuse_server *srv, const struct fs_inode *ino)
{
	return (uint64_t)ino->gen << 32 | (uint64_t)(ino - srv->inodes);
}

struct fs_inode *fs_inode_get(struct fuse_server *srv, uint64_t nodeid)
{
	uint32_t slot = (uint32_t)nodeid;
	struct fs_inode *ino = NULL;

	if (!slot || slot > srv->max_inodes)
		return NULL;
	pthread_mutex_lock(&srv->ilock);
	if (srv->inodes[slot].fd >= 0 && srv->inodes[slot].gen == nodeid >> 32 &&
	    (srv->inodes[slot].nlookup || slot == FUSE_ROOT_ID)) {
		ino = &srv->inodes[slot];
		ino->refs++;
	}
	pthread_mutex_unlock(&srv->ilock);
	return ino;
}

static void hash_unlink(struct fuse_server *srv, uint32_t slot)
{
	struct fs_inode *ino = &srv->inodes[slot];
	uint32_t *p = &srv->hash[hash_of(srv, ino->dev, ino->ino)];

	while (*p && *p != slot)
		p = &srv->inodes[*p].hnext;
	if (*p)
		*p = ino->hnext;
	ino->hnext = 0;
}

/* Called with ilock held: frees the slot once nobody uses it and the guest forgot it. */
static void inode_maybe_free(struct fuse_server *srv, struct fs_inode *ino)
{
	uint32_t slot = ino - srv->inodes;

	if (ino->refs || ino->nlookup || slot == FUSE_ROOT_ID || ino->fd < 0)
		return;
	hash_unlink(srv, slot);
	close(ino->fd);
	ino->fd = -1;
	ino->gen++;
	srv->free_inodes[srv->nfree_inodes++] = slot;
}

void fs_inode_put(struct fuse_server *srv, struct fs_inode *ino)
{
	if (!ino)
		return;
	pthread_mutex_lock(&srv->ilock);
	ino->refs--;
	inode_maybe_free(srv, ino);
	pthread_mutex_unlock(&srv->ilock);
}

/*
 * FUSE FORGET: drop n of the lookups nkvm counted, never more (a guest that over-forgets, or
 * names a nodeid it never had, changes nothing else). The root is never forgotten.
 */
void fs_inode_forget(struct fuse_server *srv, uint64_t nodeid, uint64_t n)
{
	uint32_t slot = (uint32_t)nodeid;
	struct fs_inode *ino;

	if (slot <= FUSE_ROOT_ID || slot > srv->max_inodes)
		return;
	pthread_mutex_lock(&srv->ilock);
	ino = &srv->inodes[slot];
	if (ino->fd >= 0 && ino->gen == nodeid >> 32) {
		ino->nlookup = n < ino->nlookup ? ino->nlookup - n : 0;
		inode_maybe_free(srv, ino);
	}
	pthread_mutex_unlock(&srv->ilock);
}

/*
 * Takes fd (O_PATH, closed on every path) into the table, or counts one more lookup of the
 * object it already holds; fills the entry the guest gets.
 */
int fs_inode_add(struct fuse_server *srv, int fd, struct fuse_entry_out *e)
{
	struct fs_inode *ino;
	struct stat st;
	uint32_t slot;
	int err;

	err = fs_stat_fd(fd, &st);
	if (err) {
		close(fd);
		return err;
	}
	pthread_mutex_lock(&srv->ilock);
	for (slot = srv->hash[hash_of(srv, st.st_dev, st.st_ino)]; slot;
	     slot = srv->inodes[slot].hnext)
		if (srv->inodes[slot].dev == st.st_dev && srv->inodes[slot].ino == st.st_ino)
			break;
	if (slot) {
		close(fd);
		ino = &srv->inodes[slot];
	} else if (!srv->nfree_inodes) {
		pthread_mutex_unlock(&srv->ilock);
		close(fd);
		return -ENFILE;
	} else {
		uint32_t *head = &srv->hash[hash_of(srv, st.st_dev, st.st_ino)];

		slot = srv->free_inodes[--srv->nfree_inodes];
		ino = &srv->inodes[slot];
		ino->fd = fd;
		ino->type = st.st_mode & S_IFMT;
		ino->dev = st.st_dev;
		ino->ino = st.st_ino;
		ino->nlookup = 0;
		ino->refs = 0;
		ino->hnext = *head;
		*head = slot;
	}
	if (slot != FUSE_ROOT_ID)
		ino->nlookup++;
	memset(e, 0, sizeof(*e));
	e->nodeid = fs_inode_nodeid(srv, ino);
	pthread_mutex_unlock(&srv->ilock);
	e->entry_valid = FS_ENTRY_TIMEOUT;
	e->attr_valid = FS_ENTRY_TIMEOUT;
	fs_attr_fill(&e->attr, &st);
	return 0;
}

/*
 * Issue 18 item 3: a name is resolved beneath its directory's descriptor by openat2
 * (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS). Names reaching here are one component and never
 * "." or ".." (fs_arg_name), so where openat2 is missing O_NOFOLLOW alone keeps a symlink from
 * being followed.
 */
int fs_openat_beneath(struct fuse_server *srv, int dirfd, const char *name, int flags, mode_t mode)
{
	int fd;

	flags |= O_CLOEXEC | O_NOFOLLOW;
	if (__atomic_load_n(&srv->have_openat2, __ATOMIC_RELAXED)) {
		struct open_how how = {
			.flags = (uint64_t)flags,
			.mode = flags & (O_CREAT | __O_TMPFILE) ? mode : 0,
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
		};

		fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
		if (fd >= 0)
			return fd;
		if (errno != ENOSYS)
			return -errno;
		__atomic_store_n(&srv->have_openat2, 0, __ATOMIC_RELAXED);
	}
	fd = openat(dirfd, name, flags, mode);
	return fd < 0 ? -errno : fd;
}

int fs_inode_lookup(struct fuse_server *srv, struct fs_inode *parent, const char *name,
		    struct fuse_entry_out *e)
{
	int fd;

	if (parent->type != S_IFDIR)
		return -ENOTDIR;
	fd = fs_openat_beneath(srv, parent->fd, name, O_PATH, 0);
	if (fd < 0)
		return fd;
	return fs_inode_add(srv, fd, e);
}

/*
 * Opens the object behind an O_PATH descriptor for I/O through /proc/self/fd (as virtiofsd
 * does). Only regular files and directories: a device node, fifo or socket is never opened for
 * the guest (CVE-2023-2861), nor is a symlink followed.
 */
int fs_inode_reopen(struct fuse_server *srv, const struct fs_inode *ino, int flags)
{
	char name[16];
	int fd;

	if (ino->type == S_IFLNK)
		return -ELOOP;
	if (ino->type != S_IFREG && ino->type != S_IFDIR)
		return -EACCES;
	snprintf(name, sizeof(name), "%d", ino->fd);
	fd = openat(srv->proc_fd, name, (flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL)) | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int fs_handle_new(struct fuse_server *srv, int fd, DIR *dir, uint64_t *fh)
{
	struct fs_handle *h;
	uint32_t slot;

	pthread_mutex_lock(&srv->hlock);
	if (!srv->nfree_handles) {
		pthread_mutex_unlock(&srv->hlock);
		if (dir)
			closedir(dir);
		else
			close(fd);
		return -EMFILE;
	}
	slot = srv->free_handles[--srv->nfree_handles];
	h = &srv->handles[slot];
	h->fd = fd;
	h->dir = dir;
	h->dir_off = 0;
	h->refs = 0;
	h->released = false;
	*fh = (uint64_t)h->gen << 32 | slot;
	pthread_mutex_unlock(&srv->hlock);
	return 0;
}

struct fs_handle *fs_handle_get(struct fuse_server *srv, uint64_t fh)
{
	uint32_t slot = (uint32_t)fh;
	struct fs_handle *h = NULL;

	if (slot >= srv->max_handles)
		return NULL;
	pthread_mutex_lock(&srv->hlock);
	if (srv->handles[slot].fd >= 0 && !srv->handles[slot].released &&
	    srv->handles[slot].gen == fh >> 32) {
		h = &srv->handles[slot];
		h->refs++;
	}
	pthread_mutex_unlock(&srv->hlock);
	return h;
}

/* Called with hlock held. */
static void handle_maybe_free(struct fuse_server *srv, struct fs_handle *h)
{
	if (h->refs || !h->released)
		return;
	handle_close(h);
	srv->free_handles[srv->nfree_handles++] = h - srv->handles;
}

void fs_handle_put(struct fuse_server *srv, struct fs_handle *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&srv->hlock);
	h->refs--;
	handle_maybe_free(srv, h);
	pthread_mutex_unlock(&srv->hlock);
}

/* RELEASE/RELEASEDIR: a request still using the handle keeps its descriptor until it is done. */
int fs_handle_release(struct fuse_server *srv, uint64_t fh)
{
	uint32_t slot = (uint32_t)fh;
	struct fs_handle *h;
	int err = -EBADF;

	if (slot >= srv->max_handles)
		return -EBADF;
	pthread_mutex_lock(&srv->hlock);
	h = &srv->handles[slot];
	if (h->fd >= 0 && !h->released && h->gen == fh >> 32) {
		h->released = true;
		handle_maybe_free(srv, h);
		err = 0;
	}
	pthread_mutex_unlock(&srv->hlock);
	return err;
}
