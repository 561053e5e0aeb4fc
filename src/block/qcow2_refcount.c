// SPDX-License-Identifier: MIT
/*
 * qcow2 refcounts (docs/interop/qcow2.txt, "Cluster mapping" and "Host cluster management"):
 * the refcount table wholly in memory, refcount blocks through the cache, allocation of free
 * clusters, growth of the refcount structures, and the ordered writeback of all metadata that
 * makes a crash leak clusters at worst (see qcow2.h). The worker's alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "lib/util.h"

static bool reserved(struct qcow2 *s, uint64_t cluster)
{
	uint64_t off = cluster << s->cluster_bits;

	/* A refcount of 0 on metadata is corruption: never hand such a cluster out. */
	return qcow2_overlaps_fixed(s, off, s->cluster_size) ||
	       qcow2_cache_contains(s->l2_cache, off) || qcow2_cache_contains(s->rb_cache, off);
}

/* The refcount block of region k, pinned, or NULL when the table has none. */
static int refblock_get(struct qcow2 *s, uint64_t k, uint8_t **blk)
{
	uint64_t off;

	*blk = NULL;
	if (k >= s->reftable_size || !s->reftable[k])
		return 0;
	off = s->reftable[k];
	if (off & (s->cluster_size - 1))
		return qcow2_corrupt(s, "refcount block offset %#llx is not cluster-aligned",
				     (unsigned long long)off);
	if (off >= s->file_end)
		return qcow2_corrupt(s, "refcount block offset %#llx is past the end of the file",
				     (unsigned long long)off);
	if (qcow2_overlaps_fixed(s, off, s->cluster_size))
		return qcow2_corrupt(s, "refcount block at %#llx overlaps the header or a table",
				     (unsigned long long)off);
	return qcow2_cache_get(s, s->rb_cache, off, true, blk);
}

int qcow2_cluster_refcount(struct qcow2 *s, uint64_t cluster, uint64_t *rc)
{
	uint8_t *blk;
	int err = refblock_get(s, cluster >> s->rb_bits, &blk);

	*rc = 0;
	if (err || !blk)
		return err;
	*rc = qcow2_refcount_get(blk, s->refcount_order, cluster & ((1ULL << s->rb_bits) - 1));
	qcow2_cache_put(s->rb_cache, blk);
	return 0;
}

/* Sets an existing refcount block's entry. */
static int refcount_set(struct qcow2 *s, uint64_t cluster, uint64_t v)
{
	uint8_t *blk;
	int err = refblock_get(s, cluster >> s->rb_bits, &blk);

	if (err)
		return err;
	if (!blk)
		return qcow2_corrupt(s, "cluster %#llx has no refcount block",
				     (unsigned long long)cluster);
	qcow2_refcount_set(blk, s->refcount_order, cluster & ((1ULL << s->rb_bits) - 1), v);
	qcow2_cache_dirty(s->rb_cache, blk);
	qcow2_cache_put(s->rb_cache, blk);
	return 0;
}

/* Makes the file at least end bytes long, so that no entry ever points past its end. */
static int extend(struct qcow2 *s, uint64_t end)
{
	if (end <= s->file_end)
		return 0;
	if (s->d->file.blockdev)
		return -ENOSPC;
	while (ftruncate(s->mfd, end)) {
		if (errno != EINTR)
			return -errno;
	}
	pthread_mutex_lock(&s->lock);
	s->file_end = end;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/*
 * Region k (the clusters one refcount block counts) has no block: make one at cluster c, the
 * first free one of the region, counting itself. Written and synced, then the table entry too,
 * before any refcount lives in it.
 */
static int refblock_create(struct qcow2 *s, uint64_t k, uint64_t c)
{
	uint64_t off = c << s->cluster_bits;
	uint8_t *blk = calloc(1, s->cluster_size), entry[8];
	int err;

	if (!blk)
		return -ENOMEM;
	qcow2_refcount_set(blk, s->refcount_order, c & ((1ULL << s->rb_bits) - 1), 1);
	err = extend(s, off + s->cluster_size);
	if (!err)
		err = qcow2_pwrite(s, s->mfd, blk, s->cluster_size, off);
	free(blk);
	if (!err)
		err = qcow2_sync(s);
	qcow2_put_be64(entry, off);
	if (!err)
		err = qcow2_pwrite(s, s->mfd, entry, 8, s->h.refcount_table_offset + 8 * k);
	if (!err)
		err = qcow2_sync(s);
	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	s->reftable[k] = off;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/*
 * The refcount table covers fewer regions than needed (k is past its end). A new, larger table
 * goes past everything in use, followed by refcount blocks for the regions it and they occupy
 * (all new, as they lie past the old table's reach), each block counting those clusters. All are
 * written and synced, then the header is switched to the new table and synced; only then are the
 * old table's clusters freed.
 */
static int reftable_grow(struct qcow2 *s, uint64_t k)
{
	uint64_t cs = s->cluster_size, epb = 1ULL << s->rb_bits, per_cluster = cs / 8;
	uint64_t old_n = s->reftable_size, old_off = s->h.refcount_table_offset;
	uint64_t old_clusters = s->h.refcount_table_clusters;
	uint64_t a = ALIGN_UP(s->file_end, cs) >> s->cluster_bits, n, m = 0, new_n, first;
	uint8_t *table = NULL, *blocks = NULL, hdr[12];
	uint64_t *mem = NULL;
	int err;

	if (a < old_n * epb)
		a = old_n * epb;
	new_n = old_n * 2 > k + 1 ? old_n * 2 : k + 1;
	for (;;) {
		uint64_t regions;

		n = (new_n + per_cluster - 1) / per_cluster;
		for (;;) {
			regions = (a + n + m - 1) / epb - a / epb + 1;
			if (regions == m)
				break;
			m = regions;
		}
		if ((a + n + m - 1) / epb < new_n)
			break;
		new_n = (a + n + m - 1) / epb + 1;
	}
	new_n = n * per_cluster;
	if (n * cs > QCOW2_MAX_REFTABLE_BYTES)
		return qcow2_corrupt(s, "image too large: the refcount table would exceed %llu MiB",
				     QCOW2_MAX_REFTABLE_BYTES >> 20);

	table = calloc(n, cs);
	blocks = calloc(m, cs);
	mem = calloc(new_n, sizeof(*mem));
	if (!table || !blocks || !mem) {
		err = -ENOMEM;
		goto out;
	}
	memcpy(mem, s->reftable, old_n * sizeof(*mem));
	first = a / epb;
	for (uint64_t j = 0; j < m; j++)
		mem[first + j] = (a + n + j) << s->cluster_bits;
	for (uint64_t i = 0; i < new_n; i++)
		qcow2_put_be64(table + 8 * i, mem[i]);
	for (uint64_t c = a; c < a + n + m; c++)
		qcow2_refcount_set(blocks + (c / epb - first) * cs, s->refcount_order, c % epb, 1);

	err = extend(s, (a + n + m) << s->cluster_bits);
	if (!err)
		err = qcow2_pwrite(s, s->mfd, blocks, m * cs, (a + n) << s->cluster_bits);
	if (!err)
		err = qcow2_pwrite(s, s->mfd, table, n * cs, a << s->cluster_bits);
	if (!err)
		err = qcow2_sync(s);
	qcow2_put_be64(hdr, a << s->cluster_bits);
	qcow2_put_be32(hdr + 8, (uint32_t)n);
	if (!err)
		err = qcow2_pwrite(s, s->mfd, hdr, sizeof(hdr), 48);
	if (!err)
		err = qcow2_sync(s);
	if (err)
		goto out;

	pthread_mutex_lock(&s->lock);
	free(s->reftable);
	s->reftable = mem;
	s->reftable_size = new_n;
	s->h.refcount_table_offset = a << s->cluster_bits;
	s->h.refcount_table_clusters = (uint32_t)n;
	pthread_mutex_unlock(&s->lock);
	mem = NULL;

	/* The header no longer names the old table, durably: its clusters are free now. */
	for (uint64_t i = 0; i < old_clusters && !err; i++) {
		uint64_t c = (old_off >> s->cluster_bits) + i, rc;

		err = qcow2_cluster_refcount(s, c, &rc);
		if (!err && rc)
			err = refcount_set(s, c, rc - 1);
		if (!err && rc == 1 && c < s->free_hint)
			s->free_hint = c;
	}
out:
	free(table);
	free(blocks);
	free(mem);
	return err;
}

int qcow2_alloc_cluster(struct qcow2 *s, uint64_t *off)
{
	uint64_t epb = 1ULL << s->rb_bits, c = s->free_hint ? s->free_hint : 1;
	int err;

	for (;;) {
		uint64_t k = c >> s->rb_bits, end = (k + 1) * epb;
		uint8_t *blk;

		if (k >= s->reftable_size) {
			err = reftable_grow(s, k);
			if (err)
				return err;
			continue;
		}
		if (!s->reftable[k]) {
			uint64_t eof = ALIGN_UP(s->file_end, s->cluster_size) >> s->cluster_bits;

			/*
			 * No refcount block: the clusters count as free. Inside the file that is
			 * only seen in damaged images, whose clusters may well be in use: the
			 * new block and what follows it go past the end of the file instead.
			 */
			if (c < eof) {
				c = eof;
				continue;
			}
			if (reserved(s, c)) {
				c++;
				continue;
			}
			err = refblock_create(s, k, c);
			if (err)
				return err;
			c++;
			continue;
		}
		err = refblock_get(s, k, &blk);
		if (err)
			return err;
		for (; c < end; c++) {
			if (qcow2_refcount_get(blk, s->refcount_order, c % epb) || reserved(s, c))
				continue;
			err = extend(s, (c + 1) << s->cluster_bits);
			if (!err) {
				qcow2_refcount_set(blk, s->refcount_order, c % epb, 1);
				qcow2_cache_dirty(s->rb_cache, blk);
			}
			qcow2_cache_put(s->rb_cache, blk);
			if (err)
				return err;
			s->free_hint = c + 1;
			*off = c << s->cluster_bits;
			return 0;
		}
		qcow2_cache_put(s->rb_cache, blk);
	}
}

int qcow2_free_later(struct qcow2 *s, uint64_t off, uint64_t len)
{
	uint64_t first = off >> s->cluster_bits;
	uint64_t last = (off + len - 1) >> s->cluster_bits;

	for (uint64_t c = first; c <= last; c++) {
		if (s->nr_pending == s->cap_pending) {
			size_t cap = s->cap_pending ? 2 * s->cap_pending : 64;
			uint64_t *p = realloc(s->pending, cap * sizeof(*p));

			if (!p)
				return -ENOMEM; /* the cluster leaks; nothing worse */
			s->pending = p;
			s->cap_pending = cap;
		}
		s->pending[s->nr_pending++] = c;
	}
	return 0;
}

/* Waits until the fast-path requests started before now have completed. */
static void epoch_drain(struct qcow2 *s)
{
	unsigned int e;

	pthread_mutex_lock(&s->lock);
	e = s->epoch & 1;
	s->epoch++;
	while (s->inflight[e])
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

/*
 * The references to the pending clusters are gone from the disk, and no request in flight
 * still uses them: lower their refcounts. Clusters reaching 0 may be reused, and their space
 * goes back to the file system.
 */
static int apply_pending(struct qcow2 *s)
{
	uint64_t *list = s->pending;
	size_t nr = s->nr_pending;
	int err = 0;

	/* Taken off the list first: loading a refcount block below may flush again. */
	s->pending = NULL;
	s->nr_pending = s->cap_pending = 0;
	epoch_drain(s);
	for (size_t i = 0; i < nr; i++) {
		uint64_t c = list[i], off = c << s->cluster_bits, rc;

		err = qcow2_cluster_refcount(s, c, &rc);
		if (err)
			break;
		if (!rc)
			continue; /* already wrong on disk; lowering it further cannot help */
		err = refcount_set(s, c, rc - 1);
		if (err)
			break;
		if (rc > 1)
			continue;
		if (c < s->free_hint)
			s->free_hint = c;
		qcow2_cache_discard(s, s->l2_cache, off);
		s->zbuf_host = 0; /* its bytes may have lived here */
		/* Only a hint to the file system: a failed punch leaves the space allocated. */
		if (!s->d->file.blockdev && off < s->file_end &&
		    fallocate(s->mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
			      s->cluster_size))
			continue;
	}
	free(list);
	return err;
}

bool qcow2_metadata_dirty(const struct qcow2 *s)
{
	return qcow2_cache_has_dirty(s->rb_cache) || qcow2_cache_has_dirty(s->l2_cache) ||
	       s->l1_dirty_lo <= s->l1_dirty_hi || s->nr_pending;
}

static int write_l1(struct qcow2 *s)
{
	uint32_t lo = s->l1_dirty_lo, hi = s->l1_dirty_hi, n = hi - lo + 1;
	uint8_t *buf = malloc((size_t)n * 8);
	int err;

	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		qcow2_put_be64(buf + 8 * i, s->l1[lo + i]);
	err = qcow2_pwrite(s, s->mfd, buf, (size_t)n * 8, s->h.l1_table_offset + 8ULL * lo);
	free(buf);
	if (!err) {
		s->l1_dirty_lo = UINT32_MAX;
		s->l1_dirty_hi = 0;
	}
	return err;
}

int qcow2_flush_metadata(struct qcow2 *s)
{
	int err;

	/* Guest data first: no table may point at data the disk does not have yet. */
	err = qcow2_sync(s);
	if (err || !qcow2_metadata_dirty(s))
		return err;
	if (qcow2_cache_has_dirty(s->rb_cache)) {
		err = qcow2_cache_write_dirty(s, s->rb_cache);
		if (!err)
			err = qcow2_sync(s);
		if (err)
			return err;
	}
	if (qcow2_cache_has_dirty(s->l2_cache)) {
		err = qcow2_cache_write_dirty(s, s->l2_cache);
		if (!err)
			err = qcow2_sync(s);
		if (err)
			return err;
	}
	if (s->l1_dirty_lo <= s->l1_dirty_hi) {
		err = write_l1(s);
		if (!err)
			err = qcow2_sync(s);
		if (err)
			return err;
	}
	/* Written at the next flush (a close flushes twice). */
	return s->nr_pending ? apply_pending(s) : 0;
}
