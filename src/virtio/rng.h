/* SPDX-License-Identifier: MIT */
/* virtio-rng (virtio 1.2 §5.4): the guest's /dev/hwrng, filled from the host's getrandom(). */
#ifndef NKVM_VIRTIO_RNG_H
#define NKVM_VIRTIO_RNG_H

struct vm;
struct pci_bus;
struct irq_routing;

int virtio_rng_create(struct vm *vm, struct pci_bus *bus, struct irq_routing *irq);

#endif
