/* SPDX-License-Identifier: MIT */
/*
 * A small, well-formed PVH kernel ELF built in memory, for the tests that need one (test_pvh,
 * test_setup_vmlinux): tests break one field at a time through the pointers it returns.
 */
#ifndef NKVM_TESTS_ELF_FIXTURE_H
#define NKVM_TESTS_ELF_FIXTURE_H

#include <elf.h>
#include <stdint.h>
#include <string.h>

#define EF_SIZE 0x3000
#define EF_NOTE_OFF 0x200 /* a GNU build-id note, then Xen's PHYS32_ENTRY (type 18) */
#define EF_TEXT_OFF 0x1000
#define EF_TEXT_PADDR 0x1000000ULL /* where Linux links itself: 16 MiB */
#define EF_TEXT_FILESZ 0x2000
#define EF_TEXT_MEMSZ 0x5000 /* with .bss */
#define EF_ENTRY (EF_TEXT_PADDR + 0x40)
#define EF_PHNUM 2 /* PT_LOAD, PT_NOTE */

struct ef {
	uint8_t buf[EF_SIZE];
	Elf64_Ehdr *eh;
	Elf64_Phdr *load, *note;
	uint8_t *entry_desc; /* the 4 bytes of the PVH entry note */
};

static inline void ef_note(uint8_t *p, size_t *at, const char *name, uint32_t type,
			   const void *desc, uint32_t descsz)
{
	Elf64_Nhdr n = { .n_namesz = strlen(name) + 1, .n_descsz = descsz, .n_type = type };

	memcpy(p + *at, &n, sizeof(n));
	*at += sizeof(n);
	memcpy(p + *at, name, n.n_namesz);
	*at += (n.n_namesz + 3) & ~3U;
	memcpy(p + *at, desc, descsz);
	*at += (descsz + 3) & ~3U;
}

static inline void ef_build(struct ef *e)
{
	static const uint8_t build_id[20] = { 1, 2, 3 };
	uint32_t entry = EF_ENTRY;
	size_t at = EF_NOTE_OFF;

	memset(e->buf, 0, sizeof(e->buf));
	e->eh = (Elf64_Ehdr *)e->buf;
	memcpy(e->eh->e_ident, ELFMAG, SELFMAG);
	e->eh->e_ident[EI_CLASS] = ELFCLASS64;
	e->eh->e_ident[EI_DATA] = ELFDATA2LSB;
	e->eh->e_ident[EI_VERSION] = EV_CURRENT;
	e->eh->e_type = ET_EXEC;
	e->eh->e_machine = EM_X86_64;
	e->eh->e_version = EV_CURRENT;
	e->eh->e_entry = EF_TEXT_PADDR;
	e->eh->e_phoff = sizeof(Elf64_Ehdr);
	e->eh->e_ehsize = sizeof(Elf64_Ehdr);
	e->eh->e_phentsize = sizeof(Elf64_Phdr);
	e->eh->e_phnum = EF_PHNUM;
	e->load = (Elf64_Phdr *)(e->buf + sizeof(Elf64_Ehdr));
	e->note = e->load + 1;
	*e->load = (Elf64_Phdr){ .p_type = PT_LOAD,
				 .p_offset = EF_TEXT_OFF,
				 .p_vaddr = 0xffffffff81000000ULL,
				 .p_paddr = EF_TEXT_PADDR,
				 .p_filesz = EF_TEXT_FILESZ,
				 .p_memsz = EF_TEXT_MEMSZ,
				 .p_align = 0x1000 };
	ef_note(e->buf, &at, "GNU", NT_GNU_BUILD_ID, build_id, sizeof(build_id));
	e->entry_desc = e->buf + at + sizeof(Elf64_Nhdr) + 4;
	ef_note(e->buf, &at, "Xen", 18, &entry, sizeof(entry));
	*e->note = (Elf64_Phdr){ .p_type = PT_NOTE,
				 .p_offset = EF_NOTE_OFF,
				 .p_filesz = at - EF_NOTE_OFF,
				 .p_memsz = at - EF_NOTE_OFF,
				 .p_align = 4 };
	/* Recognisable text: the loader's copy is checked byte for byte. */
	for (unsigned int i = 0; i < EF_TEXT_FILESZ; i++)
		e->buf[EF_TEXT_OFF + i] = (uint8_t)(i * 7 + 1);
}

#endif
