/* SPDX-License-Identifier: MIT */
/* A vCPU: its KVM fd, its kvm_run page, its thread, and the exit dispatch. */
#ifndef NKVM_VMM_VCPU_H
#define NKVM_VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>

#include "vmm/exit_stats.h"

struct vm;

enum vcpu_exit_kind { VCPU_EXIT_IO, VCPU_EXIT_MMIO, VCPU_EXIT_OTHER, VCPU_EXIT_KINDS };

/*
 * What one vCPU's exits cost nkvm: counted always (the vCPU thread alone writes them), and
 * the time spent dispatching each (from KVM_RUN's return to the next entry) only when the VM
 * keeps stats (NKVM_STATS), since reading the clock twice per exit is not free. `by` counts
 * them by reason, and with stats by port and page too.
 */
struct vcpu_stats {
	uint64_t exits[VCPU_EXIT_KINDS];
	uint64_t dispatch_ns[VCPU_EXIT_KINDS];
	struct exit_stats by;
	uint64_t entry_epoch_ns; /* with stats: CLOCK_REALTIME at the first KVM_RUN */
};

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	struct kvm_coalesced_mmio_ring *coalesced; /* the VM's ring (vm.h), or NULL */
	pthread_t thread;
	bool started;
	bool parked, exited; /* under vm->pause_lock */
	struct vcpu_stats stats;
};

enum vcpu_exit_action {
	VCPU_CONTINUE, /* handled: run the guest again */
	VCPU_STOP, /* the VM is stopping (guest reset, power-off or exit port) */
	VCPU_FAIL, /* KVM reported an error: the VM stops with a failure status */
};

/* Creates vCPU `id` of vm and maps its kvm_run. Returns 0 or a negative errno. */
int vcpu_create(struct vm *vm, struct vcpu *vcpu, unsigned int id);
void vcpu_destroy(struct vcpu *vcpu);

/*
 * Decides what one exit means, dispatching I/O to the VM's buses. Pure with respect to KVM (no
 * ioctl), so tests can feed it exits they made up.
 */
enum vcpu_exit_action vcpu_handle_exit(struct vcpu *vcpu, struct kvm_run *run);

/* Starts every vCPU thread, and stops them (kick out of KVM_RUN, join). */
int vcpus_start(struct vm *vm);
void vcpus_stop(struct vm *vm);

/*
 * Pause: kicks every vCPU out of KVM_RUN and returns once each running one is parked (its exit
 * handled, so no MMIO or port access is half done). Resume lets them run on. Either returns 0,
 * or -EALREADY when the VM is already paused (resume: not paused). Any thread but a vCPU's.
 */
int vcpus_pause(struct vm *vm);
int vcpus_resume(struct vm *vm);
bool vcpus_paused(struct vm *vm);

/*
 * Called by a vCPU's thread before each KVM_RUN: parks while a pause is asked for, until resume
 * or stop. Marks the thread exited when it is about to end (vcpu_thread_exit), so a pause does
 * not wait for it.
 */
void vcpu_park_if_paused(struct vcpu *vcpu);
void vcpu_thread_exit(struct vcpu *vcpu);

#endif
