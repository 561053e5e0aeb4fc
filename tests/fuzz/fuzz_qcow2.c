// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile qcow2 image through the whole driver. The input is the image file.
 * It is opened read-only (format forced to qcow2) and read at a few places, then opened
 * read-write and written, discarded, zeroed, flushed and read, with offsets and lengths drawn
 * from a generator seeded by the input. Bounded: requests of at most 64 KiB (1 MiB for discard and
 * write-zeroes), a few per open. A file base.raw lies beside the image for backing file names to
 * find.
 */
#include <fcntl.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/disk.h"

#define MAX_IO (64 * 1024)

/*
 * On tmpfs when there is one: the driver's flushes (fdatasync) on a disk-backed /tmp cost tens of
 * milliseconds each, which held the campaign to 10 inputs a second.
 */
static char dir[] = "/dev/shm/nkvm-fuzz-qcow2-XXXXXX";
static char img[256], base[256];

static void cleanup(void)
{
	unlink(img);
	unlink(base);
	rmdir(dir);
}

static void setup(void)
{
	uint8_t block[4096];
	int fd;

	if (img[0])
		return;
	if (!mkdtemp(dir)) {
		memcpy(dir, "/tmp/nkvm-fuzz-qcow2-XXXXXX", sizeof("/tmp/nkvm-fuzz-qcow2-XXXXXX"));
		if (!mkdtemp(dir))
			abort();
	}
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(base, sizeof(base), "%s/base.raw", dir);
	fd = open(base, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		abort();
	for (int i = 0; i < 256; i++) {
		memset(block, i, sizeof(block));
		if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
			abort();
	}
	close(fd);
	atexit(cleanup);
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

struct sync_req {
	struct disk_request req;
	struct iovec iov;
	sem_t done;
	int status;
};

static void sync_done(struct disk_request *req, int status)
{
	struct sync_req *r = (struct sync_req *)req;

	r->status = status;
	sem_post(&r->done);
}

static int run(struct disk *d, enum disk_op op, uint64_t off, uint8_t *buf, uint64_t len)
{
	struct sync_req r = { 0 };

	r.iov = (struct iovec){ buf, len };
	r.req = (struct disk_request){
		.op = op, .offset = off, .len = len, .iov = &r.iov, .iovcnt = 1, .done = sync_done
	};
	sem_init(&r.done, 0, 0);
	disk_submit(d, &r.req);
	while (sem_wait(&r.done))
		;
	sem_destroy(&r.done);
	return r.status;
}

static void exercise(struct disk *d, bool rw, uint64_t *x)
{
	static uint8_t buf[MAX_IO];
	uint64_t size = disk_size(d);

	if (!size)
		return;
	for (int i = 0; i < (rw ? 8 : 6); i++) {
		uint64_t r = next(x), off, len, max = MAX_IO;
		enum disk_op op = DISK_READ;

		if (rw) {
			static const enum disk_op ops[] = { DISK_READ,	       DISK_WRITE,
							    DISK_WRITE,	       DISK_DISCARD,
							    DISK_WRITE_ZEROES, DISK_FLUSH };

			op = ops[r % 6];
			if (op == DISK_DISCARD || op == DISK_WRITE_ZEROES)
				max = 1024 * 1024;
		}
		/* Near the start, near the end, or anywhere. */
		switch ((r >> 8) % 3) {
		case 0:
			off = next(x) % (size < 4 * max ? size : 4 * max);
			break;
		case 1:
			off = size - 1 - next(x) % (size < max ? size : max);
			break;
		default:
			off = next(x) % size;
		}
		len = next(x) % max + 1;
		if (len > size - off)
			len = size - off;
		if (op == DISK_WRITE)
			memset(buf, (int)r, len);
		run(d, op, off, buf, len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ size;
	int fd;

	setup();
	for (size_t i = 0; i < size; i += 61)
		x = (x ^ data[i]) * 0x100000001b3ULL;
	if (!x)
		x = 1;
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	for (int pass = 0; pass < 2; pass++) {
		struct disk_options o = { .path = img,
					  .readonly = pass == 0,
					  .format = DISK_FORMAT_QCOW2,
					  .threads = 1,
					  .cache_size = (x & 1) ? 2048 : 0 };
		struct disk *d;
		char why[DISK_ERR_MAX];

		if (disk_open(&d, &o, why, sizeof(why)))
			continue;
		exercise(d, pass == 1, &x);
		disk_close(d);
	}
	return 0;
}
