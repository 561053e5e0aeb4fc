// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/disk.h"
#include "cmd/run_options.h"
#include "lib/util.h"

const char run_usage[] =
	"usage: nkvm run [options] [-- COMMAND [ARGS...]]\n"
	"Boot a Linux guest. With COMMAND, the default guest runs it instead of a shell, its\n"
	"output appears on stdout and nkvm exits with its status.\n"
	"\n"
	"  -k, --kernel FILE    bzImage to boot (default: the guest `nkvm setup` prepared)\n"
	"  -i, --initrd FILE    initramfs (default: the default guest's, with -k omitted)\n"
	"  -p, --params TEXT    kernel parameters added to nkvm's own\n"
	"  -m, --mem SIZE       guest RAM: 512M, 2G, or a number of MiB (default 256M)\n"
	"  -c, --cpus N         vCPUs (default 1)\n"
	"  -d, --disk FILE[,OPTION]...\n"
	"                       a virtio-blk disk on a raw or qcow2 image or a block device\n"
	"                       (repeatable). OPTIONs: ro, serial=ID, cache=writeback|none,\n"
	"                       queues=N (default one per vCPU), format=raw|qcow2 (default:\n"
	"                       probed), engine=threads|aio|io_uring, cache-size=SIZE (qcow2\n"
	"                       metadata cache up to 1G, like QEMU's l2-cache-size)\n"
	"      --engine threads|aio|io_uring\n"
	"                       the I/O engine of disks that name none\n"
	"      --name NAME      name of this guest\n"
	"      --rng            a virtio-rng device: the guest's /dev/hwrng\n"
	"      --console serial|virtio\n"
	"                       the guest's console: ttyS0 (default) or virtio-console hvc0\n"
	"  -h, --help           this text\n"
	"\n"
	"Console: the serial port on stdin/stdout; Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A.\n";

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -1;
}

static int valid_name(const char *s)
{
	size_t len = strlen(s);

	if (!len || len > RUN_NAME_MAX || s[0] == '.' || s[0] == '-')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return 0;
	return 1;
}

static int parse_mem(const char *arg, struct run_options *o, char *err, size_t errlen)
{
	int r = parse_size(arg, MiB, &o->mem);

	if (r == -ERANGE)
		return fail(err, errlen, "-m %s: size too large", arg);
	if (r)
		return fail(err, errlen, "-m %s: not a size (try 512M or 2G)", arg);
	if (o->mem < RUN_MIN_MEM)
		return fail(err, errlen, "-m %s: a guest needs at least 32M of RAM", arg);
	if (o->mem % (4 * KiB))
		return fail(err, errlen, "-m %s: not a multiple of 4K", arg);
	return 0;
}

static int parse_cpus(const char *arg, struct run_options *o, char *err, size_t errlen)
{
	int r = parse_uint(arg, 1, RUN_MAX_CPUS, &o->cpus);

	if (r == -EINVAL)
		return fail(err, errlen, "-c %s: not a number", arg);
	if (r)
		return fail(err, errlen, "-c %s: vCPU count must be between 1 and 254", arg);
	return 0;
}

/* Returns the enum disk_engine_kind value of name, or -1. */
static int engine_kind(const char *name)
{
	static const char *const names[] = { "threads", "aio", "io_uring" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(name, names[i]))
			return (int)i + 1;
	return -1;
}

static int parse_disk(const char *arg, struct run_options *o, char *err, size_t errlen)
{
	struct run_disk *d;
	char *field, *save;

	if (o->nr_disks == RUN_MAX_DISKS)
		return fail(err, errlen, "-d %s: at most 8 disks", arg);
	d = &o->disks[o->nr_disks];
	memset(d, 0, sizeof(*d));
	d->spec = strdup(arg);
	if (!d->spec)
		return fail(err, errlen, "-d %s: out of memory", arg);
	o->nr_disks++;
	d->path = strtok_r(d->spec, ",", &save);
	if (!d->path || !*arg || *arg == ',')
		return fail(err, errlen, "-d %s: no image file given", arg);
	while ((field = strtok_r(NULL, ",", &save))) {
		if (!strcmp(field, "ro")) {
			d->readonly = 1;
		} else if (!strncmp(field, "serial=", 7)) {
			d->serial = field + 7;
			if (strlen(d->serial) > 20)
				return fail(err, errlen, "-d %s: serial is at most 20 characters", arg);
		} else if (!strcmp(field, "cache=none")) {
			d->direct = 1;
		} else if (!strcmp(field, "cache=writeback")) {
			d->direct = 0;
		} else if (!strncmp(field, "queues=", 7)) {
			if (parse_uint(field + 7, 1, 63, &d->queues))
				return fail(err, errlen, "-d %s: queues must be 1 to 63", arg);
		} else if (!strcmp(field, "format=raw")) {
			d->format = 1;
		} else if (!strcmp(field, "format=qcow2")) {
			d->format = 2;
		} else if (!strncmp(field, "format=", 7)) {
			return fail(err, errlen, "-d %s: format must be raw or qcow2", arg);
		} else if (!strncmp(field, "engine=", 7)) {
			d->engine = engine_kind(field + 7);
			if (d->engine < 0)
				return fail(err, errlen, "-d %s: engine must be threads, aio or io_uring", arg);
		} else if (!strncmp(field, "cache-size=", 11)) {
			if (parse_size(field + 11, 1, &d->cache_size) || !d->cache_size)
				return fail(err, errlen, "-d %s: cache-size is a size (try 1M)", arg);
			if (d->cache_size > DISK_CACHE_SIZE_MAX)
				return fail(err, errlen, "-d %s: cache-size is at most 1G", arg);
		} else {
			snprintf(err, errlen, "-d %s: unknown disk option '%s'", arg, field);
			return -1;
		}
	}
	return 0;
}

void run_options_free(struct run_options *o)
{
	for (unsigned int i = 0; i < o->nr_disks; i++)
		free(o->disks[i].spec);
	o->nr_disks = 0;
}

int run_parse_options(int argc, char **argv, struct run_options *o, char *err, size_t errlen)
{
	static const struct option longopts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "params", required_argument, NULL, 'p' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'N' },
		{ "rng", no_argument, NULL, 'R' },
		{ "console", required_argument, NULL, 'C' },
		{ "engine", required_argument, NULL, 'E' },
		{ "disk", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	memset(o, 0, sizeof(*o));
	o->mem = RUN_DEFAULT_MEM;
	o->mem_arg = "256M";
	o->cpus = 1;
	optind = 0;	/* GNU getopt: start over, so the parser can run more than once */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:k:i:p:m:c:d:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'k':
			o->kernel = optarg;
			break;
		case 'i':
			o->initrd = optarg;
			break;
		case 'p':
			o->params = optarg;
			break;
		case 'm':
			if (parse_mem(optarg, o, err, errlen))
				return -1;
			o->mem_arg = optarg;
			break;
		case 'c':
			if (parse_cpus(optarg, o, err, errlen))
				return -1;
			break;
		case 'N':
			if (!valid_name(optarg))
				return fail(err, errlen,
					    "--name %s: use up to 64 letters, digits, '-', '_', '.'",
					    optarg);
			o->name = optarg;
			break;
		case 'd':
			if (parse_disk(optarg, o, err, errlen))
				return -1;
			break;
		case 'C':
			if (!strcmp(optarg, "virtio"))
				o->virtio_console = 1;
			else if (strcmp(optarg, "serial"))
				return fail(err, errlen, "--console %s: serial or virtio", optarg);
			break;
		case 'R':
			o->rng = 1;
			break;
		case 'E':
			o->engine = engine_kind(optarg);
			if (o->engine < 0)
				return fail(err, errlen, "--engine %s: threads, aio or io_uring", optarg);
			break;
		case 'h':
			o->help = 1;
			return 0;
		case ':':
			return fail(err, errlen, "%s: option needs a value", argv[optind - 1]);
		default:
			return fail(err, errlen, "%s: unknown option (see nkvm run --help)",
				    argv[optind - 1]);
		}
	}
	if (optind < argc) {
		/* getopt stops at "--" and consumes it; anything else left is a stray word. */
		if (strcmp(argv[optind - 1], "--") != 0)
			return fail(err, errlen,
				    "%s: unexpected argument (put the guest's command after --)",
				    argv[optind]);
		o->cmd = &argv[optind];
	}
	return 0;
}
