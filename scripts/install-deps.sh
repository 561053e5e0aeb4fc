#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages nkvm needs to build, test and boot its default guest. Safe to run
# again: it asks apt only for what is missing, and says nothing when everything is there.
set -eu

# gcc make: the build. libcmocka-dev: unit tests. busybox-static kmod cpio zstd xz-utils:
# `nkvm setup` (a static busybox for the guest, depmod, module decompression, checking archives).
# qemu-system-x86 qemu-utils: the nested test host and qcow2 images. fio: benchmarks.
# clang libclang-rt-14-dev: fuzzers (libFuzzer lives in the runtime package). e2fsprogs: mkfs.ext4
# and e2fsck for the guest and the disk tests. strace: the test that sees flushes reach the file.
# zlib1g-dev libzstd-dev: qcow2 compressed clusters. libaio-dev liburing-dev: the aio and
# io_uring I/O engines. gnuplot-nox: the plot of bench/engines.sh. clang-format: `make format`.
# libslirp-dev: user-mode networking (-n user). iperf3: the network benchmark, in the guest and
# on its test host. libmicrohttpd-dev libjson-c-dev libcurl4-openssl-dev: the control socket's
# HTTP server, its JSON, and the HTTP client of `nkvm list/pause/stat`. jq: the tests read --json.
# socat: the vsock tests, in the guest and on its test host. liblz4-dev liblzma-dev: `nkvm setup`
# decompresses the kernel's vmlinux for the PVH boot (LZ4 for Debian's, xz; gzip and zstd above).
# libseccomp-dev: the sandbox's per-thread seccomp filters.
PACKAGES="gcc make libcmocka-dev busybox-static kmod cpio qemu-system-x86 qemu-utils fio clang
libclang-rt-14-dev clang-format libslirp-dev iperf3
libmicrohttpd-dev libjson-c-dev libcurl4-openssl-dev jq socat libseccomp-dev
zstd xz-utils e2fsprogs strace zlib1g-dev libzstd-dev libaio-dev liburing-dev gnuplot-nox
liblz4-dev liblzma-dev"

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=""
for p in $PACKAGES; do
	installed "$p" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "nkvm: missing packages:$missing" >&2
	echo "nkvm: run: sudo apt-get update && sudo apt-get install -y$missing" >&2
	exit 1
fi

echo "nkvm: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# The lists may be missing (fresh container) or stale: refresh them only when installing.
apt-get update -q
# shellcheck disable=SC2086 # one word per package
apt-get install -y -q --no-install-recommends $missing
