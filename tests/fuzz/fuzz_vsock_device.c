// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: virtio-vsock's connection handling (virtio/vsock.c, the hybrid unix-socket
 * back end) between a hostile guest driver and hostile host programs: the guest's packets of any
 * op, ports, credit and length on the transmit queue and receive buffers of any shape; host
 * clients that connect to the device's socket and send any CONNECT line and bytes, or hang up;
 * and a host program listening on PATH_80 that takes the guest's connections, writes to them and
 * closes them. fuzz_vsock checks the packet header alone; this drives the whole device through
 * its transport, driven by virtio/driver.h on a VM without KVM. Each input gets a fresh device.
 * Checked: every transmit buffer comes back, no receive buffer used claims more than its room,
 * and the device never needs a reset for what a driver may write.
 *
 * Input: u8 features (bit 0 EVENT_IDX), then records: u8 op, le16 len, then len bytes (for the
 * kinds that take them). op & 3: 0 a TX packet (op bit 6: the 44-byte header and the payload in
 * two segments); 1 an RX buffer of len % 4096 + 1 bytes in (op >> 4 & 1) + 1 segments (op bit
 * 5: readable, which the device must refuse); 2 host client (op >> 2) & 3 connects if it has
 * not, then sends the bytes, or with op bit 4 hangs up; 3 the listener on PATH_80 accepts what
 * waits and sends the bytes to connection (op >> 2) & 3, or with op bit 4 closes it.
 */
#include <endian.h>
#include <fcntl.h>
#include <linux/virtio_pci.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hw/pci.h"
#include "lib/util.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "virtio/vsock.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"
#include "tests/fuzz/fuzz_device.h"

#define F(bit) (1ULL << (bit))
#define RAM_SIZE (4 * MiB)
#define RINGS_GPA 0x10000ULL
#define RING_STRIDE 0x10000ULL
#define DATA_GPA 0x100000ULL
#define QSIZE 128
#define MAX_RECORDS 32 /* two descriptors each at most: a table never wraps onto itself */
#define PEERS 4
#define DEADLINE_MS 3000

static char dir[] = "/dev/shm/nkvm-fuzz-vsock-XXXXXX", path[64], path80[80];

static void cleanup(void)
{
	unlink(path80);
	unlink(path);
	rmdir(dir);
}

static int unix_socket(const char *p, bool listening)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", p);
	if (fd < 0)
		abort();
	if (listening ? bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16) :
			connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads and drops whatever the device sent to host programs. */
static void drain(const int *fds, unsigned int n)
{
	static char buf[65536];

	for (unsigned int i = 0; i < n; i++)
		while (fds[i] >= 0 && read(fds[i], buf, sizeof(buf)) > 0)
			;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm vm;
	static struct pci_bus bus;
	static struct irq_routing irq;
	struct virtio_driver drv;
	struct virtio_driver_queue q[VSOCK_QUEUES];
	uint16_t next[2] = { 0 }, posted[2] = { 0 };
	uint32_t room[QSIZE];
	struct virtio_vsock *vs;
	struct vsock_options o = { .cid = 3 };
	int clients[PEERS], accepted[PEERS], listener;
	unsigned int records = 0;
	uint64_t features, gpa = DATA_GPA;
	char err[256];
	size_t at = 1;

	if (!size)
		return 0;
	if (!path[0]) {
		if (!mkdtemp(dir))
			abort();
		snprintf(path, sizeof(path), "%s/v.sock", dir);
		snprintf(path80, sizeof(path80), "%s_80", path);
		atexit(cleanup);
	}
	unlink(path80);
	listener = unix_socket(path80, true);
	for (unsigned int i = 0; i < PEERS; i++)
		clients[i] = accepted[i] = -1;
	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = vm.stop_fd = -1;
	o.socket = path;
	if (listener < 0 || memory_init(&vm.mem, RAM_SIZE) || irq_routing_init(&irq, NULL) ||
	    pci_init(&bus, &vm) || virtio_vsock_create(&vs, &vm, &bus, &irq, &o, err, sizeof(err)))
		abort();
	if (virtio_driver_find(&drv, &bus, &vm.mem, VIRTIO_ID_VSOCK) ||
	    virtio_driver_begin(&drv, DEADLINE_MS))
		abort();
	features = F(VIRTIO_F_VERSION_1) | (data[0] & 1 ? F(VIRTIO_RING_F_EVENT_IDX) : 0);
	if (virtio_driver_start(&drv, features, q, VSOCK_QUEUES, QSIZE, RINGS_GPA, RING_STRIDE))
		abort();

	while (at + 3 <= size && records++ < MAX_RECORDS) {
		uint8_t op = data[at];
		size_t len = data[at + 1] | data[at + 2] << 8, n;
		unsigned int qi, k = 0, slot = (op >> 2) & 3;
		struct virtio_driver_seg s[2];

		at += 3;
		n = size - at < len ? size - at : len;
		switch (op & 3) {
		case 0:
			qi = VSOCK_QUEUE_TX;
			if (!n)
				continue;
			memcpy(guest_ptr(&vm.mem, gpa, n), data + at, n);
			at += n;
			if ((op & 0x40) && n > 44) {
				s[k++] = (struct virtio_driver_seg){ gpa, 44, false };
				s[k++] = (struct virtio_driver_seg){ gpa + 44, n - 44, false };
			} else {
				s[k++] = (struct virtio_driver_seg){ gpa, n, false };
			}
			gpa = ALIGN_UP(gpa + n, 64);
			break;
		case 1:
			qi = VSOCK_QUEUE_RX;
			len = len % 4096 + 1;
			if ((op & 0x10) && len > 1) {
				s[k++] = (struct virtio_driver_seg){ gpa, len / 2, !(op & 0x20) };
				s[k++] = (struct virtio_driver_seg){ gpa + len / 2, len - len / 2,
								     !(op & 0x20) };
			} else {
				s[k++] = (struct virtio_driver_seg){ gpa, len, !(op & 0x20) };
			}
			gpa = ALIGN_UP(gpa + len, 64);
			break;
		case 2:
			if (op & 0x10) {
				if (clients[slot] >= 0)
					close(clients[slot]);
				clients[slot] = -1;
			} else {
				if (clients[slot] < 0)
					clients[slot] = unix_socket(path, false);
				if (clients[slot] >= 0 && n)
					(void)!send(clients[slot], data + at, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			}
			at += n;
			drain(clients, PEERS);
			usleep(20);
			continue;
		default:
			for (unsigned int i = 0; i < PEERS; i++)
				if (accepted[i] < 0)
					accepted[i] = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (accepted[slot] >= 0 && (op & 0x10)) {
				close(accepted[slot]);
				accepted[slot] = -1;
			} else if (accepted[slot] >= 0 && n) {
				(void)!send(accepted[slot], data + at, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			}
			at += n;
			drain(accepted, PEERS);
			usleep(20);
			continue;
		}
		if (gpa > RAM_SIZE - 2 * 65536)
			break;
		{
			uint16_t head = virtio_driver_queue_add_chain(&q[qi], &next[qi], s, k);

			if (qi == VSOCK_QUEUE_RX)
				room[head] = op & 0x20 ? 0 : len;
		}
		posted[qi]++;
		virtio_driver_queue_publish(&q[qi]);
		virtio_driver_queue_kick(&q[qi]);
		drain(clients, PEERS);
		drain(accepted, PEERS);
	}
	/* Every transmit buffer comes back (§5.10.6.2); receive ones wait for something to say. */
	for (uint64_t end = now_ms() + DEADLINE_MS;
	     used_idx(&q[VSOCK_QUEUE_TX]) != posted[VSOCK_QUEUE_TX] && now_ms() < end;) {
		drain(clients, PEERS);
		drain(accepted, PEERS);
		usleep(50);
	}
	if (used_idx(&q[VSOCK_QUEUE_TX]) != posted[VSOCK_QUEUE_TX])
		abort();
	{
		struct vring_used_elem e;

		while (virtio_driver_queue_get(&q[VSOCK_QUEUE_RX], &e))
			if (e.id >= QSIZE || e.len > room[e.id])
				abort();
	}
	if (virtio_driver_status(&drv) & VIRTIO_CONFIG_S_NEEDS_RESET)
		abort();
	virtio_vsock_destroy(vs);
	for (unsigned int i = 0; i < PEERS; i++) {
		if (clients[i] >= 0)
			close(clients[i]);
		if (accepted[i] >= 0)
			close(accepted[i]);
	}
	close(listener);
	memory_free(&vm.mem);
	pthread_mutex_destroy(&bus.lock);
	pthread_mutex_destroy(&irq.lock);
	return 0;
}
