// SPDX-License-Identifier: MIT
/*
 * `nkvm setup`'s vmlinux: the payload of a bzImage made here (each compression the kernel's build
 * can use and setup reads, compressed by the library in the test), decompressed back to the ELF;
 * corrupt, truncated and unknown payloads refused with their message; the cached vmlinux reused
 * while its bzImage's checksum matches and made again when it does not.
 */
#include <errno.h>
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
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <asm/bootparam.h>

#include "cmd/setup.h"
#include "lib/file.h"
#include "lib/paths.h"
#include "lib/util.h"
#include "tests/unit/elf_fixture.h"
#include "tests/unit/fixture.h"

#define SETUP_SIZE 1024 /* setup_sects 1 */
#define PAYLOAD_OFF 0x100 /* from the start of the protected-mode kernel */
#define LZ4_BLOCK (8 << 20)

struct blob {
	uint8_t *p;
	size_t len;
};

static void blob_add(struct blob *b, const void *p, size_t len)
{
	b->p = realloc(b->p, b->len + len);
	assert_non_null(b->p);
	memcpy(b->p + b->len, p, len);
	b->len += len;
}

static void blob_add_le32(struct blob *b, uint32_t v)
{
	uint8_t le[4];

	put_le(le, v, 4);
	blob_add(b, le, 4);
}

/* The compressed form of in as the kernel's build makes it (with its 4 size bytes). */
static struct blob compress_as(int kind, const uint8_t *in, size_t len)
{
	struct blob b = { 0 };
	size_t cap = len + len / 2 + 65536, n = 0;
	uint8_t *out = malloc(cap);

	assert_non_null(out);
	switch (kind) {
	case SETUP_PAYLOAD_GZIP: { /* gzip -9: the stream ends with ISIZE itself */
		z_stream z = {
			.next_in = (uint8_t *)in, .avail_in = len, .next_out = out, .avail_out = cap
		};

		assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8,
					      Z_DEFAULT_STRATEGY),
				 Z_OK);
		assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
		n = z.total_out;
		deflateEnd(&z);
		blob_add(&b, out, n);
		break;
	}
	case SETUP_PAYLOAD_XZ: /* scripts/xz_wrap.sh: CRC32 check */
		assert_int_equal(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, in, len, out,
							 &n, cap),
				 LZMA_OK);
		blob_add(&b, out, n);
		blob_add_le32(&b, len);
		break;
	case SETUP_PAYLOAD_ZSTD: { /* zstd -22 --ultra: the CLI's frame checksum on */
		ZSTD_CCtx *c = ZSTD_createCCtx();

		ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
		n = ZSTD_compress2(c, out, cap, in, len);
		assert_false(ZSTD_isError(n));
		ZSTD_freeCCtx(c);
		blob_add(&b, out, n);
		blob_add_le32(&b, len);
		break;
	}
	case SETUP_PAYLOAD_LZ4: /* lz4 -l: the legacy frame, 8 MiB blocks */
		blob_add_le32(&b, 0x184c2102);
		for (size_t at = 0; at < len; at += LZ4_BLOCK) {
			int chunk = len - at < LZ4_BLOCK ? len - at : LZ4_BLOCK;
			int c = LZ4_compress_default((const char *)in + at, (char *)out, chunk,
						     cap);

			assert_true(c > 0);
			blob_add_le32(&b, c);
			blob_add(&b, out, c);
		}
		blob_add_le32(&b, len);
		break;
	}
	free(out);
	return b;
}

/* A bzImage around payload: a setup header as boot.rst has it, the payload PAYLOAD_OFF in. */
static struct blob bzimage(const struct blob *payload)
{
	struct blob b = { 0 };
	struct setup_header h = { 0 };
	uint8_t setup[SETUP_SIZE] = { 0 }, pad[PAYLOAD_OFF] = { 0 }, tail[16] = { 0 };
	size_t kernel = PAYLOAD_OFF + payload->len + sizeof(tail);

	h.setup_sects = 1;
	h.boot_flag = 0xaa55;
	h.header = 0x53726448;
	h.version = 0x020f;
	h.loadflags = LOADED_HIGH;
	h.xloadflags = XLF_KERNEL_64;
	h.syssize = kernel / 16;
	h.payload_offset = PAYLOAD_OFF;
	h.payload_length = payload->len;
	memcpy(setup + 0x1f1, &h, sizeof(h));
	setup[0x200] = 0xeb; /* the jump over the header, whose offset gives its length */
	setup[0x201] = 0x264 - 0x202;
	blob_add(&b, setup, sizeof(setup));
	blob_add(&b, pad, sizeof(pad));
	blob_add(&b, payload->p, payload->len);
	blob_add(&b, tail, sizeof(tail));
	return b;
}

static struct blob bzimage_of(int kind, const uint8_t *elf, size_t len)
{
	struct blob c = compress_as(kind, elf, len), bz = bzimage(&c);

	free(c.p);
	return bz;
}

static int extract(const struct blob *bz, struct blob *out, char *why, size_t len)
{
	why[0] = '\0';
	return setup_extract_vmlinux(bz->p, bz->len, &out->p, &out->len, why, len);
}

static const char *const names[] = { "gzip", "xz", "zstd", "lz4" };

static void test_extract_gives_the_elf_back_for_each_compression(void **state)
{
	struct ef e;

	ef_build(&e);
	for (int kind = SETUP_PAYLOAD_GZIP; kind <= SETUP_PAYLOAD_LZ4; kind++) {
		struct blob bz = bzimage_of(kind, e.buf, sizeof(e.buf)), out = { 0 };
		char why[256];

		assert_int_equal(setup_payload_kind(bz.p + SETUP_SIZE + PAYLOAD_OFF, 8), kind);
		if (extract(&bz, &out, why, sizeof(why)))
			fail_msg("%s: %s", names[kind], why);
		assert_int_equal(out.len, sizeof(e.buf));
		assert_memory_equal(out.p, e.buf, sizeof(e.buf));
		free(out.p);
		free(bz.p);
	}
}

static void test_extract_lz4_of_several_blocks(void **state)
{
	/* 9 MiB: two blocks of the legacy frame, as Debian's 53 MB vmlinux has seven. */
	size_t len = 9 << 20;
	uint8_t *elf = calloc(1, len);
	struct blob bz, out = { 0 };
	struct ef e;
	char why[256];

	ef_build(&e);
	memcpy(elf, e.buf, sizeof(e.buf));
	for (size_t i = sizeof(e.buf); i < len; i += 4096)
		elf[i] = (uint8_t)(i >> 12);
	bz = bzimage_of(SETUP_PAYLOAD_LZ4, elf, len);
	assert_int_equal(extract(&bz, &out, why, sizeof(why)), 0);
	assert_int_equal(out.len, len);
	assert_memory_equal(out.p, elf, len);
	free(out.p);
	free(bz.p);
	free(elf);
}

/* Where in a bzImage made here the payload starts. */
static uint8_t *payload_of(struct blob *bz)
{
	return bz->p + SETUP_SIZE + PAYLOAD_OFF;
}

static void test_extract_rejects_corrupt_payloads(void **state)
{
	struct ef e;

	ef_build(&e);
	for (int kind = SETUP_PAYLOAD_GZIP; kind <= SETUP_PAYLOAD_LZ4; kind++) {
		struct blob bz = bzimage_of(kind, e.buf, sizeof(e.buf)), out = { 0 };
		uint8_t *p = payload_of(&bz);
		char why[256], want[128];

		if (kind == SETUP_PAYLOAD_LZ4)
			put_le(p + 4, get_le(p + 4, 4) + 1, 4); /* block size one too many */
		else
			p[24] ^= 0x55; /* inside the compressed data, past every header */
		assert_int_equal(extract(&bz, &out, why, sizeof(why)), -EINVAL);
		snprintf(want, sizeof(want),
			 "%s payload corrupt or truncated (does not decompress to %zu bytes)",
			 names[kind], sizeof(e.buf));
		assert_string_equal(why, want);
		assert_null(out.p);
		free(bz.p);
	}
}

static void test_extract_rejects_truncated_payloads(void **state)
{
	struct ef e;

	ef_build(&e);
	for (int kind = SETUP_PAYLOAD_GZIP; kind <= SETUP_PAYLOAD_LZ4; kind++) {
		struct blob c = compress_as(kind, e.buf, sizeof(e.buf)), cut = { 0 }, bz,
			    out = { 0 };
		char why[256], want[128];

		/* The stream cut at half, its size bytes still at the end (gzip: its ISIZE). */
		blob_add(&cut, c.p, c.len / 2);
		blob_add(&cut, c.p + c.len - 4, 4);
		bz = bzimage(&cut);
		assert_int_equal(extract(&bz, &out, why, sizeof(why)), -EINVAL);
		snprintf(want, sizeof(want),
			 "%s payload corrupt or truncated (does not decompress to %zu bytes)",
			 names[kind], sizeof(e.buf));
		assert_string_equal(why, want);
		/* The file itself cut inside the payload. */
		assert_int_equal(setup_extract_vmlinux(bz.p, SETUP_SIZE + PAYLOAD_OFF + 8, &out.p,
						       &out.len, why, sizeof(why)),
				 -EINVAL);
		assert_string_equal(why, "truncated: file shorter than its setup and kernel sizes");
		free(bz.p);
		free(cut.p);
		free(c.p);
	}
}

static void test_extract_rejects_payload_past_the_kernel(void **state)
{
	struct ef e;
	struct blob bz, out = { 0 };
	struct setup_header *h;
	char why[256];

	ef_build(&e);
	bz = bzimage_of(SETUP_PAYLOAD_LZ4, e.buf, sizeof(e.buf));
	h = (struct setup_header *)(bz.p + 0x1f1);
	h->payload_length = 0xfffffff0;
	assert_int_equal(extract(&bz, &out, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "truncated: payload [0x100, +0xfffffff0) runs past the end of "
				 "the kernel");
	free(bz.p);
}

static void test_extract_rejects_unknown_compression_and_absurd_sizes(void **state)
{
	struct ef e;
	struct blob bz, out = { 0 };
	uint8_t *p;
	char why[256];

	ef_build(&e);
	bz = bzimage_of(SETUP_PAYLOAD_LZ4, e.buf, sizeof(e.buf));
	p = payload_of(&bz);
	memcpy(p, "BZh9", 4); /* bzip2, which the kernel can use and setup does not read */
	assert_int_equal(extract(&bz, &out, why, sizeof(why)), -ENOTSUP);
	assert_string_equal(why, "payload compressed with something other than gzip, xz, zstd or "
				 "lz4 (magic 42 5a)");
	free(bz.p);

	bz = bzimage_of(SETUP_PAYLOAD_LZ4, e.buf, sizeof(e.buf));
	p = payload_of(&bz);
	put_le(p + ((struct setup_header *)(bz.p + 0x1f1))->payload_length - 4, 0xffffffff, 4);
	assert_int_equal(extract(&bz, &out, why, sizeof(why)), -EINVAL);
	assert_string_equal(why,
			    "lz4 payload says it holds 4294967295 bytes (want 64 B to 512 MiB)");
	free(bz.p);
}

static void test_extract_rejects_payload_without_an_elf(void **state)
{
	static uint8_t junk[4096];
	struct blob bz = bzimage_of(SETUP_PAYLOAD_ZSTD, junk, sizeof(junk)), out = { 0 };
	char why[256];

	assert_int_equal(extract(&bz, &out, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "zstd payload does not hold an ELF kernel");
	free(bz.p);
}

struct dir {
	char path[4096];
};

static int dir_setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));

	if (!d || fx_dir_make(d->path, sizeof(d->path), NULL, "vmlinux"))
		return -1;
	*state = d;
	return 0;
}

static int dir_teardown(void **state)
{
	struct dir *d = *state;

	file_remove_tree(d->path);
	free(d);
	return 0;
}

static void write_kernel(const struct dir *d, int kind, const uint8_t *elf, size_t len)
{
	struct blob bz = bzimage_of(kind, elf, len);

	assert_int_equal(
		file_write_atomic(fx_dir_path(d->path, NKVM_GUEST_KERNEL), bz.p, bz.len, 0644), 0);
	free(bz.p);
}

static void expect_vmlinux(const struct dir *d, const void *want, size_t len)
{
	uint8_t *have;
	size_t have_len;

	assert_int_equal(read_file(fx_dir_path(d->path, NKVM_GUEST_VMLINUX), &have, &have_len), 0);
	assert_int_equal(have_len, len);
	assert_memory_equal(have, want, len);
	free(have);
}

static void test_setup_vmlinux_reused_while_checksum_matches_redone_when_not(void **state)
{
	struct dir *d = *state;
	const char *vmlinux = fx_dir_path(d->path, NKVM_GUEST_VMLINUX);
	bool reused = true;
	struct ef e;

	ef_build(&e);
	write_kernel(d, SETUP_PAYLOAD_LZ4, e.buf, sizeof(e.buf));
	assert_int_equal(setup_vmlinux(d->path, &reused), 0);
	assert_false(reused);
	expect_vmlinux(d, e.buf, sizeof(e.buf));

	/* Same kernel: the cached file is kept as it is (a marker written into it stays). */
	assert_int_equal(file_write_atomic(vmlinux, "marker", 6, 0644), 0);
	assert_int_equal(setup_vmlinux(d->path, &reused), 0);
	assert_true(reused);
	expect_vmlinux(d, "marker", 6);

	/* Another kernel (other text, other compression): extracted again. */
	e.buf[EF_TEXT_OFF] ^= 0xff;
	write_kernel(d, SETUP_PAYLOAD_GZIP, e.buf, sizeof(e.buf));
	assert_int_equal(setup_vmlinux(d->path, &reused), 0);
	assert_false(reused);
	expect_vmlinux(d, e.buf, sizeof(e.buf));

	/* The vmlinux gone: made again, whatever the stamp says. */
	unlink(vmlinux);
	assert_int_equal(setup_vmlinux(d->path, &reused), 0);
	assert_false(reused);
	expect_vmlinux(d, e.buf, sizeof(e.buf));
}

static void test_setup_vmlinux_corrupt_kernel_fails_and_leaves_no_vmlinux(void **state)
{
	struct dir *d = *state;
	bool reused;
	struct ef e;
	struct blob bz;

	ef_build(&e);
	write_kernel(d, SETUP_PAYLOAD_XZ, e.buf, sizeof(e.buf));
	assert_int_equal(setup_vmlinux(d->path, &reused), 0);
	bz = bzimage_of(SETUP_PAYLOAD_XZ, e.buf, sizeof(e.buf));
	payload_of(&bz)[24] ^= 0x55;
	assert_int_equal(
		file_write_atomic(fx_dir_path(d->path, NKVM_GUEST_KERNEL), bz.p, bz.len, 0644), 0);
	free(bz.p);
	assert_int_equal(setup_vmlinux(d->path, &reused), -EINVAL);
	assert_int_not_equal(access(fx_dir_path(d->path, NKVM_GUEST_VMLINUX), F_OK), 0);
	assert_int_not_equal(access(fx_dir_path(d->path, SETUP_VMLINUX_STAMP), F_OK), 0);
}

static void test_setup_vmlinux_kernel_without_pvh_gets_none(void **state)
{
	struct dir *d = *state;
	bool reused;
	struct ef e;

	ef_build(&e);
	write_kernel(d, SETUP_PAYLOAD_ZSTD, e.buf, sizeof(e.buf));
	assert_int_equal(setup_vmlinux(d->path, &reused), 0);
	/* A new kernel without the note: the old vmlinux must not stay to be booted. */
	e.entry_desc[-4 - 4] = 17;
	write_kernel(d, SETUP_PAYLOAD_ZSTD, e.buf, sizeof(e.buf));
	assert_int_equal(setup_vmlinux(d->path, &reused), 0);
	assert_int_not_equal(access(fx_dir_path(d->path, NKVM_GUEST_VMLINUX), F_OK), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_extract_gives_the_elf_back_for_each_compression),
		cmocka_unit_test(test_extract_lz4_of_several_blocks),
		cmocka_unit_test(test_extract_rejects_corrupt_payloads),
		cmocka_unit_test(test_extract_rejects_truncated_payloads),
		cmocka_unit_test(test_extract_rejects_payload_past_the_kernel),
		cmocka_unit_test(test_extract_rejects_unknown_compression_and_absurd_sizes),
		cmocka_unit_test(test_extract_rejects_payload_without_an_elf),
		cmocka_unit_test_setup_teardown(
			test_setup_vmlinux_reused_while_checksum_matches_redone_when_not, dir_setup,
			dir_teardown),
		cmocka_unit_test_setup_teardown(
			test_setup_vmlinux_corrupt_kernel_fails_and_leaves_no_vmlinux, dir_setup,
			dir_teardown),
		cmocka_unit_test_setup_teardown(test_setup_vmlinux_kernel_without_pvh_gets_none,
						dir_setup, dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
