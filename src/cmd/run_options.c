// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/run_dev_disk.h"
#include "cmd/run_dev_fs.h"
#include "cmd/run_options.h"
#include "lib/util.h"

static const char usage_head[] =
	"usage: nkvm run [options] [-- COMMAND [ARGS...]]\n"
	"Boot a Linux guest. With COMMAND, the default guest runs it instead of a shell, its\n"
	"output appears on stdout and nkvm exits with its status.\n"
	"\n"
	"  -k, --kernel FILE    bzImage, or ELF vmlinux with a PVH note, to boot (default: the guest\n"
	"                       `nkvm setup` prepared)\n"
	"  -i, --initrd FILE    initramfs (default: the default guest's, with -k omitted);\n"
	"                       the devices' module groups beside the kernel are appended\n"
	"  -p, --params TEXT    kernel parameters added to nkvm's own\n"
	"  -m, --mem SIZE       guest RAM: 512M, 2G, or a number of MiB (default 256M)\n"
	"  -c, --cpus N         vCPUs (default 1)\n"
	"      --name NAME      name of this guest\n"
	"      --detach         run in the background, print the name; see nkvm console\n"
	"      --engine threads|aio|io_uring\n"
	"                       the I/O engine of disks that name none\n"
	"      --sandbox on|off confine each thread to the system calls its job needs (default on;\n"
	"                       off is for debugging)\n"
	"      --user USER      started as root (for /dev/kvm, a TAP, vhost): run as USER, a name\n"
	"                       or UID:GID, once they are open\n";

static const char usage_tail[] =
	"  -h, --help           this text\n"
	"\n"
	"Console: the serial port on stdin/stdout; Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A.\n";

void run_usage(FILE *f)
{
	fputs(usage_head, f);
	device_types_usage(f);
	fputs(usage_tail, f);
}

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -1;
}

int run_valid_name(const char *s)
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

static int parse_engine(const char *arg, struct run_options *o, char *err, size_t errlen)
{
	static const struct kvopt_spec engine = {
		"engine",
		KVOPT_ENUM,
		KVOPT_AT(struct run_options, engine),
		.names = disk_engine_names,
	};
	static const struct kvopt_set syntax = { .noun = "engine", .positional = &engine };
	char text[32], why[128];

	snprintf(text, sizeof(text), "%s", arg);
	if (kvopt_parse(&syntax, text, o, why, sizeof(why))) {
		snprintf(err, errlen, "--engine %s: %s", arg, why);
		return -1;
	}
	return 0;
}

/*
 * One device of type t, from its option's argument (NULL for an option without one). A type
 * that may be given once keeps the last one given.
 */
static int parse_device(const struct device_type *t, const char *arg, struct run_options *o,
			char *err, size_t errlen)
{
	struct run_device *d = NULL;
	unsigned int count = 0;
	char label[64], why[256];

	device_type_label(t, label, sizeof(label));
	for (unsigned int i = 0; i < o->nr_devices; i++) {
		if (o->devices[i].type != t)
			continue;
		count++;
		if (t->max == 1)
			d = &o->devices[i];
	}
	if (d) {
		free(d->cfg);
		free(d->text);
	} else if (count == t->max) {
		snprintf(why, sizeof(why), "at most %u %ss", t->max, t->name);
		goto fail;
	} else if (o->nr_devices == RUN_MAX_DEVICES) {
		snprintf(why, sizeof(why), "at most %u devices", RUN_MAX_DEVICES);
		goto fail;
	} else {
		d = &o->devices[o->nr_devices++];
	}
	d->type = t;
	d->cfg = calloc(1, t->cfg_size ? t->cfg_size : 1);
	d->text = strdup(arg ? arg : "");
	if (!d->cfg || !d->text) {
		snprintf(why, sizeof(why), "out of memory");
		goto fail;
	}
	if (arg && kvopt_parse(&t->syntax, d->text, d->cfg, why, sizeof(why)))
		goto fail;
	if (t->check && t->check(d->cfg, why, sizeof(why)))
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "%s%s%s: %s", label, arg ? " " : "", arg ? arg : "", why);
	return -1;
}

void run_options_free(struct run_options *o)
{
	for (unsigned int i = 0; i < o->nr_devices; i++) {
		free(o->devices[i].cfg);
		free(o->devices[i].text);
	}
	o->nr_devices = 0;
}

/* Device options come after the generic ones in getopt's table, with these values. */
#define OPT_DEVICE 0x100

/* clang-format off: one option a line */
static const struct option generic_opts[] = {
	{ "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
	{ "params", required_argument, NULL, 'p' }, { "mem", required_argument, NULL, 'm' },
	{ "cpus", required_argument, NULL, 'c' },   { "name", required_argument, NULL, 'N' },
	{ "engine", required_argument, NULL, 'E' }, { "help", no_argument, NULL, 'h' },
	{ "detach", no_argument, NULL, 'D' },      { "sandbox", required_argument, NULL, 'S' },
	{ "user", required_argument, NULL, 'U' },
};
/* clang-format on */

static bool takes_arg(const struct device_type *t)
{
	return t->syntax.positional || t->syntax.keys;
}

/* The device type of a getopt value, NULL for '?' and the generic options. */
static const struct device_type *device_of_opt(int opt)
{
	for (unsigned int i = 0; device_types[i]; i++) {
		const struct device_type *t = device_types[i];

		if (opt == (t->short_opt ? t->short_opt : OPT_DEVICE + (int)i))
			return t;
	}
	return NULL;
}

static unsigned int type_index(const struct device_type *t)
{
	unsigned int i = 0;

	while (device_types[i] != t)
		i++;
	return i;
}

int run_parse_options(int argc, char **argv, struct run_options *o, char *err, size_t errlen)
{
	struct option longopts[ARRAY_SIZE(generic_opts) + RUN_MAX_DEVICES + 1];
	char shortopts[64] = "+:k:i:p:m:c:h";
	bool left_out[RUN_MAX_DEVICES] = { false }; /* by type: --no-balloon */
	unsigned int n = ARRAY_SIZE(generic_opts);
	int opt;

	memcpy(longopts, generic_opts, sizeof(generic_opts));
	for (unsigned int i = 0; device_types[i]; i++) {
		const struct device_type *t = device_types[i];

		longopts[n++] =
			(struct option){ t->long_opt,
					 takes_arg(t) ? required_argument : no_argument, NULL,
					 t->short_opt ? t->short_opt : OPT_DEVICE + (int)i };
		if (t->short_opt)
			snprintf(shortopts + strlen(shortopts),
				 sizeof(shortopts) - strlen(shortopts), "%c%s", t->short_opt,
				 takes_arg(t) ? ":" : "");
	}
	longopts[n] = (struct option){ NULL, 0, NULL, 0 };

	memset(o, 0, sizeof(*o));
	o->mem = RUN_DEFAULT_MEM;
	o->mem_arg = "256M";
	o->cpus = 1;
	optind = 0; /* GNU getopt: start over, so the parser can run more than once */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
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
			if (!run_valid_name(optarg))
				return fail(
					err, errlen,
					"--name %s: use up to 64 letters, digits, '-', '_', '.'",
					optarg);
			o->name = optarg;
			break;
		case 'D':
			o->detach = 1;
			break;
		case 'S':
			if (!strcmp(optarg, "on"))
				o->sandbox = SANDBOX_ON;
			else if (!strcmp(optarg, "off"))
				o->sandbox = SANDBOX_OFF;
			else
				return fail(err, errlen, "--sandbox %s: say on or off", optarg);
			break;
		case 'U':
			if (privs_parse_user(optarg, &o->user, err, errlen))
				return -1;
			o->user_arg = optarg;
			break;
		case 'E':
			if (parse_engine(optarg, o, err, errlen))
				return -1;
			break;
		case 'h':
			o->help = 1;
			return 0;
		case ':':
			return fail(err, errlen, "%s: option needs a value", argv[optind - 1]);
		default: {
			const struct device_type *t = device_of_opt(opt);

			if (!t)
				return fail(err, errlen, "%s: unknown option (see nkvm run --help)",
					    argv[optind - 1]);
			if (t->by_default) {
				left_out[type_index(t)] = true;
				break;
			}
			if (parse_device(t, optarg, o, err, errlen))
				return -1;
			break;
		}
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
	/* The devices made by default take no argument: nothing to parse or to free. */
	for (unsigned int i = 0; device_types[i]; i++) {
		if (!device_types[i]->by_default || left_out[i])
			continue;
		if (o->nr_devices == RUN_MAX_DEVICES)
			return fail(err, errlen, "at most %s devices", "32");
		o->devices[o->nr_devices++] = (struct run_device){ .type = device_types[i] };
	}
	/* Shares: default tags, and what only all of them together can say (a tag used twice). */
	return run_fs_check(o, err, errlen) ? -1 : 0;
}
