// SPDX-License-Identifier: MIT
/*
 * An ELF vmlinux for the PVH boot (xen docs/misc/pvh.pandoc): the ELF header and program headers
 * (System V gABI, "ELF Header" and "Program Header"), the PT_LOAD segments to place at their
 * physical addresses, and the Xen note that names the 32-bit entry point. Every field is read
 * from the file once and checked against the file's size before use.
 */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "arch/x86/elf.h"
#include "lib/util.h"

/*
 * xen/include/public/elfnote.h: "XEN_ELFNOTE_PHYS32_ENTRY 18", the physical 32-bit entry point
 * for a kernel started in an HVM container with paging off. Not in linux-libc-dev.
 */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
/* Notes of the Xen owner are named "Xen" (namesz 4, with the NUL). */
#define XEN_NOTE_NAME "Xen"

/* gABI "Note Section": name and descriptor are each padded to 4 bytes. */
#define NOTE_ALIGN(x) ALIGN_UP((uint64_t)(x), 4)

bool elf_is_elf(const uint8_t *data, size_t len)
{
	return len >= SELFMAG && !memcmp(data, ELFMAG, SELFMAG);
}

int elf_read(const struct elf_source *src, void *buf, size_t len, uint64_t off)
{
	if (off > src->size || len > src->size - off)
		return -EIO;
	if (src->data) {
		memcpy(buf, src->data + off, len);
		return 0;
	}
	return pread_full(src->fd, buf, len, off);
}

/* [off, off + len) lies inside a file of `size` bytes, without overflow. */
static bool in_file(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/*
 * Walks one PT_NOTE segment's notes; sets *entry and *found on the PVH entry note. Returns 0 or
 * -EINVAL with the reason in err.
 */
static int parse_notes(const uint8_t *notes, uint64_t len, uint32_t *entry, bool *found, char *err,
		       size_t errlen)
{
	uint64_t at = 0;

	while (len - at >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr n;
		uint64_t name_at, desc_at;

		memcpy(&n, notes + at, sizeof(n));
		name_at = at + sizeof(n);
		desc_at = name_at + NOTE_ALIGN(n.n_namesz);
		if (NOTE_ALIGN(n.n_namesz) > len - name_at ||
		    NOTE_ALIGN(n.n_descsz) > len - desc_at)
			return err_set(
				err, errlen, -EINVAL,
				"malformed ELF note: its sizes run past its PT_NOTE segment");
		if (n.n_namesz == sizeof(XEN_NOTE_NAME) &&
		    !memcmp(notes + name_at, XEN_NOTE_NAME, sizeof(XEN_NOTE_NAME)) &&
		    n.n_type == XEN_ELFNOTE_PHYS32_ENTRY) {
			uint64_t v;

			if (n.n_descsz != 4 && n.n_descsz != 8)
				return err_set(err, errlen, -EINVAL,
					       "XEN_ELFNOTE_PHYS32_ENTRY note of %u bytes "
					       "(want 4 or 8)",
					       n.n_descsz);
			v = get_le(notes + desc_at, n.n_descsz);
			if (v > UINT32_MAX)
				return err_set(err, errlen, -EINVAL,
					       "PVH entry point %#llx is above 4 GiB",
					       (unsigned long long)v);
			*entry = (uint32_t)v;
			*found = true;
		}
		at = desc_at + NOTE_ALIGN(n.n_descsz);
	}
	return 0;
}

static int check_header(const Elf64_Ehdr *eh, uint64_t size, char *err, size_t errlen)
{
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG))
		return err_set(err, errlen, -EINVAL, "no ELF magic");
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64 || eh->e_type != ET_EXEC)
		return err_set(err, errlen, -EINVAL,
			       "not a 64-bit little-endian x86 ELF executable");
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return err_set(err, errlen, -EINVAL, "ELF program header size %u, not %zu",
			       eh->e_phentsize, sizeof(Elf64_Phdr));
	if (eh->e_phnum == 0 || eh->e_phnum > ELF_MAX_PHNUM)
		return err_set(err, errlen, -EINVAL,
			       "ELF header counts %u program headers (want 1 to %u)", eh->e_phnum,
			       ELF_MAX_PHNUM);
	if (!in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), size))
		return err_set(err, errlen, -EINVAL,
			       "truncated: ELF program headers past the end of the file");
	return 0;
}

static int add_load(struct elf_kernel *k, const Elf64_Phdr *ph, unsigned int i, uint64_t size,
		    char *err, size_t errlen)
{
	struct elf_segment *s = &k->load[k->nr_load];

	if (ph->p_filesz > ph->p_memsz)
		return err_set(err, errlen, -EINVAL,
			       "PT_LOAD segment %u: file size %#llx larger than memory size %#llx",
			       i, (unsigned long long)ph->p_filesz,
			       (unsigned long long)ph->p_memsz);
	if (!in_file(ph->p_offset, ph->p_filesz, size))
		return err_set(err, errlen, -EINVAL,
			       "truncated: PT_LOAD segment %u runs past the end of the file", i);
	if (ph->p_paddr + ph->p_memsz < ph->p_paddr)
		return err_set(err, errlen, -EINVAL,
			       "PT_LOAD segment %u wraps around the address space", i);
	*s = (struct elf_segment){ ph->p_offset, ph->p_paddr, ph->p_filesz, ph->p_memsz };
	k->nr_load++;
	if (s->paddr + s->memsz > k->end)
		k->end = s->paddr + s->memsz;
	return 0;
}

int elf_parse_kernel(const struct elf_source *src, struct elf_kernel *k, char *err, size_t errlen)
{
	Elf64_Phdr ph[ELF_MAX_PHNUM];
	uint8_t notes[ELF_MAX_NOTES_SIZE];
	uint64_t notes_len = 0;
	bool found = false;
	Elf64_Ehdr eh;
	int ret;

	memset(k, 0, sizeof(*k));
	if (src->size < sizeof(eh) || elf_read(src, &eh, sizeof(eh), 0))
		return err_set(err, errlen, -EINVAL, "truncated: file shorter than an ELF header");
	ret = check_header(&eh, src->size, err, errlen);
	if (ret)
		return ret;
	if (elf_read(src, ph, eh.e_phnum * sizeof(ph[0]), eh.e_phoff))
		return err_set(err, errlen, -EIO, "cannot read the ELF program headers");
	for (unsigned int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD) {
			ret = add_load(k, &ph[i], i, src->size, err, errlen);
			if (ret)
				return ret;
		} else if (ph[i].p_type == PT_NOTE) {
			if (ph[i].p_filesz > sizeof(notes) - notes_len)
				return err_set(err, errlen, -EINVAL,
					       "ELF notes larger than %u KiB in all",
					       ELF_MAX_NOTES_SIZE / 1024);
			if (!in_file(ph[i].p_offset, ph[i].p_filesz, src->size))
				return err_set(err, errlen, -EINVAL,
					       "truncated: PT_NOTE segment %u runs past the end "
					       "of the file",
					       i);
			if (elf_read(src, notes + notes_len, ph[i].p_filesz, ph[i].p_offset))
				return err_set(err, errlen, -EIO, "cannot read the ELF notes");
			ret = parse_notes(notes + notes_len, ph[i].p_filesz, &k->pvh_entry, &found,
					  err, errlen);
			if (ret)
				return ret;
			notes_len += ph[i].p_filesz;
		}
	}
	if (!k->nr_load)
		return err_set(err, errlen, -EINVAL, "no PT_LOAD segment");
	if (!found)
		return err_set(
			err, errlen, -EINVAL,
			"no XEN_ELFNOTE_PHYS32_ENTRY note: the kernel has no PVH entry point");
	for (unsigned int i = 0; i < k->nr_load; i++) {
		const struct elf_segment *s = &k->load[i];

		if (k->pvh_entry >= s->paddr && k->pvh_entry - s->paddr < s->filesz)
			return 0;
	}
	return err_set(err, errlen, -EINVAL,
		       "PVH entry point %#x is outside the kernel's PT_LOAD segments",
		       k->pvh_entry);
}
