// SPDX-License-Identifier: MIT
/*
 * The user-mode back end: libslirp on a thread of its own. The device and the stack exchange bare
 * Ethernet frames over one AF_UNIX datagram socket pair per queue pair; the stack's thread polls
 * its ends, libslirp's host sockets, its timers and a wake eventfd in one poll().
 *
 * libslirp is not thread-safe: only net_user_open (before the thread starts), the thread, and
 * destroy (after joining it) ever call into the Slirp.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <slirp/libslirp.h>

#include "lib/log.h"
#include "lib/util.h"
#include "net/backend.h"
#include "net/user.h"
#include "sandbox/landlock.h"
#include "sandbox/sandbox.h"

/*
 * Socket buffers of each pair: a burst of frames either way (a TCP window from the stack, a TX
 * ring from the guest) must fit, or the stack drops what does not (see user_send_packet).
 */
#define USER_SOCKBUF (4 * 1024 * 1024)
/* The largest frame read: more than any MTU the device offers; longer frames are dropped. */
#define USER_FRAME_MAX 65536
/*
 * Frames taken from one pair per pass: a guest that floods its TX queue must not starve
 * libslirp's host sockets and timers; poll() reports the rest on the next pass.
 */
#define USER_DRAIN_BUDGET 256
/* libslirp's messages about a misbehaving guest: the first few, not a flood from a hostile one. */
#define USER_GUEST_ERRORS_SHOWN 10

/* QEMU's -netdev user addressing (include/net/slirp.h defaults, docs/system/devices/net.rst). */
#define USER_NET 0x0a000200u /* 10.0.2.0/24 */
#define USER_MASK 0xffffff00u
#define USER_HOST 0x0a000202u /* 10.0.2.2 */
#define USER_DHCP_START 0x0a00020fu /* 10.0.2.15 */
#define USER_DNS 0x0a000203u /* 10.0.2.3 */
/* Where libslirp finds the host's resolver (its get_dns_addr), for DNS relayed from USER_DNS. */
#define USER_RESOLV_CONF "/etc/resolv.conf"

struct user_timer {
	struct user_timer *next;
	SlirpTimerCb cb;
	void *cb_opaque;
	int64_t expire_ms; /* -1: not armed */
};

struct net_user {
	struct net_backend be; /* first: the device holds a pointer to it */
	Slirp *slirp;
	/* The stack's ends of the pairs: stack_fds[i] is be.fds[i]'s peer. */
	int stack_fds[NET_MAX_QUEUE_PAIRS];
	int wake_fd;
	atomic_bool stop;
	pthread_t thread;
	bool thread_running;

	/* The thread's own state (and net_user_open's, before the thread starts). */
	struct pollfd *pfds;
	unsigned int nr_pfds, cap_pfds;
	struct user_timer *timers;
	uint8_t *frame;
	unsigned int guest_errors;

	/* Frames to the guest dropped because the device's socket was full. */
	atomic_uint_least64_t rx_dropped;
};

static int64_t user_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * All frames to the guest go to pair 0: there is one stack and no RSS to spread its flows over
 * the queues, and the guest takes a frame from any RX queue alike.
 */
static ssize_t user_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net_user *u = opaque;

	if (send(u->stack_fds[0], buf, len, MSG_DONTWAIT) < 0) {
		/*
		 * libslirp.h, send_packet: a guest not ready to receive may have the frame dropped;
		 * TCP retransmits. Never block: the thread also serves the guest's TX.
		 */
		atomic_fetch_add_explicit(&u->rx_dropped, 1, memory_order_relaxed);
		return len;
	}
	return len;
}

static void user_guest_error(const char *msg, void *opaque)
{
	struct net_user *u = opaque;

	if (u->guest_errors++ < USER_GUEST_ERRORS_SHOWN)
		nkvm_err("user: guest error: %s", msg);
}

static int64_t user_clock_get_ns(void *opaque)
{
	return user_clock_ns();
}

static void *user_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct net_user *u = opaque;
	struct user_timer *t = calloc(1, sizeof(*t));

	/* libslirp has no failure path here; a NULL timer is ignored by timer_mod and free. */
	if (!t)
		return NULL;
	t->cb = cb;
	t->cb_opaque = cb_opaque;
	t->expire_ms = -1;
	t->next = u->timers;
	u->timers = t;
	return t;
}

static void user_timer_free(void *timer, void *opaque)
{
	struct net_user *u = opaque;

	for (struct user_timer **p = &u->timers; *p; p = &(*p)->next) {
		if (*p == timer) {
			*p = (*p)->next;
			free(timer);
			return;
		}
	}
}

static void user_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct user_timer *t = timer;

	if (t)
		t->expire_ms = expire_ms;
}

/* Only Windows builds of libslirp need to know its sockets ahead of the poll set. */
static void user_register_poll_fd(int fd, void *opaque)
{
}

static void user_unregister_poll_fd(int fd, void *opaque)
{
}

/* A socket can take data again: poll anew, since its events are chosen at fill time. */
static void user_notify(void *opaque)
{
	struct net_user *u = opaque;

	eventfd_signal(u->wake_fd);
}

static const SlirpCb user_callbacks = {
	.send_packet = user_send_packet,
	.guest_error = user_guest_error,
	.clock_get_ns = user_clock_get_ns,
	.timer_new = user_timer_new,
	.timer_free = user_timer_free,
	.timer_mod = user_timer_mod,
	.register_poll_fd = user_register_poll_fd,
	.unregister_poll_fd = user_unregister_poll_fd,
	.notify = user_notify,
};

/* Appends to the poll set; returns the index, or -1 when out of memory (fd not polled). */
static int user_poll_add(struct net_user *u, int fd, short events)
{
	if (u->nr_pfds == u->cap_pfds) {
		unsigned int cap = u->cap_pfds ? 2 * u->cap_pfds : 32;
		struct pollfd *p = realloc(u->pfds, cap * sizeof(*p));

		if (!p)
			return -1;
		u->pfds = p;
		u->cap_pfds = cap;
	}
	u->pfds[u->nr_pfds] = (struct pollfd){ .fd = fd, .events = events };
	return u->nr_pfds++;
}

static int user_add_poll(int fd, int events, void *opaque)
{
	short ev = 0;

	if (events & SLIRP_POLL_IN)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= POLLPRI;
	return user_poll_add(opaque, fd, ev);
}

static int user_get_revents(int idx, void *opaque)
{
	struct net_user *u = opaque;
	short rev;
	int events = 0;

	if (idx < 0 || (unsigned int)idx >= u->nr_pfds)
		return 0;
	rev = u->pfds[idx].revents;
	if (rev & POLLIN)
		events |= SLIRP_POLL_IN;
	if (rev & POLLOUT)
		events |= SLIRP_POLL_OUT;
	if (rev & POLLPRI)
		events |= SLIRP_POLL_PRI;
	if (rev & (POLLERR | POLLNVAL))
		events |= SLIRP_POLL_ERR;
	if (rev & POLLHUP)
		events |= SLIRP_POLL_HUP;
	return events;
}

/* Narrows *timeout_ms (UINT32_MAX: none) to the nearest armed timer. */
static void user_timers_timeout(struct net_user *u, uint32_t *timeout_ms)
{
	int64_t now = user_clock_ns() / 1000000;

	for (struct user_timer *t = u->timers; t; t = t->next) {
		int64_t left;

		if (t->expire_ms < 0)
			continue;
		left = t->expire_ms > now ? t->expire_ms - now : 0;
		if (left < *timeout_ms)
			*timeout_ms = left;
	}
}

/*
 * Runs the due timers. A callback may arm, add or free timers, so the list is searched anew
 * after each one.
 */
static void user_timers_run(struct net_user *u)
{
	int64_t now = user_clock_ns() / 1000000;
	bool fired;

	do {
		fired = false;
		for (struct user_timer *t = u->timers; t; t = t->next) {
			if (t->expire_ms >= 0 && t->expire_ms <= now) {
				t->expire_ms = -1;
				t->cb(t->cb_opaque);
				fired = true;
				break;
			}
		}
	} while (fired);
}

/* Hands the frames the device wrote on one pair to the stack, up to the budget. */
static void user_drain_pair(struct net_user *u, int fd)
{
	for (unsigned int i = 0; i < USER_DRAIN_BUDGET; i++) {
		ssize_t n = recv(fd, u->frame, USER_FRAME_MAX, MSG_DONTWAIT | MSG_TRUNC);

		if (n < 0)
			return; /* EAGAIN, or the device's end is gone: nothing more to read */
		if (n == 0 || n > USER_FRAME_MAX)
			continue; /* truncated: not a frame the stack may parse */
		slirp_input(u->slirp, u->frame, n);
	}
}

/*
 * The user-mode network's thread: libslirp's sockets for the guest's connections (IPv4 and IPv6
 * only), the frames to and from the queue threads over the socket pairs, its timers' clock.
 */
static const struct sandbox_rule net_user_rules[] = {
	SANDBOX_ALLOW(poll),
	SANDBOX_ALLOW(read),
	SANDBOX_ALLOW(write),
	SANDBOX_ALLOW(recvfrom),
	SANDBOX_ALLOW(sendto),
	SANDBOX_ALLOW_ARG(socket, 0, AF_INET),
	SANDBOX_ALLOW_ARG(socket, 0, AF_INET6),
	SANDBOX_ALLOW(connect),
	SANDBOX_ALLOW(accept), /* hostfwd's listeners */
	SANDBOX_ALLOW(accept4),
	SANDBOX_ALLOW(bind),
	SANDBOX_ALLOW(listen),
	SANDBOX_ALLOW(getsockname),
	SANDBOX_ALLOW(getpeername),
	SANDBOX_ALLOW(setsockopt),
	SANDBOX_ALLOW(getsockopt),
	SANDBOX_ALLOW(shutdown),
	SANDBOX_ALLOW(fcntl),
	SANDBOX_ALLOW_ARG(ioctl, 1, FIONREAD),
	SANDBOX_ALLOW_ARG(ioctl, 1, FIONBIO),
	SANDBOX_ALLOW(close),
	SANDBOX_ALLOW(clock_gettime),
	/* libslirp reads /etc/resolv.conf again when it changes: read-only opens, and its stat. */
	SANDBOX_ALLOW_MASKED(openat, 2, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND, O_RDONLY),
	SANDBOX_ALLOW(newfstatat),
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter net_user_filter = {
	.thread = "net-user",
	.rules = net_user_rules,
	.nr_rules = ARRAY_SIZE(net_user_rules),
};

static void *user_thread(void *arg)
{
	struct net_user *u = arg;
	int err = sandbox_enter(&net_user_filter);

	/* Unconfined, it touches no frame of the guest's. */
	if (err) {
		nkvm_err("-n user: cannot enter the sandbox: %s", strerror(-err));
		return NULL;
	}
#ifdef NKVM_TEST_HOOKS
	if (sandbox_test_hook("net-user", "forbidden"))
		sandbox_test_forbidden_call();
#endif

	while (!atomic_load(&u->stop)) {
		uint32_t timeout = UINT32_MAX;
		unsigned int first_pair;
		int n;

		u->nr_pfds = 0;
		user_poll_add(u, u->wake_fd, POLLIN);
		first_pair = u->nr_pfds;
		for (unsigned int i = 0; i < u->be.nr_pairs; i++)
			user_poll_add(u, u->stack_fds[i], POLLIN);
		slirp_pollfds_fill(u->slirp, &timeout, user_add_poll, u);
		user_timers_timeout(u, &timeout);

		n = poll(u->pfds, u->nr_pfds, timeout == UINT32_MAX ? -1 : (int)timeout);
		slirp_pollfds_poll(u->slirp, n < 0, user_get_revents, u);
		if (n > 0) {
			if (u->pfds[0].revents & POLLIN) {
				uint64_t v;

				if (read(u->wake_fd, &v, sizeof(v)) < 0) {
					/* EAGAIN: another wake consumed it already */
				}
			}
			/* Entries of pairs lost to a failed realloc were never added: check fds. */
			for (unsigned int i = 0; i < u->be.nr_pairs && first_pair + i < u->nr_pfds;
			     i++) {
				if (u->pfds[first_pair + i].revents & POLLIN)
					user_drain_pair(u, u->stack_fds[i]);
			}
		}
		user_timers_run(u);
	}
	return NULL;
}

static void user_destroy(struct net_backend *be)
{
	struct net_user *u = (struct net_user *)be;

	if (u->thread_running) {
		atomic_store(&u->stop, true);
		eventfd_signal(u->wake_fd);
		pthread_join(u->thread, NULL);
	}
	/* The thread is gone: this thread is now the only user of the Slirp. */
	if (u->slirp)
		slirp_cleanup(u->slirp);
	while (u->timers)
		user_timer_free(u->timers, u);
	for (unsigned int i = 0; i < NET_MAX_QUEUE_PAIRS; i++) {
		if (u->be.fds[i] >= 0)
			close(u->be.fds[i]);
		if (u->stack_fds[i] >= 0)
			close(u->stack_fds[i]);
	}
	if (u->wake_fd >= 0)
		close(u->wake_fd);
	free(u->pfds);
	free(u->frame);
	free(u);
}

static const struct net_backend_ops user_ops = {
	.destroy = user_destroy,
};

/*
 * Raises a socket's buffers; SO_*BUFFORCE passes the sysctl caps (net.core.wmem_max) when nkvm
 * may, else the kernel clamps the plain request to them. A small buffer only costs drops.
 */
static void user_raise_bufs(int fd)
{
	int size = USER_SOCKBUF;

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

static int user_open_pairs(struct net_user *u, char *err, size_t errlen)
{
	for (unsigned int i = 0; i < u->be.nr_pairs; i++) {
		int sv[2];

		/* Datagrams: one whole frame per message, as net/backend.h asks of be->fds. */
		if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
			return err_set(err, errlen, -errno, "cannot create a socket pair: %s",
				       strerror(errno));
		u->be.fds[i] = sv[0];
		u->stack_fds[i] = sv[1];
		user_raise_bufs(sv[0]);
		user_raise_bufs(sv[1]);
	}
	return 0;
}

static struct in_addr user_addr(uint32_t host_order)
{
	return (struct in_addr){ .s_addr = htonl(host_order) };
}

static int user_start_slirp(struct net_user *u, const struct net_user_config *cfg, char *err,
			    size_t errlen)
{
	int r;
	SlirpConfig sc = {
		.version = SLIRP_CONFIG_VERSION_MAX,
		.restricted = 0,
		.in_enabled = true,
		.vnetwork = user_addr(USER_NET),
		.vnetmask = user_addr(USER_MASK),
		.vhost = user_addr(USER_HOST),
		.vdhcp_start = user_addr(USER_DHCP_START),
		/* libslirp relays DNS sent here to the host's resolver (/etc/resolv.conf). */
		.vnameserver = user_addr(USER_DNS),
		/* IPv6 as QEMU's default: fec0::/64, host fec0::2, DNS fec0::3. */
		.in6_enabled = true,
		.vprefix_len = 64,
	};

	inet_pton(AF_INET6, "fec0::", &sc.vprefix_addr6);
	inet_pton(AF_INET6, "fec0::2", &sc.vhost6);
	inet_pton(AF_INET6, "fec0::3", &sc.vnameserver6);
	u->slirp = slirp_new(&sc, &user_callbacks, u);
	if (!u->slirp)
		return err_set(err, errlen, -ENOMEM, "cannot start the user-mode network stack");
	/*
	 * libslirp reads the host's resolver from /etc/resolv.conf when the guest's first DNS
	 * query comes (and again when the file changes), long after set-up: Landlock must allow
	 * it. The rule holds the file it names now; one replaced by a rename later is refused.
	 */
	r = landlock_allow(USER_RESOLV_CONF, LANDLOCK_READ);
	if (r && r != -ENOENT)
		return err_set(err, errlen, r, USER_RESOLV_CONF ": cannot name it to Landlock: %s",
			       strerror(-r));

	for (unsigned int i = 0; i < cfg->nr_hostfwd; i++) {
		const struct net_user_hostfwd *fwd = &cfg->hostfwd[i];

		/* Port 0 would have the kernel pick a port nobody knows about. */
		if (!fwd->host_port || !fwd->guest_port)
			return err_set(err, errlen, -EINVAL, "hostfwd port 0: ports are 1..65535");
		errno = 0;
		if (slirp_add_hostfwd(u->slirp, 0, user_addr(INADDR_LOOPBACK), fwd->host_port,
				      user_addr(USER_DHCP_START), fwd->guest_port) < 0) {
			/* libslirp keeps bind's or listen's errno through its clean-up. */
			int e = errno ? errno : EADDRINUSE;

			return err_set(err, errlen, -e, "cannot listen on 127.0.0.1:%u: %s",
				       fwd->host_port, strerror(e));
		}
	}
	return 0;
}

int net_user_open(struct net_backend **be, const struct net_user_config *cfg, char *err,
		  size_t errlen)
{
	struct net_user *u;
	int r;

	*be = NULL;
	if (cfg->queues < 1 || cfg->queues > NET_MAX_QUEUE_PAIRS)
		return err_set(err, errlen, -EINVAL, "queues=%u is not in 1..%u", cfg->queues,
			       NET_MAX_QUEUE_PAIRS);
	if (cfg->nr_hostfwd > NET_USER_MAX_HOSTFWD)
		return err_set(err, errlen, -EINVAL, "%u hostfwd rules: at most %u",
			       cfg->nr_hostfwd, NET_USER_MAX_HOSTFWD);

	u = calloc(1, sizeof(*u));
	if (!u)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	u->be.ops = &user_ops;
	strcpy(u->be.name, "user");
	u->be.nr_pairs = cfg->queues;
	u->be.vnet_hdr = false; /* bare frames; the guest sends complete checksums */
	u->be.offloads = 0;
	for (unsigned int i = 0; i < NET_MAX_QUEUE_PAIRS; i++)
		u->be.fds[i] = u->stack_fds[i] = -1;
	u->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->wake_fd < 0) {
		r = err_set(err, errlen, -errno, "cannot create an eventfd: %s", strerror(errno));
		goto fail;
	}
	u->frame = malloc(USER_FRAME_MAX);
	if (!u->frame) {
		r = err_set(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	r = user_open_pairs(u, err, errlen);
	if (r)
		goto fail;
	r = user_start_slirp(u, cfg, err, errlen);
	if (r)
		goto fail;
	r = -pthread_create(&u->thread, NULL, user_thread, u);
	if (r) {
		err_set(err, errlen, r, "cannot start the network thread: %s", strerror(-r));
		goto fail;
	}
	u->thread_running = true;
	*be = &u->be;
	return 0;
fail:
	user_destroy(&u->be);
	return r;
}
