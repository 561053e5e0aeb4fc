/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock (virtio 1.2 §5.10): sockets between the guest (CID 3 or more) and the host (CID 2),
 * over one of two back ends:
 *  - vhost-vsock (no socket given): the kernel serves the receive and transmit queues
 *    (/dev/vhost-vsock), and host programs use AF_VSOCK;
 *  - a unix socket PATH (the "hybrid" vsock of Firecracker and Cloud Hypervisor), served in nkvm
 *    with no privileges: a host program connects to PATH and sends "CONNECT PORT\n", gets
 *    "OK HOSTPORT\n" and then a stream to the guest's PORT; a guest connection to host port P
 *    reaches a program listening on the unix socket "PATH_P".
 * The event queue is nkvm's either way (it sends no events).
 */
#ifndef NKVM_VIRTIO_VSOCK_H
#define NKVM_VIRTIO_VSOCK_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct pci_bus;
struct irq_routing;
struct virtio_vsock;

/* The lowest CID a guest may have: 0 to 2 are the hypervisor's, local and the host's (§5.10.4). */
#define VSOCK_MIN_GUEST_CID 3

struct vsock_options {
	uint64_t cid; /* the guest's CID */
	const char *socket; /* the hybrid back end's unix socket; NULL: vhost-vsock */
};

/* Queues (§5.10.2). */
enum { VSOCK_QUEUE_RX, VSOCK_QUEUE_TX, VSOCK_QUEUE_EVENT, VSOCK_QUEUES };

/*
 * Connections at once on the hybrid back end; a host client past them waits in the listen
 * backlog, a guest request past them is refused (RST).
 */
#define VSOCK_MAX_CONNS 64
/* The receive buffer nkvm announces per connection (buf_alloc, §5.10.6.3). */
#define VSOCK_CONN_BUF (256 * 1024)

/*
 * Creates the device. Returns 0, or a negative errno with one line in err: a CID below 3
 * (-EINVAL), /dev/vhost-vsock missing or not ours, the CID in use by another guest
 * (-EADDRINUSE), the unix socket that cannot be made or is in use.
 */
int virtio_vsock_create(struct virtio_vsock **vs, struct vm *vm, struct pci_bus *bus,
			struct irq_routing *irq, const struct vsock_options *o, char *err,
			size_t errlen);
/* Stops the device, closes its connections, removes its unix socket, frees it. NULL is fine. */
void virtio_vsock_destroy(struct virtio_vsock *vs);

#endif
