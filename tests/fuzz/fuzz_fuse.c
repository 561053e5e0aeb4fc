// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: hostile FUSE requests through the whole server (fs/fuse_server.h) on a
 * scratch share it makes under /tmp, remade for every input. The input is a run of requests,
 * each [u16 length][u8 reply size][u8 cut][length bytes: fuse_in_header and arguments, raw],
 * cut into up to three buffers. After each input nothing outside the share may have changed: a
 * canary file beside it keeps its contents, mode and mtime, and nothing appears next to it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fuse.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fuse_server.h"

#define CANARY "outside the share\n"

static char top[64], share[96], outside[96], canary[128], linked[128];
static struct stat canary_st;

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void put(const char *name, const char *text)
{
	char p[256];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", share, name);
	fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0)
			abort();
		close(fd);
	}
}

/* The share as each input finds it: files, a directory, escapes planted by the host. */
static void share_make(void)
{
	char p[256], q[256];

	nftw(share, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(share, 0755))
		abort();
	put("file", "0123456789abcdef");
	snprintf(p, sizeof(p), "%s/dir", share);
	mkdir(p, 0755);
	put("dir/inner", "inner");
	snprintf(p, sizeof(p), "%s/abs", share);
	symlink(outside, p);
	snprintf(p, sizeof(p), "%s/rel", share);
	symlink("../outside/canary", p);
	snprintf(p, sizeof(p), "%s/proc", share);
	symlink("/proc/self/root", p);
	snprintf(p, sizeof(p), "%s/fifo", share);
	mkfifo(p, 0644);
	/* A host hard link to a file outside: the guest may change that file (it is inside). */
	snprintf(q, sizeof(q), "%s/hard", share);
	link(linked, q);
}

static void outside_check(void)
{
	struct stat st;
	char buf[64] = "";
	DIR *d;
	int fd, n = 0;

	if (stat(canary, &st) || st.st_size != canary_st.st_size ||
	    st.st_mtim.tv_sec != canary_st.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != canary_st.st_mtim.tv_nsec || st.st_uid != canary_st.st_uid ||
	    st.st_mode != canary_st.st_mode || st.st_nlink != 1)
		abort();
	fd = open(canary, O_RDONLY);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) < 0 || strcmp(buf, CANARY))
		abort();
	close(fd);
	d = opendir(outside);
	for (struct dirent *de; d && (de = readdir(d));)
		n++;
	if (!d || n != 4) /* ".", "..", canary, linked: nothing new */
		abort();
	closedir(d);
	d = opendir(top);
	n = 0;
	for (struct dirent *de; d && (de = readdir(d));)
		n++;
	if (!d || n != 4) /* ".", "..", share, outside */
		abort();
	closedir(d);
}

static void cleanup(void)
{
	nftw(top, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void scratch_make(void)
{
	struct rlimit fsize = { 16 << 20, 16 << 20 };
	int fd;

	snprintf(top, sizeof(top), "/tmp/nkvm-fuzz-fuse-XXXXXX");
	if (!mkdtemp(top))
		abort();
	snprintf(share, sizeof(share), "%s/share", top);
	snprintf(outside, sizeof(outside), "%s/outside", top);
	snprintf(canary, sizeof(canary), "%s/canary", outside);
	snprintf(linked, sizeof(linked), "%s/linked", outside);
	mkdir(outside, 0755);
	fd = open(linked, O_CREAT | O_WRONLY, 0644);
	if (fd < 0)
		abort();
	close(fd);
	fd = open(canary, O_CREAT | O_WRONLY, 0444);
	if (fd < 0 || write(fd, CANARY, strlen(CANARY)) < 0)
		abort();
	close(fd);
	if (stat(canary, &canary_st))
		abort();
	/* Files the guest grows stay small: past 16 MiB writes fail with EFBIG. */
	signal(SIGXFSZ, SIG_IGN);
	setrlimit(RLIMIT_FSIZE, &fsize);
	atexit(cleanup);
}

/* FALLOCATE with KEEP_SIZE is not held by RLIMIT_FSIZE: keep its length small. */
static void clamp(uint8_t *req, size_t len)
{
	struct fuse_in_header h;
	struct fuse_fallocate_in fa;

	if (len < sizeof(h) + sizeof(fa))
		return;
	memcpy(&h, req, sizeof(h));
	if (h.opcode != FUSE_FALLOCATE)
		return;
	memcpy(&fa, req + sizeof(h), sizeof(fa));
	fa.length &= (1 << 20) - 1;
	fa.offset &= (16 << 20) - 1;
	memcpy(req + sizeof(h), &fa, sizeof(fa));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t reply_sizes[] = { 0, 8, 16, 17, 24, 64, 144, 160, 4096, 135168 };
	struct fuse_server_config cfg = { NULL, false, 32, 8 };
	struct fuse_server *srv;
	static uint8_t *reply;
	char err[256];

	if (!top[0])
		scratch_make();
	if (!reply)
		reply = malloc(135168);
	share_make();
	cfg.root = share;
	cfg.readonly = size && (data[0] & 0x80);
	if (fuse_server_create(&srv, &cfg, err, sizeof(err)))
		abort();
	while (size >= 4) {
		size_t len = data[0] | (size_t)data[1] << 8, cap = reply_sizes[data[2] % 10];
		unsigned int cut = data[3];
		struct iovec riov[3], oiov[2];
		uint8_t *req;
		size_t a, b, got;

		data += 4;
		size -= 4;
		if (len > size)
			len = size;
		/* A heap copy of exactly the request, so that ASan sees any read past it. */
		req = malloc(len ? len : 1);
		memcpy(req, data, len);
		clamp(req, len);
		a = len ? (cut & 15) % (len + 1) : 0;
		b = a + (len - a ? (cut >> 4) * 7 % (len - a + 1) : 0);
		riov[0] = (struct iovec){ req, a };
		riov[1] = (struct iovec){ req + a, b - a };
		riov[2] = (struct iovec){ req + b, len - b };
		oiov[0] = (struct iovec){ reply, cap < 16 ? cap : 16 };
		oiov[1] = (struct iovec){ reply + oiov[0].iov_len, cap - oiov[0].iov_len };
		got = fuse_server_handle(srv, riov, 3, oiov, 2);
		if (got > cap)
			abort();
		free(req);
		data += len;
		size -= len;
	}
	fuse_server_destroy(srv);
	outside_check();
	return 0;
}
