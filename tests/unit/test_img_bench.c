// SPDX-License-Identifier: MIT
/*
 * `nkvm img bench` drives nkvm's virtio-blk device without a guest: short runs on small raw and
 * qcow2 images complete exactly the requests asked for, on every engine and with two queues;
 * writes leave the pattern byte where qemu-img bench's offset sequence puts them; flushes come
 * at the interval; a failing request and bad options end the run with one line. Images live
 * under /var/tmp, which (unlike a tmpfs /tmp) takes O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cmd/cmd.h"
#include "cmd/img_bench.h"
#include "lib/file.h"
#include "lib/util.h"

struct fx {
	char dir[64];
	char raw[128], qcow2[128];
};

/* A raw image of size bytes, every 512-byte sector holding its own number (nothing sparse). */
static void make_raw(const char *path, uint64_t size)
{
	uint8_t *buf = malloc(size);
	int fd;

	assert_non_null(buf);
	for (uint64_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i / 512 + 1);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, buf, size), 0);
	close(fd);
	free(buf);
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	char cmd[512];

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/var/tmp/nkvm-test-bench-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->raw, sizeof(fx->raw), "%s/disk.raw", fx->dir);
	snprintf(fx->qcow2, sizeof(fx->qcow2), "%s/disk.qcow2", fx->dir);
	make_raw(fx->raw, 4 * MiB);
	snprintf(cmd, sizeof(cmd), "qemu-img convert -f raw -O qcow2 %s %s", fx->raw, fx->qcow2);
	if (system(cmd))
		return -1;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

static struct img_bench_options opts(const char *path)
{
	struct img_bench_options o;

	img_bench_defaults(&o);
	o.path = path;
	o.count = 300;
	o.depth = 8;
	return o;
}

static void run_ok(const struct img_bench_options *o, struct img_bench_result *r)
{
	char why[200] = "";
	int err = img_bench_run(o, r, why, sizeof(why));

	if (err)
		fail_msg("bench failed: %s (%d)", why, err);
}

static void test_bench_reads_raw_completes_the_count(void **state)
{
	struct fx *fx = *state;
	struct img_bench_options o = opts(fx->raw);
	struct img_bench_result r;

	run_ok(&o, &r);
	assert_int_equal(r.ops, 300);
	assert_int_equal(r.bytes, 300 * 4096);
	assert_string_equal(r.format, "raw");
	assert_string_equal(r.engine, "threads");
	/* Every completion is seen through an interrupt; suppression may merge several. */
	assert_true(r.interrupts >= 1 && r.interrupts <= 300);
	assert_true(r.kicks >= 1 && r.kicks <= 300);
	assert_true(r.seconds > 0);
	assert_true(r.p50_us > 0 && r.p50_us <= r.p99_us && r.p99_us <= r.p999_us &&
		    r.p999_us <= r.max_us);
	assert_true(r.cpu_us > 0);
}

static void test_bench_reads_qcow2_completes_the_count(void **state)
{
	struct fx *fx = *state;
	struct img_bench_options o = opts(fx->qcow2);
	struct img_bench_result r;

	o.random = true;
	run_ok(&o, &r);
	assert_int_equal(r.ops, 300);
	assert_string_equal(r.format, "qcow2");
}

/* 64 KiB writes from 0: qemu-img's offsets wrap modulo (size - bufsize), never into the end. */
static void check_pattern(const uint8_t *img, uint64_t size, uint64_t written, uint8_t pattern)
{
	for (uint64_t i = 0; i < size; i++) {
		uint8_t want = i < written ? pattern : (uint8_t)(i / 512 + 1);

		if (img[i] != want)
			fail_msg("byte %llu: %#x, expected %#x", (unsigned long long)i, img[i],
				 want);
	}
}

/* The guest's view of image path (format fmt), through qemu-img: 4 MiB, pattern up to written. */
static void check_image_pattern(struct fx *fx, const char *path, const char *fmt, uint64_t written,
				uint8_t pattern)
{
	char out[160], cmd[400];
	uint8_t *img;
	size_t len;

	snprintf(out, sizeof(out), "%s/back.raw", fx->dir);
	snprintf(cmd, sizeof(cmd), "qemu-img convert -f %s -O raw %s %s", fmt, path, out);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(read_file(out, &img, &len), 0);
	assert_int_equal(len, 4 * MiB);
	check_pattern(img, len, written, pattern);
	free(img);
}

static void test_bench_write_leaves_the_pattern_in_raw(void **state)
{
	struct fx *fx = *state;
	struct img_bench_options o = opts(fx->raw);
	struct img_bench_result r;
	uint8_t *img;
	size_t len;

	o.write = true;
	o.pattern = 0x5a;
	o.bufsize = o.step = 64 * KiB;
	o.count = 4 * MiB / (64 * KiB) - 1; /* exactly up to where the sequence wraps */
	o.depth = 4;
	run_ok(&o, &r);
	assert_int_equal(r.ops, o.count);
	assert_int_equal(read_file(fx->raw, &img, &len), 0);
	assert_int_equal(len, 4 * MiB);
	check_pattern(img, len, o.count * 64 * KiB, 0x5a);
	free(img);
	make_raw(fx->raw, 4 * MiB);
}

static void test_bench_write_leaves_the_pattern_in_qcow2(void **state)
{
	struct fx *fx = *state;
	struct img_bench_options o = opts(fx->qcow2);
	struct img_bench_result r;
	char cmd[400];

	o.write = true;
	o.pattern = 0xc3;
	o.bufsize = o.step = 64 * KiB;
	o.count = 4 * MiB / (64 * KiB) - 1;
	o.depth = 4;
	run_ok(&o, &r);
	assert_int_equal(r.ops, o.count);
	check_image_pattern(fx, fx->qcow2, "qcow2", o.count * 64 * KiB, 0xc3);
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", fx->qcow2);
	assert_int_equal(system(cmd), 0);
}

/*
 * Depth 1 with the threads engine and O_DIRECT: after a few requests the queue's thread
 * performs each one itself (blk_may_wait), through raw and through qcow2's fast path. The data
 * must land as with the pool, and the qcow2 image stay clean.
 */
static void test_bench_depth_one_writes_on_the_queue_thread(void **state)
{
	struct fx *fx = *state;
	const char *paths[] = { fx->raw, fx->qcow2 }, *fmts[] = { "raw", "qcow2" };
	char cmd[400];

	for (unsigned int i = 0; i < 2; i++) {
		struct img_bench_options o = opts(paths[i]);
		struct img_bench_result r;

		o.engine = DISK_ENGINE_THREADS;
		o.direct = true;
		o.write = true;
		o.pattern = 0x3c + i;
		o.bufsize = o.step = 64 * KiB;
		o.count = 4 * MiB / (64 * KiB) - 1;
		o.depth = 1;
		run_ok(&o, &r);
		assert_int_equal(r.ops, o.count);
		assert_string_equal(r.engine, "threads");
		check_image_pattern(fx, paths[i], fmts[i], o.count * 64 * KiB, 0x3c + i);
	}
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", fx->qcow2);
	assert_int_equal(system(cmd), 0);
	make_raw(fx->raw, 4 * MiB);
}

/* Each engine, O_DIRECT, two queues with a driver thread each, random offsets. */
static void bench_engine(const char *path, enum disk_engine_kind engine, const char *name)
{
	struct img_bench_options o = opts(path);
	struct img_bench_result r;

	o.engine = engine;
	o.direct = true;
	o.random = true;
	o.queues = 2;
	o.count = 400;
	o.depth = 16;
	run_ok(&o, &r);
	assert_int_equal(r.ops, 400);
	/* A kernel or sandbox without the engine runs threads instead, and says so. */
	if (strcmp(r.engine, name))
		assert_string_equal(r.engine, "threads");
}

static void test_bench_runs_every_engine_on_two_queues(void **state)
{
	struct fx *fx = *state;

	bench_engine(fx->raw, DISK_ENGINE_THREADS, "threads");
	bench_engine(fx->raw, DISK_ENGINE_AIO, "aio");
	bench_engine(fx->raw, DISK_ENGINE_IO_URING, "io_uring");
	bench_engine(fx->qcow2, DISK_ENGINE_IO_URING, "io_uring");
}

static void test_bench_time_mode_runs_for_the_time(void **state)
{
	struct fx *fx = *state;
	struct img_bench_options o = opts(fx->raw);
	struct img_bench_result r;

	o.seconds = 0.2;
	o.random = true;
	run_ok(&o, &r);
	assert_true(r.ops > 0);
	assert_true(r.seconds >= 0.2 && r.seconds < 5);
}

static void test_bench_flushes_every_interval(void **state)
{
	struct fx *fx = *state;
	struct img_bench_options o = opts(fx->raw);
	struct img_bench_result r;

	o.write = true;
	o.depth = 4;
	o.count = 64;
	o.flush_interval = 8;
	run_ok(&o, &r);
	assert_int_equal(r.ops, 64);
	assert_int_equal(r.flushes, 8);
	o.drain = false;
	run_ok(&o, &r);
	assert_int_equal(r.ops, 64);
	assert_true(r.flushes >= 1 && r.flushes <= 8);
	make_raw(fx->raw, 4 * MiB);
}

static void test_bench_failed_request_ends_the_run(void **state)
{
	struct fx *fx = *state;
	struct img_bench_options o = opts(fx->raw);
	struct img_bench_result r;
	char why[200] = "";

	o.offset = 4 * MiB; /* the first request starts at the end of the disk */
	assert_int_equal(img_bench_run(&o, &r, why, sizeof(why)), -EIO);
	assert_non_null(strstr(why, "read at offset 4194304 failed: status 1"));
}

static void test_bench_rejects_bad_options(void **state)
{
	struct fx *fx = *state;
	struct img_bench_options o = opts(fx->raw);
	struct img_bench_result r;
	char why[200];

	o.flush_interval = 8;
	assert_int_equal(img_bench_run(&o, &r, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "only for write"));
	o = opts(fx->raw);
	o.depth = 257;
	assert_int_equal(img_bench_run(&o, &r, why, sizeof(why)), -EINVAL);
	o = opts(fx->raw);
	o.bufsize = 1000;
	assert_int_equal(img_bench_run(&o, &r, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "multiple of 512"));
	o = opts("/nonexistent/disk.raw");
	assert_int_equal(img_bench_run(&o, &r, why, sizeof(why)), -ENOENT);
}

/* The command line: qemu-img's options, one line of JSON. */
static void test_bench_command_prints_json(void **state)
{
	struct fx *fx = *state;
	char out[160], *text = NULL;
	char *argv[] = { "img", "bench", "--json", "-c", "100",	   "-d",    "4", "-s",
			 "8K",	"-t",	 "none",   "-i", "native", fx->raw, NULL };
	int ofd, so, status;

	snprintf(out, sizeof(out), "%s/out.json", fx->dir);
	fflush(stdout);
	ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	so = dup(1);
	assert_true(ofd >= 0 && so >= 0);
	dup2(ofd, 1);
	status = cmd_img(ARRAY_SIZE(argv) - 1, argv);
	fflush(stdout);
	dup2(so, 1);
	close(so);
	close(ofd);
	assert_int_equal(status, 0);
	assert_int_equal(file_read_text(out, &text, NULL), 0);
	assert_non_null(strstr(text, "{\"ops\": 100, "));
	assert_non_null(strstr(text, "\"engine\": \"aio\""));
	assert_non_null(strstr(text, "\"bufsize\": 8192"));
	assert_non_null(strstr(text, "\"direct\": true"));
	assert_non_null(strstr(text, "\"interrupts_per_io\": "));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bench_reads_raw_completes_the_count),
		cmocka_unit_test(test_bench_reads_qcow2_completes_the_count),
		cmocka_unit_test(test_bench_write_leaves_the_pattern_in_raw),
		cmocka_unit_test(test_bench_write_leaves_the_pattern_in_qcow2),
		cmocka_unit_test(test_bench_depth_one_writes_on_the_queue_thread),
		cmocka_unit_test(test_bench_runs_every_engine_on_two_queues),
		cmocka_unit_test(test_bench_time_mode_runs_for_the_time),
		cmocka_unit_test(test_bench_flushes_every_interval),
		cmocka_unit_test(test_bench_failed_request_ends_the_run),
		cmocka_unit_test(test_bench_rejects_bad_options),
		cmocka_unit_test(test_bench_command_prints_json),
	};

	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
