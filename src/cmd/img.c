// SPDX-License-Identifier: MIT
/*
 * `nkvm img COMMAND`: create, inspect and check disk images without qemu-img. The subcommands
 * live in img_create.c, img_info.c and img_check.c; here are the dispatch and what they share.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/disk.h"
#include "block/qcow2_header.h"
#include "cmd/cmd.h"
#include "cmd/img.h"
#include "lib/util.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} img_commands[] = {
	{ "create", img_create },
	{ "info", img_info },
	{ "check", img_check },
	{ "bench", img_bench },
};

static void img_usage(FILE *f)
{
	fprintf(f,
		"usage: nkvm img create [-f qcow2|raw] [-b BACKING [-F raw|qcow2]]\n"
		"                       [-o OPTIONS] [-q] FILE [SIZE]\n"
		"       nkvm img info [-f FMT] [--json] [--backing-chain] [-U] FILE\n"
		"       nkvm img check [-f FMT] [--json] [-U] FILE\n"
		"       nkvm img bench [-c COUNT] [-d DEPTH] [-i ENGINE] [-n] [-w] ... FILE\n"
		"\n"
		"create: a new image of SIZE bytes (suffixes K, M, G, T), or the backing file's\n"
		"  size. OPTIONS, comma-separated: cluster_size=SIZE (512 to 2M, default 64K),\n"
		"  refcount_bits=N (1 to 64, default 16), compat=0.10|1.1 (or v2|v3; 1.1),\n"
		"  compression_type=zlib|zstd, backing_file=FILE, backing_fmt=FMT.\n"
		"  A relative BACKING is found beside FILE. FILE is overwritten if it exists.\n"
		"info: format, sizes, qcow2 features, backing file (--backing-chain: all of\n"
		"  the chain).\n"
		"check: compares every refcount with the metadata that uses it. Exit status:\n"
		"  0 clean, 1 check failed, 2 corruptions, 3 leaked clusters only, 63 a format\n"
		"  without checks (raw).\n"
		"bench: qemu-img bench through nkvm's virtio-blk device (nkvm img bench --help).\n"
		"-U: do not take the shared lock (the image may be in use and changing).\n");
}

int cmd_img(int argc, char **argv)
{
	if (argc < 2) {
		img_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		img_usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(img_commands); i++) {
		if (!strcmp(argv[1], img_commands[i].name))
			return img_commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "nkvm img: %s: unknown command (see nkvm img --help)\n", argv[1]);
	return 2;
}

enum disk_format_kind img_format_parse(const char *name)
{
	if (!strcmp(name, "raw"))
		return DISK_FORMAT_RAW;
	if (!strcmp(name, "qcow2"))
		return DISK_FORMAT_QCOW2;
	return DISK_FORMAT_PROBE;
}

const char *img_format_name(enum disk_format_kind f)
{
	return f == DISK_FORMAT_QCOW2 ? "qcow2" : "raw";
}

int img_backing_path(char *buf, size_t len, const char *image_path, const char *name)
{
	const char *slash = strrchr(image_path, '/');
	int dir_len = slash ? (int)(slash - image_path + 1) : 0;
	int n;

	if (name[0] == '/' || !dir_len)
		n = snprintf(buf, len, "%s", name);
	else
		n = snprintf(buf, len, "%.*s%s", dir_len, image_path, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

void img_human_size(char *buf, size_t len, uint64_t bytes)
{
	static const char *const prefix[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
	unsigned int i = 0;
	double div = 1;

	/* The next unit as soon as the number would need four digits. */
	while (i + 1 < ARRAY_SIZE(prefix) && bytes >= 1000 * div) {
		div *= 1024;
		i++;
	}
	snprintf(buf, len, "%.3g %sB", bytes / div, prefix[i]);
}

/*
 * A shared OFD lock, as disk_open takes one for read-only disks: a writer's exclusive lock
 * refuses it, so nobody reads metadata a running guest is changing.
 */
static int img_lock(int fd)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };

	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	return errno == EAGAIN || errno == EACCES ? -EAGAIN : -errno;
}

int img_open(struct img *img, const char *path, enum disk_format_kind format, unsigned int flags,
	     char *err, size_t errlen)
{
	size_t head_len;
	uint8_t *head;
	struct stat st;
	int ret;

	memset(img, 0, sizeof(*img));
	img->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (img->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s", ret == -ENOENT ? "no such file" : strerror(-ret));
		return ret;
	}
	if (fstat(img->fd, &st)) {
		ret = err_set(err, errlen, -errno, "cannot stat");
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = err_set(err, errlen, -EISDIR, "is a directory");
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		img->file_size = st.st_size;
	} else if (!S_ISBLK(st.st_mode) || ioctl(img->fd, BLKGETSIZE64, &img->file_size)) {
		ret = err_set(err, errlen, -EINVAL, "not a regular file or block device");
		goto fail;
	}
	img->disk_usage = (uint64_t)st.st_blocks * 512;
	if (!(flags & IMG_OPEN_SHARE) && (ret = img_lock(img->fd))) {
		ret = err_set(
			err, errlen, ret, "%s",
			ret == -EAGAIN ?
				"image is in use by another process (locked; -U to read anyway)" :
				"cannot lock the image");
		goto fail;
	}

	head_len = img->file_size < (1U << QCOW2_MAX_CLUSTER_BITS) ? img->file_size :
								     (1U << QCOW2_MAX_CLUSTER_BITS);
	head = malloc(head_len ? head_len : 1);
	if (!head) {
		ret = err_set(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	ret = pread_full(img->fd, head, head_len, 0);
	if (ret) {
		free(head);
		err_set(err, errlen, ret, "cannot read the image");
		goto fail;
	}
	/* The block layer's probe, so that img and run always agree on what an image is. */
	if (format == DISK_FORMAT_PROBE)
		format = disk_probe_format(head, head_len) == DISK_FORMAT_QCOW2 ?
				 DISK_FORMAT_QCOW2 :
				 DISK_FORMAT_RAW;
	img->format = format;
	if (format == DISK_FORMAT_QCOW2 && !(flags & IMG_OPEN_PROBE_ONLY)) {
		ret = qcow2_header_parse(&img->h, head, head_len, img->file_size, err, errlen);
		img->virtual_size = img->h.size;
		img->parsed = !ret;
	} else if (format == DISK_FORMAT_RAW) {
		img->virtual_size = img->file_size;
	}
	free(head);
	if (ret)
		goto fail;
	return 0;
fail:
	close(img->fd);
	img->fd = -1;
	return ret;
}

void img_close(struct img *img)
{
	if (img->parsed)
		qcow2_header_free(&img->h);
	img->parsed = false;
	if (img->fd >= 0)
		close(img->fd);
	img->fd = -1;
}
