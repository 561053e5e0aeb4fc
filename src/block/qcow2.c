// SPDX-License-Identifier: MIT
/*
 * The qcow2 format driver's request path. A request whose every cluster the cached metadata
 * resolves, and which needs no allocation, goes straight to the engine as extents of the image
 * file (the fast path: no I/O under the lock, no waiting). Everything else (cache misses,
 * allocating writes, copy-on-write, compressed clusters, discard and write-zeroes, flush) goes to
 * the disk's worker thread, which does it with synchronous I/O. qcow2.h says why this is safe.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "lib/log.h"
#include "lib/util.h"

int qcow2_corrupt(struct qcow2 *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	bool first;

	pthread_mutex_lock(&s->lock);
	first = !s->corruption_logged;
	s->corruption_logged = true;
	pthread_mutex_unlock(&s->lock);
	if (first) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		nkvm_err("%s: %s", s->path, msg);
	}
	return -EIO;
}

int qcow2_pread(struct qcow2 *s, int fd, void *buf, size_t len, uint64_t off)
{
	return pread_full(fd, buf, len, off);
}

int qcow2_pwrite(struct qcow2 *s, int fd, const void *buf, size_t len, uint64_t off)
{
	return pwrite_full(fd, buf, len, off);
}

/* One file, two descriptors: fdatasync on either covers the data written through both. */
int qcow2_sync(struct qcow2 *s)
{
	while (fdatasync(s->mfd)) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

bool qcow2_overlaps_fixed(const struct qcow2 *s, uint64_t off, uint64_t len)
{
	uint64_t l1 = s->h.l1_table_offset, l1_len = (uint64_t)s->l1_size * 8;
	uint64_t rt = s->h.refcount_table_offset;
	uint64_t rt_len = (uint64_t)s->h.refcount_table_clusters << s->cluster_bits;

	return off < s->cluster_size || (l1_len && off < l1 + l1_len && l1 < off + len) ||
	       (off < rt + rt_len && rt < off + len);
}

int qcow2_l1e_decode(struct qcow2 *s, uint64_t e, uint64_t *l2_off, bool *copied)
{
	uint64_t off = e & QCOW2_L1E_OFFSET_MASK;

	*l2_off = off;
	*copied = e & QCOW2_OFLAG_COPIED;
	if (!off)
		return 0;
	if ((off & (s->cluster_size - 1)) || off >= s->file_end ||
	    qcow2_overlaps_fixed(s, off, s->cluster_size))
		return -EIO;
	return 0;
}

int qcow2_l2e_decode(struct qcow2 *s, uint64_t e, struct qcow2_map *m)
{
	memset(m, 0, sizeof(*m));
	if (e & QCOW2_OFLAG_COMPRESSED) {
		/* The offset's width leaves cluster_bits - 8 bits for the count of sectors. */
		uint32_t x = 62 - (s->cluster_bits - 8);
		uint64_t host = e & ((1ULL << x) - 1);
		uint64_t sectors = ((e >> x) & ((1ULL << (s->cluster_bits - 8)) - 1)) + 1;
		uint64_t end = (host & ~511ULL) + sectors * 512;

		if (host < s->cluster_size || host >= s->file_end)
			return -EIO;
		m->kind = QCOW2_COMPRESSED;
		m->host = host;
		/* The last compressed cluster may end with the file inside its last sector. */
		m->csize = (end < s->file_end ? end : s->file_end) - host;
		return 0;
	}
	/* Bits 1-8 and 56-61 are reserved; bit 0 too before version 3. */
	if (e & (0x3f000000000001feULL | (s->h.version < 3 ? QCOW2_OFLAG_ZERO : 0)))
		return -EIO;
	m->host = e & QCOW2_L2E_OFFSET_MASK;
	m->copied = e & QCOW2_OFLAG_COPIED;
	if (m->host) {
		if ((m->host & (s->cluster_size - 1)) || m->host >= s->file_end ||
		    qcow2_overlaps_fixed(s, m->host, s->cluster_size) ||
		    qcow2_cache_contains(s->l2_cache, m->host) ||
		    qcow2_cache_contains(s->rb_cache, m->host))
			return -EIO;
		m->partial = m->host + s->cluster_size > s->file_end;
	}
	if (e & QCOW2_OFLAG_ZERO)
		m->kind = QCOW2_ZERO;
	else
		m->kind = m->host ? QCOW2_NORMAL : QCOW2_UNALLOCATED;
	return 0;
}

/* iovec walking */

void qcow2_iter_advance(struct qcow2_iter *it, size_t len)
{
	while (len && it->cnt) {
		size_t room = it->iov->iov_len - it->skip;

		if (len < room) {
			it->skip += len;
			return;
		}
		len -= room;
		it->iov++;
		it->cnt--;
		it->skip = 0;
	}
}

unsigned int qcow2_iter_slice(const struct qcow2_iter *it, size_t len, struct iovec *out,
			      unsigned int max)
{
	const struct iovec *v = it->iov;
	size_t skip = it->skip;
	unsigned int n = 0;

	for (unsigned int i = 0; len && i < it->cnt; i++, v++, skip = 0) {
		size_t take = v->iov_len - skip;

		if (!take)
			continue;
		if (n == max)
			return 0;
		if (take > len)
			take = len;
		out[n].iov_base = (uint8_t *)v->iov_base + skip;
		out[n].iov_len = take;
		n++;
		len -= take;
	}
	return n;
}

unsigned int qcow2_iter_count(const struct qcow2_iter *it, size_t len)
{
	const struct iovec *v = it->iov;
	size_t skip = it->skip;
	unsigned int n = 0;

	for (unsigned int i = 0; len && i < it->cnt; i++, v++, skip = 0) {
		size_t take = v->iov_len - skip;

		if (!take)
			continue;
		n++;
		len -= take < len ? take : len;
	}
	return n;
}

static void iter_copy(struct qcow2_iter *it, uint8_t *buf, const uint8_t *from, size_t len)
{
	while (len && it->cnt) {
		size_t take = it->iov->iov_len - it->skip;
		uint8_t *p = (uint8_t *)it->iov->iov_base + it->skip;

		if (!take) { /* an empty segment */
			it->iov++;
			it->cnt--;
			it->skip = 0;
			continue;
		}
		if (take > len)
			take = len;
		if (buf)
			memcpy(buf, p, take);
		else if (from)
			memcpy(p, from, take);
		else
			memset(p, 0, take);
		if (buf)
			buf += take;
		if (from)
			from += take;
		len -= take;
		qcow2_iter_advance(it, take);
	}
}

void qcow2_iter_to_buf(struct qcow2_iter *it, void *buf, size_t len)
{
	iter_copy(it, buf, NULL, len);
}

void qcow2_iter_from_buf(struct qcow2_iter *it, const void *buf, size_t len)
{
	iter_copy(it, NULL, buf, len);
}

void qcow2_iter_zero(struct qcow2_iter *it, size_t len)
{
	iter_copy(it, NULL, NULL, len);
}

/* Backing reads, waited for by the worker. */

struct qcow2_wait {
	struct disk_request req;
	struct iovec iov;
	sem_t done;
	int status;
};

static void wait_done(struct disk_request *req, int status)
{
	struct qcow2_wait *w = (struct qcow2_wait *)req;

	w->status = status;
	sem_post(&w->done);
}

int qcow2_backing_read(struct qcow2 *s, uint64_t off, void *buf, size_t len)
{
	struct qcow2_wait w = { 0 };
	size_t n = 0;

	if (s->backing && off < s->backing_size)
		n = s->backing_size - off < len ? s->backing_size - off : len;
	memset((uint8_t *)buf + n, 0, len - n);
	if (!n)
		return 0;
	w.iov = (struct iovec){ buf, n };
	w.req = (struct disk_request){
		.op = DISK_READ, .offset = off, .iov = &w.iov, .iovcnt = 1, .done = wait_done
	};
	sem_init(&w.done, 0, 0);
	disk_submit(s->backing, &w.req);
	while (sem_wait(&w.done))
		;
	sem_destroy(&w.done);
	return w.status;
}

/* The fast path */

enum extent_kind { EXT_DATA, EXT_ZERO, EXT_BACKING };

struct extent {
	enum extent_kind kind;
	uint64_t len;
	uint64_t pos; /* DATA: file offset; BACKING: guest offset */
};

struct child {
	struct disk_request req;
	struct parent *p;
	bool backing;
};

struct parent {
	struct qcow2 *s;
	struct disk_request *req;
	atomic_uint remaining;
	atomic_int status;
	unsigned int epoch;
	struct child children[]; /* then their iovecs */
};

/*
 * The one place the fast path hands file I/O to an engine: to the submitting virtqueue's own
 * context (its io_uring ring or AIO context) when there is one, else to the engine every
 * thread shares.
 */
int qcow2_engine_submit(struct qcow2 *s, struct io_queue *q, struct disk_request *req)
{
	if (q)
		return s->d->engine_ops->queue_submit(q, req);
	return s->engine_ops->submit(s->engine, req);
}

/* Done with a request the driver accepted: close waits for the count to reach 0. */
static void request_finished(struct qcow2 *s, int epoch)
{
	pthread_mutex_lock(&s->lock);
	if (epoch >= 0 && !--s->inflight[epoch])
		pthread_cond_broadcast(&s->cond);
	if (!--s->outstanding)
		pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void parent_put(struct parent *p, int status)
{
	int expected = 0;

	if (status)
		atomic_compare_exchange_strong(&p->status, &expected, status);
	if (atomic_fetch_sub(&p->remaining, 1) != 1)
		return;
	/* The guest's done first: requests it submits keep s->outstanding above 0. */
	p->req->done(p->req, atomic_load(&p->status));
	request_finished(p->s, (int)p->epoch);
	free(p);
}

static void child_done(struct disk_request *req, int status)
{
	parent_put(((struct child *)req)->p, status);
}

/* Adds [pos, pos+len) of kind to the extents, merging with the last when contiguous. */
static bool extent_add(struct extent *x, unsigned int *n, enum extent_kind kind, uint64_t pos,
		       uint64_t len)
{
	struct extent *last = *n ? &x[*n - 1] : NULL;

	if (last && last->kind == kind && (kind == EXT_ZERO || last->pos + last->len == pos)) {
		last->len += len;
		return true;
	}
	if (*n == QCOW2_FAST_MAX_EXTENTS)
		return false;
	x[(*n)++] = (struct extent){ kind, len, pos };
	return true;
}

/*
 * Maps [off, off+len) through the cached metadata into extents. False when some cluster needs
 * the worker: a table not cached, a corrupt entry, an allocation, a compressed cluster.
 */
static bool fast_map(struct qcow2 *s, bool write, uint64_t off, uint64_t len, struct extent *x,
		     unsigned int *n)
{
	uint64_t mask = s->cluster_size - 1;

	*n = 0;
	while (len) {
		uint64_t gc = off >> s->cluster_bits, in = off & mask;
		uint64_t chunk = s->cluster_size - in < len ? s->cluster_size - in : len;
		uint64_t l2_off;
		struct qcow2_map m = { .kind = QCOW2_UNALLOCATED };
		bool copied, ok;
		uint8_t *t;

		/* A write through a shared L2 table (a snapshot's too) copies the table first. */
		if (qcow2_l1e_decode(s, s->l1[gc >> s->l2_bits], &l2_off, &copied) ||
		    (write && !copied))
			return false;
		if (l2_off) {
			t = qcow2_cache_lookup(s->l2_cache, l2_off);
			if (!t)
				return false;
			t += 8 * (gc & ((1ULL << s->l2_bits) - 1));
			if (qcow2_l2e_decode(s, qcow2_be64(t), &m))
				return false;
		}
		switch (m.kind) {
		case QCOW2_NORMAL:
			if (m.partial || (write && !m.copied))
				return false;
			ok = extent_add(x, n, EXT_DATA, m.host + in, chunk);
			break;
		case QCOW2_ZERO:
			ok = !write && extent_add(x, n, EXT_ZERO, 0, chunk);
			break;
		case QCOW2_UNALLOCATED:
			if (write)
				return false;
			if (s->backing && off < s->backing_size) {
				uint64_t b = s->backing_size - off < chunk ? s->backing_size - off :
									     chunk;

				ok = extent_add(x, n, EXT_BACKING, off, b);
				if (ok && b < chunk)
					ok = extent_add(x, n, EXT_ZERO, 0, chunk - b);
			} else {
				ok = extent_add(x, n, EXT_ZERO, 0, chunk);
			}
			break;
		default:
			return false;
		}
		if (!ok)
			return false;
		off += chunk;
		len -= chunk;
	}
	return true;
}

static void worker_queue(struct qcow2 *s, struct disk_request *req)
{
	pthread_mutex_lock(&s->lock);
	s->outstanding++;
	pthread_mutex_unlock(&s->lock);
	req->next = NULL;
	pthread_mutex_lock(&s->qlock);
	if (s->qtail)
		s->qtail->next = req;
	else
		s->qhead = req;
	s->qtail = req;
	pthread_cond_signal(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
}

/* q: the submitting thread's engine context, or NULL. The worker never sees q. */
static int submit_on(struct disk *d, struct io_queue *q, struct disk_request *req)
{
	struct qcow2 *s = d->format_priv;
	struct extent x[QCOW2_FAST_MAX_EXTENTS];
	unsigned int n = 0, nr_io = 0, nr_iov = 0, epoch;
	struct qcow2_iter it = { req->iov, req->iovcnt, 0 };
	uint64_t len = 0;
	struct parent *p;
	struct iovec *iov;

	if (d->direct && !disk_dio_aligned(d, req))
		return -EINVAL;
	if (req->op != DISK_READ && req->op != DISK_WRITE) {
		worker_queue(s, req);
		return IO_QUEUED;
	}
	for (unsigned int i = 0; i < req->iovcnt; i++)
		len += req->iov[i].iov_len;
	if (!len)
		return 0;

	pthread_mutex_lock(&s->lock);
	if (!fast_map(s, req->op == DISK_WRITE, req->offset, len, x, &n)) {
		pthread_mutex_unlock(&s->lock);
		worker_queue(s, req);
		return IO_QUEUED;
	}
	for (unsigned int i = 0; i < n; i++) {
		if (x[i].kind != EXT_ZERO) {
			nr_io++;
			nr_iov += qcow2_iter_count(&it, x[i].len);
		}
		qcow2_iter_advance(&it, x[i].len);
	}
	if (!nr_io) {
		/* Nothing but zeroes: done here, without I/O. */
		pthread_mutex_unlock(&s->lock);
		it = (struct qcow2_iter){ req->iov, req->iovcnt, 0 };
		qcow2_iter_zero(&it, len);
		return 0;
	}
	/* From here until they complete, the extents' clusters are not reused (epochs). */
	epoch = s->epoch & 1;
	s->inflight[epoch]++;
	s->outstanding++;
	pthread_mutex_unlock(&s->lock);

	p = malloc(sizeof(*p) + nr_io * sizeof(p->children[0]) + nr_iov * sizeof(*iov));
	if (!p) {
		request_finished(s, (int)epoch);
		return -ENOMEM;
	}
	p->s = s;
	p->req = req;
	p->epoch = epoch;
	atomic_init(&p->status, 0);
	/* One count per extent, one for this function: done cannot run before all are sent. */
	atomic_init(&p->remaining, nr_io + 1);
	iov = (struct iovec *)&p->children[nr_io];
	it = (struct qcow2_iter){ req->iov, req->iovcnt, 0 };
	for (unsigned int i = 0, c = 0; i < n; i++) {
		struct child *ch;
		unsigned int cnt;

		if (x[i].kind == EXT_ZERO) {
			if (req->op == DISK_READ)
				qcow2_iter_zero(&it, x[i].len);
			else
				qcow2_iter_advance(&it, x[i].len);
			continue;
		}
		ch = &p->children[c++];
		cnt = qcow2_iter_slice(&it, x[i].len, iov, nr_iov);
		ch->p = p;
		ch->backing = x[i].kind == EXT_BACKING;
		/* One child may run on this thread if the request may; several go on together. */
		ch->req = (struct disk_request){ .op = req->op,
						 .offset = x[i].pos,
						 .iov = iov,
						 .iovcnt = cnt,
						 .done = child_done,
						 .may_wait = req->may_wait && nr_io == 1 };
		iov += cnt;
		qcow2_iter_advance(&it, x[i].len);
	}
	for (unsigned int c = 0; c < nr_io; c++) {
		struct child *ch = &p->children[c];
		int ret;

		/* Backing reads go to the backing disk, whose done comes back here. */
		if (ch->backing) {
			disk_submit(s->backing, &ch->req);
			continue;
		}
		ret = qcow2_engine_submit(s, q, &ch->req);
		if (ret != IO_QUEUED)
			child_done(&ch->req, ret);
	}
	/* Completed already (by the engine or on this thread)? Then done has run: not again. */
	parent_put(p, 0);
	return IO_QUEUED;
}

int qcow2_submit(struct disk *d, struct disk_request *req)
{
	return submit_on(d, NULL, req);
}

static int qcow2_queue_submit(struct disk *d, struct io_queue *q, struct disk_request *req)
{
	return submit_on(d, q, req);
}

/* The worker */

void qcow2_request_done(struct qcow2 *s, struct disk_request *req, int status)
{
	/* done may submit again, and free req. */
	req->done(req, status);
	request_finished(s, -1);
}

static int worker_do(struct qcow2 *s, struct disk_request *req)
{
	switch (req->op) {
	case DISK_READ:
		return qcow2_do_read(s, req);
	case DISK_WRITE:
		return qcow2_write_start(s, req);
	case DISK_FLUSH:
		return qcow2_flush_metadata(s);
	case DISK_DISCARD:
	case DISK_WRITE_ZEROES:
		return qcow2_do_zero(s, req);
	}
	return -EOPNOTSUPP;
}

/* The guest clusters a request changes: false for one that changes none (read, flush). */
static bool request_clusters(const struct qcow2 *s, const struct disk_request *req,
			     uint64_t *first, uint64_t *last)
{
	uint64_t len = req->len;

	if (req->op == DISK_READ || req->op == DISK_FLUSH)
		return false;
	if (req->op == DISK_WRITE) {
		len = 0;
		for (unsigned int i = 0; i < req->iovcnt; i++)
			len += req->iov[i].iov_len;
	}
	if (!len)
		return false;
	*first = req->offset >> s->cluster_bits;
	*last = (req->offset + len - 1) >> s->cluster_bits;
	return true;
}

/*
 * Whether req must wait: it changes a guest cluster that a write in flight covers, or that a
 * request waiting before it (up to stop) changes, so that requests on one cluster keep their
 * order and only one of them allocates it.
 */
static bool must_wait(const struct qcow2 *s, const struct disk_request *req,
		      const struct disk_request *stop)
{
	uint64_t first, last, f, l;

	if (!request_clusters(s, req, &first, &last))
		return false;
	if (qcow2_writes_busy(s, first, last))
		return true;
	for (const struct disk_request *r = s->deferred; r != stop; r = r->next) {
		if (request_clusters(s, r, &f, &l) && f <= last && first <= l)
			return true;
	}
	return false;
}

static void worker_start(struct qcow2 *s, struct disk_request *req)
{
	int ret = worker_do(s, req);

	if (ret != IO_QUEUED)
		qcow2_request_done(s, req, ret);
}

/* Starts the waiting requests that no longer must, in order. */
static void worker_run_deferred(struct qcow2 *s)
{
	struct disk_request **p = &s->deferred, *prev = NULL;

	while (*p && s->nr_running < QCOW2_MAX_WRITES) {
		struct disk_request *req = *p;

		if (must_wait(s, req, req)) {
			prev = req;
			p = &req->next;
			continue;
		}
		*p = req->next;
		if (s->deferred_tail == req)
			s->deferred_tail = prev;
		worker_start(s, req);
	}
}

void *qcow2_worker(void *arg)
{
	struct qcow2 *s = arg;
	struct disk_request *req;
	struct qcow2_chunk *written;

	pthread_mutex_lock(&s->qlock);
	for (;;) {
		while (!s->written && !(s->qhead && s->nr_running < QCOW2_MAX_WRITES) &&
		       !(s->stopping && !s->qhead))
			pthread_cond_wait(&s->qcond, &s->qlock);
		written = s->written;
		s->written = NULL;
		if (written) {
			pthread_mutex_unlock(&s->qlock);
			qcow2_writes_complete(s, written);
			worker_run_deferred(s);
			pthread_mutex_lock(&s->qlock);
			continue;
		}
		req = s->qhead;
		if (!req)
			break;
		s->qhead = req->next;
		if (!s->qhead)
			s->qtail = NULL;
		pthread_mutex_unlock(&s->qlock);
		if (must_wait(s, req, NULL)) {
			req->next = NULL;
			if (s->deferred_tail)
				s->deferred_tail->next = req;
			else
				s->deferred = req;
			s->deferred_tail = req;
		} else {
			worker_start(s, req);
		}
		pthread_mutex_lock(&s->qlock);
	}
	pthread_mutex_unlock(&s->qlock);
	return NULL;
}

const struct disk_format_ops disk_format_qcow2 = {
	.name = "qcow2",
	.open = qcow2_open,
	.close = qcow2_close,
	.submit = qcow2_submit,
	.queue_submit = qcow2_queue_submit,
};
