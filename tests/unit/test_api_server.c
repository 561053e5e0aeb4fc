// SPDX-License-Identifier: MIT
/*
 * The control socket and its HTTP server over a real unix socket in a temporary directory:
 * stale and live names, a silent client, a huge body, and the client that the commands use.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "api/client.h"
#include "api/server.h"
#include "api/socket.h"
#include "fixture.h"

static char dir[256], sock[300];
static int paused;

static void fake_info(void *opaque, struct api_vm_info *info)
{
	info->state = paused ? API_VM_PAUSED : API_VM_RUNNING;
	info->cpus = 2;
	info->mem_bytes = 64ULL << 20;
	info->name = "t";
	info->pid = 77;
}

static void fake_counters(void *opaque, api_counter_fn emit, void *ctx)
{
	emit(ctx, "vcpu0", "io", 5);
}

static int fake_pause(void *opaque)
{
	return paused ? -EALREADY : (paused = 1, 0);
}

static int fake_resume(void *opaque)
{
	return !paused ? -EALREADY : (paused = 0, 0);
}

static uint64_t balloon;

static int fake_resize_balloon(void *opaque, uint64_t bytes)
{
	balloon = bytes;
	return 0;
}

static const struct api_hooks hooks = {
	.info = fake_info,
	.counters = fake_counters,
	.pause = fake_pause,
	.resume = fake_resume,
	.resize_balloon = fake_resize_balloon,
};

static int setup(void **state)
{
	if (fx_dir_make(dir, sizeof(dir), NULL, "api") < 0)
		return -1;
	paused = 0;
	return api_sock_path(sock, sizeof(sock), dir, "guest-1");
}

static int teardown(void **state)
{
	unlink(sock);
	return rmdir(dir);
}

/* Sends req raw and reads what comes back within ms milliseconds; returns the bytes read. */
static size_t raw_exchange(int fd, const char *req, size_t req_len, char *buf, size_t len, int ms)
{
	size_t got = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (req_len)
		assert_int_equal(write(fd, req, req_len), (ssize_t)req_len);
	while (got < len - 1 && poll(&p, 1, ms) == 1) {
		ssize_t n = read(fd, buf + got, len - 1 - got);

		if (n <= 0)
			break;
		got += n;
	}
	buf[got] = 0;
	return got;
}

static void test_silent_client_does_not_block_another(void **state)
{
	struct api_server *s;
	struct api_reply r;
	char err[256];
	int silent, fd = api_sock_listen(sock);
	struct timespec t0, t1;

	assert_true(fd >= 0);
	assert_int_equal(api_server_start(&s, fd, &hooks), 0);
	silent = api_sock_connect(sock);
	assert_true(silent >= 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(api_call(sock, "GET", "vm.info", &r, err, sizeof(err)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(r.status, 200);
	assert_non_null(r.json);
	api_reply_free(&r);
	/* Well before the silent one's idle timeout. */
	assert_true(t1.tv_sec - t0.tv_sec < API_IDLE_TIMEOUT_S / 2);
	close(silent);
	api_server_stop(s);
}

static void test_client_pauses_and_reads_errors_over_socket(void **state)
{
	struct api_server *s;
	struct api_reply r;
	char err[256];

	assert_int_equal(api_server_start(&s, api_sock_listen(sock), &hooks), 0);
	assert_int_equal(api_call(sock, "PUT", "vm.pause", &r, err, sizeof(err)), 0);
	assert_int_equal(r.status, 204);
	assert_null(r.json);
	assert_int_equal(paused, 1);
	assert_int_equal(api_call(sock, "PUT", "vm.pause", &r, err, sizeof(err)), 0);
	assert_int_equal(r.status, 405);
	assert_string_equal(api_reply_error(&r), "the VM is already paused");
	api_reply_free(&r);
	assert_int_equal(api_call(sock, "GET", "vm.nothing", &r, err, sizeof(err)), 0);
	assert_int_equal(r.status, 404);
	api_reply_free(&r);
	api_server_stop(s);
}

/* nkvm balloon's request: the body reaches the handler through the server. */
static void test_client_sends_a_resize_body_over_socket(void **state)
{
	struct api_server *s;
	struct api_reply r;
	char err[256];

	balloon = 0;
	assert_int_equal(api_server_start(&s, api_sock_listen(sock), &hooks), 0);
	assert_int_equal(api_call_body(sock, "PUT", "vm.resize", "{\"desired_balloon\": 1048576}",
				       &r, err, sizeof(err)),
			 0);
	assert_int_equal(r.status, 204);
	assert_int_equal(balloon, 1 << 20);
	assert_int_equal(api_call_body(sock, "PUT", "vm.resize", "{\"desired_balloon\": 67108865}",
				       &r, err, sizeof(err)),
			 0);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(api_reply_error(&r), "guest's memory"));
	api_reply_free(&r);
	assert_int_equal(balloon, 1 << 20);
	api_server_stop(s);
}

/*
 * The client's body reaches the handler: nkvm.sysrq with a good body gets past the body check
 * to the missing hook (501), without one it is a 400.
 */
static void test_client_body_reaches_the_handler(void **state)
{
	struct api_server *s;
	struct api_reply r;
	char err[256];

	assert_int_equal(api_server_start(&s, api_sock_listen(sock), &hooks), 0);
	assert_int_equal(api_call_body(sock, "PUT", "nkvm.sysrq", "{\"key\": \"t\"}", &r, err,
				       sizeof(err)),
			 0);
	assert_int_equal(r.status, 501);
	api_reply_free(&r);
	assert_int_equal(api_call(sock, "PUT", "nkvm.sysrq", &r, err, sizeof(err)), 0);
	assert_int_equal(r.status, 400);
	api_reply_free(&r);
	api_server_stop(s);
}

static void test_huge_body_over_socket_is_413(void **state)
{
	size_t len = 200 * 1024;
	char *req = malloc(len + 256), resp[4096];
	struct api_server *s;
	int fd, n;

	assert_non_null(req);
	assert_int_equal(api_server_start(&s, api_sock_listen(sock), &hooks), 0);
	fd = api_sock_connect(sock);
	assert_true(fd >= 0);
	n = snprintf(req, 256,
		     "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		     len);
	memset(req + n, ' ', len);
	raw_exchange(fd, req, n + len, resp, sizeof(resp), 5000);
	assert_non_null(strstr(resp, "HTTP/1.1 413"));
	assert_non_null(strstr(resp, "{\"error\":"));
	assert_int_equal(paused, 0);
	close(fd);
	free(req);
	api_server_stop(s);
}

static void test_malformed_http_gets_an_answer_and_server_lives(void **state)
{
	struct api_server *s;
	struct api_reply r;
	char resp[4096], err[256];
	int fd;

	assert_int_equal(api_server_start(&s, api_sock_listen(sock), &hooks), 0);
	fd = api_sock_connect(sock);
	raw_exchange(fd, "\x01\x02 garbage\r\n\r\n", 14, resp, sizeof(resp), 3000);
	assert_non_null(strstr(resp, "HTTP/1.1 4"));
	close(fd);
	assert_int_equal(api_call(sock, "GET", "vmm.ping", &r, err, sizeof(err)), 0);
	assert_int_equal(r.status, 200);
	api_reply_free(&r);
	api_server_stop(s);
}

static void test_live_name_is_refused(void **state)
{
	int fd = api_sock_listen(sock);

	assert_true(fd >= 0);
	assert_int_equal(api_sock_listen(sock), -EADDRINUSE);
	close(fd);
}

static void test_stale_socket_is_removed_and_reused(void **state)
{
	int fd = api_sock_listen(sock);
	char err[256];
	struct api_reply r;

	assert_true(fd >= 0);
	close(fd); /* as a guest killed with SIGKILL leaves it */
	assert_int_equal(access(sock, F_OK), 0);
	assert_int_equal(api_call(sock, "GET", "vm.info", &r, err, sizeof(err)), -ECONNREFUSED);
	fd = api_sock_listen(sock);
	assert_true(fd >= 0);
	close(fd);
}

static void test_socket_is_0600_and_a_file_is_not_replaced(void **state)
{
	struct stat st;
	int fd = api_sock_listen(sock);
	FILE *f;

	assert_true(fd >= 0);
	assert_int_equal(stat(sock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	close(fd);
	unlink(sock);
	f = fopen(sock, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(api_sock_listen(sock), -EEXIST);
	assert_int_equal(stat(sock, &st), 0);
	assert_true(S_ISREG(st.st_mode));
}

static void test_dir_made_0700_and_open_dir_refused(void **state)
{
	const char *d = fx_dir_path(dir, "run");
	struct stat st;

	assert_int_equal(api_sock_dir_make(d), 0);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(api_sock_dir_make(d), 0);
	chmod(d, 0755);
	assert_int_equal(api_sock_dir_make(d), -EPERM);
	rmdir(d);
}

static void test_missing_socket_is_enoent(void **state)
{
	struct api_reply r;
	char err[256];

	assert_int_equal(api_call(sock, "GET", "vm.info", &r, err, sizeof(err)), -ENOENT);
}

/* --user: root's symlink reaches the user's socket; one left by an ended guest is replaced. */
static void test_root_link_reaches_a_live_guest_and_a_stale_one_is_replaced(void **state)
{
	char target[300], other[300];
	int fd, c;

	snprintf(target, sizeof(target), "%s/user.sock", dir);
	snprintf(other, sizeof(other), "%s/other.sock", dir);
	fd = api_sock_listen(target);
	assert_true(fd >= 0);
	assert_int_equal(api_sock_link(sock, target), 0);
	c = api_sock_connect(sock);
	assert_true(c >= 0);
	close(c);
	/* Live: the name is taken, for a link as for a socket. */
	assert_int_equal(api_sock_link(sock, other), -EADDRINUSE);
	assert_int_equal(api_sock_listen(sock), -EADDRINUSE);
	close(fd);
	unlink(target); /* the guest ended; root's link dangles */
	assert_int_equal(api_sock_link(sock, other), 0);
	/* And a root guest may take the name over a dangling link. */
	fd = api_sock_listen(sock);
	assert_true(fd >= 0);
	close(fd);
}

static void test_dir_made_for_a_user_is_handed_over_and_anothers_refused(void **state)
{
	const char *d = fx_dir_path(dir, "user");
	struct stat st;

	if (geteuid() != 0)
		skip();
	assert_int_equal(api_sock_dir_make_for(d, 65534, 65534), 0);
	assert_int_equal(lstat(d, &st), 0);
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 65534);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(api_sock_dir_make_for(d, 65534, 65534), 0);
	/* Another user's directory is never taken over. */
	assert_int_equal(api_sock_dir_make_for(d, 4242, 4242), -EPERM);
	rmdir(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_silent_client_does_not_block_another, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_client_pauses_and_reads_errors_over_socket,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_sends_a_resize_body_over_socket, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_client_body_reaches_the_handler, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_huge_body_over_socket_is_413, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_http_gets_an_answer_and_server_lives,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_name_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_is_removed_and_reused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_socket_is_0600_and_a_file_is_not_replaced,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_made_0700_and_open_dir_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_missing_socket_is_enoent, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_root_link_reaches_a_live_guest_and_a_stale_one_is_replaced, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_dir_made_for_a_user_is_handed_over_and_anothers_refused, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
