// SPDX-License-Identifier: MIT
/* 16550A registers per the National Semiconductor PC16550D data sheet. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hw/serial.h"
#include "vmm/bus.h"
#include "vmm/vm.h"

enum {
	UART_RX = 0,
	UART_TX = 0,
	UART_DLL = 0,
	UART_IER = 1,
	UART_DLM = 1,
	UART_IIR = 2,
	UART_FCR = 2,
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7,
};

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ENABLED 0xc0
#define FCR_ENABLE_FIFO 0x01
#define FCR_CLEAR_RCVR 0x02
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

static int tx_full(const struct serial *s)
{
	return s->tx_count == SERIAL_TX_SIZE;
}

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE_FIFO) ? IIR_FIFO_ENABLED : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thre_pending)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

/*
 * Called with the lock held, so that line changes reach KVM in the order the state changed;
 * KVM_IRQ_LINE is a short ioctl that never sleeps. On a PC, OUT2 gates the UART's interrupt.
 */
static void serial_update_irq(struct serial *s)
{
	int level = !(serial_iir(s) & IIR_NO_INT) && (s->mcr & MCR_OUT2);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (s->vm)
		vm_irq_line(s->vm, s->irq, level);
}

static void rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_count == SERIAL_RX_SIZE)
		return;
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_SIZE] = c;
	s->rx_count++;
}

static void serial_transmit(struct serial *s, uint8_t c)
{
	uint64_t one = 1;

	if (s->mcr & MCR_LOOP) {
		rx_push(s, c);
		s->thre_pending = 1;
		return;
	}
	if (tx_full(s)) {
		/* LSR said "busy" and the guest wrote anyway: a real UART overruns too. */
		s->tx_dropped++;
		return;
	}
	s->tx[(s->tx_head + s->tx_count) % SERIAL_TX_SIZE] = c;
	/* Wake the main loop only on the empty → non-empty edge: one eventfd write per burst. */
	if (s->tx_count++ == 0 && s->tx_fd >= 0 && write(s->tx_fd, &one, sizeof(one)) < 0)
		s->tx_dropped++;
	s->thre_pending = !tx_full(s);
}

static uint8_t serial_msr(const struct serial *s)
{
	if (s->mcr & MCR_LOOP)
		return ((s->mcr & MCR_RTS) ? MSR_CTS : 0) | ((s->mcr & MCR_DTR) ? MSR_DSR : 0) |
		       ((s->mcr & MCR_OUT1) ? MSR_RI : 0) | ((s->mcr & MCR_OUT2) ? MSR_DCD : 0);
	return MSR_DCD | MSR_DSR | MSR_CTS;
}

uint8_t serial_read_reg(struct serial *s, unsigned int reg)
{
	uint8_t v = 0xff;

	pthread_mutex_lock(&s->lock);
	switch (reg) {
	case UART_RX:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
		} else if (s->rx_count) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_RX_SIZE;
			s->rx_count--;
		} else {
			v = 0;
		}
		break;
	case UART_IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case UART_IIR:
		v = serial_iir(s);
		/* Reading IIR acknowledges a THR-empty interrupt. */
		if ((v & 0x0f) == IIR_THRI)
			s->thre_pending = 0;
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = (s->rx_count ? LSR_DR : 0) | (tx_full(s) ? 0 : LSR_THRE | LSR_TEMT);
		break;
	case UART_MSR:
		v = serial_msr(s);
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return v;
}

void serial_write_reg(struct serial *s, unsigned int reg, uint8_t val)
{
	pthread_mutex_lock(&s->lock);
	switch (reg) {
	case UART_TX:
		if (s->lcr & LCR_DLAB) {
			s->dll = val;
		} else {
			s->thre_pending = 0;
			serial_transmit(s, val);
		}
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = val;
		} else {
			/* Enabling the THR-empty interrupt with THR empty raises it at once. */
			if ((val & IER_THRI) && !(s->ier & IER_THRI) && !tx_full(s))
				s->thre_pending = 1;
			s->ier = val & 0x0f;
		}
		break;
	case UART_FCR:
		s->fcr = val & 0xc9;
		if (val & FCR_CLEAR_RCVR)
			s->rx_count = 0;
		break;
	case UART_LCR:
		s->lcr = val;
		break;
	case UART_MCR:
		s->mcr = val & 0x1f;
		break;
	case UART_SCR:
		s->scr = val;
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_bus_read(void *opaque, uint64_t off, void *data, unsigned int len)
{
	memset(data, 0, len);
	*(uint8_t *)data = serial_read_reg(opaque, off);
}

static void serial_bus_write(void *opaque, uint64_t off, const void *data, unsigned int len)
{
	serial_write_reg(opaque, off, *(const uint8_t *)data);
}

static const struct bus_ops serial_bus_ops = {
	.read = serial_bus_read,
	.write = serial_bus_write,
};

size_t serial_take_output(struct serial *s, uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->tx_count) {
		size_t chunk = SERIAL_TX_SIZE - s->tx_head;

		if (chunk > s->tx_count)
			chunk = s->tx_count;
		if (chunk > len - n)
			chunk = len - n;
		memcpy(buf + n, s->tx + s->tx_head, chunk);
		s->tx_head = (s->tx_head + chunk) % SERIAL_TX_SIZE;
		s->tx_count -= chunk;
		n += chunk;
	}
	/* Room again: a transmitter that had reported "busy" is now empty. */
	if (n && !s->thre_pending && !tx_full(s) && (s->ier & IER_THRI))
		s->thre_pending = 1;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	/*
	 * Until the guest's driver enables receive interrupts nobody is listening, and Linux
	 * clears the FIFO when it opens the port: hold input back rather than lose it.
	 */
	while (n < len && s->rx_count < SERIAL_RX_SIZE && (s->ier & IER_RDI))
		rx_push(s, buf[n++]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

int serial_init(struct serial *s, struct vm *vm, uint16_t port, unsigned int irq)
{
	memset(s, 0, sizeof(*s));
	s->vm = vm;
	s->irq = irq;
	s->tx_fd = -1;
	s->tx = malloc(SERIAL_TX_SIZE);
	if (!s->tx)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->tx_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->tx_fd < 0)
		return -errno;
	if (!vm)
		return 0;
	return bus_register(&vm->pio, port, 8, &serial_bus_ops, s);
}

void serial_free(struct serial *s)
{
	if (s->tx_fd >= 0)
		close(s->tx_fd);
	free(s->tx);
	s->tx = NULL;
	pthread_mutex_destroy(&s->lock);
}
