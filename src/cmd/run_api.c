// SPDX-License-Identifier: MIT
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/socket.h"
#include "arch/x86/i8042.h"
#include "cmd/run_api.h"
#include "cmd/run_devices.h"
#include "lib/log.h"
#include "sandbox/landlock.h"
#include "virtio/balloon.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void hook_info(void *opaque, struct api_vm_info *info)
{
	struct run_api *a = opaque;

	info->state = atomic_load(&a->vm->stopping) ? API_VM_SHUTDOWN :
		      vcpus_paused(a->vm)	    ? API_VM_PAUSED :
						      API_VM_RUNNING;
	info->cpus = a->vm->nr_vcpus;
	info->mem_bytes = a->vm->mem.ram_size;
	info->name = a->name;
	info->kernel = a->kernel;
	info->initramfs = a->initrd;
	info->cmdline = a->cmdline;
	info->pid = getpid();
	info->uptime_ms = (now_ns() - a->start_ns) / 1000000;
	pthread_mutex_lock(&a->devices_lock);
	if (a->balloon) {
		struct virtio_balloon_info b;

		virtio_balloon_info(a->balloon, &b, 0);
		info->balloon = 1;
		info->balloon_actual = b.actual;
	}
	pthread_mutex_unlock(&a->devices_lock);
}

/*
 * How long a counters read waits for the guest's fresh memory statistics; its driver answers
 * from a work queue, well within this. A paused guest cannot: it gets the last ones at once.
 */
#define BALLOON_STATS_WAIT_MS 100

/* The balloon's figures and the guest's statistics, in bytes (CH's BalloonStats names). */
static void balloon_counters(struct run_api *a, api_counter_fn emit, void *ctx)
{
	struct virtio_balloon_info b;

	pthread_mutex_lock(&a->devices_lock);
	if (!a->balloon) {
		pthread_mutex_unlock(&a->devices_lock);
		return;
	}
	virtio_balloon_info(a->balloon, &b, vcpus_paused(a->vm) ? 0 : BALLOON_STATS_WAIT_MS);
	pthread_mutex_unlock(&a->devices_lock);
	emit(ctx, "balloon", "target", b.target);
	emit(ctx, "balloon", "actual", b.actual);
	emit(ctx, "balloon", "inflated", b.inflated);
	emit(ctx, "balloon", "deflated", b.deflated);
	emit(ctx, "balloon", "returned", b.returned);
	emit(ctx, "balloon", "reported", b.reported);
	emit(ctx, "balloon", "bad_pfns", b.bad_pfns);
	for (unsigned int t = 0; t < VIRTIO_BALLOON_S_NR; t++)
		if (b.have & (1U << t))
			emit(ctx, "guest_memory", virtio_balloon_stat_name(t), b.stats[t]);
}

struct device_emit {
	api_counter_fn emit;
	void *ctx;
	const char *group;
};

static void device_emit(void *ctx, const char *name, uint64_t value)
{
	struct device_emit *d = ctx;

	d->emit(d->ctx, d->group, name, value);
}

/* Each device's own counters, grouped by type and index: disk0, disk1, net0. */
static void devices_counters(struct run_api *a, api_counter_fn emit, void *ctx)
{
	const struct device_list *l;

	pthread_mutex_lock(&a->devices_lock);
	l = a->devices;
	for (unsigned int i = 0; l && i < l->nr; i++) {
		const struct device_type *t = l->devs[i].type;
		struct device_emit d = { emit, ctx, NULL };
		unsigned int index = 0;
		char group[48];

		if (!t->counters || !l->devs[i].dev)
			continue;
		for (unsigned int j = 0; j < i; j++)
			index += l->devs[j].type == t;
		snprintf(group, sizeof(group), "%s%u", t->long_opt, index);
		d.group = group;
		t->counters(l->devs[i].dev, device_emit, &d);
	}
	pthread_mutex_unlock(&a->devices_lock);
}

void run_api_forget_devices(struct run_api *a)
{
	pthread_mutex_lock(&a->devices_lock);
	a->devices = NULL;
	a->balloon = NULL;
	pthread_mutex_unlock(&a->devices_lock);
}

/*
 * Each vCPU's exits by kind (the vCPU threads count them, read here without stopping them),
 * then each device's counters, then the balloon's figures.
 */
static void hook_counters(void *opaque, api_counter_fn emit, void *ctx)
{
	static const char *const kinds[VCPU_EXIT_KINDS] = { "io", "mmio", "other" };
	struct run_api *a = opaque;

	for (unsigned int i = 0; i < a->vm->nr_vcpus; i++) {
		char group[32];

		snprintf(group, sizeof(group), "vcpu%u", i);
		for (unsigned int k = 0; k < VCPU_EXIT_KINDS; k++)
			emit(ctx, group, kinds[k],
			     __atomic_load_n(&a->vm->vcpus[i].stats.exits[k], __ATOMIC_RELAXED));
	}
	devices_counters(a, emit, ctx);
	balloon_counters(a, emit, ctx);
}

static int hook_resize_balloon(void *opaque, uint64_t bytes)
{
	struct run_api *a = opaque;
	int err = -ENODEV;

	pthread_mutex_lock(&a->devices_lock);
	if (a->balloon)
		err = virtio_balloon_set_target(a->balloon, bytes);
	pthread_mutex_unlock(&a->devices_lock);
	return err;
}

/* Both run on the server's one thread, so a pause and a resume never overlap. */
static int hook_pause(void *opaque)
{
	struct run_api *a = opaque;
	int err = vcpus_pause(a->vm);

	if (err)
		return err;
	err = vm_clock_save(a->vm);
	a->clock_saved = !err;
	if (err)
		nkvm_err("pause: KVM_GET_CLOCK: %s (the guest's clock is left as it runs)",
			 strerror(-err));
	return 0;
}

static int hook_resume(void *opaque)
{
	struct run_api *a = opaque;
	int err;

	if (!vcpus_paused(a->vm))
		return -EALREADY;
	if (a->clock_saved) {
		err = vm_clock_restore(a->vm);
		if (err)
			nkvm_err("resume: KVM_SET_CLOCK: %s", strerror(-err));
		a->clock_saved = 0;
	}
	return vcpus_resume(a->vm);
}

/*
 * Ctrl-Alt-Del, which the guest's init turns into an orderly power-off (guest/init.c). A
 * paused guest would not read it, and it would fire at resume: refused instead.
 */
static int hook_power_button(void *opaque)
{
	struct run_api *a = opaque;
	int err;

	if (vcpus_paused(a->vm))
		return -EALREADY;
	err = i8042_ctrl_alt_del(a->i8042);
	if (err)
		nkvm_err("power button: cannot type Ctrl-Alt-Del: %s", strerror(-err));
	return err;
}

/* The ordinary stop path: vCPUs leave (also when parked), then every device is closed. */
static int hook_shutdown(void *opaque)
{
	struct run_api *a = opaque;

	vm_request_stop(a->vm, RUN_STATUS_SHUTDOWN);
	return 0;
}

/*
 * Registers as the vCPUs stopped: each one parked, its exit handled. A running VM is paused
 * around the reads (on this, the server's one thread, as pause and resume are) without saving
 * its clock: the pause lasts a few ioctls.
 */
static int hook_vcpu_regs(void *opaque, struct api_vcpu_regs *out, unsigned int max)
{
	struct run_api *a = opaque;
	bool paused_here = !vcpus_paused(a->vm);
	unsigned int n = 0;
	int err = 0;

	if (paused_here && (err = vcpus_pause(a->vm)) != 0)
		return err;
	for (unsigned int i = 0; i < a->vm->nr_vcpus && n < max && !err; i++, n++) {
		out[n].id = i;
		if (ioctl(a->vm->vcpus[i].fd, KVM_GET_REGS, &out[n].regs) < 0 ||
		    ioctl(a->vm->vcpus[i].fd, KVM_GET_SREGS, &out[n].sregs) < 0)
			err = -errno;
	}
	if (paused_here)
		vcpus_resume(a->vm);
	return err ? err : (int)n;
}

static int hook_sysrq(void *opaque, char key)
{
	struct run_api *a = opaque;

	if (vcpus_paused(a->vm))
		return -EALREADY;
	return i8042_sysrq(a->i8042, key);
}

/* The directory, and for root its parent /run where a minimal system lacks it. */
static int make_dir(const char *dir)
{
	char parent[sizeof(((struct run_api *)0)->path)];
	int err = api_sock_dir_make(dir);

	if (err != -ENOENT)
		return err;
	snprintf(parent, sizeof(parent), "%s", dir);
	if (mkdir(dirname(parent), 0755) < 0 && errno != EEXIST)
		return -errno;
	return api_sock_dir_make(dir);
}

/*
 * --user: the socket goes where the user's own nkvm looks, made and handed over by root now,
 * and root's directory gets a symlink to it, so that `nkvm list` and `nkvm stop` find the guest
 * whoever runs them.
 */
static int open_for_user(struct run_api *a, const struct privs_user *u, char *path, size_t len)
{
	char dir[sizeof(a->path)], rdir[sizeof(a->path)], link[sizeof(a->path)];
	int err = api_sock_dir_for(dir, sizeof(dir), u->uid);

	if (!err)
		err = api_sock_dir_make_for(dir, u->uid, u->gid);
	if (err) {
		nkvm_err("%s: cannot make the control socket's directory for --user: %s", dir,
			 err == -EPERM ? "another user owns it, or others may enter it" :
					 strerror(-err));
		return -1;
	}
	err = api_sock_dir(rdir, sizeof(rdir));
	if (!err)
		err = make_dir(rdir);
	if (!err)
		err = api_sock_path(link, sizeof(link), rdir, a->name);
	if (!err)
		err = api_sock_path(path, len, dir, a->name);
	if (!err)
		err = api_sock_link(link, path);
	if (err == -EADDRINUSE) {
		nkvm_err("--name %s: a guest of that name is running (%s)", a->name, link);
		return -1;
	}
	if (err) {
		nkvm_err("%s: cannot link root's directory to the control socket: %s", rdir,
			 strerror(-err));
		return -1;
	}
	memcpy(a->link, link, sizeof(link));
	err = api_sock_listen(path);
	if (err >= 0 && lchown(path, u->uid, u->gid) < 0) {
		close(err);
		unlink(path);
		err = -errno;
	}
	return err;
}

int run_api_open_as(struct run_api *a, const char *name, const struct privs_user *u)
{
	char dir[sizeof(a->path)], path[sizeof(a->path)] = "";
	int err;

	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->devices_lock, NULL);
	a->listen_fd = -1;
	a->start_ns = now_ns();
	if (name)
		snprintf(a->name, sizeof(a->name), "%s", name);
	else
		snprintf(a->name, sizeof(a->name), "nkvm-%d", (int)getpid());
	if (u) {
		err = open_for_user(a, u, path, sizeof(path));
		if (err == -1)
			return -1;
		goto bound;
	}
	err = api_sock_dir(dir, sizeof(dir));
	if (!err)
		err = make_dir(dir);
	if (err) {
		nkvm_err("%s: cannot make the control socket's directory: %s", dir,
			 err == -EPERM ? "it is not ours, or others may enter it" : strerror(-err));
		return -1;
	}
	err = api_sock_path(path, sizeof(path), dir, a->name);
	if (!err)
		err = api_sock_listen(path);
bound:
	if (err == -EADDRINUSE) {
		nkvm_err("--name %s: a guest of that name is running (%s)", a->name, path);
		return -1;
	}
	if (err < 0) {
		nkvm_err("%s: cannot make the control socket: %s", path[0] ? path : "(none)",
			 strerror(-err));
		return -1;
	}
	/* Only a socket of ours is removed at exit, never a live guest's. */
	a->listen_fd = err;
	memcpy(a->path, path, sizeof(path));
	/* Landlock: the socket is unlinked at exit, the console's made there with --detach. */
	snprintf(dir, sizeof(dir), "%s", path);
	err = landlock_allow(dirname(dir), LANDLOCK_SOCKETS);
	if (err) {
		nkvm_err("%s: cannot name it to Landlock: %s", path, strerror(-err));
		return -1;
	}
	return 0;
}

int run_api_open(struct run_api *a, const char *name)
{
	return run_api_open_as(a, name, NULL);
}

int run_api_start(struct run_api *a, struct vm *vm)
{
	int err;

	a->vm = vm;
	a->hooks = (struct api_hooks){
		.opaque = a,
		.info = hook_info,
		.counters = hook_counters,
		.pause = hook_pause,
		.resume = hook_resume,
		.resize_balloon = hook_resize_balloon,
		.power_button = hook_power_button,
		.shutdown = hook_shutdown,
		.vcpu_regs = hook_vcpu_regs,
		.sysrq = hook_sysrq,
	};
	err = api_server_start(&a->server, a->listen_fd, &a->hooks);
	a->listen_fd = -1; /* the server's now, or closed */
	if (err)
		nkvm_err("%s: cannot serve the control socket: %s", a->path, strerror(-err));
	return err;
}

/*
 * libmicrohttpd's thread confines itself at its first connection (api/server.c): one from us,
 * right after the release, so that it does not wait unconfined for a client.
 */
void run_api_confine(struct run_api *a)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!a->server)
		return;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	memcpy(sa.sun_path, a->path, sizeof(sa.sun_path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		/* Nothing to say: the thread then confines itself at a client's connection. */
	}
	close(fd);
}

void run_api_close(struct run_api *a)
{
	api_server_stop(a->server);
	a->server = NULL;
	if (a->listen_fd >= 0)
		close(a->listen_fd);
	a->listen_fd = -1;
	if (a->path[0])
		unlink(a->path);
	a->path[0] = 0;
	/* Root's link: gone only if root still runs this (else nkvm list/stop/run clear it). */
	if (a->link[0])
		unlink(a->link);
	a->link[0] = 0;
}
