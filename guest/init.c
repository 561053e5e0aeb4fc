// SPDX-License-Identifier: MIT
/*
 * The default guest's init, PID 1 of the initramfs that `nkvm setup` builds. It mounts the
 * usual filesystems, loads the modules nkvm's devices need, runs either the command that
 * `nkvm run` put in NKVM_CMD_FILE or an interactive shell, and then powers the VM off through
 * the exit port so that the command's exit status becomes nkvm's (see abi.h).
 *
 * In command mode it prints nothing unless something fails: the console is the command's.
 */
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
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "abi.h"

/* How the guest ends: the status of its command or shell, or what busybox asked PID 1 for. */
struct outcome {
	bool reboot;
	int status;
};

struct mount_point {
	const char *source, *dir, *type;
	unsigned long flags;
	const char *data;
};

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

static void load_module(const char *release, const char *rel)
{
	char path[PATH_MAX];
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
}

static void load_modules(void)
{
	char *list, *line, *save = NULL;
	struct utsname u;
	size_t len;

	if (read_file(NKVM_MODULES_FILE, &list, &len) < 0)
		return;
	if (uname(&u) < 0)
		fatal("uname: %s", strerror(errno));
	for (line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		load_module(u.release, line);
	free(list);
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

static _Noreturn void exec_command(char **argv)
{
	execvp(argv[0], argv);
	/* The statuses a shell uses for a command it found but could not run, or did not find. */
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

static _Noreturn void exec_shell(void)
{
	char *argv[] = { "-sh", NULL };
	int fd = open_shell_tty();

	if (fd >= 0) {
		ioctl(fd, TIOCSCTTY, 0);
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	execv("/bin/sh", argv);
	fprintf(stderr, "nkvm-init: /bin/sh: %s\n", strerror(errno));
	_exit(errno == EACCES ? 126 : 127);
}

/* The child gets a session of its own, so that ^C and job control reach it and not PID 1. */
static pid_t start(char **argv)
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
	if (!argv)
		exec_shell();
	/* Fails harmlessly when the console cannot be a controlling tty. */
	ioctl(STDIN_FILENO, TIOCSCTTY, 0);
	exec_command(argv);
}

static int exit_status(int st)
{
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
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
		case SIGCHLD:
			while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
				if (pid == child)
					return (struct outcome){ .status = exit_status(st) };
			}
			break;
		}
	}
}

int main(void)
{
	struct outcome end;
	sigset_t set;
	char **argv;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);

	mount_all();
	set_environment();
	load_modules();
	argv = read_command();
	end = wait_for(start(argv), &set);
	if (end.reboot)
		restart();
	power_off(end.status);
}
