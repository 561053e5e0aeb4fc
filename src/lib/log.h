/* SPDX-License-Identifier: MIT */
/* One-line messages for people. Only code that can say something useful prints. */
#ifndef NKVM_LIB_LOG_H
#define NKVM_LIB_LOG_H

/* "nkvm: <message>\n" on stderr. */
void nkvm_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* nkvm_err, then exit(1). Only for main paths before the guest starts. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
