/* SPDX-License-Identifier: MIT */
/*
 * Format drivers (raw now, qcow2 later): they turn a disk's guest offsets into I/O on the image
 * file and hand it to the disk's engine. disk.c has already checked every request against the
 * disk's size and read-only state before a format sees it. Internal to src/block/.
 */
#ifndef NKVM_BLOCK_FORMAT_H
#define NKVM_BLOCK_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

#include "block/disk.h"
#include "block/engine.h"

struct disk_format_ops;

struct disk {
	struct io_file file;
	bool readonly;
	bool direct;
	/* The format was probed, not named: a raw one then keeps its first sector probing raw. */
	bool probed;
	uint64_t size; /* guest-visible bytes; a format's open sets it */
	uint32_t block_size; /* logical block size reported to the guest */
	/*
	 * O_DIRECT only: the alignment the kernel demands of file offsets and lengths
	 * (block_size) and of buffer addresses (dio_mem_align). 1 when buffered.
	 */
	uint32_t dio_mem_align;
	uint64_t file_size; /* bytes of the image file (or block device) at open */
	const struct disk_format_ops *format;
	void *format_priv;
	const struct io_engine_ops *engine_ops;
	struct io_engine *engine;
	/* How disk_open deviated from the options without failing, for disk_notice(); or "". */
	char notice[160];
	/*
	 * What disk_open was asked (qcow2: the path, to find backing files; the cache size; the
	 * threads), for a format's open: the caller's, valid only until disk_open returns.
	 */
	const struct disk_options *opts;
};

struct disk_format_ops {
	const char *name;
	/*
	 * Reads what the format needs from d->file and sets d->size. Returns 0 or a negative
	 * errno with a reason for a person in err. The engine does not exist yet: use synchronous
	 * I/O.
	 */
	int (*open)(struct disk *d, char *err, size_t errlen);
	void (*close)(struct disk *d); /* after the engine has drained */
	/*
	 * Starts a checked request. Returns IO_QUEUED when done will be called from an engine
	 * thread (possibly before this returns), else the finished request's status, for which
	 * the caller calls done: the contract of io_engine_ops.submit, one level up.
	 */
	int (*submit)(struct disk *d, struct disk_request *req);
	/*
	 * Optional: submit through an engine queue context (engine.h queue_submit), on the thread
	 * that owns q. The contract of submit; file I/O for req goes to q with queue_submit (its
	 * done then runs on the owner), other work may complete on the format's own threads, which
	 * must never touch q. NULL: disk_queue_submit takes the submit path instead.
	 */
	int (*queue_submit)(struct disk *d, struct io_queue *q, struct disk_request *req);
};

extern const struct disk_format_ops disk_format_raw;

/*
 * O_DIRECT: whether req is in whole blocks with suitably aligned buffers. Formats that hand the
 * caller's buffers to the kernel check it before any byte moves: file systems differ in what
 * they check and when (a misaligned third segment could fail after the first two were written),
 * so the rule is enforced the same way on every file system.
 */
bool disk_dio_aligned(const struct disk *d, const struct disk_request *req);
extern const struct disk_format_ops disk_format_qcow2;

#endif
