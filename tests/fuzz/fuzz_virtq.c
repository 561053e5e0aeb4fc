// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile driver's split virtqueue. The input is a small header and then an
 * image of guest RAM from address 0, holding the descriptor table, the available ring and
 * whatever indirect tables the descriptors point at; the device pops, touches and pushes every
 * chain. Guest RAM is a heap block here (not memory_init's mapping) so that ASan sees any access
 * past its ends.
 *
 * Input: u8 features (bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bits 2-4 the queue size: 16, 1, 2,
 * 4, 8, 64, 256 or 1024, so that the rings overlap each other at the larger ones), le16 starting
 * index (to reach the 16-bit wrap), then the RAM image.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/queue.h"

#define RAM_SIZE 0x10000
#define DESC_GPA 0x0
#define AVAIL_GPA 0x100
#define USED_GPA 0x200
#define HEADER 3

/* Uses a chain as a device would, and checks what virtq_pop promised about it. */
static void use_chain(const struct virtq_chain *c, unsigned int qsize)
{
	static volatile uint8_t sink;
	const struct iovec *iov = c->iov;
	uint64_t out = 0, in = 0;

	if (c->head >= qsize || c->nr_out + c->nr_in > VIRTQ_MAX_SEGS)
		abort();
	/* The first and last byte of each segment: one heap block, so the ends prove the rest. */
	for (unsigned int i = 0; i < c->nr_out; i++) {
		if (iov[i].iov_len == 0)
			abort();
		sink = ((uint8_t *)iov[i].iov_base)[0];
		sink = ((uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1];
		out += iov[i].iov_len;
	}
	for (unsigned int i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
		if (iov[i].iov_len == 0)
			abort();
		((uint8_t *)iov[i].iov_base)[0] = 0xa5;
		((uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1] = 0x5a;
		in += iov[i].iov_len;
	}
	if (out != c->out_len || in != c->in_len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_memory mem;
	static const unsigned int sizes[] = { 16, 1, 2, 4, 8, 64, 256, 1024 };
	static struct virtq_chain c;
	unsigned int qsize;
	struct virtq q;
	uint16_t start;
	size_t n;
	int ret;

	if (!mem.base) {
		memory_layout(&mem, RAM_SIZE);
		mem.base = aligned_alloc(4096, RAM_SIZE);
		if (!mem.base)
			abort();
		mem.regions[0].host = mem.base;
	}
	if (size < HEADER)
		return 0;
	n = size - HEADER < RAM_SIZE ? size - HEADER : RAM_SIZE;
	memcpy(mem.base, data + HEADER, n);
	memset(mem.base + n, 0, RAM_SIZE - n);
	qsize = sizes[(data[0] >> 2) & 7];
	if (virtq_init(&q, &mem, qsize, DESC_GPA, AVAIL_GPA, USED_GPA, data[0] & 1, data[0] & 2))
		abort();
	start = data[1] | data[2] << 8;
	q.last_avail = q.used_idx = start;

	virtq_set_notify(&q, false);
	for (unsigned int i = 0; i < 4 * qsize; i++) {
		ret = virtq_pop(&q, &c);
		if (ret == 0)
			break;
		/* After an error, a head that could be read is failed alone, as a device would. */
		if (ret < 0) {
			if (c.head < qsize)
				virtq_push(&q, c.head, 0);
			break;
		}
		use_chain(&c, qsize);
		virtq_push(&q, c.head, (uint32_t)c.in_len);
		/* Each call after the first compares with used_event (EVENT_IDX). */
		virtq_need_notify(&q);
	}
	virtq_set_notify(&q, true);
	virtq_has_avail(&q);
	return 0;
}
