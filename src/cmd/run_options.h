/* SPDX-License-Identifier: MIT */
/* `nkvm run` options: parsed and checked without touching KVM, so tests can drive them. */
#ifndef NKVM_CMD_RUN_OPTIONS_H
#define NKVM_CMD_RUN_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "arch/x86/acpi.h"
#include "block/disk.h"
#include "cmd/run_devices.h"
#include "sandbox/privs.h"
#include "sandbox/sandbox.h"

#define RUN_DEFAULT_MEM (256ULL << 20)
#define RUN_MIN_MEM (32ULL << 20)
#define RUN_MAX_CPUS ACPI_MAX_CPUS /* xAPIC IDs in the MADT, one left for the IOAPIC */
#define RUN_NAME_MAX 64
#define RUN_MAX_DEVICES 32 /* PCI slots */

struct run_options {
	const char *kernel;
	const char *initrd;
	const char *params;
	const char *name;
	uint64_t mem;
	const char *mem_arg; /* -m as the user wrote it, for messages */
	unsigned int cpus;
	enum disk_engine_kind engine; /* --engine: for disks that name none */
	/* The devices given (-d, --rng, ...), in command-line order; see run_devices.h. */
	unsigned int nr_devices;
	struct run_device devices[RUN_MAX_DEVICES];
	char **cmd; /* NULL-terminated, or NULL for an interactive shell */
	int help;
	int detach; /* --detach: in the background, the console kept for nkvm console */
	enum sandbox_mode sandbox; /* --sandbox=on|off: each thread's seccomp filter, Landlock */
	const char *user_arg; /* --user USER as given, NULL without; its ids in user */
	struct privs_user user;
};

/*
 * Parses `run` arguments (argv[0] is "run"). Returns 0, or -1 with a one-line reason in err.
 * Limits that depend on the host (RAM, KVM's vCPU limit) are checked later, by run.
 * run_options_free frees the devices' parsed arguments, also after an error.
 */
int run_parse_options(int argc, char **argv, struct run_options *o, char *err, size_t errlen);

void run_options_free(struct run_options *o);

/* The usage text of `nkvm run`: the generic options, then each device type's lines. */
void run_usage(FILE *f);

/* Is s a guest name --name takes (letters, digits, '-', '_', '.'; not starting with '.' or '-')? */
int run_valid_name(const char *s);

#endif
