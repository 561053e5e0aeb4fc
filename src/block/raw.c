// SPDX-License-Identifier: MIT
/*
 * The raw format: a guest offset is a file offset, the disk is as large as the file. All it
 * adds on the way to the engine is the O_DIRECT alignment check and, on a disk whose format was
 * probed, the guard of its first sector.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block/format.h"

/*
 * A probed raw image is raw only because of what its first bytes are, and those are the guest's:
 * a guest that wrote a qcow2 header there, naming say /etc/shadow as its raw backing file, would
 * have the next probing open take the disk for that image and hand it the file (the class of
 * QEMU's CVE-2008-2004). So on a probed raw disk, every change to the first DISK_PROBE_LEN bytes
 * (the probe area) leaves them probing raw, the rule of QEMU's raw driver for probed images:
 * - a write covering the whole area is probed from a copy of the segments holding it, and that
 *   copy is what goes to the file, since the guest may rewrite its buffers after the check; one
 *   that would probe as another format fails with -EPERM (the guest sees an I/O error), and
 *   nothing is written;
 * - a write, write-zeroes or discard covering part of the area fails with -EINVAL: what the area
 *   would probe as then depends on the bytes left, which other requests in flight may be
 *   changing. Guests write whole sectors, so they never send one;
 * - write-zeroes and discard covering the whole area leave zeroes, which probe raw, or (a discard
 *   that deallocates nothing) the bytes as they were.
 * Requests that stay clear of the area are not looked at.
 */
struct raw_guarded {
	struct disk_request req; /* first: what the engine completes is the whole */
	struct disk_request *orig; /* the caller's, completed with req's status */
	void *head; /* the checked copy of the segments holding the area */
	struct iovec iov[];
};

static void raw_guarded_free(struct raw_guarded *g)
{
	free(g->head);
	free(g);
}

static void raw_guarded_done(struct disk_request *req, int status)
{
	struct raw_guarded *g = (struct raw_guarded *)req;
	struct disk_request *orig = g->orig;

	raw_guarded_free(g);
	orig->done(orig, status);
}

/*
 * The guard above, for a checked request on a probed raw disk. Returns 0 with *out NULL when req
 * goes as it is, 0 with *out the request to submit in its place (whose done completes req), or
 * the status to fail req with: -EPERM, -EINVAL as above, -ENOMEM.
 */
static int raw_guard(struct disk *d, struct disk_request *req, struct raw_guarded **out)
{
	uint64_t area = d->size < DISK_PROBE_LEN ? d->size : DISK_PROBE_LEN;
	uint64_t len = 0, head_len = 0;
	size_t align = d->dio_mem_align > sizeof(void *) ? d->dio_mem_align : sizeof(void *);
	unsigned int k = 0, rest;
	struct raw_guarded *g;
	uint8_t *p;

	*out = NULL;
	switch (req->op) {
	case DISK_WRITE:
		/* disk_check has summed these without overflow. */
		for (unsigned int i = 0; i < req->iovcnt; i++)
			len += req->iov[i].iov_len;
		break;
	case DISK_WRITE_ZEROES:
	case DISK_DISCARD:
		len = req->len;
		break;
	default:
		return 0;
	}
	if (!len || req->offset >= area)
		return 0;
	if (req->offset || len < area)
		return -EINVAL;
	if (req->op != DISK_WRITE)
		return 0;

	/* Whole segments, so that none is split and the request has no more of them than before. */
	while (head_len < area)
		head_len += req->iov[k++].iov_len;
	rest = req->iovcnt - k;
	g = malloc(sizeof(*g) + (rest + 1) * sizeof(g->iov[0]));
	if (!g)
		return -ENOMEM;
	/* Under O_DIRECT the segments are whole blocks, so the copy is; aligned as they were. */
	if (posix_memalign(&g->head, align, head_len)) {
		free(g);
		return -ENOMEM;
	}
	p = g->head;
	for (unsigned int i = 0; i < k; i++) {
		memcpy(p, req->iov[i].iov_base, req->iov[i].iov_len);
		p += req->iov[i].iov_len;
	}
	if (disk_probe_format(g->head, area) != DISK_FORMAT_RAW) {
		raw_guarded_free(g);
		return -EPERM;
	}
	g->iov[0] = (struct iovec){ g->head, head_len };
	memcpy(&g->iov[1], req->iov + k, rest * sizeof(g->iov[0]));
	g->req = *req;
	g->req.iov = g->iov;
	g->req.iovcnt = rest + 1;
	g->req.done = raw_guarded_done;
	g->req.opaque = NULL;
	g->req.next = NULL;
	g->orig = req;
	*out = g;
	return 0;
}

static int raw_open(struct disk *d, char *err, size_t errlen)
{
	d->size = d->file_size;
	return 0;
}

static void raw_close(struct disk *d)
{
}

static int raw_submit(struct disk *d, struct disk_request *req)
{
	struct raw_guarded *g = NULL;
	int ret;

	if (d->direct && !disk_dio_aligned(d, req))
		return -EINVAL;
	if (d->probed && (ret = raw_guard(d, req, &g)))
		return ret;
	if (!g)
		return d->engine_ops->submit(d->engine, req);
	ret = d->engine_ops->submit(d->engine, &g->req);
	if (ret != IO_QUEUED)
		raw_guarded_free(g);
	return ret;
}

static int raw_queue_submit(struct disk *d, struct io_queue *q, struct disk_request *req)
{
	struct raw_guarded *g = NULL;
	int ret;

	if (d->direct && !disk_dio_aligned(d, req))
		return -EINVAL;
	if (d->probed && (ret = raw_guard(d, req, &g)))
		return ret;
	if (!g)
		return d->engine_ops->queue_submit(q, req);
	ret = d->engine_ops->queue_submit(q, &g->req);
	if (ret != IO_QUEUED)
		raw_guarded_free(g);
	return ret;
}

const struct disk_format_ops disk_format_raw = {
	.name = "raw",
	.open = raw_open,
	.close = raw_close,
	.submit = raw_submit,
	.queue_submit = raw_queue_submit,
};
