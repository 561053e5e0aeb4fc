// SPDX-License-Identifier: MIT
/* --console serial|virtio in the device table: with virtio, a virtio-console for hvc0. */
#include <stdbool.h>
#include <string.h>

#include "cmd/run_devices.h"
#include "virtio/console.h"

struct run_console {
	bool virtio; /* false: the UART's ttyS0 alone, no device */
};

static const struct kvopt_name console_names[] = {
	{ "serial", 0 },
	{ "virtio", 1 },
	{ NULL, 0 },
};

static const struct kvopt_spec console_kind = {
	"console",
	KVOPT_ENUM,
	KVOPT_AT(struct run_console, virtio),
	.names = console_names,
};

/* The UART stays the console until virtio_console loads; then hvc0 is the preferred one. */
static const char *console_cmdline(const void *cfg)
{
	return ((const struct run_console *)cfg)->virtio ? "console=hvc0" : NULL;
}

static int console_create(struct device_context *ctx, const void *cfg, void **dev, char *err,
			  size_t errlen)
{
	struct virtio_console *con;
	int r;

	if (!((const struct run_console *)cfg)->virtio)
		return 0;
	r = virtio_console_create(&con, ctx->vm, ctx->pci, ctx->irq, ctx->out_fd);
	if (r) {
		snprintf(err, errlen, "cannot create the virtio-console device: %s", strerror(-r));
		return r;
	}
	ctx->console_input = virtio_console_receive;
	ctx->console_input_opaque = con;
	*dev = con;
	return 0;
}

static void console_destroy(void *dev)
{
	virtio_console_destroy(dev);
}

const struct device_type console_device_type = {
	.name = "console",
	.long_opt = "console",
	.help = "the guest's console: ttyS0 (default) or virtio-console hvc0",
	.syntax = { .noun = "console", .positional = &console_kind },
	.cfg_size = sizeof(struct run_console),
	.max = 1,
	.cmdline = console_cmdline,
	.create = console_create,
	.destroy = console_destroy,
};
