// SPDX-License-Identifier: MIT
/*
 * The FUSE server against a real FUSE client: the host kernel's, through /dev/fuse (one request
 * per read, one reply per write, as virtio-fs carries them), on a scratch directory mounted with
 * virtio-fs's options (default_permissions, allow_other). So the protocol is the kernel's own,
 * not the tests' idea of it. Skipped where /dev/fuse or mount(2) is not allowed (not root).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "fs/fuse_server.h"

#define NTHREADS 3

struct fx {
	char dir[PATH_MAX - 64];
	char src[PATH_MAX], mnt[PATH_MAX];
	struct fuse_server *srv;
	int dev;
	pthread_t t[NTHREADS];
	bool mounted;
};

static char mounted_at[PATH_MAX];

/*
 * A test stuck on a request the server never answers would wait in the kernel for good (the
 * server is in this process): abort the connection, so that it fails instead.
 */
static void on_alarm(int sig)
{
	static const char msg[] = "test_fuse_kernel: timed out; aborting the FUSE connection\n";

	(void)!write(2, msg, sizeof(msg) - 1);
	umount2(mounted_at, MNT_FORCE);
	umount2(mounted_at, MNT_DETACH);
	_exit(1);
}

/* One request queue: what a virtio-fs queue thread does with a chain. */
static void *serve(void *arg)
{
	struct fx *f = arg;
	size_t size = (1 << 20) + 8192;
	uint8_t *in = malloc(size), *out = malloc(size);

	for (;;) {
		ssize_t n = read(f->dev, in, size);
		struct iovec ri = { in, (size_t)n }, oi = { out, size };
		size_t got;

		if (n < 0 && (errno == EINTR || errno == ENOENT || errno == EAGAIN))
			continue;
		if (n < 0)
			break; /* ENODEV: unmounted */
		got = fuse_server_handle(f->srv, &ri, 1, &oi, 1);
		if (got && write(f->dev, out, got) < 0 && errno != ENOENT)
			break;
	}
	free(in);
	free(out);
	return NULL;
}

static int setup(void **state)
{
	struct fuse_server_config cfg = { 0 };
	struct fx *f = calloc(1, sizeof(*f));
	char err[256], opts[256];

	assert_non_null(f);
	assert_int_equal(fx_dir_make(f->dir, sizeof(f->dir), NULL, "fusek"), 0);
	snprintf(f->src, sizeof(f->src), "%s/src", f->dir);
	snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", f->dir);
	assert_int_equal(mkdir(f->src, 0755), 0);
	assert_int_equal(mkdir(f->mnt, 0755), 0);
	*state = f;
	f->dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (f->dev < 0)
		return 0;
	snprintf(opts, sizeof(opts),
		 "fd=%d,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other",
		 f->dev);
	if (mount("nkvm-test", f->mnt, "fuse.nkvm", MS_NOSUID | MS_NODEV, opts))
		return 0;
	f->mounted = true;
	cfg.root = f->src;
	assert_int_equal(fuse_server_create(&f->srv, &cfg, err, sizeof(err)), 0);
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&f->t[i], NULL, serve, f), 0);
	snprintf(mounted_at, sizeof(mounted_at), "%s", f->mnt);
	signal(SIGALRM, on_alarm);
	alarm(60);
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->mounted) {
		umount2(f->mnt, MNT_DETACH);
		for (int i = 0; i < NTHREADS; i++)
			pthread_join(f->t[i], NULL);
		fuse_server_destroy(f->srv);
	}
	alarm(0);
	if (f->dev >= 0)
		close(f->dev);
	fx_sh(f->dir, "rm -rf '%s'", f->dir);
	free(f);
	return 0;
}

static const char *in(struct fx *f, const char *root, const char *name)
{
	return fx_dir_path(root, name);
}

#define NEED_MOUNT(f)                                                        \
	do {                                                                 \
		if (!(f)->mounted)                                           \
			skip(); /* no /dev/fuse or no right to mount here */ \
	} while (0)

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void test_kernel_reads_a_host_tree_as_the_host_sees_it(void **state)
{
	struct fx *f = *state;
	static char big[3 << 20], back[3 << 20];
	struct stat hs, gs;
	char target[64] = "";
	unsigned int n = 0;
	DIR *d;
	int fd;

	NEED_MOUNT(f);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 13 + i / 4093);
	write_file(in(f, f->src, "big"), big, sizeof(big));
	assert_int_equal(mkdir(in(f, f->src, "d"), 0750), 0);
	for (int i = 0; i < 1500; i++) {
		char name[64];

		snprintf(name, sizeof(name), "d/entry-%d-\xc3\xbcnicode", i);
		write_file(in(f, f->src, name), name, strlen(name));
	}
	assert_int_equal(symlink("d/entry-1-\xc3\xbcnicode", in(f, f->src, "sl")), 0);
	assert_int_equal(link(in(f, f->src, "big"), in(f, f->src, "hl")), 0);
	assert_int_equal(mkfifo(in(f, f->src, "fifo"), 0600), 0);

	fd = open(in(f, f->mnt, "big"), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, back, sizeof(back)), (ssize_t)sizeof(back));
	close(fd);
	assert_memory_equal(back, big, sizeof(big));
	for (const char *const *p = (const char *const[]){ "big", "hl", "d", "sl", "fifo", NULL };
	     *p; p++) {
		assert_int_equal(lstat(in(f, f->src, *p), &hs), 0);
		assert_int_equal(lstat(in(f, f->mnt, *p), &gs), 0);
		assert_int_equal(gs.st_ino, hs.st_ino);
		assert_int_equal(gs.st_mode, hs.st_mode);
		assert_int_equal(gs.st_nlink, hs.st_nlink);
		assert_int_equal(gs.st_size, hs.st_size);
		assert_int_equal(gs.st_uid, hs.st_uid);
		assert_int_equal(gs.st_mtim.tv_sec, hs.st_mtim.tv_sec);
		assert_int_equal(gs.st_mtim.tv_nsec, hs.st_mtim.tv_nsec);
	}
	assert_int_equal(readlink(in(f, f->mnt, "sl"), target, sizeof(target)),
			 (ssize_t)strlen("d/entry-1-\xc3\xbcnicode"));
	d = opendir(in(f, f->mnt, "d"));
	assert_non_null(d);
	for (struct dirent *de; (de = readdir(d));)
		n++;
	closedir(d);
	assert_int_equal(n, 1502);
}

static void test_kernel_changes_reach_the_host_exactly(void **state)
{
	struct fx *f = *state;
	char buf[64] = "";
	struct stat st;
	char *m;
	int fd;

	NEED_MOUNT(f);
	assert_int_equal(mkdir(in(f, f->mnt, "dir"), 0700), 0);
	write_file(in(f, f->mnt, "dir/a"), "0123456789", 10);
	assert_int_equal(rename(in(f, f->mnt, "dir/a"), in(f, f->mnt, "b")), 0);
	assert_int_equal(truncate(in(f, f->mnt, "b"), 4), 0);
	fd = open(in(f, f->mnt, "b"), O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "xy", 2), 2);
	assert_int_equal(fsync(fd), 0);
	close(fd);
	fd = open(in(f, f->src, "b"), O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof(buf)), 6);
	close(fd);
	assert_string_equal(buf, "0123xy");
	/* A shared mapping written through the page cache and synced. */
	fd = open(in(f, f->mnt, "mapped"), O_RDWR | O_CREAT, 0640);
	assert_int_equal(ftruncate(fd, 8192), 0);
	m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	memcpy(m + 5000, "mapped!", 7);
	assert_int_equal(msync(m, 8192, MS_SYNC), 0);
	munmap(m, 8192);
	close(fd);
	fd = open(in(f, f->src, "mapped"), O_RDONLY);
	assert_int_equal(pread(fd, buf, 7, 5000), 7);
	close(fd);
	assert_memory_equal(buf, "mapped!", 7);
	assert_int_equal(stat(in(f, f->src, "mapped"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(setxattr(in(f, f->mnt, "b"), "user.k", "v", 1, 0), 0);
	assert_int_equal(getxattr(in(f, f->src, "b"), "user.k", buf, sizeof(buf)), 1);
	assert_int_equal(unlink(in(f, f->mnt, "b")), 0);
	assert_int_equal(rmdir(in(f, f->mnt, "dir")), 0);
	assert_int_equal(access(in(f, f->src, "b"), F_OK), -1);
	assert_int_equal(access(in(f, f->src, "dir"), F_OK), -1);
	/* Devices are refused, fifos made. */
	assert_int_equal(mknod(in(f, f->mnt, "blk"), S_IFBLK | 0600, 0x801), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(mkfifo(in(f, f->mnt, "fi"), 0600), 0);
	assert_int_equal(lstat(in(f, f->src, "fi"), &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kernel_reads_a_host_tree_as_the_host_sees_it,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_changes_reach_the_host_exactly, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
