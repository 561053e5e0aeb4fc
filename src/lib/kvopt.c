// SPDX-License-Identifier: MIT
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/kvopt.h"
#include "lib/util.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Stores v in an unsigned integer (or bool, or enum) field of size bytes. */
static void store_int(void *p, size_t size, uint64_t v)
{
	switch (size) {
	case 1: {
		uint8_t x = v;

		memcpy(p, &x, 1);
		break;
	}
	case 2: {
		uint16_t x = v;

		memcpy(p, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = v;

		memcpy(p, &x, 4);
		break;
	}
	default: {
		uint64_t x = v;

		memcpy(p, &x, 8);
		break;
	}
	}
}

/* "1G", "64K" or a number of bytes, whichever is exact. */
static void size_text(uint64_t n, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && n && !(n % 1024)) {
		n /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu bytes", (unsigned long long)n);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)n, units[u]);
}

/* "raw or qcow2", "threads, aio or io_uring" */
static void names_text(const struct kvopt_name *names, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (const struct kvopt_name *n = names; n->name && at < len; n++) {
		const char *sep = n == names ? "" : !n[1].name ? " or " : ", ";

		at += snprintf(buf + at, len - at, "%s%s", sep, n->name);
	}
}

void kvopt_arg_text(const struct kvopt_spec *spec, char *buf, size_t len)
{
	static const char *const by_type[] = {
		[KVOPT_FLAG] = "",
		[KVOPT_STRING] = "TEXT",
		[KVOPT_UINT] = "N",
		[KVOPT_SIZE] = "SIZE",
	};
	size_t at = 0;

	if (spec->arg || spec->type != KVOPT_ENUM) {
		snprintf(buf, len, "%s", spec->arg ? spec->arg : by_type[spec->type]);
		return;
	}
	buf[0] = '\0';
	for (const struct kvopt_name *n = spec->names; n->name && at < len; n++)
		at += snprintf(buf + at, len - at, "%s%s", n == spec->names ? "" : "|", n->name);
}

/* Parses value for spec into out (the next array element for a repeatable key). */
static int store_value(const struct kvopt_spec *spec, bool positional, const char *value, void *out,
		       char *err, size_t errlen)
{
	uint8_t *field = (uint8_t *)out + spec->offset;
	char text[128];
	unsigned int count = 0, u;
	uint64_t n;

	if (spec->repeat) {
		memcpy(&count, (uint8_t *)out + spec->count_offset, sizeof(count));
		if (count >= spec->repeat)
			return fail(err, errlen, "at most %u %s values", spec->repeat, spec->key);
		field += (size_t)count * spec->size;
	}
	switch (spec->type) {
	case KVOPT_FLAG:
		store_int(field, spec->size, 1);
		break;
	case KVOPT_STRING:
		if (positional && !*value)
			return fail(err, errlen, "no %s given", spec->key);
		if (spec->max && strlen(value) > spec->max)
			return fail(err, errlen, "%s is at most %llu characters", spec->key,
				    (unsigned long long)spec->max);
		memcpy(field, &value, sizeof(value));
		break;
	case KVOPT_UINT:
		if (parse_uint(value, spec->min, spec->max ? spec->max : UINT_MAX, &u))
			return fail(err, errlen, "%s must be %llu to %llu", spec->key,
				    (unsigned long long)spec->min,
				    (unsigned long long)(spec->max ? spec->max : UINT_MAX));
		store_int(field, spec->size, u);
		break;
	case KVOPT_SIZE:
		if (parse_size(value, 1, &n) || n < spec->min)
			return fail(err, errlen, "%s is a size (try 1M)", spec->key);
		if (spec->max && n > spec->max) {
			size_text(spec->max, text, sizeof(text));
			return fail(err, errlen, "%s is at most %s", spec->key, text);
		}
		store_int(field, spec->size, n);
		break;
	case KVOPT_ENUM:
		for (const struct kvopt_name *nm = spec->names; nm->name; nm++) {
			if (!strcmp(value, nm->name)) {
				store_int(field, spec->size, (uint64_t)(int64_t)nm->value);
				goto stored;
			}
		}
		names_text(spec->names, text, sizeof(text));
		/* A positional value has no key to name: "--console tty7: serial or virtio". */
		if (positional)
			return fail(err, errlen, "%s", text);
		return fail(err, errlen, "%s must be %s", spec->key, text);
	}
stored:
	if (spec->repeat) {
		count++;
		memcpy((uint8_t *)out + spec->count_offset, &count, sizeof(count));
	}
	return 0;
}

static const struct kvopt_spec *find_key(const struct kvopt_set *set, const char *field, size_t len)
{
	for (const struct kvopt_spec *s = set->keys; s && s->key; s++)
		if (strlen(s->key) == len && !strncmp(s->key, field, len))
			return s;
	return NULL;
}

int kvopt_parse(const struct kvopt_set *set, char *text, void *out, char *err, size_t errlen)
{
	char *rest = text, *field, *save = NULL;
	int r;

	if (set->positional) {
		/* Without keys the whole text is the value: "--console virtio,x" is no console. */
		rest = set->keys ? strchr(text, ',') : NULL;
		if (rest)
			*rest++ = '\0';
		r = store_value(set->positional, true, text, out, err, errlen);
		if (r)
			return r;
	}
	for (field = rest ? strtok_r(rest, ",", &save) : NULL; field;
	     field = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(field, '=');
		const struct kvopt_spec *s =
			find_key(set, field, eq ? (size_t)(eq - field) : strlen(field));

		/* A flag takes no value and a key needs one: "ro=1" and "serial" are unknown. */
		if (!s || (s->type == KVOPT_FLAG) != !eq)
			return fail(err, errlen, "unknown %s option '%s'", set->noun, field);
		r = store_value(s, false, eq ? eq + 1 : NULL, out, err, errlen);
		if (r)
			return r;
	}
	return 0;
}
