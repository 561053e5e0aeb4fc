// SPDX-License-Identifier: MIT
#include <errno.h>
#include <linux/kvm.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/server.h"
#include "lib/log.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

struct api_server {
	struct MHD_Daemon *daemon;
	const struct api_hooks *hooks;
	int sandbox_err; /* the polling thread's sandbox_enter, once it tried; it serves only on 0 */
};

/*
 * The control API's thread (libmicrohttpd's polling thread): its epoll, the clients' sockets,
 * and what the requests do: pause and resume (the vCPUs' kick signal, the guest's clock), a
 * stop (the i8042's interrupt, the stop eventfd), the balloon (its statistics' timed wait).
 */
static const struct sandbox_rule api_rules[] = {
	SANDBOX_ALLOW(epoll_wait),
	SANDBOX_ALLOW(epoll_ctl),
	SANDBOX_ALLOW(accept4),
	SANDBOX_ALLOW(recvfrom),
	SANDBOX_ALLOW(sendto),
	SANDBOX_ALLOW(sendmsg),
	SANDBOX_ALLOW(read), /* MHD's inter-thread eventfd */
	SANDBOX_ALLOW(write), /* that eventfd, irqfds, the stop eventfd */
	SANDBOX_ALLOW(shutdown),
	SANDBOX_ALLOW(close),
	SANDBOX_ALLOW(clock_gettime),
	SANDBOX_ALLOW(getpid), /* pthread_kill */
	SANDBOX_ALLOW(tgkill),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_GET_CLOCK),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_SET_CLOCK),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_IRQ_LINE),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_GET_REGS), /* a paused guest's registers */
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_GET_SREGS),
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter api_filter = {
	.thread = "api",
	.rules = api_rules,
	.nr_rules = ARRAY_SIZE(api_rules),
};

/*
 * libmicrohttpd has no thread-start hook: its polling thread confines itself when the first
 * connection starts, after accept4 and before it reads a byte of a request. Until then it has
 * only waited in epoll_wait. A connection before sandbox_release waits there for set-up.
 */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct api_server *s = cls;

	if (toe != MHD_CONNECTION_NOTIFY_STARTED || sandbox_thread_name())
		return;
	s->sandbox_err = sandbox_enter(&api_filter);
	if (s->sandbox_err)
		nkvm_err("api: cannot enter the sandbox: %s", strerror(-s->sandbox_err));
#ifdef NKVM_TEST_HOOKS
	if (!s->sandbox_err && sandbox_test_hook("api", "forbidden"))
		sandbox_test_forbidden_call();
#endif
}

/* One request's body, kept up to one byte past API_BODY_MAX so the handler can refuse it. */
struct request_body {
	char *buf;
	size_t len;
	size_t seen;
};

static enum MHD_Result answer(struct MHD_Connection *conn, const struct api_response *r)
{
	const char *body = r->body ? r->body : "";
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	if (r->body)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	ret = MHD_queue_response(conn, (unsigned int)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct api_server *s = cls;
	struct request_body *b = *con_cls;
	struct api_response r;
	enum MHD_Result ret;

	/* Unconfined, the thread reads no request. */
	if (s->sandbox_err)
		return MHD_NO;
	if (!b) {
		/* MHD calls first with the headers alone: set up the body. */
		b = calloc(1, sizeof(*b));
		if (!b)
			return MHD_NO;
		*con_cls = b;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t room = API_BODY_MAX + 1 - b->len;
		size_t take = *upload_size < room ? *upload_size : room;

		if (take) {
			char *nb = realloc(b->buf, b->len + take);

			if (!nb)
				return MHD_NO;
			b->buf = nb;
			memcpy(b->buf + b->len, upload, take);
			b->len += take;
		}
		b->seen += *upload_size;
		*upload_size = 0;
		return MHD_YES;
	}
	api_handle(s->hooks, method, url, b->buf, b->len, &r);
	ret = answer(conn, &r);
	api_response_free(&r);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode why)
{
	struct request_body *b = *con_cls;

	if (b) {
		free(b->buf);
		free(b);
	}
	*con_cls = NULL;
}

/*
 * json-c seeds its hash function once, at the first object key it hashes, from getrandom or
 * /dev/urandom: here, on the thread that starts the server, so the API's thread, confined,
 * never needs either (seen: 'thread api made forbidden system call getrandom (318)').
 */
static void json_seed_now(void)
{
	struct json_object *o = json_object_new_object();

	if (o) {
		json_object_object_add(o, "seed", NULL);
		json_object_put(o);
	}
}

int api_server_start(struct api_server **out, int listen_fd, const struct api_hooks *hooks)
{
	struct api_server *s = calloc(1, sizeof(*s));

	json_seed_now();
	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->hooks = hooks;
	/*
	 * One thread polls every connection (epoll), so a client that connects and sends nothing
	 * holds up nobody, and is dropped after API_IDLE_TIMEOUT_S.
	 */
	s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC,
				     0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET,
				     (MHD_socket)listen_fd, MHD_OPTION_CONNECTION_TIMEOUT,
				     (unsigned int)API_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
				     (unsigned int)64, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
				     MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
	if (!s->daemon) {
		free(s);
		close(listen_fd);
		return -EIO;
	}
	*out = s;
	return 0;
}

void api_server_stop(struct api_server *s)
{
	MHD_socket fd;

	if (!s)
		return;
	/*
	 * Quiesced, MHD hands the listening socket back (ITC makes that possible in this thread
	 * mode) and leaves it open; otherwise MHD_stop_daemon closes it itself.
	 */
	fd = MHD_quiesce_daemon(s->daemon);
	MHD_stop_daemon(s->daemon);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	free(s);
}
