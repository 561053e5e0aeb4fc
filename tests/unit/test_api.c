// SPDX-License-Identifier: MIT
/* The control API's request handling (src/api/handler.c) through made-up VM hooks. */
#include <errno.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "api/handler.h"

struct fake_vm {
	int paused;
	int pause_calls, resume_calls;
	int fail; /* a negative errno for pause and resume to return */
	int resize_calls, resize_err;
	uint64_t balloon; /* what resize_balloon was given */
	uint64_t balloon_actual; /* what info reports the balloon holds */
	int buttons, shutdowns;
	char sysrq_keys[8];
	int nr_sysrq;
};

static void fake_info(void *opaque, struct api_vm_info *info)
{
	struct fake_vm *vm = opaque;

	info->state = vm->paused ? API_VM_PAUSED : API_VM_RUNNING;
	info->cpus = 3;
	info->mem_bytes = 512ULL << 20;
	info->name = "guest-a";
	info->kernel = "/k/vmlinuz";
	info->pid = 4242;
	info->uptime_ms = 1500;
	info->balloon = 1;
	info->balloon_actual = vm->balloon_actual;
}

static void fake_counters(void *opaque, api_counter_fn emit, void *ctx)
{
	emit(ctx, "vcpu0", "io", 11);
	emit(ctx, "vcpu0", "mmio", 22);
	emit(ctx, "vcpu1", "io", 33);
}

static int fake_pause(void *opaque)
{
	struct fake_vm *vm = opaque;

	vm->pause_calls++;
	if (vm->fail)
		return vm->fail;
	if (vm->paused)
		return -EALREADY;
	vm->paused = 1;
	return 0;
}

static int fake_resume(void *opaque)
{
	struct fake_vm *vm = opaque;

	vm->resume_calls++;
	if (vm->fail)
		return vm->fail;
	if (!vm->paused)
		return -EALREADY;
	vm->paused = 0;
	return 0;
}

static int fake_resize_balloon(void *opaque, uint64_t bytes)
{
	struct fake_vm *vm = opaque;

	vm->resize_calls++;
	if (vm->resize_err)
		return vm->resize_err;
	vm->balloon = bytes;
	return 0;
}

static int fake_power_button(void *opaque)
{
	struct fake_vm *vm = opaque;

	if (vm->paused)
		return -EALREADY;
	vm->buttons++;
	return 0;
}

static int fake_shutdown(void *opaque)
{
	struct fake_vm *vm = opaque;

	vm->shutdowns++;
	return 0;
}

/* Two of the three vCPUs the info hook names: fewer is what a hook may return. */
static int fake_vcpu_regs(void *opaque, struct api_vcpu_regs *out, unsigned int max)
{
	assert_int_equal(max, 3);
	for (unsigned int i = 0; i < 2; i++) {
		out[i].id = i;
		out[i].regs.rip = 0xffffffff81000000ULL + i;
		out[i].regs.rsp = 0x1000 * (i + 1);
		out[i].sregs.cr3 = 0x2000;
	}
	return 2;
}

static int fake_sysrq(void *opaque, char key)
{
	struct fake_vm *vm = opaque;

	if (vm->paused)
		return -EALREADY;
	vm->sysrq_keys[vm->nr_sysrq++ % 8] = key;
	return 0;
}

static struct fake_vm vm;
static const struct api_hooks hooks = {
	.vcpu_regs = fake_vcpu_regs,
	.sysrq = fake_sysrq,
	.power_button = fake_power_button,
	.shutdown = fake_shutdown,
	.opaque = &vm,
	.info = fake_info,
	.counters = fake_counters,
	.pause = fake_pause,
	.resume = fake_resume,
	.resize_balloon = fake_resize_balloon,
};

static int reset(void **state)
{
	memset(&vm, 0, sizeof(vm));
	return 0;
}

/* Sends the request; returns the parsed body (NULL for none) and checks the status. */
static struct json_object *request(const char *method, const char *path, const char *body,
				   size_t len, int want_status)
{
	struct api_response r;
	struct json_object *o = NULL;

	assert_int_equal(api_handle(&hooks, method, path, body, len, &r), want_status);
	assert_int_equal(r.status, want_status);
	if (r.body) {
		o = json_tokener_parse(r.body);
		assert_non_null(o);
	}
	api_response_free(&r);
	return o;
}

/* A 4xx/5xx answer with a JSON object holding a string "error". */
static void expect_error(const char *method, const char *path, const char *body, size_t len,
			 int want_status)
{
	struct json_object *o = request(method, path, body, len, want_status), *e;

	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "error", &e));
	assert_true(json_object_is_type(e, json_type_string));
	assert_true(strlen(json_object_get_string(e)) > 0);
	json_object_put(o);
}

static const char *get_str(struct json_object *o, const char *a, const char *b)
{
	struct json_object *x;

	assert_true(json_object_object_get_ex(o, a, &x));
	if (b)
		assert_true(json_object_object_get_ex(x, b, &x));
	return json_object_get_string(x);
}

static int64_t get_int(struct json_object *o, const char *a, const char *b, const char *c)
{
	struct json_object *x;

	assert_true(json_object_object_get_ex(o, a, &x));
	if (b)
		assert_true(json_object_object_get_ex(x, b, &x));
	if (c)
		assert_true(json_object_object_get_ex(x, c, &x));
	assert_true(json_object_is_type(x, json_type_int));
	return json_object_get_int64(x);
}

static void test_ping_answers_version_and_pid(void **state)
{
	struct json_object *o = request("GET", "/api/v1/vmm.ping", NULL, 0, 200);

	assert_true(strlen(get_str(o, "version", NULL)) > 0);
	assert_int_equal(get_int(o, "pid", NULL, NULL), 4242);
	json_object_put(o);
}

static void test_info_names_fields_as_cloud_hypervisor(void **state)
{
	struct json_object *o = request("GET", "/api/v1/vm.info", NULL, 0, 200);

	assert_string_equal(get_str(o, "state", NULL), "Running");
	assert_int_equal(get_int(o, "config", "cpus", "boot_vcpus"), 3);
	assert_int_equal(get_int(o, "config", "memory", "size"), 512LL << 20);
	assert_int_equal(get_int(o, "memory_actual_size", NULL, NULL), 512LL << 20);
	assert_string_equal(get_str(o, "nkvm", "name"), "guest-a");
	assert_int_equal(get_int(o, "nkvm", "uptime_ms", NULL), 1500);
	json_object_put(o);
}

static void test_pause_then_info_says_paused_then_resume(void **state)
{
	struct json_object *o;

	assert_null(request("PUT", "/api/v1/vm.pause", NULL, 0, 204));
	assert_int_equal(vm.paused, 1);
	o = request("GET", "/api/v1/vm.info", NULL, 0, 200);
	assert_string_equal(get_str(o, "state", NULL), "Paused");
	json_object_put(o);
	assert_null(request("PUT", "/api/v1/vm.resume", "{}", 2, 204));
	assert_int_equal(vm.paused, 0);
}

static void test_pause_twice_is_405_resume_running_is_405(void **state)
{
	assert_null(request("PUT", "/api/v1/vm.pause", NULL, 0, 204));
	expect_error("PUT", "/api/v1/vm.pause", NULL, 0, 405);
	assert_null(request("PUT", "/api/v1/vm.resume", NULL, 0, 204));
	expect_error("PUT", "/api/v1/vm.resume", NULL, 0, 405);
}

static void test_pause_failure_is_500_with_json(void **state)
{
	vm.fail = -EIO;
	expect_error("PUT", "/api/v1/vm.pause", NULL, 0, 500);
}

/* Cloud Hypervisor's names: PUT vm.power-button and vm.shutdown, 204 with no body. */
static void test_power_button_and_shutdown_reach_the_vm(void **state)
{
	assert_null(request("PUT", "/api/v1/vm.power-button", NULL, 0, 204));
	assert_int_equal(vm.buttons, 1);
	assert_int_equal(vm.shutdowns, 0);
	assert_null(request("PUT", "/api/v1/vm.shutdown", NULL, 0, 204));
	assert_int_equal(vm.shutdowns, 1);
	expect_error("GET", "/api/v1/vm.power-button", NULL, 0, 405);
	expect_error("GET", "/api/v1/vm.shutdown", NULL, 0, 405);
}

/* A paused guest cannot see the button: 405, and nothing was pressed. */
static void test_power_button_on_paused_vm_is_405(void **state)
{
	vm.paused = 1;
	expect_error("PUT", "/api/v1/vm.power-button", NULL, 0, 405);
	assert_int_equal(vm.buttons, 0);
}

/* A VM whose hooks lack an action (the fuzzer's, older callers): 501, not a crash. */
static void test_missing_hook_is_501(void **state)
{
	struct api_hooks h = hooks;
	struct api_response r;

	h.shutdown = NULL;
	assert_int_equal(api_handle(&h, "PUT", "/api/v1/vm.shutdown", NULL, 0, &r), 501);
	assert_non_null(r.body);
	api_response_free(&r);
}

/* nkvm.debug: one object per vCPU the hook read, 64-bit registers as hex strings. */
static void test_debug_lists_each_vcpu_registers_in_hex(void **state)
{
	struct json_object *o = request("GET", "/api/v1/nkvm.debug", NULL, 0, 200), *list, *c;

	assert_true(json_object_object_get_ex(o, "vcpus", &list));
	assert_int_equal(json_object_array_length(list), 2);
	c = json_object_array_get_idx(list, 1);
	assert_int_equal(get_int(c, "id", NULL, NULL), 1);
	assert_string_equal(get_str(c, "rip", NULL), "0xffffffff81000001");
	assert_string_equal(get_str(c, "rsp", NULL), "0x2000");
	assert_string_equal(get_str(c, "cr3", NULL), "0x2000");
	json_object_put(o);
	expect_error("PUT", "/api/v1/nkvm.debug", NULL, 0, 405);
}

static void test_sysrq_takes_one_letter_or_digit(void **state)
{
	static const char *const bad[] = { "{}",
					   "{\"key\": 5}",
					   "{\"key\": \"\"}",
					   "{\"key\": \"tt\"}",
					   "{\"key\": \"T\"}",
					   "{\"key\": \"!\"}",
					   "[\"t\"]" };

	assert_null(request("PUT", "/api/v1/nkvm.sysrq", "{\"key\": \"t\"}", 12, 204));
	assert_null(request("PUT", "/api/v1/nkvm.sysrq", "{\"key\":\"7\"}", 11, 204));
	assert_int_equal(vm.nr_sysrq, 2);
	assert_memory_equal(vm.sysrq_keys, "t7", 2);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error("PUT", "/api/v1/nkvm.sysrq", bad[i], strlen(bad[i]), 400);
	expect_error("PUT", "/api/v1/nkvm.sysrq", NULL, 0, 400);
	assert_int_equal(vm.nr_sysrq, 2);
	vm.paused = 1;
	expect_error("PUT", "/api/v1/nkvm.sysrq", "{\"key\": \"t\"}", 12, 405);
	assert_int_equal(vm.nr_sysrq, 2);
}

static void test_counters_group_by_vcpu(void **state)
{
	struct json_object *o = request("GET", "/api/v1/vm.counters", NULL, 0, 200);

	assert_int_equal(get_int(o, "vcpu0", "io", NULL), 11);
	assert_int_equal(get_int(o, "vcpu0", "mmio", NULL), 22);
	assert_int_equal(get_int(o, "vcpu1", "io", NULL), 33);
	json_object_put(o);
}

static void test_unknown_paths_are_404(void **state)
{
	expect_error("GET", "/api/v1/vm.nothing", NULL, 0, 404);
	expect_error("GET", "/", NULL, 0, 404);
	expect_error("GET", "", NULL, 0, 404);
	expect_error("GET", "/api/v1/", NULL, 0, 404);
	expect_error("GET", "/api/v1/vm.info/", NULL, 0, 404);
	expect_error("GET", "/api/v2/vm.info", NULL, 0, 404);
	expect_error("GET", "/API/V1/VM.INFO", NULL, 0, 404);
}

static void test_wrong_methods_are_405_and_say_allow(void **state)
{
	struct api_response r;

	expect_error("PUT", "/api/v1/vm.info", NULL, 0, 405);
	expect_error("POST", "/api/v1/vm.info", NULL, 0, 405);
	expect_error("DELETE", "/api/v1/vmm.ping", NULL, 0, 405);
	expect_error("GET", "/api/v1/vm.pause", NULL, 0, 405);
	assert_int_equal(api_handle(&hooks, "get", "/api/v1/vm.resume", NULL, 0, &r), 405);
	assert_string_equal(r.allow, "PUT");
	api_response_free(&r);
	/* A refused pause did not reach the VM. */
	assert_int_equal(vm.pause_calls + vm.resume_calls, 0);
}

static void test_bad_json_bodies_are_400(void **state)
{
	static const char *const bad[] = {
		"{",	 "}",	   "{\"a\":}", "[1,2",	"nul", "{\"a\":1} x",
		"\"abc", "{\"a\"", "\x01",     "{} {}", "-",
		/* what json-c takes by default and RFC 8259 does not */
		"{\"a\":02}", "{\"a\":1,}", "[1,2,]",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error("PUT", "/api/v1/vm.pause", bad[i], strlen(bad[i]), 400);
	/* Bytes after a NUL count as part of the body. */
	expect_error("PUT", "/api/v1/vm.pause", "{}\0zz", 5, 400);
	assert_int_equal(vm.pause_calls, 0);
}

static void test_good_json_bodies_are_accepted(void **state)
{
	assert_null(request("PUT", "/api/v1/vm.pause", " {\"x\": [1, 2]}\n", 15, 204));
	assert_null(request("PUT", "/api/v1/vm.resume", "42", 2, 204));
}

static void test_huge_body_is_413(void **state)
{
	size_t len = API_BODY_MAX + 1;
	char *big = malloc(len);

	assert_non_null(big);
	memset(big, ' ', len);
	big[0] = '{';
	big[len - 1] = '}';
	expect_error("PUT", "/api/v1/vm.pause", big, len, 413);
	assert_int_equal(vm.pause_calls, 0);
	/* At the limit exactly, it is read. */
	big[API_BODY_MAX - 1] = '}';
	assert_null(request("PUT", "/api/v1/vm.pause", big, API_BODY_MAX, 204));
	free(big);
}

#define S(text) text, strlen(text)

static void test_resize_sets_the_balloon_in_bytes(void **state)
{
	assert_null(
		request("PUT", "/api/v1/vm.resize", S("{\"desired_balloon\": 402653184}"), 204));
	assert_int_equal(vm.resize_calls, 1);
	assert_int_equal(vm.balloon, 384ULL << 20);
	/* The whole memory is a size, and so is 0 (deflate). */
	assert_null(
		request("PUT", "/api/v1/vm.resize", S("{\"desired_balloon\": 536870912}"), 204));
	assert_null(request("PUT", "/api/v1/vm.resize", S("{\"desired_balloon\": 0}"), 204));
	assert_int_equal(vm.balloon, 0);
}

/* ch-remote sends the sizes it leaves alone as null; and the current sizes change nothing. */
static void test_resize_takes_ch_remote_nulls_and_current_sizes(void **state)
{
	assert_null(request("PUT", "/api/v1/vm.resize",
			    S("{\"desired_vcpus\":null,\"desired_ram\":null,"
			      "\"desired_balloon\":1048576}"),
			    204));
	assert_int_equal(vm.balloon, 1ULL << 20);
	assert_null(request("PUT", "/api/v1/vm.resize",
			    S("{\"desired_vcpus\":3,\"desired_ram\":536870912}"), 204));
	assert_int_equal(vm.resize_calls, 1);
}

static void test_resize_bad_bodies_are_400(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{}",
		"42",
		"{\"desired_balloon\": \"1G\"}",
		"{\"desired_balloon\": 1.5}",
		"{\"desired_balloon\": true}",
		"{\"desired_balloon\": -1}",
		"{\"desired_balloon\": {}}",
		"{\"desired_vcpus\": 4, \"desired_balloon\": 0}",
		"{\"desired_ram\": 1073741824}",
		"{\"desired_ram\": \"x\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error("PUT", "/api/v1/vm.resize", bad[i], strlen(bad[i]), 400);
	expect_error("GET", "/api/v1/vm.resize", NULL, 0, 405);
	assert_int_equal(vm.resize_calls, 0);
}

static void test_resize_above_the_guests_memory_is_400(void **state)
{
	expect_error("PUT", "/api/v1/vm.resize", S("{\"desired_balloon\": 536870913}"), 400);
	expect_error("PUT", "/api/v1/vm.resize",
		     S("{\"desired_balloon\": 99999999999999999999999}"), 400);
	expect_error("PUT", "/api/v1/vm.resize", S("{\"desired_balloon\": 18446744073709551615}"),
		     400);
	assert_int_equal(vm.resize_calls, 0);
}

static void test_resize_without_a_balloon_is_400_and_failure_500(void **state)
{
	vm.resize_err = -ENODEV;
	expect_error("PUT", "/api/v1/vm.resize", S("{\"desired_balloon\": 0}"), 400);
	vm.resize_err = -EIO;
	expect_error("PUT", "/api/v1/vm.resize", S("{\"desired_balloon\": 0}"), 500);
	assert_int_equal(vm.resize_calls, 2);
}

static void test_info_memory_actual_size_is_memory_less_balloon(void **state)
{
	struct json_object *o, *b;

	vm.balloon_actual = 128ULL << 20;
	o = request("GET", "/api/v1/vm.info", NULL, 0, 200);
	assert_int_equal(get_int(o, "memory_actual_size", NULL, NULL), 384LL << 20);
	assert_true(json_object_object_get_ex(o, "config", &b));
	assert_true(json_object_object_get_ex(b, "balloon", &b));
	assert_true(json_object_get_boolean(json_object_object_get(b, "deflate_on_oom")));
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_ping_answers_version_and_pid, reset),
		cmocka_unit_test_setup(test_info_names_fields_as_cloud_hypervisor, reset),
		cmocka_unit_test_setup(test_pause_then_info_says_paused_then_resume, reset),
		cmocka_unit_test_setup(test_pause_twice_is_405_resume_running_is_405, reset),
		cmocka_unit_test_setup(test_pause_failure_is_500_with_json, reset),
		cmocka_unit_test_setup(test_power_button_and_shutdown_reach_the_vm, reset),
		cmocka_unit_test_setup(test_power_button_on_paused_vm_is_405, reset),
		cmocka_unit_test_setup(test_missing_hook_is_501, reset),
		cmocka_unit_test_setup(test_debug_lists_each_vcpu_registers_in_hex, reset),
		cmocka_unit_test_setup(test_sysrq_takes_one_letter_or_digit, reset),
		cmocka_unit_test_setup(test_counters_group_by_vcpu, reset),
		cmocka_unit_test_setup(test_unknown_paths_are_404, reset),
		cmocka_unit_test_setup(test_wrong_methods_are_405_and_say_allow, reset),
		cmocka_unit_test_setup(test_bad_json_bodies_are_400, reset),
		cmocka_unit_test_setup(test_good_json_bodies_are_accepted, reset),
		cmocka_unit_test_setup(test_huge_body_is_413, reset),
		cmocka_unit_test_setup(test_resize_sets_the_balloon_in_bytes, reset),
		cmocka_unit_test_setup(test_resize_takes_ch_remote_nulls_and_current_sizes, reset),
		cmocka_unit_test_setup(test_resize_bad_bodies_are_400, reset),
		cmocka_unit_test_setup(test_resize_above_the_guests_memory_is_400, reset),
		cmocka_unit_test_setup(test_resize_without_a_balloon_is_400_and_failure_500, reset),
		cmocka_unit_test_setup(test_info_memory_actual_size_is_memory_less_balloon, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
