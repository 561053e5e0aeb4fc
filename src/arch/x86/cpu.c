// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "lib/util.h"
#include "vmm/vcpu.h"

#define CPUID_MAX_ENTRIES 256

#define X86_CR0_PE (1ULL << 0)
#define X86_CR0_ET (1ULL << 4)
#define X86_CR0_PG (1ULL << 31)
#define X86_CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

/* Leaf 1 ECX: the LAPIC timer's TSC-deadline mode. */
#define CPUID_1_ECX_TSC_DEADLINE (1U << 24)

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

/*
 * Boot protocol: __BOOT_CS = 0x10, __BOOT_DS = 0x18; a TSS so that TR is valid for VMX. The PVH
 * entry's 32-bit code segment (any selector will do, pvh.pandoc) is 0x08.
 */
#define GDT_CODE32 1
#define GDT_CODE 2
#define GDT_DATA 3
#define GDT_TSS 4

struct kvm_cpuid2 *cpu_supported_cpuid(int kvm_fd)
{
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));

	if (!c)
		return NULL;
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int err = errno;

		free(c);
		errno = err;
		return NULL;
	}
	cpu_cpuid_add_tsc_deadline(c, ioctl(kvm_fd, KVM_CHECK_EXTENSION,
					    KVM_CAP_TSC_DEADLINE_TIMER) > 0);
	return c;
}

void cpu_cpuid_add_tsc_deadline(struct kvm_cpuid2 *cpuid, bool supported)
{
	for (unsigned int i = 0; supported && i < cpuid->nent; i++) {
		if (cpuid->entries[i].function == 1)
			cpuid->entries[i].ecx |= CPUID_1_ECX_TSC_DEADLINE;
	}
}

static unsigned int order_base_2(unsigned int n)
{
	unsigned int bits = 0;

	while ((1U << bits) < n)
		bits++;
	return bits;
}

void cpu_cpuid_set_topology(struct kvm_cpuid2 *cpuid, unsigned int apic_id, unsigned int nr_cpus)
{
	unsigned int core_bits = order_base_2(nr_cpus);

	for (unsigned int i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			/* Initial APIC ID, logical processors per package, HTT when > 1. */
			e->ebx = (e->ebx & 0x0000ffff) | (apic_id << 24) | ((nr_cpus & 0xff) << 16);
			e->edx = nr_cpus > 1 ? e->edx | (1U << 28) : e->edx & ~(1U << 28);
			e->ecx |= 1U << 31; /* running under a hypervisor */
			break;
		case 4:
			/* Cores per package - 1 in EAX[31:26]; no thread sharing a cache. */
			e->eax = (e->eax & 0x03ffc0ff) | (((1U << core_bits) - 1) << 26);
			break;
		case 0xb:
		case 0x1f:
			/* Extended topology: level 0 = SMT (1 thread), level 1 = core. */
			e->edx = apic_id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1U << 8) | 0;
			} else if (e->index == 1) {
				e->eax = core_bits;
				e->ebx = nr_cpus;
				e->ecx = (2U << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x80000008:
			/* AMD: ApicIdCoreIdSize and number of cores - 1. */
			e->ecx = (core_bits << 12) | ((nr_cpus - 1) & 0xff);
			break;
		case 0x8000001e:
			/* AMD: extended APIC ID, core ID, one thread per core, node 0. */
			e->eax = apic_id;
			e->ebx = apic_id & 0xff;
			e->ecx = 0;
			break;
		}
	}
}

static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000) << 32) | ((uint64_t)(flags & 0xf0ff) << 40) |
	       ((uint64_t)(limit & 0x000f0000) << 32) | ((uint64_t)(base & 0x00ffffff) << 16) |
	       (limit & 0x0000ffff);
}

int cpu_write_boot_tables(struct guest_memory *mem)
{
	uint64_t *gdt = guest_ptr(mem, BOOT_GDT_ADDR, BOOT_GDT_SIZE);
	uint64_t *pml4 = guest_ptr(mem, BOOT_PML4_ADDR, BOOT_PAGE_TABLES_SIZE);
	uint64_t *pdpt, *pd;

	if (!gdt || !pml4)
		return -ENOSPC;
	memset(gdt, 0, BOOT_GDT_SIZE);
	gdt[GDT_CODE32] = gdt_entry(0xc09b, 0, 0xfffff); /* 32-bit code, 4 GiB */
	gdt[GDT_CODE] = gdt_entry(0xa09b, 0, 0xfffff); /* 64-bit code, present, readable */
	gdt[GDT_DATA] = gdt_entry(0xc093, 0, 0xfffff); /* data, writable */
	gdt[GDT_TSS] = gdt_entry(0x008b, 0, 0x67); /* busy 32/64-bit TSS */

	/* Identity-map the first 4 GiB with 2 MiB pages: kernel, boot data, initrd, MMIO. */
	memset(pml4, 0, BOOT_PAGE_TABLES_SIZE);
	pdpt = pml4 + 512;
	pd = pdpt + 512;
	pml4[0] = (BOOT_PML4_ADDR + 0x1000) | 0x3;
	for (unsigned int i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PML4_ADDR + 0x2000 + i * 0x1000) | 0x3;
	for (unsigned int i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83; /* present, writable, 2 MiB page */
	return 0;
}

static struct kvm_segment segment(unsigned int gdt_index, uint8_t type, int code64)
{
	return (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = gdt_index * 8,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = !code64,
		.s = 1,
		.l = code64,
		.g = 1,
	};
}

int cpu_set_boot_state(struct vcpu *vcpu, uint64_t entry, uint64_t boot_params, char *err,
		       size_t errlen)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = 0x2, .rip = entry, .rsi = boot_params };
	struct kvm_segment data = segment(GDT_DATA, 0x3, 0);

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return err_set(err, errlen, -errno, "KVM_GET_SREGS");
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = BOOT_GDT_SIZE - 1;
	sregs.cs = segment(GDT_CODE, 0xb, 1);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = segment(GDT_TSS, 0xb, 0);
	sregs.tr.s = 0;
	sregs.tr.limit = 0x67;
	sregs.tr.g = 0;
	sregs.cr3 = BOOT_PML4_ADDR;
	sregs.cr4 = X86_CR4_PAE;
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return err_set(err, errlen, -errno, "KVM_SET_SREGS");
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
		return err_set(err, errlen, -errno, "KVM_SET_REGS");
	return 0;
}

void cpu_pvh_sregs(struct kvm_sregs *sregs)
{
	struct kvm_segment data = segment(GDT_DATA, 0x3, 0);

	/*
	 * pvh.pandoc: CR0 with PE and no other writable bit (ET is fixed at 1), CR4 0, paging and
	 * long mode off; CS 32-bit execute/read and DS, ES 32-bit read/write, base 0, limit 4 GiB;
	 * TR a 32-bit TSS, base 0, limit 0x67.
	 */
	sregs->gdt.base = BOOT_GDT_ADDR;
	sregs->gdt.limit = BOOT_GDT_SIZE - 1;
	sregs->cs = segment(GDT_CODE32, 0xb, 0);
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
	sregs->tr = segment(GDT_TSS, 0xb, 0);
	sregs->tr.s = 0;
	sregs->tr.limit = 0x67;
	sregs->tr.g = 0;
	sregs->cr0 = X86_CR0_PE | X86_CR0_ET;
	sregs->cr3 = 0;
	sregs->cr4 = 0;
	sregs->efer = 0;
}

int cpu_set_pvh_boot_state(struct vcpu *vcpu, uint32_t entry, uint32_t start_info, char *err,
			   size_t errlen)
{
	struct kvm_sregs sregs;
	/* pvh.pandoc: EBX = the start_info; EFLAGS with VM, IF and TF clear. */
	struct kvm_regs regs = { .rflags = 0x2, .rip = entry, .rbx = start_info };

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return err_set(err, errlen, -errno, "KVM_GET_SREGS");
	cpu_pvh_sregs(&sregs);
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return err_set(err, errlen, -errno, "KVM_SET_SREGS");
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
		return err_set(err, errlen, -errno, "KVM_SET_REGS");
	return 0;
}

void cpu_format_state(const struct kvm_regs *regs, const struct kvm_sregs *sregs, char *buf,
		      size_t len)
{
	/*
	 * On AMD, KVM puts a vCPU that shut down through INIT (the VMCB is undefined after the
	 * intercept): what is left is the reset vector, which says nothing about the crash.
	 */
	if (regs->rip == 0xfff0 && sregs->cs.selector == 0xf000 && !(sregs->cr0 & X86_CR0_PE)) {
		snprintf(buf, len, "registers not kept (KVM reset the vCPU, as it does on AMD)");
		return;
	}
	snprintf(buf, len,
		 "rip=%#llx rsp=%#llx rflags=%#llx cr0=%#llx cr2=%#llx cr3=%#llx cr4=%#llx "
		 "efer=%#llx idt=%#llx/%#x tr=%#x@%#llx cs=%#x",
		 (unsigned long long)regs->rip, (unsigned long long)regs->rsp,
		 (unsigned long long)regs->rflags, (unsigned long long)sregs->cr0,
		 (unsigned long long)sregs->cr2, (unsigned long long)sregs->cr3,
		 (unsigned long long)sregs->cr4, (unsigned long long)sregs->efer,
		 (unsigned long long)sregs->idt.base, sregs->idt.limit, sregs->tr.selector,
		 (unsigned long long)sregs->tr.base, sregs->cs.selector);
}

int cpu_describe_state(const struct vcpu *vcpu, char *buf, size_t len)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	cpu_format_state(&regs, &sregs, buf, len);
	return 0;
}

static int cpu_set_msrs(struct vcpu *vcpu)
{
	static const struct {
		uint32_t index;
		uint64_t value;
	} boot_msrs[] = {
		{ MSR_IA32_SYSENTER_CS, 0 },
		{ MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 },
		{ MSR_CSTAR, 0 },
		{ MSR_KERNEL_GS_BASE, 0 },
		{ MSR_SYSCALL_MASK, 0 },
		{ MSR_LSTAR, 0 },
		{ MSR_IA32_MISC_ENABLE, 1 }, /* fast string operations */
		/* MTRRs on, default type write-back: otherwise RAM could be treated uncached. */
		{ MSR_MTRR_DEF_TYPE, (1 << 11) | 6 },
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[sizeof(boot_msrs) / sizeof(boot_msrs[0])];
	} msrs = { .hdr.nmsrs = sizeof(boot_msrs) / sizeof(boot_msrs[0]) };
	int n;

	for (unsigned int i = 0; i < msrs.hdr.nmsrs; i++) {
		msrs.entries[i].index = boot_msrs[i].index;
		msrs.entries[i].data = boot_msrs[i].value;
	}
	n = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs);
	if (n < 0)
		return -errno;
	return n == (int)msrs.hdr.nmsrs ? 0 : -EINVAL;
}

static void lapic_set_lvt_mode(struct kvm_lapic_state *lapic, unsigned int reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, lapic->regs + reg, sizeof(v));
	v = (v & ~0x700U) | (mode << 8);
	memcpy(lapic->regs + reg, &v, sizeof(v));
}

static int cpu_set_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state lapic;

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	/* As a PC's firmware leaves it: LINT0 takes the 8259's ExtINT, LINT1 the NMI. */
	lapic_set_lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
	lapic_set_lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

int cpu_init_vcpu(struct vcpu *vcpu, const struct kvm_cpuid2 *supported, unsigned int nr_cpus,
		  char *err, size_t errlen)
{
	size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *cpuid = malloc(size);
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	int ret;

	if (!cpuid)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	memcpy(cpuid, supported, size);
	cpu_cpuid_set_topology(cpuid, vcpu->id, nr_cpus);
	ret = ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	free(cpuid);
	if (ret)
		return err_set(err, errlen, ret, "KVM_SET_CPUID2");
	ret = cpu_set_msrs(vcpu);
	if (ret)
		return err_set(err, errlen, ret, "KVM_SET_MSRS");
	if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
		return err_set(err, errlen, -errno, "KVM_SET_FPU");
	ret = cpu_set_lapic(vcpu);
	if (ret)
		err_set(err, errlen, ret, "LAPIC");
	return ret;
}
