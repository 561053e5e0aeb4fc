// SPDX-License-Identifier: MIT
/*
 * virtio 1.2 §5.11: the file system device. Each request is one descriptor chain: the FUSE
 * request in its device-readable part, the buffers for the reply in its device-writable part
 * (§5.11.6). The FUSE server parses and answers it; this file only moves chains.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fuse_server.h"
#include "hw/pci.h"
#include "lib/util.h"
#include "virtio/device.h"
#include "virtio/fs.h"
#include "virtio/pci.h"
#include "sandbox/sandbox.h"

_Static_assert(VIRTIO_FS_MAX_REQUEST_QUEUES == VIRTIO_MAX_QUEUES - 1, "fs.h's queue limit");
/*
 * Linux's virtio_fs takes max_pages from the queue size (less the FUSE headers), so a larger
 * queue lets the guest's READs and WRITEs go in bigger pieces; VIRTQ_MAX_SEGS bounds a chain.
 */
#define FS_QUEUE_SIZE 1024
#define FS_CONFIG_SIZE ((uint32_t)sizeof(struct virtio_fs_config))
#define FS_NAME_MAX (sizeof("virtio-fs ()") + VIRTIO_FS_TAG_MAX)

/* A queue's chain, used by that queue's I/O thread only. */
struct fs_queue {
	struct virtq_chain chain;
};

struct virtio_fs {
	struct virtio_device vdev;
	struct virtio_pci *transport;
	struct fuse_server *srv;
	struct virtio_fs_config config;
	char name[FS_NAME_MAX];
	struct fs_queue *queues; /* one per virtqueue, hiprio included */
};

/*
 * One request, answered on this thread. A request the server finds malformed gets its error
 * reply (or none when the chain has no room); the server never looks outside the segments, which
 * virtio_pop checked against guest RAM. The hiprio queue (§5.11.6.1: FORGET, BATCH_FORGET and
 * INTERRUPT, which have no reply) is served the same way.
 */
/* virtio-fs's queue threads run the FUSE server (src/fs): every file operation on the share, by *at() calls relative to the inodes' O_PATH descriptors, and xattrs through /proc/self/fd/N. */
static const struct sandbox_rule fs_queue_rules[] = {
	VIRTIO_QUEUE_RULES,
	SANDBOX_ALLOW(openat2) /* RESOLVE_BENEATH: its flags are in struct open_how, which seccomp cannot read */,
	SANDBOX_ALLOW(openat) /* where openat2 is missing, and /proc/self/fd/N reopened for I/O */,
	SANDBOX_ALLOW(close),
	SANDBOX_ALLOW(newfstatat),
	SANDBOX_ALLOW(fstatfs),
	SANDBOX_ALLOW(getdents64),
	SANDBOX_ALLOW(fcntl), /* fdopendir checks the descriptor's flags */
	SANDBOX_ALLOW(lseek),
	SANDBOX_ALLOW(preadv),
	SANDBOX_ALLOW(pwritev),
	SANDBOX_ALLOW(copy_file_range),
	SANDBOX_ALLOW(ftruncate),
	SANDBOX_ALLOW(fallocate),
	SANDBOX_ALLOW(fsync),
	SANDBOX_ALLOW(fdatasync),
	SANDBOX_ALLOW(mkdirat),
	SANDBOX_ALLOW(mknodat),
	SANDBOX_ALLOW(symlinkat),
	SANDBOX_ALLOW(linkat),
	SANDBOX_ALLOW(unlinkat),
	SANDBOX_ALLOW(renameat2),
	SANDBOX_ALLOW(renameat), /* glibc's renameat2 without flags */
	SANDBOX_ALLOW(readlinkat),
	SANDBOX_ALLOW(faccessat),
	SANDBOX_ALLOW(faccessat2),
	SANDBOX_ALLOW(fchmodat),
	SANDBOX_ALLOW(fchownat),
	SANDBOX_ALLOW(utimensat),
	SANDBOX_ALLOW(getxattr),
	SANDBOX_ALLOW(setxattr),
	SANDBOX_ALLOW(listxattr),
	SANDBOX_ALLOW(removexattr),
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter fs_queue_filter = {
	.thread = "fs-queue",
	.rules = fs_queue_rules,
	.nr_rules = ARRAY_SIZE(fs_queue_rules),
};

static uint32_t fs_serve(struct virtio_fs *fs, const struct virtq_chain *c)
{
	size_t done = fuse_server_handle(fs->srv, c->iov, c->nr_out, c->iov + c->nr_out, c->nr_in);

	/* The server writes only into the writable part, so this never exceeds it. */
	return done > c->in_len ? (uint32_t)c->in_len : (uint32_t)done;
}

static void fs_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_fs *fs = (struct virtio_fs *)vdev;
	struct virtq_chain *c = &fs->queues[q].chain;

	/* A malformed ring or chain (< 0) already put the device in DEVICE_NEEDS_RESET. */
	while (virtio_pop(vdev, q, c) > 0)
		virtio_push(vdev, q, c->head, fs_serve(fs, c));
}

static void fs_config_read(struct virtio_device *vdev, uint64_t off, void *data, unsigned int len)
{
	struct virtio_fs *fs = (struct virtio_fs *)vdev;

	memcpy(data, (const uint8_t *)&fs->config + off, len);
}

static const struct virtio_device_ops fs_ops = {
	.queue_kick = fs_queue_kick,
	.config_read = fs_config_read,
};

int virtio_fs_create(struct virtio_fs **out, struct vm *vm, struct pci_bus *bus,
		     struct irq_routing *irq, struct fuse_server *srv,
		     const struct virtio_fs_options *o)
{
	unsigned int queues = o->queues ? o->queues : 1;
	size_t tag_len = o->tag ? strlen(o->tag) : 0;
	struct virtio_fs *fs;
	int err;

	if (!tag_len || tag_len > VIRTIO_FS_TAG_MAX)
		return -EINVAL;
	if (queues > VIRTIO_FS_MAX_REQUEST_QUEUES)
		queues = VIRTIO_FS_MAX_REQUEST_QUEUES;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->queues = calloc(queues + 1, sizeof(*fs->queues));
	if (!fs->queues) {
		free(fs);
		return -ENOMEM;
	}
	fs->srv = srv;
	/* §5.11.4: UTF-8, NUL-padded, not NUL-terminated when it takes all 36 bytes. */
	memcpy(fs->config.tag, o->tag, tag_len);
	put_le((uint8_t *)&fs->config.num_request_queues, queues, 4);
	snprintf(fs->name, sizeof(fs->name), "virtio-fs (%s)", o->tag);
	fs->vdev = (struct virtio_device){
		.ops = &fs_ops,
		.queue_filter = &fs_queue_filter,
		.name = fs->name,
		.device_id = VIRTIO_ID_FS,
		.pci_class = PCI_CLASS_STORAGE_OTHER,
		.host_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX) |
				 (1ULL << VIRTIO_RING_F_INDIRECT_DESC),
		.nr_queues = queues + 1,
		.queue_max_size = FS_QUEUE_SIZE,
		.config_size = FS_CONFIG_SIZE,
	};
	err = virtio_pci_create(&fs->transport, vm, bus, irq, &fs->vdev);
	if (err) {
		free(fs->queues);
		free(fs);
		return err;
	}
	*out = fs;
	return 0;
}

void virtio_fs_destroy(struct virtio_fs *fs)
{
	if (!fs)
		return;
	/* Stops the queue threads first: no request is in the server after this. */
	virtio_pci_free(fs->transport);
	fuse_server_destroy(fs->srv);
	free(fs->queues);
	free(fs);
}
