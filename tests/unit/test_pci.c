// SPDX-License-Identifier: MIT
/* The PCI bus's MMIO routing: BAR moves, decoding, and lookups racing a move. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hw/pci.h"
#include "vmm/bus.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define CFG(slot, off) (0x80000000u | (slot) << 11 | (off))
#define BAR_SIZE 0x4000

struct recorder {
	struct pci_device dev;
	_Atomic uint64_t last_off;
	atomic_uint reads;
};

static void rec_read(struct pci_device *dev, unsigned int bar, uint64_t off, void *data,
		     unsigned int len)
{
	struct recorder *r = (struct recorder *)dev;

	atomic_store(&r->last_off, off);
	atomic_fetch_add(&r->reads, 1);
	memset(data, 0x5a, len);
}

static const struct pci_device_ops rec_ops = { .bar_read = rec_read };

struct fixture {
	struct vm vm;
	struct pci_bus bus;
	struct recorder rec;
	int slot;
};

static struct fixture *fixture_new(void)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->vm.kvm_fd = f->vm.vm_fd = -1;
	assert_int_equal(pci_init(&f->bus, &f->vm), 0);
	pci_device_init(&f->rec.dev, 0x1af4, 0x1044, 0xff0000, 0x1af4, 0x40, &rec_ops);
	assert_int_equal(pci_device_add_bar(&f->rec.dev, 0, BAR_SIZE), 0);
	f->slot = pci_register_device(&f->bus, &f->rec.dev);
	assert_true(f->slot > 0);
	return f;
}

/* A one-byte read through the VM's MMIO bus, as a vCPU's exit does: the byte, or -1 for none. */
static int mmio_byte(struct fixture *f, uint64_t addr)
{
	uint8_t v;

	if (!bus_read(&f->vm.mmio, addr, &v, 1))
		return -2; /* outside the PCI hole altogether */
	return v == 0x5a ? 0x5a : -1;
}

static void move_bar(struct fixture *f, uint64_t addr)
{
	pci_config_write(&f->bus, CFG(f->slot, PCI_BAR0), (uint32_t)addr | 4, 4);
	pci_config_write(&f->bus, CFG(f->slot, PCI_BAR0 + 4), (uint32_t)(addr >> 32), 4);
}

static void test_mmio_follows_decoding_and_bar_moves(void **state)
{
	struct fixture *f = fixture_new();
	uint64_t first = MEM_HOLE_START + 0x100000, second = MEM_HOLE_START + 0x200000;

	move_bar(f, first);
	/* Memory decoding off (as at reset): the BAR does not answer. */
	assert_int_equal(mmio_byte(f, first + 0x10), -1);
	pci_config_write(&f->bus, CFG(f->slot, PCI_COMMAND), PCI_COMMAND_MEMORY, 2);
	assert_int_equal(mmio_byte(f, first + 0x10), 0x5a);
	assert_int_equal(atomic_load(&f->rec.last_off), 0x10);
	/* An access straddling the BAR's end belongs to nobody. */
	assert_int_equal(mmio_byte(f, first + BAR_SIZE), -1);
	move_bar(f, second);
	assert_int_equal(mmio_byte(f, first + 0x10), -1);
	assert_int_equal(mmio_byte(f, second + 0x20), 0x5a);
	assert_int_equal(atomic_load(&f->rec.last_off), 0x20);
	/* Sizing (all ones written) takes the BAR off the bus until an address comes back. */
	pci_config_write(&f->bus, CFG(f->slot, PCI_BAR0), 0xffffffff, 4);
	pci_config_write(&f->bus, CFG(f->slot, PCI_BAR0 + 4), 0xffffffff, 4);
	assert_int_equal(mmio_byte(f, second + 0x20), -1);
	move_bar(f, second);
	assert_int_equal(mmio_byte(f, second + 0x20), 0x5a);
	/* Decoding off again: gone. */
	pci_config_write(&f->bus, CFG(f->slot, PCI_COMMAND), 0, 2);
	assert_int_equal(mmio_byte(f, second + 0x20), -1);
	free(f);
}

struct mover {
	struct fixture *f;
	uint64_t a, b;
	atomic_int done;
};

static void *move_back_and_forth(void *arg)
{
	struct mover *m = arg;

	for (unsigned int i = 0; i < 20000; i++)
		move_bar(m->f, i & 1 ? m->b : m->a);
	atomic_store(&m->done, 1);
	return NULL;
}

/*
 * vCPUs read while another vCPU moves the BAR: every access either reaches the device at the
 * offset it has at one of the two addresses, or answers nothing; never a mix of the two.
 */
static void test_mmio_lookup_races_bar_moves_safely(void **state)
{
	struct fixture *f = fixture_new();
	struct mover m = { .f = f, .a = MEM_HOLE_START + 0x100000, .b = MEM_HOLE_START + 0x108000 };
	/* The two places do not overlap (BAR_SIZE apart or more), so an offset tells them apart. */
	uint64_t probe_a = m.a + 0x30, probe_b = m.b + 0x40;
	unsigned int hits = 0;
	pthread_t t;

	move_bar(f, m.a);
	pci_config_write(&f->bus, CFG(f->slot, PCI_COMMAND), PCI_COMMAND_MEMORY, 2);
	assert_int_equal(pthread_create(&t, NULL, move_back_and_forth, &m), 0);
	while (!atomic_load(&m.done)) {
		for (int k = 0; k < 2; k++) {
			unsigned int before = atomic_load(&f->rec.reads);
			int v = mmio_byte(f, k ? probe_b : probe_a);

			if (v < 0)
				continue;
			hits++;
			assert_int_equal(atomic_load(&f->rec.reads), before + 1);
			assert_int_equal(atomic_load(&f->rec.last_off), k ? 0x40 : 0x30);
		}
	}
	pthread_join(t, NULL);
	assert_true(hits > 0);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mmio_follows_decoding_and_bar_moves),
		cmocka_unit_test(test_mmio_lookup_races_bar_moves_safely),
	};

	return cmocka_run_group_tests_name("pci", tests, NULL, NULL);
}
