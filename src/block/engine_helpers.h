/* SPDX-License-Identifier: MIT */
/*
 * What the aio and io_uring engines share: helper threads for the operations they cannot start
 * asynchronously (io_execute on a thread of their own), the signal mask of an engine thread, and
 * resuming a read or write that moved fewer bytes than asked. Internal to src/block/.
 */
#ifndef NKVM_BLOCK_ENGINE_HELPERS_H
#define NKVM_BLOCK_ENGINE_HELPERS_H

#include <linux/kvm.h> /* KVM_IRQ_LINE */
#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/engine.h"

/* A piece of work for a helper thread, embedded in the engine's per-request state. */
struct io_helper_job {
	struct io_helper_job *next; /* the helpers' queue, then an owner's hand-back list */
	void (*run)(struct io_helper_job *job);
	int status; /* the result, when handed back */
};

struct io_helpers;
struct sandbox_filter;

/*
 * A completion's way to the guest: an irqfd write (MSI-X), or the INTx line; a queue thread's
 * wake-up is an eventfd write too.
 */
#define IO_COMPLETION_RULES SANDBOX_ALLOW(write), SANDBOX_ALLOW_ARG(ioctl, 1, KVM_IRQ_LINE)

/*
 * Starts threads (named name) that run queued jobs. Returns 0 or a negative errno with a reason
 * in err.
 */
int io_helpers_create(struct io_helpers **h, unsigned int threads, const char *name,
		      const struct sandbox_filter *filter, char *err, size_t errlen);
/* Queues job; a helper thread calls job->run(job). Safe from any thread, jobs included. */
void io_helpers_queue(struct io_helpers *h, struct io_helper_job *job);
/* Runs every queued job, and the jobs those queue, then stops the threads and frees h. */
void io_helpers_destroy(struct io_helpers *h);

/*
 * A queue's requests complete on the thread that owns the queue, also those a helper ran: the
 * helper pushes the finished job (its result in job->status) onto the owner's list under the
 * owner's lock, and wakes the owner's eventfd under it too (once the owner can see the job it
 * may finish and close that eventfd). The owner takes the whole list at once; a relaxed load of
 * *list tells it, without the lock, whether anything waits.
 */
void io_handback_push(pthread_mutex_t *lock, struct io_helper_job **list, struct io_helper_job *job,
		      int efd);
struct io_helper_job *io_handback_take(pthread_mutex_t *lock, struct io_helper_job **list);

/*
 * Starts an engine thread named name, with every signal blocked that the main thread may take
 * through a signalfd, but not the faults (they must still reach a handler or a sanitizer).
 * Returns 0 or a negative errno.
 */
int io_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name);

/* Bytes a READ or WRITE moves: the sum of its segments (disk.c checked it does not overflow). */
uint64_t io_request_bytes(const struct disk_request *req);

/*
 * The part of a READ or WRITE still to move once `done` bytes have, as a vector a system call
 * takes: the rest of a partly moved segment (copied into *one) or the caller's next segments, at
 * most max of them. Sets *iov and returns the count; the vector covers *len bytes. done must be
 * less than the request's bytes. A short transfer resumes here without copying the caller's
 * (const) vector.
 */
unsigned int io_rest(const struct disk_request *req, uint64_t done, unsigned int max,
		     struct iovec *one, const struct iovec **iov, uint64_t *len);

/*
 * io_execute for what is left of a READ or WRITE after `done` bytes, or the whole of any other
 * request (done 0). Blocking: on helper threads only.
 */
int io_execute_rest(struct io_file *f, const struct disk_request *req, uint64_t done);

/* Whether f was opened with O_DIRECT (native AIO is only asynchronous then). */
bool io_file_direct(const struct io_file *f);

/* Whether the environment variable name is set to something other than "" or "0". */
bool io_env_set(const char *name);

#endif
