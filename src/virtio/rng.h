/* SPDX-License-Identifier: MIT */
/* virtio-rng (virtio 1.2 §5.4): the guest's /dev/hwrng, filled from the host's getrandom(). */
#ifndef NKVM_VIRTIO_RNG_H
#define NKVM_VIRTIO_RNG_H

struct vm;
struct pci_bus;
struct irq_routing;
struct virtio_rng;

int virtio_rng_create(struct virtio_rng **rng, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq);
/* Takes the device off the bus, stops its queue thread and frees it. */
void virtio_rng_destroy(struct virtio_rng *rng);

#endif
