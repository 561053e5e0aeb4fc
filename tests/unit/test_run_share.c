// SPDX-License-Identifier: MIT
/*
 * --share and --root as `nkvm run` parses them, without KVM: default tags and guest paths, the
 * one-line errors before the guest starts (a missing directory, a file, a tag used twice or
 * too long), and the file that tells the guest's init what to mount.
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cmd/run_dev_fs.h"
#include "cmd/run_devices.h"
#include "cmd/run_options.h"
#include "lib/file.h"

struct fx {
	char dir[64], src[128], file[128], longname[192], err[256];
	struct run_options o;
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	int fd;

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/var/tmp/nkvm-test-share-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->src, sizeof(fx->src), "%s/src", fx->dir);
	snprintf(fx->file, sizeof(fx->file), "%s/file", fx->dir);
	/* A base name of 37 bytes: one more than a tag may have. */
	snprintf(fx->longname, sizeof(fx->longname), "%s/abcdefghijklmnopqrstuvwxyz0123456789X",
		 fx->dir);
	fd = open(fx->file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || mkdir(fx->src, 0755) || mkdir(fx->longname, 0755))
		return -1;
	close(fd);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	run_options_free(&fx->o);
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

static int parse(struct fx *fx, char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	fx->err[0] = '\0';
	return run_parse_options(argc, argv, &fx->o, fx->err, sizeof(fx->err));
}

static const struct run_share *share(struct fx *fx, const struct device_type *t, unsigned int i)
{
	for (unsigned int k = 0; k < fx->o.nr_devices; k++)
		if (fx->o.devices[k].type == t && !i--)
			return fx->o.devices[k].cfg;
	fail_msg("no such share");
	return NULL;
}

/* The tag is the directory's base name (trailing slashes aside), the guest path /mnt/TAG. */
static void test_share_defaults_tag_to_base_name_and_at_to_mnt_tag(void **state)
{
	struct fx *fx = *state;
	char arg[160];
	char *argv[] = { "run", "--share", arg, NULL };

	snprintf(arg, sizeof(arg), "%s//", fx->src);
	assert_int_equal(parse(fx, argv), 0);
	assert_string_equal(share(fx, &share_device_type, 0)->tag, "src");
	assert_string_equal(share(fx, &share_device_type, 0)->at, "/mnt/src");
	assert_false(share(fx, &share_device_type, 0)->readonly);
}

static void test_share_keys_tag_at_ro_and_root(void **state)
{
	struct fx *fx = *state;
	char a[160], b[160];
	char *argv[] = { "run", "--share", a, "--root", fx->dir, "--share", b, NULL };

	snprintf(a, sizeof(a), "%s,tag=code,at=/work/code,ro", fx->src);
	snprintf(b, sizeof(b), "%s,tag=other", fx->src);
	assert_int_equal(parse(fx, argv), 0);
	assert_string_equal(share(fx, &share_device_type, 0)->tag, "code");
	assert_string_equal(share(fx, &share_device_type, 0)->at, "/work/code");
	assert_true(share(fx, &share_device_type, 0)->readonly);
	assert_string_equal(share(fx, &share_device_type, 1)->at, "/mnt/other");
	assert_string_equal(share(fx, &root_device_type, 0)->tag, RUN_ROOT_TAG);
	assert_string_equal(share(fx, &root_device_type, 0)->at, "/");
}

static void test_share_of_missing_directory_is_one_line_error(void **state)
{
	struct fx *fx = *state;
	char arg[160], want[256];
	char *argv[] = { "run", "--share", arg, NULL };

	snprintf(arg, sizeof(arg), "%s/missing", fx->dir);
	assert_int_equal(parse(fx, argv), -1);
	snprintf(want, sizeof(want), "--share %s: no such directory", arg);
	assert_string_equal(fx->err, want);
}

static void test_share_or_root_of_a_file_is_not_a_directory(void **state)
{
	struct fx *fx = *state;
	char want[256];
	char *share_argv[] = { "run", "--share", fx->file, NULL };
	char *root_argv[] = { "run", "--root", fx->file, NULL };

	assert_int_equal(parse(fx, share_argv), -1);
	snprintf(want, sizeof(want), "--share %s: not a directory", fx->file);
	assert_string_equal(fx->err, want);
	run_options_free(&fx->o);
	assert_int_equal(parse(fx, root_argv), -1);
	snprintf(want, sizeof(want), "--root %s: not a directory", fx->file);
	assert_string_equal(fx->err, want);
}

/* Two shares of one base name collide; so does a share that takes --root's tag. */
static void test_share_tag_used_twice_is_refused(void **state)
{
	struct fx *fx = *state;
	char b[160], want[256];
	char *argv[] = { "run", "--share", fx->src, "--share", b, NULL };
	char *root_argv[] = { "run", "--root", fx->dir, "--share", b, NULL };

	snprintf(b, sizeof(b), "%s/../src,at=/b", fx->src);
	assert_int_equal(parse(fx, argv), -1);
	snprintf(want, sizeof(want), "--share %s/../src: tag 'src' is used twice", fx->src);
	assert_string_equal(fx->err, want);
	run_options_free(&fx->o);
	snprintf(b, sizeof(b), "%s,tag=" RUN_ROOT_TAG, fx->src);
	assert_int_equal(parse(fx, root_argv), -1);
	assert_non_null(strstr(fx->err, "tag '" RUN_ROOT_TAG "' is used twice"));
}

/* virtio 1.2 §5.11.4: a tag has 36 bytes at most, given or taken from the base name. */
static void test_share_tag_longer_than_36_bytes_is_refused(void **state)
{
	struct fx *fx = *state;
	char a[192];
	char *argv[] = { "run", "--share", a, NULL };
	char *base_argv[] = { "run", "--share", fx->longname, NULL };

	snprintf(a, sizeof(a), "%s,tag=abcdefghijklmnopqrstuvwxyz0123456789", fx->src);
	assert_int_equal(parse(fx, argv), 0);
	run_options_free(&fx->o);
	snprintf(a, sizeof(a), "%s,tag=abcdefghijklmnopqrstuvwxyz0123456789X", fx->src);
	assert_int_equal(parse(fx, argv), -1);
	assert_non_null(strstr(fx->err, "tag 'abcdefghijklmnopqrstuvwxyz0123456789X': 1 to 36"));
	run_options_free(&fx->o);
	assert_int_equal(parse(fx, base_argv), -1);
	assert_non_null(strstr(fx->err, "longer than a tag may be (36 bytes)"));
}

static void test_share_bad_at_blank_tag_and_slash_are_refused(void **state)
{
	struct fx *fx = *state;
	char a[160];
	char *argv[] = { "run", "--share", a, NULL };
	static const char *const bad[] = { "%s,at=mnt/x", "%s,at=/", "%s,tag=a b", "/" };

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(a, sizeof(a), bad[i], fx->src);
		assert_int_equal(parse(fx, argv), -1);
		assert_true(!strncmp(fx->err, "--share ", 8));
		run_options_free(&fx->o);
	}
}

/* The init's file: --root's line first whatever the order given, then the shares in order. */
static void test_guest_file_lists_root_first_then_shares(void **state)
{
	struct fx *fx = *state;
	char a[160], b[160], *text;
	size_t len;
	char *argv[] = { "run", "--share", a, "--root", fx->dir, "--share", b, NULL };
	char *none[] = { "run", "-c", "2", NULL };

	snprintf(a, sizeof(a), "%s,at=/tmp", fx->src);
	snprintf(b, sizeof(b), "%s,tag=two,ro", fx->src);
	assert_int_equal(parse(fx, argv), 0);
	assert_int_equal(run_fs_guest_file(&fx->o, &text, &len), 0);
	assert_string_equal(text, RUN_ROOT_TAG " / rw\nsrc /tmp rw\ntwo /mnt/two ro\n");
	assert_int_equal(len, strlen(text));
	free(text);
	run_options_free(&fx->o);
	assert_int_equal(parse(fx, none), 0);
	assert_int_equal(run_fs_guest_file(&fx->o, &text, &len), 0);
	assert_null(text);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_share_defaults_tag_to_base_name_and_at_to_mnt_tag),
		T(test_share_keys_tag_at_ro_and_root),
		T(test_share_of_missing_directory_is_one_line_error),
		T(test_share_or_root_of_a_file_is_not_a_directory),
		T(test_share_tag_used_twice_is_refused),
		T(test_share_tag_longer_than_36_bytes_is_refused),
		T(test_share_bad_at_blank_tag_and_slash_are_refused),
		T(test_guest_file_lists_root_first_then_shares),
	};

	return cmocka_run_group_tests_name("run_share", tests, NULL, NULL);
}
