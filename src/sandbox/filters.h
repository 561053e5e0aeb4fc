/* SPDX-License-Identifier: MIT */
/*
 * Every thread type's allow list, each defined beside its thread's code, gathered here for the
 * table of docs/security.md (tests/unit/test_sandbox_filters.c prints it and checks each count).
 */
#ifndef NKVM_SANDBOX_FILTERS_H
#define NKVM_SANDBOX_FILTERS_H

#include "sandbox/sandbox.h"

extern const struct sandbox_filter main_filter; /* cmd/run.c */
extern const struct sandbox_filter vcpu_filter; /* vmm/vcpu.c */
extern const struct sandbox_filter api_filter; /* api/server.c */
extern const struct sandbox_filter vp_worker_filter; /* virtio/pci.c */
extern const struct sandbox_filter vp_queue_filter; /* virtio/pci.c: a device without its own */
extern const struct sandbox_filter blk_queue_filter; /* virtio/blk.c */
extern const struct sandbox_filter net_queue_filter; /* virtio/net.c */
extern const struct sandbox_filter console_queue_filter; /* virtio/console.c */
extern const struct sandbox_filter rng_queue_filter; /* virtio/rng.c */
extern const struct sandbox_filter fs_queue_filter; /* virtio/fs.c: the FUSE server */
extern const struct sandbox_filter balloon_queue_filter; /* virtio/balloon.c */
extern const struct sandbox_filter vsock_queue_filter; /* virtio/vsock.c */
extern const struct sandbox_filter vsock_filter; /* virtio/vsock.c: the back end's thread */
extern const struct sandbox_filter blk_threads_filter; /* block/engine_threads.c */
extern const struct sandbox_filter blk_aio_filter; /* block/engine_aio.c */
extern const struct sandbox_filter blk_uring_filter; /* block/engine_uring.c */
extern const struct sandbox_filter net_user_filter; /* net/user.c */

#endif
