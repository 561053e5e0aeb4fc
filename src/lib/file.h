/* SPDX-License-Identifier: MIT */
/* Whole-file and directory-tree helpers for the host side (setup, image tools). */
#ifndef NKVM_LIB_FILE_H
#define NKVM_LIB_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* snprintf into a path buffer: 0, or -ENAMETOOLONG when it did not fit. */
__attribute__((format(printf, 3, 4))) int file_path(char *buf, size_t len, const char *fmt, ...);
/*
 * read_file() (lib/util.h) for text: the buffer has a NUL after its len bytes (len may be
 * NULL). Returns 0 or a negative errno.
 */
int file_read_text(const char *path, char **out, size_t *len);
/* Writes path.tmp and renames it over path, so readers never see half a file. 0 or -errno. */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* mkdir -p. 0 or -errno. */
int file_mkdir_p(const char *path, mode_t mode);
/* rm -rf, without following symlinks; a missing path is not an error. 0 or -errno. */
int file_remove_tree(const char *path);

#endif
