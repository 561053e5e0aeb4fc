// SPDX-License-Identifier: MIT
/* --share and --root in the device table: a virtio-fs device over a FUSE server each. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "cmd/run_dev_fs.h"
#include "cmd/run_devices.h"
#include "cmd/run_options.h"
#include "fs/fuse_server.h"
#include "sandbox/landlock.h"

static const struct kvopt_spec share_path = {
	"host directory",
	KVOPT_STRING,
	KVOPT_AT(struct run_share, path),
	.arg = "HOSTDIR",
};

static const struct kvopt_spec share_keys[] = {
	{ "tag", KVOPT_STRING, KVOPT_AT(struct run_share, tag), .arg = "TAG",
	  .help = "what the guest mounts (default: HOSTDIR's base name)" },
	{ "at", KVOPT_STRING, KVOPT_AT(struct run_share, at), .arg = "GUESTPATH",
	  .help = "where the guest's init mounts it (default: /mnt/TAG)" },
	{ "ro", KVOPT_FLAG, KVOPT_AT(struct run_share, readonly),
	  .help = "read-only: every change fails with EROFS" },
	{ NULL },
};

static const struct kvopt_spec root_path = {
	"host directory",
	KVOPT_STRING,
	KVOPT_AT(struct run_share, path),
	.arg = "HOSTDIR",
};

/*
 * The descriptors nkvm keeps for itself (disks, eventfds, TAP queues, sockets) whatever the
 * guests' shares hold.
 */
#define SHARE_FD_RESERVE 512

/*
 * Bounds that fit the descriptor limit: a guest that holds every inode and handle it may must
 * leave nkvm descriptors of its own, so under a limit too low for the server's defaults the
 * bounds shrink with it (a fifth for open handles, the rest for inodes). Each share is sized
 * against the whole limit: two shares under a low limit may still run out together, and then
 * the guest gets EMFILE/ENFILE from its opens, never nkvm a failure of its own.
 */
static void share_bounds(struct fuse_server_config *c)
{
	struct rlimit rl;
	uint64_t budget;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return;
	budget = rl.rlim_cur > 2 * SHARE_FD_RESERVE ? rl.rlim_cur - SHARE_FD_RESERVE :
						      rl.rlim_cur / 2;
	if (budget >= FUSE_SERVER_MAX_INODES + FUSE_SERVER_MAX_HANDLES)
		return;
	c->max_handles = budget / 5;
	c->max_inodes = budget - c->max_handles;
}

static int share_create(struct device_context *ctx, const void *cfg, void **dev, char *err,
			size_t errlen)
{
	const struct run_share *s = cfg;
	struct fuse_server_config scfg = { .root = s->path, .readonly = s->readonly };
	struct virtio_fs_options o = { .tag = s->tag, .queues = ctx->cpus };
	struct fuse_server *srv;
	struct virtio_fs *fs;
	struct rlimit rl;
	int r;

	/*
	 * Each inode the guest looks up is a descriptor here (an O_PATH one), up to the server's
	 * bounds: the usual soft limit of 1024 would fail a guest's `find` long before them.
	 */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	share_bounds(&scfg);
	r = fuse_server_create(&srv, &scfg, err, errlen);
	if (r)
		return r;
	/*
	 * Landlock: the server works beneath the share's root all along (lookups, creates,
	 * renames, reopening through /proc/self/fd); ro only reads.
	 */
	r = landlock_allow(s->path, s->readonly ? LANDLOCK_READ : LANDLOCK_TREE);
	if (r) {
		snprintf(err, errlen, "%s: cannot name it to Landlock: %s", s->path, strerror(-r));
		fuse_server_destroy(srv);
		return r;
	}
	r = virtio_fs_create(&fs, ctx->vm, ctx->pci, ctx->irq, srv, &o);
	if (r) {
		snprintf(err, errlen, "%s: cannot create its virtio-fs device: %s", s->path,
			 strerror(-r));
		fuse_server_destroy(srv);
		return r;
	}
	*dev = fs;
	return 0;
}

static void share_destroy(void *dev)
{
	virtio_fs_destroy(dev);
}

const struct device_type share_device_type = {
	.name = "share",
	.long_opt = "share",
	.help = "a host directory the guest mounts (virtio-fs)",
	.syntax = { .noun = "share", .positional = &share_path, .keys = share_keys },
	.cfg_size = sizeof(struct run_share),
	.max = RUN_MAX_SHARES,
	.create = share_create,
	.destroy = share_destroy,
};

const struct device_type root_device_type = {
	.name = "root",
	.long_opt = "root",
	.help = "the guest's / from a host directory; runs COMMAND, its /sbin/init or a shell",
	.syntax = { .noun = "root", .positional = &root_path },
	.cfg_size = sizeof(struct run_share),
	.max = 1,
	.create = share_create,
	.destroy = share_destroy,
};

/* A tag or guest path goes in a line of NKVM_SHARES_FILE: no blank may split it. */
static bool has_blank(const char *s)
{
	return s[strcspn(s, " \t\n")] != '\0';
}

/* HOSTDIR's last name, trailing slashes ignored; "" for "/". */
static void base_name(const char *path, char *buf, size_t len)
{
	size_t end = strlen(path), start;

	while (end > 1 && path[end - 1] == '/')
		end--;
	start = end;
	while (start && path[start - 1] != '/')
		start--;
	if (end - start >= len)
		end = start + len - 1;
	snprintf(buf, len, "%.*s", (int)(end - start), path + start);
	if (!strcmp(buf, "/"))
		buf[0] = '\0';
}

static int share_check(struct run_share *s, bool root, char *why, size_t len)
{
	char base[VIRTIO_FS_TAG_MAX + 2];
	struct stat st;

	if (stat(s->path, &st) < 0) {
		snprintf(why, len, "%s", errno == ENOENT ? "no such directory" : strerror(errno));
		return -EINVAL;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, len, "not a directory");
		return -EINVAL;
	}
	if (root) {
		s->tag = RUN_ROOT_TAG;
		s->at = "/";
		return 0;
	}
	if (!s->tag) {
		base_name(s->path, base, sizeof(base));
		if (!base[0]) {
			snprintf(why, len, "it has no base name to be its tag: give one with tag=");
			return -EINVAL;
		}
		if (strlen(base) > VIRTIO_FS_TAG_MAX) {
			snprintf(why, len,
				 "its base name is longer than a tag may be (%u bytes): give one "
				 "with tag=",
				 VIRTIO_FS_TAG_MAX);
			return -EINVAL;
		}
		memcpy(s->tag_buf, base, strlen(base) + 1);
		s->tag = s->tag_buf;
	}
	if (!*s->tag || strlen(s->tag) > VIRTIO_FS_TAG_MAX || has_blank(s->tag)) {
		snprintf(why, len, "tag '%s': 1 to %u bytes, no spaces", s->tag, VIRTIO_FS_TAG_MAX);
		return -EINVAL;
	}
	if (!s->at) {
		snprintf(s->at_buf, sizeof(s->at_buf), "/mnt/%s", s->tag);
		s->at = s->at_buf;
	}
	if (s->at[0] != '/' || has_blank(s->at) || !strcmp(s->at, "/")) {
		snprintf(why, len, "at=%s: an absolute guest path other than / (for that: --root)",
			 s->at);
		return -EINVAL;
	}
	return 0;
}

int run_fs_check(struct run_options *o, char *err, size_t errlen)
{
	for (unsigned int i = 0; i < o->nr_devices; i++) {
		struct run_device *d = &o->devices[i];
		bool root = d->type == &root_device_type;
		char why[160];

		if (d->type != &share_device_type && !root)
			continue;
		if (share_check(d->cfg, root, why, sizeof(why)))
			goto fail;
		for (unsigned int k = 0; k < i; k++) {
			const struct run_device *e = &o->devices[k];

			if ((e->type == &share_device_type || e->type == &root_device_type) &&
			    !strcmp(((const struct run_share *)e->cfg)->tag,
				    ((const struct run_share *)d->cfg)->tag)) {
				snprintf(why, sizeof(why), "tag '%s' is used twice%s",
					 ((const struct run_share *)d->cfg)->tag,
					 root || e->type == &root_device_type ?
						 " (--root's is " RUN_ROOT_TAG ")" :
						 "");
				goto fail;
			}
		}
		continue;
fail:
		snprintf(err, errlen, "--%s %s: %s", d->type->long_opt,
			 ((const struct run_share *)d->cfg)->path, why);
		return -EINVAL;
	}
	return 0;
}

int run_fs_guest_file(const struct run_options *o, char **text, size_t *len)
{
	bool any = false;
	FILE *f;

	*text = NULL;
	*len = 0;
	for (unsigned int i = 0; i < o->nr_devices; i++)
		any |= o->devices[i].type == &share_device_type ||
		       o->devices[i].type == &root_device_type;
	if (!any)
		return 0;
	f = open_memstream(text, len);
	if (!f)
		return -ENOMEM;
	/* The root first: the shares are mounted inside it, once the init switched into it. */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned int i = 0; i < o->nr_devices; i++) {
			const struct run_device *d = &o->devices[i];
			const struct run_share *s = d->cfg;

			if (d->type != (pass ? &share_device_type : &root_device_type))
				continue;
			fprintf(f, "%s %s %s\n", s->tag, s->at, s->readonly ? "ro" : "rw");
		}
	}
	if (fclose(f)) {
		free(*text);
		*text = NULL;
		return -ENOMEM;
	}
	return 0;
}
