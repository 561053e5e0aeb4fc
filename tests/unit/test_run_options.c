// SPDX-License-Identifier: MIT
/* `nkvm run` option parsing: defaults, sizes, limits and each malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cmd/run_options.h"

static int parse(struct run_options *o, char *err, ...)
{
	static char *argv[32];	/* o->cmd points into it after we return */
	int argc = 0;
	va_list ap;

	va_start(ap, err);
	argv[argc++] = "run";
	while ((argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	return run_parse_options(argc, argv, o, err, 256);
}

static void test_defaults_are_256M_one_cpu_shell(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, NULL), 0);
	assert_int_equal(o.mem, 256ULL << 20);
	assert_int_equal(o.cpus, 1);
	assert_null(o.cmd);
	assert_null(o.kernel);
}

static void test_all_options_and_command(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-k", "bz", "-i", "rd", "-p", "a=1 b", "-m", "2G", "-c", "4",
			       "--name", "web-1", "--", "sh", "-c", "exit 7", NULL),
			 0);
	assert_string_equal(o.kernel, "bz");
	assert_string_equal(o.initrd, "rd");
	assert_string_equal(o.params, "a=1 b");
	assert_int_equal(o.mem, 2ULL << 30);
	assert_int_equal(o.cpus, 4);
	assert_string_equal(o.name, "web-1");
	assert_string_equal(o.cmd[0], "sh");
	assert_string_equal(o.cmd[2], "exit 7");
	assert_null(o.cmd[3]);
}

static void test_mem_units(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-m", "512", NULL), 0);
	assert_int_equal(o.mem, 512ULL << 20);
	assert_int_equal(parse(&o, err, "--mem", "1024M", NULL), 0);
	assert_int_equal(o.mem, 1ULL << 30);
	assert_int_equal(parse(&o, err, "-m", "1T", NULL), 0);	/* host limit checked later */
	assert_int_equal(o.mem, 1ULL << 40);
	assert_string_equal(o.mem_arg, "1T");	/* as written, for that message */
	assert_int_equal(parse(&o, err, "--mem=2G", NULL), 0);
	assert_string_equal(o.mem_arg, "2G");
}

static void test_mem_zero_rejected(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-m", "0", NULL), -1);
	assert_non_null(strstr(err, "-m 0"));
	assert_non_null(strstr(err, "at least"));
}

static void test_mem_garbage_rejected(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-m", "lots", NULL), -1);
	assert_non_null(strstr(err, "not a size"));
	assert_int_equal(parse(&o, err, "-m", "12Q", NULL), -1);
	assert_int_equal(parse(&o, err, "-m", "-5", NULL), -1);
	assert_int_equal(parse(&o, err, "-m", "99999999999999999999", NULL), -1);
	assert_int_equal(parse(&o, err, "-m", "99999999999T", NULL), -1);
	assert_non_null(strstr(err, "too large"));
}

static void test_cpus_zero_and_too_many_rejected(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-c", "0", NULL), -1);
	assert_non_null(strstr(err, "between 1 and"));
	assert_int_equal(parse(&o, err, "-c", "1000", NULL), -1);
	assert_non_null(strstr(err, "-c 1000"));
	assert_int_equal(parse(&o, err, "-c", "two", NULL), -1);
	assert_non_null(strstr(err, "not a number"));
	assert_int_equal(parse(&o, err, "-c", "254", NULL), 0);
}

static void test_unknown_option_and_missing_value(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "--bogus", NULL), -1);
	assert_non_null(strstr(err, "unknown option"));
	assert_int_equal(parse(&o, err, "-m", NULL), -1);
	assert_non_null(strstr(err, "needs a value"));
}

static void test_stray_argument_needs_double_dash(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "ls", NULL), -1);
	assert_non_null(strstr(err, "after --"));
}

static void test_bad_names_rejected(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "--name", "a/b", NULL), -1);
	assert_int_equal(parse(&o, err, "--name", "", NULL), -1);
	assert_int_equal(parse(&o, err, "--name", "../x", NULL), -1);
	assert_int_equal(parse(&o, err, "--name", "ok.name_1", NULL), 0);
}

static void test_disk_options(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-d", "a.img", "--disk", "b.img,ro,serial=SN1,cache=none,queues=3",
			       NULL), 0);
	assert_int_equal(o.nr_disks, 2);
	assert_string_equal(o.disks[0].path, "a.img");
	assert_false(o.disks[0].readonly);
	assert_int_equal(o.disks[0].queues, 0);
	assert_string_equal(o.disks[1].path, "b.img");
	assert_true(o.disks[1].readonly);
	assert_true(o.disks[1].direct);
	assert_string_equal(o.disks[1].serial, "SN1");
	assert_int_equal(o.disks[1].queues, 3);
	run_options_free(&o);
	assert_int_equal(parse(&o, err, "-d", "a.img,cache-size=1G", NULL), 0);
	assert_int_equal(o.disks[0].cache_size, 1ULL << 30);
	run_options_free(&o);
}

static void test_disk_option_errors(void **state)
{
	static const char *const bad[][2] = {
		{ "a.img,bogus", "unknown disk option" },
		{ "a.img,serial=123456789012345678901", "at most 20" },
		{ "a.img,queues=0", "queues" },
		{ "a.img,queues=64", "queues" },
		/* 700G of 512-byte tables overflowed the cache's table count and hung the open. */
		{ "a.img,cache-size=700G", "cache-size is at most 1G" },
		{ "a.img,cache-size=1025M", "cache-size is at most 1G" },
		{ "a.img,cache-size=0", "cache-size is a size" },
		{ ",ro", "no image" },
		{ "", "no image" },
	};

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct run_options o;
		char err[256];

		assert_int_equal(parse(&o, err, "-d", bad[i][0], NULL), -1);
		assert_non_null(strstr(err, bad[i][1]));
		run_options_free(&o);
	}
}

static void test_too_many_disks(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-d", "1", "-d", "2", "-d", "3", "-d", "4", "-d", "5", "-d",
			       "6", "-d", "7", "-d", "8", "-d", "9", NULL), -1);
	assert_non_null(strstr(err, "at most 8"));
	run_options_free(&o);
}

static void test_console_choice(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "--console", "virtio", "--rng", NULL), 0);
	assert_true(o.virtio_console);
	assert_true(o.rng);
	assert_int_equal(parse(&o, err, "--console", "tty7", NULL), -1);
	assert_non_null(strstr(err, "serial or virtio"));
}

static void test_help(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "--help", NULL), 0);
	assert_true(o.help);
	assert_non_null(strstr(run_usage, "--kernel"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_are_256M_one_cpu_shell),
		cmocka_unit_test(test_all_options_and_command),
		cmocka_unit_test(test_mem_units),
		cmocka_unit_test(test_mem_zero_rejected),
		cmocka_unit_test(test_mem_garbage_rejected),
		cmocka_unit_test(test_cpus_zero_and_too_many_rejected),
		cmocka_unit_test(test_unknown_option_and_missing_value),
		cmocka_unit_test(test_stray_argument_needs_double_dash),
		cmocka_unit_test(test_bad_names_rejected),
		cmocka_unit_test(test_disk_options),
		cmocka_unit_test(test_disk_option_errors),
		cmocka_unit_test(test_too_many_disks),
		cmocka_unit_test(test_console_choice),
		cmocka_unit_test(test_help),
	};

	return cmocka_run_group_tests_name("run_options", tests, NULL, NULL);
}
