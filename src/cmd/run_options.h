/* SPDX-License-Identifier: MIT */
/* `nkvm run` options: parsed and checked without touching KVM, so tests can drive them. */
#ifndef NKVM_CMD_RUN_OPTIONS_H
#define NKVM_CMD_RUN_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#define RUN_DEFAULT_MEM (256ULL << 20)
#define RUN_MIN_MEM (32ULL << 20)
#define RUN_MAX_CPUS 254	/* xAPIC IDs in the MADT, one left for the IOAPIC */
#define RUN_NAME_MAX 64

#define RUN_MAX_DISKS 8

/*
 * -d FILE[,ro][,serial=ID][,cache=writeback|none][,queues=N][,format=raw|qcow2]
 *        [,engine=threads|aio|io_uring][,cache-size=SIZE]
 */
struct run_disk {
	char *spec;		/* a copy of the argument, cut into the fields below */
	const char *path;
	const char *serial;
	int readonly;
	int direct;		/* cache=none */
	unsigned int queues;	/* 0: one per vCPU */
	int format;		/* enum disk_format_kind; 0: probe */
	int engine;		/* enum disk_engine_kind; 0: --engine, else the default */
	uint64_t cache_size;	/* qcow2 metadata cache bytes; 0: default */
};

struct run_options {
	const char *kernel;
	const char *initrd;
	const char *params;
	const char *name;
	uint64_t mem;
	const char *mem_arg;	/* -m as the user wrote it, for messages */
	unsigned int cpus;
	int rng;		/* --rng: a virtio-rng device */
	int virtio_console;	/* --console virtio: hvc0 instead of ttyS0 */
	int engine;		/* --engine: enum disk_engine_kind for disks that name none */
	unsigned int nr_disks;
	struct run_disk disks[RUN_MAX_DISKS];
	char **cmd;		/* NULL-terminated, or NULL for an interactive shell */
	int help;
};

/*
 * Parses `run` arguments (argv[0] is "run"). Returns 0, or -1 with a one-line reason in err.
 * Limits that depend on the host (RAM, KVM's vCPU limit) are checked later, by run.
 */
int run_parse_options(int argc, char **argv, struct run_options *o, char *err, size_t errlen);

void run_options_free(struct run_options *o);

/* The usage text of `nkvm run`. */
extern const char run_usage[];

#endif
