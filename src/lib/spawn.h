/* SPDX-License-Identifier: MIT */
/* Running another program (apt-get, dpkg-deb, depmod, …) without a shell in between. */
#ifndef NKVM_LIB_SPAWN_H
#define NKVM_LIB_SPAWN_H

#include <stddef.h>

/*
 * Runs argv[0], searched in PATH, in directory cwd (NULL: ours) and waits for it. When out is
 * not NULL, its standard output is collected into *out (malloc'd and NUL-terminated; *out_len
 * bytes before the NUL; out_len may be NULL). Returns its exit status (0-255, 128+N when signal
 * N killed it), -ENOENT when there is no such program, or another negative errno.
 */
int spawn_run(char *const argv[], const char *cwd, char **out, size_t *out_len);

#endif
