// SPDX-License-Identifier: MIT
/* `nkvm run` option parsing: defaults, sizes, limits and each malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cmd/run_dev_disk.h"
#include "cmd/run_options.h"

static int parse(struct run_options *o, char *err, ...)
{
	static char *argv[32]; /* o->cmd points into it after we return */
	int argc = 0;
	va_list ap;

	va_start(ap, err);
	argv[argc++] = "run";
	while ((argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	return run_parse_options(argc, argv, o, err, 256);
}

/* The i-th device of type t given, NULL when there are fewer. */
static const struct run_device *device(const struct run_options *o, const struct device_type *t,
				       unsigned int i)
{
	for (unsigned int k = 0; k < o->nr_devices; k++)
		if (o->devices[k].type == t && !i--)
			return &o->devices[k];
	return NULL;
}

static unsigned int count(const struct run_options *o, const struct device_type *t)
{
	unsigned int n = 0;

	while (device(o, t, n))
		n++;
	return n;
}

static const struct run_disk *disk(const struct run_options *o, unsigned int i)
{
	const struct run_device *d = device(o, &disk_device_type, i);

	assert_non_null(d);
	return d->cfg;
}

/* `nkvm run --help` as text; the caller frees it. */
static char *usage_text(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	run_usage(f);
	fclose(f);
	return text;
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

	assert_int_equal(parse(&o, err, "-k", "bz", "-i", "rd", "-p", "a=1 b", "-m", "2G", "-c",
			       "4", "--name", "web-1", "--", "sh", "-c", "exit 7", NULL),
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
	assert_int_equal(parse(&o, err, "-m", "1T", NULL), 0); /* host limit checked later */
	assert_int_equal(o.mem, 1ULL << 40);
	assert_string_equal(o.mem_arg, "1T"); /* as written, for that message */
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

static void test_detach_is_off_unless_asked(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "--name", "g", NULL), 0);
	assert_false(o.detach);
	assert_int_equal(parse(&o, err, "--detach", "--name", "g", "--", "true", NULL), 0);
	assert_true(o.detach);
	assert_string_equal(o.cmd[0], "true");
	assert_int_equal(parse(&o, err, "--detach=1", NULL), -1);
}

/* --user: none by default; a name's ids from passwd; UID:GID as given. */
static void test_user_takes_a_name_or_uid_gid(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, NULL), 0);
	assert_null(o.user_arg);
	assert_int_equal(parse(&o, err, "--user", "nobody", NULL), 0);
	assert_string_equal(o.user_arg, "nobody");
	assert_int_equal(o.user.uid, 65534);
	assert_int_equal(o.user.gid, 65534);
	assert_int_equal(parse(&o, err, "--user=1000:100", NULL), 0);
	assert_int_equal(o.user.uid, 1000);
	assert_int_equal(o.user.gid, 100);
}

/* Refused while parsing, so `nkvm run` says it in one line and exits 2 before opening anything. */
static void test_unknown_user_is_a_one_line_error(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "--user", "no-such-user-nkvm", NULL), -1);
	assert_string_equal(err, "--user no-such-user-nkvm: no such user (give a name or UID:GID)");
	assert_int_equal(parse(&o, err, "--user", "12:", NULL), -1);
	assert_string_equal(err, "--user 12:: give a user name or UID:GID");
	assert_int_equal(parse(&o, err, "--user", "root", NULL), -1);
}

static void test_sandbox_is_on_unless_turned_off(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "--", "true", NULL), 0);
	assert_int_equal(o.sandbox, SANDBOX_ON);
	assert_int_equal(parse(&o, err, "--sandbox=off", NULL), 0);
	assert_int_equal(o.sandbox, SANDBOX_OFF);
	assert_int_equal(parse(&o, err, "--sandbox", "on", NULL), 0);
	assert_int_equal(o.sandbox, SANDBOX_ON);
	assert_int_equal(parse(&o, err, "--sandbox=maybe", NULL), -1);
	assert_string_equal(err, "--sandbox maybe: say on or off");
}

static void test_disk_options(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-d", "a.img", "--disk",
			       "b.img,ro,serial=SN1,cache=none,queues=3", NULL),
			 0);
	assert_int_equal(count(&o, &disk_device_type), 2);
	assert_string_equal(disk(&o, 0)->path, "a.img");
	assert_false(disk(&o, 0)->readonly);
	assert_int_equal(disk(&o, 0)->queues, 0);
	assert_string_equal(disk(&o, 1)->path, "b.img");
	assert_true(disk(&o, 1)->readonly);
	assert_true(disk(&o, 1)->direct);
	assert_string_equal(disk(&o, 1)->serial, "SN1");
	assert_int_equal(disk(&o, 1)->queues, 3);
	run_options_free(&o);
	assert_int_equal(parse(&o, err, "-d", "a.img,cache-size=1G", NULL), 0);
	assert_int_equal(disk(&o, 0)->cache_size, 1ULL << 30);
	run_options_free(&o);
}

static void test_disk_format_engine_and_cache_size_are_enum_values(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "--engine", "aio", "-d",
			       "a.img,format=qcow2,engine=io_uring,cache-size=2M,cache=writeback",
			       "-d", "b.img,format=raw", NULL),
			 0);
	assert_int_equal(o.engine, DISK_ENGINE_AIO);
	assert_int_equal(disk(&o, 0)->format, DISK_FORMAT_QCOW2);
	assert_int_equal(disk(&o, 0)->engine, DISK_ENGINE_IO_URING);
	assert_int_equal(disk(&o, 0)->cache_size, 2 << 20);
	assert_false(disk(&o, 0)->direct);
	assert_int_equal(disk(&o, 1)->format, DISK_FORMAT_RAW);
	assert_int_equal(disk(&o, 1)->engine, DISK_ENGINE_DEFAULT); /* --engine applies later */
	run_options_free(&o);
	assert_int_equal(parse(&o, err, "--engine", "uring", NULL), -1);
	assert_string_equal(err, "--engine uring: threads, aio or io_uring");
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
		{ "a.img,format=vmdk", "format must be raw or qcow2" },
		{ "a.img,engine=posix", "engine must be threads, aio or io_uring" },
		{ "a.img,cache-size=0", "cache-size is a size (try 1M)" },
		{ "a.img,ro=1", "unknown disk option 'ro=1'" },
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
			       "6", "-d", "7", "-d", "8", "-d", "9", NULL),
			 -1);
	assert_non_null(strstr(err, "at most 8"));
	run_options_free(&o);
}

static void test_console_choice(void **state)
{
	struct run_options o;
	char err[256];

	const struct run_device *con;

	assert_int_equal(parse(&o, err, "--console", "virtio", "--rng", NULL), 0);
	con = device(&o, &console_device_type, 0);
	assert_non_null(con);
	assert_string_equal(con->type->cmdline(con->cfg), "console=hvc0"); /* virtio */
	assert_int_equal(count(&o, &rng_device_type), 1);
	run_options_free(&o);
	assert_int_equal(parse(&o, err, "--console", "tty7", NULL), -1);
	assert_non_null(strstr(err, "serial or virtio"));
	run_options_free(&o);
	assert_int_equal(parse(&o, err, "--console", "virtio,ro", NULL), -1);
	assert_string_equal(err, "--console virtio,ro: serial or virtio");
	run_options_free(&o);
}

static void test_console_and_rng_given_twice_keep_one_the_last(void **state)
{
	struct run_options o;
	char err[256];
	const struct run_device *con;

	assert_int_equal(parse(&o, err, "--rng", "--console", "virtio", "--rng", "--console=serial",
			       NULL),
			 0);
	assert_int_equal(count(&o, &rng_device_type), 1);
	assert_int_equal(count(&o, &console_device_type), 1);
	con = device(&o, &console_device_type, 0);
	assert_null(con->type->cmdline(con->cfg)); /* serial: no hvc0 */
	run_options_free(&o);
}

static void test_balloon_is_made_unless_no_balloon(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, NULL), 0);
	assert_int_equal(count(&o, &balloon_device_type), 1);
	run_options_free(&o);
	assert_int_equal(parse(&o, err, "--no-balloon", "--rng", NULL), 0);
	assert_int_equal(count(&o, &balloon_device_type), 0);
	assert_int_equal(count(&o, &rng_device_type), 1);
	run_options_free(&o);
	assert_int_equal(parse(&o, err, "--no-balloon=yes", NULL), -1);
	run_options_free(&o);
}

static void test_help(void **state)
{
	struct run_options o;
	char err[256];

	char *text = usage_text();

	assert_int_equal(parse(&o, err, "--help", NULL), 0);
	assert_true(o.help);
	assert_non_null(strstr(text, "--kernel"));
	free(text);
}

static void test_help_has_every_device_option_and_key_from_the_table(void **state)
{
	char *text = usage_text(), line[160];

	for (unsigned int i = 0; device_types[i]; i++) {
		const struct device_type *t = device_types[i];
		const struct kvopt_spec *k;

		snprintf(line, sizeof(line), "--%s", t->long_opt);
		assert_non_null(strstr(text, line));
		assert_non_null(strstr(text, t->help));
		for (k = t->syntax.keys; k && k->key; k++) {
			char arg[64];

			kvopt_arg_text(k, arg, sizeof(arg));
			snprintf(line, sizeof(line), "\n  %*s%s%s%s", 23, "", k->key,
				 *arg ? "=" : "", arg);
			assert_non_null(strstr(text, line));
			assert_non_null(strstr(text, k->help));
		}
	}
	assert_non_null(strstr(text, "  -d, --disk FILE[,OPTION]...\n"));
	assert_non_null(strstr(text, "      --console serial|virtio\n"));
	assert_non_null(strstr(text, "      --rng            a virtio-rng device"));
	assert_non_null(strstr(text, "      --no-balloon     no virtio-balloon device"));
	assert_non_null(strstr(text, "(repeatable, up to 8). OPTIONs:"));
	assert_non_null(strstr(text, "cache=writeback|none"));
	free(text);
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
		cmocka_unit_test(test_detach_is_off_unless_asked),
		cmocka_unit_test(test_sandbox_is_on_unless_turned_off),
		cmocka_unit_test(test_user_takes_a_name_or_uid_gid),
		cmocka_unit_test(test_unknown_user_is_a_one_line_error),
		cmocka_unit_test(test_disk_options),
		cmocka_unit_test(test_disk_format_engine_and_cache_size_are_enum_values),
		cmocka_unit_test(test_disk_option_errors),
		cmocka_unit_test(test_too_many_disks),
		cmocka_unit_test(test_console_choice),
		cmocka_unit_test(test_console_and_rng_given_twice_keep_one_the_last),
		cmocka_unit_test(test_balloon_is_made_unless_no_balloon),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_help_has_every_device_option_and_key_from_the_table),
	};

	return cmocka_run_group_tests_name("run_options", tests, NULL, NULL);
}
