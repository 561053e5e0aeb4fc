// SPDX-License-Identifier: MIT
/*
 * A new, empty qcow2 image, laid out as QEMU lays one out: the header in cluster 0, then the
 * refcount table, the refcount blocks covering every metadata cluster, and a zeroed L1 table
 * big enough for the virtual size. No L2 table exists yet; the driver allocates them on write.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2_header.h"
#include "block/qcow2_tools.h"
#include "lib/util.h"

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static int check_options(const struct qcow2_create_options *o, char *err, size_t errlen)
{
	if (o->version != 2 && o->version != 3)
		return err_set(err, errlen, -EINVAL, "qcow2 version %u is not 2 or 3", o->version);
	if (o->cluster_bits < QCOW2_MIN_CLUSTER_BITS || o->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return err_set(err, errlen, -EINVAL,
			       "cluster size must be a power of two between 512 and 2M");
	if (o->refcount_order > 6)
		return err_set(err, errlen, -EINVAL,
			       "refcount_bits must be a power of two between 1 and 64");
	/* Version 2 headers have no field for either: readers assume 16 bits and zlib. */
	if (o->version == 2 && o->refcount_order != 4)
		return err_set(err, errlen, -EINVAL,
			       "refcount widths other than 16 bits need compat=1.1 (v3)");
	if (o->compression_type != QCOW2_COMPRESSION_ZLIB &&
	    o->compression_type != QCOW2_COMPRESSION_ZSTD)
		return err_set(err, errlen, -EINVAL, "unknown compression type %u",
			       o->compression_type);
	if (o->version == 2 && o->compression_type != QCOW2_COMPRESSION_ZLIB)
		return err_set(err, errlen, -EINVAL,
			       "compression types other than zlib need compat=1.1 (v3)");
	if (o->size > QCOW2_MAX_SIZE)
		return err_set(err, errlen, -EFBIG, "virtual size is too large (at most 64 PiB)");
	if (o->backing_file && o->backing_file[0]) {
		if (strlen(o->backing_file) > QCOW2_MAX_BACKING_NAME)
			return err_set(err, errlen, -EINVAL,
				       "backing file name is longer than %d bytes",
				       QCOW2_MAX_BACKING_NAME);
		if (!o->backing_format || !o->backing_format[0])
			return err_set(err, errlen, -EINVAL,
				       "a backing file needs a backing format");
		if (strlen(o->backing_format) >= sizeof(((struct qcow2_header *)0)->backing_format))
			return err_set(err, errlen, -EINVAL, "backing format name is too long");
	}
	return 0;
}

/*
 * Drops the feature name table from an encoded header whose extensions overflow the first
 * cluster, as QEMU does for small clusters: the table only names bits for messages. Moves what
 * follows it (later extensions, the backing file name) down. Returns the new length.
 */
static long drop_feature_table(uint8_t *buf, long len, uint32_t header_length)
{
	uint64_t off = header_length, name_off = qcow2_be64(buf + 8);

	while (off + 8 <= (uint64_t)len) {
		uint32_t type = qcow2_be32(buf + off), elen = qcow2_be32(buf + off + 4);
		uint64_t span = 8 + ((elen + 7ULL) & ~7ULL);

		if (type == QCOW2_EXT_END)
			break;
		if (type == QCOW2_EXT_FEATURE_TABLE) {
			memmove(buf + off, buf + off + span, len - off - span);
			len -= span;
			memset(buf + len, 0, span);
			if (name_off)
				qcow2_put_be64(buf + 8, name_off - span);
			break;
		}
		off += span;
	}
	return len;
}

/* Encodes the header into a whole zeroed cluster (buf, cluster_size bytes). */
static int encode_header(struct qcow2_header *h, uint8_t *buf, uint64_t cluster_size, char *err,
			 size_t errlen)
{
	/* Room for the feature table on top of a cluster, so that it can be dropped after. */
	size_t room = cluster_size + 4096;
	uint8_t *tmp = calloc(1, room);
	long len;

	if (!tmp)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	len = qcow2_header_encode(h, tmp, room);
	if (len > (long)cluster_size && h->version == 3)
		len = drop_feature_table(tmp, len, h->header_length);
	if (len < 0 || len > (long)cluster_size) {
		free(tmp);
		return err_set(err, errlen, -ENOSPC,
			       "the header and the backing file name do not fit in one %llu-byte "
			       "cluster",
			       (unsigned long long)cluster_size);
	}
	memcpy(buf, tmp, cluster_size);
	free(tmp);
	return 0;
}

static int write_at(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* The image's first clusters, built in memory: header, refcount table, refcount blocks. */
struct layout {
	uint8_t *meta;
	uint64_t meta_bytes;
	uint64_t file_size; /* up to the end of the L1 table's last cluster */
};

static int layout(const struct qcow2_create_options *o, struct layout *l, char *err, size_t errlen)
{
	struct qcow2_header h = { 0 };
	uint64_t cs, size, l1_size, l1_clusters, per_block, reft = 1, blocks = 1, total;
	int ret;

	memset(l, 0, sizeof(*l));
	ret = check_options(o, err, errlen);
	if (ret)
		return ret;
	cs = 1ULL << o->cluster_bits;
	size = ALIGN_UP(o->size, 512ULL);
	/* Each L2 table maps cs / 8 clusters. */
	l1_size = div_up(size, cs * (cs / 8));
	if (l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return err_set(err, errlen, -EFBIG,
			       "virtual size too large for %llu-byte clusters "
			       "(L1 table over %llu MiB)",
			       (unsigned long long)cs, QCOW2_MAX_L1_BYTES >> 20);
	l1_clusters = div_up(l1_size * 8, cs);

	/*
	 * The refcount blocks must cover themselves and the table that points at them: grow both
	 * until they cover every cluster up to the end of the L1 table.
	 */
	per_block = cs * 8 >> o->refcount_order;
	for (;;) {
		uint64_t b, t;

		total = 1 + reft + blocks + l1_clusters;
		b = div_up(total, per_block);
		t = div_up(b * 8, cs);
		if (b <= blocks && t <= reft)
			break;
		blocks = b > blocks ? b : blocks;
		reft = t > reft ? t : reft;
	}
	if (reft * cs > QCOW2_MAX_REFTABLE_BYTES)
		return err_set(err, errlen, -EFBIG, "refcount table would be too large");

	h.version = o->version;
	h.cluster_bits = o->cluster_bits;
	h.size = size;
	h.l1_size = (uint32_t)l1_size;
	h.refcount_table_offset = cs;
	h.refcount_table_clusters = (uint32_t)reft;
	h.l1_table_offset = (1 + reft + blocks) * cs;
	h.refcount_order = o->refcount_order;
	if (o->version == 3) {
		h.header_length = 112; /* with the compression type byte, as in QEMU's */
		h.compression_type = o->compression_type;
		if (o->compression_type != QCOW2_COMPRESSION_ZLIB)
			h.incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
	} else {
		h.header_length = 72;
	}
	if (o->backing_file && o->backing_file[0]) {
		snprintf(h.backing_file, sizeof(h.backing_file), "%s", o->backing_file);
		snprintf(h.backing_format, sizeof(h.backing_format), "%s", o->backing_format);
	}

	l->meta_bytes = (1 + reft + blocks) * cs;
	l->file_size = total * cs;
	l->meta = calloc(1, l->meta_bytes);
	if (!l->meta)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	ret = encode_header(&h, l->meta, cs, err, errlen);
	if (ret) {
		free(l->meta);
		l->meta = NULL;
		return ret;
	}
	for (uint64_t i = 0; i < blocks; i++)
		qcow2_put_be64(l->meta + cs + 8 * i, (1 + reft + i) * cs);
	for (uint64_t c = 0; c < total; c++)
		qcow2_refcount_set(l->meta + (1 + reft + c / per_block) * cs, o->refcount_order,
				   c % per_block, 1);
	return 0;
}

int qcow2_create_validate(const struct qcow2_create_options *o, char *err, size_t errlen)
{
	struct layout l;
	int ret = layout(o, &l, err, errlen);

	free(l.meta);
	return ret;
}

int qcow2_create(int fd, const struct qcow2_create_options *o, char *err, size_t errlen)
{
	struct layout l;
	int ret;

	ret = layout(o, &l, err, errlen);
	if (ret)
		return ret;
	/* The L1 table reads as zeroes: the truncation leaves a hole there. */
	if (ftruncate(fd, 0) || ftruncate(fd, l.file_size)) {
		ret = -errno;
		err_set(err, errlen, ret, "cannot size the image: %s", strerror(-ret));
		goto out;
	}
	ret = write_at(fd, l.meta, l.meta_bytes, 0);
	if (!ret && fsync(fd))
		ret = -errno;
	if (ret)
		err_set(err, errlen, ret, "cannot write the image: %s", strerror(-ret));
out:
	free(l.meta);
	return ret;
}
