/* SPDX-License-Identifier: MIT */
/*
 * The control API's HTTP/1.1 server (libmicrohttpd) on an already listening socket, on a thread
 * of its own. It reads requests, hands them to api_handle (handler.h) and writes the answers.
 */
#ifndef NKVM_API_SERVER_H
#define NKVM_API_SERVER_H

#include "api/handler.h"

/* A connection that sends nothing for this long is closed. */
#define API_IDLE_TIMEOUT_S 10

struct api_server;

/*
 * Serves listen_fd (which the server then owns) with hooks (which must outlive the server).
 * The thread inherits the caller's signal mask. Returns 0 or a negative errno.
 */
int api_server_start(struct api_server **s, int listen_fd, const struct api_hooks *hooks);

/* Stops the thread, closes connections and the listening socket, frees s. NULL is fine. */
void api_server_stop(struct api_server *s);

#endif
