// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "cmd/run_devices.h"
#include "lib/util.h"

/*
 * The devices `nkvm run` knows, in creation order: PCI slots are given in this order (then in
 * command-line order within a type), so rng, console and disks keep the addresses they had;
 * NICs and vsock come after the disks for that reason.
 * --help lists them in this order too.
 */
/* clang-format off */
const struct device_type *const device_types[] = {
	&rng_device_type,
	&console_device_type,
	&disk_device_type,
	&net_device_type,
	&vsock_device_type,
	&share_device_type,
	&root_device_type,
	&balloon_device_type, /* by default: last, so that it moved no other device's slot */
	NULL,
};
/* clang-format on */

const char *device_type_label(const struct device_type *t, char *buf, size_t len)
{
	if (t->short_opt)
		snprintf(buf, len, "-%c", t->short_opt);
	else
		snprintf(buf, len, "--%s", t->long_opt);
	return buf;
}

/* Help columns: options at 2, their text at 23, a key's text at 23 + 21. */
#define HELP_COL 23
#define KEY_COL 21

static void print_lines(FILE *f, const char *text, int col)
{
	while (*text) {
		const char *nl = strchrnul(text, '\n');

		fprintf(f, "%*s%.*s\n", col, "", (int)(nl - text), text);
		text = *nl ? nl + 1 : nl;
	}
}

static void type_usage(FILE *f, const struct device_type *t)
{
	const struct kvopt_set *s = &t->syntax;
	char head[128], arg[96], text[512];
	const char *nl;
	int n;

	arg[0] = '\0';
	if (s->positional)
		kvopt_arg_text(s->positional, arg, sizeof(arg));
	if (s->keys)
		snprintf(arg + strlen(arg), sizeof(arg) - strlen(arg), "%s[,OPTION]...",
			 s->positional ? "" : "OPTION");
	if (t->short_opt)
		n = snprintf(head, sizeof(head), "  -%c, --%s%s%s", t->short_opt, t->long_opt,
			     *arg ? " " : "", arg);
	else
		n = snprintf(head, sizeof(head), "      --%s%s%s", t->long_opt, *arg ? " " : "",
			     arg);
	n = snprintf(text, sizeof(text), "%s", t->help);
	if (t->max > 1)
		n += snprintf(text + n, sizeof(text) - n, "\n(repeatable, up to %u)", t->max);
	if (s->keys)
		snprintf(text + n, sizeof(text) - n, "%sOPTIONs:", t->max > 1 ? ". " : "\n");
	/* The first line beside the option when it leaves room, as in getopt programs' help. */
	nl = text;
	if (strlen(head) < HELP_COL - 1) {
		nl = strchrnul(text, '\n');
		fprintf(f, "%-*s%.*s\n", HELP_COL, head, (int)(nl - text), text);
		if (*nl)
			nl++;
	} else {
		fprintf(f, "%s\n", head);
	}
	print_lines(f, nl, HELP_COL);
	for (const struct kvopt_spec *k = s->keys; k && k->key; k++) {
		char key[96];

		kvopt_arg_text(k, arg, sizeof(arg));
		n = snprintf(key, sizeof(key), "%s%s%s", k->key, *arg ? "=" : "", arg);
		if (n < KEY_COL - 2)
			fprintf(f, "%*s%-*s%s\n", HELP_COL + 2, "", KEY_COL - 2, key, k->help);
		else
			fprintf(f, "%*s%s\n%*s%s\n", HELP_COL + 2, "", key, HELP_COL + KEY_COL, "",
				k->help);
	}
}

void device_types_usage(FILE *f)
{
	for (const struct device_type *const *t = device_types; *t; t++)
		type_usage(f, *t);
}

int devices_create(struct device_list *list, struct device_context *ctx,
		   const struct run_device *devs, unsigned int nr, char *err, size_t errlen)
{
	for (const struct device_type *const *t = device_types; *t; t++) {
		ctx->index = 0;
		for (unsigned int i = 0; i < nr; i++) {
			void *dev = NULL;
			int r;

			if (devs[i].type != *t)
				continue;
			if (list->nr == ARRAY_SIZE(list->devs)) {
				snprintf(err, errlen, "too many devices: at most %zu",
					 ARRAY_SIZE(list->devs));
				return -ENOSPC;
			}
			r = (*t)->create(ctx, devs[i].cfg, &dev, err, errlen);
			if (r)
				return r;
			ctx->index++;
			if (dev)
				list->devs[list->nr++] = (struct created_device){ *t, dev };
		}
	}
	return 0;
}

void devices_destroy(struct device_list *list)
{
	while (list->nr) {
		struct created_device *c = &list->devs[--list->nr];

		c->type->destroy(c->dev);
	}
}
