// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "hw/serial.h"
#include "lib/util.h"
#include "vmm/console.h"
#include "vmm/vm.h"

/* While input waits for room in the UART FIFO, poll at this period for the guest to read. */
#define CONSOLE_RETRY_MS 5

/*
 * Moves held input into the UART. While some is left, stdin is out of the loop (it would stay
 * readable and spin the loop) and a short timer retries; once all is in, stdin comes back.
 */
static void console_push_pending(struct console *c)
{
	size_t n = c->receive(c->receive_opaque, c->pending, c->pending_len);

	memmove(c->pending, c->pending + n, c->pending_len - n);
	c->pending_len -= n;
	if (c->pending_len)
		loop_timer_arm(c->loop, &c->retry, CONSOLE_RETRY_MS);
	else
		loop_timer_cancel(c->loop, &c->retry);
	if (c->pending_len && c->in_active == 1) {
		loop_del(c->loop, &c->in_src);
		c->in_active = 2;
	} else if (!c->pending_len && c->in_active == 2) {
		c->in_active = loop_add(c->loop, &c->in_src, EPOLLIN) == 0;
	}
}

static void console_retry(struct loop_timer *t)
{
	console_push_pending(t->opaque);
}

static void console_on_input(struct loop_source *src, uint32_t events)
{
	struct console *c = src->opaque;
	size_t len;
	ssize_t n;

	n = read(src->fd, c->pending, sizeof(c->pending));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* End of input (or a dead terminal): the guest keeps running without it. */
		loop_del(c->loop, src);
		c->in_active = 0;
		return;
	}
	len = n;
	if (term_filter_input(&c->esc, c->pending, &len)) {
		/* Ctrl-A x: the user's way out; like QEMU, not an error. */
		vm_request_stop(c->vm, 0);
		return;
	}
	c->pending_len = len;
	console_push_pending(c);
}

void console_flush(struct console *c)
{
	uint8_t buf[4096];
	size_t n;

	while ((n = serial_take_output(c->uart, buf, sizeof(buf))) > 0) {
		if (c->output) {
			c->output(c->output_opaque, buf, n);
			continue;
		}
		if (write_all(c->out_fd, buf, n) < 0) {
			/* Nobody reads our output any more: stop rather than run blind. */
			vm_request_stop(c->vm, 1);
			return;
		}
	}
}

static void console_on_output(struct loop_source *src, uint32_t events)
{
	struct console *c = src->opaque;
	uint64_t count;

	if (read(src->fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return;
	console_flush(c);
}

void console_set_output(struct console *c, void (*fn)(void *, const uint8_t *, size_t),
			void *opaque)
{
	c->output = fn;
	c->output_opaque = opaque;
}

size_t console_input(struct console *c, const uint8_t *buf, size_t len)
{
	size_t room = sizeof(c->pending) - c->pending_len;

	if (len > room)
		len = room;
	memcpy(c->pending + c->pending_len, buf, len);
	c->pending_len += len;
	if (c->pending_len)
		console_push_pending(c);
	return len;
}

static size_t console_uart_receive(void *uart, const uint8_t *buf, size_t len)
{
	return serial_receive(uart, buf, len);
}

void console_set_input(struct console *c, size_t (*receive)(void *, const uint8_t *, size_t),
		       void *opaque)
{
	c->receive = receive;
	c->receive_opaque = opaque;
}

int console_init(struct console *c, struct vm *vm, struct serial *uart, struct loop *loop,
		 int in_fd, int out_fd)
{
	int err;

	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->uart = uart;
	console_set_input(c, console_uart_receive, uart);
	c->loop = loop;
	c->out_fd = out_fd;
	c->retry = (struct loop_timer){ .fn = console_retry, .opaque = c };
	c->out_src =
		(struct loop_source){ .fd = uart->tx_fd, .fn = console_on_output, .opaque = c };
	err = loop_add(loop, &c->out_src, EPOLLIN);
	if (err || in_fd < 0)
		return err;
	c->in_src = (struct loop_source){ .fd = in_fd, .fn = console_on_input, .opaque = c };
	/* A regular file or /dev/null cannot be polled; such input is simply not forwarded. */
	if (loop_add(loop, &c->in_src, EPOLLIN) == 0)
		c->in_active = 1;
	return 0;
}
