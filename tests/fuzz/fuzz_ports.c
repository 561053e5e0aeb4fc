// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile guest's port I/O to the legacy devices, through the PIO bus as a
 * vCPU's exits reach it: the 16550 UART at 0x3f8 (hw/serial.c), the i8042 at 0x60/0x64
 * (arch/x86/i8042.c) and the ACPI PM1 blocks at 0x600 (arch/x86/acpi.c), in every width and at
 * every offset, interleaved with what the main loop and the control API do to them (host input
 * into the UART, its output drained, Ctrl-Alt-Del and SysRq typed). Each input gets fresh
 * devices on a VM without KVM. Checked: the FIFOs and key buffer stay within their sizes, the
 * UART's interrupt line is what its state says, the i8042's line ends each edge low, and a
 * reset or S5 request only ever stops the VM.
 *
 * Input: records of 4 bytes: u8 op, u8 a, le16 v. op & 7 is the kind: 0 a port write of v,
 * 1 a port read, at port bases[a % 3] + (a / 3) % 8, width 1 << ((op >> 3) % 3); 2 host input
 * of v % 300 bytes into the UART; 3 the main loop drains up to v bytes of its output;
 * 4 Ctrl-Alt-Del; 5 SysRq with key v; 6 the guest writes v % 4096 bytes to THR at once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/i8042.h"
#include "hw/serial.h"
#include "vmm/bus.h"
#include "vmm/vm.h"

#define RECORD 4

static int lines[32];

/* Without KVM there is no irqchip (nor vm.c): the fuzzer keeps the lines' levels. */
int vm_irq_line(struct vm *vm, unsigned int gsi, int level)
{
	if (gsi >= 32 || (level != 0 && level != 1))
		abort();
	lines[gsi] = level;
	return 0;
}

/* The devices' way to end the VM (a reset, S5): recorded, as vm.c's first-wins rule has it. */
void vm_request_stop(struct vm *vm, int status)
{
	if (!vm->stopping++)
		vm->exit_status = status;
}

static void check(const struct serial *s, const struct i8042 *k)
{
	if (s->rx_count > SERIAL_RX_SIZE || s->tx_count > SERIAL_TX_SIZE ||
	    k->keys_len > I8042_KEYS_MAX || k->keys_head >= I8042_KEYS_MAX)
		abort();
	if (lines[SERIAL_COM1_IRQ] != s->irq_level || lines[I8042_IRQ])
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t bases[] = { SERIAL_COM1_PORT, 0x60, ACPI_PM1A_EVT_PORT };
	static struct vm vm;
	static struct serial s;
	static struct i8042 k;
	static struct acpi_pm pm;
	static uint8_t out[4096], in[300];

	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = vm.stop_fd = -1;
	memset(lines, 0, sizeof(lines));
	if (serial_init(&s, &vm, SERIAL_COM1_PORT, SERIAL_COM1_IRQ) || i8042_init(&k, &vm) ||
	    acpi_pm_init(&pm, &vm))
		abort();
	for (size_t at = 0; at + RECORD <= size; at += RECORD) {
		uint8_t op = data[at], a = data[at + 1];
		uint16_t v = data[at + 2] | data[at + 3] << 8, port = bases[a % 3] + (a / 3) % 8;
		unsigned int len = 1U << ((op >> 3) % 3);
		uint32_t buf = v;

		switch (op & 7) {
		case 0:
			bus_write(&vm.pio, port, &buf, len);
			break;
		case 1:
			bus_read(&vm.pio, port, &buf, len);
			break;
		case 2:
			for (unsigned int i = 0; i < v % sizeof(in); i++)
				in[i] = (uint8_t)(v + i);
			if (serial_receive(&s, in, v % sizeof(in)) > v % sizeof(in))
				abort();
			break;
		case 3:
			if (serial_take_output(&s, out, v % sizeof(out)) > v % sizeof(out))
				abort();
			break;
		case 4:
			i8042_ctrl_alt_del(&k);
			break;
		case 5:
			i8042_sysrq(&k, (char)v);
			break;
		default:
			/* A burst, as a guest's printk fills the transmit buffer. */
			for (unsigned int i = 0; i < v % 4096; i++)
				bus_write(&vm.pio, SERIAL_COM1_PORT, &op, 1);
			break;
		}
		check(&s, &k);
	}
	/* A reset through the i8042 or S5 through PM1a_CNT asks the VM to stop, with status 0. */
	if (vm.stopping && vm.exit_status)
		abort();
	serial_free(&s);
	pthread_mutex_destroy(&k.lock);
	pthread_mutex_destroy(&pm.lock);
	return 0;
}
