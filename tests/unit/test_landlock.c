// SPDX-License-Identifier: MIT
/*
 * Landlock on this machine's kernel: each test confines a forked child (a Landlock domain can
 * never be left) and checks from inside what it may still reach. The child reports the first
 * check that failed on stderr and exits 1; it leaves with _exit, so that nothing at exit (the
 * leak checker reading /proc) runs under the domain.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/landlock.h"
#include "tests/unit/fixture.h"

struct fx {
	char dir[256];
	char in[300]; /* the directory a rule allows */
	char out[300]; /* a directory beside it that no rule names */
};

static const char *in_path(const struct fx *f, const char *name)
{
	static char buf[4][400];
	static unsigned int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", f->in, name);
	return p;
}

static const char *out_path(const struct fx *f, const char *name)
{
	static char buf[4][400];
	static unsigned int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", f->out, name);
	return p;
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(fx_dir_make(f->dir, sizeof(f->dir), NULL, "landlock"), 0);
	snprintf(f->in, sizeof(f->in), "%s/in", f->dir);
	snprintf(f->out, sizeof(f->out), "%s/out", f->dir);
	fx_sh(f->dir, "mkdir in out && echo inside >in/f && echo outside >out/g");
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	fx_sh(f->dir, "rm -rf '%s'", f->dir);
	free(f);
	return 0;
}

/* In the child: reports the check and ends the child with status 1. */
#define CHECK(cond)                                                                          \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: %s (errno %s)\n", __FILE__, __LINE__, #cond, \
				strerror(errno));                                            \
			_exit(1);                                                            \
		}                                                                            \
	} while (0)

/* open(2)'s result as 0 or -errno, the descriptor closed. */
static int try_open(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

/* The child's part: rules, the ruleset, the domain (with no_new_privs, as sandbox_enter). */
static void confine(const char *path, enum landlock_access access)
{
	if (path)
		CHECK(landlock_allow(path, access) == 0);
	CHECK(landlock_prepare() == 0);
	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	CHECK(landlock_enter() == 0);
}

/* Runs fn(f) in a child and fails the test unless every check in it held. */
static void in_child(const struct fx *f, void (*fn)(const struct fx *))
{
	int st = 0;
	pid_t pid;

	if (landlock_abi() == 0)
		skip(); /* this kernel has no Landlock: test_landlock_noabi covers that case */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn(f);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void read_rule(const struct fx *f)
{
	confine(f->in, LANDLOCK_READ);
	CHECK(try_open(in_path(f, "f"), O_RDONLY) == 0);
	CHECK(try_open(f->in, O_RDONLY | O_DIRECTORY) == 0);
	CHECK(try_open(in_path(f, "f"), O_WRONLY) == -EACCES);
	CHECK(try_open(in_path(f, "new"), O_WRONLY | O_CREAT) == -EACCES);
	CHECK(try_open(out_path(f, "g"), O_RDONLY) == -EACCES);
	CHECK(try_open(f->out, O_RDONLY | O_DIRECTORY) == -EACCES);
	CHECK(try_open("/etc/hostname", O_RDONLY) == -EACCES);
}

static void test_read_rule_opens_inside_only_and_writes_nothing(void **state)
{
	in_child(*state, read_rule);
}

static void read_write_rule(const struct fx *f)
{
	confine(f->in, LANDLOCK_READ_WRITE);
	CHECK(try_open(in_path(f, "f"), O_RDWR) == 0);
	CHECK(try_open(in_path(f, "f"), O_WRONLY | O_TRUNC) == 0);
	CHECK(try_open(in_path(f, "new"), O_WRONLY | O_CREAT) == -EACCES);
	CHECK(unlink(in_path(f, "f")) < 0 && errno == EACCES);
	CHECK(try_open(out_path(f, "g"), O_RDWR) == -EACCES);
}

static void test_read_write_rule_writes_files_but_makes_or_removes_none(void **state)
{
	in_child(*state, read_write_rule);
}

static void tree_rule(const struct fx *f)
{
	int fd;

	confine(f->in, LANDLOCK_TREE);
	CHECK(mkdir(in_path(f, "d"), 0755) == 0);
	fd = open(in_path(f, "d/x"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, "x", 1) == 1);
	CHECK(ftruncate(fd, 0) == 0);
	close(fd);
	/* Between directories: Landlock's REFER right (ABI 2), as a guest's mv across them. */
	CHECK(rename(in_path(f, "d/x"), in_path(f, "y")) == 0);
	CHECK(link(in_path(f, "y"), in_path(f, "d/z")) == 0);
	CHECK(symlink("y", in_path(f, "s")) == 0);
	CHECK(unlink(in_path(f, "y")) == 0);
	CHECK(unlink(in_path(f, "d/z")) == 0);
	CHECK(unlink(in_path(f, "s")) == 0);
	CHECK(rmdir(in_path(f, "d")) == 0);
	CHECK(mkfifo(in_path(f, "p"), 0600) == 0);
	/* Never a device node, even as root (CAP_MKNOD): the server refuses them to guests. */
	CHECK(mknod(in_path(f, "null"), S_IFCHR | 0600, makedev(1, 3)) < 0 && errno == EACCES);
	/* Nothing leaves the tree, nor comes into it (EACCES: out/ lacks MAKE_REG, not only REFER). */
	CHECK(rename(in_path(f, "f"), out_path(f, "f")) < 0 && errno == EACCES);
	CHECK(try_open(out_path(f, "new"), O_WRONLY | O_CREAT) == -EACCES);
	CHECK(mkdir(out_path(f, "d"), 0755) < 0 && errno == EACCES);
}

static void test_tree_rule_creates_renames_links_and_removes_inside_only(void **state)
{
	in_child(*state, tree_rule);
}

static int bind_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), err = 0;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		err = -errno;
	close(fd);
	return err;
}

static void sockets_rule(const struct fx *f)
{
	confine(f->in, LANDLOCK_SOCKETS);
	CHECK(bind_unix(in_path(f, "s")) >= 0);
	CHECK(unlink(in_path(f, "s")) == 0);
	CHECK(try_open(in_path(f, "f"), O_RDONLY) == -EACCES);
	CHECK(try_open(in_path(f, "new"), O_WRONLY | O_CREAT) == -EACCES);
	CHECK(bind_unix(out_path(f, "s")) == -EACCES);
}

static void test_sockets_rule_binds_and_unlinks_sockets_and_opens_nothing(void **state)
{
	in_child(*state, sockets_rule);
}

/*
 * vsock's socket=PATH connects to PATH_PORT when the guest connects: Landlock (up to this
 * kernel's ABI) governs the socket's creation, not a connection to a socket that exists, so that
 * directory needs no rule for it.
 */
static void connect_outside(const struct fx *f)
{
	int l = bind_unix(out_path(f, "listener"));

	CHECK(l >= 0);
	confine(f->in, LANDLOCK_READ);
	CHECK(connect_unix(out_path(f, "listener")) == 0);
	close(l);
}

static void test_connect_to_a_socket_outside_the_rules_still_works(void **state)
{
	in_child(*state, connect_outside);
}

/* The FUSE server reopens its O_PATH descriptors through /proc/self/fd: the file's path counts. */
static void proc_reopen(const struct fx *f)
{
	int in = open(in_path(f, "f"), O_PATH | O_CLOEXEC);
	int out = open(out_path(f, "g"), O_PATH | O_CLOEXEC);
	char p[64];

	CHECK(in >= 0 && out >= 0);
	confine(f->in, LANDLOCK_READ);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", in);
	CHECK(try_open(p, O_RDONLY) == 0);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", out);
	CHECK(try_open(p, O_RDONLY) == -EACCES);
}

static void test_reopen_through_proc_self_fd_follows_the_files_rules(void **state)
{
	in_child(*state, proc_reopen);
}

/* What was open before the domain stays usable: the disk images, /dev/kvm, the TAP. */
static void open_before(const struct fx *f)
{
	int fd = open(out_path(f, "g"), O_RDWR | O_CLOEXEC);

	CHECK(fd >= 0);
	confine(NULL, LANDLOCK_READ);
	CHECK(pwrite(fd, "again\n", 6, 0) == 6);
	CHECK(try_open(out_path(f, "g"), O_RDONLY) == -EACCES);
	close(fd);
}

static void test_descriptors_opened_before_stay_usable(void **state)
{
	in_child(*state, open_before);
}

/* The rule holds the directory as it was at landlock_allow: a later rename does not move it. */
static void renamed_after_allow(const struct fx *f)
{
	char moved[400];

	snprintf(moved, sizeof(moved), "%s/moved", f->dir);
	CHECK(landlock_allow(f->in, LANDLOCK_READ) == 0);
	CHECK(rename(f->in, moved) == 0);
	CHECK(rename(f->out, f->in) == 0); /* the path now names the other directory */
	confine(NULL, LANDLOCK_READ);
	CHECK(try_open(in_path(f, "g"), O_RDONLY) == -EACCES);
	snprintf(moved + strlen(moved), sizeof(moved) - strlen(moved), "/f");
	CHECK(try_open(moved, O_RDONLY) == 0);
}

static void test_rule_follows_the_directory_opened_at_allow_not_its_name(void **state)
{
	in_child(*state, renamed_after_allow);
}

/* A file's rule grants only file rights (the kernel refuses directory rights on a file). */
static void file_rule(const struct fx *f)
{
	confine(in_path(f, "f"), LANDLOCK_TREE);
	CHECK(try_open(in_path(f, "f"), O_RDWR) == 0);
	CHECK(try_open(in_path(f, "other"), O_WRONLY | O_CREAT) == -EACCES);
}

static void test_rule_on_a_file_allows_that_file(void **state)
{
	in_child(*state, file_rule);
}

static void no_ruleset(const struct fx *f)
{
	CHECK(landlock_enter() == 0);
	CHECK(try_open(out_path(f, "g"), O_RDWR) == 0);
}

static void test_enter_without_prepare_confines_nothing(void **state)
{
	in_child(*state, no_ruleset);
}

static void test_allow_of_a_missing_path_fails_with_enoent(void **state)
{
	const struct fx *f = *state;

	assert_int_equal(landlock_allow(in_path(f, "missing"), LANDLOCK_READ), -ENOENT);
}

/* Named twice (two shares of one directory): one descriptor held, with both rules' rights. */
static void named_twice(const struct fx *f)
{
	int before = dup(0), after;

	close(before);
	CHECK(landlock_allow(f->in, LANDLOCK_READ) == 0);
	CHECK(landlock_allow(f->in, LANDLOCK_SOCKETS) == 0);
	after = dup(0);
	close(after);
	CHECK(after == before + 1);
	confine(NULL, LANDLOCK_READ);
	CHECK(try_open(in_path(f, "f"), O_RDONLY) == 0);
	CHECK(bind_unix(in_path(f, "s")) >= 0);
}

static void test_a_path_named_twice_is_one_rule_with_both_rights(void **state)
{
	in_child(*state, named_twice);
}

static void test_this_kernel_offers_an_abi(void **state)
{
	/* Landlock came in 5.13 with ABI 1; Debian 12's kernel (6.1) offers 2. */
	if (landlock_abi() == 0)
		skip();
	assert_true(landlock_abi() >= 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_this_kernel_offers_an_abi),
		T(test_read_rule_opens_inside_only_and_writes_nothing),
		T(test_read_write_rule_writes_files_but_makes_or_removes_none),
		T(test_tree_rule_creates_renames_links_and_removes_inside_only),
		T(test_sockets_rule_binds_and_unlinks_sockets_and_opens_nothing),
		T(test_connect_to_a_socket_outside_the_rules_still_works),
		T(test_reopen_through_proc_self_fd_follows_the_files_rules),
		T(test_descriptors_opened_before_stay_usable),
		T(test_rule_follows_the_directory_opened_at_allow_not_its_name),
		T(test_rule_on_a_file_allows_that_file),
		T(test_enter_without_prepare_confines_nothing),
		T(test_a_path_named_twice_is_one_rule_with_both_rights),
		T(test_allow_of_a_missing_path_fails_with_enoent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
