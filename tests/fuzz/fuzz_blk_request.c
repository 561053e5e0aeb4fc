// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: hostile virtio-blk requests through the request parser. The input says how
 * to cut its own tail into readable and writable segments (as virtq_pop would hand them over).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/blk_request.h"

#define MAX_SEGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain c;
	static struct iovec iov[VIRTQ_MAX_SEGS];
	struct blk_request_parsed p;
	unsigned int nsegs, nout;
	uint8_t *buf;
	size_t at = 0, len;

	if (size < 2)
		return 0;
	nsegs = data[0] % MAX_SEGS + 1;
	nout = data[1] % (nsegs + 1);
	if (size < 2 + nsegs)
		return 0;
	len = size - 2 - nsegs;
	/* A heap copy, so that ASan sees any read past what the guest gave. */
	buf = malloc(len ? len : 1);
	memcpy(buf, data + 2 + nsegs, len);
	memset(&c, 0, sizeof(c));
	for (unsigned int i = 0; i < nsegs; i++) {
		size_t n = data[2 + i];

		if (n > len - at)
			n = len - at;
		if (!n)
			continue; /* virtq_pop never hands out empty segments */
		c.iov[c.nr_out + c.nr_in] = (struct iovec){ buf + at, n };
		if (i < nout)
			c.nr_out++;
		else
			c.nr_in++;
		at += n;
	}
	if (blk_request_parse(&c, &p, iov) == VIRTIO_BLK_S_OK && p.status)
		*p.status = VIRTIO_BLK_S_OK;
	for (unsigned int i = 0; i < p.iovcnt; i++)
		if (p.iov[i].iov_len)
			((volatile uint8_t *)p.iov[i].iov_base)[p.iov[i].iov_len - 1];
	free(buf);
	return 0;
}
