// SPDX-License-Identifier: MIT
/*
 * `nkvm img check [-f FMT] [--json] [-U] FILE`: qcow2_check() (block/qcow2_check.c) with
 * qemu-img check's report and exit statuses: findings one per line on stderr, a summary on
 * stdout, and 0 clean, 1 check not completed, 2 corruptions, 3 leaks only, 63 for a format that
 * has nothing to check (raw). It only reads: nothing is repaired.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "block/qcow2_tools.h"
#include "cmd/img.h"

struct check_options {
	enum disk_format_kind format;
	bool json;
	bool share;
	bool quiet;
	const char *path;
};

static double percent(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0;
}

static void check_human(const struct qcow2_check_result *r)
{
	if (!r->corruptions && !r->leaks && !r->check_errors) {
		printf("No errors were found on the image.\n");
	} else {
		if (r->corruptions)
			printf("\n%llu errors were found on the image.\n"
			       "Data may be corrupted, or further writes to the image may corrupt "
			       "it.\n",
			       (unsigned long long)r->corruptions);
		if (r->leaks)
			printf("\n%llu leaked clusters were found on the image.\n"
			       "This means waste of disk space, but no harm to data.\n",
			       (unsigned long long)r->leaks);
		if (r->check_errors)
			printf("\n%llu internal errors have occurred during the check.\n",
			       (unsigned long long)r->check_errors);
	}
	if (r->total_clusters && r->allocated_clusters)
		printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed "
		       "clusters\n",
		       (unsigned long long)r->allocated_clusters,
		       (unsigned long long)r->total_clusters,
		       percent(r->allocated_clusters, r->total_clusters),
		       percent(r->fragmented_clusters, r->allocated_clusters),
		       percent(r->compressed_clusters, r->allocated_clusters));
	if (r->image_end_offset)
		printf("Image end offset: %llu\n", (unsigned long long)r->image_end_offset);
}

static void check_json(const struct qcow2_check_result *r, const char *path)
{
	const struct {
		const char *name;
		uint64_t v;
		bool always;
	} f[] = {
		{ "image-end-offset", r->image_end_offset, false },
		{ "total-clusters", r->total_clusters, false },
		{ "check-errors", r->check_errors, true },
		{ "corruptions", r->corruptions, false },
		{ "leaks", r->leaks, false },
		{ "allocated-clusters", r->allocated_clusters, false },
		{ "fragmented-clusters", r->fragmented_clusters, false },
		{ "compressed-clusters", r->compressed_clusters, false },
	};

	printf("{\n");
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (f[i].v || f[i].always)
			printf("    \"%s\": %llu,\n", f[i].name, (unsigned long long)f[i].v);
	}
	/* Paths with quotes or control characters are not worth a JSON escaper here. */
	printf("    \"filename\": \"");
	for (const char *p = path; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else
			putchar((unsigned char)*p < 0x20 ? '?' : *p);
	}
	printf("\",\n    \"format\": \"qcow2\"\n}\n");
}

/* Returns 0 to go on, 1 on a usage error (printed), -1 after --help. */
static int check_parse(struct check_options *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "output", required_argument, NULL, 'O' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, ":f:Uqh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			o->format = img_format_parse(optarg);
			if (o->format == DISK_FORMAT_PROBE) {
				fprintf(stderr, "nkvm img check: -f %s: unknown format\n", optarg);
				return 1;
			}
			break;
		case 'j':
			o->json = true;
			break;
		case 'O':
			if (strcmp(optarg, "json") && strcmp(optarg, "human")) {
				fprintf(stderr, "nkvm img check: --output=%s: json or human\n",
					optarg);
				return 1;
			}
			o->json = !strcmp(optarg, "json");
			break;
		case 'U':
			o->share = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			printf("usage: nkvm img check [-f FMT] [--json] [-U] [-q] FILE\n");
			return -1;
		default:
			fprintf(stderr, "nkvm img check: %s: %s (see nkvm img --help)\n",
				argv[optind - 1],
				opt == ':' ? "option needs a value" : "unknown option");
			return 1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "nkvm img check: %s (see nkvm img --help)\n",
			optind >= argc ? "missing FILE" : "more than one FILE");
		return 1;
	}
	o->path = argv[optind];
	return 0;
}

int img_check(int argc, char **argv)
{
	struct check_options o = { 0 };
	struct qcow2_check_result r;
	char why[256];
	struct img img;
	int err;

	err = check_parse(&o, argc, argv);
	if (err)
		return err < 0 ? IMG_CHECK_CLEAN : IMG_CHECK_FAILED;
	/* qcow2_check parses the header itself, and more forgivingly: as QEMU opens images. */
	err = img_open(&img, o.path, o.format, IMG_OPEN_PROBE_ONLY | (o.share ? IMG_OPEN_SHARE : 0),
		       why, sizeof(why));
	if (err) {
		fprintf(stderr, "nkvm: %s: %s\n", o.path, why);
		return IMG_CHECK_FAILED;
	}
	if (img.format != DISK_FORMAT_QCOW2) {
		img_close(&img);
		fprintf(stderr, "nkvm: %s: this image format (raw) does not support checks\n",
			o.path);
		return IMG_CHECK_UNSUPPORTED;
	}
	err = qcow2_check(img.fd, o.quiet ? NULL : stderr, &r, why, sizeof(why));
	img_close(&img);
	if (err) {
		fprintf(stderr, "nkvm: %s: check failed: %s\n", o.path, why);
		return IMG_CHECK_FAILED;
	}
	fflush(stderr);
	if (o.json)
		check_json(&r, o.path);
	else if (!o.quiet)
		check_human(&r);
	if (r.check_errors) {
		fprintf(stderr, "nkvm: %s: check failed: parts of the image could not be read\n",
			o.path);
		return IMG_CHECK_FAILED;
	}
	if (r.corruptions)
		return IMG_CHECK_CORRUPT;
	return r.leaks ? IMG_CHECK_LEAKS : IMG_CHECK_CLEAN;
}
