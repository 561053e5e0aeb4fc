// SPDX-License-Identifier: MIT
/* --vsock CID[,socket=PATH] in the device table: virtio-vsock over vhost-vsock or a unix socket. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd/run_devices.h"
#include "sandbox/landlock.h"
#include "sandbox/privs.h"
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

	char dir[PATH_MAX];

	if (r)
		return r;
	*dev = vs;
	if (!v->socket)
		return 0;
	/*
	 * The listener is unlinked at exit, which Landlock must allow in its directory; a guest's
	 * connection to PATH_PORT needs no rule (Landlock does not govern connect).
	 */
	snprintf(dir, sizeof(dir), "%s", v->socket);
	r = landlock_allow(dirname(dir), LANDLOCK_SOCKETS);
	if (r)
		snprintf(err, errlen, "%s: cannot name its directory to Landlock: %s", v->socket,
			 strerror(-r));
	/* --user: the socket is the user's (whose programs connect to it, who unlinks it). */
	if (!r && ctx->user && lchown(v->socket, ctx->user->uid, ctx->user->gid) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot hand it to --user: %s", v->socket, strerror(-r));
	}
	if (r) {
		virtio_vsock_destroy(vs);
		*dev = NULL;
	}
	return r;
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
