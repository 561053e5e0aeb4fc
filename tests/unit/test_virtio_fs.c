// SPDX-License-Identifier: MIT
/*
 * virtio-fs through the virtio-pci transport, driven by the in-process driver (virtio/driver.h)
 * as a guest's virtio_fs would. The FUSE server is mostly the test's own (--wrap=
 * fuse_server_handle, fuse_server_destroy): what reaches it and what it answers is what this
 * device is about. One test passes requests on to the real server over a scratch directory, as
 * a guest mounting a share does: INIT, LOOKUP, OPEN, READ.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <linux/virtio_pci.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fs/fuse_server.h"
#include "hw/pci.h"
#include "lib/util.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "virtio/fs.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define F(bit) (1ULL << (bit))
#define RAM_SIZE (8 * MiB)
#define RINGS_GPA 0x10000ULL /* queue q's rings at RINGS_GPA + q * RING_STRIDE */
#define RING_STRIDE 0x10000ULL
#define DATA_GPA 0x200000ULL
#define QSIZE 64
#define DEADLINE_MS 5000
#define MAX_QUEUES 4
#define FEATURES (F(VIRTIO_F_VERSION_1) | F(VIRTIO_RING_F_EVENT_IDX))

/* --- the test's FUSE server ------------------------------------------------------------------- */

/* What the server saw of each request, and what it answers: the reply bytes, or `answer`. */
static struct {
	pthread_mutex_t lock;
	unsigned int calls, destroyed;
	unsigned int nreq, nreply;
	size_t req_len, reply_len;
	uint8_t req[256];
	pthread_t thread[MAX_QUEUES + 1];
	unsigned int threads;
	size_t answer; /* what handle returns (SIZE_MAX: the reply header's length) */
	bool real; /* pass requests to the real server */
} srv_log = { .lock = PTHREAD_MUTEX_INITIALIZER };

static struct fuse_server *const test_srv = (struct fuse_server *)&srv_log;

size_t __wrap_fuse_server_handle(struct fuse_server *srv, const struct iovec *req,
				 unsigned int nreq, const struct iovec *reply, unsigned int nreply);
void __wrap_fuse_server_destroy(struct fuse_server *srv);
size_t __real_fuse_server_handle(struct fuse_server *srv, const struct iovec *req,
				 unsigned int nreq, const struct iovec *reply, unsigned int nreply);
void __real_fuse_server_destroy(struct fuse_server *srv);

size_t __wrap_fuse_server_handle(struct fuse_server *srv, const struct iovec *req,
				 unsigned int nreq, const struct iovec *reply, unsigned int nreply)
{
	struct fuse_out_header out = { .len = sizeof(out), .error = 0 };
	size_t got = 0, answer;
	bool seen = false;

	pthread_mutex_lock(&srv_log.lock);
	srv_log.calls++;
	srv_log.nreq = nreq;
	srv_log.nreply = nreply;
	srv_log.req_len = srv_log.reply_len = 0;
	for (unsigned int i = 0; i < nreq; i++) {
		size_t room = sizeof(srv_log.req) - got;
		size_t n = req[i].iov_len < room ? req[i].iov_len : room;

		memcpy(srv_log.req + got, req[i].iov_base, n);
		got += n;
		srv_log.req_len += req[i].iov_len;
	}
	for (unsigned int i = 0; i < nreply; i++)
		srv_log.reply_len += reply[i].iov_len;
	for (unsigned int i = 0; i < srv_log.threads; i++)
		seen |= pthread_equal(srv_log.thread[i], pthread_self());
	if (!seen && srv_log.threads < MAX_QUEUES + 1)
		srv_log.thread[srv_log.threads++] = pthread_self();
	answer = srv_log.answer;
	if (srv_log.real) {
		pthread_mutex_unlock(&srv_log.lock);
		return __real_fuse_server_handle(srv, req, nreq, reply, nreply);
	}
	if (answer == SIZE_MAX) {
		if (got >= sizeof(struct fuse_in_header))
			out.unique = ((struct fuse_in_header *)srv_log.req)->unique;
		answer = 0;
		if (nreply && reply[0].iov_len >= sizeof(out)) {
			memcpy(reply[0].iov_base, &out, sizeof(out));
			answer = sizeof(out);
		}
	}
	pthread_mutex_unlock(&srv_log.lock);
	return answer;
}

void __wrap_fuse_server_destroy(struct fuse_server *srv)
{
	if (srv_log.real) {
		__real_fuse_server_destroy(srv);
		return;
	}
	assert_ptr_equal(srv, test_srv);
	pthread_mutex_lock(&srv_log.lock);
	srv_log.destroyed++;
	pthread_mutex_unlock(&srv_log.lock);
}

static unsigned int srv_calls(void)
{
	unsigned int n;

	pthread_mutex_lock(&srv_log.lock);
	n = srv_log.calls;
	pthread_mutex_unlock(&srv_log.lock);
	return n;
}

/* --- the machine and the driver --------------------------------------------------------------- */

struct fx {
	struct vm *vm;
	struct pci_bus *bus;
	struct irq_routing *irq;
	struct virtio_driver drv;
	struct virtio_driver_queue q[MAX_QUEUES + 1];
	uint16_t next_desc[MAX_QUEUES + 1];
	unsigned int nq;
	struct virtio_fs *fs;
	uint64_t data_next;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->vm = calloc(1, sizeof(*fx->vm));
	fx->bus = calloc(1, sizeof(*fx->bus));
	fx->irq = calloc(1, sizeof(*fx->irq));
	if (!fx->vm || !fx->bus || !fx->irq || memory_init(&fx->vm->mem, RAM_SIZE))
		return -1;
	/* No KVM: no irqfd or ioeventfd is bound; kicks come through the notify register. */
	fx->vm->kvm_fd = fx->vm->vm_fd = fx->vm->stop_fd = -1;
	irq_routing_init(fx->irq, NULL);
	if (pci_init(fx->bus, fx->vm))
		return -1;
	fx->data_next = DATA_GPA;
	pthread_mutex_lock(&srv_log.lock);
	srv_log.calls = srv_log.destroyed = srv_log.threads = 0;
	srv_log.answer = SIZE_MAX;
	srv_log.real = false;
	pthread_mutex_unlock(&srv_log.lock);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	virtio_fs_destroy(fx->fs);
	memory_free(&fx->vm->mem);
	free(fx->irq);
	free(fx->bus);
	free(fx->vm);
	free(fx);
	return 0;
}

static void fs_make_over(struct fx *fx, struct fuse_server *srv, const char *tag,
			 unsigned int queues)
{
	struct virtio_fs_options o = { .tag = tag, .queues = queues };

	assert_int_equal(virtio_fs_create(&fx->fs, fx->vm, fx->bus, fx->irq, srv, &o), 0);
	assert_int_equal(virtio_driver_find(&fx->drv, fx->bus, &fx->vm->mem, VIRTIO_ID_FS), 0);
}

static void fs_make(struct fx *fx, const char *tag, unsigned int queues)
{
	fs_make_over(fx, test_srv, tag, queues);
}

/* Reset, then driven up to DRIVER_OK with the high-priority and `queues` request queues. */
static void fs_drive(struct fx *fx, unsigned int queues)
{
	memset(fx->next_desc, 0, sizeof(fx->next_desc));
	assert_int_equal(virtio_driver_reset(&fx->drv, DEADLINE_MS), 0);
	virtio_driver_set_status(&fx->drv, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	virtio_driver_set_status(&fx->drv, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	assert_int_equal(virtio_driver_device_features(&fx->drv) & FEATURES, FEATURES);
	assert_int_equal(virtio_driver_features_ok(&fx->drv, FEATURES), 0);
	fx->nq = queues + 1;
	for (unsigned int q = 0; q < fx->nq; q++)
		assert_int_equal(virtio_driver_queue_setup(&fx->drv, &fx->q[q], q, QSIZE,
							   RINGS_GPA + q * RING_STRIDE,
							   VIRTIO_MSI_NO_VECTOR),
				 0);
	virtio_driver_set_status(&fx->drv,
				 virtio_driver_status(&fx->drv) | VIRTIO_CONFIG_S_DRIVER_OK);
	virtio_driver_settle(&fx->drv);
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* The device made with request queues and driven up. */
static void fs_up(struct fx *fx, unsigned int queues)
{
	fs_make(fx, "share", queues);
	fs_drive(fx, queues);
}

static uint64_t galloc(struct fx *fx, uint64_t len)
{
	uint64_t gpa = fx->data_next;

	fx->data_next = ALIGN_UP(gpa + len, 64);
	assert_true(fx->data_next < RAM_SIZE);
	return gpa;
}

static uint8_t *gp(struct fx *fx, uint64_t gpa)
{
	return guest_ptr(&fx->vm->mem, gpa, 1);
}

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
/* Makes a chain of the segments available on queue qi, and kicks if the device asks. */
static void post(struct fx *fx, unsigned int qi, const struct virtio_driver_seg *s, unsigned int n)
{
	struct virtio_driver_queue *q = &fx->q[qi];

	virtio_driver_queue_add_chain(q, &fx->next_desc[qi], s, n);
	virtio_driver_queue_flush(q);
}

static uint16_t used_idx(struct fx *fx, unsigned int qi)
{
	return __atomic_load_n(&fx->q[qi].used->idx, __ATOMIC_ACQUIRE);
}

static bool wait_used(struct fx *fx, unsigned int qi, uint16_t n)
{
	for (uint64_t end = now_ms() + DEADLINE_MS; used_idx(fx, qi) < n && now_ms() < end;)
		usleep(200);
	return used_idx(fx, qi) >= n;
}

static struct vring_used_elem used(struct fx *fx, unsigned int qi, unsigned int i)
{
	return fx->q[qi].used->ring[i % fx->q[qi].size];
}

/* A FUSE request header in guest memory: its gpa. */
static uint64_t fuse_req(struct fx *fx, uint32_t opcode, uint64_t unique, uint32_t extra)
{
	uint64_t gpa = galloc(fx, sizeof(struct fuse_in_header) + extra);
	struct fuse_in_header h = { .len = sizeof(h) + extra, .opcode = opcode, .unique = unique };

	memcpy(gp(fx, gpa), &h, sizeof(h));
	memset(gp(fx, gpa + sizeof(h)), 0xa5, extra);
	return gpa;
}

/* --- tests ------------------------------------------------------------------------------------ */

/* §5.11.4: the tag the guest mounts by and the number of request queues, and device type 26. */
static void test_fs_config_holds_tag_and_request_queue_count(void **state)
{
	struct fx *fx = *state;
	struct virtio_fs_config c;

	fs_make(fx, "hostdir", 3);
	for (unsigned int i = 0; i < sizeof(c); i++)
		((uint8_t *)&c)[i] = virtio_driver_bar_read(&fx->drv, fx->drv.device_cfg + i, 1);
	assert_memory_equal(c.tag, "hostdir\0\0\0", 10);
	for (unsigned int i = 7; i < sizeof(c.tag); i++)
		assert_int_equal(c.tag[i], 0);
	assert_int_equal(le32toh(c.num_request_queues), 3);
	/* The high-priority queue and three request queues: four in all, no fifth. */
	virtio_driver_common_write(&fx->drv, VIRTIO_PCI_COMMON_Q_SELECT, 3, 2);
	assert_int_not_equal(virtio_driver_common_read(&fx->drv, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	virtio_driver_common_write(&fx->drv, VIRTIO_PCI_COMMON_Q_SELECT, 4, 2);
	assert_int_equal(virtio_driver_common_read(&fx->drv, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	assert_int_equal(virtio_driver_cfg_read(&fx->drv, 2, 2), 0x1040 + VIRTIO_ID_FS);
}

/* A tag of exactly 36 bytes fills the field with no NUL; 37 bytes or none are refused. */
static void test_fs_tag_of_36_bytes_fills_config_and_longer_or_empty_is_refused(void **state)
{
	struct fx *fx = *state;
	const char *tag36 = "abcdefghijklmnopqrstuvwxyz0123456789";
	struct virtio_fs_options o37 = { .tag = "abcdefghijklmnopqrstuvwxyz0123456789X" };
	struct virtio_fs_options empty = { .tag = "" };
	struct virtio_fs *other = NULL;
	uint8_t tag[36];

	assert_int_equal(strlen(tag36), 36);
	assert_int_equal(virtio_fs_create(&other, fx->vm, fx->bus, fx->irq, test_srv, &o37),
			 -EINVAL);
	assert_int_equal(virtio_fs_create(&other, fx->vm, fx->bus, fx->irq, test_srv, &empty),
			 -EINVAL);
	assert_null(other);
	/* A refused device leaves the server to the caller. */
	assert_int_equal(srv_log.destroyed, 0);
	fs_make(fx, tag36, 1);
	for (unsigned int i = 0; i < sizeof(tag); i++)
		tag[i] = virtio_driver_bar_read(&fx->drv, fx->drv.device_cfg + i, 1);
	assert_memory_equal(tag, tag36, 36);
	assert_int_equal(virtio_driver_bar_read(&fx->drv, fx->drv.device_cfg + 36, 4), 1);
}

/*
 * A request on a request queue reaches the server as the chain's readable part and the reply
 * buffers as its writable part, however they are cut, and the used length is what it wrote.
 */
static void test_fs_request_reaches_server_and_used_len_is_bytes_written(void **state)
{
	struct fx *fx = *state;
	uint64_t req = fuse_req(fx, FUSE_GETATTR, 77, sizeof(struct fuse_getattr_in));
	uint64_t reply = galloc(fx, 256);
	struct fuse_out_header out;

	fs_up(fx, 1);
	post(fx, 1,
	     (struct virtio_driver_seg[]){
		     { req, 10 },
		     { req + 10,
		       sizeof(struct fuse_in_header) + sizeof(struct fuse_getattr_in) - 10 },
		     { reply, 16, true },
		     { reply + 16, 240, true } },
	     4);
	assert_true(wait_used(fx, 1, 1));
	assert_int_equal(used(fx, 1, 0).len, sizeof(out));
	assert_int_equal(srv_log.nreq, 2);
	assert_int_equal(srv_log.nreply, 2);
	assert_int_equal(srv_log.req_len,
			 sizeof(struct fuse_in_header) + sizeof(struct fuse_getattr_in));
	assert_int_equal(srv_log.reply_len, 256);
	assert_int_equal(((struct fuse_in_header *)srv_log.req)->opcode, FUSE_GETATTR);
	memcpy(&out, gp(fx, reply), sizeof(out));
	assert_int_equal(out.unique, 77);
	assert_int_equal(out.len, sizeof(out));
}

/* §5.11.6.1: FORGET on the high-priority queue is served, and gets no reply (used len 0). */
static void test_fs_hiprio_forget_is_served_with_nothing_written(void **state)
{
	struct fx *fx = *state;
	uint64_t req = fuse_req(fx, FUSE_FORGET, 5, sizeof(struct fuse_forget_in));

	fs_up(fx, 1);
	srv_log.answer = 0;
	post(fx, 0,
	     (struct virtio_driver_seg[]){
		     { req, sizeof(struct fuse_in_header) + sizeof(struct fuse_forget_in) } },
	     1);
	assert_true(wait_used(fx, 0, 1));
	assert_int_equal(used(fx, 0, 0).len, 0);
	assert_int_equal(srv_calls(), 1);
	assert_int_equal(srv_log.nreply, 0);
	assert_int_equal(((struct fuse_in_header *)srv_log.req)->opcode, FUSE_FORGET);
}

/* Each request queue has its own I/O thread: requests on two queues are served on two threads. */
static void test_fs_each_request_queue_is_served_on_its_own_thread(void **state)
{
	struct fx *fx = *state;
	uint64_t reply[2];

	fs_up(fx, 2);
	for (unsigned int q = 1; q <= 2; q++) {
		uint64_t req = fuse_req(fx, FUSE_STATFS, q, 0);

		reply[q - 1] = galloc(fx, 64);
		post(fx, q,
		     (struct virtio_driver_seg[]){ { req, sizeof(struct fuse_in_header) },
						   { reply[q - 1], 64, true } },
		     2);
	}
	assert_true(wait_used(fx, 1, 1));
	assert_true(wait_used(fx, 2, 1));
	assert_int_equal(srv_calls(), 2);
	assert_int_equal(srv_log.threads, 2);
	for (unsigned int q = 1; q <= 2; q++)
		assert_int_equal(((struct fuse_out_header *)gp(fx, reply[q - 1]))->unique, q);
}

/*
 * A server claiming more than the writable part (it must not) still gives the driver no used
 * length past its buffers (§2.7.8.2: len is at most the device-writable total).
 */
static void test_fs_used_len_never_exceeds_the_writable_part(void **state)
{
	struct fx *fx = *state;
	uint64_t req = fuse_req(fx, FUSE_READ, 1, sizeof(struct fuse_read_in));
	uint64_t reply = galloc(fx, 100);

	fs_up(fx, 1);
	srv_log.answer = 1 << 20;
	post(fx, 1,
	     (struct virtio_driver_seg[]){
		     { req, sizeof(struct fuse_in_header) + sizeof(struct fuse_read_in) },
		     { reply, 100, true } },
	     2);
	assert_true(wait_used(fx, 1, 1));
	assert_int_equal(used(fx, 1, 0).len, 100);
}

/*
 * A chain pointing outside guest RAM never reaches the server: the device asks for a reset
 * (DEVICE_NEEDS_RESET) and the monitor goes on; a reset brings the device back.
 */
static void test_fs_chain_outside_ram_needs_reset_and_never_reaches_server(void **state)
{
	struct fx *fx = *state;
	uint64_t reply = galloc(fx, 64);
	uint64_t req = fuse_req(fx, FUSE_STATFS, 9, 0);

	fs_up(fx, 1);
	post(fx, 1, (struct virtio_driver_seg[]){ { RAM_SIZE - 8, 64 }, { reply, 64, true } }, 2);
	for (uint64_t end = now_ms() + DEADLINE_MS;
	     !(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET) && now_ms() < end;)
		usleep(200);
	assert_true(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(srv_calls(), 0);
	/* The same device serves again after the driver resets it. */
	fs_drive(fx, 1);
	post(fx, 1,
	     (struct virtio_driver_seg[]){ { req, sizeof(struct fuse_in_header) },
					   { reply, 64, true } },
	     2);
	assert_true(wait_used(fx, 1, 1));
	assert_int_equal(srv_calls(), 1);
}

/* Destroying the device destroys the server it was given, once. */
static void test_fs_destroy_destroys_its_server(void **state)
{
	struct fx *fx = *state;

	fs_up(fx, 1);
	virtio_fs_destroy(fx->fs);
	fx->fs = NULL;
	assert_int_equal(srv_log.destroyed, 1);
}

/* One request through the device and the real server: its reply in a fresh 4 KiB buffer. */
static const uint8_t *real_request(struct fx *fx, uint32_t opcode, uint64_t nodeid, const void *arg,
				   uint32_t arg_len, int32_t *error)
{
	static uint16_t done;
	uint64_t req = galloc(fx, sizeof(struct fuse_in_header) + arg_len),
		 reply = galloc(fx, 4096);
	struct fuse_in_header h = {
		.len = sizeof(h) + arg_len, .opcode = opcode, .unique = ++done, .nodeid = nodeid
	};
	struct fuse_out_header out;

	memcpy(gp(fx, req), &h, sizeof(h));
	memcpy(gp(fx, req + sizeof(h)), arg, arg_len);
	post(fx, 1, (struct virtio_driver_seg[]){ { req, h.len }, { reply, 4096, true } }, 2);
	assert_true(wait_used(fx, 1, done));
	memcpy(&out, gp(fx, reply), sizeof(out));
	assert_int_equal(out.unique, done);
	assert_int_equal(used(fx, 1, done - 1).len, out.len);
	*error = out.error;
	return gp(fx, reply + sizeof(out));
}

/* A guest's first requests on a share reach the real server and read a host file back. */
static void test_fs_real_server_answers_init_lookup_open_read(void **state)
{
	struct fx *fx = *state;
	char dir[] = "/var/tmp/nkvm-test-virtio-fs-XXXXXX", path[64], err[256];
	struct fuse_server_config cfg = { .root = dir };
	struct fuse_init_in init = { .major = FUSE_KERNEL_VERSION,
				     .minor = 36,
				     .max_readahead = 65536 };
	struct fuse_read_in rd = { .size = 100 };
	struct fuse_open_in op = { .flags = O_RDONLY };
	struct fuse_entry_out e;
	struct fuse_open_out o;
	struct fuse_server *srv;
	const uint8_t *r;
	int32_t error;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/hello", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("hi there", f);
	fclose(f);
	srv_log.real = true;
	assert_int_equal(fuse_server_create(&srv, &cfg, err, sizeof(err)), 0);
	fs_make_over(fx, srv, "real", 1);
	fs_drive(fx, 1);
	r = real_request(fx, FUSE_INIT, 0, &init, sizeof(init), &error);
	assert_int_equal(error, 0);
	assert_int_equal(((const struct fuse_init_out *)r)->major, FUSE_KERNEL_VERSION);
	r = real_request(fx, FUSE_LOOKUP, FUSE_ROOT_ID, "hello", 6, &error);
	assert_int_equal(error, 0);
	memcpy(&e, r, sizeof(e));
	assert_int_equal(e.attr.size, 8);
	r = real_request(fx, FUSE_LOOKUP, FUSE_ROOT_ID, "absent", 7, &error);
	assert_int_equal(error, -ENOENT);
	r = real_request(fx, FUSE_OPEN, e.nodeid, &op, sizeof(op), &error);
	assert_int_equal(error, 0);
	memcpy(&o, r, sizeof(o));
	rd.fh = o.fh;
	r = real_request(fx, FUSE_READ, e.nodeid, &rd, sizeof(rd), &error);
	assert_int_equal(error, 0);
	assert_memory_equal(r, "hi there", 8);
	virtio_fs_destroy(fx->fs);
	fx->fs = NULL;
	unlink(path);
	rmdir(dir);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_fs_config_holds_tag_and_request_queue_count),
		T(test_fs_tag_of_36_bytes_fills_config_and_longer_or_empty_is_refused),
		T(test_fs_request_reaches_server_and_used_len_is_bytes_written),
		T(test_fs_hiprio_forget_is_served_with_nothing_written),
		T(test_fs_each_request_queue_is_served_on_its_own_thread),
		T(test_fs_used_len_never_exceeds_the_writable_part),
		T(test_fs_chain_outside_ram_needs_reset_and_never_reaches_server),
		T(test_fs_destroy_destroys_its_server),
		T(test_fs_real_server_answers_init_lookup_open_read),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
