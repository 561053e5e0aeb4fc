// SPDX-License-Identifier: MIT
/*
 * The virtio-pci transport without KVM, driven through its registers as a guest's driver would,
 * by the in-process driver nkvm img bench uses (virtio/driver.h), or by raw register writes
 * where the point is a driver that misbehaves: the device
 * status only moves forward until a reset (virtio 1.2 §2.1, §3.1.1), so DRIVER_OK set again
 * starts nothing twice on any engine and features cannot be renegotiated; no register write
 * interleaves with a reset; and a queue never holds more chains than its size.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_pci.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/disk.h"
#include "hw/pci.h"
#include "lib/file.h"
#include "lib/util.h"
#include "virtio/blk.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "virtio/pci.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

/* §2.1 status bits (<linux/virtio_config.h>), as short as the tests need them. */
#define S_ACKNOWLEDGE VIRTIO_CONFIG_S_ACKNOWLEDGE
#define S_DRIVER VIRTIO_CONFIG_S_DRIVER
#define S_DRIVER_OK VIRTIO_CONFIG_S_DRIVER_OK
#define S_FEATURES_OK VIRTIO_CONFIG_S_FEATURES_OK
#define S_NEEDS_RESET VIRTIO_CONFIG_S_NEEDS_RESET
#define S_READY (S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK)

#define RAM_SIZE (4 * MiB)
/* Queue 0's rings, where the driver puts them (virtio_driver_queue_setup): a page each. */
#define DESC_GPA 0x10000ULL
#define AVAIL_GPA 0x11000ULL
#define USED_GPA 0x12000ULL
#define DATA_GPA 0x40000ULL
#define TEST_QSIZE 8
#define DEADLINE_MS 10000

/* A device of the test's own: counts what the transport makes it do, and holds chains. */
struct tdev {
	struct virtio_device vdev;
	struct virtq_chain chain;
	atomic_uint starts, queue_starts, queue_stops, popped, pop_errors;
	/* While gate is set, reset waits in the device (as blk_reset waits for requests). */
	atomic_bool gate, in_reset;
	/* While start_gate is set, start waits in the device (a slow start). */
	atomic_bool start_gate, in_start;
};

struct fx {
	char dir[64], path[128];
	struct vm *vm;
	struct pci_bus *bus;
	struct irq_routing *irq;
	struct virtio_driver drv;
	struct virtio_driver_queue q; /* queue 0, once driver_setup set it up */
	struct virtio_device *vdev;
	struct virtio_pci *vp; /* the test device's transport; NULL for virtio-blk */
	struct tdev *td;
	bool wedged; /* a reset never returned: leave everything as it is */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

/* --- the test device ------------------------------------------------------------------------ */

static void tdev_queue_kick(struct virtio_device *vdev, unsigned int q)
{
	struct tdev *td = (struct tdev *)vdev;
	int r;

	/* Holds every chain: never pushes, as a device whose requests never complete. */
	while ((r = virtio_pop(vdev, q, &td->chain)) > 0)
		atomic_fetch_add(&td->popped, 1);
	if (r < 0)
		atomic_fetch_add(&td->pop_errors, 1);
}

static int tdev_start(struct virtio_device *vdev)
{
	struct tdev *td = (struct tdev *)vdev;
	uint64_t end = now_ms() + DEADLINE_MS;

	atomic_store(&td->in_start, true);
	while (atomic_load(&td->start_gate) && now_ms() < end)
		usleep(1000);
	atomic_store(&td->in_start, false);
	atomic_fetch_add(&td->starts, 1);
	return 0;
}

static void tdev_reset(struct virtio_device *vdev)
{
	struct tdev *td = (struct tdev *)vdev;
	uint64_t end = now_ms() + DEADLINE_MS;

	atomic_store(&td->in_reset, true);
	while (atomic_load(&td->gate) && now_ms() < end)
		usleep(1000);
	atomic_store(&td->in_reset, false);
}

static void tdev_queue_start(struct virtio_device *vdev, unsigned int q, int *fd)
{
	atomic_fetch_add(&((struct tdev *)vdev)->queue_starts, 1);
}

static void tdev_queue_stop(struct virtio_device *vdev, unsigned int q)
{
	atomic_fetch_add(&((struct tdev *)vdev)->queue_stops, 1);
}

static const struct virtio_device_ops tdev_ops = {
	.queue_kick = tdev_queue_kick,
	.start = tdev_start,
	.reset = tdev_reset,
	.queue_start = tdev_queue_start,
	.queue_stop = tdev_queue_stop,
};

/* --- a VM without KVM, and a driver that reaches the function as a guest would ------------- */

static void cfg_write(struct fx *fx, unsigned int off, uint32_t v, unsigned int len)
{
	virtio_driver_cfg_write(&fx->drv, off, v, len);
}

static uint64_t bar_read(struct fx *fx, uint64_t off, unsigned int len)
{
	return virtio_driver_bar_read(&fx->drv, off, len);
}

static void common_write(struct fx *fx, unsigned int off, uint64_t v, unsigned int len)
{
	virtio_driver_common_write(&fx->drv, off, v, len);
}

static uint64_t common_read(struct fx *fx, unsigned int off, unsigned int len)
{
	return virtio_driver_common_read(&fx->drv, off, len);
}

static void status_write(struct fx *fx, uint8_t s)
{
	virtio_driver_set_status(&fx->drv, s);
}

static uint8_t status_read(struct fx *fx)
{
	return virtio_driver_status(&fx->drv);
}

/* §4.1.4.3.2: write 0, then wait for the status to read 0 (the reset may take a while). */
static void driver_reset(struct fx *fx)
{
	if (virtio_driver_reset(&fx->drv, DEADLINE_MS)) {
		fx->wedged = true;
		fail_msg("the status did not read 0 within %d s of the reset", DEADLINE_MS / 1000);
	}
}

/* Waits until the transport's worker did what the writes so far asked (start, routes). */
static void settle(struct fx *fx)
{
	virtio_driver_settle(&fx->drv);
}

static void features_write(struct fx *fx, uint64_t f)
{
	virtio_driver_write_features(&fx->drv, f);
}

/* The function of virtio device id on the bus, and its capabilities (§4.1.4). */
static void find_function(struct fx *fx, unsigned int id)
{
	assert_int_equal(virtio_driver_find(&fx->drv, fx->bus, &fx->vm->mem, id), 0);
	if (fx->vdev)
		assert_ptr_equal(fx->drv.vdev, fx->vdev);
	fx->vdev = fx->drv.vdev;
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	int fd;

	if (!fx)
		return -1;
	/* /var/tmp, unlike a tmpfs /tmp, takes O_DIRECT (the aio engine needs it). */
	snprintf(fx->dir, sizeof(fx->dir), "/var/tmp/nkvm-test-vpci-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/disk.raw", fx->dir);
	fd = open(fx->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, 1 * MiB))
		return -1;
	close(fd);
	fx->vm = calloc(1, sizeof(*fx->vm));
	fx->bus = calloc(1, sizeof(*fx->bus));
	fx->irq = calloc(1, sizeof(*fx->irq));
	if (!fx->vm || !fx->bus || !fx->irq || memory_init(&fx->vm->mem, RAM_SIZE))
		return -1;
	/* No KVM: no irqfd or ioeventfd is bound; MSI routes go nowhere. */
	fx->vm->kvm_fd = fx->vm->vm_fd = fx->vm->stop_fd = -1;
	irq_routing_init(fx->irq, NULL);
	if (pci_init(fx->bus, fx->vm))
		return -1;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	if (fx->wedged)
		return 0; /* threads still run in the device: freeing it would hang or crash */
	if (fx->vp) {
		virtio_pci_free(fx->vp);
		free(fx->td);
	} else if (fx->vdev) {
		virtio_blk_destroy(fx->vdev);
	}
	memory_free(&fx->vm->mem);
	free(fx->irq);
	free(fx->bus);
	free(fx->vm);
	file_remove_tree(fx->dir);
	free(fx);
	return 0;
}

static void add_test_device(struct fx *fx)
{
	fx->td = calloc(1, sizeof(*fx->td));
	assert_non_null(fx->td);
	fx->td->vdev = (struct virtio_device){
		.ops = &tdev_ops,
		.name = "virtio-test",
		.device_id = VIRTIO_ID_RNG,
		.host_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX),
		.nr_queues = 1,
		.queue_max_size = TEST_QSIZE,
	};
	fx->vdev = &fx->td->vdev;
	assert_int_equal(virtio_pci_create(&fx->vp, fx->vm, fx->bus, fx->irq, fx->vdev), 0);
	find_function(fx, VIRTIO_ID_RNG);
}

/* virtio-blk on the fixture's image with engine; returns the engine that runs. */
static const char *add_blk(struct fx *fx, enum disk_engine_kind engine)
{
	struct disk_options o = { .path = fx->path, .direct = true, .engine = engine };
	struct virtio_blk_options bo = { .queues = 1 };
	struct disk *disk;
	char why[DISK_ERR_MAX];
	const char *name;

	assert_int_equal(disk_open(&disk, &o, why, sizeof(why)), 0);
	name = disk_engine_name(disk);
	assert_int_equal(virtio_blk_create(&fx->vdev, fx->vm, fx->bus, fx->irq, disk, &bo), 0);
	assert_non_null(fx->vdev);
	find_function(fx, VIRTIO_ID_BLOCK);
	return name;
}

/* §3.1.1 up to FEATURES_OK with VERSION_1 only, then queue 0's rings; not DRIVER_OK yet. */
static void driver_setup(struct fx *fx)
{
	driver_reset(fx);
	status_write(fx, S_ACKNOWLEDGE);
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER);
	assert_int_equal(virtio_driver_features_ok(&fx->drv, 1ULL << VIRTIO_F_VERSION_1), 0);
	assert_int_equal(status_read(fx), S_READY);
	assert_int_equal(virtio_driver_queue_setup(&fx->drv, &fx->q, 0, TEST_QSIZE, DESC_GPA,
						   VIRTIO_MSI_NO_VECTOR),
			 0);
	assert_int_equal(fx->q.avail_gpa, AVAIL_GPA);
	assert_int_equal(fx->q.used_gpa, USED_GPA);
}

/* driver_setup, then DRIVER_OK, and waits until the device started. */
static void driver_init(struct fx *fx)
{
	driver_setup(fx);
	status_write(fx, S_READY | S_DRIVER_OK);
	assert_int_equal(status_read(fx), S_READY | S_DRIVER_OK);
	settle(fx);
}

static void *reset_thread(void *arg)
{
	status_write(arg, 0);
	return NULL;
}

/* Joins t within ms; false (and t left running) when it did not end. */
static bool join_within(pthread_t t, unsigned int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

/*
 * Writes 0 to the status from another thread; fails the test if that does not return, or if
 * the status does not read 0 within the deadline.
 */
static void reset_within_deadline(struct fx *fx)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, reset_thread, fx), 0);
	if (!join_within(t, DEADLINE_MS)) {
		fx->wedged = true;
		fail_msg("the reset did not return within %d s", DEADLINE_MS / 1000);
	}
	driver_reset(fx);
}

/* Threads of this process, without io_uring's kernel workers (which come and go). */
static unsigned int nr_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	unsigned int n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue; /* it just ended */
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
		if (strncmp(comm, "iou-", 4))
			n++;
	}
	closedir(d);
	return n;
}

/* --- the status only moves forward ----------------------------------------------------------- */

/*
 * DRIVER_OK cleared without a reset (0x0B) and set again (0x0F), five times, on virtio-blk over
 * engine: no second queue thread, no second queue context, and the reset then returns.
 */
static void driver_ok_set_again_starts_nothing(struct fx *fx, enum disk_engine_kind engine,
					       const char *want)
{
	const char *name = add_blk(fx, engine);
	unsigned int idle, running, after;
	uint8_t status;

	if (strcmp(name, want))
		print_message("(%s unavailable here: testing %s)\n", want, name);
	idle = nr_threads();
	driver_init(fx);
	running = nr_threads();
	/* The queue's thread was made with the device, parked: DRIVER_OK starts no thread. */
	assert_int_equal(running, idle);
	for (int i = 0; i < 5; i++) {
		status_write(fx, S_READY);
		status_write(fx, S_READY | S_DRIVER_OK);
	}
	settle(fx);
	after = nr_threads();
	status = status_read(fx);
	/* The reset first: it must return whatever the cycles did. */
	reset_within_deadline(fx);
	if (after != running)
		fail_msg("threads: %u after DRIVER_OK, %u after 5 clear/set cycles", running,
			 after);
	/* The clearing writes were refused: the device ran on, and said it needs a reset. */
	assert_int_equal(status & ~S_NEEDS_RESET, S_READY | S_DRIVER_OK);
	assert_true(status & S_NEEDS_RESET);
	assert_int_equal(nr_threads(), idle);
}

static void test_driver_ok_set_again_starts_nothing_threads(void **state)
{
	driver_ok_set_again_starts_nothing(*state, DISK_ENGINE_THREADS, "threads");
}

static void test_driver_ok_set_again_starts_nothing_aio(void **state)
{
	driver_ok_set_again_starts_nothing(*state, DISK_ENGINE_AIO, "aio");
}

static void test_driver_ok_set_again_starts_nothing_io_uring(void **state)
{
	driver_ok_set_again_starts_nothing(*state, DISK_ENGINE_IO_URING, "io_uring");
}

/* The same cycles on a device that counts: one start, one queue thread, both ended by reset. */
static void test_driver_ok_set_again_does_not_restart_the_device(void **state)
{
	struct fx *fx = *state;
	struct tdev *td;

	add_test_device(fx);
	td = fx->td;
	driver_init(fx);
	for (int i = 0; i < 5; i++) {
		status_write(fx, S_READY);
		status_write(fx, S_READY | S_DRIVER_OK);
	}
	settle(fx);
	assert_int_equal(atomic_load(&td->starts), 1);
	reset_within_deadline(fx);
	assert_int_equal(atomic_load(&td->queue_starts), 1);
	assert_int_equal(atomic_load(&td->queue_stops), 1);
}

/* §3.1.1 step 4: features are fixed at FEATURES_OK; only a reset lets the driver pick again. */
static void test_features_cannot_be_renegotiated_after_features_ok(void **state)
{
	struct fx *fx = *state;
	uint64_t more = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX);

	add_test_device(fx);
	driver_reset(fx);
	status_write(fx, S_ACKNOWLEDGE);
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER);
	features_write(fx, 1ULL << VIRTIO_F_VERSION_1);
	status_write(fx, S_READY);
	assert_int_equal(fx->vdev->features, 1ULL << VIRTIO_F_VERSION_1);
	/* Written while FEATURES_OK is set: ignored. */
	features_write(fx, more);
	/* FEATURES_OK cleared, new features, FEATURES_OK again: refused. */
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER);
	features_write(fx, more);
	status_write(fx, S_READY);
	assert_int_equal(fx->vdev->features, 1ULL << VIRTIO_F_VERSION_1);
	common_write(fx, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	assert_int_equal(common_read(fx, VIRTIO_PCI_COMMON_GF, 4), 0);
	assert_true(status_read(fx) & S_FEATURES_OK);
	assert_true(status_read(fx) & S_NEEDS_RESET);
	/* After a reset, the driver may choose again. */
	driver_reset(fx);
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER);
	features_write(fx, more);
	status_write(fx, S_READY);
	assert_int_equal(status_read(fx), S_READY);
	assert_int_equal(fx->vdev->features, more);
}

/* §3.1.1: the steps come in order; a DRIVER_OK without the steps before it starts nothing. */
static void test_status_that_skips_a_step_is_refused(void **state)
{
	struct fx *fx = *state;

	add_test_device(fx);
	features_write(fx, 1ULL << VIRTIO_F_VERSION_1);
	common_write(fx, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	common_write(fx, VIRTIO_PCI_COMMON_Q_DESCLO, DESC_GPA, 8);
	common_write(fx, VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL_GPA, 8);
	common_write(fx, VIRTIO_PCI_COMMON_Q_USEDLO, USED_GPA, 8);
	common_write(fx, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	/* No ACKNOWLEDGE, no DRIVER. */
	status_write(fx, S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(atomic_load(&fx->td->starts), 0);
	assert_int_equal(status_read(fx) & ~S_NEEDS_RESET, 0);
	assert_true(status_read(fx) & S_NEEDS_RESET);
	/* No FEATURES_OK: the whole write is refused. */
	driver_reset(fx);
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER | S_DRIVER_OK);
	assert_int_equal(status_read(fx), S_NEEDS_RESET);
	assert_int_equal(atomic_load(&fx->td->starts), 0);
	/* Nor does anything but a reset move a device that needs one. */
	status_write(fx, S_ACKNOWLEDGE);
	assert_int_equal(status_read(fx), S_NEEDS_RESET);
	/* Several steps in one write, in order, are fine (SeaBIOS writes ACKNOWLEDGE | DRIVER). */
	driver_reset(fx);
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER);
	features_write(fx, 1ULL << VIRTIO_F_VERSION_1);
	common_write(fx, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	common_write(fx, VIRTIO_PCI_COMMON_Q_DESCLO, DESC_GPA, 8);
	common_write(fx, VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL_GPA, 8);
	common_write(fx, VIRTIO_PCI_COMMON_Q_USEDLO, USED_GPA, 8);
	common_write(fx, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	status_write(fx, S_READY | S_DRIVER_OK);
	assert_int_equal(status_read(fx), S_READY | S_DRIVER_OK);
	settle(fx);
	assert_int_equal(atomic_load(&fx->td->starts), 1);
}

/*
 * One vCPU resets the device (which waits in the device's reset, as virtio-blk waits for its
 * requests) while another sets it up again up to DRIVER_OK: nothing starts during the reset,
 * and after it the device is reset, with no queue thread running.
 */
static void test_driver_ok_during_reset_from_second_thread_starts_nothing(void **state)
{
	struct fx *fx = *state;
	struct tdev *td;
	uint64_t end = now_ms() + DEADLINE_MS;
	pthread_t t;

	add_test_device(fx);
	td = fx->td;
	driver_init(fx);
	atomic_store(&td->gate, true);
	assert_int_equal(pthread_create(&t, NULL, reset_thread, fx), 0);
	while (!atomic_load(&td->in_reset) && now_ms() < end)
		usleep(1000);
	assert_true(atomic_load(&td->in_reset));
	status_write(fx, S_ACKNOWLEDGE);
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER);
	features_write(fx, 1ULL << VIRTIO_F_VERSION_1);
	status_write(fx, S_READY);
	common_write(fx, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	common_write(fx, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	status_write(fx, S_READY | S_DRIVER_OK);
	atomic_store(&td->gate, false);
	pthread_join(t, NULL);
	settle(fx);
	assert_int_equal(status_read(fx), 0);
	assert_int_equal(atomic_load(&td->starts), 1);
	/* Let a queue thread that was started anyway show itself. */
	usleep(100 * 1000);
	if (atomic_load(&td->queue_starts) != atomic_load(&td->queue_stops))
		fail_msg("after the reset: %u queue threads started, %u stopped",
			 atomic_load(&td->queue_starts), atomic_load(&td->queue_stops));
	/* The device works after that: set up again, it starts once. */
	driver_init(fx);
	assert_int_equal(atomic_load(&td->starts), 2);
}

/* --- the in-flight bound --------------------------------------------------------------------- */

/*
 * A driver that re-publishes head 0 without waiting for the device to use it (CVE-2016-5403's
 * pattern), to a device that holds its chains: the device takes at most queue size chains, then
 * the queue stops with DEVICE_NEEDS_RESET.
 */
static void test_queue_holds_at_most_its_size_then_needs_reset(void **state)
{
	struct fx *fx = *state;
	struct tdev *td;
	unsigned int published = 0;

	add_test_device(fx);
	td = fx->td;
	driver_init(fx);
	fx->q.desc[0] = (struct vring_desc){ DATA_GPA, 16, 0, 0 };
	for (unsigned int i = 0; i < 100 && !(status_read(fx) & S_NEEDS_RESET); i++) {
		uint64_t end = now_ms() + DEADLINE_MS;

		virtio_driver_queue_add(&fx->q, 0);
		virtio_driver_queue_publish(&fx->q);
		published++;
		virtio_driver_queue_kick(&fx->q);
		/* Wait until the device took it, or stopped the queue. */
		while (atomic_load(&td->popped) < published && !(status_read(fx) & S_NEEDS_RESET) &&
		       now_ms() < end)
			usleep(100);
	}
	if (atomic_load(&td->popped) > TEST_QSIZE)
		fail_msg("%u chains in flight on a queue of %u", atomic_load(&td->popped),
			 TEST_QSIZE);
	assert_int_equal(atomic_load(&td->popped), TEST_QSIZE);
	/* The status shows NEEDS_RESET before the device's pop has returned its error. */
	for (uint64_t end = now_ms() + DEADLINE_MS;
	     !atomic_load(&td->pop_errors) && now_ms() < end;)
		usleep(100);
	assert_int_equal(atomic_load(&td->pop_errors), 1);
	assert_true(status_read(fx) & S_NEEDS_RESET);
	reset_within_deadline(fx);
}

/* --- the vCPU only records: reset and start run on the transport's worker --------------- */

/* Makes n chains of one 16-byte buffer each available on queue 0 (heads 0 .. n-1). */
static void add_chains(struct fx *fx, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		fx->q.desc[i] = (struct vring_desc){ DATA_GPA, 16, 0, 0 };
		virtio_driver_queue_add(&fx->q, i);
	}
	virtio_driver_queue_publish(&fx->q);
}

/* add_chains, and a kick whether or not the device asked for one. */
static void publish(struct fx *fx, unsigned int n)
{
	add_chains(fx, n);
	virtio_driver_queue_kick(&fx->q);
}

static bool wait_for(atomic_uint *v, unsigned int want)
{
	for (uint64_t end = now_ms() + DEADLINE_MS; atomic_load(v) < want && now_ms() < end;)
		usleep(100);
	return atomic_load(v) >= want;
}

static uint16_t used_idx(struct fx *fx)
{
	return __atomic_load_n(&fx->q.used->idx, __ATOMIC_ACQUIRE);
}

/*
 * The status write of 0 on a device with requests in flight returns at once, although the
 * device's reset waits (as virtio-blk waits for its requests): the status reads as before, and
 * register writes are dropped, until the reset is done; then it reads 0 (§4.1.4.3.2). A
 * completion that comes after the reset does not touch the rings.
 */
static void test_status_write_of_0_returns_while_the_device_resets(void **state)
{
	struct fx *fx = *state;
	struct tdev *td;
	pthread_t t;

	add_test_device(fx);
	td = fx->td;
	driver_init(fx);
	publish(fx, 2);
	assert_true(wait_for(&td->popped, 2));
	atomic_store(&td->gate, true);
	assert_int_equal(pthread_create(&t, NULL, reset_thread, fx), 0);
	if (!join_within(t, 1000)) {
		atomic_store(&td->gate, false);
		if (!join_within(t, DEADLINE_MS))
			fx->wedged = true;
		fail_msg("the status write of 0 waited on the writing vCPU for the device's reset");
	}
	for (uint64_t end = now_ms() + DEADLINE_MS; !atomic_load(&td->in_reset) && now_ms() < end;)
		usleep(100);
	assert_true(atomic_load(&td->in_reset));
	assert_int_equal(status_read(fx), S_READY | S_DRIVER_OK);
	/* A driver that did not wait: dropped. */
	status_write(fx, S_ACKNOWLEDGE);
	assert_int_equal(status_read(fx), S_READY | S_DRIVER_OK);
	atomic_store(&td->gate, false);
	driver_reset(fx);
	assert_int_equal(atomic_load(&td->queue_stops), 1);
	/* The device completes a request it held, late: the ring is not the device's any more. */
	virtio_push(fx->vdev, 0, 0, 16);
	assert_int_equal(used_idx(fx), 0);
	/* And it works again. */
	memset(guest_ptr(&fx->vm->mem, AVAIL_GPA, 4), 0, 4);
	driver_init(fx);
	assert_int_equal(atomic_load(&td->starts), 2);
	publish(fx, 1);
	assert_true(wait_for(&td->popped, 3));
}

static void *driver_ok_thread(void *arg)
{
	status_write(arg, S_READY | S_DRIVER_OK);
	return NULL;
}

/* DRIVER_OK returns at once although the device's start is slow; the device starts after. */
static void test_driver_ok_returns_while_the_device_starts(void **state)
{
	struct fx *fx = *state;
	struct tdev *td;
	pthread_t t;

	add_test_device(fx);
	td = fx->td;
	driver_setup(fx);
	atomic_store(&td->start_gate, true);
	assert_int_equal(pthread_create(&t, NULL, driver_ok_thread, fx), 0);
	if (!join_within(t, 1000)) {
		atomic_store(&td->start_gate, false);
		if (!join_within(t, DEADLINE_MS))
			fx->wedged = true;
		fail_msg("DRIVER_OK waited on the writing vCPU for the device's start");
	}
	assert_int_equal(status_read(fx), S_READY | S_DRIVER_OK);
	atomic_store(&td->start_gate, false);
	assert_true(wait_for(&td->queue_starts, 1));
	assert_int_equal(atomic_load(&td->starts), 1);
	reset_within_deadline(fx);
}

/* --- MSI-X and the configuration-change interrupt ---------------------------------------- */

/* MSI-X on, entries 0 and 1 with an address and data, entry 0 masked as mask0 says. */
static void msix_setup(struct fx *fx, bool mask0)
{
	/* The configuration vector reads back as written. */
	assert_int_equal(virtio_driver_msix_enable(&fx->drv, 2, 0), 0);
	virtio_driver_msix_mask(&fx->drv, 0, mask0);
	assert_int_equal(virtio_driver_queue_vector(&fx->drv, 0, 1), 1);
	settle(fx);
}

/* Whether vector's irqfd was written within ms (and takes the count). */
static bool fired(struct fx *fx, unsigned int vector, int ms)
{
	uint64_t n = 0;
	int r = virtio_driver_wait_vector(&fx->drv, vector, ms, &n);

	/* Not -EINVAL (no such vector) nor a failed read. */
	assert_true(r == 0 || r == -ETIMEDOUT);
	return r == 0;
}

/*
 * PCI 3.0 §6.8.2: a message of a masked vector, or of a masked function, waits as its PBA bit
 * and goes when the mask lifts; the configuration change also bumps config_generation.
 */
static void test_msix_masked_message_pends_and_goes_at_unmask(void **state)
{
	struct fx *fx = *state;
	uint8_t gen;

	add_test_device(fx);
	driver_setup(fx);
	msix_setup(fx, true);
	status_write(fx, S_READY | S_DRIVER_OK);
	settle(fx);
	gen = common_read(fx, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	virtio_config_changed(fx->vdev);
	assert_int_not_equal(common_read(fx, VIRTIO_PCI_COMMON_CFGGENERATION, 1), gen);
	assert_false(fired(fx, 0, 50));
	assert_int_equal(virtio_driver_msix_pending(&fx->drv), 1);
	virtio_driver_msix_mask(&fx->drv, 0, false);
	assert_true(fired(fx, 0, DEADLINE_MS));
	assert_int_equal(virtio_driver_msix_pending(&fx->drv), 0);
	/* The function mask. */
	virtio_driver_msix_mask_all(&fx->drv, true);
	virtio_config_changed(fx->vdev);
	assert_false(fired(fx, 0, 50));
	assert_int_equal(virtio_driver_msix_pending(&fx->drv), 1);
	virtio_driver_msix_mask_all(&fx->drv, false);
	assert_true(fired(fx, 0, DEADLINE_MS));
	assert_int_equal(virtio_driver_msix_pending(&fx->drv), 0);
	/* Unmasked: at once. */
	virtio_config_changed(fx->vdev);
	assert_true(fired(fx, 0, DEADLINE_MS));
	assert_false(fired(fx, 1, 0));
}

/* Without MSI-X, the configuration change is ISR bit 1 (§4.1.4.5), cleared by the read. */
static void test_config_change_reaches_the_driver_through_the_isr(void **state)
{
	struct fx *fx = *state;
	uint8_t gen;

	add_test_device(fx);
	driver_init(fx);
	gen = common_read(fx, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	virtio_config_changed(fx->vdev);
	assert_int_not_equal(common_read(fx, VIRTIO_PCI_COMMON_CFGGENERATION, 1), gen);
	assert_int_equal(bar_read(fx, fx->drv.isr, 1), 2);
	assert_int_equal(bar_read(fx, fx->drv.isr, 1), 0);
	/* Before DRIVER_OK: the generation only; the driver reads the config as it starts. */
	driver_reset(fx);
	gen = common_read(fx, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	virtio_config_changed(fx->vdev);
	assert_int_not_equal(common_read(fx, VIRTIO_PCI_COMMON_CFGGENERATION, 1), gen);
	assert_int_equal(bar_read(fx, fx->drv.isr, 1), 0);
}

/* §2.1.2: DEVICE_NEEDS_RESET comes with a configuration change interrupt on MSI-X too. */
static void test_needs_reset_sends_the_config_interrupt(void **state)
{
	struct fx *fx = *state;

	add_test_device(fx);
	driver_setup(fx);
	msix_setup(fx, false);
	status_write(fx, S_READY | S_DRIVER_OK);
	settle(fx);
	virtio_needs_reset(fx->vdev, "the test says so");
	assert_true(status_read(fx) & S_NEEDS_RESET);
	assert_true(fired(fx, 0, DEADLINE_MS));
	/* Once: the device says it once until the reset. */
	virtio_needs_reset(fx->vdev, "the test says so again");
	assert_false(fired(fx, 0, 50));
	reset_within_deadline(fx);
}

/* --- a vhost back end's view of a queue ------------------------------------------------- */

static void test_vhost_view_matches_what_the_driver_set_up(void **state)
{
	struct fx *fx = *state;
	struct virtio_vhost_queue v;
	uint64_t one = 1;

	add_test_device(fx);
	assert_int_equal(virtio_queue_vhost_view(fx->vdev, 1, &v), -EINVAL);
	assert_int_equal(virtio_queue_vhost_view(fx->vdev, 0, &v), -ENODEV);
	driver_setup(fx);
	msix_setup(fx, false);
	status_write(fx, S_READY | S_DRIVER_OK);
	settle(fx);
	assert_int_equal(virtio_queue_vhost_view(fx->vdev, 0, &v), 0);
	assert_int_equal(v.size, TEST_QSIZE);
	assert_int_equal(v.desc, DESC_GPA);
	assert_int_equal(v.avail, AVAIL_GPA);
	assert_int_equal(v.used, USED_GPA);
	assert_false(v.event_idx);
	assert_ptr_equal(v.mem, &fx->vm->mem);
	assert_int_equal(v.call_fd, virtio_pci_vector_fd(fx->vp, 1));
	/* kick_fd is the queue's: a write to it has the device look at the ring. */
	publish(fx, 0);
	assert_true(wait_for(&fx->td->queue_starts, 1));
	add_chains(fx, 1);
	assert_int_equal(write(v.kick_fd, &one, sizeof(one)), sizeof(one));
	assert_true(wait_for(&fx->td->popped, 1));
	/* After a reset, the queue is no one's. */
	reset_within_deadline(fx);
	assert_int_equal(virtio_queue_vhost_view(fx->vdev, 0, &v), -ENODEV);
}

/* --- refusals ---------------------------------------------------------------------------- */

/* §3.1.1: features not offered, or no VERSION_1, leave FEATURES_OK clear for the driver to see. */
static void test_features_refused_leave_features_ok_clear(void **state)
{
	struct fx *fx = *state;

	add_test_device(fx);
	driver_reset(fx);
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER);
	features_write(fx, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << 40)); /* not offered */
	status_write(fx, S_READY);
	assert_int_equal(status_read(fx), S_ACKNOWLEDGE | S_DRIVER);
	assert_int_equal(fx->vdev->features, 0);
	driver_reset(fx);
	status_write(fx, S_ACKNOWLEDGE | S_DRIVER);
	features_write(fx, 1ULL << VIRTIO_RING_F_EVENT_IDX); /* a legacy driver's choice */
	status_write(fx, S_READY | S_DRIVER_OK);
	assert_int_equal(status_read(fx), S_ACKNOWLEDGE | S_DRIVER);
	settle(fx);
	assert_int_equal(atomic_load(&fx->td->starts), 0);
}

/* §4.1.4.3.2: a queue size of 0, above the maximum or not a power of 2 keeps the old one. */
static void test_queue_size_refused_keeps_the_old_size(void **state)
{
	struct fx *fx = *state;
	static const uint16_t bad[] = { 0, 3, 6, TEST_QSIZE * 2, 0xffff };

	add_test_device(fx);
	driver_reset(fx);
	common_write(fx, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	assert_int_equal(common_read(fx, VIRTIO_PCI_COMMON_Q_SIZE, 2), TEST_QSIZE);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		common_write(fx, VIRTIO_PCI_COMMON_Q_SIZE, bad[i], 2);
		assert_int_equal(common_read(fx, VIRTIO_PCI_COMMON_Q_SIZE, 2), TEST_QSIZE);
	}
	common_write(fx, VIRTIO_PCI_COMMON_Q_SIZE, 4, 2);
	assert_int_equal(common_read(fx, VIRTIO_PCI_COMMON_Q_SIZE, 2), 4);
	/* A queue that does not exist reads as size 0 and takes nothing. */
	common_write(fx, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	common_write(fx, VIRTIO_PCI_COMMON_Q_SIZE, 4, 2);
	assert_int_equal(common_read(fx, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
}

/* --- BAR moves ----------------------------------------------------------------------------- */

/* The guest moves BAR 0 of a running device: kicks at the new place reach the queue. */
static void test_bar_move_keeps_kicks_reaching_the_queue(void **state)
{
	struct fx *fx = *state;
	uint64_t old, new, kick = 0;

	add_test_device(fx);
	cfg_write(fx, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	old = fx->drv.dev->bar_addr[0];
	assert_true(old != 0);
	driver_init(fx);
	new = old + 0x100000;
	cfg_write(fx, PCI_BAR0, (uint32_t) new | 4, 4); /* 64-bit memory BAR */
	cfg_write(fx, PCI_BAR0 + 4, new >> 32, 4);
	assert_int_equal(fx->drv.dev->bar_addr[0], new);
	settle(fx);
	add_chains(fx, 1);
	assert_false(pci_mmio_access(fx->bus, old + fx->drv.notify, &kick, 2, true));
	assert_true(pci_mmio_access(fx->bus, new + fx->drv.notify, &kick, 2, true));
	assert_true(wait_for(&fx->td->popped, 1));
	/* The device answers at the new place. */
	kick = 0;
	assert_true(pci_mmio_access(fx->bus, new + fx->drv.common + VIRTIO_PCI_COMMON_STATUS, &kick,
				    1, false));
	assert_int_equal(kick, S_READY | S_DRIVER_OK);
	/* Memory decoding off and on again, as a guest's PCI scan does. */
	cfg_write(fx, PCI_COMMAND, 0, 2);
	cfg_write(fx, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	settle(fx);
	reset_within_deadline(fx);
}

/* One request of type on the ring: header, data (len bytes; in: device-writable), status. */
static void blk_request(struct fx *fx, uint32_t type, uint64_t sector, uint32_t len, bool in,
			unsigned int n)
{
	struct virtio_blk_outhdr *h = guest_ptr(&fx->vm->mem, DATA_GPA, sizeof(*h));

	h->type = type;
	h->ioprio = 0;
	h->sector = sector;
	fx->q.desc[0] = (struct vring_desc){ DATA_GPA, sizeof(*h), VRING_DESC_F_NEXT, 1 };
	fx->q.desc[1] = (struct vring_desc){ DATA_GPA + 0x1000, len,
					     VRING_DESC_F_NEXT | (in ? VRING_DESC_F_WRITE : 0), 2 };
	fx->q.desc[2] = (struct vring_desc){ DATA_GPA + 0x100, 1, VRING_DESC_F_WRITE, 0 };
	virtio_driver_queue_add(&fx->q, 0);
	virtio_driver_queue_publish(&fx->q);
	virtio_driver_queue_kick(&fx->q);
	for (uint64_t end = now_ms() + DEADLINE_MS; used_idx(fx) < n && now_ms() < end;)
		usleep(100);
	assert_int_equal(used_idx(fx), n);
}

/* The counters of vm.counters: a read, a write, and a read past the end (an error). */
static void test_blk_stats_count_requests_bytes_and_errors(void **state)
{
	struct fx *fx = *state;
	struct virtio_blk_stats st;

	add_blk(fx, DISK_ENGINE_THREADS);
	driver_init(fx);
	virtio_blk_get_stats(fx->vdev, &st);
	assert_int_equal(st.requests + st.read_bytes + st.write_bytes + st.errors, 0);
	blk_request(fx, VIRTIO_BLK_T_IN, 0, 4096, true, 1);
	blk_request(fx, VIRTIO_BLK_T_OUT, 8, 512, false, 2);
	blk_request(fx, VIRTIO_BLK_T_IN, 1 * MiB / 512, 512, true, 3);
	virtio_blk_get_stats(fx->vdev, &st);
	assert_int_equal(st.requests, 3);
	assert_int_equal(st.read_bytes, 4096);
	assert_int_equal(st.write_bytes, 512);
	assert_int_equal(st.errors, 1);
	assert_int_equal(st.in_flight, 0);
}

#define VTEST(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

static bool tdev_queue_offloaded(struct virtio_device *vdev, unsigned int q)
{
	return true;
}

/*
 * A queue the device says something else serves (vhost-net) gets no thread from the transport:
 * no queue_start and no pass over the ring, and the reset still works.
 */
static void test_offloaded_queue_gets_no_thread(void **state)
{
	static struct virtio_device_ops ops;
	struct fx *fx = *state;
	struct tdev *td;

	add_test_device(fx);
	td = fx->td;
	ops = tdev_ops;
	ops.queue_offloaded = tdev_queue_offloaded;
	td->vdev.ops = &ops;
	driver_setup(fx);
	publish(fx, 1);
	status_write(fx, S_READY | S_DRIVER_OK);
	settle(fx);
	usleep(50 * 1000);
	assert_int_equal(atomic_load(&td->starts), 1);
	assert_int_equal(atomic_load(&td->queue_starts), 0);
	assert_int_equal(atomic_load(&td->popped), 0);
	reset_within_deadline(fx);
	assert_int_equal(atomic_load(&td->queue_stops), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		VTEST(test_driver_ok_set_again_does_not_restart_the_device),
		VTEST(test_driver_ok_set_again_starts_nothing_threads),
		VTEST(test_driver_ok_set_again_starts_nothing_aio),
		VTEST(test_driver_ok_set_again_starts_nothing_io_uring),
		VTEST(test_features_cannot_be_renegotiated_after_features_ok),
		VTEST(test_status_that_skips_a_step_is_refused),
		VTEST(test_driver_ok_during_reset_from_second_thread_starts_nothing),
		VTEST(test_queue_holds_at_most_its_size_then_needs_reset),
		VTEST(test_status_write_of_0_returns_while_the_device_resets),
		VTEST(test_driver_ok_returns_while_the_device_starts),
		VTEST(test_msix_masked_message_pends_and_goes_at_unmask),
		VTEST(test_config_change_reaches_the_driver_through_the_isr),
		VTEST(test_needs_reset_sends_the_config_interrupt),
		VTEST(test_vhost_view_matches_what_the_driver_set_up),
		VTEST(test_features_refused_leave_features_ok_clear),
		VTEST(test_queue_size_refused_keeps_the_old_size),
		VTEST(test_bar_move_keeps_kicks_reaching_the_queue),
		VTEST(test_offloaded_queue_gets_no_thread),
		VTEST(test_blk_stats_count_requests_bytes_and_errors),
	};

	return cmocka_run_group_tests_name("virtio_pci", tests, NULL, NULL);
}
