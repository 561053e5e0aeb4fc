// SPDX-License-Identifier: MIT
/* Legacy devices at register level: the 16550A, the i8042 reset path, PCI config space. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/i8042.h"
#include "hw/pci.h"
#include "hw/serial.h"
#include "vmm/vm.h"

enum { RBR = 0, THR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

static struct serial *uart_new(void)
{
	struct serial *s = calloc(1, sizeof(*s));

	assert_int_equal(serial_init(s, NULL, 0x3f8, 4), 0);
	return s;
}

static void uart_free(struct serial *s)
{
	serial_free(s);
	free(s);
}

static void test_uart_transmits_what_guest_writes(void **state)
{
	struct serial *s = uart_new();
	uint8_t out[16];

	assert_true(serial_read_reg(s, LSR) & 0x60); /* THRE and TEMT: ready */
	serial_write_reg(s, THR, 'h');
	serial_write_reg(s, THR, 'i');
	assert_int_equal(serial_take_output(s, out, sizeof(out)), 2);
	assert_memory_equal(out, "hi", 2);
	assert_int_equal(serial_take_output(s, out, sizeof(out)), 0);
	uart_free(s);
}

static void test_uart_divisor_latch_does_not_transmit(void **state)
{
	struct serial *s = uart_new();
	uint8_t out[4];

	serial_write_reg(s, LCR, 0x83);
	serial_write_reg(s, 0, 0x01);
	serial_write_reg(s, 1, 0x00);
	assert_int_equal(serial_read_reg(s, 0), 0x01);
	serial_write_reg(s, LCR, 0x03);
	assert_int_equal(serial_take_output(s, out, sizeof(out)), 0);
	uart_free(s);
}

static void test_uart_receive_sets_data_ready_and_interrupt(void **state)
{
	struct serial *s = uart_new();

	assert_int_equal(serial_read_reg(s, IIR) & 0x0f, 0x01); /* nothing pending */
	serial_write_reg(s, IER, 0x01);
	assert_int_equal(serial_receive(s, (const uint8_t *)"ok", 2), 2);
	assert_true(serial_read_reg(s, LSR) & 0x01);
	assert_int_equal(serial_read_reg(s, IIR) & 0x0f, 0x04);
	assert_int_equal(serial_read_reg(s, RBR), 'o');
	assert_int_equal(serial_read_reg(s, RBR), 'k');
	assert_false(serial_read_reg(s, LSR) & 0x01);
	assert_int_equal(serial_read_reg(s, IIR) & 0x0f, 0x01);
	uart_free(s);
}

static void test_uart_receive_fifo_bounded(void **state)
{
	struct serial *s = uart_new();
	uint8_t in[SERIAL_RX_SIZE + 10];

	memset(in, 'a', sizeof(in));
	/* Nobody listening yet: input is held back, not dropped. */
	assert_int_equal(serial_receive(s, in, sizeof(in)), 0);
	serial_write_reg(s, IER, 0x01);
	assert_int_equal(serial_receive(s, in, sizeof(in)), SERIAL_RX_SIZE);
	assert_int_equal(serial_receive(s, in, 1), 0);
	uart_free(s);
}

static void test_uart_thre_interrupt_acknowledged_by_iir_read(void **state)
{
	struct serial *s = uart_new();

	serial_write_reg(s, IER, 0x02);
	assert_int_equal(serial_read_reg(s, IIR) & 0x0f, 0x02);
	assert_int_equal(serial_read_reg(s, IIR) & 0x0f, 0x01);
	serial_write_reg(s, THR, 'x');
	assert_int_equal(serial_read_reg(s, IIR) & 0x0f, 0x02);
	uart_free(s);
}

static void test_uart_loopback_as_linux_probes_it(void **state)
{
	struct serial *s = uart_new();

	/* Linux's autoconfig: LOOP|OUT2|RTS must read back as DCD|CTS. */
	serial_write_reg(s, MCR, 0x1a);
	assert_int_equal(serial_read_reg(s, MSR) & 0xf0, 0x90);
	serial_write_reg(s, THR, 'L');
	assert_int_equal(serial_read_reg(s, RBR), 'L');
	serial_write_reg(s, MCR, 0x0b);
	assert_int_equal(serial_read_reg(s, MSR) & 0xf0, 0xb0);
	serial_write_reg(s, SCR, 0x5a);
	assert_int_equal(serial_read_reg(s, SCR), 0x5a);
	serial_write_reg(s, FCR, 0x07);
	assert_int_equal(serial_read_reg(s, IIR) & 0xc0, 0xc0); /* a 16550A with FIFOs */
	uart_free(s);
}

static void test_uart_full_transmitter_reports_busy(void **state)
{
	struct serial *s = uart_new();
	uint8_t *out = malloc(SERIAL_TX_SIZE);

	for (size_t i = 0; i < SERIAL_TX_SIZE; i++)
		serial_write_reg(s, THR, 'a' + i % 26);
	assert_false(serial_read_reg(s, LSR) & 0x20);
	serial_write_reg(s, THR, '!'); /* overrun: dropped and counted */
	assert_int_equal(s->tx_dropped, 1);
	assert_int_equal(serial_take_output(s, out, SERIAL_TX_SIZE), SERIAL_TX_SIZE);
	assert_int_equal(out[SERIAL_TX_SIZE - 1], 'a' + (SERIAL_TX_SIZE - 1) % 26);
	assert_true(serial_read_reg(s, LSR) & 0x20);
	free(out);
	uart_free(s);
}

struct fake_vm {
	struct vm vm;
};

static struct fake_vm *fake_vm_new(void)
{
	struct fake_vm *f = calloc(1, sizeof(*f));

	f->vm.stop_fd = eventfd(0, EFD_NONBLOCK);
	return f;
}

static void fake_vm_free(struct fake_vm *f)
{
	close(f->vm.stop_fd);
	free(f);
}

static void test_i8042_selftest_ctr_and_reset(void **state)
{
	struct fake_vm *f = fake_vm_new();
	struct i8042 k;

	assert_int_equal(i8042_init(&k, &f->vm), 0);
	assert_false(i8042_read(&k, 0x64) & 1);
	i8042_write(&k, 0x64, 0xaa);
	assert_true(i8042_read(&k, 0x64) & 1);
	assert_int_equal(i8042_read(&k, 0x60), 0x55);
	assert_false(i8042_read(&k, 0x64) & 1);
	i8042_write(&k, 0x64, 0x60);
	i8042_write(&k, 0x60, 0x65);
	i8042_write(&k, 0x64, 0x20);
	assert_int_equal(i8042_read(&k, 0x60), 0x65);
	assert_int_equal(atomic_load(&f->vm.stopping), 0);
	/* Linux's reboot=k: 0xfe to the command port resets the machine, i.e. nkvm stops, 0. */
	i8042_write(&k, 0x64, 0xfe);
	assert_int_equal(atomic_load(&f->vm.stopping), 1);
	assert_int_equal(f->vm.exit_status, 0);
	fake_vm_free(f);
}

/* Reads what the guest's interrupt handler would: one byte per OBF, until none is left. */
static size_t i8042_drain(struct i8042 *k, uint8_t *buf, size_t len)
{
	size_t n = 0;

	while (n < len && (i8042_read(k, 0x64) & 1))
		buf[n++] = i8042_read(k, 0x60);
	return n;
}

static void test_i8042_ctrl_alt_del_types_set1_codes_in_order(void **state)
{
	static const uint8_t want[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	struct fake_vm *f = fake_vm_new();
	struct i8042 k;
	uint8_t got[32];

	f->vm.vm_fd = -1;
	assert_int_equal(i8042_init(&k, &f->vm), 0);
	assert_int_equal(i8042_ctrl_alt_del(&k), 0);
	assert_int_equal(i8042_drain(&k, got, sizeof(got)), sizeof(want));
	assert_memory_equal(got, want, sizeof(want));
	/* Typing is no reset: the guest decides what Ctrl-Alt-Del means. */
	assert_int_equal(atomic_load(&f->vm.stopping), 0);
	fake_vm_free(f);
}

static void test_i8042_keys_wait_behind_controller_reply_and_disabled_keyboard(void **state)
{
	struct fake_vm *f = fake_vm_new();
	struct i8042 k;
	uint8_t got[32];

	f->vm.vm_fd = -1;
	assert_int_equal(i8042_init(&k, &f->vm), 0);
	/* Keyboard disabled in the command byte: nothing comes until it is enabled again. */
	i8042_write(&k, 0x64, 0x60);
	i8042_write(&k, 0x60, 0x57);
	i8042_write(&k, 0x64, 0xaa); /* a reply is waiting: keys must not overwrite it */
	assert_int_equal(i8042_sysrq(&k, 'h'), 0);
	assert_int_equal(i8042_read(&k, 0x60), 0x55);
	assert_false(i8042_read(&k, 0x64) & 1);
	i8042_write(&k, 0x64, 0x60);
	i8042_write(&k, 0x60, 0x47);
	assert_int_equal(i8042_drain(&k, got, sizeof(got)), 6);
	assert_memory_equal(got, ((uint8_t[]){ 0x38, 0x54, 0x23, 0xa3, 0xd4, 0xb8 }), 6);
	assert_int_equal(i8042_sysrq(&k, '!'), -EINVAL);
	/* Untranslated (i8042.direct): set 2 would be needed, which nkvm does not type. */
	i8042_write(&k, 0x64, 0x60);
	i8042_write(&k, 0x60, 0x07);
	assert_int_equal(i8042_ctrl_alt_del(&k), -EOPNOTSUPP);
	fake_vm_free(f);
}

static void test_i8042_typing_beyond_buffer_is_enobufs(void **state)
{
	struct fake_vm *f = fake_vm_new();
	struct i8042 k;
	int err = 0, n = 0;

	f->vm.vm_fd = -1;
	assert_int_equal(i8042_init(&k, &f->vm), 0);
	while (!err && n < 100) {
		err = i8042_ctrl_alt_del(&k);
		n++;
	}
	assert_int_equal(err, -ENOBUFS);
	/* The first byte went to the output buffer at once, so eight fit, not more. */
	assert_int_equal(n, I8042_KEYS_MAX / 8 + 1);
	fake_vm_free(f);
}

static void test_pci_host_bridge_visible_and_empty_slots_absent(void **state)
{
	struct fake_vm *f = fake_vm_new();
	struct pci_bus *bus = calloc(1, sizeof(*bus));

	assert_int_equal(pci_init(bus, &f->vm), 0);
	/* 00:00.0: vendor/device and class "host bridge". */
	assert_int_equal(pci_config_read(bus, 0x80000000, 4), 0x00081b36);
	assert_int_equal(pci_config_read(bus, 0x80000008, 4) >> 16, 0x0600);
	/* Empty slot, other bus, other function, or the enable bit clear: nothing answers. */
	assert_int_equal(pci_config_read(bus, 0x80000800, 4), 0xffffffff);
	assert_int_equal(pci_config_read(bus, 0x80010000, 4), 0xffffffff);
	assert_int_equal(pci_config_read(bus, 0x80000100, 4), 0xffffffff);
	assert_int_equal(pci_config_read(bus, 0x00000000, 4), 0xffffffff);
	/* Read-only fields stay; only the writable command bits change. */
	pci_config_write(bus, 0x80000000, 0x12345678, 4);
	assert_int_equal(pci_config_read(bus, 0x80000000, 4), 0x00081b36);
	pci_config_write(bus, 0x80000004, 0xffff, 2);
	assert_int_equal(pci_config_read(bus, 0x80000004, 2), 0x0006);
	free(bus);
	fake_vm_free(f);
}

struct moved {
	unsigned int calls;
	uint64_t addr;
};

static struct moved *moved_of(struct pci_device *dev);

static void record_bar_moved(struct pci_device *dev, unsigned int bar, uint64_t addr)
{
	moved_of(dev)->calls++;
	moved_of(dev)->addr = addr;
}

static const struct pci_device_ops recording_ops = { .bar_moved = record_bar_moved };

struct recording_dev {
	struct pci_device pci;
	struct moved moved;
};

static struct moved *moved_of(struct pci_device *dev)
{
	return &((struct recording_dev *)dev)->moved;
}

static void test_pci_unregistered_device_leaves_slot_empty_and_bar_silent(void **state)
{
	struct fake_vm *f = fake_vm_new();
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	struct recording_dev *d = calloc(1, sizeof(*d));
	uint64_t addr;
	uint32_t v = 0;
	int slot;

	assert_int_equal(pci_init(bus, &f->vm), 0);
	pci_device_init(&d->pci, 0x1af4, 0x1044, PCI_CLASS_OTHERS, 0x1af4, 0x40, &recording_ops);
	assert_int_equal(pci_device_add_bar(&d->pci, 0, 0x1000), 0);
	slot = pci_register_device(bus, &d->pci);
	assert_int_equal(slot, 1);
	assert_int_equal(pci_config_read(bus, 0x80000800, 4), 0x10441af4);
	assert_int_equal(pci_config_read(bus, 0x80000808, 4) >> 8, PCI_CLASS_OTHERS);
	/* The guest turns memory decoding on: the BAR answers at the address it was given. */
	pci_config_write(bus, 0x80000804, PCI_COMMAND_MEMORY, 2);
	assert_int_equal(d->moved.calls, 1);
	addr = d->pci.bar_addr[0];
	assert_true(addr != 0);
	assert_true(pci_mmio_access(bus, addr, &v, 4, false));

	pci_unregister_device(bus, &d->pci);
	assert_int_equal(pci_config_read(bus, 0x80000800, 4), 0xffffffff);
	assert_int_equal(d->moved.calls, 2); /* its fast paths told to go */
	assert_int_equal(d->moved.addr, 0);
	assert_false(pci_mmio_access(bus, addr, &v, 4, false));
	assert_int_equal(v, 0xffffffff);
	/* Twice is harmless, and the slot is free for the next device. */
	pci_unregister_device(bus, &d->pci);
	assert_int_equal(d->moved.calls, 2);
	assert_int_equal(pci_register_device(bus, &d->pci), 1);
	free(d);
	free(bus);
	fake_vm_free(f);
}

static void test_acpi_pm1_enable_sticks_and_s5_powers_off(void **state)
{
	struct fake_vm *f = fake_vm_new();
	struct acpi_pm pm;
	uint16_t v;

	assert_int_equal(acpi_pm_init(&pm, &f->vm), 0);
	/* Control reads SCI_EN: the guest sees a machine already in ACPI mode. */
	assert_true(bus_read(&f->vm.pio, ACPI_PM1A_CNT_PORT, &v, 2));
	assert_int_equal(v & 1, 1);
	/* ACPICA checks that GBL_EN sticks in the enable register. */
	v = 0x0020;
	bus_write(&f->vm.pio, ACPI_PM1A_EVT_PORT + 2, &v, 2);
	assert_true(bus_read(&f->vm.pio, ACPI_PM1A_EVT_PORT + 2, &v, 2));
	assert_int_equal(v, 0x0020);
	/* Status never shows an event, even after a guest write. */
	v = 0xffff;
	bus_write(&f->vm.pio, ACPI_PM1A_EVT_PORT, &v, 2);
	assert_true(bus_read(&f->vm.pio, ACPI_PM1A_EVT_PORT, &v, 2));
	assert_int_equal(v, 0);
	/* SLP_TYP alone (ACPICA writes it before SLP_EN) does nothing. */
	v = 1 | (ACPI_S5_TYPE << 10);
	bus_write(&f->vm.pio, ACPI_PM1A_CNT_PORT, &v, 2);
	assert_int_equal(atomic_load(&f->vm.stopping), 0);
	/* Another sleep type with SLP_EN does not power off either. */
	v = 1 | (1 << 10) | 0x2000;
	bus_write(&f->vm.pio, ACPI_PM1A_CNT_PORT, &v, 2);
	assert_int_equal(atomic_load(&f->vm.stopping), 0);
	/* S5 with SLP_EN, written a byte at a time: power-off, status 0. */
	v = 1 | (ACPI_S5_TYPE << 10) | 0x2000;
	bus_write(&f->vm.pio, ACPI_PM1A_CNT_PORT, &v, 1);
	bus_write(&f->vm.pio, ACPI_PM1A_CNT_PORT + 1, (uint8_t *)&v + 1, 1);
	assert_int_equal(atomic_load(&f->vm.stopping), 1);
	assert_int_equal(f->vm.exit_status, 0);
	fake_vm_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uart_transmits_what_guest_writes),
		cmocka_unit_test(test_uart_divisor_latch_does_not_transmit),
		cmocka_unit_test(test_uart_receive_sets_data_ready_and_interrupt),
		cmocka_unit_test(test_uart_receive_fifo_bounded),
		cmocka_unit_test(test_uart_thre_interrupt_acknowledged_by_iir_read),
		cmocka_unit_test(test_uart_loopback_as_linux_probes_it),
		cmocka_unit_test(test_uart_full_transmitter_reports_busy),
		cmocka_unit_test(test_i8042_selftest_ctr_and_reset),
		cmocka_unit_test(test_i8042_ctrl_alt_del_types_set1_codes_in_order),
		cmocka_unit_test(
			test_i8042_keys_wait_behind_controller_reply_and_disabled_keyboard),
		cmocka_unit_test(test_i8042_typing_beyond_buffer_is_enobufs),
		cmocka_unit_test(test_pci_host_bridge_visible_and_empty_slots_absent),
		cmocka_unit_test(test_pci_unregistered_device_leaves_slot_empty_and_bar_silent),
		cmocka_unit_test(test_acpi_pm1_enable_sticks_and_s5_powers_off),
	};

	return cmocka_run_group_tests_name("devices", tests, NULL, NULL);
}
