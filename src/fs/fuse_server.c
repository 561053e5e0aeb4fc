// SPDX-License-Identifier: MIT
/*
 * The FUSE server's door: one request in, one reply out (virtio-fs has no /dev/fuse: every
 * request arrives with the buffers for its answer). Checks the header's length against the
 * buffers, copies the arguments (never WRITE's data), dispatches on the opcode, and writes the
 * fuse_out_header and the operation's reply back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs_internal.h"
#include "fs/fuse_server.h"

/* The oldest protocol minor whose structures this server writes as they are (Linux 6.1: 37). */
#define FS_MIN_MINOR 31

enum {
	OP_CHANGES = 1 << 0, /* refused with EROFS on a read-only share */
	OP_NOREPLY = 1 << 1, /* FORGET, BATCH_FORGET, INTERRUPT: the guest expects no answer */
	OP_NOINODE = 1 << 2, /* does not need the header's nodeid */
};

struct fs_op {
	fs_op_fn *fn;
	size_t min_arg; /* the fixed argument struct's size */
	unsigned int flags;
};

static int op_init(struct fs_req *r, struct fs_inode *ino);
static int op_forget(struct fs_req *r, struct fs_inode *ino);
static int op_batch_forget(struct fs_req *r, struct fs_inode *ino);
static int op_destroy(struct fs_req *r, struct fs_inode *ino);
static int op_nothing(struct fs_req *r, struct fs_inode *ino);

static const struct fs_op ops[] = {
	[FUSE_LOOKUP] = { fs_op_lookup, 0, 0 },
	[FUSE_FORGET] = { op_forget, sizeof(struct fuse_forget_in), OP_NOREPLY | OP_NOINODE },
	[FUSE_GETATTR] = { fs_op_getattr, sizeof(struct fuse_getattr_in), 0 },
	[FUSE_SETATTR] = { fs_op_setattr, sizeof(struct fuse_setattr_in), OP_CHANGES },
	[FUSE_READLINK] = { fs_op_readlink, 0, 0 },
	[FUSE_SYMLINK] = { fs_op_symlink, 0, OP_CHANGES },
	[FUSE_MKNOD] = { fs_op_mknod, sizeof(struct fuse_mknod_in), OP_CHANGES },
	[FUSE_MKDIR] = { fs_op_mkdir, sizeof(struct fuse_mkdir_in), OP_CHANGES },
	[FUSE_UNLINK] = { fs_op_unlink, 0, OP_CHANGES },
	[FUSE_RMDIR] = { fs_op_rmdir, 0, OP_CHANGES },
	[FUSE_RENAME] = { fs_op_rename, sizeof(struct fuse_rename_in), OP_CHANGES },
	[FUSE_LINK] = { fs_op_link, sizeof(struct fuse_link_in), OP_CHANGES },
	[FUSE_OPEN] = { fs_op_open, sizeof(struct fuse_open_in), 0 },
	[FUSE_READ] = { fs_op_read, sizeof(struct fuse_read_in), OP_NOINODE },
	[FUSE_WRITE] = { fs_op_write, sizeof(struct fuse_write_in), OP_CHANGES | OP_NOINODE },
	[FUSE_STATFS] = { fs_op_statfs, 0, 0 },
	[FUSE_RELEASE] = { fs_op_release, sizeof(struct fuse_release_in), OP_NOINODE },
	[FUSE_FSYNC] = { fs_op_fsync, sizeof(struct fuse_fsync_in), OP_NOINODE },
	/* Without FUSE_SETXATTR_EXT the guest sends the 8-byte compat form (fuse.h 7.33). */
	[FUSE_SETXATTR] = { fs_op_setxattr, FUSE_COMPAT_SETXATTR_IN_SIZE, OP_CHANGES },
	[FUSE_GETXATTR] = { fs_op_getxattr, sizeof(struct fuse_getxattr_in), 0 },
	[FUSE_LISTXATTR] = { fs_op_listxattr, sizeof(struct fuse_getxattr_in), 0 },
	[FUSE_REMOVEXATTR] = { fs_op_removexattr, 0, OP_CHANGES },
	[FUSE_FLUSH] = { fs_op_flush, sizeof(struct fuse_flush_in), OP_NOINODE },
	[FUSE_INIT] = { op_init, 8, OP_NOINODE }, /* major, minor: all a 7.x kernel must send */
	[FUSE_OPENDIR] = { fs_op_opendir, sizeof(struct fuse_open_in), 0 },
	[FUSE_READDIR] = { fs_op_readdir, sizeof(struct fuse_read_in), 0 },
	[FUSE_RELEASEDIR] = { fs_op_releasedir, sizeof(struct fuse_release_in), OP_NOINODE },
	[FUSE_FSYNCDIR] = { fs_op_fsyncdir, sizeof(struct fuse_fsync_in), OP_NOINODE },
	[FUSE_ACCESS] = { fs_op_access, sizeof(struct fuse_access_in), 0 },
	[FUSE_CREATE] = { fs_op_create, sizeof(struct fuse_create_in), OP_CHANGES },
	[FUSE_INTERRUPT] = { op_nothing, sizeof(struct fuse_interrupt_in),
			     OP_NOREPLY | OP_NOINODE },
	[FUSE_DESTROY] = { op_destroy, 0, OP_NOINODE },
	[FUSE_BATCH_FORGET] = { op_batch_forget, sizeof(struct fuse_batch_forget_in),
				OP_NOREPLY | OP_NOINODE },
	[FUSE_FALLOCATE] = { fs_op_fallocate, sizeof(struct fuse_fallocate_in),
			     OP_CHANGES | OP_NOINODE },
	[FUSE_READDIRPLUS] = { fs_op_readdirplus, sizeof(struct fuse_read_in), 0 },
	[FUSE_RENAME2] = { fs_op_rename2, sizeof(struct fuse_rename2_in), OP_CHANGES },
	[FUSE_LSEEK] = { fs_op_lseek, sizeof(struct fuse_lseek_in), OP_NOINODE },
	[FUSE_COPY_FILE_RANGE] = { fs_op_copy_file_range, sizeof(struct fuse_copy_file_range_in),
				   OP_CHANGES | OP_NOINODE },
};

int fuse_server_create(struct fuse_server **out, const struct fuse_server_config *cfg, char *err,
		       size_t errlen)
{
	struct fuse_server *srv;
	int fd, ret;

	*out = NULL;
	fd = open(cfg->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", cfg->root,
			 errno == ENOTDIR ? "not a directory" : strerror(errno));
		return ret;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		close(fd);
		snprintf(err, errlen, "%s: %s", cfg->root, strerror(ENOMEM));
		return -ENOMEM;
	}
	pthread_mutex_init(&srv->ilock, NULL);
	pthread_mutex_init(&srv->hlock, NULL);
	srv->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (srv->proc_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: /proc/self/fd: %s (the share needs /proc)", cfg->root,
			 strerror(errno));
		close(fd);
		pthread_mutex_destroy(&srv->ilock);
		pthread_mutex_destroy(&srv->hlock);
		free(srv);
		return ret;
	}
	srv->readonly = cfg->readonly;
	srv->as_root = geteuid() == 0;
	srv->have_openat2 = 1;
	ret = fs_tables_init(srv, fd, cfg->max_inodes, cfg->max_handles);
	if (ret) {
		snprintf(err, errlen, "%s: %s", cfg->root, strerror(-ret));
		close(fd); /* the tables are not made: the root is not in them */
		fuse_server_destroy(srv);
		return ret;
	}
	*out = srv;
	return 0;
}

void fuse_server_destroy(struct fuse_server *srv)
{
	if (!srv)
		return;
	if (srv->inodes && srv->inodes[FUSE_ROOT_ID].fd >= 0)
		close(srv->inodes[FUSE_ROOT_ID].fd);
	fs_tables_free(srv, false);
	if (srv->proc_fd >= 0)
		close(srv->proc_fd);
	pthread_mutex_destroy(&srv->ilock);
	pthread_mutex_destroy(&srv->hlock);
	free(srv);
}

unsigned int fs_iov_slice(const struct iovec *iov, unsigned int n, size_t off, size_t len,
			  struct iovec *out, unsigned int max)
{
	unsigned int k = 0;

	for (unsigned int i = 0; i < n && len && k < max; i++) {
		size_t take;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - off;
		if (take > len)
			take = len;
		out[k++] = (struct iovec){ (char *)iov[i].iov_base + off, take };
		len -= take;
		off = 0;
	}
	return k;
}

static size_t iov_total(const struct iovec *iov, unsigned int n)
{
	size_t t = 0;

	for (unsigned int i = 0; i < n; i++) {
		if (iov[i].iov_len > SIZE_MAX - t)
			return SIZE_MAX;
		t += iov[i].iov_len;
	}
	return t;
}

static void iov_copy_from(void *dst, const struct iovec *iov, unsigned int n, size_t off,
			  size_t len)
{
	for (unsigned int i = 0; i < n && len; i++) {
		size_t take;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - off < len ? iov[i].iov_len - off : len;
		memcpy(dst, (char *)iov[i].iov_base + off, take);
		dst = (char *)dst + take;
		len -= take;
		off = 0;
	}
}

static void iov_copy_to(const struct iovec *iov, unsigned int n, size_t off, const void *src,
			size_t len)
{
	for (unsigned int i = 0; i < n && len; i++) {
		size_t take;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - off < len ? iov[i].iov_len - off : len;
		memcpy((char *)iov[i].iov_base + off, src, take);
		src = (const char *)src + take;
		len -= take;
		off = 0;
	}
}

/* Room for len bytes of reply arguments; NULL when the guest's buffers cannot hold them. */
void *fs_req_out(struct fs_req *r, size_t len)
{
	if (len > r->reply_room)
		return NULL;
	if (len > r->out_cap) {
		free(r->out_heap);
		r->out_heap = malloc(len);
		if (!r->out_heap)
			return NULL;
		r->out = r->out_heap;
		r->out_cap = len;
	}
	memset(r->out, 0, len);
	return r->out;
}

/* A NUL-terminated string at *pos in the arguments; *pos moves past it. */
int fs_arg_string(struct fs_req *r, size_t *pos, const char **s)
{
	const uint8_t *end;

	if (*pos >= r->arglen)
		return -EINVAL;
	end = memchr(r->arg + *pos, '\0', r->arglen - *pos);
	if (!end)
		return -EINVAL;
	*s = (const char *)r->arg + *pos;
	*pos = end - r->arg + 1;
	return 0;
}

/*
 * A name in a directory. Issue 18 item 3: one containing '/', or "." or "..", is refused before
 * any lookup (a stock kernel never sends them; a modified one may).
 */
int fs_arg_name(struct fs_req *r, size_t *pos, const char **name)
{
	int err = fs_arg_string(r, pos, name);

	if (err)
		return err;
	if (!**name || strchr(*name, '/') || !strcmp(*name, ".") || !strcmp(*name, ".."))
		return -EINVAL;
	if (strlen(*name) > NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * FUSE INIT (fuse.h "Protocol compatibility"): answer with major 7 and the lower of the two
 * minors; offer only the flags this server implements, and only those the guest offered.
 */
static int op_init(struct fs_req *r, struct fs_inode *ino)
{
	const uint32_t want = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ATOMIC_O_TRUNC |
			      FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS |
			      FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS | FUSE_ASYNC_DIO;
	struct fuse_init_in in = { 0 };
	struct fuse_init_out *out;
	size_t len = sizeof(*out);

	memcpy(&in, r->arg, r->arglen < sizeof(in) ? r->arglen : sizeof(in));
	if (in.major < FUSE_KERNEL_VERSION)
		return -EPROTO;
	if (in.major > FUSE_KERNEL_VERSION) {
		/* The kernel answers a newer major with an INIT of ours: tell it ours. */
		out = fs_req_out(r, FUSE_COMPAT_INIT_OUT_SIZE);
		if (!out)
			return -EINVAL;
		out->major = FUSE_KERNEL_VERSION;
		out->minor = FUSE_KERNEL_MINOR_VERSION;
		return FUSE_COMPAT_INIT_OUT_SIZE;
	}
	if (in.minor < FS_MIN_MINOR)
		return -EPROTO;
	out = fs_req_out(r, len);
	if (!out)
		return -EINVAL;
	out->major = FUSE_KERNEL_VERSION;
	out->minor = in.minor < FUSE_KERNEL_MINOR_VERSION ? in.minor : FUSE_KERNEL_MINOR_VERSION;
	out->max_readahead = in.max_readahead < FS_MAX_WRITE ? in.max_readahead : FS_MAX_WRITE;
	out->flags = in.flags & want;
	out->max_background = 64;
	out->congestion_threshold = 48;
	out->max_write = FS_MAX_WRITE;
	out->time_gran = 1;
	out->max_pages = FS_MAX_PAGES;
	return (int)len;
}

static int op_forget(struct fs_req *r, struct fs_inode *ino)
{
	const struct fuse_forget_in *in = (const void *)r->arg;

	fs_inode_forget(r->srv, r->in.nodeid, in->nlookup);
	return 0;
}

static int op_batch_forget(struct fs_req *r, struct fs_inode *ino)
{
	struct fuse_batch_forget_in in;
	size_t have = (r->arglen - sizeof(in)) / sizeof(struct fuse_forget_one);

	memcpy(&in, r->arg, sizeof(in));
	/* Only the entries the request really holds, whatever count says. */
	for (size_t i = 0; i < in.count && i < have; i++) {
		struct fuse_forget_one one;

		memcpy(&one, r->arg + sizeof(in) + i * sizeof(one), sizeof(one));
		fs_inode_forget(r->srv, one.nodeid, one.nlookup);
	}
	return 0;
}

static int op_destroy(struct fs_req *r, struct fs_inode *ino)
{
	fs_tables_free(r->srv, true);
	return 0;
}

static int op_nothing(struct fs_req *r, struct fs_inode *ino)
{
	return 0;
}

static size_t reply_header(struct fs_req *r, int err, size_t len)
{
	struct fuse_out_header h = { .len = (uint32_t)len, .error = err, .unique = r->in.unique };

	iov_copy_to(r->reply, r->nreply, 0, &h, sizeof(h));
	return len;
}

size_t fuse_server_handle(struct fuse_server *srv, const struct iovec *req, unsigned int nreq,
			  const struct iovec *reply, unsigned int nreply)
{
	uint8_t small[256] __attribute__((aligned(8)));
	struct fs_req r = { .srv = srv,
			    .req = req,
			    .nreq = nreq,
			    .reply = reply,
			    .nreply = nreply,
			    .out = small,
			    .out_cap = sizeof(small) };
	size_t total = iov_total(req, nreq), reply_cap = iov_total(reply, nreply), copy, len;
	const struct fs_op *op = NULL;
	struct fs_inode *ino = NULL;
	uint8_t *args = NULL;
	int ret;

	if (total < sizeof(r.in)) {
		if (reply_cap < sizeof(struct fuse_out_header))
			return 0;
		return reply_header(&r, -EINVAL, sizeof(struct fuse_out_header));
	}
	iov_copy_from(&r.in, req, nreq, 0, sizeof(r.in));
	if (r.in.opcode < sizeof(ops) / sizeof(ops[0]) && ops[r.in.opcode].fn)
		op = &ops[r.in.opcode];
	if (op && (op->flags & OP_NOREPLY))
		reply_cap = 0;
	else if (reply_cap < sizeof(struct fuse_out_header))
		return 0;
	r.reply_room = reply_cap ? reply_cap - sizeof(struct fuse_out_header) : 0;

	/* The header's len covers everything the guest wrote; it must lie within the buffers. */
	ret = -EINVAL;
	if (r.in.len < sizeof(r.in) || r.in.len > total)
		goto done;
	ret = -ENOSYS;
	if (!op)
		goto done;
	len = r.in.len - sizeof(r.in);
	if ((size_t)r.in.total_extlen * 8 > len) {
		ret = -EINVAL;
		goto done;
	}
	len -= (size_t)r.in.total_extlen * 8; /* extensions: none negotiated, so none used */
	ret = -EINVAL;
	if (len < op->min_arg)
		goto done;
	/* WRITE's data stays in the guest's buffers: pwritev takes it from there. */
	copy = r.in.opcode == FUSE_WRITE ? op->min_arg : len;
	if (copy > FS_MAX_ARGS)
		goto done;
	args = malloc(copy + 1);
	if (!args) {
		ret = -ENOMEM;
		goto done;
	}
	iov_copy_from(args, req, nreq, sizeof(r.in), copy);
	r.arg = args;
	r.arglen = r.in.opcode == FUSE_WRITE ? len : copy;
	r.data_off = sizeof(r.in) + op->min_arg;
	if (srv->readonly && (op->flags & OP_CHANGES)) {
		ret = -EROFS;
		goto done;
	}
	if (!(op->flags & OP_NOINODE)) {
		ino = fs_inode_get(srv, r.in.nodeid);
		if (!ino) {
			ret = -ENOENT;
			goto done;
		}
	}
	ret = op->fn(&r, ino);
	fs_inode_put(srv, ino);
done:
	free(args);
	if (!reply_cap) {
		free(r.out_heap);
		return 0;
	}
	if (ret < 0) {
		len = reply_header(&r, ret, sizeof(struct fuse_out_header));
	} else {
		/* READ's data is in place already; other replies are copied after the header. */
		iov_copy_to(reply, nreply, sizeof(struct fuse_out_header), r.out, (size_t)ret);
		len = reply_header(&r, 0, sizeof(struct fuse_out_header) + (size_t)ret + r.direct);
	}
	free(r.out_heap);
	return len;
}
