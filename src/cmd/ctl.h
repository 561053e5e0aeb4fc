/* SPDX-License-Identifier: MIT */
/* What `nkvm list/pause/resume/stat` share: reaching a named guest's control socket. */
#ifndef NKVM_CMD_CTL_H
#define NKVM_CMD_CTL_H

#include "api/client.h"

/* The exit statuses of the commands that name a guest (issue 17's interface). */
enum { CTL_OK = 0, CTL_REFUSED = 1, CTL_USAGE = 2, CTL_NO_GUEST = 3 };

/*
 * Sends METHOD ENDPOINT to guest name. Returns CTL_OK with the reply in r (free it), or prints
 * one line and returns CTL_NO_GUEST (no socket; a stale one, of a guest that died, is removed
 * and said so) or CTL_REFUSED (no answer).
 */
int ctl_call(const char *name, const char *method, const char *endpoint, struct api_reply *r);
/* As ctl_call, with a JSON body. */
int ctl_call_body(const char *name, const char *method, const char *endpoint, const char *body,
		  struct api_reply *r);

/*
 * Removes a stale socket (after api_call said -ECONNREFUSED, or -ENOENT through a symlink whose
 * --user guest ended) and says so on stderr.
 */
void ctl_remove_stale(const char *name, const char *path);

/* True when path is a symlink: root's way to a --user guest's socket (api_sock_link). */
int ctl_is_link(const char *path);

#endif
