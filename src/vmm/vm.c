// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "vmm/vm.h"

/* Addresses KVM needs for its own use on Intel (real-mode TSS, identity map); unused RAM-free
 * pages just below the BIOS area at the top of 4 GiB. */
#define KVM_TSS_ADDR 0xfffbd000
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000

const char *kvm_host_unusable(void)
{
	int fd;

	if (access("/sys/module/kvm_pvm", F_OK) == 0)
		return "this host's /dev/kvm is PVM, a software KVM that runs only PVM-aware guest "
		       "kernels; a standard Linux guest needs hardware virtualization (run it in the "
		       "nested test host: tests/nested/run)";
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? "/dev/kvm does not exist: load kvm_intel or kvm_amd, or "
					 "enable virtualization in the firmware" :
					 "/dev/kvm cannot be opened (permission? add yourself to "
					 "group kvm)";
	close(fd);
	return NULL;
}

unsigned int vm_max_vcpus(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (n <= 0)
		n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	return n > 0 ? (unsigned int)n : 1;
}

static int vm_set_memory(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->mem.nr_regions; i++) {
		const struct guest_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)r->host,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
			return -errno;
	}
	return 0;
}

static int vm_create_irqchip(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		return -errno;
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;

	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return -errno;
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP) < 0)
		return -errno;
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return -errno;
	return 0;
}

int vm_create(struct vm *vm, uint64_t ram_size, unsigned int nr_vcpus, char *err, size_t errlen)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_fd = -1;
	vm->nr_vcpus = nr_vcpus;
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	pthread_mutex_init(&vm->coalesced_lock, NULL);
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return err_set(err, errlen, -errno, "open /dev/kvm");
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		return err_set(err, errlen, -ENOTSUP, "KVM API version");
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0 ||
	    ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0)
		return err_set(err, errlen, -ENOTSUP, "KVM capabilities (irqchip, immediate exit)");
	ret = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret <= 0)
		return err_set(err, errlen, ret < 0 ? -errno : -EINVAL, "KVM_GET_VCPU_MMAP_SIZE");
	vm->run_size = ret;
	/* KVM_CAP_COALESCED_MMIO answers with the ring's page in the kvm_run mapping. */
	ret = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
	if (ret > 0 && (size_t)(ret + 1) * sysconf(_SC_PAGESIZE) <= vm->run_size)
		vm->coalesced_page = ret;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return err_set(err, errlen, -errno, "KVM_CREATE_VM");
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0)
		return err_set(err, errlen, -errno, "eventfd");
	ret = vm_create_irqchip(vm);
	if (ret)
		return err_set(err, errlen, ret, "in-kernel irqchip and PIT");
	ret = memory_init(&vm->mem, ram_size);
	if (ret)
		return err_set(err, errlen, ret, "guest RAM");
	ret = vm_set_memory(vm);
	if (ret)
		err_set(err, errlen, ret, "KVM_SET_USER_MEMORY_REGION");
	return ret;
}

void vm_destroy(struct vm *vm)
{
	memory_free(&vm->mem);
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
}

void vm_request_stop(struct vm *vm, int status)
{
	uint64_t one = 1;
	int expected = 0;

	if (!atomic_compare_exchange_strong(&vm->stopping, &expected, 1))
		return;
	vm->exit_status = status;
	/* A full eventfd counter still wakes the loop, so the result can be ignored. */
	if (write(vm->stop_fd, &one, sizeof(one)) < 0)
		return;
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int vm_clock_save(struct vm *vm)
{
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &vm->clock) < 0)
		return -errno;
	vm->clock_saved_ns = monotonic_ns();
	return 0;
}

/*
 * The guest's TSC keeps counting while its vCPUs are parked, so kvmclock must go on with it: set
 * back to its value at the pause, kvmclock would step back against the TSC (the jump a guest
 * notices) and leave the guest's date behind the host's by the pause. It is set to what it read
 * then plus the host's monotonic time since, so time in the guest passes as on the host. flags
 * 0: no KVM_CLOCK_REALTIME adjustment on top (KVM API doc, 4.103 KVM_SET_CLOCK).
 */
int vm_clock_restore(struct vm *vm)
{
	struct kvm_clock_data c = { .clock = vm->clock.clock +
					     (monotonic_ns() - vm->clock_saved_ns) };

	return ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0 ? -errno : 0;
}

int vm_irq_line(struct vm *vm, unsigned int gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}
