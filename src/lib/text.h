/* SPDX-License-Identifier: MIT */
/*
 * Strings from untrusted bytes (names read from an image) made safe to show: for a terminal,
 * which must not act on escapes hidden in them, and for JSON, which must stay valid JSON in
 * valid UTF-8 whatever the bytes are.
 */
#ifndef NKVM_LIB_TEXT_H
#define NKVM_LIB_TEXT_H

#include <stddef.h>
#include <stdio.h>

/* The room text_escape needs for a string of n bytes: every byte may become \xNN. */
#define TEXT_ESCAPED_SIZE(n) (4 * (n) + 1)

/*
 * s for a terminal, in dst[len] (always terminated; cut short, between escapes, when it does not
 * fit): printable ASCII and valid UTF-8 from U+00A0 on as they are, a backslash as \\, and every
 * other byte (control characters, DEL, C1 controls, bytes that are not UTF-8) as \xNN. Returns
 * dst.
 */
char *text_escape(char *dst, size_t len, const char *s);

/*
 * s as a JSON string, quotes included, to f (RFC 8259 §7): quote and backslash escaped, control
 * characters (C0, DEL, C1) as \u00XX, valid UTF-8 as it is, and each byte that is not part of
 * valid UTF-8 as \ufffd (RFC 8259 §8.1: JSON text is UTF-8).
 */
void text_json_string(FILE *f, const char *s);

#endif
