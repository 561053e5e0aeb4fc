// SPDX-License-Identifier: MIT
/* nkvm: the command table. Each subcommand lives in src/cmd/. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{ "run", cmd_run, "boot a Linux guest (nkvm run --help)" },
	{ "list", cmd_list, "list running guests: NAME PID STATE CPUS MEMORY UPTIME [--json]" },
	{ "pause", cmd_pause, "pause a running guest: nkvm pause NAME" },
	{ "resume", cmd_resume, "resume a paused guest: nkvm resume NAME" },
	{ "stat", cmd_stat, "a guest's state and counters: nkvm stat NAME [--json]" },
	{ "balloon", cmd_balloon, "set a guest's memory target: nkvm balloon NAME SIZE" },
	{ "img", cmd_img, "create, inspect and check disk images (nkvm img --help)" },
	{ "setup", cmd_setup, "prepare the default guest: kernel and initramfs" },
	{ "version", cmd_version, "print nkvm's version" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: nkvm COMMAND [ARGS...]\n\nnkvm runs Linux guests under KVM.\n\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "nkvm: %s: unknown command (see nkvm --help)\n", argv[1]);
	return 2;
}
