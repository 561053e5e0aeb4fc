// SPDX-License-Identifier: MIT
/*
 * What the virtio-fs integration tests (suite.sh, test_fs_*) need and busybox lacks, as one
 * static program run both in the test host and in the guest (from a share):
 *   fs_helper setxattr PATH NAME VALUE | getxattr PATH NAME | listxattr PATH
 *   fs_helper mmapwrite PATH OFFSET TEXT   (MAP_SHARED, msync)
 *   fs_helper fsync PATH
 *   fs_helper openmany PATH N SECONDS     (opens PATH N times and holds them, printing
 *                                           "held K failed F" first; then closes all and
 *                                           opens it once more: "reopen ok")
 *   fs_helper runas UID:GID PROG ARGS...   (no groups, that gid and uid, then PROG: the --user
 *                                           tests' unprivileged client; busybox has no setpriv
 *                                           --reuid)
 * Exit status 0, or 1 with the errno's text on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/xattr.h>
#include <unistd.h>

static int fail(const char *what)
{
	fprintf(stderr, "fs_helper: %s: %s\n", what, strerror(errno));
	return 1;
}

static int mmapwrite(const char *path, long off, const char *text)
{
	size_t len = strlen(text), page = sysconf(_SC_PAGESIZE), base = off & ~(page - 1);
	int fd = open(path, O_RDWR);
	char *p;

	if (fd < 0)
		return fail(path);
	p = mmap(NULL, off - base + len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, base);
	if (p == MAP_FAILED)
		return fail("mmap");
	memcpy(p + (off - base), text, len);
	if (msync(p, off - base + len, MS_SYNC) < 0)
		return fail("msync");
	munmap(p, off - base + len);
	return close(fd) < 0 ? fail("close") : 0;
}

static int openmany(const char *path, long n, int seconds)
{
	struct rlimit rl = { n + 64, n + 64 };
	long held = 0, failed = 0;
	int *fds = calloc(n, sizeof(*fds)), fd, first_err = 0;

	if (!fds)
		return fail("calloc");
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return fail("setrlimit");
	for (long i = 0; i < n; i++) {
		fd = open(path, O_RDONLY);
		if (fd >= 0) {
			fds[held++] = fd;
		} else {
			failed++;
			if (!first_err)
				first_err = errno;
		}
	}
	printf("held %ld failed %ld (%s)\n", held, failed, first_err ? strerror(first_err) : "-");
	fflush(stdout);
	sleep(seconds);
	while (held)
		close(fds[--held]);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return fail("reopen");
	printf("reopen ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	char buf[65536];
	ssize_t n;
	int fd;

	if (argc == 5 && !strcmp(argv[1], "setxattr"))
		return setxattr(argv[2], argv[3], argv[4], strlen(argv[4]), 0) < 0 ? fail(argv[2]) :
										     0;
	if (argc == 4 && !strcmp(argv[1], "getxattr")) {
		n = getxattr(argv[2], argv[3], buf, sizeof(buf) - 1);
		if (n < 0)
			return fail(argv[2]);
		printf("%.*s\n", (int)n, buf);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "listxattr")) {
		n = listxattr(argv[2], buf, sizeof(buf));
		if (n < 0)
			return fail(argv[2]);
		for (char *p = buf; p < buf + n; p += strlen(p) + 1)
			printf("%s\n", p);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "mmapwrite"))
		return mmapwrite(argv[2], atol(argv[3]), argv[4]);
	if (argc == 3 && !strcmp(argv[1], "fsync")) {
		fd = open(argv[2], O_RDWR);
		if (fd < 0 || fsync(fd) < 0)
			return fail(argv[2]);
		return close(fd) < 0 ? fail(argv[2]) : 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "runas")) {
		unsigned int uid, gid;

		if (sscanf(argv[2], "%u:%u", &uid, &gid) != 2)
			return fail("runas: UID:GID");
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			return fail("runas");
		execvp(argv[3], argv + 3);
		return fail(argv[3]);
	}
	if (argc == 5 && !strcmp(argv[1], "openmany"))
		return openmany(argv[2], atol(argv[3]), atoi(argv[4]));
	fprintf(stderr,
		"usage: fs_helper setxattr|getxattr|listxattr|mmapwrite|fsync|openmany|runas ...\n");
	return 2;
}
