// SPDX-License-Identifier: MIT
/*
 * `nkvm img create [-f qcow2|raw] [-b BACKING [-F FMT]] [-o OPTIONS] [-q] FILE [SIZE]`, after
 * qemu-img create: the same options, the same defaults (qcow2 v3, 64 KiB clusters, 16-bit
 * refcounts), an existing FILE overwritten. A backing file must exist: its size is the default
 * SIZE and its format, probed when -F does not name it, is always recorded in the header.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2_header.h"
#include "block/qcow2_tools.h"
#include "cmd/img.h"
#include "lib/util.h"

struct create {
	enum disk_format_kind format;
	const char *path;
	bool have_size;
	uint64_t size;
	const char *backing;
	enum disk_format_kind backing_format;
	const char *backing_format_arg;
	bool quiet;
	struct qcow2_create_options q;
	bool qcow2_option; /* an -o option only qcow2 takes was given */
};

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "nkvm img create: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see nkvm img --help)\n");
	return 1;
}

static int log2_exact(uint64_t v)
{
	return v && !(v & (v - 1)) ? __builtin_ctzll(v) : -1;
}

/* One key=value of -o. Returns 0, or 1 after printing why. */
static int create_option(struct create *c, char *kv)
{
	char *value = strchr(kv, '=');
	uint64_t n;
	int bits;

	if (!value)
		return usage_error("-o %s: expected key=value", kv);
	*value++ = '\0';
	if (!strcmp(kv, "cluster_size")) {
		bits = parse_size(value, 1, &n) ? -1 : log2_exact(n);
		if (bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS)
			return usage_error("cluster_size=%s: must be a power of two from 512 to 2M",
					   value);
		c->q.cluster_bits = bits;
		c->qcow2_option = true;
	} else if (!strcmp(kv, "refcount_bits")) {
		bits = parse_size(value, 1, &n) ? -1 : log2_exact(n);
		if (bits < 0 || bits > 6)
			return usage_error("refcount_bits=%s: must be a power of two from 1 to 64",
					   value);
		c->q.refcount_order = bits;
		c->qcow2_option = true;
	} else if (!strcmp(kv, "compat")) {
		if (!strcmp(value, "0.10") || !strcmp(value, "v2"))
			c->q.version = 2;
		else if (!strcmp(value, "1.1") || !strcmp(value, "v3"))
			c->q.version = 3;
		else
			return usage_error("compat=%s: expected 0.10, 1.1, v2 or v3", value);
		c->qcow2_option = true;
	} else if (!strcmp(kv, "compression_type")) {
		if (!strcmp(value, "zlib"))
			c->q.compression_type = QCOW2_COMPRESSION_ZLIB;
		else if (!strcmp(value, "zstd"))
			c->q.compression_type = QCOW2_COMPRESSION_ZSTD;
		else
			return usage_error("compression_type=%s: expected zlib or zstd", value);
		c->qcow2_option = true;
	} else if (!strcmp(kv, "backing_file")) {
		c->backing = value;
	} else if (!strcmp(kv, "backing_fmt")) {
		c->backing_format_arg = value;
	} else if (!strcmp(kv, "size")) {
		if (parse_size(value, 1, &c->size))
			return usage_error("size=%s: not a size", value);
		c->have_size = true;
	} else {
		return usage_error("-o %s: unknown option", kv);
	}
	return 0;
}

static int create_options(struct create *c, char *list)
{
	char *save = NULL;

	for (char *kv = strtok_r(list, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		if (create_option(c, kv))
			return 1;
	}
	return 0;
}

/* Returns 0 to go on, 1 on a usage error (printed), -1 after --help. */
static int create_parse(struct create *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int opt;

	optind = 0; /* GNU getopt: start afresh, the parser may run more than once */
	while ((opt = getopt_long(argc, argv, ":f:b:F:o:qh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			c->format = img_format_parse(optarg);
			if (c->format == DISK_FORMAT_PROBE)
				return usage_error("-f %s: unknown format (raw or qcow2)", optarg);
			break;
		case 'b':
			c->backing = optarg;
			break;
		case 'F':
			c->backing_format_arg = optarg;
			break;
		case 'o':
			if (create_options(c, optarg))
				return 1;
			break;
		case 'q':
			c->quiet = true;
			break;
		case 'h':
			printf("usage: nkvm img create [-f qcow2|raw] [-b BACKING [-F raw|qcow2]] "
			       "[-o OPTIONS] [-q] FILE [SIZE]\n(see nkvm img --help)\n");
			return -1;
		case ':':
			return usage_error("%s: option needs a value", argv[optind - 1]);
		default:
			return usage_error("%s: unknown option", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("%s", "missing FILE");
	c->path = argv[optind++];
	if (optind < argc) {
		if (parse_size(argv[optind], 1, &c->size))
			return usage_error("%s: not a size (a number, with K, M, G or T)",
					   argv[optind]);
		c->have_size = true;
		optind++;
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (c->backing && !c->backing[0])
		return usage_error("%s", "-b: empty backing file name");
	if (c->backing_format_arg) {
		c->backing_format = img_format_parse(c->backing_format_arg);
		if (c->backing_format == DISK_FORMAT_PROBE)
			return usage_error("-F %s: unknown format (raw or qcow2)",
					   c->backing_format_arg);
		if (!c->backing)
			return usage_error("%s", "-F needs a backing file (-b)");
	}
	if (c->format == DISK_FORMAT_RAW && c->backing)
		return usage_error("%s", "raw images cannot have a backing file");
	if (c->format == DISK_FORMAT_RAW && c->qcow2_option)
		return usage_error("%s", "-o: raw images only take size=");
	if (!c->have_size && !c->backing)
		return usage_error("%s", "missing SIZE");
	return 0;
}

/*
 * Opens the backing file for its format and size, and makes sure it is not the image about to
 * be written. Returns 0 or 1 after printing why.
 */
static int create_backing(struct create *c)
{
	char path[PATH_MAX], why[256];
	struct stat target, base;
	struct img img;
	int err;

	if (img_backing_path(path, sizeof(path), c->path, c->backing))
		return usage_error("%s: backing file path is too long", c->backing);
	/* Shared: a backing file in use by a guest is only read, and only its header here. */
	err = img_open(&img, path, c->backing_format, IMG_OPEN_SHARE, why, sizeof(why));
	if (err) {
		fprintf(stderr, "nkvm: %s: backing file %s: %s\n", c->path, path, why);
		return 1;
	}
	if (!fstat(img.fd, &base) && !stat(c->path, &target) && base.st_dev == target.st_dev &&
	    base.st_ino == target.st_ino) {
		img_close(&img);
		fprintf(stderr, "nkvm: %s: the image cannot be its own backing file\n", c->path);
		return 1;
	}
	c->backing_format = img.format;
	if (!c->have_size)
		c->size = img.virtual_size;
	img_close(&img);
	return 0;
}

/* Opens (creating) the target and takes the lock a writer takes, before truncating it. */
static int create_open(const struct create *c)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	struct stat st;
	int fd;

	fd = open(c->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0) {
		fprintf(stderr, "nkvm: %s: cannot create: %s\n", c->path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "nkvm: %s: not a regular file\n", c->path);
		close(fd);
		return -1;
	}
	if (fcntl(fd, F_OFD_SETLK, &fl)) {
		fprintf(stderr, "nkvm: %s: %s\n", c->path,
			errno == EAGAIN || errno == EACCES ?
				"image is in use by another process (locked)" :
				strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void create_announce(const struct create *c)
{
	if (c->quiet)
		return;
	printf("Formatting '%s', fmt=%s", c->path, img_format_name(c->format));
	if (c->format == DISK_FORMAT_QCOW2)
		printf(" cluster_size=%llu compression_type=%s", 1ULL << c->q.cluster_bits,
		       c->q.compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
	printf(" size=%llu", (unsigned long long)c->size);
	if (c->backing)
		printf(" backing_file=%s backing_fmt=%s", c->backing,
		       img_format_name(c->backing_format));
	if (c->format == DISK_FORMAT_QCOW2)
		printf(" compat=%s refcount_bits=%u", c->q.version == 2 ? "0.10" : "1.1",
		       1U << c->q.refcount_order);
	printf("\n");
}

int img_create(int argc, char **argv)
{
	struct create c = {
		.format = DISK_FORMAT_QCOW2,
		.q = {
			.version = 3,
			.cluster_bits = QCOW2_DEFAULT_CLUSTER_BITS,
			.refcount_order = QCOW2_DEFAULT_REFCOUNT_ORDER,
			.compression_type = QCOW2_COMPRESSION_ZLIB,
		},
	};
	char why[256];
	int fd, err;

	err = create_parse(&c, argc, argv);
	if (err)
		return err < 0 ? 0 : 1;
	if (c.backing && create_backing(&c))
		return 1;
	/*
	 * Files and qemu-img stop at INT64_MAX; checked first, as rounding a size near 2^64 up to
	 * a sector would wrap it to 0.
	 */
	if (c.size > (uint64_t)INT64_MAX) {
		fprintf(stderr, "nkvm: %s: size is too large\n", c.path);
		return 1;
	}
	if (c.format == DISK_FORMAT_QCOW2) {
		c.size = ALIGN_UP(c.size, 512ULL);
		c.q.size = c.size;
		c.q.backing_file = c.backing;
		c.q.backing_format = c.backing ? img_format_name(c.backing_format) : NULL;
		/* Options that cannot go together are refused before FILE is touched. */
		err = qcow2_create_validate(&c.q, why, sizeof(why));
		if (err) {
			fprintf(stderr, "nkvm: %s: %s\n", c.path, why);
			return 1;
		}
	}
	create_announce(&c);

	fd = create_open(&c);
	if (fd < 0)
		return 1;
	if (c.format == DISK_FORMAT_QCOW2) {
		err = qcow2_create(fd, &c.q, why, sizeof(why));
	} else if (ftruncate(fd, 0) || ftruncate(fd, (off_t)c.size)) {
		err = -errno;
		snprintf(why, sizeof(why), "cannot size the image: %s", strerror(errno));
	}
	close(fd);
	if (err) {
		fprintf(stderr, "nkvm: %s: %s\n", c.path, why);
		return 1;
	}
	return 0;
}
