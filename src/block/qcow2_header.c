// SPDX-License-Identifier: MIT
/*
 * The qcow2 header (docs/interop/qcow2.txt, "Header" and "Header extensions"): parsed from the
 * image's first bytes into a struct whose every field is range-checked, and encoded back.
 * No I/O here: the driver, `nkvm img` and the fuzz target feed it bytes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_header.h"
#include "lib/util.h"

#define V2_HEADER_LEN 72
#define V3_HEADER_LEN 104
#define FEATURE_ENTRY_LEN 48

/* The features nkvm knows by name, written into every version 3 header it encodes. */
static const struct qcow2_feature_name known_features[] = {
	{ 0, 0, "dirty bit" },
	{ 0, 1, "corrupt bit" },
	{ 0, 2, "external data file" },
	{ 0, 3, "compression type" },
	{ 0, 4, "extended L2 entries" },
	{ 1, 0, "lazy refcounts" },
	{ 2, 0, "bitmaps" },
	{ 2, 1, "raw external data" },
};
#define NR_KNOWN ((unsigned int)(sizeof(known_features) / sizeof(known_features[0])))

static const char *feature_name(const struct qcow2_header *h, uint8_t type, uint8_t bit)
{
	for (unsigned int i = 0; i < h->nr_feature_names; i++) {
		if (h->feature_names[i].type == type && h->feature_names[i].bit == bit &&
		    h->feature_names[i].name[0])
			return h->feature_names[i].name;
	}
	return NULL;
}

/* A cluster-aligned table of bytes bytes at off, inside the file and not over the header. */
static int check_table(const char *what, uint64_t off, uint64_t bytes, uint64_t cluster_size,
		       uint64_t file_size, char *err, size_t errlen)
{
	if (off & (cluster_size - 1))
		return err_set(err, errlen, -EINVAL, "%s offset %#llx is not cluster-aligned", what,
			       (unsigned long long)off);
	if (!bytes)
		return 0;
	if (off == 0)
		return err_set(err, errlen, -EINVAL, "%s overlaps the header", what);
	if (off > file_size || bytes > file_size - off)
		return err_set(err, errlen, -EINVAL, "%s offset %#llx is past the end of the file",
			       what, (unsigned long long)off);
	return 0;
}

static int add_unknown(struct qcow2_header *h, uint32_t type, const uint8_t *data, uint32_t len)
{
	struct qcow2_ext *n = realloc(h->unknown, (h->nr_unknown + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	h->unknown = n;
	n = &h->unknown[h->nr_unknown];
	n->type = type;
	n->len = len;
	n->data = malloc(len ? len : 1);
	if (!n->data)
		return -ENOMEM;
	memcpy(n->data, data, len);
	h->nr_unknown++;
	return 0;
}

static int parse_feature_table(struct qcow2_header *h, const uint8_t *p, uint32_t len)
{
	unsigned int n = len / FEATURE_ENTRY_LEN;
	struct qcow2_feature_name *f;

	if (!n)
		return 0;
	f = realloc(h->feature_names, (h->nr_feature_names + n) * sizeof(*f));
	if (!f)
		return -ENOMEM;
	h->feature_names = f;
	f += h->nr_feature_names;
	for (unsigned int i = 0; i < n; i++, p += FEATURE_ENTRY_LEN) {
		f[i].type = p[0];
		f[i].bit = p[1];
		/* The name is zero-padded, not terminated, when it uses all 46 bytes. */
		memcpy(f[i].name, p + 2, 46);
		f[i].name[46] = '\0';
		/* Names end up in messages on a terminal: keep them printable. */
		for (char *c = f[i].name; *c; c++) {
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				*c = '?';
		}
	}
	h->nr_feature_names += n;
	return 0;
}

/* Header extensions from start to end (the first cluster, or the backing file name). */
static int parse_extensions(struct qcow2_header *h, const uint8_t *buf, size_t len,
			    uint64_t file_size, uint64_t start, uint64_t end, char *err,
			    size_t errlen)
{
	uint64_t off = start;
	int ret;

	for (;;) {
		uint32_t type, elen;
		uint64_t padded;

		if (off + 8 > end)
			return err_set(err, errlen, -EINVAL,
				       "header extensions run past the end of the first cluster");
		/* A file that ends here reads as zeroes beyond its end: an end marker. */
		if (off >= len && len >= file_size)
			return 0;
		if (off + 8 > len)
			return err_set(err, errlen, -EINVAL, "header extensions are truncated");
		type = qcow2_be32(buf + off);
		elen = qcow2_be32(buf + off + 4);
		off += 8;
		if (type == QCOW2_EXT_END)
			return 0;
		padded = ((uint64_t)elen + 7) & ~7ULL;
		if (padded > end - off)
			return err_set(err, errlen, -EINVAL,
				       "header extension %#x (%u bytes) runs "
				       "past the end of the first cluster",
				       type, elen);
		if (off + elen > len)
			return err_set(err, errlen, -EINVAL, "header extension %#x is truncated",
				       type);
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			if (elen >= sizeof(h->backing_format))
				return err_set(err, errlen, -EINVAL,
					       "backing format name is too long (%u bytes)", elen);
			memcpy(h->backing_format, buf + off, elen);
			h->backing_format[elen] = '\0';
			if (strlen(h->backing_format) != elen)
				return err_set(err, errlen, -EINVAL,
					       "backing format name contains a NUL byte");
			break;
		case QCOW2_EXT_FEATURE_TABLE:
			ret = parse_feature_table(h, buf + off, elen);
			if (ret)
				return err_set(err, errlen, ret, "out of memory");
			break;
		default:
			/*
			 * Kept as they were (bitmaps, a data file name without its feature bit,
			 * anything newer), so that a header rewrite does not drop them.
			 */
			ret = add_unknown(h, type, buf + off, elen);
			if (ret)
				return err_set(err, errlen, ret, "out of memory");
			break;
		}
		off += padded;
	}
}

static int check_features(const struct qcow2_header *h, char *err, size_t errlen)
{
	static const uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
				      QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION |
				      QCOW2_INCOMPAT_EXTL2;
	uint64_t unknown = h->incompatible_features & ~known;

	if (h->crypt_method)
		return err_set(err, errlen, -ENOTSUP, "unsupported feature: encryption (%s)",
			       h->crypt_method == 1 ? "AES" :
			       h->crypt_method == 2 ? "LUKS" :
						      "unknown method");
	if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
		return err_set(err, errlen, -ENOTSUP, "unsupported feature: external data file");
	if (h->incompatible_features & QCOW2_INCOMPAT_EXTL2)
		return err_set(err, errlen, -ENOTSUP, "unsupported feature: extended L2 entries");
	if (unknown) {
		unsigned int bit = __builtin_ctzll(unknown);
		const char *name = feature_name(h, 0, bit);

		if (name)
			return err_set(err, errlen, -ENOTSUP, "unsupported feature: %s", name);
		return err_set(err, errlen, -ENOTSUP,
			       "unsupported feature: unknown incompatible feature bit %u", bit);
	}
	/* "compression type" bit set: the field is present and not zlib; clear: zlib. */
	if (h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) {
		if (h->header_length <= V3_HEADER_LEN ||
		    h->compression_type == QCOW2_COMPRESSION_ZLIB)
			return err_set(err, errlen, -EINVAL,
				       "compression type bit set without a compression type");
	} else if (h->compression_type != QCOW2_COMPRESSION_ZLIB) {
		return err_set(err, errlen, -EINVAL,
			       "compression type %u without the compression type feature bit",
			       h->compression_type);
	}
	if (h->compression_type != QCOW2_COMPRESSION_ZLIB &&
	    h->compression_type != QCOW2_COMPRESSION_ZSTD)
		return err_set(err, errlen, -ENOTSUP, "unsupported feature: compression type %u",
			       h->compression_type);
	return 0;
}

static int parse(struct qcow2_header *h, const uint8_t *buf, size_t len, uint64_t file_size,
		 char *err, size_t errlen)
{
	uint64_t cluster_size, l2_entries, l1_needed, ext_end;
	int ret;

	if (len < V2_HEADER_LEN)
		return err_set(err, errlen, -EINVAL, "too short for a qcow2 header (%zu bytes)",
			       len);
	if (qcow2_be32(buf) != QCOW2_MAGIC)
		return err_set(err, errlen, -EINVAL, "not a qcow2 image (bad magic)");
	h->version = qcow2_be32(buf + 4);
	if (h->version != 2 && h->version != 3)
		return err_set(err, errlen, -ENOTSUP, "unsupported qcow2 version %u", h->version);
	h->backing_file_offset = qcow2_be64(buf + 8);
	h->backing_file_size = qcow2_be32(buf + 16);
	h->cluster_bits = qcow2_be32(buf + 20);
	h->size = qcow2_be64(buf + 24);
	h->crypt_method = qcow2_be32(buf + 32);
	h->l1_size = qcow2_be32(buf + 36);
	h->l1_table_offset = qcow2_be64(buf + 40);
	h->refcount_table_offset = qcow2_be64(buf + 48);
	h->refcount_table_clusters = qcow2_be32(buf + 56);
	h->nb_snapshots = qcow2_be32(buf + 60);
	h->snapshots_offset = qcow2_be64(buf + 64);
	if (h->version == 2) {
		h->refcount_order = 4;
		h->header_length = V2_HEADER_LEN;
	} else {
		if (len < V3_HEADER_LEN)
			return err_set(err, errlen, -EINVAL,
				       "too short for a version 3 header (%zu bytes)", len);
		h->incompatible_features = qcow2_be64(buf + 72);
		h->compatible_features = qcow2_be64(buf + 80);
		h->autoclear_features = qcow2_be64(buf + 88);
		h->refcount_order = qcow2_be32(buf + 96);
		h->header_length = qcow2_be32(buf + 100);
	}

	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return err_set(err, errlen, -EINVAL, "cluster_bits %u is out of range (9 to 21)",
			       h->cluster_bits);
	cluster_size = 1ULL << h->cluster_bits;
	if (h->version == 3) {
		if (h->header_length < V3_HEADER_LEN)
			return err_set(err, errlen, -EINVAL, "header_length %u is below 104",
				       h->header_length);
		if (h->header_length > cluster_size)
			return err_set(err, errlen, -EINVAL,
				       "header_length %u is larger than a cluster",
				       h->header_length);
		if (h->header_length > len)
			return err_set(err, errlen, -EINVAL, "header is truncated");
		if (h->header_length > V3_HEADER_LEN)
			h->compression_type = buf[104];
	}
	if (h->refcount_order > 6)
		return err_set(err, errlen, -EINVAL, "refcount_order %u is out of range (0 to 6)",
			       h->refcount_order);
	if (h->size > QCOW2_MAX_SIZE)
		return err_set(err, errlen, -EINVAL, "virtual size %llu is too large",
			       (unsigned long long)h->size);

	/* L1: enough entries for the virtual size, and not absurdly many. */
	l2_entries = cluster_size / 8;
	l1_needed = (h->size + (cluster_size * l2_entries) - 1) / (cluster_size * l2_entries);
	if ((uint64_t)h->l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return err_set(err, errlen, -EINVAL, "L1 table is too large (%u entries)",
			       h->l1_size);
	if (h->l1_size < l1_needed)
		return err_set(err, errlen, -EINVAL,
			       "L1 table (%u entries) is too small for the virtual size",
			       h->l1_size);
	ret = check_table("L1 table", h->l1_table_offset, (uint64_t)h->l1_size * 8, cluster_size,
			  file_size, err, errlen);
	if (ret)
		return ret;

	if (!h->refcount_table_clusters)
		return err_set(err, errlen, -EINVAL, "refcount table is empty");
	if ((uint64_t)h->refcount_table_clusters * cluster_size > QCOW2_MAX_REFTABLE_BYTES)
		return err_set(err, errlen, -EINVAL, "refcount table is too large (%u clusters)",
			       h->refcount_table_clusters);
	ret = check_table("refcount table", h->refcount_table_offset,
			  (uint64_t)h->refcount_table_clusters * cluster_size, cluster_size,
			  file_size, err, errlen);
	if (ret)
		return ret;
	if (h->l1_size &&
	    h->l1_table_offset < h->refcount_table_offset +
					 (uint64_t)h->refcount_table_clusters * cluster_size &&
	    h->refcount_table_offset < h->l1_table_offset + (uint64_t)h->l1_size * 8)
		return err_set(err, errlen, -EINVAL, "L1 table overlaps the refcount table");

	if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
		return err_set(err, errlen, -EINVAL, "too many snapshots (%u)", h->nb_snapshots);
	if (h->nb_snapshots) {
		ret = check_table("snapshot table", h->snapshots_offset, 1, cluster_size, file_size,
				  err, errlen);
		if (ret)
			return ret;
	}

	ext_end = cluster_size;
	if (h->backing_file_offset) {
		uint64_t off = h->backing_file_offset, n = h->backing_file_size;

		if (n > QCOW2_MAX_BACKING_NAME)
			return err_set(err, errlen, -EINVAL,
				       "backing file name is too long (%llu bytes)",
				       (unsigned long long)n);
		if (off < h->header_length || off > cluster_size || n > cluster_size - off)
			return err_set(
				err, errlen, -EINVAL,
				"backing file name lies outside the first cluster's free part");
		if (off + n > len || off + n > file_size)
			return err_set(err, errlen, -EINVAL, "backing file name is truncated");
		memcpy(h->backing_file, buf + off, n);
		h->backing_file[n] = '\0';
		if (strlen(h->backing_file) != n || n == 0)
			return err_set(err, errlen, -EINVAL, "backing file name is malformed");
		ext_end = off;
	}

	ret = parse_extensions(h, buf, len, file_size, h->header_length, ext_end, err, errlen);
	if (ret)
		return ret;
	if (h->backing_format[0] && !h->backing_file[0])
		h->backing_format[0] = '\0'; /* stale: the image has no backing file */
	return check_features(h, err, errlen);
}

int qcow2_header_parse(struct qcow2_header *h, const uint8_t *buf, size_t len, uint64_t file_size,
		       char *err, size_t errlen)
{
	int ret;

	memset(h, 0, sizeof(*h));
	if (err && errlen)
		err[0] = '\0';
	ret = parse(h, buf, len, file_size, err, errlen);
	if (ret)
		qcow2_header_free(h);
	return ret;
}

void qcow2_header_free(struct qcow2_header *h)
{
	for (unsigned int i = 0; i < h->nr_unknown; i++)
		free(h->unknown[i].data);
	free(h->unknown);
	free(h->feature_names);
	h->unknown = NULL;
	h->nr_unknown = 0;
	h->feature_names = NULL;
	h->nr_feature_names = 0;
}

/* Appends an extension at *off; false when it does not fit. */
static bool put_ext(uint8_t *buf, size_t buf_len, size_t *off, uint32_t type, const void *data,
		    uint32_t len)
{
	uint64_t padded = ((uint64_t)len + 7) & ~7ULL;

	if (*off + 8 + padded > buf_len)
		return false;
	qcow2_put_be32(buf + *off, type);
	qcow2_put_be32(buf + *off + 4, len);
	if (len)
		memcpy(buf + *off + 8, data, len);
	*off += 8 + padded;
	return true;
}

/* A name from the image for a bit nkvm does not know (and not already listed before it). */
static bool extra_name(const struct qcow2_header *h, unsigned int i)
{
	const struct qcow2_feature_name *f = &h->feature_names[i];

	for (unsigned int k = 0; k < NR_KNOWN; k++) {
		if (known_features[k].type == f->type && known_features[k].bit == f->bit)
			return false;
	}
	for (unsigned int k = 0; k < i; k++) {
		if (h->feature_names[k].type == f->type && h->feature_names[k].bit == f->bit)
			return false;
	}
	return true;
}

static bool put_feature_table(const struct qcow2_header *h, uint8_t *buf, size_t buf_len,
			      size_t *off)
{
	unsigned int n = NR_KNOWN;
	uint64_t bytes;
	uint8_t *p;

	for (unsigned int i = 0; i < h->nr_feature_names; i++)
		n += extra_name(h, i);
	bytes = (uint64_t)n * FEATURE_ENTRY_LEN;
	if (*off + 8 + bytes > buf_len)
		return false;
	qcow2_put_be32(buf + *off, QCOW2_EXT_FEATURE_TABLE);
	qcow2_put_be32(buf + *off + 4, (uint32_t)bytes);
	p = buf + *off + 8;
	for (unsigned int k = 0; k < NR_KNOWN; k++, p += FEATURE_ENTRY_LEN) {
		p[0] = known_features[k].type;
		p[1] = known_features[k].bit;
		memcpy(p + 2, known_features[k].name, strlen(known_features[k].name));
	}
	/* Then the names the image gave bits nkvm does not know, which stay meaningful. */
	for (unsigned int i = 0; i < h->nr_feature_names; i++) {
		if (!extra_name(h, i))
			continue;
		p[0] = h->feature_names[i].type;
		p[1] = h->feature_names[i].bit;
		memcpy(p + 2, h->feature_names[i].name, strnlen(h->feature_names[i].name, 46));
		p += FEATURE_ENTRY_LEN;
	}
	*off += 8 + bytes; /* a multiple of 48, so of 8 */
	return true;
}

long qcow2_header_encode(struct qcow2_header *h, uint8_t *buf, size_t buf_len)
{
	size_t off, hlen, name_len = strnlen(h->backing_file, QCOW2_MAX_BACKING_NAME + 1);

	if (name_len > QCOW2_MAX_BACKING_NAME)
		return -EINVAL;
	if (h->version == 3) {
		hlen = h->header_length > V3_HEADER_LEN ? h->header_length : V3_HEADER_LEN;
		if (h->compression_type != QCOW2_COMPRESSION_ZLIB && hlen < V3_HEADER_LEN + 8)
			hlen = V3_HEADER_LEN + 8;
		hlen = (hlen + 7) & ~(size_t)7;
	} else {
		hlen = V2_HEADER_LEN;
	}
	if (buf_len < hlen)
		return -ENOSPC;
	memset(buf, 0, buf_len);
	qcow2_put_be32(buf, QCOW2_MAGIC);
	qcow2_put_be32(buf + 4, h->version);
	qcow2_put_be32(buf + 20, h->cluster_bits);
	qcow2_put_be64(buf + 24, h->size);
	qcow2_put_be32(buf + 32, h->crypt_method);
	qcow2_put_be32(buf + 36, h->l1_size);
	qcow2_put_be64(buf + 40, h->l1_table_offset);
	qcow2_put_be64(buf + 48, h->refcount_table_offset);
	qcow2_put_be32(buf + 56, h->refcount_table_clusters);
	qcow2_put_be32(buf + 60, h->nb_snapshots);
	qcow2_put_be64(buf + 64, h->snapshots_offset);
	if (h->version == 3) {
		h->header_length = (uint32_t)hlen;
		qcow2_put_be64(buf + 72, h->incompatible_features);
		qcow2_put_be64(buf + 80, h->compatible_features);
		qcow2_put_be64(buf + 88, h->autoclear_features);
		qcow2_put_be32(buf + 96, h->refcount_order);
		qcow2_put_be32(buf + 100, h->header_length);
		if (hlen > V3_HEADER_LEN)
			buf[104] = h->compression_type;
	}

	off = hlen;
	if (h->backing_format[0] && name_len &&
	    !put_ext(buf, buf_len, &off, QCOW2_EXT_BACKING_FORMAT, h->backing_format,
		     (uint32_t)strnlen(h->backing_format, sizeof(h->backing_format) - 1)))
		return -ENOSPC;
	if (h->version == 3 && !put_feature_table(h, buf, buf_len, &off))
		return -ENOSPC;
	for (unsigned int i = 0; i < h->nr_unknown; i++) {
		if (!put_ext(buf, buf_len, &off, h->unknown[i].type, h->unknown[i].data,
			     h->unknown[i].len))
			return -ENOSPC;
	}
	if (!put_ext(buf, buf_len, &off, QCOW2_EXT_END, NULL, 0))
		return -ENOSPC;

	if (name_len) {
		if (off + name_len > buf_len)
			return -ENOSPC;
		memcpy(buf + off, h->backing_file, name_len);
		h->backing_file_offset = off;
		h->backing_file_size = (uint32_t)name_len;
		off += name_len;
	} else {
		h->backing_file_offset = 0;
		h->backing_file_size = 0;
	}
	qcow2_put_be64(buf + 8, h->backing_file_offset);
	qcow2_put_be32(buf + 16, h->backing_file_size);
	return (long)off;
}

uint64_t qcow2_refcount_get(const uint8_t *block, uint32_t order, uint64_t i)
{
	switch (order) {
	case 0:
	case 1:
	case 2: {
		uint32_t per_byte = 8 >> order, bits = 1U << order;
		uint32_t shift = (uint32_t)(i & (per_byte - 1)) * bits;

		return (block[i / per_byte] >> shift) & ((1U << bits) - 1);
	}
	case 3:
		return block[i];
	case 4:
		return (uint64_t)block[2 * i] << 8 | block[2 * i + 1];
	case 5:
		return qcow2_be32(block + 4 * i);
	default:
		return qcow2_be64(block + 8 * i);
	}
}

void qcow2_refcount_set(uint8_t *block, uint32_t order, uint64_t i, uint64_t v)
{
	switch (order) {
	case 0:
	case 1:
	case 2: {
		uint32_t per_byte = 8 >> order, bits = 1U << order;
		uint32_t shift = (uint32_t)(i & (per_byte - 1)) * bits;
		uint8_t mask = (uint8_t)(((1U << bits) - 1) << shift);

		block[i / per_byte] =
			(uint8_t)((block[i / per_byte] & ~mask) | ((v << shift) & mask));
		break;
	}
	case 3:
		block[i] = (uint8_t)v;
		break;
	case 4:
		block[2 * i] = (uint8_t)(v >> 8);
		block[2 * i + 1] = (uint8_t)v;
		break;
	case 5:
		qcow2_put_be32(block + 4 * i, (uint32_t)v);
		break;
	default:
		qcow2_put_be64(block + 8 * i, v);
		break;
	}
}
