// SPDX-License-Identifier: MIT
/* `nkvm run`: build the machine, boot the kernel, run until the guest stops. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vhost.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/i8042.h"
#include "arch/x86/pvh.h"
#include "cmd/cmd.h"
#include "cmd/initrd_groups.h"
#include "cmd/run_api.h"
#include "cmd/run_dev_fs.h"
#include "cmd/run_console.h"
#include "cmd/run_dev_net.h"
#include "cmd/run_devices.h"
#include "cmd/run_options.h"
#include "guest/abi.h"
#include "hw/debug_exit.h"
#include "hw/pci.h"
#include "hw/serial.h"
#include "lib/cpio.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "lib/util.h"
#include "sandbox/landlock.h"
#include "sandbox/privs.h"
#include "sandbox/sandbox.h"
#include "vmm/console.h"
#include "vmm/irq.h"
#include "vmm/kvm_stats.h"
#include "vmm/loop.h"
#include "vmm/term.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/*
 * Always on the command line: the console on the UART, reboot through the i8042 (which ends
 * nkvm), no reboot loop after a panic, and an i8042 probe that asks only what nkvm emulates.
 * i8042.nopnp: the FADT's boot flags say there is no 8042, which Linux believes unless PNP
 * detection is off; its keyboard carries nkvm's Ctrl-Alt-Del (nkvm stop) and SysRq.
 */
#define RUN_BASE_CMDLINE "reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd i8042.nopnp quiet"
/* The UART is a console from the start; devices may add theirs after it (console=hvc0). */
#define RUN_CONSOLE_SERIAL "console=ttyS0"

struct machine {
	struct vm vm;
	struct serial uart;
	struct i8042 i8042;
	struct acpi_pm acpi_pm;
	struct pci_bus pci;
	struct irq_routing irq;
	struct device_context devctx;
	struct device_list devices; /* what -d, --rng... made, destroyed in reverse at exit */
	struct loop loop;
	struct console console;
	struct loop_source signals;
	struct run_api api; /* the control socket */
	/* --detach: the console's ring and socket, and the pipe that tells the parent "started". */
	bool detached;
	struct run_console detached_console;
	int ready_fd;
	const struct privs_user *user; /* --user: whom nkvm becomes once set-up is done; or NULL */
	const char *user_arg;
};

struct boot_files {
	int kernel_fd, initrd_fd;
	uint8_t kernel_hdr[BZIMAGE_HEADER_MAX]; /* the setup part; the rest is read into RAM */
	uint64_t kernel_len, initrd_len;
	size_t hdr_len;
	struct cpio extra; /* the command for the guest's init, appended to the initrd */
	struct initrd_group_files groups; /* the devices' module groups, appended before extra */
	char cmdline[BOOT_CMDLINE_MAX];
	char kernel_path[4096], initrd_path[4096];
	bool pvh; /* an ELF vmlinux, booted through PVH; else a bzImage */
	struct elf_kernel elf;
};

static int host_ram_check(uint64_t mem, const char *arg)
{
	struct sysinfo si;
	uint64_t total;

	if (sysinfo(&si) < 0)
		return 0;
	total = (uint64_t)si.totalram * si.mem_unit;
	if (mem > total) {
		nkvm_err("-m %s: more than this host's memory (%llu MiB)", arg,
			 (unsigned long long)(total >> 20));
		return -1;
	}
	return 0;
}

static int resolve_guest_paths(const struct run_options *o, struct boot_files *f)
{
	if (o->kernel) {
		snprintf(f->kernel_path, sizeof(f->kernel_path), "%s", o->kernel);
		if (o->initrd)
			snprintf(f->initrd_path, sizeof(f->initrd_path), "%s", o->initrd);
		return 0;
	}
	if (nkvm_cache_path(f->kernel_path, sizeof(f->kernel_path), NKVM_GUEST_KERNEL) ||
	    nkvm_cache_path(f->initrd_path, sizeof(f->initrd_path), NKVM_GUEST_INITRD)) {
		nkvm_err("cannot find the default guest: set HOME or XDG_CACHE_HOME");
		return -1;
	}
	if (access(f->kernel_path, R_OK) || access(f->initrd_path, R_OK)) {
		nkvm_err("no default guest in %s: run `nkvm setup` first (or pass -k)",
			 f->kernel_path);
		return -1;
	}
	if (o->initrd)
		snprintf(f->initrd_path, sizeof(f->initrd_path), "%s", o->initrd);
	return 0;
}

/*
 * The guest's command, its NICs' set-up and the shares it mounts go in a tiny cpio archive, so
 * no argument is limited or mangled. None when there is none of them.
 */
static int build_extra_archive(const struct run_options *o, struct cpio *c)
{
	char *argv_blob = NULL, *net = NULL, *shares = NULL, *p;
	size_t len = 0, net_len = 0, shares_len = 0;
	int err;

	err = run_net_guest_file(o, &net, &net_len);
	if (!err)
		err = run_fs_guest_file(o, &shares, &shares_len);
	if (err || (!o->cmd && !net && !shares)) {
		free(net);
		return err;
	}
	for (char **a = o->cmd; a && *a; a++)
		len += strlen(*a) + 1;
	argv_blob = malloc(len ? len : 1);
	if (!argv_blob) {
		free(net);
		free(shares);
		return -ENOMEM;
	}
	p = argv_blob;
	for (char **a = o->cmd; a && *a; a++)
		p = stpcpy(p, *a) + 1;
	err = cpio_add_dir(c, "etc", 0755);
	if (!err)
		err = cpio_add_dir(c, "etc/nkvm", 0755);
	if (!err && o->cmd)
		err = cpio_add_file(c, NKVM_CMD_FILE, 0644, argv_blob, len);
	if (!err && net)
		err = cpio_add_file(c, NKVM_NET_FILE, 0644, net, net_len);
	if (!err && shares)
		err = cpio_add_file(c, NKVM_SHARES_FILE, 0644, shares, shares_len);
	if (!err)
		err = cpio_finish(c);
	free(argv_blob);
	free(net);
	free(shares);
	return err;
}

/* Opens a regular file for reading; its size in *size. Returns fd or a negative errno. */
static int open_input(const char *path, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int err = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;

		close(fd);
		return err;
	}
	*size = st.st_size;
	return fd;
}

/* The UART console, what the devices need (console=hvc0), nkvm's own parameters, then -p. */
static int build_cmdline(const struct run_options *o, char *buf, size_t len)
{
	size_t at = snprintf(buf, len, "%s", RUN_CONSOLE_SERIAL);

	for (unsigned int i = 0; i < o->nr_devices && at < len; i++) {
		const struct run_device *d = &o->devices[i];
		const char *p = d->type->cmdline ? d->type->cmdline(d->cfg) : NULL;

		if (p)
			at += snprintf(buf + at, len - at, " %s", p);
	}
	if (at < len)
		at += snprintf(buf + at, len - at, " %s%s%s", RUN_BASE_CMDLINE,
			       o->params ? " " : "", o->params ? o->params : "");
	return at < len ? 0 : -ENAMETOOLONG;
}

static int load_boot_files(const struct run_options *o, struct boot_files *f)
{
	size_t want;
	int err;

	if (resolve_guest_paths(o, f))
		return -1;
	f->kernel_fd = open_input(f->kernel_path, &f->kernel_len);
	if (f->kernel_fd < 0) {
		nkvm_err("%s: cannot read kernel: %s", f->kernel_path, strerror(-f->kernel_fd));
		return -1;
	}
	want = f->kernel_len < sizeof(f->kernel_hdr) ? f->kernel_len : sizeof(f->kernel_hdr);
	err = pread_full(f->kernel_fd, f->kernel_hdr, want, 0);
	if (err) {
		nkvm_err("%s: cannot read kernel: %s", f->kernel_path, strerror(-err));
		return -1;
	}
	f->hdr_len = want;
	if (f->initrd_path[0]) {
		f->initrd_fd = open_input(f->initrd_path, &f->initrd_len);
		if (f->initrd_fd < 0) {
			nkvm_err("%s: cannot read initrd: %s", f->initrd_path,
				 strerror(-f->initrd_fd));
			return -1;
		}
	}
	if (build_extra_archive(o, &f->extra)) {
		nkvm_err("out of memory building the guest's command");
		return -1;
	}
	if (build_cmdline(o, f->cmdline, sizeof(f->cmdline))) {
		nkvm_err("-p: kernel command line too long");
		return -1;
	}
	return 0;
}

static void free_boot_files(struct boot_files *f)
{
	if (f->kernel_fd >= 0)
		close(f->kernel_fd);
	if (f->initrd_fd >= 0)
		close(f->initrd_fd);
	f->kernel_fd = f->initrd_fd = -1;
	cpio_free(&f->extra);
	initrd_groups_close(&f->groups);
}

static int create_devices(struct machine *m, const struct run_options *o)
{
	char why[4352];
	int err;

	err = irq_routing_init(&m->irq, &m->vm);
	if (!err)
		err = serial_init(&m->uart, &m->vm, SERIAL_COM1_PORT, SERIAL_COM1_IRQ);
	if (!err)
		err = i8042_init(&m->i8042, &m->vm);
	if (!err)
		err = debug_exit_init(&m->vm);
	if (!err)
		err = acpi_pm_init(&m->acpi_pm, &m->vm);
	if (!err)
		err = pci_init(&m->pci, &m->vm);
	if (err) {
		nkvm_err("cannot create devices: %s", strerror(-err));
		return err;
	}
	m->devctx = (struct device_context){
		.vm = &m->vm,
		.pci = &m->pci,
		.irq = &m->irq,
		.cpus = o->cpus,
		.name = o->name,
		.engine = o->engine,
		.out_fd = STDOUT_FILENO,
		.user = m->user,
	};
	err = devices_create(&m->devices, &m->devctx, o->devices, o->nr_devices, why, sizeof(why));
	if (err)
		nkvm_err("%s", why);
	return err;
}

/*
 * The initrd, then the archives of the module groups the devices made need (found beside the
 * kernel: initrd_groups.h; none without an initrd), then ours; archives must start 4-byte
 * aligned, so the initrd is padded (the groups' lengths are multiples of 4).
 */
static int initrd_parts(struct machine *m, struct boot_files *f, struct boot_blob *parts)
{
	static const uint8_t zeros[4];
	const struct initrd_group *want[INITRD_GROUPS_MAX];
	char why[PATH_MAX + 128];
	unsigned int n = 0;
	size_t i, pad;

	if (f->initrd_fd >= 0 &&
	    initrd_groups_open(f->kernel_path, want,
			       initrd_groups_select(&m->devices, want, INITRD_GROUPS_MAX),
			       &f->groups, why, sizeof(why))) {
		nkvm_err("%s", why);
		return -1;
	}
	parts[n++] = (struct boot_blob){ NULL, f->initrd_len, f->initrd_fd };
	pad = ALIGN_UP(f->initrd_len, 4) - f->initrd_len;
	if (f->groups.n || f->extra.len)
		parts[n++] = (struct boot_blob){ zeros, pad, -1 };
	for (i = 0; i < f->groups.n; i++)
		parts[n++] = (struct boot_blob){ NULL, f->groups.lens[i], f->groups.fds[i] };
	parts[n++] = (struct boot_blob){ f->extra.buf, f->extra.len, -1 };
	return n;
}

static int load_guest(struct machine *m, const struct bzimage *k, struct boot_files *f)
{
	struct boot_blob parts[3 + INITRD_GROUPS_MAX];
	uint8_t *acpi = guest_ptr(&m->vm.mem, BOOT_ACPI_ADDR, BOOT_ACPI_SIZE);
	int nr_parts = initrd_parts(m, f, parts);
	char why[128];
	int err;

	if (nr_parts < 0)
		return -1;

	if (!acpi || acpi_build_tables(acpi, BOOT_ACPI_SIZE, BOOT_ACPI_ADDR, m->vm.nr_vcpus) < 0 ||
	    cpu_write_boot_tables(&m->vm.mem)) {
		nkvm_err("cannot write ACPI tables or boot page tables");
		return -1;
	}
	if (f->pvh) {
		struct elf_source src = { .fd = f->kernel_fd, .size = f->kernel_len };

		err = pvh_load(&m->vm.mem, &f->elf, &src, f->cmdline, parts, nr_parts,
			       BOOT_ACPI_ADDR, why, sizeof(why));
	} else {
		err = boot_load(&m->vm.mem, k, f->cmdline, parts, nr_parts, BOOT_ACPI_ADDR, why,
				sizeof(why));
	}
	if (err) {
		nkvm_err("%s: %s", f->kernel_path, why);
		return -1;
	}
	return 0;
}

static int create_vcpus(struct machine *m, const struct boot_files *f)
{
	struct vm *vm = &m->vm;
	struct kvm_cpuid2 *cpuid = cpu_supported_cpuid(vm->kvm_fd);
	char why[64] = "KVM_GET_SUPPORTED_CPUID";
	int err = cpuid ? 0 : -errno;

	vm->vcpus = calloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus && !err)
		err = -ENOMEM;
	for (unsigned int i = 0; i < vm->nr_vcpus && !err; i++) {
		snprintf(why, sizeof(why), "KVM_CREATE_VCPU");
		err = vcpu_create(vm, &vm->vcpus[i], i);
		if (!err)
			err = cpu_init_vcpu(&vm->vcpus[i], cpuid, vm->nr_vcpus, why, sizeof(why));
	}
	if (!err && f->pvh)
		err = cpu_set_pvh_boot_state(&vm->vcpus[0], f->elf.pvh_entry, PVH_INFO_ADDR, why,
					     sizeof(why));
	else if (!err)
		err = cpu_set_boot_state(&vm->vcpus[0], BOOT_KERNEL_ENTRY64, BOOT_PARAMS_ADDR, why,
					 sizeof(why));
	free(cpuid);
	if (err)
		nkvm_err("cannot set up vCPUs: %s: %s", why, strerror(-err));
	return err;
}

static void on_signal(struct loop_source *src, uint32_t events)
{
	struct machine *m = src->opaque;
	struct signalfd_siginfo si;

	if (read(src->fd, &si, sizeof(si)) != sizeof(si))
		return;
	vm_request_stop(&m->vm, 128 + si.ssi_signo);
}

static void on_stop(struct loop_source *src, uint32_t events)
{
	/* Nothing to do: loop_run sees vm->stopping and returns. */
}

/* The state of each vCPU that stopped on a triple fault, read once its thread has ended. */
static void report_triple_faults(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];
		char state[256];

		if (vcpu->run->exit_reason == KVM_EXIT_SHUTDOWN &&
		    !cpu_describe_state(vcpu, state, sizeof(state)))
			nkvm_err("vcpu %u: %s", vcpu->id, state);
	}
}

/*
 * --detach, before the VM exists (KVM's fds do not survive a fork): the parent waits on a pipe
 * and exits as soon as the child, in a session of its own, says the guest is about to start
 * (status 0, printing the name) or ends first (the child's status; it printed why on the
 * terminal). Returns in the child, with *ready_fd for detach_ready; -errno when fork failed.
 */
static int detach(const char *name, int *ready_fd)
{
	int p[2], st = 0, null;
	ssize_t n;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid == 0) {
		close(p[0]);
		setsid();
		*ready_fd = p[1];
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			close(null);
		}
		return 0;
	}
	close(p[1]);
	while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
		;
	if (n == 1) {
		printf("%s\n", name);
		fflush(stdout);
		_exit(0);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

/* The child's guest starts: the parent may go; nkvm's own messages go nowhere from now on. */
static void detach_ready(int *ready_fd)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null >= 0) {
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		close(null);
	}
	if (*ready_fd >= 0 && write(*ready_fd, "R", 1) < 0) {
		/* The parent is gone: nobody to tell. */
	}
	if (*ready_fd >= 0)
		close(*ready_fd);
	*ready_fd = -1;
}

/* A detached guest's console: a ring and DIR/NAME.console instead of stdin and stdout. */
static int open_detached_console(struct machine *m)
{
	char path[sizeof(m->api.path)];
	int err = run_console_path(path, sizeof(path), m->api.path);

	if (!err)
		err = run_console_open(&m->detached_console, path, &m->console, &m->loop);
	/* --user: nkvm console, run by that user, connects to it, and nkvm unlinks it at exit. */
	if (!err && m->user && lchown(path, m->user->uid, m->user->gid) < 0)
		err = -errno;
	if (err)
		nkvm_err("%s: cannot make the console socket: %s", path, strerror(-err));
	return err;
}

/*
 * Before any thread confines itself (sandbox_release): --user's drop, now that all that needed
 * root is open (/dev/kvm, TAPs, /dev/vhost-*, the sockets handed to the user), then the
 * Landlock ruleset from the paths set-up named (landlock_allow). Says why it failed.
 */
static int drop_and_restrict(struct machine *m)
{
	char why[160];
	int err;

	if (m->user) {
		err = privs_drop(m->user, why, sizeof(why));
		if (err) {
			nkvm_err("--user %s: cannot drop privileges: %s", m->user_arg, why);
			return -1;
		}
	}
	if (!sandbox_enabled())
		return 0;
	err = landlock_prepare();
	if (err == -EOPNOTSUPP) {
		nkvm_err("sandbox: this kernel has no Landlock (Linux 5.13+, in lsm=): files stay "
			 "reachable as the user's");
		return 0;
	}
	if (err) {
		nkvm_err("sandbox: cannot build the Landlock ruleset: %s", strerror(-err));
		return -1;
	}
	return 0;
}

/*
 * The main thread once the guest runs: its loop (epoll, signals, the console on stdin/stdout or
 * the detached console's socket), then the end: the vCPUs stopped (their kick signal), the
 * terminal restored, every device destroyed (threads joined, a disk's metadata written back and
 * synced, files closed, sockets unlinked), the statistics, and the process's exit.
 */
static const struct sandbox_rule main_rules[] = {
	SANDBOX_ALLOW(epoll_wait),
	SANDBOX_ALLOW(epoll_ctl),
	SANDBOX_ALLOW(read),
	SANDBOX_ALLOW(write),
	SANDBOX_ALLOW(accept4), /* nkvm console, when detached */
	SANDBOX_ALLOW(sendto),
	SANDBOX_ALLOW(close),
	SANDBOX_ALLOW(shutdown),
	SANDBOX_ALLOW(unlink),
	SANDBOX_ALLOW(clock_gettime),
	SANDBOX_ALLOW(getpid), /* pthread_kill */
	SANDBOX_ALLOW(tgkill),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_IRQ_LINE), /* input for the UART (or virtio-console) */
	SANDBOX_ALLOW_ARG(ioctl, 1, TCGETS), /* term_restore: glibc's tcsetattr reads first */
	SANDBOX_ALLOW_ARG(ioctl, 1, TCSETSF),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_GET_REGS), /* a vCPU's state after a triple fault */
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_GET_SREGS),
	SANDBOX_ALLOW_ARG(ioctl, 1,
			  VHOST_NET_SET_BACKEND), /* vhost-net's rings let go, at the end */
	SANDBOX_ALLOW(pread64), /* a disk's metadata, at its close */
	SANDBOX_ALLOW(pwrite64),
	SANDBOX_ALLOW(pwritev),
	SANDBOX_ALLOW(ftruncate),
	SANDBOX_ALLOW(fallocate),
	SANDBOX_ALLOW(fdatasync),
	SANDBOX_ALLOW(fsync),
	SANDBOX_ALLOW(io_destroy),
	SANDBOX_ALLOW(getrusage), /* NKVM_STATS */
	SANDBOX_ALLOW(mincore),
	SANDBOX_ALLOW_ARG(ioctl, 1, KVM_GET_STATS_FD), /* NKVM_STATS: KVM's own exit counts */
	SANDBOX_ALLOW_THREAD_BASICS,
};

const struct sandbox_filter main_filter = {
	.thread = "main",
	.rules = main_rules,
	.nr_rules = ARRAY_SIZE(main_rules),
};

static int run_machine(struct machine *m)
{
	struct loop_source stop_src = { .fd = m->vm.stop_fd, .fn = on_stop, .opaque = m };
	sigset_t sigs;
	int err;

	/* Termination signals arrive through the loop; every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGQUIT);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sigdelset(&sigs, SIGUSR1);
	signal(SIGPIPE, SIG_IGN);
	m->signals = (struct loop_source){ .fd = signalfd(-1, &sigs, SFD_CLOEXEC),
					   .fn = on_signal,
					   .opaque = m };
	err = loop_init(&m->loop);
	if (!err && m->signals.fd < 0)
		err = -errno;
	if (!err)
		err = loop_add(&m->loop, &m->signals, EPOLLIN);
	if (!err)
		err = loop_add(&m->loop, &stop_src, EPOLLIN);
	if (!err)
		err = console_init(&m->console, &m->vm, &m->uart, &m->loop,
				   m->detached ? -1 : STDIN_FILENO, STDOUT_FILENO);
	if (err) {
		nkvm_err("cannot set up the main loop: %s", strerror(-err));
		return 1;
	}
	if (m->devctx.console_input)
		console_set_input(&m->console, m->devctx.console_input,
				  m->devctx.console_input_opaque);
	/* The server's thread inherits the mask: signals stay with the loop. */
	m->api.i8042 = &m->i8042;
	m->api.devices = &m->devices;
	if (run_api_start(&m->api, &m->vm))
		return 1;
	if (m->detached && open_detached_console(m))
		return 1;
	/* While the terminal still hears us (--detach lets the parent go next). */
	if (drop_and_restrict(m))
		return 1;
	if (m->detached)
		detach_ready(&m->ready_fd);
	else if (!term_raw(STDIN_FILENO))
		sandbox_set_kill_hook(term_restore); /* a kill leaves the terminal as it found it */
	err = vcpus_start(&m->vm);
	/*
	 * Every thread is made (they wait in sandbox_enter); --user's privilege drop and
	 * landlock_prepare came before (drop_and_restrict: glibc's setuid reaches every thread,
	 * which their filters would forbid). Now the threads confine themselves, and so does this
	 * one.
	 */
	sandbox_release();
	run_api_confine(&m->api);
	if (err) {
		nkvm_err("cannot start vCPU threads: %s", strerror(-err));
		vm_request_stop(&m->vm, 1);
	} else if ((err = sandbox_enter(&main_filter))) {
		nkvm_err("sandbox: the main thread cannot confine itself: %s", strerror(-err));
		vm_request_stop(&m->vm, 1);
	} else {
#ifdef NKVM_TEST_HOOKS
		if (sandbox_test_hook("main", "forbidden"))
			sandbox_test_forbidden_call();
#endif
		loop_run(&m->loop, &m->vm.stopping);
	}
	vcpus_stop(&m->vm);
	report_triple_faults(&m->vm);
	console_flush(&m->console);
	run_console_close(&m->detached_console);
	/*
	 * The guest is stopped: destroy every device, last made first. Each waits for its requests
	 * in flight; a disk's close makes formats that keep metadata in memory (qcow2's tables and
	 * refcounts) write it back, as a guest's last FLUSH would.
	 */
	run_api_forget_devices(&m->api);
	devices_destroy(&m->devices);
	term_restore();
	return m->vm.exit_status;
}

/*
 * All vCPUs' exits by kind, and the mean time nkvm took to dispatch one of each kind; then by
 * reason, port and page.
 */
static void report_exits(const struct vm *vm)
{
	static const char *const names[VCPU_EXIT_KINDS] = { "io", "mmio", "other" };
	uint64_t n[VCPU_EXIT_KINDS] = { 0 }, ns[VCPU_EXIT_KINDS] = { 0 };
	struct exit_stats *by = calloc(1, sizeof(*by));

	for (unsigned int i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
		if (by)
			exit_stats_add(by, &vm->vcpus[i].stats.by);
		for (unsigned int k = 0; k < VCPU_EXIT_KINDS; k++) {
			n[k] += vm->vcpus[i].stats.exits[k];
			ns[k] += vm->vcpus[i].stats.dispatch_ns[k];
		}
	}
	fprintf(stderr, "nkvm: exits:");
	for (unsigned int k = 0; k < VCPU_EXIT_KINDS; k++)
		fprintf(stderr, " %s=%llu %s_ns=%llu", names[k], (unsigned long long)n[k], names[k],
			(unsigned long long)(n[k] ? ns[k] / n[k] : 0));
	fputc('\n', stderr);
	if (by)
		exit_stats_print(stderr, by);
	free(by);
	kvm_stats_print(stderr, vm);
}

/*
 * With NKVM_STATS set, one line on stderr at exit for benchmarks: the monitor's peak RSS, and
 * at exit its private (anonymous) resident memory less the guest RAM the guest touched
 * (resident pages of the RAM mapping, itself anonymous): the monitor's own overhead, per VM;
 * beside it the file-backed and shared part of the RSS, nkvm's binary and its ~40 shared
 * libraries (about 9 MiB, shared with every other process mapping them). Peak RSS less RAM at
 * exit is no measure: the balloon's free page reporting hands back RAM the guest had touched,
 * which the peak still counts (46 MiB of "overhead" in a 256 MiB guest). And when the boot vCPU
 * first entered the guest (wall clock, µs since the epoch).
 */
/*
 * /proc/self/status for report_stats, opened before the sandbox (Landlock and the main thread's
 * filter allow no opening once the guest runs).
 */
static int stats_status_fd = -1;

static void report_stats(const struct vm *vm)
{
	long page = sysconf(_SC_PAGESIZE), kib = page / 1024;
	size_t pages = vm->mem.ram_size / page, resident = 0;
	long anon = 0, file = 0, shmem = 0, v;
	unsigned char *vec;
	struct rusage ru;
	char text[4096];
	ssize_t n;

	if (!getenv("NKVM_STATS") || getrusage(RUSAGE_SELF, &ru) < 0)
		return;
	vec = malloc(pages ? pages : 1);
	if (vec && mincore(vm->mem.base, vm->mem.ram_size, vec) == 0)
		for (size_t i = 0; i < pages; i++)
			resident += vec[i] & 1;
	free(vec);
	/* proc(5): RssAnon, RssFile and RssShmem in /proc/self/status, in kB. */
	n = stats_status_fd < 0 ? -1 : pread(stats_status_fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	for (char *line = text; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (sscanf(line, "RssAnon: %ld", &v) == 1)
			anon = v;
		else if (sscanf(line, "RssFile: %ld", &v) == 1)
			file = v;
		else if (sscanf(line, "RssShmem: %ld", &v) == 1)
			shmem = v;
	}
	fprintf(stderr,
		"nkvm: stats: peak_rss_kib=%ld guest_resident_kib=%zu overhead_kib=%ld "
		"shared_kib=%ld entry_epoch_us=%llu\n",
		ru.ru_maxrss, resident * kib, anon - (long)(resident * kib), file + shmem,
		(unsigned long long)(vm->vcpus ? vm->vcpus[0].stats.entry_epoch_ns / 1000 : 0));
	report_exits(vm);
}

static int check_vcpus(struct vm *vm, const struct run_options *o)
{
	unsigned int max = vm_max_vcpus(vm->kvm_fd);

	if (o->cpus > max) {
		nkvm_err("-c %u: KVM on this host allows at most %u vCPUs", o->cpus, max);
		return -1;
	}
	return 0;
}

static int boot(const struct run_options *o)
{
	struct boot_files *f = calloc(1, sizeof(*f));
	struct machine *m = calloc(1, sizeof(*m));
	const char *unusable;
	char why[128];
	struct bzimage k = { .fd = -1 };
	int status = 1, err;

	if (!f || !m)
		die("out of memory");
	f->kernel_fd = f->initrd_fd = -1;
	m->ready_fd = -1;
	err = sandbox_init(o->sandbox);
	if (err) {
		nkvm_err("sandbox: cannot install the SIGSYS handler: %s", strerror(-err));
		goto out;
	}
	if (o->sandbox == SANDBOX_OFF)
		nkvm_err(
			"sandbox: off (--sandbox=off): no thread has a seccomp filter or Landlock");
	m->user = o->user_arg ? &o->user : NULL;
	m->user_arg = o->user_arg;
	if (run_api_open_as(&m->api, o->name, m->user) || host_ram_check(o->mem, o->mem_arg) ||
	    load_boot_files(o, f))
		goto out;
	f->pvh = elf_is_elf(f->kernel_hdr, f->hdr_len);
	if (f->pvh) {
		struct elf_source src = { .fd = f->kernel_fd, .size = f->kernel_len };

		err = elf_parse_kernel(&src, &f->elf, why, sizeof(why));
	} else {
		err = bzimage_parse(f->kernel_hdr, f->hdr_len, f->kernel_len, &k, why, sizeof(why));
	}
	if (err) {
		nkvm_err("%s: not a bootable kernel: %s", f->kernel_path, why);
		goto out;
	}
	k.fd = f->kernel_fd;
	unusable = getenv("NKVM_ALLOW_PVM") ? NULL : kvm_host_unusable();
	if (unusable) {
		nkvm_err("%s", unusable);
		goto out;
	}
	m->detached = o->detach;
	if (m->detached) {
		err = detach(m->api.name, &m->ready_fd);
		if (err) {
			nkvm_err("--detach: cannot fork: %s", strerror(-err));
			goto out;
		}
	}
	err = vm_create(&m->vm, o->mem, o->cpus, why, sizeof(why));
	m->vm.keep_stats = getenv("NKVM_STATS") != NULL;
	if (err) {
		nkvm_err("cannot create the VM: %s: %s", why, strerror(-err));
		goto out;
	}
	if (check_vcpus(&m->vm, o) || create_devices(m, o) || load_guest(m, &k, f) ||
	    create_vcpus(m, f))
		goto out;
	free_boot_files(f);
	m->api.kernel = f->kernel_path;
	m->api.initrd = f->initrd_path[0] ? f->initrd_path : NULL;
	m->api.cmdline = f->cmdline;
	m->api.balloon = m->devctx.balloon;
	if (getenv("NKVM_STATS"))
		stats_status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	status = run_machine(m);
	report_stats(&m->vm);
out:
	/* Threads made before a failure wait in sandbox_enter: let them go, so they can end. */
	sandbox_release();
	/* Also after SIGTERM, which the loop turns into an ordinary stop. */
	run_api_close(&m->api);
	/* Devices made before a failure: their files closed as at a normal exit. */
	devices_destroy(&m->devices);
	free_boot_files(f);
	free(f);
	/* The process exits next; the kernel reclaims the VM, its vCPUs and RAM at once. */
	return status;
}

int cmd_run(int argc, char **argv)
{
	struct run_options o;
	char err[256];
	int status;

	if (run_parse_options(argc, argv, &o, err, sizeof(err))) {
		nkvm_err("%s", err);
		run_options_free(&o);
		return 2;
	}
	if (o.help) {
		run_usage(stdout);
		run_options_free(&o);
		return 0;
	}
	/* Dropping needs root; an ordinary user has nothing to drop. */
	if (o.user_arg && geteuid() != 0) {
		nkvm_err("--user %s: only root can change to another user (nkvm runs as uid %u)",
			 o.user_arg, (unsigned int)geteuid());
		run_options_free(&o);
		return 2;
	}
	status = boot(&o);
	run_options_free(&o);
	return status;
}
