// SPDX-License-Identifier: MIT
#include <string.h>

#include "arch/x86/aml.h"

#define AML_ZERO 0x00
#define AML_ONE 0x01
#define AML_NAME 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE 0x10
#define AML_BUFFER 0x11
#define AML_PACKAGE 0x12
#define AML_EXT_PREFIX 0x5b
#define AML_DEVICE 0x82
#define AML_ROOT_CHAR '\\'

/* PkgLength is written in its 4-byte form and patched on close: legal, and one pass. */
#define PKGLEN_BYTES 4

/* Resource descriptor flags (ACPI §6.4.3.5): a producer with fixed min and max. */
#define RES_FLAGS_PRODUCER_FIXED 0x0c
#define RES_TYPE_MEM 0
#define RES_TYPE_IO 1
#define RES_TYPE_BUS 2

void aml_bytes(struct aml *a, const void *data, size_t len)
{
	if (a->overflow || len > a->size - a->len) {
		a->overflow = 1;
		return;
	}
	memcpy(a->p + a->len, data, len);
	a->len += len;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned int bytes)
{
	for (unsigned int i = 0; i < bytes; i++)
		aml_byte(a, v >> (8 * i));
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO);
	} else if (v == 1) {
		aml_byte(a, AML_ONE);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

void aml_name_string(struct aml *a, const char *name)
{
	char seg[4] = { '_', '_', '_', '_' };
	size_t n;

	if (*name == AML_ROOT_CHAR) {
		aml_byte(a, AML_ROOT_CHAR);
		name++;
	}
	/* A NameSeg is exactly four characters, padded with '_'. */
	n = strlen(name);
	memcpy(seg, name, n < 4 ? n : 4);
	aml_bytes(a, seg, 4);
}

void aml_name(struct aml *a, const char *name)
{
	aml_byte(a, AML_NAME);
	aml_name_string(a, name);
}

static size_t aml_pkg_open(struct aml *a)
{
	size_t mark = a->len;

	aml_le(a, 0, PKGLEN_BYTES);
	return mark;
}

void aml_close(struct aml *a, size_t mark)
{
	size_t len = a->len - mark; /* PkgLength counts its own bytes */
	uint8_t *p = a->p + mark;

	if (a->overflow)
		return;
	p[0] = (uint8_t)(((PKGLEN_BYTES - 1) << 6) | (len & 0x0f));
	p[1] = (uint8_t)(len >> 4);
	p[2] = (uint8_t)(len >> 12);
	p[3] = (uint8_t)(len >> 20);
}

size_t aml_scope_open(struct aml *a, const char *name)
{
	size_t mark;

	aml_byte(a, AML_SCOPE);
	mark = aml_pkg_open(a);
	aml_name_string(a, name);
	return mark;
}

size_t aml_device_open(struct aml *a, const char *name)
{
	size_t mark;

	aml_byte(a, AML_EXT_PREFIX);
	aml_byte(a, AML_DEVICE);
	mark = aml_pkg_open(a);
	aml_name_string(a, name);
	return mark;
}

size_t aml_package_open(struct aml *a, uint8_t nr_elements)
{
	size_t mark;

	aml_byte(a, AML_PACKAGE);
	mark = aml_pkg_open(a);
	aml_byte(a, nr_elements);
	return mark;
}

size_t aml_buffer_open(struct aml *a)
{
	size_t mark;

	aml_byte(a, AML_BUFFER);
	mark = aml_pkg_open(a);
	/* BufferSize as a DWord, patched on close. */
	aml_byte(a, AML_DWORD_PREFIX);
	aml_le(a, 0, 4);
	return mark;
}

void aml_buffer_close(struct aml *a, size_t mark)
{
	size_t body = mark + PKGLEN_BYTES + 5;
	uint32_t size = (uint32_t)(a->len - body);

	if (a->overflow)
		return;
	for (unsigned int i = 0; i < 4; i++)
		a->p[mark + PKGLEN_BYTES + 1 + i] = (uint8_t)(size >> (8 * i));
	aml_close(a, mark);
}

uint32_t aml_eisa_id(const char *id)
{
	/* Three letters in 5 bits each, then four hex digits; stored big-endian. */
	uint32_t v = ((uint32_t)(id[0] - '@') << 26) | ((uint32_t)(id[1] - '@') << 21) |
		     ((uint32_t)(id[2] - '@') << 16);

	for (int i = 3; i < 7; i++) {
		char c = id[i];
		uint32_t d = (c >= '0' && c <= '9') ? (uint32_t)(c - '0') :
						      (uint32_t)((c | 0x20) - 'a' + 10);

		v |= d << (4 * (6 - i));
	}
	return __builtin_bswap32(v);
}

static void aml_res_address(struct aml *a, uint8_t tag, uint8_t type, uint8_t type_flags,
			    unsigned int width, uint64_t min, uint64_t max)
{
	aml_byte(a, tag);
	aml_le(a, 3 + 5 * width, 2); /* length of what follows the length field */
	aml_byte(a, type);
	aml_byte(a, RES_FLAGS_PRODUCER_FIXED);
	aml_byte(a, type_flags);
	aml_le(a, 0, width); /* granularity */
	aml_le(a, min, width);
	aml_le(a, max, width);
	aml_le(a, 0, width); /* translation offset */
	aml_le(a, max - min + 1, width);
}

void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max)
{
	aml_res_address(a, 0x88, RES_TYPE_BUS, 0, 2, min, max);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	aml_byte(a, 0x47); /* small item "I/O port", 7 bytes */
	aml_byte(a, 0x01); /* decodes 16 address bits */
	aml_le(a, base, 2);
	aml_le(a, base, 2);
	aml_byte(a, 1); /* alignment */
	aml_byte(a, len);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
	aml_res_address(a, 0x88, RES_TYPE_IO, 0x03, 2, min, max); /* entire range */
}

void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max)
{
	aml_res_address(a, 0x87, RES_TYPE_MEM, 0x01, 4, min, max); /* read-write */
}

void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max)
{
	aml_res_address(a, 0x8a, RES_TYPE_MEM, 0x01, 8, min, max);
}

void aml_res_end(struct aml *a)
{
	aml_byte(a, 0x79); /* end tag */
	aml_byte(a, 0x00); /* checksum 0: "treat as correct" */
}
