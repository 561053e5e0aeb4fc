// SPDX-License-Identifier: MIT
/*
 * The thread-pool engine: a FIFO of requests under a mutex, and worker threads that each take
 * one, perform it with blocking system calls and call its done. Also io_execute, the blocking
 * body of every operation, which later engines reuse for what they cannot do asynchronously.
 *
 * Through the page cache, a virtqueue's thread may open a queue context (engine.h queue_open):
 * it gives the pool what it popped in one batch, and the workers hand finished requests back to
 * it, so that their done callbacks run there, in one batch per wakeup (see threads_queue_open).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/engine.h"
#include "block/engine_helpers.h"
#include "lib/log.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

/* Written zeroes go out in pieces of this size, from a buffer on the worker's stack. */
#define ZERO_CHUNK (64 * KiB)

struct threads_worker {
	struct io_engine *e;
	unsigned int index; /* workers below e->nr_threads are active, the rest parked */
};

struct io_engine {
	struct io_file *file;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct disk_request *head, *tail; /* FIFO, linked through req->next */
	unsigned int queued; /* requests on the FIFO */
	unsigned int idle; /* workers waiting for one */
	bool stopping;
	/*
	 * Every worker the pool may grow to is made at create, on the main thread during set-up,
	 * and those beyond nr_threads are parked (grow): a thread made later by a submitter (a
	 * queue thread) would inherit that thread's seccomp filter, and it would need clone.
	 */
	pthread_cond_t grow; /* nr_threads grew: a parked worker's turn */
	pthread_cond_t grown; /* nr_named grew */
	struct threads_worker *workers;
	unsigned int nr_made, nr_start; /* made; made active (the rest made parked) */
	unsigned int nr_threads; /* active: growing wakes a parked worker */
	unsigned int nr_named; /* active workers named nkvm-disk-io (the parked: nkvm-disk-park) */
	unsigned int depth_threads; /* up to this many, a worker per waiting request */
	unsigned int max_threads; /* the limit; beyond depth_threads, see submit */
	bool run_waited; /* may_wait requests run on their submitter */
	bool queues; /* queue_open gives contexts (not with O_DIRECT: see threads_queue_open) */
	pthread_t threads[];
};

/*
 * A queue context: requests its owner submitted, started in a batch at its next queue_poll, and
 * requests the workers finished, completed by the owner.
 */
struct io_queue {
	struct io_engine *e;
	int efd; /* readable while finished requests wait on done */
	/* Owner only: submitted and not yet given to the pool, in order. */
	struct disk_request *pending, *pending_last;
	unsigned int npending;
	unsigned int inflight; /* owner only: given to the pool, not yet completed */
	pthread_mutex_t lock;
	struct disk_request *done; /* under lock: finished (status in engine_status), newest first */
};

/*
 * preadv/pwritev until every byte has moved. The iovec is the caller's and const, so a segment
 * the kernel transferred only in part is finished on its own with pread/pwrite, and the vector
 * call resumes at the next segment.
 */
static int io_rw(int fd, const struct disk_request *req, bool write)
{
	const struct iovec *iov = req->iov;
	unsigned int cnt = req->iovcnt;
	uint64_t off = req->offset;
	size_t partial = 0; /* bytes of iov[0] already transferred */
	ssize_t n;

	for (;;) {
		while (cnt && partial >= iov->iov_len) {
			partial -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (!cnt)
			return 0;
		if (partial) {
			uint8_t *p = (uint8_t *)iov->iov_base + partial;
			size_t len = iov->iov_len - partial;

			n = write ? pwrite(fd, p, len, off) : pread(fd, p, len, off);
		} else {
			int nr = cnt < IOV_MAX ? (int)cnt : IOV_MAX;

			n = write ? pwritev(fd, iov, nr, off) : preadv(fd, iov, nr, off);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		/* The range was checked against the size at open: the file has shrunk since. */
		if (n == 0)
			return -EIO;
		off += n;
		partial += n;
	}
}

static int io_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
	while (fallocate(fd, mode, off, len)) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int io_write_zero_buffers(int fd, uint64_t off, uint64_t len)
{
	/* Page-aligned, so that O_DIRECT takes it too. */
	uint8_t zero[ZERO_CHUNK] __attribute__((aligned(4096)));

	memset(zero, 0, sizeof(zero));
	while (len) {
		size_t chunk = len < sizeof(zero) ? len : sizeof(zero);
		int err = pwrite_full(fd, zero, chunk, off);

		if (err)
			return err;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

/* Discard is a hint (it may deallocate): where the file cannot, keeping the data is correct. */
static int io_discard(struct io_file *f, uint64_t off, uint64_t len)
{
	int err;

	if (f->blockdev) {
		/* BLKDISCARD takes whole device blocks: discard those inside the range. */
		uint64_t start = ALIGN_UP(off, (uint64_t)f->dev_block_size);
		uint64_t end = ALIGN_DOWN(off + len, (uint64_t)f->dev_block_size);
		uint64_t range[2] = { start, end - start };

		if (end <= start)
			return 0;
		if (ioctl(f->fd, BLKDISCARD, range) == 0)
			return 0;
		return errno == EOPNOTSUPP ? 0 : -errno;
	}
	if (atomic_load_explicit(&f->no_punch_hole, memory_order_relaxed))
		return 0;
	err = io_fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
	if (err == -EOPNOTSUPP) {
		atomic_store_explicit(&f->no_punch_hole, true, memory_order_relaxed);
		return 0;
	}
	return err;
}

/* Cheapest first: zeroed extents without I/O, then a hole (reads back as zeroes), then writes. */
static int io_write_zeroes(struct io_file *f, uint64_t off, uint64_t len)
{
	int err;

	if (f->blockdev) {
		uint64_t range[2] = { off, len };

		/* BLKZEROOUT takes whole device blocks; an odd range is written out instead. */
		if (!((off | len) & (f->dev_block_size - 1))) {
			if (ioctl(f->fd, BLKZEROOUT, range) == 0)
				return 0;
			if (errno != EOPNOTSUPP)
				return -errno;
		}
		return io_write_zero_buffers(f->fd, off, len);
	}
	if (!atomic_load_explicit(&f->no_zero_range, memory_order_relaxed)) {
		err = io_fallocate(f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
		if (err != -EOPNOTSUPP)
			return err;
		atomic_store_explicit(&f->no_zero_range, true, memory_order_relaxed);
	}
	if (!atomic_load_explicit(&f->no_punch_hole, memory_order_relaxed)) {
		err = io_fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
		if (err != -EOPNOTSUPP)
			return err;
		atomic_store_explicit(&f->no_punch_hole, true, memory_order_relaxed);
	}
	return io_write_zero_buffers(f->fd, off, len);
}

int io_execute(struct io_file *f, const struct disk_request *req)
{
	switch (req->op) {
	case DISK_READ:
		return io_rw(f->fd, req, false);
	case DISK_WRITE:
		return io_rw(f->fd, req, true);
	case DISK_FLUSH:
		return fdatasync(f->fd) ? -errno : 0;
	case DISK_DISCARD:
		/* fallocate and the ioctls refuse an empty range; there is nothing to do. */
		return req->len ? io_discard(f, req->offset, req->len) : 0;
	case DISK_WRITE_ZEROES:
		return req->len ? io_write_zeroes(f, req->offset, req->len) : 0;
	}
	return -EOPNOTSUPP;
}

/* The threads engine's workers: io_execute, and the completion on the same thread. */
static const struct sandbox_rule blk_threads_rules[] = {
	IO_EXECUTE_RULES,
	IO_COMPLETION_RULES,
	SANDBOX_ALLOW_ARG(prctl, 0, PR_SET_NAME), /* a parked worker made active names itself */
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter blk_threads_filter = {
	.thread = "blk-threads",
	.rules = blk_threads_rules,
	.nr_rules = ARRAY_SIZE(blk_threads_rules),
};

/*
 * A worker's finished request: its done, or, from a queue context, the owner's done list. The
 * eventfd is written only when the list was empty (the owner reads it before taking the list,
 * so a later push finds the list empty again), and under the lock: once the owner sees its last
 * request it may close the eventfd.
 */
static void threads_finish(struct disk_request *req, int status)
{
	struct io_queue *q = req->engine_queue;
	bool first;

	if (!q) {
		req->done(req, status);
		return;
	}
	req->engine_status = status;
	pthread_mutex_lock(&q->lock);
	first = !q->done;
	req->next = q->done;
	q->done = req;
	if (first)
		eventfd_signal(q->efd);
	pthread_mutex_unlock(&q->lock);
}

static void *threads_worker(void *arg)
{
	struct threads_worker *w = arg;
	struct io_engine *e = w->e;
	struct disk_request *req;
	int err = sandbox_enter(&blk_threads_filter);

	if (err)
		nkvm_err("blk-threads: cannot enter the sandbox: %s", strerror(-err));
#ifdef NKVM_TEST_HOOKS
	if (!err && sandbox_test_hook("blk-threads", "forbidden"))
		sandbox_test_forbidden_call();
#endif
	pthread_mutex_lock(&e->lock);
	/* Made parked (named so): whenever it starts, it counts once it is woken and renamed. */
	if (w->index >= e->nr_start) {
		while (w->index >= e->nr_threads && !e->stopping)
			pthread_cond_wait(&e->grow, &e->lock);
		/* Active: named as such, then the submitter that woke it goes on (threads_submit). */
		if (!e->stopping) {
			pthread_mutex_unlock(&e->lock);
			pthread_setname_np(pthread_self(), "nkvm-disk-io");
			pthread_mutex_lock(&e->lock);
		}
		e->nr_named++;
		pthread_cond_broadcast(&e->grown);
	}
	/* Unconfined, it takes no request. */
	if (err) {
		pthread_mutex_unlock(&e->lock);
		return NULL;
	}
	for (;;) {
		while (!e->head && !e->stopping) {
			e->idle++;
			pthread_cond_wait(&e->wake, &e->lock);
			e->idle--;
		}
		/* Stopping still drains: a worker leaves only once the queue is empty. */
		req = e->head;
		if (!req)
			break;
		e->head = req->next;
		if (!e->head)
			e->tail = NULL;
		e->queued--;
		pthread_mutex_unlock(&e->lock);
		/* Unlocked, as done may submit again; done may also free req: not used after. */
		threads_finish(req, io_execute(e->file, req));
		pthread_mutex_lock(&e->lock);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/*
 * Appends the n requests linked from first to last to the FIFO and grows the pool for them;
 * returns how many idle workers to wake (at most one per request). Called with e->lock held.
 */
static unsigned int threads_enqueue_locked(struct io_engine *e, struct disk_request *first,
					   struct disk_request *last, unsigned int n)
{
	bool grow;

	last->next = NULL;
	if (e->tail)
		e->tail->next = first;
	else
		e->head = first;
	e->tail = last;
	e->queued += n;
	/*
	 * Up to depth_threads, the pool grows to the depth the guest keeps in flight: one more
	 * worker whenever a request waits with no idle worker for it. Beyond, only while the
	 * requests waiting outnumber the workers by more than depth_threads (see
	 * THREADS_MAX_DIRECT). A failed start only leaves the pool as it is. At most one new
	 * worker per request, as when they come one at a time: a worker just started is not idle
	 * yet, so the rule alone would start them all at once.
	 */
	for (unsigned int i = 0; i < n; i++) {
		grow = e->nr_threads < e->depth_threads ?
			       e->queued > e->idle :
			       e->queued > e->nr_threads + e->depth_threads;
		/* The workers were made parked at create (a confined submitter cannot start one). */
		if (!grow || e->nr_threads >= e->nr_made)
			break;
		e->nr_threads++;
		pthread_cond_broadcast(&e->grow);
		/* As pthread_create would: the pool has grown when submit returns. */
		while (e->nr_named < e->nr_threads && !e->stopping)
			pthread_cond_wait(&e->grown, &e->lock);
	}
	/* Only an idle worker needs waking: a busy one looks at the FIFO before it sleeps. */
	return n < e->idle ? n : e->idle;
}

/* After unlocking, or the woken workers only block on the lock we held. */
static void threads_wake(struct io_engine *e, unsigned int n)
{
	while (n--)
		pthread_cond_signal(&e->wake);
}

static int threads_submit(struct io_engine *e, struct disk_request *req)
{
	unsigned int wake;

	/* A submitter that only waits for this one request (a virtqueue at depth 1): see create. */
	if (req->may_wait && e->run_waited)
		return io_execute(e->file, req);
	req->engine_queue = NULL;
	pthread_mutex_lock(&e->lock);
	wake = threads_enqueue_locked(e, req, req, 1);
	pthread_mutex_unlock(&e->lock);
	threads_wake(e, wake);
	return IO_QUEUED;
}

static void threads_destroy(struct io_engine *e)
{
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	pthread_cond_broadcast(&e->wake);
	pthread_cond_broadcast(&e->grow);
	pthread_mutex_unlock(&e->lock);
	for (unsigned int i = 0; i < e->nr_made; i++)
		pthread_join(e->threads[i], NULL);
	pthread_cond_destroy(&e->grown);
	pthread_cond_destroy(&e->grow);
	pthread_cond_destroy(&e->wake);
	free(e->workers);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/*
 * With O_DIRECT, workers spend their time blocked in the kernel, not on a CPU, so their number
 * is the queue depth the image sees: 4 workers capped a guest's QD32 at 4 in flight (0.47 of
 * host fio's 4k random reads; 16 workers: 0.87). Through the page cache most requests are
 * copies that finish on the CPU, and more workers than CPUs only contend: 64 made 4k QD32 reads
 * 2.7x slower than 4 on 2 CPUs (docs/performance.md). So the pool starts with two workers and
 * grows to the depth while requests wait, up to 8 per CPU (16 to 64) with O_DIRECT, 2 per CPU
 * (4 to 16) through the page cache.
 *
 * Beyond that, with O_DIRECT only, it grows up to 64 (QEMU's pool size) while the waiting
 * requests outnumber the workers by more than that first limit: to about half of a deep queue
 * (QD128: 56 workers), not at all for a QD32 one. On 2 CPUs one worker per request made every
 * worker sleep after each I/O and be woken for the next: at QD32, 32 or 64 workers lost 9-12%
 * to 16, at a third more CPU per I/O, while at QD128 16 workers left the disk idle (64: +26%).
 * The margin keeps a QD32 queue, whose waiting requests are one more than the workers whenever
 * a worker is between two, from creeping past 16: without it, 4k random writes lost 20-30%
 * (docs/performance.md). An explicit thread count sets a plain limit.
 */
#define THREADS_START 2
#define THREADS_MAX_DIRECT 64

static unsigned int threads_default_depth(const struct io_file *f)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int per_cpu = io_file_direct(f) ? 8 : 2;
	unsigned int lo = per_cpu * 2, hi = per_cpu * 8;

	if (cpus < 1)
		return lo;
	return (unsigned long)cpus * per_cpu < lo ? lo :
	       (unsigned long)cpus * per_cpu > hi ? hi :
						    (unsigned int)cpus * per_cpu;
}

static int threads_create(struct io_engine **ep, struct io_file *f,
			  const struct io_engine_config *cfg, char *err, size_t errlen)
{
	unsigned int depth = cfg->threads ? cfg->threads : threads_default_depth(f);
	unsigned int max = cfg->threads || !io_file_direct(f) ? depth : THREADS_MAX_DIRECT;
	unsigned int n = max < THREADS_START ? max : THREADS_START;
	struct io_engine *e;
	int ret = 0;

	*ep = NULL;
	e = calloc(1, sizeof(*e) + max * sizeof(e->threads[0]));
	if (!e)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	e->file = f;
	e->depth_threads = depth;
	e->max_threads = max;
	/*
	 * With O_DIRECT a worker sleeps in the kernel until the device answers, so handing a
	 * request the submitter waits for to one only adds a wakeup: performing it on the
	 * submitting thread made 4k reads at QD1 about 1.5x as fast, at 0.6x the CPU. Through the
	 * page cache it made them 5-8% slower here (docs/performance.md): every request goes to
	 * the pool there. NKVM_THREADS_HANDOFF=1 does that with O_DIRECT too (for measuring).
	 */
	e->run_waited = io_file_direct(f) && !io_env_set("NKVM_THREADS_HANDOFF");
	e->queues = !io_file_direct(f);
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->wake, NULL);
	pthread_cond_init(&e->grow, NULL);
	pthread_cond_init(&e->grown, NULL);
	e->nr_threads = e->nr_named = e->nr_start = n;
	e->workers = calloc(max, sizeof(*e->workers));
	if (!e->workers)
		ret = -ENOMEM;
	for (; !ret && e->nr_made < max; e->nr_made++) {
		struct threads_worker *w = &e->workers[e->nr_made];

		*w = (struct threads_worker){ .e = e, .index = e->nr_made };
		ret = io_thread_start(&e->threads[e->nr_made], threads_worker, w,
				      w->index < n ? "nkvm-disk-io" : "nkvm-disk-park");
		if (ret)
			break;
	}
	if (ret) {
		err_set(err, errlen, ret, "cannot start I/O threads");
		threads_destroy(e);
		return ret;
	}
	*ep = e;
	return 0;
}

/* --- queue contexts ------------------------------------------------------------------------- */

/*
 * Through the page cache a request is a copy that takes microseconds, and what a guest pays for
 * is around it: the hand-off to a worker, and an interrupt per completion that finds the driver
 * waiting. With a context, the queue's thread gives the pool all it popped in one go (one lock,
 * one wakeup per idle worker), and the workers hand finished requests back to it, so that it
 * pushes them to the used ring together and interrupts once per batch, as the io_uring and aio
 * contexts do and as QEMU's main loop does with its pool's completions. Measured in
 * docs/performance.md ("Block, round two (issue 22)"). With O_DIRECT there is no context (the
 * queue keeps the shared path, where a lone request runs on the queue's thread: run_waited).
 */
static int threads_queue_open(struct io_engine *e, struct io_queue **qp, int *poll_fd, char *err,
			      size_t errlen)
{
	struct io_queue *q;
	int ret;

	*qp = NULL;
	*poll_fd = -1;
	if (!e->queues)
		return 0;
	q = calloc(1, sizeof(*q));
	if (!q)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->efd < 0) {
		ret = -errno;
		free(q);
		return err_set(err, errlen, ret, "cannot create an eventfd");
	}
	q->e = e;
	pthread_mutex_init(&q->lock, NULL);
	*qp = q;
	*poll_fd = q->efd;
	return 0;
}

/* Started at the owner's next queue_poll, with whatever else it submits until then. */
static int threads_queue_submit(struct io_queue *q, struct disk_request *req)
{
	req->engine_queue = q;
	req->next = NULL;
	if (q->pending_last)
		q->pending_last->next = req;
	else
		q->pending = req;
	q->pending_last = req;
	q->npending++;
	return IO_QUEUED;
}

/* Gives the pool what waits, in one batch; or performs a lone read or write here. */
static void threads_queue_start(struct io_queue *q)
{
	struct io_engine *e = q->e;
	struct disk_request *req = q->pending;
	unsigned int wake;

	if (!req)
		return;
	/*
	 * Nothing else of the queue in flight or waiting: a copy from or to the page cache, which
	 * takes less here than waking a worker and being woken by it for the hand-back (4k reads
	 * at depth 1 ran at half the speed through the pool: docs/performance.md). Flushes and
	 * the other operations, which may take long, still go to the pool, so that what the guest
	 * sends meanwhile is not held up behind them.
	 */
	if (q->npending == 1 && !q->inflight && (req->op == DISK_READ || req->op == DISK_WRITE)) {
		q->pending = q->pending_last = NULL;
		q->npending = 0;
		req->done(req, io_execute(e->file, req));
		return;
	}
	pthread_mutex_lock(&e->lock);
	wake = threads_enqueue_locked(e, q->pending, q->pending_last, q->npending);
	pthread_mutex_unlock(&e->lock);
	threads_wake(e, wake);
	q->inflight += q->npending;
	q->pending = q->pending_last = NULL;
	q->npending = 0;
}

/* Completes what the workers handed back, in the order they finished it. */
static void threads_queue_reap(struct io_queue *q)
{
	struct disk_request *list, *req, *order = NULL;

	pthread_mutex_lock(&q->lock);
	list = q->done;
	q->done = NULL;
	pthread_mutex_unlock(&q->lock);
	while (list) {
		req = list;
		list = req->next;
		req->next = order;
		order = req;
	}
	while (order) {
		req = order;
		order = req->next; /* done may free or resubmit req */
		q->inflight--;
		req->done(req, req->engine_status);
	}
}

static void threads_queue_poll(struct io_queue *q)
{
	uint64_t count;

	/*
	 * Cleared before looking, so that what a worker hands back meanwhile makes it readable
	 * again (threads_finish writes it when the list was empty). A failed read changes
	 * nothing: the list is looked at anyway.
	 */
	if (read(q->efd, &count, sizeof(count)) < 0) {
		/* EAGAIN: nothing was handed back since the last look. */
	}
	do {
		threads_queue_start(q);
		threads_queue_reap(q);
		/* done callbacks above may have submitted more. */
	} while (q->pending);
}

static bool threads_queue_ready(struct io_queue *q)
{
	return q->pending || __atomic_load_n(&q->done, __ATOMIC_RELAXED);
}

static void threads_queue_close(struct io_queue *q)
{
	struct pollfd p = { .fd = q->efd, .events = POLLIN };

	threads_queue_poll(q);
	/* Requests in flight still point at q: a failed poll only makes this loop spin. */
	while (q->inflight) {
		poll(&p, 1, -1);
		threads_queue_poll(q);
	}
	/* The workers are done with it: each wrote the eventfd, if at all, under q->lock. */
	close(q->efd);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

const struct io_engine_ops io_engine_threads = {
	.name = "threads",
	.create = threads_create,
	.submit = threads_submit,
	.destroy = threads_destroy,
	.queue_open = threads_queue_open,
	.queue_submit = threads_queue_submit,
	.queue_poll = threads_queue_poll,
	.queue_ready = threads_queue_ready,
	.queue_close = threads_queue_close,
};
