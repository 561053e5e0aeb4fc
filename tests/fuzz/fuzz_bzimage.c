// SPDX-License-Identifier: MIT
/* libFuzzer target: a hostile kernel image through the bzImage checks and the boot loader. */
#include <stdint.h>
#include <stdlib.h>

#include "arch/x86/boot.h"
#include "lib/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_memory mem;
	static const uint8_t initrd[64];
	struct boot_blob blob = { initrd, sizeof(initrd) };
	struct bzimage k;
	char why[256] = "";

	if (!mem.base && memory_init(&mem, 64 * MiB))
		abort();
	if (bzimage_parse(data, size, size, &k, why, sizeof(why)))
		return 0;
	/* Whatever the header claims, loading must stay inside guest RAM or fail cleanly. */
	boot_load(&mem, &k, "console=ttyS0", &blob, 1, 0xe0000, why, sizeof(why));
	return 0;
}
