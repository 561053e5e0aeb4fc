#!/usr/bin/env bash
# Shared-directory benchmark (issue 18): nkvm's `--share DIR` (virtio-fs, served in process)
# against QEMU 7.2's `-virtfs local,security_model=none` (virtio-9p, mounted with
# `-t 9p -o trans=virtio,version=9p2000.L`), with the same workload on an ext4 on a virtio-blk
# disk as the scale, all on the same guest: Debian's generic kernel (linux-image-amd64, which
# has 9p and virtio-fs; the default cloud kernel has no 9p), prepared by
# `nkvm setup --kernel-package linux-image-amd64`. Inside the nested test host where this host's
# KVM cannot run a standard guest. The workload (bench/share-jobs.sh): untar a source tree of
# about 50 MiB onto the share, find + stat all of it, read every file, write a big file and read
# it back, delete everything. Prints a markdown table of each step's median seconds over the
# rounds with QEMU's time over nkvm's, and one SHARE-RESULT line per step.
#   bench/share.sh [BIG_MIB [ROUNDS]]        (default 1024 MiB, 3 rounds)
# Environment: BENCH_SHARE_WHO="nkvm qemu disk" (the columns to run), BENCH_SHARE_DIRS (the
# directories of /usr/include in the tree, default "llvm-14 c++ linux x86_64-linux-gnu unicode").
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
rounds=${2:-3}
[[ $mib =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ ]] ||
	{ echo "usage: bench/share.sh [BIG_MIB [ROUNDS]] (whole numbers)" >&2; exit 2; }
pkg=linux-image-amd64
make -s nkvm
./nkvm setup >/dev/null
./nkvm setup --kernel-package "$pkg" >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
gdir=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/$pkg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The tree: these directories of /usr/include (LLVM's, libstdc++'s, the kernel's and glibc's
# headers, ICU's: about 50 MiB in some 6000 files on Debian 12), archived the same way every
# time, so that runs on one machine compare; its size, file count and digest are printed.
dirs=()
for d in ${BENCH_SHARE_DIRS:-llvm-14 c++ linux x86_64-linux-gnu unicode}; do
	[[ -d /usr/include/$d ]] && dirs+=("$d")
done
[[ ${#dirs[@]} -gt 0 ]] || { echo "bench: none of the tree's directories in /usr/include" >&2; exit 1; }
tar -C /usr/include -c -f "$work/tree.tar" --sort=name --mtime=@0 --owner=0 --group=0 \
	--numeric-owner --format=gnu "${dirs[@]}"
echo "bench: tree /usr/include/{${dirs[*]}}: $(($(stat -c %s "$work/tree.tar") >> 20)) MiB," \
	"$(tar -t -f "$work/tree.tar" | grep -vc '/$') entries, sha256" \
	"$(sha256sum "$work/tree.tar" | cut -c1-16); big file $mib MiB; $rounds rounds" >&2
# QEMU's guest finds its command where nkvm's init looks for it.
cmd_initrd "$work/qemu.cpio" "$gdir/initrd.cpio" sh -c "$(cat bench/share-jobs.sh)" sh 9p "$mib"

inside=(bash bench/share-inside.sh /tmp/tree.tar "$mib" "$rounds" /cache/guest /tmp/qemu.cpio)
if tests/nested/needed; then
	echo "bench: measuring inside the nested test host" >&2
	# About 4 minutes a guest under TCG for 1 GiB, and the test host's boot and copies.
	tests/nested/run --mem 6144 --timeout $((900 + rounds * 3 * (240 + mib / 4))) \
		--bin "$(command -v qemu-system-x86_64)" --file /usr/share/qemu \
		--file /usr/share/seabios --file /usr/lib/ipxe/qemu \
		--file "$gdir/vmlinuz:/cache/guest/vmlinuz" \
		--file "$gdir/initrd.cpio:/cache/guest/initrd.cpio" \
		--file "$gdir/initrd-modules:/cache/guest/initrd-modules" \
		--file "$work/tree.tar:/tmp/tree.tar" --file "$work/qemu.cpio:/tmp/qemu.cpio" \
		-- env BENCH_SHARE_WHO="${BENCH_SHARE_WHO:-nkvm qemu disk}" "${inside[@]}"
else
	BENCH_SHARE_WHO="${BENCH_SHARE_WHO:-nkvm qemu disk}" bash bench/share-inside.sh \
		"$work/tree.tar" "$mib" "$rounds" "$gdir" "$work/qemu.cpio"
fi
