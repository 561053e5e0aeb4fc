// SPDX-License-Identifier: MIT
#include <errno.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "vmm/loop.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int loop_init(struct loop *l)
{
	l->timers = NULL;
	l->round = 0;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? -errno : 0;
}

void loop_free(struct loop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
	l->timers = NULL;
}

int loop_add(struct loop *l, struct loop_source *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0 ? -errno : 0;
}

int loop_del(struct loop *l, struct loop_source *src)
{
	return epoll_ctl(l->epfd, EPOLL_CTL_DEL, src->fd, NULL) < 0 ? -errno : 0;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	struct loop_timer **p;

	if (!t->armed)
		return;
	for (p = &l->timers; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			break;
		}
	}
	t->armed = 0;
	t->next = NULL;
}

void loop_timer_arm(struct loop *l, struct loop_timer *t, unsigned int ms)
{
	struct loop_timer **p;

	loop_timer_cancel(l, t);
	t->deadline_ns = now_ns() + (uint64_t)ms * 1000000;
	t->round = l->round;
	/* After every timer due at the same time or sooner: equal deadlines keep arming order. */
	for (p = &l->timers; *p && (*p)->deadline_ns <= t->deadline_ns; p = &(*p)->next)
		;
	t->next = *p;
	*p = t;
	t->armed = 1;
}

/* epoll_wait's timeout for the soonest timer: -1 with none, rounded up to whole milliseconds. */
static int loop_timeout_ms(const struct loop *l)
{
	uint64_t now, left;

	if (!l->timers)
		return -1;
	now = now_ns();
	if (l->timers->deadline_ns <= now)
		return 0;
	left = (l->timers->deadline_ns - now + 999999) / 1000000;
	return left > 60000 ? 60000 : (int)left;
}

/*
 * Fires the timers that are due, soonest first. One armed during this round (by a fn) waits for
 * the next round, even when already due, so that a fn re-arming itself cannot starve the loop.
 */
static void loop_fire_timers(struct loop *l)
{
	uint64_t now = now_ns();
	struct loop_timer *t;

	l->round++;
	while ((t = l->timers) && t->deadline_ns <= now && t->round != l->round) {
		l->timers = t->next;
		t->next = NULL;
		t->armed = 0;
		t->fn(t);
	}
}

int loop_run(struct loop *l, atomic_int *stop)
{
	struct epoll_event events[16];

	while (!atomic_load(stop)) {
		int n = epoll_wait(l->epfd, events, 16, loop_timeout_ms(l));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++) {
			struct loop_source *src = events[i].data.ptr;

			src->fn(src, events[i].events);
		}
		loop_fire_timers(l);
	}
	return 0;
}
