/* SPDX-License-Identifier: MIT */
/*
 * The devices `nkvm run` can add, as one table (run_devices.c): each type's option, its
 * argument's syntax and help, and how to create and destroy one. Option parsing, `--help` and
 * run.c go through the table and know no type; a new device is a run_dev_*.c file and a line in
 * the table.
 */
#ifndef NKVM_CMD_RUN_DEVICES_H
#define NKVM_CMD_RUN_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "block/disk.h"
#include "lib/kvopt.h"

struct vm;
struct pci_bus;
struct irq_routing;
struct virtio_balloon;

/* What a device is created in and may hook into. */
struct privs_user;

struct device_context {
	struct vm *vm;
	struct pci_bus *pci;
	struct irq_routing *irq;
	unsigned int cpus; /* -c: the default number of a device's queues */
	const char *name; /* --name, NULL without: what a NIC's default MAC is derived from */
	unsigned int index; /* the device's place among those of its type: 0 for eth0 */
	enum disk_engine_kind engine; /* --engine: for disks that name none */
	int out_fd; /* the host's console output */
	/* Set by a device that takes host console input instead of the UART (virtio-console). */
	size_t (*console_input)(void *opaque, const uint8_t *buf, size_t len);
	void *console_input_opaque;
	struct virtio_balloon *balloon; /* set by the balloon device, for the control API */
	const struct privs_user *user; /* --user: who must own what a device makes; or NULL */
};

struct device_type {
	const char *name; /* "disk": messages ("at most 8 disks") and --name */
	const char *long_opt; /* "disk": --disk */
	char short_opt; /* 'd': -d; 0: none */
	const char *help; /* what one is, for --help; '\n' between lines */
	struct kvopt_set syntax; /* the argument; no positional and no keys: no argument */
	size_t cfg_size; /* the struct kvopt_parse fills, one per device given */
	unsigned int max; /* how many may be given; 1: a second replaces the first */
	/* Made without being asked; its option (no argument: --no-balloon) leaves it out. */
	bool by_default;
	/*
	 * Optional: checks what the syntax cannot say alone (a MAC's form, keys that only go
	 * together), before any device is made. Returns 0 or -EINVAL with one line in err.
	 */
	int (*check)(void *cfg, char *err, size_t errlen);
	/* Optional: kernel parameters this device needs ("console=hvc0"), or NULL. */
	const char *(*cmdline)(const void *cfg);
	/*
	 * Creates the device cfg describes; *dev is what destroy gets, NULL when cfg asks for no
	 * device (--console serial). Returns 0 or a negative errno with one line in err, which
	 * names the device's input ("disk.img: cannot open: ...").
	 */
	int (*create)(struct device_context *ctx, const void *cfg, void **dev, char *err,
		      size_t errlen);
	/* After the guest stopped: waits for the device's requests, frees it (closes its files). */
	void (*destroy)(void *dev);
	/*
	 * Optional: the device's counters for vm.counters and `nkvm stat`, in a group named after
	 * the type's long option and its index among devices of the type ("disk0", "net1"). Any
	 * thread, while the device exists.
	 */
	void (*counters)(void *dev, void (*emit)(void *ctx, const char *name, uint64_t value),
			 void *ctx);
};

/* The counters of a NIC whose dev is a struct virtio_net (run_dev_net_counters.c). */
void run_net_counters(void *dev, void (*emit)(void *ctx, const char *name, uint64_t value),
		      void *ctx);

/* The types, each defined in its run_dev_*.c. */
extern const struct device_type rng_device_type, console_device_type, disk_device_type,
	net_device_type, vsock_device_type;
extern const struct device_type balloon_device_type;
extern const struct device_type share_device_type, root_device_type; /* run_dev_fs.c */

/*
 * Every type, in creation order (hence PCI slot order). NULL-terminated. The option letter or
 * label in messages is "-d" when a type has a short option, else "--vsock".
 */
extern const struct device_type *const device_types[];

/* One device given on the command line. */
struct run_device {
	const struct device_type *type;
	void *cfg; /* cfg_size bytes, filled by the type's syntax */
	char *text; /* a copy of the argument, which cfg's strings point into */
};

/* The devices created, to destroy in reverse. */
struct device_list {
	unsigned int nr;
	struct created_device {
		const struct device_type *type;
		void *dev;
	} devs[32];
};

/* The option as messages spell it: "-d" or "--rng". */
const char *device_type_label(const struct device_type *t, char *buf, size_t len);
/* --help lines for every type, in table order. */
void device_types_usage(FILE *f);

/*
 * Creates devs[0..nr) in table order (command-line order within a type) into list. Returns 0
 * or a negative errno with one line in err; the devices made before stay in list.
 */
int devices_create(struct device_list *list, struct device_context *ctx,
		   const struct run_device *devs, unsigned int nr, char *err, size_t errlen);
/* Destroys what list holds, last created first; list is empty after. */
void devices_destroy(struct device_list *list);

#endif
