// SPDX-License-Identifier: MIT
/*
 * Format probing: what an image is, from its first bytes. One rule for `nkvm run` (disk.c) and
 * `nkvm img` (img.c), and the one raw.c holds a probed raw disk's first sector to. Alone in its
 * file so that the image tools and the fuzz targets take it without the rest of the block layer.
 */
#include "block/disk.h"
#include "block/qcow2_header.h"

enum disk_format_kind disk_probe_format(const void *buf, size_t len)
{
	/* Only the first DISK_PROBE_LEN bytes may count (disk.h). */
	if (len >= 4 && qcow2_be32(buf) == QCOW2_MAGIC)
		return DISK_FORMAT_QCOW2;
	return DISK_FORMAT_RAW;
}
