// SPDX-License-Identifier: MIT
/*
 * The io_uring engine (liburing). READ/WRITE become IORING_OP_READV/WRITEV, FLUSH an
 * IORING_OP_FSYNC with IORING_FSYNC_DATASYNC, DISCARD and WRITE_ZEROES an IORING_OP_FALLOCATE
 * (punch hole, zero range) where the kernel has it. What a ring cannot do — the block device
 * ioctls (BLKDISCARD, BLKZEROOUT), zeroes written out where the file system can neither zero nor
 * punch a range — goes to two helper threads running io_execute, whose results come back to the
 * ring's owner to complete.
 *
 * A ring belongs to one thread, which alone submits to it and reaps it, so that it can be set
 * up with IORING_SETUP_SINGLE_ISSUER and IORING_SETUP_COOP_TASKRUN (no interrupting IPIs) where
 * the kernel has them, and so that no request is ever tied to a thread that exits (io_uring
 * cancels the pending work of an exiting submitter):
 * - the engine's shared ring, owned by its ring thread: submit (any thread) queues the request
 *   on a list and wakes the thread through the ring's eventfd; the thread starts it, and
 *   completes requests when the eventfd, registered with the ring, says completions arrived;
 * - one ring per device queue (queue_open), owned by that queue's I/O thread, which submits to
 *   it directly and reaps it when the ring's eventfd, which it polls, is readable: no thread
 *   hop on the way in or out, and the completions of one wakeup come together. Or, with
 *   queue_wait, the thread sleeps in the ring itself, its kick eventfd read through the ring:
 *   one io_uring_enter submits, sleeps and reaps.
 *
 * A request in flight holds one of the ring's URING_SLOTS slots: its progress and its single SQE
 * or CQE. The SQ has more places than slots (queue_wait adds two requests of its own) and the CQ
 * twice that, so neither can overflow; requests
 * beyond wait for a slot in a FIFO. A short read or write (io_uring may move fewer bytes than
 * asked) is resubmitted for the rest, -EAGAIN and -EINTR are retried, and a transfer that meets
 * the end of the file is -EIO, as in io_execute.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/engine.h"
#include "block/engine_helpers.h"
#include "lib/log.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

#define URING_SLOTS 128
#define URING_SQ_ENTRIES (2 * URING_SLOTS) /* a place per slot, and queue_wait's two */
#define URING_HELPERS 2

/* fallocate modes a ring submits; and the two answers that are not a mode. */
#define FALLOC_PUNCH (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
#define FALLOC_ZERO (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)
#define FALLOC_NOTHING 0 /* a discard where holes cannot be punched: done */
#define FALLOC_HELPER (-1) /* io_execute on a helper thread */

struct uring_ring;

struct uring_slot {
	struct uring_ring *r;
	struct disk_request *req;
	uint64_t done, total; /* READ/WRITE: bytes moved so far, and in all */
	struct iovec one; /* the rest of a partly moved segment */
	int mode; /* the fallocate mode in flight */
	struct io_helper_job job;
	struct uring_slot *next; /* the free list */
};

/* A ring and the requests it carries; every field but lock/helped is its owner thread's. */
struct uring_ring {
	struct io_engine *e;
	struct io_uring ring;
	bool ring_ok;
	bool defer; /* IORING_SETUP_DEFER_TASKRUN: CQEs come on GETEVENTS */
	bool taskrun_flag; /* IORING_SETUP_TASKRUN_FLAG: sq.kflags tells when they wait */
	int efd; /* registered: counts CQEs; written to wake the owner too */
	int fd; /* in SQEs: 0 if IOSQE_FIXED_FILE, else the file's */
	uint8_t sqe_flags;
	unsigned int used; /* slots taken */
	unsigned int unsubmitted; /* SQEs prepared and not yet given to the kernel */
	struct uring_slot *free;
	struct disk_request *wait_head, *wait_tail; /* no slot yet */
	pthread_mutex_t lock;
	struct io_helper_job *helped; /* finished by a helper, to complete on the owner */
	/*
	 * queue_wait: the owner sleeps in io_uring_enter, its own descriptor read through the ring
	 * and the helpers' eventfd (no longer registered) polled through it; the tags' addresses
	 * are those two requests' user_data.
	 */
	bool waits, fd_armed, fd_ready, help_armed;
	uint64_t fd_buf;
	char fd_tag, help_tag;
	struct uring_slot slots[URING_SLOTS];
};

struct io_queue {
	struct uring_ring r;
};

struct io_engine {
	struct io_file *file;
	bool fallocate_op; /* the kernel has IORING_OP_FALLOCATE */
	struct io_helpers *helpers;
	struct uring_ring shared; /* owned by thread */
	pthread_t thread;
	bool thread_running;
	pthread_mutex_t lock;
	pthread_cond_t started_cond;
	struct disk_request *in_head, *in_tail; /* submitted, for the ring thread to start */
	bool started, stopping;
	int start_err;
	char start_reason[64]; /* ring_init's reason, when start_err */
};

/*
 * DEFER_TASKRUN needs Linux 6.1, SINGLE_ISSUER 6.0, COOP_TASKRUN 5.19; older kernels refuse them
 * with EINVAL. With DEFER_TASKRUN, completions wait in the kernel until the owner asks for them
 * (ring_submit's GETEVENTS): the owner is never interrupted, and the registered eventfd still
 * says when there are some.
 */
static const unsigned int ring_setup_flags[] = {
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
		IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	0,
};

/* Sets a ring up on its owner thread. On failure the caller still calls ring_exit. */
static int ring_init(struct uring_ring *r, struct io_engine *e, bool nonblock, char *err,
		     size_t errlen)
{
	int ret = -EINVAL;

	r->e = e;
	r->efd = -1;
	pthread_mutex_init(&r->lock, NULL);
	for (unsigned int i = 0; i < URING_SLOTS; i++) {
		r->slots[i].r = r;
		r->slots[i].next = r->free;
		r->free = &r->slots[i];
	}
	for (unsigned int i = 0; i < sizeof(ring_setup_flags) / sizeof(ring_setup_flags[0]); i++) {
		struct io_uring_params p = { .flags = ring_setup_flags[i] };

		ret = io_uring_queue_init_params(URING_SQ_ENTRIES, &r->ring, &p);
		r->defer = p.flags & IORING_SETUP_DEFER_TASKRUN;
		r->taskrun_flag = p.flags & IORING_SETUP_TASKRUN_FLAG;
		if (ret != -EINVAL)
			break;
	}
	if (ret)
		return err_set(err, errlen, ret, "cannot set up an io_uring");
	r->ring_ok = true;
	r->efd = eventfd(0, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0));
	if (r->efd < 0)
		return err_set(err, errlen, -errno, "cannot create an eventfd");
	ret = io_uring_register_eventfd(&r->ring, r->efd);
	if (ret)
		return err_set(err, errlen, ret, "cannot register an eventfd with the io_uring");
	/* A registered file spares the kernel a descriptor lookup per request; optional. */
	if (io_uring_register_files(&r->ring, &e->file->fd, 1) == 0) {
		r->fd = 0;
		r->sqe_flags = IOSQE_FIXED_FILE;
	} else {
		r->fd = e->file->fd;
	}
	return 0;
}

static void ring_exit(struct uring_ring *r)
{
	/*
	 * A registered file holds the image's open file description, and with it the disk's OFD
	 * lock, until the ring's (asynchronous) teardown ends: unregister it first, so that the
	 * image is free again when disk_close returns.
	 */
	if (r->ring_ok && r->sqe_flags & IOSQE_FIXED_FILE)
		io_uring_unregister_files(&r->ring);
	if (r->ring_ok)
		io_uring_queue_exit(&r->ring);
	if (r->efd >= 0)
		close(r->efd);
	pthread_mutex_destroy(&r->lock);
}

static struct uring_slot *slot_of_job(struct io_helper_job *job)
{
	return (struct uring_slot *)((char *)job - offsetof(struct uring_slot, job));
}

static void ring_help(struct io_helper_job *job)
{
	struct uring_slot *s = slot_of_job(job);
	struct uring_ring *r = s->r;

	job->status = io_execute_rest(r->e->file, s->req, s->done);
	io_handback_push(&r->lock, &r->helped, job, r->efd);
}

static void ring_to_helper(struct uring_slot *s)
{
	s->job.run = ring_help;
	io_helpers_queue(s->r->e->helpers, &s->job);
}

/* What a DISCARD or WRITE_ZEROES becomes: a fallocate mode, FALLOC_NOTHING or FALLOC_HELPER. */
static int ring_falloc_mode(const struct io_engine *e, const struct disk_request *req)
{
	struct io_file *f = e->file;
	bool no_punch = atomic_load_explicit(&f->no_punch_hole, memory_order_relaxed);

	/* Block devices take BLKDISCARD/BLKZEROOUT in io_execute's whole-block rules. */
	if (f->blockdev || !e->fallocate_op)
		return FALLOC_HELPER;
	if (req->op == DISK_DISCARD)
		return no_punch ? FALLOC_NOTHING : FALLOC_PUNCH;
	/* Cheapest first, as io_execute: a zeroed range, a hole, then written zeroes. */
	if (!atomic_load_explicit(&f->no_zero_range, memory_order_relaxed))
		return FALLOC_ZERO;
	return no_punch ? FALLOC_HELPER : FALLOC_PUNCH;
}

/*
 * Prepares the SQE for what is left of the slot's request. Returns IO_QUEUED (a CQE or a helper
 * will follow) or the status of a request that needs nothing more.
 */
static int ring_issue(struct uring_slot *s)
{
	struct uring_ring *r = s->r;
	struct disk_request *req = s->req;
	struct io_uring_sqe *sqe;
	const struct iovec *iov;
	unsigned int cnt;
	uint64_t len;

	switch (req->op) {
	case DISK_READ:
	case DISK_WRITE:
		if (s->done >= s->total)
			return 0;
		break;
	case DISK_FLUSH:
		break;
	case DISK_DISCARD:
	case DISK_WRITE_ZEROES:
		/* fallocate refuses an empty range; there is nothing to do. */
		if (!req->len)
			return 0;
		s->mode = ring_falloc_mode(r->e, req);
		if (s->mode == FALLOC_NOTHING)
			return 0;
		if (s->mode == FALLOC_HELPER) {
			ring_to_helper(s);
			return IO_QUEUED;
		}
		break;
	default:
		return -EOPNOTSUPP;
	}
	/* Never NULL while the SQ has a place per slot; were it, the blocking path still works. */
	sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) {
		ring_to_helper(s);
		return IO_QUEUED;
	}
	switch (req->op) {
	case DISK_READ:
	case DISK_WRITE:
		cnt = io_rest(req, s->done, IOV_MAX, &s->one, &iov, &len);
		if (req->op == DISK_READ)
			io_uring_prep_readv(sqe, r->fd, iov, cnt, req->offset + s->done);
		else
			io_uring_prep_writev(sqe, r->fd, iov, cnt, req->offset + s->done);
		break;
	case DISK_FLUSH:
		io_uring_prep_fsync(sqe, r->fd, IORING_FSYNC_DATASYNC);
		break;
	default:
		io_uring_prep_fallocate(sqe, r->fd, s->mode, req->offset, req->len);
		break;
	}
	sqe->flags |= r->sqe_flags;
	io_uring_sqe_set_data(sqe, s);
	r->unsubmitted++;
	return IO_QUEUED;
}

static void ring_slot_reset(struct uring_slot *s, struct disk_request *req)
{
	s->req = req;
	s->done = 0;
	s->total = req->op == DISK_READ || req->op == DISK_WRITE ? io_request_bytes(req) : 0;
}

/*
 * Starts req on the ring, or queues it for a slot. Returns IO_QUEUED or the status of a request
 * that needed no I/O (done not called).
 */
static int ring_start(struct uring_ring *r, struct disk_request *req)
{
	struct uring_slot *s = r->free;
	int status;

	if (!s) {
		req->next = NULL;
		if (r->wait_tail)
			r->wait_tail->next = req;
		else
			r->wait_head = req;
		r->wait_tail = req;
		return IO_QUEUED;
	}
	r->free = s->next;
	r->used++;
	ring_slot_reset(s, req);
	status = ring_issue(s);
	if (status != IO_QUEUED) {
		/* A free slot means nobody waits for one: it simply goes back. */
		s->next = r->free;
		r->free = s;
		r->used--;
	}
	return status;
}

/*
 * Completes the slot's request and gives the slot to the oldest waiting request, if any; a loop
 * rather than recursion when those need no I/O either.
 */
static void ring_complete(struct uring_slot *s, int status)
{
	struct uring_ring *r = s->r;

	for (;;) {
		struct disk_request *req = s->req, *next = r->wait_head;

		if (next) {
			r->wait_head = next->next;
			if (!r->wait_head)
				r->wait_tail = NULL;
			ring_slot_reset(s, next);
		} else {
			s->next = r->free;
			r->free = s;
			r->used--;
		}
		/* done may submit to this ring again, and may free req: not used after. */
		req->done(req, status);
		if (!next)
			return;
		status = ring_issue(s);
		if (status == IO_QUEUED)
			return;
	}
}

static void ring_cqe(struct uring_slot *s, int res)
{
	struct io_file *f = s->r->e->file;
	int status;

	if (res == -EINTR || res == -EAGAIN)
		goto again;
	switch (s->req->op) {
	case DISK_READ:
	case DISK_WRITE:
		if (res < 0)
			break;
		/* Nothing moved although bytes remain: the file ends before the request. */
		if (res == 0) {
			res = -EIO;
			break;
		}
		s->done += res;
		if (s->done < s->total)
			goto again;
		res = 0;
		break;
	case DISK_DISCARD:
	case DISK_WRITE_ZEROES:
		/* Remembered for every ring of the file, as io_execute does: the next way then. */
		if (res == -EOPNOTSUPP) {
			atomic_store_explicit(s->mode == FALLOC_ZERO ? &f->no_zero_range :
								       &f->no_punch_hole,
					      true, memory_order_relaxed);
			goto again;
		}
		break;
	default:
		break;
	}
	ring_complete(s, res);
	return;
again:
	status = ring_issue(s);
	if (status != IO_QUEUED)
		ring_complete(s, status);
}

/* What the kernel took of the prepared SQEs: io_uring_submit's count, or more (never negative). */
static void ring_submitted(struct uring_ring *r, int n)
{
	r->unsubmitted -= (unsigned int)n < r->unsubmitted ? (unsigned int)n : r->unsubmitted;
}

/*
 * Whether completions may wait in the kernel for a GETEVENTS to post them (true when unsure):
 * with TASKRUN_FLAG the kernel says so in sq.kflags, with no system call.
 */
static bool ring_events_waiting(struct uring_ring *r)
{
	return !r->taskrun_flag || (IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

/* Completions to reap, or slots back from a helper: found without a system call. */
static bool ring_has_work(struct uring_ring *r)
{
	return io_uring_cq_ready(&r->ring) || ring_events_waiting(r) ||
	       __atomic_load_n(&r->helped, __ATOMIC_RELAXED);
}

/*
 * Gives the prepared SQEs to the kernel and, when get_events, has a DEFER_TASKRUN ring post the
 * completions that are waiting: one system call for both.
 */
static void ring_submit(struct uring_ring *r, bool get_events)
{
	get_events = get_events && r->defer;
	while (r->unsubmitted || get_events) {
		int n = get_events ? io_uring_submit_and_get_events(&r->ring) :
				     io_uring_submit(&r->ring);

		if (n >= 0) {
			get_events = false;
			ring_submitted(r, n);
			continue;
		}
		if (n == -EINTR)
			continue;
		/*
		 * Short of memory (-EAGAIN) or of CQ room (-EBUSY): completions in flight will
		 * bring the owner back to try again; with none, wait a little here.
		 */
		if ((n == -EAGAIN || n == -EBUSY) && r->used == r->unsubmitted) {
			usleep(1000);
			continue;
		}
		/* Anything else would be a broken ring: the SQEs stay for the next poll. */
		return;
	}
}

/* Submits what was prepared and completes what finished, until neither is left. */
static void ring_poll(struct uring_ring *r)
{
	struct io_uring_cqe *cqe;
	struct io_helper_job *job, *next;
	struct uring_slot *s;

	do {
		ring_submit(r, ring_events_waiting(r));
		while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
			int res = cqe->res;

			s = io_uring_cqe_get_data(cqe);
			io_uring_cqe_seen(&r->ring, cqe);
			if ((void *)s == &r->fd_tag) {
				/* Read (the count consumed), or failed: either way, look. */
				r->fd_armed = false;
				r->fd_ready = true;
			} else if ((void *)s == &r->help_tag) {
				/* Only arms the poll again; the helped list is looked at below. */
				r->help_armed = false;
			} else {
				ring_cqe(s, res);
			}
		}
		for (job = io_handback_take(&r->lock, &r->helped); job; job = next) {
			next = job->next;
			ring_complete(slot_of_job(job), job->status);
		}
		/* done callbacks above may have prepared more. */
	} while (r->unsubmitted);
}

/* --- the shared ring and its thread ----------------------------------------------------------- */

/*
 * The io_uring engine's ring thread (submissions and completions on its shared ring, the ring's
 * end) and its helpers (io_execute: what the ring cannot do). The thread sets its ring up
 * before it enters: the engine's creation waits for that, on the main thread, before release.
 */
static const struct sandbox_rule blk_uring_rules[] = {
	IO_EXECUTE_RULES,
	IO_COMPLETION_RULES,
	SANDBOX_ALLOW(read),
	SANDBOX_ALLOW(io_uring_enter),
	SANDBOX_ALLOW(io_uring_register), /* the ring's end: files and eventfd unregistered */
	SANDBOX_ALLOW(close),
	SANDBOX_ALLOW(clock_nanosleep), /* usleep while the ring is short of room */
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter blk_uring_filter = {
	.thread = "blk-uring",
	.rules = blk_uring_rules,
	.nr_rules = ARRAY_SIZE(blk_uring_rules),
};

static void *uring_thread(void *arg)
{
	struct io_engine *e = arg;
	struct uring_ring *r = &e->shared;
	struct io_uring_probe *probe;
	struct disk_request *in, *req;
	uint64_t count;
	bool stop;
	int err;

	err = ring_init(r, e, false, e->start_reason, sizeof(e->start_reason));
	if (!err) {
		probe = io_uring_get_probe_ring(&r->ring);
		e->fallocate_op = probe && io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
		if (probe)
			io_uring_free_probe(probe);
	}
	pthread_mutex_lock(&e->lock);
	e->start_err = err;
	e->started = true;
	pthread_cond_broadcast(&e->started_cond);
	pthread_mutex_unlock(&e->lock);
	if (!err) {
		err = sandbox_enter(&blk_uring_filter);
		/* Unconfined, it starts no request: they fail when the engine stops. */
		if (err)
			nkvm_err("blk-uring: cannot enter the sandbox: %s", strerror(-err));
	}
#ifdef NKVM_TEST_HOOKS
	if (!err && sandbox_test_hook("blk-uring", "forbidden"))
		sandbox_test_forbidden_call();
#endif

	while (!err) {
		pthread_mutex_lock(&e->lock);
		in = e->in_head;
		e->in_head = e->in_tail = NULL;
		stop = e->stopping;
		pthread_mutex_unlock(&e->lock);
		while (in) {
			int status;

			req = in;
			in = in->next;
			status = ring_start(r, req);
			if (status != IO_QUEUED)
				req->done(req, status);
		}
		ring_poll(r);
		if (stop && !r->used) {
			pthread_mutex_lock(&e->lock);
			stop = !e->in_head;
			pthread_mutex_unlock(&e->lock);
			if (stop)
				break;
		}
		/* Submissions, completions and helpers all count here; a read clears them. */
		if (read(r->efd, &count, sizeof(count)) < 0 && errno != EINTR)
			break;
	}
	ring_exit(r);
	return NULL;
}

static int uring_submit(struct io_engine *e, struct disk_request *req)
{
	if ((req->op == DISK_READ || req->op == DISK_WRITE) && !io_request_bytes(req))
		return 0;
	req->next = NULL;
	pthread_mutex_lock(&e->lock);
	if (e->in_tail)
		e->in_tail->next = req;
	else
		e->in_head = req;
	e->in_tail = req;
	pthread_mutex_unlock(&e->lock);
	eventfd_signal(e->shared.efd);
	return IO_QUEUED;
}

static void uring_destroy(struct io_engine *e)
{
	if (e->thread_running) {
		pthread_mutex_lock(&e->lock);
		e->stopping = true;
		pthread_mutex_unlock(&e->lock);
		/* The thread is past its start: the eventfd exists until it has drained. */
		if (!e->start_err)
			eventfd_signal(e->shared.efd);
		pthread_join(e->thread, NULL);
	}
	/* Only after the ring: its requests at a helper hold slots, so it waited for them. */
	io_helpers_destroy(e->helpers);
	pthread_cond_destroy(&e->started_cond);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

static int uring_create(struct io_engine **ep, struct io_file *f,
			const struct io_engine_config *cfg, char *err, size_t errlen)
{
	struct io_engine *e;
	int ret;

	*ep = NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	e->file = f;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->started_cond, NULL);
	ret = io_helpers_create(&e->helpers, cfg->threads ? cfg->threads : URING_HELPERS,
				"nkvm-disk-help", &blk_uring_filter, err, errlen);
	if (ret)
		goto fail;
	ret = io_thread_start(&e->thread, uring_thread, e, "nkvm-disk-uring");
	if (ret) {
		err_set(err, errlen, ret, "cannot start the io_uring thread");
		goto fail;
	}
	e->thread_running = true;
	/* The thread makes the ring (a single issuer's ring is its creator's): wait for it. */
	pthread_mutex_lock(&e->lock);
	while (!e->started)
		pthread_cond_wait(&e->started_cond, &e->lock);
	ret = e->start_err;
	pthread_mutex_unlock(&e->lock);
	if (ret) {
		err_set(err, errlen, ret, "%s", e->start_reason);
		goto fail;
	}
	*ep = e;
	return 0;
fail:
	uring_destroy(e);
	return ret;
}

/* --- queue contexts --------------------------------------------------------------------------- */

static int uring_queue_open(struct io_engine *e, struct io_queue **qp, int *poll_fd, char *err,
			    size_t errlen)
{
	struct io_queue *q = calloc(1, sizeof(*q));
	int ret;

	*qp = NULL;
	*poll_fd = -1;
	if (!q)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	ret = ring_init(&q->r, e, true, err, errlen);
	if (ret) {
		ring_exit(&q->r);
		free(q);
		return ret;
	}
	*qp = q;
	*poll_fd = q->r.efd;
	return 0;
}

/*
 * Requests a queue's owner gives the kernel together. Holding a whole kick's batch until
 * queue_poll made the host's device take them, and complete them, as one: the queue then went
 * idle while the driver refilled it (1 interrupt per 32 requests at QD32). Submitting each at
 * once kept it fed (4k random reads at QD32 +14%); every 4 is within 4% of that at a quarter
 * less CPU per I/O (docs/performance.md).
 */
#define URING_SUBMIT_BATCH 4

static int uring_queue_submit(struct io_queue *q, struct disk_request *req)
{
	int status = ring_start(&q->r, req);

	if (q->r.unsubmitted >= URING_SUBMIT_BATCH)
		ring_submit(&q->r, false);
	return status;
}

/* Work for queue_poll: completions (ring_has_work), or SQEs still to give the kernel. */
static bool uring_queue_ready(struct io_queue *q)
{
	return ring_has_work(&q->r) || q->r.unsubmitted;
}

static void uring_queue_poll(struct io_queue *q)
{
	uint64_t count;

	/* Cleared before looking, so that what arrives meanwhile makes it readable again. */
	if (read(q->r.efd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
		return;
	ring_poll(&q->r);
}

/* Prepares a request of queue_wait's own: a READ of fd, or (fd < 0) a POLL of the eventfd. */
static bool ring_arm(struct uring_ring *r, int fd, void *tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	if (!sqe)
		return false; /* not while the SQ has two places beyond the slots */
	if (fd >= 0)
		io_uring_prep_read(sqe, fd, &r->fd_buf, sizeof(r->fd_buf), 0);
	else
		io_uring_prep_poll_add(sqe, r->efd, POLLIN);
	io_uring_sqe_set_data(sqe, tag);
	r->unsubmitted++;
	return true;
}

/*
 * Sleeps in io_uring_enter (submitting what waits, in the same call) until a CQE is posted,
 * unless there is work already, then does it. The helpers' eventfd is polled through the ring:
 * a nonblocking eventfd cannot be read through it (it would answer -EAGAIN at once).
 */
static void ring_wait(struct uring_ring *r)
{
	uint64_t count;
	int n;

	if (!r->help_armed)
		r->help_armed = ring_arm(r, -1, &r->help_tag);
	if (!ring_has_work(r)) {
		n = io_uring_submit_and_wait(&r->ring, 1);
		if (n >= 0)
			ring_submitted(r, n);
		else if (n == -EAGAIN || n == -EBUSY)
			usleep(1000); /* short of memory or CQ room: completions will make it */
	}
	ring_poll(r);
	/*
	 * The poll fired (or could not be armed): the eventfd is read before the helped list is
	 * looked at once more, so that a helper finishing after the read makes it fire again.
	 */
	if (!r->help_armed) {
		if (read(r->efd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
			return;
		ring_poll(r);
	}
}

/*
 * Instead of polling *poll_fd and fd: one system call submits, waits, and reaps. The first call
 * turns the registered eventfd off for good (the owner no longer polls it); it fails with
 * -EOPNOTSUPP, changing nothing, where that cannot be done.
 */
static int uring_queue_wait(struct io_queue *q, int fd)
{
	struct uring_ring *r = &q->r;

	if (!r->waits) {
		/* NKVM_IO_URING_POLL=1: the owner polls, as before queue_wait (for measuring). */
		if (!r->taskrun_flag || io_env_set("NKVM_IO_URING_POLL") ||
		    io_uring_unregister_eventfd(&r->ring))
			return -EOPNOTSUPP;
		r->waits = true;
	}
	if (!r->fd_armed)
		r->fd_armed = ring_arm(r, fd, &r->fd_tag);
	ring_wait(r);
	if (!r->fd_ready)
		return 0;
	r->fd_ready = false;
	return 1;
}

static void uring_queue_close(struct io_queue *q)
{
	struct pollfd p = { .fd = q->r.efd, .events = POLLIN };

	ring_poll(&q->r);
	while (q->r.used) {
		if (q->r.waits) {
			ring_wait(&q->r);
			continue;
		}
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			break;
		uring_queue_poll(q);
	}
	ring_exit(&q->r);
	free(q);
}

/* --- availability ----------------------------------------------------------------------------- */

/* kernel.io_uring_disabled (Linux 6.6): 0 allowed, 1 only for kernel.io_uring_group, 2 never. */
static int uring_sysctl_disabled(void)
{
	char buf[16] = "";
	int fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? atoi(buf) : 0;
}

static int uring_probe(const struct io_file *f, char *err, size_t errlen)
{
	struct io_uring ring;
	int disabled, ret;

	/* For testing the fallback: as if the kernel had no io_uring. */
	if (io_env_set("NKVM_IO_URING_DISABLE"))
		return err_set(err, errlen, -ENOSYS, "disabled by NKVM_IO_URING_DISABLE");
	disabled = uring_sysctl_disabled();
	if (disabled == 2)
		return err_set(err, errlen, -EPERM,
			       "disabled by the sysctl kernel.io_uring_disabled=2");
	ret = io_uring_queue_init(2, &ring, 0);
	if (!ret) {
		io_uring_queue_exit(&ring);
		return 0;
	}
	if (ret == -ENOSYS)
		snprintf(err, errlen, "not in this kernel");
	else if (ret == -EPERM && disabled == 1)
		snprintf(err, errlen,
			 "kernel.io_uring_disabled=1 and not in kernel.io_uring_group");
	else
		snprintf(err, errlen, "io_uring_setup: %s", strerror(-ret));
	return ret;
}

const struct io_engine_ops io_engine_uring = {
	.name = "io_uring",
	.probe = uring_probe,
	.create = uring_create,
	.submit = uring_submit,
	.destroy = uring_destroy,
	.queue_open = uring_queue_open,
	.queue_submit = uring_queue_submit,
	.queue_poll = uring_queue_poll,
	.queue_ready = uring_queue_ready,
	.queue_wait = uring_queue_wait,
	.queue_close = uring_queue_close,
};
