/* SPDX-License-Identifier: MIT */
/*
 * virtio-net (virtio 1.2 §5.1) over a net back end (net/backend.h): MAC, STATUS, MTU,
 * MRG_RXBUF, checksum and segmentation offloads as the back end takes them, a control queue,
 * multi-queue (MQ) and EVENT_IDX. The data path is the device's queue threads, or the kernel's
 * vhost-net when the back end asks for it.
 */
#ifndef NKVM_VIRTIO_NET_H
#define NKVM_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct pci_bus;
struct irq_routing;
struct net_backend;
struct virtio_net;

struct virtio_net_options {
	uint8_t mac[6];
	uint16_t mtu; /* 0: 1500 */
};

/* Per-NIC counters (issue 17's stat), kept by the device; read without stopping it. */
struct virtio_net_stats {
	uint64_t rx_packets, rx_bytes, rx_dropped; /* dropped: no buffer, or a bad frame */
	uint64_t tx_packets, tx_bytes, tx_dropped, tx_errors; /* errors: malformed by the guest */
};

/*
 * Creates the device with be->nr_pairs queue pairs and plugs it into bus. The device owns be
 * from then on (also on error). Returns 0 or a negative errno with one line in err.
 */
int virtio_net_create(struct virtio_net **net, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq, struct net_backend *be,
		      const struct virtio_net_options *opts, char *err, size_t errlen);
void virtio_net_get_stats(struct virtio_net *net, struct virtio_net_stats *out);
/* Takes the device off the bus, stops its queues (and vhost), destroys the back end, frees it. */
void virtio_net_destroy(struct virtio_net *net);

#endif
