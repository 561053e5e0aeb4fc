// SPDX-License-Identifier: MIT
/*
 * qcow2 allocating writes in parallel (issue 22): the worker has the data writes of several
 * allocating requests in flight at once, and two requests into one new cluster never both
 * allocate it. The data writes go through the threads engine's pwritev, which this binary wraps
 * (see the Makefile): a write whose first byte is HOLD stays in the wrapper until the test lets
 * it go, and one whose first byte is FAIL fails with EIO. Every image written passes
 * `qemu-img check` and reads back byte for byte as written.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "block/disk.h"
#include "lib/file.h"
#include "lib/util.h"

#define WATCHDOG_SECONDS 120
/* Only a guard against hanging forever on a broken build: no test measures time. */
#define GUARD_SECONDS 20

#define HOLD 0xa1
#define FAIL 0xee
#define CS 65536ULL

/* ---- The wrapped pwritev */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool released;
	unsigned int held; /* writes waiting in the wrapper now */
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 };

ssize_t __real_pwritev(int fd, const struct iovec *iov, int cnt, off_t off);
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int cnt, off_t off);
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	const uint8_t *first = cnt && iov[0].iov_len ? iov[0].iov_base : NULL;

	if (first && *first == FAIL) {
		errno = EIO;
		return -1;
	}
	if (first && *first == HOLD) {
		pthread_mutex_lock(&gate.lock);
		gate.held++;
		pthread_cond_broadcast(&gate.cond);
		while (!gate.released)
			pthread_cond_wait(&gate.cond, &gate.lock);
		gate.held--;
		pthread_mutex_unlock(&gate.lock);
	}
	return __real_pwritev(fd, iov, cnt, off);
}

static void gate_close(void)
{
	pthread_mutex_lock(&gate.lock);
	gate.released = false;
	pthread_mutex_unlock(&gate.lock);
}

static void gate_open(void)
{
	pthread_mutex_lock(&gate.lock);
	gate.released = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
}

static struct timespec guard_deadline(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += GUARD_SECONDS;
	return t;
}

/* Waits until n writes are held in the wrapper; false when they never arrive. */
static bool gate_wait_held(unsigned int n)
{
	struct timespec t = guard_deadline();
	bool ok = true;

	pthread_mutex_lock(&gate.lock);
	while (gate.held < n && ok)
		ok = pthread_cond_timedwait(&gate.cond, &gate.lock, &t) == 0 || gate.held >= n;
	pthread_mutex_unlock(&gate.lock);
	return ok;
}

/* ---- Fixture */

struct fx {
	char dir[PATH_MAX];
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || fx_dir_make(fx->dir, sizeof(fx->dir), NULL, "qalloc")) {
		free(fx);
		return -1;
	}
	alarm(WATCHDOG_SECONDS);
	gate_close();
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	gate_open();
	alarm(0);
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

#define SKIP_WITHOUT_QEMU_IMG()                                                             \
	do {                                                                                \
		if (system("qemu-img --version >/dev/null 2>&1")) {                         \
			print_message("qemu-img missing (qemu-utils): test skipped\n");    \
			skip();                                                             \
		}                                                                           \
	} while (0)

#define sh(fx, ...) fx_sh((fx)->dir, __VA_ARGS__)
#define sh_status(fx, ...) fx_sh_status((fx)->dir, __VA_ARGS__)

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Random bytes whose first byte is never HOLD or FAIL (unless first says so). */
static void fill(uint8_t *buf, size_t len, uint64_t seed, int first)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL;

	for (size_t i = 0; i < len; i++)
		buf[i] = rnd(&x) >> 56;
	if (first >= 0)
		buf[0] = (uint8_t)first;
	else if (buf[0] == HOLD || buf[0] == FAIL)
		buf[0] = 0;
}

static struct disk *t_open(const char *path, unsigned int threads)
{
	struct disk_options o = {
		.path = path, .engine = DISK_ENGINE_THREADS, .threads = threads
	};
	char why[DISK_ERR_MAX];
	struct disk *d = NULL;
	int err = disk_open(&d, &o, why, sizeof(why));

	if (err)
		fail_msg("%s: %s: %s", path, why, strerror(-err));
	return d;
}

/* A request in flight: its status once sem is posted. */
struct treq {
	struct disk_request req;
	struct iovec iov;
	sem_t sem;
	int status;
};

static void treq_done(struct disk_request *req, int status)
{
	struct treq *t = (struct treq *)req;

	t->status = status;
	sem_post(&t->sem);
}

static void treq_submit(struct disk *d, struct treq *t, enum disk_op op, uint64_t off, void *buf,
			uint64_t len)
{
	memset(&t->req, 0, sizeof(t->req));
	sem_init(&t->sem, 0, 0);
	t->status = 1;
	t->iov = (struct iovec){ buf, len };
	t->req = (struct disk_request){
		.op = op, .offset = off, .len = len, .iov = &t->iov, .iovcnt = 1, .done = treq_done
	};
	disk_submit(d, &t->req);
}

/* Waits for t (bounded by the guard); false when it did not complete. */
static bool treq_wait(struct treq *t)
{
	struct timespec dl = guard_deadline();

	while (sem_timedwait(&t->sem, &dl)) {
		if (errno != EINTR)
			return false;
	}
	return true;
}

static bool treq_completed(struct treq *t)
{
	if (sem_trywait(&t->sem))
		return false;
	sem_post(&t->sem);
	return true;
}

static int t_io(struct disk *d, enum disk_op op, uint64_t off, void *buf, uint64_t len)
{
	struct treq t;

	treq_submit(d, &t, op, off, buf, len);
	assert_true(treq_wait(&t));
	sem_destroy(&t.sem);
	return t.status;
}

static void assert_check_clean(struct fx *fx, const char *name)
{
	if (sh_status(fx, "qemu-img check %s", name)) {
		char *out = NULL;

		file_read_text(fx_dir_path(fx->dir, FX_SH_LOG), &out, NULL);
		fail_msg("qemu-img check %s:\n%s", name, out ? out : "?");
	}
}

/* nkvm reads back want, and qemu-img converts the image to the same bytes. */
static void assert_image_is(struct fx *fx, const char *name, const uint8_t *want, uint64_t size)
{
	struct disk *d = t_open(fx_dir_path(fx->dir, name), 2);
	uint8_t *got = malloc(size), *conv;
	size_t len;

	assert_non_null(got);
	assert_int_equal(t_io(d, DISK_READ, 0, got, size), 0);
	disk_close(d);
	for (uint64_t i = 0; i < size; i++) {
		if (got[i] != want[i])
			fail_msg("%s: byte %#" PRIx64 " reads %#x, %#x was written", name, i,
				 got[i], want[i]);
	}
	sh(fx, "rm -f conv.raw && qemu-img convert -O raw %s conv.raw", name);
	assert_int_equal(read_file(fx_dir_path(fx->dir, "conv.raw"), &conv, &len), 0);
	assert_int_equal(len, size);
	assert_memory_equal(conv, want, size);
	free(conv);
	free(got);
}

/* ---- Data writes in flight together */

/*
 * Two writes into new clusters: the first one's data write is held in the kernel (the wrapper),
 * and the second still completes. A worker allocating one request after another sits in the
 * first's data write and never starts the second.
 */
static void test_qcow2_allocating_writes_have_their_data_writes_in_flight_at_once(void **state)
{
	struct fx *fx = *state;
	const uint64_t size = 16 * CS;
	uint8_t *want = calloc(1, size);
	struct treq a, b;
	struct disk *d;
	bool b_done;

	SKIP_WITHOUT_QEMU_IMG();
	assert_non_null(want);
	sh(fx, "qemu-img create -q -f qcow2 f.qcow2 %" PRIu64, size);
	fill(want, CS, 1, HOLD);
	fill(want + 5 * CS, CS, 2, -1);
	d = t_open(fx_dir_path(fx->dir, "f.qcow2"), 4);
	treq_submit(d, &a, DISK_WRITE, 0, want, CS);
	assert_true(gate_wait_held(1));
	treq_submit(d, &b, DISK_WRITE, 5 * CS, want + 5 * CS, CS);
	b_done = treq_wait(&b);
	/* a is still held: b went on beside it. */
	assert_false(treq_completed(&a));
	gate_open();
	assert_true(treq_wait(&a));
	assert_true(b_done);
	assert_int_equal(a.status, 0);
	assert_int_equal(b.status, 0);
	disk_close(d);
	assert_check_clean(fx, "f.qcow2");
	assert_image_is(fx, "f.qcow2", want, size);
	free(want);
}

/*
 * Partial writes racing into one new cluster of image name (whose guest content is want): A
 * writes the first 4 KiB of cluster 2, held in its data write; B writes 4 KiB further into the
 * same cluster, C 4 KiB at the start of cluster 4. C completes while A is held, B does not: it
 * waits for A's allocation rather than allocating cluster 2 a second time (which would lose
 * one of the two writes and leak a cluster). Then both are there, and the image is clean.
 */
static void run_race_into_one_cluster(struct fx *fx, const char *name, uint8_t *want,
				      uint64_t size)
{
	struct treq a, b, c;
	struct disk *d;
	bool c_done, b_early;

	fill(want + 2 * CS, 4096, 3, HOLD);
	fill(want + 2 * CS + 20480, 4096, 4, -1);
	fill(want + 4 * CS, 4096, 5, -1);
	d = t_open(fx_dir_path(fx->dir, name), 4);
	treq_submit(d, &a, DISK_WRITE, 2 * CS, want + 2 * CS, 4096);
	assert_true(gate_wait_held(1));
	treq_submit(d, &b, DISK_WRITE, 2 * CS + 20480, want + 2 * CS + 20480, 4096);
	treq_submit(d, &c, DISK_WRITE, 4 * CS, want + 4 * CS, 4096);
	c_done = treq_wait(&c);
	b_early = treq_completed(&b);
	gate_open();
	assert_true(treq_wait(&a));
	assert_true(treq_wait(&b));
	assert_true(c_done);
	assert_false(b_early);
	assert_int_equal(a.status, 0);
	assert_int_equal(b.status, 0);
	assert_int_equal(c.status, 0);
	disk_close(d);
	assert_check_clean(fx, name);
	assert_image_is(fx, name, want, size);
}

static void test_qcow2_partial_writes_into_one_new_cluster_allocate_it_once(void **state)
{
	struct fx *fx = *state;
	const uint64_t size = 16 * CS;
	uint8_t *want = calloc(1, size);

	SKIP_WITHOUT_QEMU_IMG();
	assert_non_null(want);
	sh(fx, "qemu-img create -q -f qcow2 f.qcow2 %" PRIu64, size);
	run_race_into_one_cluster(fx, "f.qcow2", want, size);
	free(want);
}

/* A raw file of size random bytes (half of them zero when compressible), returned. */
static uint8_t *make_data(struct fx *fx, const char *name, uint64_t size, uint64_t seed,
			  bool compressible)
{
	uint8_t *buf = malloc(size);
	int fd;

	assert_non_null(buf);
	fill(buf, size, seed, -1);
	for (uint64_t i = 0; compressible && i < size; i++) {
		if (i % 16 >= 8)
			buf[i] = 0;
	}
	/* A cluster copied on write starts with these bytes: none may say HOLD or FAIL. */
	for (uint64_t i = 0; i < size; i += 512) {
		if (buf[i] == HOLD || buf[i] == FAIL)
			buf[i] = 0;
	}
	fd = open(fx_dir_path(fx->dir, name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, buf, size), 0);
	close(fd);
	return buf;
}

/* The same race where the cluster is copied on write from the backing file. */
static void test_qcow2_partial_writes_copying_from_backing_allocate_once(void **state)
{
	struct fx *fx = *state;
	const uint64_t size = 16 * CS;
	uint8_t *want;

	SKIP_WITHOUT_QEMU_IMG();
	want = make_data(fx, "base.raw", size, 7, false);
	sh(fx, "qemu-img create -q -f qcow2 -b base.raw -F raw o.qcow2 %" PRIu64, size);
	run_race_into_one_cluster(fx, "o.qcow2", want, size);
	free(want);
}

/* And where it is a compressed cluster, rewritten uncompressed. */
static void test_qcow2_partial_writes_into_compressed_cluster_allocate_once(void **state)
{
	struct fx *fx = *state;
	const uint64_t size = 16 * CS;
	uint8_t *want;

	SKIP_WITHOUT_QEMU_IMG();
	want = make_data(fx, "data.raw", size, 8, true);
	sh(fx, "qemu-img convert -c -O qcow2 data.raw c.qcow2");
	run_race_into_one_cluster(fx, "c.qcow2", want, size);
	free(want);
}

/* ---- Errors */

/*
 * Data writes that fail (whole and partial clusters, new and into a cluster other requests
 * write too) beside ones that succeed: the failed requests say EIO, the rest are there, the
 * failed ones left nothing, and qemu-img check finds no corruption and no leak (the clusters
 * taken for the failed writes are given back).
 */
static void test_qcow2_failed_data_write_leaves_image_consistent(void **state)
{
	struct fx *fx = *state;
	const uint64_t size = 16 * CS;
	uint8_t *want = calloc(1, size), *bufs = malloc(size);
	struct {
		uint64_t off, len;
		bool fail;
	} w[] = {
		{ 1 * CS, CS, true }, /* a whole new cluster */
		{ 2 * CS, CS, false },
		{ 3 * CS, 4096, true }, /* the start of a new cluster... */
		{ 3 * CS + 16384, 8192, false }, /* ...which another request writes too */
		{ 5 * CS + 4096, 2 * CS, false }, /* three clusters, in part */
		{ 9 * CS, 3 * CS, true }, /* three whole clusters, all failing */
	};
	struct treq t[ARRAY_SIZE(w)];
	struct disk *d;

	SKIP_WITHOUT_QEMU_IMG();
	assert_non_null(want);
	assert_non_null(bufs);
	sh(fx, "qemu-img create -q -f qcow2 f.qcow2 %" PRIu64, size);
	gate_open();
	d = t_open(fx_dir_path(fx->dir, "f.qcow2"), 4);
	for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
		uint8_t *p = bufs + w[i].off;

		fill(p, w[i].len, 20 + i, w[i].fail ? FAIL : -1);
		/* A failing request of several clusters fails in each. */
		for (uint64_t o = CS - w[i].off % CS; w[i].fail && o < w[i].len; o += CS)
			p[o] = FAIL;
		if (!w[i].fail)
			memcpy(want + w[i].off, p, w[i].len);
		treq_submit(d, &t[i], DISK_WRITE, w[i].off, p, w[i].len);
	}
	for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
		assert_true(treq_wait(&t[i]));
		assert_int_equal(t[i].status, w[i].fail ? -EIO : 0);
	}
	disk_close(d);
	assert_check_clean(fx, "f.qcow2");
	assert_image_is(fx, "f.qcow2", want, size);
	free(bufs);
	free(want);
}

/* ---- Many writers */

#define WRITERS 4
#define SLOTS 64 /* clusters all writers write a part of */
#define OWN 16 /* whole clusters each writer has to itself */
#define WINDOW 8 /* requests each writer keeps in flight */

struct writer {
	struct disk *d;
	uint8_t *want;
	unsigned int id;
	int failed; /* the first bad status */
};

/*
 * Writer id writes 4 KiB at 16 KiB * id of each of the SLOTS shared clusters, in an order of its
 * own, and then its OWN clusters whole, WINDOW requests in flight. No two requests write the
 * same byte, so the image's content is known whatever the order.
 */
static void *writer_run(void *arg)
{
	struct writer *w = arg;
	struct treq t[WINDOW];
	unsigned int order[SLOTS + OWN], n = SLOTS + OWN;
	uint64_t x = 0x1234567ULL * (w->id + 1);

	for (unsigned int i = 0; i < n; i++)
		order[i] = i;
	for (unsigned int i = SLOTS - 1; i > 0; i--) {
		unsigned int j = rnd(&x) % (i + 1), k = order[i];

		order[i] = order[j];
		order[j] = k;
	}
	for (unsigned int i = 0; i < n + WINDOW; i++) {
		struct treq *r = &t[i % WINDOW];
		uint64_t off, len;

		if (i >= WINDOW) {
			if (!treq_wait(r))
				r->status = -ETIMEDOUT;
			if (r->status && !w->failed)
				w->failed = r->status;
			sem_destroy(&r->sem);
		}
		if (i >= n)
			continue;
		if (order[i] < SLOTS) {
			off = order[i] * CS + 16384ULL * w->id;
			len = 4096;
		} else {
			off = (SLOTS + OWN * w->id + order[i] - SLOTS) * CS;
			len = CS;
		}
		fill(w->want + off, len, off, -1);
		treq_submit(w->d, r, DISK_WRITE, off, w->want + off, len);
	}
	return NULL;
}

static void run_writers(struct fx *fx, const char *name, uint8_t *want, uint64_t size)
{
	struct writer w[WRITERS];
	pthread_t th[WRITERS];
	struct disk *d;

	gate_open();
	d = t_open(fx_dir_path(fx->dir, name), 8);
	for (unsigned int i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .d = d, .want = want, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, writer_run, &w[i]), 0);
	}
	for (unsigned int i = 0; i < WRITERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failed, 0);
	}
	disk_close(d);
	assert_check_clean(fx, name);
	assert_image_is(fx, name, want, size);
}

static void test_qcow2_many_writers_allocating_at_once_read_back_exactly(void **state)
{
	struct fx *fx = *state;
	const uint64_t size = (SLOTS + WRITERS * OWN + 8) * CS;
	uint8_t *want = calloc(1, size);

	SKIP_WITHOUT_QEMU_IMG();
	assert_non_null(want);
	sh(fx, "qemu-img create -q -f qcow2 f.qcow2 %" PRIu64, size);
	run_writers(fx, "f.qcow2", want, size);
	/* Again over what is there now: the writes go in place. */
	run_writers(fx, "f.qcow2", want, size);
	free(want);
}

static void test_qcow2_many_writers_copying_from_backing_read_back_exactly(void **state)
{
	struct fx *fx = *state;
	const uint64_t size = (SLOTS + WRITERS * OWN + 8) * CS;
	uint8_t *want;

	SKIP_WITHOUT_QEMU_IMG();
	want = make_data(fx, "base.raw", size, 9, false);
	sh(fx, "qemu-img create -q -f qcow2 -b base.raw -F raw o.qcow2 %" PRIu64, size);
	run_writers(fx, "o.qcow2", want, size);
	free(want);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_qcow2_allocating_writes_have_their_data_writes_in_flight_at_once),
		T(test_qcow2_partial_writes_into_one_new_cluster_allocate_it_once),
		T(test_qcow2_partial_writes_copying_from_backing_allocate_once),
		T(test_qcow2_partial_writes_into_compressed_cluster_allocate_once),
		T(test_qcow2_failed_data_write_leaves_image_consistent),
		T(test_qcow2_many_writers_allocating_at_once_read_back_exactly),
		T(test_qcow2_many_writers_copying_from_backing_read_back_exactly),
	};

	cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
