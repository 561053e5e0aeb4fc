// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

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
	"      --name NAME      name of this guest\n"
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

int run_parse_options(int argc, char **argv, struct run_options *o, char *err, size_t errlen)
{
	static const struct option longopts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "params", required_argument, NULL, 'p' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	memset(o, 0, sizeof(*o));
	o->mem = RUN_DEFAULT_MEM;
	o->cpus = 1;
	optind = 0;	/* GNU getopt: start over, so the parser can run more than once */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:k:i:p:m:c:h", longopts, NULL)) != -1) {
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
