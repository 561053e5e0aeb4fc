// SPDX-License-Identifier: MIT
/*
 * The default guest's initramfs: nkvm's own init as /init, a static busybox for everything a
 * shell user expects, and the kernel modules for nkvm's devices with the order to load them in.
 * The kernel unpacks it into a tmpfs that stays the root filesystem.
 */
#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/setup.h"
#include "guest/abi.h"
#include "lib/cpio.h"
#include "lib/file.h"
#include "lib/log.h"
#include "lib/moddep.h"
#include "lib/paths.h"
#include "lib/util.h"

/* Bumped when what the initrd holds changes, so that `nkvm setup` rebuilds an older one. */
#define INITRD_REVISION 1

#define BUSYBOX "/bin/busybox"

/* Linked in from guest/init by src/guest_blob.S. */
extern const unsigned char nkvm_guest_init_start[], nkvm_guest_init_end[];

struct initrd {
	struct cpio cpio;
	char **dirs;			/* directories already in the archive */
	size_t n_dirs;
	const char *version;
	char moddir[PATH_MAX];		/* the host's copy of /lib/modules/VERSION */
};

/* The drivers of the devices nkvm offers, and what they need. Absent ones are skipped. */
static const char *const guest_modules[] = {
	"virtio", "virtio_ring", "virtio_pci", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_blk", "virtio_net", "net_failover", "failover", "virtio_console", "virtio-rng",
	"virtio_balloon", "vmw_vsock_virtio_transport", "vmw_vsock_virtio_transport_common",
	"vsock", "9p", "9pnet", "9pnet_virtio", "netfs", "fscache", "fuse", "virtiofs",
	"overlay", "ext4", "jbd2", "mbcache", "crc16", "crc32c_generic", "libcrc32c",
};

static const struct {
	const char *path;
	mode_t perm;
} base_dirs[] = {
	{ "bin", 0755 }, { "sbin", 0755 }, { "usr", 0755 }, { "usr/bin", 0755 },
	{ "usr/sbin", 0755 }, { "etc", 0755 }, { "etc/nkvm", 0755 }, { "dev", 0755 },
	{ "proc", 0555 }, { "sys", 0555 }, { "tmp", 01777 }, { "run", 0755 }, { "root", 0700 },
	{ "mnt", 0755 }, { "var", 0755 }, { "var/tmp", 01777 }, { "lib", 0755 },
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
	{ ".xz", "xz" }, { ".zst", "zstd" }, { ".gz", "gzip" },
};

/* The one line a failed step prints: what it was working on, and why. */
static int report(int ret, const char *what)
{
	if (ret < 0)
		nkvm_err("%s: %s", what, strerror(-ret));
	return ret;
}

static int initrd_mkdir(struct initrd *r, const char *path, mode_t perm)
{
	char **dirs;
	size_t i;

	for (i = 0; i < r->n_dirs; i++) {
		if (!strcmp(r->dirs[i], path))
			return 0;
	}
	dirs = realloc(r->dirs, (r->n_dirs + 1) * sizeof(*dirs));
	if (!dirs)
		return -ENOMEM;
	r->dirs = dirs;
	dirs[r->n_dirs] = strdup(path);
	if (!dirs[r->n_dirs])
		return -ENOMEM;
	r->n_dirs++;
	return cpio_add_dir(&r->cpio, path, perm);
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

static void initrd_free(struct initrd *r)
{
	while (r->n_dirs)
		free(r->dirs[--r->n_dirs]);
	free(r->dirs);
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
		ret = cpio_add_file(&r->cpio, etc_files[i].path, 0644, etc_files[i].text,
				    strlen(etc_files[i].text));
	if (!ret)
		ret = cpio_add_file(&r->cpio, "init", 0755, nkvm_guest_init_start,
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
	int ret;

	if (!path[0] || path[0] == '/' || strstr(path, "..") || !strcmp(path, "init") ||
	    !strcmp(path, "bin/busybox"))
		return 0;
	ret = initrd_mkdir_parents(r, path);
	return ret ? ret : cpio_add_symlink(&r->cpio, path, BUSYBOX);
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
		ret = cpio_add_file(&r->cpio, "bin/busybox", 0755, data, len);
	free(data);
	if (ret == -ENOENT || ret == -ELIBEXEC || ret == -ENOEXEC) {
		nkvm_err("%s is %s; the guest needs a static one: apt-get install busybox-static",
			 BUSYBOX, ret == -ENOENT ? "missing" :
			 ret == -ELIBEXEC ? "dynamically linked" : "not an x86-64 program");
		return ret;
	}
	if (ret)
		return report(ret, BUSYBOX);
	return add_applets(r);
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

/* Adds lib/modules/VERSION/rel and appends its plain name to the load list. */
static int add_module(struct initrd *r, const char *rel, FILE *list)
{
	char name[PATH_MAX], *data;
	size_t len, prefix;
	int ret;

	if (file_path(name, sizeof(name), "lib/modules/%s/%s", r->version, rel))
		return report(-ENAMETOOLONG, rel);
	prefix = strlen(name) - strlen(rel);
	strip_compression(name);
	ret = module_read(r, rel, &data, &len);
	if (ret)
		return ret;
	ret = initrd_mkdir_parents(r, name);
	if (!ret)
		ret = cpio_add_file(&r->cpio, name, 0644, data, len);
	free(data);
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

static int add_module_list(struct initrd *r, const struct moddep_result *mods)
{
	char *list = NULL;
	size_t len = 0, i;
	FILE *f;
	int ret = 0;

	f = open_memstream(&list, &len);
	if (!f)
		return report(-ENOMEM, NKVM_MODULES_FILE);
	for (i = 0; !ret && i < mods->n_paths; i++)
		ret = add_module(r, mods->paths[i], f);
	if (fclose(f) && !ret)
		ret = report(-ENOMEM, NKVM_MODULES_FILE);
	if (!ret)
		ret = report(cpio_add_file(&r->cpio, NKVM_MODULES_FILE, 0644, list, len),
			     NKVM_MODULES_FILE);
	free(list);
	return ret;
}

static int add_modules(struct initrd *r)
{
	struct moddep_result mods = { 0 };
	char *dep = NULL, *builtin = NULL;
	int ret;

	ret = report(moddir_read(r, "modules.dep", &dep, NULL), "modules.dep");
	/* Some kernels have no built-in modules worth listing, and no modules.builtin. */
	if (!ret && moddir_read(r, "modules.builtin", &builtin, NULL))
		builtin = NULL;
	if (!ret)
		ret = report(moddep_resolve(dep, builtin, guest_modules, ARRAY_SIZE(guest_modules),
					    &mods), "modules.dep");
	if (!ret)
		ret = add_module_list(r, &mods);
	if (!ret)
		ret = add_module_indexes(r, dep, builtin);
	moddep_result_free(&mods);
	free(dep);
	free(builtin);
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

int setup_initrd_stamp(const char *version, char *buf, size_t len)
{
	uint64_t h = fnv1a(nkvm_guest_init_start, nkvm_guest_init_end - nkvm_guest_init_start);
	int n = snprintf(buf, len, "%d %s %016llx\n", INITRD_REVISION, version,
			 (unsigned long long)h);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
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

/* The stamp goes last: an initrd without a matching one is rebuilt by the next setup. */
static int write_initrd(const char *dir, struct initrd *r)
{
	char stamp[PATH_MAX];
	int ret;

	ret = report(cpio_finish(&r->cpio), "initramfs");
	if (!ret)
		ret = write_cache_file(dir, NKVM_GUEST_INITRD, r->cpio.buf, r->cpio.len);
	if (!ret)
		ret = report(setup_initrd_stamp(r->version, stamp, sizeof(stamp)), "stamp");
	if (!ret)
		ret = write_cache_file(dir, SETUP_INITRD_STAMP, stamp, strlen(stamp));
	return ret;
}

int setup_build_initrd(const char *dir, const char *version)
{
	struct initrd r = { .version = version };
	int ret;

	if (file_path(r.moddir, sizeof(r.moddir), "%s/%s/lib/modules/%s", dir, SETUP_KERNEL_TREE,
		      version))
		return report(-ENAMETOOLONG, dir);
	printf("nkvm: building %s/%s\n", dir, NKVM_GUEST_INITRD);
	fflush(stdout);
	ret = report(add_skeleton(&r), "initramfs");
	if (!ret)
		ret = add_busybox(&r);
	if (!ret)
		ret = add_modules(&r);
	if (!ret)
		ret = write_initrd(dir, &r);
	initrd_free(&r);
	return ret;
}
