// SPDX-License-Identifier: MIT
/*
 * The virtio-balloon device in the device table: present unless --no-balloon (it is cheap: no
 * thread runs until the guest's driver sets it up), last, so that no other device's PCI slot
 * moved when it came. `nkvm balloon` and vm.resize reach it through ctx->balloon.
 */
#include <string.h>

#include "cmd/run_devices.h"
#include "virtio/balloon.h"

static int balloon_create(struct device_context *ctx, const void *cfg, void **dev, char *err,
			  size_t errlen)
{
	struct virtio_balloon *b;
	int r = virtio_balloon_create(&b, ctx->vm, ctx->pci, ctx->irq);

	if (r) {
		/* As rng: left as it is, since a transport half made may still point at it. */
		snprintf(err, errlen, "cannot create the virtio-balloon device: %s", strerror(-r));
		return r;
	}
	ctx->balloon = b;
	*dev = b;
	return 0;
}

static void balloon_destroy(void *dev)
{
	virtio_balloon_destroy(dev);
}

const struct device_type balloon_device_type = {
	.name = "balloon",
	.long_opt = "no-balloon",
	.help = "no virtio-balloon device (by default one serves nkvm balloon and stat)",
	.syntax = { .noun = "balloon" },
	.max = 1,
	.by_default = true,
	.create = balloon_create,
	.destroy = balloon_destroy,
};
