// SPDX-License-Identifier: MIT
/*
 * The default guest's initramfs: nkvm's own init as /init, a static busybox for everything a
 * shell user expects, and the kernel modules every guest needs (the virtio PCI transport) with
 * the order to load them in. What only one kind of device needs (its driver, and the host's
 * copies of the tools busybox lacks that work with it, with their shared libraries) goes into
 * a small archive per group (initrd_groups.h) that `nkvm run` appends for the devices it made.
 * The kernel unpacks them into a tmpfs that stays the root filesystem (unless root= names a
 * disk).
 */
#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/initrd_groups.h"
#include "cmd/setup.h"
#include "guest/abi.h"
#include "lib/cpio.h"
#include "lib/file.h"
#include "lib/log.h"
#include "lib/moddep.h"
#include "lib/paths.h"
#include "lib/spawn.h"
#include "lib/util.h"

/* Bumped when what the initrd holds changes, so that `nkvm setup` rebuilds an older one. */
#define INITRD_REVISION 5

#define BUSYBOX "/bin/busybox"

/* Linked in from guest/init by src/guest_blob.S. */
extern const unsigned char nkvm_guest_init_start[], nkvm_guest_init_end[];

struct initrd {
	struct cpio cpio;
	char **names; /* every path in the archive so far, without the "/" */
	size_t n_names;
	const char *version;
	char moddir[PATH_MAX]; /* the host's copy of /lib/modules/VERSION */
	/* A group's archive: what the base archive has is unpacked already, so it is left out. */
	const struct initrd *base;
};

/*
 * What every nkvm device sits on: the virtio PCI transport. The devices' own drivers are in
 * their groups (initrd_groups.c). Absent ones are skipped.
 */
static const char *const guest_modules[] = {
	"virtio", "virtio_ring", "virtio_pci", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
};

/*
 * In the base archive but not loaded at boot: the kernel asks busybox modprobe for them
 * (through modules.alias) on first use, so they cost a boot only their unpacking. 9p for other
 * VMMs booting this guest (bench/share.sh: QEMU's virtio-9p; only linux-image-amd64 has it),
 * overlay for whoever wants a writable layer over a read-only share.
 */
static const char *const guest_modules_on_demand[] = { "9p", "9pnet", "9pnet_virtio", "overlay" };

/*
 * Host programs the integration tests and benchmarks run inside the guest, where busybox has
 * nothing like them. Each goes in at its real path with every shared library it loads (and the
 * dynamic loader), and is linked under its names in whichever of tool_dirs the host has them.
 * A host without one only gets a notice: the guest is still worth building.
 */
static const struct guest_tool {
	const char *name; /* looked up in tool_dirs */
	const char *package; /* for the notice when the host lacks it */
	const char *aliases[2]; /* other names it goes by */
	/*
	 * Only in SETUP_INITRD_FULL, added after busybox (so no applet may share its names): too
	 * big for the default guest, whose initramfs every boot unpacks into RAM.
	 */
	bool full_only;
	/* The module group whose archive holds it (initrd_groups.h); NULL: the base archive. */
	const char *group;
} guest_tools[] = {
	/*
	 * Disk tests format their disks; busybox's mke2fs makes only ext2, without a journal.
	 * With libc and the libraries of e2fsprogs: 1.3 MB (1.9 MB of libc more) every boot
	 * without a disk need not unpack.
	 */
	{ "mkfs.ext4", "e2fsprogs", { "mke2fs" }, false, "disk" },
	/* ...and check them after the guest wrote to them; busybox has no fsck for ext*. */
	{ "e2fsck", "e2fsprogs", { "fsck.ext4" }, false, "disk" },
	/*
	 * The vsock tests' guest end (VSOCK-LISTEN, VSOCK-CONNECT); busybox speaks no AF_VSOCK.
	 * Debian's links OpenSSL, Kerberos, libwrap and libtirpc: 7.7 MB, which every boot
	 * unpacked while it was in the base archive (8.9 -> 16.6 MB).
	 */
	{ "socat", "socat", { NULL }, false, "vsock" },
	/*
	 * The block benchmarks' load generator. Debian links every engine in (no plugins to
	 * dlopen), and with them ceph, gluster, ICU...: 84 MB of libraries, with which a 256 MiB
	 * guest runs out of memory unpacking its initramfs.
	 */
	{ "fio", "fio", { NULL }, true, NULL },
	/* The network benchmark's load generator (bench/net.sh): 0.2 MB more. */
	{ "iperf3", "iperf3", { NULL }, true, NULL },
};

/* Where guest_tools are looked up on the host; the guest's PATH has the same directories. */
static const char *const tool_dirs[] = { "/usr/sbin", "/usr/bin", "/sbin", "/bin" };

static const struct {
	const char *path;
	mode_t perm;
} base_dirs[] = {
	{ "bin", 0755 },      { "sbin", 0755 }, { "usr", 0755 },      { "usr/bin", 0755 },
	{ "usr/sbin", 0755 }, { "etc", 0755 },	{ "etc/nkvm", 0755 }, { "dev", 0755 },
	{ "proc", 0555 },     { "sys", 0555 },	{ "tmp", 01777 },     { "run", 0755 },
	{ "root", 0700 },     { "mnt", 0755 },	{ "var", 0755 },      { "var/tmp", 01777 },
	{ "lib", 0755 },
};

/* Just enough for `id`, `ls -l` and `ping localhost` to say sensible things. */
static const struct {
	const char *path, *text;
} etc_files[] = {
	{ "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n" },
	{ "etc/group", "root:x:0:\n" },
	{ "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tnkvm\n" },
};

static const struct {
	const char *suffix, *tool;
} decompressors[] = {
	{ ".xz", "xz" },
	{ ".zst", "zstd" },
	{ ".gz", "gzip" },
};

/* The one line a failed step prints: what it was working on, and why. */
static int report(int ret, const char *what)
{
	if (ret < 0)
		nkvm_err("%s: %s", what, strerror(-ret));
	return ret;
}

static bool initrd_has(const struct initrd *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->n_names; i++) {
		if (!strcmp(r->names[i], name))
			return true;
	}
	return r->base && initrd_has(r->base, name);
}

/* The kernel's unpacker fails on a second entry of the same name, so each is noted once added. */
static int initrd_note(struct initrd *r, const char *name)
{
	char **names;

	names = realloc(r->names, (r->n_names + 1) * sizeof(*names));
	if (!names)
		return -ENOMEM;
	r->names = names;
	names[r->n_names] = strdup(name);
	if (!names[r->n_names])
		return -ENOMEM;
	r->n_names++;
	return 0;
}

static int initrd_mkdir(struct initrd *r, const char *path, mode_t perm)
{
	int ret;

	if (initrd_has(r, path))
		return 0;
	ret = cpio_add_dir(&r->cpio, path, perm);
	return ret ? ret : initrd_note(r, path);
}

/* The kernel's unpacker does not create missing parents, so every one gets an entry first. */
static int initrd_mkdir_parents(struct initrd *r, const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path), i;
	int ret;

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (i = 1; i < n; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = '\0';
		ret = initrd_mkdir(r, buf, 0755);
		buf[i] = '/';
		if (ret)
			return ret;
	}
	return 0;
}

/* A symlink at name (no leading /), unless something has that name already. */
static int initrd_symlink(struct initrd *r, const char *name, const char *target)
{
	int ret;

	if (initrd_has(r, name))
		return 0;
	ret = initrd_mkdir_parents(r, name);
	if (!ret)
		ret = cpio_add_symlink(&r->cpio, name, target);
	return ret ? ret : initrd_note(r, name);
}

/* A regular file at name (no leading /), unless something has that name already. */
static int initrd_file(struct initrd *r, const char *name, mode_t perm, const void *data,
		       size_t len)
{
	int ret;

	if (initrd_has(r, name))
		return 0;
	ret = initrd_mkdir_parents(r, name);
	if (!ret)
		ret = cpio_add_file(&r->cpio, name, perm, data, len);
	return ret ? ret : initrd_note(r, name);
}

static void initrd_free(struct initrd *r)
{
	while (r->n_names)
		free(r->names[--r->n_names]);
	free(r->names);
	cpio_free(&r->cpio);
}

static int add_skeleton(struct initrd *r)
{
	size_t i;
	int ret = 0;

	for (i = 0; !ret && i < ARRAY_SIZE(base_dirs); i++)
		ret = initrd_mkdir(r, base_dirs[i].path, base_dirs[i].perm);
	/* The kernel opens /dev/console for init before anyone could mount devtmpfs. */
	if (!ret)
		ret = cpio_add_node(&r->cpio, "dev/console", S_IFCHR | 0600, 5, 1);
	if (!ret)
		ret = cpio_add_node(&r->cpio, "dev/null", S_IFCHR | 0666, 1, 3);
	for (i = 0; !ret && i < ARRAY_SIZE(etc_files); i++)
		ret = initrd_file(r, etc_files[i].path, 0644, etc_files[i].text,
				  strlen(etc_files[i].text));
	if (!ret)
		ret = initrd_file(r, "init", 0755, nkvm_guest_init_start,
				  nkvm_guest_init_end - nkvm_guest_init_start);
	return ret;
}

/* The guest has no dynamic loader or libc: a busybox that needs one would not even start. */
static int elf_check_static(const uint8_t *data, size_t len)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	size_t i;

	if (len < sizeof(eh))
		return -ENOEXEC;
	memcpy(&eh, data, sizeof(eh));
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_machine != EM_X86_64 || eh.e_phentsize != sizeof(ph) || eh.e_phoff > len ||
	    eh.e_phnum > (len - eh.e_phoff) / sizeof(ph))
		return -ENOEXEC;
	for (i = 0; i < eh.e_phnum; i++) {
		memcpy(&ph, data + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_INTERP)
			return -ELIBEXEC;
	}
	return 0;
}

/* An applet path from `busybox --list-full`, such as "usr/bin/awk", that stays in its place. */
static int add_applet(struct initrd *r, const char *path)
{
	if (!path[0] || path[0] == '/' || strstr(path, "..") || !strcmp(path, "init") ||
	    !strcmp(path, "bin/busybox"))
		return 0;
	/* A guest tool of the same name (mke2fs) is the real thing: it stays. */
	return initrd_symlink(r, path, BUSYBOX);
}

static int add_applets(struct initrd *r)
{
	char *argv[] = { BUSYBOX, "--list-full", NULL };
	char *list, *line, *save = NULL;
	int ret;

	ret = setup_run_tool(argv, NULL, &list, NULL);
	if (ret)
		return ret;
	for (line = strtok_r(list, "\n", &save); !ret && line; line = strtok_r(NULL, "\n", &save))
		ret = add_applet(r, line);
	free(list);
	return ret;
}

static int add_busybox(struct initrd *r)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int ret;

	ret = read_file(BUSYBOX, &data, &len);
	if (!ret)
		ret = elf_check_static(data, len);
	if (!ret)
		ret = initrd_file(r, "bin/busybox", 0755, data, len);
	free(data);
	if (ret == -ENOENT || ret == -ELIBEXEC || ret == -ENOEXEC) {
		nkvm_err("%s is %s; the guest needs a static one: apt-get install busybox-static",
			 BUSYBOX,
			 ret == -ENOENT	  ? "missing" :
			 ret == -ELIBEXEC ? "dynamically linked" :
					    "not an x86-64 program");
		return ret;
	}
	if (ret)
		return report(ret, BUSYBOX);
	return add_applets(r);
}

void setup_libs_free(struct setup_libs *libs)
{
	while (libs->n)
		free(libs->paths[--libs->n]);
	free(libs->paths);
	libs->paths = NULL;
}

/* The archive keeps paths as the loader asks for them: "..", "." or "//" would not unpack. */
static bool lib_path_valid(const char *p, size_t len)
{
	size_t i;

	if (len < 2 || len >= PATH_MAX || p[0] != '/' || p[len - 1] == '/')
		return false;
	for (i = 0; i < len; i++) {
		if (p[i] != '/')
			continue;
		if (p[i + 1] == '/' || (p[i + 1] == '.' && (i + 2 == len || p[i + 2] == '/')) ||
		    (p[i + 1] == '.' && p[i + 2] == '.' && (i + 3 == len || p[i + 3] == '/')))
			return false;
	}
	return true;
}

static int libs_add(struct setup_libs *libs, const char *p, size_t len)
{
	char **paths;
	size_t i;

	for (i = 0; i < libs->n; i++) {
		if (strlen(libs->paths[i]) == len && !strncmp(libs->paths[i], p, len))
			return 0;
	}
	paths = realloc(libs->paths, (libs->n + 1) * sizeof(*paths));
	if (!paths)
		return -ENOMEM;
	libs->paths = paths;
	paths[libs->n] = strndup(p, len);
	if (!paths[libs->n])
		return -ENOMEM;
	libs->n++;
	return 0;
}

/*
 * ldd's lines are "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", the loader as
 * "\t/lib64/ld-linux-x86-64.so.2 (0x…)", the vDSO (which the kernel provides) as
 * "\tlinux-vdso.so.1 (0x…)" or, from older versions, "linux-vdso.so.1 =>  (0x…)", and a library
 * it could not find as "\tlibfoo.so.1 => not found".
 */
int setup_ldd_parse(const char *text, struct setup_libs *libs, char *err, size_t errlen)
{
	const char *line, *next, *p, *arrow, *end;
	int ret = 0;

	memset(libs, 0, sizeof(*libs));
	for (line = text; !ret && *line; line = next) {
		next = strchrnul(line, '\n');
		end = next;
		if (*next)
			next++;
		line += strspn(line, " \t");
		arrow = memmem(line, end - line, " => ", 4);
		if (arrow) {
			p = arrow + 4;
			p += strspn(p, " ");
			if (!strncmp(p, "not found", 9)) {
				snprintf(err, errlen, "%.*s", (int)(arrow - line), line);
				ret = -ENOENT;
				break;
			}
		} else {
			p = line;
		}
		/* The vDSO, "statically linked", "not a dynamic executable": nothing to copy. */
		if (*p != '/')
			continue;
		arrow = memmem(p, end - p, " (0x", 4);
		if (arrow)
			end = arrow;
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (!lib_path_valid(p, end - p)) {
			snprintf(err, errlen, "%.*s", (int)(end - p), p);
			ret = -EINVAL;
			break;
		}
		ret = libs_add(libs, p, end - p);
	}
	if (ret)
		setup_libs_free(libs);
	return ret;
}

/* The host's copy of a tool: the first of tool_dirs that has it. */
static int tool_find(const struct guest_tool *t, char *path, size_t len)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(tool_dirs); i++) {
		if (!file_path(path, len, "%s/%s", tool_dirs[i], t->name) && !access(path, X_OK))
			return 0;
	}
	return -ENOENT;
}

/* A host file, the content of a symlink's target stored under the link's own path. */
static int add_host_file(struct initrd *r, const char *path)
{
	struct stat st;
	uint8_t *data = NULL;
	size_t len = 0;
	int ret;

	if (initrd_has(r, path + 1))
		return 0;
	ret = stat(path, &st) < 0 ? -errno : read_file(path, &data, &len);
	/* The loader must keep its execute bits: the kernel refuses an interpreter without them. */
	if (!ret)
		ret = initrd_file(r, path + 1, st.st_mode & 0755, data, len);
	free(data);
	return report(ret, path);
}

/*
 * Links each of the tool's names to it in every one of tool_dirs where the host has that name
 * for the same file: a merged-/usr host reaches /usr/sbin/mke2fs as /sbin/mkfs.ext4 too, and
 * the guest's /sbin is a directory of its own.
 */
static int add_tool_links(struct initrd *r, const struct guest_tool *t, const char *real)
{
	const char *names[ARRAY_SIZE(t->aliases) + 2] = { t->name, strrchr(real, '/') + 1 };
	char link[PATH_MAX];
	struct stat want, st;
	size_t i, j;
	int ret = 0;

	memcpy(names + 2, t->aliases, sizeof(t->aliases));
	if (stat(real, &want) < 0)
		return report(-errno, real);
	for (i = 0; !ret && i < ARRAY_SIZE(names); i++) {
		for (j = 0; !ret && names[i] && j < ARRAY_SIZE(tool_dirs); j++) {
			if (file_path(link, sizeof(link), "%s/%s", tool_dirs[j], names[i]) ||
			    !strcmp(link, real) || stat(link, &st) < 0 ||
			    st.st_dev != want.st_dev || st.st_ino != want.st_ino)
				continue;
			ret = report(initrd_symlink(r, link + 1, real), link);
		}
	}
	return ret;
}

/*
 * The libraries a dynamically linked tool loads, ldd's answer. Returns 0, 1 (after a notice)
 * when the tool cannot go in, or a negative errno.
 */
static int tool_libs(const struct guest_tool *t, const char *real, struct setup_libs *libs)
{
	char *argv[] = { "ldd", (char *)real, NULL };
	char why[PATH_MAX];
	char *out;
	int ret;

	ret = spawn_run(argv, NULL, &out, NULL);
	if (ret) {
		printf("nkvm: notice: 'ldd %s' failed (%s), so the guest has no %s\n", real,
		       ret < 0 ? strerror(-ret) : "non-zero status", t->name);
		return 1;
	}
	ret = setup_ldd_parse(out, libs, why, sizeof(why));
	free(out);
	if (ret == -ENOENT)
		printf("nkvm: notice: %s needs %s, which ldd cannot find, so the guest has no %s\n",
		       real, why, t->name);
	else if (ret == -EINVAL)
		printf("nkvm: notice: ldd gives %s the library path '%s', so the guest has no %s\n",
		       real, why, t->name);
	else
		return report(ret, real);
	return 1;
}

/* The tool's file, its libraries, its links. Returns 0 (also after a notice) or -errno. */
static int add_tool(struct initrd *r, const struct guest_tool *t)
{
	struct setup_libs libs = { 0 };
	char found[PATH_MAX], real[PATH_MAX];
	uint8_t *data = NULL;
	struct stat st;
	size_t len = 0, i;
	int ret;

	if (tool_find(t, found, sizeof(found))) {
		printf("nkvm: notice: no %s on this host, so the guest has none "
		       "(apt-get install %s)\n",
		       t->name, t->package);
		return 0;
	}
	if (!realpath(found, real))
		return report(-errno, found);
	ret = stat(real, &st) < 0 ? -errno : read_file(real, &data, &len);
	if (ret)
		return report(ret, real);
	ret = elf_check_static(data, len);
	if (ret == -ELIBEXEC)
		ret = tool_libs(t, real, &libs);
	else if (ret == -ENOEXEC)
		printf("nkvm: notice: %s is not an x86-64 program, so the guest has no %s\n", real,
		       t->name);
	if (ret == 1 || ret == -ENOEXEC) {
		ret = 0;
	} else if (!ret) {
		for (i = 0; !ret && i < libs.n; i++)
			ret = add_host_file(r, libs.paths[i]);
		if (!ret)
			ret = report(initrd_file(r, real + 1, st.st_mode & 0755, data, len), real);
		if (!ret)
			ret = add_tool_links(r, t, real);
	}
	setup_libs_free(&libs);
	free(data);
	return ret;
}

/* Whether t goes in a group's archive (NULL: the base one), or with full_only the full one. */
static bool tool_wanted(const struct guest_tool *t, bool full_only, const char *group)
{
	if (t->full_only || full_only)
		return t->full_only && full_only;
	if (!group || !t->group)
		return group == t->group;
	return !strcmp(group, t->group);
}

/* The tools of a group (NULL: the base archive), or with full_only those of the full one. */
static int add_tools(struct initrd *r, bool full_only, const char *group)
{
	size_t i;
	int ret = 0;

	for (i = 0; !ret && i < ARRAY_SIZE(guest_tools); i++) {
		if (tool_wanted(&guest_tools[i], full_only, group))
			ret = add_tool(r, &guest_tools[i]);
	}
	return ret;
}

/* Whether the host has a tool that only the full initramfs holds: else there is none. */
static bool want_full_initrd(void)
{
	char path[PATH_MAX];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(guest_tools); i++) {
		if (guest_tools[i].full_only && !tool_find(&guest_tools[i], path, sizeof(path)))
			return true;
	}
	return false;
}

/* "kernel/x/y.ko.xz" -> the decompressor, or NULL for a plain module. */
static const char *module_decompressor(const char *path)
{
	size_t n = strlen(path), k, i;

	for (i = 0; i < ARRAY_SIZE(decompressors); i++) {
		k = strlen(decompressors[i].suffix);
		if (n > k && !strcmp(path + n - k, decompressors[i].suffix))
			return decompressors[i].tool;
	}
	return NULL;
}

/* Drops ".xz"/".zst"/".gz" after each ".ko", in place: the initrd holds plain modules. */
static void strip_compression(char *text)
{
	char *p = text, *end;
	size_t i, k;

	while ((p = strstr(p, ".ko."))) {
		p += 3;
		for (i = 0; i < ARRAY_SIZE(decompressors); i++) {
			k = strlen(decompressors[i].suffix);
			end = p + k;
			if (!strncmp(p, decompressors[i].suffix, k) &&
			    (*end == '\0' || *end == ':' || *end == ' ' || *end == '\n')) {
				memmove(p, end, strlen(end) + 1);
				break;
			}
		}
	}
}

static int moddir_read(struct initrd *r, const char *name, char **out, size_t *len)
{
	char path[PATH_MAX];

	int ret = file_path(path, sizeof(path), "%s/%s", r->moddir, name);

	return ret ? ret : file_read_text(path, out, len);
}

/* A module from the kernel tree, decompressed: the guest's init loads plain files only. */
static int module_read(struct initrd *r, const char *rel, char **data, size_t *len)
{
	const char *tool = module_decompressor(rel);
	char path[PATH_MAX];
	char *argv[] = { (char *)tool, "-dc", path, NULL };

	if (file_path(path, sizeof(path), "%s/%s", r->moddir, rel))
		return report(-ENAMETOOLONG, rel);
	if (!tool)
		return report(file_read_text(path, data, len), path);
	return setup_run_tool(argv, NULL, data, len);
}

/*
 * Adds lib/modules/VERSION/rel and appends its plain name to the load list, if there is one;
 * a module in the archive already is in an earlier list, so it goes in neither again.
 */
static int add_module(struct initrd *r, const char *rel, FILE *list)
{
	char name[PATH_MAX], *data;
	size_t len, prefix;
	int ret;

	if (file_path(name, sizeof(name), "lib/modules/%s/%s", r->version, rel))
		return report(-ENAMETOOLONG, rel);
	prefix = strlen(name) - strlen(rel);
	strip_compression(name);
	if (initrd_has(r, name))
		return 0;
	ret = module_read(r, rel, &data, &len);
	if (ret)
		return ret;
	ret = initrd_file(r, name, 0644, data, len);
	free(data);
	if (!ret && !list)
		return 0;
	if (!ret && fprintf(list, "%s\n", name + prefix) < 0)
		ret = -ENOMEM;
	return report(ret, name);
}

static int add_index(struct initrd *r, const char *file, const char *text, size_t len)
{
	char name[PATH_MAX];
	int ret;

	ret = file_path(name, sizeof(name), "lib/modules/%s/%s", r->version, file);
	return ret ? ret : cpio_add_file(&r->cpio, name, 0644, text, len);
}

/* So that busybox modprobe can load more modules by hand, by name or by alias. */
static int add_module_indexes(struct initrd *r, char *dep, const char *builtin)
{
	char *alias = NULL;
	size_t alias_len = 0;
	int ret;

	strip_compression(dep);
	ret = add_index(r, "modules.dep", dep, strlen(dep));
	if (!ret && builtin)
		ret = add_index(r, "modules.builtin", builtin, strlen(builtin));
	if (!ret && !moddir_read(r, "modules.alias", &alias, &alias_len))
		ret = add_index(r, "modules.alias", alias, alias_len);
	free(alias);
	return report(ret, "module indexes");
}

/* Adds mods and the list of them to load, as file. */
static int add_module_list(struct initrd *r, const struct moddep_result *mods, const char *file)
{
	char *list = NULL;
	size_t len = 0, i;
	FILE *f;
	int ret = 0;

	f = open_memstream(&list, &len);
	if (!f)
		return report(-ENOMEM, file);
	for (i = 0; !ret && i < mods->n_paths; i++)
		ret = add_module(r, mods->paths[i], f);
	if (fclose(f) && !ret)
		ret = report(-ENOMEM, file);
	if (!ret)
		ret = report(initrd_file(r, file + (file[0] == '/'), 0644, list, len), file);
	free(list);
	return ret;
}

/* guest_modules_on_demand with their dependencies, after the boot list has its own. */
static int add_modules_on_demand(struct initrd *r, const char *dep, const char *builtin)
{
	struct moddep_result mods = { 0 };
	size_t i;
	int ret;

	ret = report(moddep_resolve(dep, builtin, guest_modules_on_demand,
				    ARRAY_SIZE(guest_modules_on_demand), &mods),
		     "modules.dep");
	for (i = 0; !ret && i < mods.n_paths; i++)
		ret = add_module(r, mods.paths[i], NULL);
	moddep_result_free(&mods);
	return ret;
}

/* The base archive's modules: guest_modules (their paths in *mods) and the on-demand ones. */
static int add_modules(struct initrd *r, const char *dep, const char *builtin,
		       struct moddep_result *mods)
{
	int ret;

	ret = report(moddep_resolve(dep, builtin, guest_modules, ARRAY_SIZE(guest_modules), mods),
		     "modules.dep");
	if (!ret)
		ret = add_module_list(r, mods, NKVM_MODULES_FILE);
	if (!ret)
		ret = add_modules_on_demand(r, dep, builtin);
	return ret;
}

/* modules.dep and (when the kernel has one) modules.builtin, as the host's tree has them. */
static int read_module_texts(struct initrd *r, char **dep, char **builtin)
{
	int ret;

	ret = report(moddir_read(r, "modules.dep", dep, NULL), "modules.dep");
	/* Some kernels have no built-in modules worth listing, and no modules.builtin. */
	if (!ret && moddir_read(r, "modules.builtin", builtin, NULL))
		*builtin = NULL;
	return ret;
}

/* FNV-1a: a stamp only has to change when the init does, not resist anyone. */
static uint64_t fnv1a(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (len--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

/* The stamp names the guest tools the host has, so that installing one later rebuilds. */
int setup_initrd_stamp(const char *version, char *buf, size_t len)
{
	uint64_t h = fnv1a(nkvm_guest_init_start, nkvm_guest_init_end - nkvm_guest_init_start);
	char path[PATH_MAX];
	size_t i, n;
	int ret;

	ret = snprintf(buf, len, "%d %s %016llx", INITRD_REVISION, version, (unsigned long long)h);
	for (i = 0; ret >= 0 && (size_t)ret < len && i < ARRAY_SIZE(guest_tools); i++) {
		n = ret;
		if (!tool_find(&guest_tools[i], path, sizeof(path)))
			ret = n + snprintf(buf + n, len - n, " %s", guest_tools[i].name);
	}
	if (ret >= 0 && (size_t)ret < len)
		ret += snprintf(buf + ret, len - ret, "\n");
	return ret < 0 || (size_t)ret >= len ? -ENAMETOOLONG : 0;
}

static int write_cache_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[PATH_MAX];
	int ret;

	ret = file_path(path, sizeof(path), "%s/%s", dir, name);
	if (!ret)
		ret = file_write_atomic(path, data, len, 0644);
	return report(ret, path);
}

/* Writes the archive as it stands to dir/name, and leaves it open for more entries. */
static int write_archive(const char *dir, const char *name, struct cpio *c)
{
	size_t len = c->len;
	int ret;

	ret = report(cpio_finish(c), name);
	if (!ret)
		ret = write_cache_file(dir, name, c->buf, c->len);
	/* Drops the trailer again; it took no inode number (cpio.c). */
	c->len = len;
	return ret;
}

/*
 * The full initramfs is the default one plus the full_only tools. Without any of them on the
 * host there is none, and an older one goes: it would hold an older init.
 */
static int write_full_initrd(const char *dir, struct initrd *r)
{
	char path[PATH_MAX];
	int ret;

	if (!want_full_initrd()) {
		ret = file_path(path, sizeof(path), "%s/%s", dir, SETUP_INITRD_FULL);
		if (!ret && unlink(path) < 0 && errno != ENOENT)
			ret = -errno;
		return report(ret, path);
	}
	printf("nkvm: building %s/%s (with fio and iperf3, for `nkvm run -m 512M -i FILE`)\n", dir,
	       SETUP_INITRD_FULL);
	fflush(stdout);
	ret = add_tools(r, true, NULL);
	return ret ? ret : write_archive(dir, SETUP_INITRD_FULL, &r->cpio);
}

/*
 * One group's archive, gdir/NAME.cpio: its modules with their load list, its on-demand ones,
 * its tools; none of what base holds. An empty group (a kernel without those modules, or with
 * them built in) still gets one, so that run finds every group it looks for.
 */
static int write_group(const char *gdir, const struct initrd *base, const char *dep,
		       const char *builtin, const struct moddep_result *base_mods,
		       const struct initrd_group *g)
{
	struct initrd r = { .version = base->version, .base = base };
	struct moddep_result mods = { 0 };
	char list[PATH_MAX], name[NAME_MAX];
	size_t i;
	int ret;

	memcpy(r.moddir, base->moddir, sizeof(r.moddir));
	if (file_path(list, sizeof(list), "%s/%s", NKVM_MODULES_DIR, g->name) ||
	    file_path(name, sizeof(name), "%s.cpio", g->name))
		return report(-ENAMETOOLONG, g->name);
	ret = report(initrd_group_resolve(dep, builtin, g, false, base_mods, &mods), "modules.dep");
	if (!ret)
		ret = add_module_list(&r, &mods, list);
	moddep_result_free(&mods);
	if (!ret)
		ret = report(initrd_group_resolve(dep, builtin, g, true, base_mods, &mods),
			     "modules.dep");
	for (i = 0; !ret && i < mods.n_paths; i++)
		ret = add_module(&r, mods.paths[i], NULL);
	moddep_result_free(&mods);
	if (!ret)
		ret = add_tools(&r, false, g->name);
	if (!ret)
		ret = write_archive(gdir, name, &r.cpio);
	initrd_free(&r);
	return ret;
}

/* Every group's archive, in a directory made afresh: a group nkvm no longer has goes. */
static int write_groups(const char *dir, const struct initrd *base, const char *dep,
			const char *builtin, const struct moddep_result *base_mods)
{
	char gdir[PATH_MAX];
	size_t i;
	int ret;

	ret = file_path(gdir, sizeof(gdir), "%s/%s", dir, INITRD_GROUPS_DIR);
	if (!ret)
		ret = file_remove_tree(gdir);
	if (!ret)
		ret = file_mkdir_p(gdir, 0755);
	if (ret)
		return report(ret, gdir);
	printf("nkvm: building %s/*.cpio (a device's modules and tools, appended per run)\n", gdir);
	fflush(stdout);
	for (i = 0; !ret && initrd_groups[i]; i++)
		ret = write_group(gdir, base, dep, builtin, base_mods, initrd_groups[i]);
	return ret;
}

/*
 * The base archive, then the groups (which leave out what it holds), the full one and, last,
 * the stamp: an initrd without a matching one is rebuilt by the next setup.
 */
static int write_initrd(const char *dir, struct initrd *r, char *dep, const char *builtin,
			const struct moddep_result *base_mods)
{
	char stamp[PATH_MAX];
	int ret;

	ret = write_groups(dir, r, dep, builtin, base_mods);
	/* After the groups: it strips compression suffixes from dep in place. */
	if (!ret)
		ret = add_module_indexes(r, dep, builtin);
	if (!ret)
		ret = write_archive(dir, NKVM_GUEST_INITRD, &r->cpio);
	if (!ret)
		ret = write_full_initrd(dir, r);
	if (!ret)
		ret = report(setup_initrd_stamp(r->version, stamp, sizeof(stamp)), "stamp");
	if (!ret)
		ret = write_cache_file(dir, SETUP_INITRD_STAMP, stamp, strlen(stamp));
	return ret;
}

int setup_build_initrd(const char *dir, const char *version)
{
	struct initrd r = { .version = version };
	struct moddep_result base_mods = { 0 };
	char *dep = NULL, *builtin = NULL;
	int ret;

	if (file_path(r.moddir, sizeof(r.moddir), "%s/%s/lib/modules/%s", dir, SETUP_KERNEL_TREE,
		      version))
		return report(-ENAMETOOLONG, dir);
	printf("nkvm: building %s/%s\n", dir, NKVM_GUEST_INITRD);
	fflush(stdout);
	ret = report(add_skeleton(&r), "initramfs");
	/* Before busybox: where an applet has a tool's name, the tool wins. */
	if (!ret)
		ret = add_tools(&r, false, NULL);
	if (!ret)
		ret = add_busybox(&r);
	if (!ret)
		ret = read_module_texts(&r, &dep, &builtin);
	if (!ret)
		ret = add_modules(&r, dep, builtin, &base_mods);
	if (!ret)
		ret = write_initrd(dir, &r, dep, builtin, &base_mods);
	moddep_result_free(&base_mods);
	free(dep);
	free(builtin);
	initrd_free(&r);
	return ret;
}
