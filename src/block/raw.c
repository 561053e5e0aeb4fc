// SPDX-License-Identifier: MIT
/*
 * The raw format: a guest offset is a file offset, the disk is as large as the file. All it
 * adds on the way to the engine is the O_DIRECT alignment check.
 */
#include <errno.h>
#include <stdint.h>

#include "block/format.h"

static int raw_open(struct disk *d, const char **why)
{
	d->size = d->file_size;
	return 0;
}

static void raw_close(struct disk *d)
{
}

/*
 * Raw hands the caller's buffers to the kernel as they are, so with O_DIRECT every range must
 * be in whole blocks and every buffer suitably aligned. File systems differ in what they check
 * and when (a misaligned third segment could fail after the first two were written), so the
 * rule is enforced here, before any byte moves, the same way on every file system.
 */
static bool raw_dio_aligned(const struct disk *d, const struct disk_request *req)
{
	uint64_t mask = d->block_size - 1;
	uintptr_t mem_mask = d->dio_mem_align - 1;

	switch (req->op) {
	case DISK_READ:
	case DISK_WRITE:
		if (req->offset & mask)
			return false;
		for (unsigned int i = 0; i < req->iovcnt; i++) {
			const struct iovec *v = &req->iov[i];

			if ((v->iov_len & mask) || ((uintptr_t)v->iov_base & mem_mask))
				return false;
		}
		return true;
	case DISK_DISCARD:
	case DISK_WRITE_ZEROES:
		/* Their fallback writes zero buffers, which O_DIRECT holds to the same rule. */
		return !((req->offset | req->len) & mask);
	default:
		return true;
	}
}

static int raw_submit(struct disk *d, struct disk_request *req)
{
	if (d->direct && !raw_dio_aligned(d, req))
		return -EINVAL;
	return d->engine_ops->submit(d->engine, req);
}

static int raw_queue_submit(struct disk *d, struct io_queue *q, struct disk_request *req)
{
	if (d->direct && !raw_dio_aligned(d, req))
		return -EINVAL;
	return d->engine_ops->queue_submit(q, req);
}

const struct disk_format_ops disk_format_raw = {
	.name = "raw",
	.open = raw_open,
	.close = raw_close,
	.submit = raw_submit,
	.queue_submit = raw_queue_submit,
};
