// SPDX-License-Identifier: MIT
/*
 * -n in the device table: a virtio-net NIC, on libslirp (user) or a TAP (tap), each option
 * checked before the VM exists; and the file that tells the default guest's init how to set up
 * each NIC (guest/abi.h, NKVM_NET_FILE).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/run_dev_net.h"
#include "cmd/run_devices.h"
#include "cmd/run_options.h"
#include "guest/abi.h"
#include "net/backend.h"
#include "net/tap.h"
#include "net/user.h"
#include "virtio/net.h"

/* QEMU's user-mode addressing (net/user.h), which the guest's init applies. */
#define USER_GUEST_ADDR "10.0.2.15/24"
#define USER_GATEWAY "10.0.2.2"
#define USER_DNS "10.0.2.3"

static const struct kvopt_name kind_names[] = {
	{ "user", RUN_NET_USER },
	{ "tap", RUN_NET_TAP },
	{ NULL, 0 },
};
static const struct kvopt_name vhost_names[] = {
	{ "on", RUN_NET_VHOST_ON },
	{ "off", RUN_NET_VHOST_OFF },
	{ "auto", RUN_NET_VHOST_AUTO },
	{ NULL, 0 },
};

static const struct kvopt_spec net_kind = {
	"back end",
	KVOPT_ENUM,
	KVOPT_AT(struct run_net, kind),
	.names = kind_names,
};

static const struct kvopt_spec net_keys[] = {
	{ "hostfwd", KVOPT_STRING, KVOPT_ARRAY(struct run_net, hostfwd_text, nr_hostfwd),
	  .arg = "tcp:HOSTPORT-GUESTPORT",
	  .help = "user: the host's 127.0.0.1:HOSTPORT to the guest" },
	{ "ifname", KVOPT_STRING, KVOPT_AT(struct run_net, ifname), .max = 15, .arg = "NAME",
	  .help = "tap: attach to this TAP (default: make nkvmN)" },
	{ "host_ip", KVOPT_STRING, KVOPT_AT(struct run_net, host_ip_text), .arg = "ADDR/PREFIX",
	  .help = "tap: the host side's address; brings it up" },
	{ "guest_ip", KVOPT_STRING, KVOPT_AT(struct run_net, guest_ip_text), .arg = "ADDR/PREFIX",
	  .help = "tap: the guest's address (the init sets it)" },
	{ "vhost", KVOPT_ENUM, KVOPT_AT(struct run_net, vhost), .names = vhost_names,
	  .help = "tap: in-kernel data path (auto: if it opens)" },
	{ "mac", KVOPT_STRING, KVOPT_AT(struct run_net, mac_text), .arg = "MAC",
	  .help = "default: from --name and the NIC's index" },
	{ "queues", KVOPT_UINT, KVOPT_AT(struct run_net, queues), .min = 1,
	  .max = NET_MAX_QUEUE_PAIRS, .help = "RX/TX queue pairs (default one per vCPU)" },
	{ NULL },
};

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -EINVAL;
}

/* "52:54:00:12:34:56": six bytes of two hex digits each, a unicast address. */
static int parse_mac(const char *s, uint8_t mac[6], char *err, size_t errlen)
{
	if (strlen(s) != 17)
		goto bad;
	for (int i = 0; i < 6; i++) {
		const char *p = s + 3 * i;

		if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
		    (i < 5 && p[2] != ':'))
			goto bad;
		mac[i] = strtoul((char[]){ p[0], p[1], '\0' }, NULL, 16);
	}
	/* IEEE 802: the first byte's low bit marks a group address, which no NIC may have. */
	if (mac[0] & 1)
		return fail(err, errlen, "mac %s is a multicast address (its first byte is odd)",
			    s);
	return 0;
bad:
	return fail(err, errlen, "mac must be six hex bytes, as 52:54:00:12:34:56", NULL);
}

/* "192.168.100.1/24" */
static int parse_cidr(const char *key, const char *s, struct in_addr *addr, unsigned int *prefix,
		      char *err, size_t errlen)
{
	char text[INET_ADDRSTRLEN + 4], *slash, *end;
	unsigned long p;

	if (strlen(s) >= sizeof(text))
		goto bad;
	strcpy(text, s);
	slash = strchr(text, '/');
	if (!slash)
		goto bad;
	*slash = '\0';
	errno = 0;
	p = strtoul(slash + 1, &end, 10);
	if (!slash[1] || *end || errno || p > 32 || p == 0 || inet_pton(AF_INET, text, addr) != 1 ||
	    !addr->s_addr)
		goto bad;
	*prefix = p;
	return 0;
bad:
	snprintf(err, errlen, "%s must be an IPv4 ADDR/PREFIX, as 192.168.100.1/24", key);
	return -EINVAL;
}

/* A TCP port, 1 to 65535: -EINVAL when s is no number, -ERANGE when out of range. */
static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno || v < 1 || v > 65535)
		return -ERANGE;
	*port = v;
	return 0;
}

/*
 * "tcp:HOSTPORT-GUESTPORT"; QEMU's "tcp::HOSTPORT-:GUESTPORT" (empty addresses, the only ones
 * nkvm forwards) too, so that users' habits carry over.
 */
static int parse_hostfwd(const char *s, struct net_user_hostfwd *fwd, char *err, size_t errlen)
{
	char text[64], *host, *guest, *dash;
	int r;

	if (strncmp(s, "tcp:", 4) || strlen(s) >= sizeof(text))
		goto form;
	strcpy(text, s + 4);
	dash = strchr(text, '-');
	if (!dash)
		goto form;
	*dash = '\0';
	host = text[0] == ':' ? text + 1 : text;
	guest = dash[1] == ':' ? dash + 2 : dash + 1;
	r = parse_port(host, &fwd->host_port);
	if (r == -ERANGE)
		return fail(err, errlen, "hostfwd port %s is not 1 to 65535", host);
	if (!r)
		r = parse_port(guest, &fwd->guest_port);
	if (r == -ERANGE)
		return fail(err, errlen, "hostfwd port %s is not 1 to 65535", guest);
	if (!r)
		return 0;
form:
	return fail(err, errlen, "hostfwd must be tcp:HOSTPORT-GUESTPORT", NULL);
}

static int net_check(void *cfg, char *err, size_t errlen)
{
	struct run_net *n = cfg;
	int r;

	if (n->kind == RUN_NET_USER) {
		if (n->ifname)
			return fail(err, errlen, "%s is for -n tap only", "ifname");
		if (n->host_ip_text)
			return fail(err, errlen, "%s is for -n tap only", "host_ip");
		if (n->guest_ip_text)
			return fail(err, errlen, "%s is for -n tap only", "guest_ip");
		if (n->vhost != RUN_NET_VHOST_AUTO)
			return fail(err, errlen, "%s is for -n tap only", "vhost");
	} else if (n->nr_hostfwd) {
		return fail(err, errlen, "%s is for -n user only", "hostfwd");
	}
	for (unsigned int i = 0; i < n->nr_hostfwd; i++) {
		r = parse_hostfwd(n->hostfwd_text[i], &n->hostfwd[i], err, errlen);
		if (r)
			return r;
		for (unsigned int j = 0; j < i; j++)
			if (n->hostfwd[j].host_port == n->hostfwd[i].host_port) {
				snprintf(err, errlen, "hostfwd: host port %u is forwarded twice",
					 n->hostfwd[i].host_port);
				return -EINVAL;
			}
	}
	if (n->mac_text) {
		r = parse_mac(n->mac_text, n->mac, err, errlen);
		if (r)
			return r;
		n->has_mac = true;
	}
	if (n->host_ip_text) {
		r = parse_cidr("host_ip", n->host_ip_text, &n->host_ip, &n->host_prefix, err,
			       errlen);
		if (r)
			return r;
	}
	if (n->guest_ip_text)
		return parse_cidr("guest_ip", n->guest_ip_text, &n->guest_ip, &n->guest_prefix, err,
				  errlen);
	return 0;
}

/* FNV-1a: the address only has to differ between names, not resist anyone. */
static uint32_t fnv1a32(const char *s)
{
	uint32_t h = 0x811c9dc5;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 0x01000193;
	return h;
}

void run_net_mac(const struct run_net *n, const char *name, unsigned int index, uint8_t mac[6])
{
	uint32_t h = fnv1a32(name ? name : "");

	if (n->has_mac) {
		memcpy(mac, n->mac, 6);
		return;
	}
	/* 0x52: the locally administered bit (0x02) set, the group bit (0x01) clear; 'K' for nkvm. */
	mac[0] = 0x52;
	mac[1] = 0x4b;
	mac[2] = h >> 16;
	mac[3] = h >> 8;
	mac[4] = h;
	mac[5] = index;
}

/* Host and guest on one subnet: the host is the guest's way out (if it routes). */
static bool same_subnet(const struct run_net *n)
{
	uint32_t mask;

	if (!n->host_ip.s_addr || !n->guest_ip.s_addr || n->host_prefix != n->guest_prefix)
		return false;
	mask = htonl(~0u << (32 - n->guest_prefix));
	return (n->host_ip.s_addr & mask) == (n->guest_ip.s_addr & mask);
}

int run_net_guest_file(const struct run_options *o, char **text, size_t *len)
{
	unsigned int index = 0;
	FILE *f;

	*text = NULL;
	*len = 0;
	f = open_memstream(text, len);
	if (!f)
		return -ENOMEM;
	for (unsigned int i = 0; i < o->nr_devices; i++) {
		const struct run_net *n = o->devices[i].cfg;
		char gw[INET_ADDRSTRLEN] = "-";
		uint8_t mac[6];

		if (o->devices[i].type != &net_device_type)
			continue;
		run_net_mac(n, o->name, index++, mac);
		fprintf(f, "%02x:%02x:%02x:%02x:%02x:%02x ", mac[0], mac[1], mac[2], mac[3], mac[4],
			mac[5]);
		if (n->kind == RUN_NET_USER) {
			fprintf(f, "%s %s %s\n", USER_GUEST_ADDR, USER_GATEWAY, USER_DNS);
		} else if (n->guest_ip.s_addr) {
			char addr[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &n->guest_ip, addr, sizeof(addr));
			if (same_subnet(n))
				inet_ntop(AF_INET, &n->host_ip, gw, sizeof(gw));
			fprintf(f, "%s/%u %s -\n", addr, n->guest_prefix, gw);
		} else {
			fprintf(f, "- - -\n");
		}
	}
	if (fclose(f)) {
		free(*text);
		*text = NULL;
		*len = 0;
		return -ENOMEM;
	}
	if (!*len) {
		free(*text);
		*text = NULL;
	}
	return 0;
}

static int net_create(struct device_context *ctx, const void *cfg, void **dev, char *err,
		      size_t errlen)
{
	const struct run_net *n = cfg;
	const char *label = n->kind == RUN_NET_USER ? "-n user" : "-n tap";
	unsigned int queues = n->queues ? n->queues : ctx->cpus;
	struct virtio_net_options vopt = { .mtu = 0 };
	struct net_backend *be;
	struct virtio_net *net;
	char why[256];
	int r;

	if (queues > NET_MAX_QUEUE_PAIRS)
		queues = NET_MAX_QUEUE_PAIRS;
	run_net_mac(n, ctx->name, ctx->index, vopt.mac);
	if (n->kind == RUN_NET_USER) {
		struct net_user_config ucfg = { .queues = queues, .nr_hostfwd = n->nr_hostfwd };

		memcpy(ucfg.hostfwd, n->hostfwd, sizeof(ucfg.hostfwd));
		r = net_user_open(&be, &ucfg, why, sizeof(why));
	} else {
		struct tap_config tcfg = {
			.ifname = n->ifname,
			.queues = queues,
			.has_host_ip = n->host_ip.s_addr != 0,
			.host_ip = n->host_ip,
			.host_prefix = n->host_prefix,
			.vhost = n->vhost != RUN_NET_VHOST_OFF,
			.vhost_required = n->vhost == RUN_NET_VHOST_ON,
		};

		r = tap_open(&be, &tcfg, why, sizeof(why));
	}
	if (r) {
		snprintf(err, errlen, "%s: %s", label, why);
		return r;
	}
	r = virtio_net_create(&net, ctx->vm, ctx->pci, ctx->irq, be, &vopt, why, sizeof(why));
	if (r) {
		snprintf(err, errlen, "%s: %s", label, why);
		return r;
	}
	*dev = net;
	return 0;
}

static void net_destroy(void *dev)
{
	virtio_net_destroy(dev);
}

const struct device_type net_device_type = {
	.name = "NIC",
	.long_opt = "net",
	.short_opt = 'n',
	.help = "a virtio-net NIC: user-mode (guest 10.0.2.15, host 10.0.2.2) or a TAP",
	.syntax = { .noun = "net", .positional = &net_kind, .keys = net_keys },
	.cfg_size = sizeof(struct run_net),
	.max = RUN_MAX_NICS,
	.check = net_check,
	.create = net_create,
	.destroy = net_destroy,
};
