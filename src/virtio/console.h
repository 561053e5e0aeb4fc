/* SPDX-License-Identifier: MIT */
/*
 * virtio-console (virtio 1.2 §5.3), one port: the guest's hvc0. Output is written to the host
 * fd by the transmit queue's thread; input is offered by the main loop.
 */
#ifndef NKVM_VIRTIO_CONSOLE_H
#define NKVM_VIRTIO_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct pci_bus;
struct irq_routing;
struct virtio_console;

int virtio_console_create(struct virtio_console **con, struct vm *vm, struct pci_bus *bus,
			  struct irq_routing *irq, int out_fd);
/* Takes the device off the bus, stops its queue threads and frees it. */
void virtio_console_destroy(struct virtio_console *con);
/* Host input into the guest's receive buffers; returns how many bytes were taken. */
size_t virtio_console_receive(void *con, const uint8_t *buf, size_t len);

#endif
