// SPDX-License-Identifier: MIT
/*
 * What a qcow2 FLUSH leaves on disk. The crash test (tests/crash/run) kills its writer, and a
 * killed process leaves the page cache behind: it cannot see a missing fdatasync. So this file
 * records, in order, every pwrite, pwritev, fallocate, ftruncate, fdatasync and fsync the block
 * layer makes on the image (the binary is linked with -Wl,--wrap for them: see the Makefile),
 * and replays them over the image as it was before the open, keeping two copies: the file as
 * written (the page cache) and as synced (what a power loss leaves). Each write is classified
 * by the image's own header and tables, and checked against the order qcow2.h promises:
 *   - an L2 entry points only at data that is synced and whose refcount is synced;
 *   - an L1 entry points only at an L2 table that is synced and whose refcount is synced (so
 *     L2 before L1), and the same for the refcount table and the header's table pointers;
 *   - no refcount drops below the number of synced tables that reference the cluster;
 *   - when a FLUSH completes, nothing written is left unsynced.
 * And right after a FLUSH, before close, the image file copied as it stands and the synced copy
 * both pass `qemu-img check` and read back (`qemu-img compare`) as what was written.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "block/disk.h"
#include "block/qcow2_header.h"
#include "lib/file.h"
#include "lib/util.h"

#define WATCHDOG_SECONDS 120

/* ---- The recorder: the wrapped calls on one file, in the order they happened */

enum ev_type { EV_WRITE, EV_FALLOC, EV_TRUNCATE, EV_SYNC, EV_FLUSHED };

struct ev {
	enum ev_type type;
	uint64_t off, len; /* EV_TRUNCATE: len is the new size */
	bool zero, keep_size; /* EV_FALLOC: punch or zero range; FALLOC_FL_KEEP_SIZE */
	uint8_t *data; /* EV_WRITE */
};

/* File scope: a wrapped libc call has nowhere else to find it. One image at a time. */
static struct {
	pthread_mutex_t lock;
	atomic_bool on;
	dev_t dev;
	ino_t ino;
	uint8_t *initial;
	size_t initial_len;
	struct ev *ev;
	size_t nr, cap;
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwritev(int fd, const struct iovec *iov, int cnt, off_t off);
int __real_fallocate(int fd, int mode, off_t off, off_t len);
int __real_ftruncate(int fd, off_t len);
int __real_fdatasync(int fd);
int __real_fsync(int fd);

/* When fd is the recorded file, takes the lock: the call and its record keep one order. */
static bool rec_begin(int fd)
{
	struct stat st;

	if (!atomic_load(&rec.on) || fstat(fd, &st) || st.st_dev != rec.dev || st.st_ino != rec.ino)
		return false;
	pthread_mutex_lock(&rec.lock);
	return true;
}

/* Appends an event (data: a malloc'd copy it takes over). Called by block-layer threads too. */
static void rec_add(struct ev e)
{
	if (rec.nr == rec.cap) {
		rec.cap = rec.cap ? rec.cap * 2 : 4096;
		rec.ev = realloc(rec.ev, rec.cap * sizeof(*rec.ev));
		if (!rec.ev) {
			fprintf(stderr, "test_qcow2_flush: out of memory recording\n");
			abort();
		}
	}
	rec.ev[rec.nr++] = e;
}

static uint8_t *copy_iov(const struct iovec *iov, int cnt, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	size_t done = 0;

	if (!p) {
		fprintf(stderr, "test_qcow2_flush: out of memory recording\n");
		abort();
	}
	for (int i = 0; i < cnt && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

		memcpy(p + done, iov[i].iov_base, k);
		done += k;
	}
	return p;
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	bool mine = rec_begin(fd);
	ssize_t r = __real_pwrite(fd, buf, n, off);
	int e = errno;

	if (mine) {
		struct iovec one = { (void *)buf, n };

		if (r > 0)
			rec_add((struct ev){ .type = EV_WRITE,
					     .off = off,
					     .len = r,
					     .data = copy_iov(&one, 1, r) });
		pthread_mutex_unlock(&rec.lock);
	}
	errno = e;
	return r;
}

ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int cnt, off_t off);
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	bool mine = rec_begin(fd);
	ssize_t r = __real_pwritev(fd, iov, cnt, off);
	int e = errno;

	if (mine) {
		if (r > 0)
			rec_add((struct ev){ .type = EV_WRITE,
					     .off = off,
					     .len = r,
					     .data = copy_iov(iov, cnt, r) });
		pthread_mutex_unlock(&rec.lock);
	}
	errno = e;
	return r;
}

int __wrap_fallocate(int fd, int mode, off_t off, off_t len);
int __wrap_fallocate(int fd, int mode, off_t off, off_t len)
{
	bool mine = rec_begin(fd);
	int r = __real_fallocate(fd, mode, off, len), e = errno;

	if (mine) {
		if (!r)
			rec_add((struct ev){ .type = EV_FALLOC,
					     .off = off,
					     .len = len,
					     .zero = mode &
						     (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE),
					     .keep_size = mode & FALLOC_FL_KEEP_SIZE });
		pthread_mutex_unlock(&rec.lock);
	}
	errno = e;
	return r;
}

int __wrap_ftruncate(int fd, off_t len);
int __wrap_ftruncate(int fd, off_t len)
{
	bool mine = rec_begin(fd);
	int r = __real_ftruncate(fd, len), e = errno;

	if (mine) {
		if (!r)
			rec_add((struct ev){ .type = EV_TRUNCATE, .len = len });
		pthread_mutex_unlock(&rec.lock);
	}
	errno = e;
	return r;
}

static int wrap_sync(int fd, bool data_only)
{
	bool mine = rec_begin(fd);
	int r = data_only ? __real_fdatasync(fd) : __real_fsync(fd), e = errno;

	if (mine) {
		if (!r)
			rec_add((struct ev){ .type = EV_SYNC });
		pthread_mutex_unlock(&rec.lock);
	}
	errno = e;
	return r;
}

int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
	return wrap_sync(fd, true);
}

int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
	return wrap_sync(fd, false);
}

static void rec_start(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(read_file(path, &rec.initial, &rec.initial_len), 0);
	rec.dev = st.st_dev;
	rec.ino = st.st_ino;
	rec.nr = 0;
	atomic_store(&rec.on, true);
}

/* A guest FLUSH completed: everything written before must be synced by now. */
static void rec_flushed(void)
{
	pthread_mutex_lock(&rec.lock);
	rec_add((struct ev){ .type = EV_FLUSHED });
	pthread_mutex_unlock(&rec.lock);
}

static void rec_stop(void)
{
	atomic_store(&rec.on, false);
	for (size_t i = 0; i < rec.nr; i++)
		free(rec.ev[i].data);
	free(rec.ev);
	free(rec.initial);
	rec.ev = NULL;
	rec.initial = NULL;
	rec.nr = rec.cap = 0;
}

/* ---- The replay: the file as written and as synced, and the ordering rules */

enum role { R_DATA, R_HEADER, R_L1, R_L2, R_REFTABLE, R_REFBLOCK, R_NR };
static const char *const role_name[R_NR] = { "data",	 "header",	   "L1 table",
					     "L2 table", "refcount table", "refcount block" };

struct replay {
	unsigned int cb; /* cluster_bits */
	uint64_t cs;
	uint32_t order; /* refcount_order */
	uint8_t *w, *d; /* the file as written and as synced, cap bytes each */
	uint64_t cap, wsize, dsize;
	uint8_t *dirty; /* per cluster: written since the last sync */
	uint64_t *dirty_list;
	size_t nr_dirty;
	uint8_t *role; /* per cluster, from the final image; NULL: no checks */
	uint64_t writes[R_NR]; /* cluster-sized pieces written, by role */
	unsigned int reftable_moves, flushes, nr_bad;
	char bad[4096];
};

static uint64_t rd64(const uint8_t *img, uint64_t size, uint64_t off)
{
	return off + 8 <= size ? qcow2_be64(img + off) : 0;
}

static uint32_t rd32(const uint8_t *img, uint64_t size, uint64_t off)
{
	return off + 4 <= size ? qcow2_be32(img + off) : 0;
}

static void bad(struct replay *rp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(struct replay *rp, const char *fmt, ...)
{
	size_t n = strlen(rp->bad);
	va_list ap;

	if (rp->nr_bad++ >= 8 || n + 2 >= sizeof(rp->bad))
		return;
	va_start(ap, fmt);
	vsnprintf(rp->bad + n, sizeof(rp->bad) - n - 1, fmt, ap);
	va_end(ap);
	strcat(rp->bad, "\n");
}

/* The refcount of cluster c in an image (0 where no block counts it). */
static uint64_t refcount_of(const struct replay *rp, const uint8_t *img, uint64_t size, uint64_t c)
{
	uint64_t epb = rp->cs * 8 >> rp->order, k = c / epb;
	uint64_t rt = rd64(img, size, 48), rtn = (uint64_t)rd32(img, size, 56) << rp->cb >> 3;
	uint64_t rb = k < rtn ? rd64(img, size, rt + 8 * k) & ~511ULL : 0;

	if (!rb || rb + rp->cs > size)
		return 0;
	return qcow2_refcount_get(img + rb, rp->order, c % epb);
}

static bool in_range(uint64_t off, uint64_t start, uint64_t len)
{
	return off >= start && off - start < len;
}

/* How many of an image's tables reference cluster c (the header, L1, L2, refcount table). */
static uint64_t references_to(const struct replay *rp, const uint8_t *img, uint64_t size,
			      uint64_t c)
{
	uint64_t off = c << rp->cb, l1 = rd64(img, size, 40), l1n = rd32(img, size, 36);
	uint64_t rt = rd64(img, size, 48), rtc = rd32(img, size, 56), n = !c;

	n += in_range(off, l1, ALIGN_UP(l1n * 8, rp->cs)) + in_range(off, rt, rtc << rp->cb);
	for (uint64_t i = 0; i < (rtc << rp->cb) / 8; i++)
		n += (rd64(img, size, rt + 8 * i) & ~511ULL) == off && off;
	for (uint64_t i = 0; i < l1n; i++) {
		uint64_t l2 = rd64(img, size, l1 + 8 * i) & QCOW2_L1E_OFFSET_MASK;

		if (!l2)
			continue;
		n += l2 == off;
		for (uint64_t j = 0; j < rp->cs / 8; j++) {
			uint64_t e = rd64(img, size, l2 + 8 * j);

			if (!(e & QCOW2_OFLAG_COMPRESSED))
				n += (e & QCOW2_L2E_OFFSET_MASK) == off && off;
		}
	}
	return n;
}

/* The role of cluster c now: the header's current tables, else what the final image says. */
static enum role role_now(const struct replay *rp, uint64_t c)
{
	uint64_t off = c << rp->cb;

	if (!c)
		return R_HEADER;
	if (in_range(off, rd64(rp->w, rp->wsize, 48),
		     (uint64_t)rd32(rp->w, rp->wsize, 56) << rp->cb))
		return R_REFTABLE;
	if (in_range(off, rd64(rp->w, rp->wsize, 40),
		     ALIGN_UP(rd32(rp->w, rp->wsize, 36) * 8ULL, rp->cs)))
		return R_L1;
	return rp->role[c];
}

static void set_dirty(struct replay *rp, uint64_t c)
{
	if (!rp->dirty[c]) {
		rp->dirty[c] = 1;
		rp->dirty_list[rp->nr_dirty++] = c;
	}
}

/* A table entry now points at t: t must be synced, and counted by a synced refcount. */
static void check_target(struct replay *rp, enum role r, uint64_t at, uint64_t t, bool counted)
{
	const char *what = r == R_L1 ? "L2 table" : r == R_L2 ? "data cluster" : "refcount block";

	if (t >= rp->cap) {
		bad(rp, "%s entry at %#" PRIx64 " points past the file, at %#" PRIx64, role_name[r],
		    at, t);
	} else if (rp->dirty[t >> rp->cb]) {
		bad(rp,
		    "%s entry at %#" PRIx64 " written while the %s at %#" PRIx64
		    " it points at is not synced",
		    role_name[r], at, what, t);
	} else if (counted && !refcount_of(rp, rp->d, rp->dsize, t >> rp->cb)) {
		bad(rp,
		    "%s entry at %#" PRIx64 " written while the refcount of the %s at %#" PRIx64
		    " it points at is not synced",
		    role_name[r], at, what, t);
	}
}

/* The header's pointer at field moved: the table it points at now must be synced. */
static void check_header_table(struct replay *rp, uint64_t field, uint64_t len, const char *what)
{
	uint64_t nv = rd64(rp->w, rp->wsize, field), ov = rd64(rp->d, rp->dsize, field);

	if (nv == ov)
		return;
	rp->reftable_moves += field == 48;
	for (uint64_t o = nv; o < nv + len; o += rp->cs) {
		if (o >= rp->cap || rp->dirty[o >> rp->cb]) {
			bad(rp, "header points at the %s at %#" PRIx64 " before it is synced", what,
			    nv);
			return;
		}
	}
}

/* Checks one write into one cluster, already applied to rp->w (rp->d: the synced file). */
static void check_piece(struct replay *rp, enum role r, uint64_t off, uint64_t len)
{
	uint64_t a = off & ~7ULL, b = ALIGN_UP(off + len, 8);
	uint64_t c0 = off >> rp->cb << rp->cb, epb = rp->cs * 8 >> rp->order;

	switch (r) {
	case R_HEADER:
		if (off < 64 && off + len > 36) {
			check_header_table(rp, 40, rd32(rp->w, rp->wsize, 36) * 8ULL, "L1 table");
			check_header_table(rp, 48, (uint64_t)rd32(rp->w, rp->wsize, 56) << rp->cb,
					   "refcount table");
		}
		break;
	case R_REFTABLE:
		/*
		 * A new, larger table is written with its new blocks and synced once before the
		 * header points at it: only the table in use must point at synced blocks only.
		 */
		if (!in_range(off, rd64(rp->d, rp->dsize, 48),
			      (uint64_t)rd32(rp->d, rp->dsize, 56) << rp->cb))
			break;
		/* fallthrough */
	case R_L1:
	case R_L2:
		for (uint64_t e = a; e < b; e += 8) {
			uint64_t nv = rd64(rp->w, rp->wsize, e), ov = rd64(rp->d, rp->dsize, e);
			uint64_t mask = r == R_L1 ? QCOW2_L1E_OFFSET_MASK :
					r == R_L2 ? QCOW2_L2E_OFFSET_MASK :
						    ~511ULL;

			if (nv == ov || !(nv & mask) ||
			    (r == R_L2 && (nv & QCOW2_OFLAG_COMPRESSED)))
				continue;
			check_target(rp, r, e, nv & mask, r != R_REFTABLE);
		}
		break;
	case R_REFBLOCK: {
		/* Which region this block counts: the refcount table as written says. */
		uint64_t rt = rd64(rp->w, rp->wsize, 48);
		uint64_t rtn = (uint64_t)rd32(rp->w, rp->wsize, 56) << rp->cb >> 3, k;

		for (k = 0; k < rtn; k++) {
			if ((rd64(rp->w, rp->wsize, rt + 8 * k) & ~511ULL) == c0)
				break;
		}
		if (k == rtn)
			break; /* a new block: nothing points at it, nothing drops in it */
		for (uint64_t i = (off - c0) * 8 >> rp->order;
		     i < ALIGN_UP((off - c0 + len) * 8, 1ULL << rp->order) >> rp->order; i++) {
			uint64_t nv = qcow2_refcount_get(rp->w + c0, rp->order, i);
			uint64_t ov = rp->dsize >= c0 + rp->cs ?
					      qcow2_refcount_get(rp->d + c0, rp->order, i) :
					      0;
			uint64_t c = k * epb + i, refs;

			if (nv >= ov)
				continue;
			refs = references_to(rp, rp->d, rp->dsize, c);
			if (nv < refs)
				bad(rp,
				    "refcount of cluster %#" PRIx64 " lowered to %" PRIu64
				    " while %" PRIu64 " synced tables still reference it",
				    c << rp->cb, nv, refs);
		}
		break;
	}
	default:
		break;
	}
}

static void apply_write(struct replay *rp, uint64_t off, uint64_t len, const uint8_t *data)
{
	while (len) {
		uint64_t c = off >> rp->cb, end = (c + 1) << rp->cb, n;
		enum role r;

		n = end - off < len ? end - off : len;
		r = rp->role ? role_now(rp, c) : R_DATA;
		if (data)
			memcpy(rp->w + off, data, n);
		else
			memset(rp->w + off, 0, n);
		set_dirty(rp, c);
		rp->writes[r]++;
		if (rp->role)
			check_piece(rp, r, off, n);
		off += n;
		len -= n;
		if (data)
			data += n;
	}
}

static void apply_sync(struct replay *rp)
{
	for (size_t i = 0; i < rp->nr_dirty; i++) {
		uint64_t o = rp->dirty_list[i] << rp->cb;

		memcpy(rp->d + o, rp->w + o, rp->cs);
		rp->dirty[rp->dirty_list[i]] = 0;
	}
	rp->nr_dirty = 0;
	rp->dsize = rp->wsize;
}

/* Sets up rp from the recorded image as it was before the open. */
static void replay_init(struct replay *rp, const uint8_t *roles_from, size_t roles_len)
{
	uint64_t cap = rec.initial_len;

	memset(rp, 0, sizeof(*rp));
	rp->cb = rd32(rec.initial, rec.initial_len, 20);
	rp->order = rd32(rec.initial, rec.initial_len, 96);
	assert_in_range(rp->cb, 9, 21);
	assert_in_range(rp->order, 0, 6);
	rp->cs = 1ULL << rp->cb;
	for (size_t i = 0; i < rec.nr; i++) {
		const struct ev *e = &rec.ev[i];
		uint64_t end = e->type == EV_TRUNCATE ? e->len : e->off + e->len;

		if (e->type != EV_SYNC && e->type != EV_FLUSHED && end > cap)
			cap = end;
	}
	if (roles_len > cap)
		cap = roles_len;
	rp->cap = ALIGN_UP(cap, rp->cs);
	rp->w = calloc(rp->cap, 1);
	rp->d = calloc(rp->cap, 1);
	rp->dirty = calloc(rp->cap >> rp->cb, 1);
	rp->dirty_list = calloc(rp->cap >> rp->cb, sizeof(*rp->dirty_list));
	assert_true(rp->w && rp->d && rp->dirty && rp->dirty_list);
	memcpy(rp->w, rec.initial, rec.initial_len);
	memcpy(rp->d, rec.initial, rec.initial_len);
	rp->wsize = rp->dsize = rec.initial_len;
	if (!roles_from)
		return;

	/* Roles from the final image: no test here frees a table, so none changes role. */
	rp->role = calloc(rp->cap >> rp->cb, 1);
	assert_non_null(rp->role);
	{
		const uint8_t *f = roles_from;
		uint64_t l1 = rd64(f, roles_len, 40), l1n = rd32(f, roles_len, 36);
		uint64_t rt = rd64(f, roles_len, 48), rtc = rd32(f, roles_len, 56);

		for (uint64_t o = l1; o < l1 + l1n * 8; o += rp->cs)
			rp->role[o >> rp->cb] = R_L1;
		for (uint64_t o = rt; o < rt + (rtc << rp->cb); o += rp->cs)
			rp->role[o >> rp->cb] = R_REFTABLE;
		for (uint64_t i = 0; i < l1n; i++) {
			uint64_t l2 = rd64(f, roles_len, l1 + 8 * i) & QCOW2_L1E_OFFSET_MASK;

			if (l2 && l2 < rp->cap)
				rp->role[l2 >> rp->cb] = R_L2;
		}
		for (uint64_t i = 0; i < (rtc << rp->cb) / 8; i++) {
			uint64_t rb = rd64(f, roles_len, rt + 8 * i) & ~511ULL;

			if (rb && rb < rp->cap)
				rp->role[rb >> rp->cb] = R_REFBLOCK;
		}
	}
}

/* Replays the record up to the stop-th completed FLUSH (0: to the end). */
static void replay_run(struct replay *rp, unsigned int stop)
{
	for (size_t i = 0; i < rec.nr; i++) {
		const struct ev *e = &rec.ev[i];

		switch (e->type) {
		case EV_WRITE:
			apply_write(rp, e->off, e->len, e->data);
			if (e->off + e->len > rp->wsize)
				rp->wsize = e->off + e->len;
			break;
		case EV_FALLOC:
			if (e->zero) {
				uint64_t end = e->off + e->len < rp->wsize ? e->off + e->len :
									     rp->wsize;

				if (end > e->off)
					apply_write(rp, e->off, end - e->off, NULL);
			}
			if (!e->keep_size && e->off + e->len > rp->wsize)
				rp->wsize = e->off + e->len;
			break;
		case EV_TRUNCATE:
			if (e->len < rp->wsize)
				apply_write(rp, e->len, rp->wsize - e->len, NULL);
			rp->wsize = e->len;
			break;
		case EV_SYNC:
			apply_sync(rp);
			break;
		case EV_FLUSHED:
			rp->flushes++;
			if (rp->role && rp->nr_dirty)
				bad(rp,
				    "FLUSH %u completed with %zu clusters written and not synced,"
				    " the first a %s at %#" PRIx64,
				    rp->flushes, rp->nr_dirty,
				    role_name[role_now(rp, rp->dirty_list[0])],
				    rp->dirty_list[0] << rp->cb);
			if (rp->flushes == stop)
				return;
			break;
		}
	}
}

static void replay_free(struct replay *rp)
{
	free(rp->w);
	free(rp->d);
	free(rp->dirty);
	free(rp->dirty_list);
	free(rp->role);
}

/* ---- Fixture and helpers */

struct fx {
	char dir[PATH_MAX];
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || fx_dir_make(fx->dir, sizeof(fx->dir), NULL, "qflush")) {
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
	rec_stop();
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

static const char *fx_path(struct fx *fx, const char *name)
{
	return fx_dir_path(fx->dir, name);
}

#define sh(fx, ...) fx_sh_status((fx)->dir, __VA_ARGS__)

static void fail_with_out(struct fx *fx, const char *what)
{
	char *out = NULL;

	file_read_text(fx_path(fx, FX_SH_LOG), &out, NULL);
	fail_msg("%s:\n%s", what, out ? out : "?");
}

#define SKIP_WITHOUT_QEMU_IMG()                                                         \
	do {                                                                            \
		if (system("qemu-img --version >/dev/null 2>&1")) {                     \
			print_message("qemu-img missing (qemu-utils): test skipped\n"); \
			skip();                                                         \
		}                                                                       \
	} while (0)

static void spill(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, buf, len), 0);
	close(fd);
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/*
 * `qemu-img check` says nothing is wrong and nothing leaked, and the image reads as want. The
 * open disk holds a lock on the backing file that qemu-img's own locking refuses even with -U:
 * an overlay is opened with its backing file's locking off.
 */
static void assert_image_ok(struct fx *fx, const char *name, bool backing, const uint8_t *want,
			    size_t len, const char *when)
{
	char what[256], img[256];

	if (backing)
		snprintf(img, sizeof(img),
			 "--image-opts driver=qcow2,file.filename=%s,"
			 "backing.file.locking=off",
			 name);
	else
		snprintf(img, sizeof(img), "-f qcow2 %s", name);
	if (sh(fx, "qemu-img check %s", img)) {
		snprintf(what, sizeof(what), "qemu-img check %s (%s)", name, when);
		fail_with_out(fx, what);
	}
	spill(fx_path(fx, "expect.raw"), want, len);
	if (backing)
		snprintf(img, sizeof(img),
			 "--image-opts driver=qcow2,file.filename=%s,"
			 "backing.file.locking=off driver=raw,file.filename=expect.raw",
			 name);
	else
		snprintf(img, sizeof(img), "-f qcow2 -F raw %s expect.raw", name);
	if (sh(fx, "qemu-img compare %s", img)) {
		snprintf(what, sizeof(what), "qemu-img compare %s expect.raw (%s)", name, when);
		fail_with_out(fx, what);
	}
}

/* A disk, requests one at a time. */
struct tdisk {
	struct disk *d;
	sem_t sem;
	int status;
};

static void tdisk_done(struct disk_request *req, int status)
{
	struct tdisk *t = req->opaque;

	t->status = status;
	sem_post(&t->sem);
}

static void tdisk_open(struct tdisk *t, const char *path, uint64_t cache_size)
{
	struct disk_options o = {
		.path = path, .engine = DISK_ENGINE_THREADS, .threads = 2, .cache_size = cache_size
	};
	char why[DISK_ERR_MAX];
	int err = disk_open(&t->d, &o, why, sizeof(why));

	if (err)
		fail_msg("%s: %s: %s", path, why, strerror(-err));
	sem_init(&t->sem, 0, 0);
}

static int tdisk_io(struct tdisk *t, enum disk_op op, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov = { buf, len };
	struct disk_request req = {
		.op = op, .offset = off, .len = len, .done = tdisk_done, .opaque = t
	};

	if (op == DISK_WRITE || op == DISK_READ) {
		req.iov = &iov;
		req.iovcnt = 1;
	}
	disk_submit(t->d, &req);
	while (sem_wait(&t->sem))
		;
	return t->status;
}

static void tdisk_flush(struct tdisk *t)
{
	assert_int_equal(tdisk_io(t, DISK_FLUSH, 0, NULL, 0), 0);
	rec_flushed();
}

static void tdisk_close(struct tdisk *t)
{
	disk_close(t->d);
	sem_destroy(&t->sem);
}

/* A write of random bytes at off, also made to want. */
static void write_random(struct tdisk *t, uint8_t *want, uint64_t off, uint64_t len, uint64_t *x)
{
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = rnd(x);

		memcpy(want + off + i, &v, len - i < 8 ? len - i : 8);
	}
	assert_int_equal(tdisk_io(t, DISK_WRITE, off, want + off, len), 0);
}

/* ---- Write and sync order */

struct order_case {
	const char *create; /* qemu-img create options */
	uint64_t size, cache_size;
	bool backing;
	unsigned int ops;
	bool expect_reftable_move;
};

/* A raw backing file of size bytes, random, returned as the image's initial content. */
static uint8_t *make_backing(struct fx *fx, uint64_t size, uint64_t seed)
{
	uint8_t *buf = malloc(size);

	assert_non_null(buf);
	for (uint64_t i = 0; i < size; i += 8) {
		uint64_t v = rnd(&seed);

		memcpy(buf + i, &v, 8);
	}
	spill(fx_path(fx, "base.raw"), buf, size);
	return buf;
}

/*
 * Random writes of any sector count at any sector (so clusters filled in part, and copied in
 * part from the backing file), a FLUSH every few dozen, through a small metadata cache whose
 * evictions write back too; then close. The whole record is replayed with the rules checked.
 */
static void run_order_case(struct fx *fx, const struct order_case *oc)
{
	const char *img = fx_path(fx, "disk.qcow2");
	uint64_t x = 0x5eed0f0f1u, size = oc->size;
	uint8_t *want, *final;
	size_t final_len;
	struct replay rp;
	struct tdisk t;

	if (oc->backing) {
		want = make_backing(fx, size, 77);
		assert_int_equal(sh(fx,
				    "qemu-img create -q -f qcow2 -o %s -b base.raw -F raw "
				    "disk.qcow2 %" PRIu64,
				    oc->create, size),
				 0);
	} else {
		want = calloc(size, 1);
		assert_non_null(want);
		assert_int_equal(sh(fx, "qemu-img create -q -f qcow2 -o %s disk.qcow2 %" PRIu64,
				    oc->create, size),
				 0);
	}
	rec_start(img);
	tdisk_open(&t, img, oc->cache_size);
	for (unsigned int i = 0; i < oc->ops; i++) {
		uint64_t sectors = rnd(&x) % 8 ? 1 + rnd(&x) % 24 : 64 + rnd(&x) % 448, off;

		if (rnd(&x) % 24 == 0)
			tdisk_flush(&t);
		off = rnd(&x) % (size / 512 - sectors + 1) * 512;
		write_random(&t, want, off, sectors * 512, &x);
	}
	tdisk_flush(&t);
	tdisk_close(&t);
	atomic_store(&rec.on, false);

	assert_int_equal(read_file(img, &final, &final_len), 0);
	replay_init(&rp, final, final_len);
	replay_run(&rp, 0);
	print_message("%" PRIu64 " data, %" PRIu64 " L2, %" PRIu64 " L1, %" PRIu64
		      " refcount block, %" PRIu64 " refcount table, %" PRIu64 " header writes; "
		      "%u flushes, %u refcount table moves\n",
		      rp.writes[R_DATA], rp.writes[R_L2], rp.writes[R_L1], rp.writes[R_REFBLOCK],
		      rp.writes[R_REFTABLE], rp.writes[R_HEADER], rp.flushes, rp.reftable_moves);
	if (rp.nr_bad)
		fail_msg("%u writes out of order, the first:\n%s", rp.nr_bad, rp.bad);
	/* Close leaves nothing unsynced, and the replay saw every byte the file holds. */
	assert_int_equal(rp.nr_dirty, 0);
	assert_int_equal(rp.wsize, final_len);
	assert_memory_equal(rp.w, final, final_len);
	/* The workload did reach every kind of metadata write. */
	assert_true(rp.writes[R_L2] && rp.writes[R_L1] && rp.writes[R_REFBLOCK]);
	if (oc->expect_reftable_move)
		assert_true(rp.writes[R_REFTABLE] && rp.reftable_moves);
	assert_image_ok(fx, "disk.qcow2", oc->backing, want, size, "after close");
	replay_free(&rp);
	free(final);
	free(want);
}

/*
 * 512-byte clusters: an L2 table maps 32 KiB, a refcount block counts 128 KiB, the first
 * refcount table 8 MiB, so 16 MiB of writes take hundreds of tables, new refcount blocks and a
 * larger refcount table, through a cache of a few dozen tables.
 */
static void test_qcow2_flush_syncs_refcounts_before_l2_and_l2_before_l1(void **state)
{
	const struct order_case oc = { .create = "cluster_size=512",
				       .size = 16 * MiB,
				       .cache_size = 16 * KiB,
				       .ops = 1500,
				       .expect_reftable_move = true };

	SKIP_WITHOUT_QEMU_IMG();
	run_order_case(*state, &oc);
}

/* 64 KiB clusters over a backing file: partial writes copy the rest of the cluster from it. */
static void test_qcow2_flush_syncs_copied_on_write_data_before_l2(void **state)
{
	const struct order_case oc = {
		.create = "cluster_size=64k", .size = 32 * MiB, .backing = true, .ops = 400
	};

	SKIP_WITHOUT_QEMU_IMG();
	run_order_case(*state, &oc);
}

/* ---- The image right after a FLUSH, before close */

/*
 * Rounds of allocating writes (whole and partial clusters), each ended by a FLUSH, after which
 * the image is copied while the disk is open: the copy, and the file as synced (the replay at
 * that FLUSH: what a power loss right then leaves), pass qemu-img check (no leak either: nothing
 * was freed) and compare equal to what was written.
 */
static void run_flush_copy(struct fx *fx, bool backing)
{
	const char *img = fx_path(fx, "disk.qcow2");
	uint64_t size = 8 * MiB, x = 0xf1f1f1f1u;
	uint8_t *want;
	struct tdisk t;

	if (backing) {
		want = make_backing(fx, size, 99);
		assert_int_equal(sh(fx,
				    "qemu-img create -q -f qcow2 -b base.raw -F raw disk.qcow2 "
				    "%" PRIu64,
				    size),
				 0);
	} else {
		want = calloc(size, 1);
		assert_non_null(want);
		assert_int_equal(sh(fx, "qemu-img create -q -f qcow2 disk.qcow2 %" PRIu64, size),
				 0);
	}
	rec_start(img);
	tdisk_open(&t, img, 0);
	for (unsigned int round = 1; round <= 3; round++) {
		struct replay rp;
		char when[64];

		for (unsigned int i = 0; i < 20; i++) {
			uint64_t len = (1 + rnd(&x) % (i % 3 ? 16 : 160)) * 512;
			uint64_t off = rnd(&x) % ((size - len) / 512 + 1) * 512;

			write_random(&t, want, off, len, &x);
		}
		tdisk_flush(&t);
		snprintf(when, sizeof(when), "copied after FLUSH %u, before close", round);
		assert_int_equal(sh(fx, "cp disk.qcow2 copy.qcow2"), 0);
		assert_image_ok(fx, "copy.qcow2", backing, want, size, when);

		pthread_mutex_lock(&rec.lock);
		replay_init(&rp, NULL, 0);
		replay_run(&rp, round);
		pthread_mutex_unlock(&rec.lock);
		assert_int_equal(rp.flushes, round);
		spill(fx_path(fx, "synced.qcow2"), rp.d, rp.dsize);
		snprintf(when, sizeof(when), "as synced at FLUSH %u, before close", round);
		assert_image_ok(fx, "synced.qcow2", backing, want, size, when);
		replay_free(&rp);
	}
	tdisk_close(&t);
	free(want);
}

static void test_qcow2_image_after_flush_passes_check_and_compare(void **state)
{
	SKIP_WITHOUT_QEMU_IMG();
	run_flush_copy(*state, false);
}

static void test_qcow2_overlay_after_flush_passes_check_and_compare(void **state)
{
	SKIP_WITHOUT_QEMU_IMG();
	run_flush_copy(*state, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_qcow2_flush_syncs_refcounts_before_l2_and_l2_before_l1, fx_setup,
			fx_teardown),
		cmocka_unit_test_setup_teardown(
			test_qcow2_flush_syncs_copied_on_write_data_before_l2, fx_setup,
			fx_teardown),
		cmocka_unit_test_setup_teardown(
			test_qcow2_image_after_flush_passes_check_and_compare, fx_setup,
			fx_teardown),
		cmocka_unit_test_setup_teardown(
			test_qcow2_overlay_after_flush_passes_check_and_compare, fx_setup,
			fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
