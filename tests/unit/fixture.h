/* SPDX-License-Identifier: MIT */
/*
 * What the unit tests that work on files share: a fresh directory per test (removed by its
 * teardown), paths in it, and shell commands (qemu-img, qemu-io) run in it. Linked into every
 * unit test (the Makefile's rule).
 */
#ifndef NKVM_TESTS_FIXTURE_H
#define NKVM_TESTS_FIXTURE_H

#include <stddef.h>

/* Where fx_sh_status sends a command's output, in the test's directory. */
#define FX_SH_LOG "sh.log"

/*
 * Makes BASE/nkvm-TAG-XXXXXX (BASE NULL: $TMPDIR, else /tmp) into dir. Returns 0, or -1 with
 * errno from mkdtemp.
 */
int fx_dir_make(char *dir, size_t len, const char *base, const char *tag);

/*
 * DIR/NAME. The string lives until eight more calls on this thread, so a test may hold a few
 * at once (a copy's source and destination). Fails the test when the path is too long.
 */
const char *fx_dir_path(const char *dir, const char *name);

/*
 * Runs the command (printf-style) with sh in dir, its stdout and stderr to FX_SH_LOG there.
 * Returns its exit status, 128 when it did not exit.
 */
int fx_sh_status(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* fx_sh_status, failing the test with the command and its output when the status is not 0. */
void fx_sh(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Threads of this process named as disk pool workers (nkvm-disk-io), from /proc/self/task. */
unsigned int fx_disk_io_threads(void);

#endif
