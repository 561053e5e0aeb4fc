// SPDX-License-Identifier: MIT
/*
 * Every thread type's allow list: each loads (libseccomp takes every rule), and each allows fewer
 * system calls than Firecracker's counterpart (vCPU 27, API 31, VMM 50: its VMM thread also
 * runs the devices and back ends). Prints the table of docs/security.md:
 *   make build/tests/test_sandbox_filters && build/tests/test_sandbox_filters
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/filters.h"

#define FC_VCPU 27
#define FC_API 31
#define FC_VMM 50

static const struct {
	const struct sandbox_filter *f;
	const char *what;
	unsigned int firecracker;
} table[] = {
	{ &vcpu_filter, "KVM_RUN and the exit path's devices", FC_VCPU },
	{ &api_filter, "the control socket (libmicrohttpd) and its requests", FC_API },
	{ &main_filter, "the main loop, console, and the end (devices destroyed)", FC_VMM },
	{ &vp_worker_filter, "virtio-pci: routes, ioeventfds, device start and reset", FC_VMM },
	{ &blk_queue_filter, "virtio-blk requests, a queue's aio/io_uring context", FC_VMM },
	{ &net_queue_filter, "virtio-net frames to and from the back end", FC_VMM },
	{ &console_queue_filter, "virtio-console output", FC_VMM },
	{ &rng_queue_filter, "virtio-rng", FC_VMM },
	{ &fs_queue_filter, "virtio-fs: the FUSE server", FC_VMM },
	{ &balloon_queue_filter, "virtio-balloon", FC_VMM },
	{ &vsock_queue_filter, "virtio-vsock's queues (a guest's connect)", FC_VMM },
	{ &vsock_filter, "virtio-vsock's back end (host connections)", FC_VMM },
	{ &vp_queue_filter, "a device's queues without a list of its own", FC_VMM },
	{ &blk_threads_filter, "the threads engine's workers", FC_VMM },
	{ &blk_aio_filter, "the aio engine's reaper and helpers", FC_VMM },
	{ &blk_uring_filter, "the io_uring engine's ring thread and helpers", FC_VMM },
	{ &net_user_filter, "the user-mode network (libslirp)", FC_VMM },
};

static void test_each_filter_allows_fewer_calls_than_firecrackers_counterpart(void **state)
{
	printf("| thread type | job | allowed system calls | Firecracker |\n");
	printf("|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		size_t n = sandbox_filter_nr_calls(table[i].f);

		printf("| %s | %s | %zu | %u |\n", table[i].f->thread, table[i].what, n,
		       table[i].firecracker);
		if (n >= table[i].firecracker)
			fail_msg("%s allows %zu calls, Firecracker's counterpart %u", table[i].f->thread,
				 n, table[i].firecracker);
	}
}

/* In a child each: the filter loads; the child then leaves by exit_group, which all allow. */
static void test_each_filter_loads(void **state)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		int st;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			int err = sandbox_init(SANDBOX_ON);

			sandbox_release();
			if (!err)
				err = sandbox_enter(table[i].f);
			syscall(SYS_exit_group, err ? 1 : 0);
		}
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			fail_msg("%s: the filter did not load (status 0x%x)", table[i].f->thread, st);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_filter_allows_fewer_calls_than_firecrackers_counterpart),
		cmocka_unit_test(test_each_filter_loads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
