// SPDX-License-Identifier: MIT
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/kvm_stats.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/* Bounds on what a header may claim, so that a bad one cannot make nkvm allocate the world. */
#define STATS_MAX_DESC 4096
#define STATS_MAX_NAME 256

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = pread(fd, buf, len, (off_t)off);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EINVAL;
}

int kvm_stats_read_fd(int stats_fd, const char *const *names, uint64_t *values, unsigned int n)
{
	struct kvm_stats_header h;
	size_t desc_len;
	uint8_t *descs;
	int err;

	for (unsigned int i = 0; i < n; i++)
		values[i] = UINT64_MAX;
	err = pread_all(stats_fd, &h, sizeof(h), 0);
	if (err)
		return err;
	if (h.num_desc > STATS_MAX_DESC || h.name_size == 0 || h.name_size > STATS_MAX_NAME)
		return -EINVAL;
	/* Documentation/virt/kvm/api.rst, KVM_GET_STATS_FD: each descriptor is followed by its name. */
	desc_len = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = malloc(desc_len * (h.num_desc ? h.num_desc : 1));
	if (!descs)
		return -ENOMEM;
	err = pread_all(stats_fd, descs, desc_len * h.num_desc, h.desc_offset);
	for (unsigned int d = 0; !err && d < h.num_desc; d++) {
		struct kvm_stats_desc *desc = (struct kvm_stats_desc *)(descs + d * desc_len);

		desc->name[h.name_size - 1] = '\0';
		for (unsigned int i = 0; i < n && !err; i++) {
			if (strcmp(desc->name, names[i]))
				continue;
			values[i] = 0;
			for (unsigned int e = 0; e < desc->size && e < 64 && !err; e++) {
				uint64_t v;

				err = pread_all(stats_fd, &v, sizeof(v),
						(uint64_t)h.data_offset + desc->offset +
							e * sizeof(v));
				values[i] += err ? 0 : v;
			}
		}
	}
	free(descs);
	return err;
}

void kvm_stats_print(FILE *f, const struct vm *vm)
{
	/* The exits by what caused them, as KVM counts them (x86: arch/x86/kvm/x86.c). */
	static const char *const names[] = {
		"exits",
		"halt_exits",
		"irq_exits",
		"io_exits",
		"mmio_exits",
		"signal_exits",
		"irq_window_exits",
		"nmi_window_exits",
		"request_irq_exits",
		"insn_emulation",
		"hypercalls",
		"pf_taken",
	};
	enum { N = sizeof(names) / sizeof(names[0]) };
	uint64_t sum[N] = { 0 }, v[N];
	bool any = false;

	for (unsigned int c = 0; vm->vcpus && c < vm->nr_vcpus; c++) {
		int fd = ioctl(vm->vcpus[c].fd, KVM_GET_STATS_FD, NULL);

		if (fd < 0)
			continue;
		if (!kvm_stats_read_fd(fd, names, v, N)) {
			any = true;
			for (unsigned int i = 0; i < N; i++)
				sum[i] = v[i] == UINT64_MAX || sum[i] == UINT64_MAX ? UINT64_MAX :
										      sum[i] + v[i];
		}
		close(fd);
	}
	if (!any)
		return;
	fprintf(f, "nkvm: kvm exits:");
	for (unsigned int i = 0; i < N; i++)
		if (sum[i] != UINT64_MAX)
			fprintf(f, " %s=%llu", names[i], (unsigned long long)sum[i]);
	fputc('\n', f);
}
