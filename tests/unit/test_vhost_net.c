// SPDX-License-Identifier: MIT
/*
 * vhost_net_open's errors, on a /dev of the test's own (a tmpfs in a private mount namespace), so
 * they do not depend on whether this machine has /dev/vhost-net. The data path needs the module
 * and a guest: the integration tests prove it in the nested test host.
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/backend.h"
#include "net/vhost_net.h"

#define VHOST_NET_MAJOR 10 /* misc */
#define VHOST_NET_MINOR 238 /* include/linux/miscdevice.h: VHOST_NET_MINOR */

static const char *isolation_failed;

static void isolate(void)
{
	if (geteuid() != 0)
		isolation_failed = "not root";
	else if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		isolation_failed = "cannot make a private mount namespace";
}

/* A fresh, empty /dev (nodev: device nodes in it cannot be opened). */
static void mount_empty_dev(unsigned long flags)
{
	if (isolation_failed) {
		print_message("skipped: %s\n", isolation_failed);
		skip();
	}
	assert_int_equal(mount("tmpfs", "/dev", "tmpfs", flags, "mode=0755"), 0);
}

static void test_missing_dev_vhost_net_says_to_load_the_module(void **state)
{
	struct vhost_net *vn = (struct vhost_net *)state; /* anything but NULL */
	char err[256] = "";

	mount_empty_dev(0);
	assert_int_equal(vhost_net_open(&vn, 1, err, sizeof(err)), -ENOENT);
	assert_null(vn);
	assert_string_equal(err,
			    "/dev/vhost-net: No such file or directory (is the vhost_net module loaded?)");
	assert_int_equal(umount("/dev"), 0);
}

static void test_unopenable_dev_vhost_net_says_permission_denied(void **state)
{
	struct vhost_net *vn = NULL;
	char err[256] = "";

	mount_empty_dev(MS_NODEV);
	assert_int_equal(mknod("/dev/vhost-net", S_IFCHR | 0600,
			       makedev(VHOST_NET_MAJOR, VHOST_NET_MINOR)),
			 0);
	assert_int_equal(vhost_net_open(&vn, 2, err, sizeof(err)), -EACCES);
	assert_null(vn);
	assert_string_equal(err, "/dev/vhost-net: Permission denied");
	assert_int_equal(umount("/dev"), 0);
}

static void test_queue_pair_counts_outside_the_limit_are_refused(void **state)
{
	struct vhost_net *vn = NULL;
	char err[256] = "";

	assert_int_equal(vhost_net_open(&vn, 0, err, sizeof(err)), -EINVAL);
	assert_null(vn);
	assert_int_equal(vhost_net_open(&vn, NET_MAX_QUEUE_PAIRS + 1, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vhost-net: 17 queue pairs (1 to 16)");
	vhost_net_close(NULL); /* documented as fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_dev_vhost_net_says_to_load_the_module),
		cmocka_unit_test(test_unopenable_dev_vhost_net_says_permission_denied),
		cmocka_unit_test(test_queue_pair_counts_outside_the_limit_are_refused),
	};

	isolate();
	return cmocka_run_group_tests_name("vhost_net", tests, NULL, NULL);
}
