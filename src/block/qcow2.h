/* SPDX-License-Identifier: MIT */
/*
 * The qcow2 format driver's insides, shared by its files: qcow2.c (ops, fast path, worker),
 * qcow2_open.c (open, backing chain, close), qcow2_cache.c (L2 and refcount block cache),
 * qcow2_refcount.c (refcounts, allocation, ordered metadata flush), qcow2_cluster.c (the worker's
 * reads, writes, copy-on-write and zeroing) and qcow2_compress.c. Internal to src/block/.
 *
 * Threads. Requests arrive on I/O threads (qcow2_submit). The fast path maps each cluster under
 * s->lock through the in-memory L1 table and the cache, without I/O, and hands contiguous host
 * extents to the engine. Anything else goes to the worker, one thread per disk taking requests in
 * order, which alone changes metadata: it loads tables, allocates, copies and flushes with
 * synchronous I/O. Only the worker writes metadata, so it reads it without the lock; it takes
 * the lock to change what the fast path reads (L1, table contents, the cache's index, file_end).
 *
 * Writes in flight (issue 22). A write the worker takes is mapped and its clusters allocated at
 * once, but its data writes go to the engine and the worker goes on with the next request: the
 * data of several allocating writes is in flight together. Their completions come back to the
 * worker (s->written), which then publishes each new cluster's L2 entry: as before, an entry
 * never points at data not yet written. Until then the request's guest clusters are busy (on
 * s->running): a write, discard or write-zeroes touching one waits (s->deferred, in order) so
 * that two requests never both allocate one guest cluster, nor copy one over the other's data.
 *
 * Ordering (docs/interop/qcow2.txt leaves it to the writer). Metadata is written back lazily by
 * qcow2_flush_metadata(): data, fdatasync, refcount blocks, fdatasync, L2 tables, fdatasync, L1,
 * fdatasync. So on disk a refcount never trails a reference, and a table never points at data
 * not yet written: a crash leaks clusters at worst. Removing a reference lowers a refcount only
 * after that flush made the removal durable (s->pending), and only once the fast path's requests
 * that may still use the cluster have completed (epochs): only then may the cluster be reused.
 * New refcount blocks and a grown refcount table are written and synced before anything uses them.
 */
#ifndef NKVM_BLOCK_QCOW2_H
#define NKVM_BLOCK_QCOW2_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/format.h"
#include "block/qcow2_header.h"

/* Backing chains deeper than this are refused (each level costs an open file and threads). */
#define QCOW2_MAX_CHAIN 32
/* Default metadata cache bound, and the fewest tables a cache holds. */
#define QCOW2_DEFAULT_CACHE_MAX (32ULL << 20)
#define QCOW2_CACHE_MIN_TABLES 4
/* The most: DISK_CACHE_SIZE_MAX of the smallest (512-byte) clusters. */
#define QCOW2_CACHE_MAX_TABLES (1U << 21)
/* The fast path splits a request into at most this many extents, else the worker takes it. */
#define QCOW2_FAST_MAX_EXTENTS 32
/* Write requests the worker has in flight at most; more wait in its queue. */
#define QCOW2_MAX_WRITES 64

struct qcow2_cache;
struct qcow2_write;
struct qcow2_chunk;

/* What an L2 entry says about a guest cluster. */
enum qcow2_kind {
	QCOW2_UNALLOCATED, /* read from the backing file, or zeroes without one */
	QCOW2_ZERO, /* reads as zeroes; host may still hold an allocated cluster */
	QCOW2_NORMAL, /* data at host */
	QCOW2_COMPRESSED, /* compressed data at host, csize bytes */
};

struct qcow2_map {
	enum qcow2_kind kind;
	uint64_t host; /* cluster offset (NORMAL, ZERO); byte offset (COMPRESSED) */
	uint64_t csize; /* COMPRESSED: bytes at host, cut at the end of the file */
	bool copied; /* refcount is 1: writable in place */
	bool partial; /* NORMAL: the file ends inside the cluster (read-only images) */
};

struct qcow2 {
	struct disk *d;
	char *path; /* for messages and backing file names */
	struct qcow2_header h;
	int mfd; /* metadata: the image reopened without O_DIRECT */
	int dfd; /* data: d->file.fd (O_DIRECT with cache=none) */
	bool readonly;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint32_t l2_bits; /* log2 of entries per L2 table */
	uint32_t rb_bits; /* log2 of entries per refcount block */
	uint32_t refcount_order;
	uint64_t refcount_max;
	uint32_t mem_align; /* of buffers the worker hands to dfd */

	pthread_mutex_t lock; /* the metadata the fast path reads; see above */
	pthread_cond_t cond; /* epoch drained, outstanding reached 0 */
	uint64_t *l1; /* host-endian entries */
	uint32_t l1_size;
	uint32_t l1_dirty_lo, l1_dirty_hi; /* dirty range, lo > hi: none */
	uint64_t *reftable; /* host-endian entries */
	uint64_t reftable_size; /* entries */
	struct qcow2_cache *l2_cache, *rb_cache;
	uint64_t file_end; /* bytes; grows as clusters are allocated */
	uint64_t free_hint; /* cluster index where the search for a free one starts */
	uint64_t *pending; /* clusters whose refcount drops at the next flush */
	size_t nr_pending, cap_pending;
	/*
	 * Fast-path requests in flight, counted per epoch. To know that no request still uses a
	 * cluster unmapped earlier, the worker opens a new epoch and waits for the old to drain.
	 */
	unsigned int epoch;
	uint64_t inflight[2];
	/* Requests accepted and not yet done: close waits for 0. */
	uint64_t outstanding;
	bool corruption_logged;

	struct disk *backing; /* read-only; NULL without one */
	uint64_t backing_size;

	/* The worker and its FIFO (linked through req->next). */
	pthread_t worker;
	bool worker_started;
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct disk_request *qhead, *qtail;
	bool stopping;
	/* Writes in flight (above); the worker's, but written, which engine threads add to. */
	struct qcow2_write *running;
	unsigned int nr_running;
	struct disk_request *deferred, *deferred_tail; /* linked through req->next */
	struct qcow2_chunk *written; /* under qlock */
	uint8_t *buf; /* a cluster, aligned for dfd: the cluster being built */
	uint8_t *cbuf; /* compressed bytes, up to 2 clusters */
	uint8_t *zbuf; /* the last decompressed cluster */
	uint64_t zbuf_host; /* its compressed offset, 0: none */
	void *zstd; /* ZSTD_DCtx, made on first use */

	/* The engine for fast-path extents: this driver's own, so it outlives the worker. */
	const struct io_engine_ops *engine_ops;
	struct io_engine *engine;
};

/* qcow2_open.c */
int qcow2_open(struct disk *d, char *err, size_t errlen);
void qcow2_close(struct disk *d);

/* qcow2.c */
int qcow2_submit(struct disk *d, struct disk_request *req);
void *qcow2_worker(void *arg);
/* A request the worker took is done: done runs, then close may go on. */
void qcow2_request_done(struct qcow2 *s, struct disk_request *req, int status);
/* Logs corruption once per disk ("nkvm: PATH: WHAT") and returns -EIO for the request. */
int qcow2_corrupt(struct qcow2 *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int qcow2_pread(struct qcow2 *s, int fd, void *buf, size_t len, uint64_t off);
int qcow2_pwrite(struct qcow2 *s, int fd, const void *buf, size_t len, uint64_t off);
int qcow2_sync(struct qcow2 *s);
/* Reads len bytes at guest offset off from the backing file (zeroes past its end), waiting. */
int qcow2_backing_read(struct qcow2 *s, uint64_t off, void *buf, size_t len);
/* The fast path's one door to the engine. */
int qcow2_engine_submit(struct qcow2 *s, struct io_queue *q, struct disk_request *req);
/*
 * Decodes an L1 entry into the L2 table's offset (0: none) and COPIED; -EIO when it is
 * misaligned, past the end of the file or over the header, L1 or refcount table. Lock held or
 * worker.
 */
int qcow2_l1e_decode(struct qcow2 *s, uint64_t e, uint64_t *l2_off, bool *copied);
int qcow2_l2e_decode(struct qcow2 *s, uint64_t e, struct qcow2_map *m);
/* True when [off, off+len) lies over the header, the L1 table or the refcount table. */
bool qcow2_overlaps_fixed(const struct qcow2 *s, uint64_t off, uint64_t len);

/* qcow2_cache.c. Lookups take the lock as said; get/put/dirty are the worker's. */
struct qcow2_cache *qcow2_cache_create(uint32_t nr_tables, uint32_t cluster_bits);
void qcow2_cache_destroy(struct qcow2_cache *c);
/* s->lock held: the table at off when cached (LRU touched), else NULL. No I/O. */
uint8_t *qcow2_cache_lookup(struct qcow2_cache *c, uint64_t off);
/*
 * The table at off, pinned: read from the file when not cached (load), else a zeroed new table
 * marked dirty. May write back dirty metadata (a full ordered flush) to make room.
 */
int qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t off, bool load,
		    uint8_t **table);
/* Whether a table at off is cached; no LRU change, so the worker may ask without the lock. */
bool qcow2_cache_contains(const struct qcow2_cache *c, uint64_t off);
void qcow2_cache_put(struct qcow2_cache *c, uint8_t *table);
void qcow2_cache_dirty(struct qcow2_cache *c, uint8_t *table);
bool qcow2_cache_has_dirty(const struct qcow2_cache *c);
/* Writes every dirty table with pwrite (no sync). */
int qcow2_cache_write_dirty(struct qcow2 *s, struct qcow2_cache *c);
/* Forgets a clean cached table (a freed cluster): later use reads it again. */
void qcow2_cache_discard(struct qcow2 *s, struct qcow2_cache *c, uint64_t off);
uint32_t qcow2_cache_tables(const struct qcow2_cache *c);

/* qcow2_refcount.c (worker) */
int qcow2_cluster_refcount(struct qcow2 *s, uint64_t cluster, uint64_t *rc);
/* Takes a free cluster, sets its refcount to 1 and extends the file over it. */
int qcow2_alloc_cluster(struct qcow2 *s, uint64_t *off);
/* Drops the refcounts of clusters at the next flush, once no reference to them is on disk. */
int qcow2_free_later(struct qcow2 *s, uint64_t off, uint64_t len);
/* The ordered writeback above; with nothing dirty, one fdatasync. */
int qcow2_flush_metadata(struct qcow2 *s);
bool qcow2_metadata_dirty(const struct qcow2 *s);

/* qcow2_cluster.c (worker) */
int qcow2_do_read(struct qcow2 *s, struct disk_request *req);
/*
 * Starts a write: maps and allocates its clusters and hands their data writes to the engine.
 * Returns IO_QUEUED (qcow2_request_done follows, from qcow2_writes_complete) or the status of
 * a request that did not start.
 */
int qcow2_write_start(struct qcow2 *s, struct disk_request *req);
/* Publishes what the data writes on list (taken from s->written) wrote; finishes requests. */
void qcow2_writes_complete(struct qcow2 *s, struct qcow2_chunk *list);
/* Whether a write in flight covers any of guest clusters first to last. */
bool qcow2_writes_busy(const struct qcow2 *s, uint64_t first, uint64_t last);
int qcow2_do_zero(struct qcow2 *s, struct disk_request *req);

/* qcow2_compress.c */
/* Inflates a compressed cluster (raw deflate or zstd) into out, exactly cluster_size bytes. */
int qcow2_decompress(struct qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out);

/* A position in an iovec array, and helpers that move bytes to and from it. */
struct qcow2_iter {
	const struct iovec *iov;
	unsigned int cnt;
	size_t skip; /* bytes of iov[0] already passed */
};

void qcow2_iter_advance(struct qcow2_iter *it, size_t len);
/* Fills out (at most max) with the next len bytes' segments; returns their number, 0: too many. */
unsigned int qcow2_iter_slice(const struct qcow2_iter *it, size_t len, struct iovec *out,
			      unsigned int max);
unsigned int qcow2_iter_count(const struct qcow2_iter *it, size_t len);
void qcow2_iter_to_buf(struct qcow2_iter *it, void *buf, size_t len);
void qcow2_iter_from_buf(struct qcow2_iter *it, const void *buf, size_t len);
void qcow2_iter_zero(struct qcow2_iter *it, size_t len);

#endif
