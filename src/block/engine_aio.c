// SPDX-License-Identifier: MIT
/*
 * The aio engine: Linux native AIO (libaio). Reads and writes become preadv/pwritev iocbs whose
 * completions count on an eventfd. Two kinds of context carry them:
 * - the engine's own, which any thread submits to (io_submit on the submitting thread) and
 *   whose reaper thread waits on the eventfd, collects the completions and calls done;
 * - one per device queue (queue_open), which only that queue's I/O thread submits to and reaps:
 *   no hop to a reaper on the way out, as QEMU does with a Linux AIO context per AioContext (at
 *   queue depth 1 that hop was a third of the time). The thread polls the eventfd, or with
 *   queue_wait sleeps in io_getevents, its kick eventfd watched by a POLL iocb in the context.
 * Completions are read from the ring the kernel maps at the context's address, with no system
 * call, where it has the layout we know (io_getevents otherwise).
 *
 * Native AIO is only asynchronous with O_DIRECT: on a buffered file io_submit performs the
 * transfer itself, blocking the submitter (a virtqueue's thread) as long as the disk takes. So
 * the engine is meant for cache=none, and disk_open runs the threads engine instead, with a
 * notice, when aio is asked for on a buffered disk (aio_probe). Created on a buffered file anyway,
 * it gives its reads and writes to its helper threads rather than block a submitter. There is no
 * AIO operation for FLUSH (IOCB_CMD_FDSYNC is refused by most file systems), DISCARD or
 * WRITE_ZEROES: the helper threads run those through io_execute, and hand a queue's requests
 * back to its owner to complete.
 *
 * Every request in flight holds one of its context's AIO_SLOTS slots (its iocb and progress); a
 * context is sized so that io_submit never finds it full. Requests beyond that wait in a FIFO.
 */
#include <errno.h>
#include <libaio.h>
#include <limits.h>
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

#define AIO_SLOTS 128
#define AIO_CTX_IOCBS (AIO_SLOTS + 2) /* the slots' and queue_wait's two polls */
#define AIO_EVENTS_BATCH 32
/*
 * Iocbs a queue's owner gives io_submit together: every 4, as the io_uring engine (see there),
 * measured the same way. On 4k random writes at QD32, +5-10% IOPS over one at a time and a
 * quarter less CPU per I/O; reads the same; 8 lost 5% on reads, 32 (a whole kick) 20%.
 */
#define AIO_SUBMIT_BATCH 4

/*
 * The completion ring the kernel maps where io_setup's context points (fs/aio.c, struct
 * aio_ring): it writes events at tail, the reader consumes from head. Checked by magic, by the
 * absence of incompatible features and by its header's size before it is used.
 */
struct aio_user_ring {
	unsigned int id, nr, head, tail;
	unsigned int magic, compat_features, incompat_features, header_length;
	struct io_event events[];
};
#define AIO_USER_RING_MAGIC 0xa10a10a1

struct aio_ctx;

struct aio_slot {
	struct iocb iocb;
	struct aio_ctx *c;
	struct disk_request *req;
	uint64_t done, total; /* bytes moved so far, and of the whole request */
	struct iovec one; /* the rest of a partly moved segment */
	struct io_helper_job job;
	struct aio_slot *next; /* the free list */
};

/*
 * A kernel AIO context and the requests it carries: the engine's own (shared), or a queue's,
 * whose requests complete on its owner thread (owned).
 */
struct aio_ctx {
	struct io_engine *e;
	bool owned;
	io_context_t ctx;
	struct aio_user_ring *user; /* the kernel's completion ring, or NULL: io_getevents */
	int efd; /* counts completed iocbs; helpers write it for an owner */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned int busy; /* requests accepted and not yet completed */
	struct aio_slot *free;
	struct disk_request *wait_head, *wait_tail; /* accepted, waiting for a slot */
	struct io_helper_job *helped; /* owned: finished by a helper, to complete on the owner */
	/* owned: iocbs prepared and not yet given to the kernel (queue_submit batches them) */
	struct iocb *batch[AIO_CTX_IOCBS];
	unsigned int batched;
	/*
	 * queue_wait: the owner sleeps in io_getevents, its descriptor and the helpers' eventfd
	 * watched by POLL iocbs of the context's own (their data point at themselves), and the
	 * requests' iocbs no longer signal the eventfd.
	 */
	bool waits, fd_armed, fd_ready, help_armed;
	struct iocb fd_cb, help_cb;
	struct aio_slot slots[AIO_SLOTS];
};

struct io_queue {
	struct aio_ctx c;
};

struct io_engine {
	struct io_file *file;
	bool direct; /* O_DIRECT: reads and writes go to the kernel */
	struct io_helpers *helpers;
	struct aio_ctx shared;
	pthread_t reaper;
	bool reaper_running;
	bool stopping; /* under shared.lock */
};

/* Sets a context up; on failure the caller still calls ctx_exit. */
static int ctx_init(struct aio_ctx *c, struct io_engine *e, bool owned, char *err, size_t errlen)
{
	struct aio_user_ring *u;
	int ret;

	c->e = e;
	c->owned = owned;
	c->efd = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->idle, NULL);
	for (unsigned int i = 0; i < AIO_SLOTS; i++) {
		c->slots[i].c = c;
		c->slots[i].next = c->free;
		c->free = &c->slots[i];
	}
	ret = io_setup(AIO_CTX_IOCBS, &c->ctx);
	if (ret) {
		c->ctx = 0;
		return err_set(err, errlen, ret, "cannot set up a native AIO context (io_setup)");
	}
	u = (struct aio_user_ring *)c->ctx;
	if (u->magic == AIO_USER_RING_MAGIC && !u->incompat_features &&
	    u->header_length == sizeof(*u) && u->nr)
		c->user = u;
	/* An owner polls it and must not block on it; a reaper sleeps on it. */
	c->efd = eventfd(0, EFD_CLOEXEC | (owned ? EFD_NONBLOCK : 0));
	if (c->efd < 0)
		return err_set(err, errlen, -errno, "cannot create an eventfd");
	return 0;
}

static void ctx_exit(struct aio_ctx *c)
{
	if (c->ctx)
		io_destroy(c->ctx);
	if (c->efd >= 0)
		close(c->efd);
	pthread_cond_destroy(&c->idle);
	pthread_mutex_destroy(&c->lock);
}

static void aio_help(struct io_helper_job *job);

/* Hands the rest of the slot's request to a helper thread: io_execute from s->done on. */
static void aio_to_helper(struct aio_slot *s)
{
	s->job.run = aio_help;
	io_helpers_queue(s->c->e->helpers, &s->job);
}

/* Gives the kernel n prepared iocbs; a helper takes any it refuses. */
static void ctx_io_submit(struct aio_ctx *c, struct iocb **cbs, unsigned int n)
{
	unsigned int i = 0;
	int ret;

	while (i < n) {
		ret = io_submit(c->ctx, n - i, cbs + i);
		if (ret == -EINTR)
			continue;
		if (ret > 0) {
			i += ret;
			continue;
		}
		/*
		 * -EAGAIN (kernel out of resources) or a refusal of the first iocb itself: the
		 * blocking path still moves a request's bytes, or reports the error the system
		 * call gives; one of queue_wait's polls is left unarmed, and the wait then looks
		 * for itself.
		 */
		if (cbs[i] == &c->fd_cb)
			c->fd_armed = false;
		else if (cbs[i] == &c->help_cb)
			c->help_armed = false;
		else
			aio_to_helper(cbs[i]->data);
		i++;
	}
}

static void ctx_flush(struct aio_ctx *c)
{
	unsigned int n = c->batched;

	c->batched = 0;
	if (n)
		ctx_io_submit(c, c->batch, n);
}

/*
 * Prepares an iocb for what is left of the slot's READ or WRITE and submits it: at once, or
 * with the owner's batch.
 */
static void aio_issue(struct aio_slot *s)
{
	struct aio_ctx *c = s->c;
	struct disk_request *req = s->req;
	struct iocb *cb = &s->iocb;
	int fd = c->e->file->fd;
	const struct iovec *iov;
	uint64_t len;
	unsigned int cnt = io_rest(req, s->done, IOV_MAX, &s->one, &iov, &len);

	if (req->op == DISK_READ)
		io_prep_preadv(cb, fd, iov, cnt, req->offset + s->done);
	else
		io_prep_pwritev(cb, fd, iov, cnt, req->offset + s->done);
	if (!c->waits)
		io_set_eventfd(cb, c->efd);
	cb->data = s;
	if (!c->owned) {
		ctx_io_submit(c, &cb, 1);
		return;
	}
	c->batch[c->batched++] = cb;
	if (c->batched >= AIO_SUBMIT_BATCH)
		ctx_flush(c);
}

/* Starts a slot's request, which ends in aio_finish when its iocb or helper completes. */
static void aio_start(struct aio_slot *s, struct disk_request *req)
{
	s->req = req;
	s->done = 0;
	if ((req->op == DISK_READ || req->op == DISK_WRITE) && s->c->e->direct) {
		s->total = io_request_bytes(req);
		aio_issue(s);
	} else {
		aio_to_helper(s);
	}
}

/*
 * Completes the slot's request, then gives the slot to the oldest waiting request, if any
 * (aio_start always queues, so this never recurses).
 */
static void aio_finish(struct aio_slot *s, int status)
{
	struct aio_ctx *c = s->c;
	struct disk_request *req = s->req, *next;

	pthread_mutex_lock(&c->lock);
	next = c->wait_head;
	if (next) {
		c->wait_head = next->next;
		if (!c->wait_head)
			c->wait_tail = NULL;
	} else {
		s->next = c->free;
		c->free = s;
	}
	pthread_mutex_unlock(&c->lock);
	/* Unlocked, as done may submit again; done may also free req: not used after. */
	req->done(req, status);
	if (next)
		aio_start(s, next);
	pthread_mutex_lock(&c->lock);
	if (--c->busy == 0)
		pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->lock);
}

static struct aio_slot *slot_of_job(struct io_helper_job *job)
{
	return (struct aio_slot *)((char *)job - offsetof(struct aio_slot, job));
}

static void aio_help(struct io_helper_job *job)
{
	struct aio_slot *s = slot_of_job(job);
	struct aio_ctx *c = s->c;
	int status = io_execute_rest(c->e->file, s->req, s->done);

	if (!c->owned) {
		aio_finish(s, status);
		return;
	}
	/* A queue's requests complete on its owner: the slot goes back to it with the result. */
	job->status = status;
	io_handback_push(&c->lock, &c->helped, job, c->efd);
}

/* One completed iocb: the request is done, or resumes where a short transfer stopped. */
static void aio_event(struct aio_slot *s, long res)
{
	if (res == -EINTR || res == -EAGAIN) {
		aio_issue(s);
		return;
	}
	if (res < 0) {
		aio_finish(s, (int)res);
		return;
	}
	/* Nothing moved although bytes remain: the file ends before the request (as io_execute). */
	if (res == 0) {
		aio_finish(s, -EIO);
		return;
	}
	s->done += res;
	if (s->done < s->total)
		aio_issue(s);
	else
		aio_finish(s, 0);
}

/* Whether the kernel's ring holds completions (true when it cannot be read). */
static bool ctx_events_waiting(struct aio_ctx *c)
{
	return !c->user || __atomic_load_n(&c->user->head, __ATOMIC_RELAXED) !=
				   __atomic_load_n(&c->user->tail, __ATOMIC_ACQUIRE);
}

/* Takes up to max completions: from the kernel's ring directly, or through io_getevents. */
static int ctx_take_events(struct aio_ctx *c, struct io_event *ev, int max)
{
	struct aio_user_ring *u = c->user;
	struct timespec now = { 0, 0 };
	unsigned int head, tail;
	int n = 0;

	if (!u)
		return io_getevents(c->ctx, 0, max, ev, &now);
	/* Only the context's reaper moves head; the acquire pairs with the kernel's tail update. */
	head = __atomic_load_n(&u->head, __ATOMIC_RELAXED);
	tail = __atomic_load_n(&u->tail, __ATOMIC_ACQUIRE);
	while (head != tail && n < max) {
		ev[n++] = u->events[head];
		head = head + 1 < u->nr ? head + 1 : 0;
	}
	__atomic_store_n(&u->head, head, __ATOMIC_RELEASE);
	return n;
}

/* Completes every iocb that has finished. */
/* A completion: of a request's iocb, or of one of queue_wait's polls. */
static void ctx_event(struct aio_ctx *c, const struct io_event *ev)
{
	if (ev->data == &c->fd_cb) {
		/* Readable, or the poll failed: either way the owner looks. */
		c->fd_armed = false;
		c->fd_ready = true;
	} else if (ev->data == &c->help_cb) {
		/* Only arms the poll again; the helped list is looked at anyway. */
		c->help_armed = false;
	} else {
		aio_event(ev->data, (long)ev->res);
	}
}

static void ctx_reap(struct aio_ctx *c)
{
	struct io_event ev[AIO_EVENTS_BATCH];
	int n;

	do {
		n = ctx_take_events(c, ev, AIO_EVENTS_BATCH);
		for (int i = 0; i < n; i++)
			ctx_event(c, &ev[i]);
	} while (n == AIO_EVENTS_BATCH || n == -EINTR);
}

/* Accepts req into the context: started on a free slot, or queued for one. */
static int ctx_submit(struct aio_ctx *c, struct disk_request *req)
{
	struct aio_slot *s;

	if ((req->op == DISK_READ || req->op == DISK_WRITE) && !io_request_bytes(req))
		return 0;
	pthread_mutex_lock(&c->lock);
	c->busy++;
	s = c->free;
	if (s) {
		c->free = s->next;
	} else {
		req->next = NULL;
		if (c->wait_tail)
			c->wait_tail->next = req;
		else
			c->wait_head = req;
		c->wait_tail = req;
	}
	pthread_mutex_unlock(&c->lock);
	if (s)
		aio_start(s, req);
	return IO_QUEUED;
}

/* --- the engine's context and its reaper ------------------------------------------------------ */

/*
 * The aio engine's reaper (eventfd, io_getevents, completions) and its helpers (io_execute:
 * what AIO cannot do). A queue thread's own context is the blk-queue filter's.
 */
static const struct sandbox_rule blk_aio_rules[] = {
	IO_EXECUTE_RULES,
	IO_COMPLETION_RULES,
	SANDBOX_ALLOW(read),
	SANDBOX_ALLOW(io_getevents),
	SANDBOX_ALLOW(io_submit),
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter blk_aio_filter = {
	.thread = "blk-aio",
	.rules = blk_aio_rules,
	.nr_rules = ARRAY_SIZE(blk_aio_rules),
};

static void *aio_reaper(void *arg)
{
	struct io_engine *e = arg;
	struct aio_ctx *c = &e->shared;
	uint64_t count;
	bool stop;
	int err = sandbox_enter(&blk_aio_filter);

	if (err) {
		nkvm_err("blk-aio: cannot enter the sandbox: %s", strerror(-err));
		return NULL;
	}
#ifdef NKVM_TEST_HOOKS
	if (sandbox_test_hook("blk-aio", "forbidden"))
		sandbox_test_forbidden_call();
#endif

	for (;;) {
		/* Read first, then reap: a completion after the read counts towards the next. */
		if (read(c->efd, &count, sizeof(count)) < 0 && errno != EINTR)
			break;
		ctx_reap(c);
		pthread_mutex_lock(&c->lock);
		stop = e->stopping;
		pthread_mutex_unlock(&c->lock);
		if (stop)
			break;
	}
	return NULL;
}

static int aio_submit(struct io_engine *e, struct disk_request *req)
{
	return ctx_submit(&e->shared, req);
}

static void aio_destroy(struct io_engine *e)
{
	struct aio_ctx *c = &e->shared;

	/* No submitter is left but done callbacks, which may submit more: wait until none is. */
	pthread_mutex_lock(&c->lock);
	while (c->busy)
		pthread_cond_wait(&c->idle, &c->lock);
	e->stopping = true;
	pthread_mutex_unlock(&c->lock);
	if (e->reaper_running) {
		eventfd_signal(c->efd);
		pthread_join(e->reaper, NULL);
	}
	io_helpers_destroy(e->helpers);
	ctx_exit(c);
	free(e);
}

static int aio_create(struct io_engine **ep, struct io_file *f, const struct io_engine_config *cfg,
		      char *err, size_t errlen)
{
	struct io_engine *e;
	unsigned int helpers;
	int ret;

	*ep = NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	e->file = f;
	e->direct = io_file_direct(f);
	ret = ctx_init(&e->shared, e, false, err, errlen);
	if (ret)
		goto fail;
	/* Helpers do flushes, discards, write-zeroes; on a buffered file every request. */
	helpers = cfg->threads ? cfg->threads : e->direct ? 2 : 4;
	ret = io_helpers_create(&e->helpers, helpers, "nkvm-disk-aio", &blk_aio_filter, err, errlen);
	if (ret)
		goto fail;
	ret = io_thread_start(&e->reaper, aio_reaper, e, "nkvm-disk-aio");
	e->reaper_running = !ret;
	if (ret) {
		err_set(err, errlen, ret, "cannot start the AIO completion thread");
		goto fail;
	}
	*ep = e;
	return 0;
fail:
	aio_destroy(e);
	return ret;
}

/* --- queue contexts --------------------------------------------------------------------------- */

static int aio_queue_open(struct io_engine *e, struct io_queue **qp, int *poll_fd, char *err,
			  size_t errlen)
{
	struct io_queue *q = calloc(1, sizeof(*q));
	int ret;

	*qp = NULL;
	*poll_fd = -1;
	if (!q)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	ret = ctx_init(&q->c, e, true, err, errlen);
	if (ret) {
		ctx_exit(&q->c);
		free(q);
		return ret;
	}
	*qp = q;
	*poll_fd = q->c.efd;
	return 0;
}

static int aio_queue_submit(struct io_queue *q, struct disk_request *req)
{
	return ctx_submit(&q->c, req);
}

/* Work for queue_poll: iocbs to submit, completions, or slots back from a helper. */
static bool aio_queue_ready(struct io_queue *q)
{
	return q->c.batched || ctx_events_waiting(&q->c) ||
	       __atomic_load_n(&q->c.helped, __ATOMIC_RELAXED);
}

/* Submits what was prepared and completes what finished, until neither is left. */
static void ctx_work(struct aio_ctx *c)
{
	struct io_helper_job *job, *next;

	do {
		ctx_flush(c);
		ctx_reap(c);
		for (job = io_handback_take(&c->lock, &c->helped); job; job = next) {
			next = job->next;
			aio_finish(slot_of_job(job), job->status);
		}
		/* done callbacks above may have prepared more. */
	} while (c->batched);
}

static void aio_queue_poll(struct io_queue *q)
{
	uint64_t count;

	/* Cleared before looking, so that what arrives meanwhile makes it readable again. */
	if (read(q->c.efd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
		return;
	ctx_work(&q->c);
}

/* Prepares one of queue_wait's polls (fd_cb or help_cb), armed from the next submission on. */
static void ctx_arm(struct aio_ctx *c, struct iocb *cb, int fd)
{
	io_prep_poll(cb, fd, POLLIN);
	cb->data = cb;
	c->batch[c->batched++] = cb;
	if (cb == &c->fd_cb)
		c->fd_armed = true;
	else
		c->help_armed = true;
}

/*
 * Submits what waits and sleeps in io_getevents, which reaps too, until a completion arrives
 * (a request's, or a poll's), unless there is work already; then does the work.
 */
static void ctx_wait(struct aio_ctx *c)
{
	struct io_event ev[AIO_EVENTS_BATCH];
	struct timespec tick = { 0, 1000000 };
	uint64_t count;
	int n;

	if (!c->help_armed)
		ctx_arm(c, &c->help_cb, c->efd);
	ctx_flush(c);
	/* Without the kernel's ring to look at, io_getevents tells whether events wait. */
	if (!c->fd_ready && !c->batched && !__atomic_load_n(&c->helped, __ATOMIC_RELAXED) &&
	    (!c->user || !ctx_events_waiting(c))) {
		/* A poll the kernel refused (ctx_io_submit): look again within a millisecond. */
		n = io_getevents(c->ctx, 1, AIO_EVENTS_BATCH, ev,
				 c->fd_armed && c->help_armed ? NULL : &tick);
		for (int i = 0; i < n; i++)
			ctx_event(c, &ev[i]);
	}
	ctx_work(c);
	/*
	 * The helpers' poll fired: the eventfd is read before the helped list is looked at once
	 * more, so that a helper finishing after the read makes it fire again.
	 */
	if (!c->help_armed) {
		if (read(c->efd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
			return;
		ctx_work(c);
	}
}

/*
 * Instead of polling *poll_fd and fd: io_getevents sleeps until a request completes or a POLL
 * iocb says fd is readable, and reaps. The first call turns the requests' eventfd off for good;
 * it fails with -EOPNOTSUPP, changing nothing, where the kernel has no POLL iocb (before 4.18).
 */
static int aio_queue_wait(struct io_queue *q, int fd)
{
	struct aio_ctx *c = &q->c;
	uint64_t count;

	if (!c->waits) {
		/* NKVM_AIO_POLL=1: the owner polls, as before queue_wait (for measuring). */
		if (io_env_set("NKVM_AIO_POLL"))
			return -EOPNOTSUPP;
		/* At once: a kernel without POLL iocbs refuses it (ctx_io_submit unarms it). */
		ctx_arm(c, &c->fd_cb, fd);
		ctx_flush(c);
		if (!c->fd_armed)
			return -EOPNOTSUPP;
		c->waits = true;
	}
	if (!c->fd_armed)
		ctx_arm(c, &c->fd_cb, fd);
	ctx_wait(c);
	if (!c->fd_armed && !c->fd_ready) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		c->fd_ready = poll(&p, 1, 0) > 0;
	}
	if (!c->fd_ready)
		return 0;
	c->fd_ready = false;
	/* Readable, so this does not block: its count is consumed, as the contract says. */
	if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
		return -errno;
	return 1;
}

static void aio_queue_close(struct io_queue *q)
{
	struct pollfd p = { .fd = q->c.efd, .events = POLLIN };
	unsigned int busy;

	for (;;) {
		aio_queue_poll(q);
		pthread_mutex_lock(&q->c.lock);
		busy = q->c.busy;
		pthread_mutex_unlock(&q->c.lock);
		if (!busy)
			break;
		if (q->c.waits)
			ctx_wait(&q->c);
		else if (poll(&p, 1, -1) < 0 && errno != EINTR)
			break;
	}
	ctx_exit(&q->c);
	free(q);
}

/* --- availability ----------------------------------------------------------------------------- */

static int aio_probe(const struct io_file *f, char *err, size_t errlen)
{
	io_context_t ctx = 0;
	int ret;

	/* For testing the fallback: as if io_setup had failed. */
	if (io_env_set("NKVM_AIO_DISABLE"))
		return err_set(err, errlen, -ENOSYS, "disabled by NKVM_AIO_DISABLE");
	if (!io_file_direct(f))
		return err_set(err, errlen, -EINVAL, "native AIO would block without cache=none");
	ret = io_setup(AIO_SLOTS, &ctx);
	if (ret == -ENOSYS)
		snprintf(err, errlen, "not in this kernel");
	else if (ret == -EAGAIN)
		snprintf(err, errlen, "io_setup: the limit fs.aio-max-nr is reached");
	else if (ret)
		snprintf(err, errlen, "io_setup: %s", strerror(-ret));
	else
		io_destroy(ctx);
	return ret;
}

const struct io_engine_ops io_engine_aio = {
	.name = "aio",
	.probe = aio_probe,
	.create = aio_create,
	.submit = aio_submit,
	.destroy = aio_destroy,
	.queue_open = aio_queue_open,
	.queue_submit = aio_queue_submit,
	.queue_poll = aio_queue_poll,
	.queue_ready = aio_queue_ready,
	.queue_wait = aio_queue_wait,
	.queue_close = aio_queue_close,
};
