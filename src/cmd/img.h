/* SPDX-License-Identifier: MIT */
/*
 * `nkvm img create|info|check`: image tools for people without qemu-img. img.c dispatches and
 * holds what the subcommands share (opening and probing an image, paths, sizes for people);
 * each subcommand has its own file.
 */
#ifndef NKVM_CMD_IMG_H
#define NKVM_CMD_IMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/disk.h"
#include "block/qcow2_header.h"

/* An image opened read-only: its format and, for qcow2, its parsed header. */
struct img {
	int fd;
	enum disk_format_kind format;
	uint64_t file_size; /* bytes of the file (or block device) */
	uint64_t disk_usage; /* bytes allocated on the host (st_blocks * 512) */
	uint64_t virtual_size;
	struct qcow2_header h; /* qcow2 only, unless IMG_OPEN_PROBE_ONLY */
	bool parsed; /* h holds a parsed header */
};

/* img_open flags. */
#define IMG_OPEN_SHARE 1 /* no shared lock: a writer (a running nkvm) may be changing it */
#define IMG_OPEN_PROBE_ONLY 2 /* the format only: the caller parses the header itself */

/*
 * Opens path read-only and reads its format: the one asked for, else qcow2 when it starts with
 * the qcow2 magic, else raw; and, unless IMG_OPEN_PROBE_ONLY, the qcow2 header. Without
 * IMG_OPEN_SHARE, takes the shared lock that keeps a writer away. Returns 0, or a negative errno
 * with a one-line reason (without the path) in err.
 */
int img_open(struct img *img, const char *path, enum disk_format_kind format, unsigned int flags,
	     char *err, size_t errlen);
void img_close(struct img *img);

/* "raw" / "qcow2" → the format; DISK_FORMAT_PROBE for anything else. */
enum disk_format_kind img_format_parse(const char *name);
const char *img_format_name(enum disk_format_kind f);

/*
 * Where a backing file named name lives for an image at image_path: name itself when absolute,
 * else name beside the image (QEMU's rule). 0 or -ENAMETOOLONG.
 */
int img_backing_path(char *buf, size_t len, const char *image_path, const char *name);

/* A size for people, as qemu-img writes them: "64 MiB", "1.25 MiB", "0.977 KiB". */
void img_human_size(char *buf, size_t len, uint64_t bytes);

int img_create(int argc, char **argv);
int img_info(int argc, char **argv);
int img_check(int argc, char **argv);
int img_bench(int argc, char **argv); /* img_bench.c */

/* qemu-img check's exit statuses. */
#define IMG_CHECK_CLEAN 0
#define IMG_CHECK_FAILED 1
#define IMG_CHECK_CORRUPT 2
#define IMG_CHECK_LEAKS 3
#define IMG_CHECK_UNSUPPORTED 63

#endif
