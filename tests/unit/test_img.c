// SPDX-License-Identifier: MIT
/*
 * `nkvm img` against qemu-img, the reference: images nkvm creates pass `qemu-img check` and
 * `qemu-img info` says what nkvm asked for; qemu can write them; `nkvm img info --json` agrees
 * with `qemu-img info --output=json`; `nkvm img check` agrees with `qemu-img check` (exit status,
 * error and leak counts) on clean images of every kind and on images damaged byte by byte.
 * The command runs in this process (cmd_img), its output captured; qemu-img and qemu-io run as
 * child processes in a temporary directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/disk.h"
#include "block/qcow2_header.h"
#include "block/qcow2_tools.h"
#include "cmd/cmd.h"
#include "cmd/img.h"
#include "lib/file.h"
#include "lib/util.h"

struct fx {
	char dir[64];
};

/* What a command printed and how it ended. */
struct result {
	int status;
	char *out;
	char *err;
};

static void result_free(struct result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

static char *slurp(const char *path)
{
	char *text = NULL;

	if (file_read_text(path, &text, NULL))
		return strdup("");
	return text;
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/nkvm-test-img-XXXXXX");
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
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

/* dir/name into buf. */
static const char *path_in(const struct fx *fx, char *buf, size_t len, const char *name)
{
	assert_int_equal(file_path(buf, len, "%s/%s", fx->dir, name), 0);
	return buf;
}

/* Runs argv (NULL-terminated) as a child in dir, stdout and stderr captured. */
static struct result run_tool(const struct fx *fx, char *const argv[])
{
	struct result r = { 0 };
	char out[128], err[128];
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st, ofd, efd;

	path_in(fx, out, sizeof(out), ".tool-out");
	path_in(fx, err, sizeof(err), ".tool-err");
	ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	efd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(ofd >= 0 && efd >= 0);
	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	posix_spawn_file_actions_addchdir_np(&fa, fx->dir);
	posix_spawn_file_actions_adddup2(&fa, ofd, 1);
	posix_spawn_file_actions_adddup2(&fa, efd, 2);
	assert_int_equal(posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(ofd);
	close(efd);
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	r.out = slurp(out);
	r.err = slurp(err);
	return r;
}

#define MAX_ARGS 24

/*
 * A tool's argv from a space-separated command line; '~' stands for a space inside one argument
 * (qemu-io -c 'write -P 1 0 64k' is "-c write~-P~1~0~64k").
 */
static struct result tool(const struct fx *fx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static struct result tool(const struct fx *fx, const char *fmt, ...)
{
	char line[1024], *argv[MAX_ARGS], *save = NULL;
	struct result r;
	va_list ap;
	int n = 0;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *w = strtok_r(line, " ", &save); w && n < MAX_ARGS - 1;
	     w = strtok_r(NULL, " ", &save)) {
		for (char *c = w; *c; c++)
			*c = *c == '~' ? ' ' : *c;
		argv[n++] = w;
	}
	argv[n] = NULL;
	r = run_tool(fx, argv);
	return r;
}

/*
 * `nkvm img ...` in this process, from dir: cmd_img with stdout and stderr redirected to files.
 * Paths in the command line are relative to dir, as the tools see them.
 */
static struct result img(const struct fx *fx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static struct result img(const struct fx *fx, const char *fmt, ...)
{
	char line[1024], *argv[MAX_ARGS], *save = NULL, out[128], err[128], cwd[4096];
	struct result r = { 0 };
	int n = 0, ofd, efd, so, se;
	va_list ap;

	argv[n++] = "img";
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *w = strtok_r(line, " ", &save); w && n < MAX_ARGS - 1;
	     w = strtok_r(NULL, " ", &save))
		argv[n++] = w;
	argv[n] = NULL;

	path_in(fx, out, sizeof(out), ".img-out");
	path_in(fx, err, sizeof(err), ".img-err");
	fflush(stdout);
	fflush(stderr);
	ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	efd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	so = dup(1);
	se = dup(2);
	assert_true(ofd >= 0 && efd >= 0 && so >= 0 && se >= 0);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(fx->dir), 0);
	dup2(ofd, 1);
	dup2(efd, 2);
	r.status = cmd_img(n, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	close(ofd);
	close(efd);
	assert_int_equal(chdir(cwd), 0);
	r.out = slurp(out);
	r.err = slurp(err);
	return r;
}

static bool have_qemu_img(void)
{
	return access("/usr/bin/qemu-img", X_OK) == 0 ||
	       access("/usr/local/bin/qemu-img", X_OK) == 0;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The number of a JSON field "key": N, the first one at or after from; -1 if absent. */
static long long json_num(const char *text, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = strstr(text, pat);
	if (!p)
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

/* The string or literal of a JSON field "key" (without quotes), "" if absent. */
static const char *json_str(const char *text, const char *key, char *buf, size_t len)
{
	char pat[64];
	const char *p;
	size_t n = 0;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	buf[0] = '\0';
	p = strstr(text, pat);
	if (!p)
		return buf;
	p += strlen(pat);
	if (*p == '"')
		p++;
	while (*p && *p != '"' && *p != ',' && *p != '\n' && n < len - 1)
		buf[n++] = *p++;
	buf[n] = '\0';
	return buf;
}

/* Counts from a qemu-img check report (stdout). */
struct counts {
	int status;
	long long corruptions, leaks;
};

static struct counts check_counts(const struct result *r)
{
	struct counts c = { .status = r->status };
	const char *p;

	p = strstr(r->out, " errors were found on the image");
	if (p) {
		while (p > r->out && p[-1] >= '0' && p[-1] <= '9')
			p--;
		c.corruptions = atoll(p);
	}
	p = strstr(r->out, " leaked clusters were found on the image");
	if (p) {
		while (p > r->out && p[-1] >= '0' && p[-1] <= '9')
			p--;
		c.leaks = atoll(p);
	}
	return c;
}

/* nkvm img check and qemu-img check on one image: same status, same counts. Returns them. */
static struct counts check_both(const struct fx *fx, const char *name)
{
	struct result q = tool(fx, "qemu-img check %s", name);
	struct result n = img(fx, "check %s", name);
	struct counts qc = check_counts(&q), nc = check_counts(&n);

	if (qc.status != nc.status || qc.corruptions != nc.corruptions || qc.leaks != nc.leaks)
		print_error("%s: qemu-img check said %d (%lld errors, %lld leaks):\n%s%s\n"
			    "nkvm img check said %d (%lld errors, %lld leaks):\n%s%s\n",
			    name, qc.status, qc.corruptions, qc.leaks, q.err, q.out, nc.status,
			    nc.corruptions, nc.leaks, n.err, n.out);
	assert_int_equal(qc.status, nc.status);
	assert_int_equal(qc.corruptions, nc.corruptions);
	assert_int_equal(qc.leaks, nc.leaks);
	result_free(&q);
	result_free(&n);
	return nc;
}

static void expect_ok(struct result r)
{
	if (r.status)
		print_error("status %d: %s%s\n", r.status, r.out, r.err);
	assert_int_equal(r.status, 0);
	result_free(&r);
}

/* A one-line failure with this status. */
static void expect_one_line_failure(struct result r, int status)
{
	if (r.status != status || count_lines(r.err) != 1)
		print_error("status %d, stderr:\n%s", r.status, r.err);
	assert_int_equal(r.status, status);
	assert_int_equal(count_lines(r.err), 1);
	result_free(&r);
}

/* ---- Byte surgery on images, for the damaged ones. ---- */

struct geometry {
	uint64_t cluster_size, l1_offset, reftable_offset;
	uint32_t cluster_bits, refcount_order;
};

static int open_image(const struct fx *fx, const char *name, struct geometry *g)
{
	char path[128];
	uint8_t h[104];
	int fd = open(path_in(fx, path, sizeof(path), name), O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread_full(fd, h, sizeof(h), 0), 0);
	g->cluster_bits = qcow2_be32(h + 20);
	g->cluster_size = 1ULL << g->cluster_bits;
	g->l1_offset = qcow2_be64(h + 40);
	g->reftable_offset = qcow2_be64(h + 48);
	g->refcount_order = qcow2_be32(h + 4) == 3 ? qcow2_be32(h + 96) : 4;
	return fd;
}

static uint64_t read_u64(int fd, uint64_t off)
{
	uint8_t b[8];

	assert_int_equal(pread_full(fd, b, 8, off), 0);
	return qcow2_be64(b);
}

static void write_u64(int fd, uint64_t off, uint64_t v)
{
	uint8_t b[8];

	qcow2_put_be64(b, v);
	assert_int_equal(pwrite(fd, b, 8, off), 8);
}

/* Where guest cluster 0's L2 entry lives. */
static uint64_t l2_entry_offset(int fd, const struct geometry *g, uint64_t index)
{
	uint64_t l2 = read_u64(fd, g->l1_offset) & QCOW2_L1E_OFFSET_MASK;

	assert_true(l2 != 0);
	return l2 + 8 * index;
}

/* Sets the stored refcount of host cluster k. */
static void set_refcount(int fd, const struct geometry *g, uint64_t k, uint64_t v)
{
	uint32_t bits = g->cluster_bits + 3 - g->refcount_order;
	uint64_t block = read_u64(fd, g->reftable_offset + 8 * (k >> bits)) &
			 QCOW2_REFT_OFFSET_MASK;
	uint8_t *buf = malloc(g->cluster_size);

	assert_non_null(buf);
	assert_true(block != 0);
	assert_int_equal(pread_full(fd, buf, g->cluster_size, block), 0);
	qcow2_refcount_set(buf, g->refcount_order, k & ((1ULL << bits) - 1), v);
	assert_int_equal(pwrite(fd, buf, g->cluster_size, block), (ssize_t)g->cluster_size);
	free(buf);
}

static void copy_file(const struct fx *fx, const char *from, const char *to)
{
	expect_ok(tool(fx, "cp %s %s", from, to));
}

/* The offset of the bitmaps header extension's data (spec "Bitmaps extension"); 0: none. */
static uint64_t bitmaps_ext_offset(int fd)
{
	uint8_t h[104], e[8];
	uint64_t p;

	assert_int_equal(pread_full(fd, h, sizeof(h), 0), 0);
	for (p = qcow2_be32(h + 100);; p += 8 + ALIGN_UP((uint64_t)qcow2_be32(e + 4), 8)) {
		assert_int_equal(pread_full(fd, e, sizeof(e), p), 0);
		if (!qcow2_be32(e))
			return 0;
		if (qcow2_be32(e) == QCOW2_EXT_BITMAPS)
			return p + 8;
	}
}

/*
 * A hang detector, not a time limit: a check whose work is bounded by the file ends in well under
 * a second, one that walks what a hostile header names takes hours.
 */
static int hang_fd = -1; /* the test's stderr, while img() redirects fd 2 */

static void hang_detected(int sig)
{
	static const char msg[] = "nkvm img check still running after 10 s: an unbounded walk\n";

	(void)sig;
	if (write(hang_fd, msg, sizeof(msg) - 1) < 0)
		_exit(125);
	_exit(124);
}

static struct result img_guarded(const struct fx *fx, const char *cmd)
{
	struct result r;

	hang_fd = dup(2);
	signal(SIGALRM, hang_detected);
	alarm(10);
	r = img(fx, "%s", cmd);
	alarm(0);
	close(hang_fd);
	return r;
}

/* ---- Tests ---- */

static void test_img_human_size_like_qemu_img(void **state)
{
	char buf[32];

	img_human_size(buf, sizeof(buf), 0);
	assert_string_equal(buf, "0 B");
	img_human_size(buf, sizeof(buf), 999);
	assert_string_equal(buf, "999 B");
	img_human_size(buf, sizeof(buf), 1000);
	assert_string_equal(buf, "0.977 KiB");
	img_human_size(buf, sizeof(buf), 1310720);
	assert_string_equal(buf, "1.25 MiB");
	img_human_size(buf, sizeof(buf), 64ULL << 20);
	assert_string_equal(buf, "64 MiB");
	img_human_size(buf, sizeof(buf), 1ULL << 40);
	assert_string_equal(buf, "1 TiB");
}

static void test_img_backing_path_beside_the_image(void **state)
{
	char buf[64];

	assert_int_equal(img_backing_path(buf, sizeof(buf), "a.qcow2", "b.raw"), 0);
	assert_string_equal(buf, "b.raw");
	assert_int_equal(img_backing_path(buf, sizeof(buf), "sub/a.qcow2", "../b.raw"), 0);
	assert_string_equal(buf, "sub/../b.raw");
	assert_int_equal(img_backing_path(buf, sizeof(buf), "sub/a.qcow2", "/abs/b"), 0);
	assert_string_equal(buf, "/abs/b");
	assert_int_equal(img_backing_path(buf, 8, "sub/a.qcow2", "long-name"), -ENAMETOOLONG);
}

/* Every option combination: qemu-img check is clean and qemu-img info says what was asked. */
static void test_img_create_options_agree_with_qemu_img(void **state)
{
	const struct fx *fx = *state;
	static const struct {
		const char *opts;
		const char *size;
		uint64_t bytes, cluster;
		int refcount_bits;
		const char *compat, *compression;
	} cases[] = {
		{ "", "64M", 64ULL << 20, 65536, 16, "1.1", "zlib" },
		{ "-o cluster_size=512", "1G", 1ULL << 30, 512, 16, "1.1", "zlib" },
		{ "-o cluster_size=2M", "100G", 100ULL << 30, 2 << 20, 16, "1.1", "zlib" },
		{ "-o cluster_size=4K,refcount_bits=1", "1000", 1024, 4096, 1, "1.1", "zlib" },
		{ "-o refcount_bits=64,cluster_size=512", "256M", 256ULL << 20, 512, 64, "1.1",
		  "zlib" },
		{ "-o refcount_bits=8", "1T", 1ULL << 40, 65536, 8, "1.1", "zlib" },
		{ "-o compat=0.10", "64M", 64ULL << 20, 65536, 16, "0.10", "zlib" },
		{ "-o compat=v2,cluster_size=4096", "10M", 10ULL << 20, 4096, 16, "0.10", "zlib" },
		{ "-o compat=v3,compression_type=zstd", "64M", 64ULL << 20, 65536, 16, "1.1",
		  "zstd" },
		{ "-f qcow2 -o size=5M", "", 5ULL << 20, 65536, 16, "1.1", "zlib" },
	};
	char buf[64];

	if (!have_qemu_img())
		skip();
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct result r;

		expect_ok(img(fx, "create -q %s c%zu.qcow2 %s", cases[i].opts, i, cases[i].size));
		r = tool(fx, "qemu-img check c%zu.qcow2", i);
		if (r.status || !strstr(r.out, "No errors were found on the image."))
			print_error("case %zu: %s%s", i, r.out, r.err);
		assert_int_equal(r.status, 0);
		result_free(&r);
		r = tool(fx, "qemu-img info --output=json c%zu.qcow2", i);
		assert_int_equal(r.status, 0);
		assert_int_equal(json_num(r.out, "virtual-size"), cases[i].bytes);
		assert_int_equal(json_num(r.out, "cluster-size"), cases[i].cluster);
		assert_int_equal(json_num(r.out, "refcount-bits"), cases[i].refcount_bits);
		assert_string_equal(json_str(r.out, "format", buf, sizeof(buf)), "qcow2");
		assert_string_equal(json_str(r.out, "compat", buf, sizeof(buf)), cases[i].compat);
		assert_string_equal(json_str(r.out, "compression-type", buf, sizeof(buf)),
				    cases[i].compression);
		assert_string_equal(json_str(r.out, "dirty-flag", buf, sizeof(buf)), "false");
		result_free(&r);
		snprintf(buf, sizeof(buf), "c%zu.qcow2", i);
		check_both(fx, buf);
	}
}

static void test_img_create_raw(void **state)
{
	const struct fx *fx = *state;
	struct result r;
	char path[128];
	struct stat st;

	expect_ok(img(fx, "create -f raw d.raw 3M"));
	assert_int_equal(stat(path_in(fx, path, sizeof(path), "d.raw"), &st), 0);
	assert_int_equal(st.st_size, 3 << 20);
	r = img(fx, "info d.raw");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "file format: raw\n"));
	assert_non_null(strstr(r.out, "virtual size: 3 MiB (3145728 bytes)\n"));
	result_free(&r);
	/* Checks are a qcow2 thing: qemu-img's status for a format without them. */
	expect_one_line_failure(img(fx, "check d.raw"), IMG_CHECK_UNSUPPORTED);
	if (have_qemu_img()) {
		r = tool(fx, "qemu-img check d.raw");
		assert_int_equal(r.status, IMG_CHECK_UNSUPPORTED);
		result_free(&r);
	}
}

/* Backing files: raw and qcow2, probed or named, relative to the overlay, size inherited. */
static void test_img_create_backing_agrees_with_qemu_img(void **state)
{
	const struct fx *fx = *state;
	struct result r;
	char buf[256], path[128];

	if (!have_qemu_img())
		skip();
	assert_int_equal(file_mkdir_p(path_in(fx, path, sizeof(path), "sub"), 0755), 0);
	expect_ok(tool(fx, "qemu-img create -q -f raw base.raw 10M"));
	/* No SIZE: the backing file's; no -F: probed, and recorded all the same. */
	expect_ok(img(fx, "create -q -b ../base.raw sub/o1.qcow2"));
	expect_ok(img(fx, "create -q -b o1.qcow2 -F qcow2 sub/o2.qcow2 20M"));
	expect_ok(img(fx, "create -q -o backing_file=o2.qcow2,backing_fmt=qcow2 sub/o3.qcow2"));

	r = tool(fx, "qemu-img info --output=json sub/o1.qcow2");
	assert_int_equal(json_num(r.out, "virtual-size"), 10 << 20);
	assert_string_equal(json_str(r.out, "backing-filename", buf, sizeof(buf)), "../base.raw");
	assert_string_equal(json_str(r.out, "backing-filename-format", buf, sizeof(buf)), "raw");
	assert_string_equal(json_str(r.out, "full-backing-filename", buf, sizeof(buf)),
			    "sub/../base.raw");
	result_free(&r);
	r = tool(fx, "qemu-img info --output=json sub/o3.qcow2");
	assert_int_equal(json_num(r.out, "virtual-size"), 20 << 20);
	assert_string_equal(json_str(r.out, "backing-filename", buf, sizeof(buf)), "o2.qcow2");
	assert_string_equal(json_str(r.out, "backing-filename-format", buf, sizeof(buf)), "qcow2");
	result_free(&r);
	check_both(fx, "sub/o3.qcow2");

	/* qemu reads through the chain nkvm made: data written in the base shows through. */
	expect_ok(tool(fx, "qemu-io -f raw -c write~-P~0x33~1M~64k base.raw"));
	r = tool(fx, "qemu-io -c read~-P~0x33~1M~64k sub/o3.qcow2");
	assert_int_equal(r.status, 0);
	assert_null(strstr(r.out, "Pattern verification failed"));
	result_free(&r);
}

static void test_img_create_refuses_bad_requests(void **state)
{
	const struct fx *fx = *state;
	char path[128];
	struct stat st;

	expect_ok(img(fx, "create -q -f raw base.raw 1M"));
	/* The backing file must exist, and cannot be the image being written. */
	expect_one_line_failure(img(fx, "create -q -b nothing.raw o.qcow2"), 1);
	assert_int_equal(stat(path_in(fx, path, sizeof(path), "o.qcow2"), &st), -1);
	expect_one_line_failure(img(fx, "create -q -b base.raw base.raw"), 1);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(stat(path_in(fx, path, sizeof(path), "base.raw"), &st), 0);
	assert_int_equal(st.st_size, 1 << 20);
	/* Options that version 2 cannot express, impossible sizes, unknown words. */
	expect_one_line_failure(img(fx, "create -q -o compat=0.10,refcount_bits=8 x.qcow2 1M"), 1);
	expect_one_line_failure(img(fx, "create -q -o compat=v2,compression_type=zstd x.qcow2 1M"),
				1);
	expect_one_line_failure(img(fx, "create -q -o cluster_size=1000 x.qcow2 1M"), 1);
	expect_one_line_failure(img(fx, "create -q -o cluster_size=4M x.qcow2 1M"), 1);
	expect_one_line_failure(img(fx, "create -q -o refcount_bits=128 x.qcow2 1M"), 1);
	expect_one_line_failure(img(fx, "create -q -o cluster_size=512 x.qcow2 1P"), 1);
	expect_one_line_failure(img(fx, "create -q -o lazy=on x.qcow2 1M"), 1);
	expect_one_line_failure(img(fx, "create -q x.qcow2"), 1);
	expect_one_line_failure(img(fx, "create -q x.qcow2 12Q"), 1);
	expect_one_line_failure(img(fx, "create -q -f vmdk x.qcow2 1M"), 1);
	expect_one_line_failure(img(fx, "create -q -f raw -b base.raw x.raw"), 1);
	assert_int_equal(stat(path_in(fx, path, sizeof(path), "x.qcow2"), &st), -1);
	expect_one_line_failure(img(fx, "frobnicate x"), 2);
}

/*
 * Sizes near 2^64, which rounding up to a sector would wrap to 0 (an empty image and status 0):
 * refused like other bad sizes, and no file made.
 */
static void test_img_create_refuses_size_that_overflows(void **state)
{
	const struct fx *fx = *state;
	char path[128];
	struct stat st;

	expect_one_line_failure(img(fx, "create -q x.qcow2 18446744073709551615"), 1);
	expect_one_line_failure(img(fx, "create -q x.qcow2 18446744073709551105"), 1);
	expect_one_line_failure(img(fx, "create -q -o size=18446744073709551615 x.qcow2"), 1);
	expect_one_line_failure(img(fx, "create -q -f raw x.qcow2 18446744073709551615"), 1);
	assert_int_equal(stat(path_in(fx, path, sizeof(path), "x.qcow2"), &st), -1);
}

/* An existing file is overwritten, as qemu-img create does: the new image is clean. */
static void test_img_create_overwrites_existing_file(void **state)
{
	const struct fx *fx = *state;
	struct result r;

	expect_ok(tool(fx, "dd if=/dev/urandom of=old.qcow2 bs=64k count=40 status=none"));
	expect_ok(img(fx, "create -q old.qcow2 8M"));
	r = img(fx, "check old.qcow2");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "No errors were found on the image."));
	result_free(&r);
}

/* qemu writes into images nkvm made (new L2 tables, refcount blocks), and they stay clean. */
static void test_img_qemu_writes_to_nkvm_images(void **state)
{
	const struct fx *fx = *state;
	static const char *const opts[] = {
		"",
		"-o cluster_size=512",
		"-o compat=0.10",
		"-o refcount_bits=1,cluster_size=4K",
		"-o refcount_bits=64",
		"-o cluster_size=2M",
	};
	struct result r;
	char name[32];

	if (!have_qemu_img())
		skip();
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		snprintf(name, sizeof(name), "w%zu.qcow2", i);
		expect_ok(img(fx, "create -q %s %s 64M", opts[i], name));
		expect_ok(
			tool(fx, "qemu-io -c write~-P~0x5a~0~1M -c write~-P~0x11~40M~3M %s", name));
		r = tool(fx, "qemu-io -c read~-P~0x5a~0~1M -c read~-P~0x11~40M~3M %s", name);
		assert_int_equal(r.status, 0);
		assert_null(strstr(r.out, "Pattern verification failed"));
		result_free(&r);
		assert_int_equal(check_both(fx, name).status, 0);
	}
}

/* info --json: the same fields and values as qemu-img info --output=json, chains included. */
static void test_img_info_json_agrees_with_qemu_img(void **state)
{
	const struct fx *fx = *state;
	static const char *const keys_num[] = { "virtual-size", "cluster-size", "refcount-bits",
						"actual-size" };
	static const char *const keys_str[] = {
		"filename",
		"format",
		"backing-filename",
		"full-backing-filename",
		"backing-filename-format",
		"dirty-flag",
		"compat",
		"compression-type",
		"corrupt",
		"lazy-refcounts",
		"extended-l2",
	};
	static const char *const images[] = { "v3.qcow2", "v2.qcow2", "z.qcow2", "ov.qcow2",
					      "base.raw" };
	struct result q, n;
	char a[256], b[256];

	if (!have_qemu_img())
		skip();
	expect_ok(tool(fx, "qemu-img create -q -f raw base.raw 10M"));
	expect_ok(img(fx, "create -q v3.qcow2 1G"));
	expect_ok(img(fx, "create -q -o compat=0.10,cluster_size=4K v2.qcow2 1000M"));
	expect_ok(tool(fx, "qemu-img create -q -f qcow2 -o compression_type=zstd z.qcow2 3M"));
	expect_ok(img(fx, "create -q -b base.raw ov.qcow2"));
	expect_ok(tool(fx, "qemu-io -c write~0~128k ov.qcow2"));
	for (size_t i = 0; i < ARRAY_SIZE(images); i++) {
		q = tool(fx, "qemu-img info --output=json %s", images[i]);
		n = img(fx, "info --json %s", images[i]);
		assert_int_equal(q.status, 0);
		assert_int_equal(n.status, 0);
		for (size_t k = 0; k < ARRAY_SIZE(keys_num); k++)
			assert_int_equal(json_num(q.out, keys_num[k]),
					 json_num(n.out, keys_num[k]));
		for (size_t k = 0; k < ARRAY_SIZE(keys_str); k++)
			assert_string_equal(json_str(q.out, keys_str[k], a, sizeof(a)),
					    json_str(n.out, keys_str[k], b, sizeof(b)));
		result_free(&q);
		result_free(&n);
	}

	/* The chain: one object per image, in order, each as qemu-img describes it. */
	q = tool(fx, "qemu-img info --output=json --backing-chain ov.qcow2");
	n = img(fx, "info --json --backing-chain ov.qcow2");
	assert_int_equal(n.status, 0);
	assert_int_equal(n.out[0], '[');
	{
		const char *qp = strstr(q.out, "\"filename\"");
		const char *np = strstr(n.out, "\"filename\"");

		assert_non_null(qp);
		assert_non_null(np);
		assert_string_equal(json_str(qp, "filename", a, sizeof(a)), "ov.qcow2");
		assert_string_equal(json_str(np, "filename", b, sizeof(b)), "ov.qcow2");
		qp = strstr(qp + 1, "\"filename\"");
		np = strstr(np + 1, "\"filename\"");
		assert_string_equal(json_str(qp, "filename", a, sizeof(a)),
				    json_str(np, "filename", b, sizeof(b)));
		assert_string_equal(b, "base.raw");
		assert_null(strstr(np + 1, "\"filename\""));
	}
	result_free(&q);
	result_free(&n);
}

static void test_img_info_human(void **state)
{
	const struct fx *fx = *state;
	struct result r;
	char path[128];

	expect_ok(img(fx, "create -q -f raw base.raw 10M"));
	expect_ok(img(fx, "create -q -b base.raw -F raw ov.qcow2"));
	r = img(fx, "info --backing-chain ov.qcow2");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "image: ov.qcow2\nfile format: qcow2\n"
				      "virtual size: 10 MiB (10485760 bytes)\n"));
	assert_non_null(strstr(r.out, "cluster_size: 65536\nbacking file: base.raw\n"
				      "backing file format: raw\n"));
	assert_non_null(strstr(r.out, "    refcount bits: 16\n"));
	assert_non_null(strstr(r.out, "\n\nimage: base.raw\nfile format: raw\n"));
	result_free(&r);

	/* A missing link in the chain: one line, status 1. */
	assert_int_equal(unlink(path_in(fx, path, sizeof(path), "base.raw")), 0);
	expect_one_line_failure(img(fx, "info --backing-chain ov.qcow2"), 1);
	/* Without --backing-chain the backing file is only named, not opened. */
	expect_ok(img(fx, "info ov.qcow2"));
}

/* Well-formed UTF-8 (RFC 3629 §4), written here apart from the code under test. */
static bool utf8_valid(const unsigned char *s)
{
	while (*s) {
		unsigned int n = *s < 0x80		 ? 0 :
				 *s >= 0xc2 && *s < 0xe0 ? 1 :
				 (*s & 0xf0) == 0xe0	 ? 2 :
				 *s >= 0xf0 && *s < 0xf5 ? 3 :
							   9;
		uint32_t cp = *s & (0x7f >> n);

		if (n == 9)
			return false;
		for (unsigned int i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		s += n + 1;
	}
	return true;
}

/* Nothing a terminal would act on: no control character but newlines, no C1 in UTF-8. */
static void assert_terminal_safe(const char *what, const char *text)
{
	const unsigned char *s = (const unsigned char *)text;

	for (size_t i = 0; s[i]; i++) {
		if ((s[i] < 0x20 && s[i] != '\n') || s[i] == 0x7f ||
		    (s[i] == 0xc2 && s[i + 1] >= 0x80 && s[i + 1] < 0xa0))
			fail_msg("%s: byte %#x at %zu: %s", what, s[i], i, text);
	}
}

/*
 * A qcow2 image whose backing file name and format hold terminal escapes, a C1 control and
 * bytes that are not UTF-8: `img info` escapes them for the terminal, `--json` stays valid
 * JSON in valid UTF-8 (invalid bytes as U+FFFD), a valid non-ASCII name passes as it is, and
 * the driver's message about the backing file is escaped too.
 */
static void test_img_info_escapes_names_from_the_image(void **state)
{
	const struct fx *fx = *state;
	const char *name = "b\x1b]0;pwned\x07\xff\xc3(\xc2\x9b"
			   "2J-caf\xc3\xa9\\.raw";
	struct qcow2_create_options q = {
		.size = 1 << 20,
		.version = 3,
		.cluster_bits = 16,
		.refcount_order = QCOW2_DEFAULT_REFCOUNT_ORDER,
		.backing_file = name,
		.backing_format = "r\x1b[2Jaw\xfe",
	};
	struct disk_options o = { .readonly = true };
	char path[128], why[256];
	char dwhy[DISK_ERR_MAX] = "";
	struct disk *d = NULL;
	struct result r;
	int fd;

	fd = open(path_in(fx, path, sizeof(path), "esc.qcow2"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	if (qcow2_create(fd, &q, why, sizeof(why)))
		fail_msg("qcow2_create: %s", why);
	close(fd);

	r = img(fx, "info esc.qcow2");
	assert_int_equal(r.status, 0);
	assert_terminal_safe("info", r.out);
	assert_non_null(strstr(r.out, "backing file: b\\x1b]0;pwned\\x07\\xff\\xc3(\\xc2\\x9b"
				      "2J-caf\xc3\xa9\\\\.raw"));
	assert_non_null(strstr(r.out, "backing file format: r\\x1b[2Jaw\\xfe\n"));
	result_free(&r);

	r = img(fx, "info --json esc.qcow2");
	assert_int_equal(r.status, 0);
	assert_terminal_safe("info --json", r.out);
	if (!utf8_valid((const unsigned char *)r.out))
		fail_msg("info --json is not UTF-8: %s", r.out);
	assert_non_null(strstr(r.out, "\"backing-filename\": \"b\\u001b]0;pwned\\u0007\\ufffd"
				      "\\ufffd(\\u009b2J-caf\xc3\xa9\\\\.raw\""));
	assert_non_null(strstr(r.out, "\"backing-filename-format\": \"r\\u001b[2Jaw\\ufffd\""));
	result_free(&r);

	/* The chain cannot be followed; the one line saying so is escaped as well. */
	r = img(fx, "info --backing-chain esc.qcow2");
	assert_int_equal(r.status, 1);
	assert_terminal_safe("info --backing-chain", r.err);
	result_free(&r);

	o.path = path;
	assert_true(disk_open(&d, &o, dwhy, sizeof(dwhy)) < 0);
	assert_true(dwhy[0]);
	assert_terminal_safe("disk_open", dwhy);
	assert_non_null(strstr(dwhy, "\\x1b]0;pwned\\x07"));
}

/* Malformed or missing input: status 1 and one line saying what is wrong. */
static void test_img_malformed_inputs_fail_in_one_line(void **state)
{
	const struct fx *fx = *state;
	char path[128];
	uint8_t h[112];
	int fd;

	expect_one_line_failure(img(fx, "info nothing.qcow2"), 1);
	expect_one_line_failure(img(fx, "check nothing.qcow2"), 1);
	assert_int_equal(file_mkdir_p(path_in(fx, path, sizeof(path), "dir"), 0755), 0);
	expect_one_line_failure(img(fx, "info dir"), 1);
	expect_one_line_failure(img(fx, "info"), 1);
	expect_one_line_failure(img(fx, "check -f qcow2 dir"), 1);

	/* qcow2 magic, then damage: each one line, status 1, for info and check alike. */
	expect_ok(img(fx, "create -q good.qcow2 1M"));
	fd = open(path_in(fx, path, sizeof(path), "good.qcow2"), O_RDONLY);
	assert_int_equal(pread_full(fd, h, sizeof(h), 0), 0);
	close(fd);
	static const struct {
		unsigned int off, len;
		uint32_t value;
	} damage[] = {
		{ 4, 4, 4 }, /* version 4 */
		{ 20, 4, 30 }, /* cluster_bits 30 */
		{ 32, 4, 1 }, /* encrypted */
		{ 36, 4, 0 }, /* L1 too small for the size */
		{ 96, 4, 7 }, /* refcount_order 7 */
		{ 72, 4, 0x100 }, /* an unknown incompatible feature (bit 40) */
	};
	for (size_t i = 0; i < ARRAY_SIZE(damage); i++) {
		uint8_t copy[112];

		memcpy(copy, h, sizeof(copy));
		qcow2_put_be32(copy + damage[i].off, damage[i].value);
		fd = open(path_in(fx, path, sizeof(path), "bad.qcow2"),
			  O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_int_equal(write(fd, copy, sizeof(copy)), (ssize_t)sizeof(copy));
		assert_int_equal(ftruncate(fd, 4 << 16), 0);
		close(fd);
		expect_one_line_failure(img(fx, "info bad.qcow2"), 1);
		expect_one_line_failure(img(fx, "check bad.qcow2"), 1);
	}
	/* A header cut short. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, h, 50), 50);
	close(fd);
	expect_one_line_failure(img(fx, "info bad.qcow2"), 1);
	expect_one_line_failure(img(fx, "check bad.qcow2"), 1);
}

/* Clean images of every kind QEMU makes: both checks say the same (nothing). */
static void test_img_check_agrees_on_clean_images(void **state)
{
	const struct fx *fx = *state;
	static const struct {
		const char *create;
		const char *io;
		bool snapshot;
	} cases[] = {
		{ "-o compat=0.10", "-c write~0~3M -c write~-c~8M~64k", true },
		{ "", "-c write~0~3M -c write~-c~8M~64k -c write~-z~9M~1M", true },
		{ "-o cluster_size=512", "-c write~0~300k -c write~-c~8M~64k -c write~-z~9M~8k",
		  true },
		{ "-o cluster_size=2M", "-c write~0~3M -c write~-c~8M~2M -c write~-z~20M~2M",
		  false },
		{ "-o refcount_bits=1", "-c write~0~1M", false },
		{ "-o refcount_bits=64", "-c write~0~1M -c write~-c~4M~64k", true },
		{ "-o compression_type=zstd", "-c write~-c~0~1M -c write~2M~64k", true },
		{ "", "-c write~0~1M -c discard~0~64k -c write~-z~-u~128k~64k", false },
	};
	char name[32];

	if (!have_qemu_img())
		skip();
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(name, sizeof(name), "k%zu.qcow2", i);
		expect_ok(tool(fx, "qemu-img create -q -f qcow2 %s %s 64M", cases[i].create, name));
		expect_ok(tool(fx, "qemu-io %s %s", cases[i].io, name));
		if (cases[i].snapshot) {
			expect_ok(tool(fx, "qemu-img snapshot -c s1 %s", name));
			expect_ok(tool(fx, "qemu-io -c write~0~128k %s", name));
		}
		assert_int_equal(check_both(fx, name).status, IMG_CHECK_CLEAN);
	}
	/* An overlay over a backing file, and an image with persistent bitmaps. */
	expect_ok(tool(fx, "qemu-img create -q -f raw base.raw 64M"));
	expect_ok(img(fx, "create -q -b base.raw ov.qcow2"));
	expect_ok(tool(fx, "qemu-io -c write~1M~1M ov.qcow2"));
	assert_int_equal(check_both(fx, "ov.qcow2").status, IMG_CHECK_CLEAN);
	expect_ok(tool(fx, "qemu-img bitmap --add k1.qcow2 b0"));
	expect_ok(tool(fx, "qemu-io -c write~0~2M k1.qcow2"));
	assert_int_equal(check_both(fx, "k1.qcow2").status, IMG_CHECK_CLEAN);
}

/* Damage made by editing bytes: both checks find the same number of the same kind. */
static void test_img_check_agrees_on_damaged_images(void **state)
{
	const struct fx *fx = *state;
	struct geometry g;
	struct stat st;
	char path[128];
	uint64_t e, data;
	int fd;

	if (!have_qemu_img())
		skip();
	expect_ok(img(fx, "create -q base.qcow2 64M"));
	expect_ok(tool(fx, "qemu-io -c write~-P~0x5a~0~1M -c write~-c~4M~64k base.qcow2"));

	/* A leak: a refcount for a cluster nothing uses (the file grown by one cluster). */
	copy_file(fx, "base.qcow2", "leak.qcow2");
	fd = open_image(fx, "leak.qcow2", &g);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(
		ftruncate(fd, ALIGN_UP((uint64_t)st.st_size, g.cluster_size) + g.cluster_size), 0);
	set_refcount(fd, &g, ALIGN_UP((uint64_t)st.st_size, g.cluster_size) >> g.cluster_bits, 1);
	close(fd);
	assert_int_equal(check_both(fx, "leak.qcow2").status, IMG_CHECK_LEAKS);

	/* A refcount lowered to 0 under a data cluster in use: an error (and COPIED is wrong). */
	copy_file(fx, "base.qcow2", "zero.qcow2");
	fd = open_image(fx, "zero.qcow2", &g);
	data = read_u64(fd, l2_entry_offset(fd, &g, 0)) & QCOW2_L2E_OFFSET_MASK;
	set_refcount(fd, &g, data >> g.cluster_bits, 0);
	close(fd);
	assert_int_equal(check_both(fx, "zero.qcow2").corruptions, 2);

	/* COPIED cleared on a cluster whose refcount is 1, and on an L2 table. */
	copy_file(fx, "base.qcow2", "copied.qcow2");
	fd = open_image(fx, "copied.qcow2", &g);
	e = read_u64(fd, l2_entry_offset(fd, &g, 1));
	write_u64(fd, l2_entry_offset(fd, &g, 1), e & ~QCOW2_OFLAG_COPIED);
	write_u64(fd, g.l1_offset, read_u64(fd, g.l1_offset) & ~QCOW2_OFLAG_COPIED);
	close(fd);
	assert_int_equal(check_both(fx, "copied.qcow2").corruptions, 2);

	/* COPIED set on a cluster two entries share (refcount 2 after a snapshot). */
	copy_file(fx, "base.qcow2", "shared.qcow2");
	expect_ok(tool(fx, "qemu-img snapshot -c s shared.qcow2"));
	fd = open_image(fx, "shared.qcow2", &g);
	e = read_u64(fd, l2_entry_offset(fd, &g, 2));
	write_u64(fd, l2_entry_offset(fd, &g, 2), e | QCOW2_OFLAG_COPIED);
	close(fd);
	assert_true(check_both(fx, "shared.qcow2").corruptions >= 1);

	/* An L2 entry past the end of the file, near and far. */
	copy_file(fx, "base.qcow2", "eof.qcow2");
	fd = open_image(fx, "eof.qcow2", &g);
	write_u64(fd, l2_entry_offset(fd, &g, 3), QCOW2_OFLAG_COPIED | (256ULL << 20));
	write_u64(fd, l2_entry_offset(fd, &g, 4), QCOW2_OFLAG_COPIED | (1ULL << 44));
	close(fd);
	assert_int_equal(check_both(fx, "eof.qcow2").status, IMG_CHECK_CORRUPT);

	/* Misaligned L1 and L2 entries, overlapping metadata, a compressed span past the end. */
	copy_file(fx, "base.qcow2", "misaligned.qcow2");
	fd = open_image(fx, "misaligned.qcow2", &g);
	e = read_u64(fd, l2_entry_offset(fd, &g, 5));
	write_u64(fd, l2_entry_offset(fd, &g, 5), e + 512);
	write_u64(fd, l2_entry_offset(fd, &g, 6), QCOW2_OFLAG_COPIED | g.l1_offset);
	close(fd);
	assert_int_equal(check_both(fx, "misaligned.qcow2").status, IMG_CHECK_CORRUPT);
	copy_file(fx, "base.qcow2", "l1.qcow2");
	fd = open_image(fx, "l1.qcow2", &g);
	write_u64(fd, g.l1_offset, read_u64(fd, g.l1_offset) + 512);
	close(fd);
	assert_int_equal(check_both(fx, "l1.qcow2").status, IMG_CHECK_CORRUPT);
	copy_file(fx, "base.qcow2", "comp.qcow2");
	fd = open_image(fx, "comp.qcow2", &g);
	/* Guest 4M is the compressed cluster: widen its sector count to run off the end. */
	e = read_u64(fd, l2_entry_offset(fd, &g, 64));
	assert_true(e & QCOW2_OFLAG_COMPRESSED);
	write_u64(fd, l2_entry_offset(fd, &g, 64), e | (0xffULL << (62 - 8)));
	close(fd);
	check_both(fx, "comp.qcow2");

	/* The refcount table: reserved bits, a block outside the image, a misaligned block. */
	copy_file(fx, "base.qcow2", "rt.qcow2");
	fd = open_image(fx, "rt.qcow2", &g);
	write_u64(fd, g.reftable_offset, read_u64(fd, g.reftable_offset) | 1);
	write_u64(fd, g.reftable_offset + 8, 1ULL << 40);
	close(fd);
	assert_int_equal(check_both(fx, "rt.qcow2").status, IMG_CHECK_CORRUPT);
	copy_file(fx, "base.qcow2", "rb.qcow2");
	fd = open_image(fx, "rb.qcow2", &g);
	write_u64(fd, g.reftable_offset, read_u64(fd, g.reftable_offset) + 512);
	close(fd);
	/* Its refcounts cannot be read: the check does not complete, for either. */
	assert_int_equal(check_both(fx, "rb.qcow2").status, IMG_CHECK_FAILED);
	(void)path;
}

/* A file whose clusters would need more than QCOW2_CHECK_MAX_MEMORY: refused, in one line. */
static void test_img_check_refuses_absurd_sizes(void **state)
{
	const struct fx *fx = *state;
	char path[128];
	int fd;

	expect_ok(img(fx, "create -q -o cluster_size=512 big.qcow2 1G"));
	fd = open(path_in(fx, path, sizeof(path), "big.qcow2"), O_RDWR);
	assert_true(fd >= 0);
	/* Sparse: 2^32 clusters of 512 bytes, 2 bytes of refcount each in memory. */
	if (ftruncate(fd, 2ULL << 40)) {
		close(fd);
		skip();
	}
	close(fd);
	expect_one_line_failure(img(fx, "check big.qcow2"), IMG_CHECK_FAILED);
}

/*
 * A bitmap table of 2^32 - 1 entries in a 2.5 KB image: QEMU's limits on a bitmap directory entry
 * (a table of at most 2^27 entries, 512 MiB of bitmap) are checked before anything is walked, and
 * the image is refused, as qemu-img check refuses it.
 */
static void test_img_check_refuses_bitmap_table_beyond_limits(void **state)
{
	const struct fx *fx = *state;
	uint64_t ext, dir;
	uint8_t b[4];
	int fd;
	struct geometry g;
	struct result q, n;

	if (!have_qemu_img())
		skip();
	expect_ok(tool(fx, "qemu-img create -q -f qcow2 -o cluster_size=512 bm.qcow2 1M"));
	expect_ok(tool(fx, "qemu-img bitmap --add bm.qcow2 b0"));
	fd = open_image(fx, "bm.qcow2", &g);
	ext = bitmaps_ext_offset(fd);
	assert_true(ext != 0);
	dir = read_u64(fd, ext + 16);
	qcow2_put_be32(b, 0xffffffff);
	assert_int_equal(pwrite(fd, b, 4, dir + 8), 4);
	close(fd);
	q = tool(fx, "qemu-img check bm.qcow2");
	assert_int_equal(q.status, IMG_CHECK_FAILED);
	result_free(&q);
	n = img_guarded(fx, "check bm.qcow2");
	assert_non_null(strstr(n.err, "bitmap"));
	expect_one_line_failure(n, IMG_CHECK_FAILED);
}

/*
 * n bitmaps that all name one table: entries at table, or if 0 the table of the one qemu-img made
 * in from, grown to reach the new directory. They are in use, so that QEMU opens the image
 * without loading them (and without refusing duplicate tables), and checks them.
 */
static void share_bitmap_table(const struct fx *fx, const char *from, const char *name, uint32_t n,
			       uint64_t table, uint32_t entries)
{
	uint64_t ext, dir, newdir;
	uint8_t entry[32], *d;
	struct geometry g;
	struct stat st;
	int fd;

	copy_file(fx, from, name);
	fd = open_image(fx, name, &g);
	ext = bitmaps_ext_offset(fd);
	assert_true(ext != 0);
	dir = read_u64(fd, ext + 16);
	assert_int_equal(pread_full(fd, entry, sizeof(entry), dir), 0);
	assert_int_equal(fstat(fd, &st), 0);
	newdir = ALIGN_UP((uint64_t)st.st_size, 65536);
	if (!table) {
		table = qcow2_be64(entry);
		entries = (uint32_t)((newdir - table) / 8);
		/*
		 * Only valid entries (QEMU fails its check on others), zeroes but three: one
		 * naming cluster 1, one "all ones", one naming a cluster past the end of the file
		 * (a finding per bitmap that names the table).
		 */
		for (uint64_t at = table; at < newdir; at += 8)
			write_u64(fd, at, 0);
		write_u64(fd, table, g.cluster_size);
		write_u64(fd, table + 8, 1);
		write_u64(fd, newdir - 8, 1ULL << 40);
	}
	qcow2_put_be64(entry, table);
	qcow2_put_be32(entry + 8, entries);
	qcow2_put_be32(entry + 12, 3); /* in use, auto */
	entry[18] = 0;
	entry[19] = 4; /* name_size */
	d = calloc(n, sizeof(entry));
	assert_non_null(d);
	for (uint32_t i = 0; i < n; i++) {
		char nm[8];

		memcpy(d + 32 * i, entry, 24);
		snprintf(nm, sizeof(nm), "%04x", i);
		memcpy(d + 32 * i + 24, nm, 4);
	}
	assert_int_equal(pwrite(fd, d, (size_t)n * 32, newdir), (ssize_t)n * 32);
	free(d);
	qcow2_put_be32(entry, n);
	assert_int_equal(pwrite(fd, entry, 4, ext), 4);
	write_u64(fd, ext + 8, (uint64_t)n * 32);
	write_u64(fd, ext + 16, newdir);
	close(fd);
}

static int count_substr(const char *s, const char *sub)
{
	int n = 0;

	for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
		n++;
	return n;
}

/*
 * Bitmap tables wholly past the end of the file, of the largest size QEMU allows for 512-byte
 * clusters (2^20 entries): each is one finding, as in qemu-img check; and one table that 65535
 * bitmaps name is reported once, not walked.
 */
static void test_img_check_bitmap_table_past_the_end_is_not_walked(void **state)
{
	const struct fx *fx = *state;
	struct counts big;
	struct result r;

	if (!have_qemu_img())
		skip();
	expect_ok(tool(fx, "qemu-img create -q -f qcow2 -o cluster_size=512 bm.qcow2 512M"));
	expect_ok(tool(fx, "qemu-img bitmap --add -g 512 bm.qcow2 b0"));
	share_bitmap_table(fx, "bm.qcow2", "b1.qcow2", 1, 1ULL << 40, 1U << 20);
	share_bitmap_table(fx, "bm.qcow2", "b2.qcow2", 2, 1ULL << 40, 1U << 20);
	/* One finding for the table, one for the new directory, which no refcount covers. */
	assert_int_equal(check_both(fx, "b1.qcow2").corruptions, 2);
	assert_int_equal(check_both(fx, "b2.qcow2").corruptions, 3);
	share_bitmap_table(fx, "bm.qcow2", "big.qcow2", 65535, 1ULL << 40, 1U << 20);
	r = img_guarded(fx, "check big.qcow2");
	big = check_counts(&r);
	assert_int_equal(big.status, IMG_CHECK_CORRUPT);
	/* One for the table, and one for each cluster of the directory (2 MiB). */
	assert_int_equal(big.corruptions, 65535 + (65535 * 32 + 511) / 512);
	assert_int_equal(count_substr(r.err, "exceeding the end of the file"), 1);
	result_free(&r);
}

/*
 * 65535 bitmaps (QEMU's most) naming one table that covers most of a 3 MB file: each entry is
 * walked once, whatever the number of bitmaps naming it. The findings grow linearly with the
 * number of bitmaps (64-bit refcounts: no overflow), so qemu-img check's counts for 2 and 3 of
 * them say what the count for 65535 must be.
 */
static void test_img_check_many_bitmaps_sharing_a_table_walk_it_once(void **state)
{
	const struct fx *fx = *state;
	long long c2, c3;
	struct counts big;
	struct result r;

	if (!have_qemu_img())
		skip();
	expect_ok(tool(fx, "qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 "
			   "bm.qcow2 1M"));
	expect_ok(tool(fx, "qemu-img bitmap --add bm.qcow2 b0"));
	expect_ok(tool(fx, "truncate -s 1M bm.qcow2"));
	share_bitmap_table(fx, "bm.qcow2", "b2.qcow2", 2, 0, 0);
	share_bitmap_table(fx, "bm.qcow2", "b3.qcow2", 3, 0, 0);
	c2 = check_both(fx, "b2.qcow2").corruptions;
	c3 = check_both(fx, "b3.qcow2").corruptions;
	assert_int_equal(c3, c2 + 1);
	share_bitmap_table(fx, "bm.qcow2", "big.qcow2", 65535, 0, 0);
	r = img_guarded(fx, "check big.qcow2");
	big = check_counts(&r);
	assert_int_equal(big.status, IMG_CHECK_CORRUPT);
	/* One more per bitmap, and one for each more cluster of the directory (2 MiB). */
	assert_int_equal(big.corruptions, c2 + 65535 - 2 + (65535 * 32 + 511) / 512 - 1);
	result_free(&r);
}

/*
 * n snapshots whose L1 tables are all one copy, at the end of the file, of the one snapshot
 * qemu-img took, each of the largest size QEMU allows (2^22 entries, reaching past the end of the
 * file): each L1 entry and L2 table is walked once whatever the number of snapshots naming it.
 * The copy comes last so that the findings grow linearly with n.
 */
static uint64_t share_snapshot_l1(const struct fx *fx, const char *name, uint32_t n)
{
	uint8_t h[72], entry[256] = { 0 }, *t;
	uint64_t off, len, at, l1;
	struct geometry g;
	struct stat st;
	int fd;

	copy_file(fx, "sn.qcow2", name);
	fd = open_image(fx, name, &g);
	assert_int_equal(pread_full(fd, h, sizeof(h), 0), 0);
	assert_int_equal(qcow2_be32(h + 60), 1);
	off = qcow2_be64(h + 64);
	assert_int_equal(pread_full(fd, entry, 40, off), 0);
	len = ALIGN_UP(40 + qcow2_be32(entry + 36) + (entry[12] << 8 | entry[13]) +
			       (entry[14] << 8 | entry[15]),
		       8);
	assert_true(len <= sizeof(entry));
	/* The last entry's padding need not be in the file. */
	assert_true(pread(fd, entry, len, off) >= 40);
	assert_int_equal(fstat(fd, &st), 0);
	at = ALIGN_UP((uint64_t)st.st_size, g.cluster_size);
	l1 = ALIGN_UP(at + len * n, g.cluster_size);
	t = malloc(len * n > g.cluster_size ? len * n : g.cluster_size);
	assert_non_null(t);
	assert_int_equal(pread_full(fd, t, g.cluster_size, qcow2_be64(entry)), 0);
	assert_int_equal(pwrite(fd, t, g.cluster_size, l1), (ssize_t)g.cluster_size);
	qcow2_put_be64(entry, l1);
	qcow2_put_be32(entry + 8, 1U << 22);
	for (uint32_t i = 0; i < n; i++)
		memcpy(t + len * i, entry, len);
	assert_int_equal(pwrite(fd, t, len * n, at), (ssize_t)(len * n));
	free(t);
	qcow2_put_be32(h, n);
	assert_int_equal(pwrite(fd, h, 4, 60), 4);
	write_u64(fd, 64, at);
	close(fd);
	return len;
}

static void test_img_check_many_snapshots_sharing_an_l1_walk_it_once(void **state)
{
	const struct fx *fx = *state;
	uint64_t len, table_clusters;
	long long c2, c3;
	struct counts big;
	struct result r;

	if (!have_qemu_img())
		skip();
	/* 64-bit refcounts: no overflow, so that the findings grow linearly with the snapshots. */
	expect_ok(tool(fx, "qemu-img create -q -f qcow2 -o refcount_bits=64 sn.qcow2 1G"));
	expect_ok(tool(fx, "qemu-io -c write~-P~0~0~1M -c write~-c~4M~64k sn.qcow2"));
	expect_ok(tool(fx, "qemu-img snapshot -c s1 sn.qcow2"));
	len = share_snapshot_l1(fx, "s2.qcow2", 2);
	share_snapshot_l1(fx, "s3.qcow2", 3);
	c2 = check_both(fx, "s2.qcow2").corruptions;
	c3 = check_both(fx, "s3.qcow2").corruptions;
	assert_true(c3 > c2);
	assert_true(3 * len <= 65536);
	share_snapshot_l1(fx, "big.qcow2", 20000);
	r = img_guarded(fx, "check big.qcow2");
	big = check_counts(&r);
	assert_int_equal(big.status, IMG_CHECK_CORRUPT);
	/* And one for each more cluster of the snapshot table, which no refcount covers. */
	table_clusters = (20000 * len + 65535) / 65536;
	assert_int_equal(big.corruptions, c2 + (c3 - c2) * (20000 - 2) + table_clusters - 1);
	result_free(&r);
}

static void test_img_usage(void **state)
{
	const struct fx *fx = *state;
	struct result r;

	r = img(fx, "--help");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "nkvm img create"));
	result_free(&r);
	expect_one_line_failure(img(fx, "check"), 1);
	expect_one_line_failure(img(fx, "check --frob x"), 1);
	expect_one_line_failure(img(fx, "info a b"), 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_img_human_size_like_qemu_img),
		cmocka_unit_test(test_img_backing_path_beside_the_image),
		T(test_img_create_options_agree_with_qemu_img),
		T(test_img_create_raw),
		T(test_img_create_backing_agrees_with_qemu_img),
		T(test_img_create_refuses_bad_requests),
		T(test_img_create_refuses_size_that_overflows),
		T(test_img_create_overwrites_existing_file),
		T(test_img_qemu_writes_to_nkvm_images),
		T(test_img_info_json_agrees_with_qemu_img),
		T(test_img_info_human),
		T(test_img_info_escapes_names_from_the_image),
		T(test_img_malformed_inputs_fail_in_one_line),
		T(test_img_check_agrees_on_clean_images),
		T(test_img_check_agrees_on_damaged_images),
		T(test_img_check_refuses_absurd_sizes),
		T(test_img_check_refuses_bitmap_table_beyond_limits),
		T(test_img_check_bitmap_table_past_the_end_is_not_walked),
		T(test_img_check_many_bitmaps_sharing_a_table_walk_it_once),
		T(test_img_check_many_snapshots_sharing_an_l1_walk_it_once),
		T(test_img_usage),
	};
#undef T

	cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests_name("img", tests, NULL, NULL);
}
