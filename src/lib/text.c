// SPDX-License-Identifier: MIT
/* Escaping untrusted strings for a terminal and for JSON (text.h). */
#include <stdint.h>
#include <stdio.h>

#include "lib/text.h"

/*
 * The length of the well-formed UTF-8 sequence at s (1 to 4), its code point in *cp; 0 when the
 * bytes there are not one: overlong forms, surrogates and code points past U+10FFFF are
 * ill-formed (RFC 3629 §3). s is NUL-terminated, and a NUL is never a continuation byte.
 */
static unsigned int utf8_seq(const unsigned char *s, uint32_t *cp)
{
	uint32_t c = s[0], min;
	unsigned int n;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, c &= 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3, c &= 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (unsigned int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* C0 controls, DEL and C1 controls: what terminals act on. */
static int is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp < 0xa0);
}

char *text_escape(char *dst, size_t len, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	if (!len)
		return dst;
	while (*p) {
		uint32_t cp;
		unsigned int n = utf8_seq(p, &cp);
		char esc[5];
		size_t elen;

		if (n && !is_control(cp) && cp != '\\') {
			if (o + n >= len)
				break;
			for (unsigned int i = 0; i < n; i++)
				dst[o++] = (char)p[i];
			p += n;
			continue;
		}
		/* One byte at a time: each byte of a control or ill-formed sequence shows. */
		if (*p == '\\')
			elen = (size_t)snprintf(esc, sizeof(esc), "\\\\");
		else
			elen = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", *p);
		if (o + elen >= len)
			break;
		for (size_t i = 0; i < elen; i++)
			dst[o++] = esc[i];
		p++;
	}
	dst[o] = '\0';
	return dst;
}

void text_json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		uint32_t cp;
		unsigned int n = utf8_seq(p, &cp);

		if (!n) {
			fputs("\\ufffd", f);
			p++;
		} else if (cp == '"' || cp == '\\') {
			fprintf(f, "\\%c", (char)cp);
			p++;
		} else if (is_control(cp)) {
			fprintf(f, "\\u%04x", (unsigned int)cp);
			p += n;
		} else {
			fwrite(p, 1, n, f);
			p += n;
		}
	}
	fputc('"', f);
}
