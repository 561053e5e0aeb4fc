/* SPDX-License-Identifier: MIT */
/*
 * The control API's request handling: (method, path, body) to (status, JSON), over a small set
 * of hooks into the VM. No sockets and no VM here, so unit tests and a fuzzer drive it with
 * made-up hooks. Endpoints, field names, states and status codes follow Cloud Hypervisor's
 * OpenAPI (vmm/src/api/openapi/cloud-hypervisor.yaml); nkvm's own fields sit under "nkvm".
 */
#ifndef NKVM_API_HANDLER_H
#define NKVM_API_HANDLER_H

#include <stddef.h>
#include <stdint.h>

/* Request bodies above this are refused (413) without being parsed. */
#define API_BODY_MAX (64 * 1024)

#define API_PREFIX "/api/v1/"

/* Cloud Hypervisor's VmState strings. */
enum api_vm_state { API_VM_RUNNING, API_VM_PAUSED, API_VM_SHUTDOWN };

struct api_vm_info {
	enum api_vm_state state;
	unsigned int cpus;
	uint64_t mem_bytes;
	const char *name;
	const char *kernel, *cmdline, *initramfs; /* NULL when none */
	int pid;
	uint64_t uptime_ms;
	int balloon; /* whether the guest has a balloon device */
	uint64_t balloon_actual; /* bytes the guest's balloon holds */
};

/* Called once per counter by the counters hook: group ("vcpu0", "disk0"), name, value. */
typedef void (*api_counter_fn)(void *ctx, const char *group, const char *name, uint64_t value);

struct api_hooks {
	void *opaque;
	void (*info)(void *opaque, struct api_vm_info *info);
	void (*counters)(void *opaque, api_counter_fn emit, void *ctx);
	/* 0, -EALREADY when already paused (resume: not paused), or another negative errno. */
	int (*pause)(void *opaque);
	int (*resume)(void *opaque);
	/*
	 * vm.resize's desired_balloon (bytes, at most the guest's memory): 0, -ENODEV without a
	 * balloon device, or another negative errno. NULL: no balloon.
	 */
	int (*resize_balloon)(void *opaque, uint64_t bytes);
};

struct api_response {
	int status;
	char *body; /* JSON text (malloc'd), NULL for 204; free with api_response_free */
	const char *allow; /* for 405: the methods the path takes */
};

/*
 * Answers one request. body holds body_len bytes (not NUL-terminated; a server that stopped
 * reading past API_BODY_MAX passes a body_len above it). Every status other than 200 and 204
 * comes with a JSON body {"error": "..."}. Returns r->status.
 */
int api_handle(const struct api_hooks *h, const char *method, const char *path, const char *body,
	       size_t body_len, struct api_response *r);

void api_response_free(struct api_response *r);

/* "Running", "Paused", "Shutdown". */
const char *api_vm_state_name(enum api_vm_state s);

#endif
