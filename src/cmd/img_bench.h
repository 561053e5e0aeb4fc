/* SPDX-License-Identifier: MIT */
/*
 * `nkvm img bench`: the virtio-blk request path measured without a guest or KVM. A driver in
 * this process plays the guest: it sets the device up through PCI config space and the
 * virtio-pci registers as Linux does, builds requests as Linux's virtio-blk builds them (an
 * indirect table of header, data and status descriptors) in rings in a guest memory of its
 * own, kicks through the notify register and waits for the MSI-X vector's eventfd. Everything
 * between is the real device: the queue I/O threads of nkvm run, request parsing, the format
 * driver and the I/O engine, used-ring updates and interrupt suppression.
 */
#ifndef NKVM_CMD_IMG_BENCH_H
#define NKVM_CMD_IMG_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/disk.h"

struct img_bench_options {
	const char *path;
	enum disk_format_kind format; /* PROBE: from the image's first bytes */
	enum disk_engine_kind engine;
	unsigned int engine_threads; /* the threads engine's most workers; 0: its default */
	bool direct; /* cache=none: O_DIRECT */
	bool write;
	bool random; /* offsets drawn at random, aligned to bufsize */
	bool drain; /* drain the queue before each flush (qemu-img's default) */
	uint64_t count; /* requests, over all queues; unused with seconds */
	double seconds; /* > 0: run this long instead */
	unsigned int depth; /* requests in flight per queue */
	unsigned int queues; /* virtqueues, one driver thread each */
	uint64_t offset, bufsize, step;
	uint8_t pattern; /* what writes write */
	unsigned int flush_interval; /* a flush after this many writes per queue; 0: none */
};

struct img_bench_result {
	uint64_t ops; /* reads or writes completed (flushes not included) */
	uint64_t bytes, flushes, interrupts, kicks;
	double seconds; /* first submission to last completion */
	/* Submission to completion seen in the used ring, per request. */
	double p50_us, p99_us, p999_us, max_us;
	double cpu_us; /* user + system time of the process during the run */
	double driver_cpu_us; /* of which the driver threads (the guest's share) */
	char engine[16]; /* the engine that ran, after any fallback */
	char format[8];
};

/* qemu-img bench's defaults: 75000 reads of 4 KiB, 64 in flight, sequential from 0. */
void img_bench_defaults(struct img_bench_options *o);
/*
 * Runs one benchmark. Returns 0 with *r filled, or a negative errno with one line for a person
 * in err (without the image's path).
 */
int img_bench_run(const struct img_bench_options *o, struct img_bench_result *r, char *err,
		  size_t errlen);

#endif
