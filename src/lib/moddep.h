/* SPDX-License-Identifier: MIT */
/*
 * Which kernel modules to load, and in what order: the closure of a set of wanted modules
 * under the dependencies that depmod wrote into modules.dep, sorted so that every module comes
 * after all of its dependencies. Pure functions over text, so they can be tested without a kernel.
 */
#ifndef NKVM_LIB_MODDEP_H
#define NKVM_LIB_MODDEP_H

#include <stddef.h>

/* Linux's MODULE_NAME_LEN (64 - sizeof(unsigned long)) is smaller; this leaves room. */
#define MODDEP_NAME_MAX 64

struct moddep_result {
	char **paths; /* modules.dep paths in load order */
	size_t n_paths;
	char **missing; /* wanted names neither in modules.dep nor in modules.builtin */
	size_t n_missing;
};

/*
 * Resolves wanted module names ("virtio-rng" and "virtio_rng" are the same module) against the
 * text of modules.dep. A wanted module listed in builtin_text (the text of modules.builtin, may be
 * NULL) is skipped; one in neither file is reported in out->missing. Returns 0, -ENOMEM,
 * -EINVAL when modules.dep is malformed (a line without ':', a dependency without a line of
 * its own, an overlong name) or -ELOOP when the dependencies form a cycle. On error *out is empty.
 */
int moddep_resolve(const char *dep_text, const char *builtin_text, const char *const *wanted,
		   size_t n_wanted, struct moddep_result *out);
void moddep_result_free(struct moddep_result *r);

/*
 * The name the kernel gives the module at path: its file name without ".ko" and any compression
 * suffix, with '-' written as '_' ("kernel/drivers/char/hw_random/virtio-rng.ko.xz" is
 * "virtio_rng"). Returns 0 or -EINVAL when path is not a module file name or too long.
 */
int moddep_name(const char *path, char *buf, size_t len);

#endif
