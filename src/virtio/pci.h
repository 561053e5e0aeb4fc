/* SPDX-License-Identifier: MIT */
/*
 * virtio over PCI, modern transport only (virtio 1.2 §4.1): one 64-bit memory BAR holding the
 * common, ISR, device and notify structures and the MSI-X table. Kicks arrive through
 * ioeventfds (no exit to nkvm), interrupts leave through irqfds on MSI-X routes, INTx when the
 * driver does not enable MSI-X. Each queue has an I/O thread that runs the device's handler.
 */
#ifndef NKVM_VIRTIO_PCI_H
#define NKVM_VIRTIO_PCI_H

struct vm;
struct pci_bus;
struct irq_routing;
struct virtio_device;
struct virtio_pci;

/* Creates the transport for vdev and plugs it into bus. Returns 0 or a negative errno. */
int virtio_pci_create(struct virtio_pci **vp, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq, struct virtio_device *vdev);
/* Stops the queue threads (resetting the device), then frees the transport. */
void virtio_pci_destroy(struct virtio_pci *vp);

#endif
