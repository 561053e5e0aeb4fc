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

static int raw_submit(struct disk *d, struct disk_request *req)
{
	if (d->direct && !disk_dio_aligned(d, req))
		return -EINVAL;
	return d->engine_ops->submit(d->engine, req);
}

static int raw_queue_submit(struct disk *d, struct io_queue *q, struct disk_request *req)
{
	if (d->direct && !disk_dio_aligned(d, req))
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
