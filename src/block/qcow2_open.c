// SPDX-License-Identifier: MIT
/*
 * Opening and closing a qcow2 image: the header and its feature bits judged, the L1 and
 * refcount tables read whole, the caches sized, the backing chain opened read-only (with the
 * format the image records, never a guess), the worker and the engine started. Closing drains,
 * then writes back the metadata twice (the second time for refcounts that the first one lowered).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "block/engine_helpers.h"
#include "block/qcow2.h"
#include "lib/log.h"
#include "lib/text.h"
#include "lib/util.h"

/*
 * The images being opened on this thread, outermost first: a backing file already among them
 * is a loop. Opens of a chain recurse on one thread (disk_open of the backing file from inside
 * qcow2_open), so thread-local state follows the recursion exactly.
 */
static __thread struct {
	unsigned int depth;
	bool probed; /* the outermost image's format was probed, not named */
	dev_t dev[QCOW2_MAX_CHAIN];
	ino_t ino[QCOW2_MAX_CHAIN];
} chain;

/*
 * err_set for qcow2_open's reasons, which hold at most DISK_ERR_MAX bytes whatever the caller's
 * buffer: names from the image are cut there, and a backing file's reason passes up the chain.
 */
static int open_fail(char *err, size_t errlen, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int open_fail(char *err, size_t errlen, int errnum, const char *fmt, ...)
{
	va_list ap;

	if (errlen > DISK_ERR_MAX)
		errlen = DISK_ERR_MAX;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return errnum;
}

static void qcow2_free(struct qcow2 *s)
{
	if (s->mfd >= 0)
		close(s->mfd);
	qcow2_cache_destroy(s->l2_cache);
	qcow2_cache_destroy(s->rb_cache);
	qcow2_header_free(&s->h);
	ZSTD_freeDCtx(s->zstd);
	free(s->l1);
	free(s->reftable);
	free(s->pending);
	free(s->buf);
	free(s->cbuf);
	free(s->zbuf);
	free(s->path);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->qlock);
	pthread_cond_destroy(&s->qcond);
	free(s);
}

/*
 * Metadata goes through a second descriptor of the same file without O_DIRECT, so that tables
 * need no aligned buffers. /proc/self/fd reopens exactly the file that is locked; the path is
 * the fallback where /proc is missing.
 */
static int reopen(struct qcow2 *s)
{
	int flags = (s->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", s->dfd);
	s->mfd = open(proc, flags);
	if (s->mfd < 0 && s->path[0])
		s->mfd = open(s->path, flags);
	return s->mfd < 0 ? -errno : 0;
}

static int read_header(struct qcow2 *s, char *err, size_t errlen)
{
	size_t len = s->d->file_size < 2 * MiB ? s->d->file_size : 2 * MiB;
	uint8_t *buf = malloc(len ? len : 1);
	char msg[256];
	int ret;

	if (!buf)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	ret = qcow2_pread(s, s->mfd, buf, len, 0);
	if (ret) {
		free(buf);
		return err_set(err, errlen, ret, "cannot read the qcow2 header");
	}
	ret = qcow2_header_parse(&s->h, buf, len, s->d->file_size, msg, sizeof(msg));
	free(buf);
	if (ret)
		open_fail(err, errlen, ret, "%s", msg);
	return ret;
}

/* Feature bits the parser leaves to the driver, and what the driver needs of the geometry. */
static int check_image(struct qcow2 *s, char *err, size_t errlen)
{
	uint64_t inc = s->h.incompatible_features;

	if (!s->readonly && (inc & QCOW2_INCOMPAT_CORRUPT))
		return open_fail(err, errlen, -EINVAL,
				 "image is marked corrupt; open it read-only, or repair it with "
				 "`qemu-img check -r all %s`",
				 s->path);
	if (!s->readonly && (inc & QCOW2_INCOMPAT_DIRTY))
		return open_fail(err, errlen, -EINVAL,
				 "image was not closed cleanly (dirty, lazy refcounts); "
				 "repair it with `qemu-img check -r all %s`, or open it read-only",
				 s->path);
	if (s->d->direct && s->cluster_size < s->d->block_size)
		return open_fail(err, errlen, -EINVAL,
				 "clusters of %llu bytes are smaller than the %u-byte blocks "
				 "direct I/O needs here",
				 (unsigned long long)s->cluster_size, s->d->block_size);
	return 0;
}

static int load_tables(struct qcow2 *s, char *err, size_t errlen)
{
	uint64_t rt_bytes = (uint64_t)s->h.refcount_table_clusters << s->cluster_bits;
	uint8_t *buf;
	int ret;

	s->l1_size = s->h.l1_size;
	s->l1 = calloc(s->l1_size ? s->l1_size : 1, sizeof(*s->l1));
	s->reftable_size = rt_bytes / 8;
	s->reftable = calloc(s->reftable_size, sizeof(*s->reftable));
	buf = malloc(rt_bytes > (uint64_t)s->l1_size * 8 ? rt_bytes : (uint64_t)s->l1_size * 8);
	if (!s->l1 || !s->reftable || !buf) {
		free(buf);
		return err_set(err, errlen, -ENOMEM, "out of memory");
	}
	ret = qcow2_pread(s, s->mfd, buf, (size_t)s->l1_size * 8, s->h.l1_table_offset);
	for (uint32_t i = 0; !ret && i < s->l1_size; i++)
		s->l1[i] = qcow2_be64(buf + 8 * i);
	if (!ret)
		ret = qcow2_pread(s, s->mfd, buf, rt_bytes, s->h.refcount_table_offset);
	for (uint64_t i = 0; !ret && i < s->reftable_size; i++)
		s->reftable[i] = qcow2_be64(buf + 8 * i) & QCOW2_REFT_OFFSET_MASK;
	free(buf);
	if (ret)
		err_set(err, errlen, ret, "cannot read the L1 or refcount table");
	return ret;
}

/*
 * L2 tables: as given (cache_size, like QEMU's l2-cache-size), else enough to map the whole
 * disk, up to QCOW2_DEFAULT_CACHE_MAX. Refcount blocks: a quarter of that when given, else
 * enough for the file or the disk, whichever is larger, within a quarter of the maximum. A size
 * given is bounded, as QEMU bounds l2-cache-size, by what maps the whole disk (and file), and by
 * DISK_CACHE_SIZE_MAX, so that the number of tables stays far below 2^32.
 */
static int make_caches(struct qcow2 *s, uint64_t cache_size, char *err, size_t errlen)
{
	uint64_t cs = s->cluster_size;
	uint64_t l2_cover = cs << s->l2_bits, rb_cover = cs << s->rb_bits;
	uint64_t big = s->h.size > s->d->file_size ? s->h.size : s->d->file_size;
	uint64_t l2_need = (s->h.size / l2_cover + !!(s->h.size % l2_cover)) * cs;
	uint64_t rb_need = (big / rb_cover + !!(big % rb_cover)) * cs + 2 * cs;
	uint64_t l2_max = QCOW2_DEFAULT_CACHE_MAX, rb_max = QCOW2_DEFAULT_CACHE_MAX / 4;
	uint64_t l2_bytes, rb_bytes;

	if (cache_size) {
		l2_max = cache_size < DISK_CACHE_SIZE_MAX ? cache_size : DISK_CACHE_SIZE_MAX;
		rb_max = l2_max / 4;
	}
	l2_bytes = l2_need < l2_max ? l2_need : l2_max;
	rb_bytes = rb_need < rb_max ? rb_need : rb_max;
	s->l2_cache = qcow2_cache_create((uint32_t)(l2_bytes / cs), s->cluster_bits);
	s->rb_cache = qcow2_cache_create((uint32_t)(rb_bytes / cs), s->cluster_bits);
	if (!s->l2_cache || !s->rb_cache)
		return err_set(err, errlen, -ENOMEM, "out of memory for the metadata cache");
	return 0;
}

/* The backing file's path: as written when absolute, else beside the image. */
static int backing_path(const struct qcow2 *s, char *out, size_t len)
{
	const char *name = s->h.backing_file, *slash = strrchr(s->path, '/');
	int n;

	if (name[0] == '/' || !slash)
		n = snprintf(out, len, "%s", name);
	else
		n = snprintf(out, len, "%.*s/%s", (int)(slash - s->path), s->path, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int open_backing(struct qcow2 *s, char *err, size_t errlen)
{
	const char *name = s->h.backing_file, *fmt = s->h.backing_format;
	struct disk_options bo = { .readonly = true, .threads = 2 };
	/*
	 * For messages: the names come from the image and could hold terminal escapes. As much
	 * as a message holds (text_escape cuts between escapes), not more: chains recurse.
	 */
	char ename[DISK_ERR_MAX], epath[DISK_ERR_MAX], breason[DISK_ERR_MAX];
	char efmt[TEXT_ESCAPED_SIZE(sizeof(s->h.backing_format))];
	char path[PATH_MAX];
	struct stat st, self;
	int ret;

	if (!name[0])
		return 0;
	text_escape(ename, sizeof(ename), name);
	text_escape(efmt, sizeof(efmt), fmt);
	/* Probing would let a guest's raw disk pass for qcow2 (and name any file as backing). */
	if (!fmt[0])
		return open_fail(err, errlen, -EINVAL,
				 "backing file %s: the image does not say its format; record it "
				 "with `qemu-img rebase -u -F raw -b %s %s` (or -F qcow2)",
				 ename, ename, s->path);
	if (!strcmp(fmt, "raw"))
		bo.format = DISK_FORMAT_RAW;
	else if (!strcmp(fmt, "qcow2"))
		bo.format = DISK_FORMAT_QCOW2;
	else
		return open_fail(err, errlen, -ENOTSUP,
				 "backing file %s: format %s is not supported (raw or qcow2)",
				 ename, efmt);
	if (backing_path(s, path, sizeof(path)))
		return open_fail(err, errlen, -ENAMETOOLONG, "backing file %s: path too long",
				 ename);
	text_escape(epath, sizeof(epath), path);
	if (chain.depth >= QCOW2_MAX_CHAIN)
		return open_fail(err, errlen, -ELOOP,
				 "backing file %s: chain of more than %d images", ename,
				 QCOW2_MAX_CHAIN);
	if (fstat(s->dfd, &self))
		return err_set(err, errlen, -errno, "cannot stat");
	if (!chain.depth)
		chain.probed = s->d->probed;
	chain.dev[chain.depth] = self.st_dev;
	chain.ino[chain.depth] = self.st_ino;
	chain.depth++;
	/* Before opening: the open would only meet our own lock and say "in use". */
	if (stat(path, &st) == 0) {
		for (unsigned int i = 0; i < chain.depth; i++) {
			if (chain.dev[i] == st.st_dev && chain.ino[i] == st.st_ino) {
				chain.depth--;
				return open_fail(err, errlen, -ELOOP,
						 "backing file %s: loop in the backing chain",
						 epath);
			}
		}
	}
	bo.path = path;
	bo.cache_size = s->d->opts ? s->d->opts->cache_size : 0;
	ret = disk_open(&s->backing, &bo, breason, sizeof(breason));
	chain.depth--;
	if (ret) {
		/* Deeper in the chain, the message already names the file that failed. */
		if (!strncmp(breason, "backing file ", 13))
			return open_fail(err, errlen, ret, "%s", breason);
		return open_fail(err, errlen, ret, "backing file %s: %s", epath, breason);
	}
	/*
	 * A probed image is only a file that starts with the qcow2 magic, which whoever could write
	 * it may have put there (a guest on its raw disk, before raw.c guarded probed ones): its
	 * chain may not reach a block device, any disk of the host when nkvm runs as root. Naming
	 * the format vouches for the image.
	 */
	if (chain.probed && s->backing->file.blockdev) {
		disk_close(s->backing);
		s->backing = NULL;
		return open_fail(err, errlen, -EPERM,
				 "backing file %s: a block device, behind an image whose "
				 "format was probed; give format=qcow2 to use it",
				 epath);
	}
	s->backing_size = disk_size(s->backing);
	return 0;
}

/*
 * Autoclear bits (docs/interop/qcow2.txt): a writer that does not maintain what a bit stands
 * for clears it. nkvm maintains none of them (bitmaps, raw external data), so a read-write open
 * clears them all, rewriting the header with its unknown extensions kept.
 */
static int clear_autoclear(struct qcow2 *s, char *err, size_t errlen)
{
	uint8_t *buf, field[8] = { 0 };
	long n;
	int ret;

	if (s->readonly || !s->h.autoclear_features)
		return 0;
	buf = malloc(s->cluster_size);
	if (!buf)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	s->h.autoclear_features = 0;
	n = qcow2_header_encode(&s->h, buf, s->cluster_size);
	if (n > 0)
		ret = qcow2_pwrite(s, s->mfd, buf, n, 0);
	else /* the rewritten header would not fit: the field alone */
		ret = qcow2_pwrite(s, s->mfd, field, sizeof(field), 88);
	free(buf);
	if (!ret)
		ret = qcow2_sync(s);
	if (ret)
		err_set(err, errlen, ret, "cannot rewrite the header to clear its autoclear bits");
	return ret;
}

static int start(struct qcow2 *s, char *err, size_t errlen)
{
	struct io_engine_config cfg = { .threads = s->d->opts ? s->d->opts->threads : 0 };
	size_t align = s->d->dio_mem_align > 4096 ? s->d->dio_mem_align : 4096;
	int ret;

	if (posix_memalign((void **)&s->buf, align, s->cluster_size))
		s->buf = NULL;
	s->cbuf = malloc(2 * s->cluster_size);
	s->zbuf = malloc(s->cluster_size);
	if (!s->buf || !s->cbuf || !s->zbuf)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	s->engine_ops = s->d->engine_ops;
	ret = s->engine_ops->create(&s->engine, &s->d->file, &cfg, err, errlen);
	if (ret)
		return ret;
	/* Like engine threads: signals are the main thread's, faults stay deliverable. */
	ret = io_thread_start(&s->worker, qcow2_worker, s, "nkvm-qcow2");
	if (ret) {
		s->engine_ops->destroy(s->engine);
		s->engine = NULL;
		return err_set(err, errlen, ret, "cannot start the qcow2 worker thread");
	}
	s->worker_started = true;
	return 0;
}

int qcow2_open(struct disk *d, char *err, size_t errlen)
{
	struct qcow2 *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	s->d = d;
	s->mfd = -1;
	s->dfd = d->file.fd;
	s->readonly = d->readonly;
	s->l1_dirty_lo = UINT32_MAX;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->qlock, NULL);
	pthread_cond_init(&s->qcond, NULL);
	s->path = strdup(d->opts && d->opts->path ? d->opts->path : "");
	if (!s->path) {
		free(s);
		return err_set(err, errlen, -ENOMEM, "out of memory");
	}
	ret = reopen(s);
	if (ret) {
		err_set(err, errlen, ret, "cannot open the image a second time (for metadata)");
		goto fail;
	}
	ret = read_header(s, err, errlen);
	if (ret)
		goto fail;
	s->cluster_bits = s->h.cluster_bits;
	s->cluster_size = 1ULL << s->cluster_bits;
	s->l2_bits = s->cluster_bits - 3;
	s->refcount_order = s->h.refcount_order;
	s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
	s->refcount_max = s->refcount_order == 6 ? UINT64_MAX :
						   (1ULL << (1U << s->refcount_order)) - 1;
	s->file_end = d->file_size;
	s->free_hint = 1;
	ret = check_image(s, err, errlen);
	if (!ret)
		ret = load_tables(s, err, errlen);
	if (!ret)
		ret = make_caches(s, d->opts ? d->opts->cache_size : 0, err, errlen);
	if (!ret)
		ret = open_backing(s, err, errlen);
	if (!ret)
		ret = clear_autoclear(s, err, errlen);
	if (!ret)
		ret = start(s, err, errlen);
	if (ret)
		goto fail;
	d->format_priv = s;
	d->size = s->h.size;
	return 0;
fail:
	if (s->backing)
		disk_close(s->backing);
	qcow2_free(s);
	return ret;
}

void qcow2_close(struct disk *d)
{
	struct qcow2 *s = d->format_priv;
	int err = 0;

	if (!s)
		return;
	/* Requests in flight, and those their done callbacks submit, finish first. */
	pthread_mutex_lock(&s->lock);
	while (s->outstanding)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_lock(&s->qlock);
	s->stopping = true;
	pthread_cond_signal(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
	pthread_join(s->worker, NULL);
	/* Twice: the first flush lowers the refcounts of freed clusters, the second writes them. */
	if (!s->readonly) {
		err = qcow2_flush_metadata(s);
		if (!err)
			err = qcow2_flush_metadata(s);
	}
	if (err)
		nkvm_err("%s: writing back qcow2 metadata at close: %s", s->path, strerror(-err));
	s->engine_ops->destroy(s->engine);
	if (s->backing)
		disk_close(s->backing);
	d->format_priv = NULL;
	qcow2_free(s);
}
