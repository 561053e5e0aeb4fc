// SPDX-License-Identifier: MIT
/*
 * landlock.c on kernels other than this one: syscall(2) is wrapped (the Makefile), so that the
 * ABI query answers what a test sets (0: no Landlock, as before 5.13 or with it left out of
 * lsm=), and the ruleset a kernel would get is recorded.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/landlock.h"

long __real_syscall(long nr, ...);
long __wrap_syscall(long nr, ...);

static int fake_abi; /* what LANDLOCK_CREATE_RULESET_VERSION answers; 0: ENOSYS */
static uint64_t handled; /* the last ruleset's handled_access_fs */
static unsigned int restricted; /* landlock_restrict_self calls */

long __wrap_syscall(long nr, ...)
{
	long a[6];
	va_list ap;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_landlock_create_ruleset && a[2] == LANDLOCK_CREATE_RULESET_VERSION) {
		if (!fake_abi) {
			errno = ENOSYS;
			return -1;
		}
		return fake_abi;
	}
	if (nr == SYS_landlock_create_ruleset)
		handled = ((const struct landlock_ruleset_attr *)a[0])->handled_access_fs;
	if (nr == SYS_landlock_restrict_self) {
		restricted++;
		return 0; /* never confine the test itself */
	}
	return __real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static void test_no_landlock_prepares_nothing_and_enter_confines_nothing(void **state)
{
	fake_abi = 0;
	restricted = 0;
	assert_int_equal(landlock_abi(), 0);
	assert_int_equal(landlock_allow("/tmp", LANDLOCK_TREE), 0);
	assert_int_equal(landlock_prepare(), -EOPNOTSUPP);
	assert_int_equal(landlock_enter(), 0);
	assert_int_equal(restricted, 0);
}

/* Each ABI's ruleset handles exactly the rights it knows: the kernel refuses unknown bits. */
static void test_each_abi_handles_every_file_right_it_knows(void **state)
{
	static const struct {
		int abi;
		uint64_t handled;
	} cases[] = {
		{ 1, (1ULL << 13) - 1 }, /* EXECUTE .. MAKE_SYM */
		{ 2, (1ULL << 14) - 1 }, /* + REFER */
		{ 3, (1ULL << 15) - 1 }, /* + TRUNCATE */
		{ 4, (1ULL << 15) - 1 }, /* TCP ports only */
		{ 5, (1ULL << 16) - 1 }, /* + IOCTL_DEV */
		{ 7, (1ULL << 16) - 1 },
	};

	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fake_abi = cases[i].abi;
		handled = 0;
		assert_int_equal(landlock_abi(), cases[i].abi);
		/* A real ruleset is made: this kernel must accept each older ABI's mask. */
		assert_int_equal(landlock_prepare(), 0);
		assert_int_equal(handled, cases[i].handled);
	}
}

static void test_enter_after_prepare_restricts_the_thread(void **state)
{
	fake_abi = 2;
	restricted = 0;
	assert_int_equal(landlock_allow("/tmp", LANDLOCK_READ), 0);
	assert_int_equal(landlock_prepare(), 0);
	assert_int_equal(landlock_enter(), 0);
	assert_int_equal(restricted, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_landlock_prepares_nothing_and_enter_confines_nothing),
		cmocka_unit_test(test_each_abi_handles_every_file_right_it_knows),
		cmocka_unit_test(test_enter_after_prepare_restricts_the_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
