// SPDX-License-Identifier: MIT
/*
 * -n without KVM: what each option parses into, each bad value's one-line message (the option
 * as given, then why), the default MACs, and the file that tells the guest's init about NICs.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cmd/run_dev_net.h"
#include "cmd/run_options.h"

static int parse(struct run_options *o, char *err, ...)
{
	static char *argv[32];
	int argc = 0, r;
	va_list ap;

	va_start(ap, err);
	argv[argc++] = "run";
	while ((argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	err[0] = '\0';
	r = run_parse_options(argc, argv, o, err, 256);
	return r;
}

static const struct run_net *nic(const struct run_options *o, unsigned int i)
{
	for (unsigned int k = 0; k < o->nr_devices; k++)
		if (o->devices[k].type == &net_device_type && !i--)
			return o->devices[k].cfg;
	return NULL;
}

/* The option must fail with exactly this message. */
static void expect_error(const char *arg, const char *want)
{
	struct run_options o;
	char err[256];

	assert_int_not_equal(parse(&o, err, "-n", arg, NULL), 0);
	assert_string_equal(err, want);
	run_options_free(&o);
}

static void test_net_repeatable_in_order_with_kinds(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, err, "-n", "user", "--net", "tap", "-n", "user,queues=3", NULL),
			 0);
	assert_non_null(nic(&o, 2));
	assert_null(nic(&o, 3));
	assert_int_equal(nic(&o, 0)->kind, RUN_NET_USER);
	assert_int_equal(nic(&o, 1)->kind, RUN_NET_TAP);
	assert_int_equal(nic(&o, 0)->queues, 0);
	assert_int_equal(nic(&o, 2)->queues, 3);
	assert_int_equal(nic(&o, 1)->vhost, RUN_NET_VHOST_AUTO);
	run_options_free(&o);
}

static void test_net_user_hostfwd_repeatable_and_qemu_form(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_equal(
		parse(&o, err, "-n", "user,hostfwd=tcp:8080-80,hostfwd=tcp::2222-:22", NULL), 0);
	assert_int_equal(nic(&o, 0)->nr_hostfwd, 2);
	assert_int_equal(nic(&o, 0)->hostfwd[0].host_port, 8080);
	assert_int_equal(nic(&o, 0)->hostfwd[0].guest_port, 80);
	assert_int_equal(nic(&o, 0)->hostfwd[1].host_port, 2222);
	assert_int_equal(nic(&o, 0)->hostfwd[1].guest_port, 22);
	run_options_free(&o);
}

static void test_net_tap_keys_parsed(void **state)
{
	struct run_options o;
	char err[256];
	const struct run_net *n;

	assert_int_equal(parse(&o, err, "-n",
			       "tap,ifname=tap7,host_ip=192.168.100.1/24,guest_ip=192.168.100.2/24,"
			       "vhost=off,mac=52:54:00:AB:cd:0e,queues=2",
			       NULL),
			 0);
	n = nic(&o, 0);
	assert_string_equal(n->ifname, "tap7");
	assert_int_equal(n->host_ip.s_addr, inet_addr("192.168.100.1"));
	assert_int_equal(n->host_prefix, 24);
	assert_int_equal(n->guest_ip.s_addr, inet_addr("192.168.100.2"));
	assert_int_equal(n->vhost, RUN_NET_VHOST_OFF);
	assert_true(n->has_mac);
	assert_memory_equal(n->mac, ((uint8_t[]){ 0x52, 0x54, 0x00, 0xab, 0xcd, 0x0e }), 6);
	assert_int_equal(n->queues, 2);
	run_options_free(&o);
}

static void test_net_bad_mac_rejected(void **state)
{
	expect_error("user,mac=zz",
		     "-n user,mac=zz: mac must be six hex bytes, as 52:54:00:12:34:56");
	expect_error("user,mac=52:54:00:12:34:5", "-n user,mac=52:54:00:12:34:5: mac must be six "
						  "hex bytes, as 52:54:00:12:34:56");
	expect_error("user,mac=52-54-00-12-34-56", "-n user,mac=52-54-00-12-34-56: mac must be six "
						   "hex bytes, as 52:54:00:12:34:56");
	expect_error("tap,mac=01:00:5e:00:00:01",
		     "-n tap,mac=01:00:5e:00:00:01: mac 01:00:5e:00:00:01 is a multicast address "
		     "(its first byte is odd)");
}

static void test_net_bad_queues_rejected(void **state)
{
	expect_error("user,queues=0", "-n user,queues=0: queues must be 1 to 16");
	expect_error("tap,queues=17", "-n tap,queues=17: queues must be 1 to 16");
}

static void test_net_bad_hostfwd_rejected(void **state)
{
	expect_error("user,hostfwd=tcp:99999-22",
		     "-n user,hostfwd=tcp:99999-22: hostfwd port 99999 is not 1 to 65535");
	expect_error("user,hostfwd=tcp:2222-0",
		     "-n user,hostfwd=tcp:2222-0: hostfwd port 0 is not 1 to 65535");
	expect_error("user,hostfwd=udp:53-53",
		     "-n user,hostfwd=udp:53-53: hostfwd must be tcp:HOSTPORT-GUESTPORT");
	expect_error("user,hostfwd=tcp:80",
		     "-n user,hostfwd=tcp:80: hostfwd must be tcp:HOSTPORT-GUESTPORT");
	expect_error("user,hostfwd=tcp:8x-80",
		     "-n user,hostfwd=tcp:8x-80: hostfwd must be tcp:HOSTPORT-GUESTPORT");
	expect_error("user,hostfwd=tcp:80-1,hostfwd=tcp:80-2",
		     "-n user,hostfwd=tcp:80-1,hostfwd=tcp:80-2: hostfwd: host port 80 is "
		     "forwarded twice");
}

static void test_net_keys_of_the_other_back_end_rejected(void **state)
{
	expect_error("user,ifname=tap0", "-n user,ifname=tap0: ifname is for -n tap only");
	expect_error("user,host_ip=10.1.1.1/24", "-n user,host_ip=10.1.1.1/24: host_ip is for -n "
						 "tap only");
	expect_error("user,guest_ip=10.1.1.2/24", "-n user,guest_ip=10.1.1.2/24: guest_ip is for "
						  "-n tap only");
	expect_error("user,vhost=on", "-n user,vhost=on: vhost is for -n tap only");
	expect_error("tap,hostfwd=tcp:1-2", "-n tap,hostfwd=tcp:1-2: hostfwd is for -n user only");
}

static void test_net_bad_tap_values_rejected(void **state)
{
	expect_error("tap,host_ip=10.1.1.1", "-n tap,host_ip=10.1.1.1: host_ip must be an IPv4 "
					     "ADDR/PREFIX, as 192.168.100.1/24");
	expect_error("tap,guest_ip=10.1.1.300/24",
		     "-n tap,guest_ip=10.1.1.300/24: guest_ip must be "
		     "an IPv4 ADDR/PREFIX, as 192.168.100.1/24");
	expect_error("tap,guest_ip=10.1.1.3/33", "-n tap,guest_ip=10.1.1.3/33: guest_ip must be an "
						 "IPv4 ADDR/PREFIX, as 192.168.100.1/24");
	expect_error("tap,vhost=maybe", "-n tap,vhost=maybe: vhost must be on, off or auto");
	expect_error("tap,ifname=a-name-far-too-long",
		     "-n tap,ifname=a-name-far-too-long: ifname is at most 15 characters");
	expect_error("bridge", "-n bridge: user or tap");
	expect_error("user,bogus", "-n user,bogus: unknown net option 'bogus'");
}

static void test_net_at_most_8(void **state)
{
	struct run_options o;
	char err[256];

	assert_int_not_equal(parse(&o, err, "-n", "user", "-n", "user", "-n", "user", "-n", "user",
				   "-n", "user", "-n", "user", "-n", "user", "-n", "user", "-n",
				   "user", NULL),
			     0);
	assert_string_equal(err, "-n user: at most 8 NICs");
	run_options_free(&o);
}

static void test_net_default_mac_from_name_and_index(void **state)
{
	struct run_net n = { 0 };
	uint8_t a0[6], a1[6], b0[6], again[6];

	run_net_mac(&n, "web", 0, a0);
	run_net_mac(&n, "web", 1, a1);
	run_net_mac(&n, "db", 0, b0);
	run_net_mac(&n, "web", 0, again);
	/* Locally administered (bit 1 of the first byte), unicast (bit 0 clear). */
	assert_int_equal(a0[0] & 3, 2);
	assert_memory_equal(a0, again, 6);
	assert_memory_not_equal(a0, a1, 6);
	assert_memory_not_equal(a0, b0, 6);
	n.has_mac = true;
	memcpy(n.mac, (uint8_t[]){ 2, 0, 0, 0, 0, 9 }, 6);
	run_net_mac(&n, "web", 3, a0);
	assert_memory_equal(a0, ((uint8_t[]){ 2, 0, 0, 0, 0, 9 }), 6);
}

/* "52:4b:..." as the guest file spells the MAC of NIC index of guest g1. */
static const char *mac_text(const struct run_options *o, unsigned int index)
{
	static char buf[4][18];
	uint8_t m[6];

	run_net_mac(nic(o, index), "g1", index, m);
	snprintf(buf[index], sizeof(buf[index]), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2],
		 m[3], m[4], m[5]);
	return buf[index];
}

static void test_net_guest_file_one_line_per_nic(void **state)
{
	struct run_options o;
	char err[256], want[512], *text;
	size_t len;

	assert_int_equal(parse(&o, err, "--name", "g1", "-n", "user", "-d", "x.img", "-n",
			       "tap,host_ip=192.168.100.1/24,guest_ip=192.168.100.2/24,"
			       "mac=02:00:00:00:00:01",
			       "-n", "tap", "-n", "tap,guest_ip=10.9.0.2/16,host_ip=10.8.0.1/16",
			       NULL),
			 0);
	assert_int_equal(run_net_guest_file(&o, &text, &len), 0);
	/* user: QEMU's addressing; tap: guest_ip, through host_ip when on its subnet; else none. */
	snprintf(want, sizeof(want),
		 "%s 10.0.2.15/24 10.0.2.2 10.0.2.3\n"
		 "02:00:00:00:00:01 192.168.100.2/24 192.168.100.1 -\n"
		 "%s - - -\n"
		 "%s 10.9.0.2/16 - -\n",
		 mac_text(&o, 0), mac_text(&o, 2), mac_text(&o, 3));
	assert_string_equal(text, want);
	assert_int_equal(len, strlen(want));
	free(text);
	run_options_free(&o);
}

static void test_net_no_nic_no_guest_file(void **state)
{
	struct run_options o;
	char err[256], *text = (char *)"x";
	size_t len = 1;

	assert_int_equal(parse(&o, err, "-d", "x.img", NULL), 0);
	assert_int_equal(run_net_guest_file(&o, &text, &len), 0);
	assert_null(text);
	assert_int_equal(len, 0);
	run_options_free(&o);
}

/* The NIC's slot comes after the disks', so theirs do not move. */
static void test_net_after_disks_in_table(void **state)
{
	unsigned int disk = 99, net = 99;

	for (unsigned int i = 0; device_types[i]; i++) {
		if (device_types[i] == &disk_device_type)
			disk = i;
		if (device_types[i] == &net_device_type)
			net = i;
	}
	assert_true(disk < net && net != 99);
}

static void test_net_help_lists_every_key(void **state)
{
	static const char *const keys[] = { "-n, --net user|tap[,OPTION]...",
					    "hostfwd=tcp:HOSTPORT-GUESTPORT",
					    "ifname=NAME",
					    "host_ip=ADDR/PREFIX",
					    "guest_ip=ADDR/PREFIX",
					    "vhost=on|off|auto",
					    "mac=MAC",
					    "queues=N" };
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	run_usage(f);
	fclose(f);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_non_null(strstr(text, keys[i]));
	/* A key as wide as its column still has a space before its text. */
	assert_null(strstr(text, "ADDR/PREFIXtap"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_net_repeatable_in_order_with_kinds),
		cmocka_unit_test(test_net_user_hostfwd_repeatable_and_qemu_form),
		cmocka_unit_test(test_net_tap_keys_parsed),
		cmocka_unit_test(test_net_bad_mac_rejected),
		cmocka_unit_test(test_net_bad_queues_rejected),
		cmocka_unit_test(test_net_bad_hostfwd_rejected),
		cmocka_unit_test(test_net_keys_of_the_other_back_end_rejected),
		cmocka_unit_test(test_net_bad_tap_values_rejected),
		cmocka_unit_test(test_net_at_most_8),
		cmocka_unit_test(test_net_default_mac_from_name_and_index),
		cmocka_unit_test(test_net_guest_file_one_line_per_nic),
		cmocka_unit_test(test_net_no_nic_no_guest_file),
		cmocka_unit_test(test_net_after_disks_in_table),
		cmocka_unit_test(test_net_help_lists_every_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
