// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/paths.h"

/* The XDG base directory spec says a relative XDG_CACHE_HOME is invalid and must be ignored. */
static const char *cache_home_env(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME");

	if (xdg && xdg[0] == '/')
		return xdg;
	return NULL;
}

int nkvm_cache_path(char *buf, size_t len, const char *name)
{
	const char *xdg = cache_home_env();
	const char *home = getenv("HOME");
	const char *sep = (name && name[0]) ? "/" : "";
	int n;

	if (!name)
		name = "";
	if (xdg)
		n = snprintf(buf, len, "%s/nkvm%s%s", xdg, sep, name);
	else if (home && home[0])
		n = snprintf(buf, len, "%s/.cache/nkvm%s%s", home, sep, name);
	else
		return -ENOENT;
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}
