// SPDX-License-Identifier: MIT
/*
 * The crash-consistency writer and its verifier (tests/crash/run drives them).
 *
 *   crash_writer fill FILE SIZE
 *	A raw file whose every 512-byte sector holds generation 0 of its pattern: a backing file
 *	whose data the verifier recognises.
 *   crash_writer write IMAGE JOURNAL --gen-base N [--seed S] [--depth D] [--ops N]
 *	Opens IMAGE through the block layer (disk_open: raw or qcow2, a backing file if it has
 *	one) and writes at random until killed (or N operations): writes whose sectors carry
 *	(offset, generation) patterns, write-zeroes and discards, several in flight, never two on
 *	one sector at once, and a FLUSH every few dozen completions. Half the operations cover
 *	whole 4 KiB blocks; the other half any number of 512-byte sectors from any sector, so
 *	that clusters are written in part and copy-on-write fills the rest of a new cluster, from
 *	the backing file or with zeroes.
 *   crash_writer verify CONTENT JOURNAL STATE [--backing]
 *	CONTENT is the image read as raw bytes (qemu-img convert of the qcow2 image: QEMU's
 *	reading, not ours). Replays the journal over STATE, checks every sector, saves STATE
 *	and empties JOURNAL. Exit status 0 when every sector is one the guest may see.
 *
 * The journal is what makes the check strict. Before an operation is submitted, its intent
 * (generation, sectors, kind) is appended; when it completes, a DONE record; before a FLUSH is
 * submitted, a FLUSH record, and when that FLUSH completes, a FLUSHED record, then fsync. A
 * FLUSH makes durable the operations whose DONE precedes its FLUSH record (disk.h), so after a
 * crash each sector must hold the result of its last durable operation or of an operation
 * submitted later: a write of at least that generation, zeroes if a later write-zeroes or
 * discard was submitted, the backing data (or anything older) if a later discard was. Data of an
 * older generation is a lost flushed write; a sector of no pattern at all is a torn or misplaced
 * one. SIGKILL keeps the page cache, so what this finds are writes the image format lost (data
 * written but not yet mapped when the FLUSH completed) and metadata written in the wrong order.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/disk.h"

#define BLOCK 4096ULL
#define SECTOR 512ULL
#define SECTORS_PER_BLOCK (BLOCK / SECTOR)
#define MAX_BLOCKS_PER_OP 32
#define MAX_DEPTH 32

enum kind { K_INITIAL, K_WRITE, K_ZERO, K_DISCARD };

enum record_type { R_OP = 1, R_DONE, R_FLUSH, R_FLUSHED };

struct record {
	uint32_t type;
	uint32_t kind;
	uint64_t gen; /* an operation's generation, or a flush's number */
	uint64_t sector; /* first 512-byte sector */
	uint64_t count; /* sectors */
};

static void fatal(const char *fmt, const char *arg)
{
	fprintf(stderr, "crash_writer: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(2);
}

/* ---- Patterns: every sector names its offset and generation, the rest follows from them. */

static uint64_t mix(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void pattern(uint8_t *sector, uint64_t offset, uint64_t gen)
{
	uint64_t *w = (uint64_t *)sector, s = mix(offset * 0x9e3779b97f4a7c15ULL ^ mix(gen + 1));

	w[0] = offset ^ 0x4e4b564d43525348ULL; /* "NKVMCRSH" */
	w[1] = gen;
	for (unsigned int i = 2; i < SECTOR / 8; i++) {
		s = mix(s + i);
		w[i] = s;
	}
}

enum content { C_ZERO, C_PATTERN, C_GARBAGE };

static enum content classify(const uint8_t *sector, uint64_t offset, uint64_t *gen)
{
	const uint64_t *w = (const uint64_t *)sector;
	uint8_t expect[SECTOR] __attribute__((aligned(8)));
	bool zero = true;

	for (unsigned int i = 0; i < SECTOR / 8 && zero; i++)
		zero = !w[i];
	if (zero)
		return C_ZERO;
	if ((w[0] ^ 0x4e4b564d43525348ULL) != offset)
		return C_GARBAGE;
	*gen = w[1];
	pattern(expect, offset, *gen);
	return memcmp(expect, sector, SECTOR) ? C_GARBAGE : C_PATTERN;
}

/* ---- fill ---- */

static int cmd_fill(int argc, char **argv)
{
	uint8_t buf[64 * SECTOR] __attribute__((aligned(8)));
	uint64_t size;
	int fd;

	if (argc != 4)
		fatal("%s", "usage: crash_writer fill FILE SIZE");
	size = strtoull(argv[3], NULL, 0);
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fatal("cannot create %s", argv[2]);
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		for (unsigned int i = 0; i < sizeof(buf) / SECTOR; i++)
			pattern(buf + i * SECTOR, off + i * SECTOR, 0);
		if (pwrite(fd, buf, sizeof(buf), off) != (ssize_t)sizeof(buf))
			fatal("cannot write %s", argv[2]);
	}
	if (ftruncate(fd, size) || fsync(fd))
		fatal("cannot size %s", argv[2]);
	close(fd);
	return 0;
}

/* ---- write ---- */

struct op {
	struct disk_request req;
	struct iovec iov;
	uint8_t *buf;
	struct writer *w;
	enum kind kind;
	uint64_t gen, sector, count; /* in sectors */
	bool busy;
};

struct writer {
	struct disk *disk;
	int journal;
	uint64_t nsectors;
	uint8_t *busy; /* per sector: an operation in flight covers it */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int inflight, depth;
	uint64_t completed, since_flush, flush_every, flushes;
	bool flushing;
	struct disk_request flush;
	int error;
	uint64_t rng;
};

static uint64_t rnd(struct writer *w)
{
	w->rng = mix(w->rng + 0x9e3779b97f4a7c15ULL);
	return w->rng;
}

/* Appends a record; the caller holds w->lock, so records keep the order of events. */
static void journal_append(struct writer *w, uint32_t type, const struct op *op, uint64_t gen)
{
	struct record r = { .type = type, .gen = gen };

	if (op) {
		r.kind = op->kind;
		r.sector = op->sector;
		r.count = op->count;
	}
	if (write(w->journal, &r, sizeof(r)) != (ssize_t)sizeof(r))
		w->error = errno ? -errno : -EIO;
}

static void op_done(struct disk_request *req, int status)
{
	struct op *op = req->opaque;
	struct writer *w = op->w;

	pthread_mutex_lock(&w->lock);
	if (status) {
		fprintf(stderr, "crash_writer: request at sector %" PRIu64 " failed: %s\n",
			op->sector, strerror(-status));
		w->error = status;
	} else {
		journal_append(w, R_DONE, op, op->gen);
	}
	memset(w->busy + op->sector, 0, op->count);
	op->busy = false;
	w->inflight--;
	w->completed++;
	w->since_flush++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void flush_done(struct disk_request *req, int status)
{
	struct writer *w = req->opaque;

	pthread_mutex_lock(&w->lock);
	if (status) {
		fprintf(stderr, "crash_writer: flush failed: %s\n", strerror(-status));
		w->error = status;
	} else {
		journal_append(w, R_FLUSHED, NULL, w->flushes);
	}
	pthread_mutex_unlock(&w->lock);
	/* What the flush made durable is now known durable too, even across a power loss. */
	if (!status && fsync(w->journal))
		w->error = -errno;
	pthread_mutex_lock(&w->lock);
	w->flushing = false;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* A free range of sectors for the next operation; false when none was found. */
static bool pick_range(struct writer *w, uint64_t *sector, uint64_t *count)
{
	for (int tries = 0; tries < 16; tries++) {
		/* Mostly small requests, some spanning several clusters. */
		uint64_t n = rnd(w) % 4 ? 1 + rnd(w) % 4 : 1 + rnd(w) % MAX_BLOCKS_PER_OP;
		bool odd = rnd(w) % 2;
		uint64_t s;

		/* Whole 4 KiB blocks, or up to as many sectors from any sector. */
		n *= SECTORS_PER_BLOCK;
		if (odd)
			n = 1 + rnd(w) % n;
		if (n > w->nsectors)
			n = w->nsectors;
		if (odd)
			s = rnd(w) % (w->nsectors - n + 1);
		else
			s = rnd(w) % ((w->nsectors - n) / SECTORS_PER_BLOCK + 1) *
			    SECTORS_PER_BLOCK;
		if (!memchr(w->busy + s, 1, n)) {
			*sector = s;
			*count = n;
			return true;
		}
	}
	return false;
}

static void start_flush(struct writer *w)
{
	w->flushing = true;
	w->since_flush = 0;
	w->flush_every = 8 + rnd(w) % 56;
	w->flushes++;
	journal_append(w, R_FLUSH, NULL, w->flushes);
	w->flush = (struct disk_request){ .op = DISK_FLUSH, .done = flush_done, .opaque = w };
}

static int cmd_write(int argc, char **argv)
{
	struct disk_options o = { 0 };
	struct writer w = { .depth = 8, .flush_every = 16 };
	struct op ops[MAX_DEPTH];
	uint64_t gen = 0, max_ops = UINT64_MAX, n;
	char why[DISK_ERR_MAX];
	int err;

	if (argc < 4)
		fatal("%s", "usage: crash_writer write IMAGE JOURNAL --gen-base N [--seed S] "
			    "[--depth D] [--ops N]");
	w.rng = (uint64_t)getpid() << 20 ^ (uint64_t)time(NULL);
	for (int i = 4; i + 1 < argc; i += 2) {
		uint64_t v = strtoull(argv[i + 1], NULL, 0);

		if (!strcmp(argv[i], "--gen-base"))
			gen = v;
		else if (!strcmp(argv[i], "--seed"))
			w.rng = v;
		else if (!strcmp(argv[i], "--depth"))
			w.depth = v < 1 ? 1 : v > MAX_DEPTH ? MAX_DEPTH : v;
		else if (!strcmp(argv[i], "--ops"))
			max_ops = v;
		else
			fatal("unknown option %s", argv[i]);
	}
	o.path = argv[2];
	err = disk_open(&w.disk, &o, why, sizeof(why));
	if (err) {
		fprintf(stderr, "crash_writer: %s: %s (%s)\n", argv[2], why, strerror(-err));
		return 2;
	}
	w.nsectors = disk_size(w.disk) / SECTOR;
	w.journal = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	w.busy = calloc(w.nsectors, 1);
	if (w.journal < 0 || !w.busy || !w.nsectors)
		fatal("cannot set up the journal %s", argv[3]);
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	memset(ops, 0, sizeof(ops));
	for (unsigned int i = 0; i < w.depth; i++) {
		ops[i].w = &w;
		ops[i].buf = aligned_alloc(4096, MAX_BLOCKS_PER_OP * BLOCK);
		if (!ops[i].buf)
			fatal("%s", "out of memory");
	}
	/* Tells tests/crash/run that requests are about to flow. */
	printf("writing %" PRIu64 " sectors from generation %" PRIu64 "\n", w.nsectors, gen + 1);
	fflush(stdout);

	for (n = 0; n < max_ops; n++) {
		struct op *op = NULL;
		bool flush = false;
		uint64_t r;

		pthread_mutex_lock(&w.lock);
		for (;;) {
			if (w.error)
				break;
			if (!w.flushing && w.since_flush >= w.flush_every) {
				start_flush(&w);
				flush = true;
				break;
			}
			if (w.inflight < w.depth) {
				for (unsigned int i = 0; i < w.depth && !op; i++)
					op = ops[i].busy ? NULL : &ops[i];
				if (pick_range(&w, &op->sector, &op->count))
					break;
				op = NULL;
			}
			pthread_cond_wait(&w.cond, &w.lock);
		}
		if (w.error) {
			pthread_mutex_unlock(&w.lock);
			break;
		}
		if (flush) {
			pthread_mutex_unlock(&w.lock);
			disk_submit(w.disk, &w.flush);
			n--;
			continue;
		}
		r = rnd(&w) % 100;
		op->kind = r < 80 ? K_WRITE : r < 90 ? K_ZERO : K_DISCARD;
		op->gen = ++gen;
		op->busy = true;
		memset(w.busy + op->sector, 1, op->count);
		w.inflight++;
		/* The intent goes first: a crash right after the submit may leave its effect. */
		journal_append(&w, R_OP, op, op->gen);
		pthread_mutex_unlock(&w.lock);

		op->req = (struct disk_request){
			.offset = op->sector * SECTOR,
			.done = op_done,
			.opaque = op,
		};
		if (op->kind == K_WRITE) {
			for (uint64_t s = 0; s < op->count; s++)
				pattern(op->buf + s * SECTOR, op->req.offset + s * SECTOR, op->gen);
			op->iov = (struct iovec){ op->buf, op->count * SECTOR };
			op->req.op = DISK_WRITE;
			op->req.iov = &op->iov;
			op->req.iovcnt = 1;
		} else {
			op->req.op = op->kind == K_ZERO ? DISK_WRITE_ZEROES : DISK_DISCARD;
			op->req.len = op->count * SECTOR;
		}
		disk_submit(w.disk, &op->req);
	}

	/* A bounded run ends with everything flushed. */
	pthread_mutex_lock(&w.lock);
	while (w.inflight || w.flushing)
		pthread_cond_wait(&w.cond, &w.lock);
	if (!w.error) {
		start_flush(&w);
		pthread_mutex_unlock(&w.lock);
		disk_submit(w.disk, &w.flush);
		pthread_mutex_lock(&w.lock);
		while (w.flushing)
			pthread_cond_wait(&w.cond, &w.lock);
	}
	pthread_mutex_unlock(&w.lock);
	disk_close(w.disk);
	printf("wrote %" PRIu64 " operations, %" PRIu64 " flushes\n", w.completed, w.flushes);
	return w.error ? 1 : 0;
}

/* ---- verify ---- */

/* What the verifier knows of a sector, kept from round to round in STATE. */
struct sector_state {
	uint64_t gen; /* of its last durable operation; 0: none */
	uint64_t zero_gen; /* the latest write-zeroes or discard ever submitted */
	uint64_t discard_gen; /* the latest discard ever submitted */
	uint32_t kind; /* of its last durable operation */
	uint32_t pad;
};

static void apply_durable(struct sector_state *b, const struct record *r)
{
	for (uint64_t i = 0; i < r->count; i++) {
		b[r->sector + i].gen = r->gen;
		b[r->sector + i].kind = r->kind;
	}
}

/* Replays the journal: intents widen what may be seen, flushed completions become durable. */
static int replay(struct sector_state *b, uint64_t nsectors, const struct record *rec, size_t n)
{
	struct record *pending = malloc((n + 1) * sizeof(*pending));
	size_t np = 0, cut = 0;
	uint64_t flush = 0;
	bool flushing = false;

	if (!pending)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct record *r = &rec[i];

		if ((r->type == R_OP || r->type == R_DONE) &&
		    (r->sector > nsectors || r->count > nsectors - r->sector)) {
			free(pending);
			return -EINVAL;
		}
		switch (r->type) {
		case R_OP:
			for (uint64_t k = r->sector; k < r->sector + r->count; k++) {
				if (r->kind != K_WRITE && r->gen > b[k].zero_gen)
					b[k].zero_gen = r->gen;
				if (r->kind == K_DISCARD && r->gen > b[k].discard_gen)
					b[k].discard_gen = r->gen;
			}
			break;
		case R_DONE:
			pending[np++] = *r;
			break;
		case R_FLUSH:
			flush = r->gen;
			flushing = true;
			cut = np;
			break;
		case R_FLUSHED:
			if (!flushing || r->gen != flush)
				break;
			for (size_t k = 0; k < cut; k++)
				apply_durable(b, &pending[k]);
			memmove(pending, pending + cut, (np - cut) * sizeof(*pending));
			np -= cut;
			cut = 0;
			flushing = false;
			break;
		}
	}
	free(pending);
	return 0;
}

static const char *kind_name(uint32_t k)
{
	return k == K_WRITE   ? "write" :
	       k == K_ZERO    ? "write-zeroes" :
	       k == K_DISCARD ? "discard" :
				"nothing";
}

/* Whether a sector may hold what it holds; why says otherwise. */
static bool sector_ok(const struct sector_state *b, enum content c, uint64_t gen, bool backing,
		      char *err, size_t errlen)
{
	/* What the image held before any operation: zeroes, or the backing file's pattern. */
	bool initial = backing ? c == C_PATTERN && gen == 0 : c == C_ZERO;
	bool later_zero = b->zero_gen > b->gen, later_discard = b->discard_gen > b->gen;

	if (c == C_GARBAGE) {
		snprintf(err, errlen, "no pattern for this offset (torn or misplaced data)");
		return false;
	}
	if (c == C_PATTERN && gen == 0 && !backing) {
		snprintf(err, errlen, "generation 0 in an image without a backing file");
		return false;
	}
	/* After a discard reads may return anything older: any valid sector will do. */
	if (b->kind == K_DISCARD || later_discard)
		return true;
	switch (b->kind) {
	case K_INITIAL:
		if (initial || (c == C_PATTERN && gen > 0) || (c == C_ZERO && later_zero))
			return true;
		break;
	case K_WRITE:
		if ((c == C_PATTERN && gen >= b->gen) || (c == C_ZERO && later_zero))
			return true;
		break;
	case K_ZERO:
		if (c == C_ZERO || (c == C_PATTERN && gen > b->gen))
			return true;
		break;
	}
	if (b->kind == K_INITIAL)
		snprintf(err, errlen, "holds %s where the %s should show",
			 c == C_ZERO ? "zeroes" : "data of generation 0",
			 backing ? "backing file" : "zeroes never written");
	else if (c == C_ZERO)
		snprintf(err, errlen,
			 "holds zeroes, but a %s of generation %" PRIu64 " was flushed",
			 kind_name(b->kind), b->gen);
	else
		snprintf(err, errlen,
			 "holds generation %" PRIu64 ", but a %s of generation %" PRIu64
			 " was flushed",
			 gen, kind_name(b->kind), b->gen);
	return false;
}

static int cmd_verify(int argc, char **argv)
{
	uint8_t buf[BLOCK] __attribute__((aligned(8)));
	struct sector_state *b;
	struct record *rec = NULL;
	uint64_t nsectors, bad = 0, durable = 0;
	char state_tmp[4096], why[160];
	bool backing = argc > 5 && !strcmp(argv[5], "--backing");
	struct stat st;
	size_t nrec = 0;
	int fd, sfd, jfd;

	if (argc < 5)
		fatal("%s", "usage: crash_writer verify CONTENT JOURNAL STATE [--backing]");
	fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		fatal("cannot open %s", argv[2]);
	nsectors = st.st_size / BLOCK * SECTORS_PER_BLOCK;
	b = calloc(nsectors ? nsectors : 1, sizeof(*b));
	if (!b)
		fatal("%s", "out of memory");
	sfd = open(argv[4], O_RDONLY | O_CLOEXEC);
	if (sfd >= 0) {
		if (read(sfd, b, nsectors * sizeof(*b)) != (ssize_t)(nsectors * sizeof(*b)))
			fatal("state %s does not match the image", argv[4]);
		close(sfd);
	}
	jfd = open(argv[3], O_RDONLY | O_CLOEXEC);
	if (jfd >= 0 && !fstat(jfd, &st) && st.st_size) {
		/* A record cut short by the kill is ignored. */
		nrec = st.st_size / sizeof(*rec);
		rec = malloc(nrec * sizeof(*rec));
		if (!rec || read(jfd, rec, nrec * sizeof(*rec)) != (ssize_t)(nrec * sizeof(*rec)))
			fatal("cannot read the journal %s", argv[3]);
	}
	if (jfd >= 0)
		close(jfd);
	if (replay(b, nsectors, rec, nrec))
		fatal("journal %s does not match the image", argv[3]);
	free(rec);

	for (uint64_t k = 0; k < nsectors; k += SECTORS_PER_BLOCK) {
		if (pread(fd, buf, BLOCK, k * SECTOR) != (ssize_t)BLOCK)
			fatal("cannot read %s", argv[2]);
		for (uint64_t s = 0; s < SECTORS_PER_BLOCK; s++) {
			uint64_t off = (k + s) * SECTOR, gen = 0;
			enum content c = classify(buf + s * SECTOR, off, &gen);

			durable += b[k + s].kind == K_WRITE;
			if (sector_ok(&b[k + s], c, gen, backing, why, sizeof(why)))
				continue;
			if (bad++ < 10)
				printf("verify: offset %#" PRIx64 " (sector %" PRIu64 "): %s\n",
				       off, k + s, why);
		}
	}
	close(fd);
	printf("verify: %" PRIu64 " sectors, %" PRIu64 " with a flushed write, %" PRIu64 " bad\n",
	       nsectors, durable, bad);
	if (bad) {
		free(b);
		return 1;
	}
	/* The next round starts from here: the state saved whole, then the journal emptied. */
	snprintf(state_tmp, sizeof(state_tmp), "%s.tmp", argv[4]);
	sfd = open(state_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (sfd < 0 || write(sfd, b, nsectors * sizeof(*b)) != (ssize_t)(nsectors * sizeof(*b)) ||
	    fsync(sfd) || close(sfd) || rename(state_tmp, argv[4]) || truncate(argv[3], 0))
		fatal("cannot save the state %s", argv[4]);
	free(b);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "fill"))
		return cmd_fill(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "write"))
		return cmd_write(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "verify"))
		return cmd_verify(argc, argv);
	fatal("%s", "usage: crash_writer fill|write|verify ... (see tests/crash/writer.c)");
	return 2;
}
