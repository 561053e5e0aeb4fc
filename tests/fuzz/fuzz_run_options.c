// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: `nkvm run`'s command line through run_parse_options, and so getopt's table,
 * the generic options (-m sizes, -c counts, --name, --engine) and every device type's argument
 * through kvopt_parse and its check (-d disk,key=value..., -n with hostfwd and MACs, --share
 * and --root paths and tags, --vsock CIDs, --console, --rng, --no-balloon). The input is argv
 * after "run": arguments separated by NUL bytes. Whatever they are: the parse ends with 0 or an
 * error message, never more devices than slots, the limits of run_options.h hold after a 0, and
 * run_options_free leaves nothing behind (LeakSanitizer sees the rest).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/run_options.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[MAX_ARGS + 2], *text, err[256];
	struct run_options o;
	int argc = 0, r;

	/* A heap copy, NUL-terminated, so that ASan sees any read past the last argument. */
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	argv[argc++] = "run";
	for (char *p = text; argc <= MAX_ARGS && p <= text + size; p += strlen(p) + 1)
		argv[argc++] = p;
	argv[argc] = NULL;

	err[0] = 0;
	r = run_parse_options(argc, argv, &o, err, sizeof(err));
	if (r && (r != -1 || !err[0]))
		abort(); /* a failure always says why */
	if (o.nr_devices > RUN_MAX_DEVICES)
		abort();
	if (!r && !o.help) {
		if (o.mem < RUN_MIN_MEM || o.mem % 4096 || !o.cpus || o.cpus > RUN_MAX_CPUS)
			abort();
		for (unsigned int i = 0; i < o.nr_devices; i++)
			if (!o.devices[i].type || (!o.devices[i].cfg && !o.devices[i].type->by_default))
				abort();
		/* The guest's command is what follows "--", within argv. */
		if (o.cmd && (o.cmd <= argv || o.cmd > argv + argc || strcmp(o.cmd[-1], "--")))
			abort();
	}
	run_options_free(&o);
	free(text);
	return 0;
}
