// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "fixture.h"
#include "lib/file.h"

int fx_dir_make(char *dir, size_t len, const char *base, const char *tag)
{
	if (!base) {
		base = getenv("TMPDIR");
		if (!base || !*base)
			base = "/tmp";
	}
	if ((size_t)snprintf(dir, len, "%s/nkvm-%s-XXXXXX", base, tag) >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return mkdtemp(dir) ? 0 : -1;
}

const char *fx_dir_path(const char *dir, const char *name)
{
	static __thread char buf[8][PATH_MAX];
	static __thread unsigned int next;
	char *p = buf[next++ % 8];

	assert_int_equal(file_path(p, PATH_MAX, "%s/%s", dir, name), 0);
	return p;
}

static int sh_va(const char *dir, const char *fmt, va_list ap, char *cmd, size_t len)
{
	int n, st;

	n = snprintf(cmd, len, "cd '%s' && (", dir);
	n += vsnprintf(cmd + n, len - n, fmt, ap);
	assert_true((size_t)n < len);
	n += snprintf(cmd + n, len - n, ") >%s 2>&1", FX_SH_LOG);
	assert_true((size_t)n < len);
	st = system(cmd);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int fx_sh_status(const char *dir, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	int st;

	va_start(ap, fmt);
	st = sh_va(dir, fmt, ap, cmd, sizeof(cmd));
	va_end(ap);
	return st;
}

void fx_sh(const char *dir, const char *fmt, ...)
{
	char cmd[8192], *out = NULL;
	va_list ap;
	int st;

	va_start(ap, fmt);
	st = sh_va(dir, fmt, ap, cmd, sizeof(cmd));
	va_end(ap);
	if (!st)
		return;
	file_read_text(fx_dir_path(dir, FX_SH_LOG), &out, NULL);
	fail_msg("command failed (status %d): %s\n%s", st, cmd, out ? out : "");
}

unsigned int fx_disk_io_threads(void)
{
	DIR *dir = opendir("/proc/self/task");
	struct dirent *e;
	unsigned int n = 0;

	assert_non_null(dir);
	while ((e = readdir(dir))) {
		char p[PATH_MAX], comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(p, "re");
		if (!f)
			continue; /* a thread that just exited */
		if (fgets(comm, sizeof(comm), f) && !strcmp(comm, "nkvm-disk-io\n"))
			n++;
		fclose(f);
	}
	closedir(dir);
	return n;
}
