/* SPDX-License-Identifier: MIT */
/* A virtual machine: the KVM VM, its RAM, its buses and vCPUs, and how it stops. */
#ifndef NKVM_VMM_VM_H
#define NKVM_VMM_VM_H

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "vmm/bus.h"
#include "vmm/memory.h"

struct vcpu;

struct vm {
	int kvm_fd, vm_fd;
	size_t run_size; /* size of each vCPU's kvm_run mapping */
	struct guest_memory mem;
	struct bus pio, mmio;
	unsigned int nr_vcpus;
	struct vcpu *vcpus;

	/* The first stop request wins; the main loop sees stop_fd and winds everything down. */
	atomic_int stopping;
	int exit_status;
	int stop_fd;
	bool keep_stats; /* NKVM_STATS: time each vCPU's exits, count them by port and page */

	/*
	 * Coalesced writes (vm_coalesce_pio): KVM queues the guest's writes to the registered zones
	 * in one ring per VM, found in every vCPU's kvm_run mapping at page coalesced_page (0: KVM
	 * has none), instead of exiting; a vCPU replays them on the bus, under coalesced_lock, before
	 * it handles its next exit.
	 */
	unsigned int coalesced_page;
	pthread_mutex_t coalesced_lock;

	/*
	 * Pause (vcpus_pause in vcpu.c): while pause_requested, each vCPU thread parks on
	 * pause_cond; paused once every running one has. The lock guards the flags of both.
	 */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	atomic_bool pause_requested;
	bool paused;
	struct kvm_clock_data clock; /* kvmclock at pause (vm_clock_save) */
	uint64_t clock_saved_ns; /* CLOCK_MONOTONIC then */
};

/*
 * Why this host's /dev/kvm cannot run a standard guest, as one sentence; NULL when it can.
 * PVM (a software KVM for PVM-aware kernels only) and a missing /dev/kvm are the cases.
 */
const char *kvm_host_unusable(void);

/*
 * Opens /dev/kvm, creates the VM, its irqchip, PIT and RAM. Returns 0 or a negative errno; err
 * names the step that failed.
 */
int vm_create(struct vm *vm, uint64_t ram_size, unsigned int nr_vcpus, char *err, size_t errlen);
void vm_destroy(struct vm *vm);

/* Largest vCPU count KVM allows for this VM. */
unsigned int vm_max_vcpus(int kvm_fd);

/* Ask the VM to stop and nkvm to exit with status. Safe from any thread; the first call wins. */
void vm_request_stop(struct vm *vm, int status);

static inline const struct guest_memory *vm_memory(const struct vm *vm)
{
	return &vm->mem;
}

/*
 * kvmclock across a pause. Save reads it (KVM_GET_CLOCK) with the vCPUs parked; restore sets it
 * (KVM_SET_CLOCK) before they run again, advanced by the host's monotonic time in between.
 * Return 0 or a negative errno.
 */
int vm_clock_save(struct vm *vm);
int vm_clock_restore(struct vm *vm);

/*
 * Lets KVM queue the guest's writes to ports [port, port + len) instead of exiting for each: for
 * registers whose writes nobody sees before the guest's next exit (a read of the register, or
 * of the data port it selects), since every exit replays the queue first. Returns 0, -ENOTSUP
 * where KVM cannot (KVM_CAP_COALESCED_PIO), or a negative errno. Inline, so that the PCI host
 * bridge that calls it links without the rest of vm.c (the fuzz targets give their own
 * vm_irq_line).
 */
static inline int vm_coalesce_pio(struct vm *vm, uint16_t port, unsigned int len)
{
	struct kvm_coalesced_mmio_zone zone = { .addr = port, .size = len, .pio = 1 };

	if (!vm->coalesced_page ||
	    ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) <= 0)
		return -ENOTSUP;
	if (ioctl(vm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &zone) < 0)
		return -errno;
	return 0;
}

/* Raise or lower a GSI on the in-kernel irqchip. Returns 0 or a negative errno. */
int vm_irq_line(struct vm *vm, unsigned int gsi, int level);

#endif
