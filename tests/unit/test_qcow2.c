// SPDX-License-Identifier: MIT
/*
 * The qcow2 driver against qemu-img, both ways: images qemu-img and qemu-io make (every cluster
 * kind, backing chains, compression, snapshots) read through nkvm byte for byte as `qemu-img
 * convert -O raw` does; images nkvm writes (random writes, discards, write-zeroes, copy-on-write,
 * growth of the refcount structures, tiny caches, O_DIRECT) pass `qemu-img check` and compare
 * equal to what was written; malformed images fail cleanly.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "block/disk.h"
#include "block/qcow2.h"
#include "block/qcow2_header.h"
#include "lib/file.h"
#include "lib/util.h"

#define WATCHDOG_SECONDS 120

struct fx {
	char dir[PATH_MAX];
};

static bool have_qemu(void)
{
	return system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") ==
	       0;
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || fx_dir_make(fx->dir, sizeof(fx->dir), NULL, "qcow2")) {
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
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

#define SKIP_WITHOUT_QEMU()                                                                     \
	do {                                                                                    \
		if (!have_qemu()) {                                                             \
			print_message("qemu-img/qemu-io missing (qemu-utils): test skipped\n"); \
			skip();                                                                 \
		}                                                                               \
	} while (0)

static const char *fx_path(struct fx *fx, const char *name)
{
	return fx_dir_path(fx->dir, name);
}

#define sh_status(fx, ...) fx_sh_status((fx)->dir, __VA_ARGS__)
#define sh(fx, ...) fx_sh((fx)->dir, __VA_ARGS__)

/* Bytes that differ by seed and position, with runs of zeroes and of text mixed in. */
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

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* A raw file of size bytes: 64 KiB stretches of random bytes, zeroes and repeated text. */
static void make_raw(const char *path, uint64_t size, uint64_t seed)
{
	uint8_t *buf = malloc(size);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_non_null(buf);
	assert_true(fd >= 0);
	for (uint64_t off = 0; off < size; off += 65536) {
		uint64_t n = size - off < 65536 ? size - off : 65536;

		switch ((off / 65536 + seed) % 3) {
		case 0:
			fill(buf + off, n, seed * 1000 + off);
			break;
		case 1:
			memset(buf + off, 0, n);
			break;
		default:
			for (uint64_t i = 0; i < n; i++)
				buf[off + i] = "the quick brown fox jumps over the dog "[i % 39];
		}
	}
	assert_int_equal(write_all(fd, buf, size), 0);
	close(fd);
	free(buf);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *buf;

	assert_int_equal(read_file(path, &buf, len), 0);
	return buf;
}

static void spill(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, buf, len), 0);
	close(fd);
}

struct topts {
	bool ro, direct;
	uint64_t cache_size;
	enum disk_format_kind format;
};

static int t_open_err(const char *path, const struct topts *t, struct disk **d, char *err,
		      size_t errlen)
{
	struct disk_options o = { .path = path,
				  .readonly = t->ro,
				  .direct = t->direct,
				  .cache_size = t->cache_size,
				  .format = t->format,
				  .threads = 2 };

	return disk_open(d, &o, err, errlen);
}

static struct disk *t_open(const char *path, const struct topts *t)
{
	struct disk *d = NULL;
	char why[DISK_ERR_MAX];
	int err = t_open_err(path, t, &d, why, sizeof(why));

	if (err)
		fail_msg("%s: %s: %s", path, why, strerror(-err));
	return d;
}

/* Synchronous requests, and batches of them in flight together. */
struct treq {
	struct disk_request req;
	struct iovec iov[3];
	sem_t *sem;
	int status;
};

static void treq_done(struct disk_request *req, int status)
{
	struct treq *t = (struct treq *)req;

	t->status = status;
	sem_post(t->sem);
}

/* Splits buf into up to 3 segments of uneven sizes, so that extents cut segments. */
static void treq_init(struct treq *t, sem_t *sem, enum disk_op op, uint64_t off, void *buf,
		      uint64_t len, bool split)
{
	memset(t, 0, sizeof(*t));
	t->sem = sem;
	t->req.op = op;
	t->req.offset = off;
	t->req.len = len;
	t->req.done = treq_done;
	if (op != DISK_READ && op != DISK_WRITE)
		return;
	t->req.iov = t->iov;
	if (!split || len < 3000) {
		t->iov[0] = (struct iovec){ buf, len };
		t->req.iovcnt = 1;
		return;
	}
	t->iov[0] = (struct iovec){ buf, 1000 };
	t->iov[1] = (struct iovec){ (uint8_t *)buf + 1000, (len - 1000) / 2 };
	t->iov[2] = (struct iovec){ (uint8_t *)buf + 1000 + t->iov[1].iov_len,
				    len - 1000 - t->iov[1].iov_len };
	t->req.iovcnt = 3;
}

static int t_io(struct disk *d, enum disk_op op, uint64_t off, void *buf, uint64_t len)
{
	struct treq t;
	sem_t sem;

	sem_init(&sem, 0, 0);
	treq_init(&t, &sem, op, off, buf, len, false);
	disk_submit(d, &t.req);
	while (sem_wait(&sem))
		;
	sem_destroy(&sem);
	return t.status;
}

/* Reads the whole disk in pieces (of uneven iovecs unless aligned ones are needed). */
static uint8_t *read_disk(struct disk *d, bool split)
{
	uint64_t size = disk_size(d), chunk = 300 * 1024 + 512 * split;
	uint8_t *buf = NULL;
	sem_t sem;

	assert_int_equal(posix_memalign((void **)&buf, 4096, size ? size : 1), 0);
	sem_init(&sem, 0, 0);
	for (uint64_t off = 0; off < size; off += chunk) {
		uint64_t n = size - off < chunk ? size - off : chunk;
		struct treq t;

		treq_init(&t, &sem, DISK_READ, off, buf + off, n, split);
		disk_submit(d, &t.req);
		while (sem_wait(&sem))
			;
		assert_int_equal(t.status, 0);
	}
	sem_destroy(&sem);
	return buf;
}

/* nkvm reads image name of fx exactly as qemu-img converts it to raw. */
static void assert_reads_like_qemu(struct fx *fx, const char *name, const struct topts *t)
{
	size_t len;
	uint8_t *want, *got;
	struct disk *d;

	sh(fx, "rm -f conv.raw && qemu-img convert -O raw '%s' conv.raw", name);
	want = slurp(fx_path(fx, "conv.raw"), &len);
	d = t_open(fx_path(fx, name), t);
	assert_int_equal(disk_size(d), len);
	got = read_disk(d, true);
	for (size_t i = 0; i < len; i++) {
		if (got[i] != want[i])
			fail_msg("%s: byte %#zx is %#x, qemu-img says %#x", name, i, got[i],
				 want[i]);
	}
	/* A second pass: now from the cache, through the fast path. */
	free(got);
	got = read_disk(d, true);
	assert_memory_equal(got, want, len);
	disk_close(d);
	free(got);
	free(want);
}

static void assert_qemu_check_clean(struct fx *fx, const char *name)
{
	if (sh_status(fx, "qemu-img check '%s' >check.out 2>&1", name)) {
		char *out = NULL;

		file_read_text(fx_path(fx, "check.out"), &out, NULL);
		fail_msg("qemu-img check %s:\n%s", name, out ? out : "?");
	}
}

static void assert_qemu_compare(struct fx *fx, const char *name, const uint8_t *want, size_t len)
{
	spill(fx_path(fx, "expect.raw"), want, len);
	if (sh_status(fx, "qemu-img compare -F raw '%s' expect.raw >cmp.out 2>&1", name)) {
		char *out = NULL;

		file_read_text(fx_path(fx, "cmp.out"), &out, NULL);
		fail_msg("qemu-img compare %s:\n%s", name, out ? out : "?");
	}
}

/* Interop: reading what qemu-img and qemu-io made */

static void test_qcow2_reads_qemu_images_v3(void **state)
{
	struct fx *fx = *state;
	struct topts ro = { .ro = true };

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "data.raw"), 5 * MiB + 3 * 512, 1);
	sh(fx, "qemu-img convert -f raw -O qcow2 -o cluster_size=65536 data.raw a.qcow2 && "
	       "qemu-io -f qcow2 -c 'write -P 0xab 100k 200k' -c 'write -z 1M 128k' "
	       "-c 'write -z -u 2M 64k' -c 'discard 3M 64k' -c 'write -P 0x5a 4M 1' a.qcow2");
	assert_reads_like_qemu(fx, "a.qcow2", &ro);
	/* The same through a read-write open. */
	assert_reads_like_qemu(fx, "a.qcow2", &(struct topts){ 0 });
	assert_qemu_check_clean(fx, "a.qcow2");
}

static void test_qcow2_reads_qemu_images_geometries(void **state)
{
	static const char *opts[] = {
		"compat=0.10,cluster_size=4096",     "compat=0.10,cluster_size=65536",
		"cluster_size=4096,refcount_bits=1", "cluster_size=2097152,refcount_bits=64",
		"cluster_size=512,refcount_bits=16",
	};
	struct fx *fx = *state;
	struct topts ro = { .ro = true };

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "data.raw"), 3 * MiB, 2);
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		sh(fx,
		   "rm -f g.qcow2 && "
		   "qemu-img convert -f raw -O qcow2 -o %s data.raw g.qcow2 && "
		   "qemu-io -f qcow2 -c 'write -P 0x33 1000k 300k' g.qcow2",
		   opts[i]);
		assert_reads_like_qemu(fx, "g.qcow2", &ro);
	}
}

static void test_qcow2_reads_backing_chain(void **state)
{
	struct fx *fx = *state;
	struct topts ro = { .ro = true };

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "base.raw"), 2 * MiB + 4096, 3);
	sh(fx, "mkdir sub && mv base.raw sub/ && "
	       "qemu-img create -q -f qcow2 -b base.raw -F raw sub/mid1.qcow2 3M && "
	       "qemu-io -f qcow2 -c 'write -P 1 0 70k' -c 'write -P 2 1500k 10k' sub/mid1.qcow2 && "
	       "qemu-img create -q -f qcow2 -o cluster_size=4096 -b mid1.qcow2 -F qcow2 "
	       "sub/mid2.qcow2 3M && "
	       "qemu-io -f qcow2 -c 'write -P 3 60k 20k' -c 'write -z 2000k 100k' "
	       "sub/mid2.qcow2 && "
	       "qemu-img create -q -f qcow2 -b sub/mid2.qcow2 -F qcow2 top.qcow2 4M && "
	       "qemu-io -f qcow2 -c 'write -P 4 2M 4k' -c 'write -P 5 3M 1k' top.qcow2");
	assert_reads_like_qemu(fx, "top.qcow2", &ro);
	assert_reads_like_qemu(fx, "top.qcow2", &(struct topts){ .cache_size = 1 });
}

static void test_qcow2_reads_compressed(void **state)
{
	struct fx *fx = *state;
	struct topts ro = { .ro = true };

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "data.raw"), 4 * MiB, 4);
	sh(fx, "qemu-img convert -c -f raw -O qcow2 data.raw z.qcow2 && "
	       "qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd,cluster_size=4096 "
	       "data.raw zs.qcow2 && "
	       "qemu-img convert -c -f raw -O qcow2 -o cluster_size=512 data.raw z512.qcow2");
	assert_reads_like_qemu(fx, "z.qcow2", &ro);
	assert_reads_like_qemu(fx, "zs.qcow2", &ro);
	assert_reads_like_qemu(fx, "z512.qcow2", &ro);
}

/*
 * qemu-io's write -c appends the compressed cluster at the end of the file without padding it to a
 * sector, so the last one ends the file mid-sector while its L2 entry counts whole sectors: the
 * read must take the bytes that are there.
 */
static void test_qcow2_reads_compressed_cluster_ending_the_file_mid_sector(void **state)
{
	static const struct {
		const char *opts, *cluster;
	} cases[] = {
		{ "cluster_size=512", "512" },
		{ "cluster_size=4096", "4k" },
		{ "cluster_size=65536", "64k" },
		{ "cluster_size=4096,compression_type=zstd", "4k" },
	};
	struct fx *fx = *state;
	char name[32];
	struct stat st;

	SKIP_WITHOUT_QEMU();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(name, sizeof(name), "wc%zu.qcow2", i);
		sh(fx,
		   "qemu-img create -q -f qcow2 -o %s %s 1M && "
		   "qemu-io -f qcow2 -c 'write -P 0x5a 64k 4k' -c 'write -c -P 0x66 0 64k' "
		   "-c 'write -c -P 0x67 128k %s' %s >/dev/null",
		   cases[i].opts, name, cases[i].cluster, name);
		assert_int_equal(stat(fx_path(fx, name), &st), 0);
		assert_true(st.st_size % 512 != 0);
		assert_reads_like_qemu(fx, name, &(struct topts){ .ro = true });
		assert_reads_like_qemu(fx, name, &(struct topts){ 0 });
	}
}

/* Twice the tables in hash buckets, a power of two: past 2^31 tables it overflowed. */
static void test_qcow2_cache_refuses_table_counts_past_its_bound(void **state)
{
	struct qcow2_cache *c = qcow2_cache_create(QCOW2_CACHE_MAX_TABLES, 9);

	assert_non_null(c);
	assert_int_equal(qcow2_cache_tables(c), QCOW2_CACHE_MAX_TABLES);
	qcow2_cache_destroy(c);
	assert_null(qcow2_cache_create(QCOW2_CACHE_MAX_TABLES + 1, 9));
	assert_null(qcow2_cache_create(0x90000000U, 9));
}

/*
 * A cache size far beyond what the disk needs (700G of 512-byte tables, 2^31 of them) is bounded
 * to what maps the whole disk: its table count overflowed and the open never ended.
 */
static void test_qcow2_huge_cache_size_is_bounded(void **state)
{
	struct fx *fx = *state;

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "data.raw"), 1 * MiB, 6);
	sh(fx, "qemu-img convert -f raw -O qcow2 -o cluster_size=512 data.raw c.qcow2");
	assert_reads_like_qemu(fx, "c.qcow2", &(struct topts){ .cache_size = 700ULL << 30 });
	assert_reads_like_qemu(fx, "c.qcow2", &(struct topts){ .cache_size = UINT64_MAX });
}

static void test_qcow2_reads_snapshot_image(void **state)
{
	struct fx *fx = *state;

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "data.raw"), 2 * MiB, 5);
	sh(fx, "qemu-img convert -f raw -O qcow2 data.raw s.qcow2 && "
	       "qemu-img snapshot -c one s.qcow2 && "
	       "qemu-io -f qcow2 -c 'write -P 7 64k 64k' -c 'write -P 8 1000k 3k' s.qcow2");
	assert_reads_like_qemu(fx, "s.qcow2", &(struct topts){ .ro = true });
}

static void test_qcow2_probe_and_forced_format(void **state)
{
	struct fx *fx = *state;
	struct disk *d;
	struct stat st;

	SKIP_WITHOUT_QEMU();
	sh(fx, "qemu-img create -q -f qcow2 p.qcow2 10M");
	assert_int_equal(stat(fx_path(fx, "p.qcow2"), &st), 0);
	d = t_open(fx_path(fx, "p.qcow2"), &(struct topts){ .ro = true });
	assert_int_equal(disk_size(d), 10 * MiB);
	disk_close(d);
	d = t_open(fx_path(fx, "p.qcow2"),
		   &(struct topts){ .ro = true, .format = DISK_FORMAT_RAW });
	assert_int_equal(disk_size(d), st.st_size);
	disk_close(d);
	make_raw(fx_path(fx, "r.raw"), 1 * MiB, 1);
	d = t_open(fx_path(fx, "r.raw"), &(struct topts){ .ro = true });
	assert_int_equal(disk_size(d), 1 * MiB);
	disk_close(d);
}

/* Interop: writing what qemu-img then checks */

struct workload {
	uint64_t seed;
	int rounds; /* batches */
	uint64_t max_len;
	bool aligned; /* 4 KiB-aligned offsets, lengths and buffers (O_DIRECT) */
	bool discards;
};

static bool overlaps(const uint64_t *off, const uint64_t *len, int n, uint64_t o, uint64_t l)
{
	for (int i = 0; i < n; i++) {
		if (o < off[i] + len[i] && off[i] < o + l)
			return true;
	}
	return false;
}

/*
 * Batches of up to 6 non-overlapping requests in flight together: writes, write-zeroes,
 * discards (whose range then reads as zeroes or as before, byte by byte), flushes. shadow holds
 * what the disk must read as, and is updated as the requests complete.
 */
static void run_workload(struct disk *d, uint8_t *shadow, const struct workload *w)
{
	uint64_t size = disk_size(d), x = w->seed * 7919 + 1;
	uint64_t unit = w->aligned ? 4096 : 1;
	uint8_t *bufs[6];
	sem_t sem;

	sem_init(&sem, 0, 0);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(posix_memalign((void **)&bufs[i], 4096, w->max_len + 8192), 0);
	}
	for (int round = 0; round < w->rounds; round++) {
		struct treq t[6];
		uint64_t off[6], len[6];
		enum disk_op op[6];
		int n = 0;

		for (int tries = 0; n < 6 && tries < 20; tries++) {
			uint64_t l = (rnd(&x) % w->max_len) / unit * unit + unit;
			uint64_t o = (rnd(&x) % (size - l + 1)) / unit * unit;
			unsigned int kind = rnd(&x) % 16;

			if (overlaps(off, len, n, o, l))
				continue;
			op[n] = kind < 11		 ? DISK_WRITE :
				kind < 13		 ? DISK_WRITE_ZEROES :
				kind < 15 && w->discards ? DISK_DISCARD :
							   DISK_FLUSH;
			off[n] = o;
			len[n] = l;
			if (op[n] == DISK_WRITE)
				fill(bufs[n], l, rnd(&x));
			treq_init(&t[n], &sem, op[n], o, bufs[n], l, !w->aligned);
			n++;
		}
		for (int i = 0; i < n; i++)
			disk_submit(d, &t[i].req);
		for (int i = 0; i < n; i++) {
			while (sem_wait(&sem))
				;
		}
		for (int i = 0; i < n; i++) {
			assert_int_equal(t[i].status, 0);
			if (op[i] == DISK_WRITE)
				memcpy(shadow + off[i], bufs[i], len[i]);
			else if (op[i] == DISK_WRITE_ZEROES)
				memset(shadow + off[i], 0, len[i]);
		}
		for (int i = 0; i < n; i++) {
			uint8_t *got;

			if (op[i] != DISK_DISCARD)
				continue;
			got = bufs[i];
			assert_int_equal(t_io(d, DISK_READ, off[i], got, len[i]), 0);
			for (uint64_t j = 0; j < len[i]; j++) {
				if (got[j] && got[j] != shadow[off[i] + j])
					fail_msg("byte %#llx after discard: %#x, not 0 or %#x",
						 (unsigned long long)(off[i] + j), got[j],
						 shadow[off[i] + j]);
			}
			memcpy(shadow + off[i], got, len[i]);
		}
	}
	for (int i = 0; i < 6; i++)
		free(bufs[i]);
	sem_destroy(&sem);
}

/* Opens name read-write, runs w over what it holds (initial), checks the result three ways. */
static void write_and_verify(struct fx *fx, const char *name, const struct topts *t,
			     const struct workload *w)
{
	struct disk *d = t_open(fx_path(fx, name), t);
	uint8_t *shadow = read_disk(d, !t->direct), *got;
	uint64_t size = disk_size(d);

	run_workload(d, shadow, w);
	got = read_disk(d, !t->direct);
	assert_memory_equal(got, shadow, size);
	free(got);
	disk_close(d);
	assert_qemu_check_clean(fx, name);
	assert_qemu_compare(fx, name, shadow, size);
	/* And nkvm reads back what it wrote, after a fresh open. */
	d = t_open(fx_path(fx, name), &(struct topts){ .ro = true });
	got = read_disk(d, true);
	assert_memory_equal(got, shadow, size);
	free(got);
	disk_close(d);
	free(shadow);
}

static void test_qcow2_random_writes_pass_qemu_check(void **state)
{
	static const char *opts[] = {
		"cluster_size=65536",
		"compat=0.10,cluster_size=65536",
		"cluster_size=4096,refcount_bits=1",
		"cluster_size=2097152,refcount_bits=64",
		"compat=0.10,cluster_size=512",
		"cluster_size=1024,refcount_bits=2",
		"cluster_size=8192,refcount_bits=32",
	};
	struct fx *fx = *state;

	SKIP_WITHOUT_QEMU();
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		struct workload w = {
			.seed = i + 1, .rounds = 40, .max_len = 150 * 1024, .discards = true
		};

		sh(fx, "rm -f w.qcow2 && qemu-img create -q -f qcow2 -o %s w.qcow2 6M", opts[i]);
		write_and_verify(fx, "w.qcow2", &(struct topts){ 0 }, &w);
	}
}

static void test_qcow2_writes_over_backing_chain(void **state)
{
	struct fx *fx = *state;
	struct workload w = { .seed = 11, .rounds = 40, .max_len = 100 * 1024, .discards = true };

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "base.raw"), 3 * MiB, 6);
	sh(fx, "qemu-img create -q -f qcow2 -o cluster_size=4096 -b base.raw -F raw mid.qcow2 && "
	       "qemu-io -f qcow2 -c 'write -P 9 10k 50k' mid.qcow2 && "
	       "qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 4M");
	write_and_verify(fx, "top.qcow2", &(struct topts){ 0 }, &w);
	/* The same over a version 2 image: write-zeroes must hide the backing data. */
	sh(fx, "qemu-img create -q -f qcow2 -o compat=0.10 -b mid.qcow2 -F qcow2 top2.qcow2 4M");
	write_and_verify(fx, "top2.qcow2", &(struct topts){ 0 }, &w);
}

static void test_qcow2_writes_over_snapshot_and_compressed(void **state)
{
	struct fx *fx = *state;
	struct workload w = { .seed = 12, .rounds = 40, .max_len = 200 * 1024, .discards = true };
	size_t len, len2;
	uint8_t *before, *after;

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "data.raw"), 4 * MiB, 7);
	sh(fx, "qemu-img convert -f raw -O qcow2 data.raw s.qcow2 && "
	       "qemu-img snapshot -c one s.qcow2");
	write_and_verify(fx, "s.qcow2", &(struct topts){ 0 }, &w);
	/* The snapshot still holds the old data: shared clusters were copied, not written. */
	sh(fx, "qemu-img snapshot -a one s.qcow2 && qemu-img convert -O raw s.qcow2 snap.raw");
	before = slurp(fx_path(fx, "data.raw"), &len);
	after = slurp(fx_path(fx, "snap.raw"), &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(before, after, len);
	free(before);
	free(after);

	sh(fx, "qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd data.raw c.qcow2");
	write_and_verify(fx, "c.qcow2", &(struct topts){ 0 }, &w);
	sh(fx, "qemu-img convert -c -f raw -O qcow2 -o cluster_size=4096 data.raw c4.qcow2");
	write_and_verify(fx, "c4.qcow2", &(struct topts){ 0 }, &w);
}

/*
 * First writes of part of a cluster. A new cluster past the end of the file is a hole: only the
 * guest's bytes are written into it. A free cluster inside the file may hold old bytes: it gets
 * the rest of the cluster written as zeroes, as ever.
 */
static void test_qcow2_first_writes_into_new_and_reused_clusters(void **state)
{
	struct fx *fx = *state;
	const uint64_t cs = 65536, size = 4 * MiB;
	const char *path = fx_path(fx, "f.qcow2");
	uint8_t *want = calloc(1, size), *junk = malloc(2 * cs), *got;
	uint8_t a[4096], b[4096];
	struct stat before, after;
	struct disk *d;
	int fd;

	SKIP_WITHOUT_QEMU();
	assert_non_null(want);
	assert_non_null(junk);
	/*
	 * Header, refcount table and block, L1: clusters 0-3. Then two free clusters of old bytes
	 * (refcount 0: free space, not a leak), which the L2 table and the first data cluster get.
	 */
	sh(fx, "qemu-img create -q -f qcow2 -o cluster_size=65536 f.qcow2 4M && "
	       "truncate -s 262144 f.qcow2");
	memset(junk, 0xa5, 2 * cs);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, 2 * cs), (ssize_t)(2 * cs));
	close(fd);
	assert_int_equal(stat(path, &before), 0);

	memset(a, 0x11, sizeof(a));
	memset(b, 0x22, sizeof(b));
	d = t_open(path, &(struct topts){ 0 });
	assert_int_equal(t_io(d, DISK_WRITE, 8192, a, sizeof(a)), 0); /* cluster 5 */
	assert_int_equal(t_io(d, DISK_WRITE, 5 * cs + 61440, b, sizeof(b)), 0); /* new: 6 */
	disk_close(d);
	memcpy(want + 8192, a, sizeof(a));
	memcpy(want + 5 * cs + 61440, b, sizeof(b));

	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(after.st_size, 7 * cs);
	/* The file system holds 4 KiB of the new cluster, not 64 (its blocks, in 512 bytes). */
	assert_in_range((after.st_blocks - before.st_blocks) * 512, 4096, 16384);
	d = t_open(path, &(struct topts){ .ro = true });
	got = read_disk(d, true);
	assert_memory_equal(got, want, size);
	disk_close(d);
	assert_qemu_check_clean(fx, "f.qcow2");
	assert_qemu_compare(fx, "f.qcow2", want, size);
	free(got);
	free(junk);
	free(want);
}

/* 512-byte clusters with 16-bit refcounts: a refcount table cluster covers only 8 MiB. */
static void test_qcow2_grows_refcount_structures(void **state)
{
	struct fx *fx = *state;
	struct workload w = { .seed = 13, .rounds = 10, .max_len = 64 * 1024, .discards = true };
	uint64_t size = 12 * MiB;
	uint8_t *buf = malloc(size);
	struct disk *d;

	SKIP_WITHOUT_QEMU();
	assert_non_null(buf);
	sh(fx, "qemu-img create -q -f qcow2 -o cluster_size=512 g.qcow2 12M && "
	       "qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=1 g1.qcow2 12M");
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "g1.qcow2" : "g.qcow2";

		fill(buf, size, 99 + i);
		d = t_open(fx_path(fx, name), &(struct topts){ 0 });
		assert_int_equal(t_io(d, DISK_WRITE, 0, buf, size), 0);
		disk_close(d);
		assert_qemu_check_clean(fx, name);
		assert_qemu_compare(fx, name, buf, size);
		write_and_verify(fx, name, &(struct topts){ .cache_size = 4096 }, &w);
	}
	free(buf);
}

static void test_qcow2_tiny_cache_evicts(void **state)
{
	struct fx *fx = *state;
	struct workload w = { .seed = 14, .rounds = 60, .max_len = 64 * 1024, .discards = true };

	SKIP_WITHOUT_QEMU();
	/* 512-byte clusters: 256 L2 tables and 64 refcount blocks, through 4 slots each. */
	make_raw(fx_path(fx, "data.raw"), 8 * MiB, 8);
	sh(fx, "qemu-img convert -f raw -O qcow2 -o cluster_size=512 data.raw t.qcow2");
	write_and_verify(fx, "t.qcow2", &(struct topts){ .cache_size = 1 }, &w);
}

static void test_qcow2_direct_io(void **state)
{
	struct fx *fx = *state;
	struct workload w = {
		.seed = 15, .rounds = 40, .max_len = 128 * 1024, .aligned = true, .discards = true
	};
	struct disk *d = NULL;
	char why[DISK_ERR_MAX];
	uint8_t odd[1000];
	uint32_t bs;

	SKIP_WITHOUT_QEMU();
	make_raw(fx_path(fx, "data.raw"), 4 * MiB, 9);
	sh(fx, "qemu-img convert -f raw -O qcow2 -o cluster_size=65536 data.raw d.qcow2 && "
	       "qemu-img create -q -f qcow2 -o cluster_size=512 small.qcow2 1M");
	if (t_open_err(fx_path(fx, "d.qcow2"), &(struct topts){ .direct = true }, &d, why,
		       sizeof(why)) == -EINVAL) {
		print_message("no O_DIRECT on this file system: test skipped\n");
		skip();
	}
	/* Misaligned requests are refused, as raw refuses them. */
	assert_int_equal(t_io(d, DISK_READ, 1, odd, 512), -EINVAL);
	disk_close(d);
	write_and_verify(fx, "d.qcow2", &(struct topts){ .direct = true }, &w);
	/* Clusters smaller than the direct I/O block: refused (only testable where it is >512). */
	d = t_open(fx_path(fx, "d.qcow2"), &(struct topts){ .direct = true, .ro = true });
	bs = disk_block_size(d);
	disk_close(d);
	if (bs > 512) {
		assert_int_equal(t_open_err(fx_path(fx, "small.qcow2"),
					    &(struct topts){ .direct = true }, &d, why,
					    sizeof(why)),
				 -EINVAL);
		assert_non_null(strstr(why, "smaller than"));
	}
}

/* Refusals and malformed images */

static void expect_open_error(struct fx *fx, const char *name, const struct topts *t, int err,
			      const char *words)
{
	struct disk *d = NULL;
	char why[DISK_ERR_MAX] = "";

	assert_int_equal(t_open_err(fx_path(fx, name), t, &d, why, sizeof(why)), err);
	assert_null(d);
	assert_true(why[0]);
	if (!strstr(why, words))
		fail_msg("reason \"%s\" does not contain \"%s\"", why, words);
	assert_null(strchr(why, '\n'));
}

static void patch(struct fx *fx, const char *name, uint64_t off, const void *bytes, size_t n)
{
	int fd = open(fx_path(fx, name), O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

static void patch_be64(struct fx *fx, const char *name, uint64_t off, uint64_t v)
{
	uint8_t b[8];

	qcow2_put_be64(b, v);
	patch(fx, name, off, b, 8);
}

static uint64_t peek_be64(struct fx *fx, const char *name, uint64_t off)
{
	uint8_t b[8];
	int fd = open(fx_path(fx, name), O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 8, off), 8);
	close(fd);
	return qcow2_be64(b);
}

static void test_qcow2_refuses_dirty_and_corrupt_rw(void **state)
{
	struct fx *fx = *state;
	struct disk *d;

	SKIP_WITHOUT_QEMU();
	sh(fx, "qemu-img create -q -f qcow2 i.qcow2 1M");
	patch_be64(fx, "i.qcow2", 72, QCOW2_INCOMPAT_DIRTY);
	expect_open_error(fx, "i.qcow2", &(struct topts){ 0 }, -EINVAL, "qemu-img check -r all");
	d = t_open(fx_path(fx, "i.qcow2"), &(struct topts){ .ro = true });
	disk_close(d);
	patch_be64(fx, "i.qcow2", 72, QCOW2_INCOMPAT_CORRUPT);
	expect_open_error(fx, "i.qcow2", &(struct topts){ 0 }, -EINVAL, "marked corrupt");
	d = t_open(fx_path(fx, "i.qcow2"), &(struct topts){ .ro = true });
	disk_close(d);
}

static void test_qcow2_refuses_unsupported_features(void **state)
{
	struct fx *fx = *state;

	SKIP_WITHOUT_QEMU();
	sh(fx, "qemu-img create -q -f qcow2 e.qcow2 1M && "
	       "cp e.qcow2 x.qcow2 && cp e.qcow2 u.qcow2");
	patch(fx, "e.qcow2", 32, "\0\0\0\2", 4);
	expect_open_error(fx, "e.qcow2", &(struct topts){ .ro = true }, -ENOTSUP,
			  "unsupported feature: encryption (LUKS)");
	patch_be64(fx, "x.qcow2", 72, QCOW2_INCOMPAT_EXTL2);
	expect_open_error(fx, "x.qcow2", &(struct topts){ .ro = true }, -ENOTSUP,
			  "extended L2 entries");
	patch_be64(fx, "u.qcow2", 72, 1ULL << 40);
	expect_open_error(fx, "u.qcow2", &(struct topts){ .ro = true }, -ENOTSUP,
			  "unknown incompatible feature bit 40");
}

static void test_qcow2_backing_needs_format(void **state)
{
	struct fx *fx = *state;

	SKIP_WITHOUT_QEMU();
	/* qemu-img no longer makes such images: the format extension is taken out by hand. */
	sh(fx, "qemu-img create -q -f raw base.raw 1M && "
	       "qemu-img create -q -f qcow2 -b base.raw -F raw nofmt.qcow2");
	{
		uint8_t *buf;
		size_t len;
		struct qcow2_header h;
		char why[256];
		long n;

		buf = slurp(fx_path(fx, "nofmt.qcow2"), &len);
		assert_int_equal(qcow2_header_parse(&h, buf, len, len, why, sizeof(why)), 0);
		h.backing_format[0] = '\0';
		n = qcow2_header_encode(&h, buf, 65536);
		assert_true(n > 0);
		spill(fx_path(fx, "nofmt.qcow2"), buf, len);
		qcow2_header_free(&h);
		free(buf);
	}
	expect_open_error(fx, "nofmt.qcow2", &(struct topts){ .ro = true }, -EINVAL,
			  "qemu-img rebase -u -F raw -b base.raw");
	sh(fx, "qemu-img create -q -f qcow2 -b missing.qcow2 -F qcow2 -u miss.qcow2 1M");
	expect_open_error(fx, "miss.qcow2", &(struct topts){ .ro = true }, -ENOENT,
			  "missing.qcow2: no such file");
	/* raw named as qcow2: refused, not probed. */
	sh(fx, "qemu-img create -q -f qcow2 -b base.raw -F qcow2 -u wrong.qcow2 1M");
	expect_open_error(fx, "wrong.qcow2", &(struct topts){ .ro = true }, -EINVAL,
			  "not a qcow2 image");
}

static void test_qcow2_backing_loop_and_depth(void **state)
{
	struct fx *fx = *state;
	struct disk *d;

	SKIP_WITHOUT_QEMU();
	sh(fx, "qemu-img create -q -f qcow2 a.qcow2 1M && "
	       "qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2 && "
	       "qemu-img rebase -q -u -b b.qcow2 -F qcow2 a.qcow2");
	expect_open_error(fx, "b.qcow2", &(struct topts){ .ro = true }, -ELOOP, "loop");
	expect_open_error(fx, "b.qcow2", &(struct topts){ 0 }, -ELOOP, "loop");
	sh(fx, "qemu-img create -q -f qcow2 self.qcow2 1M && "
	       "qemu-img rebase -q -u -b self.qcow2 -F qcow2 self.qcow2");
	expect_open_error(fx, "self.qcow2", &(struct topts){ .ro = true }, -ELOOP, "loop");

	sh(fx, "qemu-img create -q -f raw c0.img 1M && "
	       "for i in $(seq 1 40); do qemu-img create -q -f qcow2 -u -b c$((i-1)).img "
	       "-F $([ $i = 1 ] && echo raw || echo qcow2) c$i.img 1M; done");
	d = t_open(fx_path(fx, "c30.img"), &(struct topts){ .ro = true });
	disk_close(d);
	expect_open_error(fx, "c40.img", &(struct topts){ .ro = true }, -ELOOP,
			  "chain of more than");
}

static void test_qcow2_clears_autoclear_keeps_extensions(void **state)
{
	struct fx *fx = *state;
	struct qcow2_ext ext = { .type = 0x7e57e57e, .len = 5, .data = (uint8_t *)"hello" };
	struct qcow2_header h;
	uint8_t *buf;
	size_t len;
	char why[256];
	struct disk *d;

	SKIP_WITHOUT_QEMU();
	sh(fx, "qemu-img create -q -f raw base.raw 1M && "
	       "qemu-img create -q -f qcow2 -b base.raw -F raw a.qcow2");
	buf = slurp(fx_path(fx, "a.qcow2"), &len);
	assert_int_equal(qcow2_header_parse(&h, buf, len, len, why, sizeof(why)), 0);
	qcow2_header_free(&h);
	h.autoclear_features = 1ULL << 7;
	h.unknown = &ext;
	h.nr_unknown = 1;
	assert_true(qcow2_header_encode(&h, buf, 65536) > 0);
	spill(fx_path(fx, "a.qcow2"), buf, len);
	free(buf);

	d = t_open(fx_path(fx, "a.qcow2"), &(struct topts){ .ro = true });
	disk_close(d);
	assert_int_equal(peek_be64(fx, "a.qcow2", 88), 1ULL << 7);
	d = t_open(fx_path(fx, "a.qcow2"), &(struct topts){ 0 });
	disk_close(d);
	assert_int_equal(peek_be64(fx, "a.qcow2", 88), 0);
	buf = slurp(fx_path(fx, "a.qcow2"), &len);
	assert_int_equal(qcow2_header_parse(&h, buf, len, len, why, sizeof(why)), 0);
	assert_int_equal(h.nr_unknown, 1);
	assert_int_equal(h.unknown[0].type, 0x7e57e57e);
	assert_memory_equal(h.unknown[0].data, "hello", 5);
	assert_string_equal(h.backing_file, "base.raw");
	assert_string_equal(h.backing_format, "raw");
	qcow2_header_free(&h);
	free(buf);
	assert_qemu_check_clean(fx, "a.qcow2");
}

/*
 * An image with one L2 table at l2 (64 KiB clusters): the L1 entry for guest offset 0 is at
 * h.l1_table_offset.
 */
static uint64_t first_l2(struct fx *fx, const char *name)
{
	uint64_t l1 = peek_be64(fx, name, 40);

	return peek_be64(fx, name, l1) & QCOW2_L1E_OFFSET_MASK;
}

static void expect_io(struct disk *d, enum disk_op op, uint64_t off, uint64_t len, int want)
{
	uint8_t *buf = calloc(1, len);

	assert_non_null(buf);
	assert_int_equal(t_io(d, op, off, buf, len), want);
	free(buf);
}

static void test_qcow2_malformed_tables_fail_requests(void **state)
{
	struct fx *fx = *state;
	uint64_t l2, l1, size;
	size_t len, len2;
	uint8_t *before, *after;
	struct disk *d;
	struct stat st;

	SKIP_WITHOUT_QEMU();
	sh(fx, "qemu-img create -q -f qcow2 m.qcow2 4M && "
	       "qemu-io -f qcow2 -c 'write -P 1 0 128k' -c 'write -P 2 1M 64k' m.qcow2");
	l2 = first_l2(fx, "m.qcow2");
	l1 = peek_be64(fx, "m.qcow2", 40);
	assert_int_equal(stat(fx_path(fx, "m.qcow2"), &st), 0);
	size = st.st_size;

	/* An L2 entry past the end of the file: -EIO for that cluster, the rest reads. */
	sh(fx, "cp m.qcow2 past.qcow2 && cp m.qcow2 mis.qcow2 && cp m.qcow2 over.qcow2 && "
	       "cp m.qcow2 l1.qcow2 && cp m.qcow2 comp.qcow2 && cp m.qcow2 rt.qcow2");
	patch_be64(fx, "past.qcow2", l2, QCOW2_OFLAG_COPIED | (size + 65536 * 10));
	d = t_open(fx_path(fx, "past.qcow2"), &(struct topts){ 0 });
	expect_io(d, DISK_READ, 0, 4096, -EIO);
	expect_io(d, DISK_WRITE, 100, 4096, -EIO);
	expect_io(d, DISK_READ, 65536, 4096, 0);
	disk_close(d);

	/* Misaligned, and pointing over the L1 table: never written through. */
	patch_be64(fx, "mis.qcow2", l2, QCOW2_OFLAG_COPIED | (l2 + 512));
	patch_be64(fx, "over.qcow2", l2, QCOW2_OFLAG_COPIED | l1);
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "over.qcow2" : "mis.qcow2";

		before = slurp(fx_path(fx, name), &len);
		d = t_open(fx_path(fx, name), &(struct topts){ 0 });
		expect_io(d, DISK_READ, 0, 512, -EIO);
		expect_io(d, DISK_WRITE, 0, 512, -EIO);
		expect_io(d, DISK_WRITE_ZEROES, 0, 65536, -EIO);
		disk_close(d);
		after = slurp(fx_path(fx, name), &len2);
		if (i)
			assert_memory_equal(before + l1, after + l1, 512);
		free(before);
		free(after);
	}

	/* An L1 entry pointing past the end of the file. */
	patch_be64(fx, "l1.qcow2", l1, QCOW2_OFLAG_COPIED | (size + 65536 * 100));
	d = t_open(fx_path(fx, "l1.qcow2"), &(struct topts){ 0 });
	expect_io(d, DISK_READ, 0, 512, -EIO);
	expect_io(d, DISK_WRITE, 0, 512, -EIO);
	disk_close(d);

	/* A compressed entry past the end, and one whose bytes are not deflate. */
	patch_be64(fx, "comp.qcow2", l2, QCOW2_OFLAG_COMPRESSED | (size + 4096));
	patch_be64(fx, "comp.qcow2", l2 + 8 * 16, QCOW2_OFLAG_COMPRESSED | (l1 + 8) | (3ULL << 54));
	d = t_open(fx_path(fx, "comp.qcow2"), &(struct topts){ .ro = true });
	expect_io(d, DISK_READ, 0, 512, -EIO);
	expect_io(d, DISK_READ, 1 * MiB, 512, -EIO);
	disk_close(d);

	/* A refcount block past the end: allocation fails, reads still work. */
	patch_be64(fx, "rt.qcow2", peek_be64(fx, "rt.qcow2", 48), size + 65536 * 50);
	d = t_open(fx_path(fx, "rt.qcow2"), &(struct topts){ 0 });
	expect_io(d, DISK_READ, 0, 512, 0);
	expect_io(d, DISK_WRITE, 2 * MiB, 512, -EIO);
	disk_close(d);
}

/* Requests cut into segments of odd sizes, empty ones among them, on both paths. */
static void test_qcow2_segments_of_any_size(void **state)
{
	struct fx *fx = *state;
	enum { LEN = 200000 };
	static uint8_t data[LEN], got[LEN];
	struct iovec iov[6];
	struct treq t;
	struct disk *d;
	sem_t sem;

	SKIP_WITHOUT_QEMU();
	sh(fx, "qemu-img create -q -f qcow2 -o cluster_size=4096 s.qcow2 1M");
	fill(data, LEN, 77);
	sem_init(&sem, 0, 0);
	d = t_open(fx_path(fx, "s.qcow2"), &(struct topts){ 0 });
	for (int pass = 0; pass < 3; pass++) {
		for (int w = 1; w >= 0; w--) {
			uint8_t *buf = w ? data : got;

			iov[0] = (struct iovec){ buf, 0 };
			iov[1] = (struct iovec){ buf, 777 };
			iov[2] = (struct iovec){ buf + 777, 0 };
			iov[3] = (struct iovec){ buf + 777, 4096 * 3 + 5 };
			iov[4] = (struct iovec){ buf + 777 + 4096 * 3 + 5,
						 LEN - 777 - 4096 * 3 - 5 };
			iov[5] = (struct iovec){ buf + LEN, 0 };
			treq_init(&t, &sem, w ? DISK_WRITE : DISK_READ, 1000 + pass * 3000, NULL, 0,
				  false);
			t.req.iov = iov;
			t.req.iovcnt = 6;
			/* The first write allocates (worker), the others overwrite (fast path). */
			disk_submit(d, &t.req);
			while (sem_wait(&sem))
				;
			assert_int_equal(t.status, 0);
		}
		assert_memory_equal(got, data, LEN);
	}
	disk_close(d);
	sem_destroy(&sem);
	assert_qemu_check_clean(fx, "s.qcow2");
}

/* A request whose done submits the next: close still waits for all of them. */
struct chain_req {
	struct treq t;
	struct disk *d;
	uint8_t buf[4096];
	int left;
	atomic_int *count;
};

static void chain_done(struct disk_request *req, int status)
{
	struct chain_req *c = (struct chain_req *)req;

	atomic_fetch_add(c->count, status == 0);
	if (--c->left > 0) {
		treq_init(&c->t, NULL, c->left % 2 ? DISK_WRITE : DISK_READ,
			  (uint64_t)c->left * 65536 * 3, c->buf, sizeof(c->buf), false);
		c->t.req.done = chain_done;
		disk_submit(c->d, &c->t.req);
	}
}

static void test_qcow2_close_waits_for_resubmitted(void **state)
{
	struct fx *fx = *state;
	static struct chain_req c;
	atomic_int count = 0;

	SKIP_WITHOUT_QEMU();
	sh(fx, "qemu-img create -q -f qcow2 c.qcow2 8M");
	c.d = t_open(fx_path(fx, "c.qcow2"), &(struct topts){ 0 });
	c.left = 30;
	c.count = &count;
	treq_init(&c.t, NULL, DISK_WRITE, 0, c.buf, sizeof(c.buf), false);
	c.t.req.done = chain_done;
	disk_submit(c.d, &c.t.req);
	disk_close(c.d);
	assert_int_equal(atomic_load(&count), 30);
	assert_qemu_check_clean(fx, "c.qcow2");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_qcow2_reads_qemu_images_v3),
		T(test_qcow2_reads_qemu_images_geometries),
		T(test_qcow2_reads_backing_chain),
		T(test_qcow2_reads_compressed),
		T(test_qcow2_reads_compressed_cluster_ending_the_file_mid_sector),
		cmocka_unit_test(test_qcow2_cache_refuses_table_counts_past_its_bound),
		T(test_qcow2_huge_cache_size_is_bounded),
		T(test_qcow2_reads_snapshot_image),
		T(test_qcow2_probe_and_forced_format),
		T(test_qcow2_random_writes_pass_qemu_check),
		T(test_qcow2_writes_over_backing_chain),
		T(test_qcow2_writes_over_snapshot_and_compressed),
		T(test_qcow2_first_writes_into_new_and_reused_clusters),
		T(test_qcow2_grows_refcount_structures),
		T(test_qcow2_tiny_cache_evicts),
		T(test_qcow2_direct_io),
		T(test_qcow2_refuses_dirty_and_corrupt_rw),
		T(test_qcow2_refuses_unsupported_features),
		T(test_qcow2_backing_needs_format),
		T(test_qcow2_backing_loop_and_depth),
		T(test_qcow2_clears_autoclear_keeps_extensions),
		T(test_qcow2_malformed_tables_fail_requests),
		T(test_qcow2_segments_of_any_size),
		T(test_qcow2_close_waits_for_resubmitted),
	};

	cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
