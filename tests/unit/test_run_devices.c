// SPDX-License-Identifier: MIT
/*
 * The device table without KVM: devices made from parsed options land on the PCI bus in table
 * order with their class codes, and destroying them empties the slots and closes their files.
 * Images live under /var/tmp.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/disk.h"
#include "cmd/run_devices.h"
#include "cmd/run_options.h"
#include "hw/pci.h"
#include "lib/file.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

struct fx {
	char dir[64], a[128], b[128];
	struct vm vm;
	struct pci_bus bus;
	struct irq_routing irq;
	struct device_context ctx;
	struct device_list list;
	struct run_options o;
	int out[2];
};

static void make_image(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/var/tmp/nkvm-test-devices-XXXXXX");
	if (!mkdtemp(fx->dir) || pipe(fx->out))
		return -1;
	snprintf(fx->a, sizeof(fx->a), "%s/a.img", fx->dir);
	snprintf(fx->b, sizeof(fx->b), "%s/b.img", fx->dir);
	make_image(fx->a);
	make_image(fx->b);
	/* A VM without KVM, as nkvm img bench makes: a PCI bus, MSI routes that go nowhere. */
	fx->vm.kvm_fd = fx->vm.vm_fd = fx->vm.stop_fd = -1;
	irq_routing_init(&fx->irq, NULL);
	if (pci_init(&fx->bus, &fx->vm))
		return -1;
	fx->ctx = (struct device_context){
		.vm = &fx->vm, .pci = &fx->bus, .irq = &fx->irq, .cpus = 2, .out_fd = fx->out[1]
	};
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	devices_destroy(&fx->list);
	run_options_free(&fx->o);
	close(fx->out[0]);
	close(fx->out[1]);
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

static void parse(struct fx *fx, char **argv)
{
	int argc = 0;
	char err[256];

	while (argv[argc])
		argc++;
	assert_int_equal(run_parse_options(argc, argv, &fx->o, err, sizeof(err)), 0);
}

/* Vendor and device ID, and class code, of a slot; 0xffffffff for an empty one. */
static uint32_t slot_id(struct fx *fx, unsigned int slot)
{
	return pci_config_read(&fx->bus, 0x80000000 | slot << 11, 4);
}

static uint32_t slot_class(struct fx *fx, unsigned int slot)
{
	return pci_config_read(&fx->bus, 0x80000008 | slot << 11, 4) >> 8;
}

static bool image_locked(const char *path)
{
	struct disk_options o = { .path = path };
	struct disk *d;
	char why[DISK_ERR_MAX];
	int r = disk_open(&d, &o, why, sizeof(why));

	if (!r)
		disk_close(d);
	return r == -EAGAIN;
}

static void test_devices_created_in_table_order_and_destroyed(void **state)
{
	struct fx *fx = *state;
	char spec[160], err[512];
	char *argv[] = { "run", "-d", fx->a, "--console", "virtio", "-d", spec, "--rng", NULL };

	snprintf(spec, sizeof(spec), "%s,ro,serial=S", fx->b);
	parse(fx, argv);
	assert_int_equal(devices_create(&fx->list, &fx->ctx, fx->o.devices, fx->o.nr_devices, err,
					sizeof(err)),
			 0);
	assert_int_equal(fx->list.nr, 5);
	/* Table order, not command-line order: rng, console, the disks as given, the balloon. */
	assert_int_equal(slot_id(fx, 1), 0x10441af4);
	assert_int_equal(slot_class(fx, 1), PCI_CLASS_OTHERS);
	assert_int_equal(slot_id(fx, 2), 0x10431af4);
	assert_int_equal(slot_class(fx, 2), PCI_CLASS_OTHERS);
	assert_int_equal(slot_id(fx, 3), 0x10421af4);
	assert_int_equal(slot_class(fx, 3), PCI_CLASS_STORAGE_OTHER); /* the device's class */
	assert_int_equal(slot_id(fx, 4), 0x10421af4);
	/* The balloon, there without being asked, comes last: no other device moved. */
	assert_int_equal(slot_id(fx, 5), 0x10451af4);
	assert_non_null(fx->ctx.balloon);
	assert_int_equal(slot_id(fx, 6), 0xffffffff);
	/* virtio-console takes the host's input from the UART. */
	assert_non_null(fx->ctx.console_input);
	assert_true(image_locked(fx->a));

	devices_destroy(&fx->list);
	assert_int_equal(fx->list.nr, 0);
	for (unsigned int s = 1; s <= 5; s++)
		assert_int_equal(slot_id(fx, s), 0xffffffff);
	/* Each disk was closed: its lock is gone. */
	assert_false(image_locked(fx->a));
	assert_false(image_locked(fx->b));
}

static void test_serial_console_makes_no_device(void **state)
{
	struct fx *fx = *state;
	char err[512];
	char *argv[] = { "run", "--console", "serial", "--no-balloon", NULL };

	parse(fx, argv);
	assert_int_equal(devices_create(&fx->list, &fx->ctx, fx->o.devices, fx->o.nr_devices, err,
					sizeof(err)),
			 0);
	assert_int_equal(fx->list.nr, 0);
	assert_null(fx->ctx.console_input);
	assert_int_equal(slot_id(fx, 1), 0xffffffff);
}

static void test_failed_disk_says_which_and_keeps_devices_made_before(void **state)
{
	struct fx *fx = *state;
	char missing[160], err[512];
	char *argv[] = { "run", "--rng", "-d", missing, NULL };

	snprintf(missing, sizeof(missing), "%s/missing.img", fx->dir);
	parse(fx, argv);
	assert_int_equal(devices_create(&fx->list, &fx->ctx, fx->o.devices, fx->o.nr_devices, err,
					sizeof(err)),
			 -ENOENT);
	assert_true(!strncmp(err, missing, strlen(missing)));
	assert_non_null(strstr(err, ": no such file"));
	assert_int_equal(fx->list.nr, 1); /* the rng; the fixture's teardown destroys it */
}

/* NICs come after the disks, whatever the command line's order, so the disks' slots stay. */
static void test_nics_after_disks_and_failed_tap_names_its_option(void **state)
{
	struct fx *fx = *state;
	char err[512];
	char *argv[] = { "run",		  "-n", "user",		 "-d", fx->a, "-n",
			 "user,queues=2", "-n", "tap,ifname=lo", NULL };

	parse(fx, argv);
	/* The tap NIC cannot open (lo is no TAP, or no CAP_NET_ADMIN): the others stay made. */
	assert_int_not_equal(devices_create(&fx->list, &fx->ctx, fx->o.devices, fx->o.nr_devices,
					    err, sizeof(err)),
			     0);
	assert_true(!strncmp(err, "-n tap: ", 8));
	assert_int_equal(fx->list.nr, 3);
	assert_int_equal(slot_id(fx, 1), 0x10421af4);
	assert_int_equal(slot_id(fx, 2), 0x10411af4);
	assert_int_equal(slot_class(fx, 2), 0x020000); /* an Ethernet controller */
	assert_int_equal(slot_id(fx, 3), 0x10411af4);
	assert_int_equal(slot_id(fx, 4), 0xffffffff);
}

/* --share and --root: a virtio-fs function each (device 26: 0x105a), after the disks. */
static void test_share_and_root_are_virtio_fs_functions_after_disks(void **state)
{
	struct fx *fx = *state;
	char err[512];
	char *argv[] = { "run", "--root", fx->dir,	  "--share", fx->dir,
			 "-d",	fx->a,	  "--no-balloon", NULL };

	parse(fx, argv);
	assert_int_equal(devices_create(&fx->list, &fx->ctx, fx->o.devices, fx->o.nr_devices, err,
					sizeof(err)),
			 0);
	assert_int_equal(fx->list.nr, 3);
	assert_int_equal(slot_id(fx, 1), 0x10421af4);
	assert_int_equal(slot_id(fx, 2), 0x105a1af4);
	assert_int_equal(slot_class(fx, 2), PCI_CLASS_STORAGE_OTHER);
	assert_int_equal(slot_id(fx, 3), 0x105a1af4);
	devices_destroy(&fx->list);
	assert_int_equal(slot_id(fx, 2), 0xffffffff);
	assert_int_equal(slot_id(fx, 3), 0xffffffff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_devices_created_in_table_order_and_destroyed,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_serial_console_makes_no_device, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(
			test_failed_disk_says_which_and_keeps_devices_made_before, fx_setup,
			fx_teardown),
		cmocka_unit_test_setup_teardown(
			test_nics_after_disks_and_failed_tap_names_its_option, fx_setup,
			fx_teardown),
		cmocka_unit_test_setup_teardown(
			test_share_and_root_are_virtio_fs_functions_after_disks, fx_setup,
			fx_teardown),
	};

	return cmocka_run_group_tests_name("run_devices", tests, NULL, NULL);
}
