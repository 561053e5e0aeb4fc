// SPDX-License-Identifier: MIT
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "vmm/vcpu.h"
#include "sandbox/sandbox.h"
#include "vmm/vm.h"

/* The UAPI's KVM_COALESCED_MMIO_MAX counts entries in a page: x86's. */
#ifndef PAGE_SIZE
#define PAGE_SIZE 4096
#endif

/* Sent to a vCPU thread to make KVM_RUN return; its handler does nothing. */
#define VCPU_KICK_SIGNAL SIGUSR1

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int vcpu_create(struct vm *vm, struct vcpu *vcpu, unsigned int id)
{
	void *run;

	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (vcpu->fd < 0)
		return -errno;
	run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (run == MAP_FAILED) {
		int err = -errno;

		close(vcpu->fd);
		vcpu->fd = -1;
		return err;
	}
	vcpu->run = run;
	if (vm->coalesced_page)
		vcpu->coalesced =
			(void *)((uint8_t *)run + vm->coalesced_page * sysconf(_SC_PAGESIZE));
	return 0;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, vcpu->vm->run_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

static void vcpu_handle_io(struct vcpu *vcpu, struct kvm_run *run)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	/* String I/O (rep ins/outs) arrives as `count` accesses laid out back to back. */
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (run->io.direction == KVM_EXIT_IO_OUT)
			bus_write(&vcpu->vm->pio, run->io.port, data, run->io.size);
		else
			bus_read(&vcpu->vm->pio, run->io.port, data, run->io.size);
	}
}

static void vcpu_handle_mmio(struct vcpu *vcpu, struct kvm_run *run)
{
	unsigned int len = run->mmio.len;

	if (len > sizeof(run->mmio.data))
		return;
	if (run->mmio.is_write)
		bus_write(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	else
		bus_read(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static enum vcpu_exit_kind exit_kind(const struct kvm_run *run)
{
	return run->exit_reason == KVM_EXIT_IO	 ? VCPU_EXIT_IO :
	       run->exit_reason == KVM_EXIT_MMIO ? VCPU_EXIT_MMIO :
						   VCPU_EXIT_OTHER;
}

/*
 * Replays on the bus, in the guest's order, the writes KVM queued instead of exiting
 * (vm_coalesce_pio): before any exit is handled, so that what the exit reads or does sees them.
 * KVM fills entries from `last` and publishes it after the entry; nkvm consumes from `first`.
 * Any vCPU may drain the ring, hence the lock (taken only when it holds something).
 */
static void vcpu_flush_coalesced(struct vcpu *vcpu)
{
	struct kvm_coalesced_mmio_ring *ring = vcpu->coalesced;
	struct vm *vm = vcpu->vm;
	uint32_t first;

	if (!ring || __atomic_load_n(&ring->first, __ATOMIC_RELAXED) ==
			     __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&vm->coalesced_lock);
	first = ring->first % KVM_COALESCED_MMIO_MAX;
	while (first != __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE)) {
		struct kvm_coalesced_mmio e = ring->coalesced_mmio[first];

		if (e.len <= sizeof(e.data))
			bus_write(e.pio ? &vm->pio : &vm->mmio, e.phys_addr, e.data, e.len);
		vcpu->stats.by.coalesced++;
		first = (first + 1) % KVM_COALESCED_MMIO_MAX;
		__atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&vm->coalesced_lock);
}

enum vcpu_exit_action vcpu_handle_exit(struct vcpu *vcpu, struct kvm_run *run)
{
	vcpu->stats.exits[exit_kind(run)]++;
	exit_stats_count(&vcpu->stats.by, run, vcpu->vm->keep_stats);
	vcpu_flush_coalesced(vcpu);
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(vcpu, run);
		return VCPU_CONTINUE;
	case KVM_EXIT_MMIO:
		vcpu_handle_mmio(vcpu, run);
		return VCPU_CONTINUE;
	case KVM_EXIT_INTR:
		return VCPU_CONTINUE;
	case KVM_EXIT_SHUTDOWN:
		/*
		 * A triple fault. A PC resets this way when all else fails, but Linux booted by
		 * nkvm (reboot=k) reboots through the i8042: here it means the guest crashed
		 * without a word, so it must not end with a command's status 0.
		 */
		nkvm_err("vcpu %u: the guest reset itself (triple fault)", vcpu->id);
		vm_request_stop(vcpu->vm, 1);
		return VCPU_STOP;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH) {
			nkvm_err("vcpu %u: the guest reported a crash", vcpu->id);
			vm_request_stop(vcpu->vm, 1);
			return VCPU_FAIL;
		}
		vm_request_stop(vcpu->vm, 0);
		return VCPU_STOP;
	case KVM_EXIT_FAIL_ENTRY:
		nkvm_err("vcpu %u: KVM could not enter the guest (hardware reason 0x%llx)",
			 vcpu->id,
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vm_request_stop(vcpu->vm, 1);
		return VCPU_FAIL;
	case KVM_EXIT_INTERNAL_ERROR:
		nkvm_err("vcpu %u: KVM internal error (suberror %u)", vcpu->id,
			 run->internal.suberror);
		vm_request_stop(vcpu->vm, 1);
		return VCPU_FAIL;
	default:
		nkvm_err("vcpu %u: unexpected KVM exit reason %u", vcpu->id, run->exit_reason);
		vm_request_stop(vcpu->vm, 1);
		return VCPU_FAIL;
	}
}

/*
 * KVM_RUN and what the exit path's devices do: an interrupt line (KVM_IRQ_LINE: the UART, INTx),
 * eventfd and irqfd writes (kicks without an ioeventfd, MSI-X, the UART's output and a stop for
 * the main loop), waking the virtio-pci worker; the kick signal's return; the stats' clock.
 */
static const struct sandbox_rule vcpu_rules[] = {
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_RUN),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_IRQ_LINE),
	SANDBOX_ALLOW(write),
	SANDBOX_ALLOW(rt_sigreturn),
	SANDBOX_ALLOW(clock_gettime),
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter vcpu_filter = {
	.thread = "vcpu",
	.rules = vcpu_rules,
	.nr_rules = ARRAY_SIZE(vcpu_rules),
};

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	sigset_t kick;
	int err = sandbox_enter(&vcpu_filter);

	/* Unconfined, it does not run the guest. */
	if (err) {
		nkvm_err("vcpu %u: cannot enter the sandbox: %s", vcpu->id, strerror(-err));
		vm_request_stop(vm, 1);
		vcpu_thread_exit(vcpu);
		return NULL;
	}
#ifdef NKVM_TEST_HOOKS
	if (sandbox_test_hook("vcpu", "forbidden"))
		sandbox_test_forbidden_call();
#endif

	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	while (!atomic_load(&vm->stopping)) {
		enum vcpu_exit_action action;
		uint64_t t0 = 0;

		vcpu_park_if_paused(vcpu);
		if (atomic_load(&vm->stopping))
			break;
		/* The wall clock, so that a benchmark can place the guest's start on its own. */
		if (vm->keep_stats && !vcpu->stats.entry_epoch_ns)
			vcpu->stats.entry_epoch_ns = clock_ns(CLOCK_REALTIME);
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			nkvm_err("vcpu %u: KVM_RUN: %s", vcpu->id, strerror(errno));
			vm_request_stop(vm, 1);
			break;
		}
		if (vm->keep_stats)
			t0 = now_ns();
		action = vcpu_handle_exit(vcpu, vcpu->run);
		if (vm->keep_stats)
			vcpu->stats.dispatch_ns[exit_kind(vcpu->run)] += now_ns() - t0;
		if (action != VCPU_CONTINUE)
			break; /* kvm_run keeps the exit for run to report (a triple fault's state) */
	}
	vcpu_thread_exit(vcpu);
	return NULL;
}

void vcpu_park_if_paused(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	if (!atomic_load(&vm->pause_requested))
		return;
	pthread_mutex_lock(&vm->pause_lock);
	vcpu->parked = true;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_requested) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vcpu->parked = false;
	/* The pause's kick set it; left set, every KVM_RUN would return at once. */
	vcpu->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->pause_lock);
}

void vcpu_thread_exit(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->pause_lock);
	vcpu->exited = true;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

static bool all_parked(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		const struct vcpu *v = &vm->vcpus[i];

		if (v->started && !v->exited && !v->parked)
			return false;
	}
	return true;
}

int vcpus_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->paused) {
		pthread_mutex_unlock(&vm->pause_lock);
		return -EALREADY;
	}
	atomic_store(&vm->pause_requested, true);
	/* As in vcpus_stop: immediate_exit covers a kick that lands just before KVM_RUN. */
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];

		if (vcpu->started && !vcpu->exited) {
			vcpu->run->immediate_exit = 1;
			pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
		}
	}
	while (!all_parked(vm) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->paused = true;
	pthread_mutex_unlock(&vm->pause_lock);
	return 0;
}

int vcpus_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (!vm->paused) {
		pthread_mutex_unlock(&vm->pause_lock);
		return -EALREADY;
	}
	vm->paused = false;
	atomic_store(&vm->pause_requested, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return 0;
}

bool vcpus_paused(struct vm *vm)
{
	bool p;

	pthread_mutex_lock(&vm->pause_lock);
	p = vm->paused;
	pthread_mutex_unlock(&vm->pause_lock);
	return p;
}

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

int vcpus_start(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	pthread_attr_t attr;
	int err = 0;

	/* No SA_RESTART: the point of the signal is to make KVM_RUN return EINTR. */
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
	pthread_attr_init(&attr);
	/* The loop needs little stack; keep the monitor's footprint small. */
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (unsigned int i = 0; i < vm->nr_vcpus && !err; i++) {
		err = -pthread_create(&vm->vcpus[i].thread, &attr, vcpu_thread, &vm->vcpus[i]);
		vm->vcpus[i].started = !err;
	}
	pthread_attr_destroy(&attr);
	return err;
}

void vcpus_stop(struct vm *vm)
{
	/* Parked vCPUs wake to see stopping set (the caller asked vm_request_stop first). */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];

		if (!vcpu->started)
			continue;
		/*
		 * immediate_exit closes the race where the signal lands just before KVM_RUN:
		 * KVM then returns EINTR at once instead of entering the guest.
		 */
		vcpu->run->immediate_exit = 1;
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].started)
			pthread_join(vm->vcpus[i].thread, NULL);
		vm->vcpus[i].started = false;
	}
}
