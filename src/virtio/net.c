// SPDX-License-Identifier: MIT
/*
 * virtio 1.2 §5.1: the network device. Each RX and TX queue's I/O thread moves frames between
 * the guest's buffers and the back end's descriptor of its pair; the control queue's thread
 * answers commands. With vhost-net the kernel serves the pairs instead and the transport runs
 * no thread for them (queue_offloaded).
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <linux/if_ether.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hw/pci.h"
#include "lib/log.h"
#include "lib/util.h"
#include "net/backend.h"
#include "net/vhost_net.h"
#include "virtio/device.h"
#include "virtio/net.h"
#include "virtio/net_hdr.h"
#include "virtio/pci.h"
#include "sandbox/sandbox.h"

#define F(bit) (1ULL << (bit))
#define NET_QUEUE_SIZE 256
/* The largest frame taken from the back end, the 12-byte header included. */
#define NET_RX_MAX (NET_HDR_LEN + 65550)
/* Frames handled between two interrupts at most, so the guest starts on a long burst early. */
#define NET_BATCH 64
#define NET_DEFAULT_MTU 1500
#define NET_MIN_MTU 68 /* §5.1.4.1 */
_Static_assert(2 * NET_MAX_QUEUE_PAIRS + 1 <= VIRTIO_MAX_QUEUES, "queues of a NIC");

enum net_role { NET_NONE, NET_RX, NET_TX, NET_CTRL };

/* A virtqueue's side of the device, used by that queue's I/O thread only. */
struct net_queue {
	struct virtio_net *net;
	unsigned int index, pair;
	struct virtq_chain chain;
	bool held; /* chain was popped and waits: RX for a frame, TX for the back end's room */
	bool pushed; /* a batched push waits for virtio_notify */
	unsigned int batch;
	/* TX: the frame checked, and iov[1..] its bytes (iov[0]: the header's copy). */
	struct net_tx_frame frame;
	struct iovec iov[VIRTQ_MAX_SEGS + 1];
	uint8_t *linear; /* a frame of more segments than writev takes, gathered */
	/* RX. */
	int wake_fd; /* VQ_PAIRS_SET wakes the thread to look at its pair again */
	uint16_t size; /* the driver's queue size: at most this many buffers for one frame */
	bool want_fd; /* the guest has a buffer for the back end's next frame */
	bool broken; /* the back end's descriptor failed: no more reading until a reset */
	uint8_t *bounce; /* the frame read, NET_RX_MAX + 1 bytes */
	size_t frame_len, copied; /* a frame not yet wholly in the guest's buffers */
	unsigned int nused;
	struct vring_used_elem used[NET_QUEUE_SIZE]; /* its buffers, pushed once it is whole */
	uint8_t *num_buffers[2]; /* where the first buffer's num_buffers lies */
};

struct virtio_net {
	struct virtio_device vdev;
	struct virtio_pci *transport;
	struct net_backend *be;
	struct vhost_net *vn; /* NULL: the userspace data path only */
	char name[96];
	pthread_mutex_t config_lock;
	struct virtio_net_config config;
	/* Fixed from start to reset. */
	unsigned int pairs; /* pairs the driver may use: max_virtqueue_pairs with MQ, else 1 */
	unsigned int ctrl_queue; /* §5.1.2: 2 * pairs; UINT_MAX without CTRL_VQ */
	bool vhost_on[NET_MAX_QUEUE_PAIRS]; /* the kernel serves this pair */
	atomic_uint active_pairs; /* §5.1.6.5.5: the first active_pairs carry traffic */
	atomic_bool told_bad_tx, told_bad_rx;
	struct net_queue *queues;
	/* Counters: relaxed atomics, read while the device runs. */
	atomic_uint_least64_t rx_packets, rx_bytes, rx_dropped;
	atomic_uint_least64_t tx_packets, tx_bytes, tx_dropped, tx_errors;
};

/* virtio-net's queue threads: frames to and from the back end's descriptors (a TAP, or the user-mode stack's socket pair); no socket is made here. */
static const struct sandbox_rule net_queue_rules[] = {
	VIRTIO_QUEUE_RULES,
	SANDBOX_ALLOW(writev) /* a frame to the TAP */,
	SANDBOX_ALLOW(sendto) /* or to the user-mode stack's socket pair */,
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter net_queue_filter = {
	.thread = "net-queue",
	.rules = net_queue_rules,
	.nr_rules = ARRAY_SIZE(net_queue_rules),
};

static void count(atomic_uint_least64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static enum net_role net_role(struct virtio_net *net, unsigned int q)
{
	if (q < 2 * net->pairs)
		return q % 2 ? NET_TX : NET_RX;
	return q == net->ctrl_queue ? NET_CTRL : NET_NONE;
}

/* Pushes without an interrupt; net_flush sends one for the lot (and every NET_BATCH). */
static void net_give(struct virtio_net *net, struct net_queue *nq, uint16_t head, uint32_t len)
{
	virtio_push_batched(&net->vdev, nq->index, head, len);
	nq->pushed = true;
}

static void net_flush(struct virtio_net *net, struct net_queue *nq)
{
	if (nq->pushed) {
		nq->pushed = false;
		virtio_notify(&net->vdev, nq->index);
	}
	nq->batch = 0;
}

static void net_batch_step(struct virtio_net *net, struct net_queue *nq)
{
	if (++nq->batch >= NET_BATCH)
		net_flush(net, nq);
}

/* --- transmit ---------------------------------------------------------------------------- */

static const char *net_tx_why(int err)
{
	switch (err) {
	case -ENODATA:
		return "shorter than its header";
	case -EMSGSIZE:
		return "longer than 65550 bytes";
	case -ERANGE:
		return "checksum or header length past the frame";
	default:
		return "a header the negotiated features do not allow";
	}
}

/* One frame to the back end, with the header when it takes one. 0, or a negative errno. */
static int net_tx_send(struct virtio_net *net, struct net_queue *nq)
{
	struct iovec *iov = nq->iov;
	unsigned int cnt = nq->frame.iovcnt;
	ssize_t n;

	if (net->be->vnet_hdr) {
		/* The copy that was checked goes, not the guest's bytes, which it may change. */
		iov[0] = (struct iovec){ &nq->frame.hdr, NET_HDR_LEN };
		cnt++;
	} else {
		iov++;
	}
	if (cnt > IOV_MAX) {
		size_t at = 0;

		for (unsigned int i = 0; i < cnt; i++) {
			memcpy(nq->linear + at, iov[i].iov_base, iov[i].iov_len);
			at += iov[i].iov_len;
		}
		nq->iov[0] = (struct iovec){ nq->linear, at };
		iov = nq->iov;
		cnt = 1;
	}
	do {
		n = writev(net->be->fds[nq->pair], iov, cnt);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

static void net_tx_process(struct virtio_net *net, struct net_queue *nq)
{
	struct virtio_device *vdev = &net->vdev;
	int err;

	for (;;) {
		if (!nq->held) {
			if (virtio_pop(vdev, nq->index, &nq->chain) <= 0)
				break;
			err = net_tx_parse(&nq->chain, vdev->features, &nq->frame, nq->iov + 1);
			if (err) {
				/* §5.1.6.2.1 broken by the guest: the frame never reaches the host. */
				count(&net->tx_errors, 1);
				if (!atomic_exchange(&net->told_bad_tx, true))
					nkvm_err(
						"%s: queue %u: dropped a malformed frame (%s); more are "
						"only counted",
						net->name, nq->index, net_tx_why(err));
				net_give(net, nq, nq->chain.head, 0);
				net_batch_step(net, nq);
				continue;
			}
			nq->held = true;
		}
		err = net_tx_send(net, nq);
		if (err == -EAGAIN)
			break; /* the back end is full: net_tx_wait sleeps until it has room */
		if (err) {
			count(&net->tx_dropped, 1);
		} else {
			count(&net->tx_packets, 1);
			count(&net->tx_bytes, nq->frame.len);
		}
		nq->held = false;
		/* §5.1.6.2: a transmit buffer comes back with nothing written. */
		net_give(net, nq, nq->chain.head, 0);
		net_batch_step(net, nq);
	}
	net_flush(net, nq);
}

/*
 * Sleeps until a kick, or, with a frame the back end refused (EAGAIN), until it has room: no
 * spinning, and nothing dropped for a slow back end. A reset's kick ends the wait too.
 */
static int net_tx_wait(struct virtio_net *net, struct net_queue *nq, int kick_fd)
{
	struct pollfd p[2] = {
		{ .fd = kick_fd, .events = POLLIN },
		{ .fd = nq->held ? net->be->fds[nq->pair] : -1, .events = POLLOUT },
	};
	uint64_t n;

	if (poll(p, 2, -1) < 0)
		return 0;
	if (p[0].revents) {
		if (read(kick_fd, &n, sizeof(n)) < 0 && errno != EAGAIN && errno != EINTR)
			return 0;
		return 1;
	}
	if (p[1].revents)
		net_tx_process(net, nq);
	return 0;
}

/* --- receive ------------------------------------------------------------------------------ */

/* The byte at off of the segments iov[0..n); NULL past them. */
static uint8_t *net_iov_byte(const struct iovec *iov, unsigned int n, size_t off)
{
	for (unsigned int i = 0; i < n; i++) {
		if (off < iov[i].iov_len)
			return (uint8_t *)iov[i].iov_base + off;
		off -= iov[i].iov_len;
	}
	return NULL;
}

/* Takes the guest's next receive buffer into nq->chain, if it has one. */
static bool net_rx_take(struct virtio_net *net, struct net_queue *nq)
{
	if (!nq->held)
		nq->held = virtio_pop(&net->vdev, nq->index, &nq->chain) > 0;
	return nq->held;
}

static void net_rx_drop(struct virtio_net *net, struct net_queue *nq)
{
	/* Buffers already written to go back empty: the guest sees no frame in them. */
	for (unsigned int i = 0; i < nq->nused; i++)
		net_give(net, nq, nq->used[i].id, 0);
	count(&net->rx_dropped, 1);
	nq->frame_len = nq->copied = 0;
	nq->nused = 0;
}

/*
 * Copies the frame in nq->bounce into the guest's receive buffers (§5.1.6.4): one buffer that
 * holds it all, or with MRG_RXBUF as many as it takes, num_buffers in the first one's header.
 * Returns false when the guest must post more buffers first (the frame waits here).
 */
static bool net_rx_deliver(struct virtio_net *net, struct net_queue *nq)
{
	bool mrg = net->vdev.features & F(VIRTIO_NET_F_MRG_RXBUF);
	uint16_t nbufs;

	while (nq->copied < nq->frame_len) {
		struct virtq_chain *c = &nq->chain;
		const struct iovec *in;
		size_t want = nq->frame_len - nq->copied, n;

		if (nq->nused == ARRAY_SIZE(nq->used)) {
			net_rx_drop(net, nq);
			return true;
		}
		if (!net_rx_take(net, nq)) {
			/* The driver holds no buffer the frame could still go to: it never fits. */
			if (nq->nused && nq->nused >= nq->size) {
				net_rx_drop(net, nq);
				return true;
			}
			return false;
		}
		/* The writable segments of the chain just taken, not of the one before it. */
		in = &c->iov[c->nr_out];
		/*
		 * §5.1.6.3.1: each buffer is at least the header's size. One that is not is given
		 * back empty, and nothing is written to it.
		 */
		if (c->in_len < NET_HDR_LEN) {
			count(&net->rx_dropped, 1);
			if (!atomic_exchange(&net->told_bad_rx, true))
				nkvm_err("%s: queue %u: a receive buffer shorter than the 12-byte "
					 "header; returned unused",
					 net->name, nq->index);
			nq->held = false;
			net_give(net, nq, c->head, 0);
			continue;
		}
		if (!mrg && c->in_len < nq->frame_len) {
			/* Without MRG_RXBUF one buffer takes the whole frame: this one cannot. */
			net_rx_drop(net, nq);
			return true; /* the buffer stays held, for the next frame */
		}
		n = net_iov_from_buf(in, c->nr_in, 0, nq->bounce + nq->copied, want);
		if (!nq->nused) {
			size_t off = offsetof(struct virtio_net_hdr_v1, num_buffers);

			nq->num_buffers[0] = net_iov_byte(in, c->nr_in, off);
			nq->num_buffers[1] = net_iov_byte(in, c->nr_in, off + 1);
		}
		nq->used[nq->nused++] = (struct vring_used_elem){ c->head, n };
		nq->held = false;
		nq->copied += n;
	}
	/* §5.1.6.4: the buffers the frame took; 1 without MRG_RXBUF. */
	nbufs = htole16(nq->nused);
	memcpy(nq->num_buffers[0], &nbufs, 1);
	memcpy(nq->num_buffers[1], (uint8_t *)&nbufs + 1, 1);
	for (unsigned int i = 0; i < nq->nused; i++)
		net_give(net, nq, nq->used[i].id, nq->used[i].len);
	count(&net->rx_packets, 1);
	count(&net->rx_bytes, nq->frame_len - NET_HDR_LEN);
	nq->frame_len = nq->copied = 0;
	nq->nused = 0;
	return true;
}

/* Reads one frame from the back end into nq->bounce. 1, 0 (none now), or -1 (stop reading). */
static int net_rx_read(struct virtio_net *net, struct net_queue *nq)
{
	size_t skip = net->be->vnet_hdr ? 0 : NET_HDR_LEN;
	ssize_t n;

	do {
		n = read(net->be->fds[nq->pair], nq->bounce + skip, NET_RX_MAX + 1 - skip);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return 0;
	if (n <= 0) {
		/* A back end that failed or hung up would make poll spin: stop until a reset. */
		nkvm_err("%s: queue %u: reading the back end: %s; receiving stopped", net->name,
			 nq->index, n ? strerror(errno) : "it closed");
		nq->broken = true;
		return -1;
	}
	if (skip)
		memset(nq->bounce, 0, NET_HDR_LEN); /* a bare frame: nothing offloaded */
	n += skip;
	if ((size_t)n > NET_RX_MAX || (size_t)n < NET_HDR_LEN + ETH_HLEN) {
		count(&net->rx_dropped, 1);
		return 1;
	}
	nq->frame_len = n;
	nq->copied = 0;
	nq->nused = 0;
	return 1;
}

/*
 * Moves frames from the back end to the guest while it has buffers. A frame is read only with a
 * buffer in hand, so that with none the frame stays in the back end (no drop) and the thread
 * sleeps on kicks alone (want_fd false) until the guest posts more.
 */
static void net_rx_process(struct virtio_net *net, struct net_queue *nq)
{
	int r;

	nq->want_fd = false;
	for (;;) {
		if (!nq->frame_len) {
			if (nq->broken ||
			    nq->pair >= atomic_load_explicit(&net->active_pairs,
							     memory_order_acquire) ||
			    !net_rx_take(net, nq))
				break;
			r = net_rx_read(net, nq);
			if (r == 0)
				nq->want_fd = true;
			if (r <= 0)
				break;
			if (!nq->frame_len)
				continue; /* dropped */
		}
		if (!net_rx_deliver(net, nq))
			break;
		net_batch_step(net, nq);
	}
	net_flush(net, nq);
}

/* One poll: kicks, a VQ_PAIRS_SET wakeup, and the back end while the guest has a buffer. */
static int net_rx_wait(struct virtio_net *net, struct net_queue *nq, int kick_fd)
{
	struct pollfd p[3] = {
		{ .fd = kick_fd, .events = POLLIN },
		{ .fd = nq->wake_fd, .events = POLLIN },
		{ .fd = nq->want_fd ? net->be->fds[nq->pair] : -1, .events = POLLIN },
	};
	uint64_t n;

	if (poll(p, 3, -1) < 0)
		return 0;
	if (p[0].revents || p[1].revents) {
		if (p[0].revents && read(kick_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
			return 0;
		if (p[1].revents && read(nq->wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
			return 0;
		return 1; /* queue_kick: net_rx_process */
	}
	if (p[2].revents)
		net_rx_process(net, nq);
	return 0;
}

/* --- control queue (§5.1.6.5) ------------------------------------------------------------- */

static void net_ctrl_process(struct virtio_net *net, struct net_queue *nq)
{
	struct virtio_device *vdev = &net->vdev;
	struct net_ctrl_action a;
	uint8_t *ack, status;

	while (virtio_pop(vdev, nq->index, &nq->chain) > 0) {
		status = net_ctrl_decide(&nq->chain, vdev->features, net->pairs, &a, &ack);
		if (status == VIRTIO_NET_OK && a.pairs) {
			atomic_store_explicit(&net->active_pairs, a.pairs, memory_order_release);
			/* RX threads of pairs now in use start reading; the others stop. */
			for (unsigned int p = 0; p < net->pairs; p++)
				eventfd_signal(net->queues[2 * p].wake_fd);
		}
		if (status == VIRTIO_NET_OK && a.announce_ack) {
			pthread_mutex_lock(&net->config_lock);
			net->config.status &= ~htole16(VIRTIO_NET_S_ANNOUNCE);
			pthread_mutex_unlock(&net->config_lock);
		}
		if (ack)
			*ack = status;
		virtio_push(vdev, nq->index, nq->chain.head, ack ? 1 : 0);
	}
}

/* --- device ops ----------------------------------------------------------------------------- */

static void net_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_net *net = (struct virtio_net *)vdev;
	struct net_queue *nq = &net->queues[q];
	struct virtq_chain *c = &nq->chain;

	switch (net_role(net, q)) {
	case NET_RX:
		net_rx_process(net, nq);
		break;
	case NET_TX:
		net_tx_process(net, nq);
		break;
	case NET_CTRL:
		net_ctrl_process(net, nq);
		break;
	case NET_NONE:
		/* A queue beyond what the features give it a role: its buffers come back unused. */
		while (virtio_pop(vdev, q, c) > 0)
			virtio_push(vdev, q, c->head, 0);
		break;
	}
}

static int net_queue_wait(struct virtio_device *vdev, unsigned int q, int kick_fd)
{
	struct virtio_net *net = (struct virtio_net *)vdev;

	switch (net_role(net, q)) {
	case NET_RX:
		return net_rx_wait(net, &net->queues[q], kick_fd);
	case NET_TX:
		return net_tx_wait(net, &net->queues[q], kick_fd);
	default:
		return -EOPNOTSUPP; /* the transport's own poll on kicks */
	}
}

static void net_queue_reset(struct net_queue *nq)
{
	nq->held = nq->pushed = nq->want_fd = nq->broken = false;
	nq->batch = 0;
	nq->frame_len = nq->copied = 0;
	nq->nused = 0;
}

static void net_queue_start(struct virtio_device *vdev, unsigned int q, int *fd)
{
	struct virtio_net *net = (struct virtio_net *)vdev;
	struct net_queue *nq = &net->queues[q];
	struct virtio_vhost_queue view;

	net_queue_reset(nq);
	nq->size = virtio_queue_vhost_view(vdev, q, &view) ? vdev->queue_max_size : view.size;
}

static void net_config_read(struct virtio_device *vdev, uint64_t off, void *data, unsigned int len)
{
	struct virtio_net *net = (struct virtio_net *)vdev;

	pthread_mutex_lock(&net->config_lock);
	memcpy(data, (uint8_t *)&net->config + off, len);
	pthread_mutex_unlock(&net->config_lock);
}

static void net_vhost_stop_all(struct virtio_net *net)
{
	for (unsigned int p = 0; p < NET_MAX_QUEUE_PAIRS; p++) {
		if (net->vhost_on[p])
			vhost_net_stop(net->vn, p);
		net->vhost_on[p] = false;
	}
}

/* DRIVER_OK: hands the pairs to vhost-net where it can; the rest is the queue threads'. */
static int net_start_vhost(struct virtio_net *net)
{
	struct virtio_device *vdev = &net->vdev;
	struct virtio_vhost_queue rx, tx;
	int err;

	for (unsigned int p = 0; p < net->pairs; p++) {
		/* A pair the driver did not enable both queues of has nothing to serve. */
		if (virtio_queue_vhost_view(vdev, 2 * p, &rx) ||
		    virtio_queue_vhost_view(vdev, 2 * p + 1, &tx))
			continue;
		err = vhost_net_start(net->vn, vdev, p, net->be->fds[p]);
		if (!err) {
			net->vhost_on[p] = true;
			continue;
		}
		net_vhost_stop_all(net);
		if (net->be->vhost_required) {
			nkvm_err("%s: vhost-net: queue pair %u: %s", net->name, p, strerror(-err));
			return err;
		}
		nkvm_err("%s: vhost-net could not start queue pair %u (%s); using the userspace "
			 "data path",
			 net->name, p, strerror(-err));
		return 0;
	}
	return 0;
}

static int net_start(struct virtio_device *vdev)
{
	struct virtio_net *net = (struct virtio_net *)vdev;
	int err;

	/* §5.1.2: N pairs with MQ, else 1; the control queue after them. */
	net->pairs = vdev->features & F(VIRTIO_NET_F_MQ) ? net->be->nr_pairs : 1;
	net->ctrl_queue = vdev->features & F(VIRTIO_NET_F_CTRL_VQ) ? 2 * net->pairs : UINT_MAX;
	/* §5.1.6.5.5: until VQ_PAIRS_SET only the first pair carries traffic. */
	atomic_store(&net->active_pairs, 1);
	if (net->be->ops->set_offloads) {
		err = net->be->ops->set_offloads(net->be, vdev->features);
		if (err) {
			nkvm_err("%s: the back end refused the guest's offloads: %s", net->name,
				 strerror(-err));
			return err;
		}
	}
	return net->vn ? net_start_vhost(net) : 0;
}

static bool net_queue_offloaded(struct virtio_device *vdev, unsigned int q)
{
	struct virtio_net *net = (struct virtio_net *)vdev;

	return q < 2 * net->pairs && net->vhost_on[q / 2];
}

/* The queue threads have ended: the kernel gives its pairs back; frames in hand are forgotten. */
static void net_reset(struct virtio_device *vdev)
{
	struct virtio_net *net = (struct virtio_net *)vdev;

	if (net->vn)
		net_vhost_stop_all(net);
	for (unsigned int q = 0; q < vdev->nr_queues; q++)
		net_queue_reset(&net->queues[q]);
	atomic_store(&net->active_pairs, 1);
	pthread_mutex_lock(&net->config_lock);
	net->config.status = htole16(VIRTIO_NET_S_LINK_UP);
	pthread_mutex_unlock(&net->config_lock);
}

static const struct virtio_device_ops net_ops = {
	.queue_kick = net_queue_kick,
	.queue_start = net_queue_start,
	.queue_wait = net_queue_wait,
	.queue_offloaded = net_queue_offloaded,
	.config_read = net_config_read,
	.start = net_start,
	.reset = net_reset,
};

/* --- creation ------------------------------------------------------------------------------- */

static void net_free(struct virtio_net *net)
{
	if (net->queues) {
		for (unsigned int q = 0; q < net->vdev.nr_queues; q++) {
			if (net->queues[q].wake_fd >= 0)
				close(net->queues[q].wake_fd);
			free(net->queues[q].bounce);
			free(net->queues[q].linear);
		}
	}
	free(net->queues);
	vhost_net_close(net->vn);
	net_backend_destroy(net->be);
	pthread_mutex_destroy(&net->config_lock);
	free(net);
}

static int net_alloc_queues(struct virtio_net *net, unsigned int nr)
{
	net->queues = calloc(nr, sizeof(*net->queues));
	if (!net->queues)
		return -ENOMEM;
	for (unsigned int q = 0; q < nr; q++) {
		struct net_queue *nq = &net->queues[q];

		nq->net = net;
		nq->index = q;
		nq->pair = q / 2;
		nq->wake_fd = -1;
		if (q == nr - 1)
			continue; /* the control queue (or pair 0's, without MQ: no buffers needed) */
		if (q % 2 == 0) {
			nq->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			nq->bounce = malloc(NET_RX_MAX + 1);
			if (nq->wake_fd < 0 || !nq->bounce)
				return -ENOMEM;
		} else {
			nq->linear = malloc(NET_TX_MAX);
			if (!nq->linear)
				return -ENOMEM;
		}
	}
	return 0;
}

/* vhost-net if the back end asks for it: opened, or a notice, or (vhost=on) an error. */
static int net_open_vhost(struct virtio_net *net, uint64_t *features, char *err, size_t errlen)
{
	char why[256] = "";
	uint64_t vf, ring;
	int e;

	e = vhost_net_open(&net->vn, net->be->nr_pairs, why, sizeof(why));
	if (!e && !(vhost_net_features(net->vn) & F(VIRTIO_F_VERSION_1))) {
		vhost_net_close(net->vn);
		net->vn = NULL;
		e = -ENOTSUP;
		snprintf(why, sizeof(why), "the kernel's vhost-net lacks VIRTIO_F_VERSION_1");
	}
	if (e && net->be->vhost_required)
		return err_set(err, errlen, e, "vhost-net: %s", why);
	if (e) {
		net->vn = NULL;
		nkvm_err("%s: vhost-net unavailable (%s); using the userspace data path",
			 net->be->name, why);
		return 0;
	}
	/*
	 * Offer only the ring features the kernel serves, so that either data path takes what was
	 * negotiated. The offloads are the TAP's (vhost-net passes the header through), and
	 * VHOST_GET_FEATURES lists none of them: they are masked only if it names some.
	 */
	vf = vhost_net_features(net->vn);
	ring = F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_RING_F_EVENT_IDX) |
	       F(VIRTIO_RING_F_INDIRECT_DESC);
	*features &= ~ring | (vf & ring);
	if (vf & NET_OFFLOAD_FEATURES)
		*features = (*features & ~NET_OFFLOAD_FEATURES) |
			    net_offloads_consistent(*features & vf);
	return 0;
}

int virtio_net_create(struct virtio_net **out, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq, struct net_backend *be,
		      const struct virtio_net_options *opts, char *err, size_t errlen)
{
	struct virtio_net *net;
	uint16_t mtu = opts->mtu ? opts->mtu : NET_DEFAULT_MTU;
	uint64_t features;
	int e;

	*out = NULL;
	if (!be->nr_pairs || be->nr_pairs > NET_MAX_QUEUE_PAIRS || mtu < NET_MIN_MTU) {
		e = err_set(err, errlen, -EINVAL, "%s: %u queue pairs, MTU %u: out of range",
			    be->name, be->nr_pairs, mtu);
		net_backend_destroy(be);
		return e;
	}
	net = calloc(1, sizeof(*net));
	if (!net) {
		net_backend_destroy(be);
		return err_set(err, errlen, -ENOMEM, "%s: out of memory", be->name);
	}
	net->be = be;
	pthread_mutex_init(&net->config_lock, NULL);
	snprintf(net->name, sizeof(net->name), "virtio-net (%s)", be->name);
	net->vdev.nr_queues = 2 * be->nr_pairs + 1;
	e = net_alloc_queues(net, net->vdev.nr_queues);
	if (e) {
		err_set(err, errlen, e, "%s: %s", be->name, strerror(-e));
		goto fail;
	}
	features = F(VIRTIO_F_VERSION_1) | F(VIRTIO_RING_F_EVENT_IDX) |
		   F(VIRTIO_RING_F_INDIRECT_DESC) | F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) |
		   F(VIRTIO_NET_F_MTU) | F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_CTRL_VQ) |
		   F(VIRTIO_NET_F_CTRL_RX) | F(VIRTIO_NET_F_MQ);
	/* Offloads need the header on the back end's frames: bare frames are complete. */
	if (be->vnet_hdr)
		features |= net_offloads_consistent(be->offloads);
	if (be->vhost) {
		e = net_open_vhost(net, &features, err, errlen);
		if (e)
			goto fail;
	}
	/* §5.1.4: the configuration layout, little-endian as VERSION_1 has it. */
	memcpy(net->config.mac, opts->mac, ETH_ALEN);
	net->config.status = htole16(VIRTIO_NET_S_LINK_UP);
	net->config.max_virtqueue_pairs = htole16(be->nr_pairs);
	net->config.mtu = htole16(mtu);
	net->config.speed = htole32(UINT32_MAX); /* unknown (SPEED_DUPLEX is not offered) */
	net->config.duplex = 0xff;
	net->pairs = 1;
	net->ctrl_queue = UINT_MAX;
	atomic_init(&net->active_pairs, 1);
	net->vdev = (struct virtio_device){
		.ops = &net_ops,
		.queue_filter = &net_queue_filter,
		.name = net->name,
		.device_id = VIRTIO_ID_NET,
		.pci_class = PCI_CLASS_NETWORK_ETHERNET,
		.host_features = features,
		.nr_queues = 2 * be->nr_pairs + 1,
		.queue_max_size = NET_QUEUE_SIZE,
		.config_size = sizeof(net->config),
	};
	e = virtio_pci_create(&net->transport, vm, bus, irq, &net->vdev);
	if (e) {
		err_set(err, errlen, e, "%s: the PCI function: %s", be->name, strerror(-e));
		goto fail;
	}
	*out = net;
	return 0;
fail:
	net_free(net);
	return e;
}

void virtio_net_get_stats(struct virtio_net *net, struct virtio_net_stats *s)
{
	const memory_order r = memory_order_relaxed;

	*s = (struct virtio_net_stats){
		.rx_packets = atomic_load_explicit(&net->rx_packets, r),
		.rx_bytes = atomic_load_explicit(&net->rx_bytes, r),
		.rx_dropped = atomic_load_explicit(&net->rx_dropped, r),
		.tx_packets = atomic_load_explicit(&net->tx_packets, r),
		.tx_bytes = atomic_load_explicit(&net->tx_bytes, r),
		.tx_dropped = atomic_load_explicit(&net->tx_dropped, r),
		.tx_errors = atomic_load_explicit(&net->tx_errors, r),
	};
}

void virtio_net_destroy(struct virtio_net *net)
{
	if (!net)
		return;
	/* Resets the device on its worker: the queue threads end and vhost gives the pairs back. */
	virtio_pci_free(net->transport);
	net_free(net);
}
