/* SPDX-License-Identifier: MIT */
/*
 * nkvm's in-process FUSE server, the file system behind virtio-fs (--share, --root): it serves
 * the FUSE requests a guest sends about one host directory, and nothing outside it. Requests
 * come from a hostile guest: every length is checked against the buffers it arrived in, every
 * name is resolved beneath its parent's descriptor, and the inodes and open handles a guest
 * can hold are bounded. The wire structures are <linux/fuse.h>'s.
 */
#ifndef NKVM_FS_FUSE_SERVER_H
#define NKVM_FS_FUSE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct fuse_server;

/* The bounds a config's 0 means: what one guest may hold at once. */
#define FUSE_SERVER_MAX_INODES 65536
#define FUSE_SERVER_MAX_HANDLES 16384

struct fuse_server_config {
	const char *root; /* the host directory served as the file system's root */
	bool readonly; /* every change fails with EROFS */
	unsigned int max_inodes; /* 0: a default bound */
	unsigned int max_handles; /* 0: a default bound */
};

/*
 * Opens root (it must be a directory) and makes the server. Returns 0 with *srv, or a negative
 * errno with one line in err ("/srv/x: not a directory").
 */
int fuse_server_create(struct fuse_server **srv, const struct fuse_server_config *cfg, char *err,
		       size_t errlen);

/*
 * Serves one request. req[0..nreq) hold it as the guest wrote it (struct fuse_in_header, then
 * the opcode's arguments, then for WRITE the data); reply[0..nreply) are the buffers the guest
 * gave for the answer (struct fuse_out_header, then the opcode's reply, for READ the data, which
 * goes straight into them). Returns the bytes written to reply: 0 for a request that has no
 * answer (FORGET, BATCH_FORGET) or no room for one. A malformed request gets an error reply
 * (-EINVAL, -ENOSYS for an unknown opcode) when there is room; nothing is ever read or written
 * outside the buffers given. Safe to call from several threads at once (one per request queue).
 */
size_t fuse_server_handle(struct fuse_server *srv, const struct iovec *req, unsigned int nreq,
			  const struct iovec *reply, unsigned int nreply);

/* Closes every inode and handle the guest still held. NULL is fine. */
void fuse_server_destroy(struct fuse_server *srv);

#endif
