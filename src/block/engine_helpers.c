// SPDX-License-Identifier: MIT
/*
 * Helper threads and short-transfer arithmetic for the aio and io_uring engines (see
 * engine_helpers.h). The helper pool is a FIFO of jobs under a mutex, like the threads engine,
 * but runs the engine's own completion step after io_execute instead of calling done directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "block/engine_helpers.h"
#include "lib/log.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

struct io_helpers {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct io_helper_job *head, *tail;
	bool stopping;
	const struct sandbox_filter *filter; /* the engine's: each helper enters it */
	unsigned int nr_threads;
	pthread_t threads[];
};

static void *helpers_worker(void *arg)
{
	struct io_helpers *h = arg;
	struct io_helper_job *job;
	int err = sandbox_enter(h->filter);

	/* Unconfined, it runs no job: they wait for io_helpers_destroy, which ends no job. */
	if (err) {
		nkvm_err("%s: cannot enter the sandbox: %s", h->filter->thread, strerror(-err));
		return NULL;
	}
#ifdef NKVM_TEST_HOOKS
	if (sandbox_test_hook(h->filter->thread, "forbidden"))
		sandbox_test_forbidden_call();
#endif
	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (!h->head && !h->stopping)
			pthread_cond_wait(&h->wake, &h->lock);
		/* Stopping still drains: a worker leaves only once the queue is empty. */
		job = h->head;
		if (!job)
			break;
		h->head = job->next;
		if (!h->head)
			h->tail = NULL;
		pthread_mutex_unlock(&h->lock);
		job->run(job); /* may queue more, and may free job */
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

void io_helpers_queue(struct io_helpers *h, struct io_helper_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&h->lock);
	if (h->tail)
		h->tail->next = job;
	else
		h->head = job;
	h->tail = job;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->lock);
}

void io_handback_push(pthread_mutex_t *lock, struct io_helper_job **list, struct io_helper_job *job,
		      int efd)
{
	pthread_mutex_lock(lock);
	job->next = *list;
	*list = job;
	eventfd_signal(efd);
	pthread_mutex_unlock(lock);
}

struct io_helper_job *io_handback_take(pthread_mutex_t *lock, struct io_helper_job **list)
{
	struct io_helper_job *jobs;

	pthread_mutex_lock(lock);
	jobs = *list;
	*list = NULL;
	pthread_mutex_unlock(lock);
	return jobs;
}

void io_helpers_destroy(struct io_helpers *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stopping = true;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->lock);
	for (unsigned int i = 0; i < h->nr_threads; i++)
		pthread_join(h->threads[i], NULL);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

int io_helpers_create(struct io_helpers **hp, unsigned int threads, const char *name,
		      const struct sandbox_filter *filter, char *err, size_t errlen)
{
	struct io_helpers *h;
	int ret = 0;

	*hp = NULL;
	h = calloc(1, sizeof(*h) + threads * sizeof(h->threads[0]));
	if (!h)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->wake, NULL);
	h->filter = filter;
	for (; h->nr_threads < threads; h->nr_threads++) {
		ret = io_thread_start(&h->threads[h->nr_threads], helpers_worker, h, name);
		if (ret)
			break;
	}
	if (ret) {
		err_set(err, errlen, ret, "cannot start I/O helper threads");
		io_helpers_destroy(h);
		return ret;
	}
	*hp = h;
	return 0;
}

int io_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
	sigset_t mask, old;
	int err;

	sigfillset(&mask);
	sigdelset(&mask, SIGSEGV);
	sigdelset(&mask, SIGBUS);
	sigdelset(&mask, SIGFPE);
	sigdelset(&mask, SIGILL);
	sigdelset(&mask, SIGTRAP);
	pthread_sigmask(SIG_SETMASK, &mask, &old);
	err = -pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!err)
		pthread_setname_np(*t, name);
	return err;
}

uint64_t io_request_bytes(const struct disk_request *req)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < req->iovcnt; i++)
		n += req->iov[i].iov_len;
	return n;
}

unsigned int io_rest(const struct disk_request *req, uint64_t done, unsigned int max,
		     struct iovec *one, const struct iovec **iov, uint64_t *len)
{
	unsigned int i = 0, n;

	/* Zero-length segments are skipped along with the moved ones: done < total stops us. */
	while (i < req->iovcnt && done >= req->iov[i].iov_len) {
		done -= req->iov[i].iov_len;
		i++;
	}
	if (done) {
		one->iov_base = (uint8_t *)req->iov[i].iov_base + done;
		one->iov_len = req->iov[i].iov_len - done;
		*iov = one;
		*len = one->iov_len;
		return 1;
	}
	n = req->iovcnt - i < max ? req->iovcnt - i : max;
	*iov = &req->iov[i];
	*len = 0;
	for (unsigned int k = 0; k < n; k++)
		*len += req->iov[i + k].iov_len;
	return n;
}

int io_execute_rest(struct io_file *f, const struct disk_request *req, uint64_t done)
{
	uint64_t total;

	if (!done || (req->op != DISK_READ && req->op != DISK_WRITE))
		return io_execute(f, req);
	total = io_request_bytes(req);
	while (done < total) {
		struct disk_request rest = { .op = req->op, .offset = req->offset + done };
		struct iovec one;
		const struct iovec *iov;
		uint64_t len;
		int err;

		rest.iovcnt = io_rest(req, done, UINT_MAX, &one, &iov, &len);
		rest.iov = iov;
		err = io_execute(f, &rest);
		if (err)
			return err;
		done += len;
	}
	return 0;
}

bool io_file_direct(const struct io_file *f)
{
	int flags = fcntl(f->fd, F_GETFL);

	return flags >= 0 && (flags & O_DIRECT);
}

bool io_env_set(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0");
}
