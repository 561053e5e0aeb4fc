// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "arch/x86/i8042.h"
#include "vmm/bus.h"
#include "vmm/vm.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define CMD_READ_CTR 0x20
#define CMD_WRITE_CTR 0x60
#define CMD_AUX_TEST 0xa9
#define CMD_SELF_TEST 0xaa
#define CMD_KBD_TEST 0xab
#define CMD_WRITE_OUTPUT 0xd1
#define CMD_RESET 0xfe
#define SELF_TEST_OK 0x55
#define OUTPUT_RESET_LINE 0x01 /* output port bit 0 low pulses the CPU's reset */
#define CTR_KBD_INT 0x01
#define CTR_KBD_DISABLE 0x10
#define CTR_XLATE 0x40

/* Scan code set 1 (what the controller hands Linux when it translates): make codes. */
#define SC_LCTRL 0x1d
#define SC_LALT 0x38
#define SC_SYSRQ 0x54 /* Alt + Print Screen, as a keyboard sends it */
#define SC_EXTENDED 0xe0
#define SC_DELETE 0x53 /* after SC_EXTENDED: Delete, not the keypad's */
#define SC_BREAK 0x80 /* make code | 0x80: the key is released */

/* Set 1 make codes of 'a'..'z' and '0'..'9'. */
static const uint8_t sc_letters[26] = {
	0x1e, 0x30, 0x2e, 0x20, 0x12, 0x21, 0x22, 0x23, 0x17, 0x24, 0x25, 0x26, 0x32,
	0x31, 0x18, 0x19, 0x10, 0x13, 0x1f, 0x14, 0x16, 0x2f, 0x11, 0x2d, 0x15, 0x2c,
};
static const uint8_t sc_digits[10] = { 0x0b, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a };

static void i8042_reply(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->out_full = 1;
}

/*
 * The next typed byte moves into the output buffer once it is empty and the keyboard is
 * enabled, with an edge on IRQ 1 when the guest asked for keyboard interrupts (bit 0 of the
 * command byte): Linux's handler reads one byte per interrupt.
 */
static void i8042_feed(struct i8042 *k)
{
	if (k->out_full || !k->keys_len || (k->ctr & CTR_KBD_DISABLE))
		return;
	k->out = k->keys[k->keys_head];
	k->out_full = 1;
	k->keys_head = (k->keys_head + 1) % I8042_KEYS_MAX;
	k->keys_len--;
	if (k->ctr & CTR_KBD_INT) {
		vm_irq_line(k->vm, I8042_IRQ, 1);
		vm_irq_line(k->vm, I8042_IRQ, 0);
	}
}

static int i8042_type(struct i8042 *k, const uint8_t *codes, unsigned int n)
{
	int err = 0;

	pthread_mutex_lock(&k->lock);
	if (!(k->ctr & CTR_XLATE))
		err = -EOPNOTSUPP;
	else if (n > I8042_KEYS_MAX - k->keys_len)
		err = -ENOBUFS;
	for (unsigned int i = 0; !err && i < n; i++)
		k->keys[(k->keys_head + k->keys_len++) % I8042_KEYS_MAX] = codes[i];
	if (!err)
		i8042_feed(k);
	pthread_mutex_unlock(&k->lock);
	return err;
}

int i8042_ctrl_alt_del(struct i8042 *k)
{
	static const uint8_t codes[] = {
		SC_LCTRL,	    SC_LALT,
		SC_EXTENDED,	    SC_DELETE,
		SC_EXTENDED,	    SC_DELETE | SC_BREAK,
		SC_LALT | SC_BREAK, SC_LCTRL | SC_BREAK,
	};

	return i8042_type(k, codes, sizeof(codes));
}

int i8042_sysrq(struct i8042 *k, char key)
{
	/* Linux's SysRq filter (drivers/tty/sysrq.c) acts on a key pressed while Alt-SysRq is. */
	uint8_t codes[] = { SC_LALT, SC_SYSRQ, 0, 0, SC_SYSRQ | SC_BREAK, SC_LALT | SC_BREAK };

	if (key >= 'a' && key <= 'z')
		codes[2] = sc_letters[key - 'a'];
	else if (key >= '0' && key <= '9')
		codes[2] = sc_digits[key - '0'];
	else
		return -EINVAL;
	codes[3] = codes[2] | SC_BREAK;
	return i8042_type(k, codes, sizeof(codes));
}

static void i8042_reset(struct i8042 *k)
{
	/* The guest asked for a reset: the monitor's clean way out. */
	vm_request_stop(k->vm, 0);
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_CTR:
		i8042_reply(k, k->ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTPUT:
		k->pending_cmd = cmd;
		break;
	case CMD_SELF_TEST:
		i8042_reply(k, SELF_TEST_OK);
		break;
	case CMD_KBD_TEST:
	case CMD_AUX_TEST:
		i8042_reply(k, 0);
		break;
	case CMD_RESET:
		i8042_reset(k);
		break;
	}
}

static void i8042_data(struct i8042 *k, uint8_t val)
{
	uint8_t cmd = k->pending_cmd;

	k->pending_cmd = 0;
	if (cmd == CMD_WRITE_CTR) {
		k->ctr = val;
		i8042_feed(k);
	} else if (cmd == CMD_WRITE_OUTPUT && !(val & OUTPUT_RESET_LINE))
		i8042_reset(k);
	/* Bytes for the keyboard itself go nowhere: there is none. */
}

uint8_t i8042_read(struct i8042 *k, uint16_t port)
{
	uint8_t v;

	pthread_mutex_lock(&k->lock);
	if (port == I8042_CMD) {
		v = STATUS_SYS | (k->out_full ? STATUS_OBF : 0);
	} else {
		v = k->out;
		k->out_full = 0;
		i8042_feed(k);
	}
	pthread_mutex_unlock(&k->lock);
	return v;
}

void i8042_write(struct i8042 *k, uint16_t port, uint8_t val)
{
	pthread_mutex_lock(&k->lock);
	if (port == I8042_CMD)
		i8042_command(k, val);
	else
		i8042_data(k, val);
	pthread_mutex_unlock(&k->lock);
}

static void i8042_data_read(void *opaque, uint64_t off, void *data, unsigned int len)
{
	memset(data, 0, len);
	*(uint8_t *)data = i8042_read(opaque, I8042_DATA);
}

static void i8042_data_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	i8042_write(opaque, I8042_DATA, *(const uint8_t *)data);
}

static void i8042_cmd_read(void *opaque, uint64_t off, void *data, unsigned int len)
{
	memset(data, 0, len);
	*(uint8_t *)data = i8042_read(opaque, I8042_CMD);
}

static void i8042_cmd_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	i8042_write(opaque, I8042_CMD, *(const uint8_t *)data);
}

static const struct bus_ops i8042_data_ops = { .read = i8042_data_read, .write = i8042_data_write };
static const struct bus_ops i8042_cmd_ops = { .read = i8042_cmd_read, .write = i8042_cmd_write };

int i8042_init(struct i8042 *k, struct vm *vm)
{
	int err;

	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->vm = vm;
	k->ctr = 0x47; /* as firmware leaves it: keyboard interrupt, system flag, translation */
	err = bus_register(&vm->pio, I8042_DATA, 1, &i8042_data_ops, k);
	if (err)
		return err;
	return bus_register(&vm->pio, I8042_CMD, 1, &i8042_cmd_ops, k);
}
