// SPDX-License-Identifier: MIT
/*
 * An independent walk of a qcow2 image's metadata (docs/interop/qcow2.txt): every structure that
 * uses a host cluster adds one reference to it, and the result is compared with the refcounts the
 * image stores. It shares nothing with the driver but the header parser, so that a driver bug
 * cannot hide itself. Findings are counted and worded as `qemu-img check` counts and words them,
 * so that the two can be compared: a reference the refcounts do not cover (or a malformed entry)
 * is a corruption, a refcount above its references a leak.
 *
 * As in QEMU, reads past the end of the file return zeroes, and references more than a cluster
 * past the end of the file are corruptions that count nothing.
 */
#include <errno.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2_header.h"
#include "block/qcow2_tools.h"

/* QEMU's own limits on tables it reads whole. */
#define SNAPSHOT_EXTRA_MAX 1024
#define SNAPSHOT_TABLE_MAX (64ULL << 20)
#define BITMAP_DIRECTORY_MAX (64ULL << 20)
#define BITMAP_TABLE_OFFSET_MASK 0x00fffffffffffe00ULL
/* Bits the spec reserves: L1 entries 0-8 and 56-62, standard L2 entries 1-8 and 56-61. */
#define L1E_RESERVED_MASK 0x7f000000000001ffULL
#define L2E_STD_RESERVED_MASK 0x3f000000000001feULL

struct snapshot {
	uint64_t l1_offset;
	uint32_t l1_size;
	char id[32];
	char name[64];
};

struct check {
	int fd;
	FILE *log;
	struct qcow2_check_result *r;
	char *why;
	size_t whylen;

	struct qcow2_header h;
	uint64_t file_size;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint64_t l2_entries;
	uint32_t refblock_bits;		/* log2 of refcounts per refcount block */
	uint64_t refcount_max;

	uint64_t *reftable;		/* host order, reserved bits included */
	uint64_t reftable_size;		/* entries */
	/*
	 * Refcount blocks read, direct-mapped by table index: the COPIED pass looks up data
	 * clusters in L2 order, which jumps between blocks on a fragmented image.
	 */
	uint8_t *refblocks;
	uint64_t *refblock_offsets;	/* per slot; 0: empty */
	unsigned int refblock_slots;

	/* The computed refcounts: one entry of width bytes per cluster, nb of them. */
	uint8_t *counts;
	unsigned int width;
	uint64_t nb;
	uint64_t capacity;

	struct snapshot *snapshots;
	uint64_t snapshots_size;	/* bytes of the snapshot table */

	uint8_t *table;			/* one cluster, for L2 tables */
};

static int check_fail(struct check *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int check_fail(struct check *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, c->whylen, fmt, ap);
	va_end(ap);
	return err;
}

static void report(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct check *c, const char *fmt, ...)
{
	va_list ap;

	if (!c->log)
		return;
	va_start(ap, fmt);
	vfprintf(c->log, fmt, ap);
	va_end(ap);
	fputc('\n', c->log);
}

/* len bytes at off; what lies past the end of the file reads as zeroes. */
static int read_at(struct check *c, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(c->fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return check_fail(c, -errno, "read error at offset %#llx: %s",
					  (unsigned long long)off, strerror(errno));
		}
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static uint64_t count_get(const struct check *c, uint64_t k)
{
	const uint8_t *p = c->counts + k * c->width;

	switch (c->width) {
	case 1:
		return *p;
	case 2:
		return *(const uint16_t *)p;
	case 4:
		return *(const uint32_t *)p;
	default:
		return *(const uint64_t *)p;
	}
}

static void count_set(struct check *c, uint64_t k, uint64_t v)
{
	uint8_t *p = c->counts + k * c->width;

	switch (c->width) {
	case 1:
		*p = (uint8_t)v;
		break;
	case 2:
		*(uint16_t *)p = (uint16_t)v;
		break;
	case 4:
		*(uint32_t *)p = (uint32_t)v;
		break;
	default:
		*(uint64_t *)p = v;
		break;
	}
}

/*
 * Makes cluster k part of the compared range: the file's clusters, and one more when a reference
 * reaches into the partly written cluster past the end of the file.
 */
static int counts_reach(struct check *c, uint64_t k)
{
	uint64_t cap;
	uint8_t *n;

	if (k < c->nb)
		return 0;
	if (k >= c->capacity) {
		cap = k + 1;
		n = realloc(c->counts, cap * c->width);
		if (!n)
			return -ENOMEM;
		memset(n + c->capacity * c->width, 0, (cap - c->capacity) * c->width);
		c->counts = n;
		c->capacity = cap;
	}
	c->nb = k + 1;
	return 0;
}

/*
 * One more reference to each cluster that [off, off + len) touches. A range ending a cluster or
 * more past the end of the file is a corruption and counts nothing (QEMU's rule: the last
 * cluster of an image may be partly written, no more).
 */
static int reference(struct check *c, uint64_t off, uint64_t len)
{
	uint64_t first, last, v;
	int err;

	if (!len)
		return 0;
	if (off > UINT64_MAX - len || off + len >= c->file_size + c->cluster_size) {
		report(c, "ERROR: counting reference for region exceeding the end of the file by "
		       "one cluster or more: offset 0x%llx size 0x%llx", (unsigned long long)off,
		       (unsigned long long)len);
		c->r->corruptions++;
		return 0;
	}
	first = off >> c->cluster_bits;
	last = (off + len - 1) >> c->cluster_bits;
	for (uint64_t k = first; k <= last; k++) {
		err = counts_reach(c, k);
		if (err)
			return check_fail(c, err, "out of memory");
		v = count_get(c, k);
		if (v == c->refcount_max) {
			report(c, "ERROR: overflow cluster offset=0x%llx",
			       (unsigned long long)(k << c->cluster_bits));
			c->r->corruptions++;
			continue;
		}
		count_set(c, k, v + 1);
	}
	return 0;
}

/*
 * The refcount the image stores for cluster k: 0 where no refcount block covers it, -EIO for a
 * refcount block the table places off a cluster boundary (it cannot be read as one).
 */
static int stored_refcount(struct check *c, uint64_t k, uint64_t *v)
{
	uint64_t index = k >> c->refblock_bits, off, slot;
	uint8_t *block;
	int err;

	*v = 0;
	if (index >= c->reftable_size)
		return 0;
	off = c->reftable[index] & QCOW2_REFT_OFFSET_MASK;
	if (!off)
		return 0;
	if (off & (c->cluster_size - 1))
		return -EIO;
	slot = index % c->refblock_slots;
	block = c->refblocks + slot * c->cluster_size;
	if (off != c->refblock_offsets[slot]) {
		err = read_at(c, block, c->cluster_size, off);
		if (err)
			return err;
		c->refblock_offsets[slot] = off;
	}
	*v = qcow2_refcount_get(block, c->h.refcount_order,
				k & ((1ULL << c->refblock_bits) - 1));
	return 0;
}

enum cluster_type { UNALLOCATED, ZERO_PLAIN, ZERO_ALLOC, NORMAL, COMPRESSED };

static enum cluster_type l2_type(uint64_t e)
{
	if (e & QCOW2_OFLAG_COMPRESSED)
		return COMPRESSED;
	if (e & QCOW2_OFLAG_ZERO)
		return e & QCOW2_L2E_OFFSET_MASK ? ZERO_ALLOC : ZERO_PLAIN;
	return e & QCOW2_L2E_OFFSET_MASK ? NORMAL : UNALLOCATED;
}

/* The host bytes of a compressed cluster: its offset, and the sectors it spans (spec §L2). */
static void compressed_span(const struct check *c, uint64_t e, uint64_t *off, uint64_t *len)
{
	uint32_t x = 62 - (c->cluster_bits - 8);
	uint64_t sectors = ((e >> x) & ((1ULL << (c->cluster_bits - 8)) - 1)) + 1;

	*off = e & ((1ULL << x) - 1);
	*len = sectors * 512 - (*off & 511);
}

static int walk_l2(struct check *c, uint64_t l2_offset, bool active)
{
	uint64_t next = 0;
	int err;

	err = read_at(c, c->table, c->cluster_size, l2_offset);
	if (err)
		return err;
	for (uint64_t i = 0; i < c->l2_entries; i++) {
		uint64_t e = qcow2_be64(c->table + 8 * i), off, len;

		if (l2_type(e) != COMPRESSED && (e & L2E_STD_RESERVED_MASK)) {
			report(c, "ERROR found l2 entry with reserved bits set: %llx",
			       (unsigned long long)e);
			c->r->corruptions++;
		}
		switch (l2_type(e)) {
		case COMPRESSED:
			compressed_span(c, e, &off, &len);
			if (e & QCOW2_OFLAG_COPIED) {
				report(c, "ERROR: coffset=0x%llx: copied flag must never be set "
				       "for compressed clusters", (unsigned long long)off);
				c->r->corruptions++;
			}
			err = reference(c, off, len);
			if (err)
				return err;
			if (active) {
				c->r->allocated_clusters++;
				c->r->compressed_clusters++;
				/* Never contiguous with their neighbours. */
				c->r->fragmented_clusters++;
			}
			break;
		case ZERO_ALLOC:
		case NORMAL:
			off = e & QCOW2_L2E_OFFSET_MASK;
			if (off & (c->cluster_size - 1)) {
				report(c, "ERROR offset=%llx: %s cluster is not properly aligned; "
				       "L2 entry corrupted.", (unsigned long long)off,
				       l2_type(e) == ZERO_ALLOC ? "Preallocated" : "Data");
				c->r->corruptions++;
			}
			if (active) {
				c->r->allocated_clusters++;
				if (next && off != next)
					c->r->fragmented_clusters++;
				next = off + c->cluster_size;
			}
			err = reference(c, off, c->cluster_size);
			if (err)
				return err;
			break;
		default:
			break;
		}
	}
	return 0;
}

static int read_l1(struct check *c, uint64_t off, uint32_t entries, uint64_t **l1)
{
	uint64_t *t;
	int err;

	*l1 = NULL;
	if (!entries)
		return 0;
	t = malloc((size_t)entries * 8);
	if (!t)
		return check_fail(c, -ENOMEM, "out of memory");
	err = read_at(c, t, (uint64_t)entries * 8, off);
	if (err) {
		free(t);
		return err;
	}
	for (uint32_t i = 0; i < entries; i++)
		t[i] = qcow2_be64(&t[i]);
	*l1 = t;
	return 0;
}

/* An L1 table (the active one, or a snapshot's): itself, its L2 tables, their clusters. */
static int walk_l1(struct check *c, uint64_t l1_offset, uint32_t l1_size, bool active)
{
	uint64_t *l1;
	int err;

	err = reference(c, l1_offset, (uint64_t)l1_size * 8);
	if (!err)
		err = read_l1(c, l1_offset, l1_size, &l1);
	if (err)
		return err;
	for (uint32_t i = 0; i < l1_size && !err; i++) {
		uint64_t l2 = l1[i] & QCOW2_L1E_OFFSET_MASK;

		/* As QEMU: an entry with only reserved bits set still names an L2 table, at 0. */
		if (!l1[i])
			continue;
		if (l1[i] & L1E_RESERVED_MASK) {
			report(c, "ERROR found L1 entry with reserved bits set: %llx",
			       (unsigned long long)l1[i]);
			c->r->corruptions++;
		}
		err = reference(c, l2, c->cluster_size);
		if (err)
			break;
		if (l2 & (c->cluster_size - 1)) {
			report(c, "ERROR l2_offset=%llx: Table is not cluster aligned; L1 entry "
			       "corrupted", (unsigned long long)l2);
			c->r->corruptions++;
		}
		err = walk_l2(c, l2, active);
	}
	free(l1);
	return err;
}

static void copy_text(char *dst, size_t size, const uint8_t *src, size_t len)
{
	size_t n = len < size - 1 ? len : size - 1;

	for (size_t i = 0; i < n; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
	dst[n] = '\0';
}

/* The snapshot table (spec "Snapshots"): each entry's L1 table, and its own extent. */
static int read_snapshots(struct check *c)
{
	uint64_t off = c->h.snapshots_offset;
	uint8_t fixed[40], *var = NULL;
	int err = 0;

	if (!c->h.nb_snapshots)
		return 0;
	c->snapshots = calloc(c->h.nb_snapshots, sizeof(*c->snapshots));
	var = malloc(SNAPSHOT_EXTRA_MAX + 2 * 65535);
	if (!c->snapshots || !var) {
		free(var);
		return check_fail(c, -ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < c->h.nb_snapshots; i++) {
		struct snapshot *s = &c->snapshots[i];
		uint32_t id_len, name_len, extra;
		uint64_t var_len;

		err = read_at(c, fixed, sizeof(fixed), off);
		if (err)
			break;
		s->l1_offset = qcow2_be64(fixed);
		s->l1_size = qcow2_be32(fixed + 8);
		id_len = (uint32_t)fixed[12] << 8 | fixed[13];
		name_len = (uint32_t)fixed[14] << 8 | fixed[15];
		extra = qcow2_be32(fixed + 36);
		if (extra > SNAPSHOT_EXTRA_MAX) {
			err = check_fail(c, -EINVAL,
					 "snapshot table entry %u has too much extra data "
					 "(%u bytes)", i, extra);
			break;
		}
		var_len = (uint64_t)extra + id_len + name_len;
		err = read_at(c, var, var_len, off + sizeof(fixed));
		if (err)
			break;
		copy_text(s->id, sizeof(s->id), var + extra, id_len);
		copy_text(s->name, sizeof(s->name), var + extra + id_len, name_len);
		/* Version 3 snapshots carry at least vm_state_size_large and disk_size. */
		if (c->h.version >= 3 && extra < 16) {
			report(c, "ERROR snapshot table entry %u is incomplete", i);
			c->r->corruptions++;
		}
		off += (sizeof(fixed) + var_len + 7) & ~7ULL;
		if (off - c->h.snapshots_offset > SNAPSHOT_TABLE_MAX) {
			err = check_fail(c, -EINVAL, "snapshot table is too large");
			break;
		}
	}
	free(var);
	c->snapshots_size = off - c->h.snapshots_offset;
	return err;
}

static const struct qcow2_ext *find_ext(const struct qcow2_header *h, uint32_t type)
{
	for (unsigned int i = 0; i < h->nr_unknown; i++) {
		if (h->unknown[i].type == type)
			return &h->unknown[i];
	}
	return NULL;
}

/* Persistent dirty bitmaps (spec "Bitmaps"): the directory, each bitmap table, its clusters. */
static int walk_bitmaps(struct check *c)
{
	const struct qcow2_ext *ext = find_ext(&c->h, QCOW2_EXT_BITMAPS);
	uint64_t dir_size, dir_off, pos = 0;
	uint32_t nb;
	uint8_t *dir;
	int err;

	/* Without the autoclear bit the extension is stale and readers ignore it. */
	if (!ext || !(c->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	if (ext->len < 24)
		return check_fail(c, -EINVAL, "bitmaps header extension is too short");
	nb = qcow2_be32(ext->data);
	dir_size = qcow2_be64(ext->data + 8);
	dir_off = qcow2_be64(ext->data + 16);
	if (dir_size > BITMAP_DIRECTORY_MAX)
		return check_fail(c, -EINVAL, "bitmap directory is too large");
	err = reference(c, dir_off, dir_size);
	if (err)
		return err;
	dir = malloc(dir_size + 1);
	if (!dir)
		return check_fail(c, -ENOMEM, "out of memory");
	err = read_at(c, dir, dir_size, dir_off);
	for (uint32_t i = 0; i < nb && !err; i++) {
		uint64_t table_off, entry_len;
		uint32_t table_size;

		if (dir_size - pos < 24) {
			err = check_fail(c, -EINVAL, "bitmap directory is truncated");
			break;
		}
		table_off = qcow2_be64(dir + pos);
		table_size = qcow2_be32(dir + pos + 8);
		entry_len = 24 + ((uint32_t)dir[pos + 18] << 8 | dir[pos + 19]) +
			    (uint64_t)qcow2_be32(dir + pos + 20);
		entry_len = (entry_len + 7) & ~7ULL;
		if (entry_len > dir_size - pos) {
			err = check_fail(c, -EINVAL, "bitmap directory is truncated");
			break;
		}
		pos += entry_len;
		err = reference(c, table_off, (uint64_t)table_size * 8);
		if (err)
			break;
		for (uint64_t t = 0; t < table_size && !err; t += c->l2_entries) {
			uint64_t n = table_size - t;

			n = n < c->l2_entries ? n : c->l2_entries;

			err = read_at(c, c->table, n * 8, table_off + t * 8);
			for (uint64_t j = 0; j < n && !err; j++) {
				uint64_t off = qcow2_be64(c->table + 8 * j);

				off &= BITMAP_TABLE_OFFSET_MASK;
				if (off)
					err = reference(c, off, c->cluster_size);
			}
		}
	}
	free(dir);
	return err;
}

/* Each refcount block: where the table says it is, and referenced once, by the table. */
static int walk_refblocks(struct check *c)
{
	int err;

	for (uint64_t i = 0; i < c->reftable_size; i++) {
		uint64_t off = c->reftable[i] & QCOW2_REFT_OFFSET_MASK, k = off >> c->cluster_bits;

		if (c->reftable[i] & ~QCOW2_REFT_OFFSET_MASK) {
			report(c, "ERROR refcount table entry %llu has reserved bits set",
			       (unsigned long long)i);
			c->r->corruptions++;
			continue;
		}
		if (off & (c->cluster_size - 1)) {
			report(c, "ERROR refcount block %llu is not cluster aligned; refcount "
			       "table entry corrupted", (unsigned long long)i);
			c->r->corruptions++;
			continue;
		}
		if (k >= c->nb) {
			report(c, "ERROR refcount block %llu is outside image",
			       (unsigned long long)i);
			c->r->corruptions++;
			continue;
		}
		if (!off)
			continue;
		err = reference(c, off, c->cluster_size);
		if (err)
			return err;
		if (count_get(c, k) != 1) {
			report(c, "ERROR refcount block %llu refcount=%llu", (unsigned long long)i,
			       (unsigned long long)count_get(c, k));
			c->r->corruptions++;
		}
	}
	return 0;
}

static int compare(struct check *c)
{
	uint64_t highest = 0;

	for (uint64_t k = 0; k < c->nb; k++) {
		uint64_t stored, expected = count_get(c, k);
		int err = stored_refcount(c, k, &stored);

		if (err == -EIO) {
			report(c, "Can't get refcount for cluster %llu: %s", (unsigned long long)k,
			       strerror(EIO));
			c->r->check_errors++;
			continue;
		}
		if (err)
			return err;
		if (stored || expected)
			highest = k;
		if (stored == expected)
			continue;
		report(c, "%s cluster %llu refcount=%llu reference=%llu",
		       stored < expected ? "ERROR" : "Leaked", (unsigned long long)k,
		       (unsigned long long)stored, (unsigned long long)expected);
		if (stored < expected)
			c->r->corruptions++;
		else
			c->r->leaks++;
	}
	c->r->image_end_offset = (highest + 1) << c->cluster_bits;
	return 0;
}

/*
 * spec "Cluster mapping": COPIED is set in an active L1 or L2 entry exactly when the cluster's
 * refcount is 1, so that the driver may write in place. Checked against the stored refcounts.
 */
static int check_copied(struct check *c)
{
	uint64_t *l1, rc;
	int err = read_l1(c, c->h.l1_table_offset, c->h.l1_size, &l1);

	for (uint32_t i = 0; i < c->h.l1_size && !err; i++) {
		uint64_t l2 = l1[i] & QCOW2_L1E_OFFSET_MASK;

		if (!l2 || stored_refcount(c, l2 >> c->cluster_bits, &rc) < 0)
			continue;
		if ((rc == 1) != !!(l1[i] & QCOW2_OFLAG_COPIED)) {
			report(c, "ERROR OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%llx "
			       "refcount=%llu", i, (unsigned long long)l1[i],
			       (unsigned long long)rc);
			c->r->corruptions++;
		}
		err = read_at(c, c->table, c->cluster_size, l2);
		for (uint64_t j = 0; j < c->l2_entries && !err; j++) {
			uint64_t e = qcow2_be64(c->table + 8 * j);
			enum cluster_type t = l2_type(e);

			if (t != NORMAL && t != ZERO_ALLOC)
				continue;
			if (stored_refcount(c, (e & QCOW2_L2E_OFFSET_MASK) >> c->cluster_bits,
					    &rc) < 0)
				continue;
			if ((rc == 1) != !!(e & QCOW2_OFLAG_COPIED)) {
				report(c, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx "
				       "refcount=%llu", (unsigned long long)e,
				       (unsigned long long)rc);
				c->r->corruptions++;
			}
		}
	}
	free(l1);
	return err;
}

static int load(struct check *c)
{
	struct stat st;
	uint8_t *first;
	size_t len;
	int err;

	if (fstat(c->fd, &st))
		return check_fail(c, -errno, "cannot stat: %s", strerror(errno));
	c->file_size = st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(c->fd, BLKGETSIZE64, &c->file_size))
		return check_fail(c, -errno, "cannot read the device's size: %s", strerror(errno));
	/*
	 * The header and its extensions lie in the first cluster, at most 2 MiB. Parsed as if
	 * the file went on forever (reading zeroes), as QEMU opens images: tables past the end of
	 * the file are then findings of the check, not reasons to refuse it.
	 */
	len = 1U << QCOW2_MAX_CLUSTER_BITS;
	first = malloc(len);
	if (!first)
		return check_fail(c, -ENOMEM, "out of memory");
	err = read_at(c, first, len, 0);
	if (!err) {
		err = qcow2_header_parse(&c->h, first, len, UINT64_MAX, c->why, c->whylen);
		if (err == -ENOMEM)
			check_fail(c, err, "out of memory");
	}
	free(first);
	if (err)
		return err;

	c->cluster_bits = c->h.cluster_bits;
	c->cluster_size = 1ULL << c->cluster_bits;
	c->l2_entries = c->cluster_size / 8;
	c->refblock_bits = c->cluster_bits + 3 - c->h.refcount_order;
	c->refcount_max = c->h.refcount_order == 6 ? UINT64_MAX :
			  (1ULL << (1U << c->h.refcount_order)) - 1;
	c->width = c->h.refcount_order <= 3 ? 1 : 1U << (c->h.refcount_order - 3);
	c->r->total_clusters = (c->h.size + c->cluster_size - 1) >> c->cluster_bits;

	c->nb = (c->file_size + c->cluster_size - 1) >> c->cluster_bits;
	if (c->nb > QCOW2_CHECK_MAX_MEMORY / c->width)
		return check_fail(c, -EFBIG,
				  "image file too large to check (%llu clusters of %llu bytes)",
				  (unsigned long long)c->nb,
				  (unsigned long long)c->cluster_size);
	c->capacity = c->nb ? c->nb : 1;
	c->counts = calloc(c->capacity, c->width);
	c->table = malloc(c->cluster_size);
	/* Up to 64 blocks in 8 MiB: with 64 KiB clusters, refcounts for 128 GiB of image. */
	c->refblock_slots = (8U << 20) >> c->cluster_bits;
	c->refblock_slots = c->refblock_slots > 64 ? 64 : c->refblock_slots ? c->refblock_slots : 1;
	c->refblocks = malloc((size_t)c->refblock_slots << c->cluster_bits);
	c->refblock_offsets = calloc(c->refblock_slots, sizeof(*c->refblock_offsets));
	c->reftable_size = (uint64_t)c->h.refcount_table_clusters << (c->cluster_bits - 3);
	c->reftable = malloc(c->reftable_size * 8);
	if (!c->counts || !c->table || !c->refblocks || !c->refblock_offsets || !c->reftable)
		return check_fail(c, -ENOMEM, "out of memory");
	err = read_at(c, c->reftable, c->reftable_size * 8, c->h.refcount_table_offset);
	if (err)
		return err;
	for (uint64_t i = 0; i < c->reftable_size; i++)
		c->reftable[i] = qcow2_be64(&c->reftable[i]);
	return read_snapshots(c);
}

static int run(struct check *c)
{
	int err;

	err = load(c);
	if (err)
		return err;
	/* In QEMU's order, so that the same findings come out in the same order. */
	err = reference(c, 0, c->cluster_size);
	if (!err)
		err = walk_l1(c, c->h.l1_table_offset, c->h.l1_size, true);
	for (uint32_t i = 0; i < c->h.nb_snapshots && !err; i++) {
		struct snapshot *s = &c->snapshots[i];

		if (s->l1_offset & (c->cluster_size - 1)) {
			report(c, "ERROR snapshot %s (%s) l1_offset=%#llx: L1 table is not cluster "
			       "aligned; snapshot table entry corrupted", s->id, s->name,
			       (unsigned long long)s->l1_offset);
			c->r->corruptions++;
			continue;
		}
		if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
			report(c, "ERROR snapshot %s (%s) l1_size=%#x: L1 table is too large; "
			       "snapshot table entry corrupted", s->id, s->name, s->l1_size);
			c->r->corruptions++;
			continue;
		}
		err = walk_l1(c, s->l1_offset, s->l1_size, false);
	}
	if (!err)
		err = reference(c, c->h.snapshots_offset, c->snapshots_size);
	if (!err)
		err = reference(c, c->h.refcount_table_offset,
				(uint64_t)c->h.refcount_table_clusters << c->cluster_bits);
	if (!err)
		err = walk_bitmaps(c);
	if (!err)
		err = walk_refblocks(c);
	if (!err)
		err = compare(c);
	if (!err)
		err = check_copied(c);
	return err;
}

int qcow2_check(int fd, FILE *log, struct qcow2_check_result *r, char *why, size_t whylen)
{
	struct check c = { .fd = fd, .log = log, .r = r, .why = why, .whylen = whylen };
	int err;

	memset(r, 0, sizeof(*r));
	if (whylen)
		why[0] = '\0';
	err = run(&c);
	qcow2_header_free(&c.h);
	free(c.reftable);
	free(c.refblocks);
	free(c.refblock_offsets);
	free(c.counts);
	free(c.snapshots);
	free(c.table);
	return err;
}
