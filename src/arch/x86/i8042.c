// SPDX-License-Identifier: MIT
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

static void i8042_reply(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->out_full = 1;
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
	if (cmd == CMD_WRITE_CTR)
		k->ctr = val;
	else if (cmd == CMD_WRITE_OUTPUT && !(val & OUTPUT_RESET_LINE))
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
