// SPDX-License-Identifier: MIT
/*
 * `nkvm setup`'s vmlinux: the ELF kernel inside the cached bzImage, decompressed once for the
 * PVH boot (no decompressor runs in the guest). The payload is found through the setup header
 * (Documentation/arch/x86/boot.rst, protocol 2.08+: payload_offset and payload_length, from the
 * start of the protected-mode code), its compression from its magic; the kernel's build appends
 * the uncompressed size as 4 little-endian bytes (gzip's own ISIZE; scripts/Makefile.lib
 * size_append for the others), which sizes the output.
 */
#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "arch/x86/boot.h"
#include "arch/x86/elf.h"
#include "cmd/setup.h"
#include "lib/file.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "lib/util.h"

/* Far above any kernel (Debian's cloud vmlinux is 53 MB): a hostile size cannot make us OOM. */
#define VMLINUX_MAX (512 * MiB)
/*
 * The kernel's LZ4 framing (lib/decompress_unlz4.c, lz4c -l): the legacy magic, then blocks of a
 * 32-bit compressed size and data, each decompressing to at most 8 MiB.
 */
#define LZ4_LEGACY_MAGIC 0x184c2102
#define LZ4_LEGACY_BLOCK (8 * MiB)

static const struct {
	const char *name;
	uint8_t magic[6];
	size_t len;
} formats[] = {
	[SETUP_PAYLOAD_GZIP] = { "gzip", { 0x1f, 0x8b }, 2 },
	[SETUP_PAYLOAD_XZ] = { "xz", { 0xfd, '7', 'z', 'X', 'Z', 0 }, 6 },
	[SETUP_PAYLOAD_ZSTD] = { "zstd", { 0x28, 0xb5, 0x2f, 0xfd }, 4 },
	[SETUP_PAYLOAD_LZ4] = { "lz4", { 0x02, 0x21, 0x4c, 0x18 }, 4 },
};

int setup_payload_kind(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
		if (formats[i].len && len >= formats[i].len &&
		    !memcmp(p, formats[i].magic, formats[i].len))
			return (int)i;
	}
	return -1;
}

static int gunzip(const uint8_t *in, size_t len, uint8_t *out, size_t out_len)
{
	z_stream z = {
		.next_in = (uint8_t *)in, .avail_in = len, .next_out = out, .avail_out = out_len
	};
	int ret;

	/* 16 + window bits: a gzip wrapper (RFC 1952), its CRC32 and ISIZE checked by zlib. */
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;
	ret = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	return ret == Z_STREAM_END && z.total_out == out_len ? 0 : -EINVAL;
}

static int unxz(const uint8_t *in, size_t len, uint8_t *out, size_t out_len)
{
	uint64_t memlimit = 256 * MiB;
	size_t in_pos = 0, out_pos = 0;

	/* One .xz stream (its CRC32 checked); the 4 size bytes after it are left unread. */
	if (lzma_stream_buffer_decode(&memlimit, 0, NULL, in, &in_pos, len, out, &out_pos,
				      out_len) != LZMA_OK)
		return -EINVAL;
	return out_pos == out_len ? 0 : -EINVAL;
}

static int unzstd(const uint8_t *in, size_t len, uint8_t *out, size_t out_len)
{
	size_t n = ZSTD_decompress(out, out_len, in, len - 4);

	return !ZSTD_isError(n) && n == out_len ? 0 : -EINVAL;
}

static int unlz4(const uint8_t *in, size_t len, uint8_t *out, size_t out_len)
{
	size_t at = 4, done = 0, end = len - 4;

	while (at < end) {
		uint32_t block;
		int n;

		if (end - at < 4)
			return -EINVAL;
		block = (uint32_t)get_le(in + at, 4);
		at += 4;
		/* Streams may be concatenated, each starting with the magic again. */
		if (block == LZ4_LEGACY_MAGIC)
			continue;
		if (block > end - at || block > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK))
			return -EINVAL;
		n = LZ4_decompress_safe((const char *)in + at, (char *)out + done, (int)block,
					(int)(out_len - done < LZ4_LEGACY_BLOCK ?
						      out_len - done :
						      LZ4_LEGACY_BLOCK));
		if (n <= 0)
			return -EINVAL;
		done += n;
		at += block;
	}
	return done == out_len ? 0 : -EINVAL;
}

int setup_extract_vmlinux(const uint8_t *bz, size_t len, uint8_t **out, size_t *out_len, char *err,
			  size_t errlen)
{
	static int (*const decompress[])(const uint8_t *, size_t, uint8_t *, size_t) = {
		[SETUP_PAYLOAD_GZIP] = gunzip,
		[SETUP_PAYLOAD_XZ] = unxz,
		[SETUP_PAYLOAD_ZSTD] = unzstd,
		[SETUP_PAYLOAD_LZ4] = unlz4,
	};
	const uint8_t *payload;
	struct bzimage k;
	uint64_t size;
	uint8_t *buf;
	int kind, ret;

	*out = NULL;
	ret = bzimage_parse(bz, len, len, &k, err, errlen);
	if (ret)
		return ret;
	if (!k.hdr.payload_length || k.hdr.payload_offset > k.kernel_size ||
	    k.hdr.payload_length > k.kernel_size - k.hdr.payload_offset)
		return err_set(err, errlen, -EINVAL,
			       "truncated: payload [%#x, +%#x) runs past the end of the kernel",
			       k.hdr.payload_offset, k.hdr.payload_length);
	payload = k.kernel + k.hdr.payload_offset;
	kind = setup_payload_kind(payload, k.hdr.payload_length);
	if (kind < 0)
		return err_set(err, errlen, -ENOTSUP,
			       "payload compressed with something other than gzip, xz, zstd or "
			       "lz4 (magic %02x %02x)",
			       payload[0], k.hdr.payload_length > 1 ? payload[1] : 0);
	if (k.hdr.payload_length < formats[kind].len + 4)
		return err_set(err, errlen, -EINVAL, "truncated: %s payload of %u bytes",
			       formats[kind].name, k.hdr.payload_length);
	size = get_le(payload + k.hdr.payload_length - 4, 4);
	if (size < 64 || size > VMLINUX_MAX)
		return err_set(err, errlen, -EINVAL,
			       "%s payload says it holds %llu bytes (want 64 B to %llu MiB)",
			       formats[kind].name, (unsigned long long)size, VMLINUX_MAX / MiB);
	buf = malloc(size);
	if (!buf)
		return err_set(err, errlen, -ENOMEM, "out of memory for %llu bytes",
			       (unsigned long long)size);
	ret = decompress[kind](payload, k.hdr.payload_length, buf, size);
	if (ret) {
		free(buf);
		return err_set(
			err, errlen, ret,
			"%s payload corrupt or truncated (does not decompress to %llu bytes)",
			formats[kind].name, (unsigned long long)size);
	}
	if (!elf_is_elf(buf, size)) {
		free(buf);
		return err_set(err, errlen, -EINVAL, "%s payload does not hold an ELF kernel",
			       formats[kind].name);
	}
	*out = buf;
	*out_len = size;
	return 0;
}

int setup_vmlinux_stamp(const uint8_t *bz, size_t len, char *buf, size_t buflen)
{
	unsigned long crc = crc32(0L, Z_NULL, 0);

	/* zlib's crc32 takes a uInt length: feed it in pieces. */
	for (size_t at = 0; at < len; at += 1U << 30) {
		size_t n = len - at < 1U << 30 ? len - at : 1U << 30;

		crc = crc32(crc, bz + at, (uInt)n);
	}
	return snprintf(buf, buflen, "vmlinuz crc32=%08lx size=%zu\n", crc, len) < (int)buflen ?
		       0 :
		       -ENAMETOOLONG;
}

/* Removes a vmlinux that no longer matches the kernel, and its stamp. */
static void forget_vmlinux(const char *vmlinux, const char *stamp)
{
	unlink(stamp);
	unlink(vmlinux);
}

int setup_vmlinux(const char *dir, bool *reused)
{
	char kernel[PATH_MAX], vmlinux[PATH_MAX], stamp[PATH_MAX], want[128], why[256];
	char *have = NULL;
	uint8_t *bz = NULL, *elf = NULL;
	size_t bz_len, elf_len;
	struct elf_source src;
	struct elf_kernel k;
	int ret;

	*reused = false;
	if (file_path(kernel, sizeof(kernel), "%s/%s", dir, NKVM_GUEST_KERNEL) ||
	    file_path(vmlinux, sizeof(vmlinux), "%s/%s", dir, NKVM_GUEST_VMLINUX) ||
	    file_path(stamp, sizeof(stamp), "%s/%s", dir, SETUP_VMLINUX_STAMP)) {
		nkvm_err("%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	ret = read_file(kernel, &bz, &bz_len);
	if (ret) {
		nkvm_err("%s: %s", kernel, strerror(-ret));
		return ret;
	}
	ret = setup_vmlinux_stamp(bz, bz_len, want, sizeof(want));
	if (!ret && !file_read_text(stamp, &have, NULL) && !strcmp(have, want) &&
	    access(vmlinux, R_OK) == 0) {
		*reused = true;
		goto out;
	}
	forget_vmlinux(vmlinux, stamp);
	ret = setup_extract_vmlinux(bz, bz_len, &elf, &elf_len, why, sizeof(why));
	if (!ret) {
		src = (struct elf_source){ .data = elf, .fd = -1, .size = elf_len };
		ret = elf_parse_kernel(&src, &k, why, sizeof(why));
	}
	if (ret == -ENOTSUP || (ret && elf)) {
		/* A kernel nkvm cannot unpack, or without a PVH entry, still boots as a bzImage. */
		printf("nkvm: %s: %s; the guest boots the bzImage\n", kernel, why);
		ret = 0;
		goto out;
	}
	if (ret) {
		nkvm_err("%s: cannot extract vmlinux: %s", kernel, why);
		goto out;
	}
	ret = file_write_atomic(vmlinux, elf, elf_len, 0644);
	if (!ret)
		ret = file_write_atomic(stamp, want, strlen(want), 0644);
	if (ret) {
		nkvm_err("%s: %s", vmlinux, strerror(-ret));
		forget_vmlinux(vmlinux, stamp);
	}
out:
	free(have);
	free(elf);
	free(bz);
	return ret;
}
