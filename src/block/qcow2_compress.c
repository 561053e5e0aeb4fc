// SPDX-License-Identifier: MIT
/*
 * Compressed qcow2 clusters (docs/interop/qcow2.txt, "Compressed Clusters Descriptor"): a raw
 * deflate stream (no zlib header), or a zstd stream when the header's compression type says so.
 * Either must fill exactly one cluster; the stored bytes may run on past the stream's end
 * (they fill whole sectors), which is ignored.
 */
#include <errno.h>
#include <zlib.h>
#include <zstd.h>

#include "block/qcow2.h"

static int inflate_raw(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
	z_stream z = { 0 };
	int ret;

	/* Negative window bits: a raw stream; 15 decodes whatever window it was made with. */
	if (inflateInit2(&z, -15) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)out_len;
	ret = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && z.avail_out == 0)
		return 0;
	return -EIO;
}

static int zstd_decompress(struct qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out,
			   size_t out_len)
{
	ZSTD_inBuffer ib = { in, in_len, 0 };
	ZSTD_outBuffer ob = { out, out_len, 0 };

	if (!s->zstd) {
		s->zstd = ZSTD_createDCtx();
		if (!s->zstd)
			return -ENOMEM;
	} else {
		ZSTD_DCtx_reset(s->zstd, ZSTD_reset_session_only);
	}
	/* Several frames may follow; stop once the cluster is full: what trails is padding. */
	while (ob.pos < ob.size) {
		size_t in_was = ib.pos, out_was = ob.pos;
		size_t ret = ZSTD_decompressStream(s->zstd, &ob, &ib);

		if (ZSTD_isError(ret))
			return -EIO;
		if (ob.pos < ob.size && ib.pos == in_was && ob.pos == out_was)
			return -EIO; /* no progress (input used up): the cluster stays short */
	}
	return 0;
}

int qcow2_decompress(struct qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out)
{
	if (s->h.compression_type == QCOW2_COMPRESSION_ZSTD)
		return zstd_decompress(s, in, in_len, out, s->cluster_size);
	return inflate_raw(in, in_len, out, s->cluster_size);
}
