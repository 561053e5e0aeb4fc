/* SPDX-License-Identifier: MIT */
/* Small helpers several modules need. */
#ifndef NKVM_LIB_UTIL_H
#define NKVM_LIB_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)
#define ALIGN_UP(x, a) (((x) + (a)-1) & ~((__typeof__(x))(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a)-1))

/*
 * Parses a size such as "512M", "2G", "1T", "4096K" or a bare number, which counts
 * default_unit bytes (MiB for -m, as in QEMU and kvmtool). Returns 0 or -EINVAL/-ERANGE.
 */
int parse_size(const char *s, uint64_t default_unit, uint64_t *out);
/* Parses a decimal unsigned int in [min, max]. Returns 0 or -EINVAL/-ERANGE. */
int parse_uint(const char *s, unsigned int min, unsigned int max, unsigned int *out);

/* Reads a whole file into a malloc'ed buffer. Returns 0 or a negative errno. */
int read_file(const char *path, uint8_t **buf, size_t *len);
/* Reads exactly len bytes at off; -EIO when the file ends first. Returns 0 or a negative errno. */
int pread_full(int fd, void *buf, size_t len, uint64_t off);
/* The same for pwrite: every byte written, or -errno (-EIO when nothing could be written). */
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Writes all of buf to fd, retrying short writes and EINTR. Returns 0 or a negative errno. */
int write_all(int fd, const void *buf, size_t len);
/*
 * Adds 1 to an eventfd (a wakeup). Returns 0 or a negative errno; the only failure of an
 * eventfd the caller made itself is a counter at 2^64 - 2 (EAGAIN), where the reader is due to
 * wake anyway, so callers that own the eventfd may ignore it.
 */
int eventfd_signal(int fd);
/*
 * The one error-text convention: a function that can say why it failed takes `char *err,
 * size_t errlen`, a buffer of the caller's that receives a one-line reason (without the file
 * name, which the caller adds) only on failure, and returns 0 or a negative errno. err_set
 * formats the reason (cut to errlen; nothing when err is NULL or errlen 0) and returns errnum,
 * so that a failure reads `return err_set(err, errlen, -EINVAL, "...", ...);`.
 */
int err_set(char *err, size_t errlen, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Little-endian fields of n (1 to 8) bytes in guest-visible structures (tables, registers). */
void put_le(uint8_t *p, uint64_t v, unsigned int n);
uint64_t get_le(const uint8_t *p, unsigned int n);

#endif
