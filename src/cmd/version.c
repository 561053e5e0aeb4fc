// SPDX-License-Identifier: MIT
#include <stdio.h>

#include "cmd/cmd.h"

#ifndef NKVM_VERSION
#define NKVM_VERSION "0.1.0"
#endif

int cmd_version(int argc, char **argv)
{
	printf("nkvm %s\n", NKVM_VERSION);
	return 0;
}
