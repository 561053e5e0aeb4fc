/* SPDX-License-Identifier: MIT */
/*
 * The lean initramfs: the base archive (`nkvm setup`'s initrd.cpio) holds what every guest
 * needs; what only one kind of device needs (its driver, the modules that driver depends on
 * and the guest tools that work with it) is a group, one small cpio archive per group beside
 * the kernel, which `nkvm run` appends after the initrd for the devices the machine has.
 * Each group's archive carries its own load list, NKVM_MODULES_DIR/NAME (guest/abi.h), so the
 * init loads exactly what was appended.
 */
#ifndef NKVM_CMD_INITRD_GROUPS_H
#define NKVM_CMD_INITRD_GROUPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd/run_devices.h"
#include "lib/moddep.h"

/* The directory of group archives, beside the kernel they were made for: "DIR/NAME.cpio". */
#define INITRD_GROUPS_DIR "initrd-modules"

struct initrd_group {
	const char *name; /* "disk": its archive INITRD_GROUPS_DIR/disk.cpio */
	/* The device types whose drivers these are; NULL-terminated. */
	const struct device_type *const *devices;
	/* Loaded at boot, with their dependencies (missing ones are skipped); NULL-terminated. */
	const char *const *modules;
	/* In the archive but not loaded: the kernel asks modprobe for them on first use. */
	const char *const *on_demand;
};

/* Every group, in the order run appends them; NULL-terminated. */
extern const struct initrd_group *const initrd_groups[];

/* The group of that name, or NULL. */
const struct initrd_group *initrd_group_find(const char *name);

/*
 * The groups a machine needs: those of each device made (list->devs[i].dev not NULL: a
 * `--console serial` makes none), each once, in initrd_groups[] order, into out (room for
 * max). Returns how many.
 */
size_t initrd_groups_select(const struct device_list *list, const struct initrd_group **out,
			    size_t max);

/*
 * The modules.dep paths of group g (its modules, and with on_demand its on_demand ones), with
 * their dependencies, less those of base (the base archive's, which the kernel has loaded
 * already), in load order. Returns moddep_resolve()'s 0 or negative errno.
 */
int initrd_group_resolve(const char *dep_text, const char *builtin_text,
			 const struct initrd_group *g, bool on_demand,
			 const struct moddep_result *base, struct moddep_result *out);

/* The archives of the groups a machine needs, open, to append after the initrd. */
#define INITRD_GROUPS_MAX 8
struct initrd_group_files {
	int fds[INITRD_GROUPS_MAX];
	uint64_t lens[INITRD_GROUPS_MAX];
	size_t n;
};

/*
 * Opens INITRD_GROUPS_DIR/NAME.cpio beside kernel_path for each of g[0..n) into *f. A kernel
 * with no such directory beside it (the user's own) has no groups: 0 with f->n 0. Returns 0, or
 * a negative errno with one line in err that names the file (and, when it is missing, says to
 * run `nkvm setup`); then f->n is 0.
 */
int initrd_groups_open(const char *kernel_path, const struct initrd_group *const *g, size_t n,
		       struct initrd_group_files *f, char *err, size_t errlen);
void initrd_groups_close(struct initrd_group_files *f);

#endif
