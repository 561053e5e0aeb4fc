// SPDX-License-Identifier: MIT
/*
 * The TAP back end: a kernel network interface whose other side is a file descriptor per queue
 * pair, carrying one Ethernet frame per read and write, each behind a 12-byte virtio-net header
 * (IFF_VNET_HDR, TUNSETVNETHDRSZ), so checksum and segmentation offloads cross it both ways.
 * The reference is the kernel's Documentation/networking/tuntap.rst and <linux/if_tun.h>.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/util.h"
#include "net/backend.h"
#include "net/tap.h"

#define TUN_PATH "/dev/net/tun"
#define TAP_NAME_PATTERN "nkvm%d" /* the kernel picks the lowest free N */

/* The header every frame has on the fd: struct virtio_net_hdr_v1, num_buffers included. */
#define TAP_VNET_HDR_LEN ((int)sizeof(struct virtio_net_hdr_v1))

struct tap {
	struct net_backend be; /* first: the device sees only this */
	char ifname[IFNAMSIZ];
	bool created; /* by nkvm: brought up, and gone when the descriptors close */
	unsigned int tun_offloads; /* TUN_F_* the kernel accepted when probed */
};

/* TUN_F_ offloads (the TAP hands the guest such frames) and the virtio bit each needs. */
static const struct {
	unsigned int tun;
	unsigned int virtio;
} tap_guest_offloads[] = {
	/* In this order: tun.c's set_offload() takes TSO only with CSUM, and TSO_ECN with TSO. */
	{ TUN_F_CSUM, VIRTIO_NET_F_GUEST_CSUM },
	{ TUN_F_TSO4, VIRTIO_NET_F_GUEST_TSO4 },
	{ TUN_F_TSO6, VIRTIO_NET_F_GUEST_TSO6 },
	{ TUN_F_TSO_ECN, VIRTIO_NET_F_GUEST_ECN },
};

static struct tap *to_tap(struct net_backend *be)
{
	return (struct tap *)be;
}

const char *tap_ifname(const struct net_backend *be)
{
	return ((const struct tap *)be)->ifname;
}

static void tap_destroy(struct net_backend *be)
{
	unsigned int i;

	for (i = 0; i < be->nr_pairs; i++)
		if (be->fds[i] >= 0)
			close(be->fds[i]);
	free(to_tap(be));
}

/*
 * The TUN_F_ bits for a set of VIRTIO_NET_F_ bits, keeping tun's dependencies (TSO needs CSUM,
 * ECN needs TSO; virtio 1.2 §5.1.3.1 asks the same of a driver) and only what was probed.
 */
static unsigned int tap_tun_offloads(const struct tap *t, uint64_t features)
{
	unsigned int i, flags = 0;

	for (i = 0; i < ARRAY_SIZE(tap_guest_offloads); i++)
		if (features & (1ULL << tap_guest_offloads[i].virtio))
			flags |= tap_guest_offloads[i].tun;
	flags &= t->tun_offloads;
	if (!(flags & TUN_F_CSUM))
		flags = 0;
	if (!(flags & (TUN_F_TSO4 | TUN_F_TSO6)))
		flags &= ~TUN_F_TSO_ECN;
	return flags;
}

static int tap_set_offloads(struct net_backend *be, uint64_t features)
{
	unsigned int i, flags = tap_tun_offloads(to_tap(be), features);

	/* The offloads belong to the interface, but set them through every queue: any may be first. */
	for (i = 0; i < be->nr_pairs; i++)
		if (ioctl(be->fds[i], TUNSETOFFLOAD, flags) < 0)
			return -errno;
	return 0;
}

static const struct net_backend_ops tap_ops = {
	.set_offloads = tap_set_offloads,
	.destroy = tap_destroy,
};

/*
 * Whether ifname names a TAP in this network namespace: tun's ethtool driver info says "tun",
 * with bus_info "tap" for a TAP and "tun" for a TUN. Asked through a socket rather than
 * /sys/class/net, which can show another namespace's interfaces.
 */
static bool tap_is_tap(int sock, const char *ifname)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = (void *)&info;
	if (ioctl(sock, SIOCETHTOOL, &ifr) < 0)
		return false;
	return !strcmp(info.driver, "tun") && !strcmp(info.bus_info, "tap");
}

/* Opens one queue of the TAP: TUNSETIFF with flags, the name as given or as the kernel chose. */
static int tap_open_queue(struct tap *t, int sock, short flags, bool creating, char *err,
			  size_t errlen)
{
	int fd, hdr_len = TAP_VNET_HDR_LEN, r;
	struct ifreq ifr;

	fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		return err_set(err, errlen, r, TUN_PATH ": %s", strerror(-r));
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", t->ifname);
	ifr.ifr_flags = flags;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		r = -errno;
		close(fd);
		if (r == -EPERM && creating)
			return err_set(err, errlen, r,
				       TUN_PATH ": cannot create a TAP: %s (needs CAP_NET_ADMIN)",
				       strerror(-r));
		if (r == -EPERM)
			return err_set(err, errlen, r, "%s: %s (the TAP belongs to another user)",
				       t->ifname, strerror(-r));
		/* tun_set_iff() gives EINVAL for a name that is taken by another kind of device. */
		if (r == -EINVAL && !tap_is_tap(sock, t->ifname))
			return err_set(err, errlen, r, "%s is not a TAP device", t->ifname);
		if (r == -EBUSY)
			return err_set(err, errlen, r, "%s: %s (another process has it open)",
				       t->ifname, strerror(-r));
		return err_set(err, errlen, r, "%s: TUNSETIFF: %s", t->ifname, strerror(-r));
	}
	snprintf(t->ifname, sizeof(t->ifname), "%s", ifr.ifr_name);
	/* The virtio 1.x header with num_buffers (§5.1.6), the same whatever the driver takes. */
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		r = -errno;
		close(fd);
		return err_set(err, errlen, r, "%s: TUNSETVNETHDRSZ: %s", t->ifname, strerror(-r));
	}
	return fd;
}

/*
 * Opens every queue. An existing TAP must be attached to with its own IFF_MULTI_QUEUE setting:
 * one queue attaches to a multi-queue TAP with the flag, more than one cannot use a
 * single-queue TAP.
 */
static int tap_open_queues(struct tap *t, int sock, const struct tap_config *cfg, char *err,
			   size_t errlen)
{
	short flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	bool creating = t->created;
	unsigned int i;
	int fd;

	if (cfg->queues > 1)
		flags |= IFF_MULTI_QUEUE;
	fd = tap_open_queue(t, sock, flags, creating, err, errlen);
	if (fd == -EINVAL && !creating && tap_is_tap(sock, t->ifname)) {
		if (cfg->queues > 1)
			return err_set(
				err, errlen, fd,
				"%s is a single-queue TAP: queues=%u needs a multi_queue one",
				t->ifname, cfg->queues);
		flags |= IFF_MULTI_QUEUE;
		fd = tap_open_queue(t, sock, flags, creating, err, errlen);
	}
	if (fd < 0)
		return fd;
	t->be.fds[t->be.nr_pairs++] = fd;
	/* The other queues attach to the interface the first one named (nkvmN once created). */
	for (i = 1; i < cfg->queues; i++) {
		fd = tap_open_queue(t, sock, flags, false, err, errlen);
		if (fd < 0)
			return fd;
		t->be.fds[t->be.nr_pairs++] = fd;
	}
	return 0;
}

/*
 * The offloads the TAP can hand over, each tried on top of those already taken: kernels refuse
 * TUN_F_ bits they do not know (UFO is gone, USO is recent), so nothing is assumed. Left off
 * until the driver says what it takes (tap_set_offloads).
 */
static int tap_probe_offloads(struct tap *t, char *err, size_t errlen)
{
	int fd = t->be.fds[0], r;
	unsigned int i;

	/* Guest TX: tun takes partial checksums and GSO from the vnet header (virtio_net_hdr_to_skb). */
	t->be.offloads = 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_HOST_TSO4 |
			 1ULL << VIRTIO_NET_F_HOST_TSO6 | 1ULL << VIRTIO_NET_F_HOST_ECN;
	for (i = 0; i < ARRAY_SIZE(tap_guest_offloads); i++) {
		if (ioctl(fd, TUNSETOFFLOAD, t->tun_offloads | tap_guest_offloads[i].tun) < 0)
			continue;
		t->tun_offloads |= tap_guest_offloads[i].tun;
		t->be.offloads |= 1ULL << tap_guest_offloads[i].virtio;
	}
	if (ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		r = -errno;
		return err_set(err, errlen, r, "%s: TUNSETOFFLOAD: %s", t->ifname, strerror(-r));
	}
	return 0;
}

/* host_ip/host_prefix on the interface (SIOCSIFADDR, SIOCSIFNETMASK), then IFF_UP. */
static int tap_configure_link(struct tap *t, int sock, const struct tap_config *cfg, char *err,
			      size_t errlen)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct ifreq ifr;
	int r;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", t->ifname);
	if (cfg->has_host_ip) {
		if (cfg->host_prefix > 32)
			return err_set(err, errlen, -EINVAL, "%s: prefix /%u is longer than 32",
				       t->ifname, cfg->host_prefix);
		sin.sin_addr = cfg->host_ip;
		memcpy(&ifr.ifr_addr, &sin, sizeof(sin));
		if (ioctl(sock, SIOCSIFADDR, &ifr) < 0)
			goto fail_addr;
		sin.sin_addr.s_addr = htonl(cfg->host_prefix ? ~0U << (32 - cfg->host_prefix) : 0);
		memcpy(&ifr.ifr_netmask, &sin, sizeof(sin));
		if (ioctl(sock, SIOCSIFNETMASK, &ifr) < 0)
			goto fail_addr;
	}
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		goto fail_up;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
		goto fail_up;
	return 0;
fail_addr:
	r = -errno;
	return err_set(err, errlen, r, "%s: cannot set host_ip %s/%u: %s", t->ifname,
		       inet_ntoa(cfg->host_ip), cfg->host_prefix, strerror(-r));
fail_up:
	r = -errno;
	return err_set(err, errlen, r, "%s: cannot bring the link up: %s", t->ifname, strerror(-r));
}

int tap_open(struct net_backend **out, const struct tap_config *cfg, char *err, size_t errlen)
{
	struct tap *t;
	int sock, r;

	*out = NULL;
	if (cfg->queues < 1 || cfg->queues > NET_MAX_QUEUE_PAIRS)
		return err_set(err, errlen, -EINVAL, "queues=%u: from 1 to %u", cfg->queues,
			       NET_MAX_QUEUE_PAIRS);
	if (cfg->ifname && (!cfg->ifname[0] || strlen(cfg->ifname) >= IFNAMSIZ ||
			    strchr(cfg->ifname, '%') || strchr(cfg->ifname, '/')))
		return err_set(err, errlen, -EINVAL, "ifname=%s: not an interface name",
			       cfg->ifname);
	t = calloc(1, sizeof(*t));
	if (!t)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	t->be.ops = &tap_ops;
	t->be.vnet_hdr = true;
	t->be.vhost = cfg->vhost;
	t->be.vhost_required = cfg->vhost_required;
	snprintf(t->ifname, sizeof(t->ifname), "%s", cfg->ifname ? cfg->ifname : TAP_NAME_PATTERN);
	/* An ifname that does not exist yet is created under that name, as QEMU does. */
	t->created = !cfg->ifname || !if_nametoindex(cfg->ifname);

	/* For the interface's ioctls (SIOCETHTOOL, SIOCSIFADDR...), in nkvm's network namespace. */
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		r = -errno;
		err_set(err, errlen, r, "socket: %s", strerror(-r));
		goto fail;
	}
	/*
	 * Never TUNSETPERSIST: a TAP nkvm creates lives exactly as long as its descriptors, so it
	 * is gone after any exit, kill -9 included.
	 */
	r = tap_open_queues(t, sock, cfg, err, errlen);
	if (r < 0)
		goto fail;
	r = tap_probe_offloads(t, err, errlen);
	if (r < 0)
		goto fail;
	/* A TAP given by the user keeps its link state unless host_ip asks to configure it. */
	if (t->created || cfg->has_host_ip) {
		r = tap_configure_link(t, sock, cfg, err, errlen);
		if (r < 0)
			goto fail;
	}
	close(sock);
	snprintf(t->be.name, sizeof(t->be.name), "tap %s", t->ifname);
	*out = &t->be;
	return 0;
fail:
	if (sock >= 0)
		close(sock);
	tap_destroy(&t->be);
	return r;
}
