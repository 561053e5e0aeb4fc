// SPDX-License-Identifier: MIT
/* The main loop's timers and sources, without a VM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/loop.h"

struct fired {
	struct loop *loop;
	atomic_int stop;
	char order[16];
	unsigned int n;
	unsigned int stop_after; /* stop the loop after this many firings */
};

struct tagged {
	struct loop_timer t;
	char tag;
	struct fired *log;
	unsigned int rearm; /* re-arm itself this many times */
};

static void on_timer(struct loop_timer *t)
{
	struct tagged *x = t->opaque;
	struct fired *f = x->log;

	if (f->n < sizeof(f->order) - 1)
		f->order[f->n++] = x->tag;
	if (x->rearm) {
		x->rearm--;
		loop_timer_arm(f->loop, t, 0);
	}
	if (f->n >= f->stop_after)
		atomic_store(&f->stop, 1);
}

static void tagged_init(struct tagged *x, char tag, struct fired *f)
{
	memset(x, 0, sizeof(*x));
	x->t.fn = on_timer;
	x->t.opaque = x;
	x->tag = tag;
	x->log = f;
}

static void test_two_timers_fire_in_deadline_order(void **state)
{
	struct loop l;
	struct fired f = { .loop = &l, .stop_after = 2 };
	struct tagged late, soon;

	assert_int_equal(loop_init(&l), 0);
	tagged_init(&late, 'L', &f);
	tagged_init(&soon, 'S', &f);
	loop_timer_arm(&l, &late.t, 40);
	loop_timer_arm(&l, &soon.t, 5);
	assert_int_equal(loop_run(&l, &f.stop), 0);
	assert_string_equal(f.order, "SL");
	assert_false(late.t.armed);
	assert_false(soon.t.armed);
	loop_free(&l);
}

static void test_cancelled_timer_never_fires_and_rearm_moves_deadline(void **state)
{
	struct loop l;
	struct fired f = { .loop = &l, .stop_after = 2 };
	struct tagged a, b, c;

	assert_int_equal(loop_init(&l), 0);
	tagged_init(&a, 'A', &f);
	tagged_init(&b, 'B', &f);
	tagged_init(&c, 'C', &f);
	loop_timer_arm(&l, &a.t, 1);
	loop_timer_arm(&l, &b.t, 10);
	loop_timer_arm(&l, &c.t, 20);
	loop_timer_cancel(&l, &b.t);
	loop_timer_cancel(&l, &b.t); /* twice: harmless */
	loop_timer_arm(&l, &a.t, 40); /* re-armed: now after C */
	assert_int_equal(loop_run(&l, &f.stop), 0);
	assert_string_equal(f.order, "CA");
	loop_free(&l);
}

static void on_event(struct loop_source *src, uint32_t events)
{
	struct fired *f = src->opaque;
	uint64_t v;

	assert_int_equal(read(src->fd, &v, sizeof(v)), sizeof(v));
	if (f->n < sizeof(f->order) - 1)
		f->order[f->n++] = 'E';
}

/* A timer re-arming itself at 0 ms fires once per round, and an fd event still gets through. */
static void test_self_rearming_timer_does_not_starve_events(void **state)
{
	struct loop l;
	struct fired f = { .loop = &l, .stop_after = 4 };
	struct tagged r;
	struct loop_source ev = { .fd = eventfd(0, EFD_CLOEXEC), .fn = on_event, .opaque = &f };
	uint64_t one = 1;

	assert_true(ev.fd >= 0);
	assert_int_equal(loop_init(&l), 0);
	assert_int_equal(loop_add(&l, &ev, EPOLLIN), 0);
	tagged_init(&r, 'R', &f);
	r.rearm = 10;
	loop_timer_arm(&l, &r.t, 0);
	assert_int_equal(write(ev.fd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(loop_run(&l, &f.stop), 0);
	/* Round 1: the event, then R; round 2: R (re-armed in round 1); ... */
	assert_string_equal(f.order, "ERRR");
	assert_true(r.t.armed);
	loop_timer_cancel(&l, &r.t);
	assert_false(r.t.armed);
	loop_free(&l);
	close(ev.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_timers_fire_in_deadline_order),
		cmocka_unit_test(test_cancelled_timer_never_fires_and_rearm_moves_deadline),
		cmocka_unit_test(test_self_rearming_timer_does_not_starve_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
