// SPDX-License-Identifier: MIT
/*
 * The cost of handing work from one thread to a sleeping other and back, through eventfds: what
 * a virtio request pays between the guest's driver and the device's queue thread (the kick, then
 * the interrupt) on top of the I/O itself. Two threads pass a token: each blocks in read() on its
 * own eventfd and wakes the other with write(), as nkvm's driver and queue threads do.
 *   handoff [ROUND_TRIPS]      prints the mean round trip in microseconds
 * Where the two threads run (one CPU or two) is left to the caller (taskset).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int to_peer, to_main;
static long trips = 20000;

static int pass(int wake, int sleep_on)
{
	uint64_t v = 1;

	if (write(wake, &v, sizeof(v)) != sizeof(v) || read(sleep_on, &v, sizeof(v)) != sizeof(v))
		return -1;
	return 0;
}

static void *peer(void *arg)
{
	uint64_t v;

	for (long i = 0; i < trips; i++) {
		if (read(to_peer, &v, sizeof(v)) != sizeof(v))
			return NULL;
		v = 1;
		if (write(to_main, &v, sizeof(v)) != sizeof(v))
			return NULL;
	}
	return arg;
}

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
	pthread_t t;
	double t0;

	if (argc > 1)
		trips = atol(argv[1]);
	to_peer = eventfd(0, EFD_CLOEXEC);
	to_main = eventfd(0, EFD_CLOEXEC);
	if (trips < 1 || to_peer < 0 || to_main < 0 || pthread_create(&t, NULL, peer, NULL)) {
		fprintf(stderr, "handoff: cannot set up\n");
		return 1;
	}
	t0 = now_us();
	for (long i = 0; i < trips; i++)
		if (pass(to_peer, to_main)) {
			perror("handoff");
			return 1;
		}
	printf("%.2f\n", (now_us() - t0) / trips);
	pthread_join(t, NULL);
	return 0;
}
