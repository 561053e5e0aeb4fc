// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: format probing and `nkvm img info` (human and --json) on an arbitrary file.
 * The input is the file. Whatever its bytes: info ends with its output or a one-line reason;
 * the format it reports is what disk_probe_format says; nothing it prints, on stdout or stderr,
 * holds a byte a terminal would act on (any string from the image is escaped); and the JSON is
 * well-formed UTF-8 (RFC 8259 §8.1), whatever names the image holds.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/disk.h"
#include "cmd/img.h"

/* img.c's command table names the other subcommands; this target runs only info. */
int img_create(int argc, char **argv)
{
	abort();
}

int img_check(int argc, char **argv)
{
	abort();
}

int img_bench(int argc, char **argv)
{
	abort();
}

/* Well-formed UTF-8 (RFC 3629 §4), checked here apart from lib/text.c. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned int n = s[i] < 0x80		     ? 0 :
				 s[i] >= 0xc2 && s[i] < 0xe0 ? 1 :
				 (s[i] & 0xf0) == 0xe0	     ? 2 :
				 s[i] >= 0xf0 && s[i] < 0xf5 ? 3 :
							       9;
		uint32_t cp = s[i] & (0x7f >> n);

		if (n == 9 || i + n >= len)
			return false;
		for (unsigned int k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += n + 1;
	}
	return true;
}

/* No control character but newline, no DEL, no C1 control written as UTF-8. */
static void check_terminal_safe(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if ((s[i] < 0x20 && s[i] != '\n') || s[i] == 0x7f ||
		    (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] < 0xa0)) {
			fprintf(stderr, "byte %#x at %zu of the output\n", s[i], i);
			abort();
		}
	}
}

/* What fd (a memfd) holds from offset 0, in a buffer of its own; then emptied. */
static unsigned char *take(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	unsigned char *buf = malloc(end > 0 ? end : 1);

	if (!buf || end < 0 || pread(fd, buf, end, 0) != end || ftruncate(fd, 0))
		abort();
	lseek(fd, 0, SEEK_SET);
	*len = end;
	return buf;
}

static int run_info(const char *path, bool json, int out, int err)
{
	char *argv[5];
	int argc = 0, saved_out = dup(1), saved_err = dup(2), ret;

	/* -U: no lock to take on a file nobody else has. */
	argv[argc++] = "info";
	argv[argc++] = "-U";
	if (json)
		argv[argc++] = "--json";
	argv[argc++] = (char *)path;
	argv[argc] = NULL;

	fflush(stdout);
	fflush(stderr);
	dup2(out, 1);
	dup2(err, 2);
	ret = img_info(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int out = -1, err = -1;
	enum disk_format_kind kind =
		disk_probe_format(data, size < DISK_PROBE_LEN ? size : DISK_PROBE_LEN);
	unsigned char *o, *e;
	size_t olen, elen;
	char path[64];
	int fd, ret;

	if (out < 0) {
		out = memfd_create("fuzz-img-info-out", MFD_CLOEXEC);
		err = memfd_create("fuzz-img-info-err", MFD_CLOEXEC);
		if (out < 0 || err < 0)
			abort();
	}
	/* The same bytes with more after them probe the same: only the first ones count. */
	if (size > DISK_PROBE_LEN && disk_probe_format(data, size) != kind)
		abort();
	fd = memfd_create("fuzz-img-info", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	for (int json = 0; json <= 1; json++) {
		ret = run_info(path, json, out, err);
		o = take(out, &olen);
		e = take(err, &elen);
		check_terminal_safe(o, olen);
		check_terminal_safe(e, elen);
		if (ret == 0 && !json) {
			const char *want = kind == DISK_FORMAT_QCOW2 ? "\nfile format: qcow2\n" :
								       "\nfile format: raw\n";

			if (!memmem(o, olen, want, strlen(want)))
				abort();
		}
		/* A failure says why in one line and prints no half image. */
		if (ret && (elen == 0 || memchr(e, '\n', elen) != e + elen - 1))
			abort();
		if (json && !utf8_valid(o, olen))
			abort();
		free(o);
		free(e);
	}
	close(fd);
	return 0;
}
