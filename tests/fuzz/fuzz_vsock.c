// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: hostile virtio-vsock chains through the packet header check (virtio/
 * vsock_pkt.h): a transmit chain's header and payload, and a receive chain's header and payload
 * room. The input says how to cut its own tail into readable and writable segments (as virtq_pop
 * hands them over); then come the segment bytes, whose first 44 are often a header.
 */
#include <endian.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/vsock_pkt.h"

#define MAX_SEGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain c;
	static uint8_t payload[VSOCK_MAX_PAYLOAD];
	struct iovec iov[8];
	struct vsock_pkt p;
	unsigned int nsegs, nout, n;
	uint8_t *buf;
	size_t at = 0, len, room = 0;

	if (size < 3)
		return 0;
	nsegs = data[0] % MAX_SEGS + 1;
	nout = data[1] % (nsegs + 1);
	data += 2;
	size -= 2;
	if (size < nsegs)
		return 0;
	len = size - nsegs;
	/* A heap copy, so that ASan sees any access past what the guest gave. */
	buf = malloc(len ? len : 1);
	memcpy(buf, data + nsegs, len);
	memset(&c, 0, sizeof(c));
	for (unsigned int i = 0; i < nsegs; i++) {
		/* Segment lengths up to 255 * 256: payloads past 64 KiB too. */
		size_t s = (size_t)data[i] * (data[i] & 1 ? 1 : 256);

		if (s > len - at)
			s = len - at;
		if (!s)
			continue; /* virtq_pop never hands out empty segments */
		c.iov[c.nr_out + c.nr_in] = (struct iovec){ buf + at, s };
		if (i < nout) {
			c.nr_out++;
			c.out_len += s;
		} else {
			c.nr_in++;
			c.in_len += s;
		}
		at += s;
	}
	/* The guest's CID is whatever the header says, so that the checks past it run too. */
	if (c.out_len >= VSOCK_HDR_LEN) {
		uint64_t cid;

		memcpy(&cid, buf, sizeof(cid));
		if (vsock_pkt_parse(&c, le64toh(cid), &p) == 0) {
			if (p.len > VSOCK_MAX_PAYLOAD || p.len > c.out_len - VSOCK_HDR_LEN)
				abort();
			vsock_pkt_copy_payload(&c, &p, payload);
		}
	}
	vsock_pkt_parse(&c, 3, &p);
	/* The receive side: a header when there is room, and the payload room after it. */
	if (vsock_rx_put_hdr(&c, &p) == 0) {
		n = vsock_rx_payload_iov(&c, VSOCK_MAX_PAYLOAD, iov, 8);
		for (unsigned int i = 0; i < n; i++) {
			((volatile uint8_t *)iov[i].iov_base)[0] = 0;
			((volatile uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1] = 0;
			room += iov[i].iov_len;
		}
		if (room + VSOCK_HDR_LEN > c.in_len)
			abort();
	}
	free(buf);
	return 0;
}
