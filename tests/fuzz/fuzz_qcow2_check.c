// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: `nkvm img check` on a hostile image. The input is the image file; the check
 * walks every table it names (header, L1/L2, refcount table and blocks, snapshots, bitmaps) with
 * its own parser, independent of the driver's, so it gets a target of its own. Whatever the
 * bytes, it must end with a result or a one-line reason, within the memory bound it promises.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/qcow2_tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qcow2_check_result r;
	char why[256];
	FILE *log;
	int fd;

	/* A memfd is a real file to pread from, with the input's size. */
	fd = memfd_create("fuzz-qcow2-check", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	log = fopen("/dev/null", "w");
	if (!log)
		abort();
	(void)qcow2_check(fd, log, &r, why, sizeof(why));
	fclose(log);
	close(fd);
	return 0;
}
