// SPDX-License-Identifier: MIT
/* --user: its argument (a name or UID:GID, each malformed one refused) and the drop itself. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/privs.h"

static void test_user_name_gives_its_uid_and_primary_gid(void **state)
{
	struct privs_user u;
	char err[128];

	/* Both are in every Debian's base passwd (base-passwd's fixed ids). */
	assert_int_equal(privs_parse_user("nobody", &u, err, sizeof(err)), 0);
	assert_int_equal(u.uid, 65534);
	assert_int_equal(u.gid, 65534);
	assert_int_equal(privs_parse_user("daemon", &u, err, sizeof(err)), 0);
	assert_int_equal(u.uid, 1);
	assert_int_equal(u.gid, 1);
}

static void test_uid_gid_pair_needs_no_passwd_entry(void **state)
{
	struct privs_user u;
	char err[128];

	assert_int_equal(privs_parse_user("4242:4343", &u, err, sizeof(err)), 0);
	assert_int_equal(u.uid, 4242);
	assert_int_equal(u.gid, 4343);
}

static void test_unknown_user_is_enoent_naming_it(void **state)
{
	struct privs_user u;
	char err[128];

	assert_int_equal(privs_parse_user("no-such-user-nkvm", &u, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "--user no-such-user-nkvm: no such user (give a name or UID:GID)");
	assert_int_equal(privs_parse_user("", &u, err, sizeof(err)), -ENOENT);
}

static void test_malformed_uid_gid_is_refused(void **state)
{
	static const char *const bad[] = {
		":",	"1000:", ":1000",	 "abc:1",	 "1:x",		  "1:2:3",
		"-1:1", "1: 2",	 "4294967295:1", "1:4294967295", "99999999999:1",
	};
	struct privs_user u;
	char err[128], want[128];

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(privs_parse_user(bad[i], &u, err, sizeof(err)), -EINVAL);
		snprintf(want, sizeof(want), "--user %s: give a user name or UID:GID", bad[i]);
		assert_string_equal(err, want);
	}
}

static void test_root_is_refused_by_name_and_by_id(void **state)
{
	struct privs_user u;
	char err[128];

	assert_int_equal(privs_parse_user("root", &u, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--user root: that is root; name an unprivileged user");
	assert_int_equal(privs_parse_user("0:0", &u, err, sizeof(err)), -EINVAL);
}

/* In a child (the drop cannot be undone): ids, groups, capabilities and no_new_privs. */
static void test_drop_leaves_the_users_ids_no_groups_no_capabilities(void **state)
{
	struct privs_user u = { 65534, 65534 };
	char err[128];
	int st = 0;
	pid_t pid;

	if (geteuid() != 0)
		skip();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uid_t r, e, s;
		gid_t gr, ge, gs;
		FILE *f;
		char line[256];
		int ok = privs_drop(&u, err, sizeof(err)) == 0;

		ok = ok && getresuid(&r, &e, &s) == 0 && r == 65534 && e == 65534 && s == 65534;
		ok = ok && getresgid(&gr, &ge, &gs) == 0 && gr == 65534 && ge == 65534 &&
		     gs == 65534;
		ok = ok && getgroups(0, NULL) == 0;
		ok = ok && prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
		/* What an admin would check: CapEff 0 in /proc/self/status. */
		f = fopen("/proc/self/status", "r");
		ok = ok && f;
		while (ok && fgets(line, sizeof(line), f))
			if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7))
				ok = !strcmp(line + 7, "\t0000000000000000\n");
		if (f)
			fclose(f);
		ok = ok && setuid(0) < 0; /* and no way back */
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_name_gives_its_uid_and_primary_gid),
		cmocka_unit_test(test_uid_gid_pair_needs_no_passwd_entry),
		cmocka_unit_test(test_unknown_user_is_enoent_naming_it),
		cmocka_unit_test(test_malformed_uid_gid_is_refused),
		cmocka_unit_test(test_root_is_refused_by_name_and_by_id),
		cmocka_unit_test(test_drop_leaves_the_users_ids_no_groups_no_capabilities),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
