// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/socket.h"
#include "cmd/run_console.h"

int run_console_path(char *buf, size_t len, const char *api_path)
{
	size_t n = strlen(api_path), suffix = strlen(API_SOCK_SUFFIX);

	if (n < suffix || strcmp(api_path + n - suffix, API_SOCK_SUFFIX) ||
	    n - suffix + strlen(RUN_CONSOLE_SUFFIX) >= len)
		return -ENAMETOOLONG;
	snprintf(buf, len, "%.*s%s", (int)(n - suffix), api_path, RUN_CONSOLE_SUFFIX);
	return 0;
}

static void client_wait_for(struct run_console *rc, uint32_t events)
{
	if (rc->client_events == events)
		return;
	loop_del(rc->loop, &rc->client_src);
	rc->client_events = events;
	if (loop_add(rc->loop, &rc->client_src, events))
		rc->client_events = 0;
}

static void client_close(struct run_console *rc)
{
	if (rc->client_src.fd < 0)
		return;
	loop_del(rc->loop, &rc->client_src);
	loop_timer_cancel(rc->loop, &rc->retry);
	close(rc->client_src.fd);
	rc->client_src.fd = -1;
	rc->client_events = 0;
}

/* Sends the client what it has not had, as far as its socket takes it; the rest on EPOLLOUT. */
static void client_send(struct run_console *rc)
{
	uint32_t input = rc->input_held ? 0 : EPOLLIN;

	/* A client more than the ring behind lost what the ring no longer holds. */
	if (rc->end > RUN_CONSOLE_RING && rc->client_pos < rc->end - RUN_CONSOLE_RING)
		rc->client_pos = rc->end - RUN_CONSOLE_RING;
	while (rc->client_pos < rc->end) {
		size_t at = rc->client_pos % RUN_CONSOLE_RING, n = rc->end - rc->client_pos;
		ssize_t w;

		if (n > RUN_CONSOLE_RING - at)
			n = RUN_CONSOLE_RING - at;
		w = send(rc->client_src.fd, rc->ring + at, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			client_wait_for(rc, input | EPOLLOUT);
			return;
		}
		if (w <= 0) {
			client_close(rc);
			return;
		}
		rc->client_pos += w;
		if (rc->client_pos > rc->seen)
			rc->seen = rc->client_pos;
	}
	client_wait_for(rc, input);
}

void run_console_output(void *opaque, const uint8_t *buf, size_t len)
{
	struct run_console *rc = opaque;

	/* Only the last RUN_CONSOLE_RING bytes of a longer write can be kept. */
	if (len > RUN_CONSOLE_RING) {
		rc->end += len - RUN_CONSOLE_RING;
		buf += len - RUN_CONSOLE_RING;
		len = RUN_CONSOLE_RING;
	}
	while (len) {
		size_t at = rc->end % RUN_CONSOLE_RING, n = RUN_CONSOLE_RING - at;

		if (n > len)
			n = len;
		memcpy(rc->ring + at, buf, n);
		rc->end += n;
		buf += n;
		len -= n;
	}
	if (rc->client_src.fd >= 0)
		client_send(rc);
}

/* Client input, while the console has room for it; else input waits (in the socket). */
static void client_read(struct run_console *rc)
{
	struct console *c = rc->console;
	size_t room = sizeof(c->pending) - c->pending_len;
	uint8_t buf[sizeof(c->pending)];
	ssize_t n;

	if (!room) {
		rc->input_held = true;
		client_wait_for(rc, rc->client_events & ~(uint32_t)EPOLLIN);
		loop_timer_arm(rc->loop, &rc->retry, RUN_CONSOLE_RETRY_MS);
		return;
	}
	n = read(rc->client_src.fd, buf, room);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		client_close(rc); /* detached (Ctrl-A d) or gone */
		return;
	}
	console_input(c, buf, n);
}

static void on_retry(struct loop_timer *t)
{
	struct run_console *rc = t->opaque;

	rc->input_held = false;
	if (rc->client_src.fd >= 0)
		client_wait_for(rc, rc->client_events | EPOLLIN);
}

static void on_client(struct loop_source *src, uint32_t events)
{
	struct run_console *rc = src->opaque;

	if (events & EPOLLOUT)
		client_send(rc);
	if (rc->client_src.fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		client_read(rc);
}

static void on_accept(struct loop_source *src, uint32_t events)
{
	static const char busy[] = "nkvm: another console is attached to this guest\r\n";
	struct run_console *rc = src->opaque;
	int fd = accept4(src->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (rc->client_src.fd >= 0) {
		if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* Nothing more to tell it. */
		}
		close(fd);
		return;
	}
	rc->client_src.fd = fd;
	rc->client_events = 0;
	rc->input_held = false;
	/* What nobody has seen: all of it, the first time. */
	rc->client_pos = rc->seen;
	client_send(rc);
}

int run_console_open(struct run_console *rc, const char *path, struct console *c, struct loop *loop)
{
	int fd, err;

	memset(rc, 0, sizeof(*rc));
	rc->listen_src.fd = rc->client_src.fd = -1;
	rc->ring = malloc(RUN_CONSOLE_RING);
	if (!rc->ring)
		return -ENOMEM;
	fd = api_sock_listen(path);
	if (fd < 0) {
		free(rc->ring);
		rc->ring = NULL;
		return fd;
	}
	snprintf(rc->path, sizeof(rc->path), "%s", path);
	rc->console = c;
	rc->loop = loop;
	rc->retry = (struct loop_timer){ .fn = on_retry, .opaque = rc };
	rc->listen_src = (struct loop_source){ .fd = fd, .fn = on_accept, .opaque = rc };
	rc->client_src = (struct loop_source){ .fd = -1, .fn = on_client, .opaque = rc };
	err = loop_add(loop, &rc->listen_src, EPOLLIN);
	if (err) {
		run_console_close(rc);
		return err;
	}
	console_set_output(c, run_console_output, rc);
	return 0;
}

void run_console_close(struct run_console *rc)
{
	if (!rc->ring && !rc->path[0])
		return; /* never opened */
	if (rc->loop)
		client_close(rc);
	if (rc->listen_src.fd >= 0) {
		loop_del(rc->loop, &rc->listen_src);
		close(rc->listen_src.fd);
		rc->listen_src.fd = -1;
	}
	if (rc->path[0])
		unlink(rc->path);
	rc->path[0] = 0;
	free(rc->ring);
	rc->ring = NULL;
}
