/* SPDX-License-Identifier: MIT */
/*
 * `-n user|tap[,OPTION]...`: a virtio-net NIC on the user-mode or the TAP back end, as the
 * device table (run_devices.h) adds it, and what the default guest's init is told about it.
 */
#ifndef NKVM_CMD_RUN_DEV_NET_H
#define NKVM_CMD_RUN_DEV_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/user.h"

struct run_options;

#define RUN_MAX_NICS 8

enum run_net_kind { RUN_NET_USER, RUN_NET_TAP };
enum run_net_vhost { RUN_NET_VHOST_AUTO, RUN_NET_VHOST_ON, RUN_NET_VHOST_OFF };

/*
 * -n user[,hostfwd=tcp:HOSTPORT-GUESTPORT]...[,mac=MAC][,queues=N]
 * -n tap[,ifname=NAME][,host_ip=ADDR/PREFIX][,guest_ip=ADDR/PREFIX][,mac=MAC]
 *       [,vhost=on|off|auto][,queues=N]
 */
struct run_net {
	enum run_net_kind kind;
	/* As given (pointing into the option's text); the check fills the fields below. */
	const char *hostfwd_text[NET_USER_MAX_HOSTFWD];
	unsigned int nr_hostfwd;
	const char *mac_text, *ifname, *host_ip_text, *guest_ip_text;
	enum run_net_vhost vhost;
	unsigned int queues; /* 0: one pair per vCPU, at most NET_MAX_QUEUE_PAIRS */
	/* Checked values. */
	struct net_user_hostfwd hostfwd[NET_USER_MAX_HOSTFWD];
	bool has_mac;
	uint8_t mac[6];
	struct in_addr host_ip, guest_ip; /* s_addr 0: not given */
	unsigned int host_prefix, guest_prefix;
};

/*
 * The NIC's MAC: mac= if given, else a locally administered address made from the guest's name
 * (NULL: none) and index, the NIC's place among the guest's NICs (0 for eth0).
 */
void run_net_mac(const struct run_net *n, const char *name, unsigned int index, uint8_t mac[6]);

/*
 * The text of NKVM_NET_FILE for o's NICs (guest/abi.h), in *text (malloc'd, the caller frees),
 * or NULL with *len 0 when o has none. Returns 0 or -ENOMEM.
 */
int run_net_guest_file(const struct run_options *o, char **text, size_t *len);

#endif
