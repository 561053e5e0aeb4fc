// SPDX-License-Identifier: MIT
/*
 * `nkvm img bench`: qemu-img bench's options with qemu-img's meaning, and a few of nkvm's own
 * (--random, --queues, --time, --json), run through nkvm's virtio-blk device by the driver in
 * img_bench_driver.c; the results for people or, with --json, for scripts (bench/engines.sh).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/img.h"
#include "cmd/img_bench.h"
#include "lib/util.h"
#include "virtio/device.h"

/* The device's queue size (virtio/blk.c): the deepest queue a driver can keep full. */
#define BENCH_QUEUE_MAX 256

static void bench_usage(FILE *f)
{
	fprintf(f, "usage: nkvm img bench [-c COUNT] [-d DEPTH] [-f FMT] [-i ENGINE] [-n] [-q]\n"
		   "                      [-o OFFSET] [-s BUFSIZE] [-S STEP] [-t CACHE] [-w]\n"
		   "                      [--pattern=N] [--flush-interval=N] [--no-drain]\n"
		   "                      [--random] [--queues N] [--time SECONDS] [--json]\n"
		   "                      [--engine-threads N] FILE\n"
		   "\n"
		   "qemu-img bench through nkvm's virtio-blk device, without a guest or KVM: a\n"
		   "driver in this process builds requests as Linux does, in rings in memory of\n"
		   "its own, kicks the device's queue threads and waits for their interrupts.\n"
		   "  -c COUNT       requests in all (default 75000)\n"
		   "  -d DEPTH       requests in flight per queue (default 64, at most 256)\n"
		   "  -f FMT         raw or qcow2 (default: probed)\n"
		   "  -i ENGINE      threads, native (the aio engine; also: aio) or io_uring\n"
		   "  -n             -i native, as qemu-img's -n\n"
		   "  -t CACHE       none (O_DIRECT) or writeback (the page cache, the default);\n"
		   "                 aio on the page cache falls back to threads, and says so\n"
		   "  -o, -s, -S     first offset, buffer size (default 4K), offset step\n"
		   "                 (default: the buffer size); offsets wrap as qemu-img's\n"
		   "  -w             write (default: read); --pattern=N the byte written (0)\n"
		   "  --flush-interval=N  a flush after every N writes of a queue, the queue\n"
		   "                 drained first unless --no-drain\n"
		   "  --random       offsets at random, aligned to the buffer size\n"
		   "  --queues N     N virtqueues, each with DEPTH requests and its own driver\n"
		   "                 thread; the device serves each on its own I/O thread\n"
		   "  --time SECONDS run this long instead of COUNT requests\n"
		   "  --engine-threads N  the threads engine's most workers (default: its own)\n"
		   "  --json         one line of JSON: ops, seconds, iops, mb_s (10^6 bytes),\n"
		   "                 latency percentiles (submission to used ring, us), CPU us\n"
		   "                 per I/O (process user+sys; device side apart), interrupts\n"
		   "                 and kicks per I/O\n");
}

static void bench_print_json(const struct img_bench_options *o, const struct img_bench_result *r)
{
	double ops = r->ops ? (double)r->ops : 1, secs = r->seconds > 0 ? r->seconds : 1e-9;

	printf("{\"ops\": %llu, \"seconds\": %.6f, \"iops\": %.1f, \"mb_s\": %.2f, ",
	       (unsigned long long)r->ops, r->seconds, r->ops / secs, r->bytes / secs / 1e6);
	printf("\"lat_us\": {\"p50\": %.1f, \"p99\": %.1f, \"p99.9\": %.1f, \"max\": %.1f}, ",
	       r->p50_us, r->p99_us, r->p999_us, r->max_us);
	printf("\"cpu_us_per_io\": %.2f, \"device_cpu_us_per_io\": %.2f, ", r->cpu_us / ops,
	       (r->cpu_us - r->driver_cpu_us) / ops);
	printf("\"interrupts_per_io\": %.4f, \"kicks_per_io\": %.4f, \"flushes\": %llu, ",
	       r->interrupts / ops, r->kicks / ops, (unsigned long long)r->flushes);
	printf("\"engine\": \"%s\", \"format\": \"%s\", \"queues\": %u, \"depth\": %u, ", r->engine,
	       r->format, o->queues, o->depth);
	printf("\"bufsize\": %llu, \"rw\": \"%s\", \"pattern\": \"%s\", \"direct\": %s}\n",
	       (unsigned long long)o->bufsize, o->write ? "write" : "read",
	       o->random ? "random" : "sequential", o->direct ? "true" : "false");
}

static void bench_print(const struct img_bench_options *o, const struct img_bench_result *r)
{
	double ops = r->ops ? (double)r->ops : 1, secs = r->seconds > 0 ? r->seconds : 1e-9;

	printf("Run completed in %.3f seconds.\n", r->seconds);
	printf("%s over %s, %u queue%s x depth %u, cache=%s: %.0f IOPS, %.1f MB/s\n", r->format,
	       r->engine, o->queues, o->queues > 1 ? "s" : "", o->depth,
	       o->direct ? "none" : "writeback", r->ops / secs, r->bytes / secs / 1e6);
	printf("latency (submission to used ring): p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
	       "max %.1f us\n",
	       r->p50_us, r->p99_us, r->p999_us, r->max_us);
	printf("CPU per I/O: %.2f us (device side %.2f us, driver %.2f us); ", r->cpu_us / ops,
	       (r->cpu_us - r->driver_cpu_us) / ops, r->driver_cpu_us / ops);
	printf("interrupts per I/O %.3f, kicks per I/O %.3f\n", r->interrupts / ops,
	       r->kicks / ops);
	if (r->flushes)
		printf("flushes: %llu\n", (unsigned long long)r->flushes);
}

/* What qemu-img bench prints first. */
static void bench_announce(const struct img_bench_options *o)
{
	if (o->seconds > 0)
		printf("Sending %s requests for %g seconds", o->write ? "write" : "read",
		       o->seconds);
	else
		printf("Sending %llu %s requests", (unsigned long long)o->count,
		       o->write ? "write" : "read");
	printf(", %llu bytes each, %u in parallel", (unsigned long long)o->bufsize, o->depth);
	if (o->queues > 1)
		printf(" on each of %u queues", o->queues);
	if (o->random)
		printf(" (random offsets)\n");
	else
		printf(" (starting at offset %llu, step size %llu)\n",
		       (unsigned long long)o->offset, (unsigned long long)o->step);
	fflush(stdout);
}

enum {
	OPT_PATTERN = 256,
	OPT_FLUSH,
	OPT_NO_DRAIN,
	OPT_RANDOM,
	OPT_QUEUES,
	OPT_TIME,
	OPT_JSON,
	OPT_ENGINE_THREADS,
};

/* One line on a bad argument; returns -EINVAL for the caller to pass on. */
static int bench_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bench_bad(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "nkvm img bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -EINVAL;
}

static int bench_size_arg(const char *opt, const char *arg, uint64_t *v)
{
	return parse_size(arg, 1, v) ? bench_bad("%s %s: not a size", opt, arg) : 0;
}

static int bench_engine_arg(const char *arg, enum disk_engine_kind *e)
{
	/* qemu-img's names; native is Linux AIO, nkvm's aio engine. */
	if (!strcmp(arg, "threads"))
		*e = DISK_ENGINE_THREADS;
	else if (!strcmp(arg, "native") || !strcmp(arg, "aio"))
		*e = DISK_ENGINE_AIO;
	else if (!strcmp(arg, "io_uring"))
		*e = DISK_ENGINE_IO_URING;
	else
		return bench_bad("-i %s: threads, native or io_uring", arg);
	return 0;
}

static int bench_count_arg(const char *arg, uint64_t *count)
{
	char *end;

	errno = 0;
	*count = strtoull(arg, &end, 10);
	if (errno || *end || !*count || arg[0] == '-')
		return bench_bad("-c %s: not a count", arg);
	return 0;
}

/* Parses the command line into o. Returns 0, 1 for --help, or -EINVAL (said on stderr). */
static int bench_parse(int argc, char **argv, struct img_bench_options *o, bool *json, bool *quiet)
{
	static const struct option longopts[] = {
		{ "pattern", required_argument, NULL, OPT_PATTERN },
		{ "flush-interval", required_argument, NULL, OPT_FLUSH },
		{ "no-drain", no_argument, NULL, OPT_NO_DRAIN },
		{ "random", no_argument, NULL, OPT_RANDOM },
		{ "queues", required_argument, NULL, OPT_QUEUES },
		{ "time", required_argument, NULL, OPT_TIME },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "engine-threads", required_argument, NULL, OPT_ENGINE_THREADS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool step_set = false;
	unsigned int u;
	char *end;
	int c, err = 0;

	optind = 1;
	while (!err && (c = getopt_long(argc, argv, "c:d:f:hi:no:qs:S:t:w", longopts, NULL)) >= 0) {
		switch (c) {
		case 'c':
			err = bench_count_arg(optarg, &o->count);
			break;
		case 'd':
			if (parse_uint(optarg, 1, BENCH_QUEUE_MAX, &o->depth))
				err = bench_bad("-d %s: a depth from 1 to %d", optarg,
						BENCH_QUEUE_MAX);
			break;
		case 'f':
			if (!strcmp(optarg, "raw"))
				o->format = DISK_FORMAT_RAW;
			else if (!strcmp(optarg, "qcow2"))
				o->format = DISK_FORMAT_QCOW2;
			else
				err = bench_bad("-f %s: raw or qcow2", optarg);
			break;
		case 'i':
			err = bench_engine_arg(optarg, &o->engine);
			break;
		case 'n':
			/* qemu-img bench's -n: the native AIO backend (which wants -t none). */
			o->engine = DISK_ENGINE_AIO;
			break;
		case 'o':
			err = bench_size_arg("-o", optarg, &o->offset);
			break;
		case 'q':
			*quiet = true;
			break;
		case 's':
			err = bench_size_arg("-s", optarg, &o->bufsize);
			break;
		case 'S':
			err = bench_size_arg("-S", optarg, &o->step);
			step_set = true;
			break;
		case 't':
			if (!strcmp(optarg, "none") || !strcmp(optarg, "writeback"))
				o->direct = !strcmp(optarg, "none");
			else
				err = bench_bad("-t %s: none or writeback (nkvm run's cache modes)",
						optarg);
			break;
		case 'w':
			o->write = true;
			break;
		case OPT_PATTERN:
			if (parse_uint(optarg, 0, 255, &u))
				err = bench_bad("--pattern=%s: a byte, 0 to 255", optarg);
			else
				o->pattern = u;
			break;
		case OPT_FLUSH:
			if (parse_uint(optarg, 0, UINT32_MAX, &o->flush_interval))
				err = bench_bad("--flush-interval=%s: not a count", optarg);
			break;
		case OPT_NO_DRAIN:
			o->drain = false;
			break;
		case OPT_RANDOM:
			o->random = true;
			break;
		case OPT_QUEUES:
			if (parse_uint(optarg, 1, VIRTIO_MAX_QUEUES - 1, &o->queues))
				err = bench_bad("--queues %s: 1 to %d", optarg,
						VIRTIO_MAX_QUEUES - 1);
			break;
		case OPT_TIME:
			o->seconds = strtod(optarg, &end);
			if (*end || !(o->seconds > 0) || o->seconds > 1e6)
				err = bench_bad("--time %s: seconds, more than 0", optarg);
			break;
		case OPT_JSON:
			*json = true;
			break;
		case OPT_ENGINE_THREADS:
			if (parse_uint(optarg, 1, DISK_THREADS_MAX, &o->engine_threads))
				err = bench_bad("--engine-threads %s: 1 to %d", optarg,
						DISK_THREADS_MAX);
			break;
		case 'h':
			bench_usage(stdout);
			return 1;
		default:
			bench_usage(stderr);
			return -EINVAL;
		}
	}
	if (err)
		return err;
	if (optind != argc - 1) {
		bench_usage(stderr);
		return -EINVAL;
	}
	o->path = argv[optind];
	if (!step_set)
		o->step = o->bufsize;
	return 0;
}

int img_bench(int argc, char **argv)
{
	struct img_bench_options o;
	struct img_bench_result r;
	bool json = false, quiet = false;
	char why[200];
	int err;

	img_bench_defaults(&o);
	err = bench_parse(argc, argv, &o, &json, &quiet);
	if (err)
		return err > 0 ? 0 : 2;
	if (!quiet && !json)
		bench_announce(&o);
	err = img_bench_run(&o, &r, why, sizeof(why));
	if (err) {
		fprintf(stderr, "nkvm: %s: %s\n", o.path, why);
		return 1;
	}
	if (json)
		bench_print_json(&o, &r);
	else if (!quiet)
		bench_print(&o, &r);
	return 0;
}
