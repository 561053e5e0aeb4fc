// SPDX-License-Identifier: MIT
/*
 * "newc" cpio writer. Each entry is a 110-byte ASCII header (magic 070701 and thirteen 8-digit
 * hex fields), the NUL-terminated name, padding to a multiple of 4, the data, padding to 4.
 * Timestamps and owners are fixed so that the same inputs always give the same archive.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/cpio.h"

#define CPIO_HDR_LEN 110
/* The kernel's unpacker refuses names longer than PATH_MAX (init/initramfs.c). */
#define CPIO_NAME_MAX (PATH_MAX - 1)

struct cpio_entry {
	const char *name;
	uint32_t ino;
	mode_t mode;
	uint32_t nlink;
	unsigned int rmajor, rminor;
	const void *data;
	size_t len;
};

static size_t pad4(size_t n)
{
	return (4 - (n & 3)) & 3;
}

static int cpio_reserve(struct cpio *c, size_t more)
{
	size_t want, cap;
	uint8_t *buf;

	if (more > SIZE_MAX - c->len)
		return -ENOMEM;
	want = c->len + more;
	if (want <= c->cap)
		return 0;
	cap = c->cap ? c->cap : 4096;
	while (cap < want) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	buf = realloc(c->buf, cap);
	if (!buf)
		return -ENOMEM;
	c->buf = buf;
	c->cap = cap;
	return 0;
}

static void cpio_put(struct cpio *c, const void *p, size_t n)
{
	if (n)
		memcpy(c->buf + c->len, p, n);
	c->len += n;
}

static void cpio_put_zeros(struct cpio *c, size_t n)
{
	memset(c->buf + c->len, 0, n);
	c->len += n;
}

/* Callers may pass "/etc/x" or "etc/x": the archive holds names relative to the root. */
static const char *cpio_name(const char *name)
{
	if (!name)
		return NULL;
	if (name[0] == '/')
		name++;
	if (!name[0] || strlen(name) > CPIO_NAME_MAX)
		return NULL;
	return name;
}

static int cpio_append(struct cpio *c, const struct cpio_entry *e)
{
	char hdr[CPIO_HDR_LEN + 1];
	size_t namesize = strlen(e->name) + 1;
	size_t head = CPIO_HDR_LEN + namesize;
	size_t total;
	int n, ret;

	/* The size field has 8 hex digits. */
	if (e->len > UINT32_MAX)
		return -EFBIG;
	total = head + pad4(head) + e->len + pad4(e->len);
	ret = cpio_reserve(c, total);
	if (ret)
		return ret;

	n = snprintf(hdr, sizeof(hdr), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		     (unsigned int)e->ino, (unsigned int)e->mode, 0u, 0u, (unsigned int)e->nlink,
		     0u, (unsigned int)e->len, 0u, 0u, e->rmajor, e->rminor, (unsigned int)namesize,
		     0u);
	if (n != CPIO_HDR_LEN)
		return -EINVAL;

	cpio_put(c, hdr, CPIO_HDR_LEN);
	cpio_put(c, e->name, namesize);
	cpio_put_zeros(c, pad4(head));
	cpio_put(c, e->data, e->len);
	cpio_put_zeros(c, pad4(e->len));
	return 0;
}

static int cpio_add(struct cpio *c, struct cpio_entry *e)
{
	int ret;

	/* Inode 0 is the trailer's, so a zero-initialised writer starts at 1. */
	if (!c->next_ino)
		c->next_ino = 1;
	e->ino = c->next_ino;
	ret = cpio_append(c, e);
	if (!ret)
		c->next_ino++;
	return ret;
}

int cpio_add_dir(struct cpio *c, const char *name, mode_t perm)
{
	struct cpio_entry e = { .mode = S_IFDIR | (perm & 07777), .nlink = 2 };

	e.name = cpio_name(name);
	if (!e.name)
		return -EINVAL;
	return cpio_add(c, &e);
}

int cpio_add_file(struct cpio *c, const char *name, mode_t perm, const void *data, size_t len)
{
	struct cpio_entry e = {
		.mode = S_IFREG | (perm & 07777),
		.nlink = 1,
		.data = data,
		.len = len,
	};

	e.name = cpio_name(name);
	if (!e.name || (len && !data))
		return -EINVAL;
	return cpio_add(c, &e);
}

int cpio_add_symlink(struct cpio *c, const char *name, const char *target)
{
	struct cpio_entry e = { .mode = S_IFLNK | 0777, .nlink = 1 };

	e.name = cpio_name(name);
	if (!e.name || !target || !target[0])
		return -EINVAL;
	/* A symlink's data is its target, without a NUL. */
	e.data = target;
	e.len = strlen(target);
	if (e.len > CPIO_NAME_MAX)
		return -EINVAL;
	return cpio_add(c, &e);
}

int cpio_add_node(struct cpio *c, const char *name, mode_t mode, unsigned int major,
		  unsigned int minor)
{
	struct cpio_entry e = { .mode = mode & (S_IFMT | 07777), .nlink = 1 };

	e.name = cpio_name(name);
	if (!e.name || (!S_ISCHR(mode) && !S_ISBLK(mode)))
		return -EINVAL;
	e.rmajor = major;
	e.rminor = minor;
	return cpio_add(c, &e);
}

int cpio_finish(struct cpio *c)
{
	/* By convention the trailer carries inode 0 and does not use up a number. */
	struct cpio_entry e = { .name = "TRAILER!!!", .ino = 0, .nlink = 1 };

	return cpio_append(c, &e);
}

void cpio_free(struct cpio *c)
{
	free(c->buf);
	c->buf = NULL;
	c->len = 0;
	c->cap = 0;
}
