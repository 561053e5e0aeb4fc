// SPDX-License-Identifier: MIT
/*
 * test_fuse_server again on a kernel without openat2 (before 5.6): syscall(SYS_openat2) answers
 * ENOSYS (the Makefile wraps syscall), so every escape test runs on the fallback, which refuses
 * ".." and never follows a symlink.
 */
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>

long __real_syscall(long nr, ...);
long __wrap_syscall(long nr, ...);

static unsigned int openat2_refused;

long __wrap_syscall(long nr, ...)
{
	long a[6];
	va_list ap;

	if (nr == SYS_openat2) {
		openat2_refused++;
		errno = ENOSYS;
		return -1;
	}
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	return __real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

#define main fuse_server_tests
#include "test_fuse_server.c"
#undef main

int main(void)
{
	int failed = fuse_server_tests();

	/* Each server tries openat2 once, then keeps to the fallback. */
	if (!openat2_refused) {
		fprintf(stderr, "openat2 was never tried: the fallback was not tested\n");
		return 1;
	}
	return failed;
}
