// SPDX-License-Identifier: MIT
/*
 * The worker's side of qcow2 requests, one guest cluster at a time: mapping through L1 and L2
 * (loading tables), reads of every kind of cluster, writes that allocate or copy on write, and
 * zeroing. Order within a write: the new cluster's data (guest bytes plus what it keeps of the
 * old content, or zeroes left as a hole past the old end of the file) is written before its L2
 * entry is published, and the old cluster's refcount drops only after a flush made the new entry
 * durable (qcow2_free_later). Writes go on asynchronously: their data writes are in flight while
 * the worker takes other requests, and the entries are published when they come back.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "block/engine.h"
#include "block/qcow2.h"

static uint64_t l2_index(const struct qcow2 *s, uint64_t gc)
{
	return gc & ((1ULL << s->l2_bits) - 1);
}

static void l1_set(struct qcow2 *s, uint64_t i, uint64_t e)
{
	pthread_mutex_lock(&s->lock);
	s->l1[i] = e;
	/* The dirty range is empty when lo > hi (UINT32_MAX, 0). */
	if (i < s->l1_dirty_lo)
		s->l1_dirty_lo = (uint32_t)i;
	if (i > s->l1_dirty_hi)
		s->l1_dirty_hi = (uint32_t)i;
	pthread_mutex_unlock(&s->lock);
}

static void l2_set(struct qcow2 *s, uint8_t *t, uint64_t gc, uint64_t e)
{
	pthread_mutex_lock(&s->lock);
	qcow2_put_be64(t + 8 * l2_index(s, gc), e);
	pthread_mutex_unlock(&s->lock);
	qcow2_cache_dirty(s->l2_cache, t);
}

/*
 * The L2 table for guest cluster gc, pinned; *t is NULL when none is allocated and !alloc. With
 * alloc, a missing table is created and a shared one (COPIED clear in its L1 entry: a snapshot
 * uses it too) is copied, and the L1 entry points at the result.
 */
static int l2_table(struct qcow2 *s, uint64_t gc, bool alloc, uint8_t **t)
{
	uint64_t i = gc >> s->l2_bits, l2_off, new_off;
	uint8_t *old, *nt;
	bool copied;
	int err;

	*t = NULL;
	if (qcow2_l1e_decode(s, s->l1[i], &l2_off, &copied))
		return qcow2_corrupt(s,
				     "L1 entry %llu (%#llx) is misaligned, past the end of the "
				     "file or over other metadata",
				     (unsigned long long)i, (unsigned long long)s->l1[i]);
	if (l2_off && (copied || !alloc))
		return qcow2_cache_get(s, s->l2_cache, l2_off, true, t);
	if (!alloc)
		return 0;
	err = qcow2_alloc_cluster(s, &new_off);
	if (err)
		return err;
	err = qcow2_cache_get(s, s->l2_cache, new_off, false, &nt);
	if (err) {
		qcow2_free_later(s, new_off, s->cluster_size);
		return err;
	}
	if (l2_off) {
		err = qcow2_cache_get(s, s->l2_cache, l2_off, true, &old);
		if (err) {
			qcow2_cache_put(s->l2_cache, nt);
			qcow2_free_later(s, new_off, s->cluster_size);
			return err;
		}
		memcpy(nt, old, s->cluster_size);
		qcow2_cache_put(s->l2_cache, old);
	}
	l1_set(s, i, new_off | QCOW2_OFLAG_COPIED);
	if (l2_off)
		qcow2_free_later(s, l2_off, s->cluster_size);
	*t = nt;
	return 0;
}

static int entry_corrupt(struct qcow2 *s, uint64_t gc, uint64_t e)
{
	return qcow2_corrupt(s,
			     "L2 entry %#llx for guest offset %#llx is invalid (misaligned, "
			     "reserved bits, past the end of the file or over metadata)",
			     (unsigned long long)e, (unsigned long long)(gc << s->cluster_bits));
}

static int map_cluster(struct qcow2 *s, uint64_t gc, struct qcow2_map *m)
{
	uint8_t *t;
	uint64_t e;
	int err = l2_table(s, gc, false, &t);

	memset(m, 0, sizeof(*m));
	m->kind = QCOW2_UNALLOCATED;
	if (err || !t)
		return err;
	e = qcow2_be64(t + 8 * l2_index(s, gc));
	qcow2_cache_put(s->l2_cache, t);
	if (qcow2_l2e_decode(s, e, m))
		return entry_corrupt(s, gc, e);
	return 0;
}

/* The decompressed cluster in s->zbuf, kept for the next request that wants it. */
static int decompress(struct qcow2 *s, const struct qcow2_map *m)
{
	int err;

	if (s->zbuf_host == m->host)
		return 0;
	s->zbuf_host = 0;
	err = qcow2_pread(s, s->mfd, s->cbuf, m->csize, m->host);
	if (err)
		return err;
	if (qcow2_decompress(s, s->cbuf, m->csize, s->zbuf))
		return qcow2_corrupt(s,
				     "compressed cluster at %#llx (%llu bytes) does not "
				     "decompress",
				     (unsigned long long)m->host, (unsigned long long)m->csize);
	s->zbuf_host = m->host;
	return 0;
}

/* A whole cluster of the image into buf, zeroes where the file ends inside it. */
static int read_host_cluster(struct qcow2 *s, uint64_t host, uint8_t *buf)
{
	uint64_t n = s->file_end - host < s->cluster_size ? s->file_end - host : s->cluster_size;

	memset(buf + n, 0, s->cluster_size - n);
	return qcow2_pread(s, s->mfd, buf, n, host);
}

/* What guest cluster gc reads as now, into buf. */
static int cluster_content(struct qcow2 *s, uint64_t gc, const struct qcow2_map *m, uint8_t *buf)
{
	int err;

	switch (m->kind) {
	case QCOW2_UNALLOCATED:
		return qcow2_backing_read(s, gc << s->cluster_bits, buf, s->cluster_size);
	case QCOW2_ZERO:
		memset(buf, 0, s->cluster_size);
		return 0;
	case QCOW2_NORMAL:
		return read_host_cluster(s, m->host, buf);
	case QCOW2_COMPRESSED:
		err = decompress(s, m);
		if (!err)
			memcpy(buf, s->zbuf, s->cluster_size);
		return err;
	}
	return -EIO;
}

static uint64_t request_len(const struct disk_request *req)
{
	uint64_t len = 0;

	for (unsigned int i = 0; i < req->iovcnt; i++)
		len += req->iov[i].iov_len;
	return len;
}

/* The next len bytes of it to or from the file at host, synchronously; it moves past them. */
static int rw_iter(struct qcow2 *s, enum disk_op op, struct qcow2_iter *it, uint64_t len,
		   uint64_t host, struct iovec *slice, unsigned int max)
{
	struct disk_request r = { .op = op, .offset = host, .iov = slice };

	r.iovcnt = qcow2_iter_slice(it, len, slice, max);
	qcow2_iter_advance(it, len);
	return io_execute(&s->d->file, &r);
}

int qcow2_do_read(struct qcow2 *s, struct disk_request *req)
{
	struct qcow2_iter it = { req->iov, req->iovcnt, 0 };
	uint64_t off = req->offset, len = request_len(req);
	struct iovec *slice = malloc((req->iovcnt + 1) * sizeof(*slice));
	int err = 0;

	if (!slice)
		return -ENOMEM;
	while (len && !err) {
		uint64_t gc = off >> s->cluster_bits, in = off & (s->cluster_size - 1);
		uint64_t n = s->cluster_size - in < len ? s->cluster_size - in : len;
		struct qcow2_map m;

		err = map_cluster(s, gc, &m);
		if (err)
			break;
		switch (m.kind) {
		case QCOW2_UNALLOCATED:
			if (s->backing) {
				err = qcow2_backing_read(s, off, s->buf, n);
				if (!err)
					qcow2_iter_from_buf(&it, s->buf, n);
			} else {
				qcow2_iter_zero(&it, n);
			}
			break;
		case QCOW2_ZERO:
			qcow2_iter_zero(&it, n);
			break;
		case QCOW2_NORMAL:
			if (!m.partial) {
				err = rw_iter(s, DISK_READ, &it, n, m.host + in, slice,
					      req->iovcnt + 1);
			} else {
				err = read_host_cluster(s, m.host, s->buf);
				if (!err)
					qcow2_iter_from_buf(&it, s->buf + in, n);
			}
			break;
		case QCOW2_COMPRESSED:
			err = decompress(s, &m);
			if (!err)
				qcow2_iter_from_buf(&it, s->zbuf + in, n);
			break;
		}
		off += n;
		len -= n;
	}
	free(slice);
	return err;
}

static bool reads_zero(const struct qcow2 *s, const struct qcow2_map *m)
{
	return m->kind == QCOW2_ZERO || (m->kind == QCOW2_UNALLOCATED && !s->backing);
}

/*
 * Zeroes n bytes at in of guest cluster gc, synchronously (write-zeroes of part of a cluster,
 * and of whole ones in version 2 images over a backing file). In place when the cluster is this
 * image's alone (COPIED); else into a new cluster that also receives what the guest cluster held
 * outside the range.
 */
static int zero_chunk(struct qcow2 *s, uint64_t gc, uint64_t in, uint64_t n)
{
	struct qcow2_map m;
	uint8_t *t;
	uint64_t e, host;
	bool reuse;
	int err = l2_table(s, gc, true, &t);

	if (err)
		return err;
	e = qcow2_be64(t + 8 * l2_index(s, gc));
	if (qcow2_l2e_decode(s, e, &m)) {
		qcow2_cache_put(s->l2_cache, t);
		return entry_corrupt(s, gc, e);
	}
	if (m.kind == QCOW2_NORMAL && m.copied && !m.partial) {
		qcow2_cache_put(s->l2_cache, t);
		memset(s->buf, 0, n);
		return qcow2_pwrite(s, s->dfd, s->buf, n, m.host + in);
	}

	/* An allocated zero cluster of ours is rewritten where it is. */
	reuse = m.kind == QCOW2_ZERO && m.host && m.copied && !m.partial;
	host = m.host;
	if (!reuse) {
		uint64_t old_end = s->file_end;

		err = qcow2_alloc_cluster(s, &host);
		if (err)
			goto out;
		/* A new cluster past the old end of the file is a hole: zeroes already. */
		if (host >= old_end && reads_zero(s, &m))
			goto written;
	}
	if (in || n != s->cluster_size)
		err = cluster_content(s, gc, &m, s->buf);
	if (!err) {
		memset(s->buf + in, 0, n);
		err = qcow2_pwrite(s, s->dfd, s->buf, s->cluster_size, host);
	}
written:
	if (err && !reuse)
		qcow2_free_later(s, host, s->cluster_size);
	if (!err)
		l2_set(s, t, gc, host | QCOW2_OFLAG_COPIED);
out:
	qcow2_cache_put(s->l2_cache, t);
	if (err || reuse)
		return err;
	/* The old reference is gone (in memory): its refcount drops after the next flush. */
	if (m.kind == QCOW2_COMPRESSED)
		qcow2_free_later(s, m.host, m.csize);
	else if (m.host)
		qcow2_free_later(s, m.host, s->cluster_size);
	return 0;
}

/*
 * Writes in flight (qcow2.h). A write request is a qcow2_write with one chunk per guest cluster;
 * each chunk's data write goes to the engine, and its completion comes back to the worker on
 * s->written, which publishes the chunk's L2 entry. The request stays on s->running, its guest
 * clusters busy, until every chunk is back.
 */
struct qcow2_chunk {
	struct disk_request io; /* first: the engine's done hands it back */
	struct qcow2_write *w;
	struct qcow2_chunk *next; /* on s->written */
	uint64_t gc;
	uint64_t host; /* the cluster written */
	struct qcow2_map old; /* what the L2 entry said before */
	bool publish; /* a new or rewritten cluster: its L2 entry is set once the data is written */
	bool fresh; /* allocated for this write: given back if it fails */
	uint8_t *buf; /* the whole cluster built here (copy-on-write, padding), or NULL */
	struct iovec one;
	int status;
};

struct qcow2_write {
	struct qcow2 *s;
	struct disk_request *req;
	struct qcow2_write *next; /* on s->running */
	uint64_t first, last; /* guest clusters */
	unsigned int pending; /* chunks in flight, and one while starting */
	int status;
	struct iovec *iov; /* the chunks' slices of the request's buffers */
	struct qcow2_chunk chunk[];
};

bool qcow2_writes_busy(const struct qcow2 *s, uint64_t first, uint64_t last)
{
	for (const struct qcow2_write *w = s->running; w; w = w->next) {
		if (w->first <= last && first <= w->last)
			return true;
	}
	return false;
}

/* Engine thread: back to the worker, which alone touches metadata. */
static void chunk_written(struct disk_request *io, int status)
{
	struct qcow2_chunk *c = (struct qcow2_chunk *)io;
	struct qcow2 *s = c->w->s;

	c->status = status;
	pthread_mutex_lock(&s->qlock);
	c->next = s->written;
	s->written = c;
	pthread_cond_signal(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
}

static void write_put(struct qcow2 *s, struct qcow2_write *w)
{
	struct qcow2_write **p = &s->running;

	if (--w->pending)
		return;
	while (*p != w)
		p = &(*p)->next;
	*p = w->next;
	s->nr_running--;
	qcow2_request_done(s, w->req, w->status);
	free(w->iov);
	free(w);
}

/*
 * Maps guest cluster gc for a write of n bytes at in (the next n bytes of it) and starts the data
 * write: in place when the cluster is this image's alone (COPIED), else into a new cluster (or an
 * allocated zero cluster of ours, rewritten where it is) that also receives what the guest
 * cluster held outside the range. *iov has room for the slice of the request's buffers.
 */
static int chunk_start(struct qcow2 *s, struct qcow2_chunk *c, uint64_t gc, uint64_t in,
		       uint64_t n, struct qcow2_iter *it, struct iovec **iov, unsigned int room)
{
	size_t align = s->d->dio_mem_align > 4096 ? s->d->dio_mem_align : 4096;
	struct qcow2_map m;
	uint64_t e, host;
	unsigned int cnt;
	uint8_t *t;
	int err = l2_table(s, gc, true, &t);

	if (err)
		return err;
	e = qcow2_be64(t + 8 * l2_index(s, gc));
	qcow2_cache_put(s->l2_cache, t);
	if (qcow2_l2e_decode(s, e, &m))
		return entry_corrupt(s, gc, e);
	c->gc = gc;
	c->old = m;
	host = m.host;
	if (!(m.kind == QCOW2_NORMAL && m.copied && !m.partial)) {
		bool hole = false;

		c->publish = true;
		if (!(m.kind == QCOW2_ZERO && m.host && m.copied && !m.partial)) {
			uint64_t old_end = s->file_end;

			err = qcow2_alloc_cluster(s, &host);
			if (err)
				return err;
			c->fresh = true;
			/*
			 * A new cluster past the old end of the file is a hole, which reads as
			 * zeroes: where the guest cluster read as zeroes too, only the guest's bytes
			 * are written, from its buffers (a 4k first write is then 4k, not 64k).
			 */
			hole = host >= old_end && reads_zero(s, &m);
		}
		/* Part of a cluster that must hold the rest too: built whole in a buffer. */
		if (!hole && n != s->cluster_size) {
			if (posix_memalign((void **)&c->buf, align, s->cluster_size)) {
				c->buf = NULL;
				err = -ENOMEM;
			} else {
				err = cluster_content(s, gc, &m, c->buf);
			}
			if (err) {
				free(c->buf);
				c->buf = NULL;
				if (c->fresh)
					qcow2_free_later(s, host, s->cluster_size);
				return err;
			}
			qcow2_iter_to_buf(it, c->buf + in, n);
			in = 0;
			n = s->cluster_size;
		}
	}
	c->host = host;
	if (c->buf) {
		c->one = (struct iovec){ c->buf, s->cluster_size };
		c->io.iov = &c->one;
		cnt = 1;
	} else {
		cnt = qcow2_iter_slice(it, n, *iov, room);
		qcow2_iter_advance(it, n);
		c->io.iov = *iov;
		*iov += cnt;
	}
	c->io.op = DISK_WRITE;
	c->io.offset = host + in;
	c->io.iovcnt = cnt;
	c->io.done = chunk_written;
	c->w->pending++;
	err = s->engine_ops->submit(s->engine, &c->io);
	if (err != IO_QUEUED)
		chunk_written(&c->io, err);
	return 0;
}

int qcow2_write_start(struct qcow2 *s, struct disk_request *req)
{
	struct qcow2_iter it = { req->iov, req->iovcnt, 0 };
	uint64_t off = req->offset, len = request_len(req), nr;
	struct qcow2_write *w;
	struct iovec *iov;
	unsigned int room;
	int err = 0;

	if (!len)
		return 0;
	nr = ((off + len - 1) >> s->cluster_bits) - (off >> s->cluster_bits) + 1;
	/* Each cluster's slice adds at most one segment to the request's (a cut one). */
	room = req->iovcnt + (unsigned int)nr;
	w = calloc(1, sizeof(*w) + nr * sizeof(w->chunk[0]));
	iov = w ? malloc(room * sizeof(*iov)) : NULL;
	if (!iov) {
		free(w);
		return -ENOMEM;
	}
	w->s = s;
	w->req = req;
	w->iov = iov;
	w->first = off >> s->cluster_bits;
	w->last = w->first + nr - 1;
	w->pending = 1;
	w->next = s->running;
	s->running = w;
	s->nr_running++;
	for (uint64_t i = 0; i < nr && !err; i++) {
		uint64_t gc = off >> s->cluster_bits, in = off & (s->cluster_size - 1);
		uint64_t n = s->cluster_size - in < len ? s->cluster_size - in : len;
		struct iovec *before = iov;

		w->chunk[i].w = w;
		err = chunk_start(s, &w->chunk[i], gc, in, n, &it, &iov, room);
		room -= (unsigned int)(iov - before);
		off += n;
		len -= n;
	}
	/* A cluster that did not start fails the request; those started still complete. */
	w->status = err;
	write_put(s, w);
	return IO_QUEUED;
}

/*
 * A chunk's data is written (or failed): its new L2 entry goes in, and the old cluster's
 * refcount drops after the next flush. A fresh cluster whose data did not make it is given back.
 */
static void chunk_finish(struct qcow2 *s, struct qcow2_chunk *c)
{
	int err = c->status;
	uint8_t *t;

	if (!err && c->publish) {
		err = l2_table(s, c->gc, true, &t);
		if (!err) {
			l2_set(s, t, c->gc, c->host | QCOW2_OFLAG_COPIED);
			qcow2_cache_put(s->l2_cache, t);
		}
	}
	if (err) {
		if (c->fresh)
			qcow2_free_later(s, c->host, s->cluster_size);
		if (!c->w->status)
			c->w->status = err;
	} else if (c->fresh) {
		/* The old reference is gone (in memory): its refcount drops after the flush. */
		if (c->old.kind == QCOW2_COMPRESSED)
			qcow2_free_later(s, c->old.host, c->old.csize);
		else if (c->old.host)
			qcow2_free_later(s, c->old.host, s->cluster_size);
	}
	free(c->buf);
	c->buf = NULL;
}

void qcow2_writes_complete(struct qcow2 *s, struct qcow2_chunk *list)
{
	while (list) {
		struct qcow2_chunk *c = list;

		list = c->next;
		chunk_finish(s, c);
		write_put(s, c->w);
	}
}

/*
 * A whole guest cluster discarded or zeroed. Version 3: the zero flag, the cluster freed.
 * Version 2 has no zero flag: without a backing file an unallocated cluster reads as zeroes;
 * with one, discard keeps the data (it only may deallocate) and write-zeroes writes them.
 */
static int zero_cluster(struct qcow2 *s, uint64_t gc, enum disk_op op)
{
	struct qcow2_map m;
	uint64_t e;
	uint8_t *t;
	int err = map_cluster(s, gc, &m);

	if (err)
		return err;
	if ((m.kind == QCOW2_ZERO && !m.host) || (m.kind == QCOW2_UNALLOCATED && !s->backing))
		return 0;
	if (s->h.version < 3 && s->backing) {
		if (op == DISK_DISCARD)
			return 0;
		return zero_chunk(s, gc, 0, s->cluster_size);
	}
	err = l2_table(s, gc, true, &t);
	if (err)
		return err;
	e = s->h.version >= 3 ? QCOW2_OFLAG_ZERO : 0;
	l2_set(s, t, gc, e);
	qcow2_cache_put(s->l2_cache, t);
	if (m.kind == QCOW2_COMPRESSED)
		return qcow2_free_later(s, m.host, m.csize);
	if (m.host)
		return qcow2_free_later(s, m.host, s->cluster_size);
	return 0;
}

int qcow2_do_zero(struct qcow2 *s, struct disk_request *req)
{
	uint64_t off = req->offset, len = req->len;
	int err = 0;

	while (len && !err) {
		uint64_t gc = off >> s->cluster_bits, in = off & (s->cluster_size - 1);
		uint64_t n = s->cluster_size - in < len ? s->cluster_size - in : len;
		uint64_t l1i = gc >> s->l2_bits;
		struct qcow2_map m;

		/* No L2 table and no backing file: reads as zeroes up to the next L1 entry. */
		if (!s->backing && !(s->l1[l1i] & QCOW2_L1E_OFFSET_MASK)) {
			uint64_t next = (l1i + 1) << (s->l2_bits + s->cluster_bits);

			n = next - off < len ? next - off : len;
		} else if (!in && (n == s->cluster_size || off + n == s->d->size)) {
			/* Whole clusters (the last may end with the disk). */
			err = zero_cluster(s, gc, req->op);
		} else if (req->op == DISK_WRITE_ZEROES) {
			err = map_cluster(s, gc, &m);
			if (!err && !reads_zero(s, &m))
				err = zero_chunk(s, gc, in, n);
		}
		off += n;
		len -= n;
	}
	return err;
}
