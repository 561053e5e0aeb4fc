// SPDX-License-Identifier: MIT
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handler.h"

#ifndef NKVM_VERSION
#define NKVM_VERSION "0.1.0"
#endif

const char *api_vm_state_name(enum api_vm_state s)
{
	switch (s) {
	case API_VM_RUNNING:
		return "Running";
	case API_VM_PAUSED:
		return "Paused";
	default:
		return "Shutdown";
	}
}

static int respond_json(struct api_response *r, int status, struct json_object *o)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

	r->status = status;
	r->body = text ? strdup(text) : NULL;
	json_object_put(o);
	/* Out of memory: a 500 without a body, which the server sends as it is. */
	if (!r->body)
		r->status = 500;
	return r->status;
}

static int respond_error(struct api_response *r, int status, const char *fmt, const char *arg)
{
	struct json_object *o = json_object_new_object();
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, arg ? arg : "");
	json_object_object_add(o, "error", json_object_new_string(msg));
	return respond_json(r, status, o);
}

/* A body must be one JSON value and nothing else but white space (RFC 8259 §2). */
static int body_is_json(const char *body, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;
	size_t used;
	int ok;

	if (!tok)
		return 0;
	o = json_tokener_parse_ex(tok, body, (int)len);
	ok = o && json_tokener_get_error(tok) == json_tokener_success;
	used = ok ? json_tokener_get_parse_end(tok) : 0;
	/* A bare number ends only at the end of its input: json-c waits for more. */
	if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
		o = json_tokener_parse_ex(tok, "", 1);
		ok = o != NULL;
		used = len;
	}
	for (; ok && used < len; used++)
		if (!strchr(" \t\r\n", body[used]))
			ok = 0;
	json_object_put(o);
	json_tokener_free(tok);
	return ok;
}

static int handle_ping(const struct api_hooks *h, struct api_response *r)
{
	struct json_object *o = json_object_new_object();
	struct api_vm_info info = { 0 };

	h->info(h->opaque, &info);
	json_object_object_add(o, "version", json_object_new_string(NKVM_VERSION));
	json_object_object_add(o, "build_version", json_object_new_string("nkvm " NKVM_VERSION));
	json_object_object_add(o, "pid", json_object_new_int64(info.pid));
	json_object_object_add(o, "features", json_object_new_array());
	return respond_json(r, 200, o);
}

static void add_string(struct json_object *o, const char *key, const char *s)
{
	if (s)
		json_object_object_add(o, key, json_object_new_string(s));
}

/*
 * VmInfo: config (CpusConfig, MemoryConfig, PayloadConfig, BalloonConfig), state, and
 * memory_actual_size: the memory less what the balloon holds.
 */
static int handle_info(const struct api_hooks *h, struct api_response *r)
{
	struct json_object *o = json_object_new_object(), *config = json_object_new_object();
	struct json_object *cpus = json_object_new_object(), *memory = json_object_new_object();
	struct json_object *payload = json_object_new_object(), *own = json_object_new_object();
	struct api_vm_info info = { 0 };

	h->info(h->opaque, &info);
	json_object_object_add(cpus, "boot_vcpus", json_object_new_int64(info.cpus));
	json_object_object_add(cpus, "max_vcpus", json_object_new_int64(info.cpus));
	json_object_object_add(memory, "size", json_object_new_int64((int64_t)info.mem_bytes));
	add_string(payload, "kernel", info.kernel);
	add_string(payload, "cmdline", info.cmdline);
	add_string(payload, "initramfs", info.initramfs);
	json_object_object_add(config, "cpus", cpus);
	json_object_object_add(config, "memory", memory);
	json_object_object_add(config, "payload", payload);
	if (info.balloon) {
		struct json_object *balloon = json_object_new_object();

		json_object_object_add(balloon, "size", json_object_new_int64(0));
		json_object_object_add(balloon, "deflate_on_oom", json_object_new_boolean(1));
		json_object_object_add(balloon, "free_page_reporting", json_object_new_boolean(1));
		json_object_object_add(config, "balloon", balloon);
	}
	json_object_object_add(o, "config", config);
	json_object_object_add(o, "state", json_object_new_string(api_vm_state_name(info.state)));
	json_object_object_add(
		o, "memory_actual_size",
		json_object_new_int64((int64_t)(info.mem_bytes - info.balloon_actual)));
	add_string(own, "name", info.name);
	json_object_object_add(own, "pid", json_object_new_int64(info.pid));
	json_object_object_add(own, "uptime_ms", json_object_new_int64((int64_t)info.uptime_ms));
	json_object_object_add(o, "nkvm", own);
	return respond_json(r, 200, o);
}

static void add_counter(void *ctx, const char *group, const char *name, uint64_t value)
{
	struct json_object *o = ctx, *g;

	if (!json_object_object_get_ex(o, group, &g)) {
		g = json_object_new_object();
		json_object_object_add(o, group, g);
	}
	json_object_object_add(g, name, json_object_new_int64((int64_t)value));
}

/* VmCounters: an object of groups, each an object of int64 counters. */
static int handle_counters(const struct api_hooks *h, struct api_response *r)
{
	struct json_object *o = json_object_new_object();

	h->counters(h->opaque, add_counter, o);
	return respond_json(r, 200, o);
}

/* Cloud Hypervisor: 204 done; 405 when the VM is not in the state the action needs. */
static int handle_action(int (*fn)(void *), void *opaque, const char *verb, const char *wrong,
			 struct api_response *r)
{
	int err = fn(opaque);

	if (!err) {
		r->status = 204;
		return 204;
	}
	if (err == -EALREADY)
		return respond_error(r, 405, "%s", wrong);
	return respond_error(r, 500, "%s failed", verb);
}

/*
 * The integer member key of a VmResize body: 1 with *v, 0 when absent or null (as ch-remote
 * sends the sizes it leaves alone), -1 when not an integer.
 */
static int resize_field(struct json_object *o, const char *key, int64_t *v)
{
	struct json_object *x = NULL;

	*v = 0;
	if (!json_object_object_get_ex(o, key, &x) || !x)
		return 0;
	if (!json_object_is_type(x, json_type_int))
		return -1;
	*v = json_object_get_int64(x); /* past INT64_MAX: INT64_MAX */
	return 1;
}

/*
 * Cloud Hypervisor's VmResize {desired_vcpus, desired_ram, desired_balloon}: nkvm changes only
 * the balloon; vCPUs and RAM may be named only at the sizes they have. 204 done, 400 otherwise.
 */
static int handle_resize(const struct api_hooks *h, const char *body, size_t len,
			 struct api_response *r)
{
	struct api_vm_info info = { 0 };
	struct json_object *o;
	int64_t cpus, ram, balloon;
	int has_cpus, has_ram, has_balloon, err;
	char *text, msg[160];

	if (!len)
		return respond_error(r, 400, "vm.resize takes a VmResize body: %s",
				     "{\"desired_balloon\": BYTES}");
	text = strndup(body, len);
	o = text ? json_tokener_parse(text) : NULL;
	free(text);
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return respond_error(r, 400, "vm.resize takes a JSON object%s", NULL);
	}
	has_cpus = resize_field(o, "desired_vcpus", &cpus);
	has_ram = resize_field(o, "desired_ram", &ram);
	has_balloon = resize_field(o, "desired_balloon", &balloon);
	json_object_put(o);
	h->info(h->opaque, &info);
	if (has_cpus < 0 || has_ram < 0 || has_balloon < 0)
		return respond_error(r, 400,
				     "desired_vcpus, desired_ram and desired_balloon are %s",
				     "integers");
	if ((has_cpus && cpus != info.cpus) || (has_ram && (uint64_t)ram != info.mem_bytes))
		return respond_error(r, 400, "nkvm cannot hot-plug vCPUs or memory; %s",
				     "desired_balloon sets the guest's memory");
	if (!has_balloon)
		return has_cpus || has_ram ? (r->status = 204) :
					     respond_error(r, 400, "nothing to resize: %s",
							   "{\"desired_balloon\": BYTES}");
	if (balloon < 0 || (uint64_t)balloon > info.mem_bytes) {
		snprintf(
			msg, sizeof(msg),
			"desired_balloon %lld is not between 0 and the guest's memory (%llu bytes)",
			(long long)balloon, (unsigned long long)info.mem_bytes);
		return respond_error(r, 400, "%s", msg);
	}
	err = h->resize_balloon ? h->resize_balloon(h->opaque, balloon) : -ENODEV;
	if (!err)
		return r->status = 204;
	if (err == -ENODEV)
		return respond_error(r, 400, "the guest has no balloon device (--no-balloon)%s",
				     NULL);
	return respond_error(r, 500, "resize failed: %s", strerror(-err));
}

struct route {
	const char *name; /* after API_PREFIX */
	const char *method;
};

static const struct route routes[] = {
	{ "vmm.ping", "GET" }, { "vm.info", "GET" },   { "vm.counters", "GET" },
	{ "vm.pause", "PUT" }, { "vm.resume", "PUT" }, { "vm.resize", "PUT" },
};

int api_handle(const struct api_hooks *h, const char *method, const char *path, const char *body,
	       size_t body_len, struct api_response *r)
{
	const struct route *route = NULL;
	const char *name;

	memset(r, 0, sizeof(*r));
	if (!strncmp(path, API_PREFIX, strlen(API_PREFIX))) {
		name = path + strlen(API_PREFIX);
		for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
			if (!strcmp(name, routes[i].name))
				route = &routes[i];
	}
	if (!route)
		return respond_error(r, 404, "no such endpoint (try GET " API_PREFIX "vm.info)%s",
				     NULL);
	if (strcmp(method, route->method)) {
		r->allow = route->method;
		return respond_error(r, 405, "this endpoint takes only %s", route->method);
	}
	if (body_len > API_BODY_MAX)
		return respond_error(r, 413, "request body over %s bytes", "65536");
	if (body_len && !body_is_json(body, body_len))
		return respond_error(r, 400, "request body is not JSON%s", NULL);
	if (!strcmp(route->name, "vmm.ping"))
		return handle_ping(h, r);
	if (!strcmp(route->name, "vm.info"))
		return handle_info(h, r);
	if (!strcmp(route->name, "vm.counters"))
		return handle_counters(h, r);
	if (!strcmp(route->name, "vm.resize"))
		return handle_resize(h, body, body_len, r);
	if (!strcmp(route->name, "vm.pause"))
		return handle_action(h->pause, h->opaque, "pause", "the VM is already paused", r);
	return handle_action(h->resume, h->opaque, "resume", "the VM is not paused", r);
}

void api_response_free(struct api_response *r)
{
	free(r->body);
	r->body = NULL;
}
