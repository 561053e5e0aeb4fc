// SPDX-License-Identifier: MIT
/* virtio-blk request parsing: each request type, and one test per malformed request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "virtio/blk_request.h"

struct fixture {
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_SEGS];
	uint8_t hdr[16], data[4096], status[1], range[16];
};

static void put_le(uint8_t *p, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		p[i] = v >> (8 * i);
}

static struct fixture *request(uint32_t type, uint64_t sector)
{
	struct fixture *f = calloc(1, sizeof(*f));

	put_le(f->hdr, type, 4);
	put_le(f->hdr + 8, sector, 8);
	return f;
}

static void seg(struct fixture *f, void *base, size_t len, int writable)
{
	struct virtq_chain *c = &f->chain;

	c->iov[c->nr_out + c->nr_in] = (struct iovec){ base, len };
	if (writable)
		c->nr_in++;
	else
		c->nr_out++;
}

static void test_blk_read_request_maps_header_data_and_status(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_IN, 8);
	struct blk_request_parsed p;

	seg(f, f->hdr, 16, 0);
	seg(f, f->data, 4096, 1);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_OK);
	assert_int_equal(p.type, VIRTIO_BLK_T_IN);
	assert_int_equal(p.offset, 8 * 512);
	assert_int_equal(p.iovcnt, 1);
	assert_ptr_equal(p.iov[0].iov_base, f->data);
	assert_int_equal(p.data_len, 4096);
	assert_ptr_equal(p.status, f->status);
	free(f);
}

static void test_read_with_status_in_data_segment(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_IN, 0);
	struct blk_request_parsed p;

	/* One writable buffer holding 512 data bytes and the status byte after them. */
	seg(f, f->hdr, 16, 0);
	seg(f, f->data, 513, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_OK);
	assert_int_equal(p.data_len, 512);
	assert_ptr_equal(p.status, f->data + 512);
	free(f);
}

static void test_write_with_header_and_data_in_one_segment(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct blk_request_parsed p;

	put_le(f->data, VIRTIO_BLK_T_OUT, 4);
	put_le(f->data + 8, 3, 8);
	seg(f, f->data, 16 + 1024, 0);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_OK);
	assert_int_equal(p.type, VIRTIO_BLK_T_OUT);
	assert_int_equal(p.offset, 3 * 512);
	assert_int_equal(p.iovcnt, 1);
	assert_ptr_equal(p.iov[0].iov_base, f->data + 16);
	assert_int_equal(p.data_len, 1024);
	free(f);
}

static void test_header_split_across_segments(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_OUT, 0x123456);
	struct blk_request_parsed p;

	seg(f, f->hdr, 5, 0);
	seg(f, f->hdr + 5, 11, 0);
	seg(f, f->data, 512, 0);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_OK);
	assert_int_equal(p.offset, 0x123456ULL * 512);
	assert_int_equal(p.data_len, 512);
	free(f);
}

static void test_blk_discard_range_sectors_become_bytes(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_DISCARD, 0);
	struct blk_request_parsed p;

	put_le(f->range, 100, 8);
	put_le(f->range + 8, 50, 4);
	seg(f, f->hdr, 16, 0);
	seg(f, f->range, 16, 0);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_OK);
	assert_int_equal(p.offset, 100 * 512);
	assert_int_equal(p.len, 50 * 512);
	free(f);
}

static void test_no_status_byte_is_ioerr_without_status(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_IN, 0);
	struct blk_request_parsed p;

	seg(f, f->hdr, 16, 0);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_IOERR);
	assert_null(p.status);
	free(f);
}

static void test_short_header_is_ioerr(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_IN, 0);
	struct blk_request_parsed p;

	seg(f, f->hdr, 15, 0);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_IOERR);
	assert_ptr_equal(p.status, f->status);
	free(f);
}

static void test_sector_overflow_is_ioerr(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_OUT, UINT64_MAX / 256);
	struct blk_request_parsed p;

	seg(f, f->hdr, 16, 0);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_IOERR);
	free(f);
}

static void test_discard_range_overflow_and_missing_range(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_WRITE_ZEROES, 0);
	struct blk_request_parsed p;

	put_le(f->range, UINT64_MAX >> 9, 8);
	put_le(f->range + 8, 1, 4);
	seg(f, f->hdr, 16, 0);
	seg(f, f->range, 16, 0);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_IOERR);
	free(f);
	f = request(VIRTIO_BLK_T_DISCARD, 0);
	seg(f, f->hdr, 16, 0);
	seg(f, f->range, 8, 0);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_IOERR);
	free(f);
}

static void test_unknown_type_is_unsupp(void **state)
{
	struct fixture *f = request(0x77, 0);
	struct blk_request_parsed p;

	seg(f, f->hdr, 16, 0);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_UNSUPP);
	free(f);
}

static void test_read_longer_than_used_length_is_ioerr(void **state)
{
	struct fixture *f = request(VIRTIO_BLK_T_IN, 0);
	struct blk_request_parsed p;

	/* Lengths only: the parser never touches data buffers. */
	seg(f, f->hdr, 16, 0);
	seg(f, f->data, 0x80000000u, 1);
	seg(f, f->data, 0x80000000u, 1);
	seg(f, f->status, 1, 1);
	assert_int_equal(blk_request_parse(&f->chain, &p, f->iov), VIRTIO_BLK_S_IOERR);
	free(f);
}

/* Lone requests run on the queue thread only after a streak of them; any other ends it. */
static void test_blk_lone_requests_run_inline_only_after_a_streak(void **state)
{
	unsigned int streak = 0;

	(void)state;
	for (int i = 0; i < BLK_ALONE_STREAK; i++)
		assert_false(blk_alone_step(&streak, true));
	assert_true(blk_alone_step(&streak, true));
	assert_true(blk_alone_step(&streak, true));
	/* A guest with two in flight: the streak starts over. */
	assert_false(blk_alone_step(&streak, false));
	assert_int_equal(streak, 0);
	for (int i = 0; i < BLK_ALONE_STREAK; i++)
		assert_false(blk_alone_step(&streak, true));
	assert_true(blk_alone_step(&streak, true));
	/* The count stays bounded however long the streak. */
	for (int i = 0; i < 100000; i++)
		blk_alone_step(&streak, true);
	assert_int_equal(streak, BLK_ALONE_STREAK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blk_read_request_maps_header_data_and_status),
		cmocka_unit_test(test_read_with_status_in_data_segment),
		cmocka_unit_test(test_write_with_header_and_data_in_one_segment),
		cmocka_unit_test(test_header_split_across_segments),
		cmocka_unit_test(test_blk_discard_range_sectors_become_bytes),
		cmocka_unit_test(test_no_status_byte_is_ioerr_without_status),
		cmocka_unit_test(test_short_header_is_ioerr),
		cmocka_unit_test(test_sector_overflow_is_ioerr),
		cmocka_unit_test(test_discard_range_overflow_and_missing_range),
		cmocka_unit_test(test_unknown_type_is_unsupp),
		cmocka_unit_test(test_read_longer_than_used_length_is_ioerr),
		cmocka_unit_test(test_blk_lone_requests_run_inline_only_after_a_streak),
	};

	return cmocka_run_group_tests_name("blk_request", tests, NULL, NULL);
}
