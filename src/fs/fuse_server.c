// SPDX-License-Identifier: MIT
/*
 * PLACEHOLDER until branch i18-fuse's server lands (it replaces this file whole): the interface
 * of fuse_server.h with no file system behind it, so that virtio-fs and --share build and link.
 * create fails, so no device is ever made over it.
 */
#include <errno.h>
#include <stdio.h>

#include "fs/fuse_server.h"

int fuse_server_create(struct fuse_server **srv, const struct fuse_server_config *cfg, char *err,
		       size_t errlen)
{
	snprintf(err, errlen, "%s: this nkvm is built without its FUSE server", cfg->root);
	*srv = NULL;
	return -ENOSYS;
}

size_t fuse_server_handle(struct fuse_server *srv, const struct iovec *req, unsigned int nreq,
			  const struct iovec *reply, unsigned int nreply)
{
	return 0;
}

void fuse_server_destroy(struct fuse_server *srv)
{
}
