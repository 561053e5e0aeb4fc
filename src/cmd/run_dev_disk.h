/* SPDX-License-Identifier: MIT */
/* `-d FILE[,OPTION]...`: a virtio-blk disk, as the device table (run_devices.h) adds it. */
#ifndef NKVM_CMD_RUN_DEV_DISK_H
#define NKVM_CMD_RUN_DEV_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "block/disk.h"
#include "lib/kvopt.h"

#define RUN_MAX_DISKS 8

/*
 * -d FILE[,ro][,serial=ID][,cache=writeback|none][,queues=N][,format=raw|qcow2]
 *        [,engine=threads|aio|io_uring][,cache-size=SIZE]
 */
struct run_disk {
	const char *path;
	const char *serial;
	bool readonly;
	bool direct; /* cache=none */
	unsigned int queues; /* 0: one per vCPU */
	enum disk_format_kind format; /* DISK_FORMAT_PROBE unless format= */
	enum disk_engine_kind engine; /* DISK_ENGINE_DEFAULT: --engine, else the default */
	uint64_t cache_size; /* qcow2 metadata cache bytes; 0: default */
};

/* threads, aio, io_uring: for engine= and --engine. */
extern const struct kvopt_name disk_engine_names[];

#endif
