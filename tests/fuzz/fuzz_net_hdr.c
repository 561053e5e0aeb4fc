// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: hostile virtio-net chains through the transmit header check and the
 * control-command decision (virtio/net_hdr.h). The input gives the negotiated features, then
 * how to cut its own tail into readable and writable segments (as virtq_pop hands them over).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/net_hdr.h"

#define MAX_SEGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain c;
	static struct iovec iov[VIRTQ_MAX_SEGS];
	struct net_tx_frame f;
	struct net_ctrl_action a;
	unsigned int nsegs, nout;
	uint64_t features = 0;
	uint8_t *buf, *ack, sink[64];
	size_t at = 0, len, skip;
	unsigned int max_pairs;

	if (size < 10)
		return 0;
	memcpy(&features, data, 8);
	max_pairs = data[0] % 17;
	skip = data[1];
	nsegs = data[8] % MAX_SEGS + 1;
	nout = data[9] % (nsegs + 1);
	data += 10;
	size -= 10;
	if (size < nsegs)
		return 0;
	len = size - nsegs;
	/* A heap copy, so that ASan sees any access past what the guest gave. */
	buf = malloc(len ? len : 1);
	memcpy(buf, data + nsegs, len);
	memset(&c, 0, sizeof(c));
	for (unsigned int i = 0; i < nsegs; i++) {
		/* Segment lengths up to 255 * 256: long frames too. */
		size_t n = (size_t)data[i] * (data[i] & 1 ? 1 : 256);

		if (n > len - at)
			n = len - at;
		if (!n)
			continue; /* virtq_pop never hands out empty segments */
		c.iov[c.nr_out + c.nr_in] = (struct iovec){ buf + at, n };
		if (i < nout) {
			c.nr_out++;
			c.out_len += n;
		} else {
			c.nr_in++;
			c.in_len += n;
		}
		at += n;
	}
	if (net_tx_parse(&c, features, &f, iov) == 0) {
		size_t seen = 0;

		/* Every byte the frame claims lies in the segments handed back. */
		for (unsigned int i = 0; i < f.iovcnt; i++) {
			((volatile uint8_t *)iov[i].iov_base)[0];
			((volatile uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1];
			seen += iov[i].iov_len;
		}
		if (seen != f.len || f.len + NET_HDR_LEN > NET_TX_MAX)
			abort();
	}
	net_ctrl_decide(&c, features, max_pairs, &a, &ack);
	if (ack)
		*ack = 0;
	net_iov_to_buf(c.iov, c.nr_out + c.nr_in, skip, sink, sizeof(sink));
	free(buf);
	return 0;
}
