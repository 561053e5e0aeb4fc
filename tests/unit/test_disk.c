// SPDX-License-Identifier: MIT
/*
 * The block layer on real files in a temporary directory: opening and locking, the raw format's
 * checks, and the thread engine moving bytes, punching holes, writing zeroes and flushing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/loop.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "block/disk.h"
#include "block/qcow2_tools.h"
#include "lib/file.h"
#include "lib/util.h"

/*
 * The engine's fallocate and fdatasync calls resolve to these definitions, which the linker
 * prefers to libc's: the tests count the calls and make the file system refuse modes it
 * supports, to reach the fallbacks. File-scope because interposition goes by symbol name, with
 * no object to hang the state on; tests run one at a time and reset it.
 */
static struct {
	atomic_bool refuse_zero_range, refuse_punch_hole;
	atomic_int zero_range_calls, punch_hole_calls;
	atomic_int fdatasync_calls;
	atomic_ulong fdatasync_ino;
} hook;

int fallocate(int fd, int mode, off_t off, off_t len)
{
	bool refuse = false;

	if (mode & FALLOC_FL_ZERO_RANGE) {
		atomic_fetch_add(&hook.zero_range_calls, 1);
		refuse = atomic_load(&hook.refuse_zero_range);
	} else if (mode & FALLOC_FL_PUNCH_HOLE) {
		atomic_fetch_add(&hook.punch_hole_calls, 1);
		refuse = atomic_load(&hook.refuse_punch_hole);
	}
	if (refuse) {
		errno = EOPNOTSUPP;
		return -1;
	}
	return syscall(SYS_fallocate, fd, mode, off, len);
}

int fdatasync(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0)
		atomic_store(&hook.fdatasync_ino, st.st_ino);
	atomic_fetch_add(&hook.fdatasync_calls, 1);
	return syscall(SYS_fdatasync, fd);
}

static void hook_reset(void)
{
	atomic_store(&hook.refuse_zero_range, false);
	atomic_store(&hook.refuse_punch_hole, false);
	atomic_store(&hook.zero_range_calls, 0);
	atomic_store(&hook.punch_hole_calls, 0);
	atomic_store(&hook.fdatasync_calls, 0);
	atomic_store(&hook.fdatasync_ino, 0);
}

/*
 * Each test gets a fresh directory under $TMPDIR (or /tmp), removed afterwards, and a watchdog:
 * a request that never completes kills the binary (SIGALRM) rather than hanging the suite.
 */
#define WATCHDOG_SECONDS 60

struct fx {
	char dir[PATH_MAX];
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || fx_dir_make(fx->dir, sizeof(fx->dir), NULL, "disk")) {
		free(fx);
		return -1;
	}
	hook_reset();
	alarm(WATCHDOG_SECONDS);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	alarm(0);
	hook_reset();
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

/* Into buf, which the caller keeps: some tests hold many paths at once. */
static const char *fx_path(struct fx *fx, const char *name, char *buf)
{
	return strcpy(buf, fx_dir_path(fx->dir, name));
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

/* An image of size bytes: pattern `seed`, or sparse zeroes when seed is 0. */
static void img_make(const char *path, uint64_t size, uint64_t seed)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	if (seed) {
		uint8_t *buf = malloc(size);

		assert_non_null(buf);
		fill(buf, size, seed);
		assert_int_equal(write_all(fd, buf, size), 0);
		free(buf);
	} else {
		assert_int_equal(ftruncate(fd, size), 0);
	}
	close(fd);
}

/* The whole file, malloc'ed, to compare before and after. */
static uint8_t *img_read(const char *path, size_t *len)
{
	uint8_t *buf;

	assert_int_equal(read_file(path, &buf, len), 0);
	return buf;
}

static void img_assert_unchanged(const char *path, const uint8_t *before, size_t len)
{
	size_t now_len;
	uint8_t *now = img_read(path, &now_len);

	assert_int_equal(now_len, len);
	assert_memory_equal(now, before, len);
	free(now);
}

static struct disk *t_open(const char *path, bool ro, bool direct, unsigned int threads)
{
	struct disk_options o = {
		.path = path, .readonly = ro, .direct = direct, .threads = threads
	};
	struct disk *d = NULL;
	char why[DISK_ERR_MAX];
	int err = disk_open(&d, &o, why, sizeof(why));

	if (err)
		fail_msg("%s: %s: %s", path, why, strerror(-err));
	assert_non_null(d);
	return d;
}

static int t_open_err(const char *path, bool ro, bool direct, char *err, size_t errlen)
{
	struct disk_options o = { .path = path, .readonly = ro, .direct = direct };
	struct disk *d = (struct disk *)1;
	int ret;

	err[0] = '\0';
	ret = disk_open(&d, &o, err, errlen);
	assert_null(d);
	assert_true(ret < 0);
	assert_true(err[0]);
	return ret;
}

/* One request and what became of it. */
struct io {
	struct disk_request req;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls;
	int status;
	pthread_t thread; /* where done ran */
	sigset_t sigmask; /* that thread's blocked signals */
};

static void io_done(struct disk_request *req, int status)
{
	struct io *io = req->opaque;

	pthread_mutex_lock(&io->lock);
	io->calls++;
	io->status = status;
	io->thread = pthread_self();
	pthread_sigmask(SIG_BLOCK, NULL, &io->sigmask);
	pthread_cond_broadcast(&io->cond);
	pthread_mutex_unlock(&io->lock);
}

/*
 * Submits one request and waits for it; returns its status. *inside (may be NULL) tells whether
 * done ran on this thread, which can only be inside disk_submit: rejected before any I/O.
 */
static int t_io(struct disk *d, enum disk_op op, uint64_t off, const struct iovec *iov,
		unsigned int iovcnt, uint64_t len, bool *inside)
{
	struct io io = {
		.req = { .op = op,
			 .offset = off,
			 .len = len,
			 .iov = iov,
			 .iovcnt = iovcnt,
			 .done = io_done },
	};

	io.req.opaque = &io;
	pthread_mutex_init(&io.lock, NULL);
	pthread_cond_init(&io.cond, NULL);
	disk_submit(d, &io.req);
	pthread_mutex_lock(&io.lock);
	while (!io.calls)
		pthread_cond_wait(&io.cond, &io.lock);
	pthread_mutex_unlock(&io.lock);
	assert_int_equal(io.calls, 1);
	if (inside)
		*inside = pthread_equal(io.thread, pthread_self());
	pthread_cond_destroy(&io.cond);
	pthread_mutex_destroy(&io.lock);
	return io.status;
}

static int t_read(struct disk *d, uint64_t off, void *buf, size_t len, bool *inside)
{
	struct iovec iov = { buf, len };

	return t_io(d, DISK_READ, off, &iov, 1, 0, inside);
}

static int t_write(struct disk *d, uint64_t off, const void *buf, size_t len, bool *inside)
{
	struct iovec iov = { (void *)buf, len };

	return t_io(d, DISK_WRITE, off, &iov, 1, 0, inside);
}

static int t_range(struct disk *d, enum disk_op op, uint64_t off, uint64_t len, bool *inside)
{
	return t_io(d, op, off, NULL, 0, len, inside);
}

static void test_disk_reports_size_of_file_image(void **state)
{
	char path[PATH_MAX];
	struct disk *d;

	img_make(fx_path(*state, "odd.img", path), 3 * MiB + 512, 0);
	d = t_open(path, false, false, 0);
	assert_int_equal(disk_size(d), 3 * MiB + 512);
	assert_int_equal(disk_block_size(d), 512);
	assert_false(disk_readonly(d));
	disk_close(d);

	d = t_open(path, true, false, 0);
	assert_int_equal(disk_size(d), 3 * MiB + 512);
	assert_true(disk_readonly(d));
	disk_close(d);

	img_make(path, 0, 0);
	d = t_open(path, false, false, 0);
	assert_int_equal(disk_size(d), 0);
	disk_close(d);
	disk_close(NULL);
}

static void test_disk_write_then_read_back_iovecs(void **state)
{
	enum { OFF = 12345, LEN = 100 + 4096 + 333 };
	uint8_t src[LEN], dst[LEN], around[2][64];
	struct iovec out[4] = {
		{ src, 100 },
		{ src + 100, 0 },
		{ src + 100, 4096 },
		{ src + 4196, 333 },
	};
	struct iovec in[3] = { { dst, 1 }, { dst + 1, 4000 }, { dst + 4001, LEN - 4001 } };
	char path[PATH_MAX];
	uint8_t *file;
	size_t file_len;
	struct disk *d;

	img_make(fx_path(*state, "rw.img", path), 1 * MiB, 7);
	file = img_read(path, &file_len);
	fill(src, sizeof(src), 99);
	memset(dst, 0xaa, sizeof(dst));

	d = t_open(path, false, false, 2);
	assert_int_equal(t_io(d, DISK_WRITE, OFF, out, 4, 0, NULL), 0);
	assert_int_equal(t_io(d, DISK_READ, OFF, in, 3, 0, NULL), 0);
	assert_memory_equal(dst, src, LEN);
	/* The bytes on either side are the image's own. */
	assert_int_equal(t_read(d, OFF - 64, around[0], 64, NULL), 0);
	assert_int_equal(t_read(d, OFF + LEN, around[1], 64, NULL), 0);
	assert_memory_equal(around[0], file + OFF - 64, 64);
	assert_memory_equal(around[1], file + OFF + LEN, 64);
	/* A request with no data at all is a success that moves nothing. */
	assert_int_equal(t_io(d, DISK_READ, 0, NULL, 0, 0, NULL), 0);
	disk_close(d);

	/* And it is in the file, where the request said. */
	memcpy(file + OFF, src, LEN);
	img_assert_unchanged(path, file, file_len);
	free(file);
}

/* More segments than one preadv/pwritev takes (IOV_MAX): the engine splits the call. */
static void test_disk_iovec_longer_than_iov_max(void **state)
{
	enum { SEGS = 1500, SEG = 3 };
	static uint8_t src[SEGS * SEG], dst[SEGS * SEG];
	static struct iovec out[SEGS], in[SEGS];
	char path[PATH_MAX];
	struct disk *d;

	assert_true(SEGS > IOV_MAX);
	fill(src, sizeof(src), 5);
	memset(dst, 0, sizeof(dst));
	for (int i = 0; i < SEGS; i++) {
		out[i] = (struct iovec){ src + i * SEG, SEG };
		in[i] = (struct iovec){ dst + i * SEG, SEG };
	}
	img_make(fx_path(*state, "segs.img", path), 64 * KiB, 0);
	d = t_open(path, false, false, 1);
	assert_int_equal(t_io(d, DISK_WRITE, 777, out, SEGS, 0, NULL), 0);
	assert_int_equal(t_io(d, DISK_READ, 777, in, SEGS, 0, NULL), 0);
	disk_close(d);
	assert_memory_equal(dst, src, sizeof(src));
}

/* The disk reads what another descriptor wrote, and the other way round: no stale cache. */
static void test_disk_coherent_with_plain_file_io(void **state)
{
	uint8_t a[8192], b[8192];
	char path[PATH_MAX];
	struct disk *d;
	int fd;

	img_make(fx_path(*state, "co.img", path), 1 * MiB, 3);
	d = t_open(path, false, false, 0);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);

	fill(a, sizeof(a), 11);
	assert_int_equal(pwrite(fd, a, sizeof(a), 65536 + 17), sizeof(a));
	assert_int_equal(t_read(d, 65536 + 17, b, sizeof(b), NULL), 0);
	assert_memory_equal(a, b, sizeof(a));

	fill(a, sizeof(a), 12);
	assert_int_equal(t_write(d, 300000, a, sizeof(a), NULL), 0);
	memset(b, 0, sizeof(b));
	assert_int_equal(pread_full(fd, b, sizeof(b), 300000), 0);
	assert_memory_equal(a, b, sizeof(a));
	close(fd);
	disk_close(d);
}

static void test_disk_readonly_rejects_changes(void **state)
{
	uint8_t buf[4096], got[4096];
	char path[PATH_MAX];
	uint8_t *file;
	size_t len;
	bool inside;
	struct disk *d;

	img_make(fx_path(*state, "ro.img", path), 256 * KiB, 21);
	file = img_read(path, &len);
	d = t_open(path, true, false, 0);
	memset(buf, 0x5a, sizeof(buf));

	assert_int_equal(t_write(d, 4096, buf, sizeof(buf), &inside), -EROFS);
	assert_true(inside);
	assert_int_equal(t_range(d, DISK_DISCARD, 0, 128 * KiB, &inside), -EROFS);
	assert_true(inside);
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, 8192, 4096, &inside), -EROFS);
	assert_true(inside);
	/* Reads still work, and see the image as it was. */
	assert_int_equal(t_read(d, 4096, got, sizeof(got), &inside), 0);
	assert_false(inside);
	assert_memory_equal(got, file + 4096, sizeof(got));
	/* Nothing was written through it, so a flush succeeds without syncing anything. */
	assert_int_equal(t_io(d, DISK_FLUSH, 0, NULL, 0, 0, NULL), 0);
	assert_int_equal(atomic_load(&hook.fdatasync_calls), 0);
	disk_close(d);
	assert_int_equal(atomic_load(&hook.punch_hole_calls), 0);
	assert_int_equal(atomic_load(&hook.zero_range_calls), 0);
	img_assert_unchanged(path, file, len);
	free(file);
}

static void test_disk_rejects_out_of_range_requests(void **state)
{
	enum { SIZE = 64 * KiB };
	uint8_t buf[1024], seen[1024];
	struct iovec huge[2] = { { buf, SIZE_MAX / 2 + 1 }, { buf, SIZE_MAX / 2 + 1 } };
	char path[PATH_MAX];
	uint8_t *file;
	size_t len;
	bool inside;
	struct disk *d;

	img_make(fx_path(*state, "range.img", path), SIZE, 31);
	file = img_read(path, &len);
	d = t_open(path, false, false, 0);
	memset(buf, 0x77, sizeof(buf));

	/* Crossing the end by one byte, or starting at it. */
	assert_int_equal(t_write(d, SIZE - 512, buf, 513, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_write(d, SIZE, buf, 1, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_read(d, SIZE - 100, buf, 200, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_range(d, DISK_DISCARD, SIZE - 4096, 8192, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, SIZE + 4096, 4096, &inside), -EINVAL);
	assert_true(inside);
	/* offset + len wrapping past 2^64 to something small must not pass. */
	assert_int_equal(t_range(d, DISK_DISCARD, 4096, UINT64_MAX, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, UINT64_MAX - 10, 4096, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_read(d, UINT64_MAX - 511, buf, 1024, &inside), -EINVAL);
	assert_true(inside);
	/* Segment lengths whose sum wraps to 0. */
	assert_int_equal(t_io(d, DISK_WRITE, 0, huge, 2, 0, &inside), -EINVAL);
	assert_true(inside);
	/* An unknown op. */
	assert_int_equal(t_range(d, (enum disk_op)42, 0, 512, &inside), -EOPNOTSUPP);
	assert_true(inside);
	memset(seen, 0x77, sizeof(seen));
	assert_memory_equal(buf, seen, sizeof(buf));

	/* Up to the last byte is fine. */
	assert_int_equal(t_read(d, SIZE - 1024, buf, 1024, &inside), 0);
	assert_false(inside);
	assert_memory_equal(buf, file + SIZE - 1024, 1024);
	assert_int_equal(t_read(d, SIZE, buf, 0, NULL), 0);
	disk_close(d);
	img_assert_unchanged(path, file, len);
	free(file);
}

static void test_disk_flush_calls_fdatasync(void **state)
{
	uint8_t buf[4096];
	char path[PATH_MAX];
	struct stat st;
	bool inside;
	struct disk *d;

	img_make(fx_path(*state, "flush.img", path), 64 * KiB, 0);
	assert_int_equal(stat(path, &st), 0);
	d = t_open(path, false, false, 0);
	fill(buf, sizeof(buf), 1);
	assert_int_equal(t_write(d, 0, buf, sizeof(buf), NULL), 0);
	assert_int_equal(atomic_load(&hook.fdatasync_calls), 0);
	assert_int_equal(t_io(d, DISK_FLUSH, 0, NULL, 0, 0, &inside), 0);
	assert_false(inside);
	assert_int_equal(atomic_load(&hook.fdatasync_calls), 1);
	assert_int_equal(atomic_load(&hook.fdatasync_ino), st.st_ino);
	disk_close(d);
}

/* Whether this file system punches holes at all, asked directly. */
static bool fs_punches_holes(struct fx *fx)
{
	char path[PATH_MAX];
	int fd, r;

	img_make(fx_path(fx, "probe", path), 64 * KiB, 1);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);
	close(fd);
	unlink(path);
	atomic_store(&hook.punch_hole_calls, 0);
	return r == 0;
}

static void test_disk_discard_punches_hole(void **state)
{
	enum { SIZE = 1 * MiB, OFF = 256 * KiB, LEN = 512 * KiB };
	char path[PATH_MAX];
	uint8_t *file, *now;
	bool holes = fs_punches_holes(*state);
	struct stat before, after;
	size_t len;
	struct disk *d;
	int fd;

	img_make(fx_path(*state, "discard.img", path), SIZE, 41);
	/* On disk, not merely reserved, so the hole shows in st_blocks. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(fsync(fd), 0);
	close(fd);
	file = img_read(path, &len);
	assert_int_equal(stat(path, &before), 0);

	d = t_open(path, false, false, 0);
	assert_int_equal(t_range(d, DISK_DISCARD, OFF, LEN, NULL), 0);
	/* Not block-aligned: the file system frees what it can. */
	assert_int_equal(t_range(d, DISK_DISCARD, 1000, 4000, NULL), 0);
	assert_int_equal(t_range(d, DISK_DISCARD, 5000, 0, NULL), 0);
	disk_close(d);

	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(after.st_size, SIZE);
	now = img_read(path, &len);
	assert_int_equal(len, SIZE);
	if (holes) {
		assert_int_equal(atomic_load(&hook.punch_hole_calls), 2);
		assert_true(after.st_blocks + (long)(256 * KiB / 512) <= before.st_blocks);
		assert_true(all_zero(now + OFF, LEN));
		assert_true(all_zero(now + 1000, 4000));
	} else {
		print_message("discard: the file system at %s does not punch holes; "
			      "checking only that data reads as before or as zeroes\n",
			      ((struct fx *)*state)->dir);
		assert_true(all_zero(now + OFF, LEN) || !memcmp(now + OFF, file + OFF, LEN));
		assert_true(all_zero(now + 1000, 4000) || !memcmp(now + 1000, file + 1000, 4000));
	}
	/* Everything outside the ranges is untouched. */
	assert_memory_equal(now, file, 1000);
	assert_memory_equal(now + 5000, file + 5000, OFF - 5000);
	assert_memory_equal(now + OFF + LEN, file + OFF + LEN, SIZE - OFF - LEN);
	free(now);
	free(file);
}

/* Discard may leave data in place: a file system that cannot punch holes is not an error. */
static void test_disk_discard_without_hole_support_keeps_data(void **state)
{
	char path[PATH_MAX];
	uint8_t *file;
	size_t len;
	struct disk *d;

	img_make(fx_path(*state, "nohole.img", path), 256 * KiB, 43);
	file = img_read(path, &len);
	atomic_store(&hook.refuse_punch_hole, true);
	d = t_open(path, false, false, 0);
	assert_int_equal(t_range(d, DISK_DISCARD, 0, 128 * KiB, NULL), 0);
	assert_int_equal(atomic_load(&hook.punch_hole_calls), 1);
	/* The answer is remembered: no second failing system call. */
	assert_int_equal(t_range(d, DISK_DISCARD, 128 * KiB, 64 * KiB, NULL), 0);
	assert_int_equal(atomic_load(&hook.punch_hole_calls), 1);
	disk_close(d);
	img_assert_unchanged(path, file, len);
	free(file);
}

/* Writes zeroes over [off, off + zlen) and the last 100 bytes of a patterned image; checks. */
static void write_zeroes_and_check(struct fx *fx, const char *name, uint64_t off, uint64_t zlen)
{
	enum { SIZE = 1 * MiB };
	char path[PATH_MAX];
	uint8_t *file, *now;
	size_t len;
	struct disk *d;

	img_make(fx_path(fx, name, path), SIZE, 51);
	file = img_read(path, &len);
	d = t_open(path, false, false, 0);
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, off, zlen, NULL), 0);
	/* The last bytes of the disk, too, without growing it. */
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, SIZE - 100, 100, NULL), 0);
	disk_close(d);

	now = img_read(path, &len);
	assert_int_equal(len, SIZE);
	assert_true(all_zero(now + off, zlen));
	assert_true(all_zero(now + SIZE - 100, 100));
	assert_memory_equal(now, file, off);
	assert_memory_equal(now + off + zlen, file + off + zlen, SIZE - 100 - off - zlen);
	free(now);
	free(file);
}

static void test_disk_write_zeroes_reads_back_zeroes(void **state)
{
	write_zeroes_and_check(*state, "wz.img", 3000, 200000);
	/* The cheapest way first. */
	assert_true(atomic_load(&hook.zero_range_calls) >= 1);
	hook_reset();
	write_zeroes_and_check(*state, "wz-aligned.img", 64 * KiB, 256 * KiB);
}

/* No FALLOC_FL_ZERO_RANGE (tmpfs, some others): a hole punched instead reads back as zeroes. */
static void test_disk_write_zeroes_falls_back_to_hole(void **state)
{
	if (!fs_punches_holes(*state)) {
		print_message("write-zeroes: no hole punching at %s\n", ((struct fx *)*state)->dir);
		skip();
	}
	atomic_store(&hook.refuse_zero_range, true);
	write_zeroes_and_check(*state, "wz-hole.img", 3000, 200000);
	/* Asked once, then remembered; the punches did the work. */
	assert_int_equal(atomic_load(&hook.zero_range_calls), 1);
	assert_int_equal(atomic_load(&hook.punch_hole_calls), 2);
}

/* Neither: zeroes written out, in several pieces for a range larger than one. */
static void test_disk_write_zeroes_falls_back_to_writing(void **state)
{
	atomic_store(&hook.refuse_zero_range, true);
	atomic_store(&hook.refuse_punch_hole, true);
	write_zeroes_and_check(*state, "wz-write.img", 3000, 200000 + 7);
	assert_int_equal(atomic_load(&hook.zero_range_calls), 1);
	assert_int_equal(atomic_load(&hook.punch_hole_calls), 1);
}

/* Many requests from several submitters at once: each completes once, with its own bytes. */
enum { MANY = 1000, MANY_BLOCK = 4096, SUBMITTERS = 4 };

struct batch {
	struct disk *d;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int completed;
	struct slot {
		struct disk_request req;
		struct iovec iov;
		atomic_int calls;
		int status;
	} slots[MANY];
};

static void batch_done(struct disk_request *req, int status)
{
	struct slot *s = (struct slot *)req;
	struct batch *b = req->opaque;

	s->status = status;
	atomic_fetch_add(&s->calls, 1);
	pthread_mutex_lock(&b->lock);
	b->completed++;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

struct submitter {
	struct batch *b;
	unsigned int first, count;
};

static void *submitter_run(void *arg)
{
	struct submitter *s = arg;

	for (unsigned int i = s->first; i < s->first + s->count; i++)
		disk_submit(s->b->d, &s->b->slots[i].req);
	return NULL;
}

/* Resets the slots to op over their buffers, submits them from SUBMITTERS threads, waits. */
static void batch_run(struct batch *b, enum disk_op op)
{
	struct submitter sub[SUBMITTERS];
	pthread_t t[SUBMITTERS];

	b->completed = 0;
	for (int i = 0; i < MANY; i++) {
		b->slots[i].req.op = op;
		b->slots[i].status = 1;
		atomic_store(&b->slots[i].calls, 0);
	}
	for (int i = 0; i < SUBMITTERS; i++) {
		sub[i] = (struct submitter){ b, i * (MANY / SUBMITTERS), MANY / SUBMITTERS };
		assert_int_equal(pthread_create(&t[i], NULL, submitter_run, &sub[i]), 0);
	}
	for (int i = 0; i < SUBMITTERS; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_lock(&b->lock);
	while (b->completed < MANY)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

static void batch_assert_once_ok(struct batch *b)
{
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(atomic_load(&b->slots[i].calls), 1);
		assert_int_equal(b->slots[i].status, 0);
	}
}

static void test_disk_many_concurrent_requests_complete_once(void **state)
{
	struct batch *b = calloc(1, sizeof(*b));
	uint8_t *bufs = malloc(MANY * MANY_BLOCK), *expect = malloc(MANY * MANY_BLOCK);
	unsigned int perm[MANY];
	char path[PATH_MAX];
	uint8_t *file;
	size_t len;

	assert_true(b && bufs && expect);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	/* Each request its own block, in a shuffled order. */
	srand(1234);
	for (unsigned int i = 0; i < MANY; i++)
		perm[i] = i;
	for (unsigned int i = MANY - 1; i > 0; i--) {
		unsigned int j = rand() % (i + 1), tmp = perm[i];

		perm[i] = perm[j];
		perm[j] = tmp;
	}
	for (unsigned int i = 0; i < MANY; i++) {
		struct slot *s = &b->slots[i];

		fill(bufs + i * MANY_BLOCK, MANY_BLOCK, 1000 + i);
		memcpy(expect + perm[i] * MANY_BLOCK, bufs + i * MANY_BLOCK, MANY_BLOCK);
		s->iov = (struct iovec){ bufs + i * MANY_BLOCK, MANY_BLOCK };
		s->req = (struct disk_request){ .offset = (uint64_t)perm[i] * MANY_BLOCK,
						.iov = &s->iov,
						.iovcnt = 1,
						.done = batch_done,
						.opaque = b };
	}
	img_make(fx_path(*state, "many.img", path), MANY * MANY_BLOCK, 0);
	b->d = t_open(path, false, false, 0);

	batch_run(b, DISK_WRITE);
	batch_assert_once_ok(b);
	memset(bufs, 0, MANY * MANY_BLOCK);
	batch_run(b, DISK_READ);
	batch_assert_once_ok(b);
	for (unsigned int i = 0; i < MANY; i++)
		assert_memory_equal(bufs + i * MANY_BLOCK, expect + perm[i] * MANY_BLOCK,
				    MANY_BLOCK);
	disk_close(b->d);
	/* Still once each after the pool is gone: no late or repeated completion. */
	batch_assert_once_ok(b);
	file = img_read(path, &len);
	assert_int_equal(len, MANY * MANY_BLOCK);
	assert_memory_equal(file, expect, len);
	free(file);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(expect);
	free(bufs);
	free(b);
}

/* A done that dawdles keeps the single worker busy while more requests queue up behind it. */
struct slow {
	struct disk_request req;
	atomic_int *calls;
	atomic_int *failed;
	struct disk *d;
	struct slow *next; /* submitted from this one's done, if any */
};

static void slow_done(struct disk_request *req, int status)
{
	struct slow *s = (struct slow *)req;

	if (s == s->req.opaque)
		usleep(50 * 1000);
	if (status)
		atomic_fetch_add(s->failed, 1);
	atomic_fetch_add(s->calls, 1);
	if (s->next)
		disk_submit(s->d, &s->next->req);
}

static void test_disk_close_completes_queued_requests(void **state)
{
	enum { N = 200 };
	static struct slow reqs[N];
	static uint8_t data[N][512];
	struct iovec iov[N];
	atomic_int calls = 0, failed = 0;
	char path[PATH_MAX];
	uint8_t *file;
	size_t len;
	struct disk *d;

	img_make(fx_path(*state, "drain.img", path), N * 512, 0);
	d = t_open(path, false, false, 1);
	for (int i = 0; i < N; i++) {
		fill(data[i], 512, i);
		iov[i] = (struct iovec){ data[i], 512 };
		reqs[i] = (struct slow){
			.req = { .op = DISK_WRITE,
				 .offset = i * 512,
				 .iov = &iov[i],
				 .iovcnt = 1,
				 .done = slow_done,
				 .opaque = i == 0 ? &reqs[0] : NULL },
			.calls = &calls,
			.failed = &failed,
			.d = d,
		};
	}
	for (int i = 0; i < N; i++)
		disk_submit(d, &reqs[i].req);
	/* The first done is still asleep: nearly everything is queued when close starts. */
	disk_close(d);
	assert_int_equal(atomic_load(&calls), N);
	assert_int_equal(atomic_load(&failed), 0);
	file = img_read(path, &len);
	assert_memory_equal(file, data, sizeof(data));
	free(file);
}

/* done may submit the next request (no engine lock held), even while the disk is closing. */
static void test_disk_done_may_submit_while_closing(void **state)
{
	enum { N = 50 };
	static struct slow chain[N];
	static uint8_t data[N][512];
	struct iovec iov[N];
	atomic_int calls = 0, failed = 0;
	char path[PATH_MAX];
	uint8_t *file;
	size_t len;
	struct disk *d;

	img_make(fx_path(*state, "chain.img", path), N * 512, 0);
	d = t_open(path, false, false, 2);
	for (int i = 0; i < N; i++) {
		fill(data[i], 512, 100 + i);
		iov[i] = (struct iovec){ data[i], 512 };
		chain[i] = (struct slow){
			.req = { .op = DISK_WRITE,
				 .offset = i * 512,
				 .iov = &iov[i],
				 .iovcnt = 1,
				 .done = slow_done,
				 .opaque = i == 0 ? &chain[0] : NULL },
			.calls = &calls,
			.failed = &failed,
			.d = d,
			.next = i + 1 < N ? &chain[i + 1] : NULL,
		};
	}
	disk_submit(d, &chain[0].req);
	disk_close(d);
	assert_int_equal(atomic_load(&calls), N);
	assert_int_equal(atomic_load(&failed), 0);
	file = img_read(path, &len);
	assert_memory_equal(file, data, sizeof(data));
	free(file);
}

/* The child's side of open_in_child: this binary run as `test_disk --open rw|ro PATH`. */
static int child_open(const char *mode, const char *path)
{
	struct disk_options o = { .path = path, .readonly = !strcmp(mode, "ro") };
	struct disk *d;
	char why[DISK_ERR_MAX];
	int err = disk_open(&d, &o, why, sizeof(why));

	if (!err)
		disk_close(d);
	return -err;
}

/*
 * What a second nkvm would get: disk_open in another process (this binary, exec'ed afresh: a
 * forked copy of a process with threads may not start its own), as 0 or a negative errno.
 */
static int open_in_child(const char *path, bool ro)
{
	char *argv[] = { "/proc/self/exe", "--open", ro ? "ro" : "rw", (char *)path, NULL };
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return -WEXITSTATUS(status);
}

static void test_disk_lock_excludes_second_writer(void **state)
{
	char path[PATH_MAX];
	char why[DISK_ERR_MAX];
	struct disk *rw, *ro1, *ro2;

	img_make(fx_path(*state, "lock.img", path), 64 * KiB, 0);
	rw = t_open(path, false, false, 1);
	assert_int_equal(t_open_err(path, false, false, why, sizeof(why)), -EAGAIN);
	assert_string_equal(why, "image is in use by another process (locked)");
	assert_int_equal(t_open_err(path, true, false, why, sizeof(why)), -EAGAIN);
	assert_string_equal(why, "image is in use by another process (locked)");
	assert_int_equal(open_in_child(path, false), -EAGAIN);
	assert_int_equal(open_in_child(path, true), -EAGAIN);
	disk_close(rw);

	/* Readers share; a writer waits for all of them to go. */
	ro1 = t_open(path, true, false, 1);
	ro2 = t_open(path, true, false, 1);
	assert_int_equal(open_in_child(path, true), 0);
	assert_int_equal(t_open_err(path, false, false, why, sizeof(why)), -EAGAIN);
	assert_int_equal(open_in_child(path, false), -EAGAIN);
	disk_close(ro1);
	assert_int_equal(t_open_err(path, false, false, why, sizeof(why)), -EAGAIN);
	disk_close(ro2);
	rw = t_open(path, false, false, 1);
	disk_close(rw);
	assert_int_equal(open_in_child(path, false), 0);
}

static void test_disk_open_rejects_what_is_not_an_image(void **state)
{
	char path[PATH_MAX];
	struct disk_options o = { 0 };
	struct disk *d;
	char why[DISK_ERR_MAX];

	assert_int_equal(t_open_err(((struct fx *)*state)->dir, false, false, why, sizeof(why)),
			 -EISDIR);
	assert_string_equal(why, "is a directory");
	assert_int_equal(t_open_err(((struct fx *)*state)->dir, true, false, why, sizeof(why)),
			 -EISDIR);
	assert_string_equal(why, "is a directory");

	assert_int_equal(t_open_err(fx_path(*state, "missing.img", path), true, false, why,
				    sizeof(why)),
			 -ENOENT);
	assert_string_equal(why, "no such file");

	assert_int_equal(t_open_err("/dev/null", false, false, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "not a regular file or block device");
	assert_int_equal(t_open_err("/dev/null", true, false, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "not a regular file or block device");

	/* A FIFO is refused at once rather than blocking the open until a writer appears. */
	assert_int_equal(mkfifo(fx_path(*state, "fifo", path), 0600), 0);
	alarm(10);
	assert_int_equal(t_open_err(path, true, false, why, sizeof(why)), -EINVAL);
	alarm(WATCHDOG_SECONDS);
	assert_string_equal(why, "not a regular file or block device");

	img_make(fx_path(*state, "t.img", path), 4096, 0);
	o.path = path;
	o.threads = DISK_THREADS_MAX + 1;
	d = (struct disk *)1;
	why[0] = '\0';
	assert_int_equal(disk_open(&d, &o, why, sizeof(why)), -EINVAL);
	assert_null(d);
	assert_true(why[0]);
	o.threads = DISK_THREADS_MAX;
	assert_int_equal(disk_open(&d, &o, why, sizeof(why)), 0);
	disk_close(d);
}

/* The file shrank under the disk: the end of a read is missing, which is an I/O error. */
static void test_disk_read_past_shrunk_file_is_eio(void **state)
{
	uint8_t buf[8192];
	char path[PATH_MAX];
	bool inside;
	struct disk *d;

	img_make(fx_path(*state, "shrink.img", path), 64 * KiB, 61);
	d = t_open(path, false, false, 0);
	assert_int_equal(truncate(path, 32 * KiB), 0);
	assert_int_equal(t_read(d, 32 * KiB - 4096, buf, sizeof(buf), &inside), -EIO);
	assert_false(inside);
	disk_close(d);
}

/* A joined thread can linger in /proc for an instant after pthread_join returns. */
static unsigned int io_threads_settle(unsigned int want)
{
	unsigned int n;

	for (int i = 0; i < 200 && (n = fx_disk_io_threads()) != want; i++)
		usleep(10 * 1000);
	return n;
}

/*
 * Each disk has its own pool, starting with two workers (growing while requests wait, up to the
 * size asked for), gone when the disk closes. Counted from what runs already, in case an
 * earlier test failed with a disk open.
 */
static void test_disk_each_disk_has_its_own_pool(void **state)
{
	unsigned int base = fx_disk_io_threads();
	char pa[PATH_MAX], pb[PATH_MAX];
	uint8_t x[4096], y[4096];
	sigset_t none, after;
	struct disk *a, *b, *c;
	struct io io;

	img_make(fx_path(*state, "a.img", pa), 64 * KiB, 0);
	img_make(fx_path(*state, "b.img", pb), 64 * KiB, 0);
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	a = t_open(pa, false, false, 1);
	assert_int_equal(fx_disk_io_threads(), base + 1);
	b = t_open(pb, false, false, 5);
	assert_int_equal(fx_disk_io_threads(), base + 3);
	/* Starting workers leaves the caller's own signal mask as it was. */
	pthread_sigmask(SIG_BLOCK, NULL, &after);
	assert_false(sigismember(&after, SIGINT));
	assert_false(sigismember(&after, SIGTERM));

	fill(x, sizeof(x), 71);
	assert_int_equal(t_write(a, 0, x, sizeof(x), NULL), 0);
	disk_close(a);
	assert_int_equal(io_threads_settle(base + 2), base + 2);
	/* b is unaffected by a's pool going away. */
	assert_int_equal(t_write(b, 4096, x, sizeof(x), NULL), 0);
	assert_int_equal(t_read(b, 4096, y, sizeof(y), NULL), 0);
	assert_memory_equal(x, y, sizeof(x));

	/* Workers leave signals to the main thread, but not faults, which must reach a handler. */
	memset(&io, 0, sizeof(io));
	io.req = (struct disk_request){ .op = DISK_FLUSH, .done = io_done, .opaque = &io };
	pthread_mutex_init(&io.lock, NULL);
	pthread_cond_init(&io.cond, NULL);
	disk_submit(b, &io.req);
	pthread_mutex_lock(&io.lock);
	while (!io.calls)
		pthread_cond_wait(&io.cond, &io.lock);
	pthread_mutex_unlock(&io.lock);
	assert_false(pthread_equal(io.thread, pthread_self()));
	assert_true(sigismember(&io.sigmask, SIGINT));
	assert_true(sigismember(&io.sigmask, SIGTERM));
	assert_true(sigismember(&io.sigmask, SIGCHLD));
	assert_false(sigismember(&io.sigmask, SIGSEGV));
	assert_false(sigismember(&io.sigmask, SIGBUS));
	disk_close(b);
	assert_int_equal(io_threads_settle(base), base);

	c = t_open(pa, false, false, 0);
	assert_int_equal(fx_disk_io_threads(), base + 2);
	disk_close(c);
	assert_int_equal(io_threads_settle(base), base);
	pthread_cond_destroy(&io.cond);
	pthread_mutex_destroy(&io.lock);
}

/*
 * Requests waiting for a worker grow the pool, but never past the size asked for: 64 flushes
 * submitted at once to a pool of two, limited to 4, leave exactly 4 workers.
 */
static void test_disk_pool_grows_to_its_limit(void **state)
{
	unsigned int base = fx_disk_io_threads();
	struct io ios[64];
	char path[PATH_MAX];
	struct disk *d;

	img_make(fx_path(*state, "grow.img", path), 64 * KiB, 0);
	d = t_open(path, false, false, 4);
	assert_int_equal(fx_disk_io_threads(), base + 2);
	for (int i = 0; i < 64; i++) {
		memset(&ios[i], 0, sizeof(ios[i]));
		ios[i].req = (struct disk_request){ .op = DISK_FLUSH,
						    .done = io_done,
						    .opaque = &ios[i] };
		pthread_mutex_init(&ios[i].lock, NULL);
		pthread_cond_init(&ios[i].cond, NULL);
		disk_submit(d, &ios[i].req);
	}
	for (int i = 0; i < 64; i++) {
		pthread_mutex_lock(&ios[i].lock);
		while (!ios[i].calls)
			pthread_cond_wait(&ios[i].cond, &ios[i].lock);
		pthread_mutex_unlock(&ios[i].lock);
		assert_int_equal(ios[i].status, 0);
	}
	assert_int_equal(fx_disk_io_threads(), base + 4);
	disk_close(d);
	assert_int_equal(io_threads_settle(base), base);
	for (int i = 0; i < 64; i++) {
		pthread_cond_destroy(&ios[i].cond);
		pthread_mutex_destroy(&ios[i].lock);
	}
}

/* A flush whose done holds its worker until the test lets every such done return. */
struct held {
	struct disk_request req;
	pthread_mutex_t *lock;
	pthread_cond_t *cond;
	bool *release;
	unsigned int *done;
};

static void held_done(struct disk_request *req, int status)
{
	struct held *h = (struct held *)req;

	assert_int_equal(status, 0);
	pthread_mutex_lock(h->lock);
	while (!*h->release)
		pthread_cond_wait(h->cond, h->lock);
	(*h->done)++;
	pthread_cond_broadcast(h->cond);
	pthread_mutex_unlock(h->lock);
}

/*
 * The default pool of an O_DIRECT disk: it grows to the depth up to 8 workers per CPU (16 to
 * 64), and beyond only while the requests waiting outnumber the workers by more than that, up
 * to 64. Every worker here is held in a done callback, so the count of those waiting is known:
 * 2 x 16 requests leave 16 workers (a QD32 guest), 4 x 16 more than 16 (QD64) and at most 64.
 */
static void test_disk_pool_beyond_depth_for_a_deep_queue(void **state)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int depth = cpus * 8 < 16 ? 16 : cpus * 8 > 64 ? 64 : (unsigned int)cpus * 8;
	unsigned int base = fx_disk_io_threads(), done = 0, n;
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
	struct disk_options o = { .direct = true, .engine = DISK_ENGINE_THREADS };
	struct held *hs = calloc(4 * depth, sizeof(*hs));
	bool release = false;
	char path[PATH_MAX];
	char why[DISK_ERR_MAX];
	struct disk *d;
	int err;

	assert_non_null(hs);
	img_make(fx_path(*state, "deep.img", path), 64 * KiB, 0);
	o.path = path;
	err = disk_open(&d, &o, why, sizeof(why));
	if (err == -EINVAL) {
		free(hs);
		print_message("deep pool: skipped, %s refuses O_DIRECT (%s)\n",
			      ((struct fx *)*state)->dir, why);
		skip();
	}
	assert_int_equal(err, 0);
	assert_string_equal(disk_engine_name(d), "threads");
	for (unsigned int i = 0; i < 4 * depth; i++) {
		hs[i] = (struct held){ .req = { .op = DISK_FLUSH, .done = held_done },
				       .lock = &lock,
				       .cond = &cond,
				       .release = &release,
				       .done = &done };
		disk_submit(d, &hs[i].req);
		if (i + 1 == 2 * depth) {
			/* Let the workers take what they can: each then holds one. */
			usleep(100 * 1000);
			assert_int_equal(fx_disk_io_threads(), base + depth);
		}
	}
	usleep(100 * 1000);
	n = fx_disk_io_threads() - base;
	if (depth < 64)
		assert_true(n > depth);
	assert_true(n <= 64);
	pthread_mutex_lock(&lock);
	release = true;
	pthread_cond_broadcast(&cond);
	while (done < 4 * depth)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	disk_close(d);
	assert_int_equal(io_threads_settle(base), base);
	free(hs);
}

static void test_disk_direct_io(void **state)
{
	char path[PATH_MAX];
	uint8_t *buf = NULL, *got = NULL, *file;
	size_t len;
	struct disk_options o;
	char why[DISK_ERR_MAX];
	uint32_t bs;
	bool inside;
	struct disk *d;
	struct iovec two[2];
	int err, fd;

	img_make(fx_path(*state, "direct.img", path), 1 * MiB, 81);
	o = (struct disk_options){ .path = path, .direct = true, .threads = 2 };
	err = disk_open(&d, &o, why, sizeof(why));
	if (err == -EINVAL) {
		print_message("direct I/O: skipped, the file system at %s refuses O_DIRECT (%s)\n",
			      ((struct fx *)*state)->dir, why);
		skip();
	}
	if (err)
		fail_msg("%s: %s: %s", path, why, strerror(-err));
	bs = disk_block_size(d);
	assert_true(bs >= 512 && bs <= 64 * KiB && !(bs & (bs - 1)));
	assert_int_equal(posix_memalign((void **)&buf, 4096, 4 * bs + 4096), 0);
	assert_int_equal(posix_memalign((void **)&got, 4096, 4 * bs + 4096), 0);
	fill(buf, 4 * bs + 4096, 82);

	/* Two segments of whole blocks from page-aligned buffers: the guest's case. */
	two[0] = (struct iovec){ buf, bs };
	two[1] = (struct iovec){ buf + 2 * bs, 2 * bs };
	assert_int_equal(t_io(d, DISK_WRITE, 8 * bs, two, 2, 0, &inside), 0);
	assert_false(inside);
	assert_int_equal(t_read(d, 8 * bs, got, 3 * bs, NULL), 0);
	assert_memory_equal(got, buf, bs);
	assert_memory_equal(got + bs, buf + 2 * bs, 2 * bs);
	/* The same bytes through the page cache. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	memset(got, 0, 3 * bs);
	assert_int_equal(pread_full(fd, got, 3 * bs, 8 * bs), 0);
	close(fd);
	assert_memory_equal(got + bs, buf + 2 * bs, 2 * bs);

	/* Misaligned offset, length or buffer: refused before any I/O, the file as it was. */
	file = img_read(path, &len);
	assert_int_equal(t_write(d, 8 * bs + 1, buf, bs, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_write(d, 8 * bs, buf, bs + 1, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_write(d, 8 * bs, buf + 1, bs, &inside), -EINVAL);
	assert_true(inside);
	two[1] = (struct iovec){ buf + 2 * bs + 1, bs };
	assert_int_equal(t_io(d, DISK_WRITE, 8 * bs, two, 2, 0, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_read(d, 8 * bs, got + 1, bs, &inside), -EINVAL);
	assert_true(inside);
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, 8 * bs, bs / 2, &inside), -EINVAL);
	assert_true(inside);
	img_assert_unchanged(path, file, len);

	/* Whole-block zeroes and discard work as in buffered mode. */
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, 8 * bs, bs, NULL), 0);
	assert_int_equal(t_range(d, DISK_DISCARD, 16 * bs, 4 * bs, NULL), 0);
	assert_int_equal(t_read(d, 8 * bs, got, bs, NULL), 0);
	assert_true(all_zero(got, bs));
	assert_int_equal(t_io(d, DISK_FLUSH, 0, NULL, 0, 0, NULL), 0);
	disk_close(d);
	free(file);
	free(got);
	free(buf);
}

/*
 * A loop device over backing, when this runs with the privilege to make one: a descriptor that
 * holds it, or a negative errno. LO_FLAGS_AUTOCLEAR detaches it when the last descriptor closes.
 */
static int loop_attach(const char *backing, char *dev)
{
	struct loop_info64 info = { .lo_flags = LO_FLAGS_AUTOCLEAR };
	int ctl, nr, fd, bfd, err;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -errno;
	nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	err = -errno;
	close(ctl);
	if (nr < 0)
		return err;
	snprintf(dev, PATH_MAX, "/dev/loop%d", nr);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	bfd = open(backing, O_RDWR | O_CLOEXEC);
	if (bfd < 0 || ioctl(fd, LOOP_SET_FD, bfd)) {
		err = -errno;
		if (bfd >= 0)
			close(bfd);
		close(fd);
		return err;
	}
	close(bfd);
	if (ioctl(fd, LOOP_SET_STATUS64, &info)) {
		err = -errno;
		ioctl(fd, LOOP_CLR_FD, 0);
		close(fd);
		return err;
	}
	return fd;
}

static void test_disk_block_device(void **state)
{
	enum { SIZE = 4 * MiB };
	char backing[PATH_MAX], dev[PATH_MAX];
	uint8_t buf[8192], got[8192];
	char why[DISK_ERR_MAX];
	struct disk *d;
	int hold;

	img_make(fx_path(*state, "loop.img", backing), SIZE, 91);
	hold = loop_attach(backing, dev);
	if (hold < 0) {
		print_message("block device: skipped, cannot set up a loop device (%s)\n",
			      strerror(-hold));
		skip();
	}
	d = t_open(dev, false, false, 2);
	assert_int_equal(disk_size(d), SIZE);
	assert_int_equal(disk_block_size(d), 512);
	assert_int_equal(t_open_err(dev, true, false, why, sizeof(why)), -EAGAIN);

	fill(buf, sizeof(buf), 92);
	assert_int_equal(t_write(d, 1000, buf, sizeof(buf), NULL), 0);
	assert_int_equal(t_read(d, 1000, got, sizeof(got), NULL), 0);
	assert_memory_equal(got, buf, sizeof(buf));
	/* BLKZEROOUT for whole sectors, written zeroes for the odd range. */
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, 1024, 4096, NULL), 0);
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, 6000, 100, NULL), 0);
	assert_int_equal(t_read(d, 1000, got, sizeof(got), NULL), 0);
	assert_memory_equal(got, buf, 24);
	assert_true(all_zero(got + 24, 4096));
	assert_memory_equal(got + 24 + 4096, buf + 24 + 4096, 6000 - 1000 - 24 - 4096);
	assert_true(all_zero(got + 5000, 100));
	assert_memory_equal(got + 5100, buf + 5100, sizeof(buf) - 5100);
	/* BLKDISCARD, rounded in to whole sectors; data after it is zeroes or what it was. */
	assert_int_equal(t_range(d, DISK_DISCARD, 1 * MiB + 100, 1 * MiB, NULL), 0);
	assert_int_equal(t_range(d, DISK_DISCARD, 3 * MiB + 1, 100, NULL), 0);
	assert_int_equal(t_io(d, DISK_FLUSH, 0, NULL, 0, 0, NULL), 0);
	assert_int_equal(t_write(d, SIZE - 512, buf, 1024, NULL), -EINVAL);
	disk_close(d);
	close(hold);
}

/* --- a probed raw image stays raw: the guest cannot make it another format ------------------ */

#define SECRET_MARKER "nkvm-test-secret-9f3c1e"

/* A host file the guest must never read, its marker repeated through it. */
static void secret_make(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(write_all(fd, SECRET_MARKER, sizeof(SECRET_MARKER) - 1), 0);
	close(fd);
}

/*
 * What a hostile guest writes from sector 0 on: a whole qcow2 image (header, refcounts, an empty
 * L1 table) of 2 MiB naming the secret as its raw backing file, padded to 64 KiB. Were it
 * written, a probing open would take the disk for that image and read the secret through it.
 */
static uint8_t *hostile_header(struct fx *fx, const char *secret, size_t *len)
{
	struct qcow2_create_options q = {
		.size = 2 * MiB,
		.version = 3,
		.cluster_bits = 9,
		.refcount_order = QCOW2_DEFAULT_REFCOUNT_ORDER,
		.backing_file = secret,
		.backing_format = "raw",
	};
	char path[PATH_MAX], why[256];
	uint8_t *buf;
	int fd;

	fd = open(fx_path(fx, "hostile.qcow2", path), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	if (qcow2_create(fd, &q, why, sizeof(why)))
		fail_msg("qcow2_create: %s", why);
	assert_int_equal(ftruncate(fd, 64 * KiB), 0);
	close(fd);
	buf = img_read(path, len);
	assert_int_equal(*len, 64 * KiB);
	return buf;
}

/* Reads the whole disk and fails when the secret's marker is anywhere in it. */
static void assert_no_secret(struct disk *d)
{
	uint64_t size = disk_size(d);
	uint8_t *all = malloc(size ? size : 1);

	assert_non_null(all);
	assert_int_equal(t_read(d, 0, all, size, NULL), 0);
	if (memmem(all, size, SECRET_MARKER, sizeof(SECRET_MARKER) - 1))
		fail_msg("the secret's bytes reached the guest");
	free(all);
}

static void test_probed_raw_refuses_qcow2_header_write(void **state)
{
	char path[PATH_MAX], secret[PATH_MAX];
	uint8_t *hdr, *file;
	size_t hdr_len, len;
	struct iovec split[3];
	bool inside;
	struct disk *d;

	secret_make(fx_path(*state, "secret", secret));
	hdr = hostile_header(*state, secret, &hdr_len);
	img_make(fx_path(*state, "probed.img", path), 1 * MiB, 0);
	file = img_read(path, &len);

	d = t_open(path, false, false, 2);
	assert_true(disk_probed_raw(d));
	/* The whole image in one write, then with the header split across segments. */
	assert_int_equal(t_write(d, 0, hdr, hdr_len, &inside), -EPERM);
	assert_true(inside);
	split[0] = (struct iovec){ hdr, 3 };
	split[1] = (struct iovec){ hdr + 3, 509 };
	split[2] = (struct iovec){ hdr + 512, hdr_len - 512 };
	assert_int_equal(t_io(d, DISK_WRITE, 0, split, 3, 0, NULL), -EPERM);
	/* Writes of part of the first sector cannot be judged without the rest: refused. */
	assert_int_equal(t_write(d, 0, hdr, 4, NULL), -EINVAL);
	assert_int_equal(t_write(d, 2, hdr + 2, 2, NULL), -EINVAL);
	assert_int_equal(t_write(d, 0, hdr, 511, NULL), -EINVAL);
	disk_close(d);
	img_assert_unchanged(path, file, len);

	/* Opened again, probing: still raw, and the secret is nowhere on the disk. */
	d = t_open(path, false, false, 2);
	assert_true(disk_probed_raw(d));
	assert_int_equal(disk_size(d), 1 * MiB);
	assert_no_secret(d);
	disk_close(d);
	free(file);
	free(hdr);
}

/* What a guest puts in sector 0 that probes raw (a partition table, a file system) goes in. */
static void test_probed_raw_takes_other_first_sector_writes(void **state)
{
	enum { LEN = 8192 };
	uint8_t buf[LEN], got[LEN], magic[4] = { 'Q', 'F', 'I', 0xfb };
	struct iovec split[3];
	char path[PATH_MAX];
	struct disk *d;

	img_make(fx_path(*state, "mbr.img", path), 1 * MiB, 3);
	d = t_open(path, false, false, 2);
	assert_true(disk_probed_raw(d));

	/* An MBR: one sector, the 0x55aa signature at its end. */
	fill(buf, 512, 4);
	buf[510] = 0x55;
	buf[511] = 0xaa;
	assert_int_equal(t_write(d, 0, buf, 512, NULL), 0);
	assert_int_equal(t_read(d, 0, got, 512, NULL), 0);
	assert_memory_equal(got, buf, 512);

	/* Several sectors in odd segments; the bytes land as sent. */
	fill(buf, LEN, 5);
	split[0] = (struct iovec){ buf, 100 };
	split[1] = (struct iovec){ buf + 100, 1000 };
	split[2] = (struct iovec){ buf + 1100, LEN - 1100 };
	assert_int_equal(t_io(d, DISK_WRITE, 0, split, 3, 0, NULL), 0);
	assert_int_equal(t_read(d, 0, got, LEN, NULL), 0);
	assert_memory_equal(got, buf, LEN);

	/* The qcow2 magic anywhere but at the start does not matter to probing. */
	memcpy(buf + 512, magic, 4);
	assert_int_equal(t_write(d, 512, buf + 512, 512, NULL), 0);
	assert_int_equal(t_write(d, 4096 + 1, buf, 3, NULL), 0);

	/* Zeroes probe raw: write-zeroes and discard over the first sector go through. */
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, 0, 4096, NULL), 0);
	assert_int_equal(t_read(d, 0, got, 4096, NULL), 0);
	assert_true(all_zero(got, 4096));
	assert_int_equal(t_range(d, DISK_DISCARD, 0, 64 * KiB, NULL), 0);
	/* Part of the first sector, zeroed or discarded: judged as partial writes are. */
	assert_int_equal(t_range(d, DISK_WRITE_ZEROES, 0, 4, NULL), -EINVAL);
	assert_int_equal(t_range(d, DISK_DISCARD, 256, 512, NULL), -EINVAL);
	disk_close(d);
}

/*
 * format=raw, or a read-only disk, is not guarded: the user said what the image is (and may
 * well be writing a qcow2 image onto a raw disk), or nothing can be written.
 */
static void test_named_raw_takes_qcow2_header_write(void **state)
{
	struct disk_options o = { .format = DISK_FORMAT_RAW };
	char path[PATH_MAX], secret[PATH_MAX];
	uint8_t *hdr, got[4];
	size_t hdr_len;
	char why[DISK_ERR_MAX];
	struct disk *d;

	secret_make(fx_path(*state, "secret", secret));
	hdr = hostile_header(*state, secret, &hdr_len);
	img_make(fx_path(*state, "named.img", path), 1 * MiB, 0);
	o.path = path;
	assert_int_equal(disk_open(&d, &o, why, sizeof(why)), 0);
	assert_false(disk_probed_raw(d));
	assert_int_equal(t_write(d, 0, hdr, hdr_len, NULL), 0);
	assert_int_equal(t_write(d, 2, "xy", 2, NULL), 0);
	assert_int_equal(t_read(d, 0, got, 4, NULL), 0);
	assert_memory_equal(got, "QFxy", 4);
	disk_close(d);

	img_make(path, 1 * MiB, 0);
	d = t_open(path, true, false, 0);
	assert_false(disk_probed_raw(d));
	disk_close(d);
	free(hdr);
}

/*
 * An image whose format was probed (a file that merely starts with the qcow2 magic) may not
 * name a block device as its backing file, which as root could be any disk of the host; with
 * format=qcow2 the user vouches for the image, and it opens.
 */
static void test_probed_qcow2_refuses_block_device_backing(void **state)
{
	char backing[PATH_MAX], dev[PATH_MAX], path[PATH_MAX];
	struct qcow2_create_options q = {
		.size = 1 * MiB,
		.version = 3,
		.cluster_bits = 16,
		.refcount_order = QCOW2_DEFAULT_REFCOUNT_ORDER,
		.backing_format = "raw",
	};
	struct disk_options o = { .readonly = true };
	char why[DISK_ERR_MAX];
	struct disk *d = NULL;
	char msg[256];
	int hold, fd;

	img_make(fx_path(*state, "dev.img", backing), 1 * MiB, 93);
	hold = loop_attach(backing, dev);
	if (hold < 0) {
		print_message("block device backing: skipped, cannot set up a loop device (%s)\n",
			      strerror(-hold));
		skip();
	}
	q.backing_file = dev;
	fd = open(fx_path(*state, "ov.qcow2", path), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	if (qcow2_create(fd, &q, msg, sizeof(msg)))
		fail_msg("qcow2_create: %s", msg);
	close(fd);

	o.path = path;
	assert_int_equal(disk_open(&d, &o, why, sizeof(why)), -EPERM);
	assert_null(d);
	assert_non_null(strstr(why, "block device"));
	assert_non_null(strstr(why, "format=qcow2"));
	o.format = DISK_FORMAT_QCOW2;
	assert_int_equal(disk_open(&d, &o, why, sizeof(why)), 0);
	assert_int_equal(disk_size(d), 1 * MiB);
	disk_close(d);
	close(hold);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_disk_reports_size_of_file_image),
		T(test_disk_write_then_read_back_iovecs),
		T(test_disk_iovec_longer_than_iov_max),
		T(test_disk_coherent_with_plain_file_io),
		T(test_disk_readonly_rejects_changes),
		T(test_disk_rejects_out_of_range_requests),
		T(test_disk_flush_calls_fdatasync),
		T(test_disk_discard_punches_hole),
		T(test_disk_discard_without_hole_support_keeps_data),
		T(test_disk_write_zeroes_reads_back_zeroes),
		T(test_disk_write_zeroes_falls_back_to_hole),
		T(test_disk_write_zeroes_falls_back_to_writing),
		T(test_disk_many_concurrent_requests_complete_once),
		T(test_disk_close_completes_queued_requests),
		T(test_disk_done_may_submit_while_closing),
		T(test_disk_lock_excludes_second_writer),
		T(test_disk_open_rejects_what_is_not_an_image),
		T(test_disk_read_past_shrunk_file_is_eio),
		T(test_disk_each_disk_has_its_own_pool),
		T(test_disk_pool_grows_to_its_limit),
		T(test_disk_pool_beyond_depth_for_a_deep_queue),
		T(test_disk_direct_io),
		T(test_disk_block_device),
		T(test_probed_raw_refuses_qcow2_header_write),
		T(test_probed_raw_takes_other_first_sector_writes),
		T(test_named_raw_takes_qcow2_header_write),
		T(test_probed_qcow2_refuses_block_device_backing),
	};
#undef T

	if (argc == 4 && !strcmp(argv[1], "--open"))
		return child_open(argv[2], argv[3]);
	return cmocka_run_group_tests_name("disk", tests, NULL, NULL);
}
