// SPDX-License-Identifier: MIT
/*
 * virtio-balloon through the virtio-pci transport, driven by the in-process driver
 * (virtio/driver.h) as a guest's would be: inflated and reported pages leave the RAM mapping
 * (mincore says so), page numbers outside guest RAM are counted and ignored, the statistics
 * buffer is parsed and asked for again, the target reaches the config space, and the queues are
 * numbered as Linux numbers them when a feature is left out.
 */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_pci.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "hw/pci.h"
#include "lib/util.h"
#include "virtio/balloon.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"

#define F(bit) (1ULL << (bit))
#define RAM_SIZE (16 * MiB)
#define RINGS_GPA 0x10000ULL /* queue q's rings at RINGS_GPA + q * RING_STRIDE */
#define RING_STRIDE 0x10000ULL
#define DATA_GPA 0x100000ULL /* the driver's buffers */
#define PAGES_GPA (8 * MiB) /* the pages the tests balloon */
#define PAGE 4096ULL
#define QSIZE 64
#define DEADLINE_MS 5000
#define ALL_FEATURES                                            \
	(F(VIRTIO_F_VERSION_1) | F(VIRTIO_BALLOON_F_STATS_VQ) | \
	 F(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) | F(VIRTIO_BALLOON_F_REPORTING))

enum { INFLATEQ, DEFLATEQ, STATSQ, REPORTQ };

struct fx {
	struct vm *vm;
	struct pci_bus *bus;
	struct irq_routing *irq;
	struct virtio_driver drv;
	struct virtio_driver_queue q[4];
	uint16_t next_desc[4];
	struct virtio_balloon *b;
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
	/* Whole 4 KiB pages, so that giving back a few does not depend on huge pages. */
	madvise(fx->vm->mem.base, RAM_SIZE, MADV_NOHUGEPAGE);
	fx->data_next = DATA_GPA;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	virtio_balloon_destroy(fx->b);
	memory_free(&fx->vm->mem);
	free(fx->irq);
	free(fx->bus);
	free(fx->vm);
	free(fx);
	return 0;
}

/* The device, driven up to DRIVER_OK with features and nq queues. */
static void balloon_up(struct fx *fx, uint64_t features, unsigned int nq)
{
	assert_int_equal(virtio_balloon_create(&fx->b, fx->vm, fx->bus, fx->irq), 0);
	assert_int_equal(virtio_driver_find(&fx->drv, fx->bus, &fx->vm->mem, VIRTIO_ID_BALLOON), 0);
	assert_int_equal(virtio_driver_reset(&fx->drv, DEADLINE_MS), 0);
	virtio_driver_set_status(&fx->drv, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	virtio_driver_set_status(&fx->drv, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	assert_int_equal(virtio_driver_device_features(&fx->drv) & features, features);
	assert_int_equal(virtio_driver_features_ok(&fx->drv, features), 0);
	for (unsigned int q = 0; q < nq; q++)
		assert_int_equal(virtio_driver_queue_setup(&fx->drv, &fx->q[q], q, QSIZE,
							   RINGS_GPA + q * RING_STRIDE,
							   VIRTIO_MSI_NO_VECTOR),
				 0);
	virtio_driver_set_status(&fx->drv,
				 virtio_driver_status(&fx->drv) | VIRTIO_CONFIG_S_DRIVER_OK);
	virtio_driver_settle(&fx->drv);
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static uint64_t galloc(struct fx *fx, uint64_t len)
{
	uint64_t gpa = fx->data_next;

	fx->data_next = ALIGN_UP(gpa + len, 64);
	assert_true(fx->data_next < PAGES_GPA);
	return gpa;
}

static void *gp(struct fx *fx, uint64_t gpa)
{
	return guest_ptr(&fx->vm->mem, gpa, 1);
}

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
/* Makes a chain of the segments available on queue qi and kicks. */
static void post(struct fx *fx, unsigned int qi, const struct virtio_driver_seg *s, unsigned int n)
{
	struct virtio_driver_queue *q = &fx->q[qi];

	virtio_driver_queue_add_chain(q, &fx->next_desc[qi], s, n);
	virtio_driver_queue_publish(q);
	virtio_driver_queue_kick(q);
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

/* An array of page frame numbers (§5.5.6.1) in guest memory, posted on queue qi. */
static void post_pfns(struct fx *fx, unsigned int qi, const uint32_t *pfns, unsigned int n)
{
	uint64_t gpa = galloc(fx, n * 4);
	uint32_t *p = gp(fx, gpa);

	for (unsigned int i = 0; i < n; i++)
		p[i] = htole32(pfns[i]);
	post(fx, qi, (struct virtio_driver_seg[]){ { gpa, n * 4 } }, 1);
}

/* Writes every page of [gpa, gpa + len) so that it is resident. */
static void touch(struct fx *fx, uint64_t gpa, uint64_t len)
{
	memset(gp(fx, gpa), 0xa5, len);
}

/* How many of the 4 KiB pages of [gpa, gpa + len) are resident in nkvm's RAM mapping. */
static unsigned int resident(struct fx *fx, uint64_t gpa, uint64_t len)
{
	unsigned char vec[RAM_SIZE / PAGE];
	unsigned int n = 0;

	assert_int_equal(mincore(gp(fx, gpa), len, vec), 0);
	for (uint64_t i = 0; i < len / PAGE; i++)
		n += vec[i] & 1;
	return n;
}

static struct virtio_balloon_info info(struct fx *fx, int wait_ms)
{
	struct virtio_balloon_info i;

	virtio_balloon_info(fx->b, &i, wait_ms);
	return i;
}

/* --- inflate and deflate -------------------------------------------------------------------- */

static void test_inflated_pages_leave_the_ram_mapping(void **state)
{
	struct fx *fx = *state;
	uint32_t pfns[64];

	balloon_up(fx, ALL_FEATURES, 4);
	touch(fx, PAGES_GPA, 128 * PAGE);
	assert_int_equal(resident(fx, PAGES_GPA, 128 * PAGE), 128);
	/* Every other page, then a run of 32: both shapes of madvise. */
	for (unsigned int i = 0; i < 32; i++)
		pfns[i] = (PAGES_GPA >> 12) + 2 * i;
	for (unsigned int i = 0; i < 32; i++)
		pfns[32 + i] = (PAGES_GPA >> 12) + 64 + i;
	post_pfns(fx, INFLATEQ, pfns, 64);
	assert_true(wait_used(fx, INFLATEQ, 1));
	assert_int_equal(fx->q[INFLATEQ].used->ring[0].len, 0);
	assert_int_equal(resident(fx, PAGES_GPA, 128 * PAGE), 128 - 64);
	assert_int_equal(resident(fx, PAGES_GPA + PAGE, PAGE), 1); /* an odd page: kept */
	assert_int_equal(*(uint8_t *)gp(fx, PAGES_GPA + PAGE), 0xa5);
	assert_int_equal(*(uint8_t *)gp(fx, PAGES_GPA), 0); /* given back: reads as zero */
	assert_int_equal(info(fx, 0).inflated, 64 * PAGE);
	assert_int_equal(info(fx, 0).returned, 64 * PAGE);
	assert_int_equal(info(fx, 0).bad_pfns, 0);
}

static void test_pfns_outside_ram_are_ignored_and_counted(void **state)
{
	struct fx *fx = *state;
	/* Past the end, one more, the last 32-bit PFN, the PCI hole; then one good page. */
	uint32_t pfns[] = { RAM_SIZE >> 12, (RAM_SIZE >> 12) + 1, UINT32_MAX,
			    (uint32_t)(MEM_HOLE_START >> 12), PAGES_GPA >> 12 };

	unsigned int before;

	balloon_up(fx, ALL_FEATURES, 4);
	touch(fx, PAGES_GPA, RAM_SIZE - PAGES_GPA);
	touch(fx, DATA_GPA, 16 * PAGE); /* where the PFN arrays go */
	before = resident(fx, 0, RAM_SIZE);
	post_pfns(fx, INFLATEQ, pfns, 5);
	assert_true(wait_used(fx, INFLATEQ, 1));
	assert_int_equal(info(fx, 0).bad_pfns, 4);
	assert_int_equal(info(fx, 0).returned, PAGE);
	/* Only the one good page left guest RAM; the device still runs. */
	assert_int_equal(resident(fx, 0, RAM_SIZE), before - 1);
	assert_false(virtio_driver_status(&fx->drv) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* A trailing partial PFN (two bytes) is not read as one. */
	{
		uint64_t gpa = galloc(fx, 6);
		uint32_t good = htole32((PAGES_GPA >> 12) + 1);

		memcpy(gp(fx, gpa), &good, 4);
		post(fx, INFLATEQ,
		     (struct virtio_driver_seg[]){ { gpa, 2 }, { gpa + 2, 2 }, { gpa + 4, 2 } }, 3);
		assert_true(wait_used(fx, INFLATEQ, 2));
		assert_int_equal(info(fx, 0).returned, 2 * PAGE); /* split PFN read whole */
		assert_int_equal(info(fx, 0).bad_pfns, 4);
	}
}

static void test_deflate_counts_pages_and_gives_nothing_back(void **state)
{
	struct fx *fx = *state;
	uint32_t pfns[] = { PAGES_GPA >> 12, (PAGES_GPA >> 12) + 1, RAM_SIZE >> 12 };

	balloon_up(fx, ALL_FEATURES, 4);
	touch(fx, PAGES_GPA, 2 * PAGE);
	post_pfns(fx, DEFLATEQ, pfns, 3);
	assert_true(wait_used(fx, DEFLATEQ, 1));
	assert_int_equal(info(fx, 0).deflated, 2 * PAGE);
	assert_int_equal(info(fx, 0).bad_pfns, 1);
	assert_int_equal(resident(fx, PAGES_GPA, 2 * PAGE), 2);
}

/* --- the target and actual ------------------------------------------------------------------ */

static uint32_t config_read32(struct fx *fx, unsigned int off)
{
	return (uint32_t)virtio_driver_bar_read(&fx->drv, fx->drv.device_cfg + off, 4);
}

static void test_target_reaches_config_and_actual_comes_back(void **state)
{
	struct fx *fx = *state;

	balloon_up(fx, ALL_FEATURES, 4);
	assert_int_equal(config_read32(fx, offsetof(struct virtio_balloon_config, num_pages)), 0);
	assert_int_equal(virtio_balloon_set_target(fx->b, 4 * MiB + 100), 0);
	assert_int_equal(config_read32(fx, offsetof(struct virtio_balloon_config, num_pages)),
			 1024);
	assert_int_equal(info(fx, 0).target, 4 * MiB);
	/* The driver's actual, written as Linux does (one 32-bit write). */
	virtio_driver_bar_write(&fx->drv,
				fx->drv.device_cfg + offsetof(struct virtio_balloon_config, actual),
				512, 4);
	assert_int_equal(info(fx, 0).actual, 512 * PAGE);
	/* num_pages is the host's: a driver's write does not change it. */
	virtio_driver_bar_write(&fx->drv, fx->drv.device_cfg, 7, 4);
	assert_int_equal(config_read32(fx, 0), 1024);
	assert_int_equal(virtio_balloon_set_target(fx->b, RAM_SIZE + PAGE), -ERANGE);
	assert_int_equal(info(fx, 0).target, 4 * MiB);
	assert_int_equal(virtio_balloon_set_target(fx->b, RAM_SIZE), 0);
}

/* --- statistics ----------------------------------------------------------------------------- */

/* A statistics buffer of n { tag, value } entries, posted on the stats queue. */
static void post_stats(struct fx *fx, const uint16_t *tags, const uint64_t *vals, unsigned int n)
{
	uint64_t gpa = galloc(fx, n * sizeof(struct virtio_balloon_stat));
	struct virtio_balloon_stat *s = gp(fx, gpa);

	for (unsigned int i = 0; i < n; i++) {
		s[i].tag = htole16(tags[i]);
		s[i].val = htole64(vals[i]);
	}
	post(fx, STATSQ, (struct virtio_driver_seg[]){ { gpa, n * sizeof(*s) } }, 1);
}

static bool wait_stats(struct fx *fx, uint64_t updates)
{
	for (uint64_t end = now_ms() + DEADLINE_MS;
	     info(fx, 0).stats_updates < updates && now_ms() < end;)
		usleep(200);
	return info(fx, 0).stats_updates >= updates;
}

struct asker {
	struct fx *fx;
	struct virtio_balloon_info got;
};

static void *ask_for_stats(void *opaque)
{
	struct asker *a = opaque;

	virtio_balloon_info(a->fx->b, &a->got, DEADLINE_MS);
	return NULL;
}

static void test_stats_are_parsed_and_asked_for_again(void **state)
{
	struct fx *fx = *state;
	const uint16_t tags[] = { VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT, 99,
				  VIRTIO_BALLOON_S_SWAP_IN, VIRTIO_BALLOON_S_MAJFLT };
	const uint64_t vals[] = { 100 * MiB, 512 * MiB, 5, 4096, 7 };
	struct virtio_balloon_info i;
	struct asker a = { .fx = fx };
	pthread_t t;

	balloon_up(fx, ALL_FEATURES, 4);
	post_stats(fx, tags, vals, 5);
	assert_true(wait_stats(fx, 1));
	i = info(fx, 0);
	assert_int_equal(i.stats[VIRTIO_BALLOON_S_MEMFREE], 100 * MiB);
	assert_int_equal(i.stats[VIRTIO_BALLOON_S_MEMTOT], 512 * MiB);
	assert_int_equal(i.stats[VIRTIO_BALLOON_S_SWAP_IN], 4096);
	assert_int_equal(i.stats[VIRTIO_BALLOON_S_MAJFLT], 7);
	assert_int_equal(
		i.have, (1U << VIRTIO_BALLOON_S_MEMFREE) | (1U << VIRTIO_BALLOON_S_MEMTOT) |
				(1U << VIRTIO_BALLOON_S_SWAP_IN) | (1U << VIRTIO_BALLOON_S_MAJFLT));
	/* Held, not used, until the host asks (§5.5.6.3). */
	assert_int_equal(used_idx(fx, STATSQ), 0);

	/* Asking uses the buffer; the driver refills it, and the asker gets the new figures. */
	assert_int_equal(pthread_create(&t, NULL, ask_for_stats, &a), 0);
	assert_true(wait_used(fx, STATSQ, 1));
	post_stats(fx, (const uint16_t[]){ VIRTIO_BALLOON_S_MEMFREE },
		   (const uint64_t[]){ 50 * MiB }, 1);
	pthread_join(t, NULL);
	assert_int_equal(a.got.stats_updates, 2);
	assert_int_equal(a.got.stats[VIRTIO_BALLOON_S_MEMFREE], 50 * MiB);
	assert_int_equal(a.got.have, 1U << VIRTIO_BALLOON_S_MEMFREE);
	assert_string_equal(virtio_balloon_stat_name(VIRTIO_BALLOON_S_MEMFREE), "free_memory");
	assert_null(virtio_balloon_stat_name(VIRTIO_BALLOON_S_NR));
}

static void test_stats_wait_ends_when_the_driver_never_refills(void **state)
{
	struct fx *fx = *state;
	const uint16_t tag = VIRTIO_BALLOON_S_MEMFREE;
	const uint64_t val = MiB;
	uint64_t start;

	balloon_up(fx, ALL_FEATURES, 4);
	post_stats(fx, &tag, &val, 1);
	assert_true(wait_stats(fx, 1));
	start = now_ms();
	assert_int_equal(info(fx, 200).stats[VIRTIO_BALLOON_S_MEMFREE], MiB);
	assert_true(now_ms() - start < 2000);
	/* The buffer went back; with none held, the next ask does not wait. */
	start = now_ms();
	info(fx, 2000);
	assert_true(now_ms() - start < 1000);
}

/* --- free page reporting -------------------------------------------------------------------- */

static void test_reported_pages_leave_the_ram_mapping(void **state)
{
	struct fx *fx = *state;

	balloon_up(fx, ALL_FEATURES, 4);
	touch(fx, PAGES_GPA, 64 * PAGE);
	/* Two ranges; the second starts and ends inside pages: only its whole pages go. */
	post(fx, REPORTQ,
	     (struct virtio_driver_seg[]){ { PAGES_GPA, 16 * PAGE, true },
					   { PAGES_GPA + 32 * PAGE + 100, 8 * PAGE, true } },
	     2);
	assert_true(wait_used(fx, REPORTQ, 1));
	assert_int_equal(resident(fx, PAGES_GPA, 64 * PAGE), 64 - 16 - 7);
	assert_int_equal(resident(fx, PAGES_GPA + 32 * PAGE, PAGE), 1);
	assert_int_equal(info(fx, 0).reported, 23 * PAGE);
	assert_int_equal(info(fx, 0).returned, 23 * PAGE);
}

/* Without STATS_VQ, Linux gives reporting_vq the index 2: the device must follow. */
static void test_reporting_queue_is_queue_2_without_stats(void **state)
{
	struct fx *fx = *state;

	balloon_up(fx, F(VIRTIO_F_VERSION_1) | F(VIRTIO_BALLOON_F_REPORTING), 3);
	touch(fx, PAGES_GPA, 4 * PAGE);
	post(fx, 2, (struct virtio_driver_seg[]){ { PAGES_GPA, 4 * PAGE, true } }, 1);
	assert_true(wait_used(fx, 2, 1));
	assert_int_equal(resident(fx, PAGES_GPA, 4 * PAGE), 0);
	assert_int_equal(info(fx, 0).reported, 4 * PAGE);
	assert_int_equal(info(fx, 0).stats_updates, 0);
}

#define BTEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BTEST(test_inflated_pages_leave_the_ram_mapping),
		BTEST(test_pfns_outside_ram_are_ignored_and_counted),
		BTEST(test_deflate_counts_pages_and_gives_nothing_back),
		BTEST(test_target_reaches_config_and_actual_comes_back),
		BTEST(test_stats_are_parsed_and_asked_for_again),
		BTEST(test_stats_wait_ends_when_the_driver_never_refills),
		BTEST(test_reported_pages_leave_the_ram_mapping),
		BTEST(test_reporting_queue_is_queue_2_without_stats),
	};

	return cmocka_run_group_tests_name("virtio_balloon", tests, NULL, NULL);
}
