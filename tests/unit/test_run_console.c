// SPDX-License-Identifier: MIT
/*
 * A detached guest's console socket (src/cmd/run_console.c) on a real loop and unix socket,
 * with the UART's output fed in directly: replay of what no client saw, one client at a time,
 * the ring's bound, and input reaching the console.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"

#include "api/socket.h"
#include "cmd/run_console.h"
#include "hw/serial.h"
#include "lib/file.h"
#include "vmm/console.h"
#include "vmm/loop.h"

struct fx {
	char dir[80], path[108];
	struct loop loop;
	struct serial uart;
	struct console console;
	struct run_console rc;
	atomic_int stop;
	struct loop_timer tick;
};

static void on_tick(struct loop_timer *t)
{
	struct fx *fx = t->opaque;

	atomic_store(&fx->stop, 1);
}

/* Runs the loop for about ms milliseconds. */
static void spin(struct fx *fx, unsigned int ms)
{
	atomic_store(&fx->stop, 0);
	loop_timer_arm(&fx->loop, &fx->tick, ms);
	assert_int_equal(loop_run(&fx->loop, &fx->stop), 0);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || fx_dir_make(fx->dir, sizeof(fx->dir), NULL, "console"))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/g.console", fx->dir);
	if (loop_init(&fx->loop) || serial_init(&fx->uart, NULL, 0x3f8, 4) ||
	    console_init(&fx->console, NULL, &fx->uart, &fx->loop, -1, -1))
		return -1;
	fx->tick = (struct loop_timer){ .fn = on_tick, .opaque = fx };
	if (run_console_open(&fx->rc, fx->path, &fx->console, &fx->loop))
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	run_console_close(&fx->rc);
	serial_free(&fx->uart);
	loop_free(&fx->loop);
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

static int attach(struct fx *fx)
{
	int fd = api_sock_connect(fx->path);

	assert_true(fd >= 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	spin(fx, 20);
	return fd;
}

/* Reads what the client has been sent so far (the loop spun until it stops coming). */
static size_t drain(struct fx *fx, int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	for (int idle = 0; idle < 3 && got < len;) {
		n = read(fd, buf + got, len - got);
		if (n > 0) {
			got += n;
			idle = 0;
			continue;
		}
		idle++;
		spin(fx, 10);
	}
	return got;
}

static void out(struct fx *fx, const char *s)
{
	run_console_output(&fx->rc, (const uint8_t *)s, strlen(s));
}

static void test_client_gets_what_nobody_saw_then_live_output(void **state)
{
	struct fx *fx = *state;
	char buf[64];
	int a, b;

	out(fx, "boot ");
	a = attach(fx);
	assert_int_equal(drain(fx, a, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "boot ", 5);
	out(fx, "live ");
	assert_int_equal(drain(fx, a, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "live ", 5);
	close(a);
	spin(fx, 20);
	out(fx, "while-away");
	b = attach(fx);
	/* Only what was written while nobody was attached. */
	assert_int_equal(drain(fx, b, buf, sizeof(buf)), 10);
	assert_memory_equal(buf, "while-away", 10);
	close(b);
}

static void test_second_client_is_turned_away(void **state)
{
	struct fx *fx = *state;
	char buf[128];
	size_t n;
	int a, b;

	a = attach(fx);
	b = attach(fx);
	n = drain(fx, b, buf, sizeof(buf) - 1);
	buf[n] = 0;
	assert_non_null(strstr(buf, "another console is attached"));
	assert_int_equal(read(b, buf, 1), 0); /* and closed */
	out(fx, "x");
	assert_int_equal(drain(fx, a, buf, sizeof(buf)), 1);
	close(a);
	close(b);
}

/* Nobody attached for more than the ring holds: the last RUN_CONSOLE_RING bytes come. */
static void test_ring_keeps_the_last_mib(void **state)
{
	struct fx *fx = *state;
	size_t total = RUN_CONSOLE_RING + 4096 + 10;
	char *data = malloc(total), *got = malloc(RUN_CONSOLE_RING + 1);
	int a;

	assert_non_null(data);
	assert_non_null(got);
	for (size_t i = 0; i < total; i++)
		data[i] = (char)(i * 31 + i / 4096);
	/* In pieces, as the UART hands them over, across the ring's end. */
	for (size_t at = 0; at < total; at += 4000)
		run_console_output(&fx->rc, (uint8_t *)data + at,
				   at + 4000 > total ? total - at : 4000);
	a = attach(fx);
	assert_int_equal(drain(fx, a, got, RUN_CONSOLE_RING + 1), RUN_CONSOLE_RING);
	assert_memory_equal(got, data + total - RUN_CONSOLE_RING, RUN_CONSOLE_RING);
	close(a);
	free(data);
	free(got);
}

/* What the client sends waits for the guest in the console (the UART takes none yet). */
static void test_client_input_reaches_the_console(void **state)
{
	struct fx *fx = *state;
	int a = attach(fx);

	assert_int_equal(write(a, "ls\r", 3), 3);
	spin(fx, 20);
	assert_int_equal(fx->console.pending_len, 3);
	assert_memory_equal(fx->console.pending, "ls\r", 3);
	close(a);
}

static void test_console_path_beside_the_control_socket(void **state)
{
	char buf[108];

	assert_int_equal(run_console_path(buf, sizeof(buf), "/run/nkvm/g1.sock"), 0);
	assert_string_equal(buf, "/run/nkvm/g1.console");
	assert_int_equal(run_console_path(buf, 16, "/run/nkvm/g1.sock"), -ENAMETOOLONG);
	assert_int_equal(run_console_path(buf, sizeof(buf), "/run/nkvm/g1"), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_client_gets_what_nobody_saw_then_live_output,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_client_is_turned_away, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_keeps_the_last_mib, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_input_reaches_the_console, setup,
						teardown),
		cmocka_unit_test(test_console_path_beside_the_control_socket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
