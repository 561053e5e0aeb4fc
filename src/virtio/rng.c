// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "virtio/device.h"
#include "virtio/pci.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"
#include "virtio/rng.h"

#define RNG_QUEUE_SIZE 64
/* One request is served up to this much; the guest asks again for more. */
#define RNG_MAX_PER_REQUEST (64 * 1024)

struct virtio_rng {
	struct virtio_device vdev;
	struct virtio_pci *transport;
	struct virtq_chain chain;
};

/* virtio-rng's queue thread: getrandom fills the guest's buffers. */
static const struct sandbox_rule rng_queue_rules[] = {
	VIRTIO_QUEUE_RULES,
	SANDBOX_ALLOW(getrandom),
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter rng_queue_filter = {
	.thread = "rng-queue",
	.rules = rng_queue_rules,
	.nr_rules = ARRAY_SIZE(rng_queue_rules),
};

static uint32_t rng_fill(const struct virtq_chain *c)
{
	uint32_t done = 0;

	for (unsigned int i = c->nr_out; i < c->nr_out + c->nr_in && done < RNG_MAX_PER_REQUEST;
	     i++) {
		size_t want = c->iov[i].iov_len;
		ssize_t got;

		if (want > RNG_MAX_PER_REQUEST - done)
			want = RNG_MAX_PER_REQUEST - done;
		/* GRND_NONBLOCK: never stall the queue thread; a short fill is fine (§5.4.6). */
		got = getrandom(c->iov[i].iov_base, want, GRND_NONBLOCK);
		if (got <= 0)
			break;
		done += got;
		if ((size_t)got < want)
			break;
	}
	return done;
}

static void rng_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_rng *rng = (struct virtio_rng *)vdev;

	while (virtio_pop(vdev, q, &rng->chain) > 0)
		virtio_push(vdev, q, rng->chain.head, rng_fill(&rng->chain));
}

static const struct virtio_device_ops rng_ops = {
	.queue_kick = rng_queue_kick,
};

int virtio_rng_create(struct virtio_rng **out, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));

	if (!rng)
		return -ENOMEM;
	rng->vdev = (struct virtio_device){
		.ops = &rng_ops,
		.queue_filter = &rng_queue_filter,
		.name = "virtio-rng",
		.device_id = VIRTIO_ID_RNG,
		.host_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX) |
				 (1ULL << VIRTIO_RING_F_INDIRECT_DESC),
		.nr_queues = 1,
		.queue_max_size = RNG_QUEUE_SIZE,
	};
	*out = rng;
	return virtio_pci_create(&rng->transport, vm, bus, irq, &rng->vdev);
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	if (!rng)
		return;
	virtio_pci_free(rng->transport);
	free(rng);
}
