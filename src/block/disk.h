/* SPDX-License-Identifier: MIT */
/*
 * The block layer: a disk is a format driver (raw now, qcow2 later) over an I/O engine (a
 * thread pool, native AIO or io_uring). Requests are asynchronous and iovec-based; the
 * format turns guest offsets into file I/O, the engine moves the bytes. Neither knows virtio.
 */
#ifndef NKVM_BLOCK_DISK_H
#define NKVM_BLOCK_DISK_H

#include <linux/fs.h> /* BLKDISCARD, BLKZEROOUT, for IO_EXECUTE_RULES */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum disk_op {
	DISK_READ,
	DISK_WRITE,
	DISK_FLUSH,
	DISK_DISCARD, /* may deallocate; reads after it return zeroes or old data */
	DISK_WRITE_ZEROES, /* reads after it return zeroes */
};

struct disk_request;
struct io_queue;
/*
 * Called exactly once per request, with status 0 or a negative errno. Accepted requests
 * complete on an engine thread, possibly before disk_submit returns, and the done callbacks of
 * several requests may run at once on different threads. Requests that fail the checks
 * complete on the submitting thread, inside disk_submit: a submitter must not hold across
 * disk_submit a lock that done takes. done may submit again, and may free or reuse req.
 * Requests in flight together complete in any order: one is ordered after another only by
 * being submitted after the other's done. A FLUSH makes durable the writes that completed
 * before it was submitted.
 */
typedef void (*disk_done_fn)(struct disk_request *req, int status);

struct disk_request {
	enum disk_op op;
	uint64_t offset; /* bytes, for READ/WRITE/DISCARD/WRITE_ZEROES */
	uint64_t len; /* bytes, for DISCARD/WRITE_ZEROES */
	const struct iovec *iov; /* READ/WRITE buffers; must stay valid until done */
	unsigned int iovcnt;
	disk_done_fn done;
	void *opaque; /* the caller's */
	/*
	 * The submitter waits for this request and nothing else: an engine that would hand it to
	 * another thread may instead perform it on the submitting thread, inside disk_submit
	 * (done then runs there). A hint: the threads engine takes it with O_DIRECT; the others,
	 * which hand nothing off on a queue's context, ignore it.
	 */
	bool may_wait;
	struct disk_request *next; /* engine-private queue link */
	/* Engine-private: the queue context a worker hands the request back to, and its status. */
	struct io_queue *engine_queue;
	int engine_status;
};

/* The image format: probed from the file's first bytes unless the user names one. */
enum disk_format_kind {
	DISK_FORMAT_PROBE,
	DISK_FORMAT_RAW,
	DISK_FORMAT_QCOW2,
};

/*
 * Probing reads this many bytes from the start of an image and judges by them alone, so that a
 * raw disk whose first DISK_PROBE_LEN bytes probe raw keeps probing raw.
 */
#define DISK_PROBE_LEN 512

/*
 * The format an image whose first bytes are buf[len] (len may be short of DISK_PROBE_LEN for a
 * small image) probes as: DISK_FORMAT_QCOW2 when it starts with the qcow2 magic, else
 * DISK_FORMAT_RAW. All zeroes probe raw. Pure: no I/O.
 */
enum disk_format_kind disk_probe_format(const void *buf, size_t len);

/* What moves the bytes (engine.h); DEFAULT is the one docs/performance.md chose. */
enum disk_engine_kind {
	DISK_ENGINE_DEFAULT,
	DISK_ENGINE_THREADS,
	DISK_ENGINE_AIO,
	DISK_ENGINE_IO_URING,
};

struct disk_options {
	const char *path;
	bool readonly;
	bool direct; /* cache=none: O_DIRECT */
	unsigned int threads; /* engine threads, at most DISK_THREADS_MAX; 0: default */
	enum disk_format_kind format;
	enum disk_engine_kind engine;
	uint64_t cache_size; /* qcow2 metadata cache, bytes; 0: the format's default */
};

#define DISK_THREADS_MAX 64
/* The largest cache_size `-d ...,cache-size=` takes: 1G of L2 tables maps 8 TiB of 64K clusters. */
#define DISK_CACHE_SIZE_MAX (1ULL << 30)

struct disk;

/*
 * Opens path (a regular file or a block device) and takes an OFD lock on it (shared when
 * read-only, exclusive otherwise) so that two nkvm processes cannot write one image.
 * Returns 0 or a negative errno; err then says what failed in words a person can use
 * ("<path>: <err>", to which a caller may add strerror): -ENOENT, -EISDIR, -EINVAL (not a
 * regular file or block device; O_DIRECT refused by the file system), -EAGAIN (locked by
 * another open of the image, in this process or another), or what open or fcntl said.
 * A reason is at most DISK_ERR_MAX bytes: a buffer of that size holds any in full.
 */
#define DISK_ERR_MAX 1200
int disk_open(struct disk **d, const struct disk_options *o, char *err, size_t errlen);
/*
 * Waits for requests in flight (their done callbacks run, and requests they submit too), then
 * frees d. No other thread may submit during or after it.
 */
void disk_close(struct disk *d);

uint64_t disk_size(const struct disk *d); /* bytes */
/* Logical block size: 512 unless O_DIRECT needs more. */
uint32_t disk_block_size(const struct disk *d);
bool disk_readonly(const struct disk *d);
/* The engine that moves the bytes: "threads", "aio" or "io_uring". */
const char *disk_engine_name(const struct disk *d);
/*
 * Whether the format was probed, not named, and found raw on a writable disk. Such a disk keeps
 * probing as raw whatever the guest writes (see disk_probe_format): for the caller to say so.
 */
bool disk_probed_raw(const struct disk *d);
/*
 * NULL, or one line on how disk_open deviated from the options without failing: the engine
 * asked for cannot run here, so the threads engine runs ("io_uring unavailable (not in this
 * kernel); using the threads engine"). For the caller to print: "nkvm: <path>: <notice>".
 */
const char *disk_notice(const struct disk *d);

/*
 * Submits a request; completion arrives through req->done, possibly before this returns.
 * Requests beyond the end of the disk, or writes to a read-only disk, complete with -EINVAL /
 * -EROFS without touching the file; so does, with -EINVAL, a direct (O_DIRECT) request whose
 * offset or lengths are not multiples of disk_block_size() or whose buffers are misaligned
 * (page-aligned buffers always qualify). Safe from several threads at once.
 */
void disk_submit(struct disk *d, struct disk_request *req);

/*
 * Per-queue submission: a context owned by one thread (a virtqueue's I/O thread), through which
 * that thread submits and on which it reaps, without a hop to an engine thread either way, when
 * the engine and the format support it (io_uring: a ring per context; aio: a kernel AIO context).
 *
 * disk_queue_open, on the owner thread, creates a context; *poll_fd is then a descriptor to wait
 * on (readable: call disk_queue_poll), or -1 when the disk has no per-queue path, in which case
 * the context passes requests to disk_submit and disk_queue_poll does nothing. Returns 0 or a
 * negative errno with a reason in err (the engine could not set a context up; disk_submit
 * still works).
 *
 * Only the owner calls disk_queue_submit, disk_queue_poll and disk_queue_close. Requests follow
 * disk_submit's rules, done included (it may still run on another thread: a format's own work,
 * such as qcow2 allocating, completes there), except that with a per-queue path (*poll_fd >= 0)
 * what the engine does on the context completes on the owner thread, inside disk_queue_submit
 * or disk_queue_poll, and a request may wait to be started until the next disk_queue_poll, so
 * that one system call starts a batch: the owner calls it after submitting and whenever
 * *poll_fd is readable. It never blocks. done may submit to the context again when it runs on
 * the owner.
 *
 * disk_queue_close waits for the requests the engine runs on the context (and those their done
 * callbacks submit to it), then frees it. Requests the disk completes elsewhere (all of them
 * without a per-queue path; a format's own work) are not waited for: the owner closes the
 * context only once none of their done callbacks can submit through it any more. A context
 * with a per-queue path is closed before disk_close; one without may also be closed after.
 */
struct disk_queue;

int disk_queue_open(struct disk *d, struct disk_queue **q, int *poll_fd, char *err, size_t errlen);
void disk_queue_submit(struct disk_queue *q, struct disk_request *req);
void disk_queue_poll(struct disk_queue *q);
/*
 * Whether disk_queue_poll may have work (true when unsure), found without a system call: for an
 * owner that polls, or that would call disk_queue_poll only in case.
 */
bool disk_queue_ready(struct disk_queue *q);
/*
 * Instead of polling *poll_fd and fd (an eventfd of the owner's, e.g. its kicks): submits what
 * waits, sleeps until there is work, does it as disk_queue_poll would, and returns 1 when fd was
 * readable (its count read) or 0. One system call where polling makes several. The first call
 * fails with -EOPNOTSUPP, changing nothing, where the engine cannot wait so; after one success
 * the owner must not poll *poll_fd any more.
 */
int disk_queue_wait(struct disk_queue *q, int fd);
void disk_queue_close(struct disk_queue *q);

/*
 * The system calls of io_execute (engine_threads.c), which every engine's threads run: for the
 * allow lists of each engine's threads (sandbox.h).
 */
#define IO_EXECUTE_RULES                                                                         \
	SANDBOX_ALLOW(pread64), SANDBOX_ALLOW(pwrite64), SANDBOX_ALLOW(preadv),                  \
		SANDBOX_ALLOW(pwritev), SANDBOX_ALLOW(fdatasync), SANDBOX_ALLOW(fallocate),      \
		SANDBOX_ALLOW_ARG(ioctl, 1, BLKDISCARD), SANDBOX_ALLOW_ARG(ioctl, 1, BLKZEROOUT)
/*
 * What a queue thread calls when it submits to a disk, whatever its engine: io_execute's calls
 * (a format's metadata, read and written in place, and the threads engine's inline work), and
 * its own aio or io_uring context, made by disk_queue_open on that thread and ended there.
 */
#define DISK_QUEUE_RULES                                                                   \
	IO_EXECUTE_RULES, SANDBOX_ALLOW(ftruncate), SANDBOX_ALLOW(ppoll), SANDBOX_ALLOW(eventfd2), \
		SANDBOX_ALLOW(io_setup), SANDBOX_ALLOW(io_destroy), SANDBOX_ALLOW(io_submit),      \
		SANDBOX_ALLOW(io_getevents), SANDBOX_ALLOW(io_uring_setup),                        \
		SANDBOX_ALLOW(io_uring_enter), SANDBOX_ALLOW(io_uring_register), SANDBOX_ALLOW(close),  \
		SANDBOX_ALLOW(clock_nanosleep)

#endif
