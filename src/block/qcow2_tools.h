/* SPDX-License-Identifier: MIT */
/*
 * qcow2 tools that work on a whole image file at once, outside the driver: creating an empty
 * image (qcow2_create.c) and checking every cluster's refcount against the metadata that uses it
 * (qcow2_check.c). Used by `nkvm img`; synchronous I/O on a file descriptor.
 */
#ifndef NKVM_BLOCK_QCOW2_TOOLS_H
#define NKVM_BLOCK_QCOW2_TOOLS_H

#include <stdint.h>
#include <stdio.h>

#define QCOW2_DEFAULT_CLUSTER_BITS 16
#define QCOW2_DEFAULT_REFCOUNT_ORDER 4

struct qcow2_create_options {
	uint64_t size; /* virtual size, bytes; rounded up to 512 */
	uint32_t version; /* 2 or 3 */
	uint32_t cluster_bits; /* QCOW2_MIN_CLUSTER_BITS..QCOW2_MAX_CLUSTER_BITS */
	uint32_t refcount_order; /* 0..6; anything but 4 needs version 3 */
	uint8_t compression_type; /* QCOW2_COMPRESSION_*; zstd needs version 3 */
	const char *backing_file; /* stored as given; NULL or "": none */
	const char *backing_format; /* "raw", "qcow2"; required with a backing file */
};

/*
 * Writes an empty image into fd, which it truncates first: the header with its extensions, a
 * refcount table, the refcount blocks covering the metadata, a zeroed L1 table for the size, every
 * refcount right. Returns 0, or -EINVAL (options that do not go together), -EFBIG (an L1 table
 * beyond QCOW2_MAX_L1_BYTES), -ENOSPC (the header does not fit in a cluster) or an I/O error, with
 * a one-line reason in err.
 */
int qcow2_create(int fd, const struct qcow2_create_options *o, char *err, size_t errlen);
/* qcow2_create's checks of the options alone, without a file: 0 or its errors. */
int qcow2_create_validate(const struct qcow2_create_options *o, char *err, size_t errlen);

/* What a check found: the counts of `qemu-img check`, whose meanings they keep. */
struct qcow2_check_result {
	uint64_t corruptions; /* references refcounts do not cover, bad entries */
	uint64_t leaks; /* refcounts above the references */
	uint64_t check_errors; /* parts that could not be checked */
	uint64_t total_clusters; /* of the virtual disk */
	uint64_t allocated_clusters; /* of the active L1/L2 tables */
	uint64_t fragmented_clusters;
	uint64_t compressed_clusters;
	uint64_t image_end_offset; /* just past the last cluster in use or referenced */
};

/* At most this many bytes of computed refcounts (one entry per cluster of the file). */
#define QCOW2_CHECK_MAX_MEMORY (1ULL << 30)

/*
 * Walks the metadata of the qcow2 image in fd (header, active and snapshot L1/L2 tables, data
 * and compressed clusters, snapshot table, bitmaps, refcount table and blocks), computes each
 * cluster's refcount and compares it with the stored one, and checks that the COPIED flags of
 * the active tables say "refcount is 1". Each finding goes to log as one line in qemu-img's words
 * ("ERROR cluster 5 refcount=0 reference=1", "Leaked cluster 9 refcount=1 reference=0"). Returns 0
 * when the check ran to its end (its findings in *r), or a negative errno when it could not run:
 * not a qcow2 image, a header nkvm refuses, a file too big to check, a read error; err then says
 * why in one line.
 */
int qcow2_check(int fd, FILE *log, struct qcow2_check_result *r, char *err, size_t errlen);

#endif
