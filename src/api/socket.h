/* SPDX-License-Identifier: MIT */
/*
 * Where a guest's control socket lives, and the socket itself: DIR/NAME.sock, DIR being
 * /run/nkvm for root and $XDG_RUNTIME_DIR/nkvm for others (/tmp/nkvm-UID without it), a
 * directory of mode 0700 holding sockets of mode 0600.
 */
#ifndef NKVM_API_SOCKET_H
#define NKVM_API_SOCKET_H

#include <stddef.h>
#include <sys/types.h>

#define API_SOCK_SUFFIX ".sock"

/* The directory for this user's guests, in buf. Returns 0 or -ENAMETOOLONG. */
int api_sock_dir(char *buf, size_t len);

/*
 * Makes dir with mode 0700 when it is missing. Returns 0, -ENOTDIR, -EPERM when it is not ours
 * or others may enter it, or what mkdir said.
 */
int api_sock_dir_make(const char *dir);

/*
 * The directory uid's own nkvm uses, for a guest that root starts with --user: its
 * XDG_RUNTIME_DIR as systemd makes it (/run/user/UID, when that is uid's), else /tmp/nkvm-UID.
 * Returns 0 or -ENAMETOOLONG.
 */
int api_sock_dir_for(char *buf, size_t len, uid_t uid);

/*
 * As api_sock_dir_make, run by root for uid: a directory made (or left by an earlier run) by
 * root is handed to uid:gid; one that someone else owns is refused (-EPERM).
 */
int api_sock_dir_make_for(const char *dir, uid_t uid, gid_t gid);

/*
 * Root's way to a guest whose socket lives in its user's directory: a symlink at link (in root's
 * directory) to target. One left by a guest that ended is replaced. Returns 0, -EADDRINUSE when
 * a live guest answers at link, or another negative errno.
 */
int api_sock_link(const char *link, const char *target);

/* DIR/NAME.sock in buf. Returns 0 or -ENAMETOOLONG (also past sun_path's size). */
int api_sock_path(char *buf, size_t len, const char *dir, const char *name);

/*
 * Binds a listening socket at path (mode 0600). A socket already there that nobody answers on
 * (its guest died) is removed first. Returns the fd, -EADDRINUSE when a live guest answers on
 * path, -EEXIST when path is something other than a socket, or another negative errno.
 */
int api_sock_listen(const char *path);

/* Connects to path. Returns the fd; -ECONNREFUSED: a stale socket; -ENOENT: none. */
int api_sock_connect(const char *path);

#endif
