// SPDX-License-Identifier: MIT
/* The VMM core without KVM: guest memory bounds, the bus, exit dispatch, the console escape. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "arch/x86/cpu.h"
#include "guest/abi.h"
/* The UAPI's KVM_COALESCED_MMIO_MAX counts entries in a page: x86's. */
#define PAGE_SIZE 4096

#include "hw/debug_exit.h"
#include "hw/pci.h"
#include "lib/util.h"
#include "vmm/kvm_stats.h"
#include "vmm/term.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

static void test_guest_ptr_checks_range_and_overflow(void **state)
{
	struct guest_memory mem;

	assert_int_equal(memory_init(&mem, 64 * MiB), 0);
	assert_ptr_equal(guest_ptr(&mem, 0, 64 * MiB), mem.base);
	assert_ptr_equal(guest_ptr(&mem, 64 * MiB - 1, 1), mem.base + 64 * MiB - 1);
	assert_ptr_equal(guest_ptr(&mem, 64 * MiB, 0), mem.base + 64 * MiB);
	assert_null(guest_ptr(&mem, 64 * MiB - 1, 2));
	assert_null(guest_ptr(&mem, 64 * MiB, 1));
	assert_null(guest_ptr(&mem, 1, UINT64_MAX));
	assert_null(guest_ptr(&mem, UINT64_MAX, 2));
	memory_free(&mem);
}

static void test_guest_memory_split_around_pci_hole(void **state)
{
	struct guest_memory mem;

	memory_layout(&mem, 4 * GiB);
	assert_int_equal(mem.nr_regions, 2);
	assert_int_equal(mem.regions[0].size, MEM_HOLE_START);
	assert_int_equal(mem.regions[1].gpa, MEM_HOLE_END);
	assert_int_equal(mem.regions[1].size, 4 * GiB - MEM_HOLE_START);
	/* Nothing in the hole is RAM, and no range may straddle the two regions. */
	mem.regions[0].host = (uint8_t *)0x1000;
	mem.regions[1].host = (uint8_t *)0x1000 + MEM_HOLE_START;
	assert_null(guest_ptr(&mem, MEM_HOLE_START, 1));
	assert_null(guest_ptr(&mem, MEM_HOLE_START - 1, 2));
	assert_non_null(guest_ptr(&mem, MEM_HOLE_END, 4096));
}

struct probe {
	uint64_t last_off;
	uint8_t last_val;
	int writes;
};

static void probe_read(void *opaque, uint64_t off, void *data, unsigned int len)
{
	memset(data, 0x42, len);
}

static void probe_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	struct probe *p = opaque;

	p->last_off = off;
	p->last_val = *(const uint8_t *)data;
	p->writes++;
}

static const struct bus_ops probe_ops = { .read = probe_read, .write = probe_write };

static void test_bus_rejects_overlap_and_dispatches(void **state)
{
	struct bus *bus = calloc(1, sizeof(*bus));
	struct probe p = { 0 };
	uint8_t v;

	assert_int_equal(bus_register(bus, 0x100, 8, &probe_ops, &p), 0);
	assert_int_equal(bus_register(bus, 0x104, 8, &probe_ops, &p), -EEXIST);
	assert_int_equal(bus_register(bus, 0xfc, 8, &probe_ops, &p), -EEXIST);
	assert_int_equal(bus_register(bus, 0x108, 0, &probe_ops, &p), -EINVAL);
	assert_int_equal(bus_register(bus, UINT64_MAX - 2, 8, &probe_ops, &p), -EINVAL);
	assert_int_equal(bus_register(bus, 0x108, 8, &probe_ops, &p), 0);
	assert_true(bus_write(bus, 0x103, "\x7", 1));
	assert_int_equal(p.last_off, 3);
	assert_int_equal(p.last_val, 7);
	assert_true(bus_read(bus, 0x100, &v, 1));
	assert_int_equal(v, 0x42);
	/* Nothing there: all ones, and a write is dropped. */
	assert_false(bus_read(bus, 0x200, &v, 1));
	assert_int_equal(v, 0xff);
	assert_false(bus_write(bus, 0x200, "\x1", 1));
	/* An access straddling the end of a region belongs to no device. */
	{
		uint16_t w;

		assert_false(bus_read(bus, 0x10f, &w, 2));
	}
	free(bus);
}

struct fake_vm {
	struct vm vm;
	struct vcpu vcpu;
	union {
		struct kvm_run run;
		uint8_t page[4096];
	};
};

static struct fake_vm *fake_vm_new(void)
{
	struct fake_vm *f = calloc(1, sizeof(*f));

	f->vm.stop_fd = eventfd(0, EFD_NONBLOCK);
	f->vcpu.vm = &f->vm;
	assert_int_equal(debug_exit_init(&f->vm), 0);
	return f;
}

static void fake_vm_free(struct fake_vm *f)
{
	close(f->vm.stop_fd);
	free(f);
}

static void set_io(struct kvm_run *run, uint8_t dir, uint16_t port, uint8_t size, uint32_t count)
{
	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = dir;
	run->io.port = port;
	run->io.size = size;
	run->io.count = count;
	run->io.data_offset = 1024;
}

static void test_exit_port_stops_vm_with_guest_status(void **state)
{
	struct fake_vm *f = fake_vm_new();

	set_io(&f->run, KVM_EXIT_IO_OUT, NKVM_EXIT_PORT, 1, 1);
	f->page[1024] = 7;
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_CONTINUE);
	assert_int_equal(atomic_load(&f->vm.stopping), 1);
	assert_int_equal(f->vm.exit_status, 7);
	/* The first stop wins: a later request does not change the status. */
	vm_request_stop(&f->vm, 3);
	assert_int_equal(f->vm.exit_status, 7);
	fake_vm_free(f);
}

static void test_unknown_port_reads_all_ones(void **state)
{
	struct fake_vm *f = fake_vm_new();

	set_io(&f->run, KVM_EXIT_IO_IN, 0x2f8, 2, 3);
	memset(f->page + 1024, 0, 6);
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_CONTINUE);
	for (int i = 0; i < 6; i++)
		assert_int_equal(f->page[1024 + i], 0xff);
	assert_int_equal(atomic_load(&f->vm.stopping), 0);
	fake_vm_free(f);
}

static void test_string_io_dispatches_each_element(void **state)
{
	struct fake_vm *f = fake_vm_new();
	struct probe p = { 0 };

	assert_int_equal(bus_register(&f->vm.pio, 0x500, 1, &probe_ops, &p), 0);
	set_io(&f->run, KVM_EXIT_IO_OUT, 0x500, 1, 5);
	memcpy(f->page + 1024, "hello", 5);
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_CONTINUE);
	assert_int_equal(p.writes, 5);
	assert_int_equal(p.last_val, 'o');
	fake_vm_free(f);
}

static void test_mmio_read_of_nothing_is_all_ones(void **state)
{
	struct fake_vm *f = fake_vm_new();

	f->run.exit_reason = KVM_EXIT_MMIO;
	f->run.mmio.phys_addr = 0xd0000000;
	f->run.mmio.len = 4;
	f->run.mmio.is_write = 0;
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_CONTINUE);
	assert_memory_equal(f->run.mmio.data, "\xff\xff\xff\xff", 4);
	/* A length the exit cannot carry is ignored, not trusted. */
	f->run.mmio.len = 100;
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_CONTINUE);
	fake_vm_free(f);
}

/* A triple fault stops the guest as a crash: status 1, never a command's 0. */
static void test_triple_fault_stops_as_crash(void **state)
{
	struct fake_vm *f = fake_vm_new();

	f->run.exit_reason = KVM_EXIT_SHUTDOWN;
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_STOP);
	assert_int_equal(f->vm.exit_status, 1);
	fake_vm_free(f);
}

/* The registers a triple fault leaves, or word that KVM reset them (AMD) instead of a reset vector. */
static void test_triple_fault_state_names_registers_or_amd_reset(void **state)
{
	struct kvm_regs regs = { .rip = 0xffffffff81000123ULL, .rsp = 0xffffc90000003f58ULL };
	struct kvm_sregs sregs = { .cr0 = 0x80050033, .cr2 = 0xffffc90000002ff8ULL };
	char line[256];

	(void)state;
	sregs.cs.selector = 0x10;
	cpu_format_state(&regs, &sregs, line, sizeof(line));
	assert_non_null(strstr(line, "rip=0xffffffff81000123 rsp=0xffffc90000003f58 "));
	assert_non_null(strstr(line, "cr2=0xffffc90000002ff8"));
	assert_non_null(strstr(line, "cs=0x10"));

	memset(&regs, 0, sizeof(regs));
	memset(&sregs, 0, sizeof(sregs));
	regs.rip = 0xfff0;
	sregs.cs.selector = 0xf000;
	sregs.cr0 = 0x10;
	cpu_format_state(&regs, &sregs, line, sizeof(line));
	assert_string_equal(line, "registers not kept (KVM reset the vCPU, as it does on AMD)");
}

/* The TSC-deadline bit goes into leaf 1 only, and only where KVM has the capability. */
static void test_cpuid_tsc_deadline(void **state)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[3];
	} t = { .hdr.nent = 3 };

	(void)state;
	t.e[0] = (struct kvm_cpuid_entry2){ .function = 0, .ecx = 0x444d4163 };
	t.e[1] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 0x80000001 };
	t.e[2] = (struct kvm_cpuid_entry2){ .function = 0x80000001, .ecx = 0x3 };
	cpu_cpuid_add_tsc_deadline(&t.hdr, false);
	assert_int_equal(t.e[1].ecx, 0x80000001);
	cpu_cpuid_add_tsc_deadline(&t.hdr, true);
	assert_int_equal(t.e[1].ecx, 0x81000001);
	assert_int_equal(t.e[0].ecx, 0x444d4163);
	assert_int_equal(t.e[2].ecx, 0x3);
}

static void test_entry_failure_and_unknown_exit_fail(void **state)
{
	struct fake_vm *f = fake_vm_new();

	f->run.exit_reason = KVM_EXIT_FAIL_ENTRY;
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_FAIL);
	assert_int_equal(f->vm.exit_status, 1);
	fake_vm_free(f);
	f = fake_vm_new();
	f->run.exit_reason = 9999;
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_FAIL);
	assert_int_equal(f->vm.exit_status, 1);
	fake_vm_free(f);
}

/* queue_cf8 RING VALUE: a CONFIG_ADDRESS write as KVM queues it instead of exiting. */
static void queue_cf8(struct kvm_coalesced_mmio_ring *ring, uint32_t value)
{
	struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[ring->last];

	*e = (struct kvm_coalesced_mmio){ .phys_addr = 0xcf8, .len = 4, .pio = 1 };
	memcpy(e->data, &value, 4);
	ring->last = (ring->last + 1) % KVM_COALESCED_MMIO_MAX;
}

/*
 * The CONFIG_ADDRESS writes KVM queued are replayed, in order and around the ring's end, before
 * the CONFIG_DATA read that follows them is handled: it reads the host bridge's IDs.
 */
static void test_coalesced_writes_replayed_before_exit(void **state)
{
	struct fake_vm *f = fake_vm_new();
	struct kvm_coalesced_mmio_ring *ring = aligned_alloc(4096, 4096);
	struct pci_bus *pci = calloc(1, sizeof(*pci));
	uint32_t v;

	(void)state;
	memset(ring, 0, 4096);
	assert_int_equal(pci_init(pci, &f->vm), 0);
	f->vcpu.coalesced = ring;
	ring->first = ring->last = KVM_COALESCED_MMIO_MAX - 1;
	queue_cf8(ring, 0x80000800); /* device 1: nothing there */
	queue_cf8(ring, 0x80000000); /* the host bridge, vendor and device ID */
	assert_int_equal(ring->last, 1);
	set_io(&f->run, KVM_EXIT_IO_IN, 0xcfc, 4, 1);
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_CONTINUE);
	memcpy(&v, f->page + 1024, 4);
	assert_int_equal(v, 0x00081b36);
	assert_int_equal(ring->first, ring->last);
	assert_int_equal(f->vcpu.stats.by.coalesced, 2);
	/* An empty ring replays nothing: the latch stays. */
	assert_int_equal(vcpu_handle_exit(&f->vcpu, &f->run), VCPU_CONTINUE);
	assert_int_equal(f->vcpu.stats.by.coalesced, 2);
	free(pci);
	free(ring);
	fake_vm_free(f);
}

/* A KVM binary statistics file as KVM_GET_STATS_FD lays it out: header, descriptors, data. */
static int stats_file(uint32_t num_desc, uint32_t name_size)
{
	static const char *const names[] = { "exits", "halt_exits", "pf_taken" };
	size_t desc_len = sizeof(struct kvm_stats_desc) + 32;
	struct kvm_stats_header h = {
		.name_size = name_size,
		.num_desc = num_desc,
		.desc_offset = sizeof(h),
		.data_offset = sizeof(h) + 3 * desc_len,
	};
	uint64_t data[4] = { 6100, 900, 40, 2 }; /* pf_taken has two elements: 40 + 2 */
	int fd = memfd_create("stats", 0);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &h, sizeof(h), 0), sizeof(h));
	for (unsigned int i = 0; i < 3; i++) {
		uint8_t d[sizeof(struct kvm_stats_desc) + 32] = { 0 };
		struct kvm_stats_desc *desc = (struct kvm_stats_desc *)d;

		desc->size = i == 2 ? 2 : 1;
		desc->offset = i * sizeof(uint64_t);
		strcpy(desc->name, names[i]);
		assert_int_equal(pwrite(fd, d, desc_len, h.desc_offset + i * desc_len), desc_len);
	}
	assert_int_equal(pwrite(fd, data, sizeof(data), h.data_offset), sizeof(data));
	return fd;
}

/* KVM's own counters by name; a name it lacks reads as UINT64_MAX; a bad header is refused. */
static void test_kvm_stats_read_by_name(void **state)
{
	static const char *const want[] = { "halt_exits", "no_such_stat", "exits", "pf_taken" };
	uint64_t v[4];
	int fd = stats_file(3, 32);

	(void)state;
	assert_int_equal(kvm_stats_read_fd(fd, want, v, 4), 0);
	assert_int_equal(v[0], 900);
	assert_true(v[1] == UINT64_MAX);
	assert_int_equal(v[2], 6100);
	assert_int_equal(v[3], 42);
	close(fd);
	fd = stats_file(3, 0);
	assert_int_equal(kvm_stats_read_fd(fd, want, v, 4), -EINVAL);
	close(fd);
	fd = stats_file(100000, 32);
	assert_int_equal(kvm_stats_read_fd(fd, want, v, 4), -EINVAL);
	close(fd);
	fd = stats_file(200, 32); /* more descriptors than the file holds */
	assert_int_equal(kvm_stats_read_fd(fd, want, v, 4), -EINVAL);
	close(fd);
}

/* The exits of a made-up boot, counted by reason, and by port and page when stats are kept. */
static void test_exit_stats_count_reason_port_and_page(void **state)
{
	struct fake_vm *f = fake_vm_new();
	const struct exit_stats *by = &f->vcpu.stats.by;
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	(void)state;
	f->vm.keep_stats = true;
	for (int i = 0; i < 3; i++) {
		set_io(&f->run, KVM_EXIT_IO_OUT, 0x3f8, 1, 1);
		vcpu_handle_exit(&f->vcpu, &f->run);
	}
	set_io(&f->run, KVM_EXIT_IO_IN, 0x3f8, 1, 1);
	vcpu_handle_exit(&f->vcpu, &f->run);
	set_io(&f->run, KVM_EXIT_IO_IN, 0xcfc, 4, 1);
	vcpu_handle_exit(&f->vcpu, &f->run);
	f->run.exit_reason = KVM_EXIT_MMIO;
	f->run.mmio.phys_addr = 0xfebf1004;
	f->run.mmio.len = 4;
	f->run.mmio.is_write = 1;
	vcpu_handle_exit(&f->vcpu, &f->run);
	vcpu_handle_exit(&f->vcpu, &f->run);
	f->run.exit_reason = KVM_EXIT_INTR;
	vcpu_handle_exit(&f->vcpu, &f->run);

	assert_int_equal(by->reasons[KVM_EXIT_IO], 5);
	assert_int_equal(by->reasons[KVM_EXIT_MMIO], 2);
	assert_int_equal(by->reasons[KVM_EXIT_INTR], 1);
	out = open_memstream(&text, &len);
	exit_stats_print(out, by);
	fclose(out);
	assert_string_equal(text, "nkvm: exit reasons: io=5 mmio=2 intr=1\n"
				  "nkvm: exit ports: 0x3f8:out=3 0x3f8:in=1 0xcfc:in=1\n"
				  "nkvm: exit mmio: 0xfebf1000:write=2\n");
	free(text);
	fake_vm_free(f);
}

/* Without NKVM_STATS only reasons are counted: the port and page tables stay empty. */
static void test_exit_stats_sites_only_with_stats(void **state)
{
	struct fake_vm *f = fake_vm_new();

	(void)state;
	set_io(&f->run, KVM_EXIT_IO_OUT, 0x80, 1, 1);
	vcpu_handle_exit(&f->vcpu, &f->run);
	assert_int_equal(f->vcpu.stats.by.reasons[KVM_EXIT_IO], 1);
	for (unsigned int i = 0; i < EXIT_STATS_SITES; i++)
		assert_int_equal(f->vcpu.stats.by.io.slot[i].key, 0);
	fake_vm_free(f);
}

/*
 * The table is bounded: a port past the last free slot is counted as elsewhere, ports already
 * in it go on counting; the vCPUs' tables sum into one; an unnamed reason still shows.
 */
static void test_exit_stats_bounded_and_summed(void **state)
{
	struct exit_stats *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct kvm_run run = { .exit_reason = KVM_EXIT_IO };
	uint64_t total = 0;
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	(void)state;
	for (unsigned int port = 0; port < EXIT_STATS_SITES + 3; port++) {
		run.io.port = port;
		exit_stats_count(a, &run, true);
	}
	assert_int_equal(a->io.elsewhere, 3);
	run.io.port = 0;
	exit_stats_count(a, &run, true);
	assert_int_equal(a->io.elsewhere, 3);
	exit_stats_count(b, &run, true);
	run.exit_reason = 9999;
	exit_stats_count(b, &run, true);
	exit_stats_add(a, b);
	assert_int_equal(a->reasons[KVM_EXIT_IO], EXIT_STATS_SITES + 5);
	assert_int_equal(a->reasons[EXIT_STATS_REASONS], 1);
	for (unsigned int i = 0; i < EXIT_STATS_SITES; i++)
		total += a->io.slot[i].count;
	assert_int_equal(total + a->io.elsewhere, EXIT_STATS_SITES + 5);
	out = open_memstream(&text, &len);
	exit_stats_print(out, a);
	fclose(out);
	assert_non_null(strstr(text, " 0:in=3 "));
	assert_non_null(strstr(text, " elsewhere=3\n"));
	assert_non_null(strstr(text, " reason>=40=1\n"));
	free(text);
	free(a);
	free(b);
}

static void test_console_ctrl_a_x_quits_ctrl_a_twice_sends_one(void **state)
{
	struct term_escape esc = { 0 };
	uint8_t buf[16];
	size_t len;

	memcpy(buf, "ab\001\001c", 5);
	len = 5;
	assert_int_equal(term_filter_input(&esc, buf, &len), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(buf, "ab\001c", 4);
	/* Ctrl-A split across two reads still quits. */
	memcpy(buf, "z\001", 2);
	len = 2;
	assert_int_equal(term_filter_input(&esc, buf, &len), 0);
	assert_int_equal(len, 1);
	buf[0] = 'x';
	len = 1;
	assert_int_equal(term_filter_input(&esc, buf, &len), 1);
	assert_int_equal(len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guest_ptr_checks_range_and_overflow),
		cmocka_unit_test(test_guest_memory_split_around_pci_hole),
		cmocka_unit_test(test_bus_rejects_overlap_and_dispatches),
		cmocka_unit_test(test_exit_port_stops_vm_with_guest_status),
		cmocka_unit_test(test_unknown_port_reads_all_ones),
		cmocka_unit_test(test_string_io_dispatches_each_element),
		cmocka_unit_test(test_mmio_read_of_nothing_is_all_ones),
		cmocka_unit_test(test_triple_fault_stops_as_crash),
		cmocka_unit_test(test_triple_fault_state_names_registers_or_amd_reset),
		cmocka_unit_test(test_cpuid_tsc_deadline),
		cmocka_unit_test(test_entry_failure_and_unknown_exit_fail),
		cmocka_unit_test(test_exit_stats_count_reason_port_and_page),
		cmocka_unit_test(test_kvm_stats_read_by_name),
		cmocka_unit_test(test_coalesced_writes_replayed_before_exit),
		cmocka_unit_test(test_exit_stats_sites_only_with_stats),
		cmocka_unit_test(test_exit_stats_bounded_and_summed),
		cmocka_unit_test(test_console_ctrl_a_x_quits_ctrl_a_twice_sends_one),
	};

	return cmocka_run_group_tests_name("vmm", tests, NULL, NULL);
}
