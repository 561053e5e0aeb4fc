// SPDX-License-Identifier: MIT
/* The device-argument parser: each type, repeated keys, and one test per error it reports. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lib/kvopt.h"

enum mode { MODE_USER = 7, MODE_TAP = -2 };

struct cfg {
	enum mode mode;
	bool ro;
	const char *tag;
	uint16_t port;
	uint64_t size;
	int cache;
	unsigned int nr_fwd;
	const char *fwd[3];
};

static const struct kvopt_name modes[] = { { "user", MODE_USER },
					   { "tap", MODE_TAP },
					   { NULL, 0 } };
static const struct kvopt_name caches[] = {
	{ "writeback", 1 },
	{ "none", 2 },
	{ "unsafe", 3 },
	{ NULL, 0 },
};

static const struct kvopt_spec mode_spec = {
	"mode",
	KVOPT_ENUM,
	KVOPT_AT(struct cfg, mode),
	.names = modes,
};
static const struct kvopt_spec tag_spec = {
	"tag",
	KVOPT_STRING,
	KVOPT_AT(struct cfg, tag),
	.max = 4,
};
static const struct kvopt_spec keys[] = {
	{ "ro", KVOPT_FLAG, KVOPT_AT(struct cfg, ro) },
	{ "tag", KVOPT_STRING, KVOPT_AT(struct cfg, tag), .max = 4 },
	{ "port", KVOPT_UINT, KVOPT_AT(struct cfg, port), .min = 1, .max = 65535 },
	{ "size", KVOPT_SIZE, KVOPT_AT(struct cfg, size), .min = 1, .max = 1ULL << 30 },
	{ "cache", KVOPT_ENUM, KVOPT_AT(struct cfg, cache), .names = caches },
	{ "fwd", KVOPT_STRING, KVOPT_ARRAY(struct cfg, fwd, nr_fwd) },
	{ NULL },
};
static const struct kvopt_set with_mode = { "net", &mode_spec, keys };
static const struct kvopt_set with_tag = { "share", &tag_spec, keys };
static const struct kvopt_set keys_only = { "thing", NULL, keys };

/* Parses a copy of text; 0 or -EINVAL, the message in err. */
static int parse(const struct kvopt_set *set, const char *text, struct cfg *c, char *err)
{
	static char buf[256]; /* c's strings point into it */

	memset(c, 0, sizeof(*c));
	err[0] = '\0';
	snprintf(buf, sizeof(buf), "%s", text);
	return kvopt_parse(set, buf, c, err, 128);
}

static void test_every_type_parsed_into_its_field(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(
		parse(&with_mode, "tap,ro,tag=abcd,port=65535,size=64K,cache=none", &c, err), 0);
	assert_int_equal(c.mode, MODE_TAP); /* the name's value, not its index */
	assert_true(c.ro);
	assert_string_equal(c.tag, "abcd");
	assert_int_equal(c.port, 65535);
	assert_int_equal(c.size, 64 * 1024);
	assert_int_equal(c.cache, 2);
	assert_string_equal(err, "");
}

static void test_positional_alone_and_empty_fields_skipped(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&with_mode, "user", &c, err), 0);
	assert_int_equal(c.mode, MODE_USER);
	assert_false(c.ro);
	assert_int_equal(parse(&with_tag, "x,,ro,", &c, err), 0);
	assert_string_equal(c.tag, "x");
	assert_true(c.ro);
}

static void test_repeated_key_collects_values_in_order(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&keys_only, "fwd=a,ro,fwd=b=c,fwd=", &c, err), 0);
	assert_int_equal(c.nr_fwd, 3);
	assert_string_equal(c.fwd[0], "a");
	assert_string_equal(c.fwd[1], "b=c"); /* only the first '=' splits */
	assert_string_equal(c.fwd[2], "");
}

static void test_key_given_twice_keeps_the_last(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&keys_only, "port=1,port=2,tag=a,tag=b", &c, err), 0);
	assert_int_equal(c.port, 2);
	assert_string_equal(c.tag, "b");
}

static void test_empty_string_positional_says_none_given(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&with_tag, "", &c, err), -EINVAL);
	assert_string_equal(err, "no tag given");
	assert_int_equal(parse(&with_tag, ",ro", &c, err), -EINVAL);
	assert_string_equal(err, "no tag given");
}

static void test_unknown_key_named_with_the_noun(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&with_mode, "user,bogus=1", &c, err), -EINVAL);
	assert_string_equal(err, "unknown net option 'bogus=1'");
}

static void test_flag_with_a_value_is_unknown(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&keys_only, "ro=1", &c, err), -EINVAL);
	assert_string_equal(err, "unknown thing option 'ro=1'");
}

static void test_key_without_a_value_is_unknown(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&keys_only, "port", &c, err), -EINVAL);
	assert_string_equal(err, "unknown thing option 'port'");
}

static void test_string_longer_than_max_rejected(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&keys_only, "tag=abcde", &c, err), -EINVAL);
	assert_string_equal(err, "tag is at most 4 characters");
	assert_int_equal(parse(&with_tag, "abcde", &c, err), -EINVAL);
	assert_string_equal(err, "tag is at most 4 characters");
}

static void test_uint_outside_range_or_not_a_number_rejected(void **state)
{
	static const char *const bad[] = { "port=0", "port=65536", "port=", "port=1x", "port=-1" };
	struct cfg c;
	char err[128];

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(&keys_only, bad[i], &c, err), -EINVAL);
		assert_string_equal(err, "port must be 1 to 65535");
	}
}

static void test_size_not_a_size_or_below_min_rejected(void **state)
{
	static const char *const bad[] = { "size=0", "size=", "size=1Q", "size=99999999999999T" };
	struct cfg c;
	char err[128];

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(&keys_only, bad[i], &c, err), -EINVAL);
		assert_string_equal(err, "size is a size (try 1M)");
	}
}

static void test_size_above_max_rejected(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&keys_only, "size=1G", &c, err), 0);
	assert_int_equal(parse(&keys_only, "size=1025M", &c, err), -EINVAL);
	assert_string_equal(err, "size is at most 1G");
}

static void test_enum_key_lists_its_names(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&keys_only, "cache=fast", &c, err), -EINVAL);
	assert_string_equal(err, "cache must be writeback, none or unsafe");
}

static void test_enum_positional_lists_its_names(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&with_mode, "slirp,ro", &c, err), -EINVAL);
	assert_string_equal(err, "user or tap");
	assert_int_equal(parse(&with_mode, "", &c, err), -EINVAL);
	assert_string_equal(err, "user or tap");
}

static void test_value_without_keys_is_the_whole_text(void **state)
{
	static const struct kvopt_set mode_only = { "net", &mode_spec, NULL };
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&mode_only, "tap", &c, err), 0);
	assert_int_equal(c.mode, MODE_TAP);
	assert_int_equal(parse(&mode_only, "tap,ro", &c, err), -EINVAL);
	assert_string_equal(err, "user or tap");
}

static void test_repeated_key_beyond_its_array_rejected(void **state)
{
	struct cfg c;
	char err[128];

	assert_int_equal(parse(&keys_only, "fwd=1,fwd=2,fwd=3,fwd=4", &c, err), -EINVAL);
	assert_string_equal(err, "at most 3 fwd values");
}

static void test_arg_text_for_help(void **state)
{
	char buf[64];

	kvopt_arg_text(&keys[4], buf, sizeof(buf));
	assert_string_equal(buf, "writeback|none|unsafe");
	kvopt_arg_text(&keys[2], buf, sizeof(buf));
	assert_string_equal(buf, "N");
	kvopt_arg_text(&keys[3], buf, sizeof(buf));
	assert_string_equal(buf, "SIZE");
	kvopt_arg_text(&keys[0], buf, sizeof(buf));
	assert_string_equal(buf, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type_parsed_into_its_field),
		cmocka_unit_test(test_positional_alone_and_empty_fields_skipped),
		cmocka_unit_test(test_repeated_key_collects_values_in_order),
		cmocka_unit_test(test_key_given_twice_keeps_the_last),
		cmocka_unit_test(test_empty_string_positional_says_none_given),
		cmocka_unit_test(test_unknown_key_named_with_the_noun),
		cmocka_unit_test(test_flag_with_a_value_is_unknown),
		cmocka_unit_test(test_key_without_a_value_is_unknown),
		cmocka_unit_test(test_string_longer_than_max_rejected),
		cmocka_unit_test(test_uint_outside_range_or_not_a_number_rejected),
		cmocka_unit_test(test_size_not_a_size_or_below_min_rejected),
		cmocka_unit_test(test_size_above_max_rejected),
		cmocka_unit_test(test_enum_key_lists_its_names),
		cmocka_unit_test(test_enum_positional_lists_its_names),
		cmocka_unit_test(test_value_without_keys_is_the_whole_text),
		cmocka_unit_test(test_repeated_key_beyond_its_array_rejected),
		cmocka_unit_test(test_arg_text_for_help),
	};

	return cmocka_run_group_tests_name("kvopt", tests, NULL, NULL);
}
