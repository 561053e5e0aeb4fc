/* SPDX-License-Identifier: MIT */
/*
 * virtio over PCI, modern transport only (virtio 1.2 §4.1): one 64-bit memory BAR holding the
 * common, ISR, device and notify structures and the MSI-X table. Kicks arrive through
 * ioeventfds (no exit to nkvm), interrupts leave through irqfds on MSI-X routes, INTx when the
 * driver does not enable MSI-X. Each queue has an I/O thread that runs the device's handler.
 */
#ifndef NKVM_VIRTIO_PCI_H
#define NKVM_VIRTIO_PCI_H

/* §4.1.2: the PCI IDs of a modern-only virtio function: 0x1040 + its virtio device id. */
#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040

struct vm;
struct pci_bus;
struct irq_routing;
struct virtio_device;
struct virtio_pci;

/* Creates the transport for vdev and plugs it into bus. Returns 0 or a negative errno. */
int virtio_pci_create(struct virtio_pci **vp, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq, struct virtio_device *vdev);
/*
 * Resets the device on the transport's worker (the queue threads end, requests in flight
 * finish), then ends the worker. Leaves the memory: virtio_pci_free frees it.
 */
void virtio_pci_destroy(struct virtio_pci *vp);

/*
 * For a driver in this process instead of a guest (virtio/driver.h, under nkvm img bench and the
 * transport's unit tests; and fuzz_virtio_pci), on a struct vm without KVM
 * (vm_fd -1: no irqfd or ioeventfd is bound): it reaches the function through pci_config_read/
 * write and the device's bar_read/bar_write, as a vCPU's exits would, so a kick is the notify
 * register's write to the queue's eventfd, and an interrupt of MSI-X vector v is a write to the
 * eventfd virtio_pci_vector_fd returns (-1 for a vector the function does not have).
 * virtio_pci_device: the virtio device behind a PCI function, NULL for any other function.
 * Register writes that start, reset or re-route the device take effect on the transport's worker
 * thread, as they would for a guest: a driver polls the status after a reset (§4.1.4.3.2), and
 * virtio_pci_settle waits until the worker has done all that was asked before the call.
 * virtio_pci_free (every device's destroy uses it): takes the function off the bus
 * (pci_unregister_device), virtio_pci_destroy, then closes the transport's eventfds and frees it;
 * the device's own state is the device's.
 */
struct pci_device;
struct virtio_device *virtio_pci_device(struct pci_device *dev);
int virtio_pci_vector_fd(struct virtio_pci *vp, unsigned int vector);
void virtio_pci_settle(struct virtio_pci *vp);
void virtio_pci_free(struct virtio_pci *vp);

#endif
