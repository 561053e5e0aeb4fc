// SPDX-License-Identifier: MIT
/* The newc writer: archives are parsed back field by field, as the kernel's unpacker would. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "lib/cpio.h"

struct entry {
	uint32_t ino, mode, uid, gid, nlink, mtime, size, rmajor, rminor;
	char name[PATH_MAX + 1];
	const uint8_t *data;
};

static uint32_t hex8(const uint8_t *p)
{
	char buf[9];

	memcpy(buf, p, 8);
	buf[8] = '\0';
	return (uint32_t)strtoul(buf, NULL, 16);
}

static int all_zero(const uint8_t *p, size_t n)
{
	while (n--) {
		if (*p++)
			return 0;
	}
	return 1;
}

/* Parses the entry at *off, checking the format's rules, and moves *off past it. */
static void parse_entry(const struct cpio *c, size_t *off, struct entry *e)
{
	const uint8_t *h = c->buf + *off;
	uint32_t namesize;
	size_t pos;

	assert_true(*off + 110 <= c->len);
	assert_memory_equal(h, "070701", 6);
	e->ino = hex8(h + 6);
	e->mode = hex8(h + 14);
	e->uid = hex8(h + 22);
	e->gid = hex8(h + 30);
	e->nlink = hex8(h + 38);
	e->mtime = hex8(h + 46);
	e->size = hex8(h + 54);
	e->rmajor = hex8(h + 78);
	e->rminor = hex8(h + 86);
	namesize = hex8(h + 94);
	assert_int_equal(hex8(h + 102), 0); /* check field: unused by newc */
	assert_true(namesize >= 2 && namesize <= sizeof(e->name));
	pos = *off + 110;
	assert_true(pos + namesize <= c->len);
	assert_int_equal(c->buf[pos + namesize - 1], '\0');
	memcpy(e->name, c->buf + pos, namesize);
	pos += namesize;
	/* Header plus name, then data, each padded with zeros to a multiple of 4. */
	assert_true(all_zero(c->buf + pos, (4 - (pos & 3)) & 3));
	pos = (pos + 3) & ~(size_t)3;
	assert_true(pos + e->size <= c->len);
	e->data = c->buf + pos;
	pos += e->size;
	assert_true(all_zero(c->buf + pos, (4 - (pos & 3)) & 3));
	*off = (pos + 3) & ~(size_t)3;
	assert_true(*off <= c->len);
}

static void test_cpio_entries_parse_back(void **state)
{
	static const char *const payloads[] = { "", "a", "abc", "abcd", "abcde" };
	struct cpio c = { 0 };
	struct entry e;
	size_t off = 0, i;
	uint32_t last_ino = 0;
	char name[16];

	assert_int_equal(cpio_add_dir(&c, "/etc", 0755), 0);
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "etc/f%zu", i);
		assert_int_equal(cpio_add_file(&c, name, 0644, payloads[i], strlen(payloads[i])),
				 0);
	}
	assert_int_equal(cpio_add_symlink(&c, "bin/sh", "/bin/busybox"), 0);
	assert_int_equal(cpio_add_node(&c, "dev/console", S_IFCHR | 0600, 5, 1), 0);
	assert_int_equal(cpio_finish(&c), 0);
	assert_int_equal(c.len % 4, 0);

	parse_entry(&c, &off, &e);
	assert_string_equal(e.name, "etc");
	assert_int_equal(e.mode, S_IFDIR | 0755);
	assert_int_equal(e.size, 0);
	assert_int_equal(e.nlink, 2);
	last_ino = e.ino;
	for (i = 0; i < 5; i++) {
		parse_entry(&c, &off, &e);
		snprintf(name, sizeof(name), "etc/f%zu", i);
		assert_string_equal(e.name, name);
		assert_int_equal(e.mode, S_IFREG | 0644);
		assert_int_equal(e.size, strlen(payloads[i]));
		assert_memory_equal(e.data, payloads[i], e.size);
		assert_int_equal(e.uid, 0);
		assert_int_equal(e.gid, 0);
		assert_int_equal(e.mtime, 0);
		assert_true(e.ino > last_ino);
		last_ino = e.ino;
	}
	parse_entry(&c, &off, &e);
	assert_string_equal(e.name, "bin/sh");
	assert_int_equal(e.mode, S_IFLNK | 0777);
	assert_int_equal(e.size, strlen("/bin/busybox"));
	assert_memory_equal(e.data, "/bin/busybox", e.size);
	parse_entry(&c, &off, &e);
	assert_string_equal(e.name, "dev/console");
	assert_int_equal(e.mode, S_IFCHR | 0600);
	assert_int_equal(e.rmajor, 5);
	assert_int_equal(e.rminor, 1);
	assert_int_equal(e.size, 0);
	parse_entry(&c, &off, &e);
	assert_string_equal(e.name, "TRAILER!!!");
	assert_int_equal(off, c.len);
	cpio_free(&c);
	assert_null(c.buf);
}

static void test_cpio_inodes_start_at_next_ino(void **state)
{
	struct cpio c = { .next_ino = 100 };
	struct entry e;
	size_t off = 0;

	assert_int_equal(cpio_add_dir(&c, "a", 0755), 0);
	assert_int_equal(cpio_add_dir(&c, "b", 0755), 0);
	parse_entry(&c, &off, &e);
	assert_int_equal(e.ino, 100);
	parse_entry(&c, &off, &e);
	assert_int_equal(e.ino, 101);
	assert_int_equal(c.next_ino, 102);
	cpio_free(&c);
}

static void test_cpio_rejects_bad_names(void **state)
{
	char *longname = malloc(PATH_MAX + 1);
	struct cpio c = { 0 };

	assert_non_null(longname);
	memset(longname, 'x', PATH_MAX);
	longname[PATH_MAX] = '\0';
	assert_int_equal(cpio_add_dir(&c, "", 0755), -EINVAL);
	assert_int_equal(cpio_add_dir(&c, "/", 0755), -EINVAL);
	assert_int_equal(cpio_add_file(&c, NULL, 0644, "x", 1), -EINVAL);
	assert_int_equal(cpio_add_file(&c, longname, 0644, "x", 1), -EINVAL);
	assert_int_equal(cpio_add_symlink(&c, "a", ""), -EINVAL);
	/* A failed call leaves nothing behind. */
	assert_int_equal(c.len, 0);
	free(longname);
	cpio_free(&c);
}

static void test_cpio_rejects_bad_arguments(void **state)
{
	struct cpio c = { 0 };

	assert_int_equal(cpio_add_file(&c, "f", 0644, NULL, 1), -EINVAL);
	assert_int_equal(cpio_add_node(&c, "dev/x", S_IFREG | 0644, 1, 3), -EINVAL);
	assert_int_equal(cpio_add_node(&c, "dev/sda", S_IFBLK | 0660, 8, 0), 0);
	cpio_free(&c);
}

static void test_cpio_strips_one_leading_slash(void **state)
{
	struct cpio c = { 0 };
	struct entry e;
	size_t off = 0;

	assert_int_equal(cpio_add_file(&c, "/etc/x", 0600, "1", 1), 0);
	assert_int_equal(cpio_add_file(&c, "etc/x", 0600, "1", 1), 0);
	parse_entry(&c, &off, &e);
	assert_string_equal(e.name, "etc/x");
	parse_entry(&c, &off, &e);
	assert_string_equal(e.name, "etc/x");
	cpio_free(&c);
}

/* Many entries force several reallocations; every one must still parse. */
static void test_cpio_grows_buffer(void **state)
{
	static uint8_t blob[10007];
	struct cpio c = { 0 };
	struct entry e;
	size_t off = 0, i;
	char name[32];

	for (i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7);
	for (i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "f%zu", i);
		assert_int_equal(cpio_add_file(&c, name, 0644, blob, sizeof(blob) - i), 0);
	}
	assert_int_equal(cpio_finish(&c), 0);
	for (i = 0; i < 100; i++) {
		parse_entry(&c, &off, &e);
		assert_int_equal(e.size, sizeof(blob) - i);
		assert_memory_equal(e.data, blob, e.size);
	}
	parse_entry(&c, &off, &e);
	assert_string_equal(e.name, "TRAILER!!!");
	cpio_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpio_entries_parse_back),
		cmocka_unit_test(test_cpio_inodes_start_at_next_ino),
		cmocka_unit_test(test_cpio_rejects_bad_names),
		cmocka_unit_test(test_cpio_rejects_bad_arguments),
		cmocka_unit_test(test_cpio_strips_one_leading_slash),
		cmocka_unit_test(test_cpio_grows_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
