// SPDX-License-Identifier: MIT
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "vmm/loop.h"

int loop_init(struct loop *l)
{
	l->timeout_ms = -1;
	l->on_timeout = NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? -errno : 0;
}

void loop_free(struct loop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
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

int loop_run(struct loop *l, atomic_int *stop)
{
	struct epoll_event events[16];

	while (!atomic_load(stop)) {
		int n = epoll_wait(l->epfd, events, 16, l->timeout_ms);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0 && l->on_timeout)
			l->on_timeout(l->timeout_opaque);
		for (int i = 0; i < n; i++) {
			struct loop_source *src = events[i].data.ptr;

			src->fn(src, events[i].events);
		}
	}
	return 0;
}
