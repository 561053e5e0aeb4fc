/* SPDX-License-Identifier: MIT */
/*
 * I/O engines: what moves bytes between a disk's requests and its image file. A format driver
 * (format.h) hands an engine requests whose offsets are already file offsets; the engine
 * performs them and reports the result. Engines know neither formats nor virtio.
 *
 * One completion path for every engine: submit either queues the request, and the engine later
 * calls req->done(req, status) exactly once from one of its threads, or performs it on the spot
 * and returns the status without calling done. The caller (disk.c) then calls done itself, so a
 * device sees one callback whichever engine runs. Internal to src/block/.
 */
#ifndef NKVM_BLOCK_ENGINE_H
#define NKVM_BLOCK_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/disk.h"

/* submit's answer when the request was queued; any other value is a finished request's status. */
#define IO_QUEUED 1

/* The image file as the engine sees it: where the bytes go and how its type changes the calls. */
struct io_file {
	int fd;
	bool blockdev; /* BLKDISCARD/BLKZEROOUT instead of fallocate */
	uint32_t dev_block_size; /* block devices: logical block size, those ioctls' unit */
	/*
	 * Set once the file system answered EOPNOTSUPP, so later requests go straight to the
	 * fallback instead of paying a failing system call each time. Workers share them.
	 */
	atomic_bool no_zero_range;
	atomic_bool no_punch_hole;
};

struct io_engine_config {
	unsigned int threads; /* worker threads, for engines that have them; 0: default */
};

struct io_engine;
/* A per-queue submission context (see the queue_* ops below and disk_queue_open in disk.h). */
struct io_queue;

struct io_engine_ops {
	const char *name;
	/*
	 * Optional: whether the engine can run on this host for f, asked before create. Returns 0,
	 * or a negative errno with a reason for a person in err ("not in this kernel"); the disk
	 * then runs the threads engine instead and says so (disk_notice).
	 */
	int (*probe)(const struct io_file *f, char *err, size_t errlen);
	/*
	 * Creates an engine for one file, which must outlive it. Returns 0 or a negative errno
	 * with a reason for a person in err.
	 */
	int (*create)(struct io_engine **e, struct io_file *f, const struct io_engine_config *cfg,
		      char *err, size_t errlen);
	/*
	 * Starts req, whose offset and lengths the format has already checked against the file.
	 * Returns IO_QUEUED (done will follow, possibly before submit returns, from an engine
	 * thread) or the status of a request performed now (0 or a negative errno; done is not
	 * called). Safe from any thread, including from inside a done callback.
	 */
	int (*submit)(struct io_engine *e, struct disk_request *req);
	/*
	 * Completes every queued request (their done callbacks run), then frees the engine. Its
	 * queues must be closed first.
	 */
	void (*destroy)(struct io_engine *e);

	/*
	 * Optional per-queue contexts, for engines that can submit and reap on the thread that
	 * owns a device queue (NULL in engines without them). queue_open runs on that owner thread
	 * and creates a context (or returns a negative errno with a reason in err), or returns 0
	 * with *q NULL where the engine keeps this file on its shared path (the threads engine with
	 * O_DIRECT); *poll_fd is a descriptor that becomes readable when queue_poll has work. Only
	 * the owner calls queue_submit, queue_poll and queue_close.
	 *
	 * queue_submit has the contract of submit, except that done runs on the owner thread,
	 * inside queue_submit or queue_poll, and that a queued request may wait to be started
	 * until the owner's next queue_poll (several submissions, one system call).
	 * queue_poll starts what waits and completes what finished; it never blocks.
	 * queue_ready says, without a system call, whether queue_poll may have work (true when
	 * unsure): an owner may spin on it for a while instead of sleeping on *poll_fd, and skips
	 * queue_poll when it is false.
	 * queue_wait (optional) lets the owner sleep in the engine instead of polling *poll_fd
	 * and a descriptor of its own, fd: it submits what waits, sleeps until there is work
	 * (completions, or fd readable), does it, and returns 1 when fd was readable (its
	 * eventfd count has been read) or 0. Once it has succeeded, the owner must not poll
	 * *poll_fd any more; -EOPNOTSUPP from the first call changes nothing.
	 * queue_close waits for the context's requests (done callbacks run on the owner, and the
	 * requests they submit to the context too), then frees it.
	 */
	int (*queue_open)(struct io_engine *e, struct io_queue **q, int *poll_fd, char *err,
			  size_t errlen);
	int (*queue_submit)(struct io_queue *q, struct disk_request *req);
	void (*queue_poll)(struct io_queue *q);
	bool (*queue_ready)(struct io_queue *q);
	int (*queue_wait)(struct io_queue *q, int fd);
	void (*queue_close)(struct io_queue *q);
};

extern const struct io_engine_ops io_engine_threads, io_engine_aio, io_engine_uring;

/*
 * Performs req synchronously on the calling thread and returns its status: READ/WRITE with
 * preadv/pwritev until every byte moved (-EIO when the file ends first), FLUSH with fdatasync,
 * DISCARD with a hole punch (or BLKDISCARD; 0 where the file system cannot punch, as discard
 * only may deallocate), WRITE_ZEROES with FALLOC_FL_ZERO_RANGE, else a hole punch, else written
 * zeroes (or BLKZEROOUT). Slow: run it only on an engine's worker threads. Engines use it for
 * whatever they cannot submit asynchronously.
 */
int io_execute(struct io_file *f, const struct disk_request *req);

#endif
