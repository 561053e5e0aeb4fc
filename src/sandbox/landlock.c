// SPDX-License-Identifier: MIT
/*
 * Landlock (Documentation/userspace-api/landlock.rst) through its three system calls: glibc
 * 2.36 has no wrappers. One ruleset for the process, built once set-up is over; each thread
 * joins it in sandbox_enter.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/landlock.h"

/*
 * Rights newer than Debian 12's UAPI headers (Linux 6.1, ABI 2), with the values of the
 * kernel's include/uapi/linux/landlock.h: the kernel that runs may be newer than the headers.
 */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14) /* ABI 3, Linux 6.2 */
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15) /* ABI 5, Linux 6.10 */
#endif

/* The rights that apply to a file itself; the others are rights on a directory's entries. */
#define FS_FILE_RIGHTS                                                \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
	 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE | \
	 LANDLOCK_ACCESS_FS_IOCTL_DEV)

#define FS_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define FS_READ_WRITE (FS_READ | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)
/*
 * A share: what the FUSE server does for a guest (files, directories, symlinks, hard links,
 * fifos and sockets; renames across directories: REFER). Never a device node (its MKNOD of one
 * is EPERM anyway), EXECUTE (nkvm runs nothing from a share) or IOCTL_DEV.
 */
#define FS_TREE                                                                           \
	(FS_READ_WRITE | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE | \
	 LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |                      \
	 LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |                    \
	 LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER)
#define FS_SOCKETS (LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_REMOVE_FILE)

struct landlock_path {
	int fd; /* O_PATH: the object named at landlock_allow, whatever the path names later */
	dev_t dev; /* the object's identity, so that naming it again adds no descriptor */
	ino_t ino;
	uint64_t access;
};

/* One per process, as the Landlock domain it becomes: filled in set-up, on the main thread. */
static struct {
	struct landlock_path *paths;
	unsigned int nr;
	int ruleset_fd; /* -1: none prepared */
} ll = { .ruleset_fd = -1 };

/* Every file-system right that this ABI knows: the kernel refuses a mask with unknown bits. */
static uint64_t handled_fs(int abi)
{
	uint64_t h = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1: EXECUTE..MAKE_SYM */

	if (abi >= 2)
		h |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		h |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		h |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return h;
}

int landlock_abi(void)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	/* ENOSYS: not built in; EOPNOTSUPP: built in but not enabled (lsm= on the command line). */
	return v > 0 ? (int)v : 0;
}

static uint64_t access_rights(enum landlock_access access)
{
	switch (access) {
	case LANDLOCK_READ:
		return FS_READ;
	case LANDLOCK_READ_WRITE:
		return FS_READ_WRITE;
	case LANDLOCK_TREE:
		return FS_TREE;
	case LANDLOCK_SOCKETS:
		return FS_SOCKETS;
	}
	return 0;
}

int landlock_allow(const char *path, enum landlock_access access)
{
	struct landlock_path *p;
	uint64_t rights = access_rights(access);
	struct stat st;
	int fd;

	if (!rights)
		return -EINVAL;
	/* Opened now, so that the rule is for this object whatever is renamed later. */
	fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	if (!S_ISDIR(st.st_mode))
		rights &= FS_FILE_RIGHTS;
	/* Two shares of one directory, two NICs' resolv.conf: one rule with both's rights. */
	for (unsigned int i = 0; i < ll.nr; i++) {
		if (ll.paths[i].dev == st.st_dev && ll.paths[i].ino == st.st_ino) {
			ll.paths[i].access |= rights;
			close(fd);
			return 0;
		}
	}
	p = realloc(ll.paths, (ll.nr + 1) * sizeof(*p));
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	ll.paths = p;
	ll.paths[ll.nr++] = (struct landlock_path){
		.fd = fd, .dev = st.st_dev, .ino = st.st_ino, .access = rights
	};
	return 0;
}

static void forget_paths(void)
{
	for (unsigned int i = 0; i < ll.nr; i++)
		close(ll.paths[i].fd);
	free(ll.paths);
	ll.paths = NULL;
	ll.nr = 0;
}

int landlock_prepare(void)
{
	int abi = landlock_abi(), fd, err = 0;
	struct landlock_ruleset_attr attr = { 0 };
	uint64_t handled;

	if (!abi) {
		forget_paths();
		return -EOPNOTSUPP;
	}
	handled = handled_fs(abi);
	attr.handled_access_fs = handled;
	fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (fd < 0) {
		forget_paths();
		return -errno;
	}
	for (unsigned int i = 0; i < ll.nr && !err; i++) {
		struct landlock_path_beneath_attr rule = {
			.allowed_access = ll.paths[i].access & handled,
			.parent_fd = ll.paths[i].fd,
		};

		/* A right this kernel does not know (TRUNCATE on ABI 2) is simply not handled. */
		if (!rule.allowed_access)
			continue;
		if (syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0)
			err = -errno;
	}
	/* The ruleset holds what it needs of each path: the descriptors can go. */
	forget_paths();
	if (err) {
		close(fd);
		return err;
	}
	if (ll.ruleset_fd >= 0)
		close(ll.ruleset_fd);
	ll.ruleset_fd = fd;
	return 0;
}

int landlock_enter(void)
{
	/* Needs no_new_privs (or CAP_SYS_ADMIN): sandbox_enter sets it first. */
	if (ll.ruleset_fd < 0)
		return 0;
	if (syscall(SYS_landlock_restrict_self, ll.ruleset_fd, 0) < 0)
		return -errno;
	return 0;
}
