// SPDX-License-Identifier: MIT
/*
 * bench/control.sh's stopwatch for the control sockets themselves, without a client process's
 * start-up in the figure (under the nested test host's TCG an exec costs more than the request):
 *   ctl-rtt http SOCK ROUNDS METHOD:ENDPOINT...   nkvm's API: each request on a new connection,
 *                                                 as nkvm's own commands make them
 *   ctl-rtt qmp SOCK ROUNDS CMD...                QEMU's QMP: one connection, the greeting and
 *                                                 qmp_capabilities first, as libvirt keeps it
 *   ctl-rtt qmp-say SOCK CMD                      one QMP command; prints its reply line
 * Each round sends every request in turn and waits for its whole reply; one line a round: the
 * round's microseconds, then each request's. CMD is a command name ("stop") or a whole JSON object. Exits 1 when a
 * request fails (a status other than 2xx, a QMP "error"), printing the reply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 20];

static int connect_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "ctl-rtt: %s: cannot make a socket for it\n", path);
		exit(1);
	}
	strcpy(a.sun_path, path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		fprintf(stderr, "ctl-rtt: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "ctl-rtt: write: %s\n", strerror(errno));
			exit(1);
		}
		s += w;
		n -= (size_t)w;
	}
}

static long long now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

/* One HTTP/1.1 request, "Connection: close": the reply is everything up to the server's EOF. */
static void http_request(const char *sock, const char *req)
{
	const char *colon = strchr(req, ':');
	char head[512];
	size_t got = 0;
	ssize_t r;
	int fd, n;

	if (!colon) {
		fprintf(stderr, "ctl-rtt: %s: want METHOD:ENDPOINT\n", req);
		exit(2);
	}
	n = snprintf(head, sizeof(head),
		     "%.*s /api/v1/%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
		     "Connection: close\r\n\r\n",
		     (int)(colon - req), req, colon + 1);
	fd = connect_unix(sock);
	send_all(fd, head, (size_t)n);
	while (got < sizeof(buf) - 1 && (r = read(fd, buf + got, sizeof(buf) - 1 - got)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		got += (size_t)r;
	}
	buf[got] = 0;
	close(fd);
	if (strncmp(buf, "HTTP/1.1 2", 10)) {
		fprintf(stderr, "ctl-rtt: %s: %s\n", req, buf);
		exit(1);
	}
}

/* QMP's replies and events are one JSON object a line; returns the next line that is a reply
 * ("return" or "error"), skipping events (STOP, RESUME, BALLOON_CHANGE...). */
static size_t qmp_have, qmp_used;

static char *qmp_line(int fd)
{
	for (;;) {
		char *nl = memchr(buf + qmp_used, '\n', qmp_have - qmp_used);
		ssize_t r;

		if (nl) {
			char *line = buf + qmp_used;

			*nl = 0;
			qmp_used = (size_t)(nl + 1 - buf);
			return line;
		}
		memmove(buf, buf + qmp_used, qmp_have - qmp_used);
		qmp_have -= qmp_used;
		qmp_used = 0;
		r = read(fd, buf + qmp_have, sizeof(buf) - 1 - qmp_have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || qmp_have + (size_t)r >= sizeof(buf) - 1) {
			fprintf(stderr, "ctl-rtt: QMP connection ended\n");
			exit(1);
		}
		qmp_have += (size_t)r;
	}
}

static char *qmp_command(int fd, const char *cmd)
{
	char line[4096];
	int n;

	if (cmd[0] == '{')
		n = snprintf(line, sizeof(line), "%s\n", cmd);
	else
		n = snprintf(line, sizeof(line), "{\"execute\": \"%s\"}\n", cmd);
	if (n < 0 || n >= (int)sizeof(line)) {
		fprintf(stderr, "ctl-rtt: command too long\n");
		exit(2);
	}
	send_all(fd, line, (size_t)n);
	for (;;) {
		char *reply = qmp_line(fd);

		if (strstr(reply, "\"error\"")) {
			fprintf(stderr, "ctl-rtt: %s: %s\n", cmd, reply);
			exit(1);
		}
		if (strstr(reply, "\"return\""))
			return reply;
	}
}

static int qmp_open(const char *sock)
{
	int fd = connect_unix(sock);

	qmp_line(fd); /* {"QMP": {"version": ...}} */
	qmp_command(fd, "qmp_capabilities");
	return fd;
}

int main(int argc, char **argv)
{
	int rounds, i, r, fd = -1;

	if (argc == 4 && !strcmp(argv[1], "qmp-say")) {
		fd = qmp_open(argv[2]);
		printf("%s\n", qmp_command(fd, argv[3]));
		return 0;
	}
	if (argc < 5 || (strcmp(argv[1], "http") && strcmp(argv[1], "qmp")) ||
	    (rounds = atoi(argv[3])) <= 0 || argc - 4 > 63) {
		fprintf(stderr,
			"usage: ctl-rtt http|qmp SOCK ROUNDS REQUEST... | qmp-say SOCK CMD\n");
		return 2;
	}
	if (!strcmp(argv[1], "qmp"))
		fd = qmp_open(argv[2]);
	for (r = 0; r < rounds; r++) {
		long long t[64];
		int n = argc - 4;

		t[0] = now_us();
		for (i = 0; i < n; i++) {
			if (fd < 0)
				http_request(argv[2], argv[4 + i]);
			else
				qmp_command(fd, argv[4 + i]);
			t[i + 1] = now_us();
		}
		printf("%lld", t[n] - t[0]);
		for (i = 0; i < n; i++)
			printf(" %lld", t[i + 1] - t[i]);
		printf("\n");
	}
	return 0;
}
