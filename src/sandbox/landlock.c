// SPDX-License-Identifier: MIT
/* A placeholder so that the seccomp branch links: the real Landlock comes from i19-landlock. */
#include <errno.h>

#include "sandbox/landlock.h"

int landlock_allow(const char *path, enum landlock_access access)
{
	return 0;
}

int landlock_prepare(void)
{
	return -EOPNOTSUPP;
}

int landlock_abi(void)
{
	return 0;
}

int landlock_enter(void)
{
	return 0;
}
