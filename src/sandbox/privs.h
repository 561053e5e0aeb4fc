/* SPDX-License-Identifier: MIT */
/*
 * --user: nkvm started as root only to open /dev/kvm, a TAP or /dev/vhost-* drops to an
 * ordinary user once they are open, before any thread enters the sandbox.
 */
#ifndef NKVM_SANDBOX_PRIVS_H
#define NKVM_SANDBOX_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct privs_user {
	uid_t uid;
	gid_t gid;
};

/*
 * USER as --user takes it: a user name (its passwd entry's uid and primary gid) or UID:GID.
 * root (uid 0) is refused: there would be nothing dropped. Returns 0, or -EINVAL (malformed)
 * or -ENOENT (no such user) with a one-line reason in err.
 */
int privs_parse_user(const char *arg, struct privs_user *u, char *err, size_t errlen);

/*
 * In set-up, on the main thread, while no other thread runs nkvm code (they wait in
 * sandbox_enter): no supplementary groups, then u's gid and uid (glibc changes every thread's),
 * checks that no capability is left, and sets no_new_privs. Returns 0, or a negative errno with
 * the step that failed in err.
 */
int privs_drop(const struct privs_user *u, char *err, size_t errlen);

#endif
