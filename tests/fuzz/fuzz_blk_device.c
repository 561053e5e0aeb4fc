// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a hostile virtio-blk driver (virtio/blk.c) through the real transport,
 * driven by the in-process driver (virtio/driver.h) on a VM without KVM, over a 256 KiB raw disk
 * (the threads engine) that fuzz_blk_request's parser alone never reaches: requests of any
 * type, sector and range, data segments of any size, a status byte or none, on one or two
 * queues of a disk that is read-only or not. Each input gets a fresh device and a fresh image.
 * Checked: every request comes back, with a used length no larger than its writable bytes and
 * a status the spec defines (§5.2.6); the image keeps its size; a read-only image keeps its
 * bytes; and the device never needs a reset for what a driver may write.
 *
 * Input: u8 features (bit 0 read-only, 1 two queues, 2 EVENT_IDX, 3 every feature offered),
 * then records: u8 op, le16 len, then len bytes: the request's readable part (the 16-byte
 * header, data to write, discard ranges), as one segment or (op bit 6) the header and the rest.
 * Writable after it: ((op >> 2) & 7) * 512 data bytes in (op >> 5 & 1) + 1 segments, then the
 * status byte unless op bit 7. op & 1 picks the queue.
 */
#include <endian.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_pci.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/disk.h"
#include "hw/pci.h"
#include "lib/util.h"
#include "virtio/blk.h"
#include "virtio/device.h"
#include "virtio/driver.h"
#include "vmm/irq.h"
#include "vmm/memory.h"
#include "vmm/vm.h"
#include "tests/fuzz/fuzz_device.h"

#define F(bit) (1ULL << (bit))
#define RAM_SIZE (4 * MiB)
#define RINGS_GPA 0x10000ULL
#define RING_STRIDE 0x10000ULL
#define DATA_GPA 0x100000ULL
#define QSIZE 128
#define MAX_RECORDS 32 /* at most 4 descriptors each: a queue's table never wraps onto itself */
#define DISK_SIZE (256 << 10)
#define DEADLINE_MS 3000

/* On tmpfs: a FLUSH's fdatasync of a disk file costs tens of milliseconds each time. */
static char dir[] = "/dev/shm/nkvm-fuzz-blk-XXXXXX", img[64];

static void cleanup(void)
{
	unlink(img);
	rmdir(dir);
}

/* The image as each input finds it: every sector holds its number. */
static void image_make(void)
{
	static uint32_t pattern[DISK_SIZE / 4];
	int fd = open(img, O_CREAT | O_WRONLY | O_TRUNC, 0600);

	for (unsigned int i = 0; i < DISK_SIZE / 4; i++)
		pattern[i] = i / 128;
	if (fd < 0 || write(fd, pattern, sizeof(pattern)) != sizeof(pattern))
		abort();
	close(fd);
}

static uint64_t image_sum(void)
{
	static uint8_t buf[DISK_SIZE];
	uint64_t sum = 0;
	int fd = open(img, O_RDONLY);

	if (fd < 0 || pread(fd, buf, sizeof(buf), 0) != sizeof(buf))
		abort();
	close(fd);
	for (size_t i = 0; i < sizeof(buf); i += 8)
		sum = sum * 31 + get_le(buf + i, 8);
	return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm vm;
	static struct pci_bus bus;
	static struct irq_routing irq;
	struct virtio_driver drv;
	struct virtio_driver_queue q[2];
	uint16_t next[2] = { 0 }, posted[2] = { 0 };
	uint32_t room[2][QSIZE];
	uint64_t status_gpa[2][QSIZE];
	struct virtio_device *vdev;
	struct disk *disk;
	struct stat st;
	bool ro;
	unsigned int nq, records = 0;
	uint64_t features, gpa = DATA_GPA, sum = 0;
	char why[DISK_ERR_MAX];
	size_t at = 1;

	if (!size)
		return 0;
	if (!img[0]) {
		if (!mkdtemp(dir))
			abort();
		snprintf(img, sizeof(img), "%s/disk.raw", dir);
		atexit(cleanup);
	}
	image_make();
	ro = data[0] & 1;
	if (ro)
		sum = image_sum();
	nq = data[0] & 2 ? 2 : 1;
	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = vm.stop_fd = -1;
	if (memory_init(&vm.mem, RAM_SIZE) || irq_routing_init(&irq, NULL) || pci_init(&bus, &vm))
		abort();
	{
		struct disk_options o = { .path = img, .readonly = ro, .format = DISK_FORMAT_RAW,
					  .engine = DISK_ENGINE_THREADS, .threads = 2 };
		struct virtio_blk_options bo = { .serial = "fuzz-serial", .queues = nq };

		if (disk_open(&disk, &o, why, sizeof(why)) ||
		    virtio_blk_create(&vdev, &vm, &bus, &irq, disk, &bo))
			abort();
	}
	if (virtio_driver_find(&drv, &bus, &vm.mem, VIRTIO_ID_BLOCK) ||
	    virtio_driver_begin(&drv, DEADLINE_MS))
		abort();
	features = F(VIRTIO_F_VERSION_1) | (nq > 1 ? F(VIRTIO_BLK_F_MQ) : 0) |
		   (data[0] & 4 ? F(VIRTIO_RING_F_EVENT_IDX) : 0);
	if (data[0] & 8)
		features = virtio_driver_device_features(&drv);
	if (virtio_driver_start(&drv, features, q, nq, QSIZE, RINGS_GPA, RING_STRIDE))
		abort();

	while (at + 3 <= size && records++ < MAX_RECORDS) {
		uint8_t op = data[at];
		size_t len = data[at + 1] | data[at + 2] << 8, n, win = ((op >> 2) & 7) * 512;
		unsigned int qi = (op & 1) % nq, k = 0, head;
		struct virtio_driver_seg s[5];

		at += 3;
		n = size - at < len ? size - at : len;
		if (gpa + n + win + 256 > RAM_SIZE)
			break;
		if (n) {
			memcpy(guest_ptr(&vm.mem, gpa, n), data + at, n);
			if ((op & 0x40) && n > 16) {
				s[k++] = (struct virtio_driver_seg){ gpa, 16, false };
				s[k++] = (struct virtio_driver_seg){ gpa + 16, n - 16, false };
			} else {
				s[k++] = (struct virtio_driver_seg){ gpa, n, false };
			}
			gpa = ALIGN_UP(gpa + n, 64);
			at += n;
		}
		if (win && (op & 0x20)) {
			s[k++] = (struct virtio_driver_seg){ gpa, 512, true };
			s[k++] = (struct virtio_driver_seg){ gpa + 512, win - 512, true };
		} else if (win) {
			s[k++] = (struct virtio_driver_seg){ gpa, win, true };
		}
		gpa = ALIGN_UP(gpa + win, 64);
		if (!(op & 0x80)) {
			*(uint8_t *)guest_ptr(&vm.mem, gpa, 1) = 0xee;
			s[k++] = (struct virtio_driver_seg){ gpa, 1, true };
			gpa += 64;
		}
		if (!k)
			continue;
		head = virtio_driver_queue_add_chain(&q[qi], &next[qi], s, k);
		room[qi][head] = win + !(op & 0x80);
		status_gpa[qi][head] = op & 0x80 ? 0 : gpa - 64;
		posted[qi]++;
		virtio_driver_queue_publish(&q[qi]);
		virtio_driver_queue_kick(&q[qi]);
	}
	/* Every request comes back (§5.2.6), whatever it asked; its status one the spec has. */
	for (unsigned int i = 0; i < nq; i++) {
		uint64_t end = now_ms() + DEADLINE_MS;
		struct vring_used_elem e;

		while (used_idx(&q[i]) != posted[i] && now_ms() < end)
			usleep(50);
		if (used_idx(&q[i]) != posted[i])
			abort();
		while (virtio_driver_queue_get(&q[i], &e)) {
			uint8_t status;

			if (e.id >= QSIZE || e.len > room[i][e.id])
				abort();
			if (!status_gpa[i][e.id])
				continue;
			status = *(uint8_t *)guest_ptr(&vm.mem, status_gpa[i][e.id], 1);
			if (status != VIRTIO_BLK_S_OK && status != VIRTIO_BLK_S_IOERR &&
			    status != VIRTIO_BLK_S_UNSUPP)
				abort();
		}
	}
	if (virtio_driver_status(&drv) & VIRTIO_CONFIG_S_NEEDS_RESET)
		abort();
	virtio_blk_destroy(vdev);
	memory_free(&vm.mem);
	pthread_mutex_destroy(&bus.lock);
	pthread_mutex_destroy(&irq.lock);
	if (stat(img, &st) || st.st_size != DISK_SIZE || (ro && image_sum() != sum))
		abort();
	return 0;
}
