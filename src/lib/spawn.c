// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/spawn.h"

/* Reads fd to its end into a malloc'd, NUL-terminated buffer. */
static int read_all(int fd, char **out, size_t *out_len)
{
	size_t len = 0, cap = 0;
	char *buf = NULL, *nb;
	ssize_t n;

	for (;;) {
		if (cap - len < 2) {
			cap = cap ? cap * 2 : 65536;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			n = -errno;
			free(buf);
			return n;
		}
		if (n == 0)
			break;
		len += n;
	}
	buf[len] = '\0';
	*out = buf;
	if (out_len)
		*out_len = len;
	return 0;
}

static int wait_status(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/* Both pipe ends are close-on-exec: the child keeps only the copy dup'ed onto its stdout. */
static int spawn_start(pid_t *pid, char *const argv[], const char *cwd, int out_fd)
{
	posix_spawn_file_actions_t fa;
	int ret;

	ret = posix_spawn_file_actions_init(&fa);
	if (ret)
		return -ret;
	if (cwd)
		ret = posix_spawn_file_actions_addchdir_np(&fa, cwd);
	if (!ret && out_fd >= 0)
		ret = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
	if (!ret)
		ret = posix_spawnp(pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	return -ret;
}

int spawn_run(char *const argv[], const char *cwd, char **out, size_t *out_len)
{
	int fds[2] = { -1, -1 };
	pid_t pid;
	int ret, status;

	if (out && pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	ret = spawn_start(&pid, argv, cwd, fds[1]);
	if (fds[1] >= 0)
		close(fds[1]);
	if (ret) {
		if (fds[0] >= 0)
			close(fds[0]);
		return ret;
	}
	if (out) {
		ret = read_all(fds[0], out, out_len);
		close(fds[0]);
	}
	status = wait_status(pid);
	if (ret || status) {
		if (out && !ret)
			free(*out);
		if (out)
			*out = NULL;
		return ret ? ret : status;
	}
	return 0;
}
