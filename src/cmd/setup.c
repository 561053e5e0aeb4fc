// SPDX-License-Identifier: MIT
/*
 * `nkvm setup [--force] [--kernel-deb FILE.deb] [--kernel-package PKG]`: prepares the default
 * guest in the cache directory: Debian's cloud kernel (small, made for virtual machines, modules
 * for every virtio device) and an initramfs around nkvm's own init and a static busybox
 * (setup_initrd.c). --kernel-package prepares the same guest around another kernel metapackage's
 * kernel (linux-image-amd64 has 9p, which the cloud kernel lacks) in a directory of its own.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "cmd/initrd_groups.h"
#include "cmd/setup.h"
#include "lib/file.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "lib/spawn.h"
#include "lib/util.h"

/* Debian's metapackage that always depends on the current cloud kernel. */
#define KERNEL_METAPACKAGE "linux-image-cloud-amd64"

struct setup {
	char dir[PATH_MAX]; /* the cache directory */
	char version[NAME_MAX + 1]; /* the guest kernel's release, "6.1.0-56-cloud-amd64" */
	const char *kernel_deb;
	const char *package; /* the kernel metapackage, KERNEL_METAPACKAGE unless -p */
	bool force;
};

/* Where each program we run comes from, for the line that says it is missing. */
static const struct {
	const char *tool, *package;
} tool_packages[] = {
	{ "apt-get", "apt" },
	{ "apt-cache", "apt" },
	{ "dpkg-deb", "dpkg" },
	{ "depmod", "kmod" },
	{ "busybox", "busybox-static" },
	{ "xz", "xz-utils" },
	{ "zstd", "zstd" },
	{ "gzip", "gzip" },
};

static const char *tool_package(const char *tool)
{
	const char *base = strrchr(tool, '/');
	size_t i;

	base = base ? base + 1 : tool;
	for (i = 0; i < ARRAY_SIZE(tool_packages); i++) {
		if (!strcmp(tool_packages[i].tool, base))
			return tool_packages[i].package;
	}
	return base;
}

int setup_run_tool(char *const argv[], const char *cwd, char **out, size_t *out_len)
{
	char cmdline[512] = "";
	size_t n = 0, i;
	int ret;

	ret = spawn_run(argv, cwd, out, out_len);
	if (!ret)
		return 0;
	if (ret == -ENOENT) {
		nkvm_err("%s not found: apt-get install %s", argv[0], tool_package(argv[0]));
		return ret;
	}
	if (ret < 0) {
		nkvm_err("cannot run %s: %s", argv[0], strerror(-ret));
		return ret;
	}
	for (i = 0; argv[i] && n < sizeof(cmdline); i++)
		n += snprintf(cmdline + n, sizeof(cmdline) - n, "%s%s", i ? " " : "", argv[i]);
	nkvm_err("'%s' failed with status %d (%s is in the %s package)", cmdline, ret, argv[0],
		 tool_package(argv[0]));
	return -EIO;
}

/* "<cache dir>/<name>" into buf. */
static int cache_path(const struct setup *s, char *buf, size_t len, const char *name)
{
	if (!file_path(buf, len, "%s/%s", s->dir, name))
		return 0;
	nkvm_err("%s/%s: path too long", s->dir, name);
	return -ENAMETOOLONG;
}

static bool cache_has(const struct setup *s, const char *name)
{
	char path[PATH_MAX];

	return !cache_path(s, path, sizeof(path), name) && access(path, R_OK) == 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: nkvm setup [--force] [--kernel-deb FILE.deb] [--kernel-package PKG]\n"
		   "Prepares the default guest (kernel and initramfs) in the cache directory, and\n"
		   "the kernel's vmlinux beside it (for nkvm run -k DIR/vmlinux: a PVH boot).\n"
		   "  -f, --force            rebuild everything, download the kernel again\n"
		   "  -k, --kernel-deb FILE  use this Debian linux-image .deb, do not download\n"
		   "  -p, --kernel-package PKG\n"
		   "                         the kernel of this metapackage (linux-image-amd64),\n"
		   "                         its guest in the cache directory's PKG/; boot it with\n"
		   "                         nkvm run -k DIR/vmlinuz -i DIR/initrd.cpio\n");
}

/* Returns 0 to go on, 1 when --help was answered, -EINVAL on a usage error. */
static int parse_args(struct setup *s, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "kernel-deb", required_argument, NULL, 'k' },
		{ "kernel-package", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	/* 0 makes getopt start afresh even if main used it already. */
	optind = 0;
	while ((c = getopt_long(argc, argv, "+fk:p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			s->force = true;
			break;
		case 'k':
			s->kernel_deb = optarg;
			break;
		case 'p':
			s->package = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "nkvm setup: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

/*
 * Debian Policy §5.6.1: lower case letters, digits, '+', '-' and '.', at least two characters,
 * starting with a letter or digit; so a package name is also a safe directory name ("..": no).
 */
static bool package_name_valid(const char *p)
{
	return strlen(p) >= 2 && strchr("abcdefghijklmnopqrstuvwxyz0123456789", p[0]) &&
	       strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789.+-") == strlen(p);
}

int setup_guest_dir(const char *base, const char *package, char *buf, size_t len)
{
	if (package && !package_name_valid(package))
		return -EINVAL;
	if (package ? file_path(buf, len, "%s/%s", base, package) : file_path(buf, len, "%s", base))
		return -ENAMETOOLONG;
	return 0;
}

static bool version_valid(const char *v)
{
	return v[0] && v[0] != '.' && !strchr(v, '/') && strlen(v) <= NAME_MAX;
}

/* Reads kernel-version into s->version. */
static int read_version(struct setup *s)
{
	char path[PATH_MAX], *text;
	size_t len;
	int ret;

	ret = cache_path(s, path, sizeof(path), SETUP_KERNEL_VERSION);
	if (!ret)
		ret = file_read_text(path, &text, &len);
	if (ret)
		return ret;
	text[strcspn(text, "\n")] = '\0';
	ret = version_valid(text) ? 0 : -EINVAL;
	if (!ret)
		strcpy(s->version, text);
	free(text);
	return ret;
}

/* The kernel is usable when its image, release and module tree (with depmod's index) are. */
static bool kernel_ready(struct setup *s)
{
	char dep[PATH_MAX];

	return !read_version(s) && cache_has(s, NKVM_GUEST_KERNEL) &&
	       !file_path(dep, sizeof(dep), "%s/%s/lib/modules/%s/modules.dep", s->dir,
			  SETUP_KERNEL_TREE, s->version) &&
	       access(dep, R_OK) == 0;
}

/* The initrd is current when its stamp matches this nkvm's init and the installed kernel. */
static bool initrd_ready(struct setup *s)
{
	char path[PATH_MAX], want[PATH_MAX], *have = NULL;
	bool ok;

	if (read_version(s) || !cache_has(s, NKVM_GUEST_INITRD) ||
	    cache_path(s, path, sizeof(path), SETUP_INITRD_STAMP) ||
	    setup_initrd_stamp(s->version, want, sizeof(want)) || file_read_text(path, &have, NULL))
		return false;
	ok = !strcmp(have, want);
	free(have);
	/* Without its groups the lean base would boot devices that have no driver. */
	for (size_t i = 0; ok && initrd_groups[i]; i++) {
		ok = !file_path(path, sizeof(path), "%s/%s.cpio", INITRD_GROUPS_DIR,
				initrd_groups[i]->name) &&
		     cache_has(s, path);
	}
	return ok;
}


/* The kernel package the metapackage depends on, from "  Depends: linux-image-6.1.0-…". */
static int kernel_package(const char *meta, char *pkg, size_t len)
{
	char *argv[] = { "apt-cache", "depends", (char *)meta, NULL };
	char *out, *line, *save = NULL, *name;
	int ret;

	ret = setup_run_tool(argv, NULL, &out, NULL);
	if (ret)
		return ret;
	ret = -ENOENT;
	for (line = strtok_r(out, "\n", &save); ret && line; line = strtok_r(NULL, "\n", &save)) {
		/* '|' marks an alternative, which will do as well. */
		line += strspn(line, " \t|");
		if (strncmp(line, "Depends: linux-image-", strlen("Depends: linux-image-")))
			continue;
		name = line + strlen("Depends: ");
		name[strcspn(name, " \t")] = '\0';
		if (package_name_valid(name) && strlen(name) < len) {
			strcpy(pkg, name);
			ret = 0;
		}
	}
	free(out);
	if (ret)
		nkvm_err("apt knows no kernel for %s: run apt-get update, or use --kernel-deb FILE",
			 meta);
	return ret;
}

static int find_deb(const char *dir, char *deb, size_t len)
{
	struct dirent *e;
	size_t n;
	DIR *d;
	int ret = -ENOENT;

	d = opendir(dir);
	if (!d)
		return -errno;
	while (ret == -ENOENT && (e = readdir(d))) {
		n = strlen(e->d_name);
		if (n > 4 && !strcmp(e->d_name + n - 4, ".deb"))
			ret = file_path(deb, len, "%s/%s", dir, e->d_name);
	}
	closedir(d);
	if (ret)
		nkvm_err("apt-get download left no .deb in %s", dir);
	return ret;
}

static int download_kernel(const struct setup *s, const char *tmp, char *deb, size_t len)
{
	char pkg[256];
	char *argv[] = { "apt-get", "-q", "download", pkg, NULL };
	/* As root, apt would warn that its _apt user cannot write to our (private) cache dir. */
	char *argv_root[] = { "apt-get",  "-q", "-o", "APT::Sandbox::User=root",
			      "download", pkg,	NULL };
	int ret;

	ret = kernel_package(s->package, pkg, sizeof(pkg));
	if (ret)
		return ret;
	printf("nkvm: downloading %s\n", pkg);
	fflush(stdout);
	ret = setup_run_tool(geteuid() ? argv : argv_root, tmp, NULL, NULL);
	return ret ? ret : find_deb(tmp, deb, len);
}

/* The release is the one directory under lib/modules: the package is for one kernel. */
static int find_release(struct setup *s, const char *root)
{
	char path[PATH_MAX];
	struct dirent *e;
	int found = 0;
	DIR *d;

	d = file_path(path, sizeof(path), "%s/lib/modules", root) ? NULL : opendir(path);
	if (!d) {
		nkvm_err("the kernel package has no lib/modules");
		return -ENOENT;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !version_valid(e->d_name))
			continue;
		if (!found++)
			strcpy(s->version, e->d_name);
	}
	closedir(d);
	if (found == 1)
		return 0;
	nkvm_err("the kernel package has %d module trees, not one", found);
	return -EINVAL;
}

static int unpack_kernel(struct setup *s, const char *deb, const char *root)
{
	char path[PATH_MAX];
	char *unpack[] = { "dpkg-deb", "-x", (char *)deb, (char *)root, NULL };
	char *depmod[] = { "depmod", "-b", (char *)root, s->version, NULL };
	int ret;

	ret = setup_run_tool(unpack, NULL, NULL, NULL);
	if (ret)
		return ret;
	/* Packages of a merged /usr put modules in usr/lib/modules; depmod -b looks in lib/. */
	if (file_path(path, sizeof(path), "%s/lib", root))
		return -ENAMETOOLONG;
	if (access(path, F_OK) < 0 && symlink("usr/lib", path) < 0) {
		ret = -errno;
		nkvm_err("%s: %s", path, strerror(-ret));
		return ret;
	}
	ret = find_release(s, root);
	/* The package leaves the module index to its postinst, which we do not run. */
	if (!ret)
		ret = setup_run_tool(depmod, NULL, NULL, NULL);
	if (ret)
		return ret;
	if (!file_path(path, sizeof(path), "%s/boot/vmlinuz-%s", root, s->version) &&
	    access(path, R_OK) == 0)
		return 0;
	nkvm_err("the kernel package has no boot/vmlinuz-%s", s->version);
	return -ENOENT;
}

static int copy_file(const char *from, const char *to)
{
	uint8_t *data;
	size_t len;
	int ret;

	ret = read_file(from, &data, &len);
	if (ret)
		return ret;
	ret = file_write_atomic(to, data, len, 0644);
	free(data);
	return ret;
}

static int write_version(const char *path, const char *version)
{
	char line[NAME_MAX + 2];

	snprintf(line, sizeof(line), "%s\n", version);
	return file_write_atomic(path, line, strlen(line), 0644);
}

/* Moves the unpacked tree into place and copies out the image and release the monitor needs. */
static int install_kernel(struct setup *s, const char *root)
{
	char tree[PATH_MAX], version[PATH_MAX], image[PATH_MAX], from[PATH_MAX];
	int ret;

	ret = cache_path(s, tree, sizeof(tree), SETUP_KERNEL_TREE);
	if (!ret)
		ret = cache_path(s, version, sizeof(version), SETUP_KERNEL_VERSION);
	if (!ret)
		ret = cache_path(s, image, sizeof(image), NKVM_GUEST_KERNEL);
	if (!ret)
		ret = file_path(from, sizeof(from), "%s/%s/boot/vmlinuz-%s", s->dir,
				SETUP_KERNEL_TREE, s->version);
	if (ret)
		return ret;
	/* Without kernel-version the cache reads as "not set up", whatever happens next. */
	unlink(version);
	ret = file_remove_tree(tree);
	if (!ret && rename(root, tree) < 0)
		ret = -errno;
	if (!ret)
		ret = copy_file(from, image);
	if (!ret)
		ret = write_version(version, s->version);
	if (ret)
		nkvm_err("installing the kernel into %s: %s", s->dir, strerror(-ret));
	return ret;
}

/* Downloads (or takes --kernel-deb) and installs the kernel, working in a scratch directory. */
static int fetch_kernel(struct setup *s)
{
	char tmp[PATH_MAX], deb[PATH_MAX], root[PATH_MAX];
	int ret;

	ret = cache_path(s, tmp, sizeof(tmp), "tmp.XXXXXX");
	if (ret)
		return ret;
	if (!mkdtemp(tmp)) {
		ret = -errno;
		nkvm_err("%s: %s", tmp, strerror(-ret));
		return ret;
	}
	if (s->kernel_deb) {
		printf("nkvm: unpacking %s\n", s->kernel_deb);
		fflush(stdout);
		ret = file_path(deb, sizeof(deb), "%s", s->kernel_deb);
	} else {
		ret = download_kernel(s, tmp, deb, sizeof(deb));
	}
	if (!ret)
		ret = file_path(root, sizeof(root), "%s/root", tmp);
	if (!ret)
		ret = unpack_kernel(s, deb, root);
	if (!ret)
		ret = install_kernel(s, root);
	file_remove_tree(tmp);
	return ret;
}

int cmd_setup(int argc, char **argv)
{
	struct setup s = { 0 };
	char base[PATH_MAX];
	bool reused;
	int ret;

	ret = parse_args(&s, argc, argv);
	if (ret)
		return ret > 0 ? 0 : 2;
	ret = nkvm_cache_path(base, sizeof(base), "");
	if (ret) {
		nkvm_err("no cache directory: %s",
			 ret == -ENOENT ? "set HOME or XDG_CACHE_HOME" : strerror(-ret));
		return 1;
	}
	ret = setup_guest_dir(base, s.package, s.dir, sizeof(s.dir));
	if (ret) {
		nkvm_err("--kernel-package %s: %s", s.package,
			 ret == -EINVAL ? "not a Debian package name" : strerror(-ret));
		return 2;
	}
	if (!s.package)
		s.package = KERNEL_METAPACKAGE;
	ret = file_mkdir_p(s.dir, 0755);
	if (ret) {
		nkvm_err("%s: %s", s.dir, strerror(-ret));
		return 1;
	}
	if (s.force || s.kernel_deb || !(initrd_ready(&s) && cache_has(&s, NKVM_GUEST_KERNEL))) {
		if (s.force || s.kernel_deb || !kernel_ready(&s))
			ret = fetch_kernel(&s);
		if (!ret)
			ret = setup_build_initrd(s.dir, s.version);
		if (ret)
			return 1;
	}
	ret = setup_vmlinux(s.dir, &reused);
	if (ret)
		return 1;
	if (strcmp(s.package, KERNEL_METAPACKAGE))
		printf("nkvm: guest of %s ready in %s (kernel %s): nkvm run -k %s/%s -i %s/%s\n",
		       s.package, s.dir, s.version, s.dir, NKVM_GUEST_KERNEL, s.dir,
		       NKVM_GUEST_INITRD);
	else
		printf("nkvm: default guest ready in %s (kernel %s)\n", s.dir, s.version);
	return 0;
}
