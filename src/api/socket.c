// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/socket.h"

int api_sock_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (geteuid() == 0)
		n = snprintf(buf, len, "/run/nkvm");
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/nkvm", xdg);
	else
		n = snprintf(buf, len, "/tmp/nkvm-%u", (unsigned int)geteuid());
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int api_sock_dir_make(const char *dir)
{
	struct stat st;

	/* /run exists on any Linux; a missing parent elsewhere is the user's to make. */
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	/* Others must not reach the sockets, nor swap them for their own. */
	if (st.st_uid != geteuid() || (st.st_mode & 077))
		return -EPERM;
	return 0;
}

int api_sock_dir_for(char *buf, size_t len, uid_t uid)
{
	struct stat st;
	char run[64];
	int n;

	snprintf(run, sizeof(run), "/run/user/%u", (unsigned int)uid);
	if (lstat(run, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid)
		n = snprintf(buf, len, "%s/nkvm", run);
	else
		n = snprintf(buf, len, "/tmp/nkvm-%u", (unsigned int)uid);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int api_sock_dir_make_for(const char *dir, uid_t uid, gid_t gid)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	/* Ours (root's) is handed over; lchown: dir is no symlink (lstat said so). */
	if (st.st_uid == geteuid() && st.st_uid != uid) {
		if (lchown(dir, uid, gid) < 0)
			return -errno;
		st.st_uid = uid;
	}
	if (st.st_uid != uid || (st.st_mode & 077))
		return -EPERM;
	return 0;
}

int api_sock_link(const char *link, const char *target)
{
	struct stat st;
	int c;

	if (symlink(target, link) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (lstat(link, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode) && !S_ISLNK(st.st_mode))
		return -EEXIST;
	/* As api_sock_listen: someone answering holds the name; nobody (or no socket): stale. */
	c = api_sock_connect(link);
	if (c >= 0) {
		close(c);
		return -EADDRINUSE;
	}
	if (c != -ECONNREFUSED && c != -ENOENT)
		return c;
	if (unlink(link) < 0 && errno != ENOENT)
		return -errno;
	return symlink(target, link) < 0 ? -errno : 0;
}

int api_sock_path(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s" API_SOCK_SUFFIX, dir, name);

	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

static int sock_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int api_sock_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd, err = sock_addr(path, &sa);

	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int api_sock_listen(const char *path)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, err = sock_addr(path, &sa);

	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int c;

		err = -errno;
		if (err != -EADDRINUSE)
			goto fail;
		/* A symlink is api_sock_link's, to a --user guest's socket. */
		if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode) && !S_ISLNK(st.st_mode)) {
			err = -EEXIST;
			goto fail;
		}
		/* Someone answering means a live guest has the name; nobody means a stale one. */
		c = api_sock_connect(path);
		if (c >= 0) {
			close(c);
			goto fail;
		}
		if (c != -ECONNREFUSED && !(c == -ENOENT && S_ISLNK(st.st_mode))) {
			err = c;
			goto fail;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			err = -errno;
			goto fail;
		}
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			err = -errno;
			goto fail;
		}
	}
	/* The directory (0700) already keeps others out; the mode says so once more. */
	if (chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		err = -errno;
		unlink(path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return err;
}
