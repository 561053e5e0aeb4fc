// SPDX-License-Identifier: MIT
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/term.h"

/*
 * The saved mode must be reachable from a fatal-signal handler, so it is the one file-scope
 * state here: there is only one controlling terminal per process.
 */
static struct termios saved_mode;
static volatile sig_atomic_t saved_fd = -1;

void term_restore(void)
{
	if (saved_fd >= 0) {
		tcsetattr(saved_fd, TCSAFLUSH, &saved_mode);
		saved_fd = -1;
	}
}

static void term_fatal_signal(int sig)
{
	/* tcsetattr is async-signal-safe; then die the way the signal meant. */
	term_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

int term_raw(int fd)
{
	static const int fatal[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	struct sigaction sa = { .sa_handler = term_fatal_signal, .sa_flags = SA_RESETHAND };
	struct termios raw;

	if (!isatty(fd) || tcgetattr(fd, &saved_mode) < 0)
		return 0;
	raw = saved_mode;
	cfmakeraw(&raw);
	/* Keep output post-processing off too: the guest sends its own CR LF. */
	if (tcsetattr(fd, TCSAFLUSH, &raw) < 0)
		return -1;
	saved_fd = fd;
	for (unsigned int i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		sigaction(fatal[i], &sa, NULL);
	return 0;
}

int term_filter_input(struct term_escape *esc, uint8_t *buf, size_t *len)
{
	size_t out = 0;

	for (size_t i = 0; i < *len; i++) {
		uint8_t c = buf[i];

		if (esc->armed) {
			esc->armed = 0;
			if (c == 'x' || c == 'X') {
				*len = out;
				return 1;
			}
			if (c == TERM_ESCAPE)
				buf[out++] = c;
			/* Any other key after Ctrl-A is dropped, like QEMU's unknown escapes. */
			continue;
		}
		if (c == TERM_ESCAPE) {
			esc->armed = 1;
			continue;
		}
		buf[out++] = c;
	}
	*len = out;
	return 0;
}
