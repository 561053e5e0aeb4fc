// SPDX-License-Identifier: MIT
/* virtio 1.2 §5.3: the console device, without MULTIPORT: port 0 only. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "virtio/console.h"
#include "virtio/device.h"
#include "virtio/pci.h"
#include "sandbox/sandbox.h"

#define CONSOLE_RXQ 0
#define CONSOLE_TXQ 1
#define CONSOLE_QUEUE_SIZE 128
#define CONSOLE_CONFIG_SIZE 12 /* cols, rows, max_nr_ports, emerg_wr */

struct virtio_console {
	struct virtio_device vdev;
	struct virtio_pci *transport;
	int out_fd;
	struct virtq_chain tx_chain; /* the transmit queue's thread only */
	pthread_mutex_t rx_lock; /* the main loop offers input; the chain is shared state */
	struct virtq_chain rx_chain;
};

/* virtio-console's queue threads: the guest's output is written to out_fd (a write). */
static const struct sandbox_rule console_queue_rules[] = {
	VIRTIO_QUEUE_RULES,

	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter console_queue_filter = {
	.thread = "console-queue",
	.rules = console_queue_rules,
	.nr_rules = ARRAY_SIZE(console_queue_rules),
};

static void console_tx_kick(struct virtio_console *con)
{
	struct virtq_chain *c = &con->tx_chain;

	while (virtio_pop(&con->vdev, CONSOLE_TXQ, c) > 0) {
		/* An I/O thread may block on the host's output: that is back-pressure, not a stall. */
		for (unsigned int i = 0; i < c->nr_out; i++)
			if (write_all(con->out_fd, c->iov[i].iov_base, c->iov[i].iov_len))
				break;
		virtio_push(&con->vdev, CONSOLE_TXQ, c->head, 0);
	}
}

static void console_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	/* Receive buffers arriving need nothing: the main loop retries its held input. */
	if (q == CONSOLE_TXQ)
		console_tx_kick((struct virtio_console *)vdev);
}

size_t virtio_console_receive(void *opaque, const uint8_t *buf, size_t len)
{
	struct virtio_console *con = opaque;
	struct virtq_chain *c = &con->rx_chain;
	size_t done = 0;

	pthread_mutex_lock(&con->rx_lock);
	while (done < len && virtio_pop(&con->vdev, CONSOLE_RXQ, c) > 0) {
		size_t put = 0;

		for (unsigned int i = c->nr_out; i < c->nr_out + c->nr_in && done < len; i++) {
			size_t n = c->iov[i].iov_len < len - done ? c->iov[i].iov_len : len - done;

			memcpy(c->iov[i].iov_base, buf + done, n);
			done += n;
			put += n;
		}
		virtio_push(&con->vdev, CONSOLE_RXQ, c->head, put);
	}
	pthread_mutex_unlock(&con->rx_lock);
	return done;
}

static void console_config_read(struct virtio_device *vdev, uint64_t off, void *data,
				unsigned int len)
{
	/* cols and rows 0 (unknown), one port, no emergency write: all zero but max_nr_ports. */
	uint8_t config[CONSOLE_CONFIG_SIZE] = { [4] = 1 };

	memcpy(data, config + off, len);
}

static const struct virtio_device_ops console_ops = {
	.queue_kick = console_queue_kick,
	.config_read = console_config_read,
};

int virtio_console_create(struct virtio_console **out, struct vm *vm, struct pci_bus *bus,
			  struct irq_routing *irq, int out_fd)
{
	struct virtio_console *con = calloc(1, sizeof(*con));

	if (!con)
		return -ENOMEM;
	con->out_fd = out_fd;
	pthread_mutex_init(&con->rx_lock, NULL);
	con->vdev = (struct virtio_device){
		.ops = &console_ops,
		.queue_filter = &console_queue_filter,
		.name = "virtio-console",
		.device_id = VIRTIO_ID_CONSOLE,
		.host_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX) |
				 (1ULL << VIRTIO_RING_F_INDIRECT_DESC),
		.nr_queues = 2,
		.queue_max_size = CONSOLE_QUEUE_SIZE,
		.config_size = CONSOLE_CONFIG_SIZE,
	};
	*out = con;
	return virtio_pci_create(&con->transport, vm, bus, irq, &con->vdev);
}

void virtio_console_destroy(struct virtio_console *con)
{
	if (!con)
		return;
	virtio_pci_free(con->transport);
	pthread_mutex_destroy(&con->rx_lock);
	free(con);
}
