/* SPDX-License-Identifier: MIT */
/*
 * The user-mode back end (-n user): libslirp, the TCP/IP stack QEMU uses, on a thread of its
 * own. The guest is 10.0.2.15/24, the gateway and host 10.0.2.2, DNS 10.0.2.3 (QEMU's
 * addresses); TCP ports on the host's 127.0.0.1 may be forwarded to the guest. Needs no
 * privileges. Frames travel between the device and the stack over a datagram socket pair, one
 * per queue pair, without a vnet header.
 */
#ifndef NKVM_NET_USER_H
#define NKVM_NET_USER_H

#include <stddef.h>
#include <stdint.h>

struct net_backend;

#define NET_USER_MAX_HOSTFWD 16

struct net_user_hostfwd {
	uint16_t host_port, guest_port; /* TCP: 127.0.0.1:host_port -> 10.0.2.15:guest_port */
};

struct net_user_config {
	unsigned int queues; /* queue pairs, 1..NET_MAX_QUEUE_PAIRS */
	unsigned int nr_hostfwd;
	struct net_user_hostfwd hostfwd[NET_USER_MAX_HOSTFWD];
};

/*
 * Starts the stack and its thread, with every hostfwd listening before this returns. Returns 0
 * with *be, or a negative errno with one line in err ("hostfwd=tcp:8080-80: cannot listen on
 * 127.0.0.1:8080: Address already in use").
 */
int net_user_open(struct net_backend **be, const struct net_user_config *cfg, char *err,
		  size_t errlen);

#endif
