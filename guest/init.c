// SPDX-License-Identifier: MIT
/*
 * The default guest's init, PID 1 of the initramfs that `nkvm setup` builds. It mounts the
 * usual filesystems, loads the modules nkvm's devices need, switches to a disk as the root
 * filesystem when the kernel command line has root=, or to a host directory (virtio-fs) that
 * NKVM_SHARES_FILE names, mounts the shares that file lists, sets up the NICs nkvm describes in
 * NKVM_NET_FILE, runs either the command that `nkvm run` put in NKVM_CMD_FILE or an interactive
 * shell, and then powers the VM off through the exit port so that the command's exit status
 * becomes nkvm's (see abi.h).
 *
 * In command mode it prints nothing unless something fails: the console is the command's.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/magic.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "abi.h"

/*
 * How the guest ends: the status of its command or shell, what busybox asked PID 1 for, or
 * Ctrl-Alt-Del from the monitor (nkvm stop), an orderly power-off.
 */
struct outcome {
	bool reboot, power_button;
	int status;
};

/* After Ctrl-Alt-Del: how long the guest's processes get between SIGTERM and SIGKILL. */
#define SHUTDOWN_GRACE_MS 3000

struct mount_point {
	const char *source, *dir, *type;
	unsigned long flags;
	const char *data;
};

/* What the kernel command line asks of us about the root filesystem. */
struct root_request {
	const char *dev; /* root=, NULL: stay in the initramfs */
	const char *fstypes; /* rootfstype=, comma-separated, NULL: root_fstypes */
	const char *data; /* rootflags=, options for the filesystem */
	bool rw; /* the last of "ro" and "rw"; read-only by default */
};

/*
 * Without rootfstype=, tried in turn, as the kernel tries each filesystem it has
 * (init/do_mounts.c); ext4 first, since that is what the guest's mkfs.ext4 makes.
 */
static const char *const root_fstypes[] = { "ext4", "ext2", "ext3", "vfat" };

/*
 * virtio_blk's probe usually creates the node while its module loads, but a disk may still be
 * on its way (or a partition being scanned): wait this long before saying it is not there.
 */
#define ROOT_WAIT_MS 5000
#define ROOT_POLL_MS 10

/* virtio_net registers its interfaces as it loads; allow for a late one all the same. */
#define NIC_WAIT_MS 5000

/* Where the disk is mounted before it becomes "/". */
#define NEW_ROOT "/newroot"

/* The mounts that follow us into the new root; /dev/pts and /dev/shm move with /dev. */
static const char *const moved_mounts[] = { "/dev", "/proc", "/sys", "/run", "/tmp" };

/* /dev comes first: the other mounts and the console need it. */
static const struct mount_point mount_points[] = {
	{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755" },
	{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
	{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
	{ "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666" },
	{ "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
	{ "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
	{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" },
};

static _Noreturn void power_off(int status)
{
	sync();
	/* Bytes still in the UART's transmit buffer would be lost when the monitor stops us. */
	tcdrain(STDOUT_FILENO);
	tcdrain(STDERR_FILENO);
	if (ioperm(NKVM_EXIT_PORT, 1, 1) == 0)
		outb(status & 0xff, NKVM_EXIT_PORT);
	/* A monitor without the exit port: an ordinary (ACPI) power-off, status lost. */
	reboot(RB_POWER_OFF);
	/* Unreachable for a privileged PID 1; exiting makes the kernel panic, panic=-1 resets. */
	_exit(status);
}

/* busybox `reboot`: with reboot=k the kernel resets through the i8042, a clean stop for nkvm. */
static _Noreturn void restart(void)
{
	sync();
	tcdrain(STDOUT_FILENO);
	reboot(RB_AUTOBOOT);
	power_off(1);
}

static _Noreturn __attribute__((format(printf, 1, 2))) void fatal(const char *fmt, ...)
{
	va_list ap;

	fputs("nkvm-init: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	power_off(1);
}

/*
 * The kernel gave us fds 0-2 on the initramfs's /dev/console node, if it has one. Reopen them on
 * devtmpfs's: that also covers a missing node, and lets ttyname() find the device.
 */
static void open_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/*
 * Every magic SysRq function, not only the distribution's safe few (0x1b6): only the host
 * can type them (nkvm debug --sysrq), on a keyboard nothing else uses.
 */
static void enable_sysrq(void)
{
	int fd = open("/proc/sys/kernel/sysrq", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, "1", 1) < 0)
		fprintf(stderr, "nkvm-init: /proc/sys/kernel/sysrq: %s\n", strerror(errno));
	close(fd);
}

static void mount_all(void)
{
	const struct mount_point *m;
	size_t i;

	for (i = 0; i < sizeof(mount_points) / sizeof(mount_points[0]); i++) {
		m = &mount_points[i];
		if (mkdir(m->dir, 0755) < 0 && errno != EEXIST)
			fatal("mkdir %s: %s", m->dir, strerror(errno));
		/* EBUSY: something (the kernel, an earlier init) mounted it already. */
		if (mount(m->source, m->dir, m->type, m->flags, m->data) < 0 && errno != EBUSY)
			fatal("mount %s on %s: %s", m->type, m->dir, strerror(errno));
		if (i == 0)
			open_console();
	}
}

/* Reads a whole file into a NUL-terminated buffer. Returns 0 or a negative errno. */
static int read_file(const char *path, char **out, size_t *out_len)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *nb;
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || !buf) {
		err = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	while ((n = read(fd, buf + len, cap - len - 1)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		len += n;
		if (cap - len < 2) {
			nb = realloc(buf, cap *= 2);
			if (!nb) {
				err = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

/* With NKVM_MODTIMES_PARAM: how long each load took, for bench/lean.sh. */
static bool modtimes;

/* Seconds since the kernel started: comparable with its printk times. */
static double boot_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void load_module(const char *release, const char *rel)
{
	char path[PATH_MAX];
	double t0 = modtimes ? boot_seconds() : 0;
	int fd, err = 0;

	if (snprintf(path, sizeof(path), "/lib/modules/%s/%s", release, rel) >= (int)sizeof(path)) {
		err = ENAMETOOLONG;
	} else {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			err = errno;
		else if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			err = errno;
		if (fd >= 0)
			close(fd);
	}
	/* One module missing costs only its device; the guest is still worth booting. */
	if (err)
		fprintf(stderr, "nkvm-init: cannot load %s: %s\n", rel, strerror(err));
	else if (modtimes)
		fprintf(stderr, "nkvm-init: module %s: %.0f us\n", rel,
			(boot_seconds() - t0) * 1e6);
}

/* The modules a list file names, one a line (abi.h). */
static void load_modules(const char *file)
{
	char *list, *line, *save = NULL;
	struct utsname u;
	size_t len;

	if (read_file(file, &list, &len) < 0)
		return;
	if (uname(&u) < 0)
		fatal("uname: %s", strerror(errno));
	for (line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		load_module(u.release, line);
	free(list);
}

/* The base archive's list, then those of the groups nkvm run appended, in name order. */
static void load_all_modules(void)
{
	char path[PATH_MAX];
	struct dirent **names;
	int n;

	load_modules(NKVM_MODULES_FILE);
	n = scandir(NKVM_MODULES_DIR, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' &&
		    snprintf(path, sizeof(path), "%s/%s", NKVM_MODULES_DIR, names[i]->d_name) <
			    (int)sizeof(path))
			load_modules(path);
		free(names[i]);
	}
	if (n >= 0)
		free(names);
}

/* Whether the kernel command line has word as a parameter of its own. */
static bool cmdline_has(const char *word)
{
	char *text, *p;
	size_t len, n = strlen(word);
	bool found = false;

	if (read_file("/proc/cmdline", &text, &len) < 0)
		return false;
	for (p = text; !found && (p = strstr(p, word)); p += n)
		found = (p == text || isspace((unsigned char)p[-1])) &&
			(!p[n] || isspace((unsigned char)p[n]));
	free(text);
	return found;
}

/*
 * The next parameter of a kernel command line, in place: split at spaces except inside double
 * quotes, which are dropped (the kernel's own rules, lib/cmdline.c next_arg()).
 */
static char *next_param(char **cursor)
{
	char *p = *cursor, *start, *out;
	bool quoted = false;

	p += strspn(p, " \t\n");
	if (!*p)
		return NULL;
	start = out = p;
	for (; *p && (quoted || !strchr(" \t\n", *p)); p++) {
		if (*p == '"')
			quoted = !quoted;
		else
			*out++ = *p;
	}
	if (*p)
		p++;
	*out = '\0';
	*cursor = p;
	return start;
}

/* Fills rq from /proc/cmdline, whose buffer it keeps (*cmdline, for the caller to free). */
static void read_root_request(struct root_request *rq, char **cmdline)
{
	char *cursor, *param;
	size_t len;

	memset(rq, 0, sizeof(*rq));
	*cmdline = NULL;
	if (read_file("/proc/cmdline", cmdline, &len) < 0)
		return;
	cursor = *cmdline;
	/* What follows "--" is init's arguments, not the kernel's parameters. */
	while ((param = next_param(&cursor)) && strcmp(param, "--")) {
		/* As in the kernel, a parameter given twice takes its last value. */
		if (!strncmp(param, "root=", 5))
			rq->dev = param[5] ? param + 5 : NULL;
		else if (!strncmp(param, "rootfstype=", 11))
			rq->fstypes = param[11] ? param + 11 : NULL;
		else if (!strncmp(param, "rootflags=", 10))
			rq->data = param + 10;
		else if (!strcmp(param, "ro"))
			rq->rw = false;
		else if (!strcmp(param, "rw"))
			rq->rw = true;
	}
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The guest's disks, "vda vdb", for the message that root= is none of them. */
static void list_block_devices(char *buf, size_t len)
{
	DIR *d = opendir("/sys/class/block");
	struct dirent *e;
	size_t n = 0;

	buf[0] = '\0';
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || !strncmp(e->d_name, "loop", 4) ||
		    !strncmp(e->d_name, "ram", 3))
			continue;
		if (n + strlen(e->d_name) + 2 > len)
			break;
		n += snprintf(buf + n, len - n, "%s%s", n ? " " : "", e->d_name);
	}
	if (d)
		closedir(d);
}

/* devtmpfs creates the node when the driver registers the disk: poll for it. */
static void wait_for_root(const char *dev)
{
	long deadline = now_ms() + ROOT_WAIT_MS;
	char disks[256];
	struct stat st;

	/* UUID=, PARTUUID=, LABEL= would need blkid's probing: not worth it for nkvm's disks. */
	if (strncmp(dev, "/dev/", 5))
		fatal("root=%s: only /dev/ paths are supported", dev);
	while (stat(dev, &st) < 0) {
		if (errno != ENOENT)
			fatal("root=%s: %s", dev, strerror(errno));
		if (now_ms() >= deadline) {
			list_block_devices(disks, sizeof(disks));
			fatal("root=%s: no such device after %d s (%s%s)", dev, ROOT_WAIT_MS / 1000,
			      disks[0] ? "the guest has " : "the guest has no disks",
			      disks[0] ? disks : "");
		}
		usleep(ROOT_POLL_MS * 1000);
	}
	if (!S_ISBLK(st.st_mode))
		fatal("root=%s: not a block device", dev);
}

/*
 * Tries each filesystem type until one takes the device, as the kernel does with root=:
 * EINVAL (not this filesystem) and ENODEV (no such driver) move on to the next. MS_SILENT
 * keeps the wrong guesses out of the console.
 */
static int mount_root_as(const struct root_request *rq, unsigned long flags)
{
	char types[256], *save = NULL, *t;
	size_t i;
	int err = EINVAL;

	if (rq->fstypes) {
		snprintf(types, sizeof(types), "%s", rq->fstypes);
		for (t = strtok_r(types, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (!mount(rq->dev, NEW_ROOT, t, flags, rq->data))
				return 0;
			/* A real failure says more than "not this type" from the others. */
			if (err == EINVAL || err == ENODEV)
				err = errno;
		}
		return err;
	}
	for (i = 0; i < sizeof(root_fstypes) / sizeof(root_fstypes[0]); i++) {
		if (!mount(rq->dev, NEW_ROOT, root_fstypes[i], flags, rq->data))
			return 0;
		if (err == EINVAL || err == ENODEV)
			err = errno;
	}
	return err;
}

static bool device_read_only(const char *dev)
{
	int fd = open(dev, O_RDONLY | O_CLOEXEC), ro = 0;

	if (fd < 0)
		return false;
	if (ioctl(fd, BLKROGET, &ro) < 0)
		ro = 0;
	close(fd);
	return ro;
}

static void mount_root(const struct root_request *rq)
{
	unsigned long flags = MS_SILENT | (rq->rw ? 0 : MS_RDONLY);
	char tried[256] = "";
	size_t i, n = 0;
	int err;

	if (mkdir(NEW_ROOT, 0755) < 0 && errno != EEXIST)
		fatal("mkdir %s: %s", NEW_ROOT, strerror(errno));
	/*
	 * A read-only disk asked for rw: the kernel mounts it read-only then, and so do we. Asking
	 * first keeps a "Can't open blockdev" per filesystem type off the console.
	 */
	if (rq->rw && device_read_only(rq->dev)) {
		fprintf(stderr, "nkvm-init: root=%s: the disk is read-only, so is the mount\n",
			rq->dev);
		flags |= MS_RDONLY;
	}
	err = mount_root_as(rq, flags);
	if (!err)
		return;
	if (rq->fstypes) {
		snprintf(tried, sizeof(tried), "%s", rq->fstypes);
	} else {
		for (i = 0; i < sizeof(root_fstypes) / sizeof(root_fstypes[0]); i++)
			n += snprintf(tried + n, sizeof(tried) - n, "%s%s", i ? "," : "",
				      root_fstypes[i]);
	}
	fatal("root=%s: cannot mount it (tried %s): %s", rq->dev, tried,
	      err == EINVAL ? "no such filesystem on it, or bad rootflags=" : strerror(err));
}

/*
 * rm -rf of the initramfs, which would otherwise keep its RAM for the rest of the boot. It
 * stays on the initramfs's own device: the new root and the moved mounts are on others.
 */
static void delete_tree(int dirfd, dev_t dev)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *e;
	struct stat st;
	int fd;

	if (!d) {
		close(dirfd);
		return;
	}
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
			continue;
		if (S_ISDIR(st.st_mode)) {
			fd = openat(dirfd, e->d_name,
				    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0)
				delete_tree(fd, dev);
			unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dirfd, e->d_name, 0);
		}
	}
	closedir(d);
}

static void delete_initramfs(void)
{
	struct statfs sfs;
	struct stat st;
	int fd;

	/* Never anything but the initramfs: a ramfs or tmpfs root, not the new one. */
	if (statfs("/", &sfs) < 0 || (sfs.f_type != RAMFS_MAGIC && sfs.f_type != TMPFS_MAGIC))
		return;
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return;
	}
	delete_tree(fd, st.st_dev);
}

/*
 * switch_root(8): the pseudo filesystems move into the new root's tree, which then moves onto
 * "/" and becomes our root. A root without one of their directories loses that mount. what
 * names the root in messages: "root=/dev/vda", "--root".
 */
static void switch_root(const char *what)
{
	char dir[PATH_MAX];
	size_t i;

	for (i = 0; i < sizeof(moved_mounts) / sizeof(moved_mounts[0]); i++) {
		snprintf(dir, sizeof(dir), "%s%s", NEW_ROOT, moved_mounts[i]);
		if (!mount(moved_mounts[i], dir, NULL, MS_MOVE, NULL))
			continue;
		/* Commands expect /dev, /proc and /sys; /run and /tmp are only conveniences. */
		if (i < 3)
			fprintf(stderr, "nkvm-init: %s: no %s there (%s), so none\n", what,
				moved_mounts[i], strerror(errno));
		umount2(moved_mounts[i], MNT_DETACH);
	}
	if (chdir(NEW_ROOT) < 0)
		fatal("%s: chdir %s: %s", what, NEW_ROOT, strerror(errno));
	delete_initramfs();
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		fatal("%s: moving it onto /: %s", what, strerror(errno));
	if (chroot(".") < 0)
		fatal("%s: chroot: %s", what, strerror(errno));
	if (chdir("/") < 0)
		fatal("%s: chdir /: %s", what, strerror(errno));
}

/* One line of NKVM_SHARES_FILE: "TAG GUESTPATH ro|rw". */
struct share {
	const char *tag, *at;
	bool ro;
};

/* Splits the file's text, in place, into shares; returns how many, or -1 for a bad line. */
static int parse_shares(char *text, struct share *out, int max)
{
	char *line, *save = NULL, *fsave, *f[3];
	int n = 0;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		fsave = NULL;
		for (int i = 0; i < 3; i++)
			f[i] = strtok_r(i ? NULL : line, " \t", &fsave);
		if (!f[2] || f[1][0] != '/' || (strcmp(f[2], "ro") && strcmp(f[2], "rw")) ||
		    n == max) {
			fprintf(stderr, "nkvm-init: %s: bad line '%s'\n", NKVM_SHARES_FILE, line);
			return -1;
		}
		out[n++] = (struct share){ f[0], f[1], !strcmp(f[2], "ro") };
	}
	return n;
}

/* mkdir -p: the guest path of a share, which need not exist yet. */
static int make_dirs(const char *path)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		if (!c)
			return 0;
		*p = c;
	}
}

/* `mount -t virtiofs TAG DIR`; the command counts on it, so a share that fails ends the boot. */
static void mount_share(const struct share *s, const char *dir)
{
	int err = make_dirs(dir);

	if (err)
		fatal("share %s: mkdir %s: %s", s->tag, dir, strerror(-err));
	if (mount(s->tag, dir, "virtiofs", MS_NODEV | (s->ro ? MS_RDONLY : 0), NULL) < 0)
		fatal("share %s: mount -t virtiofs on %s: %s", s->tag, dir, strerror(errno));
}

/*
 * Before power-off: no process may still hold a file open for writing, then the remount
 * writes everything back and marks the filesystem clean, so that the disk needs no journal
 * replay or fsck next time. A failure leaves what sync() wrote, which is all the data.
 */
static void release_root(void)
{
	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	sync();
	mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
}

/* Reaps children until none is left or deadline_ms (CLOCK_MONOTONIC) passes. */
static void reap_until(long deadline_ms)
{
	while (waitpid(-1, NULL, WNOHANG) >= 0 || errno == EINTR) {
		if (now_ms() >= deadline_ms)
			return;
		usleep(20 * 1000);
	}
}

/*
 * The disks' filesystems the command mounted, last mounted first, so that nothing waits in
 * the page cache and each is marked clean. "/" is release_root's; /proc/mounts is read whole
 * before the first umount changes it.
 */
static void unmount_disks(void)
{
	char *text, *line, *save = NULL, *lines[64];
	size_t len, n = 0;

	if (read_file("/proc/mounts", &text, &len) < 0)
		return;
	for (line = strtok_r(text, "\n", &save); line && n < 64; line = strtok_r(NULL, "\n", &save))
		lines[n++] = line;
	while (n--) {
		char src[256], dir[256];

		if (sscanf(lines[n], "%255s %255s", src, dir) != 2 || strncmp(src, "/dev/", 5) ||
		    !strcmp(dir, "/"))
			continue;
		if (umount(dir) < 0)
			fprintf(stderr, "nkvm-init: umount %s: %s\n", dir, strerror(errno));
	}
	free(text);
}

/*
 * Ctrl-Alt-Del (nkvm stop): every process gets SIGTERM and a moment to finish, then SIGKILL;
 * the disks are unmounted (written back and marked clean), and the guest powers off, status 0.
 */
static void orderly_shutdown(void)
{
	fprintf(stderr, "nkvm-init: power button: stopping processes\n");
	kill(-1, SIGTERM);
	reap_until(now_ms() + SHUTDOWN_GRACE_MS);
	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	sync();
	unmount_disks();
	fprintf(stderr,
		"nkvm-init: power button: filesystems synced and unmounted, powering off\n");
}

static void set_environment(void)
{
	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/root", 1);
	setenv("TERM", "linux", 1);
	/* Only the shell prompt shows it: not worth failing for. */
	sethostname("nkvm", 4);
	/* Where a login shell starts. Without /root, "/" (where the kernel started us) will do. */
	if (chdir("/root") < 0)
		return;
}

/* One line of NKVM_NET_FILE: "MAC ADDRESS/PREFIX GATEWAY DNS", "-" for none. */
struct nic {
	const char *mac;
	struct in_addr addr, gateway, dns; /* s_addr 0: none */
	unsigned int prefix;
};

static int parse_nic(char *line, struct nic *n)
{
	char *save = NULL, *f[4], *slash;
	unsigned long prefix;
	int i;

	memset(n, 0, sizeof(*n));
	for (i = 0; i < 4; i++) {
		f[i] = strtok_r(i ? NULL : line, " \t", &save);
		if (!f[i])
			return -EINVAL;
	}
	n->mac = f[0];
	if (strcmp(f[1], "-")) {
		slash = strchr(f[1], '/');
		if (!slash)
			return -EINVAL;
		*slash = '\0';
		prefix = strtoul(slash + 1, NULL, 10);
		if (inet_pton(AF_INET, f[1], &n->addr) != 1 || prefix > 32)
			return -EINVAL;
		n->prefix = prefix;
	}
	if (strcmp(f[2], "-") && inet_pton(AF_INET, f[2], &n->gateway) != 1)
		return -EINVAL;
	if (strcmp(f[3], "-") && inet_pton(AF_INET, f[3], &n->dns) != 1)
		return -EINVAL;
	return 0;
}

/* The interface whose address is mac, in ifname; polls up to NIC_WAIT_MS for it to appear. */
static int find_nic(const char *mac, char ifname[IFNAMSIZ])
{
	long deadline = now_ms() + NIC_WAIT_MS;
	char path[PATH_MAX], *addr;
	struct dirent *e;
	size_t len;
	DIR *d;

	for (;;) {
		d = opendir("/sys/class/net");
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.' || strlen(e->d_name) >= IFNAMSIZ)
				continue;
			snprintf(path, sizeof(path), "/sys/class/net/%s/address", e->d_name);
			if (read_file(path, &addr, &len) < 0)
				continue;
			/* The kernel prints "52:4b:...\n" in lower case. */
			if (len >= 17 && !strncasecmp(addr, mac, 17) && strlen(mac) == 17) {
				strcpy(ifname, e->d_name);
				free(addr);
				closedir(d);
				return 0;
			}
			free(addr);
		}
		if (d)
			closedir(d);
		if (now_ms() >= deadline)
			return -ENODEV;
		usleep(ROOT_POLL_MS * 1000);
	}
}

static int if_up(int sock, const char *ifname)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP;
	return ioctl(sock, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static int if_set_addr(int sock, const char *ifname, struct in_addr addr, unsigned int prefix)
{
	struct ifreq ifr = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	sin->sin_family = AF_INET;
	sin->sin_addr = addr;
	if (ioctl(sock, SIOCSIFADDR, &ifr) < 0)
		return -errno;
	sin->sin_addr.s_addr = htonl(prefix ? ~0u << (32 - prefix) : 0);
	return ioctl(sock, SIOCSIFNETMASK, &ifr) < 0 ? -errno : 0;
}

static int route_add_default(int sock, struct in_addr gateway)
{
	struct rtentry rt = { 0 };
	struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst;
	struct sockaddr_in *mask = (struct sockaddr_in *)&rt.rt_genmask;
	struct sockaddr_in *gw = (struct sockaddr_in *)&rt.rt_gateway;

	dst->sin_family = mask->sin_family = gw->sin_family = AF_INET;
	gw->sin_addr = gateway;
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	return ioctl(sock, SIOCADDRT, &rt) < 0 ? -errno : 0;
}

/* One NIC: its address, up, and the default route through its gateway if none is set yet. */
static void nic_setup(int sock, const struct nic *n, bool *have_route, FILE **resolv,
		      bool in_initramfs)
{
	char ifname[IFNAMSIZ];
	const char *what = NULL;
	int err;

	err = find_nic(n->mac, ifname);
	if (err) {
		fprintf(stderr, "nkvm-init: no interface has MAC %s after %d s\n", n->mac,
			NIC_WAIT_MS / 1000);
		return;
	}
	if (n->addr.s_addr) {
		what = "setting its address";
		err = if_set_addr(sock, ifname, n->addr, n->prefix);
	}
	if (!err) {
		what = "bringing it up";
		err = if_up(sock, ifname);
	}
	if (!err && n->gateway.s_addr && !*have_route) {
		what = "adding the default route";
		err = route_add_default(sock, n->gateway);
		*have_route = !err;
	}
	if (err) {
		fprintf(stderr, "nkvm-init: %s (%s): %s: %s\n", ifname, n->mac, what,
			strerror(-err));
		return;
	}
	if (!n->dns.s_addr || !in_initramfs)
		return;
	if (!*resolv)
		*resolv = fopen("/etc/resolv.conf", "we");
	if (*resolv)
		fprintf(*resolv, "nameserver %s\n", inet_ntoa(n->dns));
	else
		fprintf(stderr, "nkvm-init: /etc/resolv.conf: %s\n", strerror(errno));
}

/*
 * lo up, then each NIC of NKVM_NET_FILE (text, NULL: none) as it says. /etc/resolv.conf only in
 * the initramfs: a root= disk's /etc is its owner's to configure.
 */
static void net_setup(char *text, bool in_initramfs)
{
	char *line, *save = NULL;
	bool have_route = false;
	FILE *resolv = NULL;
	struct nic n;
	int sock, err;

	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		fprintf(stderr, "nkvm-init: socket: %s\n", strerror(errno));
		return;
	}
	err = if_up(sock, "lo");
	if (err)
		fprintf(stderr, "nkvm-init: lo: bringing it up: %s\n", strerror(-err));
	for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (parse_nic(line, &n)) {
			fprintf(stderr, "nkvm-init: %s: bad line '%s'\n", NKVM_NET_FILE, line);
			continue;
		}
		nic_setup(sock, &n, &have_route, &resolv, in_initramfs);
	}
	if (resolv)
		fclose(resolv);
	close(sock);
}

/*
 * NKVM_CMD_FILE holds argv, each argument NUL-terminated. Returns a NULL-terminated argv whose
 * strings point into one buffer, NULL when the file does not exist (interactive mode).
 */
static char **read_command(void)
{
	size_t len, argc = 0, i;
	char **argv, *buf, *p;
	int err;

	err = read_file(NKVM_CMD_FILE, &buf, &len);
	if (err == -ENOENT)
		return NULL;
	if (err)
		fatal("%s: %s", NKVM_CMD_FILE, strerror(-err));
	/* read_file's terminating NUL also ends a last argument written without one. */
	for (i = 0; i < len; i++)
		argc += buf[i] == '\0' || i == len - 1;
	if (!argc)
		fatal("%s is empty", NKVM_CMD_FILE);
	argv = calloc(argc + 1, sizeof(*argv));
	if (!argv)
		fatal("%s", strerror(ENOMEM));
	for (p = buf, i = 0; i < argc; i++, p += strlen(p) + 1)
		argv[i] = p;
	return argv;
}

/* root: the root we switched to ("root=/dev/vda", "--root"), NULL in the initramfs. */
static _Noreturn void exec_command(char **argv, const char *root)
{
	execvp(argv[0], argv);
	/* The statuses a shell uses for a command it found but could not run, or did not find. */
	if (errno == ENOENT && root)
		fprintf(stderr, "nkvm-init: %s: not found in %s\n", argv[0], root);
	else
		fprintf(stderr, "nkvm-init: %s: %s\n", argv[0], strerror(errno));
	_exit(errno == EACCES ? 126 : 127);
}

/*
 * /dev/console can never be acquired as a controlling tty by open(2), so job control needs the
 * device behind it: the last name in /sys/class/tty/console/active (the kernel lists the
 * preferred console last), else ttyS0.
 */
static int open_shell_tty(void)
{
	char path[64] = "/dev/ttyS0", *active, *name;
	size_t len;
	int fd;

	if (read_file("/sys/class/tty/console/active", &active, &len) == 0) {
		while (len && (active[len - 1] == '\n' || active[len - 1] == ' '))
			active[--len] = '\0';
		name = strrchr(active, ' ');
		name = name ? name + 1 : active;
		if (*name)
			snprintf(path, sizeof(path), "/dev/%s", name);
		free(active);
	}
	fd = open(path, O_RDWR);
	if (fd < 0)
		fd = open("/dev/console", O_RDWR);
	return fd;
}

/* The shell's terminal becomes the session's controlling tty and its stdin, stdout, stderr. */
static void take_shell_tty(void)
{
	int fd = open_shell_tty();

	if (fd < 0)
		return;
	ioctl(fd, TIOCSCTTY, 0);
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

static _Noreturn void exec_shell(void)
{
	char *argv[] = { "-sh", NULL };

	execv("/bin/sh", argv);
	fprintf(stderr, "nkvm-init: /bin/sh: %s\n", strerror(errno));
	_exit(errno == EACCES ? 126 : 127);
}

static int exit_status(int st)
{
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/*
 * When a session leader exits, the kernel hangs up its controlling tty, and a hangup throws away
 * what still waits in the UART's transmit buffer: the last line a command printed could be lost
 * on a slow host. So the session leader is this small process, not the command: it waits for
 * the command, drains the terminal, and only then exits with the command's status. It ignores
 * the job-control signals (^C is for the command) and SIGTTOU, which tcdrain from a background
 * process group would otherwise raise once a shell has taken the terminal's foreground.
 */
static void lead_session(void)
{
	static const int ignored[] = { SIGINT, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGHUP };
	sigset_t none;
	pid_t pid;
	int st;

	pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid == 0)
		return;
	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
		signal(ignored[i], SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			_exit(1);
	while (tcdrain(STDOUT_FILENO) < 0 && errno == EINTR)
		;
	while (tcdrain(STDERR_FILENO) < 0 && errno == EINTR)
		;
	_exit(exit_status(st));
}

/* The child gets a session of its own, so that ^C and job control reach it and not PID 1. */
static pid_t start(char **argv, const char *root)
{
	sigset_t none;
	pid_t pid = fork();

	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	if (argv) {
		/* Fails harmlessly when the console cannot be a controlling tty. */
		ioctl(STDIN_FILENO, TIOCSCTTY, 0);
	} else {
		take_shell_tty();
	}
	lead_session();
	if (!argv)
		exec_shell();
	exec_command(argv, root);
}

/*
 * The signals stay blocked and are taken synchronously here, so no handler runs at an awkward
 * moment. PID 1 must reap every orphan that the kernel reparents to it, not only its child.
 * busybox halt, poweroff and reboot (without -f) signal PID 1 with SIGUSR1, SIGUSR2, SIGTERM.
 */
static struct outcome wait_for(pid_t child, const sigset_t *set)
{
	siginfo_t si;
	pid_t pid;
	int st;

	for (;;) {
		if (sigwaitinfo(set, &si) < 0)
			continue;
		switch (si.si_signo) {
		case SIGUSR1:
		case SIGUSR2:
			return (struct outcome){ .reboot = false, .status = 0 };
		case SIGTERM:
			return (struct outcome){ .reboot = true };
		case SIGINT: /* Ctrl-Alt-Del, with reboot(RB_DISABLE_CAD) in effect */
			return (struct outcome){ .power_button = true };
		case SIGCHLD:
			while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
				if (pid == child)
					return (struct outcome){ .status = exit_status(st) };
			}
			break;
		}
	}
}

/* The shares NKVM_SHARES_FILE may list: nkvm run's --root and up to 8 --share. */
#define MAX_SHARES 16

int main(void)
{
	struct share shares[MAX_SHARES];
	char **argv, *cmdline, *share_text, root_what[PATH_MAX + 8] = "";
	const char *root = NULL;
	struct root_request rq;
	struct outcome end;
	char *nics;
	bool fs_root = false;
	int nshares = 0;
	sigset_t set;
	size_t len;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* Ctrl-Alt-Del becomes SIGINT to us, not an immediate reboot (kernel/reboot.c). */
	reboot(RB_DISABLE_CAD);

	mount_all();
	enable_sysrq();
	set_environment();
	modtimes = cmdline_has(NKVM_MODTIMES_PARAM);
	if (modtimes)
		fprintf(stderr, "nkvm-init: started at %.6f s\n", boot_seconds());
	/* Only the groups of the devices this machine has are here (initrd_groups.h). */
	load_all_modules();
	if (modtimes)
		fprintf(stderr, "nkvm-init: modules loaded at %.6f s\n", boot_seconds());
	/* Like the command, a file of the initramfs, which a switch of root leaves behind. */
	if (read_file(NKVM_NET_FILE, &nics, &len) < 0)
		nics = NULL;
	if (read_file(NKVM_SHARES_FILE, &share_text, &len) < 0)
		share_text = NULL;
	if (share_text) {
		nshares = parse_shares(share_text, shares, MAX_SHARES);
		if (nshares < 0)
			fatal("%s: cannot use it", NKVM_SHARES_FILE);
	}
	argv = read_command();
	read_root_request(&rq, &cmdline);
	/* nkvm run --root: a host directory is the root (its line comes first), before any root=. */
	fs_root = nshares && !strcmp(shares[0].at, "/");
	if (fs_root) {
		snprintf(root_what, sizeof(root_what), "--root (tag %s)", shares[0].tag);
		root = root_what;
		if (mkdir(NEW_ROOT, 0755) < 0 && errno != EEXIST)
			fatal("mkdir %s: %s", NEW_ROOT, strerror(errno));
		mount_share(&shares[0], NEW_ROOT);
		switch_root(root);
	} else if (rq.dev) {
		snprintf(root_what, sizeof(root_what), "root=%s", rq.dev);
		root = root_what;
		wait_for_root(rq.dev);
		mount_root(&rq);
		switch_root(root);
	}
	for (int i = fs_root ? 1 : 0; i < nshares; i++)
		mount_share(&shares[i], shares[i].at);
	if (root) {
		/* Where a login shell starts, as in the initramfs. */
		if (chdir("/root") < 0 && chdir("/") < 0)
			fatal("chdir /: %s", strerror(errno));
	}
	/* /etc/resolv.conf only in the initramfs: another root's /etc is its owner's. */
	net_setup(nics, !root);
	free(nics);
	/* A host directory as root without a command boots as that system would: its own init. */
	if (fs_root && !argv && access("/sbin/init", X_OK) == 0) {
		char *init_argv[] = { "/sbin/init", NULL };

		sigprocmask(SIG_UNBLOCK, &set, NULL);
		execv(init_argv[0], init_argv);
		fprintf(stderr, "nkvm-init: /sbin/init: %s; a shell instead\n", strerror(errno));
		sigprocmask(SIG_BLOCK, &set, NULL);
	}
	end = wait_for(start(argv, root), &set);
	if (end.power_button)
		orderly_shutdown();
	if (root)
		release_root();
	free(share_text);
	free(cmdline);
	if (end.reboot)
		restart();
	power_off(end.status);
}
