// SPDX-License-Identifier: MIT
/*
 * The FUSE server (fs/fuse_server.h) driven natively with hand-built requests over a scratch
 * directory: each operation, the escapes a hostile guest would try (each leaves a canary file
 * outside the share untouched: the teardown checks it), the bounds, and malformed requests.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "fs/fuse_server.h"

#define CANARY_TEXT "outside the share\n"

struct fx {
	char dir[PATH_MAX - 64];
	char share[PATH_MAX];
	char outside[PATH_MAX];
	char canary[PATH_MAX];
	struct stat canary_st;
	struct fuse_server *srv;
	uint8_t reply[1 << 21];
	uint8_t *body; /* the reply after its fuse_out_header */
	size_t bodylen;
	uint32_t uid, gid; /* the requester the next requests name */
};

/* One piece of a request after its header: bytes, or a string sent with its NUL. */
struct part {
	const void *p;
	size_t len;
};
#define P(x) ((struct part){ &(x), sizeof(x) })
#define S(s) ((struct part){ (s), strlen(s) + 1 })
#define NONE ((struct part){ NULL, 0 })

static struct fuse_server *make_server(struct fx *f, bool ro, unsigned int max_inodes,
				       unsigned int max_handles)
{
	struct fuse_server_config cfg = { f->share, ro, max_inodes, max_handles };
	struct fuse_server *srv;
	char err[256] = "";

	assert_int_equal(fuse_server_create(&srv, &cfg, err, sizeof(err)), 0);
	return srv;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	int fd;

	assert_non_null(f);
	assert_int_equal(fx_dir_make(f->dir, sizeof(f->dir), NULL, "fuse"), 0);
	snprintf(f->share, sizeof(f->share), "%s/share", f->dir);
	snprintf(f->outside, sizeof(f->outside), "%s/outside", f->dir);
	snprintf(f->canary, sizeof(f->canary), "%s/outside/canary", f->dir);
	assert_int_equal(mkdir(f->share, 0755), 0);
	assert_int_equal(mkdir(f->outside, 0755), 0);
	fd = open(f->canary, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, CANARY_TEXT, strlen(CANARY_TEXT)), (int)strlen(CANARY_TEXT));
	close(fd);
	assert_int_equal(stat(f->canary, &f->canary_st), 0);
	f->srv = make_server(f, false, 0, 0);
	/* An open of a fifo blocks forever: a regression must fail the test, not hang it. */
	alarm(60);
	*state = f;
	return 0;
}

/* Every test ends here: nothing outside the share changed, whatever the guest sent. */
static int teardown(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char buf[64] = "";
	DIR *d;
	int fd, n = 0;

	alarm(0);
	fuse_server_destroy(f->srv);
	assert_int_equal(stat(f->canary, &st), 0);
	assert_int_equal(st.st_size, f->canary_st.st_size);
	assert_int_equal(st.st_mode, f->canary_st.st_mode);
	assert_int_equal(st.st_uid, f->canary_st.st_uid);
	assert_int_equal(st.st_mtim.tv_sec, f->canary_st.st_mtim.tv_sec);
	assert_int_equal(st.st_mtim.tv_nsec, f->canary_st.st_mtim.tv_nsec);
	fd = open(f->canary, O_RDONLY);
	assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
	close(fd);
	assert_string_equal(buf, CANARY_TEXT);
	d = opendir(f->outside);
	for (struct dirent *de; (de = readdir(d));)
		n++;
	closedir(d);
	assert_int_equal(n, 3); /* ".", "..", canary: nothing made beside it */
	fx_sh(f->dir, "rm -rf '%s'", f->dir);
	free(f);
	return 0;
}

/* Sends one request cut into pieces of the sizes the test chose; returns the reply's error. */
static int call_iov(struct fx *f, uint32_t op, uint64_t nodeid, const struct part *parts,
		    unsigned int nparts, size_t reply_cap, uint32_t len_adjust)
{
	static uint8_t req[1 << 21];
	struct fuse_in_header in = {
		.opcode = op, .unique = 42, .nodeid = nodeid, .uid = f->uid, .gid = f->gid, .pid = 1
	};
	struct iovec riov[3], oiov[3];
	struct fuse_out_header out;
	size_t len = sizeof(in), got;

	for (unsigned int i = 0; i < nparts; i++) {
		if (parts[i].len)
			memcpy(req + len, parts[i].p, parts[i].len);
		len += parts[i].len;
	}
	in.len = (uint32_t)len + len_adjust;
	memcpy(req, &in, sizeof(in));
	/* Odd cuts, so that no structure arrives in one piece. */
	riov[0] = (struct iovec){ req, len < 7 ? len : 7 };
	riov[1] = (struct iovec){ req + riov[0].iov_len,
				  len - riov[0].iov_len < 45 ? len - riov[0].iov_len : 45 };
	riov[2] = (struct iovec){ req + riov[0].iov_len + riov[1].iov_len,
				  len - riov[0].iov_len - riov[1].iov_len };
	assert_true(reply_cap < sizeof(f->reply));
	memset(f->reply, 0xa5, reply_cap + 1);
	oiov[0] = (struct iovec){ f->reply, reply_cap < 5 ? reply_cap : 5 };
	oiov[1] = (struct iovec){ f->reply + oiov[0].iov_len, reply_cap - oiov[0].iov_len < 27 ?
								      reply_cap - oiov[0].iov_len :
								      27 };
	oiov[2] = (struct iovec){ f->reply + oiov[0].iov_len + oiov[1].iov_len,
				  reply_cap - oiov[0].iov_len - oiov[1].iov_len };
	got = fuse_server_handle(f->srv, riov, 3, oiov, 3);
	f->body = f->reply + sizeof(out);
	f->bodylen = 0;
	if (!got)
		return INT_MIN; /* no reply */
	assert_true(got <= reply_cap);
	assert_int_equal(f->reply[reply_cap], 0xa5); /* nothing past the buffers */
	memcpy(&out, f->reply, sizeof(out));
	assert_int_equal(out.len, got);
	assert_int_equal(out.unique, 42);
	f->bodylen = got - sizeof(out);
	if (out.error)
		assert_int_equal(got, sizeof(out));
	return out.error;
}

static int call(struct fx *f, uint32_t op, uint64_t nodeid, struct part a, struct part b,
		struct part c)
{
	struct part parts[3] = { a, b, c };

	return call_iov(f, op, nodeid, parts, 3, 1 << 20, 0);
}

static void do_init(struct fx *f)
{
	struct fuse_init_in in = { .major = 7, .minor = 37, .max_readahead = 1 << 17, .flags = ~0u };

	assert_int_equal(call(f, FUSE_INIT, 0, P(in), NONE, NONE), 0);
}

static uint64_t lookup(struct fx *f, uint64_t dir, const char *name, struct fuse_entry_out *e)
{
	struct fuse_entry_out tmp;
	int err = call(f, FUSE_LOOKUP, dir, S(name), NONE, NONE);

	if (err)
		return (uint64_t)err;
	assert_int_equal(f->bodylen, sizeof(tmp));
	memcpy(e ? e : &tmp, f->body, sizeof(tmp));
	return (e ? e : &tmp)->nodeid;
}

static int lookup_err(struct fx *f, uint64_t dir, const char *name)
{
	return call(f, FUSE_LOOKUP, dir, S(name), NONE, NONE);
}

static uint64_t open_file(struct fx *f, uint64_t nodeid, uint32_t flags, int *err)
{
	struct fuse_open_in in = { .flags = flags };
	struct fuse_open_out out;

	*err = call(f, FUSE_OPEN, nodeid, P(in), NONE, NONE);
	if (*err)
		return 0;
	assert_int_equal(f->bodylen, sizeof(out));
	memcpy(&out, f->body, sizeof(out));
	return out.fh;
}

static void host_write(struct fx *f, const char *name, const char *text)
{
	int fd;

	fd = open(fx_dir_path(f->share, name), O_CREAT | O_WRONLY | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (int)strlen(text));
	close(fd);
}

static const char *share_path(struct fx *f, const char *name)
{
	return fx_dir_path(f->share, name);
}

static void test_init_answers_the_shared_minor_and_only_flags_it_implements(void **state)
{
	struct fx *f = *state;
	struct fuse_init_in in = { .major = 7,
				   .minor = 37,
				   .max_readahead = 1 << 17,
				   .flags = FUSE_DO_READDIRPLUS | FUSE_POSIX_LOCKS |
					    FUSE_WRITEBACK_CACHE | FUSE_MAX_PAGES };
	struct fuse_init_out out;

	assert_int_equal(call(f, FUSE_INIT, 0, P(in), NONE, NONE), 0);
	assert_int_equal(f->bodylen, sizeof(out));
	memcpy(&out, f->body, sizeof(out));
	assert_int_equal(out.major, 7);
	assert_int_equal(out.minor, 37); /* Linux 6.1's, below <linux/fuse.h>'s */
	assert_int_equal(out.flags, FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES);
	assert_int_equal(out.max_readahead, 1 << 17);
	assert_int_equal(out.max_write, 1 << 20);
	assert_int_equal(out.max_pages, 256);

	in.minor = FUSE_KERNEL_MINOR_VERSION + 5;
	assert_int_equal(call(f, FUSE_INIT, 0, P(in), NONE, NONE), 0);
	memcpy(&out, f->body, sizeof(out));
	assert_int_equal(out.minor, FUSE_KERNEL_MINOR_VERSION);

	in.major = 6;
	assert_int_equal(call(f, FUSE_INIT, 0, P(in), NONE, NONE), -EPROTO);
}

static void test_lookup_and_getattr_report_the_host_file(void **state)
{
	struct fx *f = *state;
	struct fuse_getattr_in ga = { 0 };
	struct fuse_entry_out e;
	struct fuse_attr_out a;
	struct stat st;
	uint64_t id;

	do_init(f);
	host_write(f, "hello", "hello, guest\n");
	assert_int_equal(stat(share_path(f, "hello"), &st), 0);
	id = lookup(f, FUSE_ROOT_ID, "hello", &e);
	assert_true(id > FUSE_ROOT_ID && id < (uint64_t)INT64_MAX);
	assert_int_equal(e.attr.ino, st.st_ino);
	assert_int_equal(e.attr.size, 13);
	assert_int_equal(e.attr.mode, st.st_mode);
	assert_int_equal(call(f, FUSE_GETATTR, id, P(ga), NONE, NONE), 0);
	memcpy(&a, f->body, sizeof(a));
	assert_int_equal(a.attr.ino, st.st_ino);
	assert_int_equal(a.attr.nlink, 1);
	/* A second name lookup is the same inode (nkvm counts both lookups). */
	assert_int_equal(lookup(f, FUSE_ROOT_ID, "hello", NULL), id);
	assert_int_equal(lookup_err(f, FUSE_ROOT_ID, "missing"), -ENOENT);
	{
		struct fuse_access_in ac = { .mask = R_OK | W_OK };

		assert_int_equal(call(f, FUSE_ACCESS, id, P(ac), NONE, NONE), 0);
	}
	assert_int_equal(call(f, FUSE_GETATTR, FUSE_ROOT_ID, P(ga), NONE, NONE), 0);
	memcpy(&a, f->body, sizeof(a));
	assert_true(S_ISDIR(a.attr.mode));
}

static uint64_t create(struct fx *f, uint64_t dir, const char *name, uint32_t flags, uint32_t mode,
		       uint64_t *fh)
{
	struct fuse_create_in in = { .flags = flags, .mode = mode };
	struct fuse_entry_out e;
	struct fuse_open_out o;
	int err = call(f, FUSE_CREATE, dir, P(in), S(name), NONE);

	if (err)
		return (uint64_t)err;
	assert_int_equal(f->bodylen, sizeof(e) + sizeof(o));
	memcpy(&e, f->body, sizeof(e));
	memcpy(&o, f->body + sizeof(e), sizeof(o));
	*fh = o.fh;
	return e.nodeid;
}

static int write_at(struct fx *f, uint64_t fh, uint64_t off, const void *data, size_t len)
{
	struct fuse_write_in in = { .fh = fh, .offset = off, .size = (uint32_t)len };
	struct fuse_write_out out;
	int err = call(f, FUSE_WRITE, 0, P(in), (struct part){ data, len }, NONE);

	if (err)
		return err;
	memcpy(&out, f->body, sizeof(out));
	return (int)out.size;
}

static int read_at(struct fx *f, uint64_t fh, uint64_t off, uint32_t size, size_t reply_cap)
{
	struct fuse_read_in in = { .fh = fh, .offset = off, .size = size };
	struct part p = P(in);
	int err = call_iov(f, FUSE_READ, 0, &p, 1, reply_cap, 0);

	return err ? err : (int)f->bodylen;
}

static void release(struct fx *f, uint64_t fh)
{
	struct fuse_release_in in = { .fh = fh };

	assert_int_equal(call(f, FUSE_RELEASE, 0, P(in), NONE, NONE), 0);
}

static void test_create_write_read_release_round_trip(void **state)
{
	struct fx *f = *state;
	static char data[300000], back[300000];
	struct stat st;
	uint64_t id, fh;
	int fd;

	do_init(f);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7 + i / 251);
	f->uid = 1234;
	f->gid = 5678;
	umask(022);
	id = create(f, FUSE_ROOT_ID, "new", O_RDWR, S_IFREG | 0666, &fh);
	assert_true(id > FUSE_ROOT_ID && id < (uint64_t)INT64_MAX);
	assert_int_equal(write_at(f, fh, 0, data, sizeof(data)), (int)sizeof(data));
	assert_int_equal(read_at(f, fh, 0, sizeof(data), 1 << 20), (int)sizeof(data));
	assert_memory_equal(f->body, data, sizeof(data));
	assert_int_equal(read_at(f, fh, 1000, 10, 1 << 20), 10);
	assert_memory_equal(f->body, data + 1000, 10);
	/* Past the end: an empty read, not an error. */
	assert_int_equal(read_at(f, fh, sizeof(data) + 5, 100, 1 << 20), 0);
	release(f, fh);
	assert_int_equal(read_at(f, fh, 0, 10, 1 << 20), -EBADF);

	assert_int_equal(stat(share_path(f, "new"), &st), 0);
	assert_int_equal(st.st_size, sizeof(data));
	/* Identity (issue 18 item 4): the guest's ids, and its mode despite nkvm's umask. */
	if (geteuid() == 0) {
		assert_int_equal(st.st_uid, 1234);
		assert_int_equal(st.st_gid, 5678);
	} else {
		assert_int_equal(st.st_uid, geteuid());
	}
	assert_int_equal(st.st_mode & 07777, 0666);
	fd = open(share_path(f, "new"), O_RDONLY);
	assert_int_equal(read(fd, back, sizeof(back)), (int)sizeof(back));
	close(fd);
	assert_memory_equal(back, data, sizeof(data));

	/* CREATE with O_EXCL of an existing name fails; without, it opens it. */
	assert_int_equal((int)create(f, FUSE_ROOT_ID, "new", O_RDWR | O_EXCL, 0644, &fh), -EEXIST);
	assert_int_equal(create(f, FUSE_ROOT_ID, "new", O_RDONLY, 0644, &fh), id);
	release(f, fh);
}

static uint64_t mkdir_(struct fx *f, uint64_t dir, const char *name, uint32_t mode)
{
	struct fuse_mkdir_in in = { .mode = mode };
	struct fuse_entry_out e;
	int err = call(f, FUSE_MKDIR, dir, P(in), S(name), NONE);

	if (err)
		return (uint64_t)err;
	memcpy(&e, f->body, sizeof(e));
	return e.nodeid;
}

static void test_mkdir_rename_link_symlink_readlink_unlink_rmdir(void **state)
{
	struct fx *f = *state;
	struct fuse_rename_in rn;
	struct fuse_rename2_in rn2 = { 0 };
	struct fuse_link_in li;
	struct fuse_entry_out e;
	struct stat st;
	uint64_t d, file;
	char target[64] = "";

	do_init(f);
	d = mkdir_(f, FUSE_ROOT_ID, "d", 0750);
	assert_true(d > FUSE_ROOT_ID && d < (uint64_t)INT64_MAX);
	assert_int_equal(stat(share_path(f, "d"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal((int)mkdir_(f, FUSE_ROOT_ID, "d", 0755), -EEXIST);

	host_write(f, "a", "A");
	rn.newdir = d;
	assert_int_equal(call(f, FUSE_RENAME, FUSE_ROOT_ID, P(rn), S("a"), S("b")), 0);
	assert_int_equal(access(share_path(f, "d/b"), F_OK), 0);
	assert_int_equal(access(share_path(f, "a"), F_OK), -1);
	/* RENAME2 NOREPLACE onto an existing name fails; WHITEOUT is refused. */
	host_write(f, "c", "C");
	rn2.newdir = d;
	rn2.flags = RENAME_NOREPLACE;
	assert_int_equal(call(f, FUSE_RENAME2, FUSE_ROOT_ID, P(rn2), S("c"), S("b")), -EEXIST);
	rn2.flags = RENAME_WHITEOUT;
	assert_int_equal(call(f, FUSE_RENAME2, FUSE_ROOT_ID, P(rn2), S("c"), S("w")), -EINVAL);
	rn2.flags = RENAME_EXCHANGE;
	assert_int_equal(call(f, FUSE_RENAME2, FUSE_ROOT_ID, P(rn2), S("c"), S("b")), 0);

	file = lookup(f, d, "b", NULL);
	li.oldnodeid = file;
	assert_int_equal(call(f, FUSE_LINK, FUSE_ROOT_ID, P(li), S("hard"), NONE), 0);
	memcpy(&e, f->body, sizeof(e));
	assert_int_equal(e.nodeid, file); /* one host object, one guest inode */
	assert_int_equal(e.attr.nlink, 2);
	li.oldnodeid = d;
	assert_int_equal(call(f, FUSE_LINK, FUSE_ROOT_ID, P(li), S("dirlink"), NONE), -EPERM);

	assert_int_equal(call(f, FUSE_SYMLINK, FUSE_ROOT_ID, S("sym"), S("d/b"), NONE), 0);
	memcpy(&e, f->body, sizeof(e));
	assert_true(S_ISLNK(e.attr.mode));
	assert_int_equal(readlink(share_path(f, "sym"), target, sizeof(target)), 3);
	assert_string_equal(target, "d/b");
	assert_int_equal(call(f, FUSE_READLINK, e.nodeid, NONE, NONE, NONE), 0);
	assert_int_equal(f->bodylen, 3);
	assert_memory_equal(f->body, "d/b", 3);
	assert_int_equal(call(f, FUSE_READLINK, file, NONE, NONE, NONE), -EINVAL);

	assert_int_equal(call(f, FUSE_RMDIR, FUSE_ROOT_ID, S("d"), NONE, NONE), -ENOTEMPTY);
	assert_int_equal(call(f, FUSE_UNLINK, d, S("b"), NONE, NONE), 0);
	assert_int_equal(call(f, FUSE_UNLINK, FUSE_ROOT_ID, S("sym"), NONE, NONE), 0);
	assert_int_equal(call(f, FUSE_RMDIR, FUSE_ROOT_ID, S("d"), NONE, NONE), 0);
	assert_int_equal(access(share_path(f, "d"), F_OK), -1);
	assert_int_equal(access(share_path(f, "sym"), F_OK), -1);
	assert_int_equal(access(share_path(f, "hard"), F_OK), 0);
}

static void test_setattr_truncates_chmods_chowns_and_sets_times(void **state)
{
	struct fx *f = *state;
	struct fuse_setattr_in in = { 0 };
	struct fuse_attr_out a;
	struct stat st;
	uint64_t id;

	do_init(f);
	host_write(f, "f", "0123456789");
	id = lookup(f, FUSE_ROOT_ID, "f", NULL);
	in.valid = FATTR_SIZE | FATTR_MODE | FATTR_MTIME;
	in.size = 4;
	in.mode = 0604;
	in.mtime = 1000000000;
	in.mtimensec = 5;
	assert_int_equal(call(f, FUSE_SETATTR, id, P(in), NONE, NONE), 0);
	memcpy(&a, f->body, sizeof(a));
	assert_int_equal(a.attr.size, 4);
	assert_int_equal(a.attr.mode & 07777, 0604);
	assert_int_equal(stat(share_path(f, "f"), &st), 0);
	assert_int_equal(st.st_size, 4);
	assert_int_equal(st.st_mode & 07777, 0604);
	assert_int_equal(st.st_mtim.tv_sec, 1000000000);
	assert_int_equal(st.st_mtim.tv_nsec, 5);
	if (geteuid() == 0) {
		in.valid = FATTR_UID | FATTR_GID;
		in.uid = 42;
		in.gid = 43;
		assert_int_equal(call(f, FUSE_SETATTR, id, P(in), NONE, NONE), 0);
		assert_int_equal(stat(share_path(f, "f"), &st), 0);
		assert_int_equal(st.st_uid, 42);
		assert_int_equal(st.st_gid, 43);
	}
	/* Growing through an open handle. */
	{
		int err;
		uint64_t fh = open_file(f, id, O_RDWR, &err);

		assert_int_equal(err, 0);
		in.valid = FATTR_SIZE | FATTR_FH;
		in.fh = fh;
		in.size = 100000;
		assert_int_equal(call(f, FUSE_SETATTR, id, P(in), NONE, NONE), 0);
		assert_int_equal(stat(share_path(f, "f"), &st), 0);
		assert_int_equal(st.st_size, 100000);
		release(f, fh);
	}
}

static void test_xattrs_set_get_list_remove(void **state)
{
	struct fx *f = *state;
	struct fuse_getxattr_in g = { 0 };
	struct fuse_getxattr_out go;
	struct {
		uint32_t size, flags;
	} s = { 5, 0 };
	uint64_t id;
	char v[16] = "";

	do_init(f);
	host_write(f, "x", "x");
	if (setxattr(share_path(f, "x"), "user.probe", "1", 1, 0))
		skip(); /* the scratch file system has no user xattrs */
	id = lookup(f, FUSE_ROOT_ID, "x", NULL);
	assert_int_equal(
		call(f, FUSE_SETXATTR, id, P(s), S("user.nkvm"), (struct part){ "value", 5 }), 0);
	assert_int_equal(getxattr(share_path(f, "x"), "user.nkvm", v, sizeof(v)), 5);
	assert_string_equal(v, "value");
	assert_int_equal(call(f, FUSE_GETXATTR, id, P(g), S("user.nkvm"), NONE), 0);
	memcpy(&go, f->body, sizeof(go));
	assert_int_equal(go.size, 5);
	g.size = 64;
	assert_int_equal(call(f, FUSE_GETXATTR, id, P(g), S("user.nkvm"), NONE), 0);
	assert_int_equal(f->bodylen, 5);
	assert_memory_equal(f->body, "value", 5);
	g.size = 2;
	assert_int_equal(call(f, FUSE_GETXATTR, id, P(g), S("user.nkvm"), NONE), -ERANGE);
	g.size = 256;
	assert_int_equal(call(f, FUSE_LISTXATTR, id, P(g), NONE, NONE), 0);
	assert_non_null(memmem(f->body, f->bodylen, "user.nkvm", 10));
	assert_int_equal(call(f, FUSE_REMOVEXATTR, id, S("user.nkvm"), NONE, NONE), 0);
	assert_int_equal(getxattr(share_path(f, "x"), "user.nkvm", v, sizeof(v)), -1);
	assert_int_equal(call(f, FUSE_GETXATTR, id, P(g), S("user.nkvm"), NONE), -ENODATA);
	/* A value longer than the request holds. */
	s.size = 100;
	assert_int_equal(call(f, FUSE_SETXATTR, id, P(s), S("user.nkvm"), (struct part){ "v", 1 }),
			 -EINVAL);
}

static uint64_t opendir_(struct fx *f, uint64_t id)
{
	struct fuse_open_in in = { 0 };
	struct fuse_open_out out;

	assert_int_equal(call(f, FUSE_OPENDIR, id, P(in), NONE, NONE), 0);
	memcpy(&out, f->body, sizeof(out));
	return out.fh;
}

/* Reads the whole directory in buffers of bufsize, checking each record's packing. */
static void read_dir(struct fx *f, uint64_t id, uint32_t op, uint32_t bufsize, bool *seen,
		     unsigned int nfiles, unsigned int *dots, unsigned int *calls)
{
	uint64_t fh = opendir_(f, id), off = 0;

	*dots = 0;
	*calls = 0;
	for (;;) {
		struct fuse_read_in in = { .fh = fh, .offset = off, .size = bufsize };
		size_t pos = 0;

		assert_int_equal(call(f, op, id, P(in), NONE, NONE), 0);
		++*calls;
		assert_true(f->bodylen <= bufsize);
		if (!f->bodylen)
			break;
		while (pos < f->bodylen) {
			const struct fuse_dirent *d;
			struct fuse_entry_out e;
			size_t size;
			char name[256];
			unsigned int n;

			if (op == FUSE_READDIRPLUS) {
				const struct fuse_direntplus *dp = (const void *)(f->body + pos);

				memcpy(&e, &dp->entry_out, sizeof(e));
				d = &dp->dirent;
				size = FUSE_DIRENTPLUS_SIZE(dp);
			} else {
				d = (const void *)(f->body + pos);
				size = FUSE_DIRENT_SIZE(d);
			}
			assert_true(size % 8 == 0);
			assert_true(pos + size <= f->bodylen);
			assert_true(d->namelen < sizeof(name));
			memcpy(name, d->name, d->namelen);
			name[d->namelen] = '\0';
			/* The padding is zeros. */
			for (size_t i = (size_t)((const uint8_t *)d->name - (f->body + pos)) +
					d->namelen;
			     i < size; i++)
				assert_int_equal(f->body[pos + i], 0);
			if (!strcmp(name, ".") || !strcmp(name, "..")) {
				++*dots;
				if (op == FUSE_READDIRPLUS)
					assert_int_equal(e.nodeid, 0);
			} else {
				assert_int_equal(sscanf(name, "file-%u", &n), 1);
				assert_true(n < nfiles);
				assert_false(seen[n]);
				seen[n] = true;
				if (op == FUSE_READDIRPLUS) {
					assert_true(e.nodeid > FUSE_ROOT_ID);
					assert_int_equal(e.attr.ino, d->ino);
				}
			}
			off = d->off;
			pos += size;
		}
	}
	release(f, fh);
}

static void test_readdir_and_readdirplus_pack_many_entries_across_calls(void **state)
{
	struct fx *f = *state;
	enum { NFILES = 500 };
	bool seen[NFILES];
	unsigned int dots, calls;
	char name[64];
	uint64_t d;

	do_init(f);
	assert_int_equal(mkdir(share_path(f, "many"), 0755), 0);
	for (unsigned int i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "many/file-%u%s", i,
			 i % 3 ? "" : "-with-a-longer-name-to-vary-the-padding");
		host_write(f, name, "");
	}
	d = lookup(f, FUSE_ROOT_ID, "many", NULL);
	memset(seen, 0, sizeof(seen));
	read_dir(f, d, FUSE_READDIR, 4096, seen, NFILES, &dots, &calls);
	assert_int_equal(dots, 2);
	assert_true(calls > 5); /* it really took several buffers */
	for (unsigned int i = 0; i < NFILES; i++)
		assert_true(seen[i]);
	memset(seen, 0, sizeof(seen));
	read_dir(f, d, FUSE_READDIRPLUS, 4096, seen, NFILES, &dots, &calls);
	assert_int_equal(dots, 2);
	for (unsigned int i = 0; i < NFILES; i++)
		assert_true(seen[i]);
	/* A buffer too small for one entry gives an empty answer, not a torn record. */
	{
		uint64_t fh = opendir_(f, d);
		struct fuse_read_in in = { .fh = fh, .size = 20 };

		assert_int_equal(call(f, FUSE_READDIR, d, P(in), NONE, NONE), 0);
		assert_int_equal(f->bodylen, 0);
		release(f, fh);
	}
}

/* The server's seekdir calls, counted (the Makefile wraps seekdir for this test). */
void __real_seekdir(DIR *dir, long off);
void __wrap_seekdir(DIR *dir, long off);
static unsigned int seekdirs;

void __wrap_seekdir(DIR *dir, long off)
{
	seekdirs++;
	__real_seekdir(dir, off);
}

/*
 * rm -rf as a guest does it: READDIR a buffer's worth, UNLINK what came, READDIR on from the last
 * offset. Every entry goes, and the server never seeks its stream back to an entry that did not
 * fit: where the cookies are positions (tmpfs before Linux 6.6) such a seek, after the unlinks,
 * lands past entries, which rm then never sees ("Directory not empty").
 */
static void test_readdir_while_unlinking_never_seeks_back(void **state)
{
	struct fx *f = *state;
	enum { NFILES = 300 };
	uint64_t d, fh, off = 0;
	unsigned int removed = 0;
	char name[300];

	do_init(f);
	assert_int_equal(mkdir(share_path(f, "rm"), 0755), 0);
	for (unsigned int i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "rm/entry-%u", i);
		host_write(f, name, "");
	}
	d = lookup(f, FUSE_ROOT_ID, "rm", NULL);
	fh = opendir_(f, d);
	seekdirs = 0;
	for (;;) {
		struct fuse_read_in in = { .fh = fh, .offset = off, .size = 1024 };
		char names[64][300];
		unsigned int n = 0;
		size_t pos = 0;

		assert_int_equal(call(f, FUSE_READDIR, d, P(in), NONE, NONE), 0);
		if (!f->bodylen)
			break;
		while (pos < f->bodylen) {
			const struct fuse_dirent *de = (const void *)(f->body + pos);

			assert_true(n < 64 && de->namelen < sizeof(names[0]));
			memcpy(names[n], de->name, de->namelen);
			names[n][de->namelen] = '\0';
			n++;
			off = de->off;
			pos += FUSE_DIRENT_SIZE(de);
		}
		for (unsigned int i = 0; i < n; i++) {
			if (!strcmp(names[i], ".") || !strcmp(names[i], ".."))
				continue;
			assert_int_equal(call(f, FUSE_UNLINK, d, S(names[i]), NONE, NONE), 0);
			removed++;
		}
	}
	release(f, fh);
	assert_int_equal(seekdirs, 0);
	assert_int_equal(removed, NFILES);
	assert_int_equal(rmdir(share_path(f, "rm")), 0);
}

static void test_statfs_fallocate_lseek_fsync_flush(void **state)
{
	struct fx *f = *state;
	struct fuse_fallocate_in fa = { 0 };
	struct fuse_lseek_in ls = { 0 };
	struct fuse_lseek_out lo;
	struct fuse_statfs_out so;
	struct fuse_fsync_in fs = { 0 };
	struct fuse_flush_in fl = { 0 };
	struct stat st;
	uint64_t id, fh;
	int err;

	do_init(f);
	assert_int_equal(call(f, FUSE_STATFS, FUSE_ROOT_ID, NONE, NONE, NONE), 0);
	memcpy(&so, f->body, sizeof(so));
	assert_true(so.st.blocks > 0 && so.st.bsize > 0 && so.st.namelen >= 255);

	id = create(f, FUSE_ROOT_ID, "sparse", O_RDWR, 0644, &fh);
	assert_true(id < (uint64_t)INT64_MAX);
	fa.fh = fh;
	fa.offset = 1 << 20;
	fa.length = 65536;
	assert_int_equal(call(f, FUSE_FALLOCATE, 0, P(fa), NONE, NONE), 0);
	assert_int_equal(stat(share_path(f, "sparse"), &st), 0);
	assert_int_equal(st.st_size, (1 << 20) + 65536);
	assert_int_equal(write_at(f, fh, 1 << 21, "data", 4), 4);
	ls.fh = fh;
	ls.whence = SEEK_DATA;
	ls.offset = (1 << 20) + 65536;
	assert_int_equal(call(f, FUSE_LSEEK, 0, P(ls), NONE, NONE), 0);
	memcpy(&lo, f->body, sizeof(lo));
	assert_true(lo.offset > (1 << 20) + 65536 && lo.offset <= (1 << 21));
	ls.whence = SEEK_HOLE;
	ls.offset = 0;
	assert_int_equal(call(f, FUSE_LSEEK, 0, P(ls), NONE, NONE), 0);
	memcpy(&lo, f->body, sizeof(lo));
	assert_int_equal(lo.offset, 0);
	ls.whence = 99;
	assert_int_equal(call(f, FUSE_LSEEK, 0, P(ls), NONE, NONE), -EINVAL);
	fs.fh = fh;
	assert_int_equal(call(f, FUSE_FSYNC, 0, P(fs), NONE, NONE), 0);
	fl.fh = fh;
	assert_int_equal(call(f, FUSE_FLUSH, 0, P(fl), NONE, NONE), 0);
	release(f, fh);
	assert_int_equal(call(f, FUSE_FLUSH, 0, P(fl), NONE, NONE), -EBADF);
	fh = open_file(f, id, O_RDONLY, &err);
	assert_int_equal(err, 0);
	release(f, fh);
}

static void test_copy_file_range_copies_between_handles(void **state)
{
	struct fx *f = *state;
	struct fuse_copy_file_range_in in = { 0 };
	struct fuse_write_out out;
	uint64_t a, b, fha, fhb;
	char buf[16] = "";
	int fd;

	do_init(f);
	a = create(f, FUSE_ROOT_ID, "src", O_RDWR, 0644, &fha);
	b = create(f, FUSE_ROOT_ID, "dst", O_RDWR, 0644, &fhb);
	assert_true(a < (uint64_t)INT64_MAX && b < (uint64_t)INT64_MAX);
	assert_int_equal(write_at(f, fha, 0, "copy me", 7), 7);
	in.fh_in = fha;
	in.fh_out = fhb;
	in.nodeid_out = b;
	in.off_out = 3;
	in.len = 7;
	assert_int_equal(call(f, FUSE_COPY_FILE_RANGE, a, P(in), NONE, NONE), 0);
	memcpy(&out, f->body, sizeof(out));
	assert_int_equal(out.size, 7);
	fd = open(share_path(f, "dst"), O_RDONLY);
	assert_int_equal(pread(fd, buf, sizeof(buf), 3), 7);
	close(fd);
	assert_string_equal(buf, "copy me");
	release(f, fha);
	release(f, fhb);
}

static void test_ro_share_refuses_every_change_with_erofs(void **state)
{
	struct fx *f = *state;
	struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = 0777 };
	struct fuse_mkdir_in mk = { .mode = 0755 };
	struct fuse_mknod_in mn = { .mode = S_IFREG | 0644 };
	struct fuse_create_in cr = { .flags = O_RDWR, .mode = 0644 };
	struct fuse_rename_in rn = { .newdir = FUSE_ROOT_ID };
	struct fuse_write_in wr = { .size = 1 };
	struct fuse_fallocate_in fa = { .length = 10 };
	struct fuse_access_in ac = { .mask = W_OK };
	struct fuse_link_in li;
	struct {
		uint32_t size, flags;
	} sx = { 1, 0 };
	struct stat before, after;
	uint64_t id, fh;
	int err;

	host_write(f, "f", "keep");
	fuse_server_destroy(f->srv);
	f->srv = make_server(f, true, 0, 0);
	do_init(f);
	assert_int_equal(stat(share_path(f, "f"), &before), 0);
	id = lookup(f, FUSE_ROOT_ID, "f", NULL);
	li.oldnodeid = id;
	assert_int_equal(call(f, FUSE_SETATTR, id, P(sa), NONE, NONE), -EROFS);
	assert_int_equal(call(f, FUSE_MKDIR, FUSE_ROOT_ID, P(mk), S("d"), NONE), -EROFS);
	assert_int_equal(call(f, FUSE_MKNOD, FUSE_ROOT_ID, P(mn), S("n"), NONE), -EROFS);
	assert_int_equal(call(f, FUSE_CREATE, FUSE_ROOT_ID, P(cr), S("c"), NONE), -EROFS);
	assert_int_equal(call(f, FUSE_SYMLINK, FUSE_ROOT_ID, S("s"), S("f"), NONE), -EROFS);
	assert_int_equal(call(f, FUSE_LINK, FUSE_ROOT_ID, P(li), S("l"), NONE), -EROFS);
	assert_int_equal(call(f, FUSE_UNLINK, FUSE_ROOT_ID, S("f"), NONE, NONE), -EROFS);
	assert_int_equal(call(f, FUSE_RMDIR, FUSE_ROOT_ID, S("f"), NONE, NONE), -EROFS);
	assert_int_equal(call(f, FUSE_RENAME, FUSE_ROOT_ID, P(rn), S("f"), S("g")), -EROFS);
	assert_int_equal(call(f, FUSE_SETXATTR, id, P(sx), S("user.a"), S("")), -EROFS);
	assert_int_equal(call(f, FUSE_REMOVEXATTR, id, S("user.a"), NONE, NONE), -EROFS);
	assert_int_equal(call(f, FUSE_ACCESS, id, P(ac), NONE, NONE), -EROFS);
	open_file(f, id, O_RDWR, &err);
	assert_int_equal(err, -EROFS);
	open_file(f, id, O_RDONLY | O_TRUNC, &err);
	assert_int_equal(err, -EROFS);
	fh = open_file(f, id, O_RDONLY, &err);
	assert_int_equal(err, 0);
	wr.fh = fh;
	fa.fh = fh;
	assert_int_equal(call(f, FUSE_WRITE, 0, P(wr), S(""), NONE), -EROFS);
	assert_int_equal(call(f, FUSE_FALLOCATE, 0, P(fa), NONE, NONE), -EROFS);
	assert_int_equal(read_at(f, fh, 0, 4, 4096), 4);
	assert_memory_equal(f->body, "keep", 4);
	release(f, fh);
	assert_int_equal(stat(share_path(f, "f"), &after), 0);
	assert_int_equal(after.st_mode, before.st_mode);
	assert_int_equal(after.st_size, 4);
	assert_int_equal(access(share_path(f, "d"), F_OK), -1);
	assert_int_equal(access(share_path(f, "c"), F_OK), -1);
}

static void test_names_with_slash_dot_or_dotdot_are_refused_before_lookup(void **state)
{
	struct fx *f = *state;
	struct fuse_mkdir_in mk = { .mode = 0755 };
	struct fuse_create_in cr = { .flags = O_RDWR, .mode = 0644 };
	struct fuse_rename_in rn = { .newdir = FUSE_ROOT_ID };
	char outside_rel[PATH_MAX];

	do_init(f);
	host_write(f, "f", "f");
	assert_int_equal(mkdir(share_path(f, "sub"), 0755), 0);
	assert_int_equal(lookup_err(f, FUSE_ROOT_ID, ".."), -EINVAL);
	assert_int_equal(lookup_err(f, FUSE_ROOT_ID, "."), -EINVAL);
	assert_int_equal(lookup_err(f, FUSE_ROOT_ID, "../outside/canary"), -EINVAL);
	assert_int_equal(lookup_err(f, FUSE_ROOT_ID, "sub/../../outside"), -EINVAL);
	assert_int_equal(lookup_err(f, FUSE_ROOT_ID, "a/b"), -EINVAL);
	assert_int_equal(lookup_err(f, FUSE_ROOT_ID, ""), -EINVAL);
	snprintf(outside_rel, sizeof(outside_rel), "%s", f->canary);
	assert_int_equal(lookup_err(f, FUSE_ROOT_ID, outside_rel), -EINVAL);
	assert_int_equal(call(f, FUSE_MKDIR, FUSE_ROOT_ID, P(mk), S("../outside/new"), NONE),
			 -EINVAL);
	assert_int_equal(call(f, FUSE_CREATE, FUSE_ROOT_ID, P(cr), S(".."), NONE), -EINVAL);
	assert_int_equal(call(f, FUSE_CREATE, FUSE_ROOT_ID, P(cr), S("../outside/x"), NONE),
			 -EINVAL);
	assert_int_equal(call(f, FUSE_UNLINK, FUSE_ROOT_ID, S("../outside/canary"), NONE, NONE),
			 -EINVAL);
	assert_int_equal(call(f, FUSE_RENAME, FUSE_ROOT_ID, P(rn), S("f"), S("../outside/canary")),
			 -EINVAL);
	assert_int_equal(call(f, FUSE_SYMLINK, FUSE_ROOT_ID, S("../x"), S("f"), NONE), -EINVAL);
	assert_int_equal(access(share_path(f, "f"), F_OK), 0);
}

/* A symlink the host made is a symlink to the guest: never followed, never opened. */
static void check_symlink_escape(struct fx *f, uint64_t dir, const char *path, const char *target)
{
	const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	struct fuse_create_in cr = { .flags = O_RDWR | O_TRUNC, .mode = 0644 };
	struct fuse_mkdir_in mk = { .mode = 0755 };
	struct fuse_entry_out e;
	struct fuse_open_in oi = { 0 };
	uint64_t id;
	int err;

	assert_int_equal(symlink(target, share_path(f, path)), 0);
	id = lookup(f, dir, name, &e);
	assert_true(S_ISLNK(e.attr.mode));
	open_file(f, id, O_RDWR | O_TRUNC, &err);
	assert_int_equal(err, -ELOOP);
	assert_int_equal(call(f, FUSE_OPENDIR, id, P(oi), NONE, NONE), -ENOTDIR);
	assert_int_equal(lookup_err(f, id, "canary"), -ENOTDIR);
	assert_int_equal(call(f, FUSE_CREATE, id, P(cr), S("planted"), NONE), -ENOTDIR);
	assert_int_equal(call(f, FUSE_MKDIR, id, P(mk), S("planted"), NONE), -ENOTDIR);
	/* CREATE of the symlink's own name opens nothing through it. */
	assert_int_equal(call(f, FUSE_CREATE, dir, P(cr), S(name), NONE), -ELOOP);
}

static void test_absolute_symlink_to_outside_is_never_followed(void **state)
{
	struct fx *f = *state;

	do_init(f);
	check_symlink_escape(f, FUSE_ROOT_ID, "abs-dir", f->outside);
	check_symlink_escape(f, FUSE_ROOT_ID, "abs-file", f->canary);
}

static void test_relative_symlink_climbing_out_is_never_followed(void **state)
{
	struct fx *f = *state;

	do_init(f);
	assert_int_equal(mkdir(share_path(f, "sub"), 0755), 0);
	check_symlink_escape(f, FUSE_ROOT_ID, "rel-dir", "../outside");
	check_symlink_escape(f, FUSE_ROOT_ID, "rel-file", "../outside/canary");
	check_symlink_escape(f, lookup(f, FUSE_ROOT_ID, "sub", NULL), "sub/up",
			     "../../outside/canary");
}

static void test_proc_magic_links_are_never_followed(void **state)
{
	struct fx *f = *state;
	char fdlink[64];
	int fd = open(f->outside, O_PATH | O_DIRECTORY);

	do_init(f);
	assert_true(fd >= 0);
	snprintf(fdlink, sizeof(fdlink), "/proc/self/fd/%d", fd);
	check_symlink_escape(f, FUSE_ROOT_ID, "proc-root", "/proc/self/root");
	check_symlink_escape(f, FUSE_ROOT_ID, "proc-cwd", "/proc/self/cwd");
	check_symlink_escape(f, FUSE_ROOT_ID, "proc-fd", fdlink);
	close(fd);
}

static void test_hard_link_made_on_the_host_reads_only_its_own_file(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e;
	uint64_t id, fh;
	int err;

	do_init(f);
	/* The host linked a file from outside into the share: its data is inside now. */
	assert_int_equal(link(f->canary, share_path(f, "hl")), 0);
	id = lookup(f, FUSE_ROOT_ID, "hl", &e);
	assert_int_equal(e.attr.size, strlen(CANARY_TEXT));
	fh = open_file(f, id, O_RDONLY, &err);
	assert_int_equal(err, 0);
	assert_int_equal(read_at(f, fh, 0, 4096, 8192), (int)strlen(CANARY_TEXT));
	/* Nothing beyond the file is reachable through it. */
	assert_int_equal(lookup_err(f, id, "canary"), -ENOTDIR);
	release(f, fh);
	assert_int_equal(unlink(share_path(f, "hl")), 0);
}

static void test_mknod_of_a_device_is_refused_and_host_fifos_are_never_opened(void **state)
{
	struct fx *f = *state;
	struct fuse_mknod_in mn = { .mode = S_IFBLK | 0666, .rdev = makedev(8, 0) };
	struct fuse_create_in cr = { .flags = O_RDONLY, .mode = 0644 };
	struct fuse_entry_out e;
	uint64_t id;
	int err;

	do_init(f);
	assert_int_equal(call(f, FUSE_MKNOD, FUSE_ROOT_ID, P(mn), S("sda"), NONE), -EPERM);
	mn.mode = S_IFCHR | 0666;
	mn.rdev = makedev(1, 3);
	assert_int_equal(call(f, FUSE_MKNOD, FUSE_ROOT_ID, P(mn), S("null"), NONE), -EPERM);
	assert_int_equal(access(share_path(f, "sda"), F_OK), -1);
	assert_int_equal(access(share_path(f, "null"), F_OK), -1);
	/* A fifo may be made and listed, never opened (it would block nkvm: CVE-2023-2861). */
	mn.mode = S_IFIFO | 0644;
	assert_int_equal(call(f, FUSE_MKNOD, FUSE_ROOT_ID, P(mn), S("fifo"), NONE), 0);
	memcpy(&e, f->body, sizeof(e));
	assert_true(S_ISFIFO(e.attr.mode));
	open_file(f, e.nodeid, O_RDONLY, &err);
	assert_int_equal(err, -EACCES);
	assert_int_equal(call(f, FUSE_CREATE, FUSE_ROOT_ID, P(cr), S("fifo"), NONE), -EACCES);
	/* A device node the host made (only root can): listed, never opened. */
	if (mknod(share_path(f, "hostnull"), S_IFCHR | 0666, makedev(1, 3)))
		return;
	id = lookup(f, FUSE_ROOT_ID, "hostnull", NULL);
	open_file(f, id, O_RDWR, &err);
	assert_int_equal(err, -EACCES);
}

static void test_forget_of_unknown_or_overcounted_inodes_is_harmless(void **state)
{
	struct fx *f = *state;
	struct fuse_forget_in fg = { .nlookup = 1 };
	struct fuse_getattr_in ga = { 0 };
	struct {
		struct fuse_batch_forget_in in;
		struct fuse_forget_one one[2];
	} bf = { { 1000, 0 }, { { 0, 1 }, { 12345, 99 } } };
	uint64_t id;

	do_init(f);
	host_write(f, "f", "f");
	id = lookup(f, FUSE_ROOT_ID, "f", NULL);
	assert_int_equal(lookup(f, FUSE_ROOT_ID, "f", NULL), id);
	/* Two lookups: one forget keeps it. */
	assert_int_equal(call(f, FUSE_FORGET, id, P(fg), NONE, NONE), INT_MIN);
	assert_int_equal(call(f, FUSE_GETATTR, id, P(ga), NONE, NONE), 0);
	/* Forgetting more than counted drops it, once; the next forget changes nothing. */
	fg.nlookup = 1000;
	assert_int_equal(call(f, FUSE_FORGET, id, P(fg), NONE, NONE), INT_MIN);
	assert_int_equal(call(f, FUSE_GETATTR, id, P(ga), NONE, NONE), -ENOENT);
	assert_int_equal(call(f, FUSE_FORGET, id, P(fg), NONE, NONE), INT_MIN);
	/* Unknown nodeids, the root, a stale generation, and a count beyond the entries sent. */
	for (uint64_t bogus = 0; bogus < 4; bogus++)
		call(f, FUSE_FORGET, bogus, P(fg), NONE, NONE);
	call(f, FUSE_FORGET, ~0ull, P(fg), NONE, NONE);
	call(f, FUSE_FORGET, id + (1ull << 32), P(fg), NONE, NONE);
	assert_int_equal(call(f, FUSE_BATCH_FORGET, 0, P(bf), NONE, NONE), INT_MIN);
	assert_int_equal(call(f, FUSE_GETATTR, FUSE_ROOT_ID, P(ga), NONE, NONE), 0);
	/* The name is still there to look up again, under a new nodeid. */
	assert_true(lookup(f, FUSE_ROOT_ID, "f", NULL) != id);
	assert_int_equal(call(f, FUSE_GETATTR, id, P(ga), NONE, NONE), -ENOENT);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	for (struct dirent *de; (de = readdir(d));)
		n++;
	closedir(d);
	return n;
}

static void test_handle_and_inode_bounds_refuse_more_and_hold_nkvm_fds(void **state)
{
	struct fx *f = *state;
	enum { HANDLES = 8, INODES = 6 };
	int fds0, ok = 0, emfile = 0, err;
	uint64_t id, fh;
	char name[32];

	fuse_server_destroy(f->srv);
	fds0 = count_fds();
	f->srv = make_server(f, false, INODES, HANDLES);
	do_init(f);
	host_write(f, "f", "f");
	id = lookup(f, FUSE_ROOT_ID, "f", NULL);
	for (int i = 0; i < 1000; i++) {
		open_file(f, id, O_RDONLY, &err);
		ok += !err;
		emfile += err == -EMFILE;
	}
	assert_int_equal(ok, HANDLES);
	assert_int_equal(emfile, 1000 - HANDLES);
	/* Root + 5 more inodes; the 6th distinct name is over the bound. */
	for (int i = 0; i < INODES; i++) {
		snprintf(name, sizeof(name), "g%d", i);
		host_write(f, name, "");
		err = (int)lookup(f, FUSE_ROOT_ID, name, NULL);
		if (i < INODES - 2)
			assert_true(err > 0);
		else
			assert_int_equal(err, -ENFILE);
	}
	/* proc_fd, and one descriptor per inode and handle: nothing more. */
	assert_true(count_fds() <= fds0 + 1 + INODES + HANDLES);
	assert_int_equal((int64_t)create(f, FUSE_ROOT_ID, "h", O_RDWR, 0644, &fh), -ENFILE);
}

static void test_malformed_requests_get_an_error_reply(void **state)
{
	struct fx *f = *state;
	struct fuse_read_in rd = { 0 };
	struct fuse_write_in wr = { .size = 100 };
	struct fuse_getattr_in ga = { 0 };
	struct fuse_in_header h = { .len = 10, .opcode = FUSE_GETATTR, .unique = 42 };
	struct iovec riov = { &h, 10 }, oiov;
	uint8_t tiny[8];
	struct part p;
	uint64_t id, fh;
	int err;

	do_init(f);
	host_write(f, "f", "0123456789");
	id = lookup(f, FUSE_ROOT_ID, "f", NULL);
	/* len past the buffers, and shorter than the header. */
	p = P(ga);
	assert_int_equal(call_iov(f, FUSE_GETATTR, id, &p, 1, 4096, 1), -EINVAL);
	assert_int_equal(call_iov(f, FUSE_GETATTR, id, &p, 1, 4096, 1u << 31), -EINVAL);
	oiov = (struct iovec){ f->reply, 4096 };
	assert_int_equal(fuse_server_handle(f->srv, &riov, 1, &oiov, 1), 16);
	assert_int_equal(((struct fuse_out_header *)f->reply)->error, -EINVAL);
	/* A reply buffer with no room for a header gets nothing written. */
	memset(tiny, 0x5a, sizeof(tiny));
	oiov = (struct iovec){ tiny, sizeof(tiny) };
	riov = (struct iovec){ &h, sizeof(h) };
	h.len = sizeof(h);
	assert_int_equal(fuse_server_handle(f->srv, &riov, 1, &oiov, 1), 0);
	for (size_t i = 0; i < sizeof(tiny); i++)
		assert_int_equal(tiny[i], 0x5a);
	/* A name without its NUL, arguments shorter than the opcode's struct. */
	p = (struct part){ "f", 1 };
	assert_int_equal(call_iov(f, FUSE_LOOKUP, FUSE_ROOT_ID, &p, 1, 4096, 0), -EINVAL);
	p = (struct part){ &ga, 4 };
	assert_int_equal(call_iov(f, FUSE_GETATTR, id, &p, 1, 4096, 0), -EINVAL);
	/* Unknown opcodes. */
	assert_int_equal(call(f, 0, id, NONE, NONE, NONE), -ENOSYS);
	assert_int_equal(call(f, FUSE_IOCTL, id, NONE, NONE, NONE), -ENOSYS);
	assert_int_equal(call(f, 99999, id, NONE, NONE, NONE), -ENOSYS);
	assert_int_equal(call(f, FUSE_INIT_BSWAP_RESERVED, id, NONE, NONE, NONE), -ENOSYS);
	/* Bogus nodeids and handles. */
	assert_int_equal(call(f, FUSE_GETATTR, 0, P(ga), NONE, NONE), -ENOENT);
	assert_int_equal(call(f, FUSE_GETATTR, 77777, P(ga), NONE, NONE), -ENOENT);
	assert_int_equal(call(f, FUSE_GETATTR, ~0ull, P(ga), NONE, NONE), -ENOENT);
	assert_int_equal(call(f, FUSE_GETATTR, id ^ (1ull << 40), P(ga), NONE, NONE), -ENOENT);
	rd.fh = 12345;
	rd.size = 10;
	p = P(rd);
	assert_int_equal(call_iov(f, FUSE_READ, 0, &p, 1, 4096, 0), -EBADF);
	/* A huge READ reads what the guest's buffers hold, no more. */
	fh = open_file(f, id, O_RDONLY, &err);
	assert_int_equal(err, 0);
	assert_int_equal(read_at(f, fh, 0, UINT32_MAX, 16 + 4), 4);
	assert_memory_equal(f->body, "0123", 4);
	assert_int_equal(read_at(f, fh, UINT64_MAX, 10, 4096), -EINVAL);
	/* A WRITE whose size is past the data sent. */
	wr.fh = fh;
	assert_int_equal(call(f, FUSE_WRITE, 0, P(wr), (struct part){ "abc", 3 }, NONE), -EINVAL);
	/* A directory handle is not a file handle, and the reverse. */
	rd.fh = fh;
	rd.size = 4096;
	assert_int_equal(call(f, FUSE_READDIR, id, P(rd), NONE, NONE), -ENOTDIR);
	release(f, fh);
	assert_int_equal(call(f, FUSE_RELEASE, 0, P(rd), NONE, NONE), -EBADF);
}

static void test_create_refuses_a_missing_root_or_a_file_with_one_line(void **state)
{
	struct fx *f = *state;
	struct fuse_server_config cfg = { f->canary, false, 0, 0 };
	struct fuse_server *srv = (void *)1;
	char err[256] = "", want[PATH_MAX + 64];

	assert_int_equal(fuse_server_create(&srv, &cfg, err, sizeof(err)), -ENOTDIR);
	assert_null(srv);
	snprintf(want, sizeof(want), "%s: not a directory", f->canary);
	assert_string_equal(err, want);
	cfg.root = share_path(f, "missing");
	assert_int_equal(fuse_server_create(&srv, &cfg, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", cfg.root);
	assert_string_equal(err, want);
}

static void test_destroy_closes_every_inode_and_handle_the_guest_held(void **state)
{
	struct fx *f = *state;
	struct fuse_getattr_in ga = { 0 };
	uint64_t id, fh, dfh;
	int err, fds;

	do_init(f);
	host_write(f, "f", "0123");
	fds = count_fds();
	id = lookup(f, FUSE_ROOT_ID, "f", NULL);
	fh = open_file(f, id, O_RDONLY, &err);
	assert_int_equal(err, 0);
	dfh = opendir_(f, FUSE_ROOT_ID);
	assert_int_equal(count_fds(), fds + 3);
	assert_int_equal(call(f, FUSE_DESTROY, 0, NONE, NONE, NONE), 0);
	assert_int_equal(count_fds(), fds);
	assert_int_equal(call(f, FUSE_GETATTR, id, P(ga), NONE, NONE), -ENOENT);
	assert_int_equal(read_at(f, fh, 0, 4, 4096), -EBADF);
	assert_int_equal(read_at(f, dfh, 0, 4, 4096), -EBADF);
	/* The root stays, for the INIT of a new mount. */
	do_init(f);
	assert_int_equal(call(f, FUSE_GETATTR, FUSE_ROOT_ID, P(ga), NONE, NONE), 0);
	assert_true(lookup(f, FUSE_ROOT_ID, "f", NULL) > FUSE_ROOT_ID);
}

struct worker {
	struct fx *f;
	int n;
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct fuse_server *srv = w->f->srv;
	char name[32];

	snprintf(name, sizeof(name), "t%d", w->n);
	for (int i = 0; i < 200; i++) {
		uint8_t req[512] __attribute__((aligned(8))), rep[4096] __attribute__((aligned(8)));
		struct fuse_in_header *h = (void *)req;
		struct fuse_out_header *o = (void *)rep;
		struct fuse_entry_out e;
		struct iovec ri = { req, 0 }, oi = { rep, sizeof(rep) };
		size_t nl = strlen(name) + 1;

		/* LOOKUP then FORGET of a shared name and of the thread's own. */
		*h = (struct fuse_in_header){ .len = sizeof(*h) + nl,
					      .opcode = FUSE_LOOKUP,
					      .nodeid = FUSE_ROOT_ID };
		memcpy(req + sizeof(*h), i % 2 ? name : "shared", i % 2 ? nl : 7);
		h->len = sizeof(*h) + (i % 2 ? nl : 7);
		ri.iov_len = h->len;
		if (fuse_server_handle(srv, &ri, 1, &oi, 1) != sizeof(*o) + sizeof(e) || o->error) {
			w->failures++;
			continue;
		}
		memcpy(&e, rep + sizeof(*o), sizeof(e));
		/* OPEN, READ and RELEASE it while the other threads do the same. */
		{
			struct fuse_open_in oin = { .flags = O_RDONLY };
			struct fuse_read_in rin = { .size = 1 };
			struct fuse_release_in rel = { 0 };
			struct fuse_open_out oo;

			*h = (struct fuse_in_header){ .len = sizeof(*h) + sizeof(oin),
						      .opcode = FUSE_OPEN,
						      .nodeid = e.nodeid };
			memcpy(req + sizeof(*h), &oin, sizeof(oin));
			ri.iov_len = h->len;
			if (fuse_server_handle(srv, &ri, 1, &oi, 1) != sizeof(*o) + sizeof(oo) ||
			    o->error) {
				w->failures++;
				continue;
			}
			memcpy(&oo, rep + sizeof(*o), sizeof(oo));
			rin.fh = rel.fh = oo.fh;
			*h = (struct fuse_in_header){ .len = sizeof(*h) + sizeof(rin),
						      .opcode = FUSE_READ };
			memcpy(req + sizeof(*h), &rin, sizeof(rin));
			ri.iov_len = h->len;
			if (fuse_server_handle(srv, &ri, 1, &oi, 1) != sizeof(*o) + (i % 2 ? 0 : 1))
				w->failures++;
			*h = (struct fuse_in_header){ .len = sizeof(*h) + sizeof(rel),
						      .opcode = FUSE_RELEASE };
			memcpy(req + sizeof(*h), &rel, sizeof(rel));
			ri.iov_len = h->len;
			if (fuse_server_handle(srv, &ri, 1, &oi, 1) != sizeof(*o) || o->error)
				w->failures++;
		}
		*h = (struct fuse_in_header){ .len = sizeof(*h) + 8,
					      .opcode = FUSE_FORGET,
					      .nodeid = e.nodeid };
		memset(req + sizeof(*h), 0, 8);
		req[sizeof(*h)] = 1;
		ri.iov_len = h->len;
		fuse_server_handle(srv, &ri, 1, &oi, 1);
	}
	return NULL;
}

static void test_requests_from_several_threads_at_once(void **state)
{
	struct fx *f = *state;
	struct worker w[4];
	pthread_t t[4];
	char name[32];
	int fds0;

	do_init(f);
	host_write(f, "shared", "s");
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		host_write(f, name, "");
	}
	fds0 = count_fds();
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ f, i, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	/* Every lookup was forgotten: each inode's descriptor is closed again. */
	assert_int_equal(count_fds(), fds0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
		T(test_init_answers_the_shared_minor_and_only_flags_it_implements),
		T(test_lookup_and_getattr_report_the_host_file),
		T(test_create_write_read_release_round_trip),
		T(test_mkdir_rename_link_symlink_readlink_unlink_rmdir),
		T(test_setattr_truncates_chmods_chowns_and_sets_times),
		T(test_xattrs_set_get_list_remove),
		T(test_readdir_and_readdirplus_pack_many_entries_across_calls),
		T(test_readdir_while_unlinking_never_seeks_back),
		T(test_statfs_fallocate_lseek_fsync_flush),
		T(test_copy_file_range_copies_between_handles),
		T(test_ro_share_refuses_every_change_with_erofs),
		T(test_names_with_slash_dot_or_dotdot_are_refused_before_lookup),
		T(test_absolute_symlink_to_outside_is_never_followed),
		T(test_relative_symlink_climbing_out_is_never_followed),
		T(test_proc_magic_links_are_never_followed),
		T(test_hard_link_made_on_the_host_reads_only_its_own_file),
		T(test_mknod_of_a_device_is_refused_and_host_fifos_are_never_opened),
		T(test_forget_of_unknown_or_overcounted_inodes_is_harmless),
		T(test_handle_and_inode_bounds_refuse_more_and_hold_nkvm_fds),
		T(test_malformed_requests_get_an_error_reply),
		T(test_create_refuses_a_missing_root_or_a_file_with_one_line),
		T(test_destroy_closes_every_inode_and_handle_the_guest_held),
		T(test_requests_from_several_threads_at_once),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
