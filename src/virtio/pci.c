// SPDX-License-Identifier: MIT
/* virtio 1.2 §4.1: the modern virtio-pci transport. */
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/vhost.h>
#include <linux/virtio_pci.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hw/pci.h"
#include "lib/log.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"
#include "virtio/device.h"
#include "virtio/pci.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

/* Layout of BAR 0. */
#define BAR_SIZE 0x8000
#define OFF_COMMON 0x0000
#define OFF_ISR 0x1000
#define OFF_DEVICE 0x2000
#define OFF_NOTIFY 0x3000
#define OFF_MSIX_TABLE 0x4000
#define OFF_MSIX_PBA 0x6000
#define COMMON_SIZE 0x40
#define NOTIFY_MULTIPLIER 4

/* The driver's initialization steps, in the order §3.1.1 sets them. */
#define STATUS_STEPS                                                                          \
	(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK | \
	 VIRTIO_CONFIG_S_DRIVER_OK)

/* §4.1.4.5: the ISR's queue bit (the configuration bit is VIRTIO_PCI_ISR_CONFIG). */
#define ISR_QUEUE 1

struct vp_queue {
	struct virtio_pci *vp;
	unsigned int index;
	pthread_mutex_t lock; /* pop/push and the ring state */
	struct virtq vq;
	bool ready; /* mapped at DRIVER_OK */
	/* Driver-visible registers. */
	uint16_t size, msix_vector, enable;
	uint64_t desc, driver, device;
	/* The kick path: an ioeventfd on the notify address, read by the queue's thread. */
	int kick_fd;
	uint64_t ioeventfd_addr; /* 0 when not registered */
	/*
	 * The queue's I/O thread, made with the device (on the main thread, during set-up) so that
	 * it runs under its device type's filter alone, never under the worker's: filters stack
	 * and are inherited. It parks until the worker starts the queue (run), serves it until
	 * stop, then parks again for the next DRIVER_OK after a reset; quit ends it.
	 */
	pthread_t thread;
	bool thread_made;
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond; /* run or quit set, or run cleared (served to the end) */
	bool run, quit;
	bool thread_running; /* the worker asked it to serve and has not stopped it yet */
	atomic_bool stop;
};

struct msix_vector {
	uint64_t addr;
	uint32_t data, ctrl;
	int gsi;
	int irqfd;
	/*
	 * route_gen counts changes of the route (address, data, MSI-X enable); committed_gen is
	 * the count KVM's table holds. A message while they differ would go by the old route, so
	 * it waits as pending and has the worker commit (as while the vector is masked). Commits
	 * wait for the first message: a driver writes an entry as four dwords, and programs
	 * vectors it may never use, so the vCPU writing them wakes no one.
	 */
	unsigned int route_gen, committed_gen;
	bool pending; /* the PBA bit */
};

/* Work the vCPU leaves for the transport's worker thread. */
enum {
	WORK_RESET = 1, /* status 0 on a started device: stop, reset, then status reads 0 */
	WORK_START = 2, /* DRIVER_OK: map the rings, start the device and the queue threads */
	WORK_ROUTES = 4, /* MSI-X routes changed: commit them (KVM_SET_GSI_ROUTING) */
	WORK_IOEVENTFD = 8, /* BAR 0 moved: move the queues' ioeventfds (KVM_IOEVENTFD) */
};

/*
 * Locking. vp->lock guards the registers and the MSI-X state; it is held only to read or record
 * them, never across a system call or an allocation, so a vCPU's exit and a completion's
 * interrupt never wait behind slow work. The slow work (joining and creating threads, the
 * device's reset and start, route commits, ioeventfds) runs on the worker thread, which takes
 * vp->lock to snapshot what to do and to publish the result. INTx has its own lock (intx_lock).
 */
struct virtio_pci {
	struct pci_device pci;
	struct vm *vm;
	struct pci_bus *bus;
	struct irq_routing *irq;
	struct virtio_device *vdev;
	pthread_mutex_t lock; /* transport registers, MSI-X, the worker's work */
	bool reset_pending; /* status 0 written, the worker's reset not done */
	bool active; /* DRIVER_OK was taken: a reset needs the worker */
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint8_t status, config_generation;
	uint16_t queue_select, msix_config;
	uint16_t msix_ctl; /* MSI-X enable and function mask, as last written */
	bool intx_disabled; /* PCI_COMMAND's INTx disable, as last written */
	unsigned int msix_cap, nr_vectors;
	struct msix_vector *vectors;
	uint64_t notify_base; /* where BAR 0's notify area answers now, 0 if nowhere */
	/* The worker. */
	pthread_t worker;
	bool worker_running, worker_stop, worker_busy;
	unsigned int work; /* WORK_* */
	bool wake; /* vp_unlock wakes the worker */
	pthread_cond_t work_cond; /* work for the worker, or stop */
	pthread_cond_t idle_cond; /* the worker finished all work asked for */
	/*
	 * INTx (only without MSI-X): the line follows the ISR, so raising and lowering it keep
	 * intx_lock across KVM_IRQ_LINE; otherwise an ISR read's lowering could pass a raise and
	 * leave the line high with the ISR clear (a guest that reads 0 from the ISR says the
	 * interrupt was not its own, and Linux disables a line that does so too often).
	 */
	pthread_mutex_t intx_lock;
	uint8_t isr;
	int intx_level;
	struct vp_queue queues[VIRTIO_MAX_QUEUES];
};

static struct virtio_pci *to_vp(struct pci_device *dev)
{
	return (struct virtio_pci *)((char *)dev - offsetof(struct virtio_pci, pci));
}

static bool msix_enabled(struct virtio_pci *vp)
{
	return vp->msix_ctl & PCI_MSIX_FLAGS_ENABLE;
}

/*
 * Leaves work (WORK_*) for the worker. Called with vp->lock held; vp_unlock then wakes the
 * worker if it may be asleep (a busy one looks for more work before it sleeps).
 */
static void vp_queue_work_locked(struct virtio_pci *vp, unsigned int work)
{
	vp->work |= work;
	if (!vp->worker_busy)
		vp->wake = true;
}

/* Drops vp->lock, then wakes the worker if asked: the futex call is made without the lock. */
static void vp_unlock(struct virtio_pci *vp)
{
	bool wake = vp->wake;

	vp->wake = false;
	pthread_mutex_unlock(&vp->lock);
	if (wake)
		pthread_cond_signal(&vp->work_cond);
}

/* Writes each irqfd of fds (n of them): called with no lock held. */
static void vp_signal(struct virtio_pci *vp, const int *fds, unsigned int n)
{
	uint64_t one = 1;

	for (unsigned int i = 0; i < n; i++)
		if (write(fds[i], &one, sizeof(one)) < 0)
			nkvm_err("%s: irqfd: %s", vp->vdev->name, strerror(errno));
}

/* Whether vector v may send its message now: unmasked (PCI 3.0 §6.8.2), its route committed. */
static bool vp_msix_deliverable_locked(struct virtio_pci *vp, unsigned int v)
{
	struct msix_vector *m = &vp->vectors[v];

	return msix_enabled(vp) && !(vp->msix_ctl & PCI_MSIX_FLAGS_MASKALL) &&
	       !(m->ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT) && m->route_gen == m->committed_gen;
}

/*
 * A message of vector v: the irqfd to write once vp->lock is dropped, or -1 when none (no such
 * vector; or it waits as a pending bit until unmasked or committed). Called with vp->lock held.
 */
static int vp_msix_message_locked(struct virtio_pci *vp, uint16_t v)
{
	struct msix_vector *m;

	if (v >= vp->nr_vectors)
		return -1;
	m = &vp->vectors[v];
	if (!vp_msix_deliverable_locked(vp, v)) {
		m->pending = true;
		if (m->route_gen != m->committed_gen)
			vp_queue_work_locked(vp, WORK_ROUTES);
		return -1;
	}
	return m->irqfd;
}

/* The pending messages that may go now, into fds (nr_vectors entries); returns how many. */
static unsigned int vp_msix_take_pending_locked(struct virtio_pci *vp, int *fds)
{
	unsigned int n = 0;

	for (unsigned int v = 0; v < vp->nr_vectors; v++) {
		struct msix_vector *m = &vp->vectors[v];

		if (!m->pending)
			continue;
		if (vp_msix_deliverable_locked(vp, v)) {
			m->pending = false;
			fds[n++] = m->irqfd;
		} else if (m->route_gen != m->committed_gen) {
			vp_queue_work_locked(vp, WORK_ROUTES);
		}
	}
	return n;
}

static void vp_intx_set(struct virtio_pci *vp, int level)
{
	vp->intx_level = level;
	vm_irq_line(vp->vm, pci_slot_gsi(vp->pci.slot), level);
}

/* §4.1.4.5: INTx, without MSI-X: the ISR bit, and the line while the ISR is not read. */
static void vp_intx_raise(struct virtio_pci *vp, uint8_t isr_bit, bool disabled)
{
	pthread_mutex_lock(&vp->intx_lock);
	vp->isr |= isr_bit;
	if (!vp->intx_level && !disabled)
		vp_intx_set(vp, 1);
	pthread_mutex_unlock(&vp->intx_lock);
}

/* Reads and clears the ISR, lowering the line (§4.1.4.5.1); or just clears it (reset). */
static uint8_t vp_intx_ack(struct virtio_pci *vp)
{
	uint8_t isr;

	pthread_mutex_lock(&vp->intx_lock);
	isr = vp->isr;
	vp->isr = 0;
	if (vp->intx_level)
		vp_intx_set(vp, 0);
	pthread_mutex_unlock(&vp->intx_lock);
	return isr;
}

/*
 * Interrupts the driver on vector (MSI-X) or with isr_bit (INTx). Called without vp->lock:
 * it decides under the lock and writes the irqfd after.
 */
static void vp_interrupt(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	bool msix, disabled;
	int fd = -1;

	pthread_mutex_lock(&vp->lock);
	msix = msix_enabled(vp);
	disabled = vp->intx_disabled;
	if (msix)
		fd = vp_msix_message_locked(vp, vector);
	vp_unlock(vp);
	if (!msix)
		vp_intx_raise(vp, isr_bit, disabled);
	else if (fd >= 0)
		vp_signal(vp, &fd, 1);
}

/* The route of every vector changes (MSI-X enable). Called with vp->lock held. */
static void vp_msix_routes_changed_locked(struct virtio_pci *vp)
{
	for (unsigned int v = 0; v < vp->nr_vectors; v++)
		vp->vectors[v].route_gen++;
	/* Committed now, not at the next message: see vp_msix_write. */
	vp_queue_work_locked(vp, WORK_ROUTES);
}

/* --- queue I/O threads -------------------------------------------------------------------- */

/*
 * Waits for kicks, and for the device's own descriptor if it has one (completions it reaps on
 * this thread, e.g. a disk's io_uring or AIO context), and hands each to the device; or lets
 * the device wait for both itself (queue_wait), where one system call then sleeps, submits
 * and reaps.
 */
static void vp_needs_reset(struct virtio_pci *vp, const char *why);

static void vp_queue_serve(struct vp_queue *q)
{
	struct virtio_device *vdev = q->vp->vdev;
	struct pollfd pfd[2] = {
		{ .fd = q->kick_fd, .events = POLLIN },
		{ .fd = -1, .events = POLLIN }, /* poll skips a negative fd */
	};
	uint64_t count;
	bool waits = vdev->ops->queue_wait;
	int ret;

	if (vdev->ops->queue_start)
		vdev->ops->queue_start(vdev, q->index, &pfd[1].fd);
	/* A first pass: buffers may have been queued before the kick path existed. */
	vdev->ops->queue_kick(vdev, q->index);
	while (!atomic_load(&q->stop)) {
		/* A device that can sleep in its own I/O wait takes the kicks there too. */
		if (waits) {
			ret = vdev->ops->queue_wait(vdev, q->index, q->kick_fd);
			if (ret == -EOPNOTSUPP)
				waits = false;
			else if (ret > 0 && !atomic_load(&q->stop))
				vdev->ops->queue_kick(vdev, q->index);
			continue;
		}
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (atomic_load(&q->stop))
			break;
		/* Completions first: they free what new requests may need. */
		if (pfd[1].revents)
			vdev->ops->queue_event(vdev, q->index);
		if (pfd[0].revents) {
			if (read(q->kick_fd, &count, sizeof(count)) < 0 && errno != EINTR)
				break;
			vdev->ops->queue_kick(vdev, q->index);
		}
	}
	if (vdev->ops->queue_stop)
		vdev->ops->queue_stop(vdev, q->index);
}

/* What a queue thread runs under when its device names no filter of its own. */
static const struct sandbox_rule vp_queue_rules[] = {
	VIRTIO_QUEUE_RULES,
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter vp_queue_filter = {
	.thread = "virtio-queue",
	.rules = vp_queue_rules,
	.nr_rules = ARRAY_SIZE(vp_queue_rules),
};

static void *vp_queue_thread(void *arg)
{
	struct vp_queue *q = arg;
	struct virtio_device *vdev = q->vp->vdev;
	int err = sandbox_enter(vdev->queue_filter ? vdev->queue_filter : &vp_queue_filter);

	if (err)
		nkvm_err("%s: queue %u: cannot enter the sandbox: %s", vdev->name, q->index,
			 strerror(-err));
	pthread_mutex_lock(&q->park_lock);
	for (;;) {
		while (!q->run && !q->quit)
			pthread_cond_wait(&q->park_cond, &q->park_lock);
		if (q->quit)
			break;
		pthread_mutex_unlock(&q->park_lock);
#ifdef NKVM_TEST_HOOKS
		if (sandbox_test_hook(sandbox_thread_name(), "forbidden"))
			sandbox_test_forbidden_call();
#endif
		/* Unconfined, it must not touch the guest's rings. */
		if (err)
			vp_needs_reset(q->vp, "a queue thread could not enter its sandbox");
		else
			vp_queue_serve(q);
		pthread_mutex_lock(&q->park_lock);
		q->run = false;
		pthread_cond_broadcast(&q->park_cond);
	}
	pthread_mutex_unlock(&q->park_lock);
	return NULL;
}

/* On the worker: the parked thread serves q until vp_stop_queue_threads. */
static void vp_start_queue_thread(struct vp_queue *q)
{
	atomic_store(&q->stop, false);
	pthread_mutex_lock(&q->park_lock);
	q->run = true;
	pthread_cond_broadcast(&q->park_cond);
	pthread_mutex_unlock(&q->park_lock);
	q->thread_running = true;
}

static void vp_stop_queue_threads(struct virtio_pci *vp)
{
	uint64_t one = 1;

	for (unsigned int i = 0; i < vp->vdev->nr_queues; i++) {
		struct vp_queue *q = &vp->queues[i];

		if (!q->thread_running)
			continue;
		atomic_store(&q->stop, true);
		if (write(q->kick_fd, &one, sizeof(one)) < 0)
			nkvm_err("%s: cannot wake queue %u", vp->vdev->name, i);
		pthread_mutex_lock(&q->park_lock);
		while (q->run)
			pthread_cond_wait(&q->park_cond, &q->park_lock);
		pthread_mutex_unlock(&q->park_lock);
		q->thread_running = false;
	}
}

/* --- ioeventfd: kicks without an exit to nkvm ---------------------------------------------- */

static void vp_ioeventfd(struct virtio_pci *vp, struct vp_queue *q, uint64_t addr, bool assign)
{
	struct kvm_ioeventfd ev = {
		.addr = addr,
		.len = 2, /* Linux writes the queue index as 16 bits */
		.fd = q->kick_fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	/* A driver in this process (vm_fd -1) kicks through the notify register. */
	if (vp->vm->vm_fd < 0)
		return;
	if (ioctl(vp->vm->vm_fd, KVM_IOEVENTFD, &ev) < 0) {
		/* Kicks then come through an MMIO exit instead: slower, still correct. */
		if (assign)
			nkvm_err("%s: KVM_IOEVENTFD: %s", vp->vdev->name, strerror(errno));
		return;
	}
	q->ioeventfd_addr = assign ? addr : 0;
}

/* On a vCPU (a BAR write): the worker moves the ioeventfds; kicks meanwhile exit to nkvm. */
static void vp_bar_moved(struct pci_device *dev, unsigned int bar, uint64_t addr)
{
	struct virtio_pci *vp = to_vp(dev);

	if (bar != 0)
		return;
	pthread_mutex_lock(&vp->lock);
	vp->notify_base = addr ? addr + OFF_NOTIFY : 0;
	vp_queue_work_locked(vp, WORK_IOEVENTFD);
	vp_unlock(vp);
}

/* --- reset and start ----------------------------------------------------------------------- */

/* §2.4: the registers as at power-on. Called with vp->lock held; no system call. */
static void vp_reset_registers_locked(struct virtio_pci *vp)
{
	struct virtio_device *vdev = vp->vdev;

	vp->status = 0;
	vp->dfselect = vp->gfselect = 0;
	vp->driver_features = 0;
	vdev->features = 0;
	vp->queue_select = 0;
	vp->msix_config = VIRTIO_MSI_NO_VECTOR;
	for (unsigned int i = 0; i < vdev->nr_queues; i++) {
		struct vp_queue *q = &vp->queues[i];

		pthread_mutex_lock(&q->lock);
		q->ready = false;
		q->size = vdev->queue_max_size;
		q->msix_vector = VIRTIO_MSI_NO_VECTOR;
		q->enable = 0;
		q->desc = q->driver = q->device = 0;
		pthread_mutex_unlock(&q->lock);
	}
}

/*
 * On the worker: §2.4's reset of a device that was started. The queue threads end, the device
 * finishes its requests in flight and forgets them, then the registers go back to power-on and
 * the status reads 0, which the driver waits for (§4.1.4.3.2). Until then the common
 * configuration ignores writes (vp_common_write).
 */
static void vp_do_reset(struct virtio_pci *vp)
{
	vp_stop_queue_threads(vp);
	if (vp->vdev->ops->reset)
		vp->vdev->ops->reset(vp->vdev);
	vp_intx_ack(vp);
	pthread_mutex_lock(&vp->lock);
	vp_reset_registers_locked(vp);
	vp->active = false;
	vp->reset_pending = false;
	pthread_mutex_unlock(&vp->lock);
}

/*
 * §2.1.2: the device is in an error state a reset must clear; it tells a running driver with
 * a configuration change interrupt. Called with vp->lock held; returns whether to interrupt
 * the driver (vp_interrupt on msix_config, once the lock is dropped).
 */
static bool vp_needs_reset_locked(struct virtio_pci *vp, const char *why)
{
	if (vp->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return false;
	nkvm_err("%s: %s: device needs reset", vp->vdev->name, why);
	vp->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	vp->config_generation++;
	return true;
}

static void vp_needs_reset(struct virtio_pci *vp, const char *why)
{
	bool raise;
	uint16_t vector;

	pthread_mutex_lock(&vp->lock);
	raise = vp_needs_reset_locked(vp, why);
	vector = vp->msix_config;
	pthread_mutex_unlock(&vp->lock);
	if (raise)
		vp_interrupt(vp, vector, VIRTIO_PCI_ISR_CONFIG);
}

/*
 * On the worker: DRIVER_OK. Maps every enabled queue, starts the device and the queue threads.
 * The registers it reads are fixed meanwhile: queues and features do not change while
 * DRIVER_OK is set, and a reset waits for the worker.
 */
static void vp_do_start(struct virtio_pci *vp)
{
	struct virtio_device *vdev = vp->vdev;
	bool event_idx, indirect;

	pthread_mutex_lock(&vp->lock);
	event_idx = vdev->features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	indirect = vdev->features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	for (unsigned int i = 0; i < vdev->nr_queues; i++) {
		struct vp_queue *q = &vp->queues[i];
		int err = 0;

		if (!q->enable)
			continue;
		pthread_mutex_lock(&q->lock);
		err = virtq_init(&q->vq, vm_memory(vp->vm), q->size, q->desc, q->driver, q->device,
				 event_idx, indirect);
		q->ready = !err;
		pthread_mutex_unlock(&q->lock);
		if (err) {
			pthread_mutex_unlock(&vp->lock);
			nkvm_err("%s: queue %u: rings outside guest RAM or misaligned", vdev->name,
				 i);
			vp_needs_reset(vp, "the driver's rings cannot be mapped");
			return;
		}
	}
	pthread_mutex_unlock(&vp->lock);
	if (vdev->ops->start && vdev->ops->start(vdev)) {
		vp_needs_reset(vp, "the device did not start");
		return;
	}
	for (unsigned int i = 0; i < vdev->nr_queues; i++) {
		struct vp_queue *q = &vp->queues[i];

		/* A queue vhost serves: its kicks and rings are the kernel's until the reset. */
		if (!q->ready ||
		    (vdev->ops->queue_offloaded && vdev->ops->queue_offloaded(vdev, i)))
			continue;
		vp_start_queue_thread(q);
	}
}

/* On the worker: puts the queues' ioeventfds where the notify area now answers. */
static void vp_do_ioeventfd(struct virtio_pci *vp)
{
	uint64_t base;

	pthread_mutex_lock(&vp->lock);
	base = vp->notify_base;
	pthread_mutex_unlock(&vp->lock);
	for (unsigned int i = 0; i < vp->vdev->nr_queues; i++) {
		struct vp_queue *q = &vp->queues[i];
		uint64_t addr = base ? base + i * NOTIFY_MULTIPLIER : 0;

		if (q->ioeventfd_addr == addr)
			continue;
		if (q->ioeventfd_addr)
			vp_ioeventfd(vp, q, q->ioeventfd_addr, false);
		if (addr)
			vp_ioeventfd(vp, q, addr, true);
	}
}

/*
 * On the worker: commits the routes the driver changed, in one KVM_SET_GSI_ROUTING, then
 * sends the messages that waited for them.
 */
static void vp_do_routes(struct virtio_pci *vp)
{
	struct irq_msi_route routes[VIRTIO_MAX_QUEUES + 1];
	unsigned int vec[VIRTIO_MAX_QUEUES + 1], gen[VIRTIO_MAX_QUEUES + 1], n = 0, nfds;
	int fds[VIRTIO_MAX_QUEUES + 1], err;

	pthread_mutex_lock(&vp->lock);
	for (unsigned int v = 0; v < vp->nr_vectors; v++) {
		struct msix_vector *m = &vp->vectors[v];

		if (m->route_gen == m->committed_gen)
			continue;
		routes[n] = (struct irq_msi_route){
			.gsi = m->gsi, .enabled = msix_enabled(vp), .addr = m->addr, .data = m->data
		};
		vec[n] = v;
		gen[n++] = m->route_gen;
	}
	pthread_mutex_unlock(&vp->lock);
	if (!n)
		return;
	err = irq_msi_set_routes(vp->irq, routes, n);
	if (err)
		nkvm_err("%s: MSI-X routes: %s", vp->vdev->name, strerror(-err));
	pthread_mutex_lock(&vp->lock);
	/* Even on failure: a message then goes by what KVM has, rather than never. */
	for (unsigned int i = 0; i < n; i++)
		vp->vectors[vec[i]].committed_gen = gen[i];
	nfds = vp_msix_take_pending_locked(vp, fds);
	pthread_mutex_unlock(&vp->lock);
	vp_signal(vp, fds, nfds);
}

/*
 * The worker: routes and ioeventfds (KVM on the VM's fd), and each device's start and reset,
 * which hand a TAP its offloads and vhost its rings (vhost.c, vhost_net.c, vsock.c), and wait
 * for requests in flight. Interrupts are irqfd writes.
 */
static const struct sandbox_rule vp_worker_rules[] = {
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_IOEVENTFD),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_SET_GSI_ROUTING),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_IRQ_LINE),
	SANDBOX_ALLOW_ARG(ioctl, 1, TUNSETOFFLOAD),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_SET_FEATURES),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_SET_MEM_TABLE),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_SET_VRING_NUM),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_SET_VRING_BASE),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_SET_VRING_ADDR),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_SET_VRING_KICK),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_SET_VRING_CALL),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_GET_VRING_BASE),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_NET_SET_BACKEND),
	SANDBOX_ALLOW_ARG(ioctl, 1, VHOST_VSOCK_SET_RUNNING),
	SANDBOX_ALLOW(write), /* irqfds, a queue's kick_fd at its stop */
	SANDBOX_ALLOW(read),
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter vp_worker_filter = {
	.thread = "virtio-worker",
	.rules = vp_worker_rules,
	.nr_rules = ARRAY_SIZE(vp_worker_rules),
};

static void *vp_worker(void *arg)
{
	struct virtio_pci *vp = arg;
	unsigned int work;
	int err = sandbox_enter(&vp_worker_filter);

	/* Unconfined, it does no work for the guest: the device never starts. */
	if (err)
		nkvm_err("%s: the transport's worker cannot enter the sandbox: %s", vp->vdev->name,
			 strerror(-err));
	pthread_mutex_lock(&vp->lock);
	for (;;) {
		while (!vp->work && !vp->worker_stop)
			pthread_cond_wait(&vp->work_cond, &vp->lock);
		if (!vp->work)
			break;
		work = vp->work;
		vp->work = 0;
		vp->worker_busy = true;
		pthread_mutex_unlock(&vp->lock);
#ifdef NKVM_TEST_HOOKS
		if (sandbox_test_hook("virtio-worker", "forbidden"))
			sandbox_test_forbidden_call();
#endif
		if (err)
			work &= WORK_RESET;
		if (work & WORK_ROUTES)
			vp_do_routes(vp);
		if (work & WORK_IOEVENTFD)
			vp_do_ioeventfd(vp);
		/* A reset written after DRIVER_OK, before the start ran: nothing to start. */
		if (work & WORK_RESET)
			vp_do_reset(vp);
		else if (work & WORK_START)
			vp_do_start(vp);
		pthread_mutex_lock(&vp->lock);
		vp->worker_busy = false;
		if (!vp->work)
			pthread_cond_broadcast(&vp->idle_cond);
	}
	pthread_mutex_unlock(&vp->lock);
	return NULL;
}

/* Waits until the worker has done all the work asked of it. Called with vp->lock held. */
static void vp_settle_locked(struct virtio_pci *vp)
{
	while (vp->worker_running && (vp->work || vp->worker_busy))
		pthread_cond_wait(&vp->idle_cond, &vp->lock);
}

/* Whether each step in s comes with all the steps before it (§3.1.1). */
static bool status_steps_in_order(uint8_t s)
{
	static const uint8_t order[] = { VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER,
					 VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_DRIVER_OK };
	bool gap = false;

	for (unsigned int i = 0; i < sizeof(order); i++) {
		if (!(s & order[i]))
			gap = true;
		else if (gap)
			return false;
	}
	return true;
}

/* What a register write leaves to do once vp->lock is dropped (AFTER_*). */
enum { AFTER_CONFIG_IRQ = 1, AFTER_CLEAR_ISR = 2 };

/*
 * The status only moves forward until a reset: each step runs once, on the state the steps
 * before it left. A write that clears a bit (§2.1.1: the driver never does), sets a step out of
 * order (§3.1.1), or takes a step after FAILED (§2.1.1: the driver resets first) or
 * DEVICE_NEEDS_RESET (§2.1.2: only a reset clears it) is refused and leaves the device needing
 * a reset. Without this, DRIVER_OK cleared and set again started the queues a second time on a
 * live device, and FEATURES_OK cleared and set again renegotiated the features under it.
 * Returns AFTER_* work.
 */
static unsigned int vp_write_status_locked(struct virtio_pci *vp, uint8_t status)
{
	struct virtio_device *vdev = vp->vdev;
	uint8_t old = vp->status & ~VIRTIO_CONFIG_S_NEEDS_RESET, added;

	if (status == 0) {
		/*
		 * §4.1.4.3.2: the driver reads the status until it is 0. A device that never started
		 * has only registers to clear; a started one is the worker's to reset, and the
		 * status reads as before until then.
		 */
		if (!vp->active) {
			vp_reset_registers_locked(vp);
			return AFTER_CLEAR_ISR;
		}
		vp->reset_pending = true;
		vp_queue_work_locked(vp, WORK_RESET);
		return 0;
	}
	/* DEVICE_NEEDS_RESET is the device's bit (a driver writes back what it read); 0x30 unused. */
	status &= STATUS_STEPS | VIRTIO_CONFIG_S_FAILED;
	added = status & ~old;
	if (old & ~status) {
		return vp_needs_reset_locked(vp, "the driver cleared a device status bit") ?
			       AFTER_CONFIG_IRQ :
			       0;
	}
	if (!(added & STATUS_STEPS)) {
		vp->status |= added; /* FAILED, or the same steps written again */
		return 0;
	}
	if (!status_steps_in_order(status)) {
		return vp_needs_reset_locked(vp, "the driver skipped an initialization step") ?
			       AFTER_CONFIG_IRQ :
			       0;
	}
	if ((vp->status & VIRTIO_CONFIG_S_NEEDS_RESET) || (status & VIRTIO_CONFIG_S_FAILED)) {
		return vp_needs_reset_locked(vp, "the driver went on without a reset") ?
			       AFTER_CONFIG_IRQ :
			       0;
	}
	if (added & VIRTIO_CONFIG_S_FEATURES_OK) {
		/*
		 * §3.1.1: accept only a subset of what was offered, and only modern drivers. A
		 * refusal leaves FEATURES_OK clear for the driver to read back, and any later step
		 * of the same write undone.
		 */
		if ((vp->driver_features & ~vdev->host_features) ||
		    !(vp->driver_features & (1ULL << VIRTIO_F_VERSION_1)))
			status &= ~(VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
		else
			vdev->features = vp->driver_features;
	}
	vp->status = status;
	if (status & added & VIRTIO_CONFIG_S_DRIVER_OK) {
		vp->active = true;
		vp_queue_work_locked(vp, WORK_START);
	}
	return 0;
}

/* --- common configuration (§4.1.4.3) ------------------------------------------------------ */

static struct vp_queue *vp_selected(struct virtio_pci *vp)
{
	return vp->queue_select < vp->vdev->nr_queues ? &vp->queues[vp->queue_select] : NULL;
}

static void vp_common_snapshot(struct virtio_pci *vp, uint8_t *r)
{
	struct vp_queue *q = vp_selected(vp);
	uint64_t f = vp->vdev->host_features;

	memset(r, 0, COMMON_SIZE);
	put_le(r + VIRTIO_PCI_COMMON_DFSELECT, vp->dfselect, 4);
	put_le(r + VIRTIO_PCI_COMMON_DF,
	       vp->dfselect < 2 ? (uint32_t)(f >> (32 * vp->dfselect)) : 0, 4);
	put_le(r + VIRTIO_PCI_COMMON_GFSELECT, vp->gfselect, 4);
	put_le(r + VIRTIO_PCI_COMMON_GF,
	       vp->gfselect < 2 ? (uint32_t)(vp->driver_features >> (32 * vp->gfselect)) : 0, 4);
	put_le(r + VIRTIO_PCI_COMMON_MSIX, vp->msix_config, 2);
	put_le(r + VIRTIO_PCI_COMMON_NUMQ, vp->vdev->nr_queues, 2);
	r[VIRTIO_PCI_COMMON_STATUS] = vp->status;
	r[VIRTIO_PCI_COMMON_CFGGENERATION] = vp->config_generation;
	put_le(r + VIRTIO_PCI_COMMON_Q_SELECT, vp->queue_select, 2);
	if (!q)
		return; /* a queue that does not exist reads as size 0 */
	put_le(r + VIRTIO_PCI_COMMON_Q_SIZE, q->size, 2);
	put_le(r + VIRTIO_PCI_COMMON_Q_MSIX, q->msix_vector, 2);
	put_le(r + VIRTIO_PCI_COMMON_Q_ENABLE, q->enable, 2);
	put_le(r + VIRTIO_PCI_COMMON_Q_NOFF, q->index, 2);
	put_le(r + VIRTIO_PCI_COMMON_Q_DESCLO, q->desc, 8);
	put_le(r + VIRTIO_PCI_COMMON_Q_AVAILLO, q->driver, 8);
	put_le(r + VIRTIO_PCI_COMMON_Q_USEDLO, q->device, 8);
}

static bool covers(uint64_t off, unsigned int len, unsigned int field, unsigned int size)
{
	return off < field + size && field < off + len;
}

/* Applies the registers a write touched; r holds the snapshot with the written bytes in. */
static unsigned int vp_common_apply(struct virtio_pci *vp, const uint8_t *r, uint64_t off,
				    unsigned int len)
{
	struct vp_queue *q;
	bool live = vp->status & VIRTIO_CONFIG_S_DRIVER_OK;

	if (covers(off, len, VIRTIO_PCI_COMMON_DFSELECT, 4))
		vp->dfselect = get_le(r + VIRTIO_PCI_COMMON_DFSELECT, 4);
	if (covers(off, len, VIRTIO_PCI_COMMON_GFSELECT, 4))
		vp->gfselect = get_le(r + VIRTIO_PCI_COMMON_GFSELECT, 4);
	if (covers(off, len, VIRTIO_PCI_COMMON_GF, 4) && vp->gfselect < 2 &&
	    !(vp->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
		uint64_t mask = 0xffffffffULL << (32 * vp->gfselect);

		vp->driver_features = (vp->driver_features & ~mask) |
				      (get_le(r + VIRTIO_PCI_COMMON_GF, 4) << (32 * vp->gfselect));
	}
	if (covers(off, len, VIRTIO_PCI_COMMON_MSIX, 2)) {
		uint16_t v = get_le(r + VIRTIO_PCI_COMMON_MSIX, 2);

		/* §4.1.5.1.2.1: a vector the device cannot map reads back as NO_VECTOR. */
		vp->msix_config = v < vp->nr_vectors ? v : VIRTIO_MSI_NO_VECTOR;
	}
	if (covers(off, len, VIRTIO_PCI_COMMON_Q_SELECT, 2))
		vp->queue_select = get_le(r + VIRTIO_PCI_COMMON_Q_SELECT, 2);
	q = vp_selected(vp);
	/* Queue registers change only while the queue is off and the device not running. */
	if (q && !live && !q->enable) {
		pthread_mutex_lock(&q->lock);
		if (covers(off, len, VIRTIO_PCI_COMMON_Q_SIZE, 2)) {
			uint16_t size = get_le(r + VIRTIO_PCI_COMMON_Q_SIZE, 2);

			/* A size the driver may not pick is refused by keeping the old one. */
			if (size && size <= vp->vdev->queue_max_size && !(size & (size - 1)))
				q->size = size;
		}
		if (covers(off, len, VIRTIO_PCI_COMMON_Q_DESCLO, 8))
			q->desc = get_le(r + VIRTIO_PCI_COMMON_Q_DESCLO, 8);
		if (covers(off, len, VIRTIO_PCI_COMMON_Q_AVAILLO, 8))
			q->driver = get_le(r + VIRTIO_PCI_COMMON_Q_AVAILLO, 8);
		if (covers(off, len, VIRTIO_PCI_COMMON_Q_USEDLO, 8))
			q->device = get_le(r + VIRTIO_PCI_COMMON_Q_USEDLO, 8);
		pthread_mutex_unlock(&q->lock);
	}
	if (q && covers(off, len, VIRTIO_PCI_COMMON_Q_MSIX, 2)) {
		uint16_t v = get_le(r + VIRTIO_PCI_COMMON_Q_MSIX, 2);

		q->msix_vector = v < vp->nr_vectors ? v : VIRTIO_MSI_NO_VECTOR;
	}
	if (q && covers(off, len, VIRTIO_PCI_COMMON_Q_ENABLE, 2) && !live &&
	    get_le(r + VIRTIO_PCI_COMMON_Q_ENABLE, 2) == 1)
		q->enable = 1; /* §4.1.4.3.2: the driver never writes 0 */
	if (covers(off, len, VIRTIO_PCI_COMMON_STATUS, 1))
		return vp_write_status_locked(vp, r[VIRTIO_PCI_COMMON_STATUS]);
	return 0;
}

static void vp_common_read(struct virtio_pci *vp, uint64_t off, void *data, unsigned int len)
{
	uint8_t r[COMMON_SIZE];

	pthread_mutex_lock(&vp->lock);
	vp_common_snapshot(vp, r);
	pthread_mutex_unlock(&vp->lock);
	memcpy(data, r + off, len);
}

static void vp_common_write(struct virtio_pci *vp, uint64_t off, const void *data, unsigned int len)
{
	uint8_t r[COMMON_SIZE];
	unsigned int after = 0;
	uint16_t config_vector;

	pthread_mutex_lock(&vp->lock);
	/*
	 * §4.1.4.3.2: after writing 0 the driver waits for the status to read 0 before anything
	 * else. A write before that (a driver that did not wait, or another vCPU) is dropped:
	 * applied, it could start the device in the middle of its reset.
	 */
	if (!vp->reset_pending) {
		vp_common_snapshot(vp, r);
		memcpy(r + off, data, len);
		after = vp_common_apply(vp, r, off, len);
	}
	config_vector = vp->msix_config;
	vp_unlock(vp);
	if (after & AFTER_CLEAR_ISR)
		vp_intx_ack(vp);
	if (after & AFTER_CONFIG_IRQ)
		vp_interrupt(vp, config_vector, VIRTIO_PCI_ISR_CONFIG);
}

/* --- MSI-X table and PBA (PCI 3.0 §6.8.2) -------------------------------------------------- */

static void vp_msix_read(struct virtio_pci *vp, uint64_t off, void *data, unsigned int len)
{
	uint8_t e[PCI_MSIX_ENTRY_SIZE];
	unsigned int v = off / PCI_MSIX_ENTRY_SIZE;

	memset(data, 0, len);
	if (v >= vp->nr_vectors || off % PCI_MSIX_ENTRY_SIZE + len > PCI_MSIX_ENTRY_SIZE)
		return;
	pthread_mutex_lock(&vp->lock);
	put_le(e, vp->vectors[v].addr, 8);
	put_le(e + 8, vp->vectors[v].data, 4);
	put_le(e + 12, vp->vectors[v].ctrl, 4);
	pthread_mutex_unlock(&vp->lock);
	memcpy(data, e + off % PCI_MSIX_ENTRY_SIZE, len);
}

/*
 * A table write: the entry is recorded, and an unmask sends what waited (PCI 3.0 §6.8.2), by an
 * irqfd write after the lock is dropped. A new address or data goes to KVM on the worker at
 * once rather than at the vector's next message: a vhost back end (virtio_queue_vhost_view)
 * writes the irqfd without nkvm, and its messages would otherwise follow a route KVM never got.
 * The worker commits routes before it starts a device, so a driver that programs its vectors
 * before DRIVER_OK (Linux does) has them in KVM when vhost starts.
 */
static void vp_msix_write(struct virtio_pci *vp, uint64_t off, const void *data, unsigned int len)
{
	unsigned int v = off / PCI_MSIX_ENTRY_SIZE, at = off % PCI_MSIX_ENTRY_SIZE, n;
	struct msix_vector *m;
	uint8_t e[PCI_MSIX_ENTRY_SIZE];
	uint64_t addr;
	uint32_t msg;
	int fds[VIRTIO_MAX_QUEUES + 1];

	if (v >= vp->nr_vectors || at + len > PCI_MSIX_ENTRY_SIZE)
		return;
	pthread_mutex_lock(&vp->lock);
	m = &vp->vectors[v];
	put_le(e, m->addr, 8);
	put_le(e + 8, m->data, 4);
	put_le(e + 12, m->ctrl, 4);
	memcpy(e + at, data, len);
	addr = get_le(e, 8);
	msg = get_le(e + 8, 4);
	m->ctrl = get_le(e + 12, 4) & PCI_MSIX_ENTRY_CTRL_MASKBIT;
	if (addr != m->addr || msg != m->data) {
		m->addr = addr;
		m->data = msg;
		m->route_gen++;
		vp_queue_work_locked(vp, WORK_ROUTES);
	}
	n = vp_msix_take_pending_locked(vp, fds);
	vp_unlock(vp);
	vp_signal(vp, fds, n);
}

static void vp_pba_read(struct virtio_pci *vp, uint64_t off, void *data, unsigned int len)
{
	uint8_t bits[(VIRTIO_MAX_QUEUES + 1 + 7) / 8 + 8] = { 0 };

	memset(data, 0, len);
	pthread_mutex_lock(&vp->lock);
	for (unsigned int v = 0; v < vp->nr_vectors; v++)
		if (vp->vectors[v].pending)
			bits[v / 8] |= 1 << (v % 8);
	pthread_mutex_unlock(&vp->lock);
	if (off < sizeof(bits))
		memcpy(data, bits + off, len < sizeof(bits) - off ? len : sizeof(bits) - off);
}

/* On a vCPU, after a config space write: MSI-X enable and mask, PCI_COMMAND's INTx disable. */
static void vp_config_written(struct pci_device *dev, unsigned int off, unsigned int len)
{
	struct virtio_pci *vp = to_vp(dev);
	uint16_t ctl;
	unsigned int n;
	int fds[VIRTIO_MAX_QUEUES + 1];

	pthread_mutex_lock(&vp->lock);
	/* The bus wrote cfg on this thread, before calling: these bytes are as the guest left them. */
	vp->intx_disabled = vp->pci.cfg[PCI_COMMAND + 1] & (PCI_COMMAND_INTX_DISABLE >> 8);
	ctl = vp->pci.cfg[vp->msix_cap + 2] | vp->pci.cfg[vp->msix_cap + 3] << 8;
	ctl &= PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL;
	/* Routes follow the enable bit; pending messages go when the function mask lifts. */
	if ((ctl ^ vp->msix_ctl) & PCI_MSIX_FLAGS_ENABLE)
		vp_msix_routes_changed_locked(vp);
	vp->msix_ctl = ctl;
	n = vp_msix_take_pending_locked(vp, fds);
	vp_unlock(vp);
	vp_signal(vp, fds, n);
}

/* --- BAR 0 dispatch ------------------------------------------------------------------------- */

static void vp_bar_read(struct pci_device *dev, unsigned int bar, uint64_t off, void *data,
			unsigned int len)
{
	struct virtio_pci *vp = to_vp(dev);
	struct virtio_device *vdev = vp->vdev;

	memset(data, 0, len);
	if (off + len <= OFF_COMMON + COMMON_SIZE) { /* OFF_COMMON is 0 */
		vp_common_read(vp, off - OFF_COMMON, data, len);
	} else if (off == OFF_ISR) {
		/* §4.1.4.5: reading the ISR clears it and lowers INTx. */
		*(uint8_t *)data = vp_intx_ack(vp);
	} else if (off >= OFF_DEVICE && off + len <= OFF_DEVICE + vdev->config_size) {
		if (vdev->ops->config_read)
			vdev->ops->config_read(vdev, off - OFF_DEVICE, data, len);
	} else if (off >= OFF_MSIX_TABLE && off < OFF_MSIX_PBA) {
		vp_msix_read(vp, off - OFF_MSIX_TABLE, data, len);
	} else if (off >= OFF_MSIX_PBA) {
		vp_pba_read(vp, off - OFF_MSIX_PBA, data, len);
	}
}

static void vp_bar_write(struct pci_device *dev, unsigned int bar, uint64_t off, const void *data,
			 unsigned int len)
{
	struct virtio_pci *vp = to_vp(dev);
	struct virtio_device *vdev = vp->vdev;
	uint64_t one = 1;

	if (off + len <= OFF_COMMON + COMMON_SIZE) { /* OFF_COMMON is 0 */
		vp_common_write(vp, off - OFF_COMMON, data, len);
	} else if (off >= OFF_DEVICE && off + len <= OFF_DEVICE + vdev->config_size) {
		if (vdev->ops->config_write)
			vdev->ops->config_write(vdev, off - OFF_DEVICE, data, len);
	} else if (off >= OFF_NOTIFY && off < OFF_NOTIFY + vdev->nr_queues * NOTIFY_MULTIPLIER) {
		/* A kick that did not match the ioeventfd (other width, or none registered). */
		struct vp_queue *q = &vp->queues[(off - OFF_NOTIFY) / NOTIFY_MULTIPLIER];

		if (write(q->kick_fd, &one, sizeof(one)) < 0)
			nkvm_err("%s: kick: %s", vdev->name, strerror(errno));
	} else if (off >= OFF_MSIX_TABLE && off < OFF_MSIX_PBA) {
		vp_msix_write(vp, off - OFF_MSIX_TABLE, data, len);
	}
}

static const struct pci_device_ops vp_pci_ops = {
	.bar_read = vp_bar_read,
	.bar_write = vp_bar_write,
	.bar_moved = vp_bar_moved,
	.config_written = vp_config_written,
};

/* --- services for devices ------------------------------------------------------------------ */

int virtio_pop(struct virtio_device *vdev, unsigned int qi, struct virtq_chain *c)
{
	struct vp_queue *q = &vdev->transport->queues[qi];
	int r;

	pthread_mutex_lock(&q->lock);
	r = q->ready ? virtq_pop(&q->vq, c) : 0;
	/* A hostile ring: stop serving the queue until the driver resets the device. */
	if (r < 0)
		q->ready = false;
	if (r == 0 && q->ready) {
		/*
		 * Empty: ask the driver to kick for the next buffer (with EVENT_IDX that is
		 * avail_event = the next index), then look once more, since the driver may have
		 * added one before it could see the request (§2.7.10).
		 */
		virtq_set_notify(&q->vq, true);
		if (virtq_has_avail(&q->vq))
			r = virtq_pop(&q->vq, c);
	}
	pthread_mutex_unlock(&q->lock);
	if (r < 0)
		virtio_needs_reset(vdev, r == -ENOSPC ?
						 "more requests in flight than the queue size" :
						 "malformed descriptor chain");
	return r;
}

bool virtio_has_avail(struct virtio_device *vdev, unsigned int qi)
{
	struct vp_queue *q = &vdev->transport->queues[qi];
	bool avail;

	pthread_mutex_lock(&q->lock);
	avail = q->ready && virtq_has_avail(&q->vq);
	pthread_mutex_unlock(&q->lock);
	return avail;
}

/* Pushes head (when push) and, when notify, interrupts the driver if it asked to be. */
static void vp_push(struct virtio_device *vdev, unsigned int qi, bool push, uint16_t head,
		    uint32_t len, bool notify)
{
	struct virtio_pci *vp = vdev->transport;
	struct vp_queue *q = &vp->queues[qi];

	pthread_mutex_lock(&q->lock);
	if (!q->ready) {
		pthread_mutex_unlock(&q->lock);
		return;
	}
	if (push)
		virtq_push(&q->vq, head, len);
	notify = notify && virtq_need_notify(&q->vq);
	pthread_mutex_unlock(&q->lock);
	if (notify)
		vp_interrupt(vp, q->msix_vector, ISR_QUEUE);
}

void virtio_push(struct virtio_device *vdev, unsigned int qi, uint16_t head, uint32_t len)
{
	vp_push(vdev, qi, true, head, len, true);
}

void virtio_push_batched(struct virtio_device *vdev, unsigned int qi, uint16_t head, uint32_t len)
{
	vp_push(vdev, qi, true, head, len, false);
}

void virtio_notify(struct virtio_device *vdev, unsigned int qi)
{
	vp_push(vdev, qi, false, 0, 0, true);
}

void virtio_needs_reset(struct virtio_device *vdev, const char *why)
{
	vp_needs_reset(vdev->transport, why);
}

void virtio_config_changed(struct virtio_device *vdev)
{
	struct virtio_pci *vp = vdev->transport;
	bool live;
	uint16_t vector;

	pthread_mutex_lock(&vp->lock);
	vp->config_generation++; /* §4.1.4.3: a driver reading the config looks again */
	live = (vp->status & VIRTIO_CONFIG_S_DRIVER_OK) && !vp->reset_pending;
	vector = vp->msix_config;
	pthread_mutex_unlock(&vp->lock);
	/* §2.5.1 (driver requirements): a driver not yet running reads the config as it starts. */
	if (live)
		vp_interrupt(vp, vector, VIRTIO_PCI_ISR_CONFIG);
}

int virtio_queue_vhost_view(struct virtio_device *vdev, unsigned int qi,
			    struct virtio_vhost_queue *out)
{
	struct virtio_pci *vp = vdev->transport;
	struct vp_queue *q;
	int err = 0;

	if (qi >= vdev->nr_queues)
		return -EINVAL;
	q = &vp->queues[qi];
	pthread_mutex_lock(&vp->lock);
	if (!q->enable || !(vp->status & VIRTIO_CONFIG_S_DRIVER_OK) || vp->reset_pending) {
		err = -ENODEV;
	} else {
		*out = (struct virtio_vhost_queue){
			.kick_fd = q->kick_fd,
			.call_fd = q->msix_vector < vp->nr_vectors ?
					   vp->vectors[q->msix_vector].irqfd :
					   -1,
			.size = q->size,
			.desc = q->desc,
			.avail = q->driver,
			.used = q->device,
			.event_idx = vdev->features & (1ULL << VIRTIO_RING_F_EVENT_IDX),
			.mem = vm_memory(vp->vm),
		};
	}
	pthread_mutex_unlock(&vp->lock);
	return err;
}

const struct guest_memory *virtio_memory(struct virtio_device *vdev)
{
	return vm_memory(vdev->transport->vm);
}

/* --- creation ------------------------------------------------------------------------------- */

static void vp_add_cap(struct virtio_pci *vp, uint8_t type, uint32_t off, uint32_t len, bool notify)
{
	int at = pci_device_add_cap(&vp->pci, PCI_CAP_ID_VNDR, notify ? 20 : 16);
	uint8_t *c = vp->pci.cfg + at;

	c[VIRTIO_PCI_CAP_LEN] = notify ? 20 : 16;
	c[VIRTIO_PCI_CAP_CFG_TYPE] = type;
	c[VIRTIO_PCI_CAP_BAR] = 0;
	put_le(c + VIRTIO_PCI_CAP_OFFSET, off, 4);
	put_le(c + VIRTIO_PCI_CAP_LENGTH, len, 4);
	if (notify)
		put_le(c + VIRTIO_PCI_NOTIFY_CAP_MULT, NOTIFY_MULTIPLIER, 4);
}

static int vp_add_msix(struct virtio_pci *vp)
{
	int at = pci_device_add_cap(&vp->pci, PCI_CAP_ID_MSIX, 12);
	uint8_t *c = vp->pci.cfg + at;

	vp->msix_cap = at;
	put_le(c + PCI_MSIX_FLAGS, vp->nr_vectors - 1, 2);
	put_le(c + PCI_MSIX_TABLE, OFF_MSIX_TABLE, 4); /* BIR 0 */
	put_le(c + PCI_MSIX_PBA, OFF_MSIX_PBA, 4);
	/* Enable and function mask are the guest's to write. */
	vp->pci.wmask[at + 3] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
	vp->vectors = calloc(vp->nr_vectors, sizeof(*vp->vectors));
	if (!vp->vectors)
		return -ENOMEM;
	for (unsigned int v = 0; v < vp->nr_vectors; v++) {
		struct msix_vector *m = &vp->vectors[v];

		m->ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT; /* masked at reset */
		m->irqfd = -1;
		m->gsi = irq_msi_alloc(vp->irq);
		m->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (m->gsi < 0 || m->irqfd < 0)
			return m->gsi < 0 ? m->gsi : -errno;
		if (irq_irqfd_assign(vp->vm, m->irqfd, m->gsi))
			return -errno;
	}
	return 0;
}

/* The queue threads are parked (the worker's last reset stopped them): they end. */
static void vp_end_queue_threads(struct virtio_pci *vp)
{
	for (unsigned int i = 0; i < vp->vdev->nr_queues; i++) {
		struct vp_queue *q = &vp->queues[i];

		if (!q->thread_made)
			continue;
		pthread_mutex_lock(&q->park_lock);
		q->quit = true;
		pthread_cond_broadcast(&q->park_cond);
		pthread_mutex_unlock(&q->park_lock);
		pthread_join(q->thread, NULL);
		q->thread_made = false;
	}
}

int virtio_pci_create(struct virtio_pci **out, struct vm *vm, struct pci_bus *bus,
		      struct irq_routing *irq, struct virtio_device *vdev)
{
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	int err;

	if (!vp)
		return -ENOMEM;
	if (!vdev->nr_queues || vdev->nr_queues > VIRTIO_MAX_QUEUES ||
	    vdev->config_size > OFF_NOTIFY - OFF_DEVICE) {
		free(vp);
		return -EINVAL;
	}
	vp->vm = vm;
	vp->bus = bus;
	vp->irq = irq;
	vp->vdev = vdev;
	vdev->transport = vp;
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->intx_lock, NULL);
	pthread_cond_init(&vp->work_cond, NULL);
	pthread_cond_init(&vp->idle_cond, NULL);
	vp->msix_config = VIRTIO_MSI_NO_VECTOR;
	/* One vector per queue and one for configuration changes, as Linux prefers. */
	vp->nr_vectors = vdev->nr_queues + 1;
	pci_device_init(&vp->pci, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + vdev->device_id,
			vdev->pci_class ? vdev->pci_class : PCI_CLASS_OTHERS, VIRTIO_PCI_VENDOR,
			0x40, &vp_pci_ops);
	vp->pci.cfg[0x08] = 1; /* revision 1: modern only (§4.1.2.1) */
	vp->pci.cfg[PCI_INTERRUPT_PIN] = 1; /* INTA */
	err = pci_device_add_bar(&vp->pci, 0, BAR_SIZE);
	if (err)
		return err;
	vp_add_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, OFF_COMMON, COMMON_SIZE, false);
	vp_add_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, OFF_ISR, 1, false);
	vp_add_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, OFF_DEVICE,
		   vdev->config_size ? vdev->config_size : 1, false);
	vp_add_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, OFF_NOTIFY, vdev->nr_queues * NOTIFY_MULTIPLIER,
		   true);
	err = vp_add_msix(vp);
	if (err)
		return err;
	for (unsigned int i = 0; i < vdev->nr_queues; i++) {
		struct vp_queue *q = &vp->queues[i];

		q->vp = vp;
		q->index = i;
		pthread_mutex_init(&q->lock, NULL);
		q->size = vdev->queue_max_size;
		q->msix_vector = VIRTIO_MSI_NO_VECTOR;
		pthread_mutex_init(&q->park_lock, NULL);
		pthread_cond_init(&q->park_cond, NULL);
		q->kick_fd = eventfd(0, EFD_CLOEXEC);
		if (q->kick_fd < 0)
			return -errno;
	}
	err = -pthread_create(&vp->worker, NULL, vp_worker, vp);
	if (err)
		return err;
	vp->worker_running = true;
	for (unsigned int i = 0; i < vdev->nr_queues && !err; i++) {
		err = -pthread_create(&vp->queues[i].thread, NULL, vp_queue_thread, &vp->queues[i]);
		vp->queues[i].thread_made = !err;
	}
	if (!err)
		err = pci_register_device(bus, &vp->pci);
	if (err < 0) {
		vp_end_queue_threads(vp);
		return err;
	}
	*out = vp;
	return 0;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp)
		return;
	pthread_mutex_lock(&vp->lock);
	if (!vp->worker_running) {
		pthread_mutex_unlock(&vp->lock);
		return;
	}
	/* A last reset on the worker (after any it has in hand): the queue threads end. */
	vp->reset_pending = true;
	vp_queue_work_locked(vp, WORK_RESET);
	vp->wake = false;
	pthread_cond_signal(&vp->work_cond);
	vp_settle_locked(vp);
	vp->worker_stop = true;
	pthread_cond_signal(&vp->work_cond);
	pthread_mutex_unlock(&vp->lock);
	pthread_join(vp->worker, NULL);
	vp->worker_running = false;
	vp_end_queue_threads(vp);
}

void virtio_pci_settle(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	vp_settle_locked(vp);
	pthread_mutex_unlock(&vp->lock);
}

/* --- a driver in this process instead of a guest (nkvm img bench) ---------------------------- */

struct virtio_device *virtio_pci_device(struct pci_device *dev)
{
	return dev && dev->ops == &vp_pci_ops ? to_vp(dev)->vdev : NULL;
}

int virtio_pci_vector_fd(struct virtio_pci *vp, unsigned int vector)
{
	return vector < vp->nr_vectors ? vp->vectors[vector].irqfd : -1;
}

void virtio_pci_free(struct virtio_pci *vp)
{
	if (!vp)
		return;
	pci_unregister_device(vp->bus, &vp->pci);
	virtio_pci_destroy(vp);
	for (unsigned int v = 0; v < vp->nr_vectors; v++) {
		/* Closing an irqfd also detaches it from KVM (KVM sees the eventfd hang up). */
		if (vp->vectors[v].irqfd >= 0)
			close(vp->vectors[v].irqfd);
	}
	for (unsigned int i = 0; i < vp->vdev->nr_queues; i++) {
		if (vp->queues[i].kick_fd >= 0)
			close(vp->queues[i].kick_fd);
		pthread_mutex_destroy(&vp->queues[i].lock);
		pthread_mutex_destroy(&vp->queues[i].park_lock);
		pthread_cond_destroy(&vp->queues[i].park_cond);
	}
	pthread_mutex_destroy(&vp->lock);
	pthread_mutex_destroy(&vp->intx_lock);
	pthread_cond_destroy(&vp->work_cond);
	pthread_cond_destroy(&vp->idle_cond);
	free(vp->vectors);
	free(vp);
}
