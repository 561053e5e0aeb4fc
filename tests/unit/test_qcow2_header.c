// SPDX-License-Identifier: MIT
/*
 * The qcow2 header parser and encoder: headers qemu-img writes, a round trip through the
 * encoder, and one test per refusal and per malformed field, each with its one-line reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "block/qcow2_header.h"
#include "lib/file.h"
#include "lib/util.h"

#define CLUSTER 65536
#define FILE_SIZE (16 * MiB)

struct fx {
	char dir[PATH_MAX];
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || fx_dir_make(fx->dir, sizeof(fx->dir), NULL, "qh")) {
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

static bool have_qemu_img(void)
{
	return system("qemu-img --version >/dev/null 2>&1") == 0;
}

#define sh(fx, ...) fx_sh((fx)->dir, __VA_ARGS__)

/* Parses the first cluster of an image file. */
static int parse_file(struct fx *fx, const char *name, struct qcow2_header *h, char *why)
{
	char path[PATH_MAX];
	uint8_t *buf;
	size_t len;
	int err;

	assert_int_equal(file_path(path, sizeof(path), "%s/%s", fx->dir, name), 0);
	assert_int_equal(read_file(path, &buf, &len), 0);
	err = qcow2_header_parse(h, buf, len < 2 * MiB ? len : 2 * MiB, len, why, 256);
	free(buf);
	return err;
}

static void test_qcow2_header_parses_qemu_img_v3(void **state)
{
	struct fx *fx = *state;
	struct qcow2_header h;
	char why[256];

	if (!have_qemu_img())
		skip();
	sh(fx, "qemu-img create -q -f raw base.raw 1M && "
	       "qemu-img create -q -f qcow2 -o compression_type=zstd,cluster_size=4096,"
	       "refcount_bits=64 -b base.raw -F raw v3.qcow2 3M");
	assert_int_equal(parse_file(fx, "v3.qcow2", &h, why), 0);
	assert_int_equal(h.version, 3);
	assert_int_equal(h.cluster_bits, 12);
	assert_int_equal(h.size, 3 * MiB);
	assert_int_equal(h.refcount_order, 6);
	assert_int_equal(h.compression_type, QCOW2_COMPRESSION_ZSTD);
	assert_true(h.incompatible_features & QCOW2_INCOMPAT_COMPRESSION);
	assert_string_equal(h.backing_file, "base.raw");
	assert_string_equal(h.backing_format, "raw");
	assert_int_equal(h.nr_unknown, 0);
	assert_true(h.l1_size >= 1);
	qcow2_header_free(&h);
}

static void test_qcow2_header_parses_qemu_img_v2(void **state)
{
	struct fx *fx = *state;
	struct qcow2_header h;
	char why[256];

	if (!have_qemu_img())
		skip();
	sh(fx, "qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=512 v2.qcow2 100M");
	assert_int_equal(parse_file(fx, "v2.qcow2", &h, why), 0);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.cluster_bits, 9);
	assert_int_equal(h.refcount_order, 4);
	assert_int_equal(h.header_length, 72);
	assert_int_equal(h.size, 100 * MiB);
	assert_string_equal(h.backing_file, "");
	qcow2_header_free(&h);
}

/* A header as nkvm's tools would write it: 64 KiB clusters, tables at 1 and 2 clusters. */
static void base_header(struct qcow2_header *h)
{
	memset(h, 0, sizeof(*h));
	h->version = 3;
	h->cluster_bits = 16;
	h->size = 1 * GiB;
	h->l1_size = 2;
	h->l1_table_offset = 3 * CLUSTER;
	h->refcount_table_offset = CLUSTER;
	h->refcount_table_clusters = 1;
	h->refcount_order = 4;
	h->header_length = 104;
}

/* base_header encoded into buf (one cluster), then changed by the caller. */
static void base_bytes(uint8_t *buf)
{
	struct qcow2_header h;

	base_header(&h);
	assert_true(qcow2_header_encode(&h, buf, CLUSTER) > 0);
}

static void expect_refusal(const uint8_t *buf, size_t len, uint64_t file_size, int err,
			   const char *words)
{
	struct qcow2_header h;
	char why[256] = "";

	assert_int_equal(qcow2_header_parse(&h, buf, len, file_size, why, sizeof(why)), err);
	if (!strstr(why, words))
		fail_msg("reason \"%s\" does not contain \"%s\"", why, words);
	assert_null(strchr(why, '\n'));
	assert_null(h.unknown);
	assert_null(h.feature_names);
}

static void test_qcow2_header_round_trip(void **state)
{
	static uint8_t buf[CLUSTER], buf2[CLUSTER];
	static const uint8_t blob[] = { 1, 2, 3, 4, 5 };
	struct qcow2_ext ext = { .type = 0x12345678, .len = sizeof(blob), .data = (uint8_t *)blob };
	struct qcow2_feature_name fn = { .type = 1, .bit = 7, .name = "shiny compat feature" };
	struct qcow2_header h, p, q;
	char why[256];
	long n;

	base_header(&h);
	h.compression_type = QCOW2_COMPRESSION_ZSTD;
	h.incompatible_features = QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY;
	h.compatible_features = QCOW2_COMPAT_LAZY_REFCOUNTS | 1ULL << 7;
	h.autoclear_features = 1ULL << 9;
	h.nb_snapshots = 1;
	h.snapshots_offset = 4 * CLUSTER;
	strcpy(h.backing_file, "../base image.qcow2");
	strcpy(h.backing_format, "qcow2");
	h.unknown = &ext;
	h.nr_unknown = 1;
	h.feature_names = &fn;
	h.nr_feature_names = 1;
	n = qcow2_header_encode(&h, buf, sizeof(buf));
	assert_true(n > 112);
	assert_int_equal(h.header_length, 112);
	assert_int_equal(h.backing_file_size, strlen("../base image.qcow2"));
	assert_int_equal(h.backing_file_offset + h.backing_file_size, n);

	assert_int_equal(qcow2_header_parse(&p, buf, n, FILE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(p.version, 3);
	assert_int_equal(p.cluster_bits, 16);
	assert_int_equal(p.size, 1 * GiB);
	assert_int_equal(p.l1_size, 2);
	assert_int_equal(p.l1_table_offset, 3 * CLUSTER);
	assert_int_equal(p.refcount_table_offset, CLUSTER);
	assert_int_equal(p.refcount_table_clusters, 1);
	assert_int_equal(p.nb_snapshots, 1);
	assert_int_equal(p.snapshots_offset, 4 * CLUSTER);
	assert_int_equal(p.incompatible_features, h.incompatible_features);
	assert_int_equal(p.compatible_features, h.compatible_features);
	assert_int_equal(p.autoclear_features, h.autoclear_features);
	assert_int_equal(p.compression_type, QCOW2_COMPRESSION_ZSTD);
	assert_string_equal(p.backing_file, "../base image.qcow2");
	assert_string_equal(p.backing_format, "qcow2");
	assert_int_equal(p.nr_unknown, 1);
	assert_int_equal(p.unknown[0].type, 0x12345678);
	assert_int_equal(p.unknown[0].len, sizeof(blob));
	assert_memory_equal(p.unknown[0].data, blob, sizeof(blob));
	/* nkvm's own names plus the image's name for the bit it does not know. */
	assert_int_equal(p.nr_feature_names, 9);
	assert_string_equal(p.feature_names[8].name, "shiny compat feature");

	/* Parsed and encoded again: the same bytes. */
	n = qcow2_header_encode(&p, buf2, sizeof(buf2));
	assert_true(n > 0);
	assert_memory_equal(buf, buf2, n);
	assert_int_equal(qcow2_header_parse(&q, buf2, n, FILE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(q.nr_feature_names, 9);
	qcow2_header_free(&q);
	qcow2_header_free(&p);
}

static void test_qcow2_header_encode_v2_and_enospc(void **state)
{
	static uint8_t buf[CLUSTER];
	struct qcow2_header h, p;
	char why[256];
	long n;

	base_header(&h);
	h.version = 2;
	strcpy(h.backing_file, "base.raw");
	strcpy(h.backing_format, "raw");
	n = qcow2_header_encode(&h, buf, sizeof(buf));
	assert_true(n > 72);
	assert_int_equal(qcow2_be32(buf + 4), 2);
	assert_int_equal(qcow2_header_parse(&p, buf, n, FILE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(p.header_length, 72);
	assert_int_equal(p.refcount_order, 4);
	assert_int_equal(p.nr_feature_names, 0);
	assert_string_equal(p.backing_file, "base.raw");
	assert_string_equal(p.backing_format, "raw");
	qcow2_header_free(&p);

	/* Too little room for the extensions and the name. */
	assert_int_equal(qcow2_header_encode(&h, buf, 90), -ENOSPC);
	assert_int_equal(qcow2_header_encode(&h, buf, 50), -ENOSPC);
}

static void test_qcow2_header_rejects_truncated(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	expect_refusal(buf, 50, FILE_SIZE, -EINVAL, "too short");
	expect_refusal(buf, 90, FILE_SIZE, -EINVAL, "too short for a version 3 header");
	/* The header is whole but the extensions are cut off. */
	expect_refusal(buf, 120, FILE_SIZE, -EINVAL, "truncated");
}

static void test_qcow2_header_rejects_bad_magic_and_version(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	buf[0] = 'X';
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "not a qcow2 image");
	base_bytes(buf);
	qcow2_put_be32(buf + 4, 4);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "version 4");
	qcow2_put_be32(buf + 4, 1);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "version 1");
}

static void test_qcow2_header_rejects_cluster_bits(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	qcow2_put_be32(buf + 20, 8);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "cluster_bits 8");
	qcow2_put_be32(buf + 20, 22);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "cluster_bits 22");
	qcow2_put_be32(buf + 20, 0xffffffff);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "cluster_bits");
}

static void test_qcow2_header_rejects_l1(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	qcow2_put_be32(buf + 36, 0x7fffffff);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "L1 table is too large");
	base_bytes(buf);
	qcow2_put_be32(buf + 36, 1); /* 1 GiB needs 2 entries of 512 MiB */
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "too small for the virtual size");
	base_bytes(buf);
	qcow2_put_be64(buf + 40, FILE_SIZE);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "L1 table offset 0x1000000 is past");
	qcow2_put_be64(buf + 40, UINT64_MAX & ~0xffffULL);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "past the end");
	qcow2_put_be64(buf + 40, 3 * CLUSTER + 512);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "L1 table offset 0x30200 is not cluster");
	qcow2_put_be64(buf + 40, 0);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "L1 table overlaps the header");
	qcow2_put_be64(buf + 40, CLUSTER);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "L1 table overlaps the refcount table");
	base_bytes(buf);
	qcow2_put_be64(buf + 24, UINT64_MAX);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "virtual size");
}

static void test_qcow2_header_rejects_refcount_table(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	qcow2_put_be64(buf + 48, FILE_SIZE - CLUSTER);
	qcow2_put_be32(buf + 56, 2);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "refcount table offset");
	qcow2_put_be32(buf + 56, 0);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "refcount table is empty");
	qcow2_put_be32(buf + 56, 0x10000000);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "refcount table is too large");
	base_bytes(buf);
	qcow2_put_be64(buf + 48, 12345);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "not cluster-aligned");
	base_bytes(buf);
	qcow2_put_be32(buf + 96, 7);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "refcount_order 7");
}

static void test_qcow2_header_rejects_snapshots(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	qcow2_put_be32(buf + 60, 1);
	qcow2_put_be64(buf + 64, FILE_SIZE);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "snapshot table offset");
	qcow2_put_be32(buf + 60, 100000);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "too many snapshots");
}

static void test_qcow2_header_rejects_backing_name(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	qcow2_put_be64(buf + 8, 4096);
	qcow2_put_be32(buf + 16, 2000);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "backing file name is too long");
	qcow2_put_be64(buf + 8, CLUSTER - 10);
	qcow2_put_be32(buf + 16, 100);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "outside the first cluster");
	qcow2_put_be64(buf + 8, UINT64_MAX - 10);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "outside the first cluster");
	qcow2_put_be64(buf + 8, 16);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "outside the first cluster");
	/* Inside the cluster, but past the bytes given. */
	qcow2_put_be64(buf + 8, 4096);
	qcow2_put_be32(buf + 16, 100);
	expect_refusal(buf, 4096 + 50, FILE_SIZE, -EINVAL, "backing file name is truncated");
	/* A name over the extensions: they may not run into it. */
	memcpy(buf + 200, "name", 4);
	qcow2_put_be64(buf + 8, 200);
	qcow2_put_be32(buf + 16, 4);
	qcow2_put_be32(buf + 104, QCOW2_EXT_FEATURE_TABLE);
	qcow2_put_be32(buf + 108, 480);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "runs past");
}

static void test_qcow2_header_rejects_extensions(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	qcow2_put_be32(buf + 104, QCOW2_EXT_BACKING_FORMAT);
	qcow2_put_be32(buf + 108, 100);
	qcow2_put_be32(buf + 112, 0);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "backing format name is too long");
	qcow2_put_be32(buf + 104, 0xabcdef);
	qcow2_put_be32(buf + 108, 0xfffffff0);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "runs past the end of the first cluster");
	/* No end marker anywhere in the cluster: extensions of 0 bytes, back to back. */
	for (size_t off = 104; off + 8 <= CLUSTER; off += 8) {
		qcow2_put_be32(buf + off, 0xabcdef);
		qcow2_put_be32(buf + off + 4, 0);
	}
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "run past the end of the first cluster");
}

static void test_qcow2_header_rejects_unsupported_features(void **state)
{
	static uint8_t buf[CLUSTER];
	struct qcow2_header h;
	char why[256];

	base_bytes(buf);
	qcow2_put_be32(buf + 32, 1);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "unsupported feature: encryption (AES)");
	qcow2_put_be32(buf + 32, 2);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "encryption (LUKS)");
	base_bytes(buf);
	qcow2_put_be64(buf + 72, QCOW2_INCOMPAT_DATA_FILE);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "unsupported feature: external data");
	qcow2_put_be64(buf + 72, QCOW2_INCOMPAT_EXTL2);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "unsupported feature: extended L2");
	/* An unknown bit: named from the image's feature table when it has an entry... */
	qcow2_put_be64(buf + 72, 1ULL << 9);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "unknown incompatible feature bit 9");
	base_bytes(buf);
	qcow2_put_be64(buf + 72, 1ULL << 9);
	/* base_bytes put nkvm's table (8 names) at 104: add a ninth entry for bit 9. */
	assert_int_equal(qcow2_be32(buf + 104), QCOW2_EXT_FEATURE_TABLE);
	qcow2_put_be32(buf + 108, 9 * 48);
	memmove(buf + 112 + 9 * 48, buf + 112 + 8 * 48, 8); /* the end marker */
	memset(buf + 112 + 8 * 48, 0, 48);
	buf[112 + 8 * 48 + 1] = 9;
	strcpy((char *)buf + 112 + 8 * 48 + 2, "time travel");
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "unsupported feature: time travel");
	/* ...and the dirty and corrupt bits are the caller's to judge. */
	qcow2_put_be64(buf + 72, QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
	assert_int_equal(qcow2_header_parse(&h, buf, CLUSTER, FILE_SIZE, why, sizeof(why)), 0);
	assert_int_equal(h.incompatible_features, QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
	qcow2_header_free(&h);
}

static void test_qcow2_header_rejects_compression_type(void **state)
{
	static uint8_t buf[CLUSTER];
	struct qcow2_header h;

	base_header(&h);
	h.compression_type = 7;
	h.incompatible_features = QCOW2_INCOMPAT_COMPRESSION;
	assert_true(qcow2_header_encode(&h, buf, sizeof(buf)) > 0);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -ENOTSUP, "unsupported feature: compression type");
	/* A type without its bit, and the bit without a type: malformed. */
	qcow2_put_be64(buf + 72, 0);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "without the compression type feature");
	qcow2_put_be64(buf + 72, QCOW2_INCOMPAT_COMPRESSION);
	buf[104] = 0;
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "bit set without a compression type");
}

static void test_qcow2_header_rejects_header_length(void **state)
{
	static uint8_t buf[CLUSTER];

	base_bytes(buf);
	qcow2_put_be32(buf + 100, 100);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "header_length 100");
	qcow2_put_be32(buf + 100, CLUSTER + 8);
	expect_refusal(buf, CLUSTER, FILE_SIZE, -EINVAL, "larger than a cluster");
}

/* Every width, with QEMU's layout: narrow entries from the low bits of a byte, wide ones BE. */
static void test_qcow2_refcount_get_set(void **state)
{
	uint8_t block[64];

	for (uint32_t order = 0; order <= 6; order++) {
		uint32_t bits = 1U << order;
		uint64_t max = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
		uint64_t n = sizeof(block) * 8 / bits;

		memset(block, 0, sizeof(block));
		for (uint64_t i = 0; i < n; i++)
			qcow2_refcount_set(block, order, i, (i * 7 + 1) & max);
		for (uint64_t i = 0; i < n; i++)
			assert_int_equal(qcow2_refcount_get(block, order, i), (i * 7 + 1) & max);
		qcow2_refcount_set(block, order, 3, max);
		assert_int_equal(qcow2_refcount_get(block, order, 3), max);
		assert_int_equal(qcow2_refcount_get(block, order, 2), (2 * 7 + 1) & max);
		assert_int_equal(qcow2_refcount_get(block, order, 4), (4 * 7 + 1) & max);
	}
	memset(block, 0, sizeof(block));
	qcow2_refcount_set(block, 0, 0, 1);
	qcow2_refcount_set(block, 0, 9, 1);
	assert_int_equal(block[0], 0x01);
	assert_int_equal(block[1], 0x02);
	qcow2_refcount_set(block, 2, 1, 0xa);
	assert_int_equal(block[0], 0xa1);
	qcow2_refcount_set(block, 4, 5, 0x1234);
	assert_int_equal(block[10], 0x12);
	assert_int_equal(block[11], 0x34);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_qcow2_header_parses_qemu_img_v3, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_qcow2_header_parses_qemu_img_v2, fx_setup,
						fx_teardown),
		cmocka_unit_test(test_qcow2_header_round_trip),
		cmocka_unit_test(test_qcow2_header_encode_v2_and_enospc),
		cmocka_unit_test(test_qcow2_header_rejects_truncated),
		cmocka_unit_test(test_qcow2_header_rejects_bad_magic_and_version),
		cmocka_unit_test(test_qcow2_header_rejects_cluster_bits),
		cmocka_unit_test(test_qcow2_header_rejects_l1),
		cmocka_unit_test(test_qcow2_header_rejects_refcount_table),
		cmocka_unit_test(test_qcow2_header_rejects_snapshots),
		cmocka_unit_test(test_qcow2_header_rejects_backing_name),
		cmocka_unit_test(test_qcow2_header_rejects_extensions),
		cmocka_unit_test(test_qcow2_header_rejects_unsupported_features),
		cmocka_unit_test(test_qcow2_header_rejects_compression_type),
		cmocka_unit_test(test_qcow2_header_rejects_header_length),
		cmocka_unit_test(test_qcow2_refcount_get_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
