/* SPDX-License-Identifier: MIT */
/* x86 vCPU state at power-on: CPUID, MSRs, LAPIC, and the long-mode entry of the boot CPU. */
#ifndef NKVM_ARCH_X86_CPU_H
#define NKVM_ARCH_X86_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

struct vcpu;

/*
 * KVM_GET_SUPPORTED_CPUID, malloc'ed, plus what KVM supports but leaves out of that table for
 * userspace to add (the TSC-deadline timer). Returns NULL with errno set on failure.
 */
struct kvm_cpuid2 *cpu_supported_cpuid(int kvm_fd);

/*
 * Sets the TSC-deadline bit of leaf 1 when supported (KVM_CAP_TSC_DEADLINE_TIMER): KVM emulates
 * the mode in its LAPIC but never reports it in KVM_GET_SUPPORTED_CPUID. Without it, Linux
 * programs its timer through the LAPIC's one-shot count instead. Pure: edits the table only.
 */
void cpu_cpuid_add_tsc_deadline(struct kvm_cpuid2 *cpuid, bool supported);

/*
 * Rewrites the topology leaves of a CPUID table for vCPU `apic_id` of `nr_cpus`, each vCPU one
 * core of one socket. Pure: edits the table only.
 */
void cpu_cpuid_set_topology(struct kvm_cpuid2 *cpuid, unsigned int apic_id, unsigned int nr_cpus);

/* Writes the boot GDT and identity page tables into guest RAM. Returns 0 or -ENOSPC. */
int cpu_write_boot_tables(struct guest_memory *mem);

/*
 * CPUID, MSRs and LAPIC for any vCPU. Returns 0 or a negative errno with, in err, what failed
 * (the ioctl's name).
 */
int cpu_init_vcpu(struct vcpu *vcpu, const struct kvm_cpuid2 *supported, unsigned int nr_cpus,
		  char *err, size_t errlen);

/*
 * Puts the boot vCPU at the kernel's 64-bit entry in long mode, boot_params in RSI. Returns 0 or
 * a negative errno with the failed ioctl's name in err.
 */
int cpu_set_boot_state(struct vcpu *vcpu, uint64_t entry, uint64_t boot_params, char *err,
		       size_t errlen);

/*
 * Puts the boot vCPU at a PVH kernel's 32-bit entry (xen docs/misc/pvh.pandoc): protected mode,
 * paging off, flat 4 GiB segments, EBX = the hvm_start_info's address. Returns 0 or a negative
 * errno with the failed ioctl's name in err.
 */
int cpu_set_pvh_boot_state(struct vcpu *vcpu, uint32_t entry, uint32_t start_info, char *err,
			   size_t errlen);

/* The special registers of that entry, on a KVM_GET_SREGS result. Pure. */
void cpu_pvh_sregs(struct kvm_sregs *sregs);

/*
 * One line of the vCPU's registers as a crash leaves them (rip, rsp, rflags, cr0, cr2, cr3, cr4,
 * efer, and the IDT and TSS a double fault goes through), for the report of a triple fault; or
 * that they are gone, where KVM reset the vCPU on the shutdown (AMD). Returns 0 or a negative
 * errno from KVM_GET_REGS/KVM_GET_SREGS.
 */
int cpu_describe_state(const struct vcpu *vcpu, char *buf, size_t len);

/* The formatting of cpu_describe_state, on registers already read. Pure. */
void cpu_format_state(const struct kvm_regs *regs, const struct kvm_sregs *sregs, char *buf,
		      size_t len);

#endif
