/* SPDX-License-Identifier: MIT */
/*
 * The monitor's sandbox. Once set-up is done, each thread confines itself: a seccomp allow list
 * of the system calls its job needs (kept beside that thread's code, so that a change to what a
 * thread calls and to its filter is one change), and Landlock, so that the process reaches only
 * the files it was given (images, shared directories, its sockets). A thread enters the sandbox
 * after its own set-up and before it touches guest or client bytes.
 *
 * seccomp filters are inherited and stack: a thread started by a sandboxed thread can never call
 * more than its parent's filter allows. So threads are started by the main thread during set-up
 * (or by a thread whose filter allows what its children need), and enter their own filter at
 * their start.
 */
#ifndef NKVM_SANDBOX_SANDBOX_H
#define NKVM_SANDBOX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h> /* __NR_*, for SANDBOX_ALLOW */

/* An allowed system call; with nr_args > 0, allowed only when every condition holds. */
#define SANDBOX_MAX_ARG_CONDS 3

enum sandbox_cmp {
	SANDBOX_ARG_EQ, /* args[arg] == value */
	SANDBOX_ARG_MASKED_EQ, /* (args[arg] & mask) == value */
};

struct sandbox_arg {
	unsigned int arg; /* 0..5 */
	enum sandbox_cmp cmp;
	uint64_t mask; /* SANDBOX_ARG_MASKED_EQ only */
	uint64_t value;
};

struct sandbox_rule {
	int nr; /* __NR_* */
	unsigned int nr_args;
	struct sandbox_arg args[SANDBOX_MAX_ARG_CONDS];
};

/* One thread type's allow list, defined beside that thread's code. */
struct sandbox_filter {
	const char *thread; /* the type, as the report names it: "vcpu", "api", "blk-queue" ... */
	const struct sandbox_rule *rules;
	size_t nr_rules;
};

/* A call allowed whatever its arguments. */
#define SANDBOX_ALLOW(name) { .nr = __NR_##name }
/* A call allowed only when argument i equals v (several such rules for one call: any may hold). */
#define SANDBOX_ALLOW_ARG(name, i, v)                                                  \
	{ .nr = __NR_##name, .nr_args = 1,                                                  \
	  .args = { { .arg = (i), .cmp = SANDBOX_ARG_EQ, .value = (uint64_t)(v) } } }

/* How nkvm ends after a forbidden call: as a shell reports a death by SIGSYS (128 + 31). */
#define SANDBOX_EXIT_STATUS 159

/* A call allowed only when (argument i & mask) == v. */
#define SANDBOX_ALLOW_MASKED(name, i, m, v)                                             \
	{ .nr = __NR_##name, .nr_args = 1,                                                  \
	  .args = { { .arg = (i), .cmp = SANDBOX_ARG_MASKED_EQ, .mask = (m),                 \
		      .value = (uint64_t)(v) } } }

/*
 * What any thread does beside its job, through glibc: mutexes and condition variables (futex),
 * malloc's arenas (mmap, munmap, mprotect, madvise; never executable: PROT_EXEC is 4; and brk,
 * when a thread shares the main arena), and its end (rt_sigprocmask, exit). Eight calls.
 */
#define SANDBOX_ALLOW_THREAD_BASICS                                                     \
	SANDBOX_ALLOW(futex), SANDBOX_ALLOW_MASKED(mmap, 2, 4, 0), SANDBOX_ALLOW(munmap),   \
		SANDBOX_ALLOW_MASKED(mprotect, 2, 4, 0), SANDBOX_ALLOW(madvise),            \
		SANDBOX_ALLOW(brk), SANDBOX_ALLOW(rt_sigprocmask), SANDBOX_ALLOW(exit)

enum sandbox_mode {
	SANDBOX_ON, /* the default */
	SANDBOX_OFF, /* --sandbox=off: for debugging; said at start */
};

/*
 * Once, on the main thread, before any thread enters: records the mode and installs the SIGSYS
 * handler that reports a forbidden call ("nkvm: sandbox: thread vcpu made forbidden system call
 * openat (257)") and ends the process. Returns 0 or a negative errno.
 */
int sandbox_init(enum sandbox_mode mode);

bool sandbox_enabled(void);

/*
 * On the calling thread: waits until the main thread calls sandbox_release (so that set-up,
 * --user's privilege drop and the Landlock ruleset are done first: glibc drops privileges in
 * every thread, which a filter would forbid), then sets no_new_privs, applies the Landlock
 * ruleset (landlock.h) if one was prepared, and loads the thread's seccomp filter. Does nothing
 * when the sandbox is off. Returns 0 or a negative errno; a thread that cannot confine itself
 * does not go on to guest or client bytes.
 */
int sandbox_enter(const struct sandbox_filter *f);

/*
 * On the main thread, once set-up is over (devices made, privileges dropped, landlock_prepare
 * done): lets the threads waiting in sandbox_enter confine themselves and go on.
 */
void sandbox_release(void);

/*
 * What the SIGSYS handler calls after its report line and before the process ends: fn must be
 * async-signal-safe and make only calls every filter allows (ioctl TCGETS and TCSETSF, for the
 * terminal). run sets term_restore, so that a sandbox kill leaves the terminal as it found it.
 */
void sandbox_set_kill_hook(void (*fn)(void));

/* How many distinct system calls f allows, those every filter adds (the report's and the kill hook's) included. */
size_t sandbox_filter_nr_calls(const struct sandbox_filter *f);

/* The thread type the calling thread entered as, or NULL (for reports and tests). */
const char *sandbox_thread_name(void);

#ifdef NKVM_TEST_HOOKS
/*
 * Only in the test build (build/nkvm-hooks, compiled with -DNKVM_TEST_HOOKS): true when the
 * environment variable NKVM_TEST_HOOK names this thread type and action ("vcpu:forbidden",
 * "fs-queue:open-outside"), so that a test can make one thread type do what it must not.
 */
bool sandbox_test_hook(const char *thread, const char *action);
/* A call no thread's list allows (ptrace), for the hooks' "forbidden" action. */
void sandbox_test_forbidden_call(void);
#endif

#endif
