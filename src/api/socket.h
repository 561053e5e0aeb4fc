/* SPDX-License-Identifier: MIT */
/*
 * Where a guest's control socket lives, and the socket itself: DIR/NAME.sock, DIR being
 * /run/nkvm for root and $XDG_RUNTIME_DIR/nkvm for others (/tmp/nkvm-UID without it), a
 * directory of mode 0700 holding sockets of mode 0600.
 */
#ifndef NKVM_API_SOCKET_H
#define NKVM_API_SOCKET_H

#include <stddef.h>

#define API_SOCK_SUFFIX ".sock"

/* The directory for this user's guests, in buf. Returns 0 or -ENAMETOOLONG. */
int api_sock_dir(char *buf, size_t len);

/*
 * Makes dir with mode 0700 when it is missing. Returns 0, -ENOTDIR, -EPERM when it is not ours
 * or others may enter it, or what mkdir said.
 */
int api_sock_dir_make(const char *dir);

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
