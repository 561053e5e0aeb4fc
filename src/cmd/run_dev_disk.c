// SPDX-License-Identifier: MIT
/* The disk in the device table: -d parsed into a struct run_disk, opened, served by virtio-blk. */
#include <errno.h>
#include <string.h>

#include "cmd/run_dev_disk.h"
#include "cmd/run_devices.h"
#include "lib/log.h"
#include "virtio/blk.h"

static const struct kvopt_name cache_names[] = {
	{ "writeback", 0 },
	{ "none", 1 },
	{ NULL, 0 },
};
static const struct kvopt_name format_names[] = {
	{ "raw", DISK_FORMAT_RAW },
	{ "qcow2", DISK_FORMAT_QCOW2 },
	{ NULL, 0 },
};
const struct kvopt_name disk_engine_names[] = {
	{ "threads", DISK_ENGINE_THREADS },
	{ "aio", DISK_ENGINE_AIO },
	{ "io_uring", DISK_ENGINE_IO_URING },
	{ NULL, 0 },
};

static const struct kvopt_spec disk_path = {
	"image file",
	KVOPT_STRING,
	KVOPT_AT(struct run_disk, path),
	.arg = "FILE",
};

static const struct kvopt_spec disk_keys[] = {
	{ "ro", KVOPT_FLAG, KVOPT_AT(struct run_disk, readonly),
	  .help = "read-only: the guest cannot write it" },
	{ "serial", KVOPT_STRING, KVOPT_AT(struct run_disk, serial), .max = VIRTIO_BLK_ID_BYTES,
	  .arg = "ID", .help = "the ID the guest reads, up to 20 characters" },
	{ "cache", KVOPT_ENUM, KVOPT_AT(struct run_disk, direct), .names = cache_names,
	  .help = "none: O_DIRECT, past the host's page cache" },
	{ "queues", KVOPT_UINT, KVOPT_AT(struct run_disk, queues), .min = 1,
	  .max = VIRTIO_BLK_MAX_QUEUES, .help = "request queues (default one per vCPU)" },
	{ "format", KVOPT_ENUM, KVOPT_AT(struct run_disk, format), .names = format_names,
	  .help = "the image's format (default: probed)" },
	{ "engine", KVOPT_ENUM, KVOPT_AT(struct run_disk, engine), .names = disk_engine_names,
	  .help = "its I/O engine (default: --engine)" },
	{ "cache-size", KVOPT_SIZE, KVOPT_AT(struct run_disk, cache_size), .min = 1,
	  .max = DISK_CACHE_SIZE_MAX,
	  .help = "qcow2 metadata cache up to 1G, like QEMU's l2-cache-size" },
	{ NULL },
};

static int disk_create(struct device_context *ctx, const void *cfg, void **dev, char *err,
		       size_t errlen)
{
	const struct run_disk *d = cfg;
	struct disk_options dopt = {
		.path = d->path,
		.readonly = d->readonly,
		.direct = d->direct,
		.format = d->format,
		.engine = d->engine ? d->engine : ctx->engine,
		.cache_size = d->cache_size,
	};
	struct virtio_blk_options bopt = {
		.serial = d->serial,
		.queues = d->queues ? d->queues : ctx->cpus,
	};
	struct virtio_device *vdev;
	struct disk *disk;
	char reason[DISK_ERR_MAX];
	int r;

	r = disk_open(&disk, &dopt, reason, sizeof(reason));
	if (r) {
		/* The block layer's generic phrases ("cannot open ...") need the errno with them. */
		if (!strncmp(reason, "cannot", 6))
			snprintf(err, errlen, "%s: %s: %s", d->path, reason, strerror(-r));
		else
			snprintf(err, errlen, "%s: %s", d->path, reason);
		return r;
	}
	/* Not an error: e.g. the engine asked for is unavailable here and another one runs. */
	if (disk_notice(disk))
		nkvm_err("%s: %s", d->path, disk_notice(disk));
	/* QEMU warns likewise: probing is why the guest may not write every first sector. */
	if (disk_probed_raw(disk))
		nkvm_err("%s: format probed as raw; a guest write that would make it look like "
			 "another format fails (format=raw allows it and silences this)",
			 d->path);
	r = virtio_blk_create(&vdev, ctx->vm, ctx->pci, ctx->irq, disk, &bopt);
	if (r) {
		snprintf(err, errlen, "%s: cannot create its virtio-blk device: %s", d->path,
			 strerror(-r));
		disk_close(disk);
		return r;
	}
	*dev = vdev;
	return 0;
}

/* Closing the disk makes formats that keep metadata in memory (qcow2) write it back. */
static void disk_destroy(void *dev)
{
	virtio_blk_destroy(dev);
}

static void disk_counters(void *dev, void (*emit)(void *ctx, const char *name, uint64_t value),
			  void *ctx)
{
	struct virtio_blk_stats st;

	virtio_blk_get_stats(dev, &st);
	emit(ctx, "requests", st.requests);
	emit(ctx, "read_bytes", st.read_bytes);
	emit(ctx, "write_bytes", st.write_bytes);
	emit(ctx, "errors", st.errors);
	emit(ctx, "in_flight", st.in_flight);
}

const struct device_type disk_device_type = {
	.name = "disk",
	.long_opt = "disk",
	.short_opt = 'd',
	.help = "a virtio-blk disk on a raw or qcow2 image or a block device",
	.syntax = { .noun = "disk", .positional = &disk_path, .keys = disk_keys },
	.cfg_size = sizeof(struct run_disk),
	.max = RUN_MAX_DISKS,
	.create = disk_create,
	.destroy = disk_destroy,
	.counters = disk_counters,
};
