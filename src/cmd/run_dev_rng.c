// SPDX-License-Identifier: MIT
/* --rng in the device table: a virtio-rng device, the guest's /dev/hwrng. */
#include <string.h>

#include "cmd/run_devices.h"
#include "virtio/rng.h"

static int rng_create(struct device_context *ctx, const void *cfg, void **dev, char *err,
		      size_t errlen)
{
	struct virtio_rng *rng;
	int r = virtio_rng_create(&rng, ctx->vm, ctx->pci, ctx->irq);

	if (r) {
		snprintf(err, errlen, "cannot create the virtio-rng device: %s", strerror(-r));
		return r;
	}
	*dev = rng;
	return 0;
}

static void rng_destroy(void *dev)
{
	virtio_rng_destroy(dev);
}

const struct device_type rng_device_type = {
	.name = "rng",
	.long_opt = "rng",
	.help = "a virtio-rng device: the guest's /dev/hwrng",
	.syntax = { .noun = "rng" },
	.max = 1,
	.create = rng_create,
	.destroy = rng_destroy,
};
