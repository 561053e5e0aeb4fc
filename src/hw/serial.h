/* SPDX-License-Identifier: MIT */
/*
 * A 16550A UART (COM1, ttyS0). The vCPU writes bytes into a transmit buffer that the main loop
 * drains to the host; the main loop feeds host input into the receive FIFO. Nothing on the
 * vCPU side blocks.
 */
#ifndef NKVM_HW_SERIAL_H
#define NKVM_HW_SERIAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

#define SERIAL_COM1_PORT 0x3f8
#define SERIAL_COM1_IRQ 4
#define SERIAL_RX_SIZE 256
#define SERIAL_TX_SIZE (256 * 1024)

struct serial {
	pthread_mutex_t lock;
	struct vm *vm;
	unsigned int irq;
	int irq_level;
	int tx_fd; /* eventfd: "transmit buffer has bytes" for the main loop */
	uint8_t ier, lcr, mcr, fcr, scr, dll, dlm;
	int thre_pending; /* a THR-empty interrupt not yet acknowledged by IIR */
	uint8_t rx[SERIAL_RX_SIZE];
	size_t rx_head, rx_count;
	uint8_t *tx;
	size_t tx_head, tx_count;
	uint64_t tx_dropped;
};

/* Registers the UART at port with irq on vm's PIO bus. Returns 0 or a negative errno. */
int serial_init(struct serial *s, struct vm *vm, uint16_t port, unsigned int irq);
void serial_free(struct serial *s);

/* Main loop side: take up to len transmitted bytes; returns how many were copied. */
size_t serial_take_output(struct serial *s, uint8_t *buf, size_t len);
/*
 * Main loop side: offer host input; returns how many bytes the receive FIFO accepted (none
 * until the guest enables receive interrupts).
 */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

/* Register-level access, for the bus and for tests. */
uint8_t serial_read_reg(struct serial *s, unsigned int reg);
void serial_write_reg(struct serial *s, unsigned int reg, uint8_t val);

#endif
