/* SPDX-License-Identifier: MIT */
/*
 * A small writer of ACPI Machine Language (ACPI 6.x §20): just the terms nkvm's DSDT uses.
 * Every function appends to the buffer; an overflow is remembered and reported once at the end.
 */
#ifndef NKVM_ARCH_X86_AML_H
#define NKVM_ARCH_X86_AML_H

#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *p;
	size_t size, len;
	int overflow;
};

void aml_bytes(struct aml *a, const void *data, size_t len);
void aml_byte(struct aml *a, uint8_t b);
/* An integer in the shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix). */
void aml_integer(struct aml *a, uint64_t v);
/* A name: a 4-character segment, optionally with a leading '\' for the root. */
void aml_name_string(struct aml *a, const char *name);
/* Name(name, <object appended next by the caller>) */
void aml_name(struct aml *a, const char *name);

/*
 * Terms that carry a PkgLength (Scope, Device, Package, Buffer): open returns a mark that close
 * uses to patch the length once the body is written.
 */
size_t aml_scope_open(struct aml *a, const char *name);
size_t aml_device_open(struct aml *a, const char *name);
size_t aml_package_open(struct aml *a, uint8_t nr_elements);
size_t aml_buffer_open(struct aml *a);
void aml_close(struct aml *a, size_t mark);
/* Closes a Buffer: its BufferSize operand is patched too. */
void aml_buffer_close(struct aml *a, size_t mark);

/* "PNP0A03" → the 32-bit compressed EISA ID, as EisaId() in ASL. */
uint32_t aml_eisa_id(const char *id);

/* Resource descriptors (ACPI §6.4), for a ResourceTemplate inside a Buffer. */
void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max);
void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max);
void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max);
void aml_res_end(struct aml *a);

#endif
