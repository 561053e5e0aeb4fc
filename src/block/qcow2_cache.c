// SPDX-License-Identifier: MIT
/*
 * The qcow2 metadata cache: a fixed number of cluster-sized tables (L2 tables in one cache,
 * refcount blocks in another), found by their file offset through a hash, evicted least recently
 * used first. The fast path only looks up (under s->lock, no I/O). The worker pins the tables it
 * works on, loads what is missing and marks what it changes dirty; evicting a dirty table first
 * writes back all metadata in order (qcow2_flush_metadata), so eviction never breaks ordering.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

#define NONE UINT32_MAX

struct qcow2_cache_slot {
	uint64_t offset; /* 0: the slot holds no table */
	uint64_t lru; /* tick of the last use */
	uint32_t next; /* hash chain */
	uint32_t pins;
	bool dirty;
};

struct qcow2_cache {
	uint32_t nr;
	uint32_t cluster_bits;
	uint32_t bucket_bits;
	uint32_t nr_dirty;
	uint64_t tick;
	struct qcow2_cache_slot *slots;
	uint32_t *buckets;
	uint8_t *mem;
};

struct qcow2_cache *qcow2_cache_create(uint32_t nr, uint32_t cluster_bits)
{
	struct qcow2_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (nr < QCOW2_CACHE_MIN_TABLES)
		nr = QCOW2_CACHE_MIN_TABLES;
	/* Twice as many buckets as tables, a power of two that must fit in 32 bits. */
	if (nr > QCOW2_CACHE_MAX_TABLES) {
		free(c);
		return NULL;
	}
	c->nr = nr;
	c->cluster_bits = cluster_bits;
	c->bucket_bits = 1;
	while ((1ULL << c->bucket_bits) < 2ULL * nr)
		c->bucket_bits++;
	c->slots = calloc(nr, sizeof(*c->slots));
	c->buckets = malloc(sizeof(*c->buckets) << c->bucket_bits);
	/* calloc: pages of tables never used are never touched. */
	c->mem = calloc(nr, (size_t)1 << cluster_bits);
	if (!c->slots || !c->buckets || !c->mem) {
		qcow2_cache_destroy(c);
		return NULL;
	}
	memset(c->buckets, 0xff, sizeof(*c->buckets) << c->bucket_bits);
	return c;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
	if (!c)
		return;
	free(c->slots);
	free(c->buckets);
	free(c->mem);
	free(c);
}

uint32_t qcow2_cache_tables(const struct qcow2_cache *c)
{
	return c->nr;
}

static uint32_t bucket(const struct qcow2_cache *c, uint64_t off)
{
	return (uint32_t)(((off >> c->cluster_bits) * 0x9e3779b97f4a7c15ULL) >>
			  (64 - c->bucket_bits));
}

static uint8_t *slot_mem(const struct qcow2_cache *c, uint32_t i)
{
	return c->mem + ((size_t)i << c->cluster_bits);
}

static uint32_t slot_of(const struct qcow2_cache *c, const uint8_t *table)
{
	return (uint32_t)((size_t)(table - c->mem) >> c->cluster_bits);
}

static uint32_t find(const struct qcow2_cache *c, uint64_t off)
{
	for (uint32_t i = c->buckets[bucket(c, off)]; i != NONE; i = c->slots[i].next) {
		if (c->slots[i].offset == off)
			return i;
	}
	return NONE;
}

static void unhash(struct qcow2_cache *c, uint32_t i)
{
	uint32_t *p = &c->buckets[bucket(c, c->slots[i].offset)];

	while (*p != i)
		p = &c->slots[*p].next;
	*p = c->slots[i].next;
	c->slots[i].offset = 0;
}

static void hash(struct qcow2_cache *c, uint32_t i, uint64_t off)
{
	uint32_t b = bucket(c, off);

	c->slots[i].offset = off;
	c->slots[i].next = c->buckets[b];
	c->buckets[b] = i;
}

uint8_t *qcow2_cache_lookup(struct qcow2_cache *c, uint64_t off)
{
	uint32_t i = find(c, off);

	if (i == NONE)
		return NULL;
	c->slots[i].lru = ++c->tick;
	return slot_mem(c, i);
}

bool qcow2_cache_contains(const struct qcow2_cache *c, uint64_t off)
{
	return find(c, off) != NONE;
}

/* A slot to reuse: an empty one, else the least recently used unpinned one. Lock held. */
static uint32_t victim(const struct qcow2_cache *c)
{
	uint32_t best = NONE;

	for (uint32_t i = 0; i < c->nr; i++) {
		const struct qcow2_cache_slot *sl = &c->slots[i];

		if (sl->pins)
			continue;
		if (!sl->offset)
			return i;
		if (best == NONE || sl->lru < c->slots[best].lru)
			best = i;
	}
	return best;
}

int qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t off, bool load,
		    uint8_t **table)
{
	uint32_t i;
	int err;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		i = find(c, off);
		if (i != NONE) {
			c->slots[i].pins++;
			c->slots[i].lru = ++c->tick;
			if (!load) {
				/* A cluster reused for a new table: what was cached is stale. */
				memset(slot_mem(c, i), 0, (size_t)1 << c->cluster_bits);
				if (!c->slots[i].dirty)
					c->nr_dirty++;
				c->slots[i].dirty = true;
			}
			pthread_mutex_unlock(&s->lock);
			*table = slot_mem(c, i);
			return 0;
		}
		i = victim(c);
		if (i == NONE) {
			pthread_mutex_unlock(&s->lock);
			return qcow2_corrupt(s, "metadata cache too small: every table is in use");
		}
		if (!c->slots[i].dirty)
			break;
		/* Written back in order with everything else, then the slot is clean. */
		pthread_mutex_unlock(&s->lock);
		err = qcow2_flush_metadata(s);
		if (err)
			return err;
		pthread_mutex_lock(&s->lock);
	}
	if (c->slots[i].offset)
		unhash(c, i);
	c->slots[i].pins = 1; /* out of the hash and pinned: nobody sees it while it fills */
	pthread_mutex_unlock(&s->lock);

	if (load) {
		uint64_t len = (uint64_t)1 << c->cluster_bits;

		/* A table the file ends inside of (read-only images) reads as zeroes beyond. */
		if (off + len > s->file_end) {
			memset(slot_mem(c, i), 0, len);
			len = off < s->file_end ? s->file_end - off : 0;
		}
		err = len ? qcow2_pread(s, s->mfd, slot_mem(c, i), len, off) : 0;
		if (err) {
			pthread_mutex_lock(&s->lock);
			c->slots[i].pins = 0;
			pthread_mutex_unlock(&s->lock);
			return err;
		}
	} else {
		memset(slot_mem(c, i), 0, (size_t)1 << c->cluster_bits);
	}
	pthread_mutex_lock(&s->lock);
	hash(c, i, off);
	c->slots[i].lru = ++c->tick;
	c->slots[i].dirty = !load;
	if (!load)
		c->nr_dirty++;
	pthread_mutex_unlock(&s->lock);
	*table = slot_mem(c, i);
	return 0;
}

void qcow2_cache_put(struct qcow2_cache *c, uint8_t *table)
{
	c->slots[slot_of(c, table)].pins--;
}

void qcow2_cache_dirty(struct qcow2_cache *c, uint8_t *table)
{
	struct qcow2_cache_slot *sl = &c->slots[slot_of(c, table)];

	if (!sl->dirty)
		c->nr_dirty++;
	sl->dirty = true;
}

bool qcow2_cache_has_dirty(const struct qcow2_cache *c)
{
	return c->nr_dirty > 0;
}

int qcow2_cache_write_dirty(struct qcow2 *s, struct qcow2_cache *c)
{
	int err;

	for (uint32_t i = 0; i < c->nr && c->nr_dirty; i++) {
		struct qcow2_cache_slot *sl = &c->slots[i];

		if (!sl->dirty)
			continue;
		err = qcow2_pwrite(s, s->mfd, slot_mem(c, i), (size_t)1 << c->cluster_bits,
				   sl->offset);
		if (err)
			return err;
		sl->dirty = false;
		c->nr_dirty--;
	}
	return 0;
}

void qcow2_cache_discard(struct qcow2 *s, struct qcow2_cache *c, uint64_t off)
{
	uint32_t i;

	pthread_mutex_lock(&s->lock);
	i = find(c, off);
	if (i != NONE && !c->slots[i].pins) {
		if (c->slots[i].dirty)
			c->nr_dirty--;
		c->slots[i].dirty = false;
		unhash(c, i);
	}
	pthread_mutex_unlock(&s->lock);
}
