// SPDX-License-Identifier: MIT
/* libFuzzer target: hostile modules.dep / modules.builtin text through the module resolver. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/moddep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const wanted[] = { "virtio_blk", "virtio-rng", "ext4", "a", "b" };
	struct moddep_result r;
	char *text = malloc(size + 1);
	char *builtin;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	/* The first NUL splits the input: modules.dep, then modules.builtin. */
	builtin = text + strlen(text);
	builtin = builtin < text + size ? builtin + 1 : NULL;
	if (moddep_resolve(text, builtin, wanted, sizeof(wanted) / sizeof(wanted[0]), &r) == 0)
		moddep_result_free(&r);
	free(text);
	return 0;
}
