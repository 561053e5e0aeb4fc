// SPDX-License-Identifier: MIT
/*
 * The TAP back end on the real /dev/net/tun, in a network namespace of the test's own (with
 * /sys remounted in a private mount namespace, so /sys/class/net shows that namespace): nothing
 * touches the machine's network. Every test skips, saying why, when not root or without
 * /dev/net/tun.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/backend.h"
#include "net/tap.h"

#define ETH_P_TEST 0x88b5 /* IEEE 802 local experimental: nothing else sends it */
#define FRAME_LEN 60
#define HDR_LEN 12

static const char *isolation_failed; /* why the tests skip; NULL: isolated */

/* Own network and mount namespaces, and a sysfs that shows the new network namespace. */
static void isolate(void)
{
	if (geteuid() != 0)
		isolation_failed = "not root";
	else if (access("/dev/net/tun", R_OK | W_OK) != 0)
		isolation_failed = "no /dev/net/tun";
	else if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0)
		isolation_failed = "unshare(CLONE_NEWNET | CLONE_NEWNS) failed";
	else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
		 mount("sysfs", "/sys", "sysfs", 0, NULL) != 0)
		isolation_failed = "cannot remount /sys in the new namespaces";
}

static void skip_unless_isolated(void)
{
	if (isolation_failed) {
		print_message("skipped: %s\n", isolation_failed);
		skip();
	}
}

static struct tap_config config(const char *ifname, unsigned int queues)
{
	return (struct tap_config){ .ifname = ifname, .queues = queues };
}

static struct net_backend *open_ok(const struct tap_config *cfg)
{
	struct net_backend *be = NULL;
	char err[256] = "";
	int r = tap_open(&be, cfg, err, sizeof(err));

	if (r != 0)
		print_message("tap_open: %d: %s\n", r, err);
	assert_int_equal(r, 0);
	assert_non_null(be);
	return be;
}

static bool iface_in_sysfs(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/class/net/%s", name);
	return access(path, F_OK) == 0;
}

static int inet_socket(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(s >= 0);
	return s;
}

static short iface_flags(const char *name)
{
	struct ifreq ifr = { 0 };
	int s = inet_socket();

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	close(s);
	return ifr.ifr_flags;
}

/* A TAP made as a user would (ip tuntap add ... [multi_queue]), persistent; "tun": a TUN. */
static void make_persistent(const char *name, short flags)
{
	struct ifreq ifr = { .ifr_flags = flags };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 1), 0);
	close(fd);
}

static void remove_persistent(const char *name, short flags)
{
	struct ifreq ifr = { .ifr_flags = flags };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 0), 0);
	close(fd);
	assert_int_equal(if_nametoindex(name), 0);
}

/* A broadcast frame of the test's own ethertype, tagged so a test finds its own. */
static void make_frame(uint8_t *f, uint8_t tag)
{
	memset(f, 0, FRAME_LEN);
	memset(f, 0xff, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x01", 6);
	f[12] = ETH_P_TEST >> 8;
	f[13] = ETH_P_TEST & 0xff;
	memset(f + 14, tag, FRAME_LEN - 14);
}

/* An AF_PACKET socket that receives the test's ethertype arriving on ifname. */
static int packet_socket(const char *ifname, int *ifindex)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_TEST) };
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_TEST));

	assert_true(s >= 0);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	if (ifindex)
		*ifindex = sll.sll_ifindex;
	return s;
}

/* Writes a frame with a zero vnet header to fd and asserts the packet socket receives it. */
static void assert_frame_reaches_packet_socket(int fd, int ps, uint8_t tag)
{
	uint8_t out[HDR_LEN + FRAME_LEN] = { 0 }, in[2048];
	struct pollfd p = { .fd = ps, .events = POLLIN };
	ssize_t n;

	make_frame(out + HDR_LEN, tag);
	assert_int_equal(write(fd, out, sizeof(out)), sizeof(out));
	assert_int_equal(poll(&p, 1, 2000), 1);
	n = recv(ps, in, sizeof(in), 0);
	assert_int_equal(n, FRAME_LEN);
	assert_memory_equal(in, out + HDR_LEN, FRAME_LEN);
}

static void test_created_tap_exists_is_up_and_is_gone_after_destroy(void **state)
{
	struct tap_config cfg = config(NULL, 1);
	struct net_backend *be;
	char name[IFNAMSIZ];

	skip_unless_isolated();
	be = open_ok(&cfg);
	snprintf(name, sizeof(name), "%s", tap_ifname(be));
	assert_int_equal(strncmp(name, "nkvm", 4), 0);
	assert_true(iface_in_sysfs(name));
	assert_true(iface_flags(name) & IFF_UP);
	assert_int_equal(be->nr_pairs, 1);
	assert_true(be->vnet_hdr);
	assert_true(fcntl(be->fds[0], F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(be->fds[0], F_GETFD) & FD_CLOEXEC);
	net_backend_destroy(be);
	assert_false(iface_in_sysfs(name));
	assert_int_equal(if_nametoindex(name), 0);
}

static void test_two_queues_are_two_working_fds_on_one_multi_queue_tap(void **state)
{
	struct tap_config cfg = config(NULL, 2);
	struct net_backend *be;
	struct ifreq ifr[2];
	unsigned int i;
	int ps;

	skip_unless_isolated();
	be = open_ok(&cfg);
	assert_int_equal(be->nr_pairs, 2);
	assert_int_not_equal(be->fds[0], be->fds[1]);
	for (i = 0; i < 2; i++) {
		memset(&ifr[i], 0, sizeof(ifr[i]));
		assert_int_equal(ioctl(be->fds[i], TUNGETIFF, &ifr[i]), 0);
		assert_true(ifr[i].ifr_flags & IFF_MULTI_QUEUE);
		assert_true(ifr[i].ifr_flags & IFF_VNET_HDR);
		assert_string_equal(ifr[i].ifr_name, tap_ifname(be));
	}
	ps = packet_socket(tap_ifname(be), NULL);
	assert_frame_reaches_packet_socket(be->fds[0], ps, 0xa0);
	assert_frame_reaches_packet_socket(be->fds[1], ps, 0xa1);
	close(ps);
	net_backend_destroy(be);
}

static void test_attaches_to_an_existing_tap_and_leaves_it_in_place(void **state)
{
	struct tap_config cfg = config("nkvmtest0", 1);
	struct net_backend *be;
	struct ifreq ifr = { 0 };

	skip_unless_isolated();
	make_persistent("nkvmtest0", IFF_TAP | IFF_NO_PI);
	be = open_ok(&cfg);
	assert_string_equal(tap_ifname(be), "nkvmtest0");
	assert_int_equal(ioctl(be->fds[0], TUNGETIFF, &ifr), 0);
	assert_string_equal(ifr.ifr_name, "nkvmtest0");
	/* The user's TAP: its link state is the user's (no host_ip given). */
	assert_false(iface_flags("nkvmtest0") & IFF_UP);
	net_backend_destroy(be);
	assert_true(iface_in_sysfs("nkvmtest0"));
	remove_persistent("nkvmtest0", IFF_TAP | IFF_NO_PI);
}

static void test_one_queue_attaches_to_an_existing_multi_queue_tap(void **state)
{
	struct tap_config cfg = config("nkvmtest1", 1);
	struct net_backend *be;

	skip_unless_isolated();
	make_persistent("nkvmtest1", IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE);
	be = open_ok(&cfg);
	assert_int_equal(be->nr_pairs, 1);
	net_backend_destroy(be);
	remove_persistent("nkvmtest1", IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE);
}

static void test_two_queues_on_a_single_queue_tap_say_so(void **state)
{
	struct tap_config cfg = config("nkvmtest2", 2);
	struct net_backend *be = NULL;
	char err[256] = "";

	skip_unless_isolated();
	make_persistent("nkvmtest2", IFF_TAP | IFF_NO_PI);
	assert_int_equal(tap_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_null(be);
	assert_string_equal(err,
			    "nkvmtest2 is a single-queue TAP: queues=2 needs a multi_queue one");
	remove_persistent("nkvmtest2", IFF_TAP | IFF_NO_PI);
}

static void test_lo_is_not_a_tap_device(void **state)
{
	struct tap_config cfg = config("lo", 1);
	struct net_backend *be = NULL;
	char err[256] = "";

	skip_unless_isolated();
	assert_int_equal(tap_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_null(be);
	assert_string_equal(err, "lo is not a TAP device");
}

static void test_a_tun_device_is_not_a_tap_device(void **state)
{
	struct tap_config cfg = config("nkvmtun0", 1);
	struct net_backend *be = NULL;
	char err[256] = "";

	skip_unless_isolated();
	make_persistent("nkvmtun0", IFF_TUN | IFF_NO_PI);
	assert_int_equal(tap_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_null(be);
	assert_string_equal(err, "nkvmtun0 is not a TAP device");
	remove_persistent("nkvmtun0", IFF_TUN | IFF_NO_PI);
}

static void test_bad_queue_counts_and_names_are_refused(void **state)
{
	struct tap_config cfg = config(NULL, 0);
	struct net_backend *be = NULL;
	char err[256] = "";

	skip_unless_isolated();
	assert_int_equal(tap_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "queues=0: from 1 to 16");
	cfg = config(NULL, NET_MAX_QUEUE_PAIRS + 1);
	assert_int_equal(tap_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	cfg = config("averyveryverylongname", 1);
	assert_int_equal(tap_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "ifname=averyveryverylongname: not an interface name");
	cfg = config("tap%d", 1);
	assert_int_equal(tap_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_null(be);
}

static void test_host_ip_is_applied_and_the_link_is_up(void **state)
{
	struct tap_config cfg = config(NULL, 1);
	struct net_backend *be;
	struct ifreq ifr = { 0 };
	struct sockaddr_in sin;
	int s;

	skip_unless_isolated();
	cfg.has_host_ip = true;
	assert_int_equal(inet_pton(AF_INET, "10.9.8.1", &cfg.host_ip), 1);
	cfg.host_prefix = 24;
	be = open_ok(&cfg);
	s = inet_socket();
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap_ifname(be));
	assert_int_equal(ioctl(s, SIOCGIFADDR, &ifr), 0);
	memcpy(&sin, &ifr.ifr_addr, sizeof(sin));
	assert_string_equal(inet_ntoa(sin.sin_addr), "10.9.8.1");
	assert_int_equal(ioctl(s, SIOCGIFNETMASK, &ifr), 0);
	memcpy(&sin, &ifr.ifr_netmask, sizeof(sin));
	assert_string_equal(inet_ntoa(sin.sin_addr), "255.255.255.0");
	close(s);
	assert_true(iface_flags(tap_ifname(be)) & IFF_UP);
	net_backend_destroy(be);
}

static void test_host_ip_configures_and_raises_an_existing_tap(void **state)
{
	struct tap_config cfg = config("nkvmtest3", 1);
	struct net_backend *be;

	skip_unless_isolated();
	make_persistent("nkvmtest3", IFF_TAP | IFF_NO_PI);
	cfg.has_host_ip = true;
	assert_int_equal(inet_pton(AF_INET, "10.9.9.1", &cfg.host_ip), 1);
	cfg.host_prefix = 30;
	be = open_ok(&cfg);
	assert_true(iface_flags("nkvmtest3") & IFF_UP);
	net_backend_destroy(be);
	remove_persistent("nkvmtest3", IFF_TAP | IFF_NO_PI);
}

static void test_frame_written_with_vnet_header_reaches_the_interface(void **state)
{
	struct tap_config cfg = config(NULL, 1);
	struct net_backend *be;
	int ps;

	skip_unless_isolated();
	be = open_ok(&cfg);
	ps = packet_socket(tap_ifname(be), NULL);
	assert_frame_reaches_packet_socket(be->fds[0], ps, 0x5a);
	close(ps);
	net_backend_destroy(be);
}

static void test_frame_sent_on_the_interface_arrives_behind_a_vnet_header(void **state)
{
	struct tap_config cfg = config(NULL, 1);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_halen = 6 };
	struct virtio_net_hdr h;
	uint8_t frame[FRAME_LEN], in[2048];
	struct pollfd p;
	struct net_backend *be;
	int ps, ifindex;
	ssize_t n;

	skip_unless_isolated();
	be = open_ok(&cfg);
	ps = packet_socket(tap_ifname(be), &ifindex);
	to.sll_ifindex = ifindex;
	to.sll_protocol = htons(ETH_P_TEST);
	memset(to.sll_addr, 0xff, 6);
	make_frame(frame, 0x77);
	assert_int_equal(sendto(ps, frame, sizeof(frame), 0, (struct sockaddr *)&to, sizeof(to)),
			 sizeof(frame));
	/* Other frames (IPv6 autoconfiguration) may come first: skip to the test's own. */
	for (;;) {
		p = (struct pollfd){ .fd = be->fds[0], .events = POLLIN };
		assert_int_equal(poll(&p, 1, 2000), 1);
		memset(in, 0xaa, sizeof(in));
		n = read(be->fds[0], in, sizeof(in));
		assert_true(n >= HDR_LEN + 14);
		if (in[HDR_LEN + 12] == ETH_P_TEST >> 8 && in[HDR_LEN + 13] == (ETH_P_TEST & 0xff))
			break;
	}
	assert_int_equal(n, HDR_LEN + FRAME_LEN);
	assert_memory_equal(in + HDR_LEN, frame, FRAME_LEN);
	/* Offloads are off until the driver takes some: a plain header, complete checksums. */
	memcpy(&h, in, sizeof(h));
	assert_int_equal(h.flags, 0);
	assert_int_equal(h.gso_type, VIRTIO_NET_HDR_GSO_NONE);
	close(ps);
	net_backend_destroy(be);
}

/* ETHTOOL_GTSO/GTXCSUM of the interface: what the TAP currently hands over. */
static int ethtool_get(const char *name, uint32_t cmd)
{
	struct ethtool_value v = { .cmd = cmd };
	struct ifreq ifr = { 0 };
	int s = inet_socket();

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_data = (void *)&v;
	assert_int_equal(ioctl(s, SIOCETHTOOL, &ifr), 0);
	close(s);
	return (int)v.data;
}

#define BIT(b) (1ULL << (b))

static void test_offloads_are_probed_off_until_set_offloads_turns_them_on(void **state)
{
	struct tap_config cfg = config(NULL, 2);
	uint64_t want = BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_HOST_TSO4) |
			BIT(VIRTIO_NET_F_HOST_TSO6) | BIT(VIRTIO_NET_F_HOST_ECN) |
			BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4) |
			BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_GUEST_ECN);
	struct net_backend *be;
	const char *name;

	skip_unless_isolated();
	be = open_ok(&cfg);
	name = tap_ifname(be);
	/* Every TUN_F_ bit asked for is in Linux since 2.6.27: this kernel takes them all. */
	assert_int_equal(be->offloads, want);
	assert_int_equal(ethtool_get(name, ETHTOOL_GTSO), 0);
	assert_non_null(be->ops->set_offloads);
	assert_int_equal(be->ops->set_offloads(be, BIT(VIRTIO_NET_F_GUEST_CSUM) |
							   BIT(VIRTIO_NET_F_GUEST_TSO4) |
							   BIT(VIRTIO_NET_F_MAC)),
			 0);
	assert_int_equal(ethtool_get(name, ETHTOOL_GTXCSUM), 1);
	assert_int_equal(ethtool_get(name, ETHTOOL_GTSO), 1);
	assert_int_equal(be->ops->set_offloads(be, 0), 0);
	assert_int_equal(ethtool_get(name, ETHTOOL_GTSO), 0);
	/* TSO without checksum offload is no offload (§5.1.3.1): tun would refuse it. */
	assert_int_equal(be->ops->set_offloads(be, BIT(VIRTIO_NET_F_GUEST_TSO4)), 0);
	assert_int_equal(ethtool_get(name, ETHTOOL_GTSO), 0);
	net_backend_destroy(be);
}

/*
 * Runs fn in a child whose mounts and capabilities may change without touching the other tests:
 * a mount namespace of its own (a fork shares its parent's). Asserts it exits 0.
 */
static void in_child(int (*fn)(void))
{
	int st;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
			_exit(2);
		_exit(fn());
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static int expect_error(int want, const char *msg)
{
	struct tap_config cfg = config(NULL, 1);
	struct net_backend *be = NULL;
	char err[256] = "";
	int r = tap_open(&be, &cfg, err, sizeof(err));

	if (r != want || be || strcmp(err, msg)) {
		fprintf(stderr, "got %d \"%s\", want %d \"%s\"\n", r, err, want, msg);
		return 1;
	}
	return 0;
}

static int open_without_dev_net_tun(void)
{
	if (mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755") != 0)
		return 2;
	return expect_error(-ENOENT, "/dev/net/tun: No such file or directory");
}

static void test_missing_dev_net_tun_says_so(void **state)
{
	skip_unless_isolated();
	in_child(open_without_dev_net_tun);
}

static int open_without_cap_net_admin(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) != 0)
		return 2;
	d[CAP_NET_ADMIN / 32].effective &= ~(1U << (CAP_NET_ADMIN % 32));
	if (syscall(SYS_capset, &h, d) != 0)
		return 2;
	return expect_error(-EPERM, "/dev/net/tun: cannot create a TAP: Operation not permitted "
				    "(needs CAP_NET_ADMIN)");
}

static void test_creating_without_cap_net_admin_says_so(void **state)
{
	skip_unless_isolated();
	in_child(open_without_cap_net_admin);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_created_tap_exists_is_up_and_is_gone_after_destroy),
		cmocka_unit_test(test_two_queues_are_two_working_fds_on_one_multi_queue_tap),
		cmocka_unit_test(test_attaches_to_an_existing_tap_and_leaves_it_in_place),
		cmocka_unit_test(test_one_queue_attaches_to_an_existing_multi_queue_tap),
		cmocka_unit_test(test_two_queues_on_a_single_queue_tap_say_so),
		cmocka_unit_test(test_lo_is_not_a_tap_device),
		cmocka_unit_test(test_a_tun_device_is_not_a_tap_device),
		cmocka_unit_test(test_bad_queue_counts_and_names_are_refused),
		cmocka_unit_test(test_host_ip_is_applied_and_the_link_is_up),
		cmocka_unit_test(test_host_ip_configures_and_raises_an_existing_tap),
		cmocka_unit_test(test_frame_written_with_vnet_header_reaches_the_interface),
		cmocka_unit_test(test_frame_sent_on_the_interface_arrives_behind_a_vnet_header),
		cmocka_unit_test(test_offloads_are_probed_off_until_set_offloads_turns_them_on),
		cmocka_unit_test(test_missing_dev_net_tun_says_so),
		cmocka_unit_test(test_creating_without_cap_net_admin_says_so),
	};

	isolate();
	return cmocka_run_group_tests_name("tap", tests, NULL, NULL);
}
