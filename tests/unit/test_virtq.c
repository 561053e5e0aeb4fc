// SPDX-License-Identifier: MIT
/*
 * Split virtqueues without KVM: the test plays the driver, writing descriptors and ring entries
 * into guest memory it made, and checks what the device side pops, pushes and decides, including
 * one test per malformed input that virtq_pop must refuse.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/util.h"
#include "virtio/queue.h"

#define RAM_SIZE (1 * MiB)
#define QSIZE 8
/* Layout of the test's guest memory: the three rings, data buffers, indirect tables. */
#define DESC_GPA 0x1000ULL
#define AVAIL_GPA 0x2000ULL
#define USED_GPA 0x3000ULL
#define DATA_GPA 0x4000ULL
#define TABLE_GPA 0x10000ULL

/* The driver's view of the layouts (virtio 1.2 §2.7.5, §2.7.6, §2.7.8), little-endian. */
#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1

struct drv_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct fixture {
	struct guest_memory mem;
	struct virtq q;
	struct virtq_chain c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || memory_init(&f->mem, RAM_SIZE) < 0)
		return -1;
	if (virtq_init(&f->q, &f->mem, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA, false, true) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	memory_free(&f->mem);
	free(f);
	return 0;
}

static void *gp(struct fixture *f, uint64_t gpa, uint64_t len)
{
	void *p = guest_ptr(&f->mem, gpa, len);

	assert_non_null(p);
	return p;
}

static void put_desc(struct fixture *f, uint64_t table, unsigned int i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct drv_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };

	memcpy(gp(f, table + sizeof(d) * i, sizeof(d)), &d, sizeof(d));
}

static uint16_t *avail_flags(struct fixture *f)
{
	return gp(f, AVAIL_GPA, 2);
}

static uint16_t *avail_idx(struct fixture *f)
{
	return gp(f, AVAIL_GPA + 2, 2);
}

static uint16_t *avail_ring(struct fixture *f, unsigned int i)
{
	return gp(f, AVAIL_GPA + 4 + 2ULL * i, 2);
}

static uint16_t *used_event(struct fixture *f)
{
	return avail_ring(f, f->q.size);
}

static uint16_t *used_flags(struct fixture *f)
{
	return gp(f, USED_GPA, 2);
}

static uint16_t *used_idx(struct fixture *f)
{
	return gp(f, USED_GPA + 2, 2);
}

static uint32_t *used_elem(struct fixture *f, unsigned int i)
{
	return gp(f, USED_GPA + 4 + 8ULL * i, 8);
}

static uint16_t *avail_event(struct fixture *f)
{
	return gp(f, USED_GPA + 4 + 8ULL * f->q.size, 2);
}

/* The driver side of §2.7.13.2 / §2.7.13.3: put head in the ring, then bump idx. */
static void avail_add(struct fixture *f, uint16_t head)
{
	uint16_t *idx = avail_idx(f);

	*avail_ring(f, *idx % f->q.size) = head;
	(*idx)++;
}

static void assert_iov(struct fixture *f, const struct iovec *iov, uint64_t gpa, size_t len)
{
	assert_ptr_equal(iov->iov_base, f->mem.base + gpa);
	assert_int_equal(iov->iov_len, len);
}

static void reinit(struct fixture *f, uint16_t size, bool event_idx, bool indirect)
{
	assert_int_equal(virtq_init(&f->q, &f->mem, size, DESC_GPA, AVAIL_GPA, USED_GPA, event_idx,
				    indirect),
			 0);
}

/* Pops expecting an error; the chain must then carry no segments. */
static void assert_pop_fails(struct fixture *f, int err)
{
	assert_int_equal(virtq_pop(&f->q, &f->c), err);
	assert_int_equal(f->c.nr_out, 0);
	assert_int_equal(f->c.nr_in, 0);
	assert_int_equal(f->c.out_len, 0);
	assert_int_equal(f->c.in_len, 0);
}

static void test_pop_empty_ring_returns_zero(void **state)
{
	struct fixture *f = *state;

	assert_false(virtq_has_avail(&f->q));
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
	assert_int_equal(f->q.last_avail, 0);
}

static void test_pop_splits_readable_then_writable_segments(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 3, DATA_GPA, 16, F_NEXT, 5);
	put_desc(f, DESC_GPA, 5, DATA_GPA + 0x100, 100, F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, DATA_GPA + 0x1000, 512, F_WRITE | F_NEXT, 0);
	put_desc(f, DESC_GPA, 0, DATA_GPA + 0x2000, 1, F_WRITE, 0);
	avail_add(f, 3);
	assert_true(virtq_has_avail(&f->q));
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.head, 3);
	assert_int_equal(f->c.nr_out, 2);
	assert_int_equal(f->c.nr_in, 2);
	assert_iov(f, &f->c.iov[0], DATA_GPA, 16);
	assert_iov(f, &f->c.iov[1], DATA_GPA + 0x100, 100);
	assert_iov(f, &f->c.iov[2], DATA_GPA + 0x1000, 512);
	assert_iov(f, &f->c.iov[3], DATA_GPA + 0x2000, 1);
	assert_int_equal(f->c.out_len, 116);
	assert_int_equal(f->c.in_len, 513);
	assert_int_equal(f->q.last_avail, 1);
	assert_false(virtq_has_avail(&f->q));
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
}

static void test_pop_takes_chains_in_avail_order(void **state)
{
	struct fixture *f = *state;
	static const uint16_t heads[] = { 5, 2, 7 };

	for (unsigned int i = 0; i < ARRAY_SIZE(heads); i++) {
		put_desc(f, DESC_GPA, heads[i], DATA_GPA + 0x100 * i, 10 + i, 0, 0);
		avail_add(f, heads[i]);
	}
	for (unsigned int i = 0; i < ARRAY_SIZE(heads); i++) {
		assert_int_equal(virtq_pop(&f->q, &f->c), 1);
		assert_int_equal(f->c.head, heads[i]);
		assert_int_equal(f->c.nr_out, 1);
		assert_iov(f, &f->c.iov[0], DATA_GPA + 0x100 * i, 10 + i);
	}
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
}

static void test_pop_and_push_follow_16bit_index_wrap(void **state)
{
	struct fixture *f = *state;

	/* Driver and device both at 65534, as after that many requests. */
	*avail_idx(f) = 65534;
	*used_idx(f) = 65534;
	f->q.last_avail = 65534;
	f->q.used_idx = 65534;
	for (unsigned int i = 0; i < 4; i++) {
		put_desc(f, DESC_GPA, i, DATA_GPA + i, 1, F_WRITE, 0);
		avail_add(f, i);
	}
	assert_int_equal(*avail_idx(f), 2);
	for (unsigned int i = 0; i < 4; i++) {
		assert_int_equal(virtq_pop(&f->q, &f->c), 1);
		assert_int_equal(f->c.head, i);
		assert_iov(f, &f->c.iov[0], DATA_GPA + i, 1);
		virtq_push(&f->q, f->c.head, 1);
	}
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
	assert_int_equal(f->q.last_avail, 2);
	assert_int_equal(*used_idx(f), 2);
	/* 65534 % 8 == 6: the used entries went to slots 6, 7, 0, 1. */
	assert_int_equal(used_elem(f, 6)[0], 0);
	assert_int_equal(used_elem(f, 7)[0], 1);
	assert_int_equal(used_elem(f, 0)[0], 2);
	assert_int_equal(used_elem(f, 1)[0], 3);
}

static void test_indices_wrap_after_65536_requests(void **state)
{
	struct fixture *f = *state;
	const unsigned int n = 65536 + 3;

	for (unsigned int i = 0; i < n; i++) {
		uint16_t head = i % QSIZE;

		put_desc(f, DESC_GPA, head, DATA_GPA + head, 1, 0, 0);
		avail_add(f, head);
		assert_int_equal(virtq_pop(&f->q, &f->c), 1);
		assert_int_equal(f->c.head, head);
		virtq_push(&f->q, head, 0);
	}
	assert_int_equal(f->q.last_avail, 3);
	assert_int_equal(*used_idx(f), 3);
	assert_int_equal(virtq_pop(&f->q, &f->c), 0);
}

static void test_pop_skips_zero_length_buffers(void **state)
{
	struct fixture *f = *state;

	/* The empty buffer's address is nowhere; it must be neither mapped nor returned. */
	put_desc(f, DESC_GPA, 0, UINT64_MAX, 0, F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, DATA_GPA, 8, F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.nr_out, 0);
	assert_int_equal(f->c.nr_in, 1);
	assert_iov(f, &f->c.iov[0], DATA_GPA, 8);
	assert_int_equal(f->c.in_len, 8);
}

static void test_pop_accepts_chain_as_long_as_queue(void **state)
{
	struct fixture *f = *state;

	for (unsigned int i = 0; i < QSIZE; i++)
		put_desc(f, DESC_GPA, i, DATA_GPA + i, 1, i < QSIZE - 1 ? F_NEXT : 0, i + 1);
	avail_add(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.nr_out, QSIZE);
	assert_iov(f, &f->c.iov[QSIZE - 1], DATA_GPA + QSIZE - 1, 1);
}

static void test_pop_indirect_table(void **state)
{
	struct fixture *f = *state;

	/* §2.7.5.3.2: the WRITE flag on the descriptor naming the table is ignored. */
	put_desc(f, DESC_GPA, 2, TABLE_GPA, 3 * 16, F_INDIRECT | F_WRITE, 0);
	/* Walked in next order, not table order: 0 → 2 → 1. */
	put_desc(f, TABLE_GPA, 0, DATA_GPA, 32, F_NEXT, 2);
	put_desc(f, TABLE_GPA, 2, DATA_GPA + 0x100, 64, F_WRITE | F_NEXT, 1);
	put_desc(f, TABLE_GPA, 1, DATA_GPA + 0x200, 128, F_WRITE, 0);
	avail_add(f, 2);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.head, 2);
	assert_int_equal(f->c.nr_out, 1);
	assert_int_equal(f->c.nr_in, 2);
	assert_iov(f, &f->c.iov[0], DATA_GPA, 32);
	assert_iov(f, &f->c.iov[1], DATA_GPA + 0x100, 64);
	assert_iov(f, &f->c.iov[2], DATA_GPA + 0x200, 128);
	assert_int_equal(f->c.out_len, 32);
	assert_int_equal(f->c.in_len, 192);
}

static void test_pop_direct_descriptors_then_indirect_table(void **state)
{
	struct fixture *f = *state;

	/* §2.7.5.3.2: zero or more direct descriptors, then one indirect, is a valid chain. */
	put_desc(f, DESC_GPA, 0, DATA_GPA, 16, F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, TABLE_GPA, 2 * 16, F_INDIRECT, 0);
	put_desc(f, TABLE_GPA, 0, DATA_GPA + 0x100, 8, F_NEXT, 1);
	put_desc(f, TABLE_GPA, 1, DATA_GPA + 0x200, 4, F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.nr_out, 2);
	assert_int_equal(f->c.nr_in, 1);
	assert_iov(f, &f->c.iov[0], DATA_GPA, 16);
	assert_iov(f, &f->c.iov[1], DATA_GPA + 0x100, 8);
	assert_iov(f, &f->c.iov[2], DATA_GPA + 0x200, 4);
}

static void test_pop_rejects_avail_idx_too_far_ahead(void **state)
{
	struct fixture *f = *state;

	for (unsigned int i = 0; i < QSIZE; i++) {
		put_desc(f, DESC_GPA, i, DATA_GPA, 1, 0, 0);
		*avail_ring(f, i) = i;
	}
	*avail_idx(f) = QSIZE + 1;
	assert_pop_fails(f, -EINVAL);
	/* Nothing was taken, and the head says so: it cannot be pushed back. */
	assert_int_equal(f->q.last_avail, 0);
	assert_true(f->c.head >= f->q.size);
	/* A full ring, exactly size ahead, is fine. */
	*avail_idx(f) = QSIZE;
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
}

static void test_pop_rejects_head_out_of_range(void **state)
{
	struct fixture *f = *state;

	avail_add(f, QSIZE);
	put_desc(f, DESC_GPA, 1, DATA_GPA, 1, 0, 0);
	avail_add(f, 1);
	assert_pop_fails(f, -EINVAL);
	assert_int_equal(f->c.head, QSIZE);
	/* The bad entry is consumed; the next request is still served. */
	assert_int_equal(f->q.last_avail, 1);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.head, 1);
}

static void test_pop_rejects_next_out_of_range(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 4, DATA_GPA, 16, F_NEXT, QSIZE);
	avail_add(f, 4);
	assert_pop_fails(f, -EINVAL);
	/* The head is known, so the device may fail just this request. */
	assert_int_equal(f->c.head, 4);
	assert_int_equal(f->q.last_avail, 1);
}

static void test_pop_rejects_descriptor_loop(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, DATA_GPA, 1, F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, DATA_GPA, 1, F_NEXT, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -ELOOP);
}

static void test_pop_rejects_chain_longer_than_queue(void **state)
{
	struct fixture *f = *state;

	/* Every descriptor once, then back to the head: size + 1 descriptors. */
	for (unsigned int i = 0; i < QSIZE; i++)
		put_desc(f, DESC_GPA, i, DATA_GPA + i, 0, F_NEXT, (i + 1) % QSIZE);
	avail_add(f, 0);
	assert_pop_fails(f, -ELOOP);
}

static void test_pop_rejects_buffer_outside_ram(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, RAM_SIZE - 8, 16, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EFAULT);
	put_desc(f, DESC_GPA, 0, RAM_SIZE, 1, F_WRITE, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EFAULT);
	/* The last byte of RAM is inside. */
	put_desc(f, DESC_GPA, 0, RAM_SIZE - 1, 1, F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
}

static void test_pop_rejects_buffer_whose_end_overflows(void **state)
{
	struct fixture *f = *state;

	/* addr + len wraps to 0x10, which a naive end check would take for low RAM. */
	put_desc(f, DESC_GPA, 0, 0xfffffffffffffff0ULL, 0x20, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EFAULT);
}

static void test_pop_rejects_readable_after_writable(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, DATA_GPA, 8, F_WRITE | F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, DATA_GPA + 8, 8, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EINVAL);
}

static void test_pop_rejects_readable_after_writable_in_indirect_table(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, DATA_GPA, 8, F_WRITE | F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, TABLE_GPA, 16, F_INDIRECT, 0);
	put_desc(f, TABLE_GPA, 0, DATA_GPA + 8, 8, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EINVAL);
}

static void test_pop_rejects_indirect_when_not_negotiated(void **state)
{
	struct fixture *f = *state;

	reinit(f, QSIZE, false, false);
	put_desc(f, DESC_GPA, 0, TABLE_GPA, 16, F_INDIRECT, 0);
	put_desc(f, TABLE_GPA, 0, DATA_GPA, 8, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EINVAL);
}

static void test_pop_rejects_indirect_with_next(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, TABLE_GPA, 16, F_INDIRECT | F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, DATA_GPA + 8, 8, F_WRITE, 0);
	put_desc(f, TABLE_GPA, 0, DATA_GPA, 8, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EINVAL);
}

static void test_pop_rejects_indirect_table_of_length_zero(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, TABLE_GPA, 0, F_INDIRECT, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EINVAL);
}

static void test_pop_rejects_indirect_table_length_not_multiple_of_16(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, TABLE_GPA, 24, F_INDIRECT, 0);
	put_desc(f, TABLE_GPA, 0, DATA_GPA, 8, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EINVAL);
}

static void test_pop_rejects_indirect_table_outside_ram(void **state)
{
	struct fixture *f = *state;

	/* Starts in RAM, ends past it. */
	put_desc(f, DESC_GPA, 0, RAM_SIZE - 16, 32, F_INDIRECT, 0);
	put_desc(f, RAM_SIZE - 16, 0, DATA_GPA, 8, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EFAULT);
}

static void test_pop_rejects_nested_indirect(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, TABLE_GPA, 16, F_INDIRECT, 0);
	put_desc(f, TABLE_GPA, 0, TABLE_GPA + 0x100, 16, F_INDIRECT, 0);
	put_desc(f, TABLE_GPA + 0x100, 0, DATA_GPA, 8, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EINVAL);
}

static void test_pop_rejects_indirect_loop(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, TABLE_GPA, 2 * 16, F_INDIRECT, 0);
	put_desc(f, TABLE_GPA, 0, DATA_GPA, 8, F_NEXT, 1);
	put_desc(f, TABLE_GPA, 1, DATA_GPA, 8, F_NEXT, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -ELOOP);
}

static void test_pop_rejects_indirect_next_out_of_range(void **state)
{
	struct fixture *f = *state;

	/* Entry 2 exists in memory but not in the 2-entry table. */
	put_desc(f, DESC_GPA, 0, TABLE_GPA, 2 * 16, F_INDIRECT, 0);
	put_desc(f, TABLE_GPA, 0, DATA_GPA, 8, F_NEXT, 2);
	put_desc(f, TABLE_GPA, 2, DATA_GPA, 8, 0, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -EINVAL);
}

/* One indirect table of n one-byte readable buffers, chained in order. */
static void put_long_indirect(struct fixture *f, unsigned int n)
{
	put_desc(f, DESC_GPA, 0, TABLE_GPA, n * 16, F_INDIRECT, 0);
	for (unsigned int i = 0; i < n; i++)
		put_desc(f, TABLE_GPA, i, DATA_GPA + i, 1, i < n - 1 ? F_NEXT : 0, i + 1);
	avail_add(f, 0);
}

static void test_pop_rejects_more_than_max_segments(void **state)
{
	struct fixture *f = *state;

	put_long_indirect(f, VIRTQ_MAX_SEGS);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.nr_out, VIRTQ_MAX_SEGS);
	assert_int_equal(f->c.out_len, VIRTQ_MAX_SEGS);
	assert_iov(f, &f->c.iov[VIRTQ_MAX_SEGS - 1], DATA_GPA + VIRTQ_MAX_SEGS - 1, 1);
	put_long_indirect(f, VIRTQ_MAX_SEGS + 1);
	assert_pop_fails(f, -E2BIG);
}

static void test_pop_rejects_indirect_table_longer_than_max_queue(void **state)
{
	struct fixture *f = *state;

	/* Entry 0 (all zeroes) ends the chain at once: only the table's length is wrong. */
	put_desc(f, DESC_GPA, 0, TABLE_GPA, (VIRTQ_MAX_SIZE + 1) * 16, F_INDIRECT, 0);
	avail_add(f, 0);
	assert_pop_fails(f, -E2BIG);
	put_desc(f, DESC_GPA, 0, TABLE_GPA, VIRTQ_MAX_SIZE * 16, F_INDIRECT, 0);
	avail_add(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
}

/*
 * A driver that makes head 0 available again before the device used it: the device holds
 * QSIZE chains, the next pop is refused and takes nothing, and a push makes room again.
 */
static void test_pop_rejects_more_chains_in_flight_than_queue_size(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, DATA_GPA, 1, 0, 0);
	for (unsigned int i = 0; i < QSIZE; i++) {
		avail_add(f, 0);
		assert_int_equal(virtq_pop(&f->q, &f->c), 1);
		assert_int_equal(f->c.head, 0);
	}
	avail_add(f, 0);
	assert_pop_fails(f, -ENOSPC);
	assert_int_equal(f->q.last_avail, QSIZE);
	assert_true(f->c.head >= f->q.size);
	virtq_push(&f->q, 0, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->q.last_avail, QSIZE + 1);
	avail_add(f, 0);
	assert_pop_fails(f, -ENOSPC);
}

static void test_push_writes_used_element_then_idx(void **state)
{
	struct fixture *f = *state;

	virtq_push(&f->q, 3, 77);
	assert_int_equal(used_elem(f, 0)[0], 3);
	assert_int_equal(used_elem(f, 0)[1], 77);
	assert_int_equal(*used_idx(f), 1);
	virtq_push(&f->q, 5, 0xffffffff);
	assert_int_equal(used_elem(f, 1)[0], 5);
	assert_int_equal(used_elem(f, 1)[1], 0xffffffff);
	assert_int_equal(*used_idx(f), 2);
	assert_int_equal(f->q.used_idx, 2);
}

static void test_need_notify_respects_no_interrupt_without_event_idx(void **state)
{
	struct fixture *f = *state;

	/* used_event is ignored without EVENT_IDX (§2.7.7.2). */
	*used_event(f) = 100;
	virtq_push(&f->q, 0, 0);
	assert_true(virtq_need_notify(&f->q));
	*avail_flags(f) = AVAIL_F_NO_INTERRUPT;
	virtq_push(&f->q, 1, 0);
	assert_false(virtq_need_notify(&f->q));
	*avail_flags(f) = 0;
	virtq_push(&f->q, 2, 0);
	assert_true(virtq_need_notify(&f->q));
}

static void test_need_notify_with_event_idx_follows_used_event(void **state)
{
	struct fixture *f = *state;

	reinit(f, QSIZE, true, false);
	/* NO_INTERRUPT is ignored with EVENT_IDX; the first decision always notifies. */
	*avail_flags(f) = AVAIL_F_NO_INTERRUPT;
	*used_event(f) = 1000;
	assert_true(virtq_need_notify(&f->q));
	/* "Interrupt me once entry 1 is used", i.e. when used idx goes past 1. */
	*used_event(f) = 1;
	virtq_push(&f->q, 0, 0);
	assert_false(virtq_need_notify(&f->q));
	virtq_push(&f->q, 1, 0);
	assert_true(virtq_need_notify(&f->q));
	virtq_push(&f->q, 2, 0);
	assert_false(virtq_need_notify(&f->q));
	/* Several pushes in one batch that step over used_event. */
	*used_event(f) = 3;
	virtq_push(&f->q, 3, 0);
	virtq_push(&f->q, 4, 0);
	assert_true(virtq_need_notify(&f->q));
}

static void test_need_notify_with_event_idx_across_wrap(void **state)
{
	struct fixture *f = *state;

	reinit(f, QSIZE, true, false);
	f->q.used_idx = 65534;
	virtq_need_notify(&f->q);
	*used_event(f) = 65535;
	virtq_push(&f->q, 0, 0);
	assert_int_equal(f->q.used_idx, 65535);
	assert_false(virtq_need_notify(&f->q));
	virtq_push(&f->q, 1, 0);
	assert_int_equal(f->q.used_idx, 0);
	assert_true(virtq_need_notify(&f->q));
	/* A batch from 65534 to 1 crosses used_event 65535 too. */
	f->q.used_idx = 65534;
	virtq_need_notify(&f->q);
	for (unsigned int i = 0; i < 3; i++)
		virtq_push(&f->q, i, 0);
	assert_true(virtq_need_notify(&f->q));
	/* ... but not used_event 2, still ahead. */
	*used_event(f) = 2;
	f->q.used_idx = 65534;
	virtq_need_notify(&f->q);
	for (unsigned int i = 0; i < 3; i++)
		virtq_push(&f->q, i, 0);
	assert_false(virtq_need_notify(&f->q));
}

static void test_need_notify_after_used_idx_laps_last_signal(void **state)
{
	struct fixture *f = *state;

	reinit(f, QSIZE, true, false);
	virtq_need_notify(&f->q);
	/*
	 * 65536 pushes without asking: used idx is back where it was signalled, and the
	 * used_event comparison alone would say "nothing new".
	 */
	*used_event(f) = 0x8000;
	for (unsigned int i = 0; i < 65536; i++)
		virtq_push(&f->q, 0, 0);
	assert_int_equal(f->q.used_idx, f->q.signalled_used);
	assert_true(virtq_need_notify(&f->q));
}

static void test_set_notify_toggles_no_notify_flag(void **state)
{
	struct fixture *f = *state;

	virtq_set_notify(&f->q, false);
	assert_int_equal(*used_flags(f), USED_F_NO_NOTIFY);
	virtq_set_notify(&f->q, true);
	assert_int_equal(*used_flags(f), 0);
	/* Without EVENT_IDX avail_event is not the device's to write. */
	assert_int_equal(*avail_event(f), 0);
}

static void test_set_notify_with_event_idx_writes_avail_event(void **state)
{
	struct fixture *f = *state;

	reinit(f, QSIZE, true, false);
	put_desc(f, DESC_GPA, 0, DATA_GPA, 1, 0, 0);
	avail_add(f, 0);
	avail_add(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	*avail_event(f) = 0xabcd;
	virtq_set_notify(&f->q, false);
	assert_int_equal(*avail_event(f), 0xabcd);
	virtq_set_notify(&f->q, true);
	assert_int_equal(*avail_event(f), 2);
	/* With EVENT_IDX the flag is not used (§2.7.10). */
	assert_int_equal(*used_flags(f), 0);
}

static void test_has_avail_tracks_driver_idx(void **state)
{
	struct fixture *f = *state;

	assert_false(virtq_has_avail(&f->q));
	put_desc(f, DESC_GPA, 0, DATA_GPA, 1, 0, 0);
	avail_add(f, 0);
	assert_true(virtq_has_avail(&f->q));
	assert_int_equal(virtq_pop(&f->q, &f->c), 1);
	assert_false(virtq_has_avail(&f->q));
}

static int init_at(struct fixture *f, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	return virtq_init(&f->q, &f->mem, size, desc, avail, used, false, false);
}

static void test_init_rejects_bad_size(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(init_at(f, 0, DESC_GPA, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(init_at(f, 3, DESC_GPA, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(init_at(f, 24, DESC_GPA, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(init_at(f, 0xffff, DESC_GPA, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(init_at(f, 1, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
	/* The largest queue: 512 KiB of descriptors, 64 KiB avail, 256 KiB used. */
	assert_int_equal(init_at(f, VIRTQ_MAX_SIZE, 0, 0x80000, 0xa0000), 0);
}

static void test_init_rejects_misaligned_rings(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(init_at(f, QSIZE, DESC_GPA + 8, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(init_at(f, QSIZE, DESC_GPA, AVAIL_GPA + 1, USED_GPA), -EINVAL);
	assert_int_equal(init_at(f, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA + 2), -EINVAL);
	/* §2.7: 16, 2 and 4 bytes are enough. */
	assert_int_equal(init_at(f, QSIZE, DESC_GPA + 16, AVAIL_GPA + 2, USED_GPA + 4), 0);
}

static void test_init_rejects_rings_outside_ram(void **state)
{
	struct fixture *f = *state;
	const uint64_t desc_end = RAM_SIZE - 16 * QSIZE;
	/* Room for flags, idx and ring, but not for the trailing event field. */
	const uint64_t avail_short = RAM_SIZE - (4 + 2 * QSIZE);
	const uint64_t used_short = RAM_SIZE - (4 + 8 * QSIZE);

	assert_int_equal(init_at(f, QSIZE, desc_end + 16, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(init_at(f, QSIZE, desc_end, AVAIL_GPA, USED_GPA), 0);
	assert_int_equal(init_at(f, QSIZE, DESC_GPA, avail_short, USED_GPA), -EINVAL);
	assert_int_equal(init_at(f, QSIZE, DESC_GPA, avail_short - 2, USED_GPA), 0);
	assert_int_equal(init_at(f, QSIZE, DESC_GPA, AVAIL_GPA, used_short), -EINVAL);
	assert_int_equal(init_at(f, QSIZE, DESC_GPA, AVAIL_GPA, used_short - 4), 0);
	assert_int_equal(init_at(f, QSIZE, UINT64_MAX - 15, AVAIL_GPA, USED_GPA), -EINVAL);
}

static void test_init_resets_indices(void **state)
{
	struct fixture *f = *state;

	f->q.last_avail = 5;
	f->q.used_idx = 7;
	f->q.signalled_used = 7;
	f->q.signalled_valid = true;
	f->q.inflight = 3;
	reinit(f, QSIZE, true, true);
	assert_int_equal(f->q.last_avail, 0);
	assert_int_equal(f->q.inflight, 0);
	assert_int_equal(f->q.used_idx, 0);
	assert_false(f->q.signalled_valid);
	assert_true(f->q.event_idx);
	assert_true(f->q.indirect);
}

#define QTEST(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		QTEST(test_pop_empty_ring_returns_zero),
		QTEST(test_pop_splits_readable_then_writable_segments),
		QTEST(test_pop_takes_chains_in_avail_order),
		QTEST(test_pop_and_push_follow_16bit_index_wrap),
		QTEST(test_indices_wrap_after_65536_requests),
		QTEST(test_pop_skips_zero_length_buffers),
		QTEST(test_pop_accepts_chain_as_long_as_queue),
		QTEST(test_pop_indirect_table),
		QTEST(test_pop_direct_descriptors_then_indirect_table),
		QTEST(test_pop_rejects_avail_idx_too_far_ahead),
		QTEST(test_pop_rejects_head_out_of_range),
		QTEST(test_pop_rejects_next_out_of_range),
		QTEST(test_pop_rejects_descriptor_loop),
		QTEST(test_pop_rejects_chain_longer_than_queue),
		QTEST(test_pop_rejects_buffer_outside_ram),
		QTEST(test_pop_rejects_buffer_whose_end_overflows),
		QTEST(test_pop_rejects_readable_after_writable),
		QTEST(test_pop_rejects_readable_after_writable_in_indirect_table),
		QTEST(test_pop_rejects_indirect_when_not_negotiated),
		QTEST(test_pop_rejects_indirect_with_next),
		QTEST(test_pop_rejects_indirect_table_of_length_zero),
		QTEST(test_pop_rejects_indirect_table_length_not_multiple_of_16),
		QTEST(test_pop_rejects_indirect_table_outside_ram),
		QTEST(test_pop_rejects_nested_indirect),
		QTEST(test_pop_rejects_indirect_loop),
		QTEST(test_pop_rejects_indirect_next_out_of_range),
		QTEST(test_pop_rejects_more_than_max_segments),
		QTEST(test_pop_rejects_indirect_table_longer_than_max_queue),
		QTEST(test_pop_rejects_more_chains_in_flight_than_queue_size),
		QTEST(test_push_writes_used_element_then_idx),
		QTEST(test_need_notify_respects_no_interrupt_without_event_idx),
		QTEST(test_need_notify_with_event_idx_follows_used_event),
		QTEST(test_need_notify_with_event_idx_across_wrap),
		QTEST(test_need_notify_after_used_idx_laps_last_signal),
		QTEST(test_set_notify_toggles_no_notify_flag),
		QTEST(test_set_notify_with_event_idx_writes_avail_event),
		QTEST(test_has_avail_tracks_driver_idx),
		QTEST(test_init_rejects_bad_size),
		QTEST(test_init_rejects_misaligned_rings),
		QTEST(test_init_rejects_rings_outside_ram),
		QTEST(test_init_resets_indices),
	};

	return cmocka_run_group_tests_name("virtq", tests, NULL, NULL);
}
