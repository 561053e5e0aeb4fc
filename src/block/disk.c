// SPDX-License-Identifier: MIT
/*
 * A disk: the image opened and locked, its size, and the checks every request passes before the
 * format driver and the engine see it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/disk.h"
#include "block/engine.h"
#include "block/format.h"
#include "lib/util.h"

static const char *disk_open_reason(int err, bool direct)
{
	switch (err) {
	case -ENOENT:
		return "no such file";
	case -EACCES:
	case -EPERM:
		return "permission denied";
	case -EISDIR:
		return "is a directory";
	case -EROFS:
		return "on a read-only file system (open it read-only)";
	case -EINVAL:
		/* open(2): the one EINVAL an existing path can give is O_DIRECT being refused. */
		if (direct)
			return "the file system does not support direct I/O (O_DIRECT)";
		break;
	}
	return "cannot open";
}

/* Type and size of the image; block devices also give the unit of BLKDISCARD/BLKZEROOUT. */
static int disk_probe_file(struct disk *d, char *err, size_t errlen)
{
	struct stat st;
	int bs;

	if (fstat(d->file.fd, &st))
		return err_set(err, errlen, -errno, "cannot stat");
	if (S_ISREG(st.st_mode)) {
		d->file_size = st.st_size;
		return 0;
	}
	if (S_ISDIR(st.st_mode))
		return err_set(err, errlen, -EISDIR, "is a directory");
	if (!S_ISBLK(st.st_mode))
		return err_set(err, errlen, -EINVAL, "not a regular file or block device");
	d->file.blockdev = true;
	if (ioctl(d->file.fd, BLKGETSIZE64, &d->file_size))
		return err_set(err, errlen, -errno,
			       "cannot read the block device's size (BLKGETSIZE64)");
	if (ioctl(d->file.fd, BLKSSZGET, &bs))
		return err_set(err, errlen, -errno,
			       "cannot read the block device's sector size (BLKSSZGET)");
	d->file.dev_block_size = bs;
	return 0;
}

/*
 * An OFD lock over the whole file (l_len 0 reaches past any end): exclusive for a writer,
 * shared for readers, so a second nkvm cannot write an image another one uses, nor read one
 * another is writing. OFD rather than classic POSIX locks because they belong to this open file,
 * so two disks in one process conflict too, and closing some other descriptor of the same file
 * does not drop them. The kernel releases it when the descriptor closes, even on a crash.
 */
static int disk_lock(struct disk *d, char *err, size_t errlen)
{
	struct flock fl = {
		.l_type = d->readonly ? F_RDLCK : F_WRLCK,
		.l_whence = SEEK_SET,
	};

	if (fcntl(d->file.fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if (errno == EAGAIN || errno == EACCES)
		return err_set(err, errlen, -EAGAIN, "image is in use by another process (locked)");
	return err_set(err, errlen, -errno, "cannot lock the image");
}

/*
 * O_DIRECT moves bytes between the device and the buffers themselves, so offsets, lengths and
 * addresses must meet the device's alignment. Kernels since 6.1 state it (STATX_DIOALIGN);
 * otherwise a block device's logical block size, or 512 for a file, the common case.
 */
static void disk_dio_align(struct disk *d)
{
	struct statx stx;
	uint32_t off_align = 0, mem_align = 0;

	if (statx(d->file.fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		off_align = stx.stx_dio_offset_align;
		mem_align = stx.stx_dio_mem_align;
	}
	if (!off_align)
		off_align = d->file.blockdev ? d->file.dev_block_size : 512;
	d->block_size = off_align > 512 ? off_align : 512;
	d->dio_mem_align = mem_align ? mem_align : d->block_size;
}

/*
 * The format the image's first bytes say. They are read through an aligned buffer of a whole
 * block so that O_DIRECT takes it; a short file gives what it has.
 */
static int disk_probe(struct disk *d, enum disk_format_kind *kind)
{
	size_t len = d->block_size > 4096 ? d->block_size : 4096;
	uint8_t *buf;
	ssize_t n;
	int err = 0;

	if (posix_memalign((void **)&buf, len, len))
		return -ENOMEM;
	do
		n = pread(d->file.fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		err = -errno;
	*kind = disk_probe_format(buf, n < 0 ? 0 : n < DISK_PROBE_LEN ? (size_t)n : DISK_PROBE_LEN);
	free(buf);
	return err;
}

/*
 * The format driver for the image: the one the user named, else probed from its first bytes.
 * A format's open reads what it was asked through d->opts.
 */
static int disk_choose_format(struct disk *d, const struct disk_options *o, char *err,
			      size_t errlen)
{
	enum disk_format_kind kind;
	int ret;

	d->opts = o;
	switch (o->format) {
	case DISK_FORMAT_RAW:
		d->format = &disk_format_raw;
		return 0;
	case DISK_FORMAT_QCOW2:
		d->format = &disk_format_qcow2;
		return 0;
	case DISK_FORMAT_PROBE:
		ret = disk_probe(d, &kind);
		if (ret)
			return err_set(err, errlen, ret, "cannot read the image's first block");
		d->format = kind == DISK_FORMAT_QCOW2 ? &disk_format_qcow2 : &disk_format_raw;
		d->probed = true;
		return 0;
	}
	return err_set(err, errlen, -EINVAL, "unknown image format");
}

/*
 * An engine that cannot run here (no io_uring in the kernel, a sysctl or a sandbox refusing it,
 * aio on a buffered disk, where it would block) is not an error: the threads engine runs
 * instead, and d->notice says so for the caller to print.
 */
static void disk_engine_or_threads(struct disk *d, const struct io_engine_ops *ops)
{
	char reason[120] = "";

	d->engine_ops = ops;
	if (!ops->probe || ops->probe(&d->file, reason, sizeof(reason)) == 0)
		return;
	snprintf(d->notice, sizeof(d->notice), "%s unavailable (%s); using the threads engine",
		 ops->name, reason);
	d->engine_ops = &io_engine_threads;
}

/* The engine the user named, else the default that docs/performance.md chose. */
static int disk_choose_engine(struct disk *d, const struct disk_options *o, char *err,
			      size_t errlen)
{
	switch (o->engine) {
	case DISK_ENGINE_DEFAULT:
		/*
		 * Chosen by docs/performance.md ("I/O engines"): with O_DIRECT, io_uring matches
		 * or beats threads on every workload measured, at a quarter of the CPU per I/O;
		 * through the page cache it lost a third on 1 MiB sequential reads, so threads
		 * stays there. Falling back needs no notice: the user asked for no engine.
		 */
		if (o->direct) {
			disk_engine_or_threads(d, &io_engine_uring);
			d->notice[0] = '\0';
			return 0;
		}
		d->engine_ops = &io_engine_threads;
		return 0;
	case DISK_ENGINE_THREADS:
		d->engine_ops = &io_engine_threads;
		return 0;
	case DISK_ENGINE_AIO:
		disk_engine_or_threads(d, &io_engine_aio);
		return 0;
	case DISK_ENGINE_IO_URING:
		disk_engine_or_threads(d, &io_engine_uring);
		return 0;
	default:
		return err_set(err, errlen, -ENOTSUP, "this I/O engine is not available");
	}
}

int disk_open(struct disk **dp, const struct disk_options *o, char *err, size_t errlen)
{
	struct io_engine_config cfg = { .threads = o->threads };
	struct disk *d;
	int flags, ret;

	*dp = NULL;
	if (o->threads > DISK_THREADS_MAX)
		return err_set(err, errlen, -EINVAL, "too many I/O threads");
	d = calloc(1, sizeof(*d));
	if (!d)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	d->readonly = o->readonly;
	d->direct = o->direct;
	d->block_size = 512;
	d->dio_mem_align = 1;

	/*
	 * O_NONBLOCK so that a FIFO named by mistake is refused below instead of hanging here
	 * waiting for a writer (cleared again once the type is known); O_NOCTTY likewise so a
	 * terminal cannot become ours.
	 */
	flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	if (o->direct)
		flags |= O_DIRECT;
	d->file.fd = open(o->path, flags);
	if (d->file.fd < 0) {
		ret = -errno;
		free(d);
		return err_set(err, errlen, ret, "%s", disk_open_reason(ret, o->direct));
	}
	ret = disk_probe_file(d, err, errlen);
	if (!ret && fcntl(d->file.fd, F_SETFL, flags & ~O_NONBLOCK)) {
		ret = -errno;
		err_set(err, errlen, ret, "cannot clear O_NONBLOCK");
	}
	/* Locked before the format reads a byte: its header could be changing under a writer. */
	if (!ret)
		ret = disk_lock(d, err, errlen);
	if (!ret && d->direct)
		disk_dio_align(d);

	if (!ret)
		ret = disk_choose_engine(d, o, err, errlen);
	if (!ret)
		ret = disk_choose_format(d, o, err, errlen);
	if (!ret)
		ret = d->format->open(d, err, errlen);
	if (!ret) {
		ret = d->engine_ops->create(&d->engine, &d->file, &cfg, err, errlen);
		if (ret)
			d->format->close(d);
	}
	if (ret) {
		close(d->file.fd);
		free(d);
		return ret;
	}
	*dp = d;
	return 0;
}

void disk_close(struct disk *d)
{
	if (!d)
		return;
	d->engine_ops->destroy(d->engine);
	d->format->close(d);
	close(d->file.fd);
	free(d);
}

uint64_t disk_size(const struct disk *d)
{
	return d->size;
}

uint32_t disk_block_size(const struct disk *d)
{
	return d->block_size;
}

bool disk_readonly(const struct disk *d)
{
	return d->readonly;
}

const char *disk_engine_name(const struct disk *d)
{
	return d->engine_ops->name;
}

bool disk_probed_raw(const struct disk *d)
{
	return d->probed && d->format == &disk_format_raw && !d->readonly;
}

const char *disk_notice(const struct disk *d)
{
	return d->notice[0] ? d->notice : NULL;
}

/*
 * What every format needs: a known op, a writable disk for ops that change data, and a range
 * inside the disk, its end computed without overflow. Returns the status to fail req with.
 */
static int disk_check(const struct disk *d, const struct disk_request *req)
{
	uint64_t len = 0;

	switch (req->op) {
	case DISK_READ:
	case DISK_WRITE:
		if (req->iovcnt && !req->iov)
			return -EINVAL;
		for (unsigned int i = 0; i < req->iovcnt; i++) {
			if (req->iov[i].iov_len > UINT64_MAX - len)
				return -EINVAL;
			len += req->iov[i].iov_len;
		}
		break;
	case DISK_DISCARD:
	case DISK_WRITE_ZEROES:
		len = req->len;
		break;
	case DISK_FLUSH:
		return 0;
	default:
		return -EOPNOTSUPP;
	}
	if (req->op != DISK_READ && d->readonly)
		return -EROFS;
	if (req->offset > d->size || len > d->size - req->offset)
		return -EINVAL;
	return 0;
}

bool disk_dio_aligned(const struct disk *d, const struct disk_request *req)
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

void disk_submit(struct disk *d, struct disk_request *req)
{
	int ret = disk_check(d, req);

	/* Nothing was written through a read-only disk: a flush has nothing to make durable. */
	if (!ret && !(req->op == DISK_FLUSH && d->readonly))
		ret = d->format->submit(d, req);
	/* Queued requests complete from the engine and may already be gone: req is not touched. */
	if (ret != IO_QUEUED)
		req->done(req, ret);
}

/*
 * A queue context: the disk, and the engine's context when both the engine and the format can
 * submit per queue; without one, requests take disk_submit's path.
 */
struct disk_queue {
	struct disk *d;
	struct io_queue *q;
};

int disk_queue_open(struct disk *d, struct disk_queue **qp, int *poll_fd, char *err, size_t errlen)
{
	struct disk_queue *dq = calloc(1, sizeof(*dq));
	int ret;

	*qp = NULL;
	*poll_fd = -1;
	if (!dq)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	dq->d = d;
	if (d->engine_ops->queue_open && d->format->queue_submit) {
		ret = d->engine_ops->queue_open(d->engine, &dq->q, poll_fd, err, errlen);
		if (ret) {
			free(dq);
			return ret;
		}
	}
	*qp = dq;
	return 0;
}

void disk_queue_submit(struct disk_queue *dq, struct disk_request *req)
{
	struct disk *d = dq->d;
	int ret;

	if (!dq->q) {
		disk_submit(d, req);
		return;
	}
	ret = disk_check(d, req);
	if (!ret && !(req->op == DISK_FLUSH && d->readonly))
		ret = d->format->queue_submit(d, dq->q, req);
	if (ret != IO_QUEUED)
		req->done(req, ret);
}

void disk_queue_poll(struct disk_queue *dq)
{
	if (dq->q)
		dq->d->engine_ops->queue_poll(dq->q);
}

bool disk_queue_ready(struct disk_queue *dq)
{
	return dq->q && dq->d->engine_ops->queue_ready(dq->q);
}

int disk_queue_wait(struct disk_queue *dq, int fd)
{
	if (!dq->q || !dq->d->engine_ops->queue_wait)
		return -EOPNOTSUPP;
	return dq->d->engine_ops->queue_wait(dq->q, fd);
}

void disk_queue_close(struct disk_queue *dq)
{
	if (!dq)
		return;
	if (dq->q)
		dq->d->engine_ops->queue_close(dq->q);
	free(dq);
}
