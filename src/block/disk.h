/* SPDX-License-Identifier: MIT */
/*
 * The block layer: a disk is a format driver (raw now, qcow2 later) over an I/O engine (a
 * thread pool now, aio and io_uring later). Requests are asynchronous and iovec-based; the
 * format turns guest offsets into file I/O, the engine moves the bytes. Neither knows virtio.
 */
#ifndef NKVM_BLOCK_DISK_H
#define NKVM_BLOCK_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

enum disk_op {
	DISK_READ,
	DISK_WRITE,
	DISK_FLUSH,
	DISK_DISCARD,		/* may deallocate; reads after it return zeroes or old data */
	DISK_WRITE_ZEROES,	/* reads after it return zeroes */
};

struct disk_request;
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
	uint64_t offset;		/* bytes, for READ/WRITE/DISCARD/WRITE_ZEROES */
	uint64_t len;			/* bytes, for DISCARD/WRITE_ZEROES */
	const struct iovec *iov;	/* READ/WRITE buffers; must stay valid until done */
	unsigned int iovcnt;
	disk_done_fn done;
	void *opaque;			/* the caller's */
	struct disk_request *next;	/* engine-private queue link */
};

struct disk_options {
	const char *path;
	bool readonly;
	bool direct;			/* cache=none: O_DIRECT */
	unsigned int threads;		/* engine threads, at most DISK_THREADS_MAX; 0: default */
};

#define DISK_THREADS_MAX 64

struct disk;

/*
 * Opens path (a regular file or a block device) and takes an OFD lock on it (shared when
 * read-only, exclusive otherwise) so that two nkvm processes cannot write one image.
 * Returns 0 or a negative errno; *why then says what failed in words a person can use
 * ("<path>: <why>", to which a caller may add strerror): -ENOENT, -EISDIR, -EINVAL (not a
 * regular file or block device; O_DIRECT refused by the file system), -EAGAIN (locked by
 * another open of the image, in this process or another), or what open or fcntl said.
 */
int disk_open(struct disk **d, const struct disk_options *o, const char **why);
/*
 * Waits for requests in flight (their done callbacks run, and requests they submit too), then
 * frees d. No other thread may submit during or after it.
 */
void disk_close(struct disk *d);

uint64_t disk_size(const struct disk *d);	/* bytes */
/* Logical block size: 512 unless O_DIRECT needs more. */
uint32_t disk_block_size(const struct disk *d);
bool disk_readonly(const struct disk *d);

/*
 * Submits a request; completion arrives through req->done, possibly before this returns.
 * Requests beyond the end of the disk, or writes to a read-only disk, complete with -EINVAL /
 * -EROFS without touching the file; so does, with -EINVAL, a direct (O_DIRECT) request whose
 * offset or lengths are not multiples of disk_block_size() or whose buffers are misaligned
 * (page-aligned buffers always qualify). Safe from several threads at once.
 */
void disk_submit(struct disk *d, struct disk_request *req);

#endif
