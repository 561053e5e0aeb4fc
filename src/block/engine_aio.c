// SPDX-License-Identifier: MIT
/*
 * The aio engine: Linux native AIO (libaio). Reads and writes become preadv/pwritev iocbs,
 * submitted with io_submit on the submitting thread; their completions signal an eventfd that a
 * reaper thread waits on, which collects them with io_getevents and calls done.
 *
 * Native AIO is only asynchronous with O_DIRECT: on a buffered file io_submit performs the
 * transfer itself, blocking the submitter (a virtqueue's thread) as long as the disk takes. So
 * the engine is meant for cache=none, and disk_open runs the threads engine instead, with a
 * notice, when aio is asked for on a buffered disk (aio_probe). Created on a buffered file anyway,
 * it gives its reads and writes to its helper threads rather than block a submitter. There is no
 * AIO operation for FLUSH (IOCB_CMD_FDSYNC is refused by most file systems), DISCARD or
 * WRITE_ZEROES: the helper threads run those through io_execute.
 *
 * Every request in flight holds one of AIO_SLOTS slots (its iocb and progress); the context is
 * sized so that io_submit never finds it full. Requests beyond that wait in a FIFO for a slot.
 */
#include <errno.h>
#include <libaio.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/engine.h"
#include "block/engine_helpers.h"

#define AIO_SLOTS 128
#define AIO_EVENTS_BATCH 32

struct aio_slot {
	struct iocb iocb;
	struct io_engine *e;
	struct disk_request *req;
	uint64_t done, total;		/* bytes moved so far, and of the whole request */
	struct iovec one;		/* the rest of a partly moved segment */
	struct io_helper_job job;
	struct aio_slot *next;		/* free list */
};

struct io_engine {
	struct io_file *file;
	bool direct;			/* O_DIRECT: reads and writes go to the kernel */
	io_context_t ctx;
	int efd;			/* counts completed iocbs; the reaper waits on it */
	pthread_t reaper;
	bool reaper_running;
	struct io_helpers *helpers;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned int busy;		/* requests accepted and not yet completed */
	bool stopping;
	struct aio_slot *free;
	struct disk_request *wait_head, *wait_tail;	/* accepted, waiting for a slot */
	struct aio_slot slots[AIO_SLOTS];
};

static void aio_help(struct io_helper_job *job);

/* Hands the rest of the slot's request to a helper thread: io_execute from s->done on. */
static void aio_to_helper(struct aio_slot *s)
{
	s->job.run = aio_help;
	io_helpers_queue(s->e->helpers, &s->job);
}

/* Submits an iocb for what is left of the slot's READ or WRITE; a helper takes it on failure. */
static void aio_issue(struct aio_slot *s)
{
	struct io_engine *e = s->e;
	struct disk_request *req = s->req;
	struct iocb *cb = &s->iocb;
	const struct iovec *iov;
	uint64_t len;
	unsigned int cnt = io_rest(req, s->done, IOV_MAX, &s->one, &iov, &len);
	int ret;

	if (req->op == DISK_READ)
		io_prep_preadv(cb, e->file->fd, iov, cnt, req->offset + s->done);
	else
		io_prep_pwritev(cb, e->file->fd, iov, cnt, req->offset + s->done);
	io_set_eventfd(cb, e->efd);
	cb->data = s;
	do {
		ret = io_submit(e->ctx, 1, &cb);
	} while (ret == -EINTR);
	/*
	 * -EAGAIN (kernel out of resources) or a refusal of the iocb itself: the blocking path
	 * still moves the bytes, or reports the error the system call gives.
	 */
	if (ret != 1)
		aio_to_helper(s);
}

/* Starts a slot's request, which ends in aio_finish from the reaper or a helper thread. */
static void aio_start(struct aio_slot *s, struct disk_request *req)
{
	s->req = req;
	s->done = 0;
	if ((req->op == DISK_READ || req->op == DISK_WRITE) && s->e->direct) {
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
	struct io_engine *e = s->e;
	struct disk_request *req = s->req, *next;

	pthread_mutex_lock(&e->lock);
	next = e->wait_head;
	if (next) {
		e->wait_head = next->next;
		if (!e->wait_head)
			e->wait_tail = NULL;
	} else {
		s->next = e->free;
		e->free = s;
	}
	pthread_mutex_unlock(&e->lock);
	/* Unlocked, as done may submit again; done may also free req: not used after. */
	req->done(req, status);
	if (next)
		aio_start(s, next);
	pthread_mutex_lock(&e->lock);
	if (--e->busy == 0)
		pthread_cond_broadcast(&e->idle);
	pthread_mutex_unlock(&e->lock);
}

static void aio_help(struct io_helper_job *job)
{
	struct aio_slot *s = (struct aio_slot *)((char *)job - offsetof(struct aio_slot, job));

	aio_finish(s, io_execute_rest(s->e->file, s->req, s->done));
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

static void *aio_reaper(void *arg)
{
	struct io_engine *e = arg;
	struct io_event ev[AIO_EVENTS_BATCH];
	struct timespec now = { 0, 0 };
	uint64_t count;
	bool stop;
	int n;

	for (;;) {
		/* Read first, then reap: a completion after the read counts towards the next. */
		if (read(e->efd, &count, sizeof(count)) < 0 && errno != EINTR)
			break;
		do {
			n = io_getevents(e->ctx, 0, AIO_EVENTS_BATCH, ev, &now);
			for (int i = 0; i < n; i++)
				aio_event(ev[i].data, (long)ev[i].res);
		} while (n == AIO_EVENTS_BATCH || n == -EINTR);
		pthread_mutex_lock(&e->lock);
		stop = e->stopping;
		pthread_mutex_unlock(&e->lock);
		if (stop)
			break;
	}
	return NULL;
}

static int aio_submit(struct io_engine *e, struct disk_request *req)
{
	struct aio_slot *s;

	if ((req->op == DISK_READ || req->op == DISK_WRITE) && !io_request_bytes(req))
		return 0;
	pthread_mutex_lock(&e->lock);
	e->busy++;
	s = e->free;
	if (s) {
		e->free = s->next;
	} else {
		req->next = NULL;
		if (e->wait_tail)
			e->wait_tail->next = req;
		else
			e->wait_head = req;
		e->wait_tail = req;
	}
	pthread_mutex_unlock(&e->lock);
	if (s)
		aio_start(s, req);
	return IO_QUEUED;
}

static void aio_destroy(struct io_engine *e)
{
	uint64_t one = 1;

	/* No submitter is left but done callbacks, which may submit more: wait until none is. */
	pthread_mutex_lock(&e->lock);
	while (e->busy)
		pthread_cond_wait(&e->idle, &e->lock);
	e->stopping = true;
	pthread_mutex_unlock(&e->lock);
	if (e->reaper_running) {
		if (write(e->efd, &one, sizeof(one)) < 0)
			abort();	/* our own eventfd: fails only at a count of 2^64 - 1 */
		pthread_join(e->reaper, NULL);
	}
	io_helpers_destroy(e->helpers);
	if (e->ctx)
		io_destroy(e->ctx);
	if (e->efd >= 0)
		close(e->efd);
	pthread_cond_destroy(&e->idle);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

static int aio_create(struct io_engine **ep, struct io_file *f, const struct io_engine_config *cfg,
		      const char **why)
{
	struct io_engine *e;
	unsigned int helpers;
	int err;

	*ep = NULL;
	e = calloc(1, sizeof(*e));
	if (!e) {
		*why = "out of memory";
		return -ENOMEM;
	}
	e->file = f;
	e->direct = io_file_direct(f);
	e->efd = -1;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->idle, NULL);
	for (unsigned int i = 0; i < AIO_SLOTS; i++) {
		e->slots[i].e = e;
		e->slots[i].next = e->free;
		e->free = &e->slots[i];
	}
	/* Helpers do flushes, discards, write-zeroes; on a buffered file every request. */
	helpers = cfg->threads ? cfg->threads : e->direct ? 2 : 4;
	err = io_helpers_create(&e->helpers, helpers, "nkvm-disk-aio", why);
	if (err)
		goto fail;
	err = io_setup(AIO_SLOTS, &e->ctx);
	if (err) {
		e->ctx = 0;
		*why = "cannot set up a native AIO context (io_setup)";
		goto fail;
	}
	e->efd = eventfd(0, EFD_CLOEXEC);
	if (e->efd < 0) {
		err = -errno;
		*why = "cannot create an eventfd";
		goto fail;
	}
	err = io_thread_start(&e->reaper, aio_reaper, e, "nkvm-disk-aio");
	e->reaper_running = !err;
	if (err) {
		*why = "cannot start the AIO completion thread";
		goto fail;
	}
	*ep = e;
	return 0;
fail:
	aio_destroy(e);
	return err;
}

static int aio_probe(const struct io_file *f, char *why, size_t len)
{
	io_context_t ctx = 0;
	int err;

	/* For testing the fallback: as if io_setup had failed. */
	if (io_env_set("NKVM_AIO_DISABLE")) {
		snprintf(why, len, "disabled by NKVM_AIO_DISABLE");
		return -ENOSYS;
	}
	if (!io_file_direct(f)) {
		snprintf(why, len, "native AIO would block without cache=none");
		return -EINVAL;
	}
	err = io_setup(AIO_SLOTS, &ctx);
	if (err == -ENOSYS)
		snprintf(why, len, "not in this kernel");
	else if (err == -EAGAIN)
		snprintf(why, len, "io_setup: the limit fs.aio-max-nr is reached");
	else if (err)
		snprintf(why, len, "io_setup: %s", strerror(-err));
	else
		io_destroy(ctx);
	return err;
}

const struct io_engine_ops io_engine_aio = {
	.name = "aio",
	.probe = aio_probe,
	.create = aio_create,
	.submit = aio_submit,
	.destroy = aio_destroy,
};
