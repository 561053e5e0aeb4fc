// SPDX-License-Identifier: MIT
/*
 * `nkvm img info [-f FMT] [--json] [--backing-chain] [-U] FILE`: what qemu-img info says about an
 * image, in its words and, with --json, its field names ("virtual-size", "backing-filename"...),
 * so that scripts written for one read the other. --backing-chain follows the backing files,
 * each opened as the image above it says (its backing format), else probed.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block/qcow2_header.h"
#include "cmd/img.h"
#include "lib/text.h"
#include "lib/util.h"

/* Deeper chains are refused: a loop the inode check missed, or a mistake. */
#define INFO_MAX_CHAIN 64

struct info_options {
	enum disk_format_kind format;
	bool json;
	bool chain;
	bool share;
	const char *path;
};

/* Strings from the image (and paths made of them) as JSON: valid whatever their bytes. */
static void json_string(const char *s)
{
	text_json_string(stdout, s);
}

static const char *yes_no(bool b)
{
	return b ? "true" : "false";
}

static bool info_dirty(const struct img *img)
{
	return img->format == DISK_FORMAT_QCOW2 &&
	       (img->h.incompatible_features & QCOW2_INCOMPAT_DIRTY);
}

/* One image as a JSON object, indented by pad spaces; full: the backing file's actual path. */
static void info_json(const struct img *img, const char *path, const char *full, int pad)
{
	const struct qcow2_header *h = &img->h;

	printf("%*s{\n", pad, "");
	printf("%*s\"virtual-size\": %llu,\n", pad + 4, "", (unsigned long long)img->virtual_size);
	printf("%*s\"filename\": ", pad + 4, "");
	json_string(path);
	printf(",\n%*s\"format\": \"%s\",\n", pad + 4, "", img_format_name(img->format));
	printf("%*s\"actual-size\": %llu,\n", pad + 4, "", (unsigned long long)img->disk_usage);
	if (img->format == DISK_FORMAT_QCOW2) {
		bool v3 = h->version == 3;

		printf("%*s\"cluster-size\": %llu,\n", pad + 4, "", 1ULL << h->cluster_bits);
		if (h->backing_file[0]) {
			printf("%*s\"backing-filename\": ", pad + 4, "");
			json_string(h->backing_file);
			printf(",\n%*s\"full-backing-filename\": ", pad + 4, "");
			json_string(full);
			printf(",\n");
			if (h->backing_format[0]) {
				printf("%*s\"backing-filename-format\": ", pad + 4, "");
				json_string(h->backing_format);
				printf(",\n");
			}
		}
		printf("%*s\"format-specific\": {\n", pad + 4, "");
		printf("%*s\"type\": \"qcow2\",\n", pad + 8, "");
		printf("%*s\"data\": {\n", pad + 8, "");
		printf("%*s\"compat\": \"%s\",\n", pad + 12, "", v3 ? "1.1" : "0.10");
		printf("%*s\"compression-type\": \"%s\",\n", pad + 12, "",
		       h->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
		if (v3)
			printf("%*s\"lazy-refcounts\": %s,\n", pad + 12, "",
			       yes_no(h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS));
		printf("%*s\"refcount-bits\": %u%s\n", pad + 12, "", 1U << h->refcount_order,
		       v3 ? "," : "");
		if (v3) {
			printf("%*s\"corrupt\": %s,\n", pad + 12, "",
			       yes_no(h->incompatible_features & QCOW2_INCOMPAT_CORRUPT));
			printf("%*s\"extended-l2\": %s\n", pad + 12, "",
			       yes_no(h->incompatible_features & QCOW2_INCOMPAT_EXTL2));
		}
		printf("%*s}\n%*s},\n", pad + 8, "", pad + 4, "");
	}
	printf("%*s\"dirty-flag\": %s\n", pad + 4, "", yes_no(info_dirty(img)));
	printf("%*s}", pad, "");
}

static void info_human(const struct img *img, const char *path, const char *full)
{
	const struct qcow2_header *h = &img->h;
	/* Names from the image, and paths made of them, escaped: they may hold terminal escapes. */
	char esc[TEXT_ESCAPED_SIZE(PATH_MAX)];
	char size[32];

	printf("image: %s\nfile format: %s\n", text_escape(esc, sizeof(esc), path),
	       img_format_name(img->format));
	img_human_size(size, sizeof(size), img->virtual_size);
	printf("virtual size: %s (%llu bytes)\n", size, (unsigned long long)img->virtual_size);
	img_human_size(size, sizeof(size), img->disk_usage);
	printf("disk size: %s\n", size);
	if (img->format != DISK_FORMAT_QCOW2)
		return;
	printf("cluster_size: %llu\n", 1ULL << h->cluster_bits);
	if (info_dirty(img))
		printf("cleanly shut down: no\n");
	if (h->backing_file[0]) {
		printf("backing file: %s", text_escape(esc, sizeof(esc), h->backing_file));
		if (strcmp(full, h->backing_file))
			printf(" (actual path: %s)", text_escape(esc, sizeof(esc), full));
		printf("\n");
		if (h->backing_format[0])
			printf("backing file format: %s\n",
			       text_escape(esc, sizeof(esc), h->backing_format));
	}
	printf("Format specific information:\n");
	printf("    compat: %s\n", h->version == 3 ? "1.1" : "0.10");
	printf("    compression type: %s\n",
	       h->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
	if (h->version == 3)
		printf("    lazy refcounts: %s\n",
		       yes_no(h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS));
	printf("    refcount bits: %u\n", 1U << h->refcount_order);
	if (h->version == 3) {
		printf("    corrupt: %s\n",
		       yes_no(h->incompatible_features & QCOW2_INCOMPAT_CORRUPT));
		printf("    extended l2: %s\n",
		       yes_no(h->incompatible_features & QCOW2_INCOMPAT_EXTL2));
	}
}

/* Returns 0 to go on, 1 on a usage error (printed), -1 after --help. */
static int info_parse(struct info_options *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "output", required_argument, NULL, 'O' },
		{ "backing-chain", no_argument, NULL, 'c' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, ":f:Uh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			o->format = img_format_parse(optarg);
			if (o->format == DISK_FORMAT_PROBE) {
				fprintf(stderr, "nkvm img info: -f %s: unknown format\n", optarg);
				return 1;
			}
			break;
		case 'j':
			o->json = true;
			break;
		case 'O': /* --output=json|human, as qemu-img spells it */
			if (strcmp(optarg, "json") && strcmp(optarg, "human")) {
				fprintf(stderr, "nkvm img info: --output=%s: json or human\n",
					optarg);
				return 1;
			}
			o->json = !strcmp(optarg, "json");
			break;
		case 'c':
			o->chain = true;
			break;
		case 'U':
			o->share = true;
			break;
		case 'h':
			printf("usage: nkvm img info [-f FMT] [--json] [--backing-chain] [-U] "
			       "FILE\n");
			return -1;
		default:
			fprintf(stderr, "nkvm img info: %s: %s (see nkvm img --help)\n",
				argv[optind - 1],
				opt == ':' ? "option needs a value" : "unknown option");
			return 1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "nkvm img info: %s (see nkvm img --help)\n",
			optind >= argc ? "missing FILE" : "more than one FILE");
		return 1;
	}
	o->path = argv[optind];
	return 0;
}

int img_info(int argc, char **argv)
{
	struct info_options o = { 0 };
	char esc[TEXT_ESCAPED_SIZE(PATH_MAX)];
	char path[PATH_MAX], full[PATH_MAX], why[256];
	struct {
		dev_t dev;
		ino_t ino;
	} seen[INFO_MAX_CHAIN] = { { 0 } };
	enum disk_format_kind format;
	struct img img;
	int err, depth;

	err = info_parse(&o, argc, argv);
	if (err)
		return err < 0 ? 0 : 1;
	snprintf(path, sizeof(path), "%s", o.path);
	format = o.format;
	if (o.json && o.chain)
		printf("[\n");
	for (depth = 0;; depth++) {
		struct stat st;
		bool next;

		err = img_open(&img, path, format, o.share ? IMG_OPEN_SHARE : 0, why, sizeof(why));
		if (err) {
			if (o.json && o.chain)
				printf("\n]\n");
			text_escape(esc, sizeof(esc), path);
			if (depth)
				fprintf(stderr, "nkvm: %s: backing file of the image above: %s\n",
					esc, why);
			else
				fprintf(stderr, "nkvm: %s: %s\n", esc, why);
			return 1;
		}
		full[0] = '\0';
		next = img.format == DISK_FORMAT_QCOW2 && img.h.backing_file[0];
		if (next && img_backing_path(full, sizeof(full), path, img.h.backing_file)) {
			fprintf(stderr, "nkvm: %s: backing file path is too long\n",
				text_escape(esc, sizeof(esc), path));
			img_close(&img);
			return 1;
		}
		if (depth)
			printf(o.json ? ",\n" : "\n");
		if (o.json)
			info_json(&img, path, full, o.chain ? 4 : 0);
		else
			info_human(&img, path, full);
		if (o.json)
			printf(o.chain ? "" : "\n");

		if (!o.chain || !next) {
			img_close(&img);
			break;
		}
		if (fstat(img.fd, &st) == 0) {
			seen[depth].dev = st.st_dev;
			seen[depth].ino = st.st_ino;
		}
		format = img_format_parse(img.h.backing_format);
		img_close(&img);
		snprintf(path, sizeof(path), "%s", full);
		if (!stat(path, &st)) {
			for (int i = 0; i <= depth; i++) {
				if (seen[i].dev == st.st_dev && seen[i].ino == st.st_ino) {
					if (o.json)
						printf("\n]\n");
					fprintf(stderr, "nkvm: %s: the backing chain loops\n",
						o.path);
					return 1;
				}
			}
		}
		if (depth + 1 >= INFO_MAX_CHAIN) {
			if (o.json)
				printf("\n]\n");
			fprintf(stderr, "nkvm: %s: backing chain longer than %d images\n", o.path,
				INFO_MAX_CHAIN);
			return 1;
		}
	}
	if (o.json && o.chain)
		printf("\n]\n");
	return 0;
}
