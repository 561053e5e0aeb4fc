/* SPDX-License-Identifier: MIT */
/* The client side of the control API, for `nkvm list/pause/resume/stat`: one request a call. */
#ifndef NKVM_API_CLIENT_H
#define NKVM_API_CLIENT_H

#include <json-c/json.h>
#include <stddef.h>

struct api_reply {
	long status; /* HTTP status */
	struct json_object *json; /* the parsed body; NULL when there was none */
};

/*
 * Sends METHOD http://localhost/api/v1/ENDPOINT over the unix socket at path. Returns 0 with
 * the reply (free it with api_reply_free), or a negative errno with a reason in err:
 * -ENOENT (no socket), -ECONNREFUSED (a stale socket: its guest died), -EPROTO (no answer
 * or one that is not JSON), or what connect said.
 */
int api_call(const char *path, const char *method, const char *endpoint, struct api_reply *r,
	     char *err, size_t errlen);
/* As api_call, with body (JSON text, NULL for none) sent as the request's body. */
int api_call_body(const char *path, const char *method, const char *endpoint, const char *body,
		  struct api_reply *r, char *err, size_t errlen);

void api_reply_free(struct api_reply *r);

/* The "error" string of a 4xx/5xx reply, or a fallback naming the status. */
const char *api_reply_error(const struct api_reply *r);

#endif
