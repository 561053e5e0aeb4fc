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
 *
 * Unlike QEMU, the work grows with the file, not with what its metadata names: a table that many
 * structures name (snapshots sharing an L1 table, L1 entries sharing an L2 table, bitmaps sharing
 * a bitmap table) is read once, each of its references counted as many times as it is named, and
 * only the part of a table that lies in the file is read (the rest reads as zeroes, which name
 * nothing). Entries of overlapping L1 or bitmap tables are read once; L2 tables once each (off a
 * cluster boundary they may overlap: at most a cluster per 512 bytes of the file). The counts are
 * QEMU's; only the order of the lines differs.
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
/* QEMU's limits on a bitmap directory entry (qcow2-bitmap.c), which it refuses to open past. */
#define BITMAPS_MAX 65535
#define BITMAP_TABLE_MAX 0x8000000U /* entries */
#define BITMAP_PHYS_MAX (512ULL << 20) /* bytes of bitmap the table may name */
#define BITMAP_GRANULARITY_MIN 9
#define BITMAP_GRANULARITY_MAX 31
#define BITMAP_NAME_MAX 1023
/* spec "Bitmap directory": flags bit 0 in_use, bit 1 auto; type 1 is a dirty tracking bitmap. */
#define BITMAP_FLAG_IN_USE 1U
#define BITMAP_FLAGS_KNOWN 3U
#define BITMAP_TYPE_DIRTY_TRACKING 1
/* spec "Bitmap table": bits 9-55 the offset, bit 0 "all ones" when the offset is 0. */
#define BITMAP_TABLE_OFFSET_MASK 0x00fffffffffffe00ULL
#define BITMAP_TABLE_RESERVED_MASK 0xff000000000001feULL
#define BITMAP_TABLE_ALL_ONES 1ULL
/* Bits the spec reserves: L1 entries 0-8 and 56-62, standard L2 entries 1-8 and 56-61. */
#define L1E_RESERVED_MASK 0x7f000000000001ffULL
#define L2E_STD_RESERVED_MASK 0x3f000000000001feULL

struct snapshot {
	uint64_t l1_offset;
	uint32_t l1_size;
	char id[32];
	char name[64];
};

/* A table (or any range of the file) named m times. */
struct span {
	uint64_t off, len, m;
};

/* An L2 table, and how many active and how many L1 entries in all name it. */
struct l2_use {
	uint64_t off, m_active, m_all;
};

struct check {
	int fd;
	FILE *log;
	struct qcow2_check_result *r;
	char *err;
	size_t errlen;

	struct qcow2_header h;
	uint64_t file_size;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint64_t l2_entries;
	uint32_t refblock_bits; /* log2 of refcounts per refcount block */
	uint64_t refcount_max;

	uint64_t *reftable; /* host order, reserved bits included */
	uint64_t reftable_size; /* entries */
	/*
	 * Refcount blocks read, direct-mapped by table index: the COPIED pass looks up data
	 * clusters in L2 order, which jumps between blocks on a fragmented image.
	 */
	uint8_t *refblocks;
	uint64_t *refblock_offsets; /* per slot; 0: empty */
	unsigned int refblock_slots;

	/* The computed refcounts: one entry of width bytes per cluster, nb of them. */
	uint8_t *counts;
	unsigned int width;
	uint64_t nb;
	uint64_t capacity;

	struct snapshot *snapshots;
	uint64_t snapshots_size; /* bytes of the snapshot table */

	uint8_t *table; /* one cluster, for L2 tables */

	/* Every L2 table named, sorted and merged by l2_merge() before any is walked. */
	struct l2_use *l2s;
	size_t nl2s, l2s_cap;

	/* What walk_tables() calls on each entry of the tables it walks. */
	int (*walk_entry)(struct check *c, uint64_t entry, uint64_t m);
};

static int check_fail(struct check *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int check_fail(struct check *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
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

/* m more references to cluster k, which the caller made part of the compared range. */
static void count_add(struct check *c, uint64_t k, uint64_t m)
{
	uint64_t v = count_get(c, k);

	if (m > c->refcount_max - v) {
		/* As QEMU: each reference past the largest refcount is a corruption. */
		report(c, "ERROR: overflow cluster offset=0x%llx",
		       (unsigned long long)(k << c->cluster_bits));
		c->r->corruptions += m - (c->refcount_max - v);
		v = c->refcount_max;
	} else {
		v += m;
	}
	count_set(c, k, v);
}

/*
 * m more references to each cluster that [off, off + len) touches. A range ending a cluster or
 * more past the end of the file is a corruption, once for each reference, and counts nothing
 * (QEMU's rule: the last cluster of an image may be partly written, no more).
 */
static int reference_n(struct check *c, uint64_t off, uint64_t len, uint64_t m)
{
	uint64_t first, last;
	int err;

	if (!len || !m)
		return 0;
	if (off > UINT64_MAX - len || off + len >= c->file_size + c->cluster_size) {
		report(c,
		       "ERROR: counting reference for region exceeding the end of the file by "
		       "one cluster or more: offset 0x%llx size 0x%llx",
		       (unsigned long long)off, (unsigned long long)len);
		c->r->corruptions += m;
		return 0;
	}
	first = off >> c->cluster_bits;
	last = (off + len - 1) >> c->cluster_bits;
	err = counts_reach(c, last);
	if (err)
		return check_fail(c, err, "out of memory");
	for (uint64_t k = first; k <= last; k++)
		count_add(c, k, m);
	return 0;
}

static int reference(struct check *c, uint64_t off, uint64_t len)
{
	return reference_n(c, off, len, 1);
}

/* A change by delta of the number of ranges that cover pos and what follows it. */
struct edge {
	uint64_t pos;
	int64_t delta;
};

static int edge_cmp(const void *a, const void *b)
{
	const struct edge *x = a, *y = b;

	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* Sorts spans and merges the ones that are the same range, adding up m. Returns the new count. */
static size_t spans_merge(struct span *s, size_t n)
{
	size_t out = 0;

	qsort(s, n, sizeof(*s), span_cmp);
	for (size_t i = 0; i < n; i++) {
		if (out && s[out - 1].off == s[i].off && s[out - 1].len == s[i].len)
			s[out - 1].m += s[i].m;
		else
			s[out++] = s[i];
	}
	return out;
}

typedef int (*piece_fn)(struct check *c, uint64_t start, uint64_t end, uint64_t m);

/*
 * Calls fn on each piece of the union of the ranges whose edges e holds (2 a range), with the
 * number of times the ranges over it are named: the work grows with the union and the number of
 * ranges, not with the sum of their lengths.
 */
static int sweep(struct check *c, struct edge *e, size_t n, piece_fn fn)
{
	uint64_t prev = 0;
	int64_t m = 0;
	int err;

	qsort(e, n, sizeof(*e), edge_cmp);
	for (size_t i = 0; i < n; i++) {
		if (m > 0 && e[i].pos > prev) {
			err = fn(c, prev, e[i].pos, (uint64_t)m);
			if (err)
				return err;
		}
		m += e[i].delta;
		prev = e[i].pos;
	}
	return 0;
}

static int count_clusters(struct check *c, uint64_t first, uint64_t end, uint64_t m)
{
	for (uint64_t k = first; k < end; k++)
		count_add(c, k, m);
	return 0;
}

/*
 * References to the clusters of the tables in s (merged): each table past the end of the file is
 * reported once, and each cluster counted once for all the tables over it.
 */
static int reference_tables(struct check *c, const struct span *s, size_t n)
{
	struct edge *e = malloc(2 * n * sizeof(*e) + 1);
	size_t ne = 0;
	int err = 0;

	if (!e)
		return check_fail(c, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		uint64_t last;

		if (!s[i].len)
			continue;
		if (s[i].off > UINT64_MAX - s[i].len ||
		    s[i].off + s[i].len >= c->file_size + c->cluster_size) {
			err = reference_n(c, s[i].off, s[i].len, s[i].m);
			if (err)
				break;
			continue;
		}
		last = (s[i].off + s[i].len - 1) >> c->cluster_bits;
		err = counts_reach(c, last);
		if (err) {
			err = check_fail(c, err, "out of memory");
			break;
		}
		e[ne++] = (struct edge){ s[i].off >> c->cluster_bits, (int64_t)s[i].m };
		e[ne++] = (struct edge){ last + 1, -(int64_t)s[i].m };
	}
	if (!err)
		err = sweep(c, e, ne, count_clusters);
	free(e);
	return err;
}

static int walk_piece(struct check *c, uint64_t start, uint64_t end, uint64_t m)
{
	uint8_t buf[4096];
	int err;

	while (start < end) {
		uint64_t n = end - start < sizeof(buf) ? end - start : sizeof(buf);

		err = read_at(c, buf, n, start);
		for (uint64_t i = 0; i + 8 <= n && !err; i += 8)
			err = c->walk_entry(c, qcow2_be64(buf + i), m);
		if (err)
			return err;
		start += n;
	}
	return 0;
}

/*
 * fn on each 8-byte entry of the tables in s (merged, each at a multiple of 8), with the number of
 * times the tables over it are named. Only what lies in the file is read: the rest is zeroes.
 */
static int walk_tables(struct check *c, const struct span *s, size_t n,
		       int (*fn)(struct check *c, uint64_t entry, uint64_t m))
{
	struct edge *e = malloc(2 * n * sizeof(*e) + 1);
	size_t ne = 0;
	int err;

	if (!e)
		return check_fail(c, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		uint64_t end;

		if (s[i].off >= c->file_size || !s[i].len)
			continue;
		end = s[i].len > c->file_size - s[i].off ? c->file_size : s[i].off + s[i].len;
		e[ne++] = (struct edge){ s[i].off, (int64_t)s[i].m };
		/* An entry cut by the end of the file reads as if zeroes followed. */
		e[ne++] = (struct edge){ (end + 7) & ~7ULL, -(int64_t)s[i].m };
	}
	c->walk_entry = fn;
	err = sweep(c, e, ne, walk_piece);
	free(e);
	return err;
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
	*v = qcow2_refcount_get(block, c->h.refcount_order, k & ((1ULL << c->refblock_bits) - 1));
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

/*
 * An L2 table that m_all L1 entries name, m_active of them in the active L1 table: its entries
 * are read once and counted as many times (the cluster statistics only for the active ones).
 */
static int walk_l2(struct check *c, const struct l2_use *u)
{
	uint64_t next = 0, m = u->m_all, ma = u->m_active;
	int err;

	err = read_at(c, c->table, c->cluster_size, u->off);
	if (err)
		return err;
	for (uint64_t i = 0; i < c->l2_entries; i++) {
		uint64_t e = qcow2_be64(c->table + 8 * i), off, len;

		if (l2_type(e) != COMPRESSED && (e & L2E_STD_RESERVED_MASK)) {
			report(c, "ERROR found l2 entry with reserved bits set: %llx",
			       (unsigned long long)e);
			c->r->corruptions += m;
		}
		switch (l2_type(e)) {
		case COMPRESSED:
			compressed_span(c, e, &off, &len);
			if (e & QCOW2_OFLAG_COPIED) {
				report(c,
				       "ERROR: coffset=0x%llx: copied flag must never be set "
				       "for compressed clusters",
				       (unsigned long long)off);
				c->r->corruptions += m;
			}
			err = reference_n(c, off, len, m);
			if (err)
				return err;
			c->r->allocated_clusters += ma;
			c->r->compressed_clusters += ma;
			/* Never contiguous with their neighbours. */
			c->r->fragmented_clusters += ma;
			break;
		case ZERO_ALLOC:
		case NORMAL:
			off = e & QCOW2_L2E_OFFSET_MASK;
			if (off & (c->cluster_size - 1)) {
				report(c,
				       "ERROR offset=%llx: %s cluster is not properly aligned; "
				       "L2 entry corrupted.",
				       (unsigned long long)off,
				       l2_type(e) == ZERO_ALLOC ? "Preallocated" : "Data");
				c->r->corruptions += m;
			}
			c->r->allocated_clusters += ma;
			if (next && off != next)
				c->r->fragmented_clusters += ma;
			next = off + c->cluster_size;
			err = reference_n(c, off, c->cluster_size, m);
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

static int l2_add(struct check *c, uint64_t off, uint64_t m_active, uint64_t m_all)
{
	if (c->nl2s == c->l2s_cap) {
		size_t cap = c->l2s_cap ? 2 * c->l2s_cap : 64;
		struct l2_use *n = realloc(c->l2s, cap * sizeof(*n));

		if (!n)
			return check_fail(c, -ENOMEM, "out of memory");
		c->l2s = n;
		c->l2s_cap = cap;
	}
	c->l2s[c->nl2s++] = (struct l2_use){ off, m_active, m_all };
	return 0;
}

/*
 * An L1 entry that m L1 tables hold: the L2 table it names is referenced m times, and noted to
 * be walked once with the others. As QEMU, a table off a cluster boundary is reported and walked
 * all the same (a cluster read there), so that the counts agree.
 */
static int l1_entry(struct check *c, uint64_t e, uint64_t m, bool active)
{
	uint64_t l2 = e & QCOW2_L1E_OFFSET_MASK;
	int err;

	/* As QEMU: an entry with only reserved bits set still names an L2 table, at 0. */
	if (!e)
		return 0;
	if (e & L1E_RESERVED_MASK) {
		report(c, "ERROR found L1 entry with reserved bits set: %llx",
		       (unsigned long long)e);
		c->r->corruptions += m;
	}
	err = reference_n(c, l2, c->cluster_size, m);
	if (err)
		return err;
	if (l2 & (c->cluster_size - 1)) {
		report(c,
		       "ERROR l2_offset=%llx: Table is not cluster aligned; L1 entry "
		       "corrupted",
		       (unsigned long long)l2);
		c->r->corruptions += m;
	}
	/* Past the end of the file it reads as zeroes: nothing to walk. */
	if (l2 >= c->file_size)
		return 0;
	return l2_add(c, l2, active ? m : 0, m);
}

static int snapshot_l1_entry(struct check *c, uint64_t e, uint64_t m)
{
	return l1_entry(c, e, m, false);
}

static int l2_cmp(const void *a, const void *b)
{
	const struct l2_use *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* One l2_use per L2 table, its counts added up. */
static void l2_merge(struct check *c)
{
	size_t out = 0;

	if (!c->nl2s)
		return;
	qsort(c->l2s, c->nl2s, sizeof(*c->l2s), l2_cmp);
	for (size_t i = 0; i < c->nl2s; i++) {
		if (out && c->l2s[out - 1].off == c->l2s[i].off) {
			c->l2s[out - 1].m_active += c->l2s[i].m_active;
			c->l2s[out - 1].m_all += c->l2s[i].m_all;
		} else {
			c->l2s[out++] = c->l2s[i];
		}
	}
	c->nl2s = out;
}

/* The active L1 table: itself and its entries. */
static int walk_active_l1(struct check *c)
{
	uint64_t *l1;
	int err;

	err = reference(c, c->h.l1_table_offset, (uint64_t)c->h.l1_size * 8);
	if (!err)
		err = read_l1(c, c->h.l1_table_offset, c->h.l1_size, &l1);
	if (err)
		return err;
	for (uint32_t i = 0; i < c->h.l1_size && !err; i++)
		err = l1_entry(c, l1[i], 1, true);
	free(l1);
	return err;
}

/*
 * The snapshots' L1 tables, each one as many times as snapshots name it but read once; then every
 * L2 table any L1 table names, each read once.
 */
static int walk_snapshots_and_l2s(struct check *c)
{
	struct span *s = malloc(((size_t)c->h.nb_snapshots + 1) * sizeof(*s));
	size_t n = 0;
	int err = 0;

	if (!s)
		return check_fail(c, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < c->h.nb_snapshots; i++) {
		struct snapshot *sn = &c->snapshots[i];

		if (sn->l1_offset & (c->cluster_size - 1)) {
			report(c,
			       "ERROR snapshot %s (%s) l1_offset=%#llx: L1 table is not cluster "
			       "aligned; snapshot table entry corrupted",
			       sn->id, sn->name, (unsigned long long)sn->l1_offset);
			c->r->corruptions++;
			continue;
		}
		if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
			report(c,
			       "ERROR snapshot %s (%s) l1_size=%#x: L1 table is too large; "
			       "snapshot table entry corrupted",
			       sn->id, sn->name, sn->l1_size);
			c->r->corruptions++;
			continue;
		}
		s[n++] = (struct span){ sn->l1_offset, (uint64_t)sn->l1_size * 8, 1 };
	}
	n = spans_merge(s, n);
	err = reference_tables(c, s, n);
	if (!err)
		err = walk_tables(c, s, n, snapshot_l1_entry);
	free(s);
	if (err)
		return err;
	l2_merge(c);
	for (size_t i = 0; i < c->nl2s && !err; i++)
		err = walk_l2(c, &c->l2s[i]);
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
					 "(%u bytes)",
					 i, extra);
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

/*
 * A bitmap directory entry (spec "Bitmap directory") within QEMU's limits, which QEMU checks when
 * it opens the image, before anything is walked: a table size up to 2^32 - 1 would otherwise
 * have the check read that many entries. 0, or -EINVAL with the reason in c->err.
 */
static int bitmap_entry_check(struct check *c, const uint8_t *e, uint32_t i)
{
	uint64_t table_off = qcow2_be64(e), phys;
	uint32_t table_size = qcow2_be32(e + 8), flags = qcow2_be32(e + 12);
	uint32_t gran = e[17], name_len = (uint32_t)e[18] << 8 | e[19];

	if (!table_size || !table_off || (table_off & (c->cluster_size - 1)))
		return check_fail(c, -EINVAL,
				  "bitmap %u: table offset %#llx, %u entries: not a "
				  "table",
				  i, (unsigned long long)table_off, table_size);
	phys = (uint64_t)table_size << c->cluster_bits;
	if (table_size > BITMAP_TABLE_MAX || phys > BITMAP_PHYS_MAX)
		return check_fail(c, -EINVAL,
				  "bitmap %u: a table of %u entries is too large "
				  "(at most %llu MiB of bitmap)",
				  i, table_size, BITMAP_PHYS_MAX >> 20);
	if (gran < BITMAP_GRANULARITY_MIN || gran > BITMAP_GRANULARITY_MAX)
		return check_fail(c, -EINVAL,
				  "bitmap %u: granularity of 2^%u bytes is out of "
				  "range",
				  i, gran);
	if (flags & ~BITMAP_FLAGS_KNOWN || e[16] != BITMAP_TYPE_DIRTY_TRACKING)
		return check_fail(c, -EINVAL, "bitmap %u: unknown flags %#x or type %u", i, flags,
				  e[16]);
	if (name_len > BITMAP_NAME_MAX)
		return check_fail(c, -EINVAL, "bitmap %u: name of %u bytes is too long", i,
				  name_len);
	/* One bit per granule of the disk; a bitmap in use may be stale (left by a resize). */
	if (!(flags & BITMAP_FLAG_IN_USE) && c->h.size > ((phys * 8) << gran))
		return check_fail(c, -EINVAL,
				  "bitmap %u: a table of %u entries is too small "
				  "for the disk",
				  i, table_size);
	return 0;
}

/* spec "Bitmap table": an entry names a cluster of the bitmap, or none (all zeroes, all ones). */
static int bitmap_table_entry(struct check *c, uint64_t e, uint64_t m)
{
	uint64_t off = e & BITMAP_TABLE_OFFSET_MASK;

	if ((e & BITMAP_TABLE_RESERVED_MASK) ||
	    (off && ((e & BITMAP_TABLE_ALL_ONES) || (off & (c->cluster_size - 1))))) {
		report(c, "ERROR bitmap table entry %llx is invalid", (unsigned long long)e);
		c->r->corruptions += m;
		return 0;
	}
	return reference_n(c, off, off ? c->cluster_size : 0, m);
}

/*
 * Persistent dirty bitmaps (spec "Bitmaps"): the directory, each bitmap table, its clusters. A
 * table that several bitmaps name is read once, and only where it lies in the file.
 */
static int walk_bitmaps(struct check *c)
{
	const struct qcow2_ext *ext = find_ext(&c->h, QCOW2_EXT_BITMAPS);
	uint64_t dir_size, dir_off, pos = 0;
	struct span *s = NULL;
	uint32_t nb;
	uint8_t *dir;
	size_t n = 0;
	int err;

	/* Without the autoclear bit the extension is stale and readers ignore it. */
	if (!ext || !(c->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	if (ext->len < 24)
		return check_fail(c, -EINVAL, "bitmaps header extension is too short");
	nb = qcow2_be32(ext->data);
	dir_size = qcow2_be64(ext->data + 8);
	dir_off = qcow2_be64(ext->data + 16);
	if (nb > BITMAPS_MAX)
		return check_fail(c, -EINVAL, "%u bitmaps: more than %u", nb, BITMAPS_MAX);
	if (dir_size > BITMAP_DIRECTORY_MAX)
		return check_fail(c, -EINVAL, "bitmap directory is too large");
	err = reference(c, dir_off, dir_size);
	if (err)
		return err;
	dir = malloc(dir_size + 1);
	s = malloc(((size_t)nb + 1) * sizeof(*s));
	if (!dir || !s) {
		free(dir);
		free(s);
		return check_fail(c, -ENOMEM, "out of memory");
	}
	err = read_at(c, dir, dir_size, dir_off);
	for (uint32_t i = 0; i < nb && !err; i++) {
		uint64_t entry_len;

		if (dir_size - pos < 24) {
			err = check_fail(c, -EINVAL, "bitmap directory is truncated");
			break;
		}
		entry_len = 24 + ((uint32_t)dir[pos + 18] << 8 | dir[pos + 19]) +
			    (uint64_t)qcow2_be32(dir + pos + 20);
		entry_len = (entry_len + 7) & ~7ULL;
		if (entry_len > dir_size - pos) {
			err = check_fail(c, -EINVAL, "bitmap directory is truncated");
			break;
		}
		err = bitmap_entry_check(c, dir + pos, i);
		if (err)
			break;
		s[n++] = (struct span){ qcow2_be64(dir + pos),
					(uint64_t)qcow2_be32(dir + pos + 8) * 8, 1 };
		pos += entry_len;
	}
	free(dir);
	if (!err) {
		n = spans_merge(s, n);
		err = reference_tables(c, s, n);
	}
	if (!err)
		err = walk_tables(c, s, n, bitmap_table_entry);
	free(s);
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
			report(c,
			       "ERROR refcount block %llu is not cluster aligned; refcount "
			       "table entry corrupted",
			       (unsigned long long)i);
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
 * refcount is 1, so that the driver may write in place. Checked against the stored refcounts;
 * each active L2 table read once, its findings counted once for each L1 entry naming it.
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
			report(c,
			       "ERROR OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%llx "
			       "refcount=%llu",
			       i, (unsigned long long)l1[i], (unsigned long long)rc);
			c->r->corruptions++;
		}
	}
	free(l1);
	for (size_t i = 0; i < c->nl2s && !err; i++) {
		const struct l2_use *u = &c->l2s[i];

		if (!u->m_active || stored_refcount(c, u->off >> c->cluster_bits, &rc) < 0)
			continue;
		err = read_at(c, c->table, c->cluster_size, u->off);
		for (uint64_t j = 0; j < c->l2_entries && !err; j++) {
			uint64_t e = qcow2_be64(c->table + 8 * j);
			enum cluster_type t = l2_type(e);

			if (t != NORMAL && t != ZERO_ALLOC)
				continue;
			if (stored_refcount(c, (e & QCOW2_L2E_OFFSET_MASK) >> c->cluster_bits,
					    &rc) < 0)
				continue;
			if ((rc == 1) != !!(e & QCOW2_OFLAG_COPIED)) {
				report(c,
				       "ERROR OFLAG_COPIED data cluster: l2_entry=%llx "
				       "refcount=%llu",
				       (unsigned long long)e, (unsigned long long)rc);
				c->r->corruptions += u->m_active;
			}
		}
	}
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
		err = qcow2_header_parse(&c->h, first, len, UINT64_MAX, c->err, c->errlen);
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
				  (unsigned long long)c->nb, (unsigned long long)c->cluster_size);
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
	/* In QEMU's order, but for the L2 tables, walked once after all the L1 tables. */
	err = reference(c, 0, c->cluster_size);
	if (!err)
		err = walk_active_l1(c);
	if (!err)
		err = walk_snapshots_and_l2s(c);
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

int qcow2_check(int fd, FILE *log, struct qcow2_check_result *r, char *err, size_t errlen)
{
	struct check c = { .fd = fd, .log = log, .r = r, .err = err, .errlen = errlen };
	int ret;

	memset(r, 0, sizeof(*r));
	if (errlen)
		err[0] = '\0';
	ret = run(&c);
	qcow2_header_free(&c.h);
	free(c.reftable);
	free(c.refblocks);
	free(c.refblock_offsets);
	free(c.counts);
	free(c.snapshots);
	free(c.table);
	free(c.l2s);
	return ret;
}
