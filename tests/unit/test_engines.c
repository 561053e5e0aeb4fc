// SPDX-License-Identifier: MIT
/*
 * The I/O engines (threads, aio, io_uring) under one disk, through each path a device takes:
 * disk_submit, a per-queue context (disk_queue_*: a ring per queue with io_uring, an AIO context
 * with aio), and, for aio on a buffered file, which disk_open does not choose, the engine itself. Every behaviour test
 * runs once per variant (engine x buffered/O_DIRECT x path) on files in a temporary directory,
 * and some on small file systems mounted for the test in a private mount namespace when this
 * runs as root: tmpfs (ENOSPC), ext4 on a loop device (flushes reaching the device, I/O errors
 * after a forced shutdown). Where that is not possible they skip and say why.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>
#include <libaio.h>
#include <liburing.h>

#include "fixture.h"
#include "block/disk.h"
#include "block/engine.h"
#include "block/engine_helpers.h"
#include "block/format.h"
#include "lib/file.h"
#include "lib/spawn.h"
#include "lib/util.h"

#ifndef EXT4_IOC_SHUTDOWN
#define EXT4_IOC_SHUTDOWN _IOR('X', 125, uint32_t)
#endif
#define EXT4_GOING_FLAGS_NOLOGFLUSH 0x2

#define WATCHDOG_SECONDS 60

/* --- variants ------------------------------------------------------------------------------ */

/* VIA_QUEUE_WAIT: a queue context whose owner sleeps in disk_queue_wait instead of polling. */
enum via { VIA_DISK, VIA_QUEUE, VIA_QUEUE_WAIT, VIA_ENGINE };

struct variant {
	const char *name;
	enum disk_engine_kind engine;
	bool direct;
	enum via via;
};

static const struct variant variants[] = {
	{ "threads", DISK_ENGINE_THREADS, false, VIA_DISK },
	{ "threads, O_DIRECT", DISK_ENGINE_THREADS, true, VIA_DISK },
	{ "threads, queue context", DISK_ENGINE_THREADS, false, VIA_QUEUE },
	{ "threads, O_DIRECT, queue context", DISK_ENGINE_THREADS, true, VIA_QUEUE },
	{ "aio engine on a buffered file", DISK_ENGINE_AIO, false, VIA_ENGINE },
	{ "aio, O_DIRECT", DISK_ENGINE_AIO, true, VIA_DISK },
	{ "aio, O_DIRECT, queue context", DISK_ENGINE_AIO, true, VIA_QUEUE },
	{ "aio, O_DIRECT, queue context, waiting in it", DISK_ENGINE_AIO, true, VIA_QUEUE_WAIT },
	{ "io_uring", DISK_ENGINE_IO_URING, false, VIA_DISK },
	{ "io_uring, O_DIRECT", DISK_ENGINE_IO_URING, true, VIA_DISK },
	{ "io_uring, queue ring", DISK_ENGINE_IO_URING, false, VIA_QUEUE },
	{ "io_uring, O_DIRECT, queue ring", DISK_ENGINE_IO_URING, true, VIA_QUEUE },
	{ "io_uring, queue ring, waiting in it", DISK_ENGINE_IO_URING, false, VIA_QUEUE_WAIT },
	{ "io_uring, O_DIRECT, queue ring, waiting in it", DISK_ENGINE_IO_URING, true,
	  VIA_QUEUE_WAIT },
};

static const struct io_engine_ops *engine_ops(enum disk_engine_kind k)
{
	return k == DISK_ENGINE_AIO	 ? &io_engine_aio :
	       k == DISK_ENGINE_IO_URING ? &io_engine_uring :
					   &io_engine_threads;
}

/*
 * Whether this host gives the engine what it needs (an io_uring, an AIO context), asked of the
 * kernel directly: a variant may be skipped for a missing engine only where the host lacks it,
 * so an engine that falls back by its own fault fails its tests instead of skipping them.
 * NKVM_IO_URING_DISABLE / NKVM_AIO_DISABLE, the tests' own switches, count as lacking it.
 */
static bool host_has_engine(enum disk_engine_kind k)
{
	if (k == DISK_ENGINE_IO_URING) {
		struct io_uring ring;

		if (getenv("NKVM_IO_URING_DISABLE") || io_uring_queue_init(2, &ring, 0))
			return false;
		io_uring_queue_exit(&ring);
		return true;
	}
	if (k == DISK_ENGINE_AIO) {
		io_context_t ctx = 0;

		if (getenv("NKVM_AIO_DISABLE") || io_setup(1, &ctx))
			return false;
		io_destroy(ctx);
	}
	return true;
}

/* --- fixture: a temporary directory, and file systems mounted for a test ------------------- */

/* Set in main: mounting is possible (root, private mount namespace), or why not. */
static bool can_mount;
static char no_mount_why[160];

struct fx {
	const struct variant *v;
	char dir[PATH_MAX];
	char mnt[PATH_MAX]; /* a file system mounted for the test, or "" */
	int loop_fd; /* holds the loop device under mnt, or -1 */
	char loop_name[32]; /* "loop3" */
	/* Buffers of the test, freed by the teardown: a skip() leaves the test by longjmp. */
	void *allocs[16];
	unsigned int nr_allocs;
};

static bool dir_takes_direct(const char *dir)
{
	char path[PATH_MAX];
	int fd;

	if (file_path(path, sizeof(path), "%s/.direct-probe", dir))
		return false;
	fd = open(path, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	unlink(path);
	return fd >= 0;
}

/* A fresh directory under $TMPDIR or /tmp, or /var/tmp when O_DIRECT is wanted and /tmp refuses. */
static int fx_setup(void **state)
{
	const char *bases[] = { getenv("TMPDIR"), "/tmp", "/var/tmp" };
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->v = *state;
	fx->loop_fd = -1;
	for (unsigned int i = 0; i < ARRAY_SIZE(bases); i++) {
		if (!bases[i] || !*bases[i])
			continue;
		if (fx_dir_make(fx->dir, sizeof(fx->dir), bases[i], "engines"))
			continue;
		if (!fx->v || !fx->v->direct || dir_takes_direct(fx->dir))
			break;
		rmdir(fx->dir);
		fx->dir[0] = 0;
	}
	if (!fx->dir[0]) {
		free(fx);
		return -1;
	}
	alarm(WATCHDOG_SECONDS);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	alarm(0);
	for (unsigned int i = 0; i < fx->nr_allocs; i++)
		free(fx->allocs[i]);
	if (fx->mnt[0] && umount(fx->mnt))
		umount2(fx->mnt, MNT_DETACH);
	if (fx->loop_fd >= 0)
		close(fx->loop_fd);
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

/* Into buf, which the caller keeps; on the test's file system when it mounted one. */
static const char *fx_path(struct fx *fx, const char *name, char *buf)
{
	return strcpy(buf, fx_dir_path(fx->mnt[0] ? fx->mnt : fx->dir, name));
}

static void skip_unless_mount(const char *what)
{
	if (!can_mount) {
		print_message("%s: skipped, cannot mount file systems here (%s)\n", what,
			      no_mount_why);
		skip();
	}
}

/* tmpfs of `size` at <dir>/mnt: images made with fx_path then live on it. */
static void fx_mount_tmpfs(struct fx *fx, const char *what, const char *opts)
{
	skip_unless_mount(what);
	assert_int_equal(file_path(fx->mnt, sizeof(fx->mnt), "%s/mnt", fx->dir), 0);
	assert_int_equal(mkdir(fx->mnt, 0700), 0);
	if (mount("tmpfs", fx->mnt, "tmpfs", 0, opts)) {
		print_message("%s: skipped, cannot mount a tmpfs (%s)\n", what, strerror(errno));
		fx->mnt[0] = 0;
		skip();
	}
}

/* A loop device over backing: a descriptor holding it (detached on its last close), or -errno. */
static int loop_attach(const char *backing, char *name, size_t len)
{
	struct loop_info64 info = { .lo_flags = LO_FLAGS_AUTOCLEAR };
	char dev[64];
	int ctl, nr, fd = -1, bfd, err = -EBUSY;

	bfd = open(backing, O_RDWR | O_CLOEXEC);
	if (bfd < 0)
		return -errno;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		err = -errno;
		close(bfd);
		return err;
	}
	/* Another test binary may take the free device between asking and attaching: retry. */
	for (int tries = 0; tries < 20 && fd < 0; tries++) {
		nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0) {
			err = -errno;
			break;
		}
		snprintf(dev, sizeof(dev), "/dev/loop%d", nr);
		fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		if (ioctl(fd, LOOP_SET_FD, bfd) == 0)
			break;
		err = -errno;
		close(fd);
		fd = -1;
	}
	close(ctl);
	close(bfd);
	if (fd < 0)
		return err;
	if (ioctl(fd, LOOP_SET_STATUS64, &info)) {
		err = -errno;
		ioctl(fd, LOOP_CLR_FD, 0);
		close(fd);
		return err;
	}
	snprintf(name, len, "loop%d", nr);
	return fd;
}

/*
 * ext4 (64 MiB, made with mkfs.ext4) on a loop device at <dir>/mnt, mounted with a long commit
 * interval so that the journal issues no flush of its own while a test counts them.
 */
static void fx_mount_ext4(struct fx *fx, const char *what)
{
	char img[PATH_MAX], dev[64];
	char *mkfs[] = { "mkfs.ext4", "-q", "-F", img, NULL };
	int fd, st;

	skip_unless_mount(what);
	assert_int_equal(file_path(img, sizeof(img), "%s/ext4.img", fx->dir), 0);
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 * MiB), 0);
	close(fd);
	st = spawn_run(mkfs, NULL, NULL, NULL);
	if (st == -ENOENT) {
		char *sbin[] = { "/sbin/mkfs.ext4", "-q", "-F", img, NULL };

		st = spawn_run(sbin, NULL, NULL, NULL);
	}
	if (st) {
		print_message("%s: skipped, mkfs.ext4 failed (%d)\n", what, st);
		skip();
	}
	fx->loop_fd = loop_attach(img, fx->loop_name, sizeof(fx->loop_name));
	if (fx->loop_fd < 0) {
		print_message("%s: skipped, cannot set up a loop device (%s)\n", what,
			      strerror(-fx->loop_fd));
		skip();
	}
	assert_int_equal(file_path(fx->mnt, sizeof(fx->mnt), "%s/mnt", fx->dir), 0);
	assert_int_equal(mkdir(fx->mnt, 0700), 0);
	snprintf(dev, sizeof(dev), "/dev/%s", fx->loop_name);
	if (mount(dev, fx->mnt, "ext4", 0, "commit=300")) {
		print_message("%s: skipped, cannot mount ext4 (%s)\n", what, strerror(errno));
		fx->mnt[0] = 0;
		skip();
	}
}

/* Flush requests the loop device under the test's ext4 completed (/sys/block/X/stat, field 16). */
static long loop_flushes(struct fx *fx)
{
	char path[PATH_MAX], text[512];
	long f[17];
	ssize_t len;
	int fd, n;

	if (file_path(path, sizeof(path), "/sys/block/%s/stat", fx->loop_name))
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	len = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (len <= 0)
		return -1;
	text[len] = 0;
	n = sscanf(text, "%ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld",
		   &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10],
		   &f[11], &f[12], &f[13], &f[14], &f[15], &f[16]);
	return n == 17 ? f[15] : -1;
}

/* --- data ----------------------------------------------------------------------------------- */

static uint64_t rnd_state;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Bytes that differ per seed and per position, so a misplaced block cannot pass for another. */
static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = x >> 56;
	}
}

static bool all_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i])
			return false;
	}
	return true;
}

/* Page-aligned (O_DIRECT takes any such buffer) and zeroed. */
static void *xalloc(size_t len)
{
	void *p = aligned_alloc(4096, ALIGN_UP(len ? len : 1, 4096));

	assert_non_null(p);
	memset(p, 0, len);
	return p;
}

/* xalloc, freed by the teardown. */
static void *fx_alloc(struct fx *fx, size_t len)
{
	void *p = xalloc(len);

	assert_true(fx->nr_allocs < ARRAY_SIZE(fx->allocs));
	fx->allocs[fx->nr_allocs++] = p;
	return p;
}

/* An image of size bytes holding `data` (or sparse zeroes when NULL), all on disk. */
static void img_make(const char *path, uint64_t size, const uint8_t *data)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	if (data)
		assert_int_equal(write_all(fd, data, size), 0);
	else
		assert_int_equal(ftruncate(fd, size), 0);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

static void img_assert_equals(const char *path, const uint8_t *want, size_t len)
{
	uint8_t *got;
	size_t got_len;

	assert_int_equal(read_file(path, &got, &got_len), 0);
	assert_int_equal(got_len, len);
	for (size_t i = 0; i < len; i++) {
		if (got[i] != want[i])
			fail_msg("%s: byte %zu is %#x, not %#x", path, i, got[i], want[i]);
	}
	free(got);
}

/* --- targets: a disk (or a bare engine) and the contexts requests are submitted from --------- */

struct tgt;

/* Where a thread submits from: its own queue context (VIA_QUEUE), else the disk or engine. */
struct ctx {
	struct tgt *t;
	struct disk_queue *q;
	int fd; /* the context's poll descriptor, or -1 */
	int wake_fd; /* VIA_QUEUE_WAIT: the owner's own eventfd, or -1 */
};

struct tgt {
	struct fx *fx;
	const struct variant *v;
	struct disk *d;
	/* VIA_ENGINE: the file and engine, without a disk. */
	struct io_file file;
	struct io_engine *e;
	uint32_t align; /* of offsets, lengths, buffers: 1 or a block */
	struct ctx main; /* the test thread's */
};

/* Completions counted, for waiting on a batch. */
struct tally {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int done;
};

struct io {
	struct disk_request req;
	struct tally *ty;
	atomic_int calls;
	int status;
	struct iovec iov[4];
	struct ctx *c; /* for done to submit `next` through */
	struct io *next;
	pthread_t thread; /* the one done ran on */
};

static void tally_init(struct tally *ty)
{
	pthread_mutex_init(&ty->lock, NULL);
	pthread_cond_init(&ty->cond, NULL);
	ty->done = 0;
}

static void tally_destroy(struct tally *ty)
{
	pthread_cond_destroy(&ty->cond);
	pthread_mutex_destroy(&ty->lock);
}

static unsigned int tally_count(struct tally *ty)
{
	unsigned int n;

	pthread_mutex_lock(&ty->lock);
	n = ty->done;
	pthread_mutex_unlock(&ty->lock);
	return n;
}

static void ctx_submit(struct ctx *c, struct disk_request *req);

static void io_done(struct disk_request *req, int status)
{
	struct io *io = (struct io *)req;
	struct tally *ty = io->ty;

	io->status = status;
	io->thread = pthread_self();
	atomic_fetch_add(&io->calls, 1);
	/* A chain: the next request goes out from inside this done. */
	if (io->next)
		ctx_submit(io->c, &io->next->req);
	pthread_mutex_lock(&ty->lock);
	ty->done++;
	pthread_cond_broadcast(&ty->cond);
	pthread_mutex_unlock(&ty->lock);
}

static void io_init(struct io *io, struct tally *ty, enum disk_op op, uint64_t off, uint64_t len)
{
	memset(io, 0, sizeof(*io));
	io->req = (struct disk_request){ .op = op, .offset = off, .len = len, .done = io_done };
	io->ty = ty;
	io->status = 1;
}

/* Gives the request one buffer. */
static void io_buf(struct io *io, void *buf, size_t len)
{
	io->iov[0] = (struct iovec){ buf, len };
	io->req.iov = io->iov;
	io->req.iovcnt = 1;
}

/* Opens the calling thread's context: a queue context with VIA_QUEUE (the thread owns it). */
static void ctx_open(struct ctx *c, struct tgt *t)
{
	char why[DISK_ERR_MAX];
	int err;

	c->t = t;
	c->q = NULL;
	c->fd = -1;
	c->wake_fd = -1;
	if (t->v->via != VIA_QUEUE && t->v->via != VIA_QUEUE_WAIT)
		return;
	if (t->v->via == VIA_QUEUE_WAIT) {
		c->wake_fd = eventfd(0, EFD_CLOEXEC);
		assert_true(c->wake_fd >= 0);
	}
	err = disk_queue_open(t->d, &c->q, &c->fd, why, sizeof(why));
	if (err)
		fail_msg("disk_queue_open: %s: %s", why, strerror(-err));
	assert_non_null(c->q);
	/*
	 * io_uring has a ring per context, aio a kernel AIO context, the threads engine through
	 * the page cache a hand-back list; with O_DIRECT it passes requests to disk_submit.
	 */
	if (t->v->engine != DISK_ENGINE_THREADS || !t->v->direct)
		assert_true(c->fd >= 0);
	else
		assert_int_equal(c->fd, -1);
}

static void ctx_close(struct ctx *c)
{
	disk_queue_close(c->q);
	c->q = NULL;
	c->fd = -1;
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	c->wake_fd = -1;
}

static void ctx_submit(struct ctx *c, struct disk_request *req)
{
	struct tgt *t = c->t;
	int ret;

	if (c->q) {
		disk_queue_submit(c->q, req);
	} else if (t->d) {
		disk_submit(t->d, req);
	} else {
		/* The engine's own contract: a status returned now is for the caller to pass on. */
		ret = engine_ops(t->v->engine)->submit(t->e, req);
		if (ret != IO_QUEUED)
			req->done(req, ret);
	}
}

/* Waits until ty counts n; a queue context's owner reaps its completions meanwhile. */
static void ctx_wait(struct ctx *c, struct tally *ty, unsigned int n)
{
	if (c->q && c->wake_fd >= 0) {
		/* Sleeps in the ring; every request here went through it, so each ends a wait. */
		while (tally_count(ty) < n)
			assert_true(disk_queue_wait(c->q, c->wake_fd) >= 0);
		return;
	}
	if (c->q && c->fd >= 0) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };

		for (;;) {
			disk_queue_poll(c->q);
			if (tally_count(ty) >= n)
				return;
			poll(&p, 1, 1000);
		}
	}
	pthread_mutex_lock(&ty->lock);
	while (ty->done < n)
		pthread_cond_wait(&ty->cond, &ty->lock);
	pthread_mutex_unlock(&ty->lock);
}

/* Opens path as the variant says; skips when O_DIRECT or the engine is not available. */
static void tgt_open(struct tgt *t, struct fx *fx, const char *path)
{
	const struct variant *v = fx->v;
	struct disk_options o = { .path = path, .direct = v->direct, .engine = v->engine };
	char why[DISK_ERR_MAX];
	int err;

	memset(t, 0, sizeof(*t));
	t->fx = fx;
	t->v = v;
	t->align = 1;
	if (v->via == VIA_ENGINE) {
		struct io_engine_config cfg = { 0 };

		t->file.fd = open(path, O_RDWR | O_CLOEXEC | (v->direct ? O_DIRECT : 0));
		assert_true(t->file.fd >= 0);
		err = engine_ops(v->engine)->create(&t->e, &t->file, &cfg, why, sizeof(why));
		if (err) {
			/* A host without the engine (io_setup refused): nothing to test here. */
			if (host_has_engine(v->engine))
				fail_msg("%s: %s: %s, although this host has the engine", v->name,
					 why, strerror(-err));
			print_message("%s: skipped, %s: %s\n", v->name, why, strerror(-err));
			close(t->file.fd);
			skip();
		}
		ctx_open(&t->main, t);
		return;
	}
	err = disk_open(&t->d, &o, why, sizeof(why));
	if (err == -EINVAL && v->direct) {
		print_message("%s: skipped, %s refuses O_DIRECT\n", v->name, path);
		skip();
	}
	if (err)
		fail_msg("%s: %s: %s", path, why, strerror(-err));
	if (disk_notice(t->d)) {
		if (host_has_engine(v->engine))
			fail_msg("%s: %s, although this host has the engine", v->name,
				 disk_notice(t->d));
		print_message("%s: skipped, %s\n", v->name, disk_notice(t->d));
		disk_close(t->d);
		skip();
	}
	assert_string_equal(disk_engine_name(t->d), engine_ops(v->engine)->name);
	if (v->direct)
		t->align = disk_block_size(t->d);
	ctx_open(&t->main, t);
}

/*
 * A context with a per-queue path drains its own requests and closes before the disk; one
 * without passes requests to the disk and does not track them, so it closes after the disk
 * has drained them: their done callbacks may still submit through it until then.
 */
static void tgt_close(struct tgt *t)
{
	if (t->main.fd >= 0)
		ctx_close(&t->main);
	if (t->d) {
		disk_close(t->d);
	} else {
		engine_ops(t->v->engine)->destroy(t->e);
		close(t->file.fd);
	}
	ctx_close(&t->main);
}

/* One request from the test thread's context, waited for; returns its status. */
static int c_io(struct ctx *c, enum disk_op op, uint64_t off, const struct iovec *iov,
		unsigned int cnt, uint64_t len)
{
	struct tally ty;
	struct io io;
	int status;

	tally_init(&ty);
	io_init(&io, &ty, op, off, len);
	io.req.iov = iov;
	io.req.iovcnt = cnt;
	ctx_submit(c, &io.req);
	ctx_wait(c, &ty, 1);
	assert_int_equal(atomic_load(&io.calls), 1);
	status = io.status;
	tally_destroy(&ty);
	return status;
}

static int t_rw(struct tgt *t, enum disk_op op, uint64_t off, void *buf, size_t len)
{
	struct iovec iov = { buf, len };

	return c_io(&t->main, op, off, &iov, 1, 0);
}

static int t_range(struct tgt *t, enum disk_op op, uint64_t off, uint64_t len)
{
	return c_io(&t->main, op, off, NULL, 0, len);
}

/* --- behaviour, per variant ------------------------------------------------------------------ */

#define RIO_SIZE (8 * MiB)
#define RIO_INFLIGHT 16
#define RIO_MAX (128 * KiB)
#define RIO_ROUNDS 24

/* A random length in [1, max] (or in whole blocks), and an offset for it in [lo, lo + span). */
static uint64_t rnd_len(uint64_t max, uint32_t align)
{
	uint64_t len = 1 + rnd() % max;

	return align > 1 ? ALIGN_UP(len, (uint64_t)align) : len;
}

/*
 * Rounds of up to 16 reads and writes in flight, of random sizes at random offsets (odd ones
 * when buffered), split into up to 4 segments (empty ones too when buffered), with a flush among
 * them now and then; reads checked against an in-memory model, and the file at the end.
 */
static void test_engine_random_io_matches_model(void **state)
{
	struct fx *fx = *state;
	uint8_t *model = fx_alloc(fx, RIO_SIZE), *bufs = fx_alloc(fx, RIO_INFLIGHT * RIO_MAX);
	struct io *ios = fx_alloc(fx, (RIO_INFLIGHT + 1) * sizeof(*ios));
	const uint64_t region = RIO_SIZE / RIO_INFLIGHT;
	char path[PATH_MAX];
	struct tally ty;
	struct tgt t;

	rnd_state = 0x1234 + fx->v->engine;
	fill(model, RIO_SIZE, 7);
	img_make(fx_path(fx, "rio.img", path), RIO_SIZE, model);
	tgt_open(&t, fx, path);
	tally_init(&ty);
	for (int round = 0; round < RIO_ROUNDS; round++) {
		unsigned int n = RIO_INFLIGHT;

		ty.done = 0;
		for (unsigned int i = 0; i < RIO_INFLIGHT; i++) {
			struct io *io = &ios[i];
			uint8_t *buf = bufs + i * RIO_MAX;
			uint64_t len = rnd_len(RIO_MAX - 4096, t.align);
			uint64_t off = i * region + rnd() % (region - len);
			unsigned int nseg = 1 + rnd() % 4;
			bool write = rnd() & 1;
			uint64_t left = len, at = 0;

			off = ALIGN_DOWN(off, (uint64_t)t.align);
			io_init(io, &ty, write ? DISK_WRITE : DISK_READ, off, 0);
			/* The last segment takes the rest; buffered ones start at odd addresses. */
			for (unsigned int s = 0; s < nseg; s++) {
				uint64_t seg = s + 1 == nseg ? left :
							       ALIGN_DOWN(rnd() % (left + 1),
									  (uint64_t)t.align);

				if (t.align == 1 && s == 0)
					at = rnd() % 64;
				io->iov[s] = (struct iovec){ buf + at, seg };
				at += seg;
				left -= seg;
			}
			io->req.iov = io->iov;
			io->req.iovcnt = nseg;
			if (write) {
				for (unsigned int s = 0; s < nseg; s++)
					fill(io->iov[s].iov_base, io->iov[s].iov_len, rnd());
				for (unsigned int s = 0, o = 0; s < nseg;
				     o += io->iov[s].iov_len, s++)
					memcpy(model + off + o, io->iov[s].iov_base,
					       io->iov[s].iov_len);
			}
		}
		if (round % 4 == 3) {
			io_init(&ios[RIO_INFLIGHT], &ty, DISK_FLUSH, 0, 0);
			n++;
		}
		for (unsigned int i = 0; i < n; i++)
			ctx_submit(&t.main, &ios[i].req);
		ctx_wait(&t.main, &ty, n);
		for (unsigned int i = 0; i < n; i++) {
			struct io *io = &ios[i];

			assert_int_equal(atomic_load(&io->calls), 1);
			assert_int_equal(io->status, 0);
			if (io->req.op != DISK_READ)
				continue;
			for (unsigned int s = 0, o = 0; s < io->req.iovcnt;
			     o += io->iov[s].iov_len, s++)
				assert_memory_equal(io->iov[s].iov_base, model + io->req.offset + o,
						    io->iov[s].iov_len);
		}
	}
	tgt_close(&t);
	img_assert_equals(path, model, RIO_SIZE);
	tally_destroy(&ty);
}

/* More segments than one system call takes (IOV_MAX): the engine goes on with the rest. */
static void test_engine_more_segments_than_iov_max(void **state)
{
	enum { SEGS = IOV_MAX + 476, SEG = 512 };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, SEGS * SEG), *got = fx_alloc(fx, SEGS * SEG);
	struct iovec *iov = fx_alloc(fx, SEGS * sizeof(*iov));
	char path[PATH_MAX];
	struct tgt t;

	img_make(fx_path(fx, "iov.img", path), SEGS * SEG + 4096, NULL);
	tgt_open(&t, fx, path);
	fill(data, SEGS * SEG, 31);
	for (int i = 0; i < SEGS; i++)
		iov[i] = (struct iovec){ data + i * SEG, SEG };
	assert_int_equal(c_io(&t.main, DISK_WRITE, 0, iov, SEGS, 0), 0);
	for (int i = 0; i < SEGS; i++)
		iov[i] = (struct iovec){ got + i * SEG, SEG };
	assert_int_equal(c_io(&t.main, DISK_READ, 0, iov, SEGS, 0), 0);
	assert_memory_equal(got, data, SEGS * SEG);
	tgt_close(&t);
}

/*
 * A file that shrank behind the disk's back: a read that meets its end stops short (here in the
 * middle of a segment) and then gets nothing, which is -EIO; one wholly past it too. The engine
 * still serves what is inside.
 */
static void test_engine_read_past_end_of_file_is_eio(void **state)
{
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, 1 * MiB), *got = fx_alloc(fx, 64 * KiB);
	char path[PATH_MAX];
	struct iovec iov[3];
	uint64_t end;
	struct tgt t;

	fill(data, 1 * MiB, 41);
	img_make(fx_path(fx, "short.img", path), 1 * MiB, data);
	tgt_open(&t, fx, path);
	end = t.align > 1 ? 512 * KiB : 512 * KiB + 700;
	assert_int_equal(truncate(path, end), 0);

	/* Segments around the new end: it falls inside the second. */
	iov[0] = (struct iovec){ got, 8192 };
	iov[1] = (struct iovec){ got + 8192, 16384 };
	iov[2] = (struct iovec){ got + 24576, 8192 };
	assert_int_equal(c_io(&t.main, DISK_READ, 512 * KiB - 12288, iov, 3, 0), -EIO);
	assert_int_equal(t_rw(&t, DISK_READ, 768 * KiB, got, 4096), -EIO);
	assert_int_equal(t_rw(&t, DISK_READ, 256 * KiB, got, 4096), 0);
	assert_memory_equal(got, data + 256 * KiB, 4096);
	tgt_close(&t);
}

/* Writes, then a flush submitted once they completed: it succeeds, and more I/O follows. */
static void test_engine_flush_after_writes(void **state)
{
	enum { N = 8, BS = 64 * KiB };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, N * BS);
	struct io ios[N];
	char path[PATH_MAX];
	struct tally ty;
	struct tgt t;

	img_make(fx_path(fx, "flush.img", path), N * BS, NULL);
	tgt_open(&t, fx, path);
	fill(data, N * BS, 51);
	tally_init(&ty);
	for (int i = 0; i < N; i++) {
		io_init(&ios[i], &ty, DISK_WRITE, i * BS, 0);
		io_buf(&ios[i], data + i * BS, BS);
		ctx_submit(&t.main, &ios[i].req);
	}
	ctx_wait(&t.main, &ty, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(ios[i].status, 0);
	assert_int_equal(t_range(&t, DISK_FLUSH, 0, 0), 0);
	assert_int_equal(t_range(&t, DISK_FLUSH, 0, 0), 0);
	tgt_close(&t);
	img_assert_equals(path, data, N * BS);
	tally_destroy(&ty);
}

static bool fs_punches_holes(const char *dir)
{
	char path[PATH_MAX];
	bool ok;
	int fd;

	assert_int_equal(file_path(path, sizeof(path), "%s/.punch-probe", dir), 0);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	ok = ftruncate(fd, 65536) == 0 &&
	     fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
	close(fd);
	unlink(path);
	return ok;
}

static blkcnt_t blocks_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_blocks;
}

/* A discard punches a hole: the file holds fewer blocks, and the range reads back zeroes. */
static void test_engine_discard_punches_hole(void **state)
{
	enum { SIZE = 4 * MiB };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, SIZE), *got = fx_alloc(fx, SIZE);
	char path[PATH_MAX];
	blkcnt_t before;
	struct tgt t;

	if (!fs_punches_holes(fx->dir)) {
		print_message("discard: skipped, %s cannot punch holes\n", fx->dir);
		skip();
	}
	fill(data, SIZE, 61);
	img_make(fx_path(fx, "discard.img", path), SIZE, data);
	tgt_open(&t, fx, path);
	before = blocks_of(path);
	assert_int_equal(t_range(&t, DISK_DISCARD, 1 * MiB, 2 * MiB), 0);
	assert_true(blocks_of(path) <= before - (blkcnt_t)((2 * MiB) / 512));
	assert_int_equal(t_rw(&t, DISK_READ, 0, got, SIZE), 0);
	assert_memory_equal(got, data, 1 * MiB);
	assert_true(all_zero(got + 1 * MiB, 2 * MiB));
	assert_memory_equal(got + 3 * MiB, data + 3 * MiB, 1 * MiB);
	/* An empty range is nothing to do. */
	assert_int_equal(t_range(&t, DISK_DISCARD, 0, 0), 0);
	tgt_close(&t);
}

/* Write-zeroes over an odd range (whole blocks with O_DIRECT) reads back zeroes, nothing more. */
static void test_engine_write_zeroes_reads_back_zeroes(void **state)
{
	enum { SIZE = 1 * MiB };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, SIZE), *got = fx_alloc(fx, SIZE);
	char path[PATH_MAX];
	uint64_t off, len;
	struct tgt t;

	fill(data, SIZE, 71);
	img_make(fx_path(fx, "zeroes.img", path), SIZE, data);
	tgt_open(&t, fx, path);
	off = t.align > 1 ? 64 * KiB : 1000;
	len = t.align > 1 ? 256 * KiB : 300000;
	assert_int_equal(t_range(&t, DISK_WRITE_ZEROES, off, len), 0);
	memset(data + off, 0, len);
	assert_int_equal(t_rw(&t, DISK_READ, 0, got, SIZE), 0);
	assert_memory_equal(got, data, SIZE);
	tgt_close(&t);
	img_assert_equals(path, data, SIZE);
}

/*
 * Where the file system can neither zero a range nor punch a hole (as the flags say once it
 * answered EOPNOTSUPP), write-zeroes writes zero buffers: on a helper thread for aio and
 * io_uring, whose result comes back to the ring's owner.
 */
static void test_engine_write_zeroes_without_fallocate(void **state)
{
	enum { SIZE = 1 * MiB };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, SIZE), *got = fx_alloc(fx, SIZE);
	struct io_file *f;
	char path[PATH_MAX];
	struct tgt t;

	fill(data, SIZE, 81);
	img_make(fx_path(fx, "nofalloc.img", path), SIZE, data);
	tgt_open(&t, fx, path);
	f = t.d ? &t.d->file : &t.file;
	atomic_store(&f->no_zero_range, true);
	atomic_store(&f->no_punch_hole, true);
	assert_int_equal(t_range(&t, DISK_WRITE_ZEROES, 128 * KiB, 512 * KiB), 0);
	memset(data + 128 * KiB, 0, 512 * KiB);
	/* Discard keeps the data where nothing can be punched: that is allowed. */
	assert_int_equal(t_range(&t, DISK_DISCARD, 0, 64 * KiB), 0);
	assert_int_equal(t_rw(&t, DISK_READ, 0, got, SIZE), 0);
	assert_memory_equal(got, data, SIZE);
	tgt_close(&t);
	/* Written zeroes, not a hole: every block still there. */
	assert_true(blocks_of(path) >= SIZE / 512);
}

/* Several threads submit at once, each from its own context (its own ring with io_uring). */
#define SUBMITTERS 4
#define PER_SUBMITTER 64
#define MANY_BLOCK 4096

struct submitter {
	struct tgt *t;
	unsigned int index;
	uint8_t *data; /* this thread's blocks */
	int failures;
};

static void *submitter_run(void *arg)
{
	struct submitter *s = arg;
	struct io *ios = calloc(PER_SUBMITTER, sizeof(*ios));
	uint8_t *got = xalloc(PER_SUBMITTER * MANY_BLOCK);
	struct tally ty;
	struct ctx c;

	ctx_open(&c, s->t);
	tally_init(&ty);
	for (int pass = 0; pass < 2; pass++) {
		enum disk_op op = pass ? DISK_READ : DISK_WRITE;
		uint8_t *base = pass ? got : s->data;

		ty.done = 0;
		for (unsigned int i = 0; i < PER_SUBMITTER; i++) {
			/* Interleaved blocks: neighbours belong to other threads. */
			uint64_t block = i * SUBMITTERS + s->index;

			io_init(&ios[i], &ty, op, block * MANY_BLOCK, 0);
			io_buf(&ios[i], base + i * MANY_BLOCK, MANY_BLOCK);
			ctx_submit(&c, &ios[i].req);
		}
		ctx_wait(&c, &ty, PER_SUBMITTER);
		for (unsigned int i = 0; i < PER_SUBMITTER; i++) {
			if (atomic_load(&ios[i].calls) != 1 || ios[i].status)
				s->failures++;
		}
	}
	if (memcmp(got, s->data, PER_SUBMITTER * MANY_BLOCK))
		s->failures++;
	ctx_close(&c);
	tally_destroy(&ty);
	free(got);
	free(ios);
	return NULL;
}

static void test_engine_many_submitters_at_once(void **state)
{
	struct fx *fx = *state;
	const size_t size = SUBMITTERS * PER_SUBMITTER * MANY_BLOCK;
	uint8_t *expect = fx_alloc(fx, size);
	struct submitter s[SUBMITTERS];
	pthread_t th[SUBMITTERS];
	char path[PATH_MAX];
	struct tgt t;

	img_make(fx_path(fx, "many.img", path), size, NULL);
	tgt_open(&t, fx, path);
	for (unsigned int i = 0; i < SUBMITTERS; i++) {
		s[i] = (struct submitter){ .t = &t,
					   .index = i,
					   .data = fx_alloc(fx, PER_SUBMITTER * MANY_BLOCK) };
		fill(s[i].data, PER_SUBMITTER * MANY_BLOCK, 100 + i);
		for (unsigned int b = 0; b < PER_SUBMITTER; b++)
			memcpy(expect + (b * SUBMITTERS + i) * MANY_BLOCK,
			       s[i].data + b * MANY_BLOCK, MANY_BLOCK);
	}
	for (unsigned int i = 0; i < SUBMITTERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, submitter_run, &s[i]), 0);
	for (unsigned int i = 0; i < SUBMITTERS; i++)
		pthread_join(th[i], NULL);
	for (unsigned int i = 0; i < SUBMITTERS; i++) {
		assert_int_equal(s[i].failures, 0);
	}
	tgt_close(&t);
	img_assert_equals(path, expect, size);
}

/* done submits the next request of a chain, from wherever done runs. */
static void test_engine_done_submits_next(void **state)
{
	enum { N = 64, BS = 4096 };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, N * BS);
	struct io *ios = fx_alloc(fx, N * sizeof(*ios));
	char path[PATH_MAX];
	struct tally ty;
	struct tgt t;

	img_make(fx_path(fx, "chain.img", path), N * BS, NULL);
	tgt_open(&t, fx, path);
	fill(data, N * BS, 91);
	tally_init(&ty);
	for (int i = 0; i < N; i++) {
		io_init(&ios[i], &ty, DISK_WRITE, (uint64_t)(N - 1 - i) * BS, 0);
		io_buf(&ios[i], data + (N - 1 - i) * BS, BS);
		ios[i].c = &t.main;
		ios[i].next = i + 1 < N ? &ios[i + 1] : NULL;
	}
	ctx_submit(&t.main, &ios[0].req);
	ctx_wait(&t.main, &ty, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&ios[i].calls), 1);
		assert_int_equal(ios[i].status, 0);
	}
	tgt_close(&t);
	img_assert_equals(path, data, N * BS);
	tally_destroy(&ty);
}

/*
 * Requests marked may_wait (a virtqueue's lone request): each engine completes them correctly.
 * The threads engine performs them on the submitting thread with O_DIRECT, so done has run,
 * there, by the time the submission returns; through the page cache, on its shared path, it
 * still hands them to a worker (a queue context completes everything on its owner). Engines
 * that never hand a request to another thread ignore the mark.
 */
static void test_engine_may_wait_requests(void **state)
{
	enum { N = 16, BS = 4096 };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, N * BS), *back = fx_alloc(fx, N * BS);
	bool threads = fx->v->engine == DISK_ENGINE_THREADS && fx->v->via == VIA_DISK;
	bool here = threads && fx->v->direct;
	char path[PATH_MAX];
	struct tally ty;
	struct tgt t;
	struct io io;

	img_make(fx_path(fx, "wait.img", path), N * BS, NULL);
	tgt_open(&t, fx, path);
	fill(data, N * BS, 23);
	tally_init(&ty);
	for (int i = 0; i < 3 * N + 1; i++) {
		enum disk_op op = i < N ? DISK_WRITE : i == N ? DISK_FLUSH : DISK_READ;
		int b = i < N ? N - 1 - i : (i - N - 1) % N;
		uint8_t *buf = (op == DISK_WRITE ? data : back) + b * BS;

		io_init(&io, &ty, op, (uint64_t)b * BS, 0);
		if (op != DISK_FLUSH)
			io_buf(&io, buf, BS);
		io.req.may_wait = true;
		ctx_submit(&t.main, &io.req);
		if (here) {
			assert_int_equal(atomic_load(&io.calls), 1);
			assert_true(pthread_equal(io.thread, pthread_self()));
		}
		ctx_wait(&t.main, &ty, i + 1);
		assert_int_equal(atomic_load(&io.calls), 1);
		assert_int_equal(io.status, 0);
		if (threads && !here)
			assert_false(pthread_equal(io.thread, pthread_self()));
		if (op == DISK_READ)
			assert_memory_equal(back + b * BS, data + b * BS, BS);
	}
	tgt_close(&t);
	img_assert_equals(path, data, N * BS);
	tally_destroy(&ty);
}

/*
 * Closing with requests in flight, some of whose done callbacks submit more: close waits for
 * all of them, each completes once, and the data is in the file.
 */
static void test_engine_close_drains_requests_in_flight(void **state)
{
	enum { N = 300, CHAIN = 20, BS = 4096 };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, N * BS);
	struct io *ios = fx_alloc(fx, N * sizeof(*ios));
	char path[PATH_MAX];
	struct tally ty;
	struct tgt t;

	img_make(fx_path(fx, "drain.img", path), N * BS, NULL);
	tgt_open(&t, fx, path);
	fill(data, N * BS, 111);
	tally_init(&ty);
	for (int i = 0; i < N; i++) {
		io_init(&ios[i], &ty, DISK_WRITE, (uint64_t)i * BS, 0);
		io_buf(&ios[i], data + i * BS, BS);
		ios[i].c = &t.main;
		/* The last CHAIN go out from the done of the one before. */
		ios[i].next = i >= N - CHAIN - 1 && i + 1 < N ? &ios[i + 1] : NULL;
	}
	for (int i = 0; i < N - CHAIN; i++)
		ctx_submit(&t.main, &ios[i].req);
	tgt_close(&t);
	assert_int_equal(ty.done, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&ios[i].calls), 1);
		assert_int_equal(ios[i].status, 0);
	}
	img_assert_equals(path, data, N * BS);
	tally_destroy(&ty);
}

/*
 * A full file system: a write completes with -ENOSPC (after a short write, when some room was
 * left), and the engine goes on serving other requests; once a discard frees room, the same
 * write succeeds.
 */
static void test_engine_enospc_then_recovers(void **state)
{
	enum { IMG = 4 * MiB, CHUNK = 64 * KiB };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, IMG), *got = fx_alloc(fx, CHUNK);
	char path[PATH_MAX];
	uint64_t full = 0;
	struct tgt t;
	int status;

	fx_mount_tmpfs(fx, "ENOSPC", "size=1M,mode=0700");
	fill(data, IMG, 121);
	img_make(fx_path(fx, "full.img", path), IMG, NULL);
	tgt_open(&t, fx, path);
	for (uint64_t off = 0; off < IMG; off += CHUNK) {
		status = t_rw(&t, DISK_WRITE, off, data + off, CHUNK);
		if (status) {
			assert_int_equal(status, -ENOSPC);
			full = off;
			break;
		}
	}
	assert_true(full > 0 && full < IMG);
	/* Still working: reads, rewrites of what has room, flushes. */
	assert_int_equal(t_rw(&t, DISK_READ, 0, got, CHUNK), 0);
	assert_memory_equal(got, data, CHUNK);
	assert_int_equal(t_rw(&t, DISK_WRITE, CHUNK, data + CHUNK, CHUNK), 0);
	assert_int_equal(t_range(&t, DISK_FLUSH, 0, 0), 0);
	assert_int_equal(t_rw(&t, DISK_WRITE, full, data + full, CHUNK), -ENOSPC);
	/* Room again once a hole is punched at the start. */
	assert_int_equal(t_range(&t, DISK_DISCARD, 0, 4 * CHUNK), 0);
	assert_int_equal(t_rw(&t, DISK_WRITE, full, data + full, CHUNK), 0);
	assert_int_equal(t_rw(&t, DISK_READ, full, got, CHUNK), 0);
	assert_memory_equal(got, data + full, CHUNK);
	tgt_close(&t);
}

/* A flush reaches the device: the loop device under ext4 counts one more flush request. */
static void test_engine_flush_reaches_the_device(void **state)
{
	enum { SIZE = 1 * MiB };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, SIZE);
	char path[PATH_MAX];
	long before, after;
	struct tgt t;

	fx_mount_ext4(fx, "flush count");
	fill(data, SIZE, 131);
	img_make(fx_path(fx, "flush.img", path), SIZE, data);
	tgt_open(&t, fx, path);
	fill(data, SIZE, 132);
	assert_int_equal(t_rw(&t, DISK_WRITE, 0, data, SIZE), 0);
	before = loop_flushes(fx);
	if (before < 0) {
		tgt_close(&t);
		print_message("flush count: skipped, /sys/block/%s/stat has no flush field\n",
			      fx->loop_name);
		skip();
	}
	assert_int_equal(t_range(&t, DISK_FLUSH, 0, 0), 0);
	after = loop_flushes(fx);
	assert_true(after > before);
	tgt_close(&t);
	img_assert_equals(path, data, SIZE);
}

/*
 * I/O errors: the file system under the image is shut down (EXT4_IOC_SHUTDOWN, as after a failed
 * device), so every read and write fails with -EIO; each completes once with it, and the disk
 * still closes cleanly.
 */
static void test_engine_io_error_reported(void **state)
{
	enum { SIZE = 1 * MiB };
	struct fx *fx = *state;
	uint8_t *data = fx_alloc(fx, SIZE), *got = fx_alloc(fx, 64 * KiB);
	uint32_t how = EXT4_GOING_FLAGS_NOLOGFLUSH;
	char path[PATH_MAX];
	struct tgt t;
	int fd, status;

	fx_mount_ext4(fx, "I/O error");
	fill(data, SIZE, 141);
	img_make(fx_path(fx, "eio.img", path), SIZE, data);
	tgt_open(&t, fx, path);
	assert_int_equal(t_rw(&t, DISK_READ, 0, got, 64 * KiB), 0);
	fd = open(fx->mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	if (ioctl(fd, EXT4_IOC_SHUTDOWN, &how)) {
		print_message("I/O error: skipped, EXT4_IOC_SHUTDOWN: %s\n", strerror(errno));
		close(fd);
		tgt_close(&t);
		skip();
	}
	close(fd);
	assert_int_equal(t_rw(&t, DISK_READ, 128 * KiB, got, 64 * KiB), -EIO);
	assert_int_equal(t_rw(&t, DISK_WRITE, 0, data, 64 * KiB), -EIO);
	status = t_range(&t, DISK_FLUSH, 0, 0);
	assert_true(status == -EIO || status == 0);
	tgt_close(&t);
}

/*
 * Once closed, the image is free for the next open: nothing (an io_uring's registered file, a
 * ring torn down later) keeps its lock.
 */
static void test_engine_close_releases_the_image(void **state)
{
	struct fx *fx = *state;
	uint8_t *buf = fx_alloc(fx, 4096);
	char path[PATH_MAX];
	struct tgt t;

	img_make(fx_path(fx, "again.img", path), 1 * MiB, NULL);
	for (int i = 0; i < 3; i++) {
		tgt_open(&t, fx, path);
		fill(buf, 4096, i);
		assert_int_equal(t_rw(&t, DISK_WRITE, 0, buf, 4096), 0);
		tgt_close(&t);
	}
}

/* --- fallback to the threads engine, and the engines' plumbing ------------------------------- */

static int open_with(const char *path, enum disk_engine_kind k, bool direct, struct disk **d)
{
	struct disk_options o = { .path = path, .direct = direct, .engine = k };
	char why[DISK_ERR_MAX];

	return disk_open(d, &o, why, sizeof(why));
}

/* disk_open succeeds with the threads engine and the notice, and the disk works. */
static void assert_falls_back(const char *path, enum disk_engine_kind k, bool direct,
			      const char *notice)
{
	struct variant v = { "fallback", DISK_ENGINE_THREADS, direct, VIA_DISK };
	uint8_t *buf = xalloc(4096), *got = xalloc(4096);
	struct tgt t = { .v = &v, .align = 1 };

	assert_int_equal(open_with(path, k, direct, &t.d), 0);
	assert_string_equal(disk_engine_name(t.d), "threads");
	assert_non_null(disk_notice(t.d));
	assert_string_equal(disk_notice(t.d), notice);
	ctx_open(&t.main, &t);
	fill(buf, 4096, 3);
	assert_int_equal(t_rw(&t, DISK_WRITE, 8192, buf, 4096), 0);
	assert_int_equal(t_rw(&t, DISK_READ, 8192, got, 4096), 0);
	assert_memory_equal(got, buf, 4096);
	tgt_close(&t);
	free(got);
	free(buf);
}

static void test_uring_unavailable_falls_back_to_threads(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX];

	img_make(fx_path(fx, "fb.img", path), 1 * MiB, NULL);
	setenv("NKVM_IO_URING_DISABLE", "1", 1);
	assert_falls_back(path, DISK_ENGINE_IO_URING, false,
			  "io_uring unavailable (disabled by NKVM_IO_URING_DISABLE); using the "
			  "threads engine");
	unsetenv("NKVM_IO_URING_DISABLE");
}

static void test_aio_unavailable_falls_back_to_threads(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX];

	img_make(fx_path(fx, "fb.img", path), 1 * MiB, NULL);
	setenv("NKVM_AIO_DISABLE", "1", 1);
	assert_falls_back(path, DISK_ENGINE_AIO, dir_takes_direct(fx->dir),
			  "aio unavailable (disabled by NKVM_AIO_DISABLE); using the threads "
			  "engine");
	unsetenv("NKVM_AIO_DISABLE");
}

/* Native AIO on a buffered file would block in io_submit: threads instead, said once. */
static void test_aio_on_buffered_disk_falls_back_to_threads(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX];

	img_make(fx_path(fx, "fb.img", path), 1 * MiB, NULL);
	assert_falls_back(path, DISK_ENGINE_AIO, false,
			  "aio unavailable (native AIO would block without cache=none); using the "
			  "threads engine");
}

/* Where the host has them, the engines asked for are the ones that run, without a notice. */
static void test_engines_run_when_available(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX], why[120];
	struct io_file f = { .fd = -1 };
	struct disk *d;

	img_make(fx_path(fx, "av.img", path), 1 * MiB, NULL);
	if (io_engine_uring.probe(&f, why, sizeof(why))) {
		print_message("io_uring: skipped, unavailable here (%s)\n", why);
	} else {
		assert_int_equal(open_with(path, DISK_ENGINE_IO_URING, false, &d), 0);
		assert_string_equal(disk_engine_name(d), "io_uring");
		assert_null(disk_notice(d));
		disk_close(d);
	}
	assert_int_equal(open_with(path, DISK_ENGINE_DEFAULT, false, &d), 0);
	assert_string_equal(disk_engine_name(d), "threads");
	assert_null(disk_notice(d));
	disk_close(d);
	if (!dir_takes_direct(fx->dir))
		return;
	assert_int_equal(open_with(path, DISK_ENGINE_AIO, true, &d), 0);
	if (disk_notice(d))
		print_message("aio: %s\n", disk_notice(d));
	else
		assert_string_equal(disk_engine_name(d), "aio");
	disk_close(d);
}

/*
 * Opens a disk as o says (path filled in) with the test thread's context on it as v says; skips
 * the test, saying what for, where the disk fell back to another engine.
 */
static void tgt_open_disk(struct tgt *t, struct fx *fx, const struct variant *v,
			  const struct disk_options *o, const char *what)
{
	char why[DISK_ERR_MAX];

	memset(t, 0, sizeof(*t));
	t->fx = fx;
	t->align = 1;
	assert_int_equal(disk_open(&t->d, o, why, sizeof(why)), 0);
	if (disk_notice(t->d)) {
		print_message("%s: skipped, %s\n", what, disk_notice(t->d));
		disk_close(t->d);
		skip();
	}
	t->v = v;
	ctx_open(&t->main, t);
}

/* A read-only disk's queue context rejects writes and takes flushes, as disk_submit does. */
static void test_queue_context_checks_requests(void **state)
{
	struct fx *fx = *state;
	struct disk_options o = { .readonly = true, .engine = DISK_ENGINE_IO_URING };
	uint8_t buf[4096];
	char path[PATH_MAX];
	struct tgt t;
	struct variant v = { "io_uring, read-only, queue", DISK_ENGINE_IO_URING, false, VIA_QUEUE };

	img_make(fx_path(fx, "ro.img", path), 1 * MiB, NULL);
	o.path = path;
	tgt_open_disk(&t, fx, &v, &o, "queue checks");
	assert_int_equal(t_rw(&t, DISK_WRITE, 0, buf, sizeof(buf)), -EROFS);
	assert_int_equal(t_rw(&t, DISK_READ, 1 * MiB - 512, buf, 1024), -EINVAL);
	assert_int_equal(t_range(&t, DISK_FLUSH, 0, 0), 0);
	assert_int_equal(t_rw(&t, DISK_READ, 0, buf, sizeof(buf)), 0);
	assert_true(all_zero(buf, sizeof(buf)));
	tgt_close(&t);
}

static void *write_eventfd_later(void *arg)
{
	uint64_t one = 1;

	usleep(20000);
	if (write(*(int *)arg, &one, sizeof(one)) != sizeof(one))
		abort();
	return NULL;
}

/*
 * disk_queue_wait on a disk opened as o and v say: its owner's eventfd ends a wait (1, the count
 * read), written before the wait or while it sleeps; a completion ends one too (0).
 */
static void check_queue_wait(struct fx *fx, const struct variant *v, struct disk_options *o)
{
	struct tgt t;
	struct pollfd p;
	struct tally ty;
	struct io io;
	pthread_t th;
	uint8_t *buf = fx_alloc(fx, 4096);
	uint64_t one = 1;

	tgt_open_disk(&t, fx, v, o, v->name);
	p = (struct pollfd){ .fd = t.main.wake_fd, .events = POLLIN };
	/* Written before: the first wait returns at once, and the count is gone. */
	assert_int_equal(write(t.main.wake_fd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(disk_queue_wait(t.main.q, t.main.wake_fd), 1);
	assert_int_equal(poll(&p, 1, 0), 0);
	/* Written while it sleeps. */
	assert_int_equal(pthread_create(&th, NULL, write_eventfd_later, &t.main.wake_fd), 0);
	assert_int_equal(disk_queue_wait(t.main.q, t.main.wake_fd), 1);
	pthread_join(th, NULL);
	/* A request's completion: done runs inside the wait, which then returns 0. */
	tally_init(&ty);
	io_init(&io, &ty, DISK_READ, 0, 4096);
	io_buf(&io, buf, 4096);
	disk_queue_submit(t.main.q, &io.req);
	while (tally_count(&ty) < 1)
		assert_int_equal(disk_queue_wait(t.main.q, t.main.wake_fd), 0);
	assert_int_equal(io.status, 0);
	/* And the eventfd once more, now that the wait has re-armed its watch on it. */
	assert_int_equal(write(t.main.wake_fd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(disk_queue_wait(t.main.q, t.main.wake_fd), 1);
	tally_destroy(&ty);
	tgt_close(&t);
}

/*
 * aio: a descriptor the kernel will not poll (IOCB_CMD_POLL refused at io_submit, as a kernel
 * before 4.18 refuses every one): the first disk_queue_wait fails with -EOPNOTSUPP and changes
 * nothing, so the owner polls the context's descriptor instead, and requests still complete.
 */
static void check_aio_wait_refused(struct fx *fx, const struct variant *v, struct disk_options *o)
{
	const int not_open = 999999; /* beyond any descriptor this test has: EBADF */
	struct pollfd p;
	struct tally ty;
	struct io io;
	struct tgt t;
	uint8_t *buf = fx_alloc(fx, 4096);

	tgt_open_disk(&t, fx, v, o, "queue wait refused, aio");
	assert_int_equal(disk_queue_wait(t.main.q, not_open), -EOPNOTSUPP);
	tally_init(&ty);
	io_init(&io, &ty, DISK_READ, 0, 4096);
	io_buf(&io, buf, 4096);
	disk_queue_submit(t.main.q, &io.req);
	p = (struct pollfd){ .fd = t.main.fd, .events = POLLIN };
	assert_true(p.fd >= 0);
	while (tally_count(&ty) < 1) {
		disk_queue_poll(t.main.q);
		if (tally_count(&ty) < 1)
			assert_true(poll(&p, 1, 10000) > 0);
	}
	assert_int_equal(atomic_load(&io.calls), 1);
	assert_int_equal(io.status, 0);
	tally_destroy(&ty);
	tgt_close(&t);
}

/* disk_queue_wait with io_uring and with aio (O_DIRECT); the threads engine refuses it. */
static void test_queue_wait_wakes_on_fd_and_completions(void **state)
{
	struct fx *fx = *state;
	struct disk_options o = { .engine = DISK_ENGINE_IO_URING };
	struct variant v = { "queue wait, io_uring", DISK_ENGINE_IO_URING, false, VIA_QUEUE_WAIT };
	char path[PATH_MAX];
	struct tgt t;

	img_make(fx_path(fx, "w.img", path), 1 * MiB, NULL);
	o.path = path;
	check_queue_wait(fx, &v, &o);

	/* The threads engine has nothing to wait in. */
	o.engine = v.engine = DISK_ENGINE_THREADS;
	v.name = "queue wait, threads";
	tgt_open_disk(&t, fx, &v, &o, v.name);
	assert_int_equal(disk_queue_wait(t.main.q, t.main.wake_fd), -EOPNOTSUPP);
	tgt_close(&t);

	if (!dir_takes_direct(fx->dir)) {
		print_message("queue wait, aio: skipped, %s takes no O_DIRECT\n", fx->dir);
		return;
	}
	o.engine = v.engine = DISK_ENGINE_AIO;
	o.direct = v.direct = true;
	v.name = "queue wait, aio";
	check_queue_wait(fx, &v, &o);
	check_aio_wait_refused(fx, &v, &o);
}

/*
 * The threads engine's queue context through the page cache: what the owner submits waits for
 * its next disk_queue_poll and then goes to the pool as one batch, which grows the pool to its
 * limit (3 here) and never past it; every done runs once, on the owner; the data is in the file.
 */
static void test_threads_queue_batches_and_completes_on_owner(void **state)
{
	enum { N = 64, BS = 4096 };
	struct fx *fx = *state;
	struct disk_options o = { .engine = DISK_ENGINE_THREADS, .threads = 3 };
	struct variant v = { "threads, queue context", DISK_ENGINE_THREADS, false, VIA_QUEUE };
	uint8_t *data = fx_alloc(fx, N * BS);
	struct io *ios = fx_alloc(fx, N * sizeof(*ios));
	unsigned int base = fx_disk_io_threads();
	char path[PATH_MAX];
	struct tally ty;
	struct tgt t;

	img_make(fx_path(fx, "batch.img", path), N * BS, NULL);
	o.path = path;
	tgt_open_disk(&t, fx, &v, &o, v.name);
	assert_true(t.main.fd >= 0);
	assert_int_equal(fx_disk_io_threads(), base + 2); /* the pool starts with two */
	fill(data, N * BS, 57);
	tally_init(&ty);
	for (int i = 0; i < N; i++) {
		io_init(&ios[i], &ty, DISK_WRITE, (uint64_t)(N - 1 - i) * BS, 0);
		io_buf(&ios[i], data + (N - 1 - i) * BS, BS);
		disk_queue_submit(t.main.q, &ios[i].req);
	}
	/* Nothing has started: no done, and the pool as it was. */
	assert_true(disk_queue_ready(t.main.q));
	assert_int_equal(tally_count(&ty), 0);
	assert_int_equal(fx_disk_io_threads(), base + 2);
	ctx_wait(&t.main, &ty, N);
	assert_int_equal(fx_disk_io_threads(), base + 3);
	for (int i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&ios[i].calls), 1);
		assert_int_equal(ios[i].status, 0);
		assert_true(pthread_equal(ios[i].thread, pthread_self()));
	}
	assert_false(disk_queue_ready(t.main.q));
	tgt_close(&t);
	assert_int_equal(tally_count(&ty), N);
	img_assert_equals(path, data, N * BS);
	tally_destroy(&ty);
}

/* Resuming after a short transfer: inside a segment, at a segment's start, past empty ones. */
static void test_io_rest_resumes_where_transfer_stopped(void **state)
{
	uint8_t b[100];
	struct iovec v[4] = { { b, 10 }, { b + 10, 0 }, { b + 10, 30 }, { b + 40, 60 } };
	struct disk_request req = { .op = DISK_READ, .iov = v, .iovcnt = 4 };
	const struct iovec *iov;
	struct iovec one;
	uint64_t len;

	assert_int_equal(io_request_bytes(&req), 100);
	assert_int_equal(io_rest(&req, 0, 1024, &one, &iov, &len), 4);
	assert_ptr_equal(iov, v);
	assert_int_equal(len, 100);
	assert_int_equal(io_rest(&req, 0, 2, &one, &iov, &len), 2);
	assert_int_equal(len, 10);
	assert_int_equal(io_rest(&req, 4, 1024, &one, &iov, &len), 1);
	assert_ptr_equal(iov, &one);
	assert_ptr_equal(one.iov_base, b + 4);
	assert_int_equal(one.iov_len, 6);
	assert_int_equal(len, 6);
	/* At a segment boundary: the empty segment is passed over with the moved one. */
	assert_int_equal(io_rest(&req, 10, 1024, &one, &iov, &len), 2);
	assert_ptr_equal(iov, &v[2]);
	assert_int_equal(len, 90);
	assert_int_equal(io_rest(&req, 75, 1024, &one, &iov, &len), 1);
	assert_ptr_equal(one.iov_base, b + 75);
	assert_int_equal(one.iov_len, 25);
}

/* --- main ----------------------------------------------------------------------------------- */

/*
 * A private mount namespace for the whole binary, made while it has one thread (unshare refuses
 * CLONE_NEWNS to a threaded process): test mounts are invisible outside and vanish with it.
 */
static void mount_namespace_setup(void)
{
	if (unshare(CLONE_NEWNS)) {
		snprintf(no_mount_why, sizeof(no_mount_why), "unshare(CLONE_NEWNS): %s",
			 strerror(errno));
		return;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		snprintf(no_mount_why, sizeof(no_mount_why), "making / private: %s",
			 strerror(errno));
		return;
	}
	can_mount = true;
}

/*
 * A disk probed as raw keeps probing raw, whatever engine and path a write takes: a first block
 * starting with the qcow2 magic fails with -EPERM and leaves the file as it was, in one segment
 * or with the magic split across two; other first blocks (an MBR), and the magic further in, go
 * in. Through the bare engine there is no format to probe: skipped.
 */
static void test_engine_probed_raw_keeps_first_sector_raw(void **state)
{
	struct fx *fx = *state;
	const uint8_t magic[4] = { 'Q', 'F', 'I', 0xfb };
	uint8_t *data = fx_alloc(fx, 1 * MiB), *buf = fx_alloc(fx, 64 * KiB);
	uint8_t *got = fx_alloc(fx, 64 * KiB);
	char path[PATH_MAX];
	struct iovec iov[2];
	uint32_t bs;
	struct tgt t;

	if (fx->v->via == VIA_ENGINE) {
		print_message("%s: skipped, no format without a disk\n", fx->v->name);
		skip();
	}
	fill(data, 1 * MiB, 61);
	img_make(fx_path(fx, "probed.img", path), 1 * MiB, data);
	tgt_open(&t, fx, path);
	assert_true(disk_probed_raw(t.d));
	bs = t.align > 512 ? t.align : 512;

	fill(buf, 64 * KiB, 62);
	memcpy(buf, magic, sizeof(magic));
	assert_int_equal(t_rw(&t, DISK_WRITE, 0, buf, 64 * KiB), -EPERM);
	iov[0] = (struct iovec){ buf, bs };
	iov[1] = (struct iovec){ buf + bs, 2 * bs };
	assert_int_equal(c_io(&t.main, DISK_WRITE, 0, iov, 2, 0), -EPERM);
	assert_int_equal(t_range(&t, DISK_FLUSH, 0, 0), 0);
	img_assert_equals(path, data, 1 * MiB);

	/* An MBR's signature in place of the magic: written, and read back as sent. */
	memset(buf, 0, 4);
	buf[510] = 0x55;
	buf[511] = 0xaa;
	memcpy(buf + bs, magic, sizeof(magic));
	assert_int_equal(c_io(&t.main, DISK_WRITE, 0, iov, 2, 0), 0);
	memcpy(data, buf, 3 * bs);
	assert_int_equal(t_rw(&t, DISK_READ, 0, got, 3 * bs), 0);
	assert_memory_equal(got, buf, 3 * bs);
	tgt_close(&t);
	img_assert_equals(path, data, 1 * MiB);
}

typedef void (*test_fn)(void **state);

static const struct {
	const char *name;
	test_fn fn;
} per_variant[] = {
#define P(f)          \
	{             \
#f, f \
	}
	P(test_engine_random_io_matches_model),
	P(test_engine_more_segments_than_iov_max),
	P(test_engine_read_past_end_of_file_is_eio),
	P(test_engine_flush_after_writes),
	P(test_engine_discard_punches_hole),
	P(test_engine_write_zeroes_reads_back_zeroes),
	P(test_engine_write_zeroes_without_fallocate),
	P(test_engine_many_submitters_at_once),
	P(test_engine_done_submits_next),
	P(test_engine_may_wait_requests),
	P(test_engine_close_drains_requests_in_flight),
	P(test_engine_close_releases_the_image),
	P(test_engine_enospc_then_recovers),
	P(test_engine_flush_reaches_the_device),
	P(test_engine_io_error_reported),
	P(test_engine_probed_raw_keeps_first_sector_raw),
#undef P
};

int main(void)
{
	const struct CMUnitTest once[] = {
		cmocka_unit_test_setup_teardown(test_uring_unavailable_falls_back_to_threads,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_aio_unavailable_falls_back_to_threads,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_aio_on_buffered_disk_falls_back_to_threads,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_engines_run_when_available, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_queue_wait_wakes_on_fd_and_completions,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_queue_context_checks_requests, fx_setup,
						fx_teardown),
		cmocka_unit_test(test_io_rest_resumes_where_transfer_stopped),
		cmocka_unit_test_setup_teardown(test_threads_queue_batches_and_completes_on_owner,
						fx_setup, fx_teardown),
	};
	size_t n = ARRAY_SIZE(once) + ARRAY_SIZE(per_variant) * ARRAY_SIZE(variants), k = 0;
	struct CMUnitTest *tests = calloc(n, sizeof(*tests));
	char **names = calloc(n, sizeof(*names));
	int failed;

	mount_namespace_setup();
	if (!tests || !names)
		return 1;
	for (size_t i = 0; i < ARRAY_SIZE(once); i++, k++)
		tests[k] = once[i];
	for (size_t i = 0; i < ARRAY_SIZE(per_variant); i++) {
		for (size_t j = 0; j < ARRAY_SIZE(variants); j++, k++) {
			if (asprintf(&names[k], "%s (%s)", per_variant[i].name, variants[j].name) <
			    0)
				return 1;
			tests[k] = (struct CMUnitTest){ names[k], per_variant[i].fn, fx_setup,
							fx_teardown, (void *)&variants[j] };
		}
	}
	/* One test or a few, by name: TEST_FILTER='*(io_uring, queue ring)'. */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	failed = _cmocka_run_group_tests("engines", tests, n, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(tests);
	return failed;
}
