// SPDX-License-Identifier: MIT
/*
 * Pause and resume (vcpus_pause/vcpus_resume in src/vmm/vcpu.c) with stand-in vCPU threads that
 * loop as vcpu_thread does, counting instead of entering KVM_RUN: no KVM needed.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define NR 3

static struct vm vm;
static struct vcpu vcpus[NR];
static struct kvm_run runs[NR];
static atomic_ulong count[NR];
static atomic_int gone[NR]; /* the stand-in for a vCPU whose thread has ended: never parks */

static void *fake_vcpu(void *arg)
{
	struct vcpu *v = arg;

	while (!atomic_load(&vm.stopping)) {
		if (atomic_load(&gone[v->id])) {
			usleep(1000);
			continue;
		}
		vcpu_park_if_paused(v);
		atomic_fetch_add(&count[v->id], 1);
		usleep(100);
	}
	vcpu_thread_exit(v);
	return NULL;
}

static void on_kick(int sig)
{
}

static int setup(void **state)
{
	struct sigaction sa = { .sa_handler = on_kick };

	sigaction(SIGUSR1, &sa, NULL);
	memset(&vm, 0, sizeof(vm));
	memset(vcpus, 0, sizeof(vcpus));
	memset(runs, 0, sizeof(runs));
	pthread_mutex_init(&vm.pause_lock, NULL);
	pthread_cond_init(&vm.pause_cond, NULL);
	vm.nr_vcpus = NR;
	vm.vcpus = vcpus;
	for (unsigned int i = 0; i < NR; i++) {
		atomic_store(&count[i], 0);
		atomic_store(&gone[i], 0);
		vcpus[i] = (struct vcpu){ .vm = &vm, .id = i, .fd = -1, .run = &runs[i] };
		if (pthread_create(&vcpus[i].thread, NULL, fake_vcpu, &vcpus[i]))
			return -1;
		vcpus[i].started = true;
	}
	return 0;
}

static int teardown(void **state)
{
	atomic_store(&vm.stopping, 1);
	vcpus_stop(&vm);
	return 0;
}

static void snapshot(unsigned long *c)
{
	for (unsigned int i = 0; i < NR; i++)
		c[i] = atomic_load(&count[i]);
}

static void test_pause_parks_every_vcpu_and_resume_releases_them(void **state)
{
	unsigned long a[NR], b[NR];

	usleep(20000);
	assert_int_equal(vcpus_pause(&vm), 0);
	assert_true(vcpus_paused(&vm));
	snapshot(a);
	usleep(50000);
	snapshot(b);
	for (unsigned int i = 0; i < NR; i++) {
		assert_true(a[i] > 0);
		/* Parked: not one more round of the loop. */
		assert_int_equal(a[i], b[i]);
		assert_true(vcpus[i].parked);
		/* The kick's immediate_exit stays until the vCPU runs again. */
		assert_int_equal(runs[i].immediate_exit, 1);
	}
	assert_int_equal(vcpus_resume(&vm), 0);
	assert_false(vcpus_paused(&vm));
	usleep(50000);
	snapshot(b);
	for (unsigned int i = 0; i < NR; i++) {
		assert_true(b[i] > a[i]);
		assert_int_equal(runs[i].immediate_exit, 0);
	}
}

static void test_pause_twice_and_resume_running_are_ealready(void **state)
{
	assert_int_equal(vcpus_resume(&vm), -EALREADY);
	assert_int_equal(vcpus_pause(&vm), 0);
	assert_int_equal(vcpus_pause(&vm), -EALREADY);
	assert_int_equal(vcpus_resume(&vm), 0);
	assert_int_equal(vcpus_resume(&vm), -EALREADY);
}

static void test_pause_does_not_wait_for_an_ended_vcpu(void **state)
{
	/* vCPU 1 left its loop (a guest's stop path) and will never park; the others do. */
	atomic_store(&gone[1], 1);
	vcpu_thread_exit(&vcpus[1]);
	assert_int_equal(vcpus_pause(&vm), 0);
	assert_true(vcpus[0].parked);
	assert_true(vcpus[2].parked);
	assert_false(vcpus[1].parked);
	assert_int_equal(vcpus_resume(&vm), 0);
}

static void test_stop_wakes_parked_vcpus(void **state)
{
	assert_int_equal(vcpus_pause(&vm), 0);
	/* teardown stops while paused: vcpus_stop must not hang on parked threads. */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_pause_parks_every_vcpu_and_resume_releases_them, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_twice_and_resume_running_are_ealready,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_does_not_wait_for_an_ended_vcpu, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stop_wakes_parked_vcpus, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
