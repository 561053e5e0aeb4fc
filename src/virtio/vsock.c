// SPDX-License-Identifier: MIT
/*
 * virtio-vsock (virtio 1.2 §5.10) and its two back ends (vsock.h). With vhost-vsock the kernel
 * serves the receive and transmit queues from DRIVER_OK to the reset (queue_offloaded). The
 * hybrid back end is nkvm's own end of the stream protocol (§5.10.6): the transmit queue's thread
 * acts on the guest's packets, and one thread of the device's polls the unix sockets and fills
 * the receive queue with control packets and data. One lock covers the connections.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "virtio/device.h"
#include "virtio/pci.h"
#include "virtio/vhost.h"
#include "sandbox/sandbox.h"
#include "virtio/vsock.h"
#include "virtio/vsock_pkt.h"

#define VHOST_VSOCK_PATH "/dev/vhost-vsock"
#define VSOCK_QUEUE_SIZE 128
#define F(bit) (1ULL << (bit))
#define VSOCK_FEATURES \
	(F(VIRTIO_F_VERSION_1) | F(VIRTIO_RING_F_EVENT_IDX) | F(VIRTIO_RING_F_INDIRECT_DESC))
/* Host ports of connections a host program opened through the socket: Firecracker's range. */
#define VSOCK_LOCAL_PORT_BASE (1U << 30)
/* "CONNECT 4294967295\n" with room to spare; a longer line is refused. */
#define VSOCK_LINE_MAX 32
/* RSTs waiting for a receive buffer; one more is dropped (the guest times the connection out). */
#define VSOCK_RST_QUEUE 64
/* The out buffer holds what the guest may send (our buf_alloc) and nothing more. */
#define VSOCK_RING_SIZE VSOCK_CONN_BUF

enum conn_state {
	CONN_FREE,
	CONN_LINE, /* a host client, its CONNECT line not read yet */
	CONN_REQUEST, /* REQUEST sent to the guest, RESPONSE awaited */
	CONN_OPEN,
};

struct vsock_conn {
	enum conn_state state;
	int fd;
	uint32_t local_port, peer_port; /* host side, guest side */
	char line[VSOCK_LINE_MAX]; /* CONN_LINE: the CONNECT line so far */
	unsigned int line_len;
	/* §5.10.6.3 credit: what the guest can take, and what it may still send us. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt; /* tx_cnt: bytes sent to the guest */
	uint32_t fwd_cnt, fwd_told; /* bytes passed to the socket; fwd_cnt last told the guest */
	/* Guest bytes not yet written to the socket: a ring of VSOCK_RING_SIZE. */
	uint8_t *buf;
	uint32_t head, len;
	bool host_eof; /* the host program sent its last byte */
	bool guest_no_send, guest_no_rcv; /* SHUTDOWN flags the guest sent (§5.10.6.5) */
	bool shut_wr_done;
	/* Control packets to send, as 1 << op (REQUEST, RESPONSE, CREDIT_UPDATE, SHUTDOWN). */
	unsigned int pending;
};

struct vsock_rst {
	uint32_t local_port, peer_port;
};

struct virtio_vsock {
	struct virtio_device vdev;
	struct virtio_pci *transport;
	struct virtio_vsock_config config;
	uint64_t cid;
	/* vhost-vsock */
	int vhost_fd;
	uint64_t vhost_features;
	bool vhost_on;
	/* The hybrid back end. */
	char *path;
	int listen_fd, wake_fd;
	bool bound; /* path is our socket, to remove at the end */
	/*
	 * The hybrid back end's thread, made with the device (on the main thread, during set-up)
	 * so that it runs under its own filter, never under the transport worker's that starts
	 * the device: it parks until vsock_start sets run, serves until stop, and parks again
	 * (run cleared) for the next start after a reset; quit ends it.
	 */
	pthread_t thread;
	bool thread_made, thread_running;
	pthread_mutex_t lock;
	pthread_cond_t park_cond;
	bool stop, run, quit;
	struct vsock_conn conns[VSOCK_MAX_CONNS];
	struct vsock_rst rsts[VSOCK_RST_QUEUE];
	unsigned int nr_rsts;
	uint32_t next_local_port;
	unsigned int rr; /* where the next data round starts, for fairness */
	bool rx_held; /* rx holds a receive chain taken and not used yet */
	struct virtq_chain rx, tx;
	uint8_t scratch[VSOCK_MAX_PAYLOAD];
};

/* --- connections ---------------------------------------------------------------------------- */

/*
 * The back end's calls, on the transmit queue's thread (a guest's connect: a socket to a
 * socket=PATH_PORT listener, AF_UNIX only; its bytes, its shutdown) and on the device's own
 * thread (accepting host connections, their bytes both ways, and waking on its eventfd).
 */
#define VSOCK_BACKEND_RULES                                                                  \
	VIRTIO_QUEUE_RULES, SANDBOX_ALLOW_ARG(socket, 0, AF_UNIX), SANDBOX_ALLOW(connect),   \
		SANDBOX_ALLOW(accept4), SANDBOX_ALLOW(sendmsg), SANDBOX_ALLOW(sendto),       \
		SANDBOX_ALLOW(recvfrom), SANDBOX_ALLOW(readv), SANDBOX_ALLOW(shutdown),      \
		SANDBOX_ALLOW(close),                                                        \
		SANDBOX_ALLOW_THREAD_BASICS

static const struct sandbox_rule vsock_rules[] = {
	VSOCK_BACKEND_RULES,
};

const struct sandbox_filter vsock_queue_filter = {
	.thread = "vsock-queue",
	.rules = vsock_rules,
	.nr_rules = ARRAY_SIZE(vsock_rules),
};

const struct sandbox_filter vsock_filter = {
	.thread = "vsock",
	.rules = vsock_rules,
	.nr_rules = ARRAY_SIZE(vsock_rules),
};

static struct vsock_conn *conn_find(struct virtio_vsock *vs, uint32_t local, uint32_t peer)
{
	for (unsigned int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &vs->conns[i];

		if ((c->state == CONN_REQUEST || c->state == CONN_OPEN) && c->local_port == local &&
		    c->peer_port == peer)
			return c;
	}
	return NULL;
}

static struct vsock_conn *conn_alloc(struct virtio_vsock *vs, int fd, enum conn_state state)
{
	for (unsigned int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = &vs->conns[i];

		if (c->state != CONN_FREE)
			continue;
		*c = (struct vsock_conn){ .state = state, .fd = fd };
		return c;
	}
	return NULL;
}

static unsigned int conns_used(struct virtio_vsock *vs)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < VSOCK_MAX_CONNS; i++)
		n += vs->conns[i].state != CONN_FREE;
	return n;
}

static void conn_free(struct vsock_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	*c = (struct vsock_conn){ .state = CONN_FREE, .fd = -1 };
}

static void rst_queue(struct virtio_vsock *vs, uint32_t local, uint32_t peer)
{
	if (vs->nr_rsts < VSOCK_RST_QUEUE)
		vs->rsts[vs->nr_rsts++] = (struct vsock_rst){ local, peer };
}

/* Ends a connection both ways: an RST to the guest, the host program's socket closed. */
static void conn_reset(struct virtio_vsock *vs, struct vsock_conn *c)
{
	if (c->state == CONN_REQUEST || c->state == CONN_OPEN)
		rst_queue(vs, c->local_port, c->peer_port);
	conn_free(c);
}

/* §5.10.6.3: what the guest can still receive: buf_alloc - (tx_cnt - fwd_cnt), never negative. */
static uint32_t conn_peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* Writes what the guest sent to the host program, as far as its socket takes it. */
static void conn_flush(struct virtio_vsock *vs, struct vsock_conn *c)
{
	while (c->len) {
		uint32_t first = VSOCK_RING_SIZE - c->head < c->len ? VSOCK_RING_SIZE - c->head :
								      c->len;
		struct iovec iov[2] = {
			{ c->buf + c->head, first },
			{ c->buf, c->len - first },
		};
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = c->len > first ? 2 : 1 };
		ssize_t n = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_reset(vs, c);
			return;
		}
		c->head = (c->head + n) % VSOCK_RING_SIZE;
		c->len -= n;
		c->fwd_cnt += n;
	}
	/*
	 * Tell the guest about the room made before it runs out of credit (§5.10.6.3: the device
	 * sends CREDIT_UPDATE as its buffer frees); every packet carries fwd_cnt as well.
	 */
	if (c->fwd_cnt - c->fwd_told >= VSOCK_CONN_BUF / 4)
		c->pending |= 1U << VIRTIO_VSOCK_OP_CREDIT_UPDATE;
	if (c->guest_no_send && !c->shut_wr_done) {
		shutdown(c->fd, SHUT_WR);
		c->shut_wr_done = true;
	}
	/*
	 * Both directions done, the guest's bytes all passed on: the connection ends (§5.10.6.5,
	 * the side closing last sends RST). A guest that will receive no more counts as done.
	 */
	if (c->guest_no_send && (c->host_eof || c->guest_no_rcv))
		conn_reset(vs, c);
}

/* --- the guest's packets (transmit queue) --------------------------------------------------- */

/* A guest's REQUEST to host port P: a connection to the listener at PATH_P, or RST. */
static void vsock_guest_connect(struct virtio_vsock *vs, const struct vsock_pkt *p)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct vsock_conn *c;
	int fd;

	if (conn_find(vs, p->dst_port, p->src_port) || conns_used(vs) >= VSOCK_MAX_CONNS)
		goto refuse;
	if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", vs->path, p->dst_port) >=
	    sizeof(a.sun_path))
		goto refuse;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto refuse;
	/* A unix stream connect completes at once, or fails (EAGAIN: the listener's backlog). */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		goto refuse;
	}
	c = conn_alloc(vs, fd, CONN_OPEN);
	c->buf = malloc(VSOCK_RING_SIZE);
	if (!c->buf) {
		conn_free(c);
		goto refuse;
	}
	c->local_port = p->dst_port;
	c->peer_port = p->src_port;
	c->peer_buf_alloc = p->buf_alloc;
	c->peer_fwd_cnt = p->fwd_cnt;
	c->pending |= 1U << VIRTIO_VSOCK_OP_RESPONSE;
	return;
refuse:
	rst_queue(vs, p->dst_port, p->src_port);
}

/* The guest's RESPONSE to a host program's CONNECT: "OK HOSTPORT\n", and the stream is open. */
static void vsock_guest_accepted(struct virtio_vsock *vs, struct vsock_conn *c)
{
	char ok[VSOCK_LINE_MAX];
	int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);

	c->buf = malloc(VSOCK_RING_SIZE);
	/* Nothing went to this fresh socket before: its buffer takes the line whole. */
	if (!c->buf || send(c->fd, ok, n, MSG_DONTWAIT | MSG_NOSIGNAL) != n) {
		conn_reset(vs, c);
		return;
	}
	c->state = CONN_OPEN;
}

static void vsock_guest_packet(struct virtio_vsock *vs, const struct virtq_chain *chain)
{
	struct vsock_pkt p;
	struct vsock_conn *c;
	int r = vsock_pkt_parse(chain, vs->cid, &p);

	if (r == -EBADMSG || r == -EPERM)
		return; /* nothing to answer, or not the guest's to send */
	if (r < 0) {
		/* §5.10.6.4: a malformed or unknown packet is answered with RST; it ends its
		 * connection, if it had one. */
		c = conn_find(vs, p.dst_port, p.src_port);
		if (c)
			conn_reset(vs, c);
		else if (p.op != VIRTIO_VSOCK_OP_RST)
			rst_queue(vs, p.dst_port, p.src_port);
		return;
	}
	if (p.op == VIRTIO_VSOCK_OP_REQUEST) {
		vsock_guest_connect(vs, &p);
		return;
	}
	c = conn_find(vs, p.dst_port, p.src_port);
	if (!c) {
		/* §5.10.6.4: a packet for no connection gets RST, except an RST. */
		if (p.op != VIRTIO_VSOCK_OP_RST)
			rst_queue(vs, p.dst_port, p.src_port);
		return;
	}
	/* §5.10.6.3: every packet carries the sender's current credit. */
	c->peer_buf_alloc = p.buf_alloc;
	c->peer_fwd_cnt = p.fwd_cnt;
	if (c->state == CONN_REQUEST) {
		if (p.op == VIRTIO_VSOCK_OP_RESPONSE)
			vsock_guest_accepted(vs, c);
		else if (p.op == VIRTIO_VSOCK_OP_RST)
			conn_free(c);
		else
			conn_reset(vs, c);
		return;
	}
	switch (p.op) {
	case VIRTIO_VSOCK_OP_RW:
		/* The guest may send only what our buffer has room for (buf_alloc - in flight). */
		if (c->guest_no_send || p.len > VSOCK_RING_SIZE - c->len) {
			conn_reset(vs, c);
			return;
		}
		vsock_pkt_copy_payload(chain, &p, vs->scratch);
		for (uint32_t done = 0; done < p.len;) {
			uint32_t tail = (c->head + c->len) % VSOCK_RING_SIZE;
			uint32_t n = VSOCK_RING_SIZE - tail;

			if (n > p.len - done)
				n = p.len - done;
			memcpy(c->buf + tail, vs->scratch + done, n);
			c->len += n;
			done += n;
		}
		conn_flush(vs, c);
		break;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		break; /* the credit was taken above; the poller may now send more */
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->pending |= 1U << VIRTIO_VSOCK_OP_CREDIT_UPDATE;
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		c->guest_no_rcv |= !!(p.flags & VIRTIO_VSOCK_SHUTDOWN_RCV);
		c->guest_no_send |= !!(p.flags & VIRTIO_VSOCK_SHUTDOWN_SEND);
		/*
		 * Both directions shut (Linux's close() sends both at once): the connection is over
		 * and we answer RST (§5.10.6.5), but only once the bytes it sent before reached the
		 * host program, as Linux keeps them for its reader (virtio_transport_common.c,
		 * OP_SHUTDOWN). conn_flush resets it when its buffer is empty.
		 */
		conn_flush(vs, c);
		break;
	case VIRTIO_VSOCK_OP_RST:
		conn_free(c);
		break;
	default: /* RESPONSE or REQUEST on an open connection */
		conn_reset(vs, c);
		break;
	}
}

/* --- the poller: host sockets into the receive queue --------------------------------------- */

/* A receive chain in vs->rx, taken now or held from before; false when the guest gave none. */
static bool rx_take(struct virtio_vsock *vs)
{
	while (!vs->rx_held) {
		if (virtio_pop(&vs->vdev, VSOCK_QUEUE_RX, &vs->rx) <= 0)
			return false;
		if (vs->rx.in_len >= VSOCK_HDR_LEN && vs->rx.nr_out == 0) {
			vs->rx_held = true;
			break;
		}
		/* A buffer the device cannot write a header into: given back unused. */
		virtio_push(&vs->vdev, VSOCK_QUEUE_RX, vs->rx.head, 0);
	}
	return true;
}

/* Sends a packet of op to the guest in the held receive chain, len payload bytes already in it. */
static void rx_send(struct virtio_vsock *vs, uint32_t local, uint32_t peer, uint16_t op,
		    uint32_t flags, uint32_t len, const struct vsock_conn *c)
{
	struct vsock_pkt p = {
		.src_cid = VMADDR_CID_HOST,
		.dst_cid = vs->cid,
		.src_port = local,
		.dst_port = peer,
		.len = len,
		.type = VIRTIO_VSOCK_TYPE_STREAM,
		.op = op,
		.flags = flags,
		.buf_alloc = c ? VSOCK_CONN_BUF : 0,
		.fwd_cnt = c ? c->fwd_cnt : 0,
	};

	vsock_rx_put_hdr(&vs->rx, &p);
	vs->rx_held = false;
	virtio_push(&vs->vdev, VSOCK_QUEUE_RX, vs->rx.head, VSOCK_HDR_LEN + len);
}

/* One control packet a connection waits to send; false when it has none or no buffer is there. */
static bool conn_send_control(struct virtio_vsock *vs, struct vsock_conn *c)
{
	static const uint16_t order[] = { VIRTIO_VSOCK_OP_REQUEST, VIRTIO_VSOCK_OP_RESPONSE,
					  VIRTIO_VSOCK_OP_CREDIT_UPDATE, VIRTIO_VSOCK_OP_SHUTDOWN };

	for (unsigned int i = 0; i < ARRAY_SIZE(order); i++) {
		uint16_t op = order[i];

		if (!(c->pending & (1U << op)))
			continue;
		if (!rx_take(vs))
			return false;
		c->pending &= ~(1U << op);
		if (op == VIRTIO_VSOCK_OP_CREDIT_UPDATE || op == VIRTIO_VSOCK_OP_RESPONSE)
			c->fwd_told = c->fwd_cnt;
		/* A host program's end of file: it sends no more, and may still receive. */
		rx_send(vs, c->local_port, c->peer_port, op,
			op == VIRTIO_VSOCK_OP_SHUTDOWN ? VIRTIO_VSOCK_SHUTDOWN_SEND : 0, 0, c);
		return true;
	}
	return false;
}

/* Reads what the host program sent into receive chains, within the guest's credit. */
static void conn_read(struct virtio_vsock *vs, struct vsock_conn *c)
{
	while (c->state == CONN_OPEN && !c->host_eof && !c->guest_no_rcv) {
		uint32_t credit = conn_peer_credit(c);
		struct iovec iov[16];
		unsigned int n;
		ssize_t got;

		if (!credit || !rx_take(vs))
			return;
		n = vsock_rx_payload_iov(&vs->rx,
					 credit < VSOCK_MAX_PAYLOAD ? credit : VSOCK_MAX_PAYLOAD,
					 iov, ARRAY_SIZE(iov));
		if (!n) {
			/* Room for a header only: no use for data; given back empty. */
			vs->rx_held = false;
			virtio_push(&vs->vdev, VSOCK_QUEUE_RX, vs->rx.head, 0);
			continue;
		}
		got = readv(c->fd, iov, n);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_reset(vs, c);
			return;
		}
		if (got == 0) {
			c->host_eof = true;
			c->pending |= 1U << VIRTIO_VSOCK_OP_SHUTDOWN;
			if (c->guest_no_send && !c->len)
				conn_reset(vs, c);
			return;
		}
		c->tx_cnt += got;
		c->fwd_told = c->fwd_cnt;
		rx_send(vs, c->local_port, c->peer_port, VIRTIO_VSOCK_OP_RW, 0, got, c);
	}
}

/* A host client's "CONNECT PORT\n": a REQUEST to the guest's PORT from a fresh host port. */
static void conn_read_line(struct virtio_vsock *vs, struct vsock_conn *c)
{
	unsigned long port;
	char *end;
	ssize_t n;

	/* A byte at a time: what follows the line is the stream's, for after OK. */
	for (;;) {
		n = recv(c->fd, c->line + c->line_len, 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0 || c->line_len == VSOCK_LINE_MAX - 1) {
			conn_free(c);
			return;
		}
		if (c->line[c->line_len] == '\n')
			break;
		c->line_len++;
	}
	c->line[c->line_len] = '\0';
	errno = 0;
	if (strncmp(c->line, "CONNECT ", 8) || c->line[8] < '0' || c->line[8] > '9' ||
	    (port = strtoul(c->line + 8, &end, 10), *end || errno || port > UINT32_MAX)) {
		conn_free(c);
		return;
	}
	do {
		c->local_port = vs->next_local_port++;
		if (vs->next_local_port < VSOCK_LOCAL_PORT_BASE)
			vs->next_local_port = VSOCK_LOCAL_PORT_BASE;
	} while (conn_find(vs, c->local_port, port));
	c->peer_port = port;
	c->state = CONN_REQUEST;
	c->pending |= 1U << VIRTIO_VSOCK_OP_REQUEST;
}

static void vsock_accept(struct virtio_vsock *vs)
{
	while (conns_used(vs) < VSOCK_MAX_CONNS) {
		int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		conn_alloc(vs, fd, CONN_LINE);
	}
}

/* Everything that can go on without waiting: RSTs, control packets, data, lines, new clients. */
static void vsock_pump(struct virtio_vsock *vs)
{
	vsock_accept(vs);
	for (unsigned int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i].state == CONN_LINE)
			conn_read_line(vs, &vs->conns[i]);
	while (vs->nr_rsts && rx_take(vs)) {
		struct vsock_rst r = vs->rsts[0];

		memmove(vs->rsts, vs->rsts + 1, --vs->nr_rsts * sizeof(vs->rsts[0]));
		rx_send(vs, r.local_port, r.peer_port, VIRTIO_VSOCK_OP_RST, 0, 0, NULL);
	}
	for (unsigned int i = 0; i < VSOCK_MAX_CONNS; i++)
		while (conn_send_control(vs, &vs->conns[i]))
			;
	for (unsigned int k = 0; k < VSOCK_MAX_CONNS; k++) {
		struct vsock_conn *c = &vs->conns[(vs->rr + k) % VSOCK_MAX_CONNS];

		if (c->state == CONN_OPEN && c->len)
			conn_flush(vs, c);
		if (c->state == CONN_OPEN)
			conn_read(vs, c);
	}
	vs->rr = (vs->rr + 1) % VSOCK_MAX_CONNS;
}

/* What a connection waits for: nothing when it can go on as soon as the guest gives buffers. */
static short conn_events(struct virtio_vsock *vs, const struct vsock_conn *c)
{
	short ev = 0;

	if (c->state == CONN_LINE)
		return POLLIN;
	if (c->state != CONN_OPEN)
		return 0;
	if (c->len)
		ev |= POLLOUT;
	if (vs->rx_held && !c->host_eof && !c->guest_no_rcv && conn_peer_credit(c))
		ev |= POLLIN;
	return ev;
}

/*
 * Whether a pump left RSTs or control packets behind that a held receive buffer can carry now:
 * its data step queues them (an RST when a flush ends a connection, SHUTDOWN at a host
 * program's end of file) after its control step ran, and no event of the guest's may follow
 * (Linux refills its receive ring only when half of it is used).
 */
static bool vsock_control_ready(struct virtio_vsock *vs)
{
	bool any = vs->nr_rsts;

	for (unsigned int i = 0; i < VSOCK_MAX_CONNS && !any; i++)
		any = vs->conns[i].state != CONN_FREE && vs->conns[i].pending;
	return any && rx_take(vs);
}

/* The hybrid back end's work from a start to a reset (vs->stop). Called with vs->lock held. */
static void vsock_serve_locked(struct virtio_vsock *vs)
{
	struct pollfd pfd[2 + VSOCK_MAX_CONNS];
	uint64_t count;
	int timeout;

	while (!vs->stop) {
		vsock_pump(vs);
		pfd[0] = (struct pollfd){ .fd = vs->wake_fd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = conns_used(vs) < VSOCK_MAX_CONNS ? vs->listen_fd :
										   -1,
					  .events = POLLIN };
		for (unsigned int i = 0; i < VSOCK_MAX_CONNS; i++) {
			short ev = conn_events(vs, &vs->conns[i]);

			/* poll reports a hang-up even for no events: skip the fd instead. */
			pfd[2 + i] =
				(struct pollfd){ .fd = ev ? vs->conns[i].fd : -1, .events = ev };
		}
		timeout = vsock_control_ready(vs) ? 0 : -1;
		pthread_mutex_unlock(&vs->lock);
		if (poll(pfd, ARRAY_SIZE(pfd), timeout) > 0 && (pfd[0].revents & POLLIN) &&
		    read(vs->wake_fd, &count, sizeof(count)) < 0) {
			/* EAGAIN: another reader took it; nothing else can fail on our eventfd. */
		}
		pthread_mutex_lock(&vs->lock);
	}
}

static void *vsock_thread(void *arg)
{
	struct virtio_vsock *vs = arg;
	int err = sandbox_enter(&vsock_filter);

	if (err)
		nkvm_err("%s: cannot enter the sandbox: %s", vs->vdev.name, strerror(-err));
#ifdef NKVM_TEST_HOOKS
	if (!err && sandbox_test_hook("vsock", "forbidden"))
		sandbox_test_forbidden_call();
#endif
	pthread_mutex_lock(&vs->lock);
	for (;;) {
		while (!vs->run && !vs->quit)
			pthread_cond_wait(&vs->park_cond, &vs->lock);
		if (vs->quit)
			break;
		/* Unconfined, it touches no guest packet. */
		if (!err)
			vsock_serve_locked(vs);
		vs->run = false;
		pthread_cond_broadcast(&vs->park_cond);
	}
	pthread_mutex_unlock(&vs->lock);
	return NULL;
}

/* --- device ops ----------------------------------------------------------------------------- */

static void vsock_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)vdev;
	int r;

	/* The event queue's buffers wait for an event nkvm never sends (TRANSPORT_RESET). */
	if (q == VSOCK_QUEUE_EVENT || vs->vhost_fd >= 0)
		return;
	if (q == VSOCK_QUEUE_TX) {
		pthread_mutex_lock(&vs->lock);
		while ((r = virtio_pop(vdev, q, &vs->tx)) > 0) {
			vsock_guest_packet(vs, &vs->tx);
			virtio_push(vdev, q, vs->tx.head, 0);
		}
		pthread_mutex_unlock(&vs->lock);
	}
	/* New receive buffers, or packets to answer: the poller's turn. */
	eventfd_signal(vs->wake_fd);
}

static void vsock_config_read(struct virtio_device *vdev, uint64_t off, void *data,
			      unsigned int len)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)vdev;

	memcpy(data, (uint8_t *)&vs->config + off, len);
}

static int vsock_start_vhost(struct virtio_vsock *vs)
{
	struct virtio_device *vdev = &vs->vdev;
	uint64_t features = vdev->features & vs->vhost_features;
	int running = 1, r;

	r = vhost_ioctl(vs->vhost_fd, VHOST_SET_FEATURES, &features);
	if (!r)
		r = vhost_set_mem_table(vs->vhost_fd, virtio_memory(vdev));
	/* vhost-vsock's rings are virtio's (drivers/vhost/vsock.c: VSOCK_VQ_RX 0, VSOCK_VQ_TX 1). */
	for (unsigned int q = VSOCK_QUEUE_RX; !r && q <= VSOCK_QUEUE_TX; q++)
		r = vhost_set_vring(vs->vhost_fd, vdev, q, q);
	if (!r)
		r = vhost_ioctl(vs->vhost_fd, VHOST_VSOCK_SET_RUNNING, &running);
	if (r) {
		nkvm_err("%s: vhost-vsock could not start: %s", vdev->name, strerror(-r));
		return r;
	}
	vs->vhost_on = true;
	return 0;
}

static int vsock_start(struct virtio_device *vdev)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)vdev;

	if (vs->vhost_fd >= 0)
		return vsock_start_vhost(vs);
	if (!vs->thread_made)
		return -ESRCH;
	pthread_mutex_lock(&vs->lock);
	vs->stop = false;
	vs->run = true;
	pthread_cond_broadcast(&vs->park_cond);
	pthread_mutex_unlock(&vs->lock);
	vs->thread_running = true;
	return 0;
}

static bool vsock_queue_offloaded(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)vdev;

	return vs->vhost_on && q != VSOCK_QUEUE_EVENT;
}

/* The driver forgets every connection at a reset (§5.10.6.8): so does nkvm. */
static void vsock_reset(struct virtio_device *vdev)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)vdev;
	int running = 0;

	if (vs->vhost_on) {
		vhost_ioctl(vs->vhost_fd, VHOST_VSOCK_SET_RUNNING, &running);
		vs->vhost_on = false;
	}
	if (vs->thread_running) {
		pthread_mutex_lock(&vs->lock);
		vs->stop = true;
		pthread_mutex_unlock(&vs->lock);
		eventfd_signal(vs->wake_fd);
		pthread_mutex_lock(&vs->lock);
		while (vs->run)
			pthread_cond_wait(&vs->park_cond, &vs->lock);
		pthread_mutex_unlock(&vs->lock);
		vs->thread_running = false;
	}
	for (unsigned int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (vs->conns[i].state != CONN_FREE)
			conn_free(&vs->conns[i]);
	vs->nr_rsts = 0;
	vs->rx_held = false;
}

static const struct virtio_device_ops vsock_ops = {
	.queue_kick = vsock_queue_kick,
	.config_read = vsock_config_read,
	.start = vsock_start,
	.reset = vsock_reset,
	.queue_offloaded = vsock_queue_offloaded,
};

/* --- creation ------------------------------------------------------------------------------- */

static int vsock_open_vhost(struct virtio_vsock *vs, char *err, size_t errlen)
{
	int r;

	vs->vhost_fd = open(VHOST_VSOCK_PATH, O_RDWR | O_CLOEXEC);
	if (vs->vhost_fd < 0) {
		r = -errno;
		return err_set(err, errlen, r, VHOST_VSOCK_PATH ": %s%s", strerror(-r),
			       r == -ENOENT ? " (is the vhost_vsock module loaded?)" : "");
	}
	r = vhost_ioctl(vs->vhost_fd, VHOST_SET_OWNER, NULL);
	if (r)
		return err_set(err, errlen, r, VHOST_VSOCK_PATH ": VHOST_SET_OWNER: %s",
			       strerror(-r));
	r = vhost_ioctl(vs->vhost_fd, VHOST_GET_FEATURES, &vs->vhost_features);
	if (r)
		return err_set(err, errlen, r, VHOST_VSOCK_PATH ": VHOST_GET_FEATURES: %s",
			       strerror(-r));
	if (!(vs->vhost_features & F(VIRTIO_F_VERSION_1)))
		return err_set(err, errlen, -ENOTSUP,
			       VHOST_VSOCK_PATH
			       ": the kernel's vhost-vsock lacks VIRTIO_F_VERSION_1");
	/* Now, not at DRIVER_OK: a CID another guest holds is a start-up error, not a late one. */
	r = vhost_ioctl(vs->vhost_fd, VHOST_VSOCK_SET_GUEST_CID, &vs->cid);
	if (r)
		return err_set(err, errlen, r, "CID %llu: %s", (unsigned long long)vs->cid,
			       r == -EADDRINUSE ? "in use by another guest" : strerror(-r));
	vs->vdev.host_features = VSOCK_FEATURES & vs->vhost_features;
	return 0;
}

/* Binds and listens on path; a stale socket there (no listener behind it) is replaced. */
static int vsock_listen(struct virtio_vsock *vs, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	int probe, r;
	bool live;

	/* PATH_P must fit as well as PATH: "_" and up to 10 digits. */
	if (strlen(path) + 11 >= sizeof(a.sun_path))
		return err_set(err, errlen, -ENAMETOOLONG,
			       "%s: a unix socket path is at most %zu characters here (with _PORT)",
			       path, sizeof(a.sun_path) - 12);
	strcpy(a.sun_path, path);
	vs->path = strdup(path);
	vs->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!vs->path || vs->listen_fd < 0)
		return err_set(err, errlen, -errno, "%s: %s", path, strerror(errno));
	r = bind(vs->listen_fd, (struct sockaddr *)&a, sizeof(a));
	if (r < 0 && errno == EADDRINUSE) {
		if (lstat(path, &st) || !S_ISSOCK(st.st_mode))
			return err_set(err, errlen, -EEXIST, "%s: exists and is not a socket",
				       path);
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		live = probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (probe >= 0)
			close(probe);
		if (live)
			return err_set(err, errlen, -EADDRINUSE, "%s: in use by another program",
				       path);
		unlink(path);
		r = bind(vs->listen_fd, (struct sockaddr *)&a, sizeof(a));
	}
	if (r < 0)
		return err_set(err, errlen, -errno, "%s: cannot bind: %s", path, strerror(errno));
	vs->bound = true;
	if (listen(vs->listen_fd, VSOCK_MAX_CONNS) < 0)
		return err_set(err, errlen, -errno, "%s: cannot listen: %s", path, strerror(errno));
	return 0;
}

int virtio_vsock_create(struct virtio_vsock **out, struct vm *vm, struct pci_bus *bus,
			struct irq_routing *irq, const struct vsock_options *o, char *err,
			size_t errlen)
{
	struct virtio_vsock *vs;
	int r;

	*out = NULL;
	/* §5.10.4: 0, 1 and 2 are reserved (the hypervisor, local, the host); 2^32 - 1 is ANY. */
	if (o->cid < VSOCK_MIN_GUEST_CID || o->cid >= VMADDR_CID_ANY)
		return err_set(err, errlen, -EINVAL, "CID %llu: a guest's CID is 3 to %u",
			       (unsigned long long)o->cid, VMADDR_CID_ANY - 1);
	vs = calloc(1, sizeof(*vs));
	if (!vs)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	vs->vhost_fd = vs->listen_fd = vs->wake_fd = -1;
	vs->cid = o->cid;
	vs->config.guest_cid = htole64(o->cid);
	vs->next_local_port = VSOCK_LOCAL_PORT_BASE;
	for (unsigned int i = 0; i < VSOCK_MAX_CONNS; i++)
		vs->conns[i].fd = -1;
	pthread_mutex_init(&vs->lock, NULL);
	pthread_cond_init(&vs->park_cond, NULL);
	vs->vdev = (struct virtio_device){
		.ops = &vsock_ops,
		.queue_filter = &vsock_queue_filter,
		.name = "virtio-vsock",
		.device_id = VIRTIO_ID_VSOCK,
		.host_features = VSOCK_FEATURES,
		.nr_queues = VSOCK_QUEUES,
		.queue_max_size = VSOCK_QUEUE_SIZE,
		.config_size = sizeof(vs->config),
	};
	if (o->socket)
		r = vsock_listen(vs, o->socket, err, errlen);
	else
		r = vsock_open_vhost(vs, err, errlen);
	if (!r) {
		vs->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vs->wake_fd < 0)
			r = err_set(err, errlen, -errno, "eventfd: %s", strerror(errno));
	}
	if (!r && vs->vhost_fd < 0) {
		r = -pthread_create(&vs->thread, NULL, vsock_thread, vs);
		vs->thread_made = !r;
		if (r)
			err_set(err, errlen, r, "cannot start its thread: %s", strerror(-r));
	}
	if (!r) {
		r = virtio_pci_create(&vs->transport, vm, bus, irq, &vs->vdev);
		if (r)
			err_set(err, errlen, r, "cannot create the virtio-vsock device: %s",
				strerror(-r));
	}
	if (r) {
		virtio_vsock_destroy(vs);
		return r;
	}
	*out = vs;
	return 0;
}

void virtio_vsock_destroy(struct virtio_vsock *vs)
{
	if (!vs)
		return;
	/* The transport resets the device (our reset stops the thread) and takes it off the bus. */
	virtio_pci_free(vs->transport);
	vsock_reset(&vs->vdev);
	if (vs->thread_made) {
		pthread_mutex_lock(&vs->lock);
		vs->quit = true;
		pthread_cond_broadcast(&vs->park_cond);
		pthread_mutex_unlock(&vs->lock);
		pthread_join(vs->thread, NULL);
	}
	if (vs->bound)
		unlink(vs->path);
	if (vs->listen_fd >= 0)
		close(vs->listen_fd);
	if (vs->vhost_fd >= 0)
		close(vs->vhost_fd);
	if (vs->wake_fd >= 0)
		close(vs->wake_fd);
	free(vs->path);
	pthread_mutex_destroy(&vs->lock);
	pthread_cond_destroy(&vs->park_cond);
	free(vs);
}
