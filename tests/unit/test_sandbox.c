// SPDX-License-Identifier: MIT
/*
 * The sandbox's seccomp filters, in a child process per case (a filter lasts for the process):
 * what a thread's list allows goes through, anything else ends the process with one report line
 * and status SANDBOX_EXIT_STATUS; argument filters tell one ioctl number or open flag from
 * another; the release barrier holds threads back; --sandbox=off loads nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/sandbox.h"

static const struct sandbox_rule tester_rules[] = {
	SANDBOX_ALLOW(getpid),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_RUN),
	/* openat: read-only opens only, whatever else the flags say */
	{ .nr = __NR_openat,
	  .nr_args = 1,
	  .args = { { .arg = 2, .cmp = SANDBOX_ARG_MASKED_EQ, .mask = O_ACCMODE, .value = O_RDONLY } } },
	/* what the sanitizers' run time does under a test (at exit, at a thread's end) */
	SANDBOX_ALLOW(sigaltstack),
	SANDBOX_ALLOW(exit),
	SANDBOX_ALLOW(mmap),
	SANDBOX_ALLOW(rt_sigprocmask),
	SANDBOX_ALLOW(munmap),
	SANDBOX_ALLOW(madvise),
	SANDBOX_ALLOW(futex),
};

static const struct sandbox_filter tester = {
	.thread = "tester",
	.rules = tester_rules,
	.nr_rules = sizeof(tester_rules) / sizeof(tester_rules[0]),
};

/* The child's steps after it entered the filter; each ends in _exit or a trap. */
typedef void (*child_fn)(void);

struct outcome {
	int status; /* exit status, or -1 when killed by a signal */
	char err[512]; /* what the child wrote on stderr */
};

/* The filter the child enters. */
static const struct sandbox_filter *child_filter = &tester;

/* Set for a child that blocks every signal before it enters, as the I/O engines' threads do. */
static bool block_signals_first;

static void run_child(enum sandbox_mode mode, child_fn fn, struct outcome *out)
{
	int p[2], st;
	ssize_t n, len = 0;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], STDERR_FILENO);
		if (block_signals_first) {
			sigset_t all;

			sigfillset(&all);
			pthread_sigmask(SIG_BLOCK, &all, NULL);
		}
		if (sandbox_init(mode) || (sandbox_release(), sandbox_enter(child_filter)))
			_exit(99);
		fn();
		_exit(0);
	}
	close(p[1]);
	memset(out, 0, sizeof(*out));
	while ((n = read(p[0], out->err + len, sizeof(out->err) - 1 - len)) > 0)
		len += n;
	close(p[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	out->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	if (out->status && out->status != SANDBOX_EXIT_STATUS)
		print_message("child's stderr: %s", out->err);
}

static void call_getpid_then_getppid(void)
{
	syscall(SYS_getpid);
	syscall(SYS_getppid);
}

static void call_getpid(void)
{
	syscall(SYS_getpid);
}

static void test_forbidden_call_reports_thread_and_call_and_ends_process(void **state)
{
	struct outcome o;

	run_child(SANDBOX_ON, call_getpid_then_getppid, &o);
	assert_int_equal(o.status, SANDBOX_EXIT_STATUS);
	assert_string_equal(o.err,
			    "nkvm: sandbox: thread tester made forbidden system call getppid (110)\n");
}

static void say_hook_ran(void)
{
	static const char msg[] = "hook ran\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(4);
}

static void set_hook_then_call_getppid(void)
{
	sandbox_set_kill_hook(say_hook_ran);
	syscall(SYS_getppid);
}

/* run's term_restore comes back this way: after the report, before the end. */
static void test_kill_hook_runs_after_the_report(void **state)
{
	struct outcome o;

	run_child(SANDBOX_ON, set_hook_then_call_getppid, &o);
	assert_int_equal(o.status, SANDBOX_EXIT_STATUS);
	assert_string_equal(
		o.err, "nkvm: sandbox: thread tester made forbidden system call getppid (110)\nhook ran\n");
}

static void test_thread_with_signals_blocked_still_reports(void **state)
{
	struct outcome o;

	block_signals_first = true;
	run_child(SANDBOX_ON, call_getpid_then_getppid, &o);
	block_signals_first = false;
	assert_int_equal(o.status, SANDBOX_EXIT_STATUS);
	assert_string_equal(o.err,
			    "nkvm: sandbox: thread tester made forbidden system call getppid (110)\n");
}

static void test_allowed_call_goes_through(void **state)
{
	struct outcome o;

	run_child(SANDBOX_ON, call_getpid, &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(o.err, "");
}

static void ioctl_kvm_run(void)
{
	/* Allowed: fails with EBADF in the kernel, not in the filter. */
	if (ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF)
		_exit(3);
}

static void ioctl_kvm_get_regs(void)
{
	struct kvm_regs regs;

	ioctl(-1, KVM_GET_REGS, &regs);
}

static void test_ioctl_number_filter_allows_only_listed_numbers(void **state)
{
	struct outcome o;

	run_child(SANDBOX_ON, ioctl_kvm_run, &o);
	assert_int_equal(o.status, 0);
	run_child(SANDBOX_ON, ioctl_kvm_get_regs, &o);
	assert_int_equal(o.status, SANDBOX_EXIT_STATUS);
	assert_string_equal(o.err, "nkvm: sandbox: thread tester made forbidden system call ioctl (16)\n");
}

static void open_read_only(void)
{
	if (syscall(SYS_openat, AT_FDCWD, "/nonexistent-nkvm", O_RDONLY | O_CLOEXEC) != -1 ||
	    errno != ENOENT)
		_exit(3);
}

static void open_for_writing(void)
{
	syscall(SYS_openat, AT_FDCWD, "/nonexistent-nkvm", O_WRONLY | O_CREAT, 0600);
}

static void test_masked_flag_filter_allows_read_only_opens(void **state)
{
	struct outcome o;

	run_child(SANDBOX_ON, open_read_only, &o);
	assert_int_equal(o.status, 0);
	run_child(SANDBOX_ON, open_for_writing, &o);
	assert_int_equal(o.status, SANDBOX_EXIT_STATUS);
	assert_string_equal(
		o.err,
		"nkvm: sandbox: thread tester made forbidden system call openat (257) of /nonexistent-nkvm\n");
}

/* tester's list without openat, as most threads' lists are */
static const struct sandbox_rule opens_nothing_rules[] = {
	SANDBOX_ALLOW(getpid),	 SANDBOX_ALLOW(sigaltstack), SANDBOX_ALLOW(exit),
	SANDBOX_ALLOW(mmap),	 SANDBOX_ALLOW(rt_sigprocmask), SANDBOX_ALLOW(munmap),
	SANDBOX_ALLOW(madvise), SANDBOX_ALLOW(futex),
};

static const struct sandbox_filter opens_nothing = {
	.thread = "opens-nothing",
	.rules = opens_nothing_rules,
	.nr_rules = sizeof(opens_nothing_rules) / sizeof(opens_nothing_rules[0]),
};

/* What glibc's malloc does the first time a thread's heap shrinks. */
static void open_overcommit_setting(void)
{
	if (syscall(SYS_openat, AT_FDCWD, "/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC) !=
		    -1 ||
	    errno != EACCES)
		_exit(3);
}

static void open_overcommit_setting_for_writing(void)
{
	syscall(SYS_openat, AT_FDCWD, "/proc/sys/vm/overcommit_memory", O_WRONLY | O_CLOEXEC);
}

/*
 * A thread that opens nothing gets EACCES for a read-only open (glibc's own, which it lives
 * without) and goes on; any other open still ends the process.
 */
static void test_thread_without_opens_gets_eacces_for_read_only_open(void **state)
{
	struct outcome o;

	child_filter = &opens_nothing;
	run_child(SANDBOX_ON, open_overcommit_setting, &o);
	assert_int_equal(o.status, 0);
	run_child(SANDBOX_ON, open_overcommit_setting_for_writing, &o);
	child_filter = &tester;
	assert_int_equal(o.status, SANDBOX_EXIT_STATUS);
	assert_string_equal(o.err, "nkvm: sandbox: thread opens-nothing made forbidden system call "
				   "openat (257) of /proc/sys/vm/overcommit_memory\n");
}

static void test_sandbox_off_loads_no_filter(void **state)
{
	struct outcome o;

	run_child(SANDBOX_OFF, call_getpid_then_getppid, &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(o.err, "");
}

static atomic_bool entered;

static void *enter_thread(void *arg)
{
	sandbox_enter(&tester);
	atomic_store(&entered, true);
	return NULL;
}

/* In a child: the thread has not entered before the release, and has after it. */
static void barrier_child(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, enter_thread, NULL))
		_exit(4);
	usleep(100 * 1000);
	if (atomic_load(&entered))
		_exit(5);
	sandbox_release();
	pthread_join(t, NULL);
	_exit(atomic_load(&entered) ? 0 : 6);
}

static void test_threads_wait_in_enter_until_release(void **state)
{
	int st;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (sandbox_init(SANDBOX_ON))
			_exit(99);
		barrier_child();
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_thread_name_is_the_type_entered(void **state)
{
	assert_null(sandbox_thread_name());
	/* Before sandbox_init the sandbox is off: only the name is recorded. */
	assert_int_equal(sandbox_enter(&tester), 0);
	assert_string_equal(sandbox_thread_name(), "tester");
	assert_false(sandbox_enabled());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forbidden_call_reports_thread_and_call_and_ends_process),
		cmocka_unit_test(test_thread_with_signals_blocked_still_reports),
		cmocka_unit_test(test_kill_hook_runs_after_the_report),
		cmocka_unit_test(test_allowed_call_goes_through),
		cmocka_unit_test(test_ioctl_number_filter_allows_only_listed_numbers),
		cmocka_unit_test(test_masked_flag_filter_allows_read_only_opens),
		cmocka_unit_test(test_thread_without_opens_gets_eacces_for_read_only_open),
		cmocka_unit_test(test_sandbox_off_loads_no_filter),
		cmocka_unit_test(test_threads_wait_in_enter_until_release),
		cmocka_unit_test(test_thread_name_is_the_type_entered),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
