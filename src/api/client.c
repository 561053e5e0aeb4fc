// SPDX-License-Identifier: MIT
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/client.h"
#include "api/socket.h"

/* Answers are small; one this big is not nkvm's. */
#define REPLY_MAX (1 << 20)
#define CALL_TIMEOUT_S 10

struct reply_buf {
	char *buf;
	size_t len;
	int overflow;
};

static size_t on_data(char *data, size_t size, size_t n, void *opaque)
{
	struct reply_buf *b = opaque;
	size_t len = size * n;
	char *nb;

	if (b->len + len > REPLY_MAX) {
		b->overflow = 1;
		return 0;
	}
	nb = realloc(b->buf, b->len + len + 1);
	if (!nb)
		return 0;
	memcpy(nb + b->len, data, len);
	b->buf = nb;
	b->len += len;
	b->buf[b->len] = 0;
	return len;
}

int api_call(const char *path, const char *method, const char *endpoint, struct api_reply *r,
	     char *err, size_t errlen)
{
	return api_call_body(path, method, endpoint, NULL, r, err, errlen);
}

int api_call_body(const char *path, const char *method, const char *endpoint, const char *body,
		  struct api_reply *r, char *err, size_t errlen)
{
	struct curl_slist *headers = NULL;
	struct reply_buf b = { 0 };
	char url[256];
	CURLcode rc;
	CURL *c;
	int fd;

	memset(r, 0, sizeof(*r));
	/* A probe first, so that a missing or stale socket is told apart from a failed request. */
	fd = api_sock_connect(path);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-fd));
		return fd;
	}
	close(fd);
	c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "cannot set up an HTTP client");
		return -ENOMEM;
	}
	snprintf(url, sizeof(url), "http://localhost/api/v1/%s", endpoint);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)CALL_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(headers);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 b.overflow ? "answer too long" : curl_easy_strerror(rc));
		free(b.buf);
		return -EPROTO;
	}
	if (b.len) {
		r->json = json_tokener_parse(b.buf);
		if (!r->json) {
			snprintf(err, errlen, "%s: the answer is not JSON", path);
			free(b.buf);
			return -EPROTO;
		}
	}
	free(b.buf);
	return 0;
}

void api_reply_free(struct api_reply *r)
{
	json_object_put(r->json);
	r->json = NULL;
}

const char *api_reply_error(const struct api_reply *r)
{
	static __thread char fallback[64];
	struct json_object *e;

	if (r->json && json_object_object_get_ex(r->json, "error", &e) &&
	    json_object_is_type(e, json_type_string))
		return json_object_get_string(e);
	snprintf(fallback, sizeof(fallback), "HTTP status %ld", r->status);
	return fallback;
}
