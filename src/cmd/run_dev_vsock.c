// SPDX-License-Identifier: MIT
/* --vsock CID[,socket=PATH] in the device table: virtio-vsock over vhost-vsock or a unix socket. */
#include <linux/vm_sockets.h>
#include <string.h>

#include "cmd/run_devices.h"
#include "virtio/vsock.h"

struct run_vsock {
	uint32_t cid;
	const char *socket;
};

/* 0 to 2 are reserved and VMADDR_CID_ANY means any (virtio 1.2 §5.10.4). */
static const struct kvopt_spec vsock_cid = {
	"CID",
	KVOPT_UINT,
	KVOPT_AT(struct run_vsock, cid),
	.min = VSOCK_MIN_GUEST_CID,
	.max = VMADDR_CID_ANY - 1,
	.arg = "CID",
};

static const struct kvopt_spec vsock_keys[] = {
	{ "socket", KVOPT_STRING, KVOPT_AT(struct run_vsock, socket), .arg = "PATH",
	  .help = "a unix socket instead (hybrid vsock, see README)" },
	{ NULL },
};

static int vsock_create(struct device_context *ctx, const void *cfg, void **dev, char *err,
			size_t errlen)
{
	const struct run_vsock *v = cfg;
	struct vsock_options o = { .cid = v->cid, .socket = v->socket };
	struct virtio_vsock *vs;
	int r = virtio_vsock_create(&vs, ctx->vm, ctx->pci, ctx->irq, &o, err, errlen);

	if (r)
		return r;
	*dev = vs;
	return 0;
}

static void vsock_destroy(void *dev)
{
	virtio_vsock_destroy(dev);
}

const struct device_type vsock_device_type = {
	.name = "vsock",
	.long_opt = "vsock",
	.help = "virtio-vsock, the guest's CID (3 or more): host AF_VSOCK via vhost-vsock",
	.syntax = { .noun = "vsock", .positional = &vsock_cid, .keys = vsock_keys },
	.cfg_size = sizeof(struct run_vsock),
	.max = 1,
	.create = vsock_create,
	.destroy = vsock_destroy,
};
