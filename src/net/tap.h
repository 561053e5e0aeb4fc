/* SPDX-License-Identifier: MIT */
/*
 * The TAP back end (-n tap): IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, one file descriptor per queue
 * pair (IFF_MULTI_QUEUE when more than one). nkvm creates the interface (nkvmN) unless it is
 * given one; a created interface is not persistent, so it goes away when nkvm's descriptors
 * close, however nkvm ends.
 */
#ifndef NKVM_NET_TAP_H
#define NKVM_NET_TAP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

struct net_backend;

struct tap_config {
	const char *ifname; /* an existing TAP to attach to; NULL: create nkvmN */
	unsigned int queues; /* queue pairs, 1..NET_MAX_QUEUE_PAIRS */
	bool has_host_ip; /* give the host side host_ip/host_prefix and bring it up */
	struct in_addr host_ip;
	unsigned int host_prefix;
	bool vhost, vhost_required; /* copied to the back end: see net/backend.h */
};

/*
 * Opens the TAP (creating it if asked), sets the vnet header size to 12, probes the offloads it
 * takes (retrying without the ones it refuses), applies host_ip and brings the link up.
 * Returns 0 with *be, or a negative errno with one line in err naming the interface and what
 * failed ("/dev/net/tun: Permission denied", "eth0 is not a TAP device").
 */
int tap_open(struct net_backend **be, const struct tap_config *cfg, char *err, size_t errlen);

/* The interface's name (what was created or given). */
const char *tap_ifname(const struct net_backend *be);

#endif
