/* SPDX-License-Identifier: MIT */
/*
 * The qcow2 header and its extensions, as bytes on disk and as a checked struct: pure functions
 * (no I/O), shared by the format driver, `nkvm img` and the fuzz target. Every field of a parsed
 * header has been range-checked, so callers may compute with it without overflow checks of
 * their own beyond what depends on the file's size.
 */
#ifndef NKVM_BLOCK_QCOW2_HEADER_H
#define NKVM_BLOCK_QCOW2_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbU /* "QFI\xfb" */

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ULL << 4)
/* Compatible feature bits. */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)
/* Autoclear feature bits. */
#define QCOW2_AUTOCLEAR_BITMAPS (1ULL << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ULL << 1)

/* Header extension types. */
#define QCOW2_EXT_END 0x00000000U
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857U
#define QCOW2_EXT_BITMAPS 0x23852875U
#define QCOW2_EXT_CRYPTO 0x0537be77U
#define QCOW2_EXT_DATA_FILE 0x44415441U

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* L1/L2 entry bits. */
#define QCOW2_OFLAG_COPIED (1ULL << 63)
#define QCOW2_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW2_OFLAG_ZERO (1ULL << 0) /* L2, version 3 */
#define QCOW2_L1E_OFFSET_MASK 0x00fffffffffffe00ULL
#define QCOW2_L2E_OFFSET_MASK 0x00fffffffffffe00ULL
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ULL

/* Limits nkvm holds images to (QEMU's own, or tighter where memory is at stake). */
#define QCOW2_MAX_L1_BYTES (32ULL << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8ULL << 20)
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_SIZE (1ULL << 56) /* virtual size, bytes */
#define QCOW2_MAX_SNAPSHOTS 65536

/* A header extension nkvm does not interpret, kept so that a header rewrite preserves it. */
struct qcow2_ext {
	uint32_t type;
	uint32_t len;
	uint8_t *data;
};

struct qcow2_header {
	uint32_t version; /* 2 or 3 */
	uint32_t cluster_bits; /* 9..21 */
	uint64_t size; /* virtual size, bytes */
	uint32_t crypt_method; /* must be 0 */
	uint32_t l1_size; /* entries */
	uint64_t l1_table_offset;
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t backing_file_offset; /* 0: no backing file */
	uint32_t backing_file_size;
	/* Version 3 fields (version 2: all zero, refcount_order 4, header_length 72). */
	uint64_t incompatible_features;
	uint64_t compatible_features;
	uint64_t autoclear_features;
	uint32_t refcount_order; /* refcount_bits = 1 << refcount_order, 0..6 */
	uint32_t header_length;
	uint8_t compression_type; /* QCOW2_COMPRESSION_*; from byte 104 when header_length > 104 */

	/* From the extensions and the backing file name. */
	char backing_file[QCOW2_MAX_BACKING_NAME + 1]; /* "" without one */
	char backing_format[32]; /* "" when the image does not say */
	struct qcow2_ext *unknown; /* extensions kept as they were, in file order */
	unsigned int nr_unknown;
	/* Feature name table, for messages about incompatible bits nkvm does not know. */
	struct qcow2_feature_name {
		uint8_t type; /* 0 incompatible, 1 compatible, 2 autoclear */
		uint8_t bit;
		char name[47]; /* NUL-terminated */
	} * feature_names;
	unsigned int nr_feature_names;
};

/*
 * Parses and checks the header at the start of an image. buf holds the image's first len bytes
 * (the header, its extensions and, where the backing file name lies within them, that name);
 * file_size is the image file's size, for offsets that must lie inside it. Returns 0, or
 * -EINVAL (not qcow2, malformed), -ENOTSUP (a feature nkvm does not support: encryption, an
 * external data file, extended L2 entries, an unknown incompatible bit, an unknown compression
 * type) or -ENOMEM, with a one-line reason for a person in err (at most errlen bytes) that names
 * the field or the feature ("unsupported feature: external data file"). The dirty and corrupt
 * bits are reported in h->incompatible_features, not refused: the caller decides.
 * On success h owns allocations: free them with qcow2_header_free().
 */
int qcow2_header_parse(struct qcow2_header *h, const uint8_t *buf, size_t len, uint64_t file_size,
		       char *err, size_t errlen);

void qcow2_header_free(struct qcow2_header *h);

/*
 * Writes h as on-disk bytes into buf (buf_len bytes, zero-filled first): the fixed header
 * (72 bytes for version 2; header_length, at least 104, for version 3 with byte 104 the
 * compression type when header_length > 104), then the extensions (backing format when
 * h->backing_format is set, the feature name table for version 3, the kept unknown ones, the
 * end marker), each padded to 8 bytes, then the backing file name, whose offset and size are
 * written into the header (h->backing_file_offset/size are updated). Returns the bytes used,
 * or -ENOSPC when they do not fit in buf_len (the first cluster).
 */
long qcow2_header_encode(struct qcow2_header *h, uint8_t *buf, size_t buf_len);

/* Big-endian loads and stores, for tables read from and written to the image. */
static inline uint64_t qcow2_be64(const void *p)
{
	const uint8_t *b = p;

	return (uint64_t)b[0] << 56 | (uint64_t)b[1] << 48 | (uint64_t)b[2] << 40 |
	       (uint64_t)b[3] << 32 | (uint64_t)b[4] << 24 | (uint64_t)b[5] << 16 |
	       (uint64_t)b[6] << 8 | b[7];
}

static inline void qcow2_put_be64(void *p, uint64_t v)
{
	uint8_t *b = p;

	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}

static inline uint32_t qcow2_be32(const void *p)
{
	const uint8_t *b = p;

	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline void qcow2_put_be32(void *p, uint32_t v)
{
	uint8_t *b = p;

	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
}

/*
 * A refcount of width 1 << order bits at index i of a refcount block (big-endian for widths of
 * 8 bits and more; for narrower ones the lowest-numbered entry sits in the least significant
 * bits of its byte, as QEMU writes them).
 */
uint64_t qcow2_refcount_get(const uint8_t *block, uint32_t order, uint64_t i);
void qcow2_refcount_set(uint8_t *block, uint32_t order, uint64_t i, uint64_t v);

#endif
