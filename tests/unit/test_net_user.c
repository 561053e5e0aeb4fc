// SPDX-License-Identifier: MIT
/*
 * The user-mode back end (libslirp) without a guest: the test plays the guest, writing Ethernet
 * frames on the device's end of the socket pairs as virtio-net would and reading what the stack
 * answers. Only loopback is used; ports are picked at run time.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/backend.h"
#include "net/user.h"

#define TIMEOUT_MS 5000

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
#define GUEST_IP 0x0a00020fu /* 10.0.2.15 */
#define GW_IP 0x0a000202u /* 10.0.2.2 */
#define DNS_IP 0x0a000203u /* 10.0.2.3 */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

static uint16_t get16(const uint8_t *p)
{
	return p[0] << 8 | p[1];
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

/* RFC 1071 checksum, as the guest computes it (the back end takes no checksum offload). */
static uint16_t csum(const uint8_t *p, size_t len, uint32_t sum)
{
	for (; len > 1; p += 2, len -= 2)
		sum += get16(p);
	if (len)
		sum += p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static size_t eth_header(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, type);
	return 14;
}

/* An IPv4 header without options at f; returns its length. */
static size_t ip_header(uint8_t *f, uint8_t proto, uint32_t src, uint32_t dst, size_t payload)
{
	memset(f, 0, 20);
	f[0] = 0x45;
	put16(f + 2, 20 + payload);
	f[8] = 64;
	f[9] = proto;
	put32(f + 12, src);
	put32(f + 16, dst);
	put16(f + 10, csum(f, 20, 0));
	return 20;
}

static size_t arp_request(uint8_t *f, uint32_t spa, uint32_t tpa)
{
	size_t n = eth_header(f, bcast_mac, 0x0806);
	uint8_t *a = f + n;

	put16(a, 1); /* Ethernet */
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, 1); /* request */
	memcpy(a + 8, guest_mac, 6);
	put32(a + 14, spa);
	memset(a + 18, 0, 6);
	put32(a + 24, tpa);
	return n + 28;
}

static size_t arp_reply_for_guest(uint8_t *f, const uint8_t *req)
{
	size_t n = eth_header(f, req + 6, 0x0806);
	uint8_t *a = f + n;

	memcpy(a, req + 14, 8);
	put16(a + 6, 2); /* reply */
	memcpy(a + 8, guest_mac, 6);
	put32(a + 14, GUEST_IP);
	memcpy(a + 18, req + 14 + 8, 10); /* the asker's MAC and IP */
	return n + 28;
}

static size_t icmp_echo(uint8_t *f, uint32_t dst, uint16_t id, uint16_t seq, size_t datalen)
{
	size_t n = eth_header(f, bcast_mac, 0x0800);
	uint8_t *icmp;

	n += ip_header(f + n, 1, GUEST_IP, dst, 8 + datalen);
	icmp = f + n;
	icmp[0] = 8; /* echo request */
	icmp[1] = 0;
	put16(icmp + 2, 0);
	put16(icmp + 4, id);
	put16(icmp + 6, seq);
	for (size_t i = 0; i < datalen; i++)
		icmp[8 + i] = (uint8_t)(i * 7 + seq);
	put16(icmp + 2, csum(icmp, 8 + datalen, 0));
	return n + 8 + datalen;
}

/* RFC 2131 DHCPDISCOVER from 0.0.0.0:68 to 255.255.255.255:67. */
static size_t dhcp_discover(uint8_t *f, uint32_t xid)
{
	size_t n = eth_header(f, bcast_mac, 0x0800);
	size_t blen = 240 + 3 + 5 + 1;
	uint8_t *udp, *b;

	n += ip_header(f + n, 17, 0, 0xffffffffu, 8 + blen);
	udp = f + n;
	put16(udp, 68);
	put16(udp + 2, 67);
	put16(udp + 4, 8 + blen);
	put16(udp + 6, 0); /* no checksum: allowed for UDP over IPv4 */
	b = udp + 8;
	memset(b, 0, 240);
	b[0] = 1; /* BOOTREQUEST */
	b[1] = 1;
	b[2] = 6;
	put32(b + 4, xid);
	memcpy(b + 28, guest_mac, 6);
	put32(b + 236, 0x63825363); /* magic cookie */
	b += 240;
	*b++ = 53; /* message type */
	*b++ = 1;
	*b++ = 1; /* DHCPDISCOVER */
	*b++ = 55; /* parameter request list: router, DNS, mask */
	*b++ = 3;
	*b++ = 3;
	*b++ = 6;
	*b++ = 1;
	*b = 255;
	return n + 8 + blen;
}

static void send_frame(int fd, const uint8_t *f, size_t len)
{
	assert_int_equal(write(fd, f, len), (ssize_t)len);
}

typedef bool (*frame_pred)(const uint8_t *f, size_t len, const void *arg);

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Reads frames from fd until one satisfies pred (returned in f, its length the result) or the
 * time is up (0). Answers the stack's ARP requests for the guest's address on the way, as a
 * guest would, so that the stack can address it.
 */
static size_t wait_frame(int fd, uint8_t *f, size_t cap, frame_pred pred, const void *arg)
{
	int64_t end = now_ms() + TIMEOUT_MS;

	for (int64_t left; (left = end - now_ms()) > 0;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = read(fd, f, cap);
		if (n <= 0)
			continue;
		if (n >= 42 && get16(f + 12) == 0x0806 && get16(f + 20) == 1 &&
		    get32(f + 38) == GUEST_IP) {
			uint8_t reply[64];

			send_frame(fd, reply, arp_reply_for_guest(reply, f));
			continue;
		}
		if (pred(f, n, arg))
			return n;
	}
	return 0;
}

static bool is_arp_reply(const uint8_t *f, size_t len, const void *arg)
{
	return len >= 42 && get16(f + 12) == 0x0806 && get16(f + 20) == 2;
}

static bool is_ipv4(const uint8_t *f, size_t len, uint8_t proto)
{
	return len >= 34 && get16(f + 12) == 0x0800 && (f[14] >> 4) == 4 && f[23] == proto;
}

static bool is_icmp_echo_reply(const uint8_t *f, size_t len, const void *arg)
{
	size_t ihl;

	if (!is_ipv4(f, len, 1))
		return false;
	ihl = (f[14] & 15) * 4;
	return len >= 14 + ihl + 8 && f[14 + ihl] == 0;
}

static bool is_dhcp_reply(const uint8_t *f, size_t len, const void *arg)
{
	return is_ipv4(f, len, 17) && len >= 14 + 20 + 8 + 240 && get16(f + 34) == 67 &&
	       get16(f + 36) == 68 && f[42] == 2;
}

static bool is_tcp_syn_to(const uint8_t *f, size_t len, const void *arg)
{
	const uint16_t *port = arg;
	size_t ihl;

	if (!is_ipv4(f, len, 6))
		return false;
	ihl = (f[14] & 15) * 4;
	return len >= 14 + ihl + 20 && get32(f + 30) == GUEST_IP &&
	       get16(f + 14 + ihl + 2) == *port && (f[14 + ihl + 13] & 0x12) == 0x02;
}

static struct net_backend *open_user(unsigned int queues)
{
	struct net_user_config cfg = { .queues = queues };
	struct net_backend *be = NULL;
	char err[256] = "";

	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), 0);
	assert_non_null(be);
	return be;
}

/* A free TCP port on 127.0.0.1: bound to 0, read back, released. */
static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint16_t port;

	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	port = ntohs(a.sin_port);
	close(s);
	return port;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_user_backend_is_bare_frames_on_nonblocking_pairs(void **state)
{
	struct net_backend *be = open_user(3);
	int type;
	socklen_t tlen = sizeof(type);

	assert_string_equal(be->name, "user");
	assert_int_equal(be->nr_pairs, 3);
	assert_false(be->vnet_hdr);
	assert_int_equal(be->offloads, 0);
	assert_false(be->vhost);
	for (unsigned int i = 0; i < be->nr_pairs; i++) {
		assert_true(fcntl(be->fds[i], F_GETFL) & O_NONBLOCK);
		assert_true(fcntl(be->fds[i], F_GETFD) & FD_CLOEXEC);
		assert_int_equal(getsockopt(be->fds[i], SOL_SOCKET, SO_TYPE, &type, &tlen), 0);
		assert_true(type == SOCK_DGRAM || type == SOCK_SEQPACKET);
	}
	net_backend_destroy(be);
}

static void test_user_rejects_bad_queue_count_hostfwd_count_and_port_0(void **state)
{
	struct net_user_config cfg = { .queues = 0 };
	struct net_backend *be = NULL;
	char err[256] = "";

	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_null(be);
	assert_string_not_equal(err, "");
	cfg.queues = NET_MAX_QUEUE_PAIRS + 1;
	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	cfg.queues = 1;
	cfg.nr_hostfwd = NET_USER_MAX_HOSTFWD + 1;
	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_null(be);
	cfg.nr_hostfwd = 1;
	cfg.hostfwd[0].host_port = 0; /* would listen on a port the kernel picks */
	cfg.hostfwd[0].guest_port = 22;
	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_null(be);
	cfg.hostfwd[0].host_port = free_port();
	cfg.hostfwd[0].guest_port = 0;
	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), -EINVAL);
	assert_null(be);
}

static void test_user_answers_arp_request_for_gateway(void **state)
{
	struct net_backend *be = open_user(1);
	uint8_t f[2048];
	size_t n;

	send_frame(be->fds[0], f, arp_request(f, GUEST_IP, GW_IP));
	n = wait_frame(be->fds[0], f, sizeof(f), is_arp_reply, NULL);
	assert_int_not_equal(n, 0);
	assert_memory_equal(f, guest_mac, 6); /* to the asker */
	assert_int_equal(get32(f + 28), GW_IP); /* sender: 10.0.2.2 */
	assert_memory_equal(f + 32, guest_mac, 6);
	assert_int_equal(get32(f + 38), GUEST_IP);
	net_backend_destroy(be);
}

static void test_user_answers_icmp_echo_to_gateway(void **state)
{
	struct net_backend *be = open_user(1);
	uint8_t f[2048], req[2048];
	size_t n, rn;

	send_frame(be->fds[0], f, arp_request(f, GUEST_IP, GW_IP));
	assert_int_not_equal(wait_frame(be->fds[0], f, sizeof(f), is_arp_reply, NULL), 0);
	rn = icmp_echo(req, GW_IP, 0x1234, 7, 56);
	send_frame(be->fds[0], req, rn);
	n = wait_frame(be->fds[0], f, sizeof(f), is_icmp_echo_reply, NULL);
	assert_int_equal(n, rn);
	assert_int_equal(get32(f + 26), GW_IP);
	assert_int_equal(get32(f + 30), GUEST_IP);
	assert_int_equal(get16(f + 38), 0x1234); /* id */
	assert_int_equal(get16(f + 40), 7); /* seq */
	assert_memory_equal(f + 42, req + 42, 56);
	assert_int_equal(csum(f + 34, n - 34, 0), 0);
	net_backend_destroy(be);
}

static const uint8_t *dhcp_option(const uint8_t *f, size_t len, uint8_t code)
{
	const uint8_t *p = f + 42 + 240, *end = f + len;

	while (p < end && *p != 255) {
		if (*p == 0) {
			p++;
			continue;
		}
		if (p + 2 > end || p + 2 + p[1] > end)
			return NULL;
		if (*p == code)
			return p;
		p += 2 + p[1];
	}
	return NULL;
}

static void test_user_dhcp_offers_guest_address_router_and_dns(void **state)
{
	struct net_backend *be = open_user(1);
	uint8_t f[2048];
	const uint8_t *o;
	size_t n;

	send_frame(be->fds[0], f, dhcp_discover(f, 0xabcdef01));
	n = wait_frame(be->fds[0], f, sizeof(f), is_dhcp_reply, NULL);
	assert_int_not_equal(n, 0);
	assert_int_equal(get32(f + 42 + 4), 0xabcdef01); /* xid */
	assert_int_equal(get32(f + 42 + 16), GUEST_IP); /* yiaddr */
	o = dhcp_option(f, n, 53);
	assert_non_null(o);
	assert_int_equal(o[2], 2); /* DHCPOFFER */
	o = dhcp_option(f, n, 3);
	assert_non_null(o);
	assert_int_equal(get32(o + 2), GW_IP);
	o = dhcp_option(f, n, 6);
	assert_non_null(o);
	assert_int_equal(get32(o + 2), DNS_IP);
	net_backend_destroy(be);
}

/* The stack is one host for the guest, whatever pair a frame comes on; it answers on pair 0. */
static void test_user_takes_frames_on_any_pair_and_answers_on_pair_0(void **state)
{
	struct net_backend *be = open_user(2);
	uint8_t f[2048];

	send_frame(be->fds[1], f, arp_request(f, GUEST_IP, GW_IP));
	assert_int_not_equal(wait_frame(be->fds[0], f, sizeof(f), is_arp_reply, NULL), 0);
	assert_int_equal(get32(f + 28), GW_IP);
	net_backend_destroy(be);
}

static void test_user_hostfwd_connect_sends_syn_to_guest_port(void **state)
{
	struct net_user_config cfg = { .queues = 1, .nr_hostfwd = 1 };
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct net_backend *be = NULL;
	uint16_t guest_port = 8022;
	char err[256] = "";
	uint8_t f[2048];
	int s;

	cfg.hostfwd[0].host_port = free_port();
	cfg.hostfwd[0].guest_port = guest_port;
	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), 0);
	/* The guest makes itself known first, as it would after DHCP. */
	send_frame(be->fds[0], f, arp_request(f, GUEST_IP, GW_IP));
	assert_int_not_equal(wait_frame(be->fds[0], f, sizeof(f), is_arp_reply, NULL), 0);

	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	a.sin_port = htons(cfg.hostfwd[0].host_port);
	/* Listening before net_user_open returned: the connection is accepted, not refused. */
	assert_true(connect(s, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS);
	assert_int_not_equal(wait_frame(be->fds[0], f, sizeof(f), is_tcp_syn_to, &guest_port), 0);
	assert_int_equal(get32(f + 30), GUEST_IP);
	close(s);
	net_backend_destroy(be);
}

static void test_user_hostfwd_on_busy_port_fails_with_message(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct net_user_config cfg = { .queues = 1, .nr_hostfwd = 2 };
	socklen_t alen = sizeof(a);
	struct net_backend *be = NULL;
	char err[256] = "", want[128];
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int fds_before = count_dir("/proc/self/fd");

	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s, 1), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	cfg.hostfwd[0].host_port = free_port();
	cfg.hostfwd[0].guest_port = 22;
	cfg.hostfwd[1].host_port = ntohs(a.sin_port);
	cfg.hostfwd[1].guest_port = 80;

	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), -EADDRINUSE);
	assert_null(be);
	snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%u: Address already in use",
		 ntohs(a.sin_port));
	assert_string_equal(err, want);
	/* The failed open took back what it had made, the first forward's listener included. */
	assert_int_equal(count_dir("/proc/self/fd"), fds_before);
	close(s);
}

static void test_user_destroy_leaves_no_thread_or_fd(void **state)
{
	struct net_user_config cfg = { .queues = 4, .nr_hostfwd = 1 };
	int fds_before = count_dir("/proc/self/fd");
	int tasks_before = count_dir("/proc/self/task");
	struct net_backend *be = NULL;
	char err[256] = "";
	uint8_t f[2048];

	cfg.hostfwd[0].host_port = free_port();
	cfg.hostfwd[0].guest_port = 22;
	assert_int_equal(net_user_open(&be, &cfg, err, sizeof(err)), 0);
	assert_int_equal(count_dir("/proc/self/task"), tasks_before + 1);
	assert_true(count_dir("/proc/self/fd") > fds_before);
	send_frame(be->fds[0], f, arp_request(f, GUEST_IP, GW_IP));
	assert_int_not_equal(wait_frame(be->fds[0], f, sizeof(f), is_arp_reply, NULL), 0);
	net_backend_destroy(be);
	assert_int_equal(count_dir("/proc/self/task"), tasks_before);
	assert_int_equal(count_dir("/proc/self/fd"), fds_before);
}

/*
 * A device that stops reading (no RX buffers posted) must not stall the stack: its replies are
 * dropped, so it keeps taking the guest's frames, and destroy still returns. A stack thread that
 * blocked on the full socket would stop reading too, and the guest's writes would stall here.
 */
static void test_user_drops_replies_when_device_stops_reading(void **state)
{
	struct net_backend *be = open_user(1);
	uint8_t f[2048];
	int sndbuf;
	socklen_t len = sizeof(sndbuf);
	unsigned int frames;
	int64_t end;

	/* A stack stuck in a blocking write never returns from destroy: fail rather than hang. */
	alarm(60);
	send_frame(be->fds[0], f, arp_request(f, GUEST_IP, GW_IP));
	assert_int_not_equal(wait_frame(be->fds[0], f, sizeof(f), is_arp_reply, NULL), 0);
	/*
	 * Replies of 1442 bytes, more than the stack's socket can queue to the device and the
	 * device's socket can queue to the stack together (both ends have the same buffers).
	 */
	assert_int_equal(getsockopt(be->fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, &len), 0);
	frames = 2 * (unsigned int)sndbuf / 1442 + 1000;
	end = now_ms() + 4 * TIMEOUT_MS;
	for (unsigned int i = 0; i < frames; i++) {
		size_t n = icmp_echo(f, GW_IP, 1, i, 1400);

		while (write(be->fds[0], f, n) < 0) {
			struct pollfd pfd = { .fd = be->fds[0], .events = POLLOUT };

			assert_int_equal(errno, EAGAIN);
			assert_true(now_ms() < end);
			poll(&pfd, 1, 100);
		}
	}
	net_backend_destroy(be);
	alarm(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_backend_is_bare_frames_on_nonblocking_pairs),
		cmocka_unit_test(test_user_rejects_bad_queue_count_hostfwd_count_and_port_0),
		cmocka_unit_test(test_user_answers_arp_request_for_gateway),
		cmocka_unit_test(test_user_answers_icmp_echo_to_gateway),
		cmocka_unit_test(test_user_dhcp_offers_guest_address_router_and_dns),
		cmocka_unit_test(test_user_takes_frames_on_any_pair_and_answers_on_pair_0),
		cmocka_unit_test(test_user_hostfwd_connect_sends_syn_to_guest_port),
		cmocka_unit_test(test_user_hostfwd_on_busy_port_fails_with_message),
		cmocka_unit_test(test_user_destroy_leaves_no_thread_or_fd),
		cmocka_unit_test(test_user_drops_replies_when_device_stops_reading),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
