/* SPDX-License-Identifier: MIT */
/*
 * KVM's own per-vCPU counters (KVM_GET_STATS_FD, Linux 5.14+): every exit, including the ones
 * KVM handles without nkvm (HLT, interrupts, MSRs, page faults), which nkvm's exit_stats
 * cannot see. NKVM_STATS prints them at exit.
 */
#ifndef NKVM_VMM_KVM_STATS_H
#define NKVM_VMM_KVM_STATS_H

#include <stdint.h>
#include <stdio.h>

struct vm;

/*
 * Reads the counters called names[0..n) from a KVM binary statistics fd into values (summing
 * a counter's elements); a name KVM does not have reads as UINT64_MAX. Returns 0 or a negative
 * errno (-EINVAL for a malformed header or descriptor).
 */
int kvm_stats_read_fd(int stats_fd, const char *const *names, uint64_t *values, unsigned int n);

/* One line on f: the counters below, summed over the VM's vCPUs; nothing where KVM has none. */
void kvm_stats_print(FILE *f, const struct vm *vm);

#endif
