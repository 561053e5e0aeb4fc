// SPDX-License-Identifier: MIT
/*
 * `nkvm setup`: the libraries a guest tool needs, read from ldd's output; the initrd's stamp;
 * where --kernel-package puts its guest.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmd/setup.h"

/* Debian 12's `ldd /usr/sbin/e2fsck`, with the vDSO first and the loader last, as ldd prints. */
static const char e2fsck_ldd[] =
	"\tlinux-vdso.so.1 (0x00007ffd6b3f1000)\n"
	"\tlibext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x00007f61332ed000)\n"
	"\tlibcom_err.so.2 => /lib/x86_64-linux-gnu/libcom_err.so.2 (0x00007f61332e7000)\n"
	"\tlibblkid.so.1 => /lib/x86_64-linux-gnu/libblkid.so.1 (0x00007f6133290000)\n"
	"\tlibuuid.so.1 => /lib/x86_64-linux-gnu/libuuid.so.1 (0x00007f6133286000)\n"
	"\tlibe2p.so.2 => /lib/x86_64-linux-gnu/libe2p.so.2 (0x00007f613327b000)\n"
	"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f6133097000)\n"
	"\t/lib64/ld-linux-x86-64.so.2 (0x00007f61333c8000)\n";

static void test_ldd_lists_libraries_and_loader_not_vdso(void **state)
{
	struct setup_libs libs;
	char why[64] = "";

	assert_int_equal(setup_ldd_parse(e2fsck_ldd, &libs, why, sizeof(why)), 0);
	assert_int_equal(libs.n, 7);
	assert_string_equal(libs.paths[0], "/lib/x86_64-linux-gnu/libext2fs.so.2");
	assert_string_equal(libs.paths[5], "/lib/x86_64-linux-gnu/libc.so.6");
	assert_string_equal(libs.paths[6], "/lib64/ld-linux-x86-64.so.2");
	assert_string_equal(why, "");
	setup_libs_free(&libs);
	assert_int_equal(libs.n, 0);
	assert_null(libs.paths);
}

/* A library found through another's RUNPATH keeps its directory: the loader looks there. */
static void test_ldd_keeps_runpath_directories(void **state)
{
	static const char text[] =
		"\tlibrados.so.2 => /lib/x86_64-linux-gnu/librados.so.2 (0x00007f9581670000)\n"
		"\tlibceph-common.so.2 => /usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2 "
		"(0x00007f9577600000)\n";
	struct setup_libs libs;
	char why[64];

	assert_int_equal(setup_ldd_parse(text, &libs, why, sizeof(why)), 0);
	assert_int_equal(libs.n, 2);
	assert_string_equal(libs.paths[1], "/usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2");
	setup_libs_free(&libs);
}

static void test_ldd_old_vdso_line_and_no_address(void **state)
{
	/* Older ldd wrote the vDSO with an empty "=>"; a line may also lack the address. */
	static const char text[] = "\tlinux-vdso.so.1 =>  (0x00007fff2a1fe000)\n"
				   "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1\n"
				   "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x1000)\n"
				   "\t/lib64/ld-linux-x86-64.so.2";
	struct setup_libs libs;
	char why[64];

	assert_int_equal(setup_ldd_parse(text, &libs, why, sizeof(why)), 0);
	assert_int_equal(libs.n, 2);
	assert_string_equal(libs.paths[0], "/lib/x86_64-linux-gnu/libz.so.1");
	assert_string_equal(libs.paths[1], "/lib64/ld-linux-x86-64.so.2");
	setup_libs_free(&libs);
}

static void test_ldd_static_program_needs_nothing(void **state)
{
	struct setup_libs libs;
	char why[64];

	assert_int_equal(setup_ldd_parse("\tstatically linked\n", &libs, why, sizeof(why)), 0);
	assert_int_equal(libs.n, 0);
	assert_int_equal(setup_ldd_parse("", &libs, why, sizeof(why)), 0);
	assert_int_equal(libs.n, 0);
	setup_libs_free(&libs);
}

static void test_ldd_missing_library_is_enoent_with_its_name(void **state)
{
	static const char text[] = "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1000)\n"
				   "\tlibrbd.so.1 => not found\n"
				   "\t/lib64/ld-linux-x86-64.so.2 (0x2000)\n";
	struct setup_libs libs;
	char why[64];

	assert_int_equal(setup_ldd_parse(text, &libs, why, sizeof(why)), -ENOENT);
	assert_string_equal(why, "librbd.so.1");
	assert_int_equal(libs.n, 0);
	assert_null(libs.paths);
}

static void test_ldd_path_the_initramfs_cannot_hold_is_einval(void **state)
{
	static const char *const bad[] = {
		"\tlibx.so => /usr/bin/../lib/libx.so (0x1000)\n",
		"\tlibx.so => /usr/lib/./libx.so (0x1000)\n",
		"\tlibx.so => /usr//lib/libx.so (0x1000)\n",
		"\tlibx.so => /usr/lib/.. (0x1000)\n",
		"\tlibx.so => /usr/lib/ (0x1000)\n",
	};
	struct setup_libs libs;
	char why[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(setup_ldd_parse(bad[i], &libs, why, sizeof(why)), -EINVAL);
		assert_int_equal(libs.n, 0);
	}
	assert_string_equal(why, "/usr/lib/");
	/* Dots inside names are fine. */
	assert_int_equal(setup_ldd_parse("\tx => /lib/x.so.1..2 (0x1)\n\t/a/.b/..c\n", &libs, why,
					 sizeof(why)),
			 0);
	assert_int_equal(libs.n, 2);
	setup_libs_free(&libs);
}

/* The stamp changes with the revision, the kernel and the init, and ends in a newline. */
static void test_stamp_names_kernel_and_fits_or_fails(void **state)
{
	char buf[256], small[16];

	assert_int_equal(setup_initrd_stamp("6.1.0-56-cloud-amd64", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, " 6.1.0-56-cloud-amd64 "));
	assert_int_equal(buf[strlen(buf) - 1], '\n');
	assert_int_equal(setup_initrd_stamp("6.1.0-56-cloud-amd64", small, sizeof(small)),
			 -ENAMETOOLONG);
}

/* --kernel-package PKG: the default guest's cache stays where it is, another kernel's goes in PKG/. */
static void test_kernel_package_guest_goes_in_its_own_cache_dir(void **state)
{
	char buf[64];

	assert_int_equal(setup_guest_dir("/c/nkvm", NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/c/nkvm");
	assert_int_equal(setup_guest_dir("/c/nkvm", "linux-image-amd64", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/c/nkvm/linux-image-amd64");
	assert_int_equal(setup_guest_dir("/c/nkvm", "linux-image-amd64", buf, 20), -ENAMETOOLONG);
}

/* The name becomes a directory under the cache: "..", a path or a dotfile never does. */
static void test_kernel_package_not_a_debian_name_is_einval(void **state)
{
	static const char *const bad[] = { "", "..", ".", "../linux-image-amd64", "a/b", "x",
					   ".hidden", "Linux-Image", "-rf", "linux image" };
	char buf[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(setup_guest_dir("/c/nkvm", bad[i], buf, sizeof(buf)), -EINVAL);
	assert_int_equal(setup_guest_dir("/c/nkvm", "linux-image-6.1.0-57-amd64", buf, sizeof(buf)),
			 0);
}

/*
 * The network benchmark runs iperf3 in the full initramfs: a host with iperf3 gets it there, and
 * the stamp names it, so that `nkvm setup` rebuilds an initramfs made before it was installed.
 */
static void test_stamp_names_iperf3_when_host_has_it(void **state)
{
	char buf[256];

	if (access("/usr/bin/iperf3", X_OK)) {
		skip(); /* scripts/install-deps.sh installs it */
		return;
	}
	assert_int_equal(setup_initrd_stamp("6.1.0-56-cloud-amd64", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, " iperf3"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ldd_lists_libraries_and_loader_not_vdso),
		cmocka_unit_test(test_ldd_keeps_runpath_directories),
		cmocka_unit_test(test_ldd_old_vdso_line_and_no_address),
		cmocka_unit_test(test_ldd_static_program_needs_nothing),
		cmocka_unit_test(test_ldd_missing_library_is_enoent_with_its_name),
		cmocka_unit_test(test_ldd_path_the_initramfs_cannot_hold_is_einval),
		cmocka_unit_test(test_stamp_names_kernel_and_fits_or_fails),
		cmocka_unit_test(test_kernel_package_guest_goes_in_its_own_cache_dir),
		cmocka_unit_test(test_kernel_package_not_a_debian_name_is_einval),
		cmocka_unit_test(test_stamp_names_iperf3_when_host_has_it),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
