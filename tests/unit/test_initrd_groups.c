// SPDX-License-Identifier: MIT
/*
 * The lean initramfs's groups: which ones a machine's devices need, which modules each holds
 * (dependencies resolved, the base archive's left out), and the archives run appends.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmd/initrd_groups.h"
#include "fixture.h"
#include "lib/file.h"

/* Any non-NULL pointer: the device was made. */
#define MADE ((void *)1)

static size_t select_names(const struct device_list *l, const char **names, size_t max)
{
	const struct initrd_group *g[16];
	size_t n = initrd_groups_select(l, g, 16), i;

	assert_true(n <= max);
	for (i = 0; i < n; i++)
		names[i] = g[i]->name;
	return n;
}

static void test_groups_none_without_devices(void **state)
{
	struct device_list l = { 0 };
	const char *names[8];

	assert_int_equal(select_names(&l, names, 8), 0);
}

static void test_groups_disk_only_with_a_disk(void **state)
{
	struct device_list l = { .nr = 1, .devs = { { &disk_device_type, MADE } } };
	const char *names[8];

	assert_int_equal(select_names(&l, names, 8), 1);
	assert_string_equal(names[0], "disk");
}

/* One group per kind, once however many devices of it, in the table's order not the list's. */
static void test_groups_each_kind_once_in_table_order(void **state)
{
	struct device_list l = { .nr = 10,
				 .devs = {
					 { &balloon_device_type, MADE },
					 { &vsock_device_type, MADE },
					 { &share_device_type, MADE },
					 { &root_device_type, MADE },
					 { &net_device_type, MADE },
					 { &net_device_type, MADE },
					 { &disk_device_type, MADE },
					 { &disk_device_type, MADE },
					 { &rng_device_type, MADE },
					 { &console_device_type, MADE },
				 } };
	const char *names[8];

	assert_int_equal(select_names(&l, names, 8), 7);
	assert_string_equal(names[0], "disk");
	assert_string_equal(names[1], "net");
	assert_string_equal(names[2], "fs");
	assert_string_equal(names[3], "vsock");
	assert_string_equal(names[4], "console");
	assert_string_equal(names[5], "rng");
	assert_string_equal(names[6], "balloon");
}

/* `--console serial` is in the list but made no device: no virtio_console. */
static void test_groups_serial_console_needs_none(void **state)
{
	struct device_list l = {
		.nr = 2, .devs = { { &console_device_type, NULL }, { &balloon_device_type, MADE } }
	};
	const char *names[8];

	assert_int_equal(select_names(&l, names, 8), 1);
	assert_string_equal(names[0], "balloon");
}

static void test_groups_select_stops_at_max(void **state)
{
	struct device_list l = {
		.nr = 2, .devs = { { &disk_device_type, MADE }, { &net_device_type, MADE } }
	};
	const struct initrd_group *g[1];

	assert_int_equal(initrd_groups_select(&l, g, 1), 1);
	assert_string_equal(g[0]->name, "disk");
}

/* A device type belongs to one group at most, or its driver would be in two archives. */
static void test_groups_every_type_in_one_group_at_most(void **state)
{
	for (size_t t = 0; device_types[t]; t++) {
		int n = 0;

		for (size_t g = 0; initrd_groups[g]; g++) {
			for (size_t d = 0; initrd_groups[g]->devices[d]; d++)
				n += initrd_groups[g]->devices[d] == device_types[t];
		}
		assert_true(n <= 1);
	}
	assert_non_null(initrd_group_find("vsock"));
	assert_null(initrd_group_find("nope"));
}

/* A slice of the Debian 6.1 cloud kernel's modules.dep. */
static const char dep[] =
	"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/virtio/virtio_ring.ko:\n"
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n"
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n"
	"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/fs/fat/fat.ko:\n"
	"kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n"
	"kernel/fs/nls/nls_cp437.ko:\n"
	"kernel/fs/nls/nls_ascii.ko:\n"
	"kernel/lib/libcrc32c.ko:\n"
	"kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
	"kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
	"kernel/net/core/failover.ko:\n";

static const char builtin[] = "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n"
			      "kernel/fs/mbcache.ko\nkernel/lib/crc16.ko\n"
			      "kernel/crypto/crc32c_generic.ko\n";

static void resolve_base(struct moddep_result *base)
{
	const char *want[] = { "virtio_pci" };

	assert_int_equal(moddep_resolve(dep, builtin, want, 1, base), 0);
	assert_int_equal(base->n_paths, 5);
}

static bool has(const struct moddep_result *r, const char *path)
{
	for (size_t i = 0; i < r->n_paths; i++) {
		if (!strcmp(r->paths[i], path))
			return true;
	}
	return false;
}

/* virtio and virtio_ring came with the base: the NIC's group holds only its own three. */
static void test_group_resolve_leaves_out_base_modules(void **state)
{
	struct moddep_result base, r;

	resolve_base(&base);
	assert_int_equal(
		initrd_group_resolve(dep, builtin, initrd_group_find("net"), false, &base, &r), 0);
	assert_int_equal(r.n_paths, 3);
	assert_string_equal(r.paths[0], "kernel/net/core/failover.ko");
	assert_string_equal(r.paths[1], "kernel/drivers/net/net_failover.ko");
	assert_string_equal(r.paths[2], "kernel/drivers/net/virtio_net.ko");
	moddep_result_free(&r);
	moddep_result_free(&base);
}

/* ext4 and its helpers are built in here: the disk's group is virtio_blk and libcrc32c. */
static void test_group_resolve_skips_builtin_and_on_demand(void **state)
{
	struct moddep_result base, r;

	resolve_base(&base);
	assert_int_equal(
		initrd_group_resolve(dep, builtin, initrd_group_find("disk"), false, &base, &r), 0);
	assert_true(has(&r, "kernel/drivers/block/virtio_blk.ko"));
	assert_false(has(&r, "kernel/drivers/virtio/virtio.ko"));
	assert_false(has(&r, "kernel/fs/fat/vfat.ko"));
	moddep_result_free(&r);

	/* The on-demand ones (a vfat root= disk), with their dependencies. */
	assert_int_equal(
		initrd_group_resolve(dep, builtin, initrd_group_find("disk"), true, &base, &r), 0);
	assert_true(has(&r, "kernel/fs/fat/vfat.ko"));
	assert_true(has(&r, "kernel/fs/fat/fat.ko"));
	assert_true(has(&r, "kernel/fs/nls/nls_cp437.ko"));
	assert_false(has(&r, "kernel/drivers/block/virtio_blk.ko"));
	moddep_result_free(&r);
	moddep_result_free(&base);
}

/* A group whose modules this kernel lacks (no vsock here) is empty, not an error. */
static void test_group_resolve_missing_modules_give_empty_group(void **state)
{
	struct moddep_result base, r;

	resolve_base(&base);
	assert_int_equal(initrd_group_resolve(dep, builtin, initrd_group_find("vsock"), false,
					      &base, &r),
			 0);
	assert_int_equal(r.n_paths, 0);
	moddep_result_free(&r);
	moddep_result_free(&base);
}

static void test_group_resolve_malformed_dep_fails(void **state)
{
	struct moddep_result base = { 0 }, r;

	assert_int_equal(initrd_group_resolve("no colon here\n", NULL, initrd_group_find("net"),
					      false, &base, &r),
			 -EINVAL);
	assert_int_equal(r.n_paths, 0);
}

struct gfx {
	char dir[128], kernel[192];
};

static int gfx_setup(void **state)
{
	static struct gfx fx;

	if (fx_dir_make(fx.dir, sizeof(fx.dir), NULL, "groups"))
		return -1;
	snprintf(fx.kernel, sizeof(fx.kernel), "%s/vmlinuz", fx.dir);
	*state = &fx;
	return file_write_atomic(fx.kernel, "k", 1, 0644);
}

static int gfx_teardown(void **state)
{
	struct gfx *fx = *state;

	return file_remove_tree(fx->dir);
}

/* A kernel of the user's own, with no group archives beside it: nothing to append. */
static void test_groups_open_none_beside_a_foreign_kernel(void **state)
{
	struct gfx *fx = *state;
	const struct initrd_group *g[] = { initrd_group_find("disk") };
	struct initrd_group_files f;
	char err[256] = "";

	assert_int_equal(initrd_groups_open(fx->kernel, g, 1, &f, err, sizeof(err)), 0);
	assert_int_equal(f.n, 0);
	initrd_groups_close(&f);
}

static void test_groups_open_the_wanted_archives(void **state)
{
	struct gfx *fx = *state;
	const struct initrd_group *g[] = { initrd_group_find("disk"), initrd_group_find("net") };
	struct initrd_group_files f;
	char err[256] = "";

	fx_sh(fx->dir,
	      "mkdir %s && printf 1234 >%s/disk.cpio && printf 12345678 >%s/net.cpio "
	      "&& printf x >%s/rng.cpio",
	      INITRD_GROUPS_DIR, INITRD_GROUPS_DIR, INITRD_GROUPS_DIR, INITRD_GROUPS_DIR);
	assert_int_equal(initrd_groups_open(fx->kernel, g, 2, &f, err, sizeof(err)), 0);
	assert_int_equal(f.n, 2);
	assert_int_equal(f.lens[0], 4);
	assert_int_equal(f.lens[1], 8);
	assert_true(f.fds[0] >= 0 && f.fds[1] >= 0);
	initrd_groups_close(&f);
	assert_int_equal(f.n, 0);
}

/* The directory is there but a group is not: a cache from another nkvm, which setup mends. */
static void test_groups_open_missing_archive_says_run_setup(void **state)
{
	struct gfx *fx = *state;
	const struct initrd_group *g[] = { initrd_group_find("disk"), initrd_group_find("vsock") };
	struct initrd_group_files f;
	char err[512] = "";

	fx_sh(fx->dir, "mkdir %s && : >%s/disk.cpio", INITRD_GROUPS_DIR, INITRD_GROUPS_DIR);
	assert_int_equal(initrd_groups_open(fx->kernel, g, 2, &f, err, sizeof(err)), -ENOENT);
	assert_int_equal(f.n, 0);
	assert_non_null(strstr(err, "/" INITRD_GROUPS_DIR "/vsock.cpio: "));
	assert_non_null(strstr(err, "nkvm setup"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_groups_none_without_devices),
		cmocka_unit_test(test_groups_disk_only_with_a_disk),
		cmocka_unit_test(test_groups_each_kind_once_in_table_order),
		cmocka_unit_test(test_groups_serial_console_needs_none),
		cmocka_unit_test(test_groups_select_stops_at_max),
		cmocka_unit_test(test_groups_every_type_in_one_group_at_most),
		cmocka_unit_test(test_group_resolve_leaves_out_base_modules),
		cmocka_unit_test(test_group_resolve_skips_builtin_and_on_demand),
		cmocka_unit_test(test_group_resolve_missing_modules_give_empty_group),
		cmocka_unit_test(test_group_resolve_malformed_dep_fails),
		cmocka_unit_test_setup_teardown(test_groups_open_none_beside_a_foreign_kernel,
						gfx_setup, gfx_teardown),
		cmocka_unit_test_setup_teardown(test_groups_open_the_wanted_archives, gfx_setup,
						gfx_teardown),
		cmocka_unit_test_setup_teardown(test_groups_open_missing_archive_says_run_setup,
						gfx_setup, gfx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
