// SPDX-License-Identifier: MIT
/*
 * The groups of the lean initramfs (initrd_groups.h): nkvm's own list of which guest modules
 * each device needs. `nkvm setup` (setup_initrd.c) writes one archive per group; `nkvm run`
 * appends those of the devices it made.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/initrd_groups.h"
#include "lib/util.h"

#define DEVICES(...) ((const struct device_type *const[]){ __VA_ARGS__, NULL })
#define NAMES(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define NONE NAMES(NULL)

static const struct initrd_group disk = {
	.name = "disk",
	.devices = DEVICES(&disk_device_type),
	/*
	 * ext4 for the guest's mkfs.ext4 and root=; built into the cloud kernel, a module in
	 * others, whose crc32c it asks for by name (a soft dependency modules.dep does not list).
	 */
	.modules = NAMES("virtio_blk", "ext4", "jbd2", "mbcache", "crc16", "crc32c_generic",
			 "libcrc32c"),
	/* A vfat root= disk needs the driver and the code pages of its default codepage= and
	 * iocharset= (the kernel's config); modprobe loads them when mount asks. */
	.on_demand = NAMES("vfat", "nls_cp437", "nls_ascii"),
};

static const struct initrd_group net = {
	.name = "net",
	.devices = DEVICES(&net_device_type),
	.modules = NAMES("virtio_net", "net_failover", "failover"),
	.on_demand = NONE,
};

static const struct initrd_group fs = {
	.name = "fs",
	.devices = DEVICES(&share_device_type, &root_device_type),
	.modules = NAMES("fuse", "virtiofs"),
	.on_demand = NONE,
};

static const struct initrd_group vsock = {
	.name = "vsock",
	.devices = DEVICES(&vsock_device_type),
	.modules =
		NAMES("vmw_vsock_virtio_transport", "vmw_vsock_virtio_transport_common", "vsock"),
	.on_demand = NONE,
};

static const struct initrd_group console = {
	.name = "console",
	.devices = DEVICES(&console_device_type),
	.modules = NAMES("virtio_console"),
	.on_demand = NONE,
};

static const struct initrd_group rng = {
	.name = "rng",
	.devices = DEVICES(&rng_device_type),
	.modules = NAMES("virtio-rng"),
	.on_demand = NONE,
};

static const struct initrd_group balloon = {
	.name = "balloon",
	.devices = DEVICES(&balloon_device_type),
	.modules = NAMES("virtio_balloon"),
	.on_demand = NONE,
};

const struct initrd_group *const initrd_groups[] = {
	&disk, &net, &fs, &vsock, &console, &rng, &balloon, NULL,
};

const struct initrd_group *initrd_group_find(const char *name)
{
	for (size_t i = 0; initrd_groups[i]; i++) {
		if (!strcmp(initrd_groups[i]->name, name))
			return initrd_groups[i];
	}
	return NULL;
}

static bool group_serves(const struct initrd_group *g, const struct device_type *t)
{
	for (size_t i = 0; g->devices[i]; i++) {
		if (g->devices[i] == t)
			return true;
	}
	return false;
}

size_t initrd_groups_select(const struct device_list *list, const struct initrd_group **out,
			    size_t max)
{
	size_t n = 0;

	for (size_t g = 0; initrd_groups[g] && n < max; g++) {
		for (unsigned int d = 0; d < list->nr; d++) {
			if (list->devs[d].dev &&
			    group_serves(initrd_groups[g], list->devs[d].type)) {
				out[n++] = initrd_groups[g];
				break;
			}
		}
	}
	return n;
}

static bool result_has(const struct moddep_result *r, const char *path)
{
	for (size_t i = 0; i < r->n_paths; i++) {
		if (!strcmp(r->paths[i], path))
			return true;
	}
	return false;
}

int initrd_group_resolve(const char *dep_text, const char *builtin_text,
			 const struct initrd_group *g, bool on_demand,
			 const struct moddep_result *base, struct moddep_result *out)
{
	const char *const *names = on_demand ? g->on_demand : g->modules;
	size_t n = 0, i, kept = 0;
	int ret;

	while (names[n])
		n++;
	ret = moddep_resolve(dep_text, builtin_text, names, n, out);
	if (ret)
		return ret;
	/* Load order survives: what is left keeps its place after its dependencies. */
	for (i = 0; i < out->n_paths; i++) {
		if (result_has(base, out->paths[i]))
			free(out->paths[i]);
		else
			out->paths[kept++] = out->paths[i];
	}
	out->n_paths = kept;
	return 0;
}

void initrd_groups_close(struct initrd_group_files *f)
{
	while (f->n)
		close(f->fds[--f->n]);
}

static int group_open(const char *dir, const struct initrd_group *g, int *fd, uint64_t *len,
		      char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	int ret = 0;

	if (snprintf(path, sizeof(path), "%s/%s.cpio", dir, g->name) >= (int)sizeof(path)) {
		snprintf(err, errlen, "%s/%s.cpio: path too long", dir, g->name);
		return -ENAMETOOLONG;
	}
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, &st) < 0)
		ret = -errno;
	else if (!S_ISREG(st.st_mode) || st.st_size % 4)
		/* Appended archives must start 4-byte aligned; setup's newc archives end so. */
		ret = -EINVAL;
	if (!ret) {
		*len = st.st_size;
		return 0;
	}
	snprintf(err, errlen, "%s: %s%s", path,
		 ret == -EINVAL ? "not an archive of nkvm setup" : strerror(-ret),
		 ret == -ENOENT ? " (run `nkvm setup` to build the guest's module groups)" : "");
	if (*fd >= 0)
		close(*fd);
	return ret;
}

int initrd_groups_open(const char *kernel_path, const struct initrd_group *const *g, size_t n,
		       struct initrd_group_files *f, char *err, size_t errlen)
{
	const char *slash = strrchr(kernel_path, '/');
	char dir[PATH_MAX];
	struct stat st;
	int ret = 0;

	f->n = 0;
	if (snprintf(dir, sizeof(dir), "%.*s%s", slash ? (int)(slash - kernel_path) : 1,
		     slash ? kernel_path : ".", "/" INITRD_GROUPS_DIR) >= (int)sizeof(dir)) {
		snprintf(err, errlen, "%s: path too long", kernel_path);
		return -ENAMETOOLONG;
	}
	if (slash == kernel_path)
		snprintf(dir, sizeof(dir), "/%s", INITRD_GROUPS_DIR);
	/* Not a kernel nkvm setup prepared: its initramfs is the user's, complete as it is. */
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0;
	for (size_t i = 0; !ret && i < n && i < INITRD_GROUPS_MAX; i++) {
		ret = group_open(dir, g[i], &f->fds[f->n], &f->lens[f->n], err, errlen);
		if (!ret)
			f->n++;
	}
	if (ret)
		initrd_groups_close(f);
	return ret;
}
