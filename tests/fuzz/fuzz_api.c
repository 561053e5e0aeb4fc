// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the control API's request handling (src/api/handler.c) over made-up VM
 * hooks. Input: a method line, a path line, then the body. Whatever the bytes: the status is one
 * the API documents; every answer but 204 is one JSON value, an object with a string "error" for
 * 4xx/5xx; pause, resume, resize, power-button, shutdown and sysrq reach the VM only for a
 * well-formed PUT to their endpoint, and resize never with a balloon above the guest's memory;
 * a 204 is something done, but for a resize that names only the sizes the guest has.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/handler.h"

static int paused, calls;

static void info(void *opaque, struct api_vm_info *i)
{
	i->state = paused ? API_VM_PAUSED : API_VM_RUNNING;
	i->cpus = 2;
	i->mem_bytes = 256 << 20;
	i->name = "fuzz";
	i->pid = 1;
}

static void counters(void *opaque, api_counter_fn emit, void *ctx)
{
	emit(ctx, "vcpu0", "io", 1);
}

static int pause_vm(void *opaque)
{
	calls++;
	return paused ? -EALREADY : (paused = 1, 0);
}

static int resume_vm(void *opaque)
{
	calls++;
	return !paused ? -EALREADY : (paused = 0, 0);
}

static int resize_balloon(void *opaque, uint64_t bytes)
{
	calls++;
	return bytes > 256 << 20 ? (abort(), 0) : 0; /* the handler checked the size */
}

static int press(void *opaque)
{
	calls++;
	return paused ? -EALREADY : 0;
}

static int regs(void *opaque, struct api_vcpu_regs *out, unsigned int max)
{
	return max ? (out[0].id = 0, 1) : 0;
}

static int sysrq(void *opaque, char key)
{
	calls++;
	return paused ? -EALREADY : 0;
}

static const struct api_hooks hooks = {
	.vcpu_regs = regs,
	.sysrq = sysrq,
	.info = info,
	.counters = counters,
	.pause = pause_vm,
	.resume = resume_vm,
	.resize_balloon = resize_balloon,
	.power_button = press,
	.shutdown = press,
};

/* The next line of data (up to '\n' or the end) as a NUL-terminated string. */
static char *take_line(const uint8_t **data, size_t *size)
{
	const uint8_t *nl = memchr(*data, '\n', *size);
	size_t len = nl ? (size_t)(nl - *data) : *size;
	char *s = malloc(len + 1);

	if (!s)
		abort();
	memcpy(s, *data, len);
	s[len] = 0;
	*data += nl ? len + 1 : len;
	*size -= nl ? len + 1 : len;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *method = take_line(&data, &size), *path = take_line(&data, &size);
	struct json_object *o = NULL, *e;
	struct api_response r;
	int before = calls, status;

	status = api_handle(&hooks, method, path, (const char *)data, size, &r);
	if (status != r.status)
		abort();
	switch (status) {
	case 200:
	case 400:
	case 404:
	case 405:
	case 413:
		if (!r.body || !(o = json_tokener_parse(r.body)))
			abort();
		if (status != 200 && (!json_object_object_get_ex(o, "error", &e) ||
				      !json_object_is_type(e, json_type_string)))
			abort();
		break;
	case 204:
		if (r.body)
			abort();
		break;
	default:
		abort();
	}
	if (calls != before &&
	    (strcmp(method, "PUT") || size > API_BODY_MAX ||
	     (strcmp(path, "/api/v1/vm.pause") && strcmp(path, "/api/v1/vm.resume") &&
	      strcmp(path, "/api/v1/vm.resize") && strcmp(path, "/api/v1/vm.power-button") &&
	      strcmp(path, "/api/v1/vm.shutdown") && strcmp(path, "/api/v1/nkvm.sysrq"))))
		abort();
	/* Only a resize to the sizes the guest has already is done without the VM. */
	if (status == 204 && calls == before && strcmp(path, "/api/v1/vm.resize"))
		abort();
	json_object_put(o);
	api_response_free(&r);
	free(method);
	free(path);
	return 0;
}
