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
	/* json-c's default also takes what RFC 8259 does not: 02, a trailing comma. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
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
	int err = fn ? fn(opaque) : -EOPNOTSUPP;

	if (err == -EOPNOTSUPP)
		return respond_error(r, 501, "%s is not supported by this VM", verb);
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

static void add_hex(struct json_object *o, const char *key, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)v);
	json_object_object_add(o, key, json_object_new_string(buf));
}

/* nkvm.debug: {"vcpus": [{"id": 0, "rip": "0x...", ...}]}, 64-bit values as hex strings. */
static int handle_debug(const struct api_hooks *h, struct api_response *r)
{
	struct api_vm_info info = { 0 };
	struct api_vcpu_regs *v;
	struct json_object *o, *list;
	int n;

	if (!h->vcpu_regs)
		return respond_error(r, 501, "registers are not available from this VM%s", NULL);
	h->info(h->opaque, &info);
	v = calloc(info.cpus ? info.cpus : 1, sizeof(*v));
	if (!v)
		return respond_error(r, 500, "out of memory%s", NULL);
	n = h->vcpu_regs(h->opaque, v, info.cpus);
	if (n < 0) {
		free(v);
		return respond_error(r, 500, "cannot read the registers: %s", strerror(-n));
	}
	o = json_object_new_object();
	list = json_object_new_array();
	for (int i = 0; i < n; i++) {
		const struct kvm_regs *g = &v[i].regs;
		const struct kvm_sregs *sr = &v[i].sregs;
		struct json_object *c = json_object_new_object();

		json_object_object_add(c, "id", json_object_new_int64(v[i].id));
		add_hex(c, "rip", g->rip);
		add_hex(c, "rsp", g->rsp);
		add_hex(c, "rbp", g->rbp);
		add_hex(c, "rflags", g->rflags);
		add_hex(c, "rax", g->rax);
		add_hex(c, "rbx", g->rbx);
		add_hex(c, "rcx", g->rcx);
		add_hex(c, "rdx", g->rdx);
		add_hex(c, "rsi", g->rsi);
		add_hex(c, "rdi", g->rdi);
		add_hex(c, "r8", g->r8);
		add_hex(c, "r9", g->r9);
		add_hex(c, "r10", g->r10);
		add_hex(c, "r11", g->r11);
		add_hex(c, "r12", g->r12);
		add_hex(c, "r13", g->r13);
		add_hex(c, "r14", g->r14);
		add_hex(c, "r15", g->r15);
		add_hex(c, "cr0", sr->cr0);
		add_hex(c, "cr2", sr->cr2);
		add_hex(c, "cr3", sr->cr3);
		add_hex(c, "cr4", sr->cr4);
		add_hex(c, "efer", sr->efer);
		add_hex(c, "cs", sr->cs.selector);
		add_hex(c, "ss", sr->ss.selector);
		json_object_array_add(list, c);
	}
	free(v);
	json_object_object_add(o, "vcpus", list);
	return respond_json(r, 200, o);
}

/* nkvm.sysrq {"key": "t"}: one lower-case letter or digit. */
static int handle_sysrq(const struct api_hooks *h, const char *body, size_t len,
			struct api_response *r)
{
	struct json_object *o = NULL, *k;
	const char *key = NULL;
	char *text = strndup(body ? body : "", len);
	int err;

	if (text)
		o = json_tokener_parse(text);
	free(text);
	if (o && json_object_object_get_ex(o, "key", &k) &&
	    json_object_is_type(k, json_type_string))
		key = json_object_get_string(k);
	if (!key || strlen(key) != 1 ||
	    !((key[0] >= 'a' && key[0] <= 'z') || (key[0] >= '0' && key[0] <= '9'))) {
		json_object_put(o);
		return respond_error(r, 400, "want {\"key\": K}, K a letter a-z or a digit%s",
				     NULL);
	}
	err = h->sysrq ? h->sysrq(h->opaque, key[0]) : -EOPNOTSUPP;
	json_object_put(o);
	if (!err) {
		r->status = 204;
		return 204;
	}
	if (err == -EOPNOTSUPP)
		return respond_error(r, 501, "SysRq is not supported by this VM%s", NULL);
	if (err == -EALREADY)
		return respond_error(r, 405, "the VM is paused: resume it first%s", NULL);
	return respond_error(r, 500, "cannot send SysRq: %s", strerror(-err));
}

struct route {
	const char *name; /* after API_PREFIX */
	const char *method;
};

static const struct route routes[] = {
	{ "vmm.ping", "GET" },
	{ "vm.info", "GET" },
	{ "vm.counters", "GET" },
	{ "vm.pause", "PUT" },
	{ "vm.resume", "PUT" },
	{ "vm.resize", "PUT" },
	{ "vm.power-button", "PUT" },
	{ "vm.shutdown", "PUT" },
	/* nkvm's own, under a prefix Cloud Hypervisor's names (vmm.*, vm.*) never take. */
	{ "nkvm.debug", "GET" },
	{ "nkvm.sysrq", "PUT" },
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
	if (!strcmp(route->name, "nkvm.debug"))
		return handle_debug(h, r);
	if (!strcmp(route->name, "nkvm.sysrq"))
		return handle_sysrq(h, body, body_len, r);
	if (!strcmp(route->name, "vm.power-button"))
		return handle_action(h->power_button, h->opaque, "power button",
				     "the VM is paused: resume it first, or shut it down", r);
	if (!strcmp(route->name, "vm.shutdown"))
		return handle_action(h->shutdown, h->opaque, "shutdown", "the VM is shutting down",
				     r);
	return handle_action(h->resume, h->opaque, "resume", "the VM is not paused", r);
}

void api_response_free(struct api_response *r)
{
	free(r->body);
	r->body = NULL;
}
