// SPDX-License-Identifier: MIT
/*
 * virtio-vsock's hybrid back end through the virtio-pci transport, driven by the in-process
 * driver (virtio/driver.h) as a guest's vsock driver would, against real unix sockets: a host
 * program's CONNECT to a guest port and a guest's connection to a listener at PATH_P, bytes both
 * ways, the guest's credit, and hostile headers (lengths past the chain, unknown ops and types,
 * spoofed CIDs), each answered as virtio 1.2 §5.10.6 says and none stopping the device.
 */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_vsock.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "hw/pci.h"
#include "lib/util.h"
#include "tests/unit/fixture.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "virtio/vsock.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define F(bit) (1ULL << (bit))
#define RAM_SIZE (8 * MiB)
#define RINGS_GPA 0x10000ULL /* queue q's rings at RINGS_GPA + q * RING_STRIDE */
#define RING_STRIDE 0x10000ULL
#define DATA_GPA 0x100000ULL
#define QSIZE 64
#define RX_BUF (4096 + sizeof(struct virtio_vsock_hdr))
#define DEADLINE_MS 5000
#define GUEST_CID 3
#define HDR_LEN sizeof(struct virtio_vsock_hdr)
#define FEATURES (F(VIRTIO_F_VERSION_1) | F(VIRTIO_RING_F_EVENT_IDX))

struct fx {
	char dir[128], path[160];
	struct vm *vm;
	struct pci_bus *bus;
	struct irq_routing *irq;
	struct virtio_driver drv;
	struct virtio_driver_queue q[VSOCK_QUEUES];
	uint16_t next_desc[VSOCK_QUEUES];
	uint64_t rx_gpa[QSIZE]; /* the receive buffer behind each head */
	uint16_t rx_seen; /* used entries of the receive queue taken */
	struct virtio_vsock *vs;
	uint64_t data_next;
	bool no_refill; /* rx() gives no buffer back: the device hears nothing from the guest */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || fx_dir_make(fx->dir, sizeof(fx->dir), NULL, "vsock"))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/v.sock", fx->dir);
	fx->vm = calloc(1, sizeof(*fx->vm));
	fx->bus = calloc(1, sizeof(*fx->bus));
	fx->irq = calloc(1, sizeof(*fx->irq));
	if (!fx->vm || !fx->bus || !fx->irq || memory_init(&fx->vm->mem, RAM_SIZE))
		return -1;
	/* No KVM: no irqfd or ioeventfd is bound; kicks come through the notify register. */
	fx->vm->kvm_fd = fx->vm->vm_fd = fx->vm->stop_fd = -1;
	irq_routing_init(fx->irq, NULL);
	if (pci_init(fx->bus, fx->vm))
		return -1;
	fx->data_next = DATA_GPA;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	virtio_vsock_destroy(fx->vs);
	fx_sh(fx->dir, "rm -rf %s", fx->dir);
	memory_free(&fx->vm->mem);
	free(fx->irq);
	free(fx->bus);
	free(fx->vm);
	free(fx);
	return 0;
}

static uint64_t galloc(struct fx *fx, uint64_t len)
{
	uint64_t gpa = fx->data_next;

	fx->data_next = ALIGN_UP(gpa + len, 64);
	assert_true(fx->data_next < RAM_SIZE);
	return gpa;
}

static uint8_t *gp(struct fx *fx, uint64_t gpa)
{
	return guest_ptr(&fx->vm->mem, gpa, 1);
}

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static uint16_t post(struct fx *fx, unsigned int qi, const struct virtio_driver_seg *s,
		     unsigned int n)
{
	struct virtio_driver_queue *q = &fx->q[qi];
	uint16_t head = virtio_driver_queue_add_chain(q, &fx->next_desc[qi], s, n);

	virtio_driver_queue_flush(q);
	return head;
}

static uint16_t used_idx(struct fx *fx, unsigned int qi)
{
	return __atomic_load_n(&fx->q[qi].used->idx, __ATOMIC_ACQUIRE);
}

static bool wait_used(struct fx *fx, unsigned int qi, uint16_t n, int ms)
{
	for (uint64_t end = now_ms() + ms;
	     (uint16_t)(used_idx(fx, qi) - n) > 0x8000 && now_ms() < end;)
		usleep(200);
	return (uint16_t)(used_idx(fx, qi) - n) <= 0x8000;
}

/* n receive buffers of RX_BUF bytes, one descriptor each. */
static void rx_post(struct fx *fx, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		uint64_t gpa = galloc(fx, RX_BUF);
		uint16_t head = post(fx, VSOCK_QUEUE_RX,
				     (struct virtio_driver_seg[]){ { gpa, RX_BUF, true } }, 1);

		fx->rx_gpa[head] = gpa;
	}
}

/* The device with its unix socket at fx->path, driven to DRIVER_OK; 8 receive buffers. */
static void vsock_up(struct fx *fx)
{
	struct vsock_options o = { .cid = GUEST_CID, .socket = fx->path };
	char err[256] = "";

	assert_int_equal(
		virtio_vsock_create(&fx->vs, fx->vm, fx->bus, fx->irq, &o, err, sizeof(err)), 0);
	assert_int_equal(virtio_driver_find(&fx->drv, fx->bus, &fx->vm->mem, VIRTIO_ID_VSOCK), 0);
	assert_int_equal(virtio_driver_reset(&fx->drv, DEADLINE_MS), 0);
	virtio_driver_set_status(&fx->drv, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	virtio_driver_set_status(&fx->drv, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	assert_int_equal(virtio_driver_device_features(&fx->drv) & FEATURES, FEATURES);
	assert_int_equal(virtio_driver_features_ok(&fx->drv, FEATURES), 0);
	for (unsigned int q = 0; q < VSOCK_QUEUES; q++)
		assert_int_equal(virtio_driver_queue_setup(&fx->drv, &fx->q[q], q, QSIZE,
							   RINGS_GPA + q * RING_STRIDE,
							   VIRTIO_MSI_NO_VECTOR),
				 0);
	virtio_driver_set_status(&fx->drv,
				 virtio_driver_status(&fx->drv) | VIRTIO_CONFIG_S_DRIVER_OK);
	virtio_driver_settle(&fx->drv);
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
	rx_post(fx, 8);
}

/* A guest packet (host byte order); dst is the host. */
struct pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

static void hdr_put(uint8_t *b, const struct pkt *p)
{
	struct virtio_vsock_hdr h = {
		.src_cid = htole64(p->src_cid),
		.dst_cid = htole64(p->dst_cid),
		.src_port = htole32(p->src_port),
		.dst_port = htole32(p->dst_port),
		.len = htole32(p->len),
		.type = htole16(p->type),
		.op = htole16(p->op),
		.flags = htole32(p->flags),
		.buf_alloc = htole32(p->buf_alloc),
		.fwd_cnt = htole32(p->fwd_cnt),
	};

	memcpy(b, &h, sizeof(h));
}

/* A stream packet from the guest's port gport to host port hport. */
static struct pkt gpkt(uint32_t gport, uint32_t hport, uint16_t op)
{
	return (struct pkt){ .src_cid = GUEST_CID,
			     .dst_cid = VMADDR_CID_HOST,
			     .src_port = gport,
			     .dst_port = hport,
			     .type = VIRTIO_VSOCK_TYPE_STREAM,
			     .op = op,
			     .buf_alloc = 64 * 1024 };
}

/* Sends p with payload (payload_len bytes, p->len as given) in one chain; waits for it back. */
static void tx(struct fx *fx, const struct pkt *p, const void *payload, uint32_t payload_len)
{
	uint64_t gpa = galloc(fx, HDR_LEN + payload_len);
	uint16_t before = used_idx(fx, VSOCK_QUEUE_TX);

	hdr_put(gp(fx, gpa), p);
	if (payload_len)
		memcpy(gp(fx, gpa + HDR_LEN), payload, payload_len);
	post(fx, VSOCK_QUEUE_TX, (struct virtio_driver_seg[]){ { gpa, HDR_LEN + payload_len } }, 1);
	assert_true(wait_used(fx, VSOCK_QUEUE_TX, before + 1, DEADLINE_MS));
}

/* The next packet the device gave the guest, within ms; false with none. Payload into data. */
static bool rx(struct fx *fx, struct pkt *p, void *data, size_t max, int ms)
{
	struct virtio_vsock_hdr h;
	struct vring_used_elem e;
	uint8_t *b;

	if (!wait_used(fx, VSOCK_QUEUE_RX, fx->rx_seen + 1, ms))
		return false;
	e = fx->q[VSOCK_QUEUE_RX].used->ring[fx->rx_seen++ % QSIZE];
	assert_true(e.len >= HDR_LEN);
	b = gp(fx, fx->rx_gpa[e.id]);
	memcpy(&h, b, sizeof(h));
	*p = (struct pkt){ le64toh(h.src_cid),	le64toh(h.dst_cid), le32toh(h.src_port),
			   le32toh(h.dst_port), le32toh(h.len),	    le16toh(h.type),
			   le16toh(h.op),	le32toh(h.flags),   le32toh(h.buf_alloc),
			   le32toh(h.fwd_cnt) };
	assert_int_equal(e.len, HDR_LEN + p->len);
	assert_true(p->len <= max);
	memcpy(data, b + HDR_LEN, p->len);
	/* The buffer goes back to the device, as a driver refills its receive ring. */
	if (!fx->no_refill)
		rx_post(fx, 1);
	return true;
}

static void rx_expect(struct fx *fx, struct pkt *p, uint16_t op)
{
	uint8_t data[RX_BUF];

	assert_true(rx(fx, p, data, sizeof(data), DEADLINE_MS));
	assert_int_equal(p->op, op);
	assert_int_equal(p->type, VIRTIO_VSOCK_TYPE_STREAM);
	assert_int_equal(p->src_cid, VMADDR_CID_HOST);
	assert_int_equal(p->dst_cid, GUEST_CID);
}

static int unix_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static int unix_listen(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

/* Up to len bytes from fd within ms: how many (0: end of file, -1: none in time). */
static ssize_t recv_ms(int fd, void *buf, size_t len, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	if (poll(&pfd, 1, ms) != 1)
		return -1;
	return recv(fd, buf, len, MSG_DONTWAIT);
}

/* Whether fd's peer closed it within ms: end of file, or a reset when it left bytes unread. */
static bool closed_ms(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char b;
	ssize_t r;

	if (poll(&pfd, 1, ms) != 1)
		return false;
	r = recv(fd, &b, 1, MSG_DONTWAIT);
	return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* A host program's CONNECT to guest port gport, accepted by the guest: the host port it got. */
static uint32_t host_connect(struct fx *fx, int *fd, uint32_t gport)
{
	char line[64], want[64];
	struct pkt p, r;
	ssize_t n;

	*fd = unix_connect(fx->path);
	snprintf(line, sizeof(line), "CONNECT %u\n", gport);
	assert_int_equal(send(*fd, line, strlen(line), 0), (ssize_t)strlen(line));
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_REQUEST);
	assert_int_equal(p.dst_port, gport);
	assert_true(p.src_port >= 1U << 30);
	assert_int_equal(p.buf_alloc, VSOCK_CONN_BUF);
	r = gpkt(gport, p.src_port, VIRTIO_VSOCK_OP_RESPONSE);
	tx(fx, &r, NULL, 0);
	n = recv_ms(*fd, line, sizeof(line) - 1, DEADLINE_MS);
	assert_true(n > 0);
	line[n] = '\0';
	snprintf(want, sizeof(want), "OK %u\n", p.src_port);
	assert_string_equal(line, want);
	return p.src_port;
}

/* --- host to guest, through the socket's CONNECT protocol ------------------------------------ */

static void test_host_connect_reaches_guest_port_and_bytes_flow_both_ways(void **state)
{
	struct fx *fx = *state;
	uint8_t data[RX_BUF];
	struct pkt p, w;
	uint32_t hport;
	char buf[16];
	int fd;

	vsock_up(fx);
	hport = host_connect(fx, &fd, 1234);
	assert_int_equal(send(fd, "hello", 5, 0), 5);
	assert_true(rx(fx, &p, data, sizeof(data), DEADLINE_MS));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(p.src_port, hport);
	assert_int_equal(p.dst_port, 1234);
	assert_int_equal(p.len, 5);
	assert_memory_equal(data, "hello", 5);
	w = gpkt(1234, hport, VIRTIO_VSOCK_OP_RW);
	w.len = 5;
	tx(fx, &w, "world", 5);
	assert_int_equal(recv_ms(fd, buf, sizeof(buf), DEADLINE_MS), 5);
	assert_memory_equal(buf, "world", 5);
	close(fd);
}

static void test_host_connect_refused_by_guest_closes_the_client(void **state)
{
	struct fx *fx = *state;
	struct pkt p, r;
	char buf[16];
	int fd;

	vsock_up(fx);
	fd = unix_connect(fx->path);
	assert_int_equal(send(fd, "CONNECT 99\n", 11, 0), 11);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_REQUEST);
	r = gpkt(99, p.src_port, VIRTIO_VSOCK_OP_RST);
	tx(fx, &r, NULL, 0);
	/* No "OK": end of file. */
	assert_int_equal(recv_ms(fd, buf, sizeof(buf), DEADLINE_MS), 0);
	close(fd);
}

static void test_bad_connect_line_closes_the_client_and_asks_the_guest_nothing(void **state)
{
	struct fx *fx = *state;
	static const char *const lines[] = {
		"HELLO 5\n",	 "CONNECT x\n",
		"CONNECT 5 6\n", "CONNECT 99999999999\n",
		"CONNECT \n",	 "CONNECT 000000000000000000000000000000000001\n"
	};
	uint8_t data[RX_BUF];
	struct pkt p;

	vsock_up(fx);
	for (unsigned int i = 0; i < ARRAY_SIZE(lines); i++) {
		int fd = unix_connect(fx->path);

		send(fd, lines[i], strlen(lines[i]), MSG_NOSIGNAL);
		assert_true(closed_ms(fd, DEADLINE_MS));
		close(fd);
	}
	assert_false(rx(fx, &p, data, sizeof(data), 200));
}

/*
 * A host program's last bytes and end of file reach the guest as RW then SHUTDOWN, with no kick
 * in between: a Linux guest refills its receive ring only when half of it is used.
 */
static void test_host_eof_reaches_guest_as_shutdown_without_a_kick(void **state)
{
	struct fx *fx = *state;
	uint8_t data[RX_BUF];
	uint32_t hport;
	struct pkt p;
	int fd;

	vsock_up(fx);
	hport = host_connect(fx, &fd, 1235);
	fx->no_refill = true;
	assert_int_equal(send(fd, "bye", 3, 0), 3);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	assert_true(rx(fx, &p, data, sizeof(data), DEADLINE_MS));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(p.len, 3);
	assert_memory_equal(data, "bye", 3);
	assert_true(rx(fx, &p, data, sizeof(data), DEADLINE_MS));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(p.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	assert_int_equal(p.src_port, hport);
	close(fd);
}

static void test_host_data_waits_for_the_guests_credit(void **state)
{
	struct fx *fx = *state;
	uint8_t data[RX_BUF], big[100];
	struct pkt p, c;
	uint32_t hport;
	int fd;

	vsock_up(fx);
	fd = unix_connect(fx->path);
	assert_int_equal(send(fd, "CONNECT 7\n", 10, 0), 10);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_REQUEST);
	hport = p.src_port;
	/* The guest can take 10 bytes. */
	c = gpkt(7, hport, VIRTIO_VSOCK_OP_RESPONSE);
	c.buf_alloc = 10;
	tx(fx, &c, NULL, 0);
	memset(big, 'x', sizeof(big));
	assert_true(recv_ms(fd, data, sizeof(data), DEADLINE_MS) > 0); /* "OK PORT\n" */
	assert_int_equal(send(fd, big, sizeof(big), 0), (ssize_t)sizeof(big));
	assert_true(rx(fx, &p, data, sizeof(data), DEADLINE_MS));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(p.len, 10);
	assert_false(rx(fx, &p, data, sizeof(data), 200));
	/* It read them: 10 more (§5.10.6.3). */
	c.op = VIRTIO_VSOCK_OP_CREDIT_UPDATE;
	c.fwd_cnt = 10;
	tx(fx, &c, NULL, 0);
	assert_true(rx(fx, &p, data, sizeof(data), DEADLINE_MS));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(p.len, 10);
	close(fd);
}

/* --- guest to host, to listeners at PATH_P ---------------------------------------------------- */

static void test_guest_connect_reaches_listener_at_path_port(void **state)
{
	struct fx *fx = *state;
	char lpath[200], buf[16];
	uint8_t data[RX_BUF];
	struct pkt p, w;
	int l, fd;

	snprintf(lpath, sizeof(lpath), "%s_5000", fx->path);
	l = unix_listen(lpath);
	vsock_up(fx);
	w = gpkt(777, 5000, VIRTIO_VSOCK_OP_REQUEST);
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RESPONSE);
	assert_int_equal(p.src_port, 5000);
	assert_int_equal(p.dst_port, 777);
	assert_int_equal(p.buf_alloc, VSOCK_CONN_BUF);
	fd = accept(l, NULL, NULL);
	assert_true(fd >= 0);
	w.op = VIRTIO_VSOCK_OP_RW;
	w.len = 4;
	tx(fx, &w, "ping", 4);
	assert_int_equal(recv_ms(fd, buf, sizeof(buf), DEADLINE_MS), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(send(fd, "pong", 4, 0), 4);
	assert_true(rx(fx, &p, data, sizeof(data), DEADLINE_MS));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(p.len, 4);
	assert_memory_equal(data, "pong", 4);
	/* The guest shuts both ways: RST back, and the host program sees the end. */
	w.op = VIRTIO_VSOCK_OP_SHUTDOWN;
	w.len = 0;
	w.flags = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(recv_ms(fd, buf, sizeof(buf), DEADLINE_MS), 0);
	close(fd);
	close(l);
}

/*
 * Linux's close() sends SHUTDOWN with both flags at once, maybe before the host program read
 * what the guest sent: those bytes still reach it, then its end of file, then the guest's RST.
 */
static void test_guest_close_delivers_bytes_the_host_had_not_read_yet(void **state)
{
	struct fx *fx = *state;
	static uint8_t sent[VSOCK_CONN_BUF], got[VSOCK_CONN_BUF + 1];
	char lpath[200];
	struct pkt p, w;
	size_t have = 0;
	ssize_t n;
	int l, fd;

	snprintf(lpath, sizeof(lpath), "%s_5001", fx->path);
	l = unix_listen(lpath);
	vsock_up(fx);
	w = gpkt(779, 5001, VIRTIO_VSOCK_OP_REQUEST);
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RESPONSE);
	fd = accept(l, NULL, NULL);
	assert_true(fd >= 0);
	/* All the credit nkvm gave: more than a unix socket holds, so some waits in nkvm. */
	for (size_t i = 0; i < sizeof(sent); i++)
		sent[i] = i % 251;
	w.op = VIRTIO_VSOCK_OP_RW;
	for (size_t off = 0; off < sizeof(sent); off += w.len) {
		w.len = 64 * 1024;
		tx(fx, &w, sent + off, w.len);
	}
	w.op = VIRTIO_VSOCK_OP_SHUTDOWN;
	w.len = 0;
	w.flags = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
	tx(fx, &w, NULL, 0);
	while ((n = recv_ms(fd, got + have, sizeof(got) - have, DEADLINE_MS)) > 0)
		have += n;
	assert_int_equal(n, 0);
	assert_int_equal(have, sizeof(sent));
	assert_memory_equal(got, sent, sizeof(sent));
	/* Credit updates for what the host read may come first. */
	do {
		assert_true(rx(fx, &p, got, sizeof(got), DEADLINE_MS));
	} while (p.op == VIRTIO_VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(p.dst_port, 779);
	close(fd);
	close(l);
}

static void test_guest_connect_without_listener_gets_rst(void **state)
{
	struct fx *fx = *state;
	struct pkt p, w = gpkt(778, 6000, VIRTIO_VSOCK_OP_REQUEST);

	vsock_up(fx);
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(p.src_port, 6000);
	assert_int_equal(p.dst_port, 778);
}

/* --- hostile headers ------------------------------------------------------------------------ */

static void test_unknown_op_and_type_get_rst_and_the_device_goes_on(void **state)
{
	struct fx *fx = *state;
	struct pkt p, w = gpkt(1, 2, 99);

	vsock_up(fx);
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	w = gpkt(1, 2, VIRTIO_VSOCK_OP_INVALID);
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	w = gpkt(1, 2, VIRTIO_VSOCK_OP_REQUEST);
	w.type = VIRTIO_VSOCK_TYPE_SEQPACKET;
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_len_past_the_chain_gets_rst_and_no_byte_reaches_the_host(void **state)
{
	struct fx *fx = *state;
	static uint8_t big[64 * 1024 + 1];
	char lpath[200], buf[16];
	struct pkt p, w;
	int l, fd;

	snprintf(lpath, sizeof(lpath), "%s_80", fx->path);
	l = unix_listen(lpath);
	vsock_up(fx);
	w = gpkt(900, 80, VIRTIO_VSOCK_OP_REQUEST);
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RESPONSE);
	fd = accept(l, NULL, NULL);
	/* 1000 bytes said, 4 given. */
	w.op = VIRTIO_VSOCK_OP_RW;
	w.len = 1000;
	tx(fx, &w, "abcd", 4);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	/* The connection is over: the host program sees its end, without a byte. */
	assert_int_equal(recv_ms(fd, buf, sizeof(buf), DEADLINE_MS), 0);
	close(fd);
	/* Above the 64 KiB a packet may carry, even with the chain that long. */
	w = gpkt(901, 80, VIRTIO_VSOCK_OP_REQUEST);
	tx(fx, &w, NULL, 0);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RESPONSE);
	fd = accept(l, NULL, NULL);
	w.op = VIRTIO_VSOCK_OP_RW;
	w.len = 64 * 1024 + 1;
	tx(fx, &w, big, w.len);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(recv_ms(fd, buf, sizeof(buf), DEADLINE_MS), 0);
	close(fd);
	close(l);
}

static void test_spoofed_cids_and_short_headers_are_dropped_unanswered(void **state)
{
	struct fx *fx = *state;
	uint8_t data[RX_BUF];
	struct pkt p, w = gpkt(1, 2, VIRTIO_VSOCK_OP_REQUEST);
	uint64_t gpa;

	vsock_up(fx);
	w.src_cid = GUEST_CID + 1;
	tx(fx, &w, NULL, 0);
	w = gpkt(1, 2, VIRTIO_VSOCK_OP_REQUEST);
	w.dst_cid = 7;
	tx(fx, &w, NULL, 0);
	/* A header cut at 40 bytes. */
	gpa = galloc(fx, HDR_LEN);
	hdr_put(gp(fx, gpa), &w);
	post(fx, VSOCK_QUEUE_TX, (struct virtio_driver_seg[]){ { gpa, HDR_LEN - 4 } }, 1);
	assert_false(rx(fx, &p, data, sizeof(data), 300));
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_header_split_over_descriptors_is_read_whole(void **state)
{
	struct fx *fx = *state;
	struct pkt p, w = gpkt(11, 12, VIRTIO_VSOCK_OP_REQUEST);
	uint64_t gpa = galloc(fx, HDR_LEN);
	uint16_t before;

	vsock_up(fx);
	hdr_put(gp(fx, gpa), &w);
	before = used_idx(fx, VSOCK_QUEUE_TX);
	post(fx, VSOCK_QUEUE_TX,
	     (struct virtio_driver_seg[]){
		     { gpa, 3 }, { gpa + 3, 20 }, { gpa + 23, HDR_LEN - 23 } },
	     3);
	assert_true(wait_used(fx, VSOCK_QUEUE_TX, before + 1, DEADLINE_MS));
	/* No listener at PATH_12: the request, read whole, is refused for its ports. */
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(p.src_port, 12);
	assert_int_equal(p.dst_port, 11);
}

static void test_packet_for_no_connection_gets_rst_but_rst_gets_nothing(void **state)
{
	struct fx *fx = *state;
	uint8_t data[RX_BUF];
	struct pkt p, w = gpkt(21, 22, VIRTIO_VSOCK_OP_RW);

	vsock_up(fx);
	w.len = 3;
	tx(fx, &w, "abc", 3);
	rx_expect(fx, &p, VIRTIO_VSOCK_OP_RST);
	w = gpkt(21, 22, VIRTIO_VSOCK_OP_RST);
	tx(fx, &w, NULL, 0);
	assert_false(rx(fx, &p, data, sizeof(data), 300));
}

/* --- creation ------------------------------------------------------------------------------- */

static void test_reserved_cids_are_refused_with_one_line(void **state)
{
	struct fx *fx = *state;
	struct vsock_options o = { .cid = 2, .socket = fx->path };
	char err[256] = "";

	assert_int_equal(virtio_vsock_create(&fx->vs, fx->vm, fx->bus, fx->irq, &o, err,
					     sizeof(err)),
			 -EINVAL);
	assert_null(fx->vs);
	assert_string_equal(err, "CID 2: a guest's CID is 3 to 4294967294");
}

static void test_socket_in_use_is_refused_and_left_alone(void **state)
{
	struct fx *fx = *state;
	struct vsock_options o = { .cid = 3, .socket = fx->path };
	char err[256] = "";
	int l = unix_listen(fx->path);

	assert_int_equal(virtio_vsock_create(&fx->vs, fx->vm, fx->bus, fx->irq, &o, err,
					     sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, "in use by another program"));
	assert_int_equal(access(fx->path, F_OK), 0);
	close(l);
}

/* --- vhost-vsock, on a /dev of the test's own without it ------------------------------------ */

static const char *isolation_failed;

/* A private mount namespace, made while the process has one thread (CLONE_NEWNS needs it). */
static void isolate(void)
{
	if (geteuid() != 0)
		isolation_failed = "not root";
	else if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		isolation_failed = "cannot make a private mount namespace";
}

static void test_vhost_without_dev_vhost_vsock_fails_create_with_its_reason(void **state)
{
	struct fx *fx = *state;
	struct vsock_options o = { .cid = 3 };
	char err[256] = "";

	if (isolation_failed) {
		print_message("(%s: skipped)\n", isolation_failed);
		skip();
	}
	assert_int_equal(mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755"), 0);
	assert_int_equal(virtio_vsock_create(&fx->vs, fx->vm, fx->bus, fx->irq, &o, err,
					     sizeof(err)),
			 -ENOENT);
	assert_int_equal(umount("/dev"), 0);
	assert_null(fx->vs);
	assert_string_equal(err, "/dev/vhost-vsock: No such file or directory (is the vhost_vsock "
				 "module loaded?)");
}

#define VTEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		VTEST(test_host_connect_reaches_guest_port_and_bytes_flow_both_ways),
		VTEST(test_host_connect_refused_by_guest_closes_the_client),
		VTEST(test_bad_connect_line_closes_the_client_and_asks_the_guest_nothing),
		VTEST(test_host_eof_reaches_guest_as_shutdown_without_a_kick),
		VTEST(test_host_data_waits_for_the_guests_credit),
		VTEST(test_guest_connect_reaches_listener_at_path_port),
		VTEST(test_guest_close_delivers_bytes_the_host_had_not_read_yet),
		VTEST(test_guest_connect_without_listener_gets_rst),
		VTEST(test_unknown_op_and_type_get_rst_and_the_device_goes_on),
		VTEST(test_len_past_the_chain_gets_rst_and_no_byte_reaches_the_host),
		VTEST(test_spoofed_cids_and_short_headers_are_dropped_unanswered),
		VTEST(test_header_split_over_descriptors_is_read_whole),
		VTEST(test_packet_for_no_connection_gets_rst_but_rst_gets_nothing),
		VTEST(test_reserved_cids_are_refused_with_one_line),
		VTEST(test_socket_in_use_is_refused_and_left_alone),
		VTEST(test_vhost_without_dev_vhost_vsock_fails_create_with_its_reason),
	};

	signal(SIGPIPE, SIG_IGN);
	isolate();
	return cmocka_run_group_tests_name("vsock", tests, NULL, NULL);
}
