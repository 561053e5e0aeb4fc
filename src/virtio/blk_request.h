/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk requests (virtio 1.2 §5.2.6) parsed out of a descriptor chain: pure, so that the
 * parsing of what the guest wrote is unit-tested and fuzzed without a device or a disk.
 */
#ifndef NKVM_VIRTIO_BLK_REQUEST_H
#define NKVM_VIRTIO_BLK_REQUEST_H

#include <linux/virtio_blk.h> /* VIRTIO_BLK_T_*, VIRTIO_BLK_S_* (§5.2.6) */
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/queue.h"

/* §5.2.6: sectors are 512 bytes, whatever the device's block size. */
#define VIRTIO_BLK_SECTOR_SHIFT 9

struct blk_request_parsed {
	uint32_t type;
	uint64_t offset; /* bytes: sector << 9, or the range's for DISCARD/WRITE_ZEROES */
	uint64_t len; /* DISCARD/WRITE_ZEROES: bytes of the range */
	uint8_t *status; /* the chain's last writable byte; NULL when it has none */
	/* Data: readable segments after the header (OUT), or writable ones before the status. */
	struct iovec *iov;
	unsigned int iovcnt;
	uint64_t data_len;
};

/*
 * Parses chain c; iov must have room for c->nr_out + c->nr_in entries. Returns VIRTIO_BLK_S_OK
 * when the request can go to the disk, else the status to answer with at once: IOERR for a
 * chain without a status byte or header, a sector or range that overflows, a read whose length
 * does not fit the 32-bit used length; UNSUPP for an unknown type. p->status is set whenever
 * the chain has a writable byte, whatever the result.
 */
int blk_request_parse(const struct virtq_chain *c, struct blk_request_parsed *p, struct iovec *iov);

/*
 * Whether a queue's guest waits for one request at a time, so that the request just taken may
 * run on the queue's thread (see blk_may_wait in blk.c). alone: nothing else of the queue was
 * in flight or in the ring. Counts lone requests in *streak (back to 0 after any other) and
 * says yes once BLK_ALONE_STREAK lone requests came right before this one.
 */
#define BLK_ALONE_STREAK 8
bool blk_alone_step(unsigned int *streak, bool alone);

#endif
