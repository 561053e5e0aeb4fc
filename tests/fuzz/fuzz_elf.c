// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile ELF kernel through the ELF and note checks, then, when they pass,
 * the PVH loader's segment checks and loading into a small guest RAM (with an initrd, whose
 * place the segments may collide with).
 */
#include <stdint.h>
#include <stdlib.h>

#include "arch/x86/pvh.h"
#include "lib/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_memory mem;
	static const uint8_t initrd[4096];
	struct boot_blob blob = { initrd, sizeof(initrd), -1 };
	struct elf_source src = { .data = data, .fd = -1, .size = size };
	struct elf_kernel k;
	char why[256] = "";

	if (!mem.base && memory_init(&mem, 64 * MiB))
		abort();
	if (elf_parse_kernel(&src, &k, why, sizeof(why)))
		return 0;
	/* Whatever the headers claim, loading must stay inside guest RAM or fail cleanly. */
	pvh_load(&mem, &k, &src, "console=ttyS0", &blob, 1, 0xe0000, why, sizeof(why));
	return 0;
}
