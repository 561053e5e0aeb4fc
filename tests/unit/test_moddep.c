// SPDX-License-Identifier: MIT
/* Module closure and load order from modules.dep text. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/moddep.h"

/* A slice of a real modules.dep (Debian 6.1 cloud kernel), in depmod's own order. */
static const char real_dep[] =
	"kernel/fs/netfs/netfs.ko:\n"
	"kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n"
	"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/virtio/virtio_ring.ko:\n"
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n"
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n"
	"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
	"kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
	"kernel/net/core/failover.ko:\n";

static const char real_builtin[] = "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n";

static size_t index_of(const struct moddep_result *r, const char *path)
{
	size_t i;

	for (i = 0; i < r->n_paths; i++) {
		if (!strcmp(r->paths[i], path))
			return i;
	}
	fail_msg("%s is not in the result", path);
	return SIZE_MAX;
}

/* Every module after all of its dependencies, each exactly once. */
static void assert_order(const struct moddep_result *r, const char *before, const char *after)
{
	assert_true(index_of(r, before) < index_of(r, after));
}

static void test_moddep_dependencies_load_first(void **state)
{
	const char *want[] = { "virtio_net", "virtio_pci" };
	struct moddep_result r;

	assert_int_equal(moddep_resolve(real_dep, real_builtin, want, 2, &r), 0);
	assert_int_equal(r.n_paths, 8);
	assert_int_equal(r.n_missing, 0);
	assert_order(&r, "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko");
	assert_order(&r, "kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko");
	assert_order(&r, "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko");
	assert_order(&r, "kernel/drivers/virtio/virtio.ko", "kernel/drivers/net/virtio_net.ko");
	assert_order(&r, "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		     "kernel/drivers/virtio/virtio_pci.ko");
	assert_order(&r, "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
		     "kernel/drivers/virtio/virtio_pci.ko");
	/* Shared dependencies appear once. */
	assert_string_equal(r.paths[0], "kernel/drivers/virtio/virtio_ring.ko");
	assert_string_equal(r.paths[7], "kernel/drivers/virtio/virtio_pci.ko");
	moddep_result_free(&r);
	assert_null(r.paths);
}

/* modules.dep need not be transitive: dependencies of dependencies are followed too. */
static void test_moddep_follows_indirect_dependencies(void **state)
{
	const char *dep = "a.ko: b.ko\nb.ko: c.ko\nc.ko:\n";
	const char *want[] = { "a" };
	struct moddep_result r;

	assert_int_equal(moddep_resolve(dep, NULL, want, 1, &r), 0);
	assert_int_equal(r.n_paths, 3);
	assert_string_equal(r.paths[0], "c.ko");
	assert_string_equal(r.paths[1], "b.ko");
	assert_string_equal(r.paths[2], "a.ko");
	moddep_result_free(&r);
}

static void test_moddep_missing_and_builtin(void **state)
{
	const char *want[] = { "ext4", "9pnet_virtio", "failover", "jbd2" };
	struct moddep_result r;

	assert_int_equal(moddep_resolve(real_dep, real_builtin, want, 4, &r), 0);
	/* Built-in ones are skipped silently; absent ones are reported, in the order wanted. */
	assert_int_equal(r.n_paths, 1);
	assert_string_equal(r.paths[0], "kernel/net/core/failover.ko");
	assert_int_equal(r.n_missing, 1);
	assert_string_equal(r.missing[0], "9pnet_virtio");
	moddep_result_free(&r);
}

static void test_moddep_without_builtin_file_reports_missing(void **state)
{
	const char *want[] = { "ext4" };
	struct moddep_result r;

	assert_int_equal(moddep_resolve(real_dep, NULL, want, 1, &r), 0);
	assert_int_equal(r.n_paths, 0);
	assert_int_equal(r.n_missing, 1);
	moddep_result_free(&r);
}

static void test_moddep_dash_and_underscore_match(void **state)
{
	const char *want[] = { "virtio_rng", "virtio-rng" };
	struct moddep_result r;

	assert_int_equal(moddep_resolve(real_dep, NULL, want, 2, &r), 0);
	assert_int_equal(r.n_paths, 3);
	assert_string_equal(r.paths[2], "kernel/drivers/char/hw_random/virtio-rng.ko");
	moddep_result_free(&r);
}

static void test_moddep_cycle_is_eloop(void **state)
{
	const char *dep = "x/a.ko: x/b.ko\nx/b.ko: x/c.ko\nx/c.ko: x/a.ko\n";
	const char *want[] = { "b" };
	struct moddep_result r;

	assert_int_equal(moddep_resolve(dep, NULL, want, 1, &r), -ELOOP);
	assert_null(r.paths);
	assert_int_equal(r.n_paths, 0);
}

static void test_moddep_self_dependency_is_eloop(void **state)
{
	const char *want[] = { "a" };
	struct moddep_result r;

	assert_int_equal(moddep_resolve("a.ko: a.ko\n", NULL, want, 1, &r), -ELOOP);
}

static void test_moddep_malformed_text_is_einval(void **state)
{
	const char *want[] = { "a" };
	struct moddep_result r;

	/* No colon. */
	assert_int_equal(moddep_resolve("a.ko b.ko\n", NULL, want, 1, &r), -EINVAL);
	/* A dependency that has no line of its own. */
	assert_int_equal(moddep_resolve("a.ko: b.ko\n", NULL, want, 1, &r), -EINVAL);
	/* Not a module file name. */
	assert_int_equal(moddep_resolve("a.txt:\n", NULL, want, 1, &r), -EINVAL);
}

static void test_moddep_compressed_modules_and_blank_lines(void **state)
{
	const char *dep = "\nkernel/a.ko.xz: kernel/b.ko.zst\r\n\nkernel/b.ko.zst:\n";
	const char *want[] = { "a" };
	struct moddep_result r;

	assert_int_equal(moddep_resolve(dep, NULL, want, 1, &r), 0);
	assert_int_equal(r.n_paths, 2);
	assert_string_equal(r.paths[0], "kernel/b.ko.zst");
	assert_string_equal(r.paths[1], "kernel/a.ko.xz");
	moddep_result_free(&r);
}

static void test_moddep_name_drops_directory_and_suffixes(void **state)
{
	char buf[MODDEP_NAME_MAX];

	assert_int_equal(
		moddep_name("kernel/drivers/char/hw_random/virtio-rng.ko", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "virtio_rng");
	assert_int_equal(moddep_name("kernel/fs/9p/9p.ko.xz", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "9p");
	assert_int_equal(moddep_name("crc16.ko.zst", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "crc16");
	assert_int_equal(moddep_name("kernel/x/readme", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(moddep_name("kernel/x/.ko", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(moddep_name("abcdef.ko", buf, 4), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_moddep_dependencies_load_first),
		cmocka_unit_test(test_moddep_follows_indirect_dependencies),
		cmocka_unit_test(test_moddep_missing_and_builtin),
		cmocka_unit_test(test_moddep_without_builtin_file_reports_missing),
		cmocka_unit_test(test_moddep_dash_and_underscore_match),
		cmocka_unit_test(test_moddep_cycle_is_eloop),
		cmocka_unit_test(test_moddep_self_dependency_is_eloop),
		cmocka_unit_test(test_moddep_malformed_text_is_einval),
		cmocka_unit_test(test_moddep_compressed_modules_and_blank_lines),
		cmocka_unit_test(test_moddep_name_drops_directory_and_suffixes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
