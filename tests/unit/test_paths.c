// SPDX-License-Identifier: MIT
/* Where the default guest lives: XDG_CACHE_HOME, else HOME/.cache. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "lib/paths.h"

static int clear_env(void **state)
{
	unsetenv("XDG_CACHE_HOME");
	unsetenv("HOME");
	return 0;
}

static void test_paths_cache_under_home_without_xdg(void **state)
{
	char buf[256];

	setenv("HOME", "/home/u", 1);
	assert_int_equal(nkvm_cache_path(buf, sizeof(buf), NKVM_GUEST_KERNEL), 0);
	assert_string_equal(buf, "/home/u/.cache/nkvm/vmlinuz");
	assert_int_equal(nkvm_cache_path(buf, sizeof(buf), ""), 0);
	assert_string_equal(buf, "/home/u/.cache/nkvm");
}

static void test_paths_xdg_wins_over_home(void **state)
{
	char buf[256];

	setenv("HOME", "/home/u", 1);
	setenv("XDG_CACHE_HOME", "/var/cache/u", 1);
	assert_int_equal(nkvm_cache_path(buf, sizeof(buf), NKVM_GUEST_INITRD), 0);
	assert_string_equal(buf, "/var/cache/u/nkvm/initrd.cpio");
}

/* The XDG spec: a relative XDG_CACHE_HOME is invalid and ignored. */
static void test_paths_relative_xdg_is_ignored(void **state)
{
	char buf[256];

	setenv("HOME", "/home/u", 1);
	setenv("XDG_CACHE_HOME", "cache", 1);
	assert_int_equal(nkvm_cache_path(buf, sizeof(buf), "x"), 0);
	assert_string_equal(buf, "/home/u/.cache/nkvm/x");
}

static void test_paths_no_home_is_enoent(void **state)
{
	char buf[256];

	assert_int_equal(nkvm_cache_path(buf, sizeof(buf), "x"), -ENOENT);
}

static void test_paths_too_long_for_buffer_is_enametoolong(void **state)
{
	char buf[16];

	setenv("HOME", "/home/u", 1);
	assert_int_equal(nkvm_cache_path(buf, sizeof(buf), NKVM_GUEST_KERNEL), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_paths_cache_under_home_without_xdg, clear_env),
		cmocka_unit_test_setup(test_paths_xdg_wins_over_home, clear_env),
		cmocka_unit_test_setup(test_paths_relative_xdg_is_ignored, clear_env),
		cmocka_unit_test_setup(test_paths_no_home_is_enoent, clear_env),
		cmocka_unit_test_setup(test_paths_too_long_for_buffer_is_enametoolong, clear_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
