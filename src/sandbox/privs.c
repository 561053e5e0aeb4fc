// SPDX-License-Identifier: MIT
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/privs.h"

/* A decimal id below 2^32 - 1 (-1 means "unchanged" to the set*id calls). */
static int parse_id(const char *s, size_t len, unsigned int *out)
{
	unsigned long long v = 0;

	if (!len || len > 10)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v >= 0xffffffffULL)
		return -EINVAL;
	*out = v;
	return 0;
}

int privs_parse_user(const char *arg, struct privs_user *u, char *err, size_t errlen)
{
	const char *colon = strchr(arg, ':');
	struct passwd pw, *found = NULL;
	char buf[4096];
	unsigned int uid, gid;

	if (colon) {
		if (parse_id(arg, colon - arg, &uid) ||
		    parse_id(colon + 1, strlen(colon + 1), &gid)) {
			snprintf(err, errlen, "--user %s: give a user name or UID:GID", arg);
			return -EINVAL;
		}
	} else {
		if (!*arg || getpwnam_r(arg, &pw, buf, sizeof(buf), &found) || !found) {
			snprintf(err, errlen, "--user %s: no such user (give a name or UID:GID)",
				 arg);
			return -ENOENT;
		}
		uid = found->pw_uid;
		gid = found->pw_gid;
	}
	if (uid == 0) {
		snprintf(err, errlen, "--user %s: that is root; name an unprivileged user", arg);
		return -EINVAL;
	}
	u->uid = uid;
	u->gid = gid;
	return 0;
}

/* True when the thread has no capability in any set (what setuid leaves must be nothing). */
static int caps_left(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &h, d) < 0)
		return -errno;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (d[i].effective || d[i].permitted || d[i].inheritable)
			return 1;
	return 0;
}

int privs_drop(const struct privs_user *u, char *err, size_t errlen)
{
	int r;

	/* Groups first: after setuid there is no right left to change them. */
	if (setgroups(0, NULL) < 0) {
		r = -errno;
		snprintf(err, errlen, "setgroups: %s", strerror(errno));
		return r;
	}
	if (setresgid(u->gid, u->gid, u->gid) < 0) {
		r = -errno;
		snprintf(err, errlen, "setresgid %u: %s", (unsigned int)u->gid, strerror(errno));
		return r;
	}
	/* All three ids: with the saved one left 0, the process could become root again. */
	if (setresuid(u->uid, u->uid, u->uid) < 0) {
		r = -errno;
		snprintf(err, errlen, "setresuid %u: %s", (unsigned int)u->uid, strerror(errno));
		return r;
	}
	r = caps_left();
	if (r) {
		snprintf(err, errlen, "capabilities left after setresuid %u%s%s",
			 (unsigned int)u->uid, r < 0 ? ": capget: " : "",
			 r < 0 ? strerror(-r) : "");
		return r < 0 ? r : -EPERM;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		r = -errno;
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return r;
	}
	return 0;
}
