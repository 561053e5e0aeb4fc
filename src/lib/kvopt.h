/* SPDX-License-Identifier: MIT */
/*
 * One parser for every device argument: `VALUE[,key=value|flag]...`, as in `-d disk.img,ro,
 * queues=4`, `-n user,hostfwd=tcp::8080-:80,hostfwd=...` or `--vsock 3,socket=PATH`. A table of
 * specs says what each key is and where its value goes in the caller's struct; a message is one
 * line without the option in front, which the caller adds ("-d x.img,queues=0: " + "queues must
 * be 1 to 63"). Empty fields (",,") are skipped. A key given twice keeps the last value unless
 * its spec collects repeats into an array.
 */
#ifndef NKVM_LIB_KVOPT_H
#define NKVM_LIB_KVOPT_H

#include <stddef.h>
#include <stdint.h>

enum kvopt_type {
	KVOPT_FLAG, /* a bare word ("ro"): sets an integer or bool field to 1; no "=value" */
	KVOPT_STRING, /* a const char * into the parsed text; at most max characters if max */
	KVOPT_UINT, /* a decimal number in [min, max], into an unsigned integer field */
	KVOPT_SIZE, /* bytes, "4096", "64K", "1M"... in [min, max] (max 0: no bound) */
	KVOPT_ENUM, /* one of names: the name's value into an integer or enum field */
};

struct kvopt_name {
	const char *name; /* NULL ends the list */
	int value;
};

struct kvopt_spec {
	/* The key; for the positional value, what it is in words ("image file", "CID"). */
	const char *key;
	enum kvopt_type type;
	size_t offset, size; /* of the field in the caller's struct: KVOPT_AT / KVOPT_ARRAY */
	uint64_t min, max; /* UINT, SIZE: the range; STRING: max is the length limit */
	const struct kvopt_name *names; /* ENUM */
	/* Repeatable keys (KVOPT_ARRAY): up to `repeat` values, their count at count_offset. */
	unsigned int repeat;
	size_t count_offset;
	/* For help text: what the value looks like ("ID"; NULL: from the type or names), and
	 * what the key does, one short line. */
	const char *arg;
	const char *help;
};

/* Where a value goes: field member of the caller's struct type. */
#define KVOPT_AT(type, member) .offset = offsetof(type, member), .size = sizeof(((type *)0)->member)
/* A repeatable key: values into array member (its length is the limit), count into count. */
#define KVOPT_ARRAY(type, member, count)                                          \
	.offset = offsetof(type, member), .size = sizeof(((type *)0)->member[0]), \
	.repeat = sizeof(((type *)0)->member) / sizeof(((type *)0)->member[0]),   \
	.count_offset = offsetof(type, count)

/* The syntax of one argument. */
struct kvopt_set {
	const char *noun; /* "disk": "unknown disk option 'x'" */
	const struct kvopt_spec *positional; /* the leading value; NULL: none */
	const struct kvopt_spec *keys; /* ends with a NULL key; NULL: none */
};

/*
 * Parses text (cut in place: string values point into it) into out. Returns 0, or -EINVAL with
 * one line in err: "no image file given", "unknown disk option 'x'", "serial is at most 20
 * characters", "queues must be 1 to 63", "cache-size is a size (try 1M)", "cache-size is at most
 * 1G", "format must be raw or qcow2" (a positional enum: "serial or virtio"), "at most 4
 * hostfwd values".
 */
int kvopt_parse(const struct kvopt_set *set, char *text, void *out, char *err, size_t errlen);

/* What a spec's value looks like in help text: "ID", "N", "SIZE", "raw|qcow2". */
void kvopt_arg_text(const struct kvopt_spec *spec, char *buf, size_t len);

#endif
