// SPDX-License-Identifier: MIT
/*
 * The monitor's sandbox (sandbox.h): each thread loads its own seccomp allow list, built with
 * libseccomp, once the main thread has released it; a call outside the list traps (SIGSYS) and
 * the handler names the thread and the call on stderr before it ends the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <malloc.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "sandbox/landlock.h"
#include "sandbox/sandbox.h"

/* Above every x86_64 system call number today (the last is 462 in Linux 6.x). */
#define SANDBOX_MAX_NR 512

static enum sandbox_mode sandbox_mode = SANDBOX_OFF; /* until sandbox_init: unit tests */
static uint32_t default_action = SCMP_ACT_TRAP;
static pthread_mutex_t release_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t release_cond = PTHREAD_COND_INITIALIZER;
static bool released;
static __thread const char *thread_name;
/* The calls' names, resolved before any filter exists: the SIGSYS handler may not allocate. */
static const char *syscall_names[SANDBOX_MAX_NR];

/*
 * What every filter allows beside its own list: the handler's report line (on stderr only) and
 * its exit. Without them a forbidden call would end in a second, silent SIGSYS.
 */
static const struct sandbox_rule base_rules[] = {
	SANDBOX_ALLOW_ARG(write, 0, STDERR_FILENO),
	SANDBOX_ALLOW(exit_group),
	/* the kill hook's term_restore: glibc's tcsetattr sets, then reads back */
	SANDBOX_ALLOW_ARG(ioctl, 1, TCSETSF),
	SANDBOX_ALLOW_ARG(ioctl, 1, TCGETS),
};

static void (*volatile kill_hook)(void);

void sandbox_set_kill_hook(void (*fn)(void))
{
	kill_hook = fn;
}

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *put_uint(char *p, unsigned long v)
{
	char digits[24];
	int n = 0;

	do
		digits[n++] = '0' + v % 10;
	while ((v /= 10) && n < (int)sizeof(digits));
	while (n)
		*p++ = digits[--n];
	return p;
}

/* Async-signal-safe: builds the line by hand, one write, then exit_group. */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	const char *name = NULL, *thread = thread_name ? thread_name : "unknown";
	char line[384], *p = line;
	int nr = si->si_syscall;

	if (si->si_arch == AUDIT_ARCH_X86_64 && nr >= 0 && nr < SANDBOX_MAX_NR)
		name = syscall_names[nr];
	if (strlen(thread) > 64)
		thread = "unknown";
	p = put_str(p, "nkvm: sandbox: thread ");
	p = put_str(p, thread);
	p = put_str(p, " made forbidden system call ");
	p = put_str(p, name ? name : "unknown");
	p = put_str(p, " (");
	p = put_uint(p, (unsigned int)nr);
	p = put_str(p, ")");
	/* A file opened late says most about why (glibc loading something, a path a device took). */
	if (si->si_arch == AUDIT_ARCH_X86_64 && (nr == SYS_open || nr == SYS_openat)) {
		const greg_t *r = ((ucontext_t *)uc)->uc_mcontext.gregs;
		const char *path = (const char *)(nr == SYS_open ? r[REG_RDI] : r[REG_RSI]);

		p = put_str(p, " of ");
		for (int i = 0; path && path[i] && i < 120; i++)
			*p++ = path[i];
	}
	*p++ = '\n';
	if (write(STDERR_FILENO, line, p - line) < 0) {
		/* Nobody to tell: the status still says why. */
	}
	if (kill_hook)
		kill_hook();
	syscall(SYS_exit_group, SANDBOX_EXIT_STATUS);
}

int sandbox_init(enum sandbox_mode mode)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };

	sandbox_mode = mode;
	if (mode == SANDBOX_OFF)
		return 0;
#ifdef NKVM_TEST_HOOKS
	/* The test build can log what a filter would trap instead (to the audit log / dmesg). */
	if (getenv("NKVM_SANDBOX_LOG"))
		default_action = SCMP_ACT_LOG;
#endif
	/*
	 * What glibc would load later, from whichever thread first needs it, by opening a file a
	 * confined thread may not: the time zone (/etc/localtime, for libmicrohttpd's dates), and
	 * malloc's arena limit (/sys/devices/system/cpu/online, at a thread's first new arena;
	 * seen: 'thread api made forbidden system call openat'). The limit set is glibc's default.
	 */
	tzset();
	mallopt(M_ARENA_MAX, 8 * (int)sysconf(_SC_NPROCESSORS_ONLN));
	for (int nr = 0; nr < SANDBOX_MAX_NR; nr++)
		if (!syscall_names[nr])
			syscall_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, nr);
	/* SIGSYS stays unblocked in every thread: seccomp's trap forces it anyway. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	return 0;
}

bool sandbox_enabled(void)
{
	return sandbox_mode == SANDBOX_ON;
}

void sandbox_release(void)
{
	pthread_mutex_lock(&release_lock);
	released = true;
	pthread_cond_broadcast(&release_cond);
	pthread_mutex_unlock(&release_lock);
}

static int add_rule(scmp_filter_ctx ctx, const struct sandbox_rule *r)
{
	struct scmp_arg_cmp cmp[SANDBOX_MAX_ARG_CONDS];

	if (r->nr_args > SANDBOX_MAX_ARG_CONDS)
		return -EINVAL;
	for (unsigned int i = 0; i < r->nr_args; i++) {
		const struct sandbox_arg *a = &r->args[i];

		if (a->arg > 5)
			return -EINVAL;
		if (a->cmp == SANDBOX_ARG_MASKED_EQ)
			cmp[i] = (struct scmp_arg_cmp){ a->arg, SCMP_CMP_MASKED_EQ, a->mask, a->value };
		else
			cmp[i] = (struct scmp_arg_cmp){ a->arg, SCMP_CMP_EQ, a->value, 0 };
	}
	return seccomp_rule_add_exact_array(ctx, SCMP_ACT_ALLOW, r->nr, r->nr_args, cmp);
}

/* A rule that adds nothing to one already there (libseccomp says -EEXIST) is no error. */
static int add_rules(scmp_filter_ctx ctx, const struct sandbox_rule *rules, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int err = add_rule(ctx, &rules[i]);

		if (err && err != -EEXIST)
			return err;
	}
	return 0;
}

static bool rules_have(const struct sandbox_rule *rules, size_t n, int nr)
{
	for (size_t i = 0; i < n; i++)
		if (rules[i].nr == nr)
			return true;
	return false;
}

/* The open flags glibc's own opens carry, O_LARGEFILE aside (the kernel's bit, 0100000). */
#define OPEN_FLAGS_MASK (0xffffffffULL & ~0100000ULL)

int sandbox_enter(const struct sandbox_filter *f)
{
	scmp_filter_ctx ctx;
	sigset_t sys;
	int err;

	thread_name = f->thread;
	if (sandbox_mode != SANDBOX_ON)
		return 0;
	pthread_mutex_lock(&release_lock);
	while (!released)
		pthread_cond_wait(&release_cond, &release_lock);
	pthread_mutex_unlock(&release_lock);
	/*
	 * A trap's SIGSYS must reach the handler: blocked (as in the I/O engines' threads, which
	 * block nearly every signal), the kernel would kill the process without the report.
	 */
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
	/* Landlock and an unprivileged seccomp filter both need it; it holds for the process. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	err = landlock_enter();
	if (err && err != -EOPNOTSUPP)
		return err;
#ifdef NKVM_TEST_HOOKS
	/* In the audit log, each thread by its type ("comm"), so what it needs can be read back. */
	if (default_action == SCMP_ACT_LOG)
		prctl(PR_SET_NAME, f->thread, 0, 0, 0);
#endif
	ctx = seccomp_init(default_action);
	if (!ctx)
		return -ENOMEM;
	/* Calls of another ABI (i386's int 0x80) trap too, rather than kill a thread silently. */
	err = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
	if (!err)
		err = add_rules(ctx, base_rules, ARRAY_SIZE(base_rules));
	if (!err)
		err = add_rules(ctx, f->rules, f->nr_rules);
	/*
	 * glibc opens a few system files lazily, from whichever thread first needs one, and lives
	 * without them: malloc reads /proc/sys/vm/overcommit_memory when a thread's heap first
	 * shrinks (seen in CI, at the end of a run: 'thread blk-threads made forbidden system call
	 * openat'). A thread whose list has no openat gets EACCES for such a read-only open, as
	 * Landlock would answer it, instead of a trap that ends the guest; any other open traps.
	 */
	if (!err && !rules_have(f->rules, f->nr_rules, __NR_openat))
		err = seccomp_rule_add_exact(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 1,
					     SCMP_A2(SCMP_CMP_MASKED_EQ, OPEN_FLAGS_MASK,
						     O_RDONLY | O_CLOEXEC));
	if (!err)
		err = seccomp_load(ctx);
	seccomp_release(ctx);
	return err;
}

size_t sandbox_filter_nr_calls(const struct sandbox_filter *f)
{
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(base_rules); i++)
		n += !rules_have(f->rules, f->nr_rules, base_rules[i].nr) &&
		     !rules_have(base_rules, i, base_rules[i].nr);
	for (size_t i = 0; i < f->nr_rules; i++)
		n += !rules_have(f->rules, i, f->rules[i].nr);
	return n;
}

const char *sandbox_thread_name(void)
{
	return thread_name;
}

#ifdef NKVM_TEST_HOOKS
bool sandbox_test_hook(const char *thread, const char *action)
{
	const char *want = getenv("NKVM_TEST_HOOK");
	size_t len = strlen(thread);

	return want && !strncmp(want, thread, len) && want[len] == ':' &&
	       !strcmp(want + len + 1, action);
}

void sandbox_test_forbidden_call(void)
{
	/* On no process (pid 0): harmless where it is allowed, as with --sandbox=off. */
	syscall(SYS_ptrace, PTRACE_PEEKDATA, 0, NULL, NULL);
}
#endif
